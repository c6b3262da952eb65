/* Device list, contexts and queries: the part of libibverbs a program calls before it makes objects. */
#define _GNU_SOURCE
#include "device.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#undef ibv_query_port
#undef ibv_get_device_list

/* Where the router's pod socket is when FFCLIENT_SOCKET is not set: the path the device plugin mounts. */
#define FFSHIM_DEFAULT_SOCKET "/run/freeflow/ffclient.sock"
#define FFSHIM_DEVICE_NAME "freeflow0"

static pthread_once_t bridge_once = PTHREAD_ONCE_INIT;
static const ffshim_bridge *bridge;

/*
 * fork(2): a child must not talk over its parent's router connections (the replies would go to whichever
 * process reads first), nor keep them open (the router would keep the parent's objects while the child
 * lives). The child handler closes its copies of the sockets and moves to a new generation, so every
 * inherited context answers EPERM; the child can open its own device. Only close(2) runs in the handler,
 * and the list is read without its lock (another thread may have held it at fork time).
 */
static unsigned fork_generation;
static struct ffs_context *contexts;
static pthread_mutex_t contexts_lock = PTHREAD_MUTEX_INITIALIZER;

static void forked_child(void) {
    for (struct ffs_context *c = contexts; c; c = c->next)
        if (c->generation == fork_generation && c->socket_fd >= 0) close(c->socket_fd);
    contexts = NULL;
    fork_generation++;
    pthread_mutex_init(&contexts_lock, NULL);
}

static void load_bridge(void) {
    bridge = ffshim_swift_bridge();
    pthread_atfork(NULL, NULL, forked_child);
}

const ffshim_bridge *ffs_bridge(void) {
    pthread_once(&bridge_once, load_bridge);
    return bridge;
}

static const char *socket_path(void) {
    const char *path = getenv("FFCLIENT_SOCKET");
    return (path && *path) ? path : FFSHIM_DEFAULT_SOCKET;
}

struct ffs_context *ffs_context_of(struct ibv_context *context) {
    return (struct ffs_context *)((char *)context - offsetof(struct verbs_context, context));
}

void *ffs_session(struct ibv_context *context) {
    struct ffs_context *c = ffs_context_of(context);
    return c->generation == fork_generation ? c->session : NULL;
}

/* The one virtual device: the router's, as this pod sees it. Its GUID comes from the last probe. */
static struct ibv_device device = {
    .node_type = IBV_NODE_CA,
    .transport_type = IBV_TRANSPORT_IB,
    .name = FFSHIM_DEVICE_NAME,
    .dev_name = "uverbs-" FFSHIM_DEVICE_NAME,
    .dev_path = "/sys/class/infiniband_verbs/uverbs-" FFSHIM_DEVICE_NAME,
    .ibdev_path = "/sys/class/infiniband/" FFSHIM_DEVICE_NAME,
};
static uint64_t device_guid; /* host order */
static pthread_mutex_t device_lock = PTHREAD_MUTEX_INITIALIZER;

FFSHIM_EXPORT struct ibv_device **ibv_get_device_list(int *num_devices) {
    /* errno is the caller's again on success: the socket calls underneath leave EAGAIN behind. */
    int saved_errno = errno;
    struct ibv_device **list = calloc(2, sizeof(*list));
    if (!list) return NULL; /* calloc set errno to ENOMEM */
    char reason[512] = "";
    uint64_t guid = 0;
    const char *path = socket_path();
    int error = ffs_bridge()->probe(path, &guid, reason, sizeof(reason));
    if (error) {
        /* The program's own "no devices" handling runs next; this line says why there are none. */
        fprintf(stderr, "libffclient: no RDMA device: cannot reach the FreeFlow router at %s: %s (errno %d)\n",
                path, reason, error);
        if (num_devices) *num_devices = 0;
        errno = error;
        return list;
    }
    pthread_mutex_lock(&device_lock);
    device_guid = guid;
    pthread_mutex_unlock(&device_lock);
    list[0] = &device;
    if (num_devices) *num_devices = 1;
    errno = saved_errno;
    return list;
}

FFSHIM_EXPORT void ibv_free_device_list(struct ibv_device **list) { free(list); }

FFSHIM_EXPORT const char *ibv_get_device_name(struct ibv_device *dev) { return dev->name; }

FFSHIM_EXPORT __be64 ibv_get_device_guid(struct ibv_device *dev) {
    (void)dev;
    pthread_mutex_lock(&device_lock);
    uint64_t guid = device_guid;
    pthread_mutex_unlock(&device_lock);
    return htobe64(guid);
}

FFSHIM_EXPORT int ibv_get_device_index(struct ibv_device *dev) {
    (void)dev;
    return 0;
}

static int op_query_port(struct ibv_context *context, uint8_t port_num, struct ibv_port_attr *port_attr,
                         size_t port_attr_len) {
    struct ibv_port_attr attr;
    memset(&attr, 0, sizeof(attr));
    int error = ffs_bridge()->query_port(ffs_session(context), port_num, &attr);
    if (error) return ffs_fail(error);
    memcpy(port_attr, &attr, port_attr_len < sizeof(attr) ? port_attr_len : sizeof(attr));
    return 0;
}

static int op_query_device_ex(struct ibv_context *context, const struct ibv_query_device_ex_input *input,
                              struct ibv_device_attr_ex *attr, size_t attr_size) {
    if (input && input->comp_mask) return ffs_fail(EINVAL);
    if (attr_size < sizeof(attr->orig_attr)) return ffs_fail(EINVAL);
    struct ibv_device_attr_ex full;
    memset(&full, 0, sizeof(full));
    int error = ffs_bridge()->query_device(ffs_session(context), &full.orig_attr);
    if (error) return ffs_fail(error);
    memcpy(attr, &full, attr_size < sizeof(full) ? attr_size : sizeof(full));
    return 0;
}

struct ffs_context *ffs_context_open(struct ibv_device *dev) {
    if (dev != &device) {
        errno = ENODEV;
        return NULL;
    }
    struct ffs_context *context = calloc(1, sizeof(*context));
    if (!context) return NULL; /* calloc set errno to ENOMEM */
    char reason[512] = "";
    int error = ffs_bridge()->open(socket_path(), program_invocation_short_name, &context->session,
                                   &context->socket_fd, reason, sizeof(reason));
    if (error) {
        fprintf(stderr, "libffclient: ibv_open_device: cannot reach the FreeFlow router at %s: %s (errno %d)\n",
                socket_path(), reason, error);
        free(context);
        errno = error;
        return NULL;
    }
    /* A real async event descriptor that stays quiet: version 1 of the protocol has no async events. */
    int async_fd = eventfd(0, EFD_CLOEXEC);
    if (async_fd < 0) {
        error = errno;
        ffs_bridge()->close(context->session);
        free(context);
        errno = error;
        return NULL;
    }
    pthread_mutex_init(&context->lock, NULL);
    struct verbs_context *vctx = &context->vctx;
    /* How libibverbs marks an extended context: the inline verbs then find the ops below sz. */
    vctx->sz = sizeof(*vctx);
    vctx->context.abi_compat = __VERBS_ABI_IS_EXTENDED;
    vctx->context.device = dev;
    vctx->context.cmd_fd = -1;
    vctx->context.async_fd = async_fd;
    vctx->context.num_comp_vectors = 1;
    pthread_mutex_init(&vctx->context.mutex, NULL);
    vctx->query_port = op_query_port;
    vctx->query_device_ex = op_query_device_ex;
    pthread_mutex_lock(&contexts_lock);
    context->generation = fork_generation;
    context->next = contexts;
    contexts = context;
    pthread_mutex_unlock(&contexts_lock);
    return context;
}

FFSHIM_EXPORT int ibv_close_device(struct ibv_context *ctx) {
    struct ffs_context *context = ffs_context_of(ctx);
    if (!ffs_session(ctx)) {
        /* The parent's context in a forked child: its socket is closed already; the session is the
         * parent's to end. */
        close(ctx->async_fd);
        free(context);
        return 0;
    }
    pthread_mutex_lock(&contexts_lock);
    for (struct ffs_context **link = &contexts; *link; link = &(*link)->next)
        if (*link == context) {
            *link = context->next;
            break;
        }
    pthread_mutex_unlock(&contexts_lock);
    /* Closing the session makes the router destroy whatever the program left behind. */
    ffs_bridge()->close(context->session);
    close(ctx->async_fd);
    pthread_mutex_destroy(&ctx->mutex);
    pthread_mutex_destroy(&context->lock);
    free(context);
    return 0;
}

FFSHIM_EXPORT int ibv_query_device(struct ibv_context *context, struct ibv_device_attr *device_attr) {
    int error = ffs_bridge()->query_device(ffs_session(context), device_attr);
    return error ? ffs_fail(error) : 0;
}

/* The exported symbol behind verbs.h's ibv_query_port macro, for callers whose context is not extended and
 * for binaries built before the macro: the old attribute struct ends before port_cap_flags2. */
FFSHIM_EXPORT int ibv_query_port(struct ibv_context *context, uint8_t port_num,
                                 struct _compat_ibv_port_attr *port_attr) {
    return op_query_port(context, port_num, (struct ibv_port_attr *)port_attr,
                         offsetof(struct ibv_port_attr, port_cap_flags2));
}

FFSHIM_EXPORT int ibv_query_gid(struct ibv_context *context, uint8_t port_num, int index, union ibv_gid *gid) {
    int error = ffs_bridge()->query_gid(ffs_session(context), port_num, index, gid);
    if (error) {
        errno = error;
        return -1;
    }
    return 0;
}

/* The virtual port has one P_Key, the default full-membership one. */
FFSHIM_EXPORT int ibv_query_pkey(struct ibv_context *context, uint8_t port_num, int index, __be16 *pkey) {
    (void)context;
    if (port_num != 1 || index != 0) {
        errno = EINVAL;
        return -1;
    }
    *pkey = htobe16(0xffff);
    return 0;
}

FFSHIM_EXPORT int ibv_get_pkey_index(struct ibv_context *context, uint8_t port_num, __be16 pkey) {
    (void)context;
    if (port_num == 1 && be16toh(pkey) == 0xffff) return 0;
    errno = ENOENT;
    return -1;
}
