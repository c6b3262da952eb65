/* What the router's connection manager does not do (docs/rdma-cm.md): multicast and ECE. */
#include "rdma_cm.h"

FFSHIM_EXPORT int rdma_join_multicast(struct rdma_cm_id *id, struct sockaddr *addr, void *context) {
    (void)id;
    (void)addr;
    (void)context;
    return cm_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT int rdma_join_multicast_ex(struct rdma_cm_id *id, struct rdma_cm_join_mc_attr_ex *mc_join_attr,
                                         void *context) {
    (void)id;
    (void)mc_join_attr;
    (void)context;
    return cm_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT int rdma_leave_multicast(struct rdma_cm_id *id, struct sockaddr *addr) {
    (void)id;
    (void)addr;
    return cm_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT int rdma_set_local_ece(struct rdma_cm_id *id, struct ibv_ece *ece) {
    (void)id;
    (void)ece;
    return cm_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT int rdma_get_remote_ece(struct rdma_cm_id *id, struct ibv_ece *ece) {
    (void)id;
    (void)ece;
    return cm_fail(EOPNOTSUPP);
}
