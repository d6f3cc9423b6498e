# cluster/ fuzz targets (docs/robustness.md §1): the handshake state machine and
# the connected-phase frame decoder.
gd_fuzz_target(fz_dist_handshake SOURCES ${CMAKE_CURRENT_LIST_DIR}/fz_dist_handshake.c
               LIBS gd_cluster)
gd_fuzz_target(fz_dist_frame SOURCES ${CMAKE_CURRENT_LIST_DIR}/fz_dist_frame.c LIBS gd_cluster)
