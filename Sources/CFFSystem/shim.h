#ifndef FREEFLOW_CSYSTEM_SHIM_H
#define FREEFLOW_CSYSTEM_SHIM_H

/* Linux calls that glibc declares only under _GNU_SOURCE, which Swift's Glibc module is built without.
 * The prototypes are glibc's own (memfd_create(2) since glibc 2.27, accept4(2), unix(7) struct ucred). */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <pthread.h>

#define FFS_MFD_CLOEXEC 0x0001U
/* SCM_CREDENTIALS (unix(7)) is an enum value glibc hides behind __USE_GNU. */
#define FFS_SCM_CREDENTIALS 0x02
/* fcntl(2) F_GET_SEALS (F_LINUX_SPECIFIC_BASE + 10): succeeds only on memfd/shmem files. */
#define FFS_F_GET_SEALS 1034
/* memfd_create(2) MFD_ALLOW_SEALING and fcntl(2) F_ADD_SEALS with F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW: a ring
 * memfd the router hands a client cannot be shrunk under the router's mapping (which would SIGBUS the router). */
#define FFS_MFD_ALLOW_SEALING 0x0002U
#define FFS_F_ADD_SEALS 1033
#define FFS_F_SEAL_SIZE_AND_SEALS 0x0007
/* fcntl(2) F_SEAL_SHRINK: what a router that copies registered memory itself adds to a client's memfd. */
#define FFS_F_SEAL_SHRINK 0x0002
/* statfs(2) f_type of hugetlbfs, which memfd_create(MFD_HUGETLB) files live on. */
#define FFS_HUGETLBFS_MAGIC 0x958458f6L

extern int memfd_create(const char *name, unsigned int flags);
extern int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);
extern int pthread_setname_np(pthread_t thread, const char *name);

struct ffs_ucred {
    pid_t pid;
    uid_t uid;
    gid_t gid;
};

#endif
