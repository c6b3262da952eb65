/* Address handles, also from a received completion: the reply's address is the sender's virtual GID. */
#include "resources.h"
#include "ffshim_cm_bridge.h"

#include <netinet/ip.h>
#include <stdlib.h>

FFSHIM_EXPORT struct ibv_ah *ibv_create_ah(struct ibv_pd *pd, struct ibv_ah_attr *attr) {
    struct ibv_ah *ah = calloc(1, sizeof(*ah));
    if (!ah) return NULL; /* calloc set errno to ENOMEM */
    int error = ffs_bridge()->create_ah(ffs_session(pd->context), pd->handle, attr, &ah->handle);
    if (error) {
        free(ah);
        errno = error;
        return NULL;
    }
    ah->context = pd->context;
    ah->pd = pd;
    return ah;
}

FFSHIM_EXPORT int ibv_destroy_ah(struct ibv_ah *ah) {
    int error = ffs_bridge()->destroy_ah(ffs_session(ah->context), ah->handle);
    if (error) return ffs_fail(error);
    free(ah);
    return 0;
}

/* Whether the 40 bytes of a received GRH are RoCE v2 over IPv4: 20 unused bytes, then the packet's IPv4 header,
 * recognized as libibverbs' ibv_init_ah_from_wc does (not an IPv6 header, or a 20-byte IPv4 header whose checksum
 * holds). */
static int grh_is_ipv4(const struct ibv_grh *grh, struct ip *header) {
    memcpy(header, (const uint8_t *)grh + 20, sizeof(*header));
    if (((be32toh(grh->version_tclass_flow) >> 28) & 0xF) != 6) return header->ip_v == 4;
    if (header->ip_hl != 5) return 0;
    uint16_t words[10];
    memcpy(words, header, sizeof(words));
    words[5] = 0;
    uint32_t sum = 0;
    for (int i = 0; i < 10; i++) sum += words[i];
    while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)~sum == header->ip_sum;
}

/* The address vector that answers a UD (or RC/UC with GRH) completion: back to its sender. */
FFSHIM_EXPORT int ibv_init_ah_from_wc(struct ibv_context *context, uint8_t port_num, struct ibv_wc *wc,
                                      struct ibv_grh *grh, struct ibv_ah_attr *ah_attr) {
    memset(ah_attr, 0, sizeof(*ah_attr));
    ah_attr->dlid = wc->slid;
    ah_attr->sl = wc->sl;
    ah_attr->src_path_bits = wc->dlid_path_bits;
    ah_attr->port_num = port_num;
    if (!(wc->wc_flags & IBV_WC_GRH)) return 0;
    if (!grh) return ffs_fail(EINVAL);
    union ibv_gid own, source = grh->sgid, destination = grh->dgid;
    uint32_t flow = be32toh(grh->version_tclass_flow);
    uint8_t traffic_class = (flow >> 20) & 0xFF;
    struct ip ipv4;
    if (grh_is_ipv4(grh, &ipv4)) {
        /* RoCE v2 over IPv4 (rxe): the addresses are the IPv4 header's. */
        ffs_mapped_gid(&source, ipv4.ip_src.s_addr);
        ffs_mapped_gid(&destination, ipv4.ip_dst.s_addr);
        traffic_class = ipv4.ip_tos;
        flow = 0;
    }
    if (ibv_query_gid(context, port_num, 0, &own)) return errno;
    if (memcmp(&own, &destination, sizeof(own)) != 0) {
        /* The device wrote the GRH: the sender's node address (or zeros on the fake device), not a vip. The router
         * knows which pod's QP sent it (its own pods' ids, and the peers of its UD connects) and answers with its
         * vip, so the reply's address is virtual like every other (docs/rdma-cm.md). */
        uint32_t vip = 0;
        int error =
            ffshim_swift_cm_bridge()->resolve_sender(ffs_session(context), source.raw, wc->src_qp, wc->qp_num, &vip);
        if (error) return ffs_fail(error);
        ffs_mapped_gid(&source, vip);
    }
    ah_attr->is_global = 1;
    ah_attr->grh.dgid = source;
    ah_attr->grh.sgid_index = 0;
    ah_attr->grh.flow_label = flow & 0xFFFFF;
    ah_attr->grh.hop_limit = 0xFF;
    ah_attr->grh.traffic_class = traffic_class;
    return 0;
}

FFSHIM_EXPORT struct ibv_ah *ibv_create_ah_from_wc(struct ibv_pd *pd, struct ibv_wc *wc, struct ibv_grh *grh,
                                                   uint8_t port_num) {
    struct ibv_ah_attr attr;
    int error = ibv_init_ah_from_wc(pd->context, port_num, wc, grh, &attr);
    if (error) {
        errno = error;
        return NULL;
    }
    return ibv_create_ah(pd, &attr);
}

/* RoCE L2 addresses belong to the router's device, not to the pod. */
FFSHIM_EXPORT int ibv_resolve_eth_l2_from_gid(struct ibv_context *context, struct ibv_ah_attr *attr,
                                              uint8_t eth_mac[6], uint16_t *vid) {
    (void)context, (void)attr, (void)eth_mac, (void)vid;
    return ffs_fail(EOPNOTSUPP);
}
