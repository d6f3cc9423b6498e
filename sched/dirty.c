/*
 * dirty.c — a pool of dirty threads for blocking C calls (file I/O, a slow
 * library), so that they never occupy a scheduler thread.
 *
 * A process calls sched_dirty_call(ctx, fn, arg, tag) from a callback: the
 * job is queued and the callback returns at once; a dirty thread runs
 * fn(arg) and then delivers {Tag, Code} to the process like any message
 * (dropped if the process has died meanwhile).  The reply message is built
 * when the call is made (the tag copied into its fragment, Code a
 * placeholder the dirty thread overwrites before publishing it), so a
 * finished call can always be delivered: nothing can fail after fn ran.
 *
 * sched_start starts sched_opts_t.dirty_threads threads (default
 * SCHED_DIRTY_THREADS_DEFAULT, as BEAM's ten dirty I/O schedulers); they
 * sleep on a condition variable while the queue is empty, costing no CPU.
 * Not lazily: creating a thread inside a dirty call would block the
 * calling scheduler for the thread creation (under ThreadSanitizer, tens of
 * milliseconds of probe latency in tests/sched/test_dirty.c).  One mutex guards
 * the FIFO queue: a dirty call costs a mutex, a malloc and a message, small
 * next to the blocking work it moves off the schedulers.
 *
 * Stopping: sched_stop stops accepting calls (SCHED_ESTOPPED), then waits
 * for every queued or running call to finish and deliver its reply (the
 * schedulers still run meanwhile), and joins the threads.  A call that
 * never returns therefore blocks sched_stop: the pool cannot cancel C code.
 */
#include <stdlib.h>

#include "internal.h"

typedef struct dirty_job {
    struct dirty_job *next;
    sched_dirty_fn fn;
    void *arg;
    term_t pid;   /* the caller, who gets the reply */
    msg_t *reply; /* {Tag, Code} with Code still to be written */
} dirty_job_t;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work; /* a job was queued, or the pool stops */
    /* Everything below: under lock. */
    dirty_job_t *head, **tail;
    pthread_t *threads; /* max_threads slots, nthreads used */
    unsigned nthreads;
    bool accepting;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER};

static void job_free(dirty_job_t *j)
{
    proc_msg_free(j->reply);
    free(j);
}

/* Takes jobs until the queue is empty and the pool stops. */
static void *dirty_main(void *unused)
{
    (void)unused;
    (void)pthread_setname_np(pthread_self(), "gd-dirty");
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.head == NULL && pool.accepting)
            pthread_cond_wait(&pool.work, &pool.lock);
        dirty_job_t *j = pool.head;
        if (j == NULL)
            break; /* stopping, and nothing left */
        pool.head = j->next;
        if (pool.head == NULL)
            pool.tail = &pool.head;
        pthread_mutex_unlock(&pool.lock);

        int code = j->fn(j->arg);
        /* The fragment is still private to this job: the element is
         * written before proc_deliver_to publishes the message with
         * release ordering. */
        term_boxed_ptr(j->reply->term)[2] = term_make_small(code);
        proc_deliver_to(j->pid, j->reply);
        free(j);

        pthread_mutex_lock(&pool.lock);
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

/* Starts the pool's max_threads threads (0: the default) at node start.
 * Errors: GD_EINVAL (above SCHED_DIRTY_THREADS_MAX), GD_ENOMEM,
 * GD_ESYSTEM_LIMIT (a thread could not start; dirty_stop joins those that
 * did).  O(max_threads). */
int dirty_start(unsigned max_threads)
{
    if (max_threads == 0)
        max_threads = SCHED_DIRTY_THREADS_DEFAULT;
    if (max_threads > SCHED_DIRTY_THREADS_MAX)
        return GD_EINVAL;
    pthread_t *threads = calloc(max_threads, sizeof *threads);
    if (threads == NULL)
        return GD_ENOMEM;
    pthread_mutex_lock(&pool.lock);
    pool.head = NULL;
    pool.tail = &pool.head;
    pool.threads = threads;
    pool.nthreads = 0;
    pool.accepting = true;
    int rc = GD_OK;
    for (unsigned i = 0; i < max_threads && rc == GD_OK; i++) {
        if (pthread_create(&pool.threads[i], NULL, dirty_main, NULL) == 0)
            pool.nthreads++;
        else
            rc = GD_ESYSTEM_LIMIT;
    }
    pthread_mutex_unlock(&pool.lock);
    return rc;
}

/* Refuses new calls, lets the threads finish every queued and running call
 * (each delivers its reply), joins them and frees the pool.  Blocks as long
 * as the slowest call; a no-op on a pool that never started. */
void dirty_stop(void)
{
    pthread_mutex_lock(&pool.lock);
    pool.accepting = false;
    pthread_cond_broadcast(&pool.work);
    unsigned n = pool.nthreads;
    pthread_mutex_unlock(&pool.lock);
    /* Each thread drains the queue before it exits. */
    for (unsigned i = 0; i < n; i++)
        pthread_join(pool.threads[i], NULL);
    pthread_mutex_lock(&pool.lock);
    /* Nothing is left unless no thread started (a failed start). */
    while (pool.head != NULL) {
        dirty_job_t *j = pool.head;
        pool.head = j->next;
        job_free(j);
    }
    pool.tail = &pool.head;
    free(pool.threads);
    pool.threads = NULL;
    pool.nthreads = 0;
    pthread_mutex_unlock(&pool.lock);
}

/* Queues fn(arg) for a dirty thread, with the reply {Tag, Code} prepared
 * now (see sched.h for the contract and the errors).  O(size of Tag) plus
 * a mutex. */
int sched_dirty_call(sched_ctx_t *ctx, sched_dirty_fn fn, void *arg, term_t tag)
{
    if (ctx == NULL || fn == NULL)
        return GD_EINVAL;
    if (!node_running())
        return SCHED_ESTOPPED;
    dirty_job_t *j = malloc(sizeof *j);
    if (j == NULL)
        return GD_ENOMEM;
    j->next = NULL;
    j->fn = fn;
    j->arg = arg;
    j->pid = sched_self(ctx);
    int rc = proc_msg_prepare(tag, &j->reply);
    if (rc != GD_OK) {
        free(j);
        return rc;
    }
    pthread_mutex_lock(&pool.lock);
    if (!pool.accepting) {
        rc = SCHED_ESTOPPED;
        goto fail_locked;
    }
    *pool.tail = j;
    pool.tail = &j->next;
    pthread_cond_signal(&pool.work);
    pthread_mutex_unlock(&pool.lock);
    return GD_OK;

fail_locked:
    pthread_mutex_unlock(&pool.lock);
    job_free(j);
    return rc;
}
