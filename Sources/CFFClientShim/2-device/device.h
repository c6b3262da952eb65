/*
 * Layer 2, device: the bridge to the Swift side, the one virtual device, contexts (one router session each) and
 * what a context answers itself. What the layers above use: the context's layout and its session.
 */
#ifndef FFSHIM_DEVICE_H
#define FFSHIM_DEVICE_H

#include "../1-base/base.h"
#include "ffshim_bridge.h"

#include <pthread.h>

/* Named here only to be listed: the CQ is a resource (3-resources/resources.h). */
struct ffs_cq;

/*
 * Every object embeds the verbs struct the application sees as its first member, so a pointer the
 * application hands back leads to our state with a cast, never through its own *_context fields.
 */
struct ffs_context {
    struct verbs_context vctx;  /* vctx.context is the application's ibv_context */
    void *session;              /* the Swift session (one router connection) */
    int socket_fd;              /* its descriptor */
    unsigned generation;        /* the fork generation it was opened in (device.c) */
    struct ffs_context *next;   /* all open contexts, for the fork handler */
    pthread_mutex_t lock;       /* guards cqs */
    struct ffs_cq *cqs;         /* for ibv_get_cq_event: router cq handle -> ibv_cq */
};

const ffshim_bridge *ffs_bridge(void);
struct ffs_context *ffs_context_of(struct ibv_context *context);
/* The context's session; NULL in a forked child for a context its parent opened (the bridge answers EPERM). */
void *ffs_session(struct ibv_context *context);

/*
 * ibv_open_device's part in this layer: a context on `device` with its router session, its async descriptor, the
 * extended-context header and this layer's entries (query_port, query_device_ex), known to the fork handler; NULL
 * with errno set on failure. The entries of the layers above (create_cq_ex, create_qp_ex, the post and poll ops)
 * are theirs to fill: ibv_open_device is in 4-datapath/open_device.c, above every function the tables point to.
 */
struct ffs_context *ffs_context_open(struct ibv_device *device);

#endif
