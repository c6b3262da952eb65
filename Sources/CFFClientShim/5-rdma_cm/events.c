/* Events: a datagram from the router becomes an rdma_cm_event, after what it means for its id is done. */
#include "rdma_cm.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

struct ffcm_event {
    struct rdma_cm_event event;
    uint8_t private_data[FFSHIM_CM_MAX_PRIVATE_DATA];
};

static struct ffcm_id *request_id(struct ffcm_id *listen, const ffshim_cm_event *e) {
    struct ffcm_id *id = ffcm_new_id(listen->id.channel, listen->id.context, listen->id.ps, e->id);
    if (!id) return NULL;
    id->id.verbs = ffcm_context_if_open();
    id->id.qp_type = listen->id.qp_type;
    if (listen->sync && rdma_migrate_id(&id->id, NULL)) {
        ffcm_unregister_id(id);
        free(id);
        return NULL;
    }
    return id;
}

/* What an event means for the id before the application sees it, as librdmacm's event processing. */
static void process(struct ffcm_id *id, const ffshim_cm_event *e, struct rdma_cm_event *event) {
    switch (e->type) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
        id->id.verbs = ffcm_context_if_open();
        ffcm_set_addresses(id, e->local_addr, e->local_port, e->remote_addr, e->remote_port);
        break;
    case RDMA_CM_EVENT_ROUTE_RESOLVED:
        memset(&id->path, 0, sizeof(id->path));
        id->path.dgid = id->id.route.addr.addr.ibaddr.dgid;
        id->path.sgid = id->id.route.addr.addr.ibaddr.sgid;
        id->path.pkey = htobe16(0xffff);
        id->path.mtu = e->path_mtu ? e->path_mtu : IBV_MTU_1024;
        id->path.hop_limit = 64;
        id->id.route.num_paths = 1;
        break;
    case RDMA_CM_EVENT_CONNECT_REQUEST:
        ffcm_set_addresses(id, e->local_addr, e->local_port, e->remote_addr, e->remote_port);
        id->remote_qpn = e->remote_qpn;
        id->remote_psn = e->remote_psn;
        id->local_psn = e->local_psn;
        id->responder_resources = e->responder_resources;
        id->initiator_depth = e->initiator_depth;
        id->retry_count = e->retry_count;
        id->rnr_retry_count = e->rnr_retry_count;
        id->path_mtu = e->path_mtu;
        id->id.route.num_paths = 1;
        break;
    case RDMA_CM_EVENT_CONNECT_RESPONSE:
        id->remote_qpn = e->remote_qpn;
        id->remote_psn = e->remote_psn;
        id->local_psn = e->local_psn;
        id->path_mtu = e->path_mtu;
        if (!id->id.qp) break; /* the application moves its own QP and calls rdma_establish */
        {
            int error = ffcm_modify_rtr(id, ffcm_depth(id->responder_resources, e->responder_resources));
            if (!error) error = ffcm_modify_rts(id, ffcm_depth(id->initiator_depth, e->initiator_depth));
            if (!error) error = cm_bridge()->establish(ffcm_session_if_open(), id->handle);
            if (error) {
                event->event = RDMA_CM_EVENT_CONNECT_ERROR;
                event->status = -error;
                ffcm_modify_err(&id->id);
            } else {
                event->event = RDMA_CM_EVENT_ESTABLISHED;
            }
        }
        break;
    case RDMA_CM_EVENT_ESTABLISHED:
        if (id->id.qp_type == IBV_QPT_UD) {
            id->remote_qpn = e->remote_qpn;
            id->qkey = e->qkey;
        }
        break;
    case RDMA_CM_EVENT_ADDR_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
        /* Only an errno reaches the application: the reason (e.g. which vip is unknown) goes to stderr. */
        if (e->reason[0]) fprintf(stderr, "libffclient: %s: %s\n", rdma_event_str(e->type), e->reason);
        break;
    default:
        if (e->reason[0] && ffcm_debugging())
            fprintf(stderr, "libffclient: %s: %s\n", rdma_event_str(e->type), e->reason);
        break;
    }
}

FFSHIM_EXPORT int rdma_get_cm_event(struct rdma_event_channel *channel, struct rdma_cm_event **event) {
    if (!channel || !event) return cm_fail(EINVAL);
    uint8_t buffer[1024];
    for (;;) {
        ssize_t n = recv(channel->fd, buffer, sizeof(buffer), 0);
        if (n < 0) return -1; /* errno: EAGAIN on a non-blocking channel, EINTR, ... */
        if (n == 0) {
            /* The router closed its end. A thread still waiting on a channel the program destroyed waits on, as
             * it would on librdmacm's (rping's event thread does until the program exits); a live channel closed
             * means the router went away. */
            if (ffcm_channel_is_live(channel)) return cm_fail(ENODEV);
            for (;;) pause();
        }
        ffshim_cm_event e;
        int error = cm_bridge()->decode_event(buffer, (size_t)n, &e);
        if (error) return cm_fail(error);
        struct ffcm_id *id;
        struct ffcm_id *listen = NULL;
        if (e.type == RDMA_CM_EVENT_CONNECT_REQUEST) {
            /* The listener is gone: the router drops its requests. */
            if (!(listen = ffcm_find_id(e.listen_id))) continue;
            if (!(id = request_id(listen, &e))) return -1;
        } else if (!(id = ffcm_find_id(e.id))) {
            continue; /* destroyed in the meantime */
        }
        struct ffcm_event *made = calloc(1, sizeof(*made));
        if (!made) return cm_fail(ENOMEM);
        struct rdma_cm_event *out = &made->event;
        out->id = &id->id;
        out->listen_id = listen ? &listen->id : NULL;
        out->event = (enum rdma_cm_event_type)e.type;
        out->status = e.status;
        memcpy(made->private_data, e.private_data, e.private_data_len);
        process(id, &e, out);
        if (id->id.qp_type == IBV_QPT_UD) {
            out->param.ud.private_data = e.private_data_len ? made->private_data : NULL;
            out->param.ud.private_data_len = e.private_data_len;
            out->param.ud.qp_num = e.remote_qpn;
            out->param.ud.qkey = e.qkey;
            out->param.ud.ah_attr.is_global = 1;
            out->param.ud.ah_attr.port_num = 1;
            out->param.ud.ah_attr.grh.hop_limit = 64;
            ffs_mapped_gid(&out->param.ud.ah_attr.grh.dgid, id->id.route.addr.dst_sin.sin_addr.s_addr);
        } else {
            out->param.conn.private_data = e.private_data_len ? made->private_data : NULL;
            out->param.conn.private_data_len = e.private_data_len;
            out->param.conn.responder_resources = e.responder_resources;
            out->param.conn.initiator_depth = e.initiator_depth;
            out->param.conn.retry_count = e.retry_count;
            out->param.conn.rnr_retry_count = e.rnr_retry_count;
            out->param.conn.qp_num = e.remote_qpn;
        }
        *event = out;
        return 0;
    }
}

FFSHIM_EXPORT int rdma_ack_cm_event(struct rdma_cm_event *event) {
    if (!event) return cm_fail(EINVAL);
    free(event);
    return 0;
}

FFSHIM_EXPORT const char *rdma_event_str(enum rdma_cm_event_type event) {
    switch (event) {
    case RDMA_CM_EVENT_ADDR_RESOLVED: return "RDMA_CM_EVENT_ADDR_RESOLVED";
    case RDMA_CM_EVENT_ADDR_ERROR: return "RDMA_CM_EVENT_ADDR_ERROR";
    case RDMA_CM_EVENT_ROUTE_RESOLVED: return "RDMA_CM_EVENT_ROUTE_RESOLVED";
    case RDMA_CM_EVENT_ROUTE_ERROR: return "RDMA_CM_EVENT_ROUTE_ERROR";
    case RDMA_CM_EVENT_CONNECT_REQUEST: return "RDMA_CM_EVENT_CONNECT_REQUEST";
    case RDMA_CM_EVENT_CONNECT_RESPONSE: return "RDMA_CM_EVENT_CONNECT_RESPONSE";
    case RDMA_CM_EVENT_CONNECT_ERROR: return "RDMA_CM_EVENT_CONNECT_ERROR";
    case RDMA_CM_EVENT_UNREACHABLE: return "RDMA_CM_EVENT_UNREACHABLE";
    case RDMA_CM_EVENT_REJECTED: return "RDMA_CM_EVENT_REJECTED";
    case RDMA_CM_EVENT_ESTABLISHED: return "RDMA_CM_EVENT_ESTABLISHED";
    case RDMA_CM_EVENT_DISCONNECTED: return "RDMA_CM_EVENT_DISCONNECTED";
    case RDMA_CM_EVENT_DEVICE_REMOVAL: return "RDMA_CM_EVENT_DEVICE_REMOVAL";
    case RDMA_CM_EVENT_MULTICAST_JOIN: return "RDMA_CM_EVENT_MULTICAST_JOIN";
    case RDMA_CM_EVENT_MULTICAST_ERROR: return "RDMA_CM_EVENT_MULTICAST_ERROR";
    case RDMA_CM_EVENT_ADDR_CHANGE: return "RDMA_CM_EVENT_ADDR_CHANGE";
    case RDMA_CM_EVENT_TIMEWAIT_EXIT: return "RDMA_CM_EVENT_TIMEWAIT_EXIT";
    default: return "UNKNOWN EVENT";
    }
}
