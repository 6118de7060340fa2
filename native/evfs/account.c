/*
 * evfs: the quota account (see main.c and docs/sandboxes.md, "Quota").
 *
 * evfs never decides on its own how much of a volume's quota it may use: it holds a *balance*
 * of bytes granted to it, spends it on growth (writes, truncate, fallocate, links, symlinks)
 * and refills it by asking for a grant. Freed bytes (unlink, truncate, O_TRUNC, a rename over
 * a file) go back into the balance; a balance above two chunks is given back.
 *
 * Who grants:
 *   --account=SOCKET  the host process that started the sandbox, over a unix socket. It
 *                     reserves each grant in the volume's usage account (the one host-side
 *                     writes and other sandboxes use), so everybody shares one quota. Lines:
 *                       evfs: "grant WANT MIN BALANCE"  host: "GRANTED USED"  (GRANTED is 0, or
 *                             between MIN and WANT; USED: the account, reservations included)
 *                       evfs: "return BYTES BALANCE"    host: "0 USED"
 *                       evfs: "bye BALANCE"             (at unmount; no answer: the host gives
 *                                                        the balance back and forgets us)
 *                     A host that is gone grants nothing more: growth fails with ENOSPC.
 *   otherwise         --quota/--used on their own: evfs is the only writer.
 *
 * Every function here runs with g.lock held, so the check and the write that follows it are
 * one step for all of evfs's threads.
 */
#include "evfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A grant asks for at least this much, so a sequential write asks once per 4 MiB. */
#define CHUNK (4LL << 20)

static int channel = -1;     /* the socket to the host; -1: local quota (or the host is gone) */
static int hosted = 0;       /* --account was given */
static long long balance;    /* granted and not yet spent */

int account_connect(const char *path) {
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof addr.sun_path) return -1;
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    close(fd);
    return -1;
  }
  channel = fd;
  hosted = 1;
  return 0;
}

static void lost(void) {
  if (channel >= 0) close(channel);
  channel = -1;
}

static int send_line(const char *line) {
  size_t len = strlen(line), done = 0;
  while (done < len) {
    ssize_t n = send(channel, line + done, len - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    done += (size_t)n;
  }
  return 0;
}

/* One request and its answer "A B"; -1 when the host is gone. */
static int ask(const char *line, long long *a, long long *b) {
  if (channel < 0 || send_line(line) < 0) return -1;
  char buf[128];
  size_t len = 0;
  while (len < sizeof buf - 1) {
    ssize_t n = read(channel, buf + len, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    if (buf[len] == '\n') break;
    len++;
  }
  buf[len] = '\0';
  return sscanf(buf, "%lld %lld", a, b) == 2 ? 0 : -1;
}

/* Asks for WANT bytes, at least MIN; adds what was granted to the balance. */
static void refill(long long want, long long min) {
  if (!hosted) {
    /* local: g.used is the usage plus our balance */
    long long room = g.quota - g.used;
    long long n = want <= room ? want : room;
    if (n >= min && n > 0) {
      g.used += n;
      balance += n;
    }
    return;
  }
  char line[96];
  snprintf(line, sizeof line, "grant %lld %lld %lld\n", want, min, balance);
  long long granted = 0, used = 0;
  if (ask(line, &granted, &used) < 0) {
    lost();
    return;
  }
  if (granted > 0) balance += granted;
  g.used = used;
}

long long account_available(long long need) {
  if (need > balance) refill(need - balance > CHUNK ? need - balance : CHUNK, 1);
  return balance;
}

void account_spend(long long bytes) {
  balance -= bytes;
  if (balance < 0) balance = 0;
}

/* Keeps at most two chunks: the rest goes back to the account. */
static void trim(void) {
  if (balance <= 2 * CHUNK) return;
  long long back = balance - CHUNK;
  balance = CHUNK;
  if (!hosted) {
    g.used -= back;
    return;
  }
  char line[96];
  snprintf(line, sizeof line, "return %lld %lld\n", back, balance);
  long long zero = 0, used = 0;
  if (ask(line, &zero, &used) < 0) lost();
  else g.used = used;
}

int account_charge(long long bytes) {
  if (bytes <= 0) {
    balance -= bytes;
    trim();
    return 0;
  }
  if (bytes > balance) refill(bytes - balance > CHUNK ? bytes - balance : CHUNK, bytes - balance);
  if (bytes > balance) return -ENOSPC;
  balance -= bytes;
  return 0;
}

long long account_usage(void) { return g.used - balance; }

void account_close(void) {
  if (channel < 0) return;
  char line[64];
  snprintf(line, sizeof line, "bye %lld\n", balance);
  (void)send_line(line);
  lost();
}
