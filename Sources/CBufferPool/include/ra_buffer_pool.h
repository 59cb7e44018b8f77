#ifndef RA_BUFFER_POOL_H
#define RA_BUFFER_POOL_H

// Installs a per-thread pool of libevent's buffer blocks as libevent's allocator (see pool.c).
// Must run before libevent allocates anything (the first event base).
void ra_install_buffer_pool(void);
void ra_release_idle_memory(int trim_threshold, int top_pad);
// The calling thread's timer slack (prctl PR_SET_TIMERSLACK; prctl is variadic, so not callable from Swift).
void ra_set_timer_slack(unsigned long nanoseconds);

#endif
