/*
 * meshwork-cni-shim: the executable a CNI runtime runs for meshwork-cni.
 *
 * It hands the call (CNI_* and MESHWORK_* environment plus stdin) to the
 * resident daemon (cni/daemon.ts) over a unix socket, prints the daemon's
 * stdout and stderr and exits with its code, so a call costs a connect
 * instead of a Node start-up. When no daemon answers it execs the
 * standalone plugin (`node <repo>/dist/cni/main.js`), so the plugin always
 * works. Wire format: see cni/daemon.ts.
 *
 * Environment:
 *   MESHWORK_CNI_SOCKET  daemon socket (default /run/meshwork/cni.sock)
 *   MESHWORK_CNI_MAIN    standalone entry (default <repo>/dist/cni/main.js,
 *                        <repo> found from this binary's path)
 *   MESHWORK_NODE        node binary for the fallback (default: node on PATH,
 *                        then /usr/local/bin/node, /usr/bin/node)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/meshwork/cni.sock"
#define MAX_FRAME (16u * 1024u * 1024u)

extern char **environ;

struct buf { char *data; size_t len, cap; };

static void die_json(const char *what, const char *detail) {
  /* The spec's error JSON on stdout; code 100 is meshwork's internal error. */
  printf("{\"cniVersion\":\"1.0.0\",\"code\":100,\"msg\":\"meshwork-cni: %s\",\"details\":\"%s\"}\n", what, detail);
  fflush(stdout);
  exit(1);
}

static void buf_put(struct buf *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) die_json("out of memory", "");
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void buf_u32(struct buf *b, uint32_t v) {
  unsigned char x[4] = { v >> 24, v >> 16, v >> 8, v };
  buf_put(b, x, 4);
}

/* Sockets use send(MSG_NOSIGNAL): a daemon that vanishes mid-request must
 * give EPIPE (and the standalone fallback), not kill us with SIGPIPE. */
static int write_all_to(int fd, const char *p, size_t n, int is_socket) {
  while (n > 0) {
    ssize_t w = is_socket ? send(fd, p, n, MSG_NOSIGNAL) : write(fd, p, n);
    if (w < 0) { if (errno == EINTR) continue; return -1; }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int write_all(int fd, const char *p, size_t n) { return write_all_to(fd, p, n, 0); }

/* Reads exactly n bytes; returns bytes read (short only at EOF) or -1. */
static ssize_t read_full(int fd, char *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, p + got, n - got);
    if (r < 0) { if (errno == EINTR) continue; return -1; }
    if (r == 0) break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

static uint32_t get_u32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return ((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) | ((uint32_t)u[2] << 8) | u[3];
}

/* Runs the standalone Node plugin in place of this process. `in` is stdin
 * already consumed (NULL when stdin is untouched): it is replayed from a memfd. */
static void fallback(int argc, char **argv, const struct buf *in) {
  if (getenv("MESHWORK_CNI_DEBUG"))
    fprintf(stderr, "meshwork-cni: daemon unavailable (%s), running the standalone plugin\n", strerror(errno));
  if (in) {
    int mfd = memfd_create("meshwork-cni-stdin", 0);
    if (mfd < 0 || write_all(mfd, in->data, in->len) < 0 || lseek(mfd, 0, SEEK_SET) < 0 || dup2(mfd, 0) < 0)
      die_json("no daemon answered and stdin could not be handed to the standalone plugin", strerror(errno));
    close(mfd);
  }
  char main_js[PATH_MAX];
  const char *env_main = getenv("MESHWORK_CNI_MAIN");
  if (env_main && *env_main) {
    snprintf(main_js, sizeof main_js, "%s", env_main);
  } else {
    /* <repo>/build/Release/meshwork-cni-shim -> <repo>/dist/cni/main.js */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) die_json("cannot locate the standalone plugin", strerror(errno));
    exe[n] = 0;
    char *repo = dirname(dirname(dirname(exe)));
    snprintf(main_js, sizeof main_js, "%s/dist/cni/main.js", repo);
  }
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) die_json("out of memory", "");
  args[1] = main_js;
  for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
  const char *node = getenv("MESHWORK_NODE");
  if (node && *node) { args[0] = (char *)node; execv(node, args); }
  args[0] = "node";
  execvp("node", args);
  args[0] = "/usr/local/bin/node";
  execv(args[0], args);
  args[0] = "/usr/bin/node";
  execv(args[0], args);
  die_json("no daemon answered and node was not found for the standalone plugin", strerror(errno));
}

static int forwarded(const char *kv) {
  return strncmp(kv, "CNI_", 4) == 0 || strncmp(kv, "MESHWORK_", 9) == 0;
}

int main(int argc, char **argv) {
  const char *path = getenv("MESHWORK_CNI_SOCKET");
  if (!path || !*path) path = DEFAULT_SOCKET;

  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof addr.sun_path) fallback(argc, argv, NULL);
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) fallback(argc, argv, NULL);

  /* stdin first (the runtime closes it after the config), then the frame. */
  struct buf in = { 0 };
  char chunk[65536];
  for (;;) {
    ssize_t r = read(0, chunk, sizeof chunk);
    if (r < 0) { if (errno == EINTR) continue; die_json("reading stdin", strerror(errno)); }
    if (r == 0) break;
    buf_put(&in, chunk, (size_t)r);
    if (in.len > MAX_FRAME) die_json("stdin too large", "");
  }

  struct buf env = { 0 };
  /* The daemon acts in its own network namespace: tell it ours, so a daemon
   * of another namespace (a socket path shared across namespaces) declines
   * and we run standalone instead of wiring the wrong host. */
  struct stat ns;
  if (stat("/proc/self/ns/net", &ns) == 0) {
    char id[96];
    int n = snprintf(id, sizeof id, "MESHWORK_SHIM_NETNS=%lu:%lu", (unsigned long)ns.st_dev, (unsigned long)ns.st_ino);
    buf_put(&env, id, (size_t)n);
  }
  for (char **e = environ; *e; e++) {
    if (!forwarded(*e)) continue;
    if (env.len) buf_put(&env, "", 1);
    buf_put(&env, *e, strlen(*e));
  }

  struct buf req = { 0 };
  buf_put(&req, "MWC1", 4);
  buf_u32(&req, (uint32_t)env.len);
  if (env.len) buf_put(&req, env.data, env.len);
  buf_u32(&req, (uint32_t)in.len);
  if (in.len) buf_put(&req, in.data, in.len);
  if (write_all_to(fd, req.data, req.len, 1) < 0) { close(fd); fallback(argc, argv, &in); }
  shutdown(fd, SHUT_WR);

  /* Nothing answered at all (daemon died before replying): run standalone. */
  char head[12];
  ssize_t got = read_full(fd, head, sizeof head);
  if (got == 0) { close(fd); fallback(argc, argv, &in); }
  if (got != (ssize_t)sizeof head || memcmp(head, "MWR1", 4) != 0) die_json("bad reply from the daemon", path);
  uint32_t code = get_u32(head + 4);
  for (int stream = 1; stream <= 2; stream++) {
    uint32_t len;
    if (stream == 1) len = get_u32(head + 8);
    else {
      char l[4];
      if (read_full(fd, l, 4) != 4) die_json("truncated reply from the daemon", path);
      len = get_u32(l);
    }
    if (len > MAX_FRAME) die_json("oversized reply from the daemon", path);
    while (len > 0) {
      ssize_t r = read(fd, chunk, len < sizeof chunk ? len : sizeof chunk);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) die_json("truncated reply from the daemon", path);
      if (write_all(stream, chunk, (size_t)r) < 0) return 1;
      len -= (uint32_t)r;
    }
  }
  return (int)(code > 255 ? 1 : code);
}
