# node/bench/ fuzz target: the histogram and time-series decoders (what a
# remote client node sends back).
gd_fuzz_target(fz_bench_hist SOURCES ${CMAKE_CURRENT_LIST_DIR}/fz_bench_hist.c LIBS gd_bench)
