/*
 * test_atoms.c — the global atom table: creation and lookup, Latin-1 and
 * UTF-8 forms, length limits, invalid UTF-8, concurrent creation, and the
 * configured capacity (in a re-executed copy of this program, because the
 * table is global and sized once per process).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cunit_main.h"
#include "heap.h"

/* ------------------------------------------------------------------------ */
/* The capacity scenario runs in a child process started by test_limit: the
 * child is this executable re-executed with GD_ATOMS_LIMIT_CHILD set, and
 * this constructor runs the scenario before main() (and before anything can
 * touch the table), then exits with the number of the first failed check. */

#define CHILD_ENV "GD_ATOMS_LIMIT_CHILD"
#define CHILD_EXTRA 100u /* atoms the child may create beyond the fixed ones */
#define CHILD_THREADS 4

static _Atomic unsigned child_created;

static void *child_racer(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    for (unsigned i = 0; i < 200; i++) {
        char name[32];
        int n = snprintf(name, sizeof name, "race_%u_%u", t, i);
        term_t a;
        int rc = heap_atom_put(name, (size_t)n, &a);
        if (rc == GD_OK)
            child_created++;
        else if (rc != GD_EATOM_TABLE_FULL)
            return (void *)1;
    }
    return NULL;
}

#define CHILD_CHECK(cond)                                                                          \
    do {                                                                                           \
        step++;                                                                                    \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "atom limit child: check %d failed: %s\n", step, #cond);               \
            _exit(step);                                                                           \
        }                                                                                          \
    } while (0)

__attribute__((constructor)) static void atoms_limit_child(void)
{
    const char *mode = getenv(CHILD_ENV);
    if (mode == NULL)
        return;
    int step = 0;
    uint32_t limit = HEAP_FIXED_ATOM_COUNT + CHILD_EXTRA;
    CHILD_CHECK(heap_atoms_configure(0) == GD_EINVAL);
    CHILD_CHECK(heap_atoms_configure(HEAP_FIXED_ATOM_COUNT) == GD_EINVAL);
    CHILD_CHECK(heap_atoms_configure(HEAP_ATOM_LIMIT_MAX + 1) == GD_EINVAL);
    CHILD_CHECK(heap_atoms_configure(limit) == GD_OK);
    CHILD_CHECK(heap_atom_limit() == limit);
    CHILD_CHECK(heap_atom_count() == HEAP_FIXED_ATOM_COUNT);
    /* Configuring after the table exists is refused. */
    CHILD_CHECK(heap_atoms_configure(limit + 1) == GD_EINVAL);
    if (mode[0] == 't') {
        /* Threads race to fill the table: exactly the capacity is created. */
        pthread_t th[CHILD_THREADS];
        for (unsigned t = 0; t < CHILD_THREADS; t++)
            CHILD_CHECK(pthread_create(&th[t], NULL, child_racer, (void *)(uintptr_t)t) == 0);
        for (unsigned t = 0; t < CHILD_THREADS; t++) {
            void *res;
            CHILD_CHECK(pthread_join(th[t], &res) == 0);
            CHILD_CHECK(res == NULL);
        }
        CHILD_CHECK(child_created == CHILD_EXTRA);
        CHILD_CHECK(heap_atom_count() == limit);
    } else {
        term_t first = TERM_NONE, a;
        for (unsigned i = 0; i < CHILD_EXTRA; i++) {
            char name[32];
            int n = snprintf(name, sizeof name, "fill_%u", i);
            CHILD_CHECK(heap_atom_put(name, (size_t)n, &a) == GD_OK);
            if (i == 0)
                first = a;
        }
        CHILD_CHECK(heap_atom_count() == limit);
        CHILD_CHECK(heap_atom_put("one_too_many", 12, &a) == GD_EATOM_TABLE_FULL);
        CHILD_CHECK(heap_atom_put_latin1((const uint8_t *)"x\xe9", 2, &a) == GD_EATOM_TABLE_FULL);
        CHILD_CHECK(heap_atom("another") == TERM_NONE);
        CHILD_CHECK(heap_atom_count() == limit);
        /* Existing atoms keep working, by every entry point. */
        CHILD_CHECK(heap_atom_put("fill_0", 6, &a) == GD_OK && a == first);
        CHILD_CHECK(heap_atom_lookup("fill_0", 6, &a) == GD_OK && a == first);
        CHILD_CHECK(heap_atom_put_latin1((const uint8_t *)"fill_0", 6, &a) == GD_OK && a == first);
        CHILD_CHECK(heap_atom("ok") == ATOM_OK);
        CHILD_CHECK(heap_atom_lookup("one_too_many", 12, &a) == GD_EATOM_NOT_FOUND);
        size_t len;
        const char *text = heap_atom_text(first, &len);
        CHILD_CHECK(len == 6 && memcmp(text, "fill_0", 6) == 0);
        /* Bad input is still reported as such, not as "full". */
        CHILD_CHECK(heap_atom_put("\xff", 1, &a) == GD_EATOM_BAD_UTF8);
    }
    _exit(0);
}

static void run_limit_child(const char *mode)
{
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        setenv(CHILD_ENV, mode, 1);
        char *argv[] = {(char *)"test_heap_atoms", NULL};
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    int status = 0;
    pid_t w;
    do
        w = waitpid(pid, &status, 0);
    while (w < 0 && errno == EINTR);
    CU_ASSERT_EQUAL(w, pid);
    CU_ASSERT(WIFEXITED(status));
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        fprintf(stderr, "\natom limit child (%s) failed at check %d\n", mode, WEXITSTATUS(status));
    CU_ASSERT_EQUAL(WEXITSTATUS(status), 0);
}

static void test_limit(void)
{
    run_limit_child("sequential");
    run_limit_child("threads");
    /* This process's table exists already: configuring is refused. */
    CU_ASSERT(heap_atom("ok") == ATOM_OK);
    CU_ASSERT_EQUAL(heap_atoms_configure(HEAP_ATOM_LIMIT_DEFAULT), GD_EINVAL);
    CU_ASSERT_EQUAL(heap_atom_limit(), HEAP_ATOM_LIMIT_DEFAULT);
}

/* ------------------------------------------------------------------------ */

static void test_fixed_atoms(void)
{
    CU_ASSERT_EQUAL(heap_atom("false"), ATOM_FALSE);
    CU_ASSERT_EQUAL(heap_atom("true"), ATOM_TRUE);
    CU_ASSERT_EQUAL(heap_atom("nonode@nohost"), ATOM_NONODE);
    CU_ASSERT_EQUAL(heap_atom("EXIT"), ATOM_EXIT);
    CU_ASSERT_EQUAL(heap_atom(""), ATOM_EMPTY);
    CU_ASSERT(heap_atom_count() >= HEAP_FIXED_ATOM_COUNT);
    size_t len;
    const char *t = heap_atom_text(ATOM_SYSTEM_LIMIT, &len);
    CU_ASSERT(len == 12 && memcmp(t, "system_limit", 12) == 0);
    heap_atom_text(ATOM_EMPTY, &len);
    CU_ASSERT_EQUAL(len, 0);
    CU_ASSERT_EQUAL(heap_atom_chars(ATOM_EMPTY), 0);
}

static void test_put_lookup(void)
{
    term_t a, b;
    uint32_t before = heap_atom_count();
    CU_ASSERT_EQUAL(heap_atom_lookup("never_made_yet", 14, &a), GD_EATOM_NOT_FOUND);
    CU_ASSERT_EQUAL(heap_atom_count(), before); /* a lookup creates nothing */
    CU_ASSERT_EQUAL_FATAL(heap_atom_put("never_made_yet", 14, &a), GD_OK);
    CU_ASSERT(term_is_atom(a));
    CU_ASSERT_EQUAL(heap_atom_count(), before + 1);
    CU_ASSERT_EQUAL(heap_atom_lookup("never_made_yet", 14, &b), GD_OK);
    CU_ASSERT_EQUAL(a, b);
    CU_ASSERT_EQUAL(heap_atom_put("never_made_yet", 14, &b), GD_OK);
    CU_ASSERT_EQUAL(a, b);
    CU_ASSERT_EQUAL(heap_atom_count(), before + 1);
    /* Only the given length counts; prefixes are other atoms. */
    CU_ASSERT_EQUAL(heap_atom_put("never_made_yet_and_more", 10, &b), GD_OK);
    CU_ASSERT_NOT_EQUAL(a, b);
    size_t len;
    const char *t = heap_atom_text(b, &len);
    CU_ASSERT(len == 10 && memcmp(t, "never_made", 10) == 0);
    /* Embedded NUL is an ordinary character. */
    term_t z1, z2;
    CU_ASSERT_EQUAL(heap_atom_put("a\0b", 3, &z1), GD_OK);
    CU_ASSERT_EQUAL(heap_atom_put("a", 1, &z2), GD_OK);
    CU_ASSERT_NOT_EQUAL(z1, z2);
    CU_ASSERT_EQUAL(heap_atom_chars(z1), 3);
    /* The text pointer stays valid and stable. */
    const char *t1 = heap_atom_text(a, &len);
    for (int i = 0; i < 5000; i++) {
        char name[32];
        int n = snprintf(name, sizeof name, "filler_%d", i);
        CU_ASSERT_FATAL(heap_atom_put(name, (size_t)n, &b) == GD_OK);
    }
    const char *t2 = heap_atom_text(a, &len);
    CU_ASSERT_PTR_EQUAL(t1, t2);
    CU_ASSERT(len == 14 && memcmp(t2, "never_made_yet", 14) == 0);
}

static void test_latin1_utf8(void)
{
    term_t a, b, c;
    /* 'café' as Latin-1 and as UTF-8 is one atom. */
    CU_ASSERT_EQUAL(heap_atom_put_latin1((const uint8_t *)"caf\xe9", 4, &a), GD_OK);
    CU_ASSERT_EQUAL(heap_atom_put("caf\xc3\xa9", 5, &b), GD_OK);
    CU_ASSERT_EQUAL(a, b);
    CU_ASSERT_EQUAL(heap_atom_chars(a), 4);
    CU_ASSERT(heap_atom_is_latin1(a));
    size_t len;
    const char *t = heap_atom_text(a, &len);
    CU_ASSERT(len == 5 && memcmp(t, "caf\xc3\xa9", 5) == 0); /* stored as UTF-8 */
    /* Every Latin-1 byte value round-trips. */
    uint8_t all[255];
    for (int i = 0; i < 255; i++)
        all[i] = (uint8_t)(i + 1);
    CU_ASSERT_EQUAL(heap_atom_put_latin1(all, 255, &a), GD_OK);
    CU_ASSERT_EQUAL(heap_atom_chars(a), 255);
    CU_ASSERT(heap_atom_is_latin1(a));
    t = heap_atom_text(a, &len);
    CU_ASSERT_EQUAL(len, 127 + 2 * 128);
    CU_ASSERT_EQUAL(heap_atom_lookup(t, len, &b), GD_OK);
    CU_ASSERT_EQUAL(a, b);
    /* Beyond Latin-1. */
    CU_ASSERT_EQUAL(heap_atom_put("\xe2\x82\xac", 3, &c), GD_OK); /* € */
    CU_ASSERT_FALSE(heap_atom_is_latin1(c));
    CU_ASSERT_EQUAL(heap_atom_chars(c), 1);
    CU_ASSERT_EQUAL(heap_atom_put("\xc3\xbf", 2, &c), GD_OK); /* ÿ, U+FF */
    CU_ASSERT(heap_atom_is_latin1(c));
    CU_ASSERT_EQUAL(heap_atom_put("\xc4\x80", 2, &c), GD_OK); /* U+100 */
    CU_ASSERT_FALSE(heap_atom_is_latin1(c));
    CU_ASSERT_EQUAL(heap_atom_put("\xf0\x9f\x98\x80", 4, &c), GD_OK); /* U+1F600 */
    CU_ASSERT_EQUAL(heap_atom_chars(c), 1);
    CU_ASSERT_EQUAL(heap_atom_put("\xf4\x8f\xbf\xbf", 4, &c), GD_OK); /* U+10FFFF */
}

static void test_lengths(void)
{
    char buf[4 * 260];
    term_t a;
    /* ASCII: 255 characters fit, 256 do not. */
    memset(buf, 'x', 256);
    CU_ASSERT_EQUAL(heap_atom_put(buf, 255, &a), GD_OK);
    CU_ASSERT_EQUAL(heap_atom_chars(a), 255);
    CU_ASSERT_EQUAL(heap_atom_put(buf, 256, &a), GD_EATOM_TOO_LONG);
    CU_ASSERT_EQUAL(heap_atom_lookup(buf, 256, &a), GD_EATOM_TOO_LONG);
    /* Multibyte: the limit is in characters, not bytes. */
    for (int i = 0; i < 256; i++)
        memcpy(buf + 3 * i, "\xe2\x82\xac", 3);
    CU_ASSERT_EQUAL(heap_atom_put(buf, 3 * 255, &a), GD_OK);
    CU_ASSERT_EQUAL(heap_atom_chars(a), 255);
    CU_ASSERT_EQUAL(heap_atom_put(buf, 3 * 256, &a), GD_EATOM_TOO_LONG);
    for (int i = 0; i < 256; i++)
        memcpy(buf + 4 * i, "\xf0\x9f\x98\x80", 4);
    CU_ASSERT_EQUAL(heap_atom_put(buf, 4 * 255, &a), GD_OK);
    CU_ASSERT_EQUAL(heap_atom_put(buf, 4 * 256, &a), GD_EATOM_TOO_LONG);
    /* Latin-1: 255 bytes fit, 256 do not (even though 512 UTF-8 bytes would). */
    uint8_t l1[256];
    memset(l1, 0xE9, sizeof l1);
    CU_ASSERT_EQUAL(heap_atom_put_latin1(l1, 255, &a), GD_OK);
    CU_ASSERT_EQUAL(heap_atom_put_latin1(l1, 256, &a), GD_EATOM_TOO_LONG);
    /* A huge length is refused without reading it all. */
    CU_ASSERT_EQUAL(heap_atom_put(buf, (size_t)1 << 40, &a), GD_EATOM_TOO_LONG);
}

static void test_bad_utf8(void)
{
    static const struct {
        const char *s;
        size_t len;
        const char *why;
    } bad[] = {
        {"\xc0\x80", 2, "overlong NUL"},
        {"\xc1\xbf", 2, "overlong 2-byte"},
        {"\xe0\x80\x80", 3, "overlong 3-byte"},
        {"\xe0\x9f\xbf", 3, "overlong 3-byte (U+7FF)"},
        {"\xf0\x80\x80\x80", 4, "overlong 4-byte"},
        {"\xf0\x8f\xbf\xbf", 4, "overlong 4-byte (U+FFFF)"},
        {"\xed\xa0\x80", 3, "surrogate U+D800"},
        {"\xed\xbf\xbf", 3, "surrogate U+DFFF"},
        {"\xf4\x90\x80\x80", 4, "above U+10FFFF"},
        {"\xf5\x80\x80\x80", 4, "lead byte F5"},
        {"\xff", 1, "byte FF"},
        {"\x80", 1, "lone continuation"},
        {"ab\xbf", 3, "continuation after ASCII"},
        {"\xe2\x82", 2, "truncated 3-byte"},
        {"\xf0\x9f\x98", 3, "truncated 4-byte"},
        {"\xc3", 1, "truncated 2-byte"},
        {"\xc3\x28", 2, "bad continuation"},
        {"\xe2\x28\xa1", 3, "bad continuation in 3-byte"},
    };
    uint32_t before = heap_atom_count();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        term_t a;
        int rc = heap_atom_put(bad[i].s, bad[i].len, &a);
        if (rc != GD_EATOM_BAD_UTF8)
            fprintf(stderr, "\naccepted bad UTF-8: %s (rc %d)\n", bad[i].why, rc);
        CU_ASSERT_EQUAL(rc, GD_EATOM_BAD_UTF8);
        CU_ASSERT_EQUAL(heap_atom_lookup(bad[i].s, bad[i].len, &a), GD_EATOM_BAD_UTF8);
    }
    CU_ASSERT_EQUAL(heap_atom_count(), before);
    /* The boundaries just inside are fine. */
    term_t a;
    CU_ASSERT_EQUAL(heap_atom_put("\xc2\x80", 2, &a), GD_OK);         /* U+80 */
    CU_ASSERT_EQUAL(heap_atom_put("\xe0\xa0\x80", 3, &a), GD_OK);     /* U+800 */
    CU_ASSERT_EQUAL(heap_atom_put("\xed\x9f\xbf", 3, &a), GD_OK);     /* U+D7FF */
    CU_ASSERT_EQUAL(heap_atom_put("\xee\x80\x80", 3, &a), GD_OK);     /* U+E000 */
    CU_ASSERT_EQUAL(heap_atom_put("\xf0\x90\x80\x80", 4, &a), GD_OK); /* U+10000 */
}

/* ------------------------------------------------------------------------ */
/* Concurrent creation: several threads create the same names in different
 * orders; each name must end up as one atom. */

#define CONC_THREADS 4
#define CONC_NAMES 3000

typedef struct conc_arg {
    unsigned id;
    pthread_barrier_t *barrier;
    term_t atoms[CONC_NAMES];
    int errors;
} conc_arg_t;

static void *conc_worker(void *p)
{
    conc_arg_t *arg = p;
    pthread_barrier_wait(arg->barrier);
    for (unsigned k = 0; k < CONC_NAMES; k++) {
        /* Each thread walks all names in its own order (the multipliers
         * are coprime to CONC_NAMES, so each walk is a permutation). */
        static const unsigned mult[CONC_THREADS] = {1, 7, 11, 13};
        unsigned i = (k * mult[arg->id] + arg->id * 101) % CONC_NAMES;
        char name[32];
        int n = snprintf(name, sizeof name, "conc_%u", i);
        term_t a;
        if (arg->id % 2 == 1 && k % 3 == 0 && heap_atom_lookup(name, (size_t)n, &a) == GD_OK) {
            arg->atoms[i] = a; /* found already created by another thread */
            continue;
        }
        if (heap_atom_put(name, (size_t)n, &a) != GD_OK)
            arg->errors++;
        else
            arg->atoms[i] = a;
    }
    return NULL;
}

static void test_concurrent(void)
{
    uint32_t before = heap_atom_count();
    pthread_barrier_t barrier;
    CU_ASSERT_FATAL(pthread_barrier_init(&barrier, NULL, CONC_THREADS) == 0);
    static conc_arg_t args[CONC_THREADS];
    pthread_t th[CONC_THREADS];
    for (unsigned t = 0; t < CONC_THREADS; t++) {
        args[t].id = t;
        args[t].barrier = &barrier;
        args[t].errors = 0;
        CU_ASSERT_FATAL(pthread_create(&th[t], NULL, conc_worker, &args[t]) == 0);
    }
    for (unsigned t = 0; t < CONC_THREADS; t++)
        CU_ASSERT(pthread_join(th[t], NULL) == 0);
    pthread_barrier_destroy(&barrier);
    size_t mismatches = 0;
    for (unsigned t = 0; t < CONC_THREADS; t++) {
        CU_ASSERT_EQUAL(args[t].errors, 0);
        for (unsigned i = 0; i < CONC_NAMES; i++)
            if (args[t].atoms[i] != args[0].atoms[i])
                mismatches++;
    }
    CU_ASSERT_EQUAL(mismatches, 0);
    CU_ASSERT_EQUAL(heap_atom_count(), before + CONC_NAMES);
    /* Each atom has its own name. */
    mismatches = 0;
    for (unsigned i = 0; i < CONC_NAMES; i++) {
        char name[32];
        int n = snprintf(name, sizeof name, "conc_%u", i);
        size_t len;
        const char *t = heap_atom_text(args[0].atoms[i], &len);
        if (len != (size_t)n || memcmp(t, name, len) != 0)
            mismatches++;
    }
    CU_ASSERT_EQUAL(mismatches, 0);
}

static const gd_test_case_t cases[] = {
    {"capacity limit (child processes)", test_limit},
    {"fixed atoms", test_fixed_atoms},
    {"put and lookup", test_put_lookup},
    {"latin1 and utf8", test_latin1_utf8},
    {"lengths 255/256", test_lengths},
    {"invalid utf8", test_bad_utf8},
    {"concurrent creation", test_concurrent},
    {NULL, NULL},
};

GD_TEST_MAIN("heap_atoms", cases)
