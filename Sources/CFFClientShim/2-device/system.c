/* The calls a program makes around a device rather than on its objects: async events, fork, sysfs, importing a
 * context. */
#define _GNU_SOURCE
#include "device.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

FFSHIM_EXPORT int ibv_get_async_event(struct ibv_context *context, struct ibv_async_event *event) {
    (void)event;
    uint64_t value;
    /* Blocks (or fails with EAGAIN on a non-blocking descriptor): there are no async events. */
    ssize_t got = read(context->async_fd, &value, sizeof(value));
    if (got < 0) return -1;
    errno = EIO;
    return -1;
}

FFSHIM_EXPORT void ibv_ack_async_event(struct ibv_async_event *event) { (void)event; }

/* fork(2) cannot break a registration: registered pages are a shared memfd mapping, so the parent keeps
 * its pages (no copy-on-write), and the child's copy is made private at once (memory.c). */
FFSHIM_EXPORT int ibv_fork_init(void) { return 0; }

/* Nothing to mark: fork cannot break a registration (see ibv_fork_init). */
FFSHIM_EXPORT int ibv_dontfork_range(void *base, size_t size) {
    (void)base;
    (void)size;
    return 0;
}

FFSHIM_EXPORT int ibv_dofork_range(void *base, size_t size) {
    (void)base;
    (void)size;
    return 0;
}

FFSHIM_EXPORT enum ibv_fork_status ibv_is_fork_initialized(void) { return IBV_FORK_UNNEEDED; }

/* libibverbs' generic sysfs reader (ibv_devinfo reads board_id with it): works on any directory, and our
 * device's paths do not exist, so it fails as it would for a missing file. */
FFSHIM_EXPORT int ibv_read_sysfs_file(const char *dir, const char *file, char *buf, size_t size) {
    char *path;
    if (asprintf(&path, "%s/%s", dir, file) < 0) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0) return -1;
    ssize_t len = read(fd, buf, size);
    close(fd);
    if (len <= 0) return -1;
    size_t end = (size_t)len < size ? (size_t)len : size - 1;
    buf[end] = '\0';
    if (end > 0 && buf[end - 1] == '\n') buf[end - 1] = '\0';
    return (int)len;
}

FFSHIM_EXPORT const char *ibv_get_sysfs_path(void) {
    const char *env = getenv("SYSFS_PATH");
    return (env && *env) ? env : "/sys";
}

/* Sharing a context or its objects between processes (ibv_import_*) needs the router to hand objects
 * across sessions, which it refuses by design. */
FFSHIM_EXPORT struct ibv_context *ibv_import_device(int cmd_fd) {
    (void)cmd_fd;
    errno = EOPNOTSUPP;
    return NULL;
}
