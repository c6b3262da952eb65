/*
 * Layer 5, rdma_cm: librdmacm's API (RDMACM_1.0 ... 1.3) over the router's connection manager (docs/rdma-cm.md).
 *
 * Compiled with <rdma/rdma_cma.h> in scope, so every exported prototype is checked against Debian's. The process
 * has one connection-manager context: an ibv_context of this library opened on first use, whose router session
 * carries every cm call; id->verbs is that context, so PDs, CQs and QPs an application makes on it live in the
 * same session as its cm ids. Event channels are real descriptors (one datagram per event from the router). As
 * librdmacm does, this layer moves an id's QP to RTR and RTS itself (at rdma_accept, and when the connect
 * response arrives), with the attributes the router put in the event and the peer's virtual GID ::ffff:vip.
 *
 * Nothing is above this layer, so this header is for its own files, each of which calls only those before it:
 * cm.c (the context), id_registry.c, addresses.c, channels.c, cm_qp.c, events.c, ids.c, connect.c, endpoints.c;
 * unsupported.c and rsocket.c stand alone. The layer reaches the verbs layers through the exported verbs API and
 * ffs_session only.
 */
#ifndef FFSHIM_RDMA_CM_H
#define FFSHIM_RDMA_CM_H

#include "../2-device/device.h"
#include "ffshim_cm_bridge.h"

#include <rdma/rdma_cma.h>
#include <rdma/rdma_verbs.h>

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

static inline struct ffcm_id *ffcm(struct rdma_cm_id *id) { return (struct ffcm_id *)id; }

static inline const ffshim_cm_bridge *cm_bridge(void) { return ffshim_swift_cm_bridge(); }

/* Sets errno and returns -1, as librdmacm's calls fail. */
static inline int cm_fail(int error) {
    errno = error;
    return -1;
}

/* cm.c: the process's connection-manager context. ffcm_verbs opens it on first use (NULL and errno ENODEV if
 * there is no device); the *_if_open calls never open it. */
struct ibv_context *ffcm_verbs(void);
void *ffcm_session(void);
struct ibv_context *ffcm_context_if_open(void);
void *ffcm_session_if_open(void);
/* The pod's vip, network order (from the context's GID). */
uint32_t ffcm_vip(void);
/* The default PD, for rdma_create_qp / rdma_create_srq without one. */
struct ibv_pd *ffcm_default_pd(void);
/* FFCLIENT_DEBUG=1: every event's reason goes to stderr. */
int ffcm_debugging(void);

/* id_registry.c: every live id, by the router's handle. */
struct ffcm_id *ffcm_new_id(struct rdma_event_channel *channel, void *context, enum rdma_port_space ps,
                            uint32_t handle);
struct ffcm_id *ffcm_find_id(uint32_t handle);
void ffcm_unregister_id(struct ffcm_id *id);
enum ibv_qp_type ffcm_qp_type_of(enum rdma_port_space ps);

/* addresses.c: reads an IPv4 address (or the unspecified address for NULL); AF_INET6 only as ::ffff:a.b.c.d or ::. */
int ffcm_read_sockaddr(const struct sockaddr *sa, uint32_t *addr, uint16_t *port);
/* The id's addresses as the application reads them (rdma_get_local_addr / rdma_get_peer_addr, route.addr). */
void ffcm_set_addresses(struct ffcm_id *id, uint32_t local, uint16_t local_port, uint32_t remote,
                        uint16_t remote_port);

/* channels.c */
int ffcm_channel_is_live(struct rdma_event_channel *channel);
uint32_t ffcm_channel_handle(struct rdma_event_channel *channel);

/* cm_qp.c: the QP transitions this layer makes for the application. */
uint8_t ffcm_depth(uint8_t wanted, uint8_t offered);
int ffcm_modify_rtr(struct ffcm_id *c, uint8_t responder_resources);
int ffcm_modify_rts(struct ffcm_id *c, uint8_t initiator_depth);
void ffcm_modify_err(struct rdma_cm_id *id);

/* ids.c: a sync id (made without a channel) waits for its call's own event. */
int ffcm_complete(struct rdma_cm_id *id);

#endif
