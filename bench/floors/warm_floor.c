/*
 * The least a launcher backed by a warm server (a "zygote" holding
 * pre-made sandboxes) can cost: the client connects to a unix socket,
 * asks for a run, and waits for the status; the server starts /bin/true
 * with CLONE_VM|CLONE_VFORK, waits, and answers. No namespaces, no
 * Landlock, no seccomp, no audit record: the client's own exec plus one
 * round trip is all that is left.
 *
 * usage: warm_floor serve SOCKET     (runs until killed)
 *        warm_floor SOCKET           (one run; exit status of /bin/true)
 * bench/floors.sh builds it statically and times it against bare /bin/true.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static char command_stack[64 * 1024];

static int command(void *arg) {
    (void)arg;
    char *argv[] = {"/bin/true", NULL}, *envp[] = {NULL};
    execve(argv[0], argv, envp);
    _exit(127);
}

int main(int argc, char **argv) {
    int serve = argc == 3 && strcmp(argv[1], "serve") == 0;
    if (argc != 2 && !serve) {
        fprintf(stderr, "usage: %s [serve] SOCKET\n", argv[0]);
        return 2;
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", argv[argc - 1]);
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    char byte = 0;
    int status = 0;
    if (!serve) {
        if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0 || write(sock, &byte, 1) != 1 ||
            read(sock, &status, sizeof status) != sizeof status)
            return 100;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 101;
    }
    unlink(addr.sun_path);
    if (sock < 0 || bind(sock, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(sock, 64) < 0) {
        perror("warm_floor: listen");
        return 1;
    }
    for (;;) {
        int client = accept4(sock, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0) continue;
        if (read(client, &byte, 1) == 1) {
            pid_t pid = clone(command, command_stack + sizeof command_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL);
            if (pid < 0 || waitpid(pid, &status, 0) < 0) status = 0x7f00;
            if (write(client, &status, sizeof status) < 0) perror("warm_floor: answer");
        }
        close(client);
    }
}
