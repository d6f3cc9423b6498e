# cluster/tls.c fuzz target: the -ssl_dist_optfile reader and -ssl_dist_opt
# pairs (a configuration file is untrusted input too: one-line refusals).
gd_fuzz_target(fz_tls_optfile SOURCES ${CMAKE_CURRENT_LIST_DIR}/fz_tls_optfile.c LIBS gd_cluster)
