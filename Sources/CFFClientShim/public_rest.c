/* The rest of libibverbs' public API: rate conversions and kernel-struct marshalling (librdmacm uses
 * them), address handles from completions, GID entries, and the calls the virtual device does not
 * support, which fail with EOPNOTSUPP and errno set. */
#define _GNU_SOURCE
#include "shim.h"
#include "ffshim_cm_bridge.h"

#include <errno.h>
#include <infiniband/sa.h>
#include <netinet/ip.h>
#include <rdma/ib_user_sa.h>
#include <rdma/ib_user_verbs.h>
#include <string.h>

/* rdma-core's <infiniband/marshall.h>, which Debian does not ship. */
FFSHIM_EXPORT void ibv_copy_qp_attr_from_kern(struct ibv_qp_attr *dst, struct ib_uverbs_qp_attr *src);
FFSHIM_EXPORT void ibv_copy_ah_attr_from_kern(struct ibv_ah_attr *dst, struct ib_uverbs_ah_attr *src);
FFSHIM_EXPORT void ibv_copy_path_rec_from_kern(struct ibv_sa_path_rec *dst, struct ib_user_path_rec *src);
FFSHIM_EXPORT void ibv_copy_path_rec_to_kern(struct ib_user_path_rec *dst, struct ibv_sa_path_rec *src);

/* (enum ibv_rate, multiple of 2.5 Gb/s or -1 where libibverbs has none, Mb/s), as Debian's libibverbs
 * answers them (Tests/FFClientShimTests/Programs/tablecheck.c compares every input). */
static const struct {
    enum ibv_rate rate;
    int mult;
    int mbps;
} rates[] = {
    {IBV_RATE_2_5_GBPS, 1, 2500},      {IBV_RATE_5_GBPS, 2, 5000},         {IBV_RATE_10_GBPS, 4, 10000},
    {IBV_RATE_20_GBPS, 8, 20000},      {IBV_RATE_30_GBPS, 12, 30000},      {IBV_RATE_40_GBPS, 16, 40000},
    {IBV_RATE_60_GBPS, 24, 60000},     {IBV_RATE_80_GBPS, 32, 80000},      {IBV_RATE_120_GBPS, 48, 120000},
    {IBV_RATE_14_GBPS, -1, 14062},     {IBV_RATE_56_GBPS, -1, 56250},      {IBV_RATE_112_GBPS, -1, 112500},
    {IBV_RATE_168_GBPS, -1, 168750},   {IBV_RATE_25_GBPS, -1, 25781},      {IBV_RATE_100_GBPS, -1, 103125},
    {IBV_RATE_200_GBPS, -1, 206250},   {IBV_RATE_300_GBPS, -1, 309375},    {IBV_RATE_28_GBPS, 11, 28125},
    {IBV_RATE_50_GBPS, 20, 53125},     {IBV_RATE_400_GBPS, 160, 425000},   {IBV_RATE_600_GBPS, 240, 637500},
    {IBV_RATE_800_GBPS, 320, 850000},  {IBV_RATE_1200_GBPS, 480, 1275000},
};
#define RATES (sizeof(rates) / sizeof(rates[0]))

FFSHIM_EXPORT int ibv_rate_to_mult(enum ibv_rate rate) {
    for (size_t i = 0; i < RATES; i++)
        if (rates[i].rate == rate) return rates[i].mult;
    return -1;
}

FFSHIM_EXPORT enum ibv_rate mult_to_ibv_rate(int mult) {
    for (size_t i = 0; i < RATES; i++)
        if (mult > 0 && rates[i].mult == mult) return rates[i].rate;
    return IBV_RATE_MAX;
}

FFSHIM_EXPORT int ibv_rate_to_mbps(enum ibv_rate rate) {
    for (size_t i = 0; i < RATES; i++)
        if (rates[i].rate == rate) return rates[i].mbps;
    return -1;
}

FFSHIM_EXPORT enum ibv_rate mbps_to_ibv_rate(int mbps) {
    for (size_t i = 0; i < RATES; i++)
        if (rates[i].mbps == mbps) return rates[i].rate;
    return IBV_RATE_MAX;
}

FFSHIM_EXPORT void ibv_copy_ah_attr_from_kern(struct ibv_ah_attr *dst, struct ib_uverbs_ah_attr *src) {
    memcpy(dst->grh.dgid.raw, src->grh.dgid, sizeof(dst->grh.dgid));
    dst->grh.flow_label = src->grh.flow_label;
    dst->grh.sgid_index = src->grh.sgid_index;
    dst->grh.hop_limit = src->grh.hop_limit;
    dst->grh.traffic_class = src->grh.traffic_class;
    dst->dlid = src->dlid;
    dst->sl = src->sl;
    dst->src_path_bits = src->src_path_bits;
    dst->static_rate = src->static_rate;
    dst->is_global = src->is_global;
    dst->port_num = src->port_num;
}

FFSHIM_EXPORT void ibv_copy_qp_attr_from_kern(struct ibv_qp_attr *dst, struct ib_uverbs_qp_attr *src) {
    dst->qp_state = src->qp_state;
    dst->cur_qp_state = src->cur_qp_state;
    dst->path_mtu = src->path_mtu;
    dst->path_mig_state = src->path_mig_state;
    dst->qkey = src->qkey;
    dst->rq_psn = src->rq_psn;
    dst->sq_psn = src->sq_psn;
    dst->dest_qp_num = src->dest_qp_num;
    dst->qp_access_flags = src->qp_access_flags;
    dst->cap.max_send_wr = src->max_send_wr;
    dst->cap.max_recv_wr = src->max_recv_wr;
    dst->cap.max_send_sge = src->max_send_sge;
    dst->cap.max_recv_sge = src->max_recv_sge;
    dst->cap.max_inline_data = src->max_inline_data;
    ibv_copy_ah_attr_from_kern(&dst->ah_attr, &src->ah_attr);
    ibv_copy_ah_attr_from_kern(&dst->alt_ah_attr, &src->alt_ah_attr);
    dst->pkey_index = src->pkey_index;
    dst->alt_pkey_index = src->alt_pkey_index;
    dst->en_sqd_async_notify = src->en_sqd_async_notify;
    dst->sq_draining = src->sq_draining;
    dst->max_rd_atomic = src->max_rd_atomic;
    dst->max_dest_rd_atomic = src->max_dest_rd_atomic;
    dst->min_rnr_timer = src->min_rnr_timer;
    dst->port_num = src->port_num;
    dst->timeout = src->timeout;
    dst->retry_cnt = src->retry_cnt;
    dst->rnr_retry = src->rnr_retry;
    dst->alt_port_num = src->alt_port_num;
    dst->alt_timeout = src->alt_timeout;
}

FFSHIM_EXPORT void ibv_copy_path_rec_from_kern(struct ibv_sa_path_rec *dst, struct ib_user_path_rec *src) {
    memcpy(dst->dgid.raw, src->dgid, sizeof(dst->dgid));
    memcpy(dst->sgid.raw, src->sgid, sizeof(dst->sgid));
    dst->dlid = src->dlid;
    dst->slid = src->slid;
    dst->raw_traffic = (int)src->raw_traffic;
    dst->flow_label = src->flow_label;
    dst->hop_limit = src->hop_limit;
    dst->traffic_class = src->traffic_class;
    dst->reversible = (int)src->reversible;
    dst->numb_path = src->numb_path;
    dst->pkey = src->pkey;
    dst->sl = src->sl;
    dst->mtu_selector = src->mtu_selector;
    dst->mtu = (uint8_t)src->mtu;
    dst->rate_selector = src->rate_selector;
    dst->rate = src->rate;
    dst->packet_life_time_selector = src->packet_life_time_selector;
    dst->packet_life_time = src->packet_life_time;
    dst->preference = src->preference;
}

FFSHIM_EXPORT void ibv_copy_path_rec_to_kern(struct ib_user_path_rec *dst, struct ibv_sa_path_rec *src) {
    memcpy(dst->dgid, src->dgid.raw, sizeof(src->dgid));
    memcpy(dst->sgid, src->sgid.raw, sizeof(src->sgid));
    dst->dlid = src->dlid;
    dst->slid = src->slid;
    dst->raw_traffic = (uint32_t)src->raw_traffic;
    dst->flow_label = src->flow_label;
    dst->hop_limit = src->hop_limit;
    dst->traffic_class = src->traffic_class;
    dst->reversible = (uint32_t)src->reversible;
    dst->numb_path = src->numb_path;
    dst->pkey = src->pkey;
    dst->sl = src->sl;
    dst->mtu_selector = src->mtu_selector;
    dst->mtu = src->mtu;
    dst->rate_selector = src->rate_selector;
    dst->rate = src->rate;
    dst->packet_life_time_selector = src->packet_life_time_selector;
    dst->packet_life_time = src->packet_life_time;
    dst->preference = src->preference;
}

/* The IPv4-mapped GID ::ffff:a.b.c.d of an address in network order. */
static void mapped_gid(uint32_t address, union ibv_gid *gid) {
    memset(gid, 0, sizeof(*gid));
    gid->raw[10] = 0xff;
    gid->raw[11] = 0xff;
    memcpy(&gid->raw[12], &address, sizeof(address));
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
        mapped_gid(ipv4.ip_src.s_addr, &source);
        mapped_gid(ipv4.ip_dst.s_addr, &destination);
        traffic_class = ipv4.ip_tos;
        flow = 0;
    }
    if (ibv_query_gid(context, port_num, 0, &own)) return errno;
    if (memcmp(&own, &destination, sizeof(own)) != 0) {
        /* The device wrote the GRH: the sender's node address (or zeros on the fake device), not a vip. The router
         * knows which pod's QP sent it (its own pods' ids, and the peers of its UD connects) and answers with its
         * vip, so the reply's address is virtual like every other (docs/rdma-cm.md). */
        uint32_t vip = 0;
        int error = ffshim_swift_cm_bridge()->resolve_sender(ffs_session(context), source.raw, wc->src_qp, wc->qp_num, &vip);
        if (error) return ffs_fail(error);
        mapped_gid(vip, &source);
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

FFSHIM_EXPORT int _ibv_query_gid_ex(struct ibv_context *context, uint32_t port_num, uint32_t gid_index,
                                    struct ibv_gid_entry *entry, uint32_t flags, size_t entry_size) {
    if (flags || entry_size < sizeof(*entry)) return ffs_fail(EINVAL);
    if (port_num > UINT8_MAX || gid_index > INT32_MAX) return ffs_fail(EINVAL);
    memset(entry, 0, sizeof(*entry));
    if (ibv_query_gid(context, (uint8_t)port_num, (int)gid_index, &entry->gid)) return errno;
    entry->gid_index = gid_index;
    entry->port_num = port_num;
    entry->gid_type = IBV_GID_TYPE_ROCE_V2;
    return 0;
}

FFSHIM_EXPORT ssize_t _ibv_query_gid_table(struct ibv_context *context, struct ibv_gid_entry *entries,
                                           size_t max_entries, uint32_t flags, size_t entry_size) {
    if (flags || entry_size < sizeof(*entries)) return -ffs_fail(EINVAL);
    if (max_entries < 1) return -ffs_fail(EINVAL);
    int error = _ibv_query_gid_ex(context, 1, 0, entries, 0, entry_size);
    return error ? -error : 1;
}

/* Nothing to mark: fork cannot break a registration (see ibv_fork_init). */
FFSHIM_EXPORT int ibv_dontfork_range(void *base, size_t size) {
    (void)base;
    (void)size;
    return 0;
}

FFSHIM_EXPORT int ibv_dofork_range(void *base, size_t size) {
    (void)base;
    (void)size;
    return 0;
}

FFSHIM_EXPORT enum ibv_fork_status ibv_is_fork_initialized(void) { return IBV_FORK_UNNEEDED; }

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

FFSHIM_EXPORT int ibv_resize_cq(struct ibv_cq *cq, int cqe) {
    (void)cq, (void)cqe;
    return ffs_fail(EOPNOTSUPP);
}

/* Nothing was changed: the MR is as it was. */
FFSHIM_EXPORT int ibv_rereg_mr(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr, size_t length,
                               int access) {
    (void)mr, (void)flags, (void)pd, (void)addr, (void)length, (void)access;
    errno = EOPNOTSUPP;
    return IBV_REREG_MR_ERR_INPUT;
}

/* RoCE L2 addresses belong to the router's device, not to the pod. */
FFSHIM_EXPORT int ibv_resolve_eth_l2_from_gid(struct ibv_context *context, struct ibv_ah_attr *attr,
                                              uint8_t eth_mac[6], uint16_t *vid) {
    (void)context, (void)attr, (void)eth_mac, (void)vid;
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

FFSHIM_EXPORT struct ibv_mr *ibv_reg_dmabuf_mr(struct ibv_pd *pd, uint64_t offset, size_t length, uint64_t iova,
                                               int fd, int access) {
    (void)pd, (void)offset, (void)length, (void)iova, (void)fd, (void)access;
    errno = EOPNOTSUPP;
    return NULL;
}

/* Sharing a context or its objects between processes (ibv_import_*) needs the router to hand objects
 * across sessions, which it refuses by design. */
FFSHIM_EXPORT struct ibv_context *ibv_import_device(int cmd_fd) {
    (void)cmd_fd;
    errno = EOPNOTSUPP;
    return NULL;
}

FFSHIM_EXPORT struct ibv_pd *ibv_import_pd(struct ibv_context *context, uint32_t pd_handle) {
    (void)context, (void)pd_handle;
    errno = EOPNOTSUPP;
    return NULL;
}

FFSHIM_EXPORT struct ibv_mr *ibv_import_mr(struct ibv_pd *pd, uint32_t mr_handle) {
    (void)pd, (void)mr_handle;
    errno = EOPNOTSUPP;
    return NULL;
}

FFSHIM_EXPORT struct ibv_dm *ibv_import_dm(struct ibv_context *context, uint32_t dm_handle) {
    (void)context, (void)dm_handle;
    errno = EOPNOTSUPP;
    return NULL;
}

/* Nothing can have been imported. */
FFSHIM_EXPORT void ibv_unimport_pd(struct ibv_pd *pd) { (void)pd; }
FFSHIM_EXPORT void ibv_unimport_mr(struct ibv_mr *mr) { (void)mr; }
FFSHIM_EXPORT void ibv_unimport_dm(struct ibv_dm *dm) { (void)dm; }
