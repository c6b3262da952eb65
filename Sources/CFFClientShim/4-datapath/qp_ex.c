/*
 * ibv_create_qp_ex and the ibv_wr_* post API: each ibv_wr_<opcode> call starts a request, the
 * ibv_wr_set_* calls fill it, and ibv_wr_complete posts the whole batch through the bridge's data path as
 * one chain (so the router sees what ibv_post_send would have sent); ibv_wr_abort drops it.
 */
#include "datapath.h"

#include <stdlib.h>

/* The opcodes the protocol carries; others (bind MW, local/send invalidate, TSO, atomic write) are refused
 * at create time with EOPNOTSUPP. */
#define FFS_SEND_OPS                                                                                       \
    (IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM | IBV_QP_EX_WITH_SEND |                \
     IBV_QP_EX_WITH_SEND_WITH_IMM | IBV_QP_EX_WITH_RDMA_READ | IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP |         \
     IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD)
#define FFS_MAX_INLINE 512

static struct ffs_wr_batch *batch_of(struct ibv_qp_ex *qp) { return &((struct ffs_qp *)qp)->batch; }

static int grow(void **array, size_t *capacity, size_t needed, size_t element) {
    if (needed <= *capacity) return 0;
    size_t next = *capacity ? *capacity : 8;
    while (next < needed) next *= 2;
    void *grown = realloc(*array, next * element);
    if (!grown) return ENOMEM;
    *array = grown;
    *capacity = next;
    return 0;
}

/* A new request of `opcode` with the QP's current wr_id and wr_flags; NULL after a failure. */
static struct ibv_send_wr *begin(struct ibv_qp_ex *qp, enum ibv_wr_opcode opcode) {
    struct ffs_wr_batch *b = batch_of(qp);
    if (b->error) return NULL;
    size_t capacity = b->capacity;
    if (grow((void **)&b->wrs, &capacity, b->count + 1, sizeof(*b->wrs)) ||
        grow((void **)&b->first_sge, &b->capacity, b->count + 1, sizeof(*b->first_sge))) {
        b->error = ENOMEM;
        return NULL;
    }
    struct ibv_send_wr *wr = &b->wrs[b->count];
    memset(wr, 0, sizeof(*wr));
    wr->wr_id = qp->wr_id;
    wr->send_flags = qp->wr_flags;
    wr->opcode = opcode;
    b->first_sge[b->count] = b->sge_count;
    b->count++;
    return wr;
}

/* The request the ibv_wr_set_* calls fill: the last one begun. */
static struct ibv_send_wr *current(struct ibv_qp_ex *qp) {
    struct ffs_wr_batch *b = batch_of(qp);
    if (b->error) return NULL;
    if (b->count == 0) {
        b->error = EINVAL; /* a set_* before any ibv_wr_<opcode> */
        return NULL;
    }
    return &b->wrs[b->count - 1];
}

static void add_sge(struct ibv_qp_ex *qp, uint32_t lkey, uint64_t addr, uint32_t length) {
    struct ffs_wr_batch *b = batch_of(qp);
    struct ibv_send_wr *wr = current(qp);
    if (!wr) return;
    if (grow((void **)&b->sges, &b->sge_capacity, b->sge_count + 1, sizeof(*b->sges))) {
        b->error = ENOMEM;
        return;
    }
    b->sges[b->sge_count++] = (struct ibv_sge){.addr = addr, .length = length, .lkey = lkey};
    wr->num_sge++;
}

static void add_inline(struct ibv_qp_ex *qp, const void *addr, size_t length) {
    struct ffs_wr_batch *b = batch_of(qp);
    struct ibv_send_wr *wr = current(qp);
    if (!wr) return;
    if (length > FFS_MAX_INLINE) {
        b->error = EINVAL;
        return;
    }
    /* Copied now: ibv_wr_set_inline_data lets the program reuse its buffer as soon as the call returns. */
    if (grow((void **)&b->inline_bytes, &b->inline_capacity, b->inline_used + length, 1)) {
        b->error = ENOMEM;
        return;
    }
    memcpy(b->inline_bytes + b->inline_used, addr, length);
    wr->send_flags |= IBV_SEND_INLINE;
    add_sge(qp, 0, b->inline_used, (uint32_t)length);
    b->inline_used += length;
}

static void wr_send(struct ibv_qp_ex *qp) { begin(qp, IBV_WR_SEND); }

static void wr_send_imm(struct ibv_qp_ex *qp, __be32 imm_data) {
    struct ibv_send_wr *wr = begin(qp, IBV_WR_SEND_WITH_IMM);
    if (wr) wr->imm_data = imm_data;
}

static void rdma(struct ibv_qp_ex *qp, enum ibv_wr_opcode opcode, uint32_t rkey, uint64_t remote_addr, __be32 imm) {
    struct ibv_send_wr *wr = begin(qp, opcode);
    if (!wr) return;
    wr->wr.rdma.rkey = rkey;
    wr->wr.rdma.remote_addr = remote_addr;
    wr->imm_data = imm;
}

static void wr_rdma_write(struct ibv_qp_ex *qp, uint32_t rkey, uint64_t remote_addr) {
    rdma(qp, IBV_WR_RDMA_WRITE, rkey, remote_addr, 0);
}

static void wr_rdma_write_imm(struct ibv_qp_ex *qp, uint32_t rkey, uint64_t remote_addr, __be32 imm_data) {
    rdma(qp, IBV_WR_RDMA_WRITE_WITH_IMM, rkey, remote_addr, imm_data);
}

static void wr_rdma_read(struct ibv_qp_ex *qp, uint32_t rkey, uint64_t remote_addr) {
    rdma(qp, IBV_WR_RDMA_READ, rkey, remote_addr, 0);
}

static void atomic(struct ibv_qp_ex *qp, enum ibv_wr_opcode opcode, uint32_t rkey, uint64_t remote_addr,
                   uint64_t compare_add, uint64_t swap) {
    struct ibv_send_wr *wr = begin(qp, opcode);
    if (!wr) return;
    wr->wr.atomic.rkey = rkey;
    wr->wr.atomic.remote_addr = remote_addr;
    wr->wr.atomic.compare_add = compare_add;
    wr->wr.atomic.swap = swap;
}

static void wr_atomic_cmp_swp(struct ibv_qp_ex *qp, uint32_t rkey, uint64_t remote_addr, uint64_t compare,
                              uint64_t swap) {
    atomic(qp, IBV_WR_ATOMIC_CMP_AND_SWP, rkey, remote_addr, compare, swap);
}

static void wr_atomic_fetch_add(struct ibv_qp_ex *qp, uint32_t rkey, uint64_t remote_addr, uint64_t add) {
    atomic(qp, IBV_WR_ATOMIC_FETCH_AND_ADD, rkey, remote_addr, add, 0);
}

static void wr_set_ud_addr(struct ibv_qp_ex *qp, struct ibv_ah *ah, uint32_t remote_qpn, uint32_t remote_qkey) {
    struct ibv_send_wr *wr = current(qp);
    if (!wr) return;
    wr->wr.ud.ah = ah;
    wr->wr.ud.remote_qpn = remote_qpn;
    wr->wr.ud.remote_qkey = remote_qkey;
}

static void wr_set_sge(struct ibv_qp_ex *qp, uint32_t lkey, uint64_t addr, uint32_t length) {
    add_sge(qp, lkey, addr, length);
}

static void wr_set_sge_list(struct ibv_qp_ex *qp, size_t num_sge, const struct ibv_sge *sg_list) {
    for (size_t i = 0; i < num_sge; i++) add_sge(qp, sg_list[i].lkey, sg_list[i].addr, sg_list[i].length);
}

static void wr_set_inline_data(struct ibv_qp_ex *qp, void *addr, size_t length) { add_inline(qp, addr, length); }

static void wr_set_inline_data_list(struct ibv_qp_ex *qp, size_t num_buf, const struct ibv_data_buf *buf_list) {
    for (size_t i = 0; i < num_buf; i++) add_inline(qp, buf_list[i].addr, buf_list[i].length);
}

static void reset(struct ffs_wr_batch *b) {
    b->count = b->sge_count = b->inline_used = 0;
    b->error = 0;
}

static void wr_start(struct ibv_qp_ex *qp) { reset(batch_of(qp)); }

static void wr_abort(struct ibv_qp_ex *qp) { reset(batch_of(qp)); }

static int wr_complete(struct ibv_qp_ex *qp) {
    struct ffs_wr_batch *b = batch_of(qp);
    int error = b->error;
    if (!error && b->count > 0) {
        /* The chain's pointers, now that nothing grows any more. */
        for (size_t i = 0; i < b->count; i++) {
            struct ibv_send_wr *wr = &b->wrs[i];
            wr->sg_list = wr->num_sge ? &b->sges[b->first_sge[i]] : NULL;
            if (wr->send_flags & IBV_SEND_INLINE)
                for (int s = 0; s < wr->num_sge; s++)
                    if (wr->sg_list[s].lkey == 0)
                        wr->sg_list[s].addr = (uintptr_t)(b->inline_bytes + wr->sg_list[s].addr);
            wr->next = i + 1 < b->count ? &b->wrs[i + 1] : NULL;
        }
        struct ibv_send_wr *bad = NULL;
        struct ibv_qp *base = &qp->qp_base;
        void *session = ffs_session(base->context);
        error = session ? ffs_bridge()->post_send(session, base->handle, (uint32_t)base->qp_type, b->wrs, &bad) : EPERM;
    }
    reset(b);
    return error ? ffs_fail(error) : 0;
}

/* Opcodes the protocol cannot carry; never installed for a QP that asked for them (create refuses). */
static void wr_unsupported(struct ibv_qp_ex *qp) { batch_of(qp)->error = EOPNOTSUPP; }

static void wr_bind_mw(struct ibv_qp_ex *qp, struct ibv_mw *mw, uint32_t rkey, const struct ibv_mw_bind_info *info) {
    (void)mw, (void)rkey, (void)info;
    wr_unsupported(qp);
}
static void wr_local_inv(struct ibv_qp_ex *qp, uint32_t rkey) { (void)rkey, wr_unsupported(qp); }
static void wr_send_inv(struct ibv_qp_ex *qp, uint32_t rkey) { (void)rkey, wr_unsupported(qp); }
static void wr_send_tso(struct ibv_qp_ex *qp, void *hdr, uint16_t hdr_sz, uint16_t mss) {
    (void)hdr, (void)hdr_sz, (void)mss;
    wr_unsupported(qp);
}
static void wr_set_xrc_srqn(struct ibv_qp_ex *qp, uint32_t srqn) { (void)srqn, wr_unsupported(qp); }
static void wr_atomic_write(struct ibv_qp_ex *qp, uint32_t rkey, uint64_t remote_addr, const void *atomic_wr) {
    (void)rkey, (void)remote_addr, (void)atomic_wr;
    wr_unsupported(qp);
}

struct ibv_qp *ffs_create_qp_ex(struct ibv_context *context, struct ibv_qp_init_attr_ex *attr) {
    uint32_t known = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_CREATE_FLAGS | IBV_QP_INIT_ATTR_SEND_OPS_FLAGS;
    if ((attr->comp_mask & ~known) || ((attr->comp_mask & IBV_QP_INIT_ATTR_CREATE_FLAGS) && attr->create_flags) ||
        ((attr->comp_mask & IBV_QP_INIT_ATTR_SEND_OPS_FLAGS) && (attr->send_ops_flags & ~(uint64_t)FFS_SEND_OPS))) {
        errno = EOPNOTSUPP;
        return NULL;
    }
    if (!(attr->comp_mask & IBV_QP_INIT_ATTR_PD) || !attr->pd || attr->pd->context != context) {
        errno = EINVAL;
        return NULL;
    }
    struct ibv_qp_init_attr legacy = {
        .qp_context = attr->qp_context,
        .send_cq = attr->send_cq,
        .recv_cq = attr->recv_cq,
        .srq = attr->srq,
        .cap = attr->cap,
        .qp_type = attr->qp_type,
        .sq_sig_all = attr->sq_sig_all,
    };
    struct ibv_qp *ibqp = ibv_create_qp(attr->pd, &legacy);
    if (!ibqp) return NULL;
    attr->cap = legacy.cap;
    if (attr->comp_mask & IBV_QP_INIT_ATTR_SEND_OPS_FLAGS) {
        struct ffs_qp *qp = (struct ffs_qp *)ibqp;
        struct ibv_qp_ex *ex = &qp->ex;
        ex->wr_send = wr_send;
        ex->wr_send_imm = wr_send_imm;
        ex->wr_rdma_write = wr_rdma_write;
        ex->wr_rdma_write_imm = wr_rdma_write_imm;
        ex->wr_rdma_read = wr_rdma_read;
        ex->wr_atomic_cmp_swp = wr_atomic_cmp_swp;
        ex->wr_atomic_fetch_add = wr_atomic_fetch_add;
        ex->wr_set_ud_addr = wr_set_ud_addr;
        ex->wr_set_sge = wr_set_sge;
        ex->wr_set_sge_list = wr_set_sge_list;
        ex->wr_set_inline_data = wr_set_inline_data;
        ex->wr_set_inline_data_list = wr_set_inline_data_list;
        ex->wr_start = wr_start;
        ex->wr_complete = wr_complete;
        ex->wr_abort = wr_abort;
        ex->wr_bind_mw = wr_bind_mw;
        ex->wr_local_inv = wr_local_inv;
        ex->wr_send_inv = wr_send_inv;
        ex->wr_send_tso = wr_send_tso;
        ex->wr_set_xrc_srqn = wr_set_xrc_srqn;
        ex->wr_atomic_write = wr_atomic_write;
        qp->has_send_ops = 1;
    }
    return ibqp;
}

/* As libibverbs: only QPs made by ibv_create_qp_ex with send_ops_flags have the ibv_wr_* interface. */
FFSHIM_EXPORT struct ibv_qp_ex *ibv_qp_to_qp_ex(struct ibv_qp *qp) {
    struct ffs_qp *own = (struct ffs_qp *)qp;
    return own->has_send_ops ? &own->ex : NULL;
}
