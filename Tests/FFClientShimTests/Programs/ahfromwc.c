/* ibv_init_ah_from_wc on crafted completions of a UD QP: the GRH as rxe writes it for RoCE v2 over IPv4 (20 unused
 * bytes, then the IPv4 header), the same bytes read as an IPv6 GRH (bad IPv4 checksum), and the fake device's zeros.
 * Prints one line per case: "NAME rc=R errno=E"; the router's answer tells which source address the shim read. */
#include <arpa/inet.h>
#include <errno.h>
#include <infiniband/verbs.h>
#include <netinet/ip.h>
#include <stdio.h>
#include <string.h>

static void ipv4_grh(struct ibv_grh *grh, const char *source, const char *destination, int good_checksum) {
    memset(grh, 0, sizeof(*grh));
    struct ip header;
    memset(&header, 0, sizeof(header));
    header.ip_v = 4;
    header.ip_hl = 5;
    header.ip_len = htons(60);
    header.ip_ttl = 64;
    header.ip_p = IPPROTO_UDP;
    inet_pton(AF_INET, source, &header.ip_src);
    inet_pton(AF_INET, destination, &header.ip_dst);
    uint16_t words[10];
    memcpy(words, &header, sizeof(words));
    uint32_t sum = 0;
    for (int i = 0; i < 10; i++) sum += words[i];
    while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
    header.ip_sum = (uint16_t)~sum ^ (good_checksum ? 0 : 0x5A5A);
    memcpy((uint8_t *)grh + 20, &header, sizeof(header));
    if (!good_checksum) grh->version_tclass_flow = htonl(6u << 28);
}

static void attempt(const char *name, struct ibv_context *context, struct ibv_wc *wc, struct ibv_grh *grh) {
    struct ibv_ah_attr attr;
    errno = 0;
    int rc = ibv_init_ah_from_wc(context, 1, wc, grh, &attr);
    printf("%s rc=%d errno=%d\n", name, rc, rc ? errno : 0);
}

int main(void) {
    int count = 0;
    struct ibv_device **list = ibv_get_device_list(&count);
    if (!list || count < 1) return 2;
    struct ibv_context *context = ibv_open_device(list[0]);
    struct ibv_pd *pd = context ? ibv_alloc_pd(context) : NULL;
    struct ibv_cq *cq = pd ? ibv_create_cq(context, 4, NULL, NULL, 0) : NULL;
    struct ibv_qp_init_attr init = {.send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_UD,
                                    .cap = {.max_send_wr = 1, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1}};
    struct ibv_qp *qp = cq ? ibv_create_qp(pd, &init) : NULL;
    if (!qp) return 3;
    struct ibv_wc wc = {.wc_flags = IBV_WC_GRH, .qp_num = qp->qp_num, .src_qp = 0x123};
    struct ibv_grh grh;
    ipv4_grh(&grh, "10.0.2.99", "10.0.2.15", 1);
    attempt("ipv4", context, &wc, &grh);
    ipv4_grh(&grh, "10.0.2.99", "10.0.2.15", 0);
    attempt("ipv6", context, &wc, &grh);
    memset(&grh, 0, sizeof(grh));
    attempt("zeros", context, &wc, &grh);
    wc.qp_num = qp->qp_num + 1000;
    attempt("foreign-receiver", context, &wc, &grh);
    ibv_destroy_qp(qp);
    ibv_destroy_cq(cq);
    ibv_dealloc_pd(pd);
    ibv_close_device(context);
    ibv_free_device_list(list);
    return 0;
}
