/* libffclient's C layer, private: object layout and helpers shared by its files. */
#ifndef FFSHIM_SHIM_H
#define FFSHIM_SHIM_H

#include "ffshim_bridge.h"
#include <pthread.h>

/* Exported with the version nodes of Debian's libibverbs.so.1 (see libibverbs.map). */
#define FFSHIM_EXPORT __attribute__((visibility("default")))

/* Where the router's pod socket is when FFCLIENT_SOCKET is not set: the path the device plugin mounts. */
#define FFSHIM_DEFAULT_SOCKET "/run/freeflow/ffclient.sock"
#define FFSHIM_DEVICE_NAME "freeflow0"

/*
 * Every object embeds the verbs struct the application sees as its first member, so a pointer the
 * application hands back leads to our state with a cast, never through its own *_context fields.
 */
struct ffs_cq;

struct ffs_context {
    struct verbs_context vctx;  /* vctx.context is the application's ibv_context */
    void *session;              /* the Swift session (one router connection) */
    int socket_fd;              /* its descriptor */
    unsigned generation;        /* the fork generation it was opened in (device.c) */
    struct ffs_context *next;   /* all open contexts, for the fork handler */
    pthread_mutex_t lock;       /* guards cqs */
    struct ffs_cq *cqs;         /* for ibv_get_cq_event: router cq handle -> ibv_cq */
};

struct ffs_cq {
    struct ibv_cq cq;           /* cq.handle is the router's handle */
    struct ffs_cq *next;
};

struct ffs_channel {
    struct ibv_comp_channel channel;
    uint32_t handle;
};

struct ffs_region;

struct ffs_mr {
    struct ibv_mr mr;           /* mr.handle is the router's handle */
    struct ffs_region *region;
};

struct ffs_qp {
    struct ibv_qp_ex ex;        /* ex.qp_base is the application's ibv_qp; qp_base.handle the router's */
};

const ffshim_bridge *ffs_bridge(void);
struct ffs_context *ffs_context_of(struct ibv_context *context);
/* The context's session; NULL in a forked child for a context its parent opened (the bridge answers EPERM). */
void *ffs_session(struct ibv_context *context);
/* Sets errno to `error` and returns it (verbs calls that return an errno). */
int ffs_fail(int error);
const char *ffs_socket_path(void);

/* The context's ops (datapath.c). */
void ffs_install_ops(struct ffs_context *context);

/* Memory (memory.c): make [addr, addr+length) memfd-backed in place; the region is shared between
 * registrations of the same pages. */
int ffs_region_acquire(void *addr, size_t length, struct ffs_region **region, int *memfd, uint64_t *offset);
void ffs_region_release(struct ffs_region *region);

#endif
