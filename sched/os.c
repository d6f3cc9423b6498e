/*
 * os.c — what the operating system reports about this OS process, for
 * metrics and for the tests that check memory comes back.
 */
#include <stdio.h>
#include <unistd.h>

#include "sched.h"

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
