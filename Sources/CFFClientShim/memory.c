/*
 * Zero-copy registration: the router can only register memory it can map, so ibv_reg_mr moves the pages
 * covering the buffer into a memfd mapped at the same addresses (copied once), and hands the memfd over.
 * Registrations of pages already moved reuse the same memfd (a region), so overlapping MRs see the same
 * bytes. After dereg the pages stay where they are, memfd-backed, and the program's memory stays valid.
 *
 * What is moved: private anonymous memory (malloc, anonymous mmap, aligned_alloc, the heap, stacks) and
 * pages this library moved before. Refused with a reason on stderr and EINVAL: file-backed and shared
 * mappings (their pages belong to a file or another process), unreadable pages, gaps, and a range that
 * partly overlaps a live region (one MR is one memfd in protocol version 1).
 */
#define _GNU_SOURCE
#include "shim.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FFS_MEMFD_NAME "ffclient-mr"
#define FFS_MAX_PIECES 64

struct ffs_region {
    uintptr_t start, end; /* page-aligned */
    int memfd;
    unsigned refs;
    struct ffs_region *next;
};

static pthread_mutex_t regions_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ffs_region *regions;

struct piece {
    uintptr_t start, end;
    int prot;
};

static void refuse(const char *why, uintptr_t start, uintptr_t end) {
    fprintf(stderr, "libffclient: ibv_reg_mr: cannot register 0x%" PRIxPTR "-0x%" PRIxPTR ": %s\n", start, end,
            why);
}

/* The mappings covering [start, end), from /proc/self/maps; 0 or an errno (with the reason printed). */
static int find_pieces(uintptr_t start, uintptr_t end, struct piece *pieces, int *count) {
    FILE *maps = fopen("/proc/self/maps", "re");
    if (!maps) return errno;
    char line[4096];
    uintptr_t covered = start;
    int n = 0, error = 0;
    while (covered < end && fgets(line, sizeof(line), maps)) {
        uintptr_t lo, hi;
        char perms[8];
        unsigned long long offset, inode;
        char dev[16];
        int name_at = 0;
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s %llx %15s %llu %n", &lo, &hi, perms, &offset, dev, &inode,
                   &name_at) < 6)
            continue;
        if (hi <= covered || lo >= end) continue;
        if (lo > covered) {
            refuse("part of the range is not mapped", start, end);
            error = EFAULT;
            break;
        }
        char *name = line + name_at;
        name[strcspn(name, "\n")] = '\0';
        int ours = strncmp(name, "/memfd:" FFS_MEMFD_NAME, strlen("/memfd:" FFS_MEMFD_NAME)) == 0;
        int anonymous = inode == 0 && perms[3] == 'p';
        if (!ours && !anonymous) {
            refuse(perms[3] == 's' ? "a shared mapping (moving its pages would unshare them from the other mappings)"
                                   : "a file-backed mapping (its pages belong to the file)",
                   start, end);
            error = EINVAL;
            break;
        }
        if (perms[0] != 'r') {
            refuse("unreadable pages", start, end);
            error = EFAULT;
            break;
        }
        if (n == FFS_MAX_PIECES) {
            refuse("the range spans too many mappings", start, end);
            error = EINVAL;
            break;
        }
        pieces[n].start = covered;
        pieces[n].end = hi < end ? hi : end;
        pieces[n].prot = PROT_READ | (perms[1] == 'w' ? PROT_WRITE : 0) | (perms[2] == 'x' ? PROT_EXEC : 0);
        covered = pieces[n].end;
        n++;
    }
    fclose(maps);
    if (!error && covered < end) {
        refuse("part of the range is not mapped", start, end);
        error = EFAULT;
    }
    *count = n;
    return error;
}

struct move {
    int memfd;
    uintptr_t start;
    struct piece *pieces;
    int count;
    int error;
};

/*
 * Copy each piece into the memfd through a temporary mapping, then mremap that mapping over the original
 * in one step. Runs on its own thread: the range may hold the calling thread's stack, and a write to it
 * between the copy and the remap would be lost; the caller sleeps in pthread_join meanwhile.
 */
static void *move_pages(void *argument) {
    struct move *move = argument;
    for (int i = 0; i < move->count; i++) {
        struct piece *p = &move->pieces[i];
        size_t len = p->end - p->start;
        void *temp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, move->memfd, (off_t)(p->start - move->start));
        if (temp == MAP_FAILED) {
            move->error = errno;
            return NULL;
        }
        memcpy(temp, (void *)p->start, len);
        if (mprotect(temp, len, p->prot) != 0 ||
            mremap(temp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)p->start) == MAP_FAILED) {
            move->error = errno;
            munmap(temp, len);
            return NULL;
        }
    }
    return NULL;
}

int ffs_region_acquire(void *addr, size_t length, struct ffs_region **region, int *memfd, uint64_t *offset) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t first = (uintptr_t)addr;
    if (length > UINTPTR_MAX - first - page) return EINVAL;
    uintptr_t start = first & ~(page - 1);
    uintptr_t end = (first + length + page - 1) & ~(page - 1);

    pthread_mutex_lock(&regions_lock);
    int error = 0;
    for (struct ffs_region *r = regions; r; r = r->next) {
        if (r->start <= start && end <= r->end) {
            r->refs++;
            *region = r;
            *memfd = r->memfd;
            *offset = first - r->start;
            pthread_mutex_unlock(&regions_lock);
            return 0;
        }
        if (start < r->end && r->start < end) {
            refuse("it partly overlaps an earlier registration (not supported yet)", start, end);
            error = EINVAL;
            goto out;
        }
    }
    struct piece pieces[FFS_MAX_PIECES];
    int count = 0;
    error = find_pieces(start, end, pieces, &count);
    if (error) goto out;
    int fd = memfd_create(FFS_MEMFD_NAME, MFD_CLOEXEC);
    if (fd < 0) {
        error = errno;
        goto out;
    }
    if (ftruncate(fd, (off_t)(end - start)) != 0) {
        error = errno;
        close(fd);
        goto out;
    }
    struct move move = {.memfd = fd, .start = start, .pieces = pieces, .count = count, .error = 0};
    pthread_t mover;
    error = pthread_create(&mover, NULL, move_pages, &move);
    if (!error) {
        pthread_join(mover, NULL);
        error = move.error;
    }
    struct ffs_region *r = error ? NULL : malloc(sizeof(*r));
    if (!r) {
        if (!error) error = ENOMEM;
        close(fd);
        goto out;
    }
    *r = (struct ffs_region){.start = start, .end = end, .memfd = fd, .refs = 1, .next = regions};
    regions = r;
    *region = r;
    *memfd = fd;
    *offset = first - start;
out:
    pthread_mutex_unlock(&regions_lock);
    return error;
}

void ffs_region_release(struct ffs_region *region) {
    pthread_mutex_lock(&regions_lock);
    if (--region->refs == 0) {
        for (struct ffs_region **link = &regions; *link; link = &(*link)->next)
            if (*link == region) {
                *link = region->next;
                break;
            }
        /* The mapping keeps the pages; only our descriptor goes. */
        close(region->memfd);
        free(region);
    }
    pthread_mutex_unlock(&regions_lock);
}
