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
    union {
        struct ibv_cq cq;       /* cq.handle is the router's handle */
        struct ibv_cq_ex ex;    /* starts with ibv_cq's fields (verbs.h's ibv_cq_ex_to_cq casts) */
    };
    struct ibv_wc current;      /* ibv_start_poll / ibv_next_poll: the completion the read_* calls see */
    struct ffs_cq *next;
};

/* ibv_create_cq_ex (cq_ex.c): verbs_context.create_cq_ex. */
struct ibv_cq_ex *ffs_create_cq_ex(struct ibv_context *context, struct ibv_cq_init_attr_ex *attr);

struct ffs_channel {
    struct ibv_comp_channel channel;
    uint32_t handle;
};

struct ffs_region;

struct ffs_mr {
    struct ibv_mr mr;           /* mr.handle is the router's handle */
    struct ffs_region **regions; /* the regions holding its pages, one reference each (memory.c) */
    int region_count;
};

/* The ibv_wr_* requests between ibv_wr_start and ibv_wr_complete (qp_ex.c). Grown as needed; the chain's
 * pointers are only made at complete, so growing never leaves one dangling. */
struct ffs_wr_batch {
    struct ibv_send_wr *wrs;
    size_t *first_sge;          /* per request: its first entry in sges */
    size_t count, capacity;
    struct ibv_sge *sges;       /* an inline SGE has lkey 0 and addr = offset into inline_bytes */
    size_t sge_count, sge_capacity;
    uint8_t *inline_bytes;
    size_t inline_used, inline_capacity;
    int error;                  /* the first failure since ibv_wr_start, reported by ibv_wr_complete */
};

struct ffs_qp {
    struct ibv_qp_ex ex;        /* ex.qp_base is the application's ibv_qp; qp_base.handle the router's */
    int has_send_ops;           /* made by ibv_create_qp_ex with send_ops_flags: ibv_qp_to_qp_ex answers */
    struct ffs_wr_batch batch;
};

/* ibv_create_qp_ex (qp_ex.c): verbs_context.create_qp_ex. */
struct ibv_qp *ffs_create_qp_ex(struct ibv_context *context, struct ibv_qp_init_attr_ex *attr);
void ffs_qp_ex_free(struct ffs_qp *qp);

const ffshim_bridge *ffs_bridge(void);
struct ffs_context *ffs_context_of(struct ibv_context *context);
/* The context's session; NULL in a forked child for a context its parent opened (the bridge answers EPERM). */
void *ffs_session(struct ibv_context *context);
/* Sets errno to `error` and returns it (verbs calls that return an errno). */
int ffs_fail(int error);
const char *ffs_socket_path(void);

/* The context's ops (datapath.c). */
void ffs_install_ops(struct ffs_context *context);

/* Memory (memory.c): make [addr, addr+length) memfd-backed in place. Regions are shared between
 * registrations of the same pages; a registration takes a reference on each region it needs (live ones it
 * overlaps, new ones for the rest) and gets one segment per region, in address order, in `segments`. */
#define FFS_MAX_SEGMENTS 64 /* WireLimits.maxMRSegments */
int ffs_region_acquire(void *addr, size_t length, struct ffs_region ***regions, int *count, ffshim_segment *segments);
/* Drops the references and frees the array; a region's last reference moves its pages back into private memory. */
void ffs_region_release(struct ffs_region **regions, int count);
/* One line on stderr: why [start, end) cannot be registered. */
void ffs_refuse(const char *why, uintptr_t start, uintptr_t end);

#endif
