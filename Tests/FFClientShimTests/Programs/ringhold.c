/* Holds a session with the router: a PD, a CQ and an RC QP in INIT. With "fill", posts receives until the QP and its
 * ring are full (ENOMEM, as a full verbs queue), then prints "full N pid P"; otherwise "ready pid P". Then waits to be
 * killed. Used by FastPathTests (idle router CPU, kill -9 with full rings). */
#include <errno.h>
#include <infiniband/verbs.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int fill = argc > 1 && strcmp(argv[1], "fill") == 0;
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    if (!list || n < 1) { fprintf(stderr, "no device\n"); return 1; }
    struct ibv_context *ctx = ibv_open_device(list[0]);
    if (!ctx) { perror("ibv_open_device"); return 1; }
    struct ibv_pd *pd = ibv_alloc_pd(ctx);
    struct ibv_cq *cq = pd ? ibv_create_cq(ctx, 64, NULL, NULL, 0) : NULL;
    if (!cq) { perror("pd/cq"); return 1; }
    struct ibv_qp_init_attr init = {.send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC,
                                    .cap = {.max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 1, .max_recv_sge = 1}};
    struct ibv_qp *qp = ibv_create_qp(pd, &init);
    if (!qp) { perror("ibv_create_qp"); return 1; }
    struct ibv_qp_attr attr = {.qp_state = IBV_QPS_INIT, .pkey_index = 0, .port_num = 1, .qp_access_flags = IBV_ACCESS_LOCAL_WRITE};
    if (ibv_modify_qp(qp, &attr, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) { perror("modify"); return 1; }
    if (fill) {
        int posted = 0;
        for (int attempt = 0; attempt < 200000; attempt++) {
            struct ibv_recv_wr wr = {.wr_id = (uint64_t)posted, .num_sge = 0}, *bad = NULL;
            int rc = ibv_post_recv(qp, &wr, &bad);
            if (rc == 0) { posted++; continue; }
            if (rc != ENOMEM) { fprintf(stderr, "post_recv: %s\n", strerror(rc)); return 1; }
            /* The router may still be moving slots into the QP: full only when it stays full. */
            if (attempt > 1000) break;
            usleep(1000);
        }
        printf("full %d pid %d\n", posted, (int)getpid());
    } else {
        printf("ready pid %d\n", (int)getpid());
    }
    fflush(stdout);
    for (;;) pause();
}
