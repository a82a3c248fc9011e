/* cc_redis: hiredis connection with reconnect, EVALSHA scripts and function libraries. */
#include "cc/cc_redis.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"

#include <assert.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SCRIPTS 64

typedef struct {
    char *name;
    char *lua;          /* a script, or a function library with its header */
    char sha[41];       /* empty until loaded on the current server ("loaded" for a library) */
    bool library;       /* run with FCALL fname, not EVALSHA sha */
    char fname[96];     /* the library's function: its name and a digest of its code */
} script_t;

struct _cc_redis_t {
    char host[256];
    int port, db;
    char password[256];
    int reconnect_ms;
    redisContext *ctx;
    script_t scripts[MAX_SCRIPTS];
    int nscripts;
    char error[256];
    int pending;        /* pipelined calls not read yet */
    _Atomic bool healthy;
    cc_metric_t *m_reconnects;
};

/* Parses redis://[:password@]host[:port][/db]. Returns 0 or CC_EINVAL. */
static int
s_parse_url(cc_redis_t *self, const char *url)
{
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0) return CC_EINVAL;
    p += 8;
    const char *at = strchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t) (at - p));
        const char *pw = colon ? colon + 1 : p;
        if ((size_t) (at - pw) >= sizeof self->password) return CC_EINVAL;
        snprintf(self->password, sizeof self->password, "%.*s", (int) (at - pw), pw);
        p = at + 1;
    }
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= sizeof self->host) return CC_EINVAL;
    snprintf(self->host, sizeof self->host, "%.*s", (int) hl, p);
    p += hl;
    self->port = 6379;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535) return CC_EINVAL;
        self->port = (int) port;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long db = strtol(p + 1, &end, 10);
        if (*end || db < 0 || db > 15) return CC_EINVAL;
        self->db = (int) db;
    } else if (*p && strcmp(p, "/") != 0) {
        return CC_EINVAL;
    }
    return 0;
}

cc_redis_t *
cc_redis_new(const char *url, int reconnect_ms, cc_metrics_t *metrics)
{
    cc_redis_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    if (s_parse_url(self, url)) {
        CC_ERROR("redis url malformed", "url_length=%zu", strlen(url));
        free(self);
        return NULL;
    }
    self->reconnect_ms = reconnect_ms;
    if (metrics)
        self->m_reconnects = cc_metrics_counter(metrics, "cc_redis_reconnects_total", NULL, "Redis connections made again");
    return self;
}

void
cc_redis_destroy(cc_redis_t **self_p)
{
    if (!self_p || !*self_p) return;
    cc_redis_t *self = *self_p;
    if (self->ctx) redisFree(self->ctx);
    for (int i = 0; i < self->nscripts; i++) {
        free(self->scripts[i].name);
        free(self->scripts[i].lua);
    }
    free(self);
    *self_p = NULL;
}

/* Sends a command on the raw context, no retry. */
static redisReply *
s_raw(cc_redis_t *self, int argc, const char **argv)
{
    assert(self->pending == 0 && "a plain command while pipelined replies are unread");
    if (!self->ctx) return NULL;
    redisReply *r = redisCommandArgv(self->ctx, argc, argv, NULL);
    if (!r) {
        snprintf(self->error, sizeof self->error, "redis I/O: %s", self->ctx->errstr);
        atomic_store(&self->healthy, false);
    }
    return r;
}

static int
s_connect_once(cc_redis_t *self)
{
    if (self->ctx) redisFree(self->ctx);
    struct timeval tv = { 1, 0 };
    self->ctx = redisConnectWithTimeout(self->host, self->port, tv);
    for (int i = 0; i < self->nscripts; i++) self->scripts[i].sha[0] = '\0';
    if (!self->ctx || self->ctx->err) {
        snprintf(self->error, sizeof self->error, "redisConnect %s:%d: %s", self->host, self->port,
                 self->ctx ? self->ctx->errstr : "out of memory");
        if (self->ctx) redisFree(self->ctx);
        self->ctx = NULL;
        atomic_store(&self->healthy, false);
        return CC_ECONN;
    }
    redisSetTimeout(self->ctx, (struct timeval) { 5, 0 });
    redisEnableKeepAlive(self->ctx);
    char db[16];
    snprintf(db, sizeof db, "%d", self->db);
    const char *auth[] = { "AUTH", self->password };
    const char *sel[] = { "SELECT", db };
    const char **cmds[] = { self->password[0] ? auth : NULL, self->db ? sel : NULL };
    for (int i = 0; i < 2; i++) {
        if (!cmds[i]) continue;
        redisReply *r = s_raw(self, 2, cmds[i]);
        bool bad = !r || r->type == REDIS_REPLY_ERROR;
        if (r && bad) snprintf(self->error, sizeof self->error, "%s: %s", cmds[i][0], r->str);
        if (r) freeReplyObject(r);
        if (bad) {
            redisFree(self->ctx);
            self->ctx = NULL;
            atomic_store(&self->healthy, false);
            return CC_ECONN;
        }
    }
    atomic_store(&self->healthy, true);
    return 0;
}

static int s_connect_attempt(void *self) { return s_connect_once(self); }

int
cc_redis_connect(cc_redis_t *self)
{
    int attempts;
    if (cc_retry(self->reconnect_ms, s_connect_attempt, self, &attempts)) {
        CC_ERROR("redis unreachable", "attempts=%d error=\"%s\"", attempts, self->error);
        return CC_ECONN;
    }
    if (attempts > 1) CC_INFO("redis connected", "attempts=%d", attempts);
    return 0;
}

bool cc_redis_healthy(cc_redis_t *self) { return atomic_load(&self->healthy); }
const char *cc_redis_error(cc_redis_t *self) { return self->error; }

redisReply *
cc_redis_cmd(cc_redis_t *self, int argc, const char **argv)
{
    redisReply *r = s_raw(self, argc, argv);
    if (r) return r;
    CC_WARN("redis connection lost; reconnecting", "error=\"%s\"", self->error);
    if (cc_redis_connect(self)) return NULL;
    if (self->m_reconnects) cc_metric_add(self->m_reconnects, 1);
    return s_raw(self, argc, argv);
}

redisReply *
cc_redis_cmdf(cc_redis_t *self, const char *fmt, ...)
{
    /* Split the formatted command into words: callers pass no spaces inside
     * arguments (use cc_redis_cmd for arbitrary values). */
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    const char *argv[64];
    int argc = 0;
    for (char *save, *w = strtok_r(buf, " ", &save); w && argc < 64; w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    return cc_redis_cmd(self, argc, argv);
}

/* A new entry named name, or NULL when that name is registered already. */
static script_t *
s_register(cc_redis_t *self, const char *name)
{
    for (int i = 0; i < self->nscripts; i++)
        if (strcmp(self->scripts[i].name, name) == 0) return NULL;
    assert(self->nscripts < MAX_SCRIPTS);
    script_t *s = &self->scripts[self->nscripts++];
    s->name = strdup(name);
    if (!s->name) abort();
    return s;
}

void
cc_redis_script(cc_redis_t *self, const char *name, const char *lua)
{
    script_t *s = s_register(self, name);
    if (!s) return;
    s->lua = strdup(lua);
    if (!s->lua) abort();
}

void
cc_redis_function(cc_redis_t *self, const char *name, const char *body)
{
    script_t *s = s_register(self, name);
    if (!s) return;
    /* Named after its code (FNV-1a, 64 bits): instances running different
     * versions side by side each call their own. */
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *) body; *p; p++) h = (h ^ *p) * 1099511628211ULL;
    snprintf(s->fname, sizeof s->fname, "%s_%016llx", name, (unsigned long long) h);
    size_t len = strlen(body) + 2 * strlen(s->fname) + 64;
    s->lua = malloc(len);
    if (!s->lua) abort();
    snprintf(s->lua, len, "#!lua name=%s\nlocal FUNCTION_NAME = '%s'\n%s", s->fname, s->fname, body);
    s->library = true;
}

const char *
cc_redis_function_name(cc_redis_t *self, const char *name)
{
    for (int i = 0; i < self->nscripts; i++)
        if (self->scripts[i].library && strcmp(self->scripts[i].name, name) == 0) return self->scripts[i].fname;
    return NULL;
}

bool
cc_redis_reply_unloaded(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR
           && (strncmp(r->str, "NOSCRIPT", 8) == 0 || strncmp(r->str, "ERR Function not found", 22) == 0);
}

static redisReply *
s_load(cc_redis_t *self, script_t *s)
{
    if (s->library) {
        const char *argv[] = { "FUNCTION", "LOAD", s->lua };
        redisReply *r = cc_redis_cmd(self, 3, argv);
        /* Loaded already (by another instance, or kept by Redis): the same code. */
        if (r && (r->type == REDIS_REPLY_STRING || (r->type == REDIS_REPLY_ERROR && strstr(r->str, "already exists")))) {
            snprintf(s->sha, sizeof s->sha, "loaded");
            freeReplyObject(r);
            return NULL;
        }
        if (r && r->type == REDIS_REPLY_ERROR)
            CC_ERROR("redis FUNCTION LOAD failed", "library=%s error=\"%s\"", s->fname, r->str);
        return r;
    }
    const char *argv[] = { "SCRIPT", "LOAD", s->lua };
    redisReply *r = cc_redis_cmd(self, 3, argv);
    if (r && r->type == REDIS_REPLY_STRING && r->len == 40) {
        memcpy(s->sha, r->str, 41);
        freeReplyObject(r);
        return NULL;
    }
    if (r && r->type == REDIS_REPLY_ERROR) CC_ERROR("redis SCRIPT LOAD failed", "script=%s error=\"%s\"", s->name, r->str);
    return r;   /* the error reply, or NULL */
}

redisReply *
cc_redis_eval(cc_redis_t *self, const char *name, int nkeys, const char **keys, int nargs, const char **args)
{
    script_t *s = NULL;
    for (int i = 0; i < self->nscripts; i++)
        if (strcmp(self->scripts[i].name, name) == 0) s = &self->scripts[i];
    assert(s && "script not registered");
    /* Any number of arguments (a batch of operations may carry thousands). */
    const char **argv = malloc((size_t) (3 + nkeys + nargs) * sizeof *argv);
    if (!argv) abort();
    char nk[16];
    snprintf(nk, sizeof nk, "%d", nkeys);
    redisReply *r = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!s->sha[0]) {
            r = s_load(self, s);
            if (!s->sha[0]) break;
        }
        argv[0] = s->library ? "FCALL" : "EVALSHA";
        argv[1] = s->library ? s->fname : s->sha;
        argv[2] = nk;
        if (nkeys) memcpy(argv + 3, keys, (size_t) nkeys * sizeof *keys);
        if (nargs) memcpy(argv + 3 + nkeys, args, (size_t) nargs * sizeof *args);
        r = cc_redis_cmd(self, 3 + nkeys + nargs, argv);
        if (cc_redis_reply_unloaded(r)) {
            /* Redis restarted or flushed its scripts: load and run again. */
            freeReplyObject(r);
            r = NULL;
            s->sha[0] = '\0';
            continue;
        }
        break;
    }
    free(argv);
    return r;
}

static script_t *
s_script(cc_redis_t *self, const char *name)
{
    for (int i = 0; i < self->nscripts; i++)
        if (strcmp(self->scripts[i].name, name) == 0) return &self->scripts[i];
    assert(0 && "script not registered");
    return NULL;
}

int
cc_redis_pipeline_eval(cc_redis_t *self, const char *name, int nkeys, const char **keys, int nargs, const char **args)
{
    script_t *s = s_script(self, name);
    if (!s->sha[0] || !self->ctx) {
        assert(self->pending == 0 && "load scripts before pipelining");
        if (!self->ctx && cc_redis_connect(self)) return CC_ECONN;
        redisReply *err = s_load(self, s);
        if (err) freeReplyObject(err);
        if (!s->sha[0]) return CC_ECONN;
    }
    int argc = 3 + nkeys + nargs;
    const char **argv = malloc((size_t) argc * sizeof *argv);
    size_t *lens = malloc((size_t) argc * sizeof *lens);
    if (!argv || !lens) abort();
    char nk[16];
    snprintf(nk, sizeof nk, "%d", nkeys);
    argv[0] = s->library ? "FCALL" : "EVALSHA";
    argv[1] = s->library ? s->fname : s->sha;
    argv[2] = nk;
    if (nkeys) memcpy(argv + 3, keys, (size_t) nkeys * sizeof *keys);
    if (nargs) memcpy(argv + 3 + nkeys, args, (size_t) nargs * sizeof *args);
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    int rc = redisAppendCommandArgv(self->ctx, argc, argv, lens) == REDIS_OK ? 0 : CC_ECONN;
    free(argv);
    free(lens);
    if (rc == 0) self->pending++;
    return rc;
}

/* The pipeline's connection is lost: every queued call with it. */
static void
s_pipeline_broken(cc_redis_t *self)
{
    snprintf(self->error, sizeof self->error, "redis I/O: %s", self->ctx->errstr);
    atomic_store(&self->healthy, false);
    CC_WARN("redis connection lost in a pipeline", "pending=%d error=\"%s\"", self->pending, self->error);
    self->pending = 0;
    redisFree(self->ctx);
    self->ctx = NULL;
    for (int i = 0; i < self->nscripts; i++) self->scripts[i].sha[0] = '\0';
}

int cc_redis_fd(cc_redis_t *self) { return self->ctx ? self->ctx->fd : -1; }

int
cc_redis_pipeline_send(cc_redis_t *self)
{
    if (!self->ctx) return CC_ECONN;
    int done = 0;
    while (!done)
        if (redisBufferWrite(self->ctx, &done) != REDIS_OK) {
            s_pipeline_broken(self);
            return CC_ECONN;
        }
    return 0;
}

int
cc_redis_pipeline_poll(cc_redis_t *self, redisReply **reply_p)
{
    *reply_p = NULL;
    if (self->pending == 0 || !self->ctx) return CC_ECONN;
    void *reply = NULL;
    if (redisGetReplyFromReader(self->ctx, &reply) != REDIS_OK) {
        s_pipeline_broken(self);
        return CC_ECONN;
    }
    if (!reply) {
        if (redisBufferRead(self->ctx) != REDIS_OK || redisGetReplyFromReader(self->ctx, &reply) != REDIS_OK) {
            s_pipeline_broken(self);
            return CC_ECONN;
        }
        if (!reply) return 0;
    }
    self->pending--;
    *reply_p = reply;
    return 1;
}

bool
cc_redis_pipeline_ready(cc_redis_t *self)
{
    if (self->pending == 0 || !self->ctx) return true;   /* CC_ECONN at once */
    if (self->ctx->reader && self->ctx->reader->len > self->ctx->reader->pos) return true;
    struct pollfd p = { .fd = self->ctx->fd, .events = POLLIN };
    return poll(&p, 1, 0) != 0;   /* readable, hung up, or an error to read */
}

redisReply *
cc_redis_pipeline_reply(cc_redis_t *self)
{
    if (self->pending == 0 || !self->ctx) return NULL;
    void *reply = NULL;
    if (redisGetReply(self->ctx, &reply) != REDIS_OK) {
        s_pipeline_broken(self);
        return NULL;
    }
    self->pending--;
    return reply;
}

int cc_redis_pipeline_pending(cc_redis_t *self) { return self->pending; }

int
cc_redis_check(cc_redis_t *self)
{
    if (self->pending) return 0;   /* busy: the pipeline's outcome will tell */
    const char *ping[] = { "PING" };
    redisReply *r = s_raw(self, 1, ping);
    if (r) {
        freeReplyObject(r);
        return 0;
    }
    return s_connect_once(self);
}

int
cc_redis_ping(cc_redis_t *self)
{
    redisReply *r = cc_redis_cmdf(self, "PING");
    int rc = r && r->type == REDIS_REPLY_STATUS ? 0 : CC_EREDIS;
    if (r) freeReplyObject(r);
    return rc;
}

void
cc_redis_test(void)
{
    cc_redis_t *r = cc_redis_new("redis://:pw@127.0.0.5:6380/3", 100, NULL);
    assert(r && strcmp(r->host, "127.0.0.5") == 0 && r->port == 6380 && r->db == 3);
    assert(strcmp(r->password, "pw") == 0);
    cc_redis_destroy(&r);
    assert(!r);
    assert(!cc_redis_new("http://x", 100, NULL));
    assert(!cc_redis_new("redis://h:99999", 100, NULL));
    assert(!cc_redis_new("redis://h:1/99", 100, NULL));
    r = cc_redis_new("redis://127.0.0.1:1", 100, NULL);
    assert(cc_redis_connect(r) == CC_ECONN && !cc_redis_healthy(r));
    assert(cc_redis_cmdf(r, "PING") == NULL);
    cc_redis_destroy(&r);
}
