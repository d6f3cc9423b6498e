/*
 * test_msgslab.c — the message slabs (heap/msgslab.c) under the traffic of
 * a fanin: two threads build small messages (heap_msg_copy) while a third
 * checks and frees them.  Freed memory is reused (few chunks are ever
 * mapped over many rounds), what is mapped stays bounded, every message
 * reads back intact while its chunk is carved and freed concurrently (the
 * suite also runs under ThreadSanitizer and ASan), a message kept alive
 * pins its chunk only, and the memory goes back to the OS once the senders
 * exit and the pool is trimmed.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "cunit_main.h"
#include "gc_internal.h"
#include "heap.h"

#define OK(expr) CU_ASSERT_EQUAL_FATAL((expr), GD_OK)

enum { PRODUCERS = 2, ROUNDS = 30, PER_ROUND = 20000, QCAP = 4096 };
#define CHUNK HEAP_MSG_SLAB_CHUNK_BYTES

/* A bounded queue from the producers to the consumer. */
typedef struct item {
    heap_frag_t *frag;
    term_t msg;
    int64_t producer, seq;
} item_t;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t more, room;
    item_t items[QCAP];
    size_t head, len;
} q = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .more = PTHREAD_COND_INITIALIZER,
       .room = PTHREAD_COND_INITIALIZER};

static void q_put(item_t it)
{
    pthread_mutex_lock(&q.lock);
    while (q.len == QCAP)
        pthread_cond_wait(&q.room, &q.lock);
    q.items[(q.head + q.len++) % QCAP] = it;
    pthread_cond_signal(&q.more);
    pthread_mutex_unlock(&q.lock);
}

static item_t q_take(void)
{
    pthread_mutex_lock(&q.lock);
    while (q.len == 0)
        pthread_cond_wait(&q.more, &q.lock);
    item_t it = q.items[q.head];
    q.head = (q.head + 1) % QCAP;
    q.len--;
    pthread_cond_signal(&q.room);
    pthread_mutex_unlock(&q.lock);
    return it;
}

/* The rounds' end: every producer waits until the consumer freed the
 * round's messages, so a round's chunks are empty before the next. */
static pthread_barrier_t round_end;

static void *producer(void *arg)
{
    int64_t id = (int64_t)(intptr_t)arg;
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        return (void *)1;
    for (int r = 0; r < ROUNDS; r++) {
        for (int64_t i = 0; i < PER_ROUND; i++) {
            int64_t seq = (int64_t)r * PER_ROUND + i;
            term_t *e, t, list;
            if (heap_make_tuple(&h, 3, &e, &t) != GD_OK ||
                heap_cons(&h, term_make_small(seq), TERM_NIL, &list) != GD_OK)
                return (void *)1;
            e[0] = term_make_small(id);
            e[1] = term_make_small(seq);
            e[2] = list;
            item_t it = {NULL, TERM_NIL, id, seq};
            if (heap_msg_copy(t, &it.frag, &it.msg) != GD_OK)
                return (void *)1;
            q_put(it);
            if ((i & 1023) == 0 && heap_gc(&h, 0, NULL, 0) != GD_OK)
                return (void *)1;
        }
        pthread_barrier_wait(&round_end);
        pthread_barrier_wait(&round_end);
    }
    heap_destroy(&h);
    return NULL;
}

static int64_t bad, taken;

static bool intact(const item_t *it)
{
    if (!term_is_tuple(it->msg) || term_tuple_arity(it->msg) != 3)
        return false;
    const term_t *e = term_tuple_elems(it->msg);
    return term_small_value(e[0]) == it->producer && term_small_value(e[1]) == it->seq &&
           term_is_list(e[2]) && term_small_value(term_car(e[2])) == it->seq &&
           term_cdr(e[2]) == TERM_NIL;
}

static void *consumer(void *arg)
{
    size_t *max_mapped = arg;
    for (int r = 0; r < ROUNDS; r++) {
        for (int n = 0; n < PRODUCERS * PER_ROUND; n++) {
            item_t it = q_take();
            if (!intact(&it))
                bad++;
            taken++;
            heap_frag_free(it.frag);
        }
        pthread_barrier_wait(&round_end);
        size_t m = heap_msg_slab_mapped_bytes();
        if (m > *max_mapped)
            *max_mapped = m;
        pthread_barrier_wait(&round_end);
    }
    return NULL;
}

static void test_fanin_traffic_reuses_and_returns(void)
{
    heap_msg_slab_trim();
    size_t mapped0 = heap_msg_slab_mapped_bytes();
    size_t maps0 = heap_msg_slab_maps_total();
    size_t max_mapped = 0;
    CU_ASSERT_EQUAL_FATAL(pthread_barrier_init(&round_end, NULL, PRODUCERS + 1), 0);
    pthread_t prod[PRODUCERS], cons;
    for (int i = 0; i < PRODUCERS; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&prod[i], NULL, producer, (void *)(intptr_t)i), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&cons, NULL, consumer, &max_mapped), 0);
    for (int i = 0; i < PRODUCERS; i++) {
        void *rc;
        pthread_join(prod[i], &rc);
        CU_ASSERT_PTR_NULL(rc);
    }
    pthread_join(cons, NULL);
    pthread_barrier_destroy(&round_end);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(taken, (int64_t)ROUNDS * PRODUCERS * PER_ROUND);

    /* A round is 40,000 messages of 11 words (fragment header, tuple,
     * cons), ~3.5 MB, 14 chunks, at most QCAP of them in flight.  Without
     * reuse the 30 rounds would map ~400 chunks; with it the emptied chunks
     * come back from the pool (measured: 5 in all). */
    size_t maps = heap_msg_slab_maps_total() - maps0;
    printf("\n    chunks mapped over %d rounds: %zu, peak mapped %zu KiB\n", ROUNDS, maps,
           max_mapped >> 10);
    CU_ASSERT(maps <= 3 * HEAP_MSG_SLAB_POOL_MAX);
    /* Bounded: at a round's end nothing is live, so what is mapped is the
     * pool and the producers' current chunks. */
    CU_ASSERT(max_mapped <= mapped0 + (HEAP_MSG_SLAB_POOL_MAX + PRODUCERS) * CHUNK);
    /* The producers exited (their current chunks went with their last
     * messages) and the idle trim leaves two pooled chunks. */
    heap_msg_slab_trim();
    CU_ASSERT(heap_msg_slab_mapped_bytes() <= mapped0 + HEAP_MSG_SLAB_IDLE_KEEP * CHUNK);
}

/* One message kept while many others come and go keeps its chunk only. */
static void test_kept_message_pins_one_chunk(void)
{
    heap_t h;
    OK(heap_init(&h, 0));
    term_t *e, t;
    OK(heap_make_tuple(&h, 2, &e, &t));
    e[0] = ATOM_OK;
    e[1] = term_make_small(42);
    heap_frag_t *kept;
    term_t kept_msg;
    OK(heap_msg_copy(t, &kept, &kept_msg));
    for (int i = 0; i < 200000; i++) {
        heap_frag_t *f;
        term_t m;
        OK(heap_msg_copy(t, &f, &m));
        heap_frag_free(f);
    }
    heap_msg_slab_thread_release();
    heap_msg_slab_trim();
    size_t with_kept = heap_msg_slab_mapped_bytes();
    CU_ASSERT(term_tuple_elems(kept_msg)[1] == term_make_small(42));
    heap_frag_free(kept);
    heap_msg_slab_trim();
    size_t without = heap_msg_slab_mapped_bytes();
    /* Its chunk was retired with one live message: freeing it empties the
     * chunk (pooled, or unmapped when the pool is full), nothing else
     * was held. */
    CU_ASSERT(with_kept <= without + CHUNK);
    CU_ASSERT(without <= HEAP_MSG_SLAB_IDLE_KEEP * CHUNK);
    heap_destroy(&h);
}

/* Bigger than a slab block: the area allocator, freed the same way. */
static void test_big_message_bypasses_slab(void)
{
    heap_t h;
    OK(heap_init(&h, 0));
    term_t list = TERM_NIL;
    for (int i = 0; i < 2000; i++)
        OK(heap_cons(&h, term_make_small(i), list, &list));
    heap_msg_slab_thread_release();
    heap_msg_slab_trim();
    size_t before = heap_msg_slab_maps_total();
    heap_frag_t *f;
    term_t m;
    OK(heap_msg_copy(list, &f, &m));
    CU_ASSERT_EQUAL(heap_msg_slab_maps_total(), before);
    /* A slab block would be a chunk's first, right after its header. */
    CU_ASSERT_NOT_EQUAL((uintptr_t)f & (CHUNK - 1), 64);
    CU_ASSERT(term_small_value(term_car(m)) == 1999);
    heap_frag_free(f);
    heap_destroy(&h);
}

static bool same(term_t a, term_t b)
{
    int order = 1;
    return heap_compare_checked(a, b, true, &order) == GD_OK && order == 0;
}

/* heap_msg_take: a small message moves onto the receiver's young area
 * (pointers shifted, refc binaries and their off-heap links with it), its
 * slab block freed; one too big for the room left is attached and asks
 * for a collection; a heap without a young area gets one. */
static void test_take_moves_onto_young_area(void)
{
    heap_t s, r;
    OK(heap_init(&s, 0));
    OK(heap_init(&r, 0));
    static uint8_t bytes[5000];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(i * 7);
    term_t bin, sub, list = TERM_NIL, t, *el;
    OK(heap_make_binary(&s, bytes, sizeof bytes, &bin));
    OK(heap_make_sub_binary(&s, bin, 8 * 100, 8 * 3000, &sub));
    for (int i = 0; i < 5; i++)
        OK(heap_cons(&s, term_make_small(i), list, &list));
    OK(heap_make_tuple(&s, 4, &el, &t));
    el[0] = bin;
    el[1] = sub;
    el[2] = list;
    el[3] = bin;
    heap_binary_t *b = (heap_binary_t *)(uintptr_t)term_boxed_ptr(bin)[2];
    CU_ASSERT_FATAL(header_subtag(term_boxed_ptr(bin)[0]) == HDR_REFC_BIN);

    for (int round = 0; round < 3; round++) {
        /* round 0: a young area with room; 1: a full one; 2: none yet. */
        heap_t *h = &r;
        heap_t fresh;
        if (round == 2) {
            OK(heap_init(&fresh, 0));
            h = &fresh;
        } else {
            term_t cell;
            OK(heap_cons(h, ATOM_OK, TERM_NIL, &cell));
            if (round == 1)
                CU_ASSERT_FATAL(heap_alloc(h, (size_t)(h->young_end - h->young_top)) != NULL);
        }
        heap_frag_t *f;
        term_t m;
        OK(heap_msg_copy(t, &f, &m));
        size_t refs = atomic_load(&b->refc);
        size_t mapped_total = heap_msg_slab_maps_total();
        term_t got = heap_msg_take(h, f, m);
        CU_ASSERT(same(got, t));
        CU_ASSERT_EQUAL(atomic_load(&b->refc), refs);
        const term_t *p = term_boxed_ptr(got);
        bool on_young = p >= h->young_start && p < h->young_top;
        CU_ASSERT_EQUAL(on_young, round != 1);
        CU_ASSERT_EQUAL(h->frags == NULL, round != 1);
        CU_ASSERT_EQUAL((h->gc_flags & HEAP_GCF_WANTED) != 0, round == 1);
        /* The REFC_BIN copy is on the receiver's off-heap list (or its fragment's). */
        size_t on_list = 0;
        for (term_t *o = round == 1 ? h->frags->offheap_first : h->offheap_first; o != NULL;
             o = offheap_next(o))
            on_list += offheap_binary(o) == b;
        CU_ASSERT(on_list >= 1);
        CU_ASSERT_EQUAL(heap_msg_slab_maps_total(), mapped_total);
        /* A collection keeps it intact; dropping it drops its references. */
        term_t *roots[] = {&got};
        OK(heap_gc(h, 0, roots, 1));
        CU_ASSERT(h->frags == NULL);
        CU_ASSERT(same(got, t));
        CU_ASSERT(term_small_value(term_car(term_tuple_elems(got)[2])) == 4);
        got = TERM_NIL;
        OK(heap_gc(h, 0, roots, 1));
        CU_ASSERT_EQUAL(atomic_load(&b->refc), refs - 1);
        if (round == 2)
            heap_destroy(&fresh);
    }
    CU_ASSERT_EQUAL(atomic_load(&b->refc), 1);
    heap_destroy(&r);
    heap_destroy(&s);
}

static const gd_test_case_t cases[] = {
    {"fanin traffic: freed chunks reused, mapped bytes bounded, returned when idle",
     test_fanin_traffic_reuses_and_returns},
    {"a message kept alive pins its chunk only", test_kept_message_pins_one_chunk},
    {"a big message bypasses the slab", test_big_message_bypasses_slab},
    {"a received small message moves onto the young area", test_take_moves_onto_young_area},
    {NULL, NULL},
};

GD_TEST_MAIN("heap_msgslab", cases)
