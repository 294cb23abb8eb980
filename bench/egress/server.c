/* bench/egress.sh's server: HTTP/1.1 on 127.0.0.1 (port printed on
 * stdout), `GET /bytes/N` answered with N bytes sent by sendfile(2) from a
 * sparse memfd (no copy through user space, no disk), one request per
 * connection. Fast enough that the client and the path between them are
 * what a download measures.
 *
 *   cc -O2 -pthread -o server server.c && ./server
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BYTES (4L << 30)
/* The body is this much data, filled once, sent again and again: a sparse
 * file would send the zero page, which the kernel splices slowly. */
#define CHUNK (64L << 20)

static int body;

static void *serve(void *arg) {
    int c = (int)(long)arg;
    char head[4096];
    size_t got = 0;
    while (got < sizeof head - 1) {
        ssize_t n = read(c, head + got, sizeof head - 1 - got);
        if (n <= 0) goto out;
        got += n;
        head[got] = 0;
        if (strstr(head, "\r\n\r\n")) break;
    }
    long size = 0;
    char *p = strstr(head, "/bytes/");
    if (p) size = atol(p + 7);
    if (size < 0 || size > MAX_BYTES) size = 0;
    char reply[128];
    int len = snprintf(reply, sizeof reply, "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\nConnection: close\r\n\r\n", size);
    if (write(c, reply, len) != len) goto out;
    for (long left = size; left > 0;) {
        off_t off = 0;
        long want = left < CHUNK ? left : CHUNK;
        while (off < want) {
            ssize_t n = sendfile(c, body, &off, want - off);
            if (n <= 0) goto out;
        }
        left -= want;
    }
    shutdown(c, SHUT_WR);
    /* Drain until the client closes, so the close is not a reset. */
    while (read(c, head, sizeof head) > 0) {}
out:
    close(c);
    return NULL;
}

int main(void) {
    body = memfd_create("body", MFD_CLOEXEC);
    static char block[1 << 20];
    memset(block, 'x', sizeof block);
    for (long i = 0; i < CHUNK; i += sizeof block)
        if (body < 0 || write(body, block, sizeof block) != sizeof block) { perror("memfd"); return 1; }
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l, (void *)&a, sizeof a) < 0 || listen(l, 1024) < 0) { perror("listen"); return 1; }
    socklen_t al = sizeof a;
    getsockname(l, (void *)&a, &al);
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, serve, (void *)(long)c) != 0) close(c);
    }
}
