/* An id's QP, its CQs and SRQ, and the transitions this layer makes for the application, as librdmacm does. */
#include "rdma_cm.h"

#include <stdlib.h>

static void destroy_cqs(struct rdma_cm_id *id) {
    if (!ffcm(id)->own_cqs) return;
    if (id->recv_cq) ibv_destroy_cq(id->recv_cq);
    if (id->send_cq && id->send_cq != id->recv_cq) ibv_destroy_cq(id->send_cq);
    if (id->recv_cq_channel) ibv_destroy_comp_channel(id->recv_cq_channel);
    if (id->send_cq_channel && id->send_cq_channel != id->recv_cq_channel)
        ibv_destroy_comp_channel(id->send_cq_channel);
    id->recv_cq = id->send_cq = NULL;
    id->recv_cq_channel = id->send_cq_channel = NULL;
    ffcm(id)->own_cqs = 0;
}

static int create_cqs(struct rdma_cm_id *id, struct ibv_qp_init_attr *attr) {
    if (attr->send_cq && attr->recv_cq) return 0;
    int send_depth = attr->cap.max_send_wr ? (int)attr->cap.max_send_wr : 1;
    int recv_depth = attr->cap.max_recv_wr ? (int)attr->cap.max_recv_wr : 1;
    ffcm(id)->own_cqs = 1;
    if (!attr->recv_cq) {
        if (!(id->recv_cq_channel = ibv_create_comp_channel(id->verbs))) goto fail;
        if (!(id->recv_cq = ibv_create_cq(id->verbs, recv_depth, id, id->recv_cq_channel, 0))) goto fail;
        attr->recv_cq = id->recv_cq;
    }
    if (!attr->send_cq) {
        if (!(id->send_cq_channel = ibv_create_comp_channel(id->verbs))) goto fail;
        if (!(id->send_cq = ibv_create_cq(id->verbs, send_depth, id, id->send_cq_channel, 0))) goto fail;
        attr->send_cq = id->send_cq;
    }
    return 0;
fail: {
        int error = errno ? errno : ENOMEM;
        destroy_cqs(id);
        return cm_fail(error);
    }
}

FFSHIM_EXPORT int rdma_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_qp_init_attr *qp_init_attr) {
    if (!id || !qp_init_attr) return cm_fail(EINVAL);
    if (!id->verbs) id->verbs = ffcm_verbs();
    if (!id->verbs) return -1;
    if (!pd) {
        if (!id->pd) id->pd = ffcm_default_pd();
        pd = id->pd;
    }
    if (!pd || pd->context != id->verbs) return cm_fail(EINVAL);
    if (create_cqs(id, qp_init_attr)) return -1;
    struct ibv_qp *qp = ibv_create_qp(pd, qp_init_attr);
    if (!qp) {
        int error = errno;
        destroy_cqs(id);
        return cm_fail(error ? error : ENOMEM);
    }
    int error = cm_bridge()->attach_qp(ffs_session(id->verbs), ffcm(id)->handle, qp->handle);
    if (error) {
        ibv_destroy_qp(qp);
        destroy_cqs(id);
        return cm_fail(error);
    }
    id->qp = qp;
    return 0;
}

FFSHIM_EXPORT int rdma_create_qp_ex(struct rdma_cm_id *id, struct ibv_qp_init_attr_ex *attr) {
    if (!attr || (attr->comp_mask & ~(uint32_t)IBV_QP_INIT_ATTR_PD)) return cm_fail(EOPNOTSUPP);
    struct ibv_qp_init_attr plain = {
        .qp_context = attr->qp_context, .send_cq = attr->send_cq, .recv_cq = attr->recv_cq, .srq = attr->srq,
        .cap = attr->cap, .qp_type = attr->qp_type, .sq_sig_all = attr->sq_sig_all,
    };
    int result = rdma_create_qp(id, (attr->comp_mask & IBV_QP_INIT_ATTR_PD) ? attr->pd : NULL, &plain);
    if (!result) attr->cap = plain.cap;
    return result;
}

FFSHIM_EXPORT void rdma_destroy_qp(struct rdma_cm_id *id) {
    if (!id || !id->qp) return;
    ibv_destroy_qp(id->qp);
    id->qp = NULL;
    destroy_cqs(id);
}

FFSHIM_EXPORT int rdma_create_srq(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_srq_init_attr *attr) {
    if (!id || !attr) return cm_fail(EINVAL);
    if (!id->verbs) id->verbs = ffcm_verbs();
    if (!pd) pd = id->pd ? id->pd : (id->pd = ffcm_default_pd());
    if (!pd) return -1;
    struct ibv_srq *srq = ibv_create_srq(pd, attr);
    if (!srq) return -1;
    id->srq = srq;
    return 0;
}

FFSHIM_EXPORT int rdma_create_srq_ex(struct rdma_cm_id *id, struct ibv_srq_init_attr_ex *attr) {
    (void)id;
    (void)attr;
    return cm_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT void rdma_destroy_srq(struct rdma_cm_id *id) {
    if (!id || !id->srq) return;
    ibv_destroy_srq(id->srq);
    id->srq = NULL;
}

/* The depth both sides agreed on: RDMA_MAX_* means "as much as the peer offers"; at most 16. */
uint8_t ffcm_depth(uint8_t wanted, uint8_t offered) {
    uint8_t value = wanted == RDMA_MAX_INIT_DEPTH ? offered : wanted;
    return value > 16 ? 16 : value;
}

int ffcm_modify_rtr(struct ffcm_id *c, uint8_t responder_resources) {
    struct ibv_qp_attr attr = {
        .qp_state = IBV_QPS_RTR,
        .path_mtu = c->path_mtu ? (enum ibv_mtu)c->path_mtu : IBV_MTU_1024,
        .dest_qp_num = c->remote_qpn,
        .rq_psn = c->remote_psn,
        .max_dest_rd_atomic = responder_resources,
        .min_rnr_timer = 12,
    };
    attr.ah_attr.is_global = 1;
    attr.ah_attr.port_num = 1;
    attr.ah_attr.grh.hop_limit = 64;
    attr.ah_attr.grh.sgid_index = 0;
    ffs_mapped_gid(&attr.ah_attr.grh.dgid, c->id.route.addr.dst_sin.sin_addr.s_addr);
    return ibv_modify_qp(c->id.qp, &attr, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                              IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
}

int ffcm_modify_rts(struct ffcm_id *c, uint8_t initiator_depth) {
    struct ibv_qp_attr attr = {
        .qp_state = IBV_QPS_RTS,
        .sq_psn = c->local_psn,
        .timeout = 14,
        .retry_cnt = c->retry_count,
        .rnr_retry = c->rnr_retry_count,
        .max_rd_atomic = initiator_depth,
    };
    return ibv_modify_qp(c->id.qp, &attr, IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                                              IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC);
}

void ffcm_modify_err(struct rdma_cm_id *id) {
    if (!id->qp) return;
    struct ibv_qp_attr attr = {.qp_state = IBV_QPS_ERR};
    ibv_modify_qp(id->qp, &attr, IBV_QP_STATE);
}

FFSHIM_EXPORT int rdma_init_qp_attr(struct rdma_cm_id *id, struct ibv_qp_attr *qp_attr, int *qp_attr_mask) {
    struct ffcm_id *c = ffcm(id);
    if (!qp_attr || !qp_attr_mask) return cm_fail(EINVAL);
    enum ibv_qp_state state = qp_attr->qp_state;
    memset(qp_attr, 0, sizeof(*qp_attr));
    qp_attr->qp_state = state;
    switch (state) {
    case IBV_QPS_INIT:
        qp_attr->port_num = 1;
        if (id->qp_type == IBV_QPT_UD) {
            qp_attr->qkey = RDMA_UDP_QKEY;
            *qp_attr_mask = IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_QKEY;
        } else {
            qp_attr->qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
            *qp_attr_mask = IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
        }
        return 0;
    case IBV_QPS_RTR:
        qp_attr->path_mtu = c->path_mtu ? (enum ibv_mtu)c->path_mtu : IBV_MTU_1024;
        qp_attr->dest_qp_num = c->remote_qpn;
        qp_attr->rq_psn = c->remote_psn;
        qp_attr->max_dest_rd_atomic = c->responder_resources;
        qp_attr->min_rnr_timer = 12;
        qp_attr->ah_attr.is_global = 1;
        qp_attr->ah_attr.port_num = 1;
        qp_attr->ah_attr.grh.hop_limit = 64;
        ffs_mapped_gid(&qp_attr->ah_attr.grh.dgid, id->route.addr.dst_sin.sin_addr.s_addr);
        *qp_attr_mask = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                        IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
        return 0;
    case IBV_QPS_RTS:
        qp_attr->sq_psn = c->local_psn;
        qp_attr->timeout = 14;
        qp_attr->retry_cnt = c->retry_count;
        qp_attr->rnr_retry = c->rnr_retry_count;
        qp_attr->max_rd_atomic = c->initiator_depth;
        *qp_attr_mask = IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                        IBV_QP_MAX_QP_RD_ATOMIC;
        return 0;
    default:
        return cm_fail(EINVAL);
    }
}
