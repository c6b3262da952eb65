/*
 * fork(2) through the shim: the child cannot use (or disturb) its parent's context — its calls fail with
 * EPERM — nor write into its parent's registered buffers (they are private in the child, as without the
 * shim), and can open a device of its own; the parent's session carries on after the child has run and
 * exited. Prints "ok ..." lines; exits 1 at the first failure.
 */
#include <errno.h>
#include <infiniband/verbs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void fail(const char *what) {
    printf("FAIL %s (errno %d)\n", what, errno);
    fflush(stdout);
    _exit(1);
}

int main(void) {
    struct ibv_device **list = ibv_get_device_list(NULL);
    struct ibv_context *ctx = list && list[0] ? ibv_open_device(list[0]) : NULL;
    if (!ctx) fail("open");
    struct ibv_pd *pd = ibv_alloc_pd(ctx);
    if (!pd) fail("alloc_pd");
    static char buffer[4096] __attribute__((aligned(4096)));
    char *registered = malloc(3 * 4096);
    memset(registered, 'P', 3 * 4096);
    struct ibv_mr *live = ibv_reg_mr(pd, registered, 3 * 4096, IBV_ACCESS_LOCAL_WRITE);
    if (!live) fail("reg_mr before fork");
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        if (registered[0] != 'P' || registered[3 * 4096 - 1] != 'P') fail("child: the registered buffer's contents");
        memset(registered, 'C', 3 * 4096);
        printf("ok child: wrote its copy of a registered buffer\n");
        errno = 0;
        if (ibv_alloc_pd(ctx) || errno != EPERM) fail("child: alloc_pd on the parent's context");
        if (ibv_reg_mr(pd, buffer, sizeof(buffer), IBV_ACCESS_LOCAL_WRITE) || errno != EPERM) fail("child: reg_mr on the parent's pd");
        struct ibv_port_attr port;
        if (ibv_query_port(ctx, 1, &port) != EPERM) fail("child: query_port on the parent's context");
        printf("ok child: the parent's context answers EPERM\n");
        struct ibv_device **own_list = ibv_get_device_list(NULL);
        struct ibv_context *own = own_list && own_list[0] ? ibv_open_device(own_list[0]) : NULL;
        struct ibv_pd *own_pd = own ? ibv_alloc_pd(own) : NULL;
        if (!own_pd || ibv_dealloc_pd(own_pd) || ibv_close_device(own)) fail("child: its own device");
        printf("ok child: its own device works\n");
        if (ibv_close_device(ctx)) fail("child: close the parent's context");
        fflush(stdout);
        _exit(0);
    }
    int status;
    if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("child");
    for (int i = 0; i < 3 * 4096; i++)
        if (registered[i] != 'P') fail("parent: the child's write reached the parent's registered buffer");
    if (ibv_dereg_mr(live)) fail("dereg after fork");
    printf("ok parent: its registered buffer is its own\n");
    struct ibv_port_attr port;
    struct ibv_mr *mr = ibv_reg_mr(pd, buffer, sizeof(buffer), IBV_ACCESS_LOCAL_WRITE);
    struct ibv_pd *second = ibv_alloc_pd(ctx);
    if (!mr || !second || ibv_query_port(ctx, 1, &port) || ibv_dereg_mr(mr) || ibv_dealloc_pd(second) || ibv_dealloc_pd(pd))
        fail("parent after the child");
    if (ibv_close_device(ctx)) fail("parent close");
    printf("ok parent: its session carries on\n");
    return 0;
}
