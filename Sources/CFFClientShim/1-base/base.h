/*
 * Layer 1 of libffclient's C layer, base: what every file needs and nothing of the router. The layers, each a folder
 * with one header that declares only what it gives the layers above (docs/shim.md, "Layout of the C layer"):
 *
 *   1-base       strings, rates, marshalling, the inert provider and compat symbols
 *   2-device     the bridge to Swift, the device list, contexts and their queries, fork
 *   3-resources  PD, MR (and the zero-copy regions under it), completion channels, CQ, QP, SRQ, AH
 *   4-datapath   post and poll, ibv_wr_*, ibv_cq_ex, and ibv_open_device, which assembles a context's tables
 *   5-rdma_cm    librdmacm's API over the router's connection manager
 *
 * A file includes its own layer's header and lower ones only, and calls no function of a higher layer
 * (Tests/FFClientShimTests/ShimLayerTests.swift checks both, and that no two files call each other).
 */
#ifndef FFSHIM_BASE_H
#define FFSHIM_BASE_H

#include <infiniband/verbs.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

/* Exported with the version nodes of Debian's libibverbs.so.1 (see libibverbs.map). */
#define FFSHIM_EXPORT __attribute__((visibility("default")))

/* Sets errno to `error` and returns it (verbs calls that return an errno). */
static inline int ffs_fail(int error) {
    errno = error;
    return error;
}

/* The IPv4-mapped GID ::ffff:a.b.c.d of `address` (network order): a pod's virtual GID, a peer's, a RoCE v2 GRH's. */
static inline void ffs_mapped_gid(union ibv_gid *gid, uint32_t address) {
    memset(gid, 0, sizeof(*gid));
    gid->raw[10] = 0xff;
    gid->raw[11] = 0xff;
    memcpy(&gid->raw[12], &address, sizeof(address));
}

#endif
