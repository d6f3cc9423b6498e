# epmd fuzz targets (included by tests/fuzz/CMakeLists.txt).
gd_fuzz_target(fz_epmd_req SOURCES ${CMAKE_CURRENT_LIST_DIR}/fz_epmd_req.c LIBS gd_epmd)
target_include_directories(fz_epmd_req PRIVATE ${CMAKE_SOURCE_DIR}/epmd)
gd_fuzz_target(fz_epmd_resp SOURCES ${CMAKE_CURRENT_LIST_DIR}/fz_epmd_resp.c LIBS gd_epmd)
target_include_directories(fz_epmd_resp PRIVATE ${CMAKE_SOURCE_DIR}/epmd)
