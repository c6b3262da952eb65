/* Completion channels and CQs; each context keeps its CQs listed, so ibv_get_cq_event finds the CQ an event names. */
#include "resources.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

struct ffs_channel {
    struct ibv_comp_channel channel;
    uint32_t handle;
};

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

FFSHIM_EXPORT int ibv_resize_cq(struct ibv_cq *cq, int cqe) {
    (void)cq, (void)cqe;
    return ffs_fail(EOPNOTSUPP);
}
