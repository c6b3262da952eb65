/*
 * The bridge between libffclient's C layer (the exported libibverbs API, Sources/CFFClientShim) and its
 * Swift side (sessions with the router, Sources/FFClientShim).
 *
 * The C layer owns every verbs object the application sees (struct verbs_context, ibv_pd, ibv_cq, ...); the
 * Swift side only ever sees router handles and plain verbs structs. Swift fills this table with
 * @convention(c) closures, so the Swift compiler checks each one against the types declared here, and the
 * C compiler checks the exported functions against <infiniband/verbs.h>: no prototype goes unchecked
 * except ffshim_swift_bridge itself.
 *
 * Every function returns 0 or a positive errno; outputs go through pointers. `session` is the opaque value
 * `open` produced (one router connection per ibv_context).
 */
#ifndef FFSHIM_BRIDGE_H
#define FFSHIM_BRIDGE_H

#include <infiniband/verbs.h>
#include <stddef.h>
#include <stdint.h>

/* ibv_create_qp's request, with the C objects already turned into router handles. */
typedef struct ffshim_qp_create {
    uint32_t pd, send_cq, recv_cq, srq; /* srq 0: the QP has its own receive queue */
    uint32_t qp_type;
    int sq_sig_all;
    struct ibv_qp_cap cap;
} ffshim_qp_create;

/* One piece of a registration over several memfds: `length` bytes at `offset` of `memfd`. */
typedef struct ffshim_segment {
    int memfd;
    uint64_t offset, length;
} ffshim_segment;

typedef struct ffshim_bridge {
    /* Connects to the router at `path`, says hello, reads the device's node GUID, disconnects. */
    int (*probe)(const char *path, uint64_t *node_guid, char *reason, size_t reason_size);
    /* One session (one router connection) for one ibv_context; `name` goes into the router's logs.
     * `socket_fd` is the connection's descriptor, which a forked child closes (see device.c). */
    int (*open)(const char *path, const char *name, void **session, int *socket_fd, char *reason,
                size_t reason_size);
    void (*close)(void *session);

    int (*query_device)(void *session, struct ibv_device_attr *attr);
    int (*query_port)(void *session, uint8_t port, struct ibv_port_attr *attr);
    int (*query_gid)(void *session, uint8_t port, int index, union ibv_gid *gid);

    int (*alloc_pd)(void *session, uint32_t *pd);
    int (*dealloc_pd)(void *session, uint32_t pd);
    /* `length` bytes at `memfd_offset` of `memfd` hold the buffer; `iova` is the address peers use. */
    int (*reg_mr)(void *session, uint32_t pd, unsigned int access, uint64_t iova, uint64_t length, int memfd,
                  uint64_t memfd_offset, uint32_t *mr, uint32_t *lkey, uint32_t *rkey);
    /* The buffer's bytes are the segments' bytes in order (one per memfd). EOPNOTSUPP: the router does not take
     * registrations over several memfds (capability memorySegments not granted). */
    int (*reg_mr_segments)(void *session, uint32_t pd, unsigned int access, uint64_t iova, uint64_t length,
                           const ffshim_segment *segments, int count, uint32_t *mr, uint32_t *lkey, uint32_t *rkey);
    int (*dereg_mr)(void *session, uint32_t mr);

    /* `fd` receives the channel's event descriptor (8-byte records: cq handle, reserved). */
    int (*create_comp_channel)(void *session, uint32_t *channel, int *fd);
    int (*destroy_comp_channel)(void *session, uint32_t channel);
    int (*create_cq)(void *session, uint32_t cqe, uint32_t channel, uint32_t comp_vector, uint32_t *cq,
                     uint32_t *actual_cqe);
    int (*destroy_cq)(void *session, uint32_t cq);
    int (*req_notify_cq)(void *session, uint32_t cq, int solicited_only);

    int (*create_qp)(void *session, const ffshim_qp_create *request, uint32_t *qp, uint32_t *qp_num,
                     struct ibv_qp_cap *cap);
    int (*modify_qp)(void *session, uint32_t qp, const struct ibv_qp_attr *attr, int mask);
    int (*query_qp)(void *session, uint32_t qp, int mask, struct ibv_qp_attr *attr, struct ibv_qp_cap *cap);
    int (*destroy_qp)(void *session, uint32_t qp);

    /* attr is in/out: max_wr and max_sge come back as created. */
    int (*create_srq)(void *session, uint32_t pd, struct ibv_srq_attr *attr, uint32_t *srq);
    int (*modify_srq)(void *session, uint32_t srq, const struct ibv_srq_attr *attr, int mask);
    int (*destroy_srq)(void *session, uint32_t srq);

    int (*create_ah)(void *session, uint32_t pd, const struct ibv_ah_attr *attr, uint32_t *ah);
    int (*destroy_ah)(void *session, uint32_t ah);

    /*
     * The data path. These four are the one interface the shared-memory fast path replaces; the control
     * socket serves them in this version. On failure `bad` names the first request not posted. post_send
     * needs the QP's type to know which member of a request's `wr` union is meaningful.
     */
    int (*post_send)(void *session, uint32_t qp, uint32_t qp_type, struct ibv_send_wr *wr,
                     struct ibv_send_wr **bad);
    int (*post_recv)(void *session, uint32_t qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad);
    int (*post_srq_recv)(void *session, uint32_t srq, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad);
    int (*poll_cq)(void *session, uint32_t cq, int entries, struct ibv_wc *wc, int *count);
} ffshim_bridge;

/* Implemented in Swift (@_cdecl); the table lives for the life of the process. */
const ffshim_bridge *ffshim_swift_bridge(void);

#endif
