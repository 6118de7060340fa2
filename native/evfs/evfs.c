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
 *     the next one fails with ENOSPC.
 *
 * Every path the kernel hands us is resolved beneath the source directory with openat2
 * (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV): the
 * kernel already resolved the guest's symlinks, so a symlink in the way means the tree
 * changed under us, and following it could leave the volume.
 *
 * Usage: evfs [--stat=strict|relaxed|off] [--perms=private|mirror] [--uid=N] [--gid=N]
 *             [--quota=BYTES --used=BYTES] [--report=FILE] [--ro] [--noexec]
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
 *   --die-with=PID (serving)        exits when PID exits (a server started for a live mount
 *                                   is not the keeper's child, so pdeathsig cannot do it)
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <fuse.h>

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

#define OVERRIDE_XATTR "user.fuseoverlayfs.override_stat"

enum stat_policy { STAT_OFF, STAT_RELAXED, STAT_STRICT };
enum perms_policy { PERMS_NATIVE, PERMS_PRIVATE, PERMS_MIRROR };

static struct {
  int root;                 /* O_PATH fd of the source directory */
  enum stat_policy stat;
  enum perms_policy perms;
  long long uid, gid;       /* fallback owner; -1: the host's */
  long long quota;          /* -1: none */
  long long used;
  const char *report;
  int readonly, noexec;
  pthread_mutex_t lock;
} g = { .root = -1, .uid = -1, .gid = -1, .quota = -1, .lock = PTHREAD_MUTEX_INITIALIZER };

/* ---- paths ------------------------------------------------------------------------------ */

static int resolve(const char *path, int flags) {
  struct open_how how = {
    .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
  };
  const char *rel = path[0] == '/' ? path + 1 : path;
  if (rel[0] == '\0') rel = ".";
  int fd = (int)syscall(SYS_openat2, g.root, rel, &how, sizeof how);
  if (fd < 0 && errno == ELOOP) errno = EACCES; /* a symlink planted in the way */
  return fd < 0 ? -errno : fd;
}

/* The parent directory of `path` (O_PATH) and its last component, copied into `name`. */
static int resolve_parent(const char *path, char name[NAME_MAX + 1]) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL || slash[1] == '\0' || strlen(slash + 1) > NAME_MAX) return -EINVAL;
  strcpy(name, slash + 1);
  char dir[PATH_MAX];
  size_t len = (size_t)(slash - path);
  if (len >= sizeof dir) return -ENAMETOOLONG;
  memcpy(dir, path, len);
  dir[len] = '\0';
  return resolve(dir, O_PATH | O_DIRECTORY);
}

static void proc_path(char buf[64], int fd) { snprintf(buf, 64, "/proc/self/fd/%d", fd); }

/* ---- the ownership overlay ------------------------------------------------------------- */

static int virtualizing(void) { return g.stat != STAT_OFF; }

/* Reads the overlay of an O_PATH fd of a regular file or directory: 1 found, 0 none, <0 error. */
static int read_overlay(int fd, uid_t *uid, gid_t *gid, mode_t *mode) {
  char p[64], buf[64];
  proc_path(p, fd);
  ssize_t n = getxattr(p, OVERRIDE_XATTR, buf, sizeof buf - 1);
  if (n < 0) {
    if (errno == ENODATA) return 0;
    if ((errno == ENOTSUP || errno == EOPNOTSUPP) && g.stat == STAT_RELAXED) return 0;
    return -errno;
  }
  buf[n] = '\0';
  unsigned int u, gg, m;
  if (sscanf(buf, "%u:%u:%o", &u, &gg, &m) != 3) return 0; /* unreadable: literal metadata */
  *uid = u;
  *gid = gg;
  *mode = m & 07777;
  return 1;
}

static int write_overlay(int fd, uid_t uid, gid_t gid, mode_t mode) {
  char p[64], buf[64];
  proc_path(p, fd);
  int len = snprintf(buf, sizeof buf, "%u:%u:%o", (unsigned)uid, (unsigned)gid, (unsigned)(mode & 07777));
  return setxattr(p, OVERRIDE_XATTR, buf, (size_t)len, 0) < 0 ? -errno : 0;
}

static int overlaid(const struct stat *st) { return S_ISREG(st->st_mode) || S_ISDIR(st->st_mode); }

/* The guest's view of a host stat. */
static int guest_stat(int fd, struct stat *st) {
  if (!virtualizing()) return 0;
  if (g.uid >= 0) st->st_uid = (uid_t)g.uid;
  if (g.gid >= 0) st->st_gid = (gid_t)g.gid;
  if (!overlaid(st)) return 0;
  uid_t u = 0;
  gid_t gg = 0;
  mode_t m = 0;
  int r = read_overlay(fd, &u, &gg, &m);
  if (r < 0) return r;
  if (r == 1) {
    st->st_uid = u;
    st->st_gid = gg;
    st->st_mode = (st->st_mode & S_IFMT) | m;
  }
  return 0;
}

/* Records the creator as the owner of a new file (stat virtualization only). */
static void own_new(int dirfd, const char *name, mode_t mode) {
  if (!virtualizing()) return;
  int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st;
  if (fstat(fd, &st) == 0 && overlaid(&st)) {
    struct fuse_context *c = fuse_get_context();
    /* relaxed tolerates a file system without xattrs; strict was checked at start */
    (void)write_overlay(fd, c->uid, c->gid, mode);
  }
  close(fd);
}

/* ---- permissions -------------------------------------------------------------------------
 * The kernel's default_permissions would check the guest's capabilities, and a sandbox's
 * root has none, so a chown of the overlay (which never touches the host) would fail. We
 * check instead: uid 0 is the guest's root (as in a VM), everyone else gets the classic
 * owner/group/other check against the guest-visible metadata. */

static int allowed(const struct stat *st, int mask) {
  struct fuse_context *c = fuse_get_context();
  if (c->uid == 0) return 0;
  mode_t bits;
  if (c->uid == st->st_uid) bits = (st->st_mode >> 6) & 7;
  else if (c->gid == st->st_gid) bits = (st->st_mode >> 3) & 7;
  else bits = st->st_mode & 7;
  return (bits & (mode_t)mask) == (mode_t)mask ? 0 : -EACCES;
}

static int stat_fd(int fd, struct stat *st) {
  if (fstat(fd, st) < 0) return -errno;
  return guest_stat(fd, st);
}

static int check_fd(int fd, int mask) {
  struct stat st;
  int r = stat_fd(fd, &st);
  return r < 0 ? r : allowed(&st, mask);
}

/* May the caller add or remove entries of the directory `dirfd`? */
static int check_dir_write(int dirfd) { return check_fd(dirfd, W_OK | X_OK); }

/* ---- quota -------------------------------------------------------------------------------- */

static int has_quota(void) { return g.quota >= 0; }

/* Reserves `bytes` (may be negative); fails with ENOSPC when that would pass the quota. */
static int charge(long long bytes) {
  if (!has_quota()) return 0;
  pthread_mutex_lock(&g.lock);
  int r = 0;
  if (bytes > 0 && g.used + bytes > g.quota) r = -ENOSPC;
  else g.used += bytes;
  if (g.used < 0) g.used = 0;
  pthread_mutex_unlock(&g.lock);
  return r;
}

/* Bytes a name accounts for: apparent size of regular files and symlinks. */
static long long counted(const struct stat *st) {
  return S_ISREG(st->st_mode) || S_ISLNK(st->st_mode) ? (long long)st->st_size : 0;
}

static void report_usage(void) {
  if (g.report == NULL) return;
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.tmp", g.report);
  FILE *f = fopen(tmp, "w");
  if (f == NULL) return;
  fprintf(f, "%lld\n", g.used);
  if (fclose(f) == 0) rename(tmp, g.report);
}

/* ---- operations --------------------------------------------------------------------------- */

static int ev_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  if (fi != NULL) return stat_fd((int)fi->fh, st);
  int fd = resolve(path, O_PATH);
  if (fd < 0) return fd;
  int r = stat_fd(fd, st);
  close(fd);
  return r;
}

static int ev_access(const char *path, int mask) {
  int fd = resolve(path, O_PATH);
  if (fd < 0) return fd;
  int r = mask == F_OK ? 0 : check_fd(fd, mask);
  close(fd);
  return r;
}

static int ev_readlink(const char *path, char *buf, size_t size) {
  char name[NAME_MAX + 1];
  int dfd = resolve_parent(path, name);
  if (dfd < 0) return dfd;
  ssize_t n = readlinkat(dfd, name, buf, size - 1);
  int r = n < 0 ? -errno : 0;
  if (n >= 0) buf[n] = '\0';
  close(dfd);
  return r;
}

/* Runs `make` in the parent of `path` after the permission check; owns the result. */
#define IN_PARENT(path, name, dfd, body)        \
  char name[NAME_MAX + 1];                      \
  int dfd = resolve_parent(path, name);         \
  if (dfd < 0) return dfd;                      \
  int r = check_dir_write(dfd);                 \
  if (r == 0) { body }                          \
  close(dfd);                                   \
  return r;

static int ev_mkdir(const char *path, mode_t mode) {
  IN_PARENT(path, name, dfd, {
    r = mkdirat(dfd, name, mode) < 0 ? -errno : 0;
    if (r == 0) own_new(dfd, name, mode);
  })
}

static int ev_mknod(const char *path, mode_t mode, dev_t rdev) {
  if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISSOCK(mode)) return -EPERM; /* no device files */
  IN_PARENT(path, name, dfd, {
    r = mknodat(dfd, name, mode, rdev) < 0 ? -errno : 0;
    if (r == 0) own_new(dfd, name, mode & 07777);
  })
}

static int ev_symlink(const char *target, const char *path) {
  IN_PARENT(path, name, dfd, {
    long long size = (long long)strlen(target);
    r = charge(size);
    if (r == 0 && symlinkat(target, dfd, name) < 0) {
      r = -errno;
      charge(-size);
    }
  })
}

static int ev_unlink(const char *path) {
  IN_PARENT(path, name, dfd, {
    struct stat st;
    long long size = fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? counted(&st) : 0;
    r = unlinkat(dfd, name, 0) < 0 ? -errno : 0;
    if (r == 0) charge(-size);
  })
}

static int ev_rmdir(const char *path) {
  IN_PARENT(path, name, dfd, { r = unlinkat(dfd, name, AT_REMOVEDIR) < 0 ? -errno : 0; })
}

static int ev_rename(const char *from, const char *to, unsigned int flags) {
  char fname[NAME_MAX + 1], tname[NAME_MAX + 1];
  int fdfd = resolve_parent(from, fname);
  if (fdfd < 0) return fdfd;
  int tdfd = resolve_parent(to, tname);
  if (tdfd < 0) {
    close(fdfd);
    return tdfd;
  }
  int r = check_dir_write(fdfd);
  if (r == 0) r = check_dir_write(tdfd);
  if (r == 0) {
    struct stat st;
    long long replaced = 0;
    if (!(flags & RENAME_EXCHANGE) && fstatat(tdfd, tname, &st, AT_SYMLINK_NOFOLLOW) == 0) replaced = counted(&st);
    r = (int)syscall(SYS_renameat2, fdfd, fname, tdfd, tname, flags) < 0 ? -errno : 0;
    if (r == 0) charge(-replaced);
  }
  close(fdfd);
  close(tdfd);
  return r;
}

static int ev_link(const char *from, const char *to) {
  char fname[NAME_MAX + 1];
  int fdfd = resolve_parent(from, fname);
  if (fdfd < 0) return fdfd;
  IN_PARENT(to, name, dfd, {
    struct stat st;
    long long size = fstatat(fdfd, fname, &st, AT_SYMLINK_NOFOLLOW) == 0 ? counted(&st) : 0;
    r = charge(size);
    if (r == 0 && linkat(fdfd, fname, dfd, name, 0) < 0) {
      r = -errno;
      charge(-size);
    }
    close(fdfd);
  })
}

/* chmod/chown: the overlay when virtualizing, refused for "off" + private, the host otherwise. */
static int set_owner_mode(const char *path, long long uid, long long gid, long long mode) {
  int fd = resolve(path, O_PATH);
  if (fd < 0) return fd;
  struct stat host, guest;
  int r = fstat(fd, &host) < 0 ? -errno : 0;
  if (r == 0) {
    guest = host;
    r = guest_stat(fd, &guest);
  }
  struct fuse_context *c = fuse_get_context();
  if (r == 0 && c->uid != 0) {
    /* Only the owner may chmod or give a file to a group; only root may give it away. */
    if (c->uid != guest.st_uid || (uid >= 0 && (uid_t)uid != guest.st_uid)) r = -EPERM;
  }
  char p[64];
  proc_path(p, fd);
  if (r == 0 && S_ISLNK(host.st_mode)) r = mode >= 0 ? -EOPNOTSUPP : 0;
  else if (r == 0 && virtualizing() && overlaid(&host)) {
    uid_t nu = uid >= 0 ? (uid_t)uid : guest.st_uid;
    gid_t ng = gid >= 0 ? (gid_t)gid : guest.st_gid;
    mode_t nm = mode >= 0 ? (mode_t)mode : (guest.st_mode & 07777);
    r = write_overlay(fd, nu, ng, nm);
    if ((r == -ENOTSUP || r == -EOPNOTSUPP) && g.stat == STAT_RELAXED) {
      /* relaxed on a file system without xattrs: literal metadata */
      r = 0;
      if (mode >= 0 && chmod(p, (mode_t)mode) < 0) r = -errno;
      if (r == 0 && (uid >= 0 || gid >= 0) && fchownat(fd, "", (uid_t)uid, (gid_t)gid, AT_EMPTY_PATH) < 0) r = -errno;
    } else if (r == 0 && mode >= 0 && g.perms != PERMS_PRIVATE) {
      /* mirror: the rwx bits reach the host inode too */
      if (chmod(p, (host.st_mode & 07000) | ((mode_t)mode & 0777)) < 0) r = -errno;
    }
  } else if (r == 0 && g.perms == PERMS_PRIVATE) {
    /* "off" + private: the host inode is not the guest's to change (a no-op is fine: tar does it) */
    int same = (uid < 0 || (uid_t)uid == host.st_uid) && (gid < 0 || (gid_t)gid == host.st_gid) &&
               (mode < 0 || (mode_t)mode == (host.st_mode & 07777));
    if (!same) r = -EPERM;
  } else if (r == 0) {
    if (mode >= 0 && chmod(p, (mode_t)mode) < 0) r = -errno;
    if (r == 0 && (uid >= 0 || gid >= 0) && fchownat(fd, "", (uid_t)uid, (gid_t)gid, AT_EMPTY_PATH) < 0) r = -errno;
  }
  close(fd);
  return r;
}

static int ev_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
  (void)fi;
  return set_owner_mode(path, -1, -1, mode & 07777);
}

static int ev_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi) {
  (void)fi;
  return set_owner_mode(path, uid == (uid_t)-1 ? -1 : (long long)uid, gid == (gid_t)-1 ? -1 : (long long)gid, -1);
}

/* Resizes an open file, charging growth (once per name of the file). */
static int resize(int fd, off_t size) {
  struct stat st;
  if (fstat(fd, &st) < 0) return -errno;
  long long delta = ((long long)size - (long long)st.st_size) * (long long)(st.st_nlink > 0 ? st.st_nlink : 1);
  int r = charge(delta);
  if (r < 0) return r;
  if (ftruncate(fd, size) < 0) {
    r = -errno;
    charge(-delta);
  }
  return r;
}

static int ev_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
  if (fi != NULL) return resize((int)fi->fh, size);
  int fd = resolve(path, O_WRONLY | O_NONBLOCK);
  if (fd < 0) return fd;
  int r = check_fd(fd, W_OK);
  if (r == 0) r = resize(fd, size);
  close(fd);
  return r;
}

static int ev_utimens(const char *path, const struct timespec ts[2], struct fuse_file_info *fi) {
  if (fi != NULL) return futimens((int)fi->fh, ts) < 0 ? -errno : 0;
  char name[NAME_MAX + 1];
  int dfd = resolve_parent(path, name);
  if (dfd < 0) return dfd;
  int r = utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
  close(dfd);
  return r;
}

static int open_mask(int flags) {
  switch (flags & O_ACCMODE) {
    case O_RDONLY: return R_OK;
    case O_WRONLY: return W_OK;
    default: return R_OK | W_OK;
  }
}

static int ev_open(const char *path, struct fuse_file_info *fi) {
  /* O_TRUNC is done by hand so the bytes it frees are accounted for */
  int fd = resolve(path, fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC));
  if (fd < 0) return fd;
  int r = check_fd(fd, open_mask(fi->flags));
  if (r == 0 && (fi->flags & O_TRUNC)) r = resize(fd, 0);
  if (r < 0) {
    close(fd);
    return r;
  }
  fi->fh = (uint64_t)fd;
  return 0;
}

static int ev_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
  char name[NAME_MAX + 1];
  int dfd = resolve_parent(path, name);
  if (dfd < 0) return dfd;
  int r = check_dir_write(dfd);
  if (r == 0) {
    int fd = openat(dfd, name, (fi->flags | O_CREAT | O_NOFOLLOW | O_CLOEXEC) & ~O_NOCTTY, mode);
    if (fd < 0) r = -errno;
    else {
      own_new(dfd, name, mode & 07777);
      fi->fh = (uint64_t)fd;
    }
  }
  close(dfd);
  return r;
}

/* Reads hand libfuse the file descriptor: it splices the data to the kernel (no copy). */
static int ev_read_buf(const char *path, struct fuse_bufvec **out, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)path;
  struct fuse_bufvec *vec = malloc(sizeof *vec);
  if (vec == NULL) return -ENOMEM;
  *vec = FUSE_BUFVEC_INIT(size);
  vec->buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
  vec->buf[0].fd = (int)fi->fh;
  vec->buf[0].pos = off;
  *out = vec;
  return 0;
}

static int ev_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)path;
  int fd = (int)fi->fh;
  if (!has_quota()) {
    ssize_t n = pwrite(fd, buf, size, off);
    return n < 0 ? -errno : (int)n;
  }
  /* Growth is checked and written under the lock, so two writers cannot both pass it. */
  pthread_mutex_lock(&g.lock);
  struct stat st;
  int r = 0;
  if (fstat(fd, &st) < 0) r = -errno;
  long long links = st.st_nlink > 0 ? (long long)st.st_nlink : 1;
  long long end = (long long)off + (long long)size;
  long long growth = r == 0 && end > st.st_size ? (end - st.st_size) * links : 0;
  if (r == 0 && growth > 0 && g.used + growth > g.quota) {
    /* Cut the write at the quota; nothing fits: ENOSPC. */
    long long room = (g.quota - g.used) / links;
    long long fits = (long long)st.st_size + room - (long long)off;
    if (fits <= 0) r = -ENOSPC;
    else {
      size = (size_t)fits;
      growth = ((long long)off + fits - st.st_size) * links;
    }
  }
  if (r == 0) {
    ssize_t n = pwrite(fd, buf, size, off);
    if (n < 0) r = -errno;
    else {
      long long wrote_end = (long long)off + n;
      if (wrote_end > st.st_size) g.used += (wrote_end - st.st_size) * links;
      r = (int)n;
    }
  }
  pthread_mutex_unlock(&g.lock);
  return r;
}

static int ev_statfs(const char *path, struct statvfs *sv) {
  (void)path;
  if (fstatvfs(g.root, sv) < 0) return -errno;
  if (has_quota()) {
    /* df inside the sandbox shows the quota, not the host disk */
    unsigned long bsize = sv->f_frsize ? sv->f_frsize : 4096;
    long long used = g.used;
    sv->f_blocks = (fsblkcnt_t)((g.quota + (long long)bsize - 1) / (long long)bsize);
    long long free_bytes = g.quota > used ? g.quota - used : 0;
    fsblkcnt_t free_blocks = (fsblkcnt_t)(free_bytes / (long long)bsize);
    if (free_blocks < sv->f_bavail) sv->f_bavail = free_blocks;
    if (free_blocks < sv->f_bfree) sv->f_bfree = free_blocks;
  }
  return 0;
}

static int ev_release(const char *path, struct fuse_file_info *fi) {
  (void)path;
  close((int)fi->fh);
  return 0;
}

static int ev_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
  (void)path;
  int r = datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh);
  return r < 0 ? -errno : 0;
}

static int ev_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi) {
  (void)path;
  int fd = (int)fi->fh;
  if (mode != 0) return -EOPNOTSUPP; /* only plain preallocation, which we can account */
  struct stat st;
  if (fstat(fd, &st) < 0) return -errno;
  long long end = (long long)off + (long long)len;
  long long growth = end > st.st_size ? (end - st.st_size) * (long long)(st.st_nlink ? st.st_nlink : 1) : 0;
  int r = charge(growth);
  if (r < 0) return r;
  r = posix_fallocate(fd, off, len);
  if (r != 0) {
    charge(-growth);
    return -r;
  }
  return 0;
}

static int ev_opendir(const char *path, struct fuse_file_info *fi) {
  int fd = resolve(path, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return fd;
  int r = check_fd(fd, R_OK);
  DIR *dir = r == 0 ? fdopendir(fd) : NULL;
  if (dir == NULL) {
    if (r == 0) r = -errno;
    close(fd);
    return r;
  }
  fi->fh = (uint64_t)(uintptr_t)dir;
  return 0;
}

static int ev_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off, struct fuse_file_info *fi,
                      enum fuse_readdir_flags flags) {
  (void)path;
  (void)flags;
  DIR *dir = (DIR *)(uintptr_t)fi->fh;
  if (off == 0) rewinddir(dir);
  else seekdir(dir, off);
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(dir);
    if (e == NULL) return errno ? -errno : 0;
    struct stat st = { .st_ino = e->d_ino, .st_mode = (mode_t)DTTOIF(e->d_type) };
    if (fill(buf, e->d_name, &st, telldir(dir), 0)) return 0;
  }
}

static int ev_releasedir(const char *path, struct fuse_file_info *fi) {
  (void)path;
  closedir((DIR *)(uintptr_t)fi->fh);
  return 0;
}

/* The overlay record is ours: the guest can neither read, forge nor remove it. */
static int is_ours(const char *name) { return strcmp(name, OVERRIDE_XATTR) == 0; }

#define XATTR_PATH(path, p, fd)                \
  int fd = resolve(path, O_PATH);              \
  if (fd < 0) return fd;                       \
  char p[64];                                  \
  proc_path(p, fd);

static int ev_getxattr(const char *path, const char *name, char *value, size_t size) {
  if (is_ours(name)) return -ENODATA;
  XATTR_PATH(path, p, fd)
  struct stat st;
  ssize_t n = fstat(fd, &st) == 0 && S_ISLNK(st.st_mode) ? (errno = ENODATA, -1) : getxattr(p, name, value, size);
  close(fd);
  return n < 0 ? -errno : (int)n;
}

static int ev_setxattr(const char *path, const char *name, const char *value, size_t size, int flags) {
  if (is_ours(name)) return -EPERM;
  XATTR_PATH(path, p, fd)
  int r = check_fd(fd, W_OK);
  struct stat st;
  if (r == 0 && fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) r = -EPERM;
  if (r == 0 && setxattr(p, name, value, size, flags) < 0) r = -errno;
  close(fd);
  return r;
}

static int ev_listxattr(const char *path, char *list, size_t size) {
  XATTR_PATH(path, p, fd)
  struct stat st;
  char all[65536];
  ssize_t n = fstat(fd, &st) == 0 && S_ISLNK(st.st_mode) ? 0 : listxattr(p, all, sizeof all);
  close(fd);
  if (n < 0) return -errno;
  size_t out = 0;
  for (ssize_t i = 0; i < n; i += (ssize_t)strlen(all + i) + 1) {
    if (is_ours(all + i)) continue;
    size_t len = strlen(all + i) + 1;
    if (size != 0) {
      if (out + len > size) return -ERANGE;
      memcpy(list + out, all + i, len);
    }
    out += len;
  }
  return (int)out;
}

static int ev_removexattr(const char *path, const char *name) {
  if (is_ours(name)) return -EPERM;
  XATTR_PATH(path, p, fd)
  int r = check_fd(fd, W_OK);
  if (r == 0 && removexattr(p, name) < 0) r = -errno;
  close(fd);
  return r;
}

static void *ev_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
  /* 1 MiB requests instead of 128 KiB: a quarter of the round trips for big transfers */
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  if (conn->capable & FUSE_CAP_SPLICE_READ) conn->want |= FUSE_CAP_SPLICE_READ;
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
  /* keep cached pages across opens unless the file changed (size/mtime), e.g. from the host */
  cfg->auto_cache = 1;
  cfg->use_ino = 1;
  cfg->nullpath_ok = 1;
  /* Only we change what the guest sees; host-side changes show within a second. */
  cfg->entry_timeout = 1;
  cfg->attr_timeout = 1;
  cfg->negative_timeout = 0;
  return NULL;
}

static void ev_destroy(void *data) {
  (void)data;
  report_usage();
}

static const struct fuse_operations ops = {
  .init = ev_init,
  .destroy = ev_destroy,
  .getattr = ev_getattr,
  .access = ev_access,
  .readlink = ev_readlink,
  .mknod = ev_mknod,
  .mkdir = ev_mkdir,
  .symlink = ev_symlink,
  .unlink = ev_unlink,
  .rmdir = ev_rmdir,
  .rename = ev_rename,
  .link = ev_link,
  .chmod = ev_chmod,
  .chown = ev_chown,
  .truncate = ev_truncate,
  .utimens = ev_utimens,
  .open = ev_open,
  .create = ev_create,
  .read_buf = ev_read_buf,
  .write = ev_write,
  .statfs = ev_statfs,
  .release = ev_release,
  .fsync = ev_fsync,
  .fallocate = ev_fallocate,
  .opendir = ev_opendir,
  .readdir = ev_readdir,
  .releasedir = ev_releasedir,
  .getxattr = ev_getxattr,
  .setxattr = ev_setxattr,
  .listxattr = ev_listxattr,
  .removexattr = ev_removexattr,
};

/* ---- start -------------------------------------------------------------------------------- */

static int fail(const char *fmt, const char *arg);

/* ---- live mounts ----------------------------------------------------------------------- */

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

static int attach(const char *pid, const char *stage, const char *guest) {
  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, stage, OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC);
  if (tree < 0) return fail("cannot clone the staged mount %s", stage);
  if (enter_mount_namespace(pid) < 0) return fail("cannot enter the sandbox of pid %s", pid);
  if (make_mount_point(guest) < 0) return fail("cannot create the mount point %s in the sandbox", guest);
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, guest, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    return fail("cannot attach the mount at %s", guest);
  }
  return 0;
}

static int detach(const char *pid, const char *guest) {
  if (enter_mount_namespace(pid) < 0) return fail("cannot enter the sandbox of pid %s", pid);
  if (umount2(guest, MNT_DETACH) < 0) return fail("cannot unmount %s in the sandbox", guest);
  return 0;
}

static void *watch(void *arg) {
  int pidfd = (int)(intptr_t)arg;
  struct pollfd p = { .fd = pidfd, .events = POLLIN };
  while (poll(&p, 1, -1) < 0 && errno == EINTR) {}
  report_usage();
  _exit(0);
}

/* SOURCE/REL as an O_PATH directory fd, never through a symlink. */
static int open_beneath(int root, const char *rel) {
  struct open_how how = {
    .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
  };
  while (rel[0] == '/') rel++;
  return (int)syscall(SYS_openat2, root, rel[0] ? rel : ".", &how, sizeof how);
}

static int fail(const char *fmt, const char *arg) {
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
  int bind_only = 0;
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
    else if (strncmp(a, "--quota=", 8) == 0) { if (number(a + 8, &g.quota)) return fail("bad %s", a); }
    else if (strncmp(a, "--used=", 7) == 0) { if (number(a + 7, &g.used)) return fail("bad %s", a); }
    else if (strncmp(a, "--report=", 9) == 0) g.report = a + 9;
    else if (strncmp(a, "--subpath=", 10) == 0) subpath = a + 10;
    else if (strcmp(a, "--bind-only") == 0) bind_only = 1;
    else if (strncmp(a, "--attach=", 9) == 0) attach_pid = a + 9;
    else if (strncmp(a, "--detach=", 9) == 0) detach_pid = a + 9;
    else if (strncmp(a, "--die-with=", 11) == 0) die_with = a + 11;
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
  if (bind_only) {
    char p[64];
    proc_path(p, g.root);
    unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (g.readonly ? MS_RDONLY : 0) | (g.noexec ? MS_NOEXEC : 0);
    if (mount(p, mountpoint, NULL, MS_BIND, NULL) < 0) return fail("cannot bind %s", source);
    if (mount(NULL, mountpoint, NULL, flags, NULL) < 0) {
      umount2(mountpoint, MNT_DETACH);
      return fail("cannot set the flags of %s", mountpoint);
    }
    return 0;
  }
  if (g.stat == STAT_STRICT && !xattrs_supported()) {
    return fail("%s does not support extended attributes (user.*), which statVirtualization(\"strict\") "
                "keeps the guest's owner and mode in; use a file system with xattrs or \"relaxed\"", source);
  }
  char opts[256];
  snprintf(opts, sizeof opts, "allow_other,nosuid,nodev,max_threads=8,fsname=effect-volumes,subtype=evfs%s%s",
           g.readonly ? ",ro" : "", g.noexec ? ",noexec" : "");
  char *fargs[] = { argv[0], "-f", "-o", opts, (char *)mountpoint, NULL };
  report_usage();
  umask(0);
  return fuse_main(5, fargs, &ops, NULL);
}
