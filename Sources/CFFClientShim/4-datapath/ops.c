/* The context's ops table: what verbs.h's inline ibv_post_send, ibv_post_recv, ibv_poll_cq and
 * ibv_req_notify_cq call. Each goes to the bridge's data path. ffs_install_datapath puts them, with this layer's
 * create_qp_ex and create_cq_ex, into the context ibv_open_device assembles. */
#include "datapath.h"

static int op_poll_cq(struct ibv_cq *cq, int num_entries, struct ibv_wc *wc) {
    if (num_entries < 0) {
        errno = EINVAL;
        return -1;
    }
    if (num_entries == 0) return 0;
    int count = 0;
    int error = ffs_bridge()->poll_cq(ffs_session(cq->context), cq->handle, num_entries, wc, &count);
    if (error) {
        errno = error;
        return -1;
    }
    return count;
}

static int op_req_notify_cq(struct ibv_cq *cq, int solicited_only) {
    int error = ffs_bridge()->req_notify_cq(ffs_session(cq->context), cq->handle, solicited_only);
    return error ? ffs_fail(error) : 0;
}

static int op_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad_wr) {
    int error = ffs_bridge()->post_send(ffs_session(qp->context), qp->handle, (uint32_t)qp->qp_type, wr, bad_wr);
    return error ? ffs_fail(error) : 0;
}

static int op_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr) {
    int error = ffs_bridge()->post_recv(ffs_session(qp->context), qp->handle, wr, bad_wr);
    return error ? ffs_fail(error) : 0;
}

static int op_post_srq_recv(struct ibv_srq *srq, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr) {
    int error = ffs_bridge()->post_srq_recv(ffs_session(srq->context), srq->handle, wr, bad_wr);
    return error ? ffs_fail(error) : 0;
}

void ffs_install_datapath(struct verbs_context *context) {
    context->create_qp_ex = ffs_create_qp_ex;
    context->create_cq_ex = ffs_create_cq_ex;
    struct ibv_context_ops *ops = &context->context.ops;
    ops->poll_cq = op_poll_cq;
    ops->req_notify_cq = op_req_notify_cq;
    ops->post_send = op_post_send;
    ops->post_recv = op_post_recv;
    ops->post_srq_recv = op_post_srq_recv;
}
