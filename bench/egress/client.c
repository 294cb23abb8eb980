/* bench/egress.sh's client. Measures inside the process, so cordon's own
 * start-up is not counted: only the path between client and server.
 *
 *   client download HOST PORT BYTES    prints MB/s (10^6 bytes), connect to last byte
 *   client connect HOST PORT N         N connections one after another, each
 *                                      GET /bytes/1024 and close; prints µs per
 *                                      connection
 *
 * With `http_proxy`/`HTTPS_PROXY` set (cordon --net-via proxy), every
 * connection is a CONNECT tunnel through that proxy.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 20];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int dial(const char *host, const char *port) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0) { fprintf(stderr, "cannot resolve %s\n", host); exit(1); }
    int s = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(s, res->ai_addr, res->ai_addrlen) < 0) { perror("connect"); exit(1); }
    freeaddrinfo(res);
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
}

/* A connection to HOST:PORT, through the proxy from the environment if any. */
static int open_to(const char *host, const char *port) {
    const char *proxy = getenv("HTTPS_PROXY");
    if (!proxy) proxy = getenv("http_proxy");
    if (!proxy || !*proxy) return dial(host, port);
    char ph[256], pp[16];
    if (sscanf(proxy, "http://%255[^:]:%15[0-9]", ph, pp) != 2) { fprintf(stderr, "bad proxy %s\n", proxy); exit(1); }
    int s = dial(ph, pp);
    int n = snprintf(buf, sizeof buf, "CONNECT %s:%s HTTP/1.1\r\nHost: %s:%s\r\n\r\n", host, port, host, port);
    if (write(s, buf, n) != n) { perror("proxy"); exit(1); }
    size_t got = 0;
    while (!memmem(buf, got, "\r\n\r\n", 4)) {
        ssize_t r = read(s, buf + got, 1);
        if (r <= 0) { fprintf(stderr, "proxy closed\n"); exit(1); }
        got += r;
    }
    if (strncmp(buf, "HTTP/1.1 200", 12)) { fprintf(stderr, "proxy refused: %.*s\n", (int)got, buf); exit(1); }
    return s;
}

/* GET /bytes/N; returns the bytes received after the head. */
static long get(const char *host, const char *port, long size) {
    int s = open_to(host, port);
    int n = snprintf(buf, sizeof buf, "GET /bytes/%ld HTTP/1.1\r\nHost: %s\r\n\r\n", size, host);
    if (write(s, buf, n) != n) { perror("write"); exit(1); }
    long total = 0;
    ssize_t r;
    while ((r = read(s, buf, sizeof buf)) > 0) total += r;
    close(s);
    return total;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: client download|connect HOST PORT N\n"); return 2; }
    long n = atol(argv[4]);
    double t0 = now();
    if (!strcmp(argv[1], "download")) {
        long got = get(argv[2], argv[3], n);
        double t = now() - t0;
        if (got < n) { fprintf(stderr, "short download: %ld of %ld\n", got, n); return 1; }
        printf("%.1f\n", n / t / 1e6);
    } else {
        for (long i = 0; i < n; i++) get(argv[2], argv[3], 1024);
        printf("%.1f\n", (now() - t0) / n * 1e6);
    }
    return 0;
}
