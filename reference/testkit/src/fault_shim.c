/* An LD_PRELOAD shim for Coffer's fault tests (coffer_testkit::FaultShim), each fault on while
 * a flag file exists (the test creates and removes it under a running process):
 *
 * - COFFER_FAIL_FSYNC=FLAG: fsync and fdatasync fail with EIO, without syncing;
 * - COFFER_HANG_OPEN=FLAG with COFFER_HANG_UNDER=DIR: open and fopen of a path under DIR wait
 *   until FLAG is gone (SoftHSM2 opens its token files on every operation, so its calls hang).
 *
 * Chosen over a FUSE file system: no mount, no root, no crate, and it fails exactly the calls
 * that make a write durable or that a module reads its token through. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int flag_set(const char *variable) {
    const char *flag = getenv(variable);
    return flag != NULL && access(flag, F_OK) == 0;
}

static void hang_if_under(const char *path) {
    const char *under = getenv("COFFER_HANG_UNDER");
    if (path == NULL || under == NULL || strncmp(path, under, strlen(under)) != 0) {
        return;
    }
    while (flag_set("COFFER_HANG_OPEN")) {
        usleep(20000);
    }
}

typedef int (*sync_fn)(int);
typedef int (*open_fn)(const char *, int, ...);
typedef FILE *(*fopen_fn)(const char *, const char *);

/* The next definition of `name` (libc's), looked up once. */
static void *next(void **slot, const char *name) {
    if (*slot == NULL) {
        *slot = dlsym(RTLD_NEXT, name);
    }
    return *slot;
}

static int synced(int fd, const char *name, void **slot) {
    if (flag_set("COFFER_FAIL_FSYNC")) {
        errno = EIO;
        return -1;
    }
    return ((sync_fn)next(slot, name))(fd);
}

int fsync(int fd) {
    static void *real;
    return synced(fd, "fsync", &real);
}

int fdatasync(int fd) {
    static void *real;
    return synced(fd, "fdatasync", &real);
}

/* open's optional third argument, present with O_CREAT or O_TMPFILE. */
#define MODE(flags) \
    int mode = 0; \
    if ((flags) & (O_CREAT | O_TMPFILE)) { \
        va_list ap; \
        va_start(ap, flags); \
        mode = va_arg(ap, int); \
        va_end(ap); \
    }

int open(const char *path, int flags, ...) {
    static void *real;
    MODE(flags);
    hang_if_under(path);
    return ((open_fn)next(&real, "open"))(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    static void *real;
    MODE(flags);
    hang_if_under(path);
    return ((open_fn)next(&real, "open64"))(path, flags, mode);
}

FILE *fopen(const char *path, const char *how) {
    static void *real;
    hang_if_under(path);
    return ((fopen_fn)next(&real, "fopen"))(path, how);
}
