/*
 * test_node.c — the local node's identity (set before first use, then
 * frozen), and the local forms of pids, ports and references built from
 * it: the constructors turn this node's identifiers into the local forms,
 * refuse numbers outside OTP 25's local ranges (never aliasing a live
 * local pid), widen short references to 3 words, and comparison, the
 * internal hash, phash2, copying and collection treat both spellings as
 * one.  The identity is process-global: the first test sets it.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cunit_main.h"
#include "heap.h"
#include "termgen_util.h"

#define OK(call) CU_ASSERT_EQUAL_FATAL((call), GD_OK)

#define CREATION 0x01020304u

static term_t me;

static void test_identity_set_once(void)
{
    me = heap_atom("girder@host");
    CU_ASSERT_FATAL(me != TERM_NONE);
    CU_ASSERT_EQUAL(heap_node_identity_set(term_make_small(1), 1), GD_EINVAL);
    /* Before first use: may be set (and set again). */
    OK(heap_node_identity_set(ATOM_OK, 9));
    OK(heap_node_identity_set(me, CREATION));
    CU_ASSERT_EQUAL(heap_node_name(), me);
    CU_ASSERT_EQUAL(heap_node_creation(), CREATION);
    /* Used: frozen, so hashes of local identifiers never change. */
    CU_ASSERT_EQUAL(heap_node_identity_set(ATOM_NONODE, 0), GD_EALREADY);
    CU_ASSERT_EQUAL(heap_node_name(), me);
    CU_ASSERT_EQUAL(heap_node_creation(), CREATION);
}

static void test_local_forms(void)
{
    heap_t h;
    OK(heap_init(&h, 0));
    term_t t;
    OK(heap_make_ext_pid(&h, me, 5, 6, CREATION, &t));
    CU_ASSERT(t == term_make_local_pid(5, 6));
    OK(heap_make_ext_port(&h, me, 77, CREATION, &t));
    CU_ASSERT(t == term_make_local_port(77));
    uint32_t w[3] = {0x3FFFF, 0xFFFFFFFF, 9};
    OK(heap_make_ref(&h, me, CREATION, w, 3, &t));
    CU_ASSERT_FATAL(term_is_local_ref(t) && term_is_ref(t));
    CU_ASSERT_EQUAL(header_arity(*term_boxed_ptr(t)), 2); /* 3 words, no node word */
    heap_ident_t id;
    heap_ident(t, &id);
    CU_ASSERT(id.node == me && id.creation == CREATION && id.nwords == 3 &&
              id.words[0] == 0x3FFFF && id.words[1] == 0xFFFFFFFF && id.words[2] == 9);
    /* The same numbers under another creation or node: external forms. */
    OK(heap_make_ext_pid(&h, me, 5, 6, CREATION + 1, &t));
    CU_ASSERT(term_is_ext_pid(t));
    OK(heap_make_ext_pid(&h, ATOM_NONODE, 5, 6, CREATION, &t));
    CU_ASSERT(term_is_ext_pid(t));
    OK(heap_make_ref(&h, ATOM_NONODE, 0, w, 3, &t));
    CU_ASSERT(term_is_boxed_of(t, HDR_REF));
    heap_destroy(&h);
}

/* OTP 25: binary_to_term of this node's identifiers with numbers outside
 * the local ranges is badarg (checked against erl by
 * tests/interop/node_identity_interop.sh). */
static void test_out_of_range(void)
{
    heap_t h;
    OK(heap_init(&h, 0));
    term_t t = TERM_NONE;
    CU_ASSERT_EQUAL(heap_make_ext_pid(&h, me, 0xFFFFFFFF, 0x8000, CREATION, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_ext_pid(&h, me, 0x8000, 0, CREATION, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_ext_pid(&h, me, 0, 0x2000, CREATION, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_ext_port(&h, me, 0x10000000, CREATION, &t), GD_EBADARG);
    uint32_t big0[3] = {0x40000, 0, 0}, four[4] = {1, 0, 0, 0};
    CU_ASSERT_EQUAL(heap_make_ref(&h, me, CREATION, big0, 3, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_ref(&h, me, CREATION, four, 4, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_ref(&h, me, CREATION, four, 0, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(t, TERM_NONE);
    CU_ASSERT_EQUAL(heap_used_words(&h), 0);
    /* The largest local numbers are fine. */
    OK(heap_make_ext_pid(&h, me, 0x7FFF, 0x1FFF, CREATION, &t));
    CU_ASSERT(t == term_make_local_pid(0x7FFF, 0x1FFF));
    heap_destroy(&h);
}

/* A peer may send any 32-bit id and serial: under another creation it
 * stays exact and never equals the live local pid whose low bits it
 * shares (the old immediate truncated the serial to 28 bits). */
static void test_no_alias(void)
{
    heap_t h;
    OK(heap_init(&h, 0));
    term_t live = term_make_local_pid(1, 0), peer = TERM_NONE;
    CU_ASSERT_EQUAL(heap_make_ext_pid(&h, me, 1, 1u << 28, CREATION, &peer), GD_EBADARG);
    CU_ASSERT_EQUAL(peer, TERM_NONE);
    OK(heap_make_ext_pid(&h, me, 1, 1u << 28, CREATION + 1, &peer));
    CU_ASSERT(term_is_ext_pid(peer));
    heap_ident_t id;
    heap_ident(peer, &id);
    CU_ASSERT(id.words[0] == 1 && id.words[1] == 1u << 28);
    CU_ASSERT(!tg_equal_exact(peer, live));
    CU_ASSERT(tg_hash(peer) != tg_hash(live));
    heap_destroy(&h);
}

/* Term order and hashes: a local identifier is this node's, so it sorts
 * with the node's name among external ones (pids: serial, number, then
 * node name and creation; refs and ports: node first). */
static void test_order_and_hash(void)
{
    heap_t h;
    OK(heap_init(&h, 0));
    term_t a_node = heap_atom("a@host"), z_node = heap_atom("z@host"), t;
    term_t local = term_make_local_pid(5, 0);
    OK(heap_make_ext_pid(&h, a_node, 5, 0, 1, &t));
    CU_ASSERT_EQUAL(tg_compare(local, t, true), 1); /* 'girder@host' > 'a@host' */
    OK(heap_make_ext_pid(&h, z_node, 5, 0, 1, &t));
    CU_ASSERT_EQUAL(tg_compare(local, t, true), -1);
    OK(heap_make_ext_pid(&h, z_node, 4, 0, 1, &t));
    CU_ASSERT_EQUAL(tg_compare(local, t, true), 1); /* number before node */
    uint32_t w[3] = {1, 2, 3};
    term_t lref, aref;
    OK(heap_make_ref(&h, me, CREATION, w, 3, &lref));
    OK(heap_make_ref(&h, a_node, 1, w, 3, &aref));
    CU_ASSERT_EQUAL(tg_compare(lref, aref, true), 1);
    /* Widened: the 2-word ref equals the 3-word one with a zero word. */
    uint32_t w2[2] = {125300, 0xFFFFFFFF}, w3[3] = {125300, 0xFFFFFFFF, 0};
    term_t r2, r3;
    OK(heap_make_ref(&h, me, CREATION, w2, 2, &r2));
    OK(heap_make_ref(&h, me, CREATION, w3, 3, &r3));
    CU_ASSERT(tg_equal_exact(r2, r3));
    CU_ASSERT_EQUAL(tg_hash(r2), tg_hash(r3));
    uint32_t p2 = 0, p3 = 1;
    OK(heap_phash2(r2, 0, &p2));
    OK(heap_phash2(r3, 0, &p3));
    CU_ASSERT_EQUAL(p2, p3);
    heap_destroy(&h);
}

/* Local refs survive copying (messages) and collection unchanged. */
static void test_copy_and_gc(void)
{
    heap_t h, other;
    OK(heap_init(&h, 0));
    OK(heap_init(&other, 0));
    uint32_t w[3] = {7, 8, 9};
    term_t ref, tup, *e;
    OK(heap_make_local_ref(&h, w, &ref));
    OK(heap_make_tuple(&h, 3, &e, &tup));
    e[0] = ref;
    e[1] = term_make_local_pid(3, 4);
    e[2] = term_make_local_port(5);
    term_t copy;
    OK(heap_copy_term(&other, tup, &copy));
    CU_ASSERT(tg_equal_exact(copy, tup));
    term_t *roots[] = {&copy};
    OK(heap_gc(&other, 0, roots, 1));
    CU_ASSERT(term_is_local_ref(term_tuple_elems(copy)[0]));
    CU_ASSERT(tg_equal_exact(copy, tup));
    heap_destroy(&other);
    heap_destroy(&h);
}

static const gd_test_case_t cases[] = {
    {"identity set once, before use", test_identity_set_once}, /* must run first */
    {"this node's identifiers take the local forms", test_local_forms},
    {"numbers outside the local ranges are refused", test_out_of_range},
    {"a peer's 32-bit pid never aliases a local one", test_no_alias},
    {"order and hashes of local identifiers", test_order_and_hash},
    {"local refs copied and collected", test_copy_and_gc},
    {NULL, NULL},
};

GD_TEST_MAIN("heap_node", cases)
