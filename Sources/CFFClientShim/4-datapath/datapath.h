/*
 * Layer 4, data path: post and poll (a context's ops), ibv_wr_* (qp_ex.c), ibv_cq_ex (cq_ex.c), and ibv_open_device
 * (open_device.c). A context's tables point into this layer and the device layer, so the context is assembled here,
 * at the top of the verbs layers: the device layer makes it and fills its own entries, this layer fills the rest.
 * Nothing above needs more than the exported verbs API; these are for open_device.c.
 */
#ifndef FFSHIM_DATAPATH_H
#define FFSHIM_DATAPATH_H

#include "../3-resources/resources.h"

/* Fills the context's entries this layer serves: the ops verbs.h's inline post and poll calls use (ops.c), and
 * verbs_context.create_qp_ex and create_cq_ex. */
void ffs_install_datapath(struct verbs_context *context);

/* verbs_context.create_qp_ex (qp_ex.c). */
struct ibv_qp *ffs_create_qp_ex(struct ibv_context *context, struct ibv_qp_init_attr_ex *attr);
/* verbs_context.create_cq_ex (cq_ex.c). */
struct ibv_cq_ex *ffs_create_cq_ex(struct ibv_context *context, struct ibv_cq_init_attr_ex *attr);

#endif
