/*
 * registry.c — the names epmd knows: live registrations (newest first, for
 * NAMES) and remembered old names (oldest first, capped) whose creation
 * counter is bumped when the name comes back, as OTP's node_reg2 does.
 * One hash table indexes both, so a lookup costs O(name) however many
 * thousands of nodes are registered.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_INITIAL_BUCKETS 64
/* Creation counters below this are reserved (OTP's bump_creation). */
#define MIN_CREATION 4
/* Longest formatted tail of a NAMES/DUMP line (numbers and punctuation). */
#define LINE_TAIL_MAX 64

typedef struct node_list {
    epmd_node_t *head;
    epmd_node_t *tail;
    unsigned count;
} node_list_t;

struct epmd_node {
    epmd_node_t *hash_next;
    epmd_node_t *prev; /* in the live or the unused list */
    epmd_node_t *next;
    uint64_t hash;
    bool live;
    void *owner;
    int fd;
    uint32_t cr_counter;
    uint16_t port;
    uint8_t node_type;
    uint8_t protocol;
    uint16_t high_vsn;
    uint16_t low_vsn;
    uint16_t name_len;
    uint16_t extra_len;
    uint8_t *extra;  /* points into bytes[] after the name */
    uint8_t bytes[]; /* name, NUL, extra */
};

struct epmd_registry {
    epmd_node_t **buckets;
    size_t nbuckets;    /* power of two */
    size_t nentries;    /* live + unused */
    node_list_t live;   /* newest at head */
    node_list_t unused; /* oldest at head */
    unsigned max_unreg;
    unsigned max_nodes;
    uint64_t seed;
};

static uint64_t hash_name(uint64_t seed, const uint8_t *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed; /* FNV-1a, seeded */
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

static void list_push_head(node_list_t *l, epmd_node_t *n)
{
    n->prev = NULL;
    n->next = l->head;
    if (l->head)
        l->head->prev = n;
    else
        l->tail = n;
    l->head = n;
    l->count++;
}

static void list_push_tail(node_list_t *l, epmd_node_t *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
    l->count++;
}

static void list_remove(node_list_t *l, epmd_node_t *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
    l->count--;
}

int epmd_registry_new(unsigned max_unreg, unsigned max_nodes, uint64_t seed, epmd_registry_t **out)
{
    *out = NULL;
    epmd_registry_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return EPMD_ENOMEM;
    r->buckets = calloc(HASH_INITIAL_BUCKETS, sizeof *r->buckets);
    if (r->buckets == NULL) {
        free(r);
        return EPMD_ENOMEM;
    }
    r->nbuckets = HASH_INITIAL_BUCKETS;
    r->max_unreg = max_unreg;
    r->max_nodes = max_nodes;
    r->seed = seed;
    *out = r;
    return 0;
}

void epmd_registry_free(epmd_registry_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nbuckets; i++) {
        epmd_node_t *n = r->buckets[i];
        while (n) {
            epmd_node_t *next = n->hash_next;
            free(n);
            n = next;
        }
    }
    free(r->buckets);
    free(r);
}

static epmd_node_t *find(const epmd_registry_t *r, const uint8_t *name, size_t len, uint64_t h)
{
    for (epmd_node_t *n = r->buckets[h & (r->nbuckets - 1)]; n; n = n->hash_next)
        if (n->hash == h && n->name_len == len && memcmp(n->bytes, name, len) == 0)
            return n;
    return NULL;
}

static void hash_unlink(epmd_registry_t *r, epmd_node_t *node)
{
    epmd_node_t **pp = &r->buckets[node->hash & (r->nbuckets - 1)];
    while (*pp != node)
        pp = &(*pp)->hash_next;
    *pp = node->hash_next;
    r->nentries--;
}

/* grow doubles the bucket array; on allocation failure the table simply
 * stays denser (still correct). */
static void grow(epmd_registry_t *r)
{
    size_t nb = r->nbuckets * 2;
    epmd_node_t **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return;
    for (size_t i = 0; i < r->nbuckets; i++) {
        epmd_node_t *n = r->buckets[i];
        while (n) {
            epmd_node_t *next = n->hash_next;
            n->hash_next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
            n = next;
        }
    }
    free(r->buckets);
    r->buckets = b;
    r->nbuckets = nb;
}

static void bump_creation(epmd_node_t *n)
{
    if (++n->cr_counter < MIN_CREATION)
        n->cr_counter = MIN_CREATION;
}

static uint32_t creation_of(const epmd_node_t *n)
{
    return n->high_vsn >= 6 ? n->cr_counter : n->cr_counter % 3 + 1;
}

/* forget_oldest_unused drops the oldest remembered name. */
static void forget_oldest_unused(epmd_registry_t *r)
{
    epmd_node_t *old = r->unused.head;
    list_remove(&r->unused, old);
    hash_unlink(r, old);
    free(old);
}

int epmd_registry_register(epmd_registry_t *r, const epmd_request_t *req, void *owner, int fd,
                           uint32_t now, epmd_node_t **node, uint32_t *creation)
{
    *node = NULL;
    *creation = 0;
    if (req->name_len == 0 || req->name_len > EPMD_MAX_NAME_BYTES)
        return EPMD_EREFUSED;
    int chars = epmd_utf8_chars(req->name, req->name_len);
    if (chars < 0 || chars > EPMD_MAX_NAME_CHARS)
        return EPMD_EREFUSED;
    if (req->extra_len > EPMD_MAX_EXTRA_BYTES)
        return EPMD_EREFUSED;
    uint64_t h = hash_name(r->seed, req->name, req->name_len);
    epmd_node_t *old = find(r, req->name, req->name_len, h);
    if (old != NULL && old->live)
        return EPMD_EREFUSED;
    if (r->live.count >= r->max_nodes)
        return EPMD_EREFUSED;

    /* A fresh allocation each time: the extra may have a new length. */
    size_t bytes = (size_t)req->name_len + 1 + req->extra_len;
    epmd_node_t *n = malloc(sizeof *n + bytes);
    if (n == NULL)
        return EPMD_ENOMEM;
    memset(n, 0, sizeof *n);
    if (old != NULL) {
        n->cr_counter = old->cr_counter;
        list_remove(&r->unused, old);
        hash_unlink(r, old);
        free(old);
    } else {
        n->cr_counter = now;
    }
    bump_creation(n);
    n->hash = h;
    n->live = true;
    n->owner = owner;
    n->fd = fd;
    n->port = req->port;
    n->node_type = req->node_type;
    n->protocol = req->protocol;
    n->high_vsn = req->high_vsn;
    n->low_vsn = req->low_vsn;
    n->name_len = (uint16_t)req->name_len;
    n->extra_len = (uint16_t)req->extra_len;
    memcpy(n->bytes, req->name, req->name_len);
    n->bytes[req->name_len] = '\0';
    n->extra = n->bytes + req->name_len + 1;
    if (req->extra_len)
        memcpy(n->extra, req->extra, req->extra_len);

    if (r->nentries >= r->nbuckets)
        grow(r);
    n->hash_next = r->buckets[h & (r->nbuckets - 1)];
    r->buckets[h & (r->nbuckets - 1)] = n;
    r->nentries++;
    list_push_head(&r->live, n);
    *node = n;
    *creation = creation_of(n);
    return 0;
}

void epmd_registry_unregister(epmd_registry_t *r, epmd_node_t *node)
{
    if (node == NULL || !node->live)
        return;
    list_remove(&r->live, node);
    node->live = false;
    node->owner = NULL;
    list_push_tail(&r->unused, node);
    /* The remembered names are bounded here, where they are added, at
     * max_unreg + 1 as before (OTP's count): many nodes going away at once
     * must not grow the list towards max_nodes (a fuzzer found that).
     * Callers drop their pointer to an unregistered node, so even the one
     * just added may go. */
    while (r->unused.count > r->max_unreg + 1)
        forget_oldest_unused(r);
}

int epmd_registry_unregister_name(epmd_registry_t *r, const uint8_t *name, size_t len, void **owner)
{
    *owner = NULL;
    epmd_node_t *n = find(r, name, len, hash_name(r->seed, name, len));
    if (n == NULL || !n->live)
        return EPMD_ENOTFOUND;
    *owner = n->owner;
    epmd_registry_unregister(r, n);
    return 0;
}

const epmd_node_t *epmd_registry_lookup(const epmd_registry_t *r, const uint8_t *name, size_t len)
{
    const epmd_node_t *n = find(r, name, len, hash_name(r->seed, name, len));
    return (n != NULL && n->live) ? n : NULL;
}

unsigned epmd_registry_count(const epmd_registry_t *r)
{
    return r->live.count;
}

unsigned epmd_registry_unused_count(const epmd_registry_t *r)
{
    return r->unused.count;
}

static int check_list(const epmd_registry_t *r, const node_list_t *l, bool live)
{
    unsigned count = 0;
    const epmd_node_t *prev = NULL;
    for (const epmd_node_t *n = l->head; n; prev = n, n = n->next) {
        if (n->prev != prev || n->live != live || ++count > r->nentries)
            return EPMD_EPROTO;
        if (find(r, n->bytes, n->name_len, n->hash) != n)
            return EPMD_EPROTO;
        if (n->hash != hash_name(r->seed, n->bytes, n->name_len))
            return EPMD_EPROTO;
        if (n->name_len == 0 || n->name_len > EPMD_MAX_NAME_BYTES ||
            n->extra_len > EPMD_MAX_EXTRA_BYTES || memchr(n->bytes, 0, n->name_len) != NULL)
            return EPMD_EPROTO;
    }
    if (l->tail != prev || count != l->count)
        return EPMD_EPROTO;
    return 0;
}

int epmd_registry_check(const epmd_registry_t *r)
{
    size_t in_hash = 0;
    for (size_t i = 0; i < r->nbuckets; i++)
        for (const epmd_node_t *n = r->buckets[i]; n; n = n->hash_next) {
            if ((n->hash & (r->nbuckets - 1)) != i || ++in_hash > r->nentries)
                return EPMD_EPROTO;
            /* names are unique across live and unused */
            for (const epmd_node_t *m = n->hash_next; m; m = m->hash_next)
                if (m->name_len == n->name_len && memcmp(m->bytes, n->bytes, n->name_len) == 0)
                    return EPMD_EPROTO;
        }
    if (in_hash != r->nentries || r->live.count + r->unused.count != r->nentries)
        return EPMD_EPROTO;
    if (r->live.count > r->max_nodes || r->unused.count > r->max_unreg + 1)
        return EPMD_EPROTO;
    if (check_list(r, &r->live, true) != 0 || check_list(r, &r->unused, false) != 0)
        return EPMD_EPROTO;
    return 0;
}

void epmd_node_info(const epmd_node_t *node, epmd_node_info_t *info)
{
    memset(info, 0, sizeof *info);
    info->port = node->port;
    info->node_type = node->node_type;
    info->protocol = node->protocol;
    info->high_vsn = node->high_vsn;
    info->low_vsn = node->low_vsn;
    memcpy(info->name, node->bytes, node->name_len);
    info->name[node->name_len] = '\0';
    info->extra_len = node->extra_len;
    memcpy(info->extra, node->extra, node->extra_len);
}

int epmd_registry_write_port2(const epmd_registry_t *r, const uint8_t *name, size_t len,
                              epmd_buf_t *out)
{
    const epmd_node_t *n = epmd_registry_lookup(r, name, len);
    if (n == NULL) {
        static const uint8_t notfound[2] = {EPMD_PORT2_RESP, 1};
        return epmd_buf_append(out, notfound, sizeof notfound);
    }
    uint8_t hdr[12];
    hdr[0] = EPMD_PORT2_RESP;
    hdr[1] = 0;
    epmd_put16(hdr + 2, n->port);
    hdr[4] = n->node_type;
    hdr[5] = n->protocol;
    epmd_put16(hdr + 6, n->high_vsn);
    epmd_put16(hdr + 8, n->low_vsn);
    epmd_put16(hdr + 10, n->name_len);
    uint8_t elen[2];
    epmd_put16(elen, n->extra_len);
    int rc = epmd_buf_append(out, hdr, sizeof hdr);
    if (rc == 0)
        rc = epmd_buf_append(out, n->bytes, n->name_len);
    if (rc == 0)
        rc = epmd_buf_append(out, elen, sizeof elen);
    if (rc == 0)
        rc = epmd_buf_append(out, n->extra, n->extra_len);
    return rc;
}

/* write_line appends prefix, the node's name and the formatted tail (plus
 * its NUL when nul is set). */
static int write_line(epmd_buf_t *out, const char *prefix, const epmd_node_t *n, const char *tail,
                      bool nul)
{
    int rc = epmd_buf_append(out, prefix, strlen(prefix));
    if (rc == 0)
        rc = epmd_buf_append(out, n->bytes, n->name_len);
    if (rc == 0)
        rc = epmd_buf_append(out, tail, strlen(tail) + (nul ? 1 : 0));
    return rc;
}

int epmd_registry_write_names(const epmd_registry_t *r, epmd_buf_t *out)
{
    char tail[LINE_TAIL_MAX];
    for (const epmd_node_t *n = r->live.head; n; n = n->next) {
        snprintf(tail, sizeof tail, " at port %u\n", (unsigned)n->port);
        int rc = write_line(out, "name ", n, tail, false);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int epmd_registry_write_dump(const epmd_registry_t *r, epmd_buf_t *out)
{
    char tail[LINE_TAIL_MAX];
    for (const epmd_node_t *n = r->live.head; n; n = n->next) {
        snprintf(tail, sizeof tail, "> at port %u, fd = %d\n", (unsigned)n->port, n->fd);
        int rc = write_line(out, "active name     <", n, tail, true);
        if (rc != 0)
            return rc;
    }
    for (const epmd_node_t *n = r->unused.head; n; n = n->next) {
        snprintf(tail, sizeof tail, ">, port = %u, fd = %d \n", (unsigned)n->port, n->fd);
        int rc = write_line(out, "old/unused name <", n, tail, true);
        if (rc != 0)
            return rc;
    }
    return 0;
}
