/* Every live id, so that an event naming a router handle finds the application's id. */
#include "rdma_cm.h"

#include <stdlib.h>

static pthread_mutex_t ids_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ffcm_id *ids;

struct ffcm_id *ffcm_find_id(uint32_t handle) {
    pthread_mutex_lock(&ids_lock);
    struct ffcm_id *found = ids;
    while (found && found->handle != handle) found = found->next;
    pthread_mutex_unlock(&ids_lock);
    return found;
}

static void register_id(struct ffcm_id *id) {
    pthread_mutex_lock(&ids_lock);
    id->next = ids;
    ids = id;
    pthread_mutex_unlock(&ids_lock);
}

void ffcm_unregister_id(struct ffcm_id *id) {
    pthread_mutex_lock(&ids_lock);
    for (struct ffcm_id **p = &ids; *p; p = &(*p)->next)
        if (*p == id) {
            *p = id->next;
            break;
        }
    pthread_mutex_unlock(&ids_lock);
}

enum ibv_qp_type ffcm_qp_type_of(enum rdma_port_space ps) {
    return (ps == RDMA_PS_UDP || ps == RDMA_PS_IPOIB) ? IBV_QPT_UD : IBV_QPT_RC;
}

struct ffcm_id *ffcm_new_id(struct rdma_event_channel *channel, void *context, enum rdma_port_space ps,
                            uint32_t handle) {
    struct ffcm_id *id = calloc(1, sizeof(*id));
    if (!id) return NULL;
    id->handle = handle;
    id->id.channel = channel;
    id->id.context = context;
    id->id.ps = ps;
    id->id.qp_type = ffcm_qp_type_of(ps);
    id->id.port_num = 1;
    id->id.route.path_rec = &id->path;
    register_id(id);
    return id;
}
