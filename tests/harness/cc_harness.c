/* cc_harness: private PostgreSQL, Redis, forwarder and services per test. */
#define _GNU_SOURCE
#include "cc_harness.h"
#include "cc/cc_util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <civetweb.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CC_BUILD_DIR
#error "CC_BUILD_DIR must be defined by the build"
#endif
#ifndef CC_PG_BINDIR
#define CC_PG_BINDIR "/usr/lib/postgresql/15/bin"
#endif
#define PG_TEMPLATE_VERSION "v1"
#define MAX_CHILDREN 64

struct _cc_harness_t {
    char name[128];
    char dir[256];
    pid_t pg_pid, redis_pid;
    int pg_port, redis_port;
    char pg_url[256], redis_url[128];
};

/* Everything a signal handler needs, in plain static storage. */
static pid_t s_children[MAX_CHILDREN];
static int s_nchildren;
static char s_dir_for_cleanup[256];
static cc_harness_t *s_current;

static void
s_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "harness: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();   /* the SIGABRT handler stops what was started */
}

static void
s_track(pid_t pid)
{
    for (int i = 0; i < s_nchildren; i++)
        if (s_children[i] == 0) { s_children[i] = pid; return; }
    if (s_nchildren == MAX_CHILDREN) s_fail("too many children");
    s_children[s_nchildren++] = pid;
}

static void
s_untrack(pid_t pid)
{
    for (int i = 0; i < s_nchildren; i++)
        if (s_children[i] == pid) s_children[i] = 0;
}

/* Async-signal-safe: kill every child and remove the folder. */
static void
s_emergency_cleanup(void)
{
    for (int i = 0; i < s_nchildren; i++)
        if (s_children[i] > 0) kill(s_children[i], SIGKILL);
    for (int i = 0; i < s_nchildren; i++)
        if (s_children[i] > 0) waitpid(s_children[i], NULL, 0);
    s_nchildren = 0;
    if (s_dir_for_cleanup[0] && !getenv("CC_KEEP_TEST_DIR")) {
        pid_t pid = fork();
        if (pid == 0) {
            char *const argv[] = { "rm", "-rf", s_dir_for_cleanup, NULL };
            execv("/bin/rm", argv);
            _exit(127);
        }
        if (pid > 0) waitpid(pid, NULL, 0);
    }
}

static void
s_on_fatal(int sig)
{
    if (s_dir_for_cleanup[0]) {
        static const char msg[] = "harness: test failed; stopping its servers. Logs were under ";
        ssize_t w = write(2, msg, sizeof msg - 1);
        w = write(2, s_dir_for_cleanup, strlen(s_dir_for_cleanup));
        w = write(2, "\n", 1);
        (void) w;
    }
    s_emergency_cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void
s_at_exit(void)
{
    if (s_current) cc_harness_destroy(&s_current);
}

static bool
s_root(void)
{
    return geteuid() == 0;
}

/* Runs argv as a child. as_postgres: drop to the postgres user when root.
 * log: file for stdout and stderr. stdin_text: fed to stdin when not NULL.
 * Returns the pid. */
static pid_t
s_spawn(char *const *argv, const char *log, bool as_postgres, const char *stdin_text)
{
    int in[2] = { -1, -1 };
    if (stdin_text && pipe(in) != 0) s_fail("pipe: %s", strerror(errno));
    struct passwd *pw = as_postgres && s_root() ? getpwnam("postgres") : NULL;
    if (as_postgres && s_root() && !pw) s_fail("running as root needs the 'postgres' user (tools/setup installs it)");
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) s_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        /* The log is opened before dropping privileges: the folder is ours. */
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
        if (pw && (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)) _exit(126);
        /* After the uid change, which clears it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(125);
        if (stdin_text) { dup2(in[0], 0); close(in[0]); close(in[1]); }
        else { int nul = open("/dev/null", O_RDONLY); dup2(nul, 0); close(nul); }
        execvp(argv[0], argv);
        fprintf(stderr, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (stdin_text) {
        close(in[0]);
        ssize_t w = write(in[1], stdin_text, strlen(stdin_text));
        (void) w;
        close(in[1]);
    }
    return pid;
}

/* Runs argv to completion. Returns its exit status (0 = success). */
static int
s_run(char *const *argv, const char *log, bool as_postgres, const char *stdin_text)
{
    pid_t pid = s_spawn(argv, log, as_postgres, stdin_text);
    int status;
    if (waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void
s_chown_postgres(const char *path)
{
    if (!s_root()) return;
    struct passwd *pw = getpwnam("postgres");
    if (!pw) s_fail("no 'postgres' user");
    if (chown(path, pw->pw_uid, pw->pw_gid) != 0) s_fail("chown %s: %s", path, strerror(errno));
}

cc_harness_t *
cc_harness_new(const char *test_name)
{
    assert(!s_current && "one harness per test process");
    cc_harness_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    snprintf(self->name, sizeof self->name, "%s", test_name);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(self->dir, sizeof self->dir, "%s/cc-test-%s-XXXXXX", tmp, test_name);
    if (!mkdtemp(self->dir)) s_fail("mkdtemp %s: %s", self->dir, strerror(errno));
    chmod(self->dir, 0755);
    snprintf(s_dir_for_cleanup, sizeof s_dir_for_cleanup, "%s", self->dir);
    int sigs[] = { SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGTERM, SIGINT, SIGALRM };
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], s_on_fatal);
    signal(SIGPIPE, SIG_IGN);
    s_current = self;
    static bool registered;
    if (!registered) { atexit(s_at_exit); registered = true; }
    /* Spawned services must not read a user's stack settings by accident:
     * the defaults file plus what the harness exports is all they see. */
    unsetenv("CC_CONFIG_FILE");
    setenv("CC_LOG_LEVEL", "info", 1);
    return self;
}

void
cc_harness_destroy(cc_harness_t **self_p)
{
    if (!self_p || !*self_p) return;
    cc_harness_t *self = *self_p;
    for (int i = 0; i < s_nchildren; i++)
        if (s_children[i] > 0 && s_children[i] != self->pg_pid && s_children[i] != self->redis_pid)
            cc_harness_stop(self, s_children[i], SIGTERM, 5000);
    cc_harness_stop_redis(self);
    cc_harness_stop_pg(self);
    s_emergency_cleanup();   /* anything left, and the folder */
    s_dir_for_cleanup[0] = '\0';
    if (s_current == self) s_current = NULL;
    free(self);
    *self_p = NULL;
}

const char *cc_harness_dir(cc_harness_t *self) { return self->dir; }

#define PORTS_LO 10000
#define PORTS_HI 20000     /* one past the last */

/* True when port of 127.0.0.1 can be bound for type (SOCK_DGRAM, SOCK_STREAM) now. */
static bool
s_bindable(int type, int port)
{
    int fd = socket(AF_INET, type, 0);
    if (fd < 0) return false;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = bind(fd, (struct sockaddr *) &a, sizeof a) == 0;
    close(fd);
    return ok;
}

int
cc_harness_free_ports(int count)
{
    assert(count >= 1 && count <= 64);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/cc-harness-ports-%d", tmp, (int) geteuid());
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) s_fail("lock %s: %s", path, strerror(errno));
    char text[16] = { 0 };
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    int next = n > 0 ? atoi(text) : 0;
    if (next < PORTS_LO || next >= PORTS_HI) next = PORTS_LO;
    for (int scanned = 0; scanned < PORTS_HI - PORTS_LO; scanned += count) {
        if (next + count > PORTS_HI) next = PORTS_LO;
        int base = next, ok = 0;
        next += count;
        while (ok < count && s_bindable(SOCK_DGRAM, base + ok) && s_bindable(SOCK_STREAM, base + ok)) ok++;
        if (ok < count) continue;
        int len = snprintf(text, sizeof text, "%d\n", next);
        if (pwrite(fd, text, (size_t) len, 0) != len || ftruncate(fd, len) != 0)
            s_fail("write %s: %s", path, strerror(errno));
        flock(fd, LOCK_UN);
        close(fd);
        return base;
    }
    s_fail("no %d free ports in %d-%d", count, PORTS_LO, PORTS_HI - 1);
    return -1;
}

int
cc_harness_free_port(void)
{
    return cc_harness_free_ports(1);
}

bool
cc_harness_wait_udp_bound(int port, int timeout_ms)
{
    int64_t end = cc_mono_ms() + timeout_ms;
    while (s_bindable(SOCK_DGRAM, port)) {
        if (cc_mono_ms() >= end) return false;
        cc_sleep_ms(20);
    }
    return true;
}

/* ---------------------------------------------------------------- PostgreSQL */

/* Makes (once per machine, under a lock) an initialised cluster with the
 * callcenter database, copied for each test: initdb is the slow part. */
static void
s_pg_template(char *path, size_t cap)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, cap, "%s/cc-pg-template-%s-%d", tmp, PG_TEMPLATE_VERSION, (int) geteuid());
    char lock[512], ready[512], log[512];
    snprintf(lock, sizeof lock, "%s.lock", path);
    snprintf(ready, sizeof ready, "%s/.cc-ready", path);
    snprintf(log, sizeof log, "%s.log", path);
    int fd = open(lock, O_RDWR | O_CREAT, 0644);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) s_fail("lock %s: %s", lock, strerror(errno));
    if (access(ready, F_OK) != 0) {
        char *const rm[] = { "rm", "-rf", path, NULL };
        s_run(rm, log, false, NULL);
        if (mkdir(path, 0700) != 0) s_fail("mkdir %s: %s", path, strerror(errno));
        s_chown_postgres(path);
        char *const initdb[] = { CC_PG_BINDIR "/initdb", "-D", path, "-U", "callcenter", "--auth=trust",
                                 "--no-sync", "-E", "UTF8", "--locale=C", NULL };
        if (s_run(initdb, log, true, NULL) != 0) s_fail("initdb failed: see %s", log);
        char *const single[] = { CC_PG_BINDIR "/postgres", "--single", "-D", path, "postgres", NULL };
        if (s_run(single, log, true, "CREATE DATABASE callcenter;\n") != 0) s_fail("CREATE DATABASE failed: see %s", log);
        int r = open(ready, O_WRONLY | O_CREAT, 0644);
        if (r < 0) s_fail("write %s: %s", ready, strerror(errno));
        close(r);
    }
    flock(fd, LOCK_UN);
    close(fd);
}

static void
s_pg_launch(cc_harness_t *self)
{
    char data[512], log[512], port[16];
    snprintf(data, sizeof data, "%s/pg", self->dir);
    snprintf(log, sizeof log, "%s/postgres.log", self->dir);
    snprintf(port, sizeof port, "%d", self->pg_port);
    char *const argv[] = { CC_PG_BINDIR "/postgres", "-D", data, "-p", port, "-k", data,
                           "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                           "-c", "full_page_writes=off", "-c", "max_connections=200", NULL };
    self->pg_pid = s_spawn(argv, log, true, NULL);
    s_track(self->pg_pid);
    char conninfo[256];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d user=callcenter dbname=callcenter connect_timeout=2",
             self->pg_port);
    int64_t deadline = cc_mono_ms() + 60000;
    while (PQping(conninfo) != PQPING_OK) {
        if (waitpid(self->pg_pid, NULL, WNOHANG) == self->pg_pid) {
            s_untrack(self->pg_pid);
            s_fail("postgres exited at start: see %s", log);
        }
        if (cc_mono_ms() > deadline) s_fail("postgres not ready after 60 s: see %s", log);
        cc_sleep_ms(20);
    }
}

const char *
cc_harness_start_pg(cc_harness_t *self)
{
    char tmpl[512], data[512], log[512];
    s_pg_template(tmpl, sizeof tmpl);
    snprintf(data, sizeof data, "%s/pg", self->dir);
    snprintf(log, sizeof log, "%s/harness.log", self->dir);
    char *const cp[] = { "cp", "-a", tmpl, data, NULL };
    if (s_run(cp, log, false, NULL) != 0) s_fail("copying the PostgreSQL template failed");
    self->pg_port = cc_harness_free_port();
    s_pg_launch(self);
    snprintf(self->pg_url, sizeof self->pg_url, "postgresql://callcenter@127.0.0.1:%d/callcenter", self->pg_port);
    setenv("DATABASE_URL", self->pg_url, 1);
    return self->pg_url;
}

void
cc_harness_stop_pg(cc_harness_t *self)
{
    if (self->pg_pid <= 0) return;
    /* SIGINT: fast shutdown, clients disconnected. */
    cc_harness_stop(self, self->pg_pid, SIGINT, 30000);
    self->pg_pid = 0;
}

void
cc_harness_restart_pg(cc_harness_t *self)
{
    assert(self->pg_port);
    cc_harness_stop_pg(self);
    s_pg_launch(self);
}

/* ---------------------------------------------------------------- Redis */

static void
s_redis_launch(cc_harness_t *self)
{
    char port[16], log[512];
    snprintf(port, sizeof port, "%d", self->redis_port);
    snprintf(log, sizeof log, "%s/redis.log", self->dir);
    char *const argv[] = { "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", self->dir, "--daemonize", "no", NULL };
    self->redis_pid = s_spawn(argv, log, false, NULL);
    s_track(self->redis_pid);
    int64_t deadline = cc_mono_ms() + 30000;
    for (;;) {
        struct timeval tv = { 1, 0 };
        redisContext *c = redisConnectWithTimeout("127.0.0.1", self->redis_port, tv);
        redisReply *r = c && !c->err ? redisCommand(c, "PING") : NULL;
        bool ok = r && r->type == REDIS_REPLY_STATUS;
        if (r) freeReplyObject(r);
        if (c) redisFree(c);
        if (ok) return;
        if (waitpid(self->redis_pid, NULL, WNOHANG) == self->redis_pid) {
            s_untrack(self->redis_pid);
            s_fail("redis-server exited at start: see %s", log);
        }
        if (cc_mono_ms() > deadline) s_fail("redis not ready after 30 s: see %s", log);
        cc_sleep_ms(20);
    }
}

const char *
cc_harness_start_redis(cc_harness_t *self)
{
    self->redis_port = cc_harness_free_port();
    s_redis_launch(self);
    snprintf(self->redis_url, sizeof self->redis_url, "redis://127.0.0.1:%d/0", self->redis_port);
    setenv("REDIS_URL", self->redis_url, 1);
    return self->redis_url;
}

void
cc_harness_stop_redis(cc_harness_t *self)
{
    if (self->redis_pid <= 0) return;
    cc_harness_stop(self, self->redis_pid, SIGTERM, 10000);
    self->redis_pid = 0;
}

void
cc_harness_restart_redis(cc_harness_t *self)
{
    assert(self->redis_port);
    cc_harness_stop_redis(self);
    s_redis_launch(self);
}

/* ---------------------------------------------------------------- services */

const char *
cc_harness_bin(const char *name, char *buf, size_t cap)
{
    if (strchr(name, '/')) snprintf(buf, cap, "%s", name);
    else snprintf(buf, cap, "%s/services/%s/%s", CC_BUILD_DIR, name, name);
    return buf;
}

pid_t
cc_harness_spawn(cc_harness_t *self, const char *name, const char *const *args)
{
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    return cc_harness_spawn_as(self, base, name, args);
}

pid_t
cc_harness_spawn_as(cc_harness_t *self, const char *label, const char *name, const char *const *args)
{
    char bin[512], log[512];
    cc_harness_bin(name, bin, sizeof bin);
    snprintf(log, sizeof log, "%s/%s.log", self->dir, label);
    char *argv[32];
    int argc = 0;
    argv[argc++] = bin;
    for (; args && *args && argc < 31; args++) argv[argc++] = (char *) *args;
    argv[argc] = NULL;
    pid_t pid = s_spawn(argv, log, false, NULL);
    s_track(pid);
    return pid;
}

int
cc_harness_stop(cc_harness_t *self, pid_t pid, int sig, int timeout_ms)
{
    (void) self;
    kill(pid, sig);
    int status;
    int64_t deadline = cc_mono_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) {
            s_untrack(pid);
            return r == pid ? status : -1;
        }
        if (cc_mono_ms() > deadline) {
            fprintf(stderr, "harness: pid %d ignored signal %d for %d ms; killing\n", (int) pid, sig, timeout_ms);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            s_untrack(pid);
            return -1;
        }
        cc_sleep_ms(10);
    }
}

pid_t
cc_harness_start_forwarder(cc_harness_t *self, bool nodrop, int hwm)
{
    char pub[64], sub[64], admin[16], hwms[16];
    snprintf(pub, sizeof pub, "tcp://127.0.0.1:%d", cc_harness_free_port());
    snprintf(sub, sizeof sub, "tcp://127.0.0.1:%d", cc_harness_free_port());
    int admin_port = cc_harness_free_port();
    snprintf(admin, sizeof admin, "%d", admin_port);
    snprintf(hwms, sizeof hwms, "%d", hwm);
    setenv("CC_BUS_PUB", pub, 1);
    setenv("CC_BUS_SUB", sub, 1);
    setenv("CC_BUS_HWM", hwms, 1);
    setenv("CC_BUS_NODROP", nodrop ? "true" : "false", 1);
    setenv("FORWARDER_ADMIN_PORT", admin, 1);
    pid_t pid = cc_harness_spawn(self, "forwarder", NULL);
    if (!cc_harness_wait_http(admin_port, "/healthz", 20000)) s_fail("forwarder not healthy: see %s/forwarder.log", self->dir);
    return pid;
}

static void
s_setenv_int(const char *name, int value)
{
    char v[16];
    snprintf(v, sizeof v, "%d", value);
    setenv(name, v, 1);
}

void
cc_harness_start_callpath(cc_harness_t *self, cc_callpath_t *p, const char *routes, int rtp_base)
{
    memset(p, 0, sizeof *p);
    snprintf(p->acd_rpc, sizeof p->acd_rpc, "tcp://127.0.0.1:%d", cc_harness_free_port());
    snprintf(p->gw_rpc, sizeof p->gw_rpc, "tcp://127.0.0.1:%d", cc_harness_free_port());
    p->acd_admin = cc_harness_free_port();
    p->gw_admin = cc_harness_free_port();
    p->sip_port = cc_harness_free_ports(1);   /* UDP and TCP */
    setenv("ACD_RPC", p->acd_rpc, 1);
    setenv("ACD_GATEWAY_RPC", p->gw_rpc, 1);
    s_setenv_int("ACD_ADMIN_PORT", p->acd_admin);
    p->acd = cc_harness_spawn(self, "acd", NULL);
    if (!cc_harness_wait_http(p->acd_admin, "/healthz", 20000)) s_fail("acd not healthy: see %s/acd.log", self->dir);
    setenv("GATEWAY_RPC", p->gw_rpc, 1);
    setenv("GATEWAY_ACD_RPC", p->acd_rpc, 1);
    s_setenv_int("GATEWAY_ADMIN_PORT", p->gw_admin);
    s_setenv_int("GATEWAY_SIP_PORT", p->sip_port);
    s_setenv_int("GATEWAY_RTP_MIN", rtp_base);
    s_setenv_int("GATEWAY_RTP_MAX", rtp_base + 99);
    setenv("GATEWAY_ROUTES", routes, 1);
    p->gateway = cc_harness_spawn(self, "gateway", NULL);
    if (!cc_harness_wait_http(p->gw_admin, "/healthz", 20000)) s_fail("gateway not healthy: see %s/gateway.log", self->dir);
}

/* ---------------------------------------------------------------- HTTP */

/* Sends request (printf-formatted by the caller) and reads the answer. */
static int
s_http(int port, const char *request, char **body_p)
{
    static bool inited;
    if (!inited) { mg_init_library(0); inited = true; }
    char err[256];
    struct mg_connection *c = mg_download("127.0.0.1", port, 0, err, sizeof err, "%s", request);
    if (body_p) *body_p = NULL;
    if (!c) return 0;
    int status = mg_get_response_info(c)->status_code;
    char *body = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&body, &len);
    char buf[4096];
    int n;
    while ((n = mg_read(c, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t) n, out);
    fclose(out);
    mg_close_connection(c);
    if (body_p) *body_p = body;
    else free(body);
    return status;
}

int
cc_harness_http_get(int port, const char *path, char **body_p)
{
    char req[1024];
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    return s_http(port, req, body_p);
}

int
cc_harness_http_get_with(int port, const char *path, const char *headers, char **body_p)
{
    char *req = NULL;
    if (asprintf(&req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s\r\n", path, headers) < 0) abort();
    int status = s_http(port, req, body_p);
    free(req);
    return status;
}

int
cc_harness_http_post(int port, const char *path, const char *headers, const char *body, char **body_p)
{
    char *req = NULL;
    if (asprintf(&req, "POST %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\n%s\r\n%s", path, strlen(body), headers, body) < 0)
        abort();
    int status = s_http(port, req, body_p);
    free(req);
    return status;
}

bool
cc_harness_wait_http(int port, const char *path, int timeout_ms)
{
    int64_t deadline = cc_mono_ms() + timeout_ms;
    while (cc_mono_ms() < deadline) {
        if (cc_harness_http_get(port, path, NULL) == 200) return true;
        cc_sleep_ms(50);
    }
    return false;
}

char *
cc_harness_read_file(const char *path)
{
    return cc_read_file(path);
}

void
cc_samples_add(cc_samples_t *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) abort();
    }
    s->v[s->n++] = x;
    s->sorted = false;
}

static int
s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

double
cc_samples_quantile(cc_samples_t *s, double p)
{
    if (s->n == 0) return 0;
    if (!s->sorted) {
        qsort(s->v, s->n, sizeof *s->v, s_cmp_double);
        s->sorted = true;
    }
    size_t i = p <= 0 ? 0 : (size_t) (p * (double) s->n);
    return s->v[i < s->n ? i : s->n - 1];
}

void
cc_samples_free(cc_samples_t *s)
{
    free(s->v);
    *s = (cc_samples_t) { 0 };
}
