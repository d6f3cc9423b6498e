/*
 * registry.c — the local name registry: atom → pid, one table for the node
 * behind one mutex (registrations are rare next to sends; a send by name
 * holds the lock only for the lookup).
 */
#include <stdlib.h>

#include "internal.h"

typedef struct reg_entry {
    term_t name; /* TERM_NONE: empty */
    term_t pid;
} reg_entry_t;

static struct {
    pthread_mutex_t lock;
    reg_entry_t *e;
    size_t cap; /* power of two */
    size_t n;
    term_t undefined;
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER};

#define REG_MIN_CAP 64

static size_t slot_of(term_t name, size_t cap)
{
    uint64_t h = name * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & (cap - 1);
}

static reg_entry_t *table_new(size_t cap)
{
    reg_entry_t *e = malloc(cap * sizeof *e);
    if (e != NULL)
        for (size_t i = 0; i < cap; i++)
            e[i].name = TERM_NONE;
    return e;
}

int registry_init(void)
{
    int rc = heap_atom_put("undefined", 9, &reg.undefined);
    if (rc != GD_OK)
        return rc;
    reg.e = table_new(REG_MIN_CAP);
    if (reg.e == NULL)
        return GD_ENOMEM;
    reg.cap = REG_MIN_CAP;
    reg.n = 0;
    return GD_OK;
}

void registry_free(void)
{
    free(reg.e);
    reg.e = NULL;
    reg.cap = reg.n = 0;
}

/* Index of name's entry or of the empty slot where it would go (locked). */
static size_t find(term_t name)
{
    size_t i = slot_of(name, reg.cap);
    while (reg.e[i].name != TERM_NONE && reg.e[i].name != name)
        i = (i + 1) & (reg.cap - 1);
    return i;
}

/* Removes entry i, shifting later entries of its probe run back (no
 * tombstones, so lookups stay short after many unregisters). */
static void remove_at(size_t i)
{
    size_t mask = reg.cap - 1;
    reg.e[i].name = TERM_NONE;
    reg.n--;
    for (size_t j = (i + 1) & mask; reg.e[j].name != TERM_NONE; j = (j + 1) & mask) {
        size_t home = slot_of(reg.e[j].name, reg.cap);
        /* Entry j may move to the hole i if its home is not within (i, j]. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            reg.e[i] = reg.e[j];
            reg.e[j].name = TERM_NONE;
            i = j;
        }
    }
}

static int grow(void)
{
    size_t cap = reg.cap * 2;
    reg_entry_t *e = table_new(cap);
    if (e == NULL)
        return GD_ENOMEM;
    reg_entry_t *old = reg.e;
    size_t old_cap = reg.cap;
    reg.e = e;
    reg.cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].name != TERM_NONE)
            reg.e[find(old[i].name)] = old[i];
    free(old);
    return GD_OK;
}

/* The name pid holds (locked), or TERM_NONE.  O(capacity). */
static term_t name_of(term_t pid)
{
    for (size_t i = 0; i < reg.cap; i++)
        if (reg.e[i].name != TERM_NONE && reg.e[i].pid == pid)
            return reg.e[i].name;
    return TERM_NONE;
}

int sched_register(sched_ctx_t *ctx, term_t name)
{
    if (!term_is_atom(name) || name == reg.undefined)
        return GD_EBADARG;
    int rc = GD_OK;
    pthread_mutex_lock(&reg.lock);
    size_t i = find(name);
    if (reg.e[i].name != TERM_NONE ||
        (ctx->name != TERM_NIL && reg.e[find(ctx->name)].name == ctx->name &&
         reg.e[find(ctx->name)].pid == ctx->pid)) {
        rc = SCHED_ENAME_TAKEN;
        goto out;
    }
    if ((reg.n + 1) * 2 > reg.cap) {
        rc = grow();
        if (rc != GD_OK)
            goto out;
        i = find(name);
    }
    reg.e[i].name = name;
    reg.e[i].pid = ctx->pid;
    reg.n++;
    ctx->name = name;
out:
    pthread_mutex_unlock(&reg.lock);
    return rc;
}

int sched_unregister(term_t name)
{
    if (!term_is_atom(name))
        return GD_EBADARG;
    int rc = SCHED_ENOPROC;
    pthread_mutex_lock(&reg.lock);
    if (reg.e != NULL) {
        size_t i = find(name);
        if (reg.e[i].name == name) {
            remove_at(i);
            rc = GD_OK;
        }
    }
    pthread_mutex_unlock(&reg.lock);
    return rc;
}

void registry_remove_if(term_t name, term_t pid)
{
    pthread_mutex_lock(&reg.lock);
    size_t i = find(name);
    if (reg.e[i].name == name && reg.e[i].pid == pid)
        remove_at(i);
    pthread_mutex_unlock(&reg.lock);
}

term_t sched_whereis(term_t name)
{
    term_t pid = reg.undefined;
    pthread_mutex_lock(&reg.lock);
    if (reg.e != NULL && term_is_atom(name)) {
        size_t i = find(name);
        if (reg.e[i].name == name)
            pid = reg.e[i].pid;
    }
    pthread_mutex_unlock(&reg.lock);
    return pid;
}

term_t sched_registered_name(term_t pid)
{
    pthread_mutex_lock(&reg.lock);
    term_t name = reg.e != NULL ? name_of(pid) : TERM_NONE;
    pthread_mutex_unlock(&reg.lock);
    return name == TERM_NONE ? TERM_NIL : name;
}
