/* Objects: PD, MR, completion channels, CQ, QP, SRQ, AH. Each call is one router request. */
#define _GNU_SOURCE
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#undef ibv_reg_mr
#undef ibv_reg_mr_iova

FFSHIM_EXPORT struct ibv_pd *ibv_alloc_pd(struct ibv_context *context) {
    struct ibv_pd *pd = calloc(1, sizeof(*pd));
    if (!pd) return NULL; /* calloc set errno to ENOMEM */
    int error = ffs_bridge()->alloc_pd(ffs_session(context), &pd->handle);
    if (error) {
        free(pd);
        errno = error;
        return NULL;
    }
    pd->context = context;
    return pd;
}

FFSHIM_EXPORT int ibv_dealloc_pd(struct ibv_pd *pd) {
    int error = ffs_bridge()->dealloc_pd(ffs_session(pd->context), pd->handle);
    if (error) return ffs_fail(error);
    free(pd);
    return 0;
}

FFSHIM_EXPORT struct ibv_mr *ibv_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length, uint64_t iova,
                                              unsigned int access) {
    if (!addr || length == 0) {
        errno = EINVAL;
        return NULL;
    }
    if (!ffs_session(pd->context)) {
        errno = EPERM; /* the parent's PD, in a forked child: its pages are not moved either */
        return NULL;
    }
    struct ffs_mr *mr = calloc(1, sizeof(*mr));
    if (!mr) return NULL; /* calloc set errno to ENOMEM */
    ffshim_segment segments[FFS_MAX_SEGMENTS];
    int error = ffs_region_acquire(addr, length, &mr->regions, &mr->region_count, segments);
    /* The optional-access bits are hints a device may ignore; the router's device is not told them. */
    unsigned int device_access = access & ~IBV_ACCESS_OPTIONAL_RANGE;
    if (!error && mr->region_count == 1)
        error = ffs_bridge()->reg_mr(ffs_session(pd->context), pd->handle, device_access, iova, length, segments[0].memfd,
                                     segments[0].offset, &mr->mr.handle, &mr->mr.lkey, &mr->mr.rkey);
    else if (!error) {
        error = ffs_bridge()->reg_mr_segments(ffs_session(pd->context), pd->handle, device_access, iova, length, segments,
                                              mr->region_count, &mr->mr.handle, &mr->mr.lkey, &mr->mr.rkey);
        if (error == EOPNOTSUPP) {
            ffs_refuse("it partly overlaps an earlier registration, and the router cannot register memory over several "
                       "memfds (no memorySegments capability)", (uintptr_t)addr, (uintptr_t)addr + length);
            error = EINVAL;
        }
    }
    if (error) {
        if (mr->regions) ffs_region_release(mr->regions, mr->region_count);
        free(mr);
        errno = error;
        return NULL;
    }
    mr->mr.context = pd->context;
    mr->mr.pd = pd;
    mr->mr.addr = addr;
    mr->mr.length = length;
    return &mr->mr;
}

FFSHIM_EXPORT struct ibv_mr *ibv_reg_mr(struct ibv_pd *pd, void *addr, size_t length, int access) {
    return ibv_reg_mr_iova2(pd, addr, length, (uintptr_t)addr, (unsigned int)access);
}

FFSHIM_EXPORT struct ibv_mr *ibv_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t length, uint64_t iova,
                                             int access) {
    return ibv_reg_mr_iova2(pd, addr, length, iova, (unsigned int)access);
}

FFSHIM_EXPORT int ibv_dereg_mr(struct ibv_mr *ibmr) {
    struct ffs_mr *mr = (struct ffs_mr *)ibmr;
    int error = ffs_bridge()->dereg_mr(ffs_session(ibmr->context), ibmr->handle);
    if (error) return ffs_fail(error);
    /* The pages stay mapped where they are: the program's memory is still valid after dereg. */
    ffs_region_release(mr->regions, mr->region_count);
    free(mr);
    return 0;
}

FFSHIM_EXPORT struct ibv_comp_channel *ibv_create_comp_channel(struct ibv_context *context) {
    struct ffs_channel *channel = calloc(1, sizeof(*channel));
    if (!channel) return NULL; /* calloc set errno to ENOMEM */
    int error = ffs_bridge()->create_comp_channel(ffs_session(context), &channel->handle, &channel->channel.fd);
    if (error) {
        free(channel);
        errno = error;
        return NULL;
    }
    /* The router's end of the pair is its own; ours arrives non-blocking, and a verbs channel blocks in
     * ibv_get_cq_event until the program itself sets O_NONBLOCK. */
    int flags = fcntl(channel->channel.fd, F_GETFL);
    if (flags >= 0) fcntl(channel->channel.fd, F_SETFL, flags & ~O_NONBLOCK);
    channel->channel.context = context;
    return &channel->channel;
}

FFSHIM_EXPORT int ibv_destroy_comp_channel(struct ibv_comp_channel *ibchannel) {
    struct ffs_channel *channel = (struct ffs_channel *)ibchannel;
    int error = ffs_bridge()->destroy_comp_channel(ffs_session(ibchannel->context), channel->handle);
    if (error) return ffs_fail(error);
    close(ibchannel->fd);
    free(channel);
    return 0;
}

FFSHIM_EXPORT struct ibv_cq *ibv_create_cq(struct ibv_context *context, int cqe, void *cq_context,
                                           struct ibv_comp_channel *channel, int comp_vector) {
    if (cqe < 1 || comp_vector < 0 || comp_vector >= context->num_comp_vectors) {
        errno = EINVAL;
        return NULL;
    }
    struct ffs_cq *cq = calloc(1, sizeof(*cq));
    if (!cq) return NULL; /* calloc set errno to ENOMEM */
    uint32_t actual = 0;
    uint32_t channel_handle = channel ? ((struct ffs_channel *)channel)->handle : 0;
    int error = ffs_bridge()->create_cq(ffs_session(context), (uint32_t)cqe, channel_handle, (uint32_t)comp_vector,
                                        &cq->cq.handle, &actual);
    if (error) {
        free(cq);
        errno = error;
        return NULL;
    }
    cq->cq.context = context;
    cq->cq.channel = channel;
    cq->cq.cq_context = cq_context;
    cq->cq.cqe = actual > INT32_MAX ? INT32_MAX : (int)actual;
    pthread_mutex_init(&cq->cq.mutex, NULL);
    pthread_cond_init(&cq->cq.cond, NULL);
    if (channel) __atomic_add_fetch(&channel->refcnt, 1, __ATOMIC_RELAXED);
    struct ffs_context *owner = ffs_context_of(context);
    pthread_mutex_lock(&owner->lock);
    cq->next = owner->cqs;
    owner->cqs = cq;
    pthread_mutex_unlock(&owner->lock);
    return &cq->cq;
}

FFSHIM_EXPORT int ibv_destroy_cq(struct ibv_cq *ibcq) {
    struct ffs_cq *cq = (struct ffs_cq *)ibcq;
    int error = ffs_bridge()->destroy_cq(ffs_session(ibcq->context), ibcq->handle);
    if (error) return ffs_fail(error);
    struct ffs_context *owner = ffs_context_of(ibcq->context);
    pthread_mutex_lock(&owner->lock);
    for (struct ffs_cq **link = &owner->cqs; *link; link = &(*link)->next)
        if (*link == cq) {
            *link = cq->next;
            break;
        }
    pthread_mutex_unlock(&owner->lock);
    if (ibcq->channel) __atomic_sub_fetch(&ibcq->channel->refcnt, 1, __ATOMIC_RELAXED);
    pthread_cond_destroy(&ibcq->cond);
    pthread_mutex_destroy(&ibcq->mutex);
    free(cq);
    return 0;
}

FFSHIM_EXPORT int ibv_get_cq_event(struct ibv_comp_channel *channel, struct ibv_cq **cq, void **cq_context) {
    /* The parent's channel, in a forked child: its events are the parent's. */
    if (!ffs_session(channel->context)) {
        errno = EPERM;
        return -1;
    }
    struct ffs_context *owner = ffs_context_of(channel->context);
    for (;;) {
        uint32_t record[2];
        ssize_t got = read(channel->fd, record, sizeof(record));
        if (got < 0) return -1;
        if (got != sizeof(record)) {
            errno = EIO;
            return -1;
        }
        struct ibv_cq *found = NULL;
        pthread_mutex_lock(&owner->lock);
        for (struct ffs_cq *each = owner->cqs; each; each = each->next)
            if (each->cq.handle == record[0] && each->cq.channel == channel) {
                found = &each->cq;
                break;
            }
        pthread_mutex_unlock(&owner->lock);
        /* An event for a CQ destroyed since the router sent it: nobody can take it; read the next one. */
        if (!found) continue;
        *cq = found;
        *cq_context = found->cq_context;
        return 0;
    }
}

/* The router acknowledges each real event as it forwards it; this is the program's own bookkeeping. */
FFSHIM_EXPORT void ibv_ack_cq_events(struct ibv_cq *cq, unsigned int nevents) {
    pthread_mutex_lock(&cq->mutex);
    cq->comp_events_completed += nevents;
    pthread_cond_signal(&cq->cond);
    pthread_mutex_unlock(&cq->mutex);
}

FFSHIM_EXPORT struct ibv_qp *ibv_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr) {
    if (!attr->send_cq || !attr->recv_cq) {
        errno = EINVAL;
        return NULL;
    }
    struct ffs_qp *qp = calloc(1, sizeof(*qp));
    if (!qp) return NULL; /* calloc set errno to ENOMEM */
    struct ibv_qp *ibqp = &qp->ex.qp_base;
    ffshim_qp_create request = {
        .pd = pd->handle,
        .send_cq = attr->send_cq->handle,
        .recv_cq = attr->recv_cq->handle,
        .srq = attr->srq ? attr->srq->handle : 0,
        .qp_type = (uint32_t)attr->qp_type,
        .sq_sig_all = attr->sq_sig_all,
        .cap = attr->cap,
    };
    struct ibv_qp_cap cap;
    int error = ffs_bridge()->create_qp(ffs_session(pd->context), &request, &ibqp->handle, &ibqp->qp_num, &cap);
    if (error) {
        free(qp);
        errno = error;
        return NULL;
    }
    attr->cap = cap;
    ibqp->context = pd->context;
    ibqp->qp_context = attr->qp_context;
    ibqp->pd = pd;
    ibqp->send_cq = attr->send_cq;
    ibqp->recv_cq = attr->recv_cq;
    ibqp->srq = attr->srq;
    ibqp->qp_type = attr->qp_type;
    ibqp->state = IBV_QPS_RESET;
    pthread_mutex_init(&ibqp->mutex, NULL);
    pthread_cond_init(&ibqp->cond, NULL);
    return ibqp;
}

FFSHIM_EXPORT int ibv_modify_qp(struct ibv_qp *qp, struct ibv_qp_attr *attr, int attr_mask) {
    int error = ffs_bridge()->modify_qp(ffs_session(qp->context), qp->handle, attr, attr_mask);
    if (error) return ffs_fail(error);
    if (attr_mask & IBV_QP_STATE) qp->state = attr->qp_state;
    return 0;
}

FFSHIM_EXPORT int ibv_query_qp(struct ibv_qp *qp, struct ibv_qp_attr *attr, int attr_mask,
                               struct ibv_qp_init_attr *init_attr) {
    memset(attr, 0, sizeof(*attr));
    struct ibv_qp_cap cap;
    int error = ffs_bridge()->query_qp(ffs_session(qp->context), qp->handle, attr_mask, attr, &cap);
    if (error) return ffs_fail(error);
    attr->cap = cap;
    if (init_attr) {
        memset(init_attr, 0, sizeof(*init_attr));
        init_attr->qp_context = qp->qp_context;
        init_attr->send_cq = qp->send_cq;
        init_attr->recv_cq = qp->recv_cq;
        init_attr->srq = qp->srq;
        init_attr->qp_type = qp->qp_type;
        init_attr->cap = cap;
    }
    if (attr_mask & IBV_QP_STATE) qp->state = attr->qp_state;
    return 0;
}

FFSHIM_EXPORT int ibv_destroy_qp(struct ibv_qp *qp) {
    int error = ffs_bridge()->destroy_qp(ffs_session(qp->context), qp->handle);
    if (error) return ffs_fail(error);
    pthread_cond_destroy(&qp->cond);
    pthread_mutex_destroy(&qp->mutex);
    ffs_qp_ex_free((struct ffs_qp *)qp);
    free((struct ffs_qp *)qp);
    return 0;
}

FFSHIM_EXPORT struct ibv_srq *ibv_create_srq(struct ibv_pd *pd, struct ibv_srq_init_attr *attr) {
    struct ibv_srq *srq = calloc(1, sizeof(*srq));
    if (!srq) return NULL; /* calloc set errno to ENOMEM */
    int error = ffs_bridge()->create_srq(ffs_session(pd->context), pd->handle, &attr->attr, &srq->handle);
    if (error) {
        free(srq);
        errno = error;
        return NULL;
    }
    srq->context = pd->context;
    srq->srq_context = attr->srq_context;
    srq->pd = pd;
    pthread_mutex_init(&srq->mutex, NULL);
    pthread_cond_init(&srq->cond, NULL);
    return srq;
}

FFSHIM_EXPORT int ibv_modify_srq(struct ibv_srq *srq, struct ibv_srq_attr *attr, int attr_mask) {
    int error = ffs_bridge()->modify_srq(ffs_session(srq->context), srq->handle, attr, attr_mask);
    return error ? ffs_fail(error) : 0;
}

/* Protocol version 1 has no query_srq. */
FFSHIM_EXPORT int ibv_query_srq(struct ibv_srq *srq, struct ibv_srq_attr *attr) {
    (void)srq;
    (void)attr;
    return ffs_fail(EOPNOTSUPP);
}

FFSHIM_EXPORT int ibv_destroy_srq(struct ibv_srq *srq) {
    int error = ffs_bridge()->destroy_srq(ffs_session(srq->context), srq->handle);
    if (error) return ffs_fail(error);
    pthread_cond_destroy(&srq->cond);
    pthread_mutex_destroy(&srq->mutex);
    free(srq);
    return 0;
}

FFSHIM_EXPORT struct ibv_ah *ibv_create_ah(struct ibv_pd *pd, struct ibv_ah_attr *attr) {
    struct ibv_ah *ah = calloc(1, sizeof(*ah));
    if (!ah) return NULL; /* calloc set errno to ENOMEM */
    int error = ffs_bridge()->create_ah(ffs_session(pd->context), pd->handle, attr, &ah->handle);
    if (error) {
        free(ah);
        errno = error;
        return NULL;
    }
    ah->context = pd->context;
    ah->pd = pd;
    return ah;
}

FFSHIM_EXPORT int ibv_destroy_ah(struct ibv_ah *ah) {
    int error = ffs_bridge()->destroy_ah(ffs_session(ah->context), ah->handle);
    if (error) return ffs_fail(error);
    free(ah);
    return 0;
}
