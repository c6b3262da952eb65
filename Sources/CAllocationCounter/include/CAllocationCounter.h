#ifndef FF_ALLOCATION_COUNTER_H
#define FF_ALLOCATION_COUNTER_H

#include <stdint.h>

// Test and benchmark support (never linked into ffrouter or libffclient): a process that links this target gets a
// malloc, calloc, realloc, memalign, aligned_alloc and posix_memalign that forward to glibc's allocator and, while
// counting is on, count the calls one thread makes. Swift's heap objects, arrays and boxes all come from these, so
// the count says whether a loop on that thread allocates.

/// Starts counting the allocations of the thread whose pthread_self() is `thread` (0 stops), from zero.
void ff_allocations_count_thread(uintptr_t thread);

/// Allocations counted since the last ff_allocations_count_thread.
uint64_t ff_allocations_counted(void);

/// pthread_self() of the calling thread, as ff_allocations_count_thread takes it.
uintptr_t ff_allocations_this_thread(void);

#endif
