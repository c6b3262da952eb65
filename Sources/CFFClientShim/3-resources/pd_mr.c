/* PDs and MRs: a registration's pages are first made memfd-backed in place (memory.c), then registered by the
 * router over the memfds. */
#include "resources.h"

#include <stdlib.h>

#undef ibv_reg_mr
#undef ibv_reg_mr_iova

struct ffs_mr {
    struct ibv_mr mr;           /* mr.handle is the router's handle */
    struct ffs_region **regions; /* the regions holding its pages, one reference each (memory.c) */
    int region_count;
};

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
    void *session = ffs_session(pd->context);
    if (!error && mr->region_count == 1)
        error = ffs_bridge()->reg_mr(session, pd->handle, device_access, iova, length, segments[0].memfd,
                                     segments[0].offset, &mr->mr.handle, &mr->mr.lkey, &mr->mr.rkey);
    else if (!error) {
        error = ffs_bridge()->reg_mr_segments(session, pd->handle, device_access, iova, length, segments,
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

/* Nothing was changed: the MR is as it was. */
FFSHIM_EXPORT int ibv_rereg_mr(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr, size_t length,
                               int access) {
    (void)mr, (void)flags, (void)pd, (void)addr, (void)length, (void)access;
    errno = EOPNOTSUPP;
    return IBV_REREG_MR_ERR_INPUT;
}

FFSHIM_EXPORT struct ibv_mr *ibv_reg_dmabuf_mr(struct ibv_pd *pd, uint64_t offset, size_t length, uint64_t iova,
                                               int fd, int access) {
    (void)pd, (void)offset, (void)length, (void)iova, (void)fd, (void)access;
    errno = EOPNOTSUPP;
    return NULL;
}

/* Sharing a context or its objects between processes (ibv_import_*) needs the router to hand objects
 * across sessions, which it refuses by design. */
FFSHIM_EXPORT struct ibv_pd *ibv_import_pd(struct ibv_context *context, uint32_t pd_handle) {
    (void)context, (void)pd_handle;
    errno = EOPNOTSUPP;
    return NULL;
}

FFSHIM_EXPORT struct ibv_mr *ibv_import_mr(struct ibv_pd *pd, uint32_t mr_handle) {
    (void)pd, (void)mr_handle;
    errno = EOPNOTSUPP;
    return NULL;
}

FFSHIM_EXPORT struct ibv_dm *ibv_import_dm(struct ibv_context *context, uint32_t dm_handle) {
    (void)context, (void)dm_handle;
    errno = EOPNOTSUPP;
    return NULL;
}

/* Nothing can have been imported. */
FFSHIM_EXPORT void ibv_unimport_pd(struct ibv_pd *pd) { (void)pd; }
FFSHIM_EXPORT void ibv_unimport_mr(struct ibv_mr *mr) { (void)mr; }
FFSHIM_EXPORT void ibv_unimport_dm(struct ibv_dm *dm) { (void)dm; }
