// CLibevent: the C surface of libevent 2.1 that the EventLoop module uses.
//
// Only what Swift cannot import directly lives here (function-like macros), each prefixed `ra_`
// and commented with why. Everything else is imported straight from the event2 headers.
#ifndef REDIS_AMBASSADOR_CLIBEVENT_SHIM_H
#define REDIS_AMBASSADOR_CLIBEVENT_SHIM_H

// The system headers must come first: event2/event-config.h defines _GNU_SOURCE, and a debug build
// then fails with "'fds_bits' ... not present in definition of 'fd_set'" (LIBEVENT-NOTES.md #5).
#include <sys/types.h>
#include <sys/time.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <unistd.h>
#include <errno.h>

#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/util.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

// `evsignal_new` is a function-like macro (event_new with EV_SIGNAL|EV_PERSIST): not importable.
static inline struct event *ra_evsignal_new(struct event_base *base, int signum,
                                            event_callback_fn callback, void *arg) {
    return evsignal_new(base, signum, callback, arg);
}

// `accept4` is declared by <sys/socket.h> only under _GNU_SOURCE, which Swift's Glibc module is not
// built with: declare it (glibc has exported it since 2.10) so an accepted socket is non-blocking
// and close-on-exec in one system call instead of three.
extern int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);

// `pthread_setname_np` is declared by <pthread.h> only under _GNU_SOURCE too: declared here so a
// worker thread shows as `worker-0` in top and gdb (glibc has exported it since 2.12).
#include <pthread.h>
extern int pthread_setname_np(pthread_t thread, const char *name);

// Whether the peer of a connected socket hung up (FIN or reset), without reading: poll for
// POLLRDHUP (Linux's value, which <poll.h> shows only under _GNU_SOURCE).
#include <poll.h>
#ifndef POLLRDHUP
#define POLLRDHUP 0x2000
#endif
static inline int ra_peer_hung_up(int fd) {
    struct pollfd p = { .fd = fd, .events = POLLRDHUP, .revents = 0 };
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

static inline int ra_accept_nonblocking(int listen_fd) {
    return accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

// glibc's allocator tunables live in <malloc.h>, which Swift's Glibc module does not import.
#include <malloc.h>
// The process's heap: bytes in use (incl. mmapped blocks) and free inside the arenas.
static inline void ra_heap_usage(size_t *in_use, size_t *free_bytes) {
    struct mallinfo2 m = mallinfo2();
    *in_use = m.uordblks + m.hblkhd;
    *free_bytes = m.fordblks;
}
static inline void ra_keep_freed_memory(int trim_threshold, int top_pad) {
    mallopt(M_TRIM_THRESHOLD, trim_threshold);
    mallopt(M_TOP_PAD, top_pad);
}

// `evutil_socket_t` is a macro for `int` on POSIX, so Swift sees plain Int32 everywhere.

#endif
