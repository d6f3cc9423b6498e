/*
 * cluster.h — Erlang distribution: the handshake, the connected-phase frame
 * decoder and the running node (`girder node`).
 *
 * Status (for the next session; protocol facts: docs/protocol.md):
 *   works (tests/cluster/, tests/interop/dist_interop.*, fuzz fz_dist_*):
 *   - handshake v6 as acceptor and initiator, v5 ('n' + 'c') from older
 *     initiators, cookie digests, flags (OTP 25 mandatory set required,
 *     MANDATORY_25_DIGEST honoured), ok/ok_simultaneous/nok/alive/
 *     not_allowed, dynamic names (NAME_ME, acceptor side), hidden nodes; a
 *     pure state machine over byte buffers with no allocation;
 *   - frames: ticks, pass-through (112), normal headers (131 68) with the
 *     per-connection atom cache, fragments (131 69 / 131 70) reassembled
 *     per sequence with bounded memory, caps on frame size, reassembly and
 *     atoms a peer creates; sending: fragments of 64 KiB, every message
 *     with its own non-zero sequence id (OTP reads id 0 as unfragmented);
 *   - `girder node`: cookie file, EPMD registration (embedded keeper when
 *     none answers), identity, connections both ways on a libevent loop
 *     thread (auto-connect on first send, order kept while connecting,
 *     simultaneous connect by name), ticks and net_tick_timeout,
 *     SIGTERM/SIGINT shutdown, one log line per connection and refusal;
 *   - SEND/SEND_SENDER/REG_SEND (+_TT) in, SEND_SENDER/REG_SEND/ALIAS_SEND
 *     out, EXIT2 both ways, links and monitors both ways through a
 *     per-connection controller process, UNLINK_ID/ACK, noconnection on
 *     nodedown, SPAWN_REQUEST for erpc (call and cast); a monitor's
 *     MONITOR_P and an erpc SPAWN_REQUEST leave from the caller, in order
 *     with its sends, also while the connection is set up (incoming
 *     handshake included), and their controller entry is made under
 *     node.lock before any nodedown (tests/cluster/test_remote_call.c);
 *   - the erpc client side (cluster_spawn_request/abandon: SPAWN_REQUEST
 *     out with [monitor], SPAWN_REPLY errors and the DOWN back through
 *     the controller, noconnection on nodedown; node/'s girder_erpc_call;
 *     tests/cluster/test_erpc.c, tests/interop/erpc_interop.*);
 *   - net_kernel (ping), rex (features, call/block_call), echo, built-ins
 *     girder:echo/1, spawn_echo/0, info/0, watch/2, send/2,
 *     watch_nodes/2, erlang:node/0, nodes/0, nodes/1, system_info/1;
 *     the services (net_kernel, rex, echo) run under a keeper that
 *     restarts one that exits (node/'s girder_kv runs under a supervisor
 *     of its own); tests/interop/contract_interop.* checks design.md's node
 *     contract row by row from an OTP 25 node;
 *     cluster_rpc_register for applications; node/ adds girder_kv and
 *     girder:call_out/4, rpc_out/6 (cluster_config_t.start_services);
 *   - spawn_request of registered C bodies (girder:echo_loop/0) besides
 *     erpc; ALIAS_SEND to girder aliases; a remote link's exit names the
 *     remote pid ({'EXIT', RemotePid, R}); remote monitors' DOWNs travel
 *     through a one-message alias, so none arrives after demonitor;
 *     UNLINK_ID_ACK awaited (a crossing LINK is ignored);
 *   - monitor_node / monitor_nodes (cluster_monitor_node[s]);
 *   - OTP's global, protocol 8 (global.c, docs/protocol.md 5.1,
 *     tests/interop/global_interop.*): global_name_server on every node,
 *     sync with OTP and girder peers (init_connect, lock_set, exchange,
 *     resolved, new_nodes, in_sync), set_lock/del_lock/register/
 *     unregister calls, clashes resolved as random_exit_name; one
 *     registry per node; names are any terms (keyed by encoding); rpc
 *     global:register_name/2 & co. and girder:global_*; a sync session
 *     ends, its lock freed, on in_sync or when its node is learnt of
 *     through another, and no new one starts on a later init_connect
 *     (as OTP: tests/cluster/test_global.c);
 *   - TLS distribution (tls.c, tests/interop/dist_tls.sh): OTP's
 *     inet_tls wire format, -ssl_dist_optfile / -ssl_dist_opt, peers
 *     verified both ways;
 *   - the atom cache on send (131 68 with references, up to 64 KiB);
 *   - back-pressure (dist_buf_busy_limit, `+zdbbl`): a sending coroutine
 *     process waits past the limit until the output drains below half, a
 *     behaviour process is suspended (sched_suspend: its next callback
 *     does not run) until then; cluster_conn_stats (bytes/messages in
 *     and out, busy time);
 *   - big messages: a frame of 64 KiB or more (or a fragmented message)
 *     is copied once, from the input buffer into an off-heap binary, and
 *     decoded straight into message fragments for its target
 *     (heap_msg_build_*, sched_send_built: no second copy of its terms),
 *     its binaries > 64 bytes referencing that buffer (sub-binaries); a
 *     big send goes out from its encoded body and, for binaries of 64 KiB
 *     or more, from the binaries themselves (etf bin_refs; sendmsg, then
 *     evbuffer references): no copy into the body or a frame buffer;
 *     bursts of frames leave in few large writes; an up TCP connection
 *     is read through an epoll set of our own (conn_read: 64 KiB per
 *     readv, or the rest of a big frame, no FIONREAD ioctl; libevent
 *     2.1's bufferevent read 4 KiB per call), by the loop thread or an
 *     idle scheduler, a big frame or continuation fragment straight into
 *     its binary or sequence buffer; frames are split and decoded from a
 *     buffer only the reader touches (rxq), not under the bufferevent
 *     lock senders take; an incoming MONITOR_P is set up
 *     by the reading thread for the controller (sched_monitor_for), not
 *     waited for;
 *   - bad input: tests/cluster/test_node_malformed.c (58 handshakes and
 *     frames, 100 half-open connections, a peer that stops reading);
 *     big messages: 64 MB echo, order across fragments, no hold-up of
 *     other connections (interop); tests/bench/dist (girder<->girder,
 *     erl<->erl, erl<->girder).
 *   left:
 *   - global: prevent_overlapping_partitions not applied; custom
 *     resolve methods act as random_exit_name; a sync session locks
 *     `global` on this node only (OTP's locker takes its whole
 *     partition), so merges run concurrently and a session's end relies
 *     on in_sync reaching both sides; a
 *     registration blocks its caller's scheduler thread until the
 *     cluster-wide lock round ends (at most 20 s);
 *   - TLS: a small frame is encrypted and written by the sending
 *     scheduler when the output is idle (SSL_write under the bufferevent
 *     lock), bursts and big frames by the loop; no TLS mode in
 *     tests/bench/dist (measured by hand: erl->girder echo RTT p50 about
 *     0.85x erl<->erl's); OTP 26+ inet_tls (kTLS, its framing) not
 *     verified; no CRL checks; verify_fun is Erlang-only;
 *   - speed (tests/bench/dist, girder<->girder over erl<->erl, see
 *     docs/benchmarks.md for the figures): one-way small 2.6-3x, 1 MiB
 *     binaries 1.9-2.3x, 100-pair ping-pong 1.1-1.4x (noisy: rounds
 *     of 1.1 and 3.1); since idle schedulers read the sockets (node.c
 *     idle_poll) the 1-pair ping-pong is ~1.8-2.1x (RTT p50 ~0.5x), rpc
 *     ~1.7x and erpc ~1.6x (issue 14 asks 2x); erl->girder is 1.2-1.4x
 *     on every round trip and 1.7x on 1 MiB, one-way small ~0.9x (at
 *     parity in single rounds: both sides 160-200k msgs/s); an incoming
 *     LINK still waits for the controller (read on a scheduler: the
 *     connection is parked until it acknowledges), and hook_link links
 *     the caller to the controller before telling it, so a connection
 *     lost in between can end the caller with the controller's
 *     noconnection rather than the remote pid's;
 *   - loadgen (girder bench, 1000 clients, docs/benchmarks.md): ratio
 *     to beam_loadgen 2.26 on a loaded box (load ~6) but 1.36 idle (3
 *     rounds: 1.27, 1.38, 1.11) and 1.28 on 2026-12-07 (load ~2.5, after
 *     the idle-scheduler reads), issue 15 asks 2; holding a scheduler's
 *     sends until it idles (one send() per batch) was measured worse: its
 *     run queue empties every ~8 replies, so it sent more often than the
 *     loop thread does;
 *   - a completed big message is still decoded in one piece on the loop
 *     thread (its terms; its binaries are no longer copied there); the
 *     encoding of a big send is not budgeted: a 64 MB term (a list; a
 *     binary is referenced, O(1)) is encoded in one go on the sending
 *     scheduler (no yield);
 *   - spawn_request of anything but erpc and the registered bodies
 *     answers notsup (no Erlang code runs here); a DOWN a process had
 *     already taken into its queue stays after demonitor (OTP's
 *     demonitor/1; girder_call and girder:watch flush their own,
 *     sched_flush for behaviours); monitor_node entries of
 *     a process that dies stay until the connection ends.
 */
#ifndef GIRDER_CLUSTER_H
#define GIRDER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etf.h"
#include "sched/sched.h"

/* ---- cluster/ error codes (the range below sched/'s) ---- */
enum {
    DIST_EPROTO = -300,       /* a handshake message or frame is malformed */
    DIST_ETOO_LARGE = -301,   /* a declared length exceeds its cap */
    DIST_EFLAGS = -302,       /* the peer lacks mandatory capability flags */
    DIST_ENAME = -303,        /* a node name is malformed or not the one dialled */
    DIST_EDIGEST = -304,      /* the peer's cookie digest is wrong */
    DIST_ENOT_ALLOWED = -305, /* refused: our side sent or got not_allowed */
    DIST_ENOK = -306,         /* simultaneous connect lost: the other attempt wins */
    DIST_EALIVE = -307,       /* the peer keeps an older connection ('s' false) */
    DIST_EATOM_QUOTA = -308,  /* the peer created more atoms than its quota */
    DIST_ECACHE = -309,       /* an atom cache reference to an empty slot */
    DIST_EFRAGMENT = -310,    /* a fragment for no or a duplicate sequence */
    DIST_ECLOSED = -311,      /* the connection is gone */
    DIST_ENOCONNECTION = -312 /* no connection to the node can be made */
};

/* Describes any DIST_E* code (and defers to etf_strerror for the others). */
const char *dist_strerror(int code);

/* ---- capability flags (lib/kernel/include/dist.hrl, docs/protocol.md 3.2) ---- */
#define DFLAG_PUBLISHED 0x1ull
#define DFLAG_ATOM_CACHE 0x2ull
#define DFLAG_EXTENDED_REFERENCES 0x4ull
#define DFLAG_DIST_MONITOR 0x8ull
#define DFLAG_FUN_TAGS 0x10ull
#define DFLAG_DIST_MONITOR_NAME 0x20ull
#define DFLAG_HIDDEN_ATOM_CACHE 0x40ull
#define DFLAG_NEW_FUN_TAGS 0x80ull
#define DFLAG_EXTENDED_PIDS_PORTS 0x100ull
#define DFLAG_EXPORT_PTR_TAG 0x200ull
#define DFLAG_BIT_BINARIES 0x400ull
#define DFLAG_NEW_FLOATS 0x800ull
#define DFLAG_UNICODE_IO 0x1000ull
#define DFLAG_DIST_HDR_ATOM_CACHE 0x2000ull
#define DFLAG_SMALL_ATOM_TAGS 0x4000ull
#define DFLAG_UTF8_ATOMS 0x10000ull
#define DFLAG_MAP_TAG 0x20000ull
#define DFLAG_BIG_CREATION 0x40000ull
#define DFLAG_SEND_SENDER 0x80000ull
#define DFLAG_BIG_SEQTRACE_LABELS 0x100000ull
#define DFLAG_EXIT_PAYLOAD 0x400000ull
#define DFLAG_FRAGMENTS 0x800000ull
#define DFLAG_HANDSHAKE_23 0x1000000ull
#define DFLAG_UNLINK_ID 0x2000000ull
#define DFLAG_MANDATORY_25_DIGEST 0x4000000ull
#define DFLAG_SPAWN (1ull << 32)
#define DFLAG_NAME_ME (1ull << 33)
#define DFLAG_V4_NC (1ull << 34)
#define DFLAG_ALIAS (1ull << 35)

/* What every peer must offer (OTP 25's mandatory set, erts dist.h). */
#define DFLAG_MANDATORY_25                                                                         \
    (DFLAG_EXTENDED_REFERENCES | DFLAG_FUN_TAGS | DFLAG_EXTENDED_PIDS_PORTS | DFLAG_UTF8_ATOMS |   \
     DFLAG_NEW_FUN_TAGS | DFLAG_BIG_CREATION | DFLAG_NEW_FLOATS | DFLAG_MAP_TAG |                  \
     DFLAG_EXPORT_PTR_TAG | DFLAG_BIT_BINARIES | DFLAG_HANDSHAKE_23)
/* What girder offers: exactly OTP 25-28's default set (0xd07df7fbd), which
 * every release 25-28 accepts; DFLAG_PUBLISHED is cleared for hidden. */
#define DFLAG_GIRDER_DEFAULT 0xd07df7fbdull

/* ---- control message operations (docs/protocol.md 4.4) ---- */
enum dist_op {
    DOP_LINK = 1,
    DOP_SEND = 2,
    DOP_EXIT = 3,
    DOP_UNLINK = 4,
    DOP_REG_SEND = 6,
    DOP_GROUP_LEADER = 7,
    DOP_EXIT2 = 8,
    DOP_SEND_TT = 12,
    DOP_EXIT_TT = 13,
    DOP_REG_SEND_TT = 16,
    DOP_EXIT2_TT = 18,
    DOP_MONITOR_P = 19,
    DOP_DEMONITOR_P = 20,
    DOP_MONITOR_P_EXIT = 21,
    DOP_SEND_SENDER = 22,
    DOP_SEND_SENDER_TT = 23,
    DOP_PAYLOAD_EXIT = 24,
    DOP_PAYLOAD_EXIT_TT = 25,
    DOP_PAYLOAD_EXIT2 = 26,
    DOP_PAYLOAD_EXIT2_TT = 27,
    DOP_PAYLOAD_MONITOR_P_EXIT = 28,
    DOP_SPAWN_REQUEST = 29,
    DOP_SPAWN_REQUEST_TT = 30,
    DOP_SPAWN_REPLY = 31,
    DOP_SPAWN_REPLY_TT = 32,
    DOP_ALIAS_SEND = 33,
    DOP_ALIAS_SEND_TT = 34,
    DOP_UNLINK_ID = 35,
    DOP_UNLINK_ID_ACK = 36,
};

/* ---- handshake (docs/protocol.md 3) ---- */

/* Longest full node name accepted, in bytes (255 characters of up to 4
 * UTF-8 bytes, as the node atom allows). */
#define DIST_NAME_MAX 1020
/* Largest handshake message accepted.  OTP takes up to 65535 bytes and
 * ignores what follows the fields; the longest real message is 'N' with a
 * 1020-byte name (1039 bytes), so anything past this cap is refused rather
 * than buffered for an unauthenticated peer. */
#define DIST_HS_MSG_MAX 1100
/* Room for what one step writes: at most two messages (status + challenge)
 * with their 2-byte lengths. */
#define DIST_HS_OUT_MAX (2 * (DIST_HS_MSG_MAX + 2))

enum dist_role {
    DIST_ACCEPTOR = 0, /* B: the peer connected to us */
    DIST_INITIATOR = 1 /* A: we connected to the peer */
};

/* What an acceptor answers a peer's name with (dist_util's mark_pending). */
enum dist_status {
    DIST_STATUS_OK = 0,
    DIST_STATUS_OK_SIMULTANEOUS, /* we were also connecting; the peer's name is greater */
    DIST_STATUS_NOK,             /* we were also connecting; ours wins */
    DIST_STATUS_NOT_ALLOWED,
    DIST_STATUS_ALIVE, /* we already have a connection to a node of that name */
};

/* How the acceptor decides the status for a peer (name: full name bytes,
 * not NUL-terminated, already validated).  Called at most once. */
typedef enum dist_status (*dist_decide_fn)(void *ud, const char *name, size_t len);

/* Handshake configuration; every pointer is borrowed and must outlive the
 * handshake. */
typedef struct dist_hs_config {
    enum dist_role role;
    const char *name; /* our full node name, e.g. "a@host" */
    size_t name_len;
    uint32_t creation;
    uint64_t flags; /* what we offer (DFLAG_GIRDER_DEFAULT, minus PUBLISHED if hidden) */
    const char *cookie;
    size_t cookie_len;
    uint32_t challenge; /* ours, from a CSPRNG */
    /* Initiator: the full name we dialled; the peer must answer with it
     * byte for byte. */
    const char *peer_name;
    size_t peer_name_len;
    /* Acceptor: status decision (NULL: always ok) and, for a peer asking
     * for a dynamic name, the random bits its name and creation come from. */
    dist_decide_fn decide;
    void *decide_ud;
    uint64_t dynamic_seed;
} dist_hs_config_t;

enum dist_hs_state {
    DIST_HS_RECV_NAME = 0,   /* B: waiting for 'N' / 'n' */
    DIST_HS_RECV_ALIVE,      /* B: sent alive, waiting for 's' true/false */
    DIST_HS_RECV_COMPLEMENT, /* B: v5 peer, waiting for 'c' */
    DIST_HS_RECV_REPLY,      /* B: waiting for 'r' */
    DIST_HS_RECV_STATUS,     /* A: waiting for 's' */
    DIST_HS_RECV_CHALLENGE,  /* A: waiting for 'N' */
    DIST_HS_RECV_ACK,        /* A: waiting for 'a' */
    DIST_HS_UP,              /* authenticated; switch to 4-byte frames */
    DIST_HS_FAILED,
};

/* One handshake.  Fixed size, no allocation: nothing an unauthenticated
 * peer sends is kept beyond peer_name. */
typedef struct dist_hs {
    dist_hs_config_t cfg;
    enum dist_hs_state state;
    bool v5;           /* the peer sent the old 'n' name message */
    bool replaces_old; /* B: the peer answered alive with true: drop the old connection */
    uint64_t peer_flags;
    uint64_t flags; /* agreed: ours AND the peer's (valid once UP) */
    uint32_t peer_creation;
    uint32_t peer_challenge;
    char peer_name[DIST_NAME_MAX + 1]; /* NUL-terminated */
    size_t peer_name_len;
    uint8_t out[DIST_HS_OUT_MAX]; /* bytes to send, 2-byte framed */
    size_t out_len;
} dist_hs_t;

/* Starts a handshake.  An initiator's first message is in hs->out at
 * once.  GD_EINVAL for names or cookies over their caps. */
int dist_hs_init(dist_hs_t *hs, const dist_hs_config_t *cfg) GD_MUST_CHECK;

/*
 * Feeds received bytes.  Consumes at most one complete 2-byte-framed
 * message from in[0..len) and sets *used to the bytes taken (0 when the
 * message is still incomplete: call again with more).  Replies are appended
 * to hs->out (the caller sends and then clears out_len).  Returns 0 to go
 * on, 1 once the handshake is UP (bytes after *used belong to the 4-byte
 * phase), or a DIST_E* code: the caller sends hs->out (a not_allowed or nok
 * status may be there) and closes.  O(len); no allocation.
 */
int dist_hs_feed(dist_hs_t *hs, const uint8_t *in, size_t len, size_t *used) GD_MUST_CHECK;

/* MD5(cookie ++ decimal(challenge)) into digest (dist_util:gen_digest). */
void dist_digest(const char *cookie, size_t cookie_len, uint32_t challenge, uint8_t digest[16]);

/* True if name[0..len) is a valid full node name: one '@' with non-empty
 * parts, valid UTF-8 of at most 255 characters, no NUL. */
bool dist_name_valid(const char *name, size_t len);

/* ---- connected phase: frames (docs/protocol.md 4) ---- */

/* Slots of the per-connection, per-direction atom cache (8 segments of
 * 256). */
#define DIST_ATOM_CACHE_SIZE 2048
/* Largest frame and largest reassembled message accepted (bytes); OTP has
 * no cap, the design asks for 64 MB messages to pass. */
#define DIST_MAX_MESSAGE_DEFAULT ((size_t)256 << 20)
/* Atoms one peer may add to the node's table over its connection's life. */
#define DIST_ATOM_QUOTA_DEFAULT 100000
/* Fragmented messages one peer may have in flight at once. */
#define DIST_MAX_SEQUENCES_DEFAULT 16
/* Data bytes per fragment, as OTP (ERTS_DIST_FRAGMENT_SIZE). */
#define DIST_FRAGMENT_SIZE 65536

/* Caps of one receiving connection; zero fields take the defaults. */
typedef struct dist_rx_limits {
    size_t max_message;
    size_t atom_quota;
    size_t max_sequences;
} dist_rx_limits_t;

/* A message whose fragments are still arriving. */
typedef struct dist_frag {
    bool used;
    uint64_t seq;
    uint64_t next_id; /* the FragmentId expected next (they count down to 1) */
    term_t refs[255]; /* the start fragment's atom cache refs, resolved */
    size_t nrefs;
    /* Control and payload bytes so far, in an off-heap binary that the
     * decoded message's binaries reference (cap: its size). */
    heap_binary_t *buf;
    size_t len, cap;
} dist_frag_t;

/* The receiving side of one connection. */
typedef struct dist_rx {
    term_t cache[DIST_ATOM_CACHE_SIZE]; /* TERM_NONE: empty slot */
    dist_rx_limits_t lim;
    size_t atoms_created;
    dist_frag_t *frags; /* lim.max_sequences entries */
    size_t frag_bytes;  /* buffer bytes held by partial sequences */
} dist_rx_t;

/* One decoded control message: op 0 means none (a tick, or a fragment of a
 * message not yet complete). */
typedef struct dist_msg {
    int op;
    term_t control; /* the control tuple {Op, ...} */
    term_t payload; /* TERM_NONE when the op has none */
} dist_msg_t;

/* Looks for a complete 4-byte-length frame at in[0..len): returns 1 and
 * *frame_len (body bytes after the length) when one is there, 0 when more
 * bytes are needed (*frame_len is set too once the length is in, len >=
 * 4), DIST_ETOO_LARGE when the length exceeds max (checked before
 * anything is buffered for it).  O(1). */
int dist_frame_split(const uint8_t *in, size_t len, size_t max, size_t *frame_len) GD_MUST_CHECK;

/* True for the operations followed by a payload term. */
bool dist_op_has_payload(int op);

/* Sets up a receiving side (lim may be NULL).  GD_ENOMEM. */
int dist_rx_init(dist_rx_t *rx, const dist_rx_limits_t *lim) GD_MUST_CHECK;
/* Frees partial sequences and the table; rx may be re-initialised. */
void dist_rx_free(dist_rx_t *rx);

/*
 * Decodes one frame body p[0..len) (after its 4-byte length) received on
 * the connection rx: a tick, a pass-through (112) frame, a normal header
 * (131 68) or a fragment (131 69 / 131 70).  Terms are built on h.  The
 * control tuple is checked to be {Op, ...} with a known Op and its arity,
 * and a payload is required exactly for the ops that carry one; nothing
 * may follow.  Errors (the connection must then close): DIST_EPROTO,
 * DIST_ECACHE, DIST_EFRAGMENT, DIST_ETOO_LARGE, DIST_EATOM_QUOTA,
 * GD_ENOMEM, GD_EATOM_TABLE_FULL.  Atoms new to the node count against
 * the quota.  O(len) plus the decoded size.
 */
int dist_rx_frame(dist_rx_t *rx, heap_t *h, const uint8_t *p, size_t len,
                  dist_msg_t *out) GD_MUST_CHECK;

/* As dist_rx_frame for a frame body held in frame->data[0..len): the
 * message's binaries of more than HEAP_BIN_MAX_BYTES reference the
 * frame's bytes (sub-binaries of it) instead of copying them.  frame
 * stays the caller's (the terms hold references of their own). */
int dist_rx_frame_in(dist_rx_t *rx, heap_t *h, heap_binary_t *frame, size_t len,
                     dist_msg_t *out) GD_MUST_CHECK;

/* Bytes before the data of a continuation fragment (131 70 seq id). */
#define DIST_FRAG_CONT_HDR_LEN 18

/*
 * The receive path's copy-saving form of dist_rx_frame for a continuation
 * fragment: hdr holds the first DIST_FRAG_CONT_HDR_LEN bytes of a frame of
 * len bytes.  Returns 1 with *dst pointing at room for its len -
 * DIST_FRAG_CONT_HDR_LEN data bytes in the sequence's buffer (the caller
 * copies them there from its input at once: the sequence counts them as
 * received), or 2 when that fragment is the message's last: after the
 * copy, dist_rx_frag_complete decodes the message; 0 when the frame must
 * go through dist_rx_frame (not such a fragment); DIST_EFRAGMENT,
 * DIST_ETOO_LARGE or GD_ENOMEM (close the connection) as dist_rx_frame
 * would.  O(1) plus a buffer growth.
 */
int dist_rx_frag_room(dist_rx_t *rx, const uint8_t *hdr, size_t len, uint8_t **dst) GD_MUST_CHECK;
/* After dist_rx_frag_room returned 2 for hdr: decodes the completed
 * message onto h as dist_rx_frame would, its binaries referencing the
 * sequence's buffer (no copy).  Errors as dist_rx_frame. */
int dist_rx_frag_complete(dist_rx_t *rx, heap_t *h, const uint8_t *hdr,
                          dist_msg_t *out) GD_MUST_CHECK;

/* A message encoded but not yet framed: the control's bytes then the
 * payload's, without version bytes (framing depends on the flags agreed
 * with the peer, which a message queued before the handshake ends does
 * not know yet). */
typedef struct dist_body {
    etf_buf_t bytes;
    size_t ctl_len;
    bool has_payload;
    /* Big binaries of the payload left out of bytes (dist_encode_body_refs:
     * their bytes belong at refs.v[i].at); none unless asked for. */
    etf_bin_refs_t refs;
} dist_body_t;

/* Encodes control and payload (TERM_NONE: none) into out->bytes (reused;
 * the caller frees it).  Errors: ETF encode errors, GD_ENOMEM.  O(size). */
int dist_encode_body(term_t control, term_t payload, dist_body_t *out) GD_MUST_CHECK;

/* As dist_encode_body, the payload's byte-aligned off-heap binaries of at
 * least DIST_FRAGMENT_SIZE bytes referenced in out->refs rather than
 * copied (dist_frag_next then yields their bytes where they lie).
 * Everything but dist_frag_iter_* needs dist_body_flatten first. */
int dist_encode_body_refs(term_t control, term_t payload, dist_body_t *out) GD_MUST_CHECK;
/* The body's length with its referenced binaries. */
static inline size_t dist_body_len(const dist_body_t *b)
{
    return b->bytes.len + b->refs.bytes;
}
/* Copies the referenced binaries into bytes (and drops the references).
 * GD_ENOMEM (the body unchanged). */
int dist_body_flatten(dist_body_t *b) GD_MUST_CHECK;
/* Frees bytes and drops the references. */
void dist_body_free(dist_body_t *b);

/*
 * Appends body to out as the frames a peer with the agreed flags expects:
 * pass-through (112 131 control 131 payload) without DIST_HDR_ATOM_CACHE,
 * else 131 68 with no cache refs, cut into DIST_FRAGMENT_SIZE fragments
 * (sequence id seq, non-zero: see dist_frame_fragments) when FRAGMENTS
 * is agreed and the body is longer.  On failure out->len is unchanged.
 * Errors: GD_ENOMEM, DIST_ETOO_LARGE, GD_EINVAL (seq 0 for a fragmented
 * body).
 */
int dist_frame_body(const dist_body_t *body, uint64_t flags, uint64_t seq,
                    etf_buf_t *out) GD_MUST_CHECK;

/* The sending side's atom cache of one connection: the atom the peer
 * holds in each slot (TERM_NONE: none).  Starts empty (zeroed is not
 * empty: use dist_tx_init). */
typedef struct dist_tx {
    term_t cache[DIST_ATOM_CACHE_SIZE];
} dist_tx_t;

static inline void dist_tx_init(dist_tx_t *tx)
{
    for (size_t i = 0; i < DIST_ATOM_CACHE_SIZE; i++)
        tx->cache[i] = TERM_NONE;
}

/*
 * As dist_frame_body for a peer with DIST_HDR_ATOM_CACHE, as one frame
 * whose header references the message's atoms (up to 255) through the
 * connection's cache tx: new entries carry their text and update tx.  The
 * frames must reach the peer in the order they were made (the caller
 * holds the connection's lock from here to the write; a frame made and
 * not sent desynchronises the caches: close the connection then).
 * Errors: GD_ENOMEM, DIST_ETOO_LARGE, DIST_EPROTO (body not girder's
 * encoding).  O(size of body).
 */
int dist_frame_cached(const dist_body_t *body, uint64_t flags, dist_tx_t *tx,
                      etf_buf_t *out) GD_MUST_CHECK;

/* The fragments (131 69 then 131 70) of body, frag_size data bytes each,
 * under sequence id seq: non-zero (OTP reads a fragment with id 0 as a
 * whole message) and not shared by another sequence in flight on the
 * connection.  Errors: GD_EINVAL (seq 0), GD_ENOMEM, DIST_ETOO_LARGE. */
int dist_frame_fragments(const dist_body_t *body, uint64_t seq, size_t frag_size,
                         etf_buf_t *out) GD_MUST_CHECK;

/* The body as a peer with these flags takes it: *changed and the
 * rewritten body in *adapted (the caller frees adapted->bytes) when the
 * peer lacks DFLAG_EXIT_PAYLOAD and the op is a PAYLOAD_* one, else
 * *changed false (dist_frame_body does this itself).  GD_ENOMEM. */
int dist_body_for_flags(const dist_body_t *body, uint64_t flags, dist_body_t *adapted,
                        bool *changed) GD_MUST_CHECK;

/* The fragments of a body one at a time, for a writer that sends each
 * piece of the body where it lies (no copy into a frame buffer): the
 * frames are those of dist_frame_fragments. */
#define DIST_FRAG_HDR_MAX 19 /* 131 69 seq id + the start's empty cache header */
/* Pieces of one fragment's data at most (referenced binaries are at
 * least a fragment long: bytes, binary, bytes, binary). */
#define DIST_FRAG_SEGS 4
typedef struct dist_seg {
    const uint8_t *p;
    size_t len;
} dist_seg_t;
typedef struct dist_frag_iter {
    const dist_body_t *body;
    uint64_t seq;
    size_t frag_size, first, total;
    size_t phys, ri, ref_off; /* position: in bytes, the next ref, into it */
    uint64_t nfrags, id;      /* id: the next fragment's (0: done) */
} dist_frag_iter_t;
/* Errors: GD_EINVAL (seq or frag_size 0), DIST_ETOO_LARGE.  The body must
 * outlive the iteration. */
int dist_frag_iter_init(dist_frag_iter_t *it, const dist_body_t *body, uint64_t seq,
                        size_t frag_size) GD_MUST_CHECK;
/* The next fragment: its 4-byte length and header in hdr[0..*hdr_len),
 * its data in segs[0..*nsegs), pieces of the body and of its referenced
 * binaries where they lie.  False when done. */
bool dist_frag_next(dist_frag_iter_t *it, uint8_t hdr[4 + DIST_FRAG_HDR_MAX], size_t *hdr_len,
                    dist_seg_t segs[DIST_FRAG_SEGS], size_t *nsegs);

/*
 * Appends to out one message as frames: 4-byte length, 131 68 with no
 * atom cache refs, control, payload (TERM_NONE: none).  When frag_size is
 * non-zero and control+payload exceed it, the message goes out as
 * fragments (131 69 then 131 70, sequence id seq, non-zero, ids counting
 * down) of frag_size data bytes, the first holding the whole control.  On
 * failure out->len is unchanged.  Errors: ETF encode errors, GD_ENOMEM,
 * DIST_ETOO_LARGE, GD_EINVAL (seq 0 for a fragmented message).  O(size of
 * the terms).
 */
int dist_encode_message(term_t control, term_t payload, uint64_t seq, size_t frag_size,
                        etf_buf_t *out) GD_MUST_CHECK;

/* ---- the node (node.c, services.c, cookie.c) ---- */

#define CLUSTER_TICKTIME_DEFAULT 60 /* net_ticktime, seconds */
#define CLUSTER_SETUPTIME_DEFAULT 7 /* net_setuptime, seconds per handshake step */

/* What `girder node` starts; zero fields take the defaults. */
typedef struct cluster_config {
    const char *name; /* "name" (host appended) or "name@host" */
    bool longnames;   /* -name (fully qualified host) rather than -sname */
    const char *cookie;
    uint16_t listen_min, listen_max; /* 0: any port */
    unsigned ticktime_s;
    unsigned setuptime_s;
    unsigned schedulers; /* 0: one per core */
    bool hidden;
    uint16_t epmd_port; /* 0: ERL_EPMD_PORT or 4369 */
    /* The application's own services (node/'s girder_kv), started after
     * cluster/'s and before the first connection is accepted, so a peer
     * never finds them missing; NULL: none.  A negative return fails
     * cluster_start with it. */
    int (*start_services)(void);
    /* TLS distribution (-proto_dist inet_tls) with these contexts; NULL:
     * plain TCP.  Borrowed: it must outlive cluster_stop. */
    const struct cluster_tls *tls;
    /* Output limit of one connection, bytes (OTP's +zdbbl): past it,
     * sending coroutine processes are suspended until it drains below
     * half.  0: CLUSTER_DIST_BUF_BUSY_LIMIT_DEFAULT. */
    size_t dist_buf_busy_limit;
    /* No log lines on stderr: short-lived client commands (girder ping,
     * rpc, send, bench) report failures in one line of their own. */
    bool quiet;
    /* Read batching: a TCP connection is read at most once per
     * read_batch_us (TLS ones are read by OpenSSL's bufferevent as before)
     * (0: as soon as bytes arrive; at most CLUSTER_READ_BATCH_MAX_US,
     * else cluster_start fails with GD_EINVAL).
     * For a node with many requests in flight and throughput to gain,
     * such as girder bench's closed loop with hundreds of clients: each
     * read takes what came meanwhile, in fewer system calls, and the CPU
     * is left to the node under test (on a shared machine), at up to
     * that much more latency per reply.  Only the loop thread reads then:
     * it sleeps between reads where a spinning scheduler would not. */
    unsigned read_batch_us;
} cluster_config_t;

#define CLUSTER_READ_BATCH_MAX_US 100000u

#define CLUSTER_DIST_BUF_BUSY_LIMIT_DEFAULT ((size_t)1 << 20) /* OTP's default +zdbbl */

/*
 * Starts the node: binds the distribution port, registers with EPMD (an
 * embedded EPMD when none answers), sets the node identity (name and the
 * creation EPMD gave), starts the schedulers and the services (net_kernel,
 * rex, echo), and accepts connections on a libevent loop thread.  Blocks
 * until registered (at most 10 s).  Errors: GD_EINVAL (bad name or
 * config), GD_ESYSTEM_LIMIT (no port, no EPMD registration, threads),
 * GD_ENOMEM, GD_EALREADY (identity already frozen).  One node per process.
 */
int cluster_start(const cluster_config_t *cfg) GD_MUST_CHECK;

/* Stops processes, closes every connection, releases the EPMD name and the
 * port.  No-op when not started.  Not from a process or loop callback. */
void cluster_stop(void);

/* The node's full name (valid while started). */
const char *cluster_node_name(size_t *len);

/*
 * The cookie from path (normally ~/.erlang.cookie), created when missing
 * (mode 0400, 32 letters A-Z from getrandom: 150 bits) and *created set.
 * Trailing whitespace is dropped.  *out is malloc'ed (caller frees).
 * Errors: GD_EINVAL (unreadable, empty, or group/other can read it: OTP
 * refuses such a file too), GD_ENOMEM.
 */
int cluster_cookie_load(const char *path, char **out, bool *created) GD_MUST_CHECK;

/* True for a cookie shorter than 16 characters or a well-known default:
 * the node warns loudly about it. */
bool cluster_cookie_weak(const char *cookie);

/* A C function callable by rpc:call / erpc:call from other nodes: args is
 * the proper list of arguments (on h), the result is built on h.  A
 * negative return raises error badarg in the caller. */
typedef int (*cluster_rpc_fn)(heap_t *h, term_t args, term_t *result);

/* Registers module:function/arity (replacing an earlier one).  Call before
 * or after cluster_start.  Errors: GD_ENOMEM, GD_EINVAL, GD_ESYSTEM_LIMIT
 * (table full: CLUSTER_RPC_MAX). */
#define CLUSTER_RPC_MAX 256
int cluster_rpc_register(const char *module, const char *function, unsigned arity,
                         cluster_rpc_fn fn) GD_MUST_CHECK;

/*
 * erlang:monitor_node(Node, On) for the calling process (ctx): with On,
 * {nodedown, Node} arrives once when the connection to Node goes down or,
 * if there is none, when connecting to it (started here) fails; each call
 * adds one notification, and On false removes one of them.  The local
 * node is never reported down.  Errors: GD_EBADARG (not an atom),
 * GD_ENOMEM.
 */
int cluster_monitor_node(sched_ctx_t *ctx, term_t node, bool on) GD_MUST_CHECK;

/*
 * net_kernel:monitor_nodes(On) for the calling process: while on,
 * {nodeup, Node} and {nodedown, Node} for every visible node connecting
 * and disconnecting (hidden ones are not reported, as OTP's default).
 * Subscribing twice is one subscription; it ends with the process.
 * Errors: GD_ENOMEM, SCHED_ESTOPPED.
 */
int cluster_monitor_nodes(sched_ctx_t *ctx, bool on) GD_MUST_CHECK;

/*
 * The client half of erpc (OTP's spawn_request(Node, M, F, Args, [{reply,
 * error_only}, monitor])) for the calling process ctx: the request is
 * registered with the connection's controller first (so that the
 * connection's end answers it), then SPAWN_REQUEST {29, ReqId, Self, Self,
 * {M, F, Arity}, [monitor]} + args goes to node, connecting when needed.
 * req_id must be an alias of ctx made with SCHED_ALIAS_REPLY: exactly one
 * message answers through it, {spawn_reply, ReqId, error, Reason} when the
 * peer refused the spawn (notsup, badarg, system_limit, ...), or
 * {'DOWN', ReqId, process, Node, Reason} when the process ended (Reason its
 * exit reason) or the connection did (noconnection).  A successful
 * SPAWN_REPLY is not delivered (erpc's error_only).  The group leader
 * named on the wire is the caller (girder_erpc_call answers its io
 * requests while it waits).
 * Errors: DIST_ENOCONNECTION (node is this node or no valid node name),
 * GD_EBADARG (mfa not {M, F, Arity}, args not a list), GD_ENOMEM, the
 * encoder's.  O(size of args).
 */
int cluster_spawn_request(sched_ctx_t *ctx, term_t node, term_t req_id, term_t mfa,
                          term_t args) GD_MUST_CHECK;

/* Forgets request req_id of ctx (erpc's spawn_request_abandon after a
 * timeout): its controller entry goes; the late answer, if any, meets the
 * alias the caller has removed and is dropped.  0 or GD_ENOMEM. */
int cluster_spawn_abandon(sched_ctx_t *ctx, term_t node, term_t req_id) GD_MUST_CHECK;

/*
 * The global registry (global.c): OTP's global, shared with OTP and girder
 * nodes alike (global:whereis_name/1 on an OTP node sees these names);
 * also reached by rpc (global:register_name/2, unregister_name/1,
 * whereis_name/1, send/2, registered_names/0, and girder:global_*).
 * register: 0, or SCHED_ENAME_TAKEN when another pid holds the name; it
 * and unregister wait (not from global_name_server itself) for the
 * cluster-wide lock round, GD_ESYSTEM_LIMIT after 20 s, SCHED_ESTOPPED
 * when the node stops.  whereis: the pid or the atom undefined (on h);
 * send: SCHED_ENOPROC for a name nobody holds, else sched_send's result
 * with the pid in *pid_out.  h is the caller's heap (decoded pids go
 * there).  A name is any term, as in OTP, of at most 64 KiB encoded.
 * Errors: GD_EBADARG (not a pid, a name over 64 KiB), GD_ENOMEM,
 * GD_ESYSTEM_LIMIT (a million names).
 */
int cluster_global_register(heap_t *h, term_t name, term_t pid) GD_MUST_CHECK;
int cluster_global_unregister(heap_t *h, term_t name) GD_MUST_CHECK;
int cluster_global_whereis(heap_t *h, term_t name, term_t *pid_out) GD_MUST_CHECK;
int cluster_global_send(sched_ctx_t *ctx, heap_t *h, term_t name, term_t msg,
                        term_t *pid_out) GD_MUST_CHECK;
/* ---- TLS distribution (tls.c; OTP's -proto_dist inet_tls) ---- */

enum cluster_tls_verify {
    CLUSTER_TLS_VERIFY_NONE = 0, /* ssl's default when the file says nothing */
    CLUSTER_TLS_VERIFY_PEER,
};

/* One side's options (ssl's names).  Strings are malloc'ed UTF-8. */
typedef struct cluster_tls_side {
    char *certfile, *keyfile, *cacertfile, *password, *ciphers;
    char *dhfile;     /* server only */
    char *sni;        /* client only: server_name_indication Host (NULL: the
                         host part of the node name dialled) */
    bool sni_disable; /* client only: {server_name_indication, disable} */
    enum cluster_tls_verify verify;
    bool fail_if_no_peer_cert;    /* server only */
    int depth;                    /* -1: ssl's default (10) */
    int min_version, max_version; /* TLS1_2_VERSION / TLS1_3_VERSION; 0: 1.2 and 1.3 */
} cluster_tls_side_t;

/* What -ssl_dist_optfile and -ssl_dist_opt configure. */
typedef struct cluster_tls_conf {
    cluster_tls_side_t server, client;
} cluster_tls_conf_t;

/* An empty configuration (every option at ssl's default). */
void cluster_tls_conf_init(cluster_tls_conf_t *conf);
/* Frees the strings; conf is empty again. */
void cluster_tls_conf_free(cluster_tls_conf_t *conf);

/*
 * Reads the text of an optfile: one Erlang term [{server, Opts}, {client,
 * Opts}] (optional final '.', comments), Opts a list of {Key, Value} as ssl
 * takes them: certfile, keyfile, cacertfile, password (strings or binaries),
 * verify (verify_peer | verify_none), fail_if_no_peer_cert (server), depth,
 * versions (['tlsv1.2', 'tlsv1.3']), ciphers (OpenSSL's string form),
 * dhfile (server), server_name_indication (client: disable | Host),
 * crl_check false; secure_renegotiate, reuse_sessions, hibernate_after and
 * honor_cipher_order are accepted and ignored (tls.c says why).  Anything
 * else, or a bad value: GD_EINVAL with a one-line reason in err.  Options
 * apply over what conf holds.  GD_ENOMEM aside, O(len).
 */
int cluster_tls_conf_parse(cluster_tls_conf_t *conf, const char *text, size_t len, char *err,
                           size_t err_size) GD_MUST_CHECK;
/* As cluster_tls_conf_parse on the file at path (at most 1 MiB). */
int cluster_tls_conf_load(cluster_tls_conf_t *conf, const char *path, char *err,
                          size_t err_size) GD_MUST_CHECK;
/* One -ssl_dist_opt pair: key server_<opt> or client_<opt>, opt one of
 * OTP's flag-form options (inet_tls_dist:ssl_option/2).  GD_EINVAL with
 * err set for an unknown key or a bad value. */
int cluster_tls_conf_opt(cluster_tls_conf_t *conf, const char *key, const char *value, char *err,
                         size_t err_size) GD_MUST_CHECK;
/* NULL when peers are verified both ways, else what is missing (the node
 * warns at start, as a plain-TCP-grade setup). */
const char *cluster_tls_weakness(const cluster_tls_conf_t *conf);

/* The OpenSSL contexts of a configuration (opaque). */
typedef struct cluster_tls cluster_tls_t;
/* Builds both contexts, reading every certificate, key and CA file now:
 * GD_EINVAL with the file and OpenSSL's reason in err.  The server side
 * needs a certfile.  conf may be freed afterwards. */
int cluster_tls_new(const cluster_tls_conf_t *conf, cluster_tls_t **out, char *err,
                    size_t err_size) GD_MUST_CHECK;
void cluster_tls_free(cluster_tls_t *tls);

/* Inside TLS the handshake messages carry 4-byte lengths (OTP's {packet,
 * 4}); the state machine takes 2-byte ones.  unframe4: one complete
 * message at in[0..len) rewritten into out with a 2-byte length: 1 (and
 * *out_len, *in_used), 0 when more bytes are needed, DIST_ETOO_LARGE past
 * DIST_HS_MSG_MAX.  reframe4: every 2-byte-framed message of in into out
 * (room for 2 * len bytes) with 4-byte lengths; returns out's
 * length.  O(len). */
int dist_hs_unframe4(const uint8_t *in, size_t len, uint8_t out[DIST_HS_MSG_MAX + 2],
                     size_t *out_len, size_t *in_used) GD_MUST_CHECK;
size_t dist_hs_reframe4(const uint8_t *in, size_t len, uint8_t *out);

/* ---- statistics (metrics, tests) ---- */

typedef struct cluster_traffic {
    uint64_t bytes_in, bytes_out; /* frame bytes, 4-byte lengths and ticks included */
    uint64_t msgs_in, msgs_out;   /* control messages (ticks not counted) */
    uint64_t busy_ns; /* time over the output limit (+zdbbl), a current stretch included */
} cluster_traffic_t;

/* One connection's counters. */
typedef struct cluster_conn_stats {
    char node[DIST_NAME_MAX + 1]; /* the peer's full name */
    bool busy;                    /* over the output limit now */
    uint64_t suspends;            /* times a sending process was suspended */
    size_t out_queued;            /* bytes waiting for the socket now */
    uint64_t writes;              /* output writes so far (each a batch of frames) */
    cluster_traffic_t traffic;
} cluster_conn_stats_t;

/* Fills out[0..max) with the counters of the connections that are up and
 * returns how many are up (call again with more room when larger).  Any
 * thread.  O(connections). */
size_t cluster_conn_stats(cluster_conn_stats_t *out, size_t max);

typedef struct cluster_stats {
    cluster_traffic_t total;      /* every connection so far, closed ones included */
    unsigned connections;         /* open now (up or being set up) */
    bool epmd_registered;         /* registered with EPMD now */
    uint64_t epmd_registrations;  /* successful registrations so far (re-registrations too) */
    bool epmd_embedded;           /* the node runs the embedded EPMD */
    unsigned epmd_embedded_names; /* names registered with it now */
} cluster_stats_t;

typedef void (*cluster_conn_fn)(const cluster_conn_stats_t *c, void *ud);

/* The running node's libevent loop (NULL when not started): a metrics
 * server is added to it, so that its scrapes run on the loop thread. */
struct event_base;
struct event_base *cluster_event_base(void);

/*
 * Fills *out and calls each (may be NULL) for every connection that is up,
 * with node state locked (each must not send or call into cluster/).  Only
 * on the loop thread (a callback of an event on cluster_event_base), where
 * the EPMD keeper and an embedded EPMD live; false (and *out zeroed)
 * elsewhere or when the node is not running.  O(connections).
 */
bool cluster_stats(cluster_stats_t *out, cluster_conn_fn each, void *ud);

#endif /* GIRDER_CLUSTER_H */
