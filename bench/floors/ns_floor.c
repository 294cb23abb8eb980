/*
 * The least a sandbox launcher can cost on this host: clone a child into
 * the namespaces `cordon run --mode process` uses (user, pid, net with
 * loopback up, mount with its own /proc, /tmp and /dev/shm, ipc), and have
 * it start /bin/true with CLONE_VM|CLONE_VFORK and wait for it. No
 * Landlock, no seccomp, no capabilities dropped, no audit record: any real
 * sandbox does more. Which namespaces are created is chosen by argv[1], a
 * subset of "upnmi" (user, pid, net, mount, ipc); "" creates none.
 *
 * bench/floors.sh builds it statically and times it against bare /bin/true.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static char child_stack[64 * 1024], command_stack[64 * 1024];
static const char *want;
static int outer_uid, outer_gid; /* before the clone: inside, unmapped ids read as 65534 */

static int has(char c) { return strchr(want, c) != NULL; }

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) < 0) _exit(101);
    close(fd);
}

static int command(void *arg) {
    (void)arg;
    char *argv[] = {"/bin/true", NULL}, *envp[] = {NULL};
    execve(argv[0], argv, envp);
    _exit(127);
}

static int init(void *arg) {
    (void)arg;
    if (has('u')) {
        char map[64];
        write_file("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "0 %d 1\n", outer_uid);
        write_file("/proc/self/uid_map", map);
        snprintf(map, sizeof map, "0 %d 1\n", outer_gid);
        write_file("/proc/self/gid_map", map);
    }
    if (has('n')) {
        struct ifreq ifr = {0};
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        strcpy(ifr.ifr_name, "lo");
        if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0) _exit(102);
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) _exit(103);
        close(s);
    }
    if (has('m')) {
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 ||
            mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m") < 0 ||
            mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=512m") < 0)
            _exit(104);
    }
    pid_t pid = clone(command, command_stack + sizeof command_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) _exit(105);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 106;
}

int main(int argc, char **argv) {
    want = argc > 1 ? argv[1] : "";
    outer_uid = (int)geteuid();
    outer_gid = (int)getegid();
    int flags = SIGCHLD;
    if (has('u')) flags |= CLONE_NEWUSER;
    if (has('p')) flags |= CLONE_NEWPID;
    if (has('n')) flags |= CLONE_NEWNET;
    if (has('m')) flags |= CLONE_NEWNS;
    if (has('i')) flags |= CLONE_NEWIPC;
    pid_t pid = clone(init, child_stack + sizeof child_stack, flags, NULL);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) return 100;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 107;
}
