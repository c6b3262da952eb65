/* Loads verbs the way NCCL does: dlopen("libibverbs.so.1") and dlvsym(..., "IBVERBS_1.1"), no link-time
 * libibverbs. Lists the device, queries its port and GID, registers a buffer. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <infiniband/verbs.h>
#include <stdio.h>
#include <stdlib.h>

#define LOAD(var, name)                                                   \
    var = dlvsym(lib, name, "IBVERBS_1.1");                               \
    if (!var) {                                                           \
        printf("FAIL dlvsym %s@IBVERBS_1.1: %s\n", name, dlerror());     \
        return 1;                                                         \
    }

int main(void) {
    void *lib = dlopen("libibverbs.so.1", RTLD_NOW);
    if (!lib) {
        printf("FAIL dlopen: %s\n", dlerror());
        return 1;
    }
    struct ibv_device **(*get_list)(int *);
    const char *(*get_name)(struct ibv_device *);
    struct ibv_context *(*open_device)(struct ibv_device *);
    int (*query_port)(struct ibv_context *, uint8_t, struct ibv_port_attr *);
    int (*query_gid)(struct ibv_context *, uint8_t, int, union ibv_gid *);
    struct ibv_pd *(*alloc_pd)(struct ibv_context *);
    struct ibv_mr *(*reg_mr)(struct ibv_pd *, void *, size_t, int);
    int (*dereg_mr)(struct ibv_mr *);
    int (*dealloc_pd)(struct ibv_pd *);
    int (*close_device)(struct ibv_context *);
    LOAD(get_list, "ibv_get_device_list")
    LOAD(get_name, "ibv_get_device_name")
    LOAD(open_device, "ibv_open_device")
    LOAD(query_port, "ibv_query_port")
    LOAD(query_gid, "ibv_query_gid")
    LOAD(alloc_pd, "ibv_alloc_pd")
    LOAD(reg_mr, "ibv_reg_mr")
    LOAD(dereg_mr, "ibv_dereg_mr")
    LOAD(dealloc_pd, "ibv_dealloc_pd")
    LOAD(close_device, "ibv_close_device")
    int count = 0;
    struct ibv_device **list = get_list(&count);
    if (!list || count < 1) {
        printf("FAIL no device\n");
        return 1;
    }
    struct ibv_context *ctx = open_device(list[0]);
    struct ibv_port_attr port;
    union ibv_gid gid;
    if (!ctx || query_port(ctx, 1, &port) || query_gid(ctx, 1, 0, &gid)) {
        printf("FAIL open/query\n");
        return 1;
    }
    struct ibv_pd *pd = alloc_pd(ctx);
    void *buffer = malloc(1 << 16);
    struct ibv_mr *mr = pd ? reg_mr(pd, buffer, 1 << 16, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE) : NULL;
    if (!mr || dereg_mr(mr) || dealloc_pd(pd) || close_device(ctx)) {
        printf("FAIL pd/mr\n");
        return 1;
    }
    printf("device=%s state=%d gid=%u.%u.%u.%u\n", get_name(list[0]), port.state, gid.raw[12], gid.raw[13], gid.raw[14],
           gid.raw[15]);
    return 0;
}
