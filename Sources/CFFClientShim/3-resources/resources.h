/*
 * Layer 3, resources: PD, MR, completion channels, CQ, QP, SRQ, AH, each one router request per call. What the
 * layers above use: the layouts of the CQ and the QP, whose extended interfaces (ibv_cq_ex, ibv_qp_ex) the data
 * path fills in.
 */
#ifndef FFSHIM_RESOURCES_H
#define FFSHIM_RESOURCES_H

#include "../2-device/device.h"

struct ffs_cq {
    union {
        struct ibv_cq cq;       /* cq.handle is the router's handle */
        struct ibv_cq_ex ex;    /* starts with ibv_cq's fields (verbs.h's ibv_cq_ex_to_cq casts) */
    };
    struct ibv_wc current;      /* ibv_start_poll / ibv_next_poll: the completion the read_* calls see */
    struct ffs_cq *next;
};

/* The ibv_wr_* requests between ibv_wr_start and ibv_wr_complete (4-datapath/qp_ex.c fills it; ibv_destroy_qp
 * frees it with the QP). Grown as needed; the chain's pointers are only made at complete, so growing never leaves
 * one dangling. */
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

/* Between this layer's files only: the zero-copy regions under MRs (memory.c, used by pd_mr.c). Make
 * [addr, addr+length) memfd-backed in place. Regions are shared between registrations of the same pages; a
 * registration takes a reference on each region it needs (live ones it overlaps, new ones for the rest) and gets one
 * segment per region, in address order, in `segments`. */
struct ffs_region;
#define FFS_MAX_SEGMENTS 64 /* WireLimits.maxMRSegments */
int ffs_region_acquire(void *addr, size_t length, struct ffs_region ***regions, int *count, ffshim_segment *segments);
/* Drops the references and frees the array; a region's last reference moves its pages back into private memory. */
void ffs_region_release(struct ffs_region **regions, int count);
/* One line on stderr: why [start, end) cannot be registered. */
void ffs_refuse(const char *why, uintptr_t start, uintptr_t end);

#endif
