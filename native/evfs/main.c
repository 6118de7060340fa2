/*
 * evfs: the sandbox file server of effect-volumes (docs/sandboxes.md, "The file server").
 *
 * A passthrough FUSE file system over one host directory that adds what a bind mount cannot:
 *   - stat virtualization: the guest-visible owner, group and mode of a file live in the
 *     xattr "user.fuseoverlayfs.override_stat" ("uid:gid:octal-mode", the format
 *     fuse-overlayfs writes with xattr_permissions=2), so a guest chown/chmod never touches
 *     the host inode (private) or only copies the rwx bits to it (mirror);
 *   - fallback ownership (--uid/--gid) for files without an overlay record;
 *   - a hard quota: apparent bytes of regular files and symlinks (counted per name, as the
 *     volume's usage is measured) never exceed --quota; a write that would is cut short and
 *     the next one fails with ENOSPC. With --account the bytes are granted by the host
 *     process, from the volume's one usage account (account.c).
 *
 * Every path the kernel hands us is resolved beneath the source directory with openat2
 * (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV): the
 * kernel already resolved the guest's symlinks, so a symlink in the way means the tree
 * changed under us, and following it could leave the volume.
 *
 * Usage: evfs [--stat=strict|relaxed|off] [--perms=private|mirror] [--uid=N] [--gid=N]
 *             [--quota=BYTES --used=BYTES [--account=SOCKET]] [--report=FILE] [--ro] [--noexec]
 *             [--subpath=REL] [--bind-only] SOURCE MOUNTPOINT
 * Runs in the foreground until the mount goes; exit status 3 = the source cannot be served
 * as asked (message on stderr).
 *
 * --subpath serves (or binds) only SOURCE/REL, opened beneath SOURCE without following any
 * symlink (a sandbox sharing the volume may have planted one). --bind-only does not serve:
 * it bind-mounts that directory on MOUNTPOINT through the descriptor it opened (so a later
 * swap cannot redirect it), applies nosuid,nodev (+ro, +noexec) and exits.
 *
 * Live mounts of a running sandbox (run inside the keeper's mount namespace):
 *   evfs --attach=PID STAGE GUEST   clones the mount on STAGE and attaches it at GUEST in the
 *                                   mount namespace of process PID (the sandbox's init),
 *                                   creating GUEST (on a read-only tmpfs root: briefly rw)
 *   evfs --detach=PID GUEST         lazily unmounts GUEST in that namespace
 *   evfs --await=MOUNTPOINT PID     waits until MOUNTPOINT is mounted (exit 0) or the server PID
 *                                   ended (exit 1): the start's readiness check, without a
 *                                   process per poll
 *   evfs --await-exit=PID           waits (up to 10 s, no polling) until process PID has exited
 *   --die-with=PID (serving)        exits when PID exits (a server started for a live mount
 *                                   is not the keeper's child, so pdeathsig cannot do it)
 */
#include "evfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

static void *watch(void *arg) {
  int pidfd = (int)(intptr_t)arg;
  struct pollfd p = { .fd = pidfd, .events = POLLIN };
  while (poll(&p, 1, -1) < 0 && errno == EINTR) {}
  report_usage();
  pthread_mutex_lock(&g.lock);
  account_close();
  _exit(0);
}

int fail(const char *fmt, const char *arg) {
  int saved = errno;
  fprintf(stderr, "evfs: ");
  fprintf(stderr, fmt, arg);
  if (saved != 0) fprintf(stderr, " (%s)", strerror(saved));
  fputc('\n', stderr);
  return 3;
}

static int number(const char *text, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno != 0 || *end != '\0' || v < 0) return -1;
  *out = v;
  return 0;
}

/* Strict fails closed: the source must take user xattrs (a probe is set and removed). */
static int xattrs_supported(void) {
  char p[64], buf[8];
  proc_path(p, g.root);
  if (getxattr(p, OVERRIDE_XATTR, buf, sizeof buf) < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP)) return 0;
  if (g.readonly) return 1;
  if (setxattr(p, "user.effect-volumes.probe", "1", 1, 0) < 0) return !(errno == ENOTSUP || errno == EOPNOTSUPP);
  removexattr(p, "user.effect-volumes.probe");
  return 1;
}

int main(int argc, char *argv[]) {
  const char *source = NULL, *mountpoint = NULL, *subpath = NULL;
  int bind = 0;
  const char *account = NULL;
  const char *attach_pid = NULL, *detach_pid = NULL, *die_with = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--stat=strict") == 0) g.stat = STAT_STRICT;
    else if (strcmp(a, "--stat=relaxed") == 0) g.stat = STAT_RELAXED;
    else if (strcmp(a, "--stat=off") == 0) g.stat = STAT_OFF;
    else if (strcmp(a, "--perms=private") == 0) g.perms = PERMS_PRIVATE;
    else if (strcmp(a, "--perms=mirror") == 0) g.perms = PERMS_MIRROR;
    else if (strcmp(a, "--ro") == 0) g.readonly = 1;
    else if (strcmp(a, "--noexec") == 0) g.noexec = 1;
    else if (strncmp(a, "--uid=", 6) == 0) { if (number(a + 6, &g.uid)) return fail("bad %s", a); }
    else if (strncmp(a, "--gid=", 6) == 0) { if (number(a + 6, &g.gid)) return fail("bad %s", a); }
    else if (strncmp(a, "--id-base=", 10) == 0) { if (number(a + 10, &g.id_base)) return fail("bad %s", a); }
    else if (strncmp(a, "--quota=", 8) == 0) { if (number(a + 8, &g.quota)) return fail("bad %s", a); }
    else if (strncmp(a, "--used=", 7) == 0) { if (number(a + 7, &g.used)) return fail("bad %s", a); }
    else if (strncmp(a, "--report=", 9) == 0) g.report = a + 9;
    else if (strncmp(a, "--account=", 10) == 0) account = a + 10;
    else if (strncmp(a, "--subpath=", 10) == 0) subpath = a + 10;
    else if (strcmp(a, "--bind-only") == 0) bind = 1;
    else if (strncmp(a, "--attach=", 9) == 0) attach_pid = a + 9;
    else if (strncmp(a, "--detach=", 9) == 0) detach_pid = a + 9;
    else if (strncmp(a, "--die-with=", 11) == 0) die_with = a + 11;
    else if (strncmp(a, "--await-exit=", 13) == 0) return await_exit(a + 13);
    else if (strncmp(a, "--await=", 8) == 0) return await_mount(a + 8, i + 1 < argc ? argv[i + 1] : NULL);
    else if (source == NULL) source = a;
    else if (mountpoint == NULL) mountpoint = a;
    else return fail("unexpected argument %s", a);
  }
  if (detach_pid != NULL && source != NULL) return detach(detach_pid, source);
  if (source == NULL || mountpoint == NULL) return fail("usage: evfs [options] SOURCE MOUNTPOINT%s", "");
  if (attach_pid != NULL) return attach(attach_pid, source, mountpoint);
  if (die_with != NULL) {
    int pidfd = (int)syscall(SYS_pidfd_open, atoi(die_with), 0);
    pthread_t t;
    if (pidfd < 0 || pthread_create(&t, NULL, watch, (void *)(intptr_t)pidfd) != 0) {
      return fail("cannot watch pid %s", die_with);
    }
  }
  g.root = open(source, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (g.root < 0) return fail("cannot open the source directory %s", source);
  if (subpath != NULL) {
    int fd = open_beneath(g.root, subpath);
    if (fd < 0) {
      return fail(errno == ELOOP || errno == EXDEV ? "subpath %s: a symlink (or mount) on the way, which a subpath never follows"
                  : errno == ENOENT ? "subpath %s does not exist in the volume"
                  : errno == ENOTDIR ? "subpath %s is not a directory" : "subpath %s cannot be opened", subpath);
    }
    close(g.root);
    g.root = fd;
  }
  if (bind) return bind_only(g.root, mountpoint, source);
  if (g.stat == STAT_STRICT && !xattrs_supported()) {
    return fail("%s does not support extended attributes (user.*), which statVirtualization(\"strict\") "
                "keeps the guest's owner and mode in; use a file system with xattrs or \"relaxed\"", source);
  }
  if (account != NULL && account_connect(account) < 0) return fail("cannot reach the quota account at %s", account);
  char opts[256];
  snprintf(opts, sizeof opts, "allow_other,nosuid,nodev,max_threads=8,fsname=effect-volumes,subtype=evfs%s%s",
           g.readonly ? ",ro" : "", g.noexec ? ",noexec" : "");
  char *fargs[] = { argv[0], "-f", "-o", opts, (char *)mountpoint, NULL };
  report_usage();
  umask(0);
  return fuse_main(5, fargs, &evfs_operations, NULL);
}
