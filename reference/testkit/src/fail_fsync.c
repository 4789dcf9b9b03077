/* An LD_PRELOAD shim for Coffer's fault tests (coffer_testkit::fail_fsync): fsync and
 * fdatasync fail with EIO, without syncing, while the file named by COFFER_FAIL_FSYNC exists,
 * and sync as usual otherwise. The test creates and removes that file to turn the fault on
 * and off in a running process. Chosen over a FUSE file system: no mount, no root, no crate,
 * and it fails exactly the call that makes a write durable. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int failing(void) {
    const char *flag = getenv("COFFER_FAIL_FSYNC");
    return flag != NULL && access(flag, F_OK) == 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    }
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    }
    return real(fd);
}
