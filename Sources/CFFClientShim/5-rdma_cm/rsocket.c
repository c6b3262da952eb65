/*
 * rsocket (librdmacm's sockets over RDMA, <rdma/rsocket.h>): not served. Debian's rsocket is compiled into
 * librdmacm and reaches into librdmacm's private id structure (struct cma_id_private: ucma_max_qpsize reads
 * id_priv->cma_dev right behind the public struct rdma_cm_id, and its device list comes from
 * /dev/infiniband/rdma_cm), so it cannot run over this library's ids even in preload mode, where its calls
 * to rdma_* would reach us through the PLT. These definitions make rsocket programs load (the drop-in has no
 * other librdmacm) and fail at the first call with ENOSYS and one line on stderr, instead of misbehaving.
 */
#define _GNU_SOURCE
#include "../1-base/base.h"

#include <rdma/rsocket.h>

#include <errno.h>
#include <stdio.h>

static void unsupported(const char *call) {
    static int said;
    if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
        fprintf(stderr, "libffclient: %s: rsocket is not supported through the FreeFlow router (docs/rdma-cm.md)\n",
                call);
    errno = ENOSYS;
}

#define FAIL(call) \
    do { \
        unsupported(call); \
        return -1; \
    } while (0)

FFSHIM_EXPORT int rsocket(int domain, int type, int protocol) {
    (void)domain; (void)type; (void)protocol; FAIL("rsocket");
}
FFSHIM_EXPORT int rbind(int socket, const struct sockaddr *addr, socklen_t addrlen) {
    (void)socket; (void)addr; (void)addrlen; FAIL("rbind");
}
FFSHIM_EXPORT int rlisten(int socket, int backlog) { (void)socket; (void)backlog; FAIL("rlisten"); }
FFSHIM_EXPORT int raccept(int socket, struct sockaddr *addr, socklen_t *addrlen) {
    (void)socket; (void)addr; (void)addrlen; FAIL("raccept");
}
FFSHIM_EXPORT int rconnect(int socket, const struct sockaddr *addr, socklen_t addrlen) {
    (void)socket; (void)addr; (void)addrlen; FAIL("rconnect");
}
FFSHIM_EXPORT int rshutdown(int socket, int how) { (void)socket; (void)how; FAIL("rshutdown"); }
FFSHIM_EXPORT int rclose(int socket) { (void)socket; FAIL("rclose"); }
FFSHIM_EXPORT ssize_t rrecv(int socket, void *buf, size_t len, int flags) {
    (void)socket; (void)buf; (void)len; (void)flags; FAIL("rrecv");
}
FFSHIM_EXPORT ssize_t rrecvfrom(int socket, void *buf, size_t len, int flags, struct sockaddr *src_addr,
                                socklen_t *addrlen) {
    (void)socket; (void)buf; (void)len; (void)flags; (void)src_addr; (void)addrlen; FAIL("rrecvfrom");
}
FFSHIM_EXPORT ssize_t rrecvmsg(int socket, struct msghdr *msg, int flags) {
    (void)socket; (void)msg; (void)flags; FAIL("rrecvmsg");
}
FFSHIM_EXPORT ssize_t rsend(int socket, const void *buf, size_t len, int flags) {
    (void)socket; (void)buf; (void)len; (void)flags; FAIL("rsend");
}
FFSHIM_EXPORT ssize_t rsendto(int socket, const void *buf, size_t len, int flags, const struct sockaddr *dest_addr,
                              socklen_t addrlen) {
    (void)socket; (void)buf; (void)len; (void)flags; (void)dest_addr; (void)addrlen; FAIL("rsendto");
}
FFSHIM_EXPORT ssize_t rsendmsg(int socket, const struct msghdr *msg, int flags) {
    (void)socket; (void)msg; (void)flags; FAIL("rsendmsg");
}
FFSHIM_EXPORT ssize_t rread(int socket, void *buf, size_t count) {
    (void)socket; (void)buf; (void)count; FAIL("rread");
}
FFSHIM_EXPORT ssize_t rreadv(int socket, const struct iovec *iov, int iovcnt) {
    (void)socket; (void)iov; (void)iovcnt; FAIL("rreadv");
}
FFSHIM_EXPORT ssize_t rwrite(int socket, const void *buf, size_t count) {
    (void)socket; (void)buf; (void)count; FAIL("rwrite");
}
FFSHIM_EXPORT ssize_t rwritev(int socket, const struct iovec *iov, int iovcnt) {
    (void)socket; (void)iov; (void)iovcnt; FAIL("rwritev");
}
FFSHIM_EXPORT int rpoll(struct pollfd *fds, nfds_t nfds, int timeout) {
    (void)fds; (void)nfds; (void)timeout; FAIL("rpoll");
}
FFSHIM_EXPORT int rselect(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds, struct timeval *timeout) {
    (void)nfds; (void)readfds; (void)writefds; (void)exceptfds; (void)timeout; FAIL("rselect");
}
FFSHIM_EXPORT int rgetpeername(int socket, struct sockaddr *addr, socklen_t *addrlen) {
    (void)socket; (void)addr; (void)addrlen; FAIL("rgetpeername");
}
FFSHIM_EXPORT int rgetsockname(int socket, struct sockaddr *addr, socklen_t *addrlen) {
    (void)socket; (void)addr; (void)addrlen; FAIL("rgetsockname");
}
FFSHIM_EXPORT int rsetsockopt(int socket, int level, int optname, const void *optval, socklen_t optlen) {
    (void)socket; (void)level; (void)optname; (void)optval; (void)optlen; FAIL("rsetsockopt");
}
FFSHIM_EXPORT int rgetsockopt(int socket, int level, int optname, void *optval, socklen_t *optlen) {
    (void)socket; (void)level; (void)optname; (void)optval; (void)optlen; FAIL("rgetsockopt");
}
FFSHIM_EXPORT int rfcntl(int socket, int cmd, ...) { (void)socket; (void)cmd; FAIL("rfcntl"); }
FFSHIM_EXPORT off_t riomap(int socket, void *buf, size_t len, int prot, int flags, off_t offset) {
    (void)socket; (void)buf; (void)len; (void)prot; (void)flags; (void)offset; FAIL("riomap");
}
FFSHIM_EXPORT int riounmap(int socket, void *buf, size_t len) { (void)socket; (void)buf; (void)len; FAIL("riounmap"); }
FFSHIM_EXPORT size_t riowrite(int socket, const void *buf, size_t count, off_t offset, int flags) {
    (void)socket; (void)buf; (void)count; (void)offset; (void)flags;
    unsupported("riowrite");
    return 0;
}
