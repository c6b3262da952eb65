/*
 * ibv_create_cq_ex and its poll API: ibv_start_poll / ibv_next_poll each take one completion from the
 * router (so none is ever held back in the shim, and ibv_poll_cq on the same CQ sees the rest), and the
 * read_* calls read it. The standard wc_flags are served; timestamps, VLAN, flow tags and tag matching
 * are refused with EOPNOTSUPP at create time.
 */
#include "datapath.h"

static struct ffs_cq *cq_of(struct ibv_cq_ex *cq) { return (struct ffs_cq *)cq; }

/* One completion into `current`: 0, ENOENT when the CQ is empty, or an errno. */
static int take_one(struct ibv_cq_ex *ex) {
    struct ffs_cq *cq = cq_of(ex);
    void *session = ffs_session(cq->cq.context);
    if (!session) return EPERM;
    int count = 0;
    int error = ffs_bridge()->poll_cq(session, cq->cq.handle, 1, &cq->current, &count);
    if (error) return error;
    if (count == 0) return ENOENT;
    ex->status = cq->current.status;
    ex->wr_id = cq->current.wr_id;
    return 0;
}

static int start_poll(struct ibv_cq_ex *ex, struct ibv_poll_cq_attr *attr) {
    if (attr && attr->comp_mask) return EINVAL;
    return take_one(ex);
}

static int next_poll(struct ibv_cq_ex *ex) { return take_one(ex); }

static void end_poll(struct ibv_cq_ex *ex) { (void)ex; }

static enum ibv_wc_opcode read_opcode(struct ibv_cq_ex *ex) { return cq_of(ex)->current.opcode; }
static uint32_t read_vendor_err(struct ibv_cq_ex *ex) { return cq_of(ex)->current.vendor_err; }
static uint32_t read_byte_len(struct ibv_cq_ex *ex) { return cq_of(ex)->current.byte_len; }
static __be32 read_imm_data(struct ibv_cq_ex *ex) { return cq_of(ex)->current.imm_data; }
static uint32_t read_qp_num(struct ibv_cq_ex *ex) { return cq_of(ex)->current.qp_num; }
static uint32_t read_src_qp(struct ibv_cq_ex *ex) { return cq_of(ex)->current.src_qp; }
static unsigned int read_wc_flags(struct ibv_cq_ex *ex) { return cq_of(ex)->current.wc_flags; }
static uint32_t read_slid(struct ibv_cq_ex *ex) { return cq_of(ex)->current.slid; }
static uint8_t read_sl(struct ibv_cq_ex *ex) { return cq_of(ex)->current.sl; }
static uint8_t read_dlid_path_bits(struct ibv_cq_ex *ex) { return cq_of(ex)->current.dlid_path_bits; }

struct ibv_cq_ex *ffs_create_cq_ex(struct ibv_context *context, struct ibv_cq_init_attr_ex *attr) {
    if ((attr->wc_flags & ~(uint64_t)IBV_WC_STANDARD_FLAGS) || (attr->comp_mask & IBV_CQ_INIT_ATTR_MASK_PD) ||
        ((attr->comp_mask & IBV_CQ_INIT_ATTR_MASK_FLAGS)
         && (attr->flags & ~(uint32_t)IBV_CREATE_CQ_ATTR_SINGLE_THREADED))) {
        errno = EOPNOTSUPP;
        return NULL;
    }
    if (attr->cqe > INT32_MAX) {
        errno = EINVAL;
        return NULL;
    }
    struct ibv_cq *ibcq = ibv_create_cq(context, (int)attr->cqe, attr->cq_context, attr->channel,
                                        (int)attr->comp_vector);
    if (!ibcq) return NULL;
    struct ibv_cq_ex *ex = &((struct ffs_cq *)ibcq)->ex;
    ex->start_poll = start_poll;
    ex->next_poll = next_poll;
    ex->end_poll = end_poll;
    ex->read_opcode = read_opcode;
    ex->read_vendor_err = read_vendor_err;
    ex->read_byte_len = read_byte_len;
    ex->read_imm_data = read_imm_data;
    ex->read_qp_num = read_qp_num;
    ex->read_src_qp = read_src_qp;
    ex->read_wc_flags = read_wc_flags;
    ex->read_slid = read_slid;
    ex->read_sl = read_sl;
    ex->read_dlid_path_bits = read_dlid_path_bits;
    return ex;
}
