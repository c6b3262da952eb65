/*
 * librdmacm's API (RDMACM_1.0 ... 1.3) over the router's connection manager (docs/rdma-cm.md).
 *
 * Compiled with <rdma/rdma_cma.h> in scope, so every exported prototype is checked against Debian's. The process
 * has one connection-manager context: an ibv_context of this library opened on first use, whose router session
 * carries every cm call; id->verbs is that context, so PDs, CQs and QPs an application makes on it live in the
 * same session as its cm ids. Event channels are real descriptors (one datagram per event from the router). As
 * librdmacm does, this layer moves an id's QP to RTR and RTS itself (at rdma_accept, and when the connect
 * response arrives), with the attributes the router put in the event and the peer's virtual GID ::ffff:vip.
 */
#define _GNU_SOURCE
#include "../2-device/device.h"
#include "ffshim_cm_bridge.h"

#include <rdma/rdma_cma.h>
#include <rdma/rdma_verbs.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct ffcm_id {
    struct rdma_cm_id id;       /* first: the application's pointer is ours */
    uint32_t handle;
    int sync;                   /* made without a channel: calls wait for their own events */
    struct ibv_qp_init_attr *listen_qp_attr; /* rdma_create_ep, passive: the QP each request gets */
    struct ibv_sa_path_rec path;
    /* What the router said the QP transitions need (see CMEvent). */
    uint32_t remote_qpn, remote_psn, local_psn, qkey;
    uint8_t responder_resources, initiator_depth, retry_count, rnr_retry_count, path_mtu;
    uint8_t own_cqs;            /* rdma_create_qp made the CQs and channels */
    struct ffcm_id *next;
};

struct ffcm_event {
    struct rdma_cm_event event;
    uint8_t private_data[FFSHIM_CM_MAX_PRIVATE_DATA];
};

struct ffcm_channel {
    struct rdma_event_channel channel;
    uint32_t handle;
    struct ffcm_channel *next;
};

static pthread_mutex_t cm_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ibv_context *cm_context;   /* guarded by cm_lock until set, then read-only */
static struct ibv_pd *cm_pd;             /* the default PD (rdma_create_qp / rdma_create_ep without one) */
static uint32_t cm_vip;                  /* the pod's vip, network order */
static struct ffcm_id *cm_ids;           /* every live id, for events naming a handle */
static struct ffcm_channel *cm_channels; /* every live channel */

static int channel_is_live(struct rdma_event_channel *channel) {
    pthread_mutex_lock(&cm_lock);
    struct ffcm_channel *c = cm_channels;
    while (c && &c->channel != channel) c = c->next;
    pthread_mutex_unlock(&cm_lock);
    return c != NULL;
}

static const ffshim_cm_bridge *cm_bridge(void) { return ffshim_swift_cm_bridge(); }

static int cm_fail(int error) {
    errno = error;
    return -1;
}

static int cm_debugging(void) {
    const char *value = getenv("FFCLIENT_DEBUG");
    return value && strcmp(value, "1") == 0;
}

/* Opens the process's connection-manager context on first use. */
static struct ibv_context *cm_verbs(void) {
    pthread_mutex_lock(&cm_lock);
    if (!cm_context) {
        int count = 0;
        struct ibv_device **list = ibv_get_device_list(&count);
        if (list && count > 0) {
            struct ibv_context *context = ibv_open_device(list[0]);
            union ibv_gid gid;
            if (context && ibv_query_gid(context, 1, 0, &gid) == 0) {
                memcpy(&cm_vip, &gid.raw[12], 4);
                cm_context = context;
            } else if (context) {
                ibv_close_device(context);
            }
        }
        if (list) ibv_free_device_list(list);
        if (!cm_context) errno = ENODEV;
    }
    struct ibv_context *context = cm_context;
    pthread_mutex_unlock(&cm_lock);
    return context;
}

static void *cm_session(void) {
    struct ibv_context *context = cm_verbs();
    return context ? ffs_session(context) : NULL;
}

static struct ibv_pd *default_pd(void) {
    pthread_mutex_lock(&cm_lock);
    if (!cm_pd && cm_context) cm_pd = ibv_alloc_pd(cm_context);
    struct ibv_pd *pd = cm_pd;
    pthread_mutex_unlock(&cm_lock);
    return pd;
}

static struct ffcm_id *ffcm(struct rdma_cm_id *id) { return (struct ffcm_id *)id; }

static struct ffcm_id *find_id(uint32_t handle) {
    pthread_mutex_lock(&cm_lock);
    struct ffcm_id *found = cm_ids;
    while (found && found->handle != handle) found = found->next;
    pthread_mutex_unlock(&cm_lock);
    return found;
}

static void register_id(struct ffcm_id *id) {
    pthread_mutex_lock(&cm_lock);
    id->next = cm_ids;
    cm_ids = id;
    pthread_mutex_unlock(&cm_lock);
}

static void unregister_id(struct ffcm_id *id) {
    pthread_mutex_lock(&cm_lock);
    for (struct ffcm_id **p = &cm_ids; *p; p = &(*p)->next)
        if (*p == id) {
            *p = id->next;
            break;
        }
    pthread_mutex_unlock(&cm_lock);
}

static void set_sin(struct sockaddr_in *sin, uint32_t addr, uint16_t port) {
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = addr;
    sin->sin_port = htons(port);
}

/* Reads an IPv4 address (or the unspecified address for NULL); AF_INET6 only as ::ffff:a.b.c.d or ::. */
static int read_sockaddr(const struct sockaddr *sa, uint32_t *addr, uint16_t *port) {
    *addr = 0;
    *port = 0;
    if (!sa) return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        *addr = sin->sin_addr.s_addr;
        *port = ntohs(sin->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) memcpy(addr, &sin6->sin6_addr.s6_addr[12], 4);
        else if (!IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)) return EAFNOSUPPORT;
        *port = ntohs(sin6->sin6_port);
        return 0;
    }
    return EAFNOSUPPORT;
}

/* The id's addresses as the application reads them (rdma_get_local_addr / rdma_get_peer_addr, route.addr). */
static void set_addresses(struct ffcm_id *id, uint32_t local, uint16_t local_port, uint32_t remote, uint16_t remote_port) {
    set_sin(&id->id.route.addr.src_sin, local, local_port);
    set_sin(&id->id.route.addr.dst_sin, remote, remote_port);
    ffs_mapped_gid(&id->id.route.addr.addr.ibaddr.sgid, local ? local : cm_vip);
    ffs_mapped_gid(&id->id.route.addr.addr.ibaddr.dgid, remote);
    id->id.route.addr.addr.ibaddr.pkey = htobe16(0xffff);
}

/* ---- event channels ---- */

FFSHIM_EXPORT struct rdma_event_channel *rdma_create_event_channel(void) {
    void *session = cm_session();
    if (!session) return NULL;
    struct ffcm_channel *channel = calloc(1, sizeof(*channel));
    if (!channel) return NULL;
    int fd = -1;
    int error = cm_bridge()->create_channel(session, &channel->handle, &fd);
    if (error) {
        free(channel);
        errno = error;
        return NULL;
    }
    /* Blocking like librdmacm's, until the application says otherwise (the router's end never blocks). */
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    channel->channel.fd = fd;
    pthread_mutex_lock(&cm_lock);
    channel->next = cm_channels;
    cm_channels = channel;
    pthread_mutex_unlock(&cm_lock);
    return &channel->channel;
}

FFSHIM_EXPORT void rdma_destroy_event_channel(struct rdma_event_channel *channel) {
    if (!channel) return;
    struct ffcm_channel *c = (struct ffcm_channel *)channel;
    pthread_mutex_lock(&cm_lock);
    for (struct ffcm_channel **p = &cm_channels; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    pthread_mutex_unlock(&cm_lock);
    void *session = cm_context ? ffs_session(cm_context) : NULL;
    if (session) cm_bridge()->destroy_channel(session, c->handle);
    close(c->channel.fd);
    free(c);
}

static uint32_t channel_handle(struct rdma_event_channel *channel) {
    return ((struct ffcm_channel *)channel)->handle;
}

/* ---- ids ---- */

static enum ibv_qp_type qp_type_of(enum rdma_port_space ps) {
    return (ps == RDMA_PS_UDP || ps == RDMA_PS_IPOIB) ? IBV_QPT_UD : IBV_QPT_RC;
}

static struct ffcm_id *new_id(struct rdma_event_channel *channel, void *context, enum rdma_port_space ps, uint32_t handle) {
    struct ffcm_id *id = calloc(1, sizeof(*id));
    if (!id) return NULL;
    id->handle = handle;
    id->id.channel = channel;
    id->id.context = context;
    id->id.ps = ps;
    id->id.qp_type = qp_type_of(ps);
    id->id.port_num = 1;
    id->id.route.path_rec = &id->path;
    register_id(id);
    return id;
}

FFSHIM_EXPORT int rdma_create_id(struct rdma_event_channel *channel, struct rdma_cm_id **id, void *context,
                                 enum rdma_port_space ps) {
    if (!id) return cm_fail(EINVAL);
    void *session = cm_session();
    if (!session) return -1;
    int sync = channel == NULL;
    if (sync && !(channel = rdma_create_event_channel())) return -1;
    uint32_t handle = 0;
    int error = cm_bridge()->create_id(session, channel_handle(channel), (uint16_t)ps, &handle);
    struct ffcm_id *made = error ? NULL : new_id(channel, context, ps, handle);
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

static void destroy_cqs(struct rdma_cm_id *id) {
    if (!ffcm(id)->own_cqs) return;
    if (id->recv_cq) ibv_destroy_cq(id->recv_cq);
    if (id->send_cq && id->send_cq != id->recv_cq) ibv_destroy_cq(id->send_cq);
    if (id->recv_cq_channel) ibv_destroy_comp_channel(id->recv_cq_channel);
    if (id->send_cq_channel && id->send_cq_channel != id->recv_cq_channel) ibv_destroy_comp_channel(id->send_cq_channel);
    id->recv_cq = id->send_cq = NULL;
    id->recv_cq_channel = id->send_cq_channel = NULL;
    ffcm(id)->own_cqs = 0;
}

FFSHIM_EXPORT int rdma_destroy_id(struct rdma_cm_id *id) {
    if (!id) return cm_fail(EINVAL);
    struct ffcm_id *c = ffcm(id);
    void *session = cm_context ? ffs_session(cm_context) : NULL;
    int error = session ? cm_bridge()->destroy_id(session, c->handle) : 0;
    unregister_id(c);
    if (id->event) rdma_ack_cm_event(id->event);
    if (c->sync) rdma_destroy_event_channel(id->channel);
    free(c->listen_qp_attr);
    free(c);
    return error ? cm_fail(error) : 0;
}

/* Sync ids: the call's own event, as librdmacm's ucma_complete. */
static int complete(struct rdma_cm_id *id) {
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
    int error = read_sockaddr(addr, &address, &port);
    if (error) return cm_fail(error);
    void *session = cm_session();
    if (!session) return -1;
    error = cm_bridge()->bind(session, ffcm(id)->handle, address, port, &bound, &bound_port);
    if (error) return cm_fail(error);
    set_addresses(ffcm(id), bound, bound_port, 0, 0);
    if (bound) id->verbs = cm_context;
    return 0;
}

FFSHIM_EXPORT int rdma_resolve_addr(struct rdma_cm_id *id, struct sockaddr *src_addr, struct sockaddr *dst_addr,
                                    int timeout_ms) {
    uint32_t source, destination, local = 0;
    uint16_t source_port, port, local_port = 0;
    int error = read_sockaddr(src_addr, &source, &source_port);
    if (!error) error = dst_addr ? read_sockaddr(dst_addr, &destination, &port) : EINVAL;
    if (error) return cm_fail(error);
    void *session = cm_session();
    if (!session) return -1;
    if (source_port && !id->route.addr.src_sin.sin_port && rdma_bind_addr(id, src_addr)) return -1;
    error = cm_bridge()->resolve_addr(session, ffcm(id)->handle, source, destination, port,
                                      timeout_ms > 0 ? (uint32_t)timeout_ms : 0, &local, &local_port);
    if (error) return cm_fail(error);
    return complete(id);
}

FFSHIM_EXPORT int rdma_resolve_route(struct rdma_cm_id *id, int timeout_ms) {
    void *session = cm_session();
    if (!session) return -1;
    int error = cm_bridge()->resolve_route(session, ffcm(id)->handle, timeout_ms > 0 ? (uint32_t)timeout_ms : 0);
    if (error) return cm_fail(error);
    return complete(id);
}

FFSHIM_EXPORT int rdma_listen(struct rdma_cm_id *id, int backlog) {
    void *session = cm_session();
    if (!session) return -1;
    uint32_t bound = 0;
    uint16_t port = 0;
    int error = cm_bridge()->listen(session, ffcm(id)->handle, backlog, &bound, &port);
    if (error) return cm_fail(error);
    set_addresses(ffcm(id), bound, port, 0, 0);
    return 0;
}

/* ---- QPs ---- */

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
    if (!id->verbs) id->verbs = cm_verbs();
    if (!id->verbs) return -1;
    if (!pd) {
        if (!id->pd) id->pd = default_pd();
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
    if (!id->verbs) id->verbs = cm_verbs();
    if (!pd) pd = id->pd ? id->pd : (id->pd = default_pd());
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
static uint8_t depth(uint8_t wanted, uint8_t offered) {
    uint8_t value = wanted == RDMA_MAX_INIT_DEPTH ? offered : wanted;
    return value > 16 ? 16 : value;
}

static int modify_rtr(struct ffcm_id *c, uint8_t responder_resources) {
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

static int modify_rts(struct ffcm_id *c, uint8_t initiator_depth) {
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

static void modify_err(struct rdma_cm_id *id) {
    if (!id->qp) return;
    struct ibv_qp_attr attr = {.qp_state = IBV_QPS_ERR};
    ibv_modify_qp(id->qp, &attr, IBV_QP_STATE);
}

/* ---- connections ---- */

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
    void *session = cm_session();
    if (!session) return -1;
    int error = cm_bridge()->connect(session, &params);
    if (error) return cm_fail(error);
    return complete(id);
}

FFSHIM_EXPORT int rdma_establish(struct rdma_cm_id *id) {
    void *session = cm_session();
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
    params.responder_resources = depth(params.responder_resources, c->responder_resources);
    params.initiator_depth = depth(params.initiator_depth, c->initiator_depth);
    if (!params.qp_num) return cm_fail(EINVAL);
    if (id->qp && id->qp_type == IBV_QPT_RC) {
        c->retry_count = params.retry_count;
        c->rnr_retry_count = params.rnr_retry_count;
        int error = modify_rtr(c, params.responder_resources);
        if (!error) error = modify_rts(c, params.initiator_depth);
        if (error) {
            cm_bridge()->reject(ffs_session(cm_context), &(ffshim_cm_params){.id = c->handle, .retry_count = 7, .rnr_retry_count = 7});
            return cm_fail(error);
        }
    }
    void *session = cm_session();
    if (!session) return -1;
    int error = cm_bridge()->accept(session, &params);
    if (error) return cm_fail(error);
    return id->qp_type == IBV_QPT_RC ? complete(id) : 0;
}

FFSHIM_EXPORT int rdma_reject(struct rdma_cm_id *id, const void *private_data, uint8_t private_data_len) {
    void *session = cm_session();
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
    void *session = cm_session();
    if (!session) return -1;
    modify_err(id);
    int error = cm_bridge()->disconnect(session, ffcm(id)->handle);
    return error ? cm_fail(error) : 0;
}

FFSHIM_EXPORT int rdma_notify(struct rdma_cm_id *id, enum ibv_event_type event) {
    (void)id;
    (void)event;
    return 0;
}

FFSHIM_EXPORT int rdma_migrate_id(struct rdma_cm_id *id, struct rdma_event_channel *channel) {
    struct ffcm_id *c = ffcm(id);
    void *session = cm_session();
    if (!session) return -1;
    int sync = channel == NULL;
    if (sync && !(channel = rdma_create_event_channel())) return -1;
    int error = cm_bridge()->migrate(session, c->handle, channel_handle(channel));
    if (error) {
        if (sync) rdma_destroy_event_channel(channel);
        return cm_fail(error);
    }
    if (c->sync) rdma_destroy_event_channel(id->channel);
    id->channel = channel;
    c->sync = sync;
    return 0;
}

/* ---- events ---- */

static struct ffcm_id *request_id(struct ffcm_id *listen, const ffshim_cm_event *e) {
    struct ffcm_id *id = new_id(listen->id.channel, listen->id.context, listen->id.ps, e->id);
    if (!id) return NULL;
    id->id.verbs = cm_context;
    id->id.qp_type = listen->id.qp_type;
    if (listen->sync && rdma_migrate_id(&id->id, NULL)) {
        unregister_id(id);
        free(id);
        return NULL;
    }
    return id;
}

/* What an event means for the id before the application sees it, as librdmacm's event processing. */
static void process(struct ffcm_id *id, const ffshim_cm_event *e, struct rdma_cm_event *event) {
    switch (e->type) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
        id->id.verbs = cm_context;
        set_addresses(id, e->local_addr, e->local_port, e->remote_addr, e->remote_port);
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
        set_addresses(id, e->local_addr, e->local_port, e->remote_addr, e->remote_port);
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
            int error = modify_rtr(id, depth(id->responder_resources, e->responder_resources));
            if (!error) error = modify_rts(id, depth(id->initiator_depth, e->initiator_depth));
            if (!error) error = cm_bridge()->establish(ffs_session(cm_context), id->handle);
            if (error) {
                event->event = RDMA_CM_EVENT_CONNECT_ERROR;
                event->status = -error;
                modify_err(&id->id);
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
        if (e->reason[0] && cm_debugging()) fprintf(stderr, "libffclient: %s: %s\n", rdma_event_str(e->type), e->reason);
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
            if (channel_is_live(channel)) return cm_fail(ENODEV);
            for (;;) pause();
        }
        ffshim_cm_event e;
        int error = cm_bridge()->decode_event(buffer, (size_t)n, &e);
        if (error) return cm_fail(error);
        struct ffcm_id *id;
        struct ffcm_id *listen = NULL;
        if (e.type == RDMA_CM_EVENT_CONNECT_REQUEST) {
            if (!(listen = find_id(e.listen_id))) continue; /* the listener is gone: the router drops its requests */
            if (!(id = request_id(listen, &e))) return -1;
        } else if (!(id = find_id(e.id))) {
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

/* ---- endpoints and address info ---- */

FFSHIM_EXPORT int rdma_create_ep(struct rdma_cm_id **id, struct rdma_addrinfo *res, struct ibv_pd *pd,
                                 struct ibv_qp_init_attr *qp_init_attr) {
    if (!id || !res) return cm_fail(EINVAL);
    struct rdma_cm_id *made;
    if (rdma_create_id(NULL, &made, NULL, (enum rdma_port_space)res->ai_port_space)) return -1;
    int failed;
    if (res->ai_flags & RAI_PASSIVE) {
        failed = rdma_bind_addr(made, res->ai_src_addr);
        if (!failed && qp_init_attr) {
            struct ffcm_id *c = ffcm(made);
            if (!(c->listen_qp_attr = malloc(sizeof(*qp_init_attr)))) failed = cm_fail(ENOMEM);
            else {
                *c->listen_qp_attr = *qp_init_attr;
                c->listen_qp_attr->qp_type = (enum ibv_qp_type)res->ai_qp_type;
            }
            made->pd = pd;
        }
    } else {
        failed = rdma_resolve_addr(made, res->ai_src_addr, res->ai_dst_addr, 2000) || rdma_resolve_route(made, 2000);
        if (!failed && qp_init_attr) {
            qp_init_attr->qp_type = (enum ibv_qp_type)res->ai_qp_type;
            failed = rdma_create_qp(made, pd, qp_init_attr);
        }
    }
    if (failed) {
        int error = errno;
        rdma_destroy_ep(made);
        return cm_fail(error);
    }
    *id = made;
    return 0;
}

FFSHIM_EXPORT void rdma_destroy_ep(struct rdma_cm_id *id) {
    if (!id) return;
    rdma_destroy_qp(id);
    rdma_destroy_srq(id);
    rdma_destroy_id(id);
}

static struct sockaddr *copy_sockaddr(const struct sockaddr_in *sin) {
    struct sockaddr_in *copy = malloc(sizeof(*copy));
    if (copy) *copy = *sin;
    return (struct sockaddr *)copy;
}

FFSHIM_EXPORT int rdma_getaddrinfo(const char *node, const char *service, const struct rdma_addrinfo *hints,
                                   struct rdma_addrinfo **res) {
    if (!res || (!node && !service)) return cm_fail(EINVAL);
    int flags = hints ? hints->ai_flags : 0;
    if (hints && hints->ai_family && hints->ai_family != AF_INET) return cm_fail(EAFNOSUPPORT);
    struct sockaddr_in address = {.sin_family = AF_INET};
    if (node) {
        struct addrinfo want = {.ai_family = AF_INET, .ai_flags = (flags & RAI_NUMERICHOST) ? AI_NUMERICHOST : 0};
        struct addrinfo *found;
        int error = getaddrinfo(node, NULL, &want, &found);
        if (error) return cm_fail(error == EAI_SYSTEM ? errno : EADDRNOTAVAIL);
        address.sin_addr = ((struct sockaddr_in *)found->ai_addr)->sin_addr;
        freeaddrinfo(found);
    }
    if (service) {
        char *end;
        long port = strtol(service, &end, 10);
        if (*end || port < 0 || port > 65535) {
            struct servent *entry = getservbyname(service, "tcp");
            if (!entry) return cm_fail(EINVAL);
            address.sin_port = (in_port_t)entry->s_port;
        } else {
            address.sin_port = htons((uint16_t)port);
        }
    }
    struct rdma_addrinfo *info = calloc(1, sizeof(*info));
    if (!info) return cm_fail(ENOMEM);
    info->ai_flags = flags;
    info->ai_family = AF_INET;
    info->ai_port_space = (hints && hints->ai_port_space) ? hints->ai_port_space : RDMA_PS_TCP;
    info->ai_qp_type = (hints && hints->ai_qp_type) ? hints->ai_qp_type : (int)qp_type_of((enum rdma_port_space)info->ai_port_space);
    if (flags & RAI_PASSIVE) {
        info->ai_src_addr = copy_sockaddr(&address);
        info->ai_src_len = sizeof(address);
    } else {
        info->ai_dst_addr = copy_sockaddr(&address);
        info->ai_dst_len = sizeof(address);
        if (hints && hints->ai_src_addr && hints->ai_src_addr->sa_family == AF_INET) {
            info->ai_src_addr = copy_sockaddr((const struct sockaddr_in *)hints->ai_src_addr);
            info->ai_src_len = sizeof(address);
        }
    }
    if ((info->ai_flags & RAI_PASSIVE ? !info->ai_src_addr : !info->ai_dst_addr)) {
        rdma_freeaddrinfo(info);
        return cm_fail(ENOMEM);
    }
    *res = info;
    return 0;
}

FFSHIM_EXPORT void rdma_freeaddrinfo(struct rdma_addrinfo *res) {
    while (res) {
        struct rdma_addrinfo *next = res->ai_next;
        free(res->ai_src_addr);
        free(res->ai_dst_addr);
        free(res->ai_src_canonname);
        free(res->ai_dst_canonname);
        free(res->ai_route);
        free(res->ai_connect);
        free(res);
        res = next;
    }
}

/* ---- devices, options, the rest ---- */

FFSHIM_EXPORT struct ibv_context **rdma_get_devices(int *num_devices) {
    struct ibv_context *context = cm_verbs();
    struct ibv_context **list = calloc(2, sizeof(*list));
    if (!list) return NULL;
    list[0] = context;
    if (num_devices) *num_devices = context ? 1 : 0;
    return list;
}

FFSHIM_EXPORT void rdma_free_devices(struct ibv_context **list) { free(list); }

FFSHIM_EXPORT int rdma_set_option(struct rdma_cm_id *id, int level, int optname, void *optval, size_t optlen) {
    (void)id;
    if (!optval) return cm_fail(EINVAL);
    /* The type of service, address reuse, v6-only and the ACK timeout do not change what the router does. */
    if (level == RDMA_OPTION_ID && optname >= RDMA_OPTION_ID_TOS && optname <= RDMA_OPTION_ID_ACK_TIMEOUT && optlen > 0) return 0;
    return cm_fail(level == RDMA_OPTION_IB ? EOPNOTSUPP : EINVAL);
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

FFSHIM_EXPORT int rdma_join_multicast(struct rdma_cm_id *id, struct sockaddr *addr, void *context) {
    (void)id;
    (void)addr;
    (void)context;
    return cm_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT int rdma_join_multicast_ex(struct rdma_cm_id *id, struct rdma_cm_join_mc_attr_ex *mc_join_attr,
                                         void *context) {
    (void)id;
    (void)mc_join_attr;
    (void)context;
    return cm_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT int rdma_leave_multicast(struct rdma_cm_id *id, struct sockaddr *addr) {
    (void)id;
    (void)addr;
    return cm_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT int rdma_set_local_ece(struct rdma_cm_id *id, struct ibv_ece *ece) {
    (void)id;
    (void)ece;
    return cm_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT int rdma_get_remote_ece(struct rdma_cm_id *id, struct ibv_ece *ece) {
    (void)id;
    (void)ece;
    return cm_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT __be16 rdma_get_src_port(struct rdma_cm_id *id) { return id->route.addr.src_sin.sin_port; }

FFSHIM_EXPORT __be16 rdma_get_dst_port(struct rdma_cm_id *id) { return id->route.addr.dst_sin.sin_port; }
