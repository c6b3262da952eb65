// A counting front for glibc's allocator; see include/CAllocationCounter.h. The functions below take the place of
// glibc's for the whole process (the executable's definitions win symbol resolution) and call glibc's own entry points
// (__libc_malloc and friends), so every block still comes from, and goes back to, the one glibc heap: free is not
// wrapped. While nothing is counted, the cost is one relaxed atomic load per call.
#include "CAllocationCounter.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

static _Atomic uintptr_t counted_thread;
static _Atomic uint64_t counted;

static inline void note(void) {
    uintptr_t thread = atomic_load_explicit(&counted_thread, memory_order_relaxed);
    if (thread != 0 && (uintptr_t)pthread_self() == thread) atomic_fetch_add_explicit(&counted, 1,
        memory_order_relaxed);
}

void ff_allocations_count_thread(uintptr_t thread) {
    atomic_store(&counted_thread, 0);
    atomic_store(&counted, 0);
    atomic_store(&counted_thread, thread);
}

uint64_t ff_allocations_counted(void) { return atomic_load(&counted); }

uintptr_t ff_allocations_this_thread(void) { return (uintptr_t)pthread_self(); }

void *malloc(size_t size) {
    note();
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    note();
    return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
    note();
    return __libc_realloc(pointer, size);
}

void *memalign(size_t alignment, size_t size) {
    note();
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    note();
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    note();
    // posix_memalign(3): a power of two that is a multiple of sizeof(void *).
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment % sizeof(void *) != 0) return EINVAL;
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL) return ENOMEM;
    *out = pointer;
    return 0;
}
