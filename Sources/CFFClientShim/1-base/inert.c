/*
 * The symbols of Debian's libibverbs.so.1 that no verbs program of today calls into a virtual device, defined
 * so that everything that links against libibverbs still loads (binaries bind at load time) and inert:
 *
 * - IBVERBS_PRIVATE_34, the provider interface (libmlx5, libefa, librdmacm import it): a provider that
 *   registers itself is accepted and ignored; the shim never opens a provider's device, so the
 *   ibv_cmd_* kernel commands are never reached and fail with EOPNOTSUPP if they are.
 * - The IBVERBS_1.0 compat ABI (libibverbs 1.0's structs, 2006), non-default versions: they fail with
 *   ENOSYS and errno set; nothing built against a libibverbs of this century binds them.
 *
 * Their prototypes live in rdma-core's private driver.h and in the old ABI, neither shipped by Debian;
 * on x86-64 a definition that ignores its arguments is safe for any caller.
 */
#include "base.h"

#include <errno.h>
#include <stdbool.h>

#define INERT_INT(name)                     \
    FFSHIM_EXPORT int name(void);           \
    FFSHIM_EXPORT int name(void) {          \
        errno = EOPNOTSUPP;                 \
        return EOPNOTSUPP;                  \
    }
#define INERT_POINTER(name)                 \
    FFSHIM_EXPORT void *name(void);         \
    FFSHIM_EXPORT void *name(void) {        \
        errno = EOPNOTSUPP;                 \
        return NULL;                        \
    }
#define INERT_VOID(name)                    \
    FFSHIM_EXPORT void name(void);          \
    FFSHIM_EXPORT void name(void) {}

/* IBVERBS_PRIVATE_34 */
INERT_VOID(verbs_register_driver_34)
INERT_VOID(verbs_set_ops)
INERT_VOID(verbs_uninit_context)
INERT_VOID(verbs_init_cq)
INERT_POINTER(_verbs_init_and_alloc_context)
INERT_POINTER(verbs_open_device)
INERT_INT(execute_ioctl)
INERT_INT(ibv_cmd_advise_mr)
INERT_INT(ibv_cmd_alloc_dm)
INERT_INT(ibv_cmd_alloc_mw)
INERT_INT(ibv_cmd_alloc_pd)
INERT_INT(ibv_cmd_attach_mcast)
INERT_INT(ibv_cmd_close_xrcd)
INERT_INT(ibv_cmd_create_ah)
INERT_INT(ibv_cmd_create_counters)
INERT_INT(ibv_cmd_create_cq)
INERT_INT(ibv_cmd_create_cq_ex)
INERT_INT(ibv_cmd_create_flow)
INERT_INT(ibv_cmd_create_flow_action_esp)
INERT_INT(ibv_cmd_create_qp)
INERT_INT(ibv_cmd_create_qp_ex)
INERT_INT(ibv_cmd_create_qp_ex2)
INERT_INT(ibv_cmd_create_rwq_ind_table)
INERT_INT(ibv_cmd_create_srq)
INERT_INT(ibv_cmd_create_srq_ex)
INERT_INT(ibv_cmd_create_wq)
INERT_INT(ibv_cmd_dealloc_mw)
INERT_INT(ibv_cmd_dealloc_pd)
INERT_INT(ibv_cmd_dereg_mr)
INERT_INT(ibv_cmd_destroy_ah)
INERT_INT(ibv_cmd_destroy_counters)
INERT_INT(ibv_cmd_destroy_cq)
INERT_INT(ibv_cmd_destroy_flow)
INERT_INT(ibv_cmd_destroy_flow_action)
INERT_INT(ibv_cmd_destroy_qp)
INERT_INT(ibv_cmd_destroy_rwq_ind_table)
INERT_INT(ibv_cmd_destroy_srq)
INERT_INT(ibv_cmd_destroy_wq)
INERT_INT(ibv_cmd_detach_mcast)
INERT_INT(ibv_cmd_free_dm)
INERT_INT(ibv_cmd_get_context)
INERT_INT(ibv_cmd_modify_cq)
INERT_INT(ibv_cmd_modify_flow_action_esp)
INERT_INT(ibv_cmd_modify_qp)
INERT_INT(ibv_cmd_modify_qp_ex)
INERT_INT(ibv_cmd_modify_srq)
INERT_INT(ibv_cmd_modify_wq)
INERT_INT(ibv_cmd_open_qp)
INERT_INT(ibv_cmd_open_xrcd)
INERT_INT(ibv_cmd_poll_cq)
INERT_INT(ibv_cmd_post_recv)
INERT_INT(ibv_cmd_post_send)
INERT_INT(ibv_cmd_post_srq_recv)
INERT_INT(ibv_cmd_query_context)
INERT_INT(ibv_cmd_query_device_any)
INERT_INT(ibv_cmd_query_mr)
INERT_INT(ibv_cmd_query_port)
INERT_INT(ibv_cmd_query_qp)
INERT_INT(ibv_cmd_query_srq)
INERT_INT(ibv_cmd_read_counters)
INERT_INT(ibv_cmd_reg_dm_mr)
INERT_INT(ibv_cmd_reg_dmabuf_mr)
INERT_INT(ibv_cmd_reg_mr)
INERT_INT(ibv_cmd_req_notify_cq)
INERT_INT(ibv_cmd_rereg_mr)
INERT_INT(ibv_cmd_resize_cq)

/* A provider's log line: there is no provider to log for. */
FFSHIM_EXPORT void __verbs_log(struct verbs_context *ctx, const char *fmt, ...);
FFSHIM_EXPORT void __verbs_log(struct verbs_context *ctx, const char *fmt, ...) {
    (void)ctx;
    (void)fmt;
}

/* Sizes an ioctl command buffer chain; with no commands ever built, the count is the caller's. */
FFSHIM_EXPORT unsigned int __ioctl_final_num_attrs(unsigned int num_attrs, void *link);
FFSHIM_EXPORT unsigned int __ioctl_final_num_attrs(unsigned int num_attrs, void *link) {
    (void)link;
    return num_attrs;
}

/* The virtual device has no sysfs directory. */
FFSHIM_EXPORT int ibv_read_ibdev_sysfs_file(char *buf, size_t size, void *sysfs_dev, const char *fnfmt, ...);
FFSHIM_EXPORT int ibv_read_ibdev_sysfs_file(char *buf, size_t size, void *sysfs_dev, const char *fnfmt, ...) {
    (void)buf, (void)size, (void)sysfs_dev, (void)fnfmt;
    errno = ENOENT;
    return -1;
}

FFSHIM_EXPORT bool verbs_allow_disassociate_destroy;

/* The IBVERBS_1.0 ABI and the 1.1 ibv_register_driver, at non-default versions. */
#define COMPAT_INT(name) \
    FFSHIM_EXPORT int ffs_compat_##name(void); \
    FFSHIM_EXPORT int ffs_compat_##name(void) { errno = ENOSYS; return ENOSYS; } \
    __asm__(".symver ffs_compat_" #name ", " #name "@IBVERBS_1.0");
#define COMPAT_POINTER(name) \
    FFSHIM_EXPORT void *ffs_compat_##name(void); \
    FFSHIM_EXPORT void *ffs_compat_##name(void) { errno = ENOSYS; return NULL; } \
    __asm__(".symver ffs_compat_" #name ", " #name "@IBVERBS_1.0");
#define COMPAT_VOID(name, version) \
    FFSHIM_EXPORT void ffs_compat_##name(void); \
    FFSHIM_EXPORT void ffs_compat_##name(void) {} \
    __asm__(".symver ffs_compat_" #name ", " #name "@" version);

COMPAT_POINTER(ibv_get_device_list)
COMPAT_VOID(ibv_free_device_list, "IBVERBS_1.0")
COMPAT_POINTER(ibv_get_device_name)
COMPAT_INT(ibv_get_device_guid)
COMPAT_POINTER(ibv_open_device)
COMPAT_INT(ibv_close_device)
COMPAT_INT(ibv_get_async_event)
COMPAT_VOID(ibv_ack_async_event, "IBVERBS_1.0")
COMPAT_INT(ibv_query_device)
COMPAT_INT(ibv_query_port)
COMPAT_INT(ibv_query_gid)
COMPAT_INT(ibv_query_pkey)
COMPAT_POINTER(ibv_alloc_pd)
COMPAT_INT(ibv_dealloc_pd)
COMPAT_POINTER(ibv_reg_mr)
COMPAT_INT(ibv_dereg_mr)
COMPAT_POINTER(ibv_create_cq)
COMPAT_INT(ibv_resize_cq)
COMPAT_INT(ibv_destroy_cq)
COMPAT_INT(ibv_get_cq_event)
COMPAT_VOID(ibv_ack_cq_events, "IBVERBS_1.0")
COMPAT_POINTER(ibv_create_srq)
COMPAT_INT(ibv_modify_srq)
COMPAT_INT(ibv_query_srq)
COMPAT_INT(ibv_destroy_srq)
COMPAT_POINTER(ibv_create_qp)
COMPAT_INT(ibv_query_qp)
COMPAT_INT(ibv_modify_qp)
COMPAT_INT(ibv_destroy_qp)
COMPAT_POINTER(ibv_create_ah)
COMPAT_INT(ibv_destroy_ah)
COMPAT_INT(ibv_attach_mcast)
COMPAT_INT(ibv_detach_mcast)
/* A provider of the pre-34 interface registering itself: accepted and ignored. */
COMPAT_VOID(ibv_register_driver, "IBVERBS_1.1")
