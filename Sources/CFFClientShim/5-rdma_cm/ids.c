/* Ids: creating and destroying them, binding and resolving addresses and routes, options. */
#include "rdma_cm.h"

#include <stdlib.h>

FFSHIM_EXPORT int rdma_create_id(struct rdma_event_channel *channel, struct rdma_cm_id **id, void *context,
                                 enum rdma_port_space ps) {
    if (!id) return cm_fail(EINVAL);
    void *session = ffcm_session();
    if (!session) return -1;
    int sync = channel == NULL;
    if (sync && !(channel = rdma_create_event_channel())) return -1;
    uint32_t handle = 0;
    int error = cm_bridge()->create_id(session, ffcm_channel_handle(channel), (uint16_t)ps, &handle);
    struct ffcm_id *made = error ? NULL : ffcm_new_id(channel, context, ps, handle);
    if (!made) {
        if (!error) {
            error = ENOMEM;
            cm_bridge()->destroy_id(session, handle);
        }
        if (sync) rdma_destroy_event_channel(channel);
        return cm_fail(error);
    }
    made->sync = sync;
    *id = &made->id;
    return 0;
}

FFSHIM_EXPORT int rdma_destroy_id(struct rdma_cm_id *id) {
    if (!id) return cm_fail(EINVAL);
    struct ffcm_id *c = ffcm(id);
    void *session = ffcm_session_if_open();
    int error = session ? cm_bridge()->destroy_id(session, c->handle) : 0;
    ffcm_unregister_id(c);
    if (id->event) rdma_ack_cm_event(id->event);
    if (c->sync) rdma_destroy_event_channel(id->channel);
    free(c->listen_qp_attr);
    free(c);
    return error ? cm_fail(error) : 0;
}

/* Sync ids: the call's own event, as librdmacm's ucma_complete. */
int ffcm_complete(struct rdma_cm_id *id) {
    if (!ffcm(id)->sync) return 0;
    if (id->event) {
        rdma_ack_cm_event(id->event);
        id->event = NULL;
    }
    if (rdma_get_cm_event(id->channel, &id->event)) return -1;
    int status = id->event->status;
    if (!status) return 0;
    if (id->event->event == RDMA_CM_EVENT_REJECTED) return cm_fail(ECONNREFUSED);
    return cm_fail(status < 0 ? -status : status);
}

FFSHIM_EXPORT int rdma_bind_addr(struct rdma_cm_id *id, struct sockaddr *addr) {
    uint32_t address, bound = 0;
    uint16_t port, bound_port = 0;
    int error = ffcm_read_sockaddr(addr, &address, &port);
    if (error) return cm_fail(error);
    void *session = ffcm_session();
    if (!session) return -1;
    error = cm_bridge()->bind(session, ffcm(id)->handle, address, port, &bound, &bound_port);
    if (error) return cm_fail(error);
    ffcm_set_addresses(ffcm(id), bound, bound_port, 0, 0);
    if (bound) id->verbs = ffcm_context_if_open();
    return 0;
}

FFSHIM_EXPORT int rdma_resolve_addr(struct rdma_cm_id *id, struct sockaddr *src_addr, struct sockaddr *dst_addr,
                                    int timeout_ms) {
    uint32_t source, destination, local = 0;
    uint16_t source_port, port, local_port = 0;
    int error = ffcm_read_sockaddr(src_addr, &source, &source_port);
    if (!error) error = dst_addr ? ffcm_read_sockaddr(dst_addr, &destination, &port) : EINVAL;
    if (error) return cm_fail(error);
    void *session = ffcm_session();
    if (!session) return -1;
    if (source_port && !id->route.addr.src_sin.sin_port && rdma_bind_addr(id, src_addr)) return -1;
    error = cm_bridge()->resolve_addr(session, ffcm(id)->handle, source, destination, port,
                                      timeout_ms > 0 ? (uint32_t)timeout_ms : 0, &local, &local_port);
    if (error) return cm_fail(error);
    return ffcm_complete(id);
}

FFSHIM_EXPORT int rdma_resolve_route(struct rdma_cm_id *id, int timeout_ms) {
    void *session = ffcm_session();
    if (!session) return -1;
    int error = cm_bridge()->resolve_route(session, ffcm(id)->handle, timeout_ms > 0 ? (uint32_t)timeout_ms : 0);
    if (error) return cm_fail(error);
    return ffcm_complete(id);
}

FFSHIM_EXPORT int rdma_set_option(struct rdma_cm_id *id, int level, int optname, void *optval, size_t optlen) {
    (void)id;
    if (!optval) return cm_fail(EINVAL);
    /* The type of service, address reuse, v6-only and the ACK timeout do not change what the router does. */
    if (level == RDMA_OPTION_ID && optname >= RDMA_OPTION_ID_TOS && optname <= RDMA_OPTION_ID_ACK_TIMEOUT && optlen > 0)
        return 0;
    return cm_fail(level == RDMA_OPTION_IB ? EOPNOTSUPP : EINVAL);
}
