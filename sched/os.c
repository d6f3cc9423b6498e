/*
 * os.c — what the operating system reports about this OS process, for
 * metrics and for the tests that check memory comes back; the C library's
 * memory policy the runtime sets; the process-wide memory barrier that
 * reclamation uses (scheduler.c, "Borrowed PCBs").
 */
#include <linux/membarrier.h>
#include <malloc.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

size_t sched_os_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    unsigned long size = 0, resident = 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return (size_t)resident * (size_t)(page > 0 ? page : 4096);
}

void sched_os_malloc_policy(void)
{
    /*
     * glibc maps every block of 128 KiB or more afresh (the threshold
     * only rises as such blocks are freed) and gives an arena's top back
     * once 128 KiB of it is free: each big message, binary or fragment
     * buffer then faults all its pages in again.  A 1 MiB dist message
     * cost its receiver 256 page faults (dist_oneway_1mib: 770 MiB/s;
     * with this policy over 3,000).  Blocks up to 4 MiB now come from
     * the arenas, and up to 16 MiB of free memory stays at the top of
     * each for reuse, as BEAM's allocators keep their carriers.  Not
     * more: malloc_trim gives back free chunks inside an arena and the
     * main arena's top, but never the top of a thread's arena (glibc
     * trims those only in free, past this threshold), so what is kept
     * there stays resident while the node idles.  With 64 MiB a million
     * exited processes left 52-63 MiB resident per scheduler's arena
     * (test_sched_spawn's exited-memory check failed 1 run in 10); with
     * 16 MiB, 37-62 MiB in all, and the 1 MiB dist one-way and spawn
     * benchmarks moved within their noise.
     */
    (void)mallopt(M_MMAP_THRESHOLD, SCHED_MALLOC_MMAP_MIN);
    (void)mallopt(M_TRIM_THRESHOLD, SCHED_MALLOC_KEEP);
}

bool sched_os_membarrier_init(void)
{
    /* Linux 4.14+.  Refused in some sandboxes (seccomp): the schedulers
     * then take a reference for every lookup, as off the schedulers. */
    long cmds = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED))
        return false;
    return syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

bool sched_os_membarrier(void)
{
    return syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}
