/* The process's connection-manager context, opened on first use, and its default PD. */
#include "rdma_cm.h"

#include <stdlib.h>

static pthread_mutex_t cm_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ibv_context *cm_context;   /* guarded by cm_lock until set, then read-only */
static struct ibv_pd *cm_pd;             /* the default PD (rdma_create_qp / rdma_create_ep without one) */
static uint32_t cm_vip;                  /* the pod's vip, network order */

int ffcm_debugging(void) {
    const char *value = getenv("FFCLIENT_DEBUG");
    return value && strcmp(value, "1") == 0;
}

/* Opens the process's connection-manager context on first use. */
struct ibv_context *ffcm_verbs(void) {
    pthread_mutex_lock(&cm_lock);
    if (!cm_context) {
        int count = 0;
        struct ibv_device **list = ibv_get_device_list(&count);
        if (list && count > 0) {
            struct ibv_context *context = ibv_open_device(list[0]);
            union ibv_gid gid;
            if (context && ibv_query_gid(context, 1, 0, &gid) == 0) {
                memcpy(&cm_vip, &gid.raw[12], 4);
                cm_context = context;
            } else if (context) {
                ibv_close_device(context);
            }
        }
        if (list) ibv_free_device_list(list);
        if (!cm_context) errno = ENODEV;
    }
    struct ibv_context *context = cm_context;
    pthread_mutex_unlock(&cm_lock);
    return context;
}

void *ffcm_session(void) {
    struct ibv_context *context = ffcm_verbs();
    return context ? ffs_session(context) : NULL;
}

/* Read without the lock: once set, cm_context and cm_vip never change. */
struct ibv_context *ffcm_context_if_open(void) { return cm_context; }

void *ffcm_session_if_open(void) { return cm_context ? ffs_session(cm_context) : NULL; }

uint32_t ffcm_vip(void) { return cm_vip; }

struct ibv_pd *ffcm_default_pd(void) {
    pthread_mutex_lock(&cm_lock);
    if (!cm_pd && cm_context) cm_pd = ibv_alloc_pd(cm_context);
    struct ibv_pd *pd = cm_pd;
    pthread_mutex_unlock(&cm_lock);
    return pd;
}

FFSHIM_EXPORT struct ibv_context **rdma_get_devices(int *num_devices) {
    struct ibv_context *context = ffcm_verbs();
    struct ibv_context **list = calloc(2, sizeof(*list));
    if (!list) return NULL;
    list[0] = context;
    if (num_devices) *num_devices = context ? 1 : 0;
    return list;
}

FFSHIM_EXPORT void rdma_free_devices(struct ibv_context **list) { free(list); }
