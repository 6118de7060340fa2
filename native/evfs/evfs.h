/* evfs: declarations shared by its files (see main.c for what evfs is). */
#ifndef EVFS_H
#define EVFS_H

#define FUSE_USE_VERSION 31
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fuse.h>
#include <pthread.h>

/* The overlay record: "uid:gid:octal-mode", as fuse-overlayfs xattr_permissions=2 writes it. */
#define OVERRIDE_XATTR "user.fuseoverlayfs.override_stat"

enum stat_policy { STAT_OFF, STAT_RELAXED, STAT_STRICT };
enum perms_policy { PERMS_NATIVE, PERMS_PRIVATE, PERMS_MIRROR };

struct evfs_state {
  int root;                 /* O_PATH fd of the source directory */
  enum stat_policy stat;
  enum perms_policy perms;
  long long uid, gid;       /* fallback owner; -1: the host's */
  long long id_base;        /* host id of the guest's id 0 (its user namespace); 0: none */
  long long quota;          /* -1: none */
  long long used;
  const char *report;
  int readonly, noexec;
  pthread_mutex_t lock;
};

extern struct evfs_state g;

/* server.c: the FUSE operations */
extern const struct fuse_operations evfs_operations;
void proc_path(char buf[64], int fd);
void report_usage(void);

/* account.c: the quota account, shared with the host through --account (call with g.lock held) */
int account_connect(const char *path);
long long account_available(long long need);
void account_spend(long long bytes);
int account_charge(long long bytes);
long long account_usage(void);
void account_close(void);

/* mounts.c: subpaths and live mounts */
int open_beneath(int root, const char *rel);
int bind_only(int dirfd, const char *mountpoint, const char *source);
int attach(const char *pid, const char *stage, const char *guest);
int detach(const char *pid, const char *guest);
int await_mount(const char *mountpoint, const char *pid);
int await_exit(const char *pid);

/* main.c */
int fail(const char *fmt, const char *arg);

#endif
