/*
 * Verbs from several threads at once on one context: while one thread sleeps in ibv_get_cq_event, four
 * others allocate PDs, register their own buffers and query the port, 100 times each; then a SEND between
 * two QPs completes on the channel's CQ and wakes the sleeper. alarm(60) bounds the whole run (a hang is
 * a failure, not a stuck test). Prints "ok threads" on success.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <infiniband/verbs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct ibv_context *ctx;
static struct ibv_comp_channel *channel;
static struct ibv_cq *events_cq;
static volatile int woke;

static void fail(const char *what) {
    printf("FAIL %s (errno %d)\n", what, errno);
    exit(1);
}

static void *sleeper(void *unused) {
    (void)unused;
    struct ibv_cq *cq;
    void *context;
    if (ibv_get_cq_event(channel, &cq, &context) || cq != events_cq) fail("get_cq_event");
    ibv_ack_cq_events(cq, 1);
    woke = 1;
    return NULL;
}

static void *worker(void *unused) {
    (void)unused;
    for (int i = 0; i < 100; i++) {
        struct ibv_pd *pd = ibv_alloc_pd(ctx);
        if (!pd) fail("alloc_pd");
        size_t size = 4096 * (1 + (size_t)(i % 3));
        char *buffer = malloc(size + 4096);
        memset(buffer, i, size);
        struct ibv_mr *mr = ibv_reg_mr(pd, buffer + 4096 - ((uintptr_t)buffer % 4096), size, IBV_ACCESS_LOCAL_WRITE);
        if (!mr) fail("reg_mr");
        struct ibv_port_attr port;
        if (ibv_query_port(ctx, 1, &port) || port.state != IBV_PORT_ACTIVE) fail("query_port");
        if (ibv_dereg_mr(mr) || ibv_dealloc_pd(pd)) fail("dereg/dealloc");
        free(buffer);
    }
    return NULL;
}

static void connect_qp(struct ibv_qp *qp, uint32_t dest, union ibv_gid gid) {
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .port_num = 1, .qp_access_flags = IBV_ACCESS_LOCAL_WRITE};
    struct ibv_qp_attr r = {.qp_state = IBV_QPS_RTR, .path_mtu = IBV_MTU_1024, .dest_qp_num = dest, .max_dest_rd_atomic = 1,
                            .min_rnr_timer = 12, .ah_attr = {.is_global = 1, .grh = {.dgid = gid, .hop_limit = 1}, .port_num = 1}};
    struct ibv_qp_attr s = {.qp_state = IBV_QPS_RTS, .timeout = 14, .retry_cnt = 7, .rnr_retry = 7, .max_rd_atomic = 1};
    if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS) ||
        ibv_modify_qp(qp, &r, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                  IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER) ||
        ibv_modify_qp(qp, &s, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                                  IBV_QP_MAX_QP_RD_ATOMIC))
        fail("modify_qp");
}

int main(void) {
    alarm(60);
    struct ibv_device **list = ibv_get_device_list(NULL);
    if (!list || !list[0] || !(ctx = ibv_open_device(list[0]))) fail("open");
    if (!(channel = ibv_create_comp_channel(ctx))) fail("channel");
    if (!(events_cq = ibv_create_cq(ctx, 16, NULL, channel, 0))) fail("cq");
    if (ibv_req_notify_cq(events_cq, 0)) fail("req_notify");
    pthread_t sleeping, workers[4];
    pthread_create(&sleeping, NULL, sleeper, NULL);
    for (int i = 0; i < 4; i++) pthread_create(&workers[i], NULL, worker, NULL);
    for (int i = 0; i < 4; i++) pthread_join(workers[i], NULL);
    if (woke) fail("the sleeper woke without an event");
    printf("ok workers done while one thread slept in ibv_get_cq_event\n");

    /* A completion on events_cq wakes the sleeper. */
    struct ibv_pd *pd = ibv_alloc_pd(ctx);
    struct ibv_cq *send_cq = ibv_create_cq(ctx, 16, NULL, NULL, 0);
    struct ibv_qp_init_attr sender = {.send_cq = send_cq, .recv_cq = send_cq, .qp_type = IBV_QPT_RC,
                                      .cap = {.max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1}};
    struct ibv_qp_init_attr receiver = sender;
    receiver.recv_cq = events_cq;
    struct ibv_qp *qp1 = ibv_create_qp(pd, &sender), *qp2 = ibv_create_qp(pd, &receiver);
    union ibv_gid gid;
    if (!qp1 || !qp2 || ibv_query_gid(ctx, 1, 0, &gid)) fail("qps");
    connect_qp(qp1, qp2->qp_num, gid);
    connect_qp(qp2, qp1->qp_num, gid);
    static char buffer[8192] __attribute__((aligned(4096)));
    struct ibv_mr *mr = ibv_reg_mr(pd, buffer, sizeof(buffer), IBV_ACCESS_LOCAL_WRITE);
    if (!mr) fail("reg_mr");
    struct ibv_sge rsge = {.addr = (uintptr_t)buffer + 4096, .length = 4096, .lkey = mr->lkey};
    struct ibv_recv_wr rwr = {.wr_id = 1, .sg_list = &rsge, .num_sge = 1}, *rbad;
    struct ibv_sge ssge = {.addr = (uintptr_t)buffer, .length = 64, .lkey = mr->lkey};
    struct ibv_send_wr swr = {.wr_id = 2, .sg_list = &ssge, .num_sge = 1, .opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED}, *sbad;
    if (ibv_post_recv(qp2, &rwr, &rbad) || ibv_post_send(qp1, &swr, &sbad)) fail("post");
    pthread_join(sleeping, NULL);
    if (!woke) fail("sleeper");
    printf("ok threads\n");
    return 0;
}
