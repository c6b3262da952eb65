/* Endpoints: rdma_create_ep makes an id with its address (and, actively, its route and QP) in one call. */
#include "rdma_cm.h"

#include <stdlib.h>

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
