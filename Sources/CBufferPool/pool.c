// The buffer pool, in C because it is libevent's allocator (event_set_mem_functions takes C
// function pointers, called on every evbuffer chain allocation): plain C with a thread-local free
// list, no Swift runtime on that path. Declared in include/ra_buffer_pool.h.
#include <event2/event.h>
#include "ra_buffer_pool.h"

// A per-thread free list of libevent's buffer blocks, installed with event_set_mem_functions.
// libevent frees an evbuffer chain as soon as its bytes are written or moved on, and allocates a
// new one for the next read: without a pool that is a malloc/free pair per request (blocks of
// 1-16 KiB, above glibc's tcache). Like twemproxy's free mbuf queue, freed blocks wait here for
// reuse: in steady state no block reaches malloc. Each thread has its own lists (an event base is
// driven by one thread), and a block freed on another thread simply joins that thread's lists.
// Blocks carry a 16-byte header with their size class. Only buffer-sized blocks (1-64 KiB) are
// pooled: small ones (events, evbuffer heads) keep their exact size, so an idle connection costs
// no more than with malloc (rounding its two ~130-byte events up to 256 B cost ~150 B each).
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/prctl.h>

#define RA_POOL_CLASSES 7           /* 1 KiB << 0 ... 64 KiB */
#define RA_POOL_MIN_SHIFT 10
#define RA_POOL_KEEP_BYTES (4u << 20)  /* at most this much kept per thread */

typedef struct ra_pool_block { struct ra_pool_block *next; } ra_pool_block;
typedef struct { ra_pool_block *free[RA_POOL_CLASSES]; size_t kept; } ra_pool_state;
static __thread ra_pool_state pool_state;
static inline ra_pool_state *ra_pool_state_here(void) { return &pool_state; }

static inline int ra_pool_class(size_t size) {
    if (size < ((size_t)1 << (RA_POOL_MIN_SHIFT - 1))) return -1;  /* under 512 B: not a buffer */
    size_t capacity = (size_t)1 << RA_POOL_MIN_SHIFT;
    for (int c = 0; c < RA_POOL_CLASSES; c++, capacity <<= 1) {
        if (size <= capacity) return c;
    }
    return -1;
}

static void *ra_pool_malloc(size_t size) {
    ra_pool_state *pool = ra_pool_state_here();
    int c = ra_pool_class(size);
    size_t capacity = c < 0 ? size : ((size_t)1 << (RA_POOL_MIN_SHIFT + c));
    if (c >= 0 && pool->free[c]) {
        ra_pool_block *block = pool->free[c];
        pool->free[c] = block->next;
        pool->kept -= capacity;
        return block;
    }
    uint64_t *header = (uint64_t *)malloc(16 + capacity);
    if (!header) return NULL;
    header[0] = (uint64_t)(int64_t)c;
    header[1] = (uint64_t)capacity;
    return header + 2;
}

static void ra_pool_free(void *pointer) {
    if (!pointer) return;
    ra_pool_state *pool = ra_pool_state_here();
    uint64_t *header = (uint64_t *)pointer - 2;
    int c = (int)(int64_t)header[0];
    size_t capacity = (size_t)header[1];
    if (c >= 0 && pool->kept + capacity <= RA_POOL_KEEP_BYTES) {
        ra_pool_block *block = (ra_pool_block *)pointer;
        block->next = pool->free[c];
        pool->free[c] = block;
        pool->kept += capacity;
        return;
    }
    free(header);
}

static void *ra_pool_realloc(void *pointer, size_t size) {
    if (!pointer) return ra_pool_malloc(size);
    uint64_t *header = (uint64_t *)pointer - 2;
    size_t capacity = (size_t)header[1];
    if (size <= capacity) return pointer;
    void *moved = ra_pool_malloc(size);
    if (!moved) return NULL;
    memcpy(moved, pointer, capacity);
    ra_pool_free(pointer);
    return moved;
}

// Frees every block this thread keeps, and gives glibc's free memory back to the kernel: for a
// loop that has gone quiet after a burst, so the Pod's memory comes back down. malloc_trim
// returns free pages inside every arena but trims only the main arena's top: a worker thread's
// arena keeps what was freed next to its top while that stays under M_TRIM_THRESHOLD (set high,
// 8 MiB, for the busy path). So the threshold and the pad drop for a moment, and freeing one
// 96 KiB block (not a tcache or fastbin size, under the mmap threshold) makes glibc trim this
// thread's arena; then `trim_threshold` and `top_pad` are restored.
#include <malloc.h>
void ra_release_idle_memory(int trim_threshold, int top_pad) {
    ra_pool_state *pool = ra_pool_state_here();
    for (int c = 0; c < RA_POOL_CLASSES; c++) {
        while (pool->free[c]) {
            ra_pool_block *block = pool->free[c];
            pool->free[c] = block->next;
            free((uint64_t *)block - 2);
        }
    }
    pool->kept = 0;
    if (trim_threshold > 0) {
        mallopt(M_TOP_PAD, 0);
        mallopt(M_TRIM_THRESHOLD, 64 * 1024);
        void *block = malloc(96 * 1024);
        free(block);
    }
    malloc_trim(0);
    if (trim_threshold > 0) {
        mallopt(M_TRIM_THRESHOLD, trim_threshold);
        mallopt(M_TOP_PAD, top_pad);
    }
}

void ra_install_buffer_pool(void) {
    event_set_mem_functions(ra_pool_malloc, ra_pool_realloc, ra_pool_free);
}


void ra_set_timer_slack(unsigned long nanoseconds) {
    (void)prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0);
}
