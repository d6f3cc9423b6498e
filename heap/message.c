/*
 * message.c — message bodies: a term copied into a heap fragment that the
 * message owns, built by the sender without touching the receiver's heap,
 * then handed to the receiver's heap: a small one (a slab block) moved onto
 * its young area at once (heap_msg_take, so an idle receiver does not keep
 * a slab chunk mapped), others attached (heap_attach_frag) for the
 * collector to merge at the next collection.
 */
#include <stdlib.h>
#include <string.h>

#include "gc_internal.h"

void heap_offheap_release(term_t *first)
{
    while (first != NULL) {
        term_t *next = offheap_next(first);
        heap_binary_unref(offheap_binary(first));
        first = next;
    }
}

/* A fragment of exactly `words` words, all in use, carrying `carry` more. */
static heap_frag_t *frag_new(size_t words, size_t carry)
{
    heap_frag_t *f = heap_frag_new_msg(words, carry);
    if (f != NULL)
        f->used = words;
    return f;
}

/* Sizes `n` terms, creates a fragment with `extra` words in front of their
 * copies, and copies them to outs[] (NULL: to the fragment's words 1..n,
 * the elements of a tuple whose header the caller writes at word 0). */
static int copy_to_frag(const term_t *terms, size_t n, size_t extra, size_t carry,
                        heap_frag_t **frag_out, term_t *outs)
{
    size_t words;
    int rc = heap_copy_size_n(terms, n, &words);
    if (rc != GD_OK)
        return rc;
    if (words > HEAP_COPY_MAX_WORDS - extra)
        return GD_ESYSTEM_LIMIT;
    heap_frag_t *f = frag_new(extra + words, carry);
    if (f == NULL)
        return GD_ENOMEM;
    heap_copy_dest_t dest = {f->words + extra, f->words + extra + words, &f->offheap_first,
                             &f->offheap_bytes};
    rc = heap_copy_write_n(terms, n, outs != NULL ? outs : f->words + 1, &dest);
    if (rc != GD_OK) {
        heap_frag_free(f);
        return rc;
    }
    GD_ASSERT(dest.hp == dest.hend);
    *frag_out = f;
    return GD_OK;
}

int heap_msg_copy(term_t t, heap_frag_t **frag_out, term_t *out)
{
    if (term_is_immediate(t)) {
        *frag_out = NULL;
        *out = t;
        return GD_OK;
    }
    return copy_to_frag(&t, 1, 0, 0, frag_out, out);
}

int heap_msg_copy_carry(term_t t, size_t carry_bytes, heap_frag_t **frag_out, term_t *out,
                        void **carry_out)
{
    *carry_out = NULL;
    if (term_is_immediate(t)) {
        *frag_out = NULL;
        *out = t;
        return GD_OK;
    }
    size_t carry = (carry_bytes + sizeof(term_t) - 1) / sizeof(term_t);
    int rc = copy_to_frag(&t, 1, 0, carry, frag_out, out);
    if (rc == GD_OK)
        *carry_out = (*frag_out)->words + (*frag_out)->capacity;
    return rc;
}

int heap_msg_copy_tuple(const term_t *elems, size_t n, heap_frag_t **frag_out, term_t *out)
{
    if (n > HEAP_COPY_MAX_WORDS)
        return GD_ESYSTEM_LIMIT;
    heap_frag_t *f;
    int rc = copy_to_frag(elems, n, 1 + n, 0, &f, NULL);
    if (rc != GD_OK)
        return rc;
    f->words[0] = heap_make_header(HDR_TUPLE, n);
    *frag_out = f;
    *out = term_make_boxed(f->words);
    return GD_OK;
}

int heap_msg_build_init(heap_t *h)
{
    int rc = heap_init(h, 0);
    if (rc == GD_OK)
        h->gc_flags = HEAP_GCF_FRAGS_ONLY; /* never collected: no stress either */
    return rc;
}

heap_frag_t *heap_msg_build_take(heap_t *h)
{
    GD_ASSERT(h->gc_flags & HEAP_GCF_FRAGS_ONLY);
    heap_frag_t *chain = h->frags;
    if (chain != NULL) {
        /* heap_offheap_link put the binaries on the heap's list: the chain
         * carries it from now on (heap_frag_free, the collector). */
        GD_ASSERT(chain->offheap_first == NULL);
        chain->offheap_first = h->offheap_first;
        chain->offheap_bytes = h->offheap_bytes;
    } else {
        GD_ASSERT(h->offheap_first == NULL);
    }
    h->frags = NULL;
    h->frag_words = h->frag_capacity = 0;
    h->offheap_first = NULL;
    h->offheap_bytes = 0;
    return chain;
}

static void attach_one(heap_t *h, heap_frag_t *frag)
{
    /* Keep an overflow fragment with room at the head: heap_alloc_slow
     * only tries the first one. */
    heap_frag_t *head = h->frags;
    if (head != NULL && head->used < head->capacity) {
        frag->next = head->next;
        head->next = frag;
    } else {
        frag->next = head;
        h->frags = frag;
    }
    h->frag_words += frag->used;
    h->frag_capacity += frag->capacity;
    h->offheap_bytes += frag->offheap_bytes;
    /* Messages piling up in fragments are merged once they match the young
     * area in size, even if the process allocates little itself. */
    if (h->frag_words >= (size_t)(h->young_end - h->young_start))
        h->gc_flags |= HEAP_GCF_WANTED;
}

void heap_attach_frag(heap_t *h, heap_frag_t *frag)
{
    while (frag != NULL) {
        heap_frag_t *next = frag->next;
        attach_one(h, frag);
        frag = next;
    }
}

/* Moves the terms of a one-fragment message into words [to, to + used) of
 * h's young area: a copy of the words, then every pointer into the
 * fragment shifted by the distance (raw words are stepped over, as the
 * collector does), the REFC_BIN objects handed to h's off-heap list. */
static term_t move_to_young(heap_t *h, heap_frag_t *frag, term_t t, term_t *to)
{
    size_t n = frag->used;
    const term_t *from = frag->words;
    memcpy(to, from, n * sizeof(term_t));
    uintptr_t lo = (uintptr_t)from, bytes = n * sizeof(term_t);
    term_t delta = (term_t)((uintptr_t)to - lo);
#define MOVE_RELOC(w)                                                                              \
    do {                                                                                           \
        term_t w_ = (w);                                                                           \
        if ((term_is_list(w_) || term_is_boxed(w_)) &&                                             \
            (uintptr_t)(w_ & ~(term_t)TAG_PRIMARY_MASK) - lo < bytes)                              \
            (w) = w_ + delta;                                                                      \
    } while (0)
    for (term_t *p = to; p < to + n;) {
        if (term_primary(*p) == TAG_PRIMARY_HEADER) {
            p += 1 + heap_boxed_raw_words(*p);
        } else {
            MOVE_RELOC(*p);
            p++;
        }
    }
    MOVE_RELOC(t);
#undef MOVE_RELOC
    /* The fragment's binaries, moved: their list links are raw words, so
     * they are shifted here; the list goes in front of h's (young first). */
    term_t *first = frag->offheap_first;
    if (first != NULL) {
        term_t *obj = (term_t *)((uintptr_t)first + (uintptr_t)delta);
        first = obj;
        for (;;) {
            term_t *next = offheap_next(obj);
            if (next == NULL)
                break;
            next = (term_t *)((uintptr_t)next + (uintptr_t)delta);
            offheap_set_next(obj, next);
            obj = next;
        }
        offheap_set_next(obj, h->offheap_first);
        h->offheap_first = first;
        h->offheap_bytes += frag->offheap_bytes;
        frag->offheap_first = NULL; /* the references moved with the objects */
    }
    return t;
}

term_t heap_msg_take(heap_t *h, heap_frag_t *frag, term_t t)
{
    if (frag == NULL)
        return t;
    /* A single slab fragment (heap_msg_copy*: every word in use, its
     * pointers all inside it) and room in the young area, or none yet:
     * the words move onto the heap and the slab block is freed now. */
    if (frag->next == NULL && frag->storage == FRAG_SLAB && frag->used > 0 &&
        !(h->gc_flags & HEAP_GCF_FRAGS_ONLY) &&
        ((size_t)(h->young_end - h->young_top) >= frag->used ||
         h->young_start == heap_no_young_area)) {
        /* From the young area: it has the room, or heap_alloc_slow
         * creates it (NULL only when it cannot). */
        term_t *to = heap_alloc(h, frag->used);
        if (to != NULL) {
            t = move_to_young(h, frag, t, to);
            heap_frag_release_storage(frag);
            return t;
        }
    }
    bool slab = frag->storage == FRAG_SLAB;
    heap_attach_frag(h, frag);
    /* A young area too full for it: collect at the next safe point, which
     * the next allocation would soon do anyway, rather than let an idle
     * process keep a slab chunk mapped for one message. */
    if (slab && !(h->gc_flags & HEAP_GCF_FRAGS_ONLY))
        h->gc_flags |= HEAP_GCF_WANTED;
    return t;
}
