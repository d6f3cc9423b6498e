/*
 * cookie.c — the magic cookie file (~/.erlang.cookie), read as OTP reads
 * it and, when missing, created from the OS random source (unlike OTP,
 * whose own generator is seeded from the clock).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster.h"

/* 32 letters of 26: 150 bits, above the 128 asked for. */
#define COOKIE_NEW_LEN 32
/* Largest cookie file read (OTP reads any size; a bigger file is
 * refused rather than cut). */
#define COOKIE_MAX 65536

/* Writes a fresh cookie to path with O_EXCL (never over an existing
 * file), mode 0400. */
static int create_cookie(const char *path)
{
    char text[COOKIE_NEW_LEN + 1];
    size_t n = 0;
    while (n < COOKIE_NEW_LEN) {
        uint8_t r[64];
        if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
            return GD_ESYSTEM_LIMIT;
        /* Rejection sampling: 234 = 9 * 26 keeps the letters uniform. */
        for (size_t i = 0; i < sizeof r && n < COOKIE_NEW_LEN; i++)
            if (r[i] < 234)
                text[n++] = (char)('A' + r[i] % 26);
    }
    text[n] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
    if (fd < 0)
        return GD_EINVAL;
    ssize_t w = write(fd, text, n + 1);
    int rc = close(fd);
    return w == (ssize_t)(n + 1) && rc == 0 ? 0 : GD_EINVAL;
}

int cluster_cookie_load(const char *path, char **out, bool *created)
{
    *out = NULL;
    *created = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        int rc = create_cookie(path);
        if (rc < 0)
            return rc;
        *created = true;
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return GD_EINVAL;
    /* Group or other access: refused, as OTP refuses it. */
    struct stat st;
    bool readable = fstat(fd, &st) == 0 && (st.st_mode & 077) == 0 && st.st_size > 0 &&
                    st.st_size <= COOKIE_MAX;
    char *buf = readable ? malloc((size_t)st.st_size + 1) : NULL;
    /* One byte more than the size: a file that grew meanwhile is refused. */
    ssize_t n = buf != NULL ? read(fd, buf, (size_t)st.st_size + 1) : -1;
    close(fd);
    if (readable && buf == NULL)
        return GD_ENOMEM;
    if (n <= 0 || n > st.st_size) {
        free(buf);
        return GD_EINVAL;
    }
    /* As OTP's auth:check_cookie: the printable ASCII bytes up to the
     * first other one are the cookie (spaces included); after it only
     * newlines, returns and spaces may follow. */
    ssize_t len = 0;
    while (len < n && buf[len] >= ' ' && buf[len] <= '~')
        len++;
    ssize_t end = len;
    while (end < n && (buf[end] == '\n' || buf[end] == '\r' || buf[end] == ' '))
        end++;
    /* OTP: "Too short cookie string", "Bad characters in cookie". */
    if (len == 0 || end < n) {
        free(buf);
        return GD_EINVAL;
    }
    buf[len] = 0;
    *out = buf;
    return 0;
}

bool cluster_cookie_weak(const char *cookie)
{
    static const char *const known[] = {"secret",   "cookie", "nocookie", "erlang",  "monster",
                                        "changeme", "SECRET", "COOKIE",   "default", "test"};
    if (strlen(cookie) < 16)
        return true;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(cookie, known[i]) == 0)
            return true;
    return false;
}
