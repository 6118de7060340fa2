/* evfs: the FUSE operations over the source directory (see main.c). */
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

struct evfs_state g = { .root = -1, .uid = -1, .gid = -1, .quota = -1, .lock = PTHREAD_MUTEX_INITIALIZER };

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

void proc_path(char buf[64], int fd) { snprintf(buf, 64, "/proc/self/fd/%d", fd); }

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

/* ---- ids -----------------------------------------------------------------------------------
 * FUSE mounts cannot be idmapped, so evfs maps the sandbox's ids itself (--id-base): the kernel
 * speaks host ids (a guest id g is host id base+g), evfs works in guest ids throughout (what
 * an idmapped mount would store: the guest's root owns files as uid 0 on disk). */

#define GUEST_IDS 65536u

/* A host id from the kernel (caller, chown argument) as the guest's id. */
static unsigned guest_id(unsigned id) {
  if (g.id_base > 0 && id >= (unsigned long long)g.id_base && id - (unsigned long long)g.id_base < GUEST_IDS)
    return (unsigned)(id - (unsigned long long)g.id_base);
  return id;
}

/* A guest id as the host id the kernel reports (ids outside the range show as the overflow id). */
static unsigned kernel_id(unsigned id) {
  if (g.id_base > 0 && id < GUEST_IDS) return (unsigned)(g.id_base + id);
  return id;
}

static uid_t caller_uid(void) { return (uid_t)guest_id(fuse_get_context()->uid); }
static gid_t caller_gid(void) { return (gid_t)guest_id(fuse_get_context()->gid); }

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
    /* relaxed tolerates a file system without xattrs; strict was checked at start */
    (void)write_overlay(fd, caller_uid(), caller_gid(), mode);
  }
  close(fd);
}

/* ---- permissions -------------------------------------------------------------------------
 * The kernel's default_permissions would check the guest's capabilities, and a sandbox's
 * root has none, so a chown of the overlay (which never touches the host) would fail. We
 * check instead: uid 0 is the guest's root (as in a VM), everyone else gets the classic
 * owner/group/other check against the guest-visible metadata. */

static int allowed(const struct stat *st, int mask) {
  uid_t cu = caller_uid();
  if (cu == 0) return 0;
  mode_t bits;
  if (cu == st->st_uid) bits = (st->st_mode >> 6) & 7;
  else if (caller_gid() == st->st_gid) bits = (st->st_mode >> 3) & 7;
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

/* Spends `bytes` of the quota account (negative: frees them); ENOSPC when they do not fit. */
static int charge(long long bytes) {
  if (!has_quota()) return 0;
  pthread_mutex_lock(&g.lock);
  int r = account_charge(bytes);
  pthread_mutex_unlock(&g.lock);
  return r;
}

/* Bytes a name accounts for: apparent size of regular files and symlinks. */
static long long counted(const struct stat *st) {
  return S_ISREG(st->st_mode) || S_ISLNK(st->st_mode) ? (long long)st->st_size : 0;
}

void report_usage(void) {
  if (g.report == NULL) return;
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.tmp", g.report);
  FILE *f = fopen(tmp, "w");
  if (f == NULL) return;
  fprintf(f, "%lld\n", account_usage());
  if (fclose(f) == 0) rename(tmp, g.report);
}

/* ---- operations --------------------------------------------------------------------------- */

static int getattr_guest(const char *path, struct stat *st, struct fuse_file_info *fi) {
  if (fi != NULL) return stat_fd((int)fi->fh, st);
  int fd = resolve(path, O_PATH);
  if (fd < 0) return fd;
  int r = stat_fd(fd, st);
  close(fd);
  return r;
}

static int ev_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  int r = getattr_guest(path, st, fi);
  if (r == 0) {
    st->st_uid = (uid_t)kernel_id(st->st_uid);
    st->st_gid = (gid_t)kernel_id(st->st_gid);
  }
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
  uid_t cu = caller_uid();
  if (r == 0 && cu != 0) {
    /* Only the owner may chmod or give a file to a group; only root may give it away. */
    if (cu != guest.st_uid || (uid >= 0 && (uid_t)uid != guest.st_uid)) r = -EPERM;
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
  return set_owner_mode(path, uid == (uid_t)-1 ? -1 : (long long)guest_id(uid), gid == (gid_t)-1 ? -1 : (long long)guest_id(gid), -1);
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

/* Writes `size` bytes of `in` at `off`: spliced from the kernel's pipe into the file when
 * libfuse read the request with splice (no copy through our memory). */
static int put(int fd, struct fuse_bufvec *in, size_t size, off_t off) {
  struct fuse_bufvec dst = FUSE_BUFVEC_INIT(size);
  dst.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
  dst.buf[0].fd = fd;
  dst.buf[0].pos = off;
  return (int)fuse_buf_copy(&dst, in, 0);
}

static int ev_write_buf(const char *path, struct fuse_bufvec *in, off_t off, struct fuse_file_info *fi) {
  (void)path;
  int fd = (int)fi->fh;
  size_t size = fuse_buf_size(in);
  if (!has_quota()) return put(fd, in, size, off);
  /* Growth is checked and written under the lock, so two writers cannot both pass it. */
  pthread_mutex_lock(&g.lock);
  struct stat st;
  int r = 0;
  if (fstat(fd, &st) < 0) r = -errno;
  long long links = st.st_nlink > 0 ? (long long)st.st_nlink : 1;
  long long end = (long long)off + (long long)size;
  long long growth = r == 0 && end > st.st_size ? (end - st.st_size) * links : 0;
  long long have = r == 0 && growth > 0 ? account_available(growth) : 0;
  if (r == 0 && growth > have) {
    /* Cut the write at what the account grants; nothing fits: ENOSPC. */
    long long room = have / links;
    long long fits = (long long)st.st_size + room - (long long)off;
    if (fits <= 0) r = -ENOSPC;
    else size = (size_t)fits;
  }
  if (r == 0) {
    int n = put(fd, in, size, off);
    if (n < 0) r = n;
    else {
      long long wrote_end = (long long)off + n;
      if (wrote_end > st.st_size) account_spend((wrote_end - st.st_size) * links);
      r = n;
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
    pthread_mutex_lock(&g.lock);
    long long used = account_usage();
    pthread_mutex_unlock(&g.lock);
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
  pthread_mutex_lock(&g.lock);
  account_close();
  pthread_mutex_unlock(&g.lock);
}

const struct fuse_operations evfs_operations = {
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
  .write_buf = ev_write_buf,
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
