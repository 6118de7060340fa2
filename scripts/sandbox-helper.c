/*
 * ev-sandbox-helper: the few system calls the namespace runtime needs that no packaged
 * tool makes (util-linux 2.38's X-mount.idmap applies no mapping; nsenter cannot join a
 * cgroup or load a seccomp filter). Built by scripts/build-sandbox-helper.sh.
 *
 *   ev-sandbox-helper launch [--cgroup PROCS]... --map BASE:COUNT [--idmap PATH]...
 *                            [--bind SOURCE TARGET FLAGS]... -- PROGRAM ARGS...
 *     Joins the cgroups, creates a user namespace mapping ids 0..COUNT-1 to host ids
 *     BASE..BASE+COUNT-1, stacks an idmapped clone of the mount on each PATH over it and
 *     bind-mounts each SOURCE idmapped on TARGET with FLAGS (ro,nosuid,nodev,noexec or -;
 *     noidmap: as it is),
 *     so ids inside the namespace equal ids on disk; then enters the namespace as its
 *     root and execs PROGRAM (bubblewrap).
 *
 *   ev-sandbox-helper idmap --map BASE:COUNT [--idmap PATH]... [--bind SOURCE TARGET FLAGS]...
 *     Only the mounts of launch (for the layers of an overlay mounted afterwards).
 *
 *   ev-sandbox-helper exec --target PID [--cgroup PROCS]... [--seccomp BPF] --cwd DIR
 *                          -- CMD ARGS...
 *     Joins the cgroups and every namespace of PID (user first), chroots into its root,
 *     becomes uid/gid 0 there, drops every capability, sets no-new-privs, loads the seccomp
 *     filter and runs CMD (found on $PATH) as a child; exits with its status (128 + signal
 *     when it was killed).
 *
 *   ev-sandbox-helper cleanup [--umount PATH]... [--remove PATH]... [--cgroup DIR]...
 *     A keeper's last step, in one process: unmounts each PATH in order, each as often as
 *     something is mounted on it (a staged mount with its idmapped clone on top); then
 *     removes each --remove PATH that is a file or an empty directory (never recursive, never
 *     through a mount: as `rm -fd`); then removes each cgroup DIR, retrying for up to 5 s
 *     while processes that were just killed leave it. Never fails: what cannot be removed
 *     stays, as with the shell tools it replaces.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/mount.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_LIST 64

static void die(const char *what, const char *arg) {
  fprintf(stderr, "ev-sandbox-helper: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
  exit(125);
}

static void usage(void) {
  fprintf(stderr, "ev-sandbox-helper: usage: launch|idmap|exec|cleanup OPTIONS [-- PROGRAM ARGS...]\n");
  exit(125);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("open", path);
  ssize_t n = write(fd, text, strlen(text));
  if (n != (ssize_t)strlen(text)) die("write", path);
  close(fd);
}

static void join_cgroups(char **procs, int n) {
  char pid[32];
  snprintf(pid, sizeof pid, "%d\n", getpid());
  for (int i = 0; i < n; i++) write_file(procs[i], pid);
}

/* A user namespace with ids 0..count-1 mapped to base..; returned as an open fd. */
static int make_userns(const char *map) {
  unsigned long base, count;
  if (sscanf(map, "%lu:%lu", &base, &count) != 2 || count == 0) usage();
  int ready[2], done[2];
  if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(done, O_CLOEXEC) < 0) die("pipe", NULL);
  pid_t child = fork();
  if (child < 0) die("fork", NULL);
  if (child == 0) {
    char c = 0;
    close(done[1]);
    if (unshare(CLONE_NEWUSER) < 0) _exit(1);
    if (write(ready[1], &c, 1) != 1) _exit(1);
    (void)!read(done[0], &c, 1); /* until the parent has what it needs */
    _exit(0);
  }
  close(ready[1]);
  close(done[0]);
  char c, path[64], text[96];
  if (read(ready[0], &c, 1) != 1) {
    errno = EPERM;
    die("unshare", "CLONE_NEWUSER");
  }
  snprintf(text, sizeof text, "0 %lu %lu\n", base, count);
  snprintf(path, sizeof path, "/proc/%d/uid_map", child);
  write_file(path, text);
  snprintf(path, sizeof path, "/proc/%d/gid_map", child);
  write_file(path, text);
  snprintf(path, sizeof path, "/proc/%d/ns/user", child);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open", path);
  close(done[1]);
  waitpid(child, NULL, 0);
  return fd;
}

/* Mount flags from "ro,nosuid,nodev,noexec,noidmap" (any subset; "-" for none). */
static uint64_t parse_attrs(const char *text) {
  uint64_t attrs = MOUNT_ATTR_IDMAP;
  char copy[64];
  snprintf(copy, sizeof copy, "%s", text);
  for (char *word = strtok(copy, ","); word != NULL; word = strtok(NULL, ",")) {
    if (!strcmp(word, "ro")) attrs |= MOUNT_ATTR_RDONLY;
    else if (!strcmp(word, "nosuid")) attrs |= MOUNT_ATTR_NOSUID;
    else if (!strcmp(word, "nodev")) attrs |= MOUNT_ATTR_NODEV;
    else if (!strcmp(word, "noexec")) attrs |= MOUNT_ATTR_NOEXEC;
    else if (!strcmp(word, "noidmap")) attrs &= ~(uint64_t)MOUNT_ATTR_IDMAP;
    else if (strcmp(word, "-")) usage();
  }
  return attrs;
}

/* Mounts an idmapped (unless "noidmap") clone of the mount at source (a bind mount, not
 * recursive) on target, with the given flags. With source == target the clone is stacked
 * over the original. */
static void bind_idmapped(const char *source, const char *target, const char *attrs, int userns) {
  int tree = syscall(SYS_open_tree, AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) die("open_tree", source);
  struct mount_attr attr = {.attr_set = parse_attrs(attrs)};
  if (attr.attr_set & MOUNT_ATTR_IDMAP) attr.userns_fd = userns;
  if (attr.attr_set != 0 && syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
    die("idmap (mount_setattr)", source);
  }
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0) die("move_mount", target);
  close(tree);
}

/* launch (run != 0) or idmap (run == 0: no cgroups, no command). */
static int launch(int argc, char **argv, int run) {
  char *cgroups[MAX_LIST], *binds[MAX_LIST][3];
  int ncg = 0, nbinds = 0, i = 0;
  const char *map = NULL;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    if (i + 1 >= argc) usage();
    if (!strcmp(argv[i], "--cgroup") && ncg < MAX_LIST) cgroups[ncg++] = argv[++i];
    else if (!strcmp(argv[i], "--idmap") && nbinds < MAX_LIST) {
      binds[nbinds][0] = binds[nbinds][1] = argv[++i];
      binds[nbinds++][2] = "-";
    } else if (!strcmp(argv[i], "--bind") && nbinds < MAX_LIST && i + 3 < argc) {
      for (int k = 0; k < 3; k++) binds[nbinds][k] = argv[++i];
      nbinds++;
    } else if (!strcmp(argv[i], "--map")) map = argv[++i];
    else usage();
  }
  if (map == NULL || (run ? i + 1 >= argc : i < argc || ncg > 0)) usage();
  join_cgroups(cgroups, ncg);
  int userns = make_userns(map);
  for (int b = 0; b < nbinds; b++) bind_idmapped(binds[b][0], binds[b][1], binds[b][2], userns);
  if (!run) return 0;
  /* Become root of the namespace before bubblewrap runs: it creates its tmpfs root as
   * us, and an id that the namespace does not map could not own it (EOVERFLOW). */
  if (setns(userns, CLONE_NEWUSER) < 0) die("setns", "user");
  close(userns);
  if (setgroups(0, NULL) < 0) die("setgroups", NULL);
  if (setresgid(0, 0, 0) < 0) die("setresgid", NULL);
  if (setresuid(0, 0, 0) < 0) die("setresuid", NULL);
  execvp(argv[i + 1], argv + i + 1);
  die("exec", argv[i + 1]);
  return 125;
}

static struct sock_fprog read_filter(const char *path) {
  struct sock_fprog prog = {0, NULL};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) die("open", path);
  if (st.st_size == 0 || st.st_size % sizeof(struct sock_filter) != 0 || st.st_size > 65536) {
    errno = EINVAL;
    die("seccomp filter", path);
  }
  prog.filter = malloc(st.st_size);
  if (prog.filter == NULL || read(fd, prog.filter, st.st_size) != st.st_size) die("read", path);
  prog.len = st.st_size / sizeof(struct sock_filter);
  close(fd);
  return prog;
}

static void drop_privileges(const struct sock_fprog *filter) {
  if (setgroups(0, NULL) < 0) die("setgroups", NULL);
  if (setresgid(0, 0, 0) < 0) die("setresgid", NULL);
  if (setresuid(0, 0, 0) < 0) die("setresuid", NULL);
  /* An empty bounding set: root's execve gains nothing. */
  for (int cap = 0; cap <= 63; cap++) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) die("drop capability", NULL);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) die("clear ambient capabilities", NULL);
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capset, &header, data) < 0) die("capset", NULL);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no-new-privs", NULL);
  if (filter->filter != NULL && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, filter, 0, 0) < 0) die("seccomp", NULL);
}

static int enter(int argc, char **argv) {
  char *cgroups[MAX_LIST];
  int ncg = 0, i = 0;
  const char *target = NULL, *cwd = "/", *seccomp = NULL;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    if (i + 1 >= argc) usage();
    if (!strcmp(argv[i], "--cgroup") && ncg < MAX_LIST) cgroups[ncg++] = argv[++i];
    else if (!strcmp(argv[i], "--target")) target = argv[++i];
    else if (!strcmp(argv[i], "--cwd")) cwd = argv[++i];
    else if (!strcmp(argv[i], "--seccomp")) seccomp = argv[++i];
    else usage();
  }
  if (i + 1 >= argc || target == NULL) usage();
  char **command = argv + i + 1;
  struct sock_fprog filter = {0, NULL};
  if (seccomp != NULL) filter = read_filter(seccomp);
  join_cgroups(cgroups, ncg);

  static const char *kinds[] = {"user", "mnt", "pid", "net", "ipc", "uts", "cgroup"};
  int fds[7];
  char path[96];
  for (int k = 0; k < 7; k++) {
    snprintf(path, sizeof path, "/proc/%s/ns/%s", target, kinds[k]);
    if ((fds[k] = open(path, O_RDONLY | O_CLOEXEC)) < 0) die("open", path);
  }
  snprintf(path, sizeof path, "/proc/%s/root", target);
  int root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) die("open", path);
  /* The user namespace first: it owns the others. */
  for (int k = 0; k < 7; k++) {
    if (setns(fds[k], 0) < 0) die("setns", kinds[k]);
    close(fds[k]);
  }
  if (fchdir(root) < 0 || chroot(".") < 0) die("chroot", NULL);
  close(root);
  if (chdir(cwd) < 0) die("chdir", cwd);

  /* The PID namespace applies to children only. */
  pid_t child = fork();
  if (child < 0) die("fork", NULL);
  if (child == 0) {
    drop_privileges(&filter);
    execvp(command[0], command);
    int code = errno == ENOENT ? 127 : 126;
    fprintf(stderr, "%s: %s\n", command[0], strerror(errno));
    _exit(code);
  }
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) die("waitpid", NULL);
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

static int cleanup(int argc, char **argv) {
  for (int i = 0; i + 1 < argc; i += 2) {
    const char *path = argv[i + 1];
    if (!strcmp(argv[i], "--umount")) {
      for (int n = 0; n < 8 && umount2(path, UMOUNT_NOFOLLOW) == 0; n++) {
      }
    } else if (!strcmp(argv[i], "--remove")) {
      if (rmdir(path) < 0 && errno == ENOTDIR) unlink(path);
    } else if (strcmp(argv[i], "--cgroup") != 0) usage();
  }
  /* 500 rounds of 10 ms while any cgroup is still there (EBUSY: processes leaving it). */
  for (int round = 0; round < 500; round++) {
    int left = 0;
    for (int i = 0; i + 1 < argc; i += 2) {
      if (strcmp(argv[i], "--cgroup") != 0) continue;
      if (rmdir(argv[i + 1]) < 0 && errno != ENOENT) left++;
    }
    if (left == 0) break;
    usleep(10000);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  if (!strcmp(argv[1], "launch")) return launch(argc - 2, argv + 2, 1);
  if (!strcmp(argv[1], "idmap")) return launch(argc - 2, argv + 2, 0);
  if (!strcmp(argv[1], "exec")) return enter(argc - 2, argv + 2);
  if (!strcmp(argv[1], "cleanup")) return cleanup(argc - 2, argv + 2);
  usage();
  return 125;
}
