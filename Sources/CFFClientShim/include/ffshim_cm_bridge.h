/*
 * The bridge between libffclient's librdmacm layer (Sources/CFFClientShim/5-rdma_cm) and its Swift side
 * (Sources/FFClientShim/Bridge/CMBridgeTable.swift), as ffshim_bridge.h is for verbs: router handles and plain
 * values only, each function returns 0 or a positive errno. `session` is the session of the context the
 * connection manager uses (5-rdma_cm/cm.c opens one for the whole process). Addresses are IPv4 in network order
 * (sin_addr.s_addr), ports in host order.
 */
#ifndef FFSHIM_CM_BRIDGE_H
#define FFSHIM_CM_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

/* FFProtocol's CMPrivateData.maxLength and WireLimits.maxReasonLength. */
#define FFSHIM_CM_MAX_PRIVATE_DATA 196
#define FFSHIM_CM_MAX_REASON 512

/* rdma_connect / rdma_accept / rdma_reject. */
typedef struct ffshim_cm_params {
    uint32_t id;
    uint32_t qp_num;
    uint8_t responder_resources, initiator_depth, retry_count, rnr_retry_count, flow_control, srq;
    const void *private_data;
    uint8_t private_data_len;
} ffshim_cm_params;

/* One event as the router sent it (FFProtocol's CMEvent). */
typedef struct ffshim_cm_event {
    uint32_t id, listen_id; /* listen_id 0: none */
    uint32_t type;          /* enum rdma_cm_event_type */
    int32_t status;
    uint32_t local_addr, remote_addr;
    uint16_t local_port, remote_port;
    uint32_t remote_qpn, qkey, remote_psn, local_psn;
    uint8_t responder_resources, initiator_depth, retry_count, rnr_retry_count, path_mtu;
    uint8_t private_data_len;
    uint8_t private_data[FFSHIM_CM_MAX_PRIVATE_DATA];
    char reason[FFSHIM_CM_MAX_REASON + 1];
} ffshim_cm_event;

typedef struct ffshim_cm_bridge {
    /* `fd` receives the channel's descriptor: one datagram per event. */
    int (*create_channel)(void *session, uint32_t *channel, int *fd);
    int (*create_id)(void *session, uint32_t channel, uint16_t port_space, uint32_t *id);
    int (*destroy_id)(void *session, uint32_t id);
    int (*bind)(void *session, uint32_t id, uint32_t addr, uint16_t port, uint32_t *bound_addr, uint16_t *bound_port);
    /* *local_* receive the id's local address (the pod's vip and the port it got). */
    int (*resolve_addr)(void *session, uint32_t id, uint32_t src, uint32_t dst, uint16_t port, uint32_t timeout_ms,
                        uint32_t *local_addr, uint16_t *local_port);
    int (*resolve_route)(void *session, uint32_t id, uint32_t timeout_ms);
    int (*listen)(void *session, uint32_t id, int backlog, uint32_t *bound_addr, uint16_t *bound_port);
    int (*connect)(void *session, const ffshim_cm_params *params);
    int (*accept)(void *session, const ffshim_cm_params *params);
    int (*reject)(void *session, const ffshim_cm_params *params);
    int (*disconnect)(void *session, uint32_t id);
    /* rdma_create_qp: the router moves the QP to INIT (RC) or RTS (UD). */
    int (*attach_qp)(void *session, uint32_t id, uint32_t qp);
    int (*establish)(void *session, uint32_t id);
    int (*migrate)(void *session, uint32_t id, uint32_t channel);
    int (*destroy_channel)(void *session, uint32_t channel);
    /* ibv_init_ah_from_wc: the vip (network order) of the pod whose QP `source_qpn` sent what the session's QP
     * `receiver_qpn` received with `gid` (16 bytes) as the GRH's source; ENOENT if the router does not know it. */
    int (*resolve_sender)(void *session, const uint8_t *gid, uint32_t source_qpn, uint32_t receiver_qpn, uint32_t *vip);
    /* Decodes one datagram read from a channel; EPROTO if it is not a valid event. */
    int (*decode_event)(const uint8_t *bytes, size_t length, ffshim_cm_event *event);
} ffshim_cm_bridge;

/* Implemented in Swift (@_cdecl); the table lives for the life of the process. */
const ffshim_cm_bridge *ffshim_swift_cm_bridge(void);

#endif
