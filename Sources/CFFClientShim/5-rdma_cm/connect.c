/* Connections: listening, connecting, accepting and rejecting, disconnecting. */
#include "rdma_cm.h"

FFSHIM_EXPORT int rdma_listen(struct rdma_cm_id *id, int backlog) {
    void *session = ffcm_session();
    if (!session) return -1;
    uint32_t bound = 0;
    uint16_t port = 0;
    int error = cm_bridge()->listen(session, ffcm(id)->handle, backlog, &bound, &port);
    if (error) return cm_fail(error);
    ffcm_set_addresses(ffcm(id), bound, port, 0, 0);
    return 0;
}

static ffshim_cm_params params_of(struct ffcm_id *c, const struct rdma_conn_param *p) {
    ffshim_cm_params out = {.id = c->handle, .retry_count = 7, .rnr_retry_count = 7};
    if (p) {
        out.qp_num = p->qp_num;
        out.responder_resources = p->responder_resources;
        out.initiator_depth = p->initiator_depth;
        out.retry_count = p->retry_count > 7 ? 7 : p->retry_count;
        out.rnr_retry_count = p->rnr_retry_count > 7 ? 7 : p->rnr_retry_count;
        out.flow_control = p->flow_control;
        out.srq = p->srq;
        out.private_data = p->private_data;
        out.private_data_len = p->private_data ? p->private_data_len : 0;
    }
    if (c->id.qp) out.qp_num = c->id.qp->qp_num;
    return out;
}

FFSHIM_EXPORT int rdma_connect(struct rdma_cm_id *id, struct rdma_conn_param *conn_param) {
    struct ffcm_id *c = ffcm(id);
    ffshim_cm_params params = params_of(c, conn_param);
    if (id->qp_type == IBV_QPT_RC && !params.qp_num) return cm_fail(EINVAL);
    c->responder_resources = params.responder_resources;
    c->initiator_depth = params.initiator_depth;
    c->retry_count = params.retry_count;
    c->rnr_retry_count = params.rnr_retry_count;
    void *session = ffcm_session();
    if (!session) return -1;
    int error = cm_bridge()->connect(session, &params);
    if (error) return cm_fail(error);
    return ffcm_complete(id);
}

FFSHIM_EXPORT int rdma_establish(struct rdma_cm_id *id) {
    void *session = ffcm_session();
    if (!session) return -1;
    int error = cm_bridge()->establish(session, ffcm(id)->handle);
    return error ? cm_fail(error) : 0;
}

FFSHIM_EXPORT int rdma_accept(struct rdma_cm_id *id, struct rdma_conn_param *conn_param) {
    struct ffcm_id *c = ffcm(id);
    ffshim_cm_params params = params_of(c, conn_param);
    if (!conn_param) {
        params.responder_resources = c->responder_resources;
        params.initiator_depth = c->initiator_depth;
    }
    params.responder_resources = ffcm_depth(params.responder_resources, c->responder_resources);
    params.initiator_depth = ffcm_depth(params.initiator_depth, c->initiator_depth);
    if (!params.qp_num) return cm_fail(EINVAL);
    if (id->qp && id->qp_type == IBV_QPT_RC) {
        c->retry_count = params.retry_count;
        c->rnr_retry_count = params.rnr_retry_count;
        int error = ffcm_modify_rtr(c, params.responder_resources);
        if (!error) error = ffcm_modify_rts(c, params.initiator_depth);
        if (error) {
            ffshim_cm_params refusal = {.id = c->handle, .retry_count = 7, .rnr_retry_count = 7};
            cm_bridge()->reject(ffcm_session_if_open(), &refusal);
            return cm_fail(error);
        }
    }
    void *session = ffcm_session();
    if (!session) return -1;
    int error = cm_bridge()->accept(session, &params);
    if (error) return cm_fail(error);
    return id->qp_type == IBV_QPT_RC ? ffcm_complete(id) : 0;
}

FFSHIM_EXPORT int rdma_reject(struct rdma_cm_id *id, const void *private_data, uint8_t private_data_len) {
    void *session = ffcm_session();
    if (!session) return -1;
    ffshim_cm_params params = {.id = ffcm(id)->handle, .retry_count = 7, .rnr_retry_count = 7,
                               .private_data = private_data, .private_data_len = private_data ? private_data_len : 0};
    int error = cm_bridge()->reject(session, &params);
    return error ? cm_fail(error) : 0;
}

FFSHIM_EXPORT int rdma_reject_ece(struct rdma_cm_id *id, const void *private_data, uint8_t private_data_len) {
    return rdma_reject(id, private_data, private_data_len);
}

FFSHIM_EXPORT int rdma_disconnect(struct rdma_cm_id *id) {
    void *session = ffcm_session();
    if (!session) return -1;
    ffcm_modify_err(id);
    int error = cm_bridge()->disconnect(session, ffcm(id)->handle);
    return error ? cm_fail(error) : 0;
}

FFSHIM_EXPORT int rdma_notify(struct rdma_cm_id *id, enum ibv_event_type event) {
    (void)id;
    (void)event;
    return 0;
}

FFSHIM_EXPORT int rdma_get_request(struct rdma_cm_id *listen, struct rdma_cm_id **id) {
    struct ffcm_id *c = ffcm(listen);
    if (!c->sync || !id) return cm_fail(EINVAL);
    if (listen->event) {
        rdma_ack_cm_event(listen->event);
        listen->event = NULL;
    }
    struct rdma_cm_event *event;
    if (rdma_get_cm_event(listen->channel, &event)) return -1;
    int error = 0;
    if (event->event == RDMA_CM_EVENT_REJECTED) error = ECONNREFUSED;
    else if (event->status) error = event->status < 0 ? -event->status : event->status;
    else if (event->event != RDMA_CM_EVENT_CONNECT_REQUEST) error = EINVAL;
    if (!error && c->listen_qp_attr) {
        struct ibv_qp_init_attr attr = *c->listen_qp_attr;
        if (rdma_create_qp(event->id, listen->pd, &attr)) error = errno;
    }
    if (error) {
        rdma_ack_cm_event(event);
        return cm_fail(error);
    }
    *id = event->id;
    (*id)->event = event;
    return 0;
}
