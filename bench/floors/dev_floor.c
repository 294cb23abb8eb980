/*
 * The least `cordon run --mode dev` can cost on this host: a static
 * launcher that starts /bin/true (clone with CLONE_VM|CLONE_VFORK, then
 * execve), waits for it, and appends one audit-sized record (512 bytes,
 * O_APPEND) to the file named by argv[1] with its fdatasync, the one
 * durable write per run the audit guarantee needs. No begin marker, no
 * signature, no policy, no environment: cordon does more.
 *
 * usage: dev_floor LOG      (bench/startup.sh builds it statically)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
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
    if (argc != 2) return 2;
    int log = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log < 0) return 3;
    pid_t pid = clone(command, command_stack + sizeof command_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL);
    if (pid < 0) return 4;
    int status;
    if (waitpid(pid, &status, 0) != pid) return 5;
    char record[512];
    memset(record, 'x', sizeof record - 1);
    record[sizeof record - 1] = '\n';
    if (write(log, record, sizeof record) != (ssize_t)sizeof record || fdatasync(log) != 0) return 6;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}
