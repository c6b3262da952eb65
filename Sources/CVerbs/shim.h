#ifndef FREEFLOW_CVERBS_SHIM_H
#define FREEFLOW_CVERBS_SHIM_H

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <rdma/rdma_verbs.h>

/* verbs.h defines these three as macros over inline helpers, and Swift imports no function-like macro.
 * Each shim calls the macro so that the header's own dispatch (extended vs compat struct) is kept. */

static inline int ffv_query_port(struct ibv_context *context, uint8_t port_num,
                                 struct ibv_port_attr *port_attr) {
    return ibv_query_port(context, port_num, port_attr);
}

static inline struct ibv_mr *ffv_reg_mr(struct ibv_pd *pd, void *addr, size_t length, int access) {
    return ibv_reg_mr(pd, addr, length, access);
}

static inline struct ibv_mr *ffv_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t length,
                                             uint64_t iova, int access) {
    return ibv_reg_mr_iova(pd, addr, length, iova, access);
}

#endif
