/* evfs: subpaths opened beneath a volume, and live mounts of a running sandbox (see main.c). */
#include "evfs.h"
#include <sys/fsuid.h>

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

/* SOURCE/REL as an O_PATH directory fd, never through a symlink. */
int open_beneath(int root, const char *rel) {
  struct open_how how = {
    .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
  };
  while (rel[0] == '/') rel++;
  return (int)syscall(SYS_openat2, root, rel[0] ? rel : ".", &how, sizeof how);
}

/* Bind-mounts the directory `dirfd` on `mountpoint` (never a path string) with nosuid,nodev (+ro, +noexec). */
int bind_only(int dirfd, const char *mountpoint, const char *source) {
  char p[64];
  proc_path(p, dirfd);
  unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (g.readonly ? MS_RDONLY : 0) | (g.noexec ? MS_NOEXEC : 0);
  if (mount(p, mountpoint, NULL, MS_BIND, NULL) < 0) return fail("cannot bind %s", source);
  if (mount(NULL, mountpoint, NULL, flags, NULL) < 0) {
    umount2(mountpoint, MNT_DETACH);
    return fail("cannot set the flags of %s", mountpoint);
  }
  return 0;
}


#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

static int enter_mount_namespace(const char *pid) {
  char p[64];
  snprintf(p, sizeof p, "/proc/%s/ns/mnt", pid);
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || setns(fd, CLONE_NEWNS) < 0) return -1;
  close(fd);
  return chdir("/");
}

static unsigned long mount_flags_of(const struct statvfs *sv) {
  unsigned long f = 0;
  if (sv->f_flag & ST_RDONLY) f |= MS_RDONLY;
  if (sv->f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (sv->f_flag & ST_NODEV) f |= MS_NODEV;
  if (sv->f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  return f;
}

/* mkdir -p of an absolute path; a read-only parent that is a mount point (bubblewrap's root)
 * is remounted read-write for the mkdir and back with its own flags. */
static int make_mount_point(const char *path) {
  char buf[PATH_MAX];
  if (strlen(path) >= sizeof buf) return -1;
  strcpy(buf, path);
  for (char *slash = buf + 1;; slash++) {
    int end = *slash == '\0';
    if (*slash != '/' && !end) continue;
    *slash = '\0';
    int made = mkdir(buf, 0755);
    if (made < 0 && errno == EROFS) {
      char parent[PATH_MAX];
      strcpy(parent, buf);
      char *cut = strrchr(parent, '/');
      if (cut == parent) cut[1] = '\0';
      else *cut = '\0';
      /* a directory of the root file system: remount the root (the only one we make writable) */
      struct stat pst, rst;
      if (stat(parent, &pst) == 0 && stat("/", &rst) == 0 && pst.st_dev == rst.st_dev) strcpy(parent, "/");
      struct statvfs sv;
      if (statvfs(parent, &sv) < 0) return -1;
      unsigned long flags = mount_flags_of(&sv);
      if (mount(NULL, parent, NULL, MS_REMOUNT | MS_BIND | (flags & ~MS_RDONLY), NULL) < 0) return -1;
      int r = mkdir(buf, 0755);
      int saved = errno;
      mount(NULL, parent, NULL, MS_REMOUNT | MS_BIND | flags, NULL);
      if (r < 0 && saved != EEXIST) {
        errno = saved;
        return -1;
      }
    } else if (made < 0 && errno != EEXIST) {
      return -1;
    }
    if (end) return 0;
    *slash = '/';
  }
}

int attach(const char *pid, const char *stage, const char *guest) {
  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, stage, OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC);
  if (tree < 0) return fail("cannot clone the staged mount %s", stage);
  if (enter_mount_namespace(pid) < 0) return fail("cannot enter the sandbox of pid %s", pid);
  /* The sandbox's root file system is idmapped: host root has no id there, its root does. */
  if (g.id_base > 0) {
    setfsgid((gid_t)g.id_base);
    setfsuid((uid_t)g.id_base);
  }
  if (make_mount_point(guest) < 0) return fail("cannot create the mount point %s in the sandbox", guest);
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, guest, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    return fail("cannot attach the mount at %s", guest);
  }
  return 0;
}

int detach(const char *pid, const char *guest) {
  if (enter_mount_namespace(pid) < 0) return fail("cannot enter the sandbox of pid %s", pid);
  if (umount2(guest, MNT_DETACH) < 0) return fail("cannot unmount %s in the sandbox", guest);
  return 0;
}

/* Whether `needle` (" MOUNTPOINT ") is in /proc/self/mountinfo. */
static int mounted(const char *needle) {
  int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  static char buf[1 << 20];
  size_t len = 0;
  ssize_t n;
  while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)n;
  close(fd);
  buf[len] = '\0';
  return strstr(buf, needle) != NULL;
}

/* Whether process `pid` has ended (gone or a zombie). */
static int ended(const char *pid) {
  char p[64], stat[512];
  snprintf(p, sizeof p, "/proc/%s/stat", pid);
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1;
  ssize_t n = read(fd, stat, sizeof stat - 1);
  close(fd);
  if (n <= 0) return 1;
  stat[n] = '\0';
  char *close_paren = strrchr(stat, ')');
  return close_paren != NULL && close_paren[1] == ' ' && (close_paren[2] == 'Z' || close_paren[2] == 'X');
}

/* Waits (up to 10 s, checking every 0.5 ms) until MOUNTPOINT is mounted: 0; or the server `pid` ended: 1. */
int await_mount(const char *mountpoint, const char *pid) {
  char needle[PATH_MAX + 2];
  snprintf(needle, sizeof needle, " %s ", mountpoint);
  for (int i = 0; i < 20000; i++) {
    if (mounted(needle)) return 0;
    if (pid != NULL && ended(pid)) return 1;
    usleep(500);
  }
  return 1;
}

/* Waits (up to 10 s) until process `pid` has exited (a zombie counts): 0; still there: 1. */
int await_exit(const char *pid) {
  int pidfd = (int)syscall(SYS_pidfd_open, atoi(pid), 0);
  if (pidfd < 0) return 0; /* gone (or reaped) already */
  struct pollfd p = { .fd = pidfd, .events = POLLIN };
  int r;
  while ((r = poll(&p, 1, 10000)) < 0 && errno == EINTR) {}
  close(pidfd);
  return r > 0 ? 0 : 1;
}
