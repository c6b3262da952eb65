/* The virtual port's GID table: one RoCE v2 entry, the pod's ::ffff:vip, through ibv_query_gid. */
#include "device.h"

/* rdma-core's driver.h (a private header Debian does not ship): ibv_devinfo asks for each GID's type. */
enum ibv_gid_type_sysfs { IBV_GID_TYPE_SYSFS_IB_ROCE_V1, IBV_GID_TYPE_SYSFS_ROCE_V2 };
FFSHIM_EXPORT int ibv_query_gid_type(struct ibv_context *context, uint8_t port_num, unsigned int index,
                                     enum ibv_gid_type_sysfs *type);

/* The router's GIDs are RoCE v2 (an IPv4-mapped GID routed by the router's device). */
FFSHIM_EXPORT int ibv_query_gid_type(struct ibv_context *context, uint8_t port_num, unsigned int index,
                                     enum ibv_gid_type_sysfs *type) {
    union ibv_gid gid;
    if (index > INT32_MAX || ibv_query_gid(context, port_num, (int)index, &gid)) return -1;
    *type = IBV_GID_TYPE_SYSFS_ROCE_V2;
    return 0;
}

FFSHIM_EXPORT int _ibv_query_gid_ex(struct ibv_context *context, uint32_t port_num, uint32_t gid_index,
                                    struct ibv_gid_entry *entry, uint32_t flags, size_t entry_size) {
    if (flags || entry_size < sizeof(*entry)) return ffs_fail(EINVAL);
    if (port_num > UINT8_MAX || gid_index > INT32_MAX) return ffs_fail(EINVAL);
    memset(entry, 0, sizeof(*entry));
    if (ibv_query_gid(context, (uint8_t)port_num, (int)gid_index, &entry->gid)) return errno;
    entry->gid_index = gid_index;
    entry->port_num = port_num;
    entry->gid_type = IBV_GID_TYPE_ROCE_V2;
    return 0;
}

FFSHIM_EXPORT ssize_t _ibv_query_gid_table(struct ibv_context *context, struct ibv_gid_entry *entries,
                                           size_t max_entries, uint32_t flags, size_t entry_size) {
    if (flags || entry_size < sizeof(*entries)) return -ffs_fail(EINVAL);
    if (max_entries < 1) return -ffs_fail(EINVAL);
    int error = _ibv_query_gid_ex(context, 1, 0, entries, 0, entry_size);
    return error ? -error : 1;
}
