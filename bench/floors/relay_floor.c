/*
 * The least a relay can cost: a plain TCP relay from a loopback port to
 * 127.0.0.1:UPSTREAM, no protocol, no policy, no accounting, one thread per
 * direction, moving bytes with read/write through a 1 MiB buffer ("copy")
 * or with splice(2) through a 1 MiB pipe ("splice", no copy in user space).
 *
 * usage: relay_floor UPSTREAM_PORT copy|splice
 * Prints the port it listens on, then serves until killed.
 * bench/floors.sh runs curl through it next to cordon's proxy.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (1 << 20)

struct pump { int from, to, use_splice; };

static void *pump(void *arg) {
    struct pump *p = arg;
    if (p->use_splice) {
        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC) < 0) goto out;
        fcntl(pipefd[1], F_SETPIPE_SZ, CHUNK);
        for (;;) {
            ssize_t n = splice(p->from, NULL, pipefd[1], NULL, CHUNK, SPLICE_F_MOVE);
            if (n <= 0) break;
            while (n > 0) {
                ssize_t m = splice(pipefd[0], NULL, p->to, NULL, (size_t)n, SPLICE_F_MOVE);
                if (m <= 0) goto out;
                n -= m;
            }
        }
    } else {
        char *buf = malloc(CHUNK);
        for (ssize_t n; buf && (n = read(p->from, buf, CHUNK)) > 0;) {
            for (char *q = buf; n > 0;) {
                ssize_t m = write(p->to, q, (size_t)n);
                if (m <= 0) goto out;
                n -= m;
                q += m;
            }
        }
    }
out:
    shutdown(p->to, SHUT_WR);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s UPSTREAM_PORT copy|splice\n", argv[0]);
        return 2;
    }
    int use_splice = strcmp(argv[2], "splice") == 0;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, len) < 0 || listen(listener, 64) < 0 ||
        getsockname(listener, (struct sockaddr *)&addr, &len) < 0) {
        perror("relay_floor: listen");
        return 1;
    }
    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    signal(SIGCHLD, SIG_IGN);
    struct sockaddr_in upstream = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (;;) {
        int client = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0) continue;
        if (fork() == 0) {
            int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (server < 0 || connect(server, (struct sockaddr *)&upstream, sizeof upstream) < 0) _exit(1);
            struct pump up = {client, server, use_splice}, down = {server, client, use_splice};
            pthread_t t;
            pthread_create(&t, NULL, pump, &up);
            pump(&down);
            pthread_join(t, NULL);
            _exit(0);
        }
        close(client);
    }
}
