/*
 * cmd_node_metrics.c — `girder node --metrics [HOST]:PORT`: the node's
 * figures in the Prometheus text format, served by node/bench/'s registry
 * and evhttp endpoint on the node's own libevent loop.
 *
 * The endpoint lives on the distribution loop rather than a thread of its
 * own: cluster_stats must run there (the EPMD keeper and an embedded EPMD
 * belong to that loop), and a scrape is rare and short next to the
 * traffic.  Every figure is read at scrape time from counters sched/,
 * heap/ and cluster/ keep anyway (per-thread or per-connection, summed
 * here), so serving metrics adds nothing to the hot paths.
 */
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cluster.h"
#include "commands.h"
#include "sched/sched.h"

#define MAX_SCHEDULERS 1024

struct node_metrics {
    bench_metrics_t *reg;
    bench_metrics_http_t *http;
    bench_metric_t *gc_pause;                          /* mirrors heap_gc_pause_hist_node */
    sched_scheduler_stats_t per_sched[MAX_SCHEDULERS]; /* a scrape's copy (registry locked) */
    char host[256];
    uint16_t port;
    int err; /* of the start on the loop */
};

/* ---- running a function on the node's loop thread ---- */

typedef struct loop_call {
    void (*fn)(node_metrics_t *m);
    node_metrics_t *m;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} loop_call_t;

static void loop_call_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    loop_call_t *c = arg;
    c->fn(c->m);
    pthread_mutex_lock(&c->lock);
    c->done = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

/* Runs fn(m) on the loop thread and waits for it (evhttp is not safe to
 * set up or free from a thread other than its loop's). */
static int on_loop(void (*fn)(node_metrics_t *m), node_metrics_t *m)
{
    struct event_base *base = cluster_event_base();
    if (base == NULL)
        return GD_EINVAL;
    loop_call_t c = {.fn = fn, .m = m, .done = false};
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.cond, NULL);
    const struct timeval now = {0, 0};
    int rc = event_base_once(base, -1, EV_TIMEOUT, loop_call_cb, &c, &now) == 0 ? 0 : GD_ENOMEM;
    pthread_mutex_lock(&c.lock);
    while (rc == 0 && !c.done)
        pthread_cond_wait(&c.cond, &c.lock);
    pthread_mutex_unlock(&c.lock);
    pthread_cond_destroy(&c.cond);
    pthread_mutex_destroy(&c.lock);
    return rc;
}

/* ---- collectors ---- */

static const char *const prio_names[4] = {"normal", "low", "high", "max"};

static void emit_labelled(bench_metrics_emit_t *e, bench_metric_type_t t, const char *name,
                          const char *help, const char *lname, const char *lvalue, double v)
{
    bench_label_t l = {lname, lvalue};
    bench_metrics_emit(e, t, name, help, &l, 1, v);
}

/* Run queues, reductions and messages (sched/). */
static void collect_sched(bench_metrics_emit_t *e, node_metrics_t *m)
{
    sched_scheduler_stats_t *per = m->per_sched;
    unsigned n = sched_scheduler_stats(per, MAX_SCHEDULERS);
    for (unsigned i = 0; i < n; i++) {
        char idx[16];
        snprintf(idx, sizeof idx, "%u", i + 1);
        for (unsigned q = 0; q < 4; q++) {
            bench_label_t l[2] = {{"scheduler", idx}, {"priority", prio_names[q]}};
            bench_metrics_emit(e, BENCH_METRIC_GAUGE, "girder_run_queue_length",
                               "Processes queued to run, by scheduler and priority.", l, 2,
                               (double)per[i].runq_len[q]);
        }
        emit_labelled(e, BENCH_METRIC_COUNTER, "girder_scheduler_reductions_total",
                      "Reductions used by processes on each scheduler.", "scheduler", idx,
                      (double)per[i].reductions);
        emit_labelled(e, BENCH_METRIC_COUNTER, "girder_scheduler_messages_total",
                      "Messages delivered to local processes by each scheduler's thread.",
                      "scheduler", idx, (double)per[i].messages);
    }
    sched_stats_t st;
    sched_stats(&st);
    bench_metrics_emit(e, BENCH_METRIC_COUNTER, "girder_reductions_total",
                       "Reductions used by every process (all threads).", NULL, 0,
                       (double)st.reductions);
    bench_metrics_emit(e, BENCH_METRIC_COUNTER, "girder_messages_delivered_total",
                       "Messages delivered to local processes (local and remote senders).", NULL, 0,
                       (double)st.messages);
}

/* Collections, their pauses and memory by kind (heap/, sched/). */
static void collect_memory(bench_metrics_emit_t *e, node_metrics_t *m)
{
    heap_gc_stats_t gc;
    heap_gc_stats_node(&gc);
    emit_labelled(e, BENCH_METRIC_COUNTER, "girder_gc_collections_total",
                  "Garbage collections of process heaps, by kind.", "kind", "minor",
                  (double)gc.minor_collections);
    emit_labelled(e, BENCH_METRIC_COUNTER, "girder_gc_collections_total",
                  "Garbage collections of process heaps, by kind.", "kind", "major",
                  (double)gc.major_collections);
    bench_metrics_emit(e, BENCH_METRIC_COUNTER, "girder_gc_words_reclaimed_total",
                       "Heap words freed by garbage collection.", NULL, 0,
                       (double)gc.words_reclaimed);
    uint64_t counts[HEAP_GC_PAUSE_BUCKETS];
    heap_gc_pause_hist_node(counts);
    /* The bucket counts and the pause total are read one after the other:
     * a collection in between shows in one only, until the next scrape. */
    (void)bench_metric_hist_set(m->gc_pause, counts, HEAP_GC_PAUSE_BUCKETS,
                                (double)gc.pause_ns_total / 1e9);

    const char *help = "Bytes of memory, by kind (processes: PCBs, heaps and dictionaries as "
                       "process_info reports them; binary: off-heap binaries; total: the OS "
                       "process's resident set).";
    emit_labelled(e, BENCH_METRIC_GAUGE, "girder_memory_bytes", help, "kind", "processes",
                  (double)sched_process_memory());
    emit_labelled(e, BENCH_METRIC_GAUGE, "girder_memory_bytes", help, "kind", "binary",
                  (double)heap_binary_live_bytes());
    emit_labelled(e, BENCH_METRIC_GAUGE, "girder_memory_bytes", help, "kind", "total",
                  (double)sched_os_rss_bytes());
    bench_metrics_emit(e, BENCH_METRIC_GAUGE, "girder_atoms", "Atoms in the atom table.", NULL, 0,
                       (double)heap_atom_count());
}

static void emit_conn(const cluster_conn_stats_t *c, void *ud)
{
    bench_metrics_emit_t *e = ud;
    const char *p = c->node;
    emit_labelled(e, BENCH_METRIC_COUNTER, "girder_dist_connection_bytes_in_total",
                  "Distribution frame bytes received, per connected node.", "peer", p,
                  (double)c->traffic.bytes_in);
    emit_labelled(e, BENCH_METRIC_COUNTER, "girder_dist_connection_bytes_out_total",
                  "Distribution frame bytes sent, per connected node.", "peer", p,
                  (double)c->traffic.bytes_out);
    emit_labelled(e, BENCH_METRIC_COUNTER, "girder_dist_connection_messages_in_total",
                  "Distribution messages received, per connected node.", "peer", p,
                  (double)c->traffic.msgs_in);
    emit_labelled(e, BENCH_METRIC_COUNTER, "girder_dist_connection_messages_out_total",
                  "Distribution messages sent, per connected node.", "peer", p,
                  (double)c->traffic.msgs_out);
    emit_labelled(e, BENCH_METRIC_COUNTER, "girder_dist_connection_busy_seconds_total",
                  "Time the connection was over its output limit (+zdbbl; back-pressure).", "peer",
                  p, (double)c->traffic.busy_ns / 1e9);
    emit_labelled(e, BENCH_METRIC_GAUGE, "girder_dist_connection_output_queue_bytes",
                  "Bytes waiting to be written to the connection's socket.", "peer", p,
                  (double)c->out_queued);
}

/* Connections and EPMD (cluster/); runs on the loop thread. */
static void collect_cluster(bench_metrics_emit_t *e)
{
    cluster_stats_t cs;
    if (!cluster_stats(&cs, emit_conn, e))
        return;
    bench_metrics_emit(e, BENCH_METRIC_GAUGE, "girder_dist_connections",
                       "Distribution connections open (up or being set up).", NULL, 0,
                       (double)cs.connections);
    bench_metrics_emit(e, BENCH_METRIC_COUNTER, "girder_dist_bytes_in_total",
                       "Distribution frame bytes received (closed connections included).", NULL, 0,
                       (double)cs.total.bytes_in);
    bench_metrics_emit(e, BENCH_METRIC_COUNTER, "girder_dist_bytes_out_total",
                       "Distribution frame bytes sent (closed connections included).", NULL, 0,
                       (double)cs.total.bytes_out);
    bench_metrics_emit(e, BENCH_METRIC_COUNTER, "girder_dist_messages_in_total",
                       "Distribution messages received (closed connections included).", NULL, 0,
                       (double)cs.total.msgs_in);
    bench_metrics_emit(e, BENCH_METRIC_COUNTER, "girder_dist_messages_out_total",
                       "Distribution messages sent (closed connections included).", NULL, 0,
                       (double)cs.total.msgs_out);
    bench_metrics_emit(e, BENCH_METRIC_COUNTER, "girder_dist_busy_seconds_total",
                       "Time connections spent over their output limit (+zdbbl).", NULL, 0,
                       (double)cs.total.busy_ns / 1e9);
    bench_metrics_emit(e, BENCH_METRIC_GAUGE, "girder_epmd_registered",
                       "1 while the node's name is registered with EPMD.", NULL, 0,
                       cs.epmd_registered ? 1 : 0);
    bench_metrics_emit(e, BENCH_METRIC_COUNTER, "girder_epmd_registrations_total",
                       "Successful EPMD registrations of the node (re-registrations too).", NULL, 0,
                       (double)cs.epmd_registrations);
    if (cs.epmd_embedded)
        bench_metrics_emit(e, BENCH_METRIC_GAUGE, "girder_epmd_embedded_names",
                           "Names registered with the EPMD embedded in this node.", NULL, 0,
                           (double)cs.epmd_embedded_names);
}

static void collect_node(bench_metrics_emit_t *e, void *ctx)
{
    collect_sched(e, ctx);
    collect_memory(e, ctx);
    collect_cluster(e);
}

/* ---- start and stop ---- */

static void start_on_loop(node_metrics_t *m)
{
    uint16_t want = m->port;
    m->err =
        bench_metrics_http_start(cluster_event_base(), m->reg, m->host, want, &m->http, &m->port);
}

static void stop_on_loop(node_metrics_t *m)
{
    bench_metrics_http_stop(m->http);
    m->http = NULL;
}

static int make_registry(node_metrics_t *m)
{
    double bounds[HEAP_GC_PAUSE_BUCKETS - 1];
    for (unsigned i = 0; i < HEAP_GC_PAUSE_BUCKETS - 1; i++)
        bounds[i] = (double)heap_gc_pause_bounds_ns[i] / 1e9;
    int rc = bench_metrics_new(&m->reg);
    if (rc == 0)
        rc = bench_metrics_register(m->reg, BENCH_METRIC_HISTOGRAM, "girder_gc_pause_seconds",
                                    "Garbage collection pauses of process heaps.", NULL, 0, bounds,
                                    HEAP_GC_PAUSE_BUCKETS - 1, &m->gc_pause);
    if (rc == 0)
        rc = bench_metrics_add_sched(m->reg);
    if (rc == 0)
        rc = bench_metrics_add_collector(m->reg, collect_node, m);
    return rc;
}

int node_metrics_start(const char *spec, node_metrics_t **out)
{
    node_metrics_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return GD_ENOMEM;
    int rc = bench_metrics_parse_addr(spec, m->host, sizeof m->host, &m->port);
    if (rc == 0)
        rc = make_registry(m);
    if (rc == 0)
        rc = on_loop(start_on_loop, m);
    if (rc == 0)
        rc = m->err;
    if (rc != 0) {
        bench_metrics_free(m->reg);
        free(m);
        return rc;
    }
    fprintf(stderr, "girder node: metrics on http://%s:%u/metrics\n",
            m->host[0] != '\0' ? m->host : "0.0.0.0", m->port);
    *out = m;
    return 0;
}

void node_metrics_stop(node_metrics_t *m)
{
    if (m == NULL)
        return;
    if (on_loop(stop_on_loop, m) != 0)
        fprintf(stderr, "girder node: could not stop the metrics endpoint cleanly\n");
    else
        bench_metrics_free(m->reg);
    free(m);
}
