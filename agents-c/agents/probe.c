/*
 * probe — a C agent that tries to reach the host's files, directories, environment and sockets,
 * and reports what it got. Under igord every file and socket operation must fail with an errno.
 *
 * It probes once, in its first tick, through wasi-libc (open, fopen, unlink, rename, mkdir, stat,
 * opendir, getenv…) and through the raw WASI calls underneath (path_open on fd 3 and on stdin,
 * fd_read/fd_write/fd_readdir on fd 3, sock_*, poll_oneoff…), prints one line per operation —
 *
 *   probe: <op> <target>: error <errno> (<message>)      the operation failed, as it must
 *   probe: <op> <target>: ok <detail>                    it succeeded (for a file or socket: a breach)
 *
 * — then a summary line and exit(0), which retires it (WASI proc_exit → status finished).
 * Targets: /tmp/igord-wasi-probe/target.txt (absolute) and probe-target.txt (relative to igord's
 * working directory), which the end-to-end test creates and checks afterwards.
 * Capabilities: wasi.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wasi/api.h>

#include "igor.h"

#define DIR_ABS "/tmp/igord-wasi-probe"
#define ABS DIR_ABS "/target.txt"
#define REL "probe-target.txt"

extern char **environ;

static int failed, breached;

/* Reports a libc call's result: r < 0 (or a null pointer, given as r = -1) is a failure with errno. */
static void report(const char *op, const char *target, long r) {
  if (r < 0) {
    int e = errno;
    printf("probe: %s %s: error %d (%s)\n", op, target, e, strerror(e));
    failed++;
  } else {
    printf("probe: %s %s: ok %ld\n", op, target, r);
    breached++;
  }
}

/* Reports a raw WASI call's errno (0 = success). */
static void report_wasi(const char *op, const char *target, __wasi_errno_t e) {
  if (e != 0) {
    printf("probe: %s %s: error %d (%s)\n", op, target, e, strerror(e));
    failed++;
  } else {
    printf("probe: %s %s: ok\n", op, target);
    breached++;
  }
}

static void probe_libc(void) {
  report("open-abs-read", ABS, open(ABS, O_RDONLY));
  report("open-rel-read", REL, open(REL, O_RDONLY));
  report("open-up-read", "../" REL, open("../" REL, O_RDONLY));
  report("open-abs-write", ABS, open(ABS, O_WRONLY | O_TRUNC));
  report("open-rel-write", REL, open(REL, O_WRONLY | O_TRUNC));
  report("open-abs-create", DIR_ABS "/created.txt", open(DIR_ABS "/created.txt", O_WRONLY | O_CREAT, 0644));
  report("open-rel-create", "probe-created.txt", open("probe-created.txt", O_WRONLY | O_CREAT, 0644));
  report("open-passwd", "/etc/passwd", open("/etc/passwd", O_RDONLY));
  FILE *f = fopen(ABS, "r");
  report("fopen-abs-read", ABS, f ? 0 : -1);
  if (f) {
    char buf[64] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    printf("probe: read %zu bytes: %s\n", n, buf);
    fclose(f);
  }
  f = fopen(REL, "a");
  report("fopen-rel-append", REL, f ? 0 : -1);
  if (f) { fputs("written by the probe\n", f); fclose(f); }
  report("unlink-abs", ABS, unlink(ABS));
  report("unlink-rel", REL, unlink(REL));
  report("rename-abs", ABS, rename(ABS, DIR_ABS "/moved.txt"));
  report("mkdir-abs", DIR_ABS "/newdir", mkdir(DIR_ABS "/newdir", 0755));
  report("mkdir-rel", "probe-newdir", mkdir("probe-newdir", 0755));
  struct stat st;
  report("stat-abs", ABS, stat(ABS, &st));
  report("stat-rel", REL, stat(REL, &st));
  report("truncate-abs", ABS, truncate(ABS, 0));
  const char *dirs[] = { "/", ".", "/tmp", DIR_ABS };
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    DIR *d = opendir(dirs[i]);
    report("opendir", dirs[i], d ? 0 : -1);
    if (d) {
      struct dirent *de;
      while ((de = readdir(d)) != NULL) printf("probe: entry %s\n", de->d_name);
      closedir(d);
    }
  }
  report("read-fd3", "fd 3", read(3, &st, 1));
  report("write-fd3", "fd 3", write(3, "x", 1));
  report("lseek-stdout", "fd 1", lseek(1, 0, SEEK_SET));
}

static void probe_env(void) {
  const char *names[] = { "HOME", "PATH", "USER", "IGORD_PROBE_SECRET" };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *v = getenv(names[i]);
    printf("probe: getenv %s: %s%s\n", names[i], v ? "set to " : "unset", v ? v : "");
    if (v) breached++;
  }
  size_t n = 0;
  for (char **e = environ; e && *e; e++) n++;
  printf("probe: environ: %zu entries\n", n);
  if (n) breached++;
  __wasi_size_t argc = 99, argsize = 99, envc = 99, envsize = 99;
  __wasi_errno_t e1 = __wasi_args_sizes_get(&argc, &argsize);
  __wasi_errno_t e2 = __wasi_environ_sizes_get(&envc, &envsize);
  printf("probe: args_sizes_get: errno %d, %u args, %u bytes\n", e1, (unsigned)argc, (unsigned)argsize);
  printf("probe: environ_sizes_get: errno %d, %u variables, %u bytes\n", e2, (unsigned)envc, (unsigned)envsize);
}

static void probe_wasi(void) {
  __wasi_prestat_t pre;
  report_wasi("fd_prestat_get", "fd 3", __wasi_fd_prestat_get(3, &pre));
  __wasi_fd_t fd;
  const __wasi_rights_t rights = __WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_WRITE;
  report_wasi("path_open", "fd 3 " REL, __wasi_path_open(3, 0, REL, 0, rights, rights, 0, &fd));
  report_wasi("path_open", "fd 3 " ABS, __wasi_path_open(3, 0, ABS, 0, rights, rights, 0, &fd));
  report_wasi("path_open-create", "fd 3 probe-created.txt",
              __wasi_path_open(3, 0, "probe-created.txt", __WASI_OFLAGS_CREAT, rights, rights, 0, &fd));
  report_wasi("path_open", "fd 0 " REL, __wasi_path_open(0, 0, REL, 0, rights, rights, 0, &fd));
  report_wasi("path_unlink_file", "fd 3 " REL, __wasi_path_unlink_file(3, REL));
  report_wasi("path_create_directory", "fd 3 probe-newdir", __wasi_path_create_directory(3, "probe-newdir"));
  __wasi_filestat_t fst;
  report_wasi("path_filestat_get", "fd 3 " REL, __wasi_path_filestat_get(3, 0, REL, &fst));
  uint8_t buf[64];
  __wasi_size_t n;
  __wasi_iovec_t iov = { buf, sizeof buf };
  __wasi_ciovec_t ciov = { (const uint8_t *)"x", 1 };
  report_wasi("fd_read", "fd 3", __wasi_fd_read(3, &iov, 1, &n));
  report_wasi("fd_write", "fd 3", __wasi_fd_write(3, &ciov, 1, &n));
  report_wasi("fd_readdir", "fd 3", __wasi_fd_readdir(3, buf, sizeof buf, 0, &n));
  report_wasi("fd_close", "fd 3", __wasi_fd_close(3));
  __wasi_filesize_t pos;
  report_wasi("fd_seek", "fd 1", __wasi_fd_seek(1, 0, __WASI_WHENCE_SET, &pos));
  report_wasi("sock_accept", "fd 3", __wasi_sock_accept(3, 0, &fd));
  __wasi_roflags_t rof;
  report_wasi("sock_recv", "fd 3", __wasi_sock_recv(3, &iov, 1, 0, &n, &rof));
  report_wasi("sock_send", "fd 3", __wasi_sock_send(3, &ciov, 1, 0, &n));
  report_wasi("sock_shutdown", "fd 3", __wasi_sock_shutdown(3, __WASI_SDFLAGS_RD | __WASI_SDFLAGS_WR));
  __wasi_subscription_t sub;
  memset(&sub, 0, sizeof sub);
  sub.u.tag = __WASI_EVENTTYPE_CLOCK;
  sub.u.u.clock.timeout = 1000000;
  __wasi_event_t ev;
  report_wasi("poll_oneoff", "1 ms", __wasi_poll_oneoff(&sub, &ev, 1, &n));
}

IGOR_EXPORT("agent_tick") int agent_tick(void) {
  probe_libc();
  probe_env();
  probe_wasi();
  printf("probe: done: %d operations failed, %d succeeded\n", failed, breached);
  fprintf(stderr, "probe: exiting with code 0\n");
  exit(0);
}
