#ifndef PORTCULLIS_CLINUX_SHIM_H
#define PORTCULLIS_CLINUX_SHIM_H
// Linux APIs the Glibc module leaves out (see shared/docs/platform-notes.md).
// Do NOT define _GNU_SOURCE here: it breaks fd_set against the Glibc module.
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <string.h>

#ifndef __USE_GNU
extern int accept4(int, struct sockaddr *__restrict, socklen_t *__restrict, int);
extern void *memmem(const void *, size_t, const void *, size_t);
#endif

static inline int pc_errno(void) { return errno; }
static inline uint64_t pc_monotonic_ns(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline uint64_t pc_realtime_ms(void) {
    struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}
/// Blocks SIGPIPE for the calling thread and its children (set before spawning workers).
static inline void pc_block_sigpipe(void) {
    sigset_t s; sigemptyset(&s); sigaddset(&s, SIGPIPE); pthread_sigmask(SIG_BLOCK, &s, NULL);
}
#endif
