/*
 * Zero-copy registration: the router can only register memory it can map, so ibv_reg_mr moves the pages
 * covering the buffer into a memfd mapped at the same addresses (copied once), and hands the memfd over.
 * Registrations of pages already moved reuse the same memfd (a region), so overlapping MRs see the same
 * bytes. When a region's last MR goes, its pages move back into private anonymous memory the same way:
 * the program's memory stays valid, and memfd-backed pages are exactly those of live regions, which a
 * forked child turns private at once (it must not write into its parent's registered buffers, which a
 * shared mapping would let it do).
 *
 * What is moved: private anonymous memory (malloc, anonymous mmap, aligned_alloc, the heap, stacks),
 * private MAP_HUGETLB memory (into a hugetlb memfd of the same page size, so it stays on huge pages), the
 * writable segments of loaded objects (a program's .data and .bss) and pages this library moved before.
 * Refused with a reason on stderr and EINVAL: other file-backed and shared mappings (their pages belong to
 * a file or another process), unreadable pages, gaps, a range mixing huge and normal pages, and a range
 * that takes huge pages from a live region and pages from elsewhere.
 *
 * Regions never overlap. A registration inside one live region shares it; any other registration is split
 * into the parts already inside live regions (shared, at their offsets) and the gaps between them (each
 * moved into a new region), and the MR holds one reference on every region it uses: the router receives
 * one segment per region (protocol capability memorySegments) and maps them side by side.
 */
#define _GNU_SOURCE
#include "resources.h"

#include <errno.h>
#include <linux/memfd.h>
#include <inttypes.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define FFS_MEMFD_NAME "ffclient-mr"
#define FFS_MAX_PIECES 64

struct piece {
    uintptr_t start, end;
    int prot;
};

struct ffs_region {
    uintptr_t start, end; /* aligned to page */
    size_t page;          /* the page size of every piece: the base page, or a huge page size */
    int memfd;
    unsigned refs;
    int count;            /* the mappings it covered, with their protections */
    struct piece pieces[FFS_MAX_PIECES];
    struct ffs_region *next;
};

static pthread_mutex_t regions_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ffs_region *regions;

void ffs_refuse(const char *why, uintptr_t start, uintptr_t end) {
    fprintf(stderr, "libffclient: ibv_reg_mr: cannot register 0x%" PRIxPTR "-0x%" PRIxPTR ": %s\n", start, end,
            why);
}

struct segment_query {
    uintptr_t start, end;
    long page;
};

static int covers(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    const struct segment_query *q = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W)) continue;
        uintptr_t lo = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)(q->page - 1);
        uintptr_t hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + (uintptr_t)q->page - 1)
                       & ~(uintptr_t)(q->page - 1);
        if (q->start >= lo && q->end <= hi) return 1;
    }
    return 0;
}

/* Whether [start, end) lies in the writable PT_LOAD segment of a loaded object (the program or a library). */
static int in_writable_segment(uintptr_t start, uintptr_t end) {
    struct segment_query query = {.start = start, .end = end, .page = sysconf(_SC_PAGESIZE)};
    return dl_iterate_phdr(covers, &query) != 0;
}

/* The kernel page size of the mapping starting at `lo`, from /proc/self/smaps; 0 if it cannot be read. */
static size_t mapping_page_size(uintptr_t lo) {
    FILE *smaps = fopen("/proc/self/smaps", "re");
    if (!smaps) return 0;
    char line[4096];
    int inside = 0;
    size_t page = 0;
    while (!page && fgets(line, sizeof(line), smaps)) {
        uintptr_t from, to;
        unsigned long kib;
        /* A mapping's header line starts "lo-hi "; its fields ("Size:", "AnonHugePages:", ...) never parse so. */
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &from, &to) == 2)
            inside = from == lo;
        else if (inside && sscanf(line, "KernelPageSize: %lu kB", &kib) == 1)
            page = (size_t)kib * 1024;
    }
    fclose(smaps);
    return page;
}

/* The mappings covering [start, end), from /proc/self/maps, and their page size; 0 or an errno (with the
 * reason printed). */
static int find_pieces(uintptr_t start, uintptr_t end, struct piece *pieces, int *count, size_t *page) {
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
            ffs_refuse("part of the range is not mapped", start, end);
            error = EFAULT;
            break;
        }
        char *name = line + name_at;
        name[strcspn(name, "\n")] = '\0';
        int ours = strncmp(name, "/memfd:" FFS_MEMFD_NAME, strlen("/memfd:" FFS_MEMFD_NAME)) == 0;
        int huge = perms[3] == 'p' && strncmp(name, "/anon_hugepage", strlen("/anon_hugepage")) == 0;
        /* A loaded object's writable segment (a program's .data and .bss: rdma_server's static buffers) is a private
         * file mapping whose pages are the process's own copies, which moving keeps, as for anonymous memory. */
        uintptr_t piece_start = lo > start ? lo : start, piece_end = hi < end ? hi : end;
        int anonymous = perms[3] == 'p' &&
                        (inode == 0 || huge || (perms[1] == 'w' && in_writable_segment(piece_start, piece_end)));
        if (!ours && !anonymous) {
            ffs_refuse(perms[3] == 's' ? "a shared mapping (moving its pages would unshare them from the other "
                                         "mappings)"
                                   : "a file-backed mapping (its pages belong to the file)",
                   start, end);
            error = EINVAL;
            break;
        }
        if (perms[0] != 'r') {
            ffs_refuse("unreadable pages", start, end);
            error = EFAULT;
            break;
        }
        if (n == FFS_MAX_PIECES) {
            ffs_refuse("the range spans too many mappings", start, end);
            error = EINVAL;
            break;
        }
        size_t size = huge || ours ? mapping_page_size(lo) : (size_t)sysconf(_SC_PAGESIZE);
        if (size == 0) {
            ffs_refuse("its page size is unknown (/proc/self/smaps)", start, end);
            error = EINVAL;
            break;
        }
        if (n > 0 && size != *page) {
            ffs_refuse("it mixes huge and normal pages", start, end);
            error = EINVAL;
            break;
        }
        *page = size;
        pieces[n].start = covered;
        pieces[n].end = hi < end ? hi : end;
        pieces[n].prot = PROT_READ | (perms[1] == 'w' ? PROT_WRITE : 0) | (perms[2] == 'x' ? PROT_EXEC : 0);
        covered = pieces[n].end;
        n++;
    }
    fclose(maps);
    if (!error && covered < end) {
        ffs_refuse("part of the range is not mapped", start, end);
        error = EFAULT;
    }
    *count = n;
    return error;
}

struct move {
    int memfd;            /* the destination; -1 for private anonymous memory */
    uintptr_t start;      /* the address of the memfd's first byte */
    size_t page;          /* the pieces' page size: private memory gets pages of that size again */
    const struct piece *pieces;
    int count;
    int error;
};

/* The flags that ask mmap or memfd_create for pages of `page` bytes: none for the base page size. */
static int huge_flags(size_t page, int hugetlb, int shift) {
    if (page <= (size_t)sysconf(_SC_PAGESIZE)) return 0;
    return hugetlb | (__builtin_ctzl(page) << shift);
}

/*
 * Copies each piece into its destination through a temporary mapping, then mremaps that mapping over the
 * original in one step, keeping the piece's protection. The range may hold the running thread's stack, so
 * this never runs on it: a write to the range between the copy and the remap would be lost.
 */
static void move_pieces(struct move *move) {
    for (int i = 0; i < move->count; i++) {
        const struct piece *p = &move->pieces[i];
        size_t len = p->end - p->start;
        void *temp = move->memfd >= 0
            ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, move->memfd, (off_t)(p->start - move->start))
            : mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | huge_flags(move->page, MAP_HUGETLB,
                MAP_HUGE_SHIFT),
                   -1, 0);
        if (temp == MAP_FAILED) {
            move->error = errno;
            return;
        }
        memcpy(temp, (void *)p->start, len);
        if (mprotect(temp, len, p->prot) != 0 ||
            mremap(temp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)p->start) == MAP_FAILED) {
            move->error = errno;
            munmap(temp, len);
            return;
        }
    }
}

static void *move_thread(void *argument) {
    move_pieces(argument);
    return NULL;
}

/* Moves on a short-lived thread; the caller sleeps in pthread_join meanwhile, so none of its writes can
 * fall between a copy and its remap. 0 or an errno. */
static int move_aside(struct move *move) {
    pthread_t mover;
    int error = pthread_create(&mover, NULL, move_thread, move);
    if (error) return error;
    pthread_join(mover, NULL);
    return move->error;
}

/*
 * fork(2): the child's copy of every live region becomes private anonymous memory again before the child
 * runs anything else. A child has one thread, and must not create more here, so the moves run on a
 * static stack of their own (swapcontext) instead of the caller's.
 */
static char child_stack[64 * 1024] __attribute__((aligned(16)));
static ucontext_t child_caller, child_mover;

static void privatize_regions(void) {
    for (struct ffs_region *r = regions; r; r = r->next) {
        struct move move = {.memfd = -1, .start = r->start, .page = r->page, .pieces = r->pieces, .count = r->count};
        move_pieces(&move);
        close(r->memfd);
    }
}

static void forked_child(void) {
    if (!regions) return;
    if (getcontext(&child_mover) == 0) {
        child_mover.uc_stack.ss_sp = child_stack;
        child_mover.uc_stack.ss_size = sizeof(child_stack);
        child_mover.uc_link = &child_caller;
        makecontext(&child_mover, privatize_regions, 0);
        swapcontext(&child_caller, &child_mover);
    }
    /* The inherited MRs are the parent's: the child's calls on them fail before they reach a region. */
    regions = NULL;
    pthread_mutex_init(&regions_lock, NULL);
}

static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;
static void install_fork_handler(void) { pthread_atfork(NULL, NULL, forked_child); }

/* A new region over [start, end): its pages moved into a memfd. `alone`: the registration is this one region,
 * so it may be on huge pages (and grow to whole ones); a part of a composite registration may not. Called
 * with regions_lock held. */
static int region_create(uintptr_t start, uintptr_t end, int alone, struct ffs_region **out) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    struct ffs_region *r = calloc(1, sizeof(*r));
    if (!r) return ENOMEM;
    size_t size = page;
    int error = find_pieces(start, end, r->pieces, &r->count, &size);
    if (!error && size != page && !alone) {
        ffs_refuse("it overlaps an earlier registration and needs huge pages besides (huge-page memory registers as "
                   "one piece)",
                   start, end);
        error = EINVAL;
    }
    if (!error && size != page) {
        /* Huge pages: the region covers whole ones (a hugetlb mapping is aligned to its page size). */
        start &= ~(uintptr_t)(size - 1);
        end = end > UINTPTR_MAX - size ? 0 : (end + size - 1) & ~(uintptr_t)(size - 1);
        if (end == 0) error = EINVAL;
        else error = find_pieces(start, end, r->pieces, &r->count, &size);
    }
    if (error) {
        free(r);
        return error;
    }
    /* Sealable, so that a router that copies registered memory itself (ffrouter --fake-device) can seal it against
     * shrinking; kernels before 4.16 refuse sealing on hugetlb memfds, and then the memfd is made without it. */
    unsigned flags = MFD_CLOEXEC | huge_flags(size, MFD_HUGETLB, MFD_HUGE_SHIFT);
    int fd = memfd_create(FFS_MEMFD_NAME, flags | MFD_ALLOW_SEALING);
    if (fd < 0 && errno == EINVAL) fd = memfd_create(FFS_MEMFD_NAME, flags);
    if (fd < 0 || ftruncate(fd, (off_t)(end - start)) != 0) {
        error = errno;
        if (fd >= 0) close(fd);
        free(r);
        return error;
    }
    struct move move = {.memfd = fd, .start = start, .page = size, .pieces = r->pieces, .count = r->count};
    error = move_aside(&move);
    if (error) {
        /* Pieces already moved hold the same bytes in the memfd: the memory stays valid either way. */
        close(fd);
        free(r);
        return error;
    }
    r->start = start;
    r->end = end;
    r->page = size;
    r->memfd = fd;
    r->refs = 1;
    r->next = regions;
    regions = r;
    *out = r;
    return 0;
}

/* Drops one reference; the last one moves the pages back into private memory. Called with regions_lock held. */
static void region_drop(struct ffs_region *region) {
    if (--region->refs) return;
    for (struct ffs_region **link = &regions; *link; link = &(*link)->next)
        if (*link == region) {
            *link = region->next;
            break;
        }
    /* Back into private anonymous memory; if that fails, the memfd mapping keeps the bytes valid. */
    struct move move = {.memfd = -1, .start = region->start, .page = region->page, .pieces = region->pieces,
                        .count = region->count};
    move_aside(&move);
    close(region->memfd);
    free(region);
}

static int by_start(const void *a, const void *b) {
    uintptr_t x = (*(struct ffs_region *const *)a)->start, y = (*(struct ffs_region *const *)b)->start;
    return x < y ? -1 : x > y;
}

/* The regions making up [start, end), in address order: the live ones it overlaps (one more reference each)
 * and new ones for the gaps between them. Called with regions_lock held. */
static int collect_parts(uintptr_t start, uintptr_t end, struct ffs_region **parts, int *count) {
    struct ffs_region *hits[FFS_MAX_SEGMENTS];
    int n = 0;
    for (struct ffs_region *r = regions; r; r = r->next) {
        if (!(start < r->end && r->start < end)) continue;
        if (n == FFS_MAX_SEGMENTS) {
            ffs_refuse("it overlaps too many earlier registrations", start, end);
            return EINVAL;
        }
        hits[n++] = r;
    }
    if (n == 1 && hits[0]->start <= start && end <= hits[0]->end) {
        /* Inside (or equal to) one region: share it, whatever its page size. */
        hits[0]->refs++;
        parts[0] = hits[0];
        *count = 1;
        return 0;
    }
    if (n == 0) {
        *count = 0;
        int error = region_create(start, end, 1, &parts[0]);
        if (!error) *count = 1;
        return error;
    }
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < n; i++)
        if (hits[i]->page != page) {
            ffs_refuse("it partly overlaps a registration on huge pages (huge-page memory registers as one piece)",
                       start, end);
            return EINVAL;
        }
    qsort(hits, (size_t)n, sizeof(hits[0]), by_start);
    int error = 0, k = 0;
    uintptr_t cursor = start;
    for (int i = 0; i <= n && !error && cursor < end; i++) {
        uintptr_t next = i < n ? hits[i]->start : end;
        if (next > cursor) {
            if (k == FFS_MAX_SEGMENTS) {
                ffs_refuse("it overlaps too many earlier registrations", start, end);
                error = EINVAL;
                break;
            }
            error = region_create(cursor, next < end ? next : end, 0, &parts[k]);
            if (error) break;
            k++;
        }
        if (i == n) break;
        if (k == FFS_MAX_SEGMENTS) {
            ffs_refuse("it overlaps too many earlier registrations", start, end);
            error = EINVAL;
            break;
        }
        hits[i]->refs++;
        parts[k++] = hits[i];
        cursor = hits[i]->end;
    }
    if (error)
        while (k > 0) region_drop(parts[--k]);
    *count = k;
    return error;
}

int ffs_region_acquire(void *addr, size_t length, struct ffs_region ***regions_out, int *count,
                       ffshim_segment *segments) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t first = (uintptr_t)addr;
    if (length > UINTPTR_MAX - first - page) return EINVAL;
    uintptr_t start = first & ~(page - 1);
    uintptr_t end = (first + length + page - 1) & ~(page - 1);
    struct ffs_region **parts = calloc(FFS_MAX_SEGMENTS, sizeof(*parts));
    if (!parts) return ENOMEM;

    pthread_mutex_lock(&regions_lock);
    pthread_once(&fork_handler_once, install_fork_handler);
    int n = 0;
    int error = collect_parts(start, end, parts, &n);
    pthread_mutex_unlock(&regions_lock);
    if (error) {
        free(parts);
        return error;
    }
    /* One segment per region: the buffer's bytes inside it, at their offset in its memfd. */
    for (int i = 0; i < n; i++) {
        uintptr_t lo = parts[i]->start > first ? parts[i]->start : first;
        uintptr_t hi = parts[i]->end < first + length ? parts[i]->end : first + length;
        segments[i] = (ffshim_segment){.memfd = parts[i]->memfd, .offset = lo - parts[i]->start, .length = hi - lo};
    }
    struct ffs_region **kept = realloc(parts, (size_t)n * sizeof(*parts));
    *regions_out = kept ? kept : parts;
    *count = n;
    return 0;
}

void ffs_region_release(struct ffs_region **parts, int count) {
    pthread_mutex_lock(&regions_lock);
    for (int i = 0; i < count; i++) region_drop(parts[i]);
    pthread_mutex_unlock(&regions_lock);
    free(parts);
}
