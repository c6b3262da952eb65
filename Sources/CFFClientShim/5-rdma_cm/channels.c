/* Event channels: real descriptors, one datagram per event from the router; rdma_migrate_id moves an id between
 * them. */
#include "rdma_cm.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

struct ffcm_channel {
    struct rdma_event_channel channel;
    uint32_t handle;
    struct ffcm_channel *next;
};

static pthread_mutex_t channels_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ffcm_channel *channels; /* every live channel */

int ffcm_channel_is_live(struct rdma_event_channel *channel) {
    pthread_mutex_lock(&channels_lock);
    struct ffcm_channel *c = channels;
    while (c && &c->channel != channel) c = c->next;
    pthread_mutex_unlock(&channels_lock);
    return c != NULL;
}

FFSHIM_EXPORT struct rdma_event_channel *rdma_create_event_channel(void) {
    void *session = ffcm_session();
    if (!session) return NULL;
    struct ffcm_channel *channel = calloc(1, sizeof(*channel));
    if (!channel) return NULL;
    int fd = -1;
    int error = cm_bridge()->create_channel(session, &channel->handle, &fd);
    if (error) {
        free(channel);
        errno = error;
        return NULL;
    }
    /* Blocking like librdmacm's, until the application says otherwise (the router's end never blocks). */
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    channel->channel.fd = fd;
    pthread_mutex_lock(&channels_lock);
    channel->next = channels;
    channels = channel;
    pthread_mutex_unlock(&channels_lock);
    return &channel->channel;
}

FFSHIM_EXPORT void rdma_destroy_event_channel(struct rdma_event_channel *channel) {
    if (!channel) return;
    struct ffcm_channel *c = (struct ffcm_channel *)channel;
    pthread_mutex_lock(&channels_lock);
    for (struct ffcm_channel **p = &channels; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    pthread_mutex_unlock(&channels_lock);
    void *session = ffcm_session_if_open();
    if (session) cm_bridge()->destroy_channel(session, c->handle);
    close(c->channel.fd);
    free(c);
}

uint32_t ffcm_channel_handle(struct rdma_event_channel *channel) {
    return ((struct ffcm_channel *)channel)->handle;
}

FFSHIM_EXPORT int rdma_migrate_id(struct rdma_cm_id *id, struct rdma_event_channel *channel) {
    struct ffcm_id *c = ffcm(id);
    void *session = ffcm_session();
    if (!session) return -1;
    int sync = channel == NULL;
    if (sync && !(channel = rdma_create_event_channel())) return -1;
    int error = cm_bridge()->migrate(session, c->handle, ffcm_channel_handle(channel));
    if (error) {
        if (sync) rdma_destroy_event_channel(channel);
        return cm_fail(error);
    }
    if (c->sync) rdma_destroy_event_channel(id->channel);
    id->channel = channel;
    c->sync = sync;
    return 0;
}
