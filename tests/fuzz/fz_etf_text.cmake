# Term text syntax fuzz target: etf_parse on hostile text, etf_print of what it built.
gd_fuzz_target(fz_etf_text SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fz_etf_text.c LIBS gd_etf)
