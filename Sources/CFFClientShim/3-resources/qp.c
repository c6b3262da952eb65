/* QPs and SRQs. */
#include "resources.h"

#include <stdlib.h>

FFSHIM_EXPORT struct ibv_qp *ibv_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr) {
    if (!attr->send_cq || !attr->recv_cq) {
        errno = EINVAL;
        return NULL;
    }
    struct ffs_qp *qp = calloc(1, sizeof(*qp));
    if (!qp) return NULL; /* calloc set errno to ENOMEM */
    struct ibv_qp *ibqp = &qp->ex.qp_base;
    ffshim_qp_create request = {
        .pd = pd->handle,
        .send_cq = attr->send_cq->handle,
        .recv_cq = attr->recv_cq->handle,
        .srq = attr->srq ? attr->srq->handle : 0,
        .qp_type = (uint32_t)attr->qp_type,
        .sq_sig_all = attr->sq_sig_all,
        .cap = attr->cap,
    };
    struct ibv_qp_cap cap;
    int error = ffs_bridge()->create_qp(ffs_session(pd->context), &request, &ibqp->handle, &ibqp->qp_num, &cap);
    if (error) {
        free(qp);
        errno = error;
        return NULL;
    }
    attr->cap = cap;
    ibqp->context = pd->context;
    ibqp->qp_context = attr->qp_context;
    ibqp->pd = pd;
    ibqp->send_cq = attr->send_cq;
    ibqp->recv_cq = attr->recv_cq;
    ibqp->srq = attr->srq;
    ibqp->qp_type = attr->qp_type;
    ibqp->state = IBV_QPS_RESET;
    pthread_mutex_init(&ibqp->mutex, NULL);
    pthread_cond_init(&ibqp->cond, NULL);
    return ibqp;
}

FFSHIM_EXPORT int ibv_modify_qp(struct ibv_qp *qp, struct ibv_qp_attr *attr, int attr_mask) {
    int error = ffs_bridge()->modify_qp(ffs_session(qp->context), qp->handle, attr, attr_mask);
    if (error) return ffs_fail(error);
    if (attr_mask & IBV_QP_STATE) qp->state = attr->qp_state;
    return 0;
}

FFSHIM_EXPORT int ibv_query_qp(struct ibv_qp *qp, struct ibv_qp_attr *attr, int attr_mask,
                               struct ibv_qp_init_attr *init_attr) {
    memset(attr, 0, sizeof(*attr));
    struct ibv_qp_cap cap;
    int error = ffs_bridge()->query_qp(ffs_session(qp->context), qp->handle, attr_mask, attr, &cap);
    if (error) return ffs_fail(error);
    attr->cap = cap;
    if (init_attr) {
        memset(init_attr, 0, sizeof(*init_attr));
        init_attr->qp_context = qp->qp_context;
        init_attr->send_cq = qp->send_cq;
        init_attr->recv_cq = qp->recv_cq;
        init_attr->srq = qp->srq;
        init_attr->qp_type = qp->qp_type;
        init_attr->cap = cap;
    }
    if (attr_mask & IBV_QP_STATE) qp->state = attr->qp_state;
    return 0;
}

FFSHIM_EXPORT int ibv_destroy_qp(struct ibv_qp *qp) {
    int error = ffs_bridge()->destroy_qp(ffs_session(qp->context), qp->handle);
    if (error) return ffs_fail(error);
    pthread_cond_destroy(&qp->cond);
    pthread_mutex_destroy(&qp->mutex);
    struct ffs_wr_batch *batch = &((struct ffs_qp *)qp)->batch;
    free(batch->wrs);
    free(batch->first_sge);
    free(batch->sges);
    free(batch->inline_bytes);
    free((struct ffs_qp *)qp);
    return 0;
}

FFSHIM_EXPORT struct ibv_srq *ibv_create_srq(struct ibv_pd *pd, struct ibv_srq_init_attr *attr) {
    struct ibv_srq *srq = calloc(1, sizeof(*srq));
    if (!srq) return NULL; /* calloc set errno to ENOMEM */
    int error = ffs_bridge()->create_srq(ffs_session(pd->context), pd->handle, &attr->attr, &srq->handle);
    if (error) {
        free(srq);
        errno = error;
        return NULL;
    }
    srq->context = pd->context;
    srq->srq_context = attr->srq_context;
    srq->pd = pd;
    pthread_mutex_init(&srq->mutex, NULL);
    pthread_cond_init(&srq->cond, NULL);
    return srq;
}

FFSHIM_EXPORT int ibv_modify_srq(struct ibv_srq *srq, struct ibv_srq_attr *attr, int attr_mask) {
    int error = ffs_bridge()->modify_srq(ffs_session(srq->context), srq->handle, attr, attr_mask);
    return error ? ffs_fail(error) : 0;
}

/* Protocol version 1 has no query_srq. */
FFSHIM_EXPORT int ibv_query_srq(struct ibv_srq *srq, struct ibv_srq_attr *attr) {
    (void)srq;
    (void)attr;
    return ffs_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT int ibv_destroy_srq(struct ibv_srq *srq) {
    int error = ffs_bridge()->destroy_srq(ffs_session(srq->context), srq->handle);
    if (error) return ffs_fail(error);
    pthread_cond_destroy(&srq->cond);
    pthread_mutex_destroy(&srq->mutex);
    free(srq);
    return 0;
}

/* Never promised: the router's device decides the order. */
FFSHIM_EXPORT int ibv_query_qp_data_in_order(struct ibv_qp *qp, enum ibv_wr_opcode op, uint32_t flags) {
    (void)qp;
    (void)op;
    (void)flags;
    return 0;
}

/* Not in protocol version 1. */
FFSHIM_EXPORT int ibv_attach_mcast(struct ibv_qp *qp, const union ibv_gid *gid, uint16_t lid) {
    (void)qp, (void)gid, (void)lid;
    return ffs_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT int ibv_detach_mcast(struct ibv_qp *qp, const union ibv_gid *gid, uint16_t lid) {
    (void)qp, (void)gid, (void)lid;
    return ffs_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT int ibv_query_ece(struct ibv_qp *qp, struct ibv_ece *ece) {
    (void)qp, (void)ece;
    return ffs_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT int ibv_set_ece(struct ibv_qp *qp, struct ibv_ece *ece) {
    (void)qp, (void)ece;
    return ffs_fail(EOPNOTSUPP);
}
