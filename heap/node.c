/*
 * node.c — the local node's identity (name atom and creation), set once
 * before the first process and read by everything that gives a local pid,
 * port or reference its node.
 *
 * Reads are hot (every comparison, hash and encoding of a local
 * identifier), so they are two plain acquire loads plus a load of the
 * frozen flag; only the first read stores (it freezes the identity).
 */
#include "heap.h"

/* The name (an atom word) and creation; written by heap_node_identity_set
 * under the set lock before `frozen`, read with acquire. */
static _Atomic term_t node_name =
    ((term_t)HEAP_ATOM_INDEX_NONODE << TAG_IMMED2_SIZE) | TAG_IMMED2_ATOM; /* ATOM_NONODE */
static _Atomic uint32_t node_creation;
/* Set by the first read: from then on the identity never changes. */
static atomic_bool frozen;
/* Serialises setters with each other and with the freezing read, so a set
 * either completes before the identity is first used or fails. */
static atomic_flag set_lock = ATOMIC_FLAG_INIT;

static void lock_set(void)
{
    while (atomic_flag_test_and_set_explicit(&set_lock, memory_order_acquire))
        ;
}

static void unlock_set(void)
{
    atomic_flag_clear_explicit(&set_lock, memory_order_release);
}

/*
 * Sets the local node's name and creation.  Only before the identity was
 * first read (heap_node_name / heap_node_creation, which every operation on
 * a local identifier calls): afterwards GD_EALREADY, so hashes and the
 * order of local identifiers never change under live maps.  GD_EINVAL if
 * name is not an atom.  O(1).
 */
int heap_node_identity_set(term_t name, uint32_t creation)
{
    if (!term_is_atom(name))
        return GD_EINVAL;
    lock_set();
    int rc = GD_EALREADY;
    if (!atomic_load_explicit(&frozen, memory_order_acquire)) {
        /* release: pairs with the acquire loads in the readers. */
        atomic_store_explicit(&node_name, name, memory_order_release);
        atomic_store_explicit(&node_creation, creation, memory_order_release);
        rc = GD_OK;
    }
    unlock_set();
    return rc;
}

/* Freezes the identity at its first use (the only store on the read path,
 * taken once). */
static inline void freeze(void)
{
    if (GD_UNLIKELY(!atomic_load_explicit(&frozen, memory_order_acquire))) {
        lock_set();
        atomic_store_explicit(&frozen, true, memory_order_release);
        unlock_set();
    }
}

/* The local node's name atom ('nonode@nohost' unless set); freezes the
 * identity. */
term_t heap_node_name(void)
{
    freeze();
    return atomic_load_explicit(&node_name, memory_order_acquire);
}

/* The local node's creation (0 unless set); freezes the identity. */
uint32_t heap_node_creation(void)
{
    freeze();
    return atomic_load_explicit(&node_creation, memory_order_acquire);
}
