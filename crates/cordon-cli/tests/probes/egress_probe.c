/* Probes of the rules of transparent egress (EGRESS.md), each breaking one
 * on purpose. Run inside a sandbox and outside it (the control); the tests
 * check the host side: which of their servers got connections, which host
 * ports listen. Output: one `name=value` per step, values are 0 or an errno
 * name.
 *
 *   egress_probe unspec-reconnect ALLOWED FORBIDDEN
 *   egress_probe shutdown-bind TARGET BIND_PORT  (TARGET's accept queue is full)
 *   egress_probe closed-bind TARGET BIND_PORT    (TARGET sends a line and closes)
 *   egress_probe hold-ended TARGET N keep|close  (TARGET sends a line and closes)
 *   egress_probe each ADDR:PORT...               (each sends a line and closes)
 *   egress_probe rst-churn CHURN THREADS EACH HOLD  (CHURN and HOLD answer nothing)
 *   egress_probe fastopen PORT
 *   egress_probe race-addr ALLOWED FORBIDDEN ITERATIONS
 *   egress_probe dup2-race ALLOWED FORBIDDEN ITERATIONS
 *   egress_probe bind-device ALLOWED
 *   egress_probe vsock
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static const char *err(int rc) {
    if (rc >= 0) return "0";
    switch (errno) {
    case EINPROGRESS: return "EINPROGRESS";
    case EISCONN: return "EISCONN";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EINVAL: return "EINVAL";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ENETUNREACH: return "ENETUNREACH";
    case EALREADY: return "EALREADY";
    case ENOTCONN: return "ENOTCONN";
    case EADDRINUSE: return "EADDRINUSE";
    default: return strerror(errno);
    }
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int tcp(void) { return socket(AF_INET, SOCK_STREAM, 0); }

/* Rule 2: a handed-over socket disconnected with AF_UNSPEC and connected
 * again elsewhere. */
static int unspec_reconnect(int allowed, int forbidden) {
    int s = tcp();
    struct sockaddr_in a = loopback(allowed), f = loopback(forbidden);
    printf("connect=%s\n", err(connect(s, (void *)&a, sizeof a)));
    struct sockaddr u = {.sa_family = AF_UNSPEC};
    printf("unspec=%s\n", err(connect(s, &u, sizeof u)));
    printf("again=%s\n", err(connect(s, (void *)&f, sizeof f)));
    return 0;
}

/* Rule 3: a socket handed over in SYN_SENT is returned to the unconnected
 * state by shutdown() and then bound to a host port. */
static int shutdown_bind(int target, int bind_port) {
    int s = tcp();
    struct timeval one = {.tv_sec = 1};
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &one, sizeof one);
    fcntl(s, F_SETFL, O_NONBLOCK);
    struct sockaddr_in t = loopback(target);
    printf("connect=%s\n", err(connect(s, (void *)&t, sizeof t)));
    printf("shutdown=%s\n", err(shutdown(s, SHUT_RDWR)));
    struct sockaddr_in b = loopback(bind_port);
    b.sin_addr.s_addr = htonl(INADDR_ANY);
    printf("bind=%s\n", err(bind(s, (void *)&b, sizeof b)));
    printf("listen=%s\n", err(listen(s, 8)));
    /* Hold the port until the test, which tries it on the host, closes
     * our stdin. */
    char c;
    if (read(0, &c, 1) < 0) {}
    return 0;
}

/* Rule 2: a handed-over socket whose connection has ended (the server sent
 * a line and closed, we read to EOF and shut our side down) is bound to a
 * host port: at TCP_CLOSE the kernel gave its port back. Then a socket of
 * the probe's own binds the same port. */
static int closed_bind(int target, int bind_port) {
    int s = tcp();
    struct sockaddr_in t = loopback(target);
    printf("connect=%s\n", err(connect(s, (void *)&t, sizeof t)));
    char buf[64];
    while (read(s, buf, sizeof buf) > 0) {}
    shutdown(s, SHUT_WR);
    int closed = 0;
    for (int i = 0; i < 1000 && !closed; i++) {
        struct tcp_info ti;
        socklen_t l = sizeof ti;
        if (getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0 && ti.tcpi_state == TCP_CLOSE) closed = 1;
        else usleep(10000);
    }
    printf("closed=%s\n", closed ? "0" : "ETIMEDOUT");
    struct sockaddr_in b = loopback(bind_port);
    b.sin_addr.s_addr = htonl(INADDR_ANY);
    printf("bind=%s\n", err(bind(s, (void *)&b, sizeof b)));
    int own = tcp();
    printf("own=%s\n", err(bind(own, (void *)&b, sizeof b)));
    /* Hold the port until the test, which tries it on the host, closes
     * our stdin. */
    char c;
    if (read(0, &c, 1) < 0) {}
    return 0;
}

/* Up to N connections to TARGET, each ended (read to EOF, our side shut
 * down, TCP_CLOSE) and then kept open ("keep": the socket and its unread
 * data stay) or closed. Stops at the first failed connect (with "keep", a
 * 1 s SO_SNDTIMEO bounds cordon's wait at its cap). */
static int hold_ended(int target, int n, int keep) {
    int i;
    for (i = 0; i < n; i++) {
        int s = tcp();
        struct timeval one = {.tv_sec = 1};
        if (keep) setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &one, sizeof one);
        struct sockaddr_in t = loopback(target);
        if (connect(s, (void *)&t, sizeof t) < 0) {
            printf("connected=%d\nfailed=%s\n", i, err(-1));
            return 0;
        }
        char buf[64];
        while (read(s, buf, sizeof buf) > 0) {}
        shutdown(s, SHUT_WR);
        for (int j = 0; j < 500; j++) {
            struct tcp_info ti;
            socklen_t l = sizeof ti;
            if (getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0 && ti.tcpi_state == TCP_CLOSE) break;
            usleep(2000);
        }
        if (!keep) close(s);
    }
    printf("connected=%d\n", i);
    return 0;
}

/* A connect that waits up to 30 s for a slot at the run's cap (for the
 * kernel's late close reports on a loaded host). */
static int connect_waiting(int s, struct sockaddr_in *a, time_t wait_s, suseconds_t wait_us) {
    struct timeval t = {.tv_sec = wait_s, .tv_usec = wait_us};
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &t, sizeof t);
    return connect(s, (void *)a, sizeof *a);
}

/* Review s9 F5: one connection to each destination in turn, read to the
 * end and closed. */
static int each(int argc, char **argv) {
    int i;
    for (i = 0; i < argc; i++) {
        char host[64];
        snprintf(host, sizeof host, "%s", argv[i]);
        char *colon = strrchr(host, ':');
        if (!colon) return 2;
        *colon = 0;
        struct sockaddr_in a = loopback(atoi(colon + 1));
        inet_pton(AF_INET, host, &a.sin_addr);
        int s = tcp();
        if (connect_waiting(s, &a, 30, 0) < 0) {
            printf("connected=%d\nfailed %s=%s\n", i, argv[i], err(-1));
            return 0;
        }
        char buf[64];
        while (read(s, buf, sizeof buf) > 0) {}
        close(s);
    }
    printf("connected=%d\n", i);
    return 0;
}

/* Review s9 F3: threads connect and close with a reset (SO_LINGER {1, 0},
 * before any data), then the run holds as many connections as it can. */
static int churn_port, churn_each;
static atomic_int churned;
static _Atomic(const char *) churn_failed;
static void *churn(void *unused) {
    (void)unused;
    for (int i = 0; i < churn_each; i++) {
        int s = tcp();
        struct sockaddr_in a = loopback(churn_port);
        if (connect_waiting(s, &a, 30, 0) < 0) {
            churn_failed = err(-1);
            close(s);
            return 0;
        }
        atomic_fetch_add(&churned, 1);
        struct linger reset = {.l_onoff = 1, .l_linger = 0};
        setsockopt(s, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
        close(s);
    }
    return 0;
}

static int rst_churn(int port, int threads, int n, int hold_port) {
    churn_port = port;
    churn_each = n;
    pthread_t t[64];
    if (threads > 64) threads = 64;
    for (int i = 0; i < threads; i++) pthread_create(&t[i], 0, churn, 0);
    for (int i = 0; i < threads; i++) pthread_join(t[i], 0);
    printf("churned=%d\n", atomic_load(&churned));
    if (churn_failed) printf("churn failed=%s\n", churn_failed);
    int held = 0;
    struct sockaddr_in h = loopback(hold_port);
    for (; held < 256; held++) {
        int s = tcp();
        if (connect_waiting(s, &h, 30, 0) < 0) {
            printf("held=%d\nfailed=%s\n", held, err(-1));
            return 0;
        }
    }
    printf("held=%d\n", held);
    int s = tcp();
    printf("next=%s\n", err(connect_waiting(s, &h, 0, 100000)));
    return 0;
}

/* Rule 4: MSG_FASTOPEN connects without a connect() call. */
static int fastopen(int port) {
    struct sockaddr_in a = loopback(port);
    int s = tcp();
    printf("sendto=%s\n", err((int)sendto(s, "x", 1, MSG_FASTOPEN, (void *)&a, sizeof a)));
    int m = tcp();
    struct iovec io = {.iov_base = "y", .iov_len = 1};
    struct msghdr msg = {.msg_name = &a, .msg_namelen = sizeof a, .msg_iov = &io, .msg_iovlen = 1};
    printf("sendmsg=%s\n", err((int)sendmsg(m, &msg, MSG_FASTOPEN)));
    return 0;
}

/* Rule 1: another thread rewrites the address during the connect. */
static struct sockaddr_in shared_addr;
static atomic_int stop, flipping;
static int ports[2];

static void *flip(void *unused) {
    (void)unused;
    atomic_store(&flipping, 1);
    for (unsigned i = 0; !atomic_load(&stop); i++)
        ((volatile struct sockaddr_in *)&shared_addr)->sin_port = htons(ports[i & 1]);
    return NULL;
}

static int race_addr(int allowed, int forbidden, int n) {
    ports[0] = allowed;
    ports[1] = forbidden;
    shared_addr = loopback(allowed);
    pthread_t t;
    pthread_create(&t, NULL, flip, NULL);
    while (!atomic_load(&flipping)) sched_yield();
    int ok = 0;
    for (int i = 0; i < n; i++) {
        int s = tcp();
        if (connect(s, (void *)&shared_addr, sizeof shared_addr) == 0) ok++;
        close(s);
        sched_yield();
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("connected=%d\n", ok);
    return 0;
}

/* Rule 1 again: a handed-over socket dup2()ed over a socket whose connect
 * (AF_UNSPEC, then a forbidden port) is pending. */
static int held = -1;
enum { SLOT = 100 };

static void *dup_over(void *unused) {
    (void)unused;
    while (!atomic_load(&stop)) {
        dup2(held, SLOT);
        int s = tcp();
        dup2(s, SLOT);
        close(s);
    }
    return NULL;
}

static int dup2_race(int allowed, int forbidden, int n) {
    struct sockaddr_in a = loopback(allowed), f = loopback(forbidden);
    held = tcp();
    printf("connect=%s\n", err(connect(held, (void *)&a, sizeof a)));
    int first = tcp();
    dup2(first, SLOT);
    close(first);
    pthread_t t;
    pthread_create(&t, NULL, dup_over, NULL);
    struct sockaddr u = {.sa_family = AF_UNSPEC};
    for (int i = 0; i < n; i++) {
        connect(SLOT, &u, sizeof u);
        connect(SLOT, (void *)&f, sizeof f);
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    int rc = getpeername(held, (void *)&peer, &len);
    printf("peer=%s\n", rc == 0 && ntohs(peer.sin_port) == allowed ? "allowed" : err(rc));
    struct sockaddr_in b = loopback(0);
    printf("bind=%s\n", err(bind(held, (void *)&b, sizeof b)));
    printf("listen=%s\n", err(listen(held, 8)));
    return 0;
}

/* Rule 9: a handed-over socket moved onto another interface. */
static int bind_device(int allowed) {
    struct sockaddr_in a = loopback(allowed);
    int s = tcp();
    printf("connect=%s\n", err(connect(s, (void *)&a, sizeof a)));
    printf("bindtodevice=%s\n", err(setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3)));
    int index = 1;
    printf("bindtoifindex=%s\n", err(setsockopt(s, SOL_SOCKET, 62 /* SO_BINDTOIFINDEX */, &index, sizeof index)));
    return 0;
}

/* AF_VSOCK is not namespaced: it would reach the hypervisor. */
static int vsock(void) {
    printf("socket=%s\n", err(socket(AF_VSOCK, SOCK_STREAM, 0)));
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 4 && !strcmp(argv[1], "unspec-reconnect")) return unspec_reconnect(atoi(argv[2]), atoi(argv[3]));
    if (argc >= 4 && !strcmp(argv[1], "shutdown-bind")) return shutdown_bind(atoi(argv[2]), atoi(argv[3]));
    if (argc >= 4 && !strcmp(argv[1], "closed-bind")) return closed_bind(atoi(argv[2]), atoi(argv[3]));
    if (argc >= 5 && !strcmp(argv[1], "hold-ended")) return hold_ended(atoi(argv[2]), atoi(argv[3]), !strcmp(argv[4], "keep"));
    if (argc >= 2 && !strcmp(argv[1], "each")) return each(argc - 2, argv + 2);
    if (argc >= 6 && !strcmp(argv[1], "rst-churn"))
        return rst_churn(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (argc >= 3 && !strcmp(argv[1], "fastopen")) return fastopen(atoi(argv[2]));
    if (argc >= 5 && !strcmp(argv[1], "race-addr")) return race_addr(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    if (argc >= 5 && !strcmp(argv[1], "dup2-race")) return dup2_race(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    if (argc >= 3 && !strcmp(argv[1], "bind-device")) return bind_device(atoi(argv[2]));
    if (argc >= 2 && !strcmp(argv[1], "vsock")) return vsock();
    fprintf(stderr, "usage: see the comment at the top of egress_probe.c\n");
    return 2;
}
