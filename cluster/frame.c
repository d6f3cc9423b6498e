/*
 * frame.c — the connected phase's frames (docs/protocol.md 4): splitting the
 * 4-byte-length stream, decoding ticks, pass-through frames, normal
 * distribution headers with the per-connection atom cache, and fragments;
 * and encoding outgoing messages (normal header with no cache refs, split
 * into fragments when long).  Pure: no sockets, no clock.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PASS_THROUGH 112
#define FRAG_HDR_LEN 18 /* 131 69|70 SequenceId:64 FragmentId:64 */

int dist_frame_split(const uint8_t *in, size_t len, size_t max, size_t *frame_len)
{
    if (len < 4)
        return 0;
    uint32_t n = get32(in);
    if (n > max)
        return DIST_ETOO_LARGE;
    *frame_len = n;
    return len - 4 < n ? 0 : 1;
}

bool dist_op_has_payload(int op)
{
    switch (op) {
    case DOP_SEND:
    case DOP_REG_SEND:
    case DOP_SEND_TT:
    case DOP_REG_SEND_TT:
    case DOP_SEND_SENDER:
    case DOP_SEND_SENDER_TT:
    case DOP_PAYLOAD_EXIT:
    case DOP_PAYLOAD_EXIT_TT:
    case DOP_PAYLOAD_EXIT2:
    case DOP_PAYLOAD_EXIT2_TT:
    case DOP_PAYLOAD_MONITOR_P_EXIT:
    case DOP_SPAWN_REQUEST:
    case DOP_SPAWN_REQUEST_TT:
    case DOP_ALIAS_SEND:
    case DOP_ALIAS_SEND_TT:
        return true;
    default:
        return false;
    }
}

/* The control tuple's arity for each operation (0: unknown operation). */
static size_t op_arity(int op)
{
    switch (op) {
    case DOP_LINK:
    case DOP_SEND:
    case DOP_UNLINK:
    case DOP_GROUP_LEADER:
    case DOP_SEND_SENDER:
    case DOP_PAYLOAD_EXIT:
    case DOP_PAYLOAD_EXIT2:
    case DOP_ALIAS_SEND:
        return 3;
    case DOP_EXIT:
    case DOP_REG_SEND:
    case DOP_EXIT2:
    case DOP_SEND_TT:
    case DOP_MONITOR_P:
    case DOP_DEMONITOR_P:
    case DOP_SEND_SENDER_TT:
    case DOP_PAYLOAD_EXIT_TT:
    case DOP_PAYLOAD_EXIT2_TT:
    case DOP_PAYLOAD_MONITOR_P_EXIT:
    case DOP_ALIAS_SEND_TT:
    case DOP_UNLINK_ID:
    case DOP_UNLINK_ID_ACK:
        return 4;
    case DOP_EXIT_TT:
    case DOP_REG_SEND_TT:
    case DOP_EXIT2_TT:
    case DOP_MONITOR_P_EXIT:
    case DOP_SPAWN_REPLY:
        return 5;
    case DOP_SPAWN_REQUEST:
    case DOP_SPAWN_REPLY_TT:
        return 6;
    case DOP_SPAWN_REQUEST_TT:
        return 7;
    default:
        return 0;
    }
}

int dist_rx_init(dist_rx_t *rx, const dist_rx_limits_t *lim)
{
    memset(rx, 0, sizeof *rx);
    for (size_t i = 0; i < DIST_ATOM_CACHE_SIZE; i++)
        rx->cache[i] = TERM_NONE;
    rx->lim.max_message = lim && lim->max_message ? lim->max_message : DIST_MAX_MESSAGE_DEFAULT;
    rx->lim.atom_quota = lim && lim->atom_quota ? lim->atom_quota : DIST_ATOM_QUOTA_DEFAULT;
    rx->lim.max_sequences =
        lim && lim->max_sequences ? lim->max_sequences : DIST_MAX_SEQUENCES_DEFAULT;
    rx->frags = calloc(rx->lim.max_sequences, sizeof *rx->frags);
    return rx->frags == NULL ? GD_ENOMEM : 0;
}

static void frag_drop(dist_rx_t *rx, dist_frag_t *f)
{
    rx->frag_bytes -= f->cap;
    /* A decoded message may still reference the buffer's binaries. */
    if (f->buf != NULL)
        heap_binary_unref(f->buf);
    memset(f, 0, sizeof *f);
}

void dist_rx_free(dist_rx_t *rx)
{
    if (rx->frags != NULL)
        for (size_t i = 0; i < rx->lim.max_sequences; i++)
            if (rx->frags[i].used)
                frag_drop(rx, &rx->frags[i]);
    free(rx->frags);
    rx->frags = NULL;
}

/* The atom for UTF-8 text from an authenticated peer: an existing atom is
 * free, a new one is charged to the connection's quota first (docs/architecture.md:
 * a peer over its quota loses its connection, the node keeps its table). */
static int peer_atom(dist_rx_t *rx, const uint8_t *text, size_t len, term_t *out)
{
    int rc = heap_atom_lookup((const char *)text, len, out);
    if (rc != GD_EATOM_NOT_FOUND)
        return rc < 0 ? DIST_EPROTO : 0;
    if (rx->atoms_created >= rx->lim.atom_quota)
        return DIST_EATOM_QUOTA;
    rc = heap_atom_put((const char *)text, len, out);
    if (rc == GD_ENOMEM || rc == GD_EATOM_TABLE_FULL)
        return rc;
    if (rc < 0)
        return DIST_EPROTO;
    rx->atoms_created++;
    return 0;
}

/*
 * Reads a distribution header's atom cache part (after 131 68, or after a
 * fragment start's ids) from p[0..len): updates the cache and fills
 * refs[0..*nrefs).  *used gets the bytes read.
 */
static int read_cache_header(dist_rx_t *rx, const uint8_t *p, size_t len, term_t *refs,
                             size_t *nrefs, size_t *used)
{
    if (len < 1)
        return DIST_EPROTO;
    size_t count = p[0], pos = 1;
    *nrefs = count;
    if (count == 0) {
        *used = 1;
        return 0;
    }
    size_t flag_bytes = count / 2 + 1;
    if (len - pos < flag_bytes)
        return DIST_EPROTO;
    const uint8_t *flags = p + pos;
    pos += flag_bytes;
    /* The nibble after the last ref's: bit 0 = LongAtoms. */
    unsigned last = (flags[count / 2] >> ((count & 1) * 4)) & 0xF;
    bool long_atoms = last & 1;
    for (size_t i = 0; i < count; i++) {
        unsigned nib = (flags[i / 2] >> ((i & 1) * 4)) & 0xF;
        if (pos >= len)
            return DIST_EPROTO;
        size_t slot = (size_t)(nib & 7) * 256 + p[pos++];
        if (nib & 8) {
            size_t alen;
            if (long_atoms) {
                if (len - pos < 2)
                    return DIST_EPROTO;
                alen = get16(p + pos);
                pos += 2;
            } else {
                if (len - pos < 1)
                    return DIST_EPROTO;
                alen = p[pos++];
            }
            if (len - pos < alen)
                return DIST_EPROTO;
            int rc = peer_atom(rx, p + pos, alen, &rx->cache[slot]);
            if (rc < 0)
                return rc;
            pos += alen;
        } else if (rx->cache[slot] == TERM_NONE) {
            return DIST_ECACHE;
        }
        refs[i] = rx->cache[slot];
    }
    *used = pos;
    return 0;
}

/* Decodes one term of a frame (with or without the 131 byte), charging any
 * atoms it created to the quota.  The count is the node-wide table's
 * growth, so atoms other threads create meanwhile are charged too: the
 * error is on the side of closing early, never of letting a peer past its
 * quota. */
static int decode_term(dist_rx_t *rx, heap_t *h, const uint8_t *p, size_t len, bool versioned,
                       const term_t *refs, size_t nrefs, heap_binary_t *src, term_t *out,
                       size_t *used)
{
    etf_decode_opts_t o = {0};
    o.input_bin = src;
    o.max_heap = 8 * rx->lim.max_message + 65536;
    o.max_decompressed = rx->lim.max_message;
    o.atom_cache_refs = refs;
    o.atom_cache_count = nrefs;
    uint32_t before = heap_atom_count();
    int rc = versioned ? etf_decode(h, p, len, &o, out, used, NULL)
                       : etf_decode_body(h, p, len, &o, out, used, NULL);
    uint32_t after = heap_atom_count();
    if (after > before)
        rx->atoms_created += after - before;
    if (rc == ETF_ENOMEM || rc == GD_ENOMEM)
        return GD_ENOMEM;
    if (rc < 0)
        return rc == ETF_EATOM_TABLE_FULL ? GD_EATOM_TABLE_FULL : DIST_EPROTO;
    if (rx->atoms_created > rx->lim.atom_quota)
        return DIST_EATOM_QUOTA;
    return 0;
}

/* Decodes control [+ payload] from p[0..len) and checks the control's
 * shape: a tuple whose first element is a known op with its arity.  src
 * (may be NULL): the binary p lies in, whose bytes binaries reference. */
static int decode_message(dist_rx_t *rx, heap_t *h, const uint8_t *p, size_t len, bool versioned,
                          const term_t *refs, size_t nrefs, heap_binary_t *src, dist_msg_t *out)
{
    size_t used;
    term_t ctl;
    int rc = decode_term(rx, h, p, len, versioned, refs, nrefs, src, &ctl, &used);
    if (rc < 0)
        return rc;
    if (!term_is_boxed_of(ctl, HDR_TUPLE))
        return DIST_EPROTO;
    const term_t *el = term_boxed_ptr(ctl);
    size_t arity = header_arity(el[0]);
    if (arity < 1 || !term_is_small(el[1]))
        return DIST_EPROTO;
    int64_t op = term_small_value(el[1]);
    if (op < 1 || op > DOP_UNLINK_ID_ACK || op_arity((int)op) != arity)
        return DIST_EPROTO;
    out->op = (int)op;
    out->control = ctl;
    out->payload = TERM_NONE;
    p += used;
    len -= used;
    if (dist_op_has_payload((int)op)) {
        rc = decode_term(rx, h, p, len, versioned, refs, nrefs, src, &out->payload, &used);
        if (rc < 0)
            return rc;
        len -= used;
    }
    return len == 0 ? 0 : DIST_EPROTO;
}

static dist_frag_t *frag_find(dist_rx_t *rx, uint64_t seq)
{
    for (size_t i = 0; i < rx->lim.max_sequences; i++)
        if (rx->frags[i].used && rx->frags[i].seq == seq)
            return &rx->frags[i];
    return NULL;
}

/* Appends data to a sequence, within the message and connection caps;
 * a non-zero hint is the size the whole message is expected to reach
 * (room for it is made at once when the caps allow: growing a 64 MB
 * message by doublings copies it again and again on the loop thread). */
static int frag_grow(dist_rx_t *rx, dist_frag_t *f, size_t n, size_t hint)
{
    if (n > rx->lim.max_message - f->len)
        return DIST_ETOO_LARGE;
    if (hint > rx->lim.max_message)
        hint = rx->lim.max_message;
    if (hint > f->len + n && rx->frag_bytes - f->cap + hint > 2 * rx->lim.max_message)
        hint = 0; /* not within the budget: grow as it comes */
    if (f->buf == NULL || f->len + n > f->cap || hint > f->cap) {
        size_t cap = f->cap ? f->cap : 4096;
        while (cap < f->len + n)
            cap *= 2;
        if (cap < hint)
            cap = hint;
        if (cap > rx->lim.max_message)
            cap = rx->lim.max_message;
        /* All partial sequences together stay within two messages' worth. */
        if (rx->frag_bytes - f->cap + cap > 2 * rx->lim.max_message)
            return DIST_ETOO_LARGE;
        /* An off-heap binary, so that the decoded message's binaries can
         * reference their bytes where they landed (no second copy). */
        heap_binary_t *b = f->buf == NULL ? heap_binary_new(cap) : heap_binary_resize(f->buf, cap);
        if (b == NULL)
            return GD_ENOMEM;
        rx->frag_bytes += cap - f->cap;
        f->buf = b;
        f->cap = cap;
    }
    return 0;
}

static int frag_append(dist_rx_t *rx, dist_frag_t *f, const uint8_t *p, size_t n, size_t hint)
{
    int rc = frag_grow(rx, f, n, hint);
    if (rc < 0)
        return rc;
    memcpy(f->buf->data + f->len, p, n);
    f->len += n;
    return 0;
}

/* Decodes a sequence whose last fragment is in, and ends it. */
static int frag_complete(dist_rx_t *rx, dist_frag_t *f, heap_t *h, dist_msg_t *out)
{
    int rc = decode_message(rx, h, f->buf->data, f->len, false, f->refs, f->nrefs, f->buf, out);
    frag_drop(rx, f);
    return rc;
}

int dist_rx_frag_room(dist_rx_t *rx, const uint8_t *hdr, size_t len, uint8_t **dst)
{
    if (len < FRAG_HDR_LEN || hdr[0] != ETF_VERSION_MAGIC || hdr[1] != ETF_DIST_FRAG_CONT)
        return 0;
    uint64_t seq = get64(hdr + 2), id = get64(hdr + 10);
    if (id == 0)
        return 0; /* malformed: dist_rx_frame reports it */
    dist_frag_t *f = frag_find(rx, seq);
    if (f == NULL || id != f->next_id)
        return DIST_EFRAGMENT;
    size_t n = len - FRAG_HDR_LEN;
    int rc = frag_grow(rx, f, n, 0);
    if (rc < 0) {
        frag_drop(rx, f);
        return rc;
    }
    *dst = f->buf->data + f->len;
    f->len += n;
    f->next_id--;
    return f->next_id == 0 ? 2 : 1;
}

int dist_rx_frag_complete(dist_rx_t *rx, heap_t *h, const uint8_t *hdr, dist_msg_t *out)
{
    out->op = 0;
    out->control = out->payload = TERM_NONE;
    dist_frag_t *f = frag_find(rx, get64(hdr + 2));
    if (f == NULL || f->next_id != 0)
        return DIST_EFRAGMENT;
    return frag_complete(rx, f, h, out);
}

/* A fragment: start (131 69) or continuation (131 70). */
static int read_fragment(dist_rx_t *rx, heap_t *h, const uint8_t *p, size_t len, heap_binary_t *src,
                         dist_msg_t *out)
{
    if (len < FRAG_HDR_LEN)
        return DIST_EPROTO;
    bool start = p[1] == ETF_DIST_FRAG_HEADER;
    uint64_t seq = get64(p + 2), id = get64(p + 10);
    p += FRAG_HDR_LEN;
    len -= FRAG_HDR_LEN;
    if (id == 0)
        return DIST_EPROTO;
    dist_frag_t *f = frag_find(rx, seq);
    int rc;
    if (start) {
        if (f != NULL)
            return DIST_EFRAGMENT;
        term_t refs[256];
        size_t nrefs, used;
        rc = read_cache_header(rx, p, len, refs, &nrefs, &used);
        if (rc < 0)
            return rc;
        p += used;
        len -= used;
        if (id == 1)
            return decode_message(rx, h, p, len, false, refs, nrefs, src, out);
        for (size_t i = 0; i < rx->lim.max_sequences && f == NULL; i++)
            if (!rx->frags[i].used)
                f = &rx->frags[i];
        if (f == NULL)
            return DIST_ETOO_LARGE;
        f->used = true;
        f->seq = seq;
        f->next_id = id - 1;
        memcpy(f->refs, refs, nrefs * sizeof refs[0]);
        f->nrefs = nrefs;
        /* id fragments in all, each (OTP) as long as this first one. */
        size_t hint = len == 0 ? 0 : id > SIZE_MAX / len ? SIZE_MAX : (size_t)id * len;
        rc = frag_append(rx, f, p, len, hint);
        if (rc < 0)
            frag_drop(rx, f);
        return rc;
    }
    if (f == NULL || id != f->next_id)
        return DIST_EFRAGMENT;
    rc = frag_append(rx, f, p, len, 0);
    if (rc < 0 || id > 1) {
        if (rc < 0)
            frag_drop(rx, f);
        else
            f->next_id--;
        return rc;
    }
    f->next_id = 0;
    return frag_complete(rx, f, h, out);
}

static int rx_frame(dist_rx_t *rx, heap_t *h, const uint8_t *p, size_t len, heap_binary_t *src,
                    dist_msg_t *out)
{
    out->op = 0;
    out->control = out->payload = TERM_NONE;
    if (len == 0)
        return 0; /* tick */
    if (p[0] == PASS_THROUGH)
        return decode_message(rx, h, p + 1, len - 1, true, NULL, 0, src, out);
    if (len < 2 || p[0] != ETF_VERSION_MAGIC)
        return DIST_EPROTO;
    if (p[1] == ETF_DIST_FRAG_HEADER || p[1] == ETF_DIST_FRAG_CONT)
        return read_fragment(rx, h, p, len, src, out);
    if (p[1] != ETF_DIST_HEADER)
        return DIST_EPROTO;
    term_t refs[256];
    size_t nrefs, used;
    int rc = read_cache_header(rx, p + 2, len - 2, refs, &nrefs, &used);
    if (rc < 0)
        return rc;
    return decode_message(rx, h, p + 2 + used, len - 2 - used, false, refs, nrefs, src, out);
}

int dist_rx_frame(dist_rx_t *rx, heap_t *h, const uint8_t *p, size_t len, dist_msg_t *out)
{
    return rx_frame(rx, h, p, len, NULL, out);
}

int dist_rx_frame_in(dist_rx_t *rx, heap_t *h, heap_binary_t *frame, size_t len, dist_msg_t *out)
{
    return rx_frame(rx, h, frame->data, len, frame, out);
}

/* Encodes t without the version byte, with UTF-8 atoms as every release
 * sends them over distribution (docs/protocol.md 1.3). */
static int encode_term(term_t t, etf_buf_t *out)
{
    etf_encode_opts_t o;
    etf_encode_opts_init(&o);
    o.minor_version = 2;
    return etf_encode_body(t, &o, out);
}

int dist_encode_body(term_t control, term_t payload, dist_body_t *out)
{
    out->bytes.len = 0;
    int rc = encode_term(control, &out->bytes);
    out->ctl_len = out->bytes.len;
    out->has_payload = payload != TERM_NONE;
    if (rc == 0 && out->has_payload)
        rc = encode_term(payload, &out->bytes);
    return rc;
}

int dist_encode_body_refs(term_t control, term_t payload, dist_body_t *out)
{
    out->bytes.len = 0;
    etf_bin_refs_clear(&out->refs);
    int rc = encode_term(control, &out->bytes);
    out->ctl_len = out->bytes.len;
    out->has_payload = payload != TERM_NONE;
    if (rc == 0 && out->has_payload) {
        etf_encode_opts_t o;
        etf_encode_opts_init(&o);
        o.minor_version = 2;
        out->refs.min_len = DIST_FRAGMENT_SIZE;
        o.bin_refs = &out->refs;
        rc = etf_encode_body(payload, &o, &out->bytes);
        if (rc != 0)
            etf_bin_refs_clear(&out->refs);
    }
    return rc;
}

int dist_body_flatten(dist_body_t *b)
{
    if (b->refs.n == 0)
        return 0;
    etf_buf_t flat = {0};
    int rc = etf_buf_reserve(&flat, dist_body_len(b));
    if (rc < 0)
        return rc;
    size_t phys = 0;
    for (size_t i = 0; i < b->refs.n; i++) {
        const etf_bin_ref_t *r = &b->refs.v[i];
        memcpy(flat.data + flat.len, b->bytes.data + phys, r->at - phys);
        flat.len += r->at - phys;
        phys = r->at;
        memcpy(flat.data + flat.len, r->data, r->len);
        flat.len += r->len;
    }
    memcpy(flat.data + flat.len, b->bytes.data + phys, b->bytes.len - phys);
    flat.len += b->bytes.len - phys;
    etf_buf_free(&b->bytes);
    b->bytes = flat;
    etf_bin_refs_clear(&b->refs);
    return 0;
}

void dist_body_free(dist_body_t *b)
{
    etf_buf_free(&b->bytes);
    etf_bin_refs_free(&b->refs);
}

/* Appends one frame: 4-byte length, then the parts. */
static int put_frame(etf_buf_t *out, const uint8_t *head, size_t head_len, const uint8_t *a,
                     size_t a_len, const uint8_t *b, size_t b_len)
{
    size_t n = head_len + a_len + b_len;
    if (n > UINT32_MAX)
        return DIST_ETOO_LARGE;
    int rc = etf_buf_reserve(out, 4 + n);
    if (rc < 0)
        return rc;
    uint8_t *w = put32(out->data + out->len, (uint32_t)n);
    memcpy(w, head, head_len);
    if (a_len > 0)
        memcpy(w + head_len, a, a_len);
    if (b_len > 0)
        memcpy(w + head_len + a_len, b, b_len);
    out->len += 4 + n;
    return 0;
}

static int frame_body(const dist_body_t *body, uint64_t flags, uint64_t seq, etf_buf_t *out);

/* Bytes of the pid encoding at p[0..len) (NEW_PID_EXT with an atom node,
 * as girder's encoder writes it), or 0. */
static size_t pid_len(const uint8_t *p, size_t len)
{
    if (len < 3 || p[0] != ETF_NEW_PID_EXT)
        return 0;
    size_t atom;
    if (p[1] == ETF_SMALL_ATOM_UTF8_EXT)
        atom = 2 + (size_t)p[2];
    else if ((p[1] == ETF_ATOM_UTF8_EXT || p[1] == ETF_ATOM_EXT) && len >= 4)
        atom = 3 + get16(p + 2);
    else
        return 0;
    return 1 + atom + 12 <= len ? 1 + atom + 12 : 0;
}

/*
 * The control in the form a peer without SEND_SENDER or EXIT_PAYLOAD
 * understands (C nodes built on erl_interface have neither):
 * {22, From, To} + Msg becomes {2, '', To} + Msg, and {24|26, From, To} +
 * Reason / {28, From, To, Ref} + Reason become {3|8, From, To, Reason} /
 * {21, From, To, Ref, Reason}.  Rewritten on the encoded bytes, whose
 * shape girder's encoder fixes (104 Arity 97 Op ...).  *out is set only
 * when something changed (the caller frees it).
 */
static int adapt_control(const dist_body_t *in, uint64_t flags, dist_body_t *out, bool *changed)
{
    const uint8_t *p = in->bytes.data;
    size_t clen = in->ctl_len, total = in->bytes.len;
    *changed = false;
    if (clen < 4 || p[0] != ETF_SMALL_TUPLE_EXT || p[2] != ETF_SMALL_INTEGER_EXT)
        return 0;
    int op = p[3];
    int rc;
    if (op == DOP_SEND_SENDER && !(flags & DFLAG_SEND_SENDER)) {
        size_t flen = pid_len(p + 4, clen - 4);
        if (flen == 0)
            return 0;
        const uint8_t head[6] = {ETF_SMALL_TUPLE_EXT,     3, ETF_SMALL_INTEGER_EXT, DOP_SEND,
                                 ETF_SMALL_ATOM_UTF8_EXT, 0};
        rc = etf_buf_reserve(&out->bytes, total - flen + 2);
        if (rc < 0)
            return rc;
        memcpy(out->bytes.data, head, 6);
        memcpy(out->bytes.data + 6, p + 4 + flen, total - 4 - flen);
        out->bytes.len = total - flen + 2;
        out->ctl_len = clen - flen + 2;
        out->has_payload = in->has_payload;
        *changed = true;
        return 0;
    }
    int old = op == DOP_PAYLOAD_EXIT             ? DOP_EXIT
              : op == DOP_PAYLOAD_EXIT2          ? DOP_EXIT2
              : op == DOP_PAYLOAD_MONITOR_P_EXIT ? DOP_MONITOR_P_EXIT
                                                 : 0;
    if (old == 0 || (flags & DFLAG_EXIT_PAYLOAD) || !in->has_payload)
        return 0;
    rc = etf_buf_reserve(&out->bytes, total);
    if (rc < 0)
        return rc;
    memcpy(out->bytes.data, p, total);
    out->bytes.data[1] = (uint8_t)(p[1] + 1); /* the reason joins the tuple */
    out->bytes.data[3] = (uint8_t)old;
    out->bytes.len = total;
    out->ctl_len = total;
    out->has_payload = false;
    *changed = true;
    return 0;
}

int dist_body_for_flags(const dist_body_t *body, uint64_t flags, dist_body_t *adapted,
                        bool *changed)
{
    return adapt_control(body, flags, adapted, changed);
}

int dist_frame_body(const dist_body_t *body, uint64_t flags, uint64_t seq, etf_buf_t *out)
{
    dist_body_t adapted = {0};
    bool changed;
    int rc = adapt_control(body, flags, &adapted, &changed);
    if (rc == 0)
        rc = frame_body(changed ? &adapted : body, flags, seq, out);
    etf_buf_free(&adapted.bytes);
    return rc;
}

static int frame_body(const dist_body_t *body, uint64_t flags, uint64_t seq, etf_buf_t *out)
{
    size_t start_len = out->len;
    const uint8_t *p = body->bytes.data;
    size_t total = body->bytes.len, ctl_len = body->ctl_len;
    int rc;
    if (!(flags & DFLAG_DIST_HDR_ATOM_CACHE)) {
        /* Pass-through: 112, then each term with its own 131. */
        size_t n = 2 + total + (body->has_payload ? 1 : 0);
        if (n > UINT32_MAX)
            return DIST_ETOO_LARGE;
        rc = etf_buf_reserve(out, 4 + n);
        if (rc < 0)
            return rc;
        uint8_t *w = put32(out->data + out->len, (uint32_t)n);
        *w++ = PASS_THROUGH;
        *w++ = ETF_VERSION_MAGIC;
        memcpy(w, p, ctl_len);
        w += ctl_len;
        if (body->has_payload) {
            *w++ = ETF_VERSION_MAGIC;
            memcpy(w, p + ctl_len, total - ctl_len);
        }
        out->len += 4 + n;
        return 0;
    }
    size_t frag = (flags & DFLAG_FRAGMENTS) ? DIST_FRAGMENT_SIZE : 0;
    if (frag == 0 || total <= frag) {
        const uint8_t head[3] = {ETF_VERSION_MAGIC, ETF_DIST_HEADER, 0};
        rc = put_frame(out, head, 3, p, total, NULL, 0);
        if (rc < 0)
            out->len = start_len;
        return rc;
    }
    return dist_frame_fragments(body, seq, frag, out);
}

int dist_frag_iter_init(dist_frag_iter_t *it, const dist_body_t *body, uint64_t seq,
                        size_t frag_size)
{
    /* The first fragment carries the whole control and as much payload as
     * fills frag_size; each later one frag_size bytes; ids count down. */
    if (seq == 0 || frag_size == 0) {
        /* OTP takes a fragment header with sequence id 0 for a whole
         * message (erts_net_message, erts/emulator/beam/dist.c, OTP 25:
         * "A non-fragmented message: if (!ede.data->seq_id)") and decodes
         * the payload past the first fragment's end: OTP 25.2.3 segfaults
         * on a DOWN reason sent so.  OTP itself uses the sender's pid. */
        return GD_EINVAL;
    }
    if (body->refs.n > 0 && body->refs.min_len < frag_size)
        return GD_EINVAL; /* a fragment could need more than DIST_FRAG_SEGS pieces */
    size_t total = dist_body_len(body);
    size_t first = body->ctl_len > frag_size ? body->ctl_len : frag_size;
    if (first > total)
        first = total;
    size_t rest = total - first;
    uint64_t nfrags = 1 + (rest + frag_size - 1) / frag_size;
    *it = (dist_frag_iter_t){body, seq, frag_size, first, total, 0, 0, 0, nfrags, nfrags};
    if (first > UINT32_MAX - DIST_FRAG_HDR_MAX || frag_size > UINT32_MAX - DIST_FRAG_HDR_MAX ||
        it->nfrags > SIZE_MAX / (4 + DIST_FRAG_HDR_MAX) ||
        total > SIZE_MAX - it->nfrags * (4 + DIST_FRAG_HDR_MAX))
        return DIST_ETOO_LARGE;
    return 0;
}

/* The next `want` bytes of the body as pieces (bytes and referenced
 * binaries interleaved). */
static size_t take_pieces(dist_frag_iter_t *it, size_t want, dist_seg_t *segs)
{
    const dist_body_t *b = it->body;
    size_t n = 0;
    while (want > 0) {
        GD_ASSERT(n < DIST_FRAG_SEGS);
        const etf_bin_ref_t *r = it->ri < b->refs.n ? &b->refs.v[it->ri] : NULL;
        dist_seg_t sg;
        if (r != NULL && it->phys == r->at) {
            sg.p = r->data + it->ref_off;
            sg.len = r->len - it->ref_off < want ? r->len - it->ref_off : want;
            it->ref_off += sg.len;
            if (it->ref_off == r->len) {
                it->ri++;
                it->ref_off = 0;
            }
        } else {
            size_t limit = r != NULL ? r->at : b->bytes.len;
            sg.p = b->bytes.data + it->phys;
            sg.len = limit - it->phys < want ? limit - it->phys : want;
            it->phys += sg.len;
        }
        want -= sg.len;
        if (sg.len > 0)
            segs[n++] = sg;
    }
    return n;
}

bool dist_frag_next(dist_frag_iter_t *it, uint8_t hdr[4 + DIST_FRAG_HDR_MAX], size_t *hdr_len,
                    dist_seg_t segs[DIST_FRAG_SEGS], size_t *nsegs)
{
    if (it->id == 0)
        return false;
    bool start = it->id == it->nfrags;
    size_t done = start ? 0 : it->first + (size_t)(it->nfrags - 1 - it->id) * it->frag_size;
    size_t n =
        start ? it->first : (it->total - done < it->frag_size ? it->total - done : it->frag_size);
    size_t head = FRAG_HDR_LEN + (start ? 1 : 0);
    uint8_t *w = put32(hdr, (uint32_t)(head + n));
    w[0] = ETF_VERSION_MAGIC;
    w[1] = start ? ETF_DIST_FRAG_HEADER : ETF_DIST_FRAG_CONT;
    put64(w + 2, it->seq);
    put64(w + 10, it->id);
    w[FRAG_HDR_LEN] = 0; /* start: no atom cache refs */
    *hdr_len = 4 + head;
    *nsegs = take_pieces(it, n, segs);
    it->id--;
    return true;
}

int dist_frame_fragments(const dist_body_t *body, uint64_t seq, size_t frag_size, etf_buf_t *out)
{
    dist_frag_iter_t it;
    int rc = dist_frag_iter_init(&it, body, seq, frag_size);
    if (rc < 0)
        return rc;
    /* All of it at once: growing fragment by fragment copies a big
     * message again at every doubling. */
    rc = etf_buf_reserve(out, it.total + it.nfrags * (4 + DIST_FRAG_HDR_MAX));
    if (rc < 0)
        return rc;
    uint8_t hdr[4 + DIST_FRAG_HDR_MAX];
    dist_seg_t segs[DIST_FRAG_SEGS];
    size_t hdr_len, nsegs;
    while (dist_frag_next(&it, hdr, &hdr_len, segs, &nsegs)) {
        memcpy(out->data + out->len, hdr, hdr_len);
        out->len += hdr_len;
        for (size_t i = 0; i < nsegs; i++) {
            memcpy(out->data + out->len, segs[i].p, segs[i].len);
            out->len += segs[i].len;
        }
    }
    return 0;
}

int dist_encode_message(term_t control, term_t payload, uint64_t seq, size_t frag_size,
                        etf_buf_t *out)
{
    dist_body_t body = {0};
    int rc = dist_encode_body(control, payload, &body);
    if (rc == 0) {
        size_t start_len = out->len;
        const uint8_t head[3] = {ETF_VERSION_MAGIC, ETF_DIST_HEADER, 0};
        if (frag_size == 0 || body.bytes.len <= frag_size)
            rc = put_frame(out, head, 3, body.bytes.data, body.bytes.len, NULL, 0);
        else
            rc = dist_frame_fragments(&body, seq, frag_size, out);
        if (rc < 0)
            out->len = start_len;
    }
    etf_buf_free(&body.bytes);
    return rc;
}

/* ---- the atom cache on send ---- */

/* What the walk over an encoding does next: rewrite `count` terms, or
 * copy `count` raw bytes (the fixed tail of a pid, port or reference). */
typedef struct walk_item {
    bool raw;
    uint64_t count;
} walk_item_t;

/* The message's cache references: up to 255 distinct atoms. */
typedef struct refs {
    size_t n;
    term_t atom[255];
    uint16_t slot[255];
    bool is_new[255];
    bool long_atoms;
} refs_t;

/* The reference index for the atom whose text is t[0..len), adding it
 * (and updating the connection's cache) when new; -1 when the message has
 * used all 255 references (the atom then stays inline). */
static int ref_for(refs_t *r, dist_tx_t *tx, const uint8_t *t, size_t len)
{
    term_t atom;
    if (heap_atom_lookup((const char *)t, len, &atom) != 0)
        return -1;
    for (size_t i = 0; i < r->n; i++)
        if (r->atom[i] == atom)
            return (int)i;
    if (r->n == 255)
        return -1;
    /* A slot from the atom's index: the same atom always lands in the
     * same slot, so a hot atom stays cached. */
    uint32_t h = term_atom_index(atom) * 2654435761u;
    uint16_t slot = (uint16_t)(h >> 21); /* 11 bits: 0..2047 */
    for (size_t i = 0; i < r->n; i++)
        if (r->slot[i] == slot)
            return -1; /* two atoms of this message share the slot */
    size_t i = r->n++;
    r->atom[i] = atom;
    r->slot[i] = slot;
    r->is_new[i] = tx->cache[slot] != atom;
    if (r->is_new[i] && len > 255)
        r->long_atoms = true;
    tx->cache[slot] = atom;
    return (int)i;
}

/* Copies the encoding at p[0..len) to out, replacing atoms by
 * ATOM_CACHE_REFs into r.  Funs are copied verbatim (their Size field
 * covers their bytes).  No recursion: an explicit stack of walk items. */
static int rewrite_atoms(const uint8_t *p, size_t len, refs_t *r, dist_tx_t *tx, etf_buf_t *out)
{
    walk_item_t *stack = malloc(64 * sizeof *stack);
    size_t depth = 0, cap = 64, pos = 0;
    int rc = stack == NULL ? GD_ENOMEM : 0;
#define PUSH(is_raw, n)                                                                            \
    do {                                                                                           \
        if (depth == cap) {                                                                        \
            walk_item_t *ns = realloc(stack, 2 * cap * sizeof *stack);                             \
            if (ns == NULL) {                                                                      \
                rc = GD_ENOMEM;                                                                    \
                goto done;                                                                         \
            }                                                                                      \
            stack = ns;                                                                            \
            cap *= 2;                                                                              \
        }                                                                                          \
        stack[depth++] = (walk_item_t){(is_raw), (n)};                                             \
    } while (0)
#define NEED(n)                                                                                    \
    do {                                                                                           \
        if (len - pos < (n)) {                                                                     \
            rc = DIST_EPROTO;                                                                      \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)
    if (rc < 0)
        return rc;
    PUSH(false, 1);
    while (depth > 0 && rc == 0) {
        walk_item_t *top = &stack[depth - 1];
        if (top->count == 0) {
            depth--;
            continue;
        }
        if (top->raw) {
            size_t n = top->count;
            NEED(n);
            rc = etf_buf_reserve(out, n);
            if (rc < 0)
                break;
            memcpy(out->data + out->len, p + pos, n);
            out->len += n;
            pos += n;
            depth--;
            continue;
        }
        top->count--;
        NEED(1);
        uint8_t tag = p[pos];
        size_t copy = 1; /* bytes copied as they are, from pos */
        const uint8_t *atom_text = NULL;
        size_t atom_len = 0;
        switch (tag) {
        case ETF_SMALL_INTEGER_EXT:
            copy = 2;
            break;
        case ETF_INTEGER_EXT:
            copy = 5;
            break;
        case ETF_NEW_FLOAT_EXT:
            copy = 9;
            break;
        case ETF_FLOAT_EXT:
            copy = 32;
            break;
        case ETF_SMALL_ATOM_UTF8_EXT:
        case ETF_SMALL_ATOM_EXT:
            NEED(2);
            atom_len = p[pos + 1];
            copy = 2 + atom_len;
            atom_text = p + pos + 2;
            break;
        case ETF_ATOM_UTF8_EXT:
        case ETF_ATOM_EXT:
            NEED(3);
            atom_len = get16(p + pos + 1);
            copy = 3 + atom_len;
            atom_text = p + pos + 3;
            break;
        case ETF_NEW_PID_EXT:
        case ETF_V4_PORT_EXT:
            PUSH(true, 12);
            PUSH(false, 1);
            break;
        case ETF_NEW_PORT_EXT:
            PUSH(true, 8);
            PUSH(false, 1);
            break;
        case ETF_NEWER_REFERENCE_EXT:
            NEED(3);
            copy = 3;
            PUSH(true, 4 + 4 * (uint64_t)get16(p + pos + 1));
            PUSH(false, 1);
            break;
        case ETF_SMALL_TUPLE_EXT:
            NEED(2);
            copy = 2;
            PUSH(false, p[pos + 1]);
            break;
        case ETF_LARGE_TUPLE_EXT:
            NEED(5);
            copy = 5;
            PUSH(false, get32(p + pos + 1));
            break;
        case ETF_MAP_EXT:
            NEED(5);
            copy = 5;
            PUSH(false, 2 * (uint64_t)get32(p + pos + 1));
            break;
        case ETF_NIL_EXT:
            break;
        case ETF_STRING_EXT:
            NEED(3);
            copy = 3 + (size_t)get16(p + pos + 1);
            break;
        case ETF_LIST_EXT:
            NEED(5);
            copy = 5;
            PUSH(false, (uint64_t)get32(p + pos + 1) + 1);
            break;
        case ETF_BINARY_EXT:
            NEED(5);
            copy = 5 + (size_t)get32(p + pos + 1);
            break;
        case ETF_BIT_BINARY_EXT:
            NEED(5);
            copy = 6 + (size_t)get32(p + pos + 1);
            break;
        case ETF_SMALL_BIG_EXT:
            NEED(2);
            copy = 3 + (size_t)p[pos + 1];
            break;
        case ETF_LARGE_BIG_EXT:
            NEED(5);
            copy = 6 + (size_t)get32(p + pos + 1);
            break;
        case ETF_NEW_FUN_EXT:
            NEED(5);
            copy = 1 + (size_t)get32(p + pos + 1);
            break;
        case ETF_EXPORT_EXT:
            PUSH(false, 3);
            break;
        default:
            rc = DIST_EPROTO;
            goto done;
        }
        NEED(copy);
        int idx = atom_text != NULL ? ref_for(r, tx, atom_text, atom_len) : -1;
        if (idx >= 0) {
            rc = etf_buf_reserve(out, 2);
            if (rc < 0)
                break;
            out->data[out->len++] = ETF_ATOM_CACHE_REF;
            out->data[out->len++] = (uint8_t)idx;
        } else {
            rc = etf_buf_reserve(out, copy);
            if (rc < 0)
                break;
            memcpy(out->data + out->len, p + pos, copy);
            out->len += copy;
        }
        pos += copy;
    }
done:
#undef PUSH
#undef NEED
    free(stack);
    return rc;
}

int dist_frame_cached(const dist_body_t *body, uint64_t flags, dist_tx_t *tx, etf_buf_t *out)
{
    dist_body_t adapted = {0};
    bool changed;
    int rc = adapt_control(body, flags, &adapted, &changed);
    if (rc < 0)
        return rc;
    if (changed)
        body = &adapted;
    refs_t r;
    r.n = 0;
    r.long_atoms = false;
    etf_buf_t terms = {0};
    size_t start_len = out->len;
    /* The control, then the payload: each one term. */
    rc = rewrite_atoms(body->bytes.data, body->ctl_len, &r, tx, &terms);
    if (rc == 0 && body->has_payload)
        rc = rewrite_atoms(body->bytes.data + body->ctl_len, body->bytes.len - body->ctl_len, &r,
                           tx, &terms);
    if (rc < 0)
        goto done;
    /* 131 68 N Flags Refs, then the terms. */
    size_t hdr = 3 + (r.n ? r.n / 2 + 1 : 0);
    for (size_t i = 0; i < r.n; i++) {
        size_t alen;
        heap_atom_text(r.atom[i], &alen);
        hdr += 1 + (r.is_new[i] ? (r.long_atoms ? 2 : 1) + alen : 0);
    }
    size_t n = hdr + terms.len;
    if (n > UINT32_MAX) {
        rc = DIST_ETOO_LARGE;
        goto done;
    }
    rc = etf_buf_reserve(out, 4 + n);
    if (rc < 0)
        goto done;
    uint8_t *w = put32(out->data + out->len, (uint32_t)n);
    *w++ = ETF_VERSION_MAGIC;
    *w++ = ETF_DIST_HEADER;
    *w++ = (uint8_t)r.n;
    if (r.n > 0) {
        uint8_t *fl = w;
        memset(fl, 0, r.n / 2 + 1);
        for (size_t i = 0; i < r.n; i++) {
            unsigned nib = (r.is_new[i] ? 8u : 0u) | (unsigned)(r.slot[i] >> 8);
            fl[i / 2] |= (uint8_t)(nib << ((i & 1) * 4));
        }
        fl[r.n / 2] |= (uint8_t)((r.long_atoms ? 1u : 0u) << ((r.n & 1) * 4));
        w += r.n / 2 + 1;
        for (size_t i = 0; i < r.n; i++) {
            *w++ = (uint8_t)(r.slot[i] & 0xFF);
            if (!r.is_new[i])
                continue;
            size_t alen;
            const char *text = heap_atom_text(r.atom[i], &alen);
            if (r.long_atoms)
                w = put16(w, (uint16_t)alen);
            else
                *w++ = (uint8_t)alen;
            memcpy(w, text, alen);
            w += alen;
        }
    }
    memcpy(w, terms.data, terms.len);
    out->len += 4 + n;
done:
    if (rc < 0)
        out->len = start_len;
    etf_buf_free(&terms);
    etf_buf_free(&adapted.bytes);
    return rc;
}
