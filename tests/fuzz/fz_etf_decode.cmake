# ETF decoder fuzz target (docs/robustness.md §1): safe/full mode from the first byte.
gd_fuzz_target(fz_etf_decode SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fz_etf_decode.c LIBS gd_etf)
