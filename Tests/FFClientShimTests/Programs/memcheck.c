/*
 * ibv_reg_mr on ordinary memory through the shim, checked byte by byte: buffers from malloc, anonymous
 * mmap, aligned_alloc and the stack keep their contents when registered, SEND / WRITE / WRITE_WITH_IMM /
 * READ / both atomics move the right bytes between two connected RC QPs of one context, memory stays
 * valid after dereg, MAP_HUGETLB memory stays on huge pages while registered and after, registrations that
 * partly overlap live ones (half inside one, spanning two with a gap between) share their pages both ways
 * and survive dereg in either order, and mappings the shim cannot move are refused with EINVAL. Without
 * huge pages to map, it prints "skip hugepages".
 * Prints "ok <check>" per check; exits 1 with "FAIL <check>: <why>" at the first failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <infiniband/verbs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SIZE 8192
#define HALF (SIZE / 2)

static struct ibv_context *ctx;
static struct ibv_pd *pd;
static struct ibv_cq *cq;
static struct ibv_qp *qp1, *qp2;

#define CHECK(cond, name, ...)                                   \
    do {                                                         \
        if (!(cond)) {                                           \
            printf("FAIL %s: ", name);                           \
            printf(__VA_ARGS__);                                 \
            printf(" (errno %d)\n", errno);                      \
            exit(1);                                             \
        }                                                        \
    } while (0)

static void connect_qp(struct ibv_qp *qp, uint32_t dest, union ibv_gid gid) {
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .pkey_index = 0, .port_num = 1,
                            .qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
                                               IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC};
    CHECK(!ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS), "init", "modify");
    struct ibv_qp_attr r = {.qp_state = IBV_QPS_RTR, .path_mtu = IBV_MTU_1024, .dest_qp_num = dest, .rq_psn = 0,
                            .max_dest_rd_atomic = 1, .min_rnr_timer = 12,
                            .ah_attr = {.is_global = 1, .grh = {.dgid = gid, .sgid_index = 0, .hop_limit = 1}, .port_num = 1}};
    CHECK(!ibv_modify_qp(qp, &r, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                     IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER), "rtr", "modify");
    struct ibv_qp_attr s = {.qp_state = IBV_QPS_RTS, .timeout = 14, .retry_cnt = 7, .rnr_retry = 7, .sq_psn = 0, .max_rd_atomic = 1};
    CHECK(!ibv_modify_qp(qp, &s, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                                     IBV_QP_MAX_QP_RD_ATOMIC), "rts", "modify");
}

/* Waits (bounded) for `count` completions and checks they succeeded. */
static void complete(int count, const char *name, struct ibv_wc *last) {
    for (int got = 0, spins = 0; got < count; spins++) {
        CHECK(spins < 100000, name, "no completion");
        struct ibv_wc wc;
        int n = ibv_poll_cq(cq, 1, &wc);
        CHECK(n >= 0, name, "poll failed");
        if (n == 0) continue;
        CHECK(wc.status == IBV_WC_SUCCESS, name, "completion status %s", ibv_wc_status_str(wc.status));
        if (last) *last = wc;
        got++;
    }
}

static void post(struct ibv_qp *qp, struct ibv_send_wr *wr, const char *name) {
    struct ibv_send_wr *bad = NULL;
    CHECK(!ibv_post_send(qp, wr, &bad), name, "post_send");
}

static void fill(uint8_t *p, size_t n, uint8_t seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed + i * 7);
}

static int same(const uint8_t *p, size_t n, uint8_t seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)(seed + i * 7)) return 0;
    return 1;
}

/* Every operation on a buffer of SIZE bytes: src is the first half, dst the second. */
static void exercise(uint8_t *buf, const char *kind) {
    char name[64];
    fill(buf, SIZE, 3);
    struct ibv_mr *mr = ibv_reg_mr(pd, buf, SIZE, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
                                                      IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC);
    snprintf(name, sizeof name, "%s reg_mr", kind);
    CHECK(mr, name, "reg_mr");
    CHECK(same(buf, SIZE, 3), name, "contents changed by registration");
    printf("ok %s keeps contents\n", name);
    uint8_t *src = buf, *dst = buf + HALF;

    /* SEND into a posted receive. */
    fill(src, 1000, 11);
    memset(dst, 0, HALF);
    struct ibv_sge rsge = {.addr = (uintptr_t)dst, .length = HALF, .lkey = mr->lkey};
    struct ibv_recv_wr rwr = {.wr_id = 1, .sg_list = &rsge, .num_sge = 1}, *rbad;
    snprintf(name, sizeof name, "%s send", kind);
    CHECK(!ibv_post_recv(qp2, &rwr, &rbad), name, "post_recv");
    struct ibv_sge sge = {.addr = (uintptr_t)src, .length = 1000, .lkey = mr->lkey};
    struct ibv_send_wr swr = {.wr_id = 2, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED};
    post(qp1, &swr, name);
    complete(2, name, NULL);
    CHECK(same(dst, 1000, 11) && dst[1000] == 0, name, "payload differs");
    printf("ok %s\n", name);

    /* RDMA WRITE, then WRITE_WITH_IMM (which consumes a receive and carries the immediate). */
    fill(src, HALF, 23);
    memset(dst, 0, HALF);
    struct ibv_send_wr wwr = {.wr_id = 3, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE, .send_flags = IBV_SEND_SIGNALED,
                              .wr.rdma = {.remote_addr = (uintptr_t)dst, .rkey = mr->rkey}};
    sge.length = HALF;
    snprintf(name, sizeof name, "%s write", kind);
    post(qp1, &wwr, name);
    complete(1, name, NULL);
    CHECK(same(dst, HALF, 23), name, "payload differs");
    printf("ok %s\n", name);
    CHECK(!ibv_post_recv(qp2, &rwr, &rbad), name, "post_recv");
    fill(src, 512, 31);
    sge.length = 512;
    wwr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
    wwr.imm_data = htobe32(0xfeed);
    snprintf(name, sizeof name, "%s write with imm", kind);
    post(qp1, &wwr, name);
    struct ibv_wc wc1, wc2;
    complete(1, name, &wc1);
    complete(1, name, &wc2);
    struct ibv_wc *recv = wc1.opcode == IBV_WC_RECV_RDMA_WITH_IMM ? &wc1 : &wc2;
    CHECK(recv->opcode == IBV_WC_RECV_RDMA_WITH_IMM && be32toh(recv->imm_data) == 0xfeed, name, "immediate %x", be32toh(recv->imm_data));
    CHECK(same(dst, 512, 31), name, "payload differs");
    printf("ok %s\n", name);

    /* RDMA READ back from dst into src. */
    fill(dst, HALF, 41);
    memset(src, 0, HALF);
    sge.length = HALF;
    struct ibv_send_wr rdwr = {.wr_id = 4, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_RDMA_READ, .send_flags = IBV_SEND_SIGNALED,
                               .wr.rdma = {.remote_addr = (uintptr_t)dst, .rkey = mr->rkey}};
    snprintf(name, sizeof name, "%s read", kind);
    post(qp1, &rdwr, name);
    complete(1, name, NULL);
    CHECK(same(src, HALF, 41), name, "payload differs");
    printf("ok %s\n", name);

    /* Atomics on an 8-byte word of dst; the old value lands in src. */
    /* Atomics need 8-byte aligned words at both ends. */
    uint64_t *target = (uint64_t *)(((uintptr_t)dst + 64) & ~(uintptr_t)7);
    uint64_t *old = (uint64_t *)(((uintptr_t)src + 8) & ~(uintptr_t)7);
    *target = 100;
    *old = 0;
    sge.addr = (uintptr_t)old;
    sge.length = 8;
    struct ibv_send_wr awr = {.wr_id = 5, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_ATOMIC_CMP_AND_SWP, .send_flags = IBV_SEND_SIGNALED,
                              .wr.atomic = {.remote_addr = (uintptr_t)target, .compare_add = 100, .swap = 777, .rkey = mr->rkey}};
    snprintf(name, sizeof name, "%s compare and swap", kind);
    post(qp1, &awr, name);
    complete(1, name, NULL);
    CHECK(*old == 100 && *target == 777, name, "old %llu target %llu", (unsigned long long)*old, (unsigned long long)*target);
    printf("ok %s\n", name);
    awr.opcode = IBV_WR_ATOMIC_FETCH_AND_ADD;
    awr.wr.atomic.compare_add = 23;
    snprintf(name, sizeof name, "%s fetch and add", kind);
    post(qp1, &awr, name);
    complete(1, name, NULL);
    CHECK(*old == 777 && *target == 800, name, "old %llu target %llu", (unsigned long long)*old, (unsigned long long)*target);
    printf("ok %s\n", name);

    /* A registration inside this one shares its pages; then both go, and the memory stays usable. */
    struct ibv_mr *inner = ibv_reg_mr(pd, buf + 100, 200, IBV_ACCESS_LOCAL_WRITE);
    snprintf(name, sizeof name, "%s nested reg_mr", kind);
    CHECK(inner, name, "reg_mr");
    printf("ok %s\n", name);
    CHECK(!ibv_dereg_mr(inner), name, "dereg inner");
    snprintf(name, sizeof name, "%s dereg_mr", kind);
    CHECK(!ibv_dereg_mr(mr), name, "dereg");
    fill(buf, SIZE, 59);
    CHECK(same(buf, SIZE, 59), name, "memory unusable after dereg");
    /* Pages moved before are moved again on a new registration. */
    mr = ibv_reg_mr(pd, buf, SIZE, IBV_ACCESS_LOCAL_WRITE);
    CHECK(mr && same(buf, SIZE, 59), name, "re-registration");
    CHECK(!ibv_dereg_mr(mr), name, "dereg again");
    printf("ok %s keeps memory valid\n", name);
}

/* The ibv_wr_* API on a pair of ibv_create_qp_ex QPs: one batch of an inline RDMA WRITE and a SEND with
 * immediate, then a READ and a FETCH_ADD, each checked in memory. */
static void wr_api(void) {
    const char *name = "wr api";
    struct ibv_qp_init_attr_ex init = {.send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC, .pd = pd,
                                       .comp_mask = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
                                       .send_ops_flags = IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_SEND_WITH_IMM |
                                                         IBV_QP_EX_WITH_RDMA_READ | IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD,
                                       .cap = {.max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 1, .max_recv_sge = 1,
                                               .max_inline_data = 64}};
    struct ibv_qp *a = ibv_create_qp_ex(ctx, &init), *b = ibv_create_qp_ex(ctx, &init);
    CHECK(a && b, name, "create_qp_ex");
    struct ibv_qp_ex *ax = ibv_qp_to_qp_ex(a);
    CHECK(ax && !ibv_qp_to_qp_ex(qp1), name, "qp_to_qp_ex");
    union ibv_gid gid;
    CHECK(!ibv_query_gid(ctx, 1, 0, &gid), name, "gid");
    connect_qp(a, b->qp_num, gid);
    connect_qp(b, a->qp_num, gid);
    uint8_t *buf = aligned_alloc(4096, SIZE);
    memset(buf, 0, SIZE);
    struct ibv_mr *mr = ibv_reg_mr(pd, buf, SIZE, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
                                                      IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC);
    CHECK(mr, name, "reg_mr");
    uint8_t *src = buf, *dst = buf + HALF;
    struct ibv_sge rsge = {.addr = (uintptr_t)dst + 1024, .length = 1024, .lkey = mr->lkey};
    struct ibv_recv_wr rwr = {.wr_id = 9, .sg_list = &rsge, .num_sge = 1}, *rbad;
    CHECK(!ibv_post_recv(b, &rwr, &rbad), name, "post_recv");
    uint8_t payload[48];
    fill(payload, sizeof payload, 71);
    fill(src, 100, 83);
    ibv_wr_start(ax);
    ax->wr_id = 20;
    ax->wr_flags = IBV_SEND_SIGNALED;
    ibv_wr_rdma_write(ax, mr->rkey, (uintptr_t)dst);
    ibv_wr_set_inline_data(ax, payload, sizeof payload);
    memset(payload, 0, sizeof payload); /* inline data is copied at the call */
    ax->wr_id = 21;
    ibv_wr_send_imm(ax, htobe32(0xabc));
    ibv_wr_set_sge(ax, mr->lkey, (uintptr_t)src, 100);
    CHECK(!ibv_wr_complete(ax), name, "wr_complete");
    complete(3, name, NULL);
    CHECK(same(dst, 48, 71), name, "inline write payload");
    CHECK(same(dst + 1024, 100, 83), name, "send payload");
    printf("ok wr api write inline and send with imm\n");

    fill(dst, 256, 97);
    memset(src, 0, 256);
    uint64_t *counter = (uint64_t *)(dst + 2048), *old = (uint64_t *)(src + 2048);
    *counter = 5;
    ibv_wr_start(ax);
    ax->wr_id = 22;
    ibv_wr_rdma_read(ax, mr->rkey, (uintptr_t)dst);
    ibv_wr_set_sge(ax, mr->lkey, (uintptr_t)src, 256);
    ibv_wr_atomic_fetch_add(ax, mr->rkey, (uintptr_t)counter, 10);
    ibv_wr_set_sge(ax, mr->lkey, (uintptr_t)old, 8);
    CHECK(!ibv_wr_complete(ax), name, "wr_complete");
    complete(2, name, NULL);
    CHECK(same(src, 256, 97) && *old == 5 && *counter == 15, name, "read / fetch_add");
    printf("ok wr api read and fetch and add\n");

    ibv_wr_start(ax);
    ibv_wr_set_sge(ax, mr->lkey, (uintptr_t)src, 8); /* a setter before any opcode */
    errno = 0;
    CHECK(ibv_wr_complete(ax) == EINVAL, name, "a setter without a request must fail");
    ibv_wr_start(ax);
    ibv_wr_send_imm(ax, 0);
    ibv_wr_abort(ax);
    CHECK(!ibv_wr_complete(ax), name, "complete after abort posts nothing");
    printf("ok wr api refuses a setter without a request, abort drops the batch\n");
    CHECK(!ibv_dereg_mr(mr) && !ibv_destroy_qp(a) && !ibv_destroy_qp(b), name, "cleanup");
}

/* ibv_create_cq_ex: a SEND with immediate lands on it; ibv_start_poll / ibv_next_poll / the read_* calls
 * report both completions, and an empty CQ answers ENOENT. */
static void cq_ex_case(void) {
    const char *name = "cq_ex";
    struct ibv_cq_init_attr_ex cattr = {.cqe = 16, .wc_flags = IBV_WC_STANDARD_FLAGS};
    struct ibv_cq_ex *cqx = ibv_create_cq_ex(ctx, &cattr);
    CHECK(cqx, name, "create_cq_ex");
    struct ibv_cq_init_attr_ex timestamps = {.cqe = 16, .wc_flags = IBV_WC_EX_WITH_COMPLETION_TIMESTAMP};
    CHECK(!ibv_create_cq_ex(ctx, &timestamps) && errno == EOPNOTSUPP, name, "timestamps must be refused");
    struct ibv_qp_init_attr init = {.send_cq = ibv_cq_ex_to_cq(cqx), .recv_cq = ibv_cq_ex_to_cq(cqx), .qp_type = IBV_QPT_RC,
                                    .cap = {.max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1}};
    struct ibv_qp *a = ibv_create_qp(pd, &init), *b = ibv_create_qp(pd, &init);
    union ibv_gid gid;
    CHECK(a && b && !ibv_query_gid(ctx, 1, 0, &gid), name, "qps");
    connect_qp(a, b->qp_num, gid);
    connect_qp(b, a->qp_num, gid);
    uint8_t *buf = aligned_alloc(4096, 4096);
    struct ibv_mr *mr = ibv_reg_mr(pd, buf, 4096, IBV_ACCESS_LOCAL_WRITE);
    CHECK(mr, name, "reg_mr");
    struct ibv_poll_cq_attr pattr = {0};
    CHECK(ibv_start_poll(cqx, &pattr) == ENOENT, name, "an empty CQ answers ENOENT");
    struct ibv_sge rsge = {.addr = (uintptr_t)buf + 2048, .length = 2048, .lkey = mr->lkey};
    struct ibv_recv_wr rwr = {.wr_id = 31, .sg_list = &rsge, .num_sge = 1}, *rbad;
    struct ibv_sge ssge = {.addr = (uintptr_t)buf, .length = 77, .lkey = mr->lkey};
    struct ibv_send_wr swr = {.wr_id = 32, .sg_list = &ssge, .num_sge = 1, .opcode = IBV_WR_SEND_WITH_IMM,
                              .send_flags = IBV_SEND_SIGNALED, .imm_data = htobe32(0x1234)}, *sbad;
    CHECK(!ibv_post_recv(b, &rwr, &rbad) && !ibv_post_send(a, &swr, &sbad), name, "post");
    int seen_send = 0, seen_recv = 0, spins = 0, ret;
    while ((ret = ibv_start_poll(cqx, &pattr)) == ENOENT) CHECK(++spins < 100000, name, "no completion");
    CHECK(ret == 0, name, "start_poll %d", ret);
    do {
        CHECK(cqx->status == IBV_WC_SUCCESS, name, "status %s", ibv_wc_status_str(cqx->status));
        if (cqx->wr_id == 32) seen_send = ibv_wc_read_opcode(cqx) == IBV_WC_SEND && ibv_wc_read_qp_num(cqx) == a->qp_num;
        if (cqx->wr_id == 31)
            seen_recv = ibv_wc_read_opcode(cqx) == IBV_WC_RECV && ibv_wc_read_byte_len(cqx) == 77 &&
                        (ibv_wc_read_wc_flags(cqx) & IBV_WC_WITH_IMM) && be32toh(ibv_wc_read_imm_data(cqx)) == 0x1234 &&
                        ibv_wc_read_qp_num(cqx) == b->qp_num;
        for (spins = 0; (ret = ibv_next_poll(cqx)) == ENOENT && !(seen_send && seen_recv);)
            CHECK(++spins < 100000, name, "no second completion");
    } while (ret == 0);
    ibv_end_poll(cqx);
    CHECK(seen_send && seen_recv, name, "send %d recv %d", seen_send, seen_recv);
    printf("ok cq_ex start_poll, next_poll and read_* report both completions\n");
    CHECK(!ibv_dereg_mr(mr) && !ibv_destroy_qp(a) && !ibv_destroy_qp(b) && !ibv_destroy_cq(ibv_cq_ex_to_cq(cqx)), name, "cleanup");
}

#define PAGE 4096

/* RDMA WRITE of `n` bytes from `from` (local key `lkey`) to `to` through `rkey`, or READ from `to` into
 * `from` if `read`; waits for the completion. */
static void rdma(int read, void *from, uint32_t lkey, void *to, uint32_t rkey, uint32_t n, const char *name) {
    struct ibv_sge sge = {.addr = (uintptr_t)from, .length = n, .lkey = lkey};
    struct ibv_send_wr wr = {.wr_id = 7, .sg_list = &sge, .num_sge = 1, .opcode = read ? IBV_WR_RDMA_READ : IBV_WR_RDMA_WRITE,
                             .send_flags = IBV_SEND_SIGNALED, .wr.rdma = {.remote_addr = (uintptr_t)to, .rkey = rkey}};
    post(qp1, &wr, name);
    complete(1, name, NULL);
}

static struct ibv_mr *reg_all(void *addr, size_t length, const char *name) {
    struct ibv_mr *mr = ibv_reg_mr(pd, addr, length, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
    CHECK(mr, name, "reg_mr");
    return mr;
}

/* `b` registered half inside `a`: bytes written through one MR are read through the other (RDMA both ways,
 * in the shared page and in each one's own pages); after one dereg (either order) the other still works and
 * the memory stays the program's. */
static void overlap_half(int first_goes_first) {
    const char *name = first_goes_first ? "partial overlap, first dereg first" : "partial overlap, second dereg first";
    uint8_t *wide = mmap(NULL, 6 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *scratch = aligned_alloc(PAGE, 2 * PAGE);
    CHECK(wide != MAP_FAILED && scratch, name, "memory");
    fill(wide, 6 * PAGE, 13);
    struct ibv_mr *local = reg_all(scratch, 2 * PAGE, name);
    struct ibv_mr *a = reg_all(wide, 2 * PAGE, name);                /* pages 0-1 */
    struct ibv_mr *b = reg_all(wide + PAGE + 100, 2 * PAGE, name);   /* half in page 1, then pages 2-3 */
    CHECK(same(wide, 6 * PAGE, 13), name, "contents changed by the registrations");
    /* Write through b into the shared page, read it back through a. */
    fill(scratch, 512, 17);
    rdma(0, scratch, local->lkey, wide + PAGE + 200, b->rkey, 512, name);
    CHECK(same(wide + PAGE + 200, 512, 17), name, "write through the second MR not in memory");
    memset(scratch + PAGE, 0, 512);
    rdma(1, scratch + PAGE, local->lkey, wide + PAGE + 200, a->rkey, 512, name);
    CHECK(same(scratch + PAGE, 512, 17), name, "read through the first MR differs");
    /* From b's own pages (as the local side) into a's own page, and back through b from the shared page. */
    fill(wide + 2 * PAGE + 500, 300, 19);
    rdma(0, wide + 2 * PAGE + 500, b->lkey, wide + 50, a->rkey, 300, name);
    CHECK(same(wide + 50, 300, 19), name, "write from the second MR's own pages");
    fill(wide + PAGE + 1000, 64, 21);
    rdma(1, wide + 2 * PAGE, b->lkey, wide + PAGE + 1000, b->rkey, 64, name);
    CHECK(same(wide + 2 * PAGE, 64, 21), name, "read inside the second MR");
    printf("ok %s: both MRs see the same bytes\n", name);

    struct ibv_mr *stays = first_goes_first ? b : a;
    CHECK(!ibv_dereg_mr(first_goes_first ? a : b), name, "first dereg");
    fill(scratch, 256, 23);
    uint8_t *inside = first_goes_first ? wide + 2 * PAGE + 10 : wide + 10;
    rdma(0, scratch, local->lkey, inside, stays->rkey, 256, name);
    CHECK(same(inside, 256, 23), name, "the other MR stopped working");
    CHECK(!ibv_dereg_mr(stays), name, "second dereg");
    fill(wide, 6 * PAGE, 29);
    CHECK(same(wide, 6 * PAGE, 29), name, "memory unusable after dereg");
    CHECK(!ibv_dereg_mr(local), name, "dereg scratch");
    printf("ok %s keeps memory valid\n", name);
    munmap(wide, 6 * PAGE);
    free(scratch);
}

/* One registration over two live ones and the gap between them, and past the second: the pages of each part
 * are shared both ways, and the memory outlives all three. */
static void overlap_span(void) {
    const char *name = "spanning overlap";
    uint8_t *wide = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *scratch = aligned_alloc(PAGE, PAGE);
    CHECK(wide != MAP_FAILED && scratch, name, "memory");
    fill(wide, 8 * PAGE, 31);
    struct ibv_mr *local = reg_all(scratch, PAGE, name);
    struct ibv_mr *a = reg_all(wide, 2 * PAGE, name);              /* pages 0-1 */
    struct ibv_mr *b = reg_all(wide + 4 * PAGE, 2 * PAGE, name);   /* pages 4-5 */
    struct ibv_mr *c = reg_all(wide + PAGE + 10, 5 * PAGE, name);  /* page 1 of a, gap 2-3, b's 4-5, page 6 */
    CHECK(same(wide, 8 * PAGE, 31), name, "contents changed by the registrations");
    struct { uint8_t *at; struct ibv_mr *other; } parts[] = {{wide + PAGE + 64, a}, {wide + 4 * PAGE + 64, b}};
    for (int i = 0; i < 2; i++) {
        fill(scratch, 128, (uint8_t)(37 + i));
        rdma(0, scratch, local->lkey, parts[i].at, c->rkey, 128, name);
        CHECK(same(parts[i].at, 128, (uint8_t)(37 + i)), name, "write through the spanning MR, part %d", i);
        memset(scratch, 0, 128);
        rdma(1, scratch, local->lkey, parts[i].at, parts[i].other->rkey, 128, name);
        CHECK(same(scratch, 128, (uint8_t)(37 + i)), name, "read through the earlier MR, part %d", i);
    }
    /* The gap and the page past b are c's own; write into them from a's pages as the local side. */
    fill(wide + 100, 200, 41);
    rdma(0, wide + 100, a->lkey, wide + 2 * PAGE + 5, c->rkey, 200, name);
    rdma(0, wide + 100, a->lkey, wide + 6 * PAGE + 5, c->rkey, 4, name);
    CHECK(same(wide + 2 * PAGE + 5, 200, 41) && same(wide + 6 * PAGE + 5, 4, 41), name, "write into the spanning MR's own pages");
    printf("ok %s: every part shares its pages\n", name);
    CHECK(!ibv_dereg_mr(a) && !ibv_dereg_mr(c), name, "dereg");
    fill(scratch, 64, 43);
    rdma(0, scratch, local->lkey, wide + 5 * PAGE, b->rkey, 64, name);
    CHECK(same(wide + 5 * PAGE, 64, 43), name, "the last MR stopped working");
    CHECK(!ibv_dereg_mr(b) && !ibv_dereg_mr(local), name, "dereg");
    fill(wide, 8 * PAGE, 47);
    CHECK(same(wide, 8 * PAGE, 47), name, "memory unusable after dereg");
    printf("ok %s keeps memory valid\n", name);
    munmap(wide, 8 * PAGE);
    free(scratch);
}

/* A registration over eight live ones and the nine gaps around them: seventeen memfds in one request. */
static void overlap_many(void) {
    const char *name = "overlap of many";
    uint8_t *wide = mmap(NULL, 17 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(wide != MAP_FAILED, name, "memory");
    fill(wide, 17 * PAGE, 51);
    struct ibv_mr *small[8];
    for (int i = 0; i < 8; i++) small[i] = reg_all(wide + (2 * i + 1) * PAGE + 8, 64, name);
    struct ibv_mr *all = reg_all(wide, 17 * PAGE, name);
    CHECK(same(wide, 17 * PAGE, 51), name, "contents changed by the registrations");
    for (int i = 0; i < 8; i++) {
        /* Through the big MR (local side: its gap page 2i) into small MR i's page, read back through small MR i. */
        uint8_t *gap = wide + 2 * i * PAGE, *inside = wide + (2 * i + 1) * PAGE + 16;
        fill(gap, 32, (uint8_t)(53 + i));
        rdma(0, gap, all->lkey, inside, all->rkey, 32, name);
        memset(gap + 100, 0, 32);
        rdma(1, gap + 100, all->lkey, inside, small[i]->rkey, 32, name);
        CHECK(same(inside, 32, (uint8_t)(53 + i)) && same(gap + 100, 32, (uint8_t)(53 + i)), name, "part %d", i);
    }
    CHECK(!ibv_dereg_mr(all), name, "dereg");
    for (int i = 0; i < 8; i++) CHECK(!ibv_dereg_mr(small[i]), name, "dereg %d", i);
    fill(wide, 17 * PAGE, 57);
    CHECK(same(wide, 17 * PAGE, 57), name, "memory unusable after dereg");
    printf("ok %s shares seventeen regions\n", name);
    munmap(wide, 17 * PAGE);
}

static void stack_case(void) {
    uint8_t buffer[SIZE] __attribute__((aligned(64)));
    volatile int canary = 0x5eed;
    exercise(buffer, "stack");
    CHECK(canary == 0x5eed, "stack canary", "locals changed");
}

static void refused(void *addr, size_t length, const char *kind) {
    errno = 0;
    struct ibv_mr *mr = ibv_reg_mr(pd, addr, length, IBV_ACCESS_LOCAL_WRITE);
    CHECK(!mr && errno == EINVAL, kind, "expected EINVAL");
    printf("ok %s refused\n", kind);
}

/* The kernel page size of the mapping holding `addr`, from /proc/self/smaps (0 if not found). */
static size_t page_size_of(const void *addr) {
    FILE *smaps = fopen("/proc/self/smaps", "r");
    CHECK(smaps, "smaps", "open");
    char line[4096];
    int inside = 0;
    size_t page = 0;
    while (!page && fgets(line, sizeof line, smaps)) {
        uintptr_t lo, hi;
        unsigned long kib;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
            inside = lo <= (uintptr_t)addr && (uintptr_t)addr < hi;
        else if (inside && sscanf(line, "KernelPageSize: %lu kB", &kib) == 1)
            page = kib * 1024;
    }
    fclose(smaps);
    return page;
}

static void hugepage_case(void) {
    size_t len = 2 << 20;
    uint8_t *huge = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (huge == MAP_FAILED) {
        printf("skip hugepages: no huge page to map (errno %d)\n", errno);
        return;
    }
    fill(huge, len, 5);
    size_t page = page_size_of(huge);
    CHECK(page >= len, "hugepages", "MAP_HUGETLB gave %zu-byte pages", page);
    struct ibv_mr *mr = ibv_reg_mr(pd, huge + 4096, SIZE, IBV_ACCESS_LOCAL_WRITE);
    CHECK(mr, "hugepages reg_mr", "reg_mr");
    CHECK(page_size_of(huge) == page, "hugepages reg_mr", "registered, the memory is on %zu-byte pages", page_size_of(huge));
    CHECK(same(huge, len, 5), "hugepages reg_mr", "contents changed by registration");
    CHECK(!ibv_dereg_mr(mr), "hugepages dereg_mr", "dereg_mr");
    CHECK(page_size_of(huge) == page, "hugepages dereg_mr", "deregistered, the memory is on %zu-byte pages", page_size_of(huge));
    exercise(huge + 100, "hugepages");
    printf("ok hugepages stay on %zu-byte pages\n", page);
    munmap(huge, len);

    /* Huge-page memory registers as one piece: a range reaching from a live huge region into the next huge
     * page is refused (it would need two). */
    uint8_t *two = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (two == MAP_FAILED) {
        printf("skip hugepages composite: no two huge pages to map (errno %d)\n", errno);
        return;
    }
    struct ibv_mr *one = ibv_reg_mr(pd, two + 4096, 4096, IBV_ACCESS_LOCAL_WRITE);
    CHECK(one, "hugepages composite", "reg_mr in the first huge page");
    refused(two + len - 4096, 8192, "hugepages composite");
    CHECK(!ibv_dereg_mr(one), "hugepages composite", "dereg_mr");
    munmap(two, 2 * len);
}

int main(void) {
    struct ibv_device **list = ibv_get_device_list(NULL);
    CHECK(list && list[0], "device", "no device");
    ctx = ibv_open_device(list[0]);
    CHECK(ctx, "open", "open");
    pd = ibv_alloc_pd(ctx);
    cq = ibv_create_cq(ctx, 64, NULL, NULL, 0);
    CHECK(pd && cq, "objects", "pd/cq");
    struct ibv_qp_init_attr init = {.send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC,
                                    .cap = {.max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 1, .max_recv_sge = 1}};
    qp1 = ibv_create_qp(pd, &init);
    qp2 = ibv_create_qp(pd, &init);
    CHECK(qp1 && qp2, "qp", "create");
    union ibv_gid gid;
    CHECK(!ibv_query_gid(ctx, 1, 0, &gid), "gid", "query");
    connect_qp(qp1, qp2->qp_num, gid);
    connect_qp(qp2, qp1->qp_num, gid);
    printf("ok connected\n");

    uint8_t *heap = malloc(SIZE + 24);
    exercise(heap + 8, "malloc");
    uint8_t *anon = mmap(NULL, SIZE * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    exercise(anon + 100, "mmap");
    exercise(aligned_alloc(4096, SIZE), "aligned_alloc");
    stack_case();
    hugepage_case();
    wr_api();
    cq_ex_case();

    overlap_half(1);
    overlap_half(0);
    overlap_span();
    overlap_many();

    char path[] = "/tmp/ffshim-memcheck-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && ftruncate(fd, 4096) == 0, "file", "temp file");
    unlink(path);
    refused(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), 4096, "shared file mapping");
    refused(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0), 4096, "private file mapping");
    refused(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), 4096, "shared anonymous mapping");

    ibv_destroy_qp(qp1);
    ibv_destroy_qp(qp2);
    ibv_destroy_cq(cq);
    ibv_dealloc_pd(pd);
    ibv_close_device(ctx);
    ibv_free_device_list(list);
    printf("ok all\n");
    return 0;
}
