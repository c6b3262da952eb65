/* Addresses: IPv4 socket addresses in and out of ids, and rdma_getaddrinfo. */
#include "rdma_cm.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>

static void set_sin(struct sockaddr_in *sin, uint32_t addr, uint16_t port) {
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = addr;
    sin->sin_port = htons(port);
}

/* Reads an IPv4 address (or the unspecified address for NULL); AF_INET6 only as ::ffff:a.b.c.d or ::. */
int ffcm_read_sockaddr(const struct sockaddr *sa, uint32_t *addr, uint16_t *port) {
    *addr = 0;
    *port = 0;
    if (!sa) return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        *addr = sin->sin_addr.s_addr;
        *port = ntohs(sin->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) memcpy(addr, &sin6->sin6_addr.s6_addr[12], 4);
        else if (!IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)) return EAFNOSUPPORT;
        *port = ntohs(sin6->sin6_port);
        return 0;
    }
    return EAFNOSUPPORT;
}

/* The id's addresses as the application reads them (rdma_get_local_addr / rdma_get_peer_addr, route.addr). */
void ffcm_set_addresses(struct ffcm_id *id, uint32_t local, uint16_t local_port, uint32_t remote,
                        uint16_t remote_port) {
    set_sin(&id->id.route.addr.src_sin, local, local_port);
    set_sin(&id->id.route.addr.dst_sin, remote, remote_port);
    ffs_mapped_gid(&id->id.route.addr.addr.ibaddr.sgid, local ? local : ffcm_vip());
    ffs_mapped_gid(&id->id.route.addr.addr.ibaddr.dgid, remote);
    id->id.route.addr.addr.ibaddr.pkey = htobe16(0xffff);
}

FFSHIM_EXPORT __be16 rdma_get_src_port(struct rdma_cm_id *id) { return id->route.addr.src_sin.sin_port; }

FFSHIM_EXPORT __be16 rdma_get_dst_port(struct rdma_cm_id *id) { return id->route.addr.dst_sin.sin_port; }

static struct sockaddr *copy_sockaddr(const struct sockaddr_in *sin) {
    struct sockaddr_in *copy = malloc(sizeof(*copy));
    if (copy) *copy = *sin;
    return (struct sockaddr *)copy;
}

FFSHIM_EXPORT int rdma_getaddrinfo(const char *node, const char *service, const struct rdma_addrinfo *hints,
                                   struct rdma_addrinfo **res) {
    if (!res || (!node && !service)) return cm_fail(EINVAL);
    int flags = hints ? hints->ai_flags : 0;
    if (hints && hints->ai_family && hints->ai_family != AF_INET) return cm_fail(EAFNOSUPPORT);
    struct sockaddr_in address = {.sin_family = AF_INET};
    if (node) {
        struct addrinfo want = {.ai_family = AF_INET, .ai_flags = (flags & RAI_NUMERICHOST) ? AI_NUMERICHOST : 0};
        struct addrinfo *found;
        int error = getaddrinfo(node, NULL, &want, &found);
        if (error) return cm_fail(error == EAI_SYSTEM ? errno : EADDRNOTAVAIL);
        address.sin_addr = ((struct sockaddr_in *)found->ai_addr)->sin_addr;
        freeaddrinfo(found);
    }
    if (service) {
        char *end;
        long port = strtol(service, &end, 10);
        if (*end || port < 0 || port > 65535) {
            struct servent *entry = getservbyname(service, "tcp");
            if (!entry) return cm_fail(EINVAL);
            address.sin_port = (in_port_t)entry->s_port;
        } else {
            address.sin_port = htons((uint16_t)port);
        }
    }
    struct rdma_addrinfo *info = calloc(1, sizeof(*info));
    if (!info) return cm_fail(ENOMEM);
    info->ai_flags = flags;
    info->ai_family = AF_INET;
    info->ai_port_space = (hints && hints->ai_port_space) ? hints->ai_port_space : RDMA_PS_TCP;
    info->ai_qp_type = (hints && hints->ai_qp_type) ? hints->ai_qp_type
                                                    : (int)ffcm_qp_type_of((enum rdma_port_space)info->ai_port_space);
    if (flags & RAI_PASSIVE) {
        info->ai_src_addr = copy_sockaddr(&address);
        info->ai_src_len = sizeof(address);
    } else {
        info->ai_dst_addr = copy_sockaddr(&address);
        info->ai_dst_len = sizeof(address);
        if (hints && hints->ai_src_addr && hints->ai_src_addr->sa_family == AF_INET) {
            info->ai_src_addr = copy_sockaddr((const struct sockaddr_in *)hints->ai_src_addr);
            info->ai_src_len = sizeof(address);
        }
    }
    if ((info->ai_flags & RAI_PASSIVE ? !info->ai_src_addr : !info->ai_dst_addr)) {
        rdma_freeaddrinfo(info);
        return cm_fail(ENOMEM);
    }
    *res = info;
    return 0;
}

FFSHIM_EXPORT void rdma_freeaddrinfo(struct rdma_addrinfo *res) {
    while (res) {
        struct rdma_addrinfo *next = res->ai_next;
        free(res->ai_src_addr);
        free(res->ai_dst_addr);
        free(res->ai_src_canonname);
        free(res->ai_dst_canonname);
        free(res->ai_route);
        free(res->ai_connect);
        free(res);
        res = next;
    }
}
