// Tries to read the memory, environment and descriptors of every process in
// the sandbox but itself and its own child: init and the connect helper
// share a memory that is a copy of cordon's (its whole environment, the
// service's secrets), and the helper holds init's pipes for a moment after
// the command's exec. Scans /proc again and again for a while (the helper
// may appear late; the scan starts first thing), prints each open that
// worked, then the control: the same opens of its own child's files, which
// must work.
//
// Output: "foreign PID COMM mem|environ|fd" per success, then
// "foreign opened N", "control mem ok|ERRNO", "control environ ok|ERRNO",
// and, from what was read, "seen SECRET" when argv[1] appears in any of it.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *secret;
static int seen;

static void look_for_secret(int fd) {
  static char buf[1 << 16];
  ssize_t n;
  size_t sl = strlen(secret);
  while ((n = read(fd, buf, sizeof buf)) > 0)
    for (ssize_t i = 0; i + (ssize_t)sl <= n; i++)
      if (!memcmp(buf + i, secret, sl)) seen = 1;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  secret = argc > 1 ? argv[1] : "no secret given";
  int me = getpid(), opened = 0;
  char p[80], comm[32];
  double end = now() + 0.5;
  while (now() < end) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
      int pid = atoi(e->d_name);
      if (pid <= 0 || pid == me) continue;
      snprintf(p, sizeof p, "/proc/%d/comm", pid);
      int c = open(p, O_RDONLY);
      ssize_t n = c >= 0 ? read(c, comm, sizeof comm - 1) : 0;
      if (c >= 0) close(c);
      comm[n > 0 ? n - 1 : 0] = 0;
      const char *what[] = {"mem", "environ", "fd"};
      for (int w = 0; w < 3; w++) {
        snprintf(p, sizeof p, "/proc/%d/%s", pid, what[w]);
        int fd = open(p, w == 2 ? O_RDONLY | O_DIRECTORY : O_RDONLY);
        if (fd < 0) continue;
        printf("foreign %d %s %s\n", pid, comm, what[w]);
        opened++;
        if (w == 1) look_for_secret(fd);
        close(fd);
      }
    }
    if (d) closedir(d);
    if (opened) break;
  }
  printf("foreign opened %d\n", opened);
  pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  const char *what[] = {"mem", "environ"};
  for (int w = 0; w < 2; w++) {
    snprintf(p, sizeof p, "/proc/%d/%s", child, what[w]);
    int fd = open(p, O_RDONLY);
    printf("control %s %s\n", what[w], fd >= 0 ? "ok" : strerror(errno));
    if (fd >= 0) close(fd);
  }
  kill(child, SIGKILL);
  waitpid(child, 0, 0);
  if (seen) printf("seen SECRET\n");
  return 0;
}
