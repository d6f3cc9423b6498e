/*
 * test_read_batch.c — a node with read batching (cluster_config_t
 * .read_batch_us, what girder bench's client node uses with hundreds of
 * clients): a connection is read at most once per batch interval, so
 * sequential round trips each wait out the rest of it, while a burst of
 * requests is read, answered and kept in order as without batching.  The
 * limit on the setting is checked before any node starts.
 */
#include <stdio.h>
#include <time.h>

#include "cluster.h"
#include "cunit_main.h"
#include "node_peer_util.h"

/* 20 ms: far above a loopback round trip (~50 us), so the test tells a
 * batching reader from one that reads at once on any machine. */
#define BATCH_US 20000u
#define ROUND_TRIPS 10

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void test_limit(void)
{
    cluster_config_t cfg = {
        .name = "rb_limit", .cookie = NP_COOKIE, .read_batch_us = CLUSTER_READ_BATCH_MAX_US + 1};
    CU_ASSERT(cluster_start(&cfg) == GD_EINVAL);
}

/* Each request is read no sooner than BATCH_US after the read before it:
 * ROUND_TRIPS sequential round trips take (ROUND_TRIPS - 1) intervals at
 * least (the first read of the connection waits for nothing). */
static void test_round_trips_wait(void)
{
    np_start_node_batched(0, BATCH_US);
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    CU_ASSERT_FATAL(np_echo_round_trip(&p, heap_atom("warm")));
    uint64_t t0 = mono_ms();
    for (int i = 0; i < ROUND_TRIPS; i++)
        CU_ASSERT_FATAL(np_echo_round_trip(&p, term_make_small(i)));
    uint64_t took = mono_ms() - t0;
    printf("\n%d round trips with %u us read batching: %llu ms\n", ROUND_TRIPS, BATCH_US,
           (unsigned long long)took);
    CU_ASSERT(took >= (uint64_t)(ROUND_TRIPS - 1) * BATCH_US / 1000u);
    np_peer_close(&p);
}

/* 2000 requests written at once: every one answered, in order, and in far
 * fewer batch intervals than requests (the reads take many frames each). */
static void test_burst_in_order(void)
{
    np_start_node_batched(0, BATCH_US);
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    enum { N = 2000 };
    uint64_t t0 = mono_ms();
    for (int i = 0; i < N; i++) {
        term_t items[2] = {p.self, term_make_small(i)}, msg;
        CU_ASSERT_FATAL(heap_make_tuple_from(&p.h, 2, items, &msg) == 0);
        CU_ASSERT_FATAL(np_send_named(&p, "echo", msg));
    }
    for (int i = 0; i < N; i++) {
        dist_msg_t m;
        CU_ASSERT_FATAL(np_peer_recv(&p, &m, 5000));
        CU_ASSERT_FATAL(term_is_boxed_of(m.payload, HDR_TUPLE));
        term_t *r = term_boxed_ptr(m.payload);
        CU_ASSERT(r[1] == heap_atom("echo_reply") && r[2] == term_make_small(i));
    }
    uint64_t took = mono_ms() - t0;
    printf("%d requests in a burst with %u us read batching: %llu ms\n", N, BATCH_US,
           (unsigned long long)took);
    CU_ASSERT(took < (uint64_t)N * BATCH_US / 1000u / 10u);
    CU_ASSERT(np_echo_round_trip(&p, heap_atom("after")));
    np_peer_close(&p);
}

static const gd_test_case_t gd_tests[] = {
    {"read_batch_us over the limit", test_limit},
    {"sequential round trips wait for the batch", test_round_trips_wait},
    {"a burst is read in batches, in order", test_burst_in_order},
    {NULL, NULL},
};

GD_TEST_MAIN("cluster_read_batch", gd_tests)
