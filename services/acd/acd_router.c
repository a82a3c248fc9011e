/* acd_router: runs acd.lua, a batch of operations per call, and hands their
 * actions to the caller. */
#include "acd_router.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"

#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_parse.h>

extern const char acd_lua[];   /* acd.lua, embedded by the build */

#define MAX_ARGS 32   /* the most an operation takes: queue, 25 */

typedef struct {
    acd_action_fn *fn;
    acd_done_fn *done;
    void *arg;
    char *argv[MAX_ARGS + 4];  /* field count, request id, op, time, args: in text */
    int argc;
    char *text;                /* the strings, one allocation */
} op_t;

/* A batch in Redis, in the order sent (Redis runs and answers them so). */
typedef enum {
    OUT_LIVE,                  /* sent on the connection, its reply not read */
    OUT_DONE,                  /* its reply read, not delivered yet */
    OUT_RERUN                  /* its reply lost (connection, library gone): to send again, waiting */
} out_state_t;

typedef struct {
    op_t *ops;
    int n;
    char id[40];               /* a batch sent again keeps its id: Redis returns its first results */
    out_state_t state;
    redisReply *reply;         /* OUT_DONE */
    int64_t sent_us;           /* when it went (its reply's wait is counted) */
} batch_t;

/* How batches go. Up to MAX_OUT are out at once: while Redis runs one, the
 * next waits in its input, so Redis is not idle while acd carries out a
 * batch's actions and reads the next requests. A batch goes at the end of
 * the loop turn that queued its operations when none is out; else, or in
 * the middle of a turn, once it holds BATCH_GO operations: Redis starts on
 * them while acd still reads requests, and batches stay big enough that
 * their own cost (the call, its reply, the kept results) is shared by many
 * decisions. With the bench's 64 calls in flight these values gave the most
 * decisions (2 to 4 out, 8 to 64 operations were tried). */
#define MAX_OUT 3
#define BATCH_GO 32

struct _acd_router_t {
    cc_redis_t *redis;
    uv_loop_t *loop;           /* NULL: every flush waits for its reply */
    uv_poll_t *poll;           /* watches the connection while a batch is out */
    int poll_fd;
    bool polling;
    op_t *ops;                 /* queued, not sent */
    int nops, cap;
    batch_t out[MAX_OUT];      /* sent, oldest first */
    int nout;
    int delivering;            /* inside callbacks: batches are delivered in order, never from within */
    char prefix[24];           /* this router's part of batch ids, random */
    uint64_t batches;
    char error[256];
    /* How Redis keeps up: batches run, their operations (the mean batch
     * grows as Redis nears its bound), and the time from sending a batch
     * to its reply. */
    cc_metric_t *m_batches, *m_batch_ops, *m_batch_wait_us;
};

acd_router_t *
acd_router_new(cc_redis_t *redis, uv_loop_t *loop, cc_metrics_t *metrics)
{
    acd_router_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    if (metrics) {
        self->m_batches = cc_metrics_counter(metrics, "acd_batches_total", NULL, "Batches of operations run by Redis");
        self->m_batch_ops = cc_metrics_counter(metrics, "acd_batch_operations_total", NULL,
                                               "Operations in those batches (per batch: how loaded Redis is)");
        self->m_batch_wait_us = cc_metrics_counter(metrics, "acd_batch_wait_microseconds_total", NULL,
                                                   "Time from sending a batch to reading its reply");
    }
    self->redis = redis;
    self->loop = loop;
    self->poll_fd = -1;
    uint64_t r;
    if (getrandom(&r, sizeof r, 0) != sizeof r) r = (uint64_t) getpid() << 32 ^ (uint64_t) time(NULL);
    snprintf(self->prefix, sizeof self->prefix, "%016llx", (unsigned long long) r);
    cc_redis_function(redis, "acd", acd_lua);
    return self;
}

static void s_on_poll_closed(uv_handle_t *h) { free(h); }

static void
s_poll_stop(acd_router_t *self)
{
    if (!self->poll) return;
    uv_close((uv_handle_t *) self->poll, s_on_poll_closed);
    self->poll = NULL;
    self->poll_fd = -1;
    self->polling = false;
}

static void
s_op_free(op_t *op)
{
    free(op->text);
}

void
acd_router_destroy(acd_router_t **self_p)
{
    if (!self_p || !*self_p) return;
    acd_router_t *self = *self_p;
    acd_router_flush(self);
    s_poll_stop(self);
    free(self->ops);
    free(self);
    *self_p = NULL;
}

static Cc__Status
s_status(const char *code)
{
    if (strcmp(code, "not_found") == 0) return CC__STATUS__STATUS_NOT_FOUND;
    if (strcmp(code, "conflict") == 0 || strcmp(code, "full") == 0 || strcmp(code, "empty") == 0
        || strcmp(code, "closed") == 0)
        return CC__STATUS__STATUS_CONFLICT;
    if (strcmp(code, "internal") == 0) return CC__STATUS__STATUS_INTERNAL;
    return CC__STATUS__STATUS_BAD_REQUEST;
}

/* A batch's reply read: the script's JSON (a list of results, each a list
 * of actions, each a list of strings; an empty list may come as {}) as a
 * row of tokens, its strings copied into one buffer. Read by yajl's
 * callbacks, without a tree: a batch's reply costs a few allocations, not
 * one or two per string. */
typedef enum { TOK_RESULT, TOK_ACTION, TOK_STRING } tok_kind_t;

typedef struct {
    tok_kind_t kind;
    size_t at;                 /* TOK_STRING: its offset in text */
} tok_t;

typedef struct {
    char *text;                /* the strings, each ended by a NUL */
    size_t used, cap;
    tok_t *toks;
    size_t ntoks, captoks;
    int depth;
    int results;
} parsed_t;

static void
s_tok(parsed_t *p, tok_kind_t kind, size_t at)
{
    if (p->ntoks == p->captoks) {
        p->captoks = p->captoks ? p->captoks * 2 : 256;
        p->toks = realloc(p->toks, p->captoks * sizeof *p->toks);
        if (!p->toks) abort();
    }
    p->toks[p->ntoks++] = (tok_t) { kind, at };
    if (kind == TOK_RESULT) p->results++;
}

/* A scalar: a field of an action (a number as its text, null and booleans
 * as ""), a result without actions at the top, nothing inside a result. */
static int
s_scalar(parsed_t *p, const char *s, size_t len)
{
    if (p->depth == 0) return 0;   /* the reply is not a list */
    if (p->depth == 1) s_tok(p, TOK_RESULT, 0);
    if (p->depth != 3) return 1;
    if (p->used + len + 1 > p->cap) {
        /* Only numbers may outgrow the reply's length ("5" takes 2 bytes here). */
        p->cap = (p->used + len + 1) * 2;
        p->text = realloc(p->text, p->cap);
        if (!p->text) abort();
    }
    memcpy(p->text + p->used, s, len);
    p->text[p->used + len] = '\0';
    s_tok(p, TOK_STRING, p->used);
    p->used += len + 1;
    return 1;
}

static int s_j_string(void *p, const unsigned char *s, size_t len) { return s_scalar(p, (const char *) s, len); }
static int s_j_number(void *p, const char *s, size_t len) { return s_scalar(p, s, len); }
static int s_j_null(void *p) { return s_scalar(p, "", 0); }
static int s_j_bool(void *p, int b) { (void) b; return s_scalar(p, "", 0); }

static int
s_j_start_array(void *arg)
{
    parsed_t *p = arg;
    if (++p->depth == 2) s_tok(p, TOK_RESULT, 0);
    else if (p->depth == 3) s_tok(p, TOK_ACTION, 0);
    return p->depth <= 3;
}

/* Only an empty object, as a result (Lua's empty table). */
static int
s_j_start_map(void *arg)
{
    parsed_t *p = arg;
    if (++p->depth != 2) return 0;
    s_tok(p, TOK_RESULT, 0);
    return 1;
}

static int s_j_key(void *p, const unsigned char *s, size_t len) { (void) p; (void) s; (void) len; return 0; }
static int s_j_end(void *arg) { ((parsed_t *) arg)->depth--; return 1; }

static const yajl_callbacks s_json_callbacks = {
    .yajl_null = s_j_null, .yajl_boolean = s_j_bool, .yajl_number = s_j_number, .yajl_string = s_j_string,
    .yajl_start_map = s_j_start_map, .yajl_map_key = s_j_key, .yajl_end_map = s_j_end,
    .yajl_start_array = s_j_start_array, .yajl_end_array = s_j_end,
};

/* Reads the script's reply into p. Returns NULL, or what is wrong. */
static const char *
s_parse(parsed_t *p, const char *json, size_t len)
{
    memset(p, 0, sizeof *p);
    p->cap = len + 1;
    p->text = malloc(p->cap);
    if (!p->text) abort();
    yajl_handle h = yajl_alloc(&s_json_callbacks, NULL, p);
    if (!h) abort();
    yajl_status st = yajl_parse(h, (const unsigned char *) json, len);
    if (st == yajl_status_ok) st = yajl_complete_parse(h);
    yajl_free(h);
    if (st == yajl_status_client_canceled) return "not a list of lists of actions";
    if (st != yajl_status_ok) return "not JSON";
    return NULL;
}

static void
s_parsed_free(parsed_t *p)
{
    free(p->text);
    free(p->toks);
}

/* Hands one operation's result to its callbacks: its actions, the tokens
 * from *at up to the next result (consumed), or, when p is NULL, the
 * failure status with its error text. */
static void
s_deliver(acd_router_t *self, op_t *op, const parsed_t *p, size_t *at, Cc__Status failure,
          const char *failure_error)
{
    Cc__Status status = p ? CC__STATUS__STATUS_OK : failure;
    const char *error = p ? NULL : failure_error;
    size_t i = p ? *at + 1 : 0;   /* past the result's own token */
    while (p && i < p->ntoks && p->toks[i].kind != TOK_RESULT) {
        /* An action: its strings, up to the next action or result. */
        const char *v[16];
        int n = 0;
        for (i++; i < p->ntoks && p->toks[i].kind == TOK_STRING; i++)
            if (n < 16) v[n++] = p->text + p->toks[i].at;
        if (n == 0) continue;
        if (strcmp(v[0], "error") == 0 && n >= 3) {
            status = s_status(v[1]);
            if (status == CC__STATUS__STATUS_INTERNAL)
                CC_ERROR("acd operation failed in the script", "op=%s error=\"%s\"", op->argv[2], v[2]);
            snprintf(self->error, sizeof self->error, "%s", v[2]);
            error = self->error;
            continue;
        }
        if (op->fn) op->fn(op->arg, n, v);
    }
    if (p) *at = i;
    if (op->done) op->done(op->arg, status, error);
}

static void s_send(acd_router_t *self);

void
acd_router_submit(acd_router_t *self, int64_t now_ms, const char *request_id, bool retried, const char *op_name,
                  int argc, const char *const *args, acd_action_fn *fn, acd_done_fn *done, void *arg)
{
    assert(argc <= MAX_ARGS && "too many script arguments");
    if (self->nops == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 64;
        self->ops = realloc(self->ops, (size_t) self->cap * sizeof *self->ops);
        if (!self->ops) abort();
    }
    op_t *op = &self->ops[self->nops++];
    memset(op, 0, sizeof *op);
    op->fn = fn;
    op->done = done;
    op->arg = arg;
    char count[24], now[24];
    *cc_u64_text(count, (uint64_t) argc + 3) = '\0';
    *cc_u64_text(now, (uint64_t) (now_ms > 0 ? now_ms : 0)) = '\0';
    /* The script looks up ids marked "?" (retries), keeps them all. */
    const char *mark = request_id && *request_id && retried ? "?" : "";
    const char *fields[MAX_ARGS + 4] = { count, mark, op_name, now };
    size_t lens[MAX_ARGS + 4];
    int n = 4;
    for (int i = 0; i < argc; i++) fields[n++] = args[i] ? args[i] : "";
    size_t len = 0;
    for (int i = 0; i < n; i++) len += (lens[i] = strlen(fields[i])) + 1;
    size_t rid_len = request_id ? strlen(request_id) : 0;
    len += rid_len;
    op->text = malloc(len);
    if (!op->text) abort();
    char *at = op->text;
    for (int i = 0; i < n; i++) {
        op->argv[op->argc++] = at;
        memcpy(at, fields[i], lens[i]);
        at += lens[i];
        if (i == 1 && rid_len) {   /* the request id, after its mark */
            memcpy(at, request_id, rid_len);
            at += rid_len;
        }
        *at++ = '\0';
    }
    /* A full batch goes without waiting for the end of the turn. */
    if (self->loop && self->nops >= BATCH_GO) s_send(self);
}

/* A new batch's id, unique across routers (and restarts): the script keeps
 * a batch's results under it, for the same batch sent again. */
static void
s_batch_id(acd_router_t *self, char id[40])
{
    snprintf(id, 40, "%s.%llu", self->prefix, (unsigned long long) ++self->batches);
}

/* The script's arguments for batch id: the count, the id, then each
 * operation's fields. The strings are the operations'; the array is the
 * caller's. */
static const char **
s_batch_argv(op_t *ops, int n, const char *id, char *count, size_t *nargs_p)
{
    size_t nargs = 2;
    for (int i = 0; i < n; i++) nargs += (size_t) ops[i].argc;
    const char **argv = malloc(nargs * sizeof *argv);
    if (!argv) abort();
    snprintf(count, 16, "%d", n);
    size_t at = 0;
    argv[at++] = count;
    argv[at++] = id;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < ops[i].argc; j++) argv[at++] = ops[i].argv[j];
    *nargs_p = nargs;
    return argv;
}

/* Hands a batch's reply (NULL: Redis unreachable) to its operations, then
 * frees them and the reply. The script answers one JSON text: the list of
 * the operations' results, in order. */
static void
s_deliver_batch(acd_router_t *self, op_t *ops, int n, redisReply *r)
{
    parsed_t parsed, *all = NULL;
    Cc__Status failure = CC__STATUS__STATUS_UNAVAILABLE;
    const char *failure_error = "redis unavailable";
    if (r && r->type == REDIS_REPLY_ERROR) {
        CC_ERROR("acd script failed", "ops=%d first=%s error=\"%s\"", n, ops[0].argv[2], r->str);
        snprintf(self->error, sizeof self->error, "%s", r->str);
        failure = CC__STATUS__STATUS_INTERNAL;
        failure_error = self->error;
    } else if (r && r->type == REDIS_REPLY_STRING) {
        const char *wrong = s_parse(&parsed, r->str, r->len);
        if (!wrong && parsed.results != n) wrong = "not one result per operation";
        if (wrong) {
            CC_ERROR("acd script returned a result acd cannot read", "ops=%d error=\"%s\"", n, wrong);
            s_parsed_free(&parsed);
            failure = CC__STATUS__STATUS_INTERNAL;
            failure_error = "acd script returned an unreadable result";
        } else {
            all = &parsed;
        }
    } else if (r) {
        CC_ERROR("acd script returned an unexpected reply", "ops=%d type=%d", n, r->type);
        failure = CC__STATUS__STATUS_INTERNAL;
        failure_error = "acd script returned an unexpected reply";
    }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        s_deliver(self, &ops[i], all, &at, failure, failure_error);
        s_op_free(&ops[i]);
    }
    if (all) s_parsed_free(all);
    if (r) freeReplyObject(r);
    free(ops);
}

static void
s_count_batch(acd_router_t *self, int n, int64_t wait_us)
{
    if (!self->m_batches) return;
    cc_metric_add(self->m_batches, 1);
    cc_metric_add(self->m_batch_ops, n);
    cc_metric_add(self->m_batch_wait_us, wait_us);
}

/* Runs batch id (NULL: a new one) and waits for its reply. cc_redis_eval
 * sends it once more after a broken connection (and loads the script after a
 * Redis restart): a batch Redis ran already returns its first results. */
static void
s_run_batch(acd_router_t *self, op_t *ops, int n, const char *id)
{
    char count[16], fresh[40];
    if (!id) {
        s_batch_id(self, fresh);
        id = fresh;
    }
    size_t nargs;
    const char **argv = s_batch_argv(ops, n, id, count, &nargs);
    /* Sent once more if the connection dies again meanwhile: the batch's id
     * makes a second run return the first's results. */
    int64_t t0 = cc_mono_us();
    redisReply *r = cc_redis_eval(self->redis, "acd", 0, NULL, (int) nargs, argv);
    if (!r) r = cc_redis_eval(self->redis, "acd", 0, NULL, (int) nargs, argv);
    free(argv);
    s_count_batch(self, n, cc_mono_us() - t0);
    self->delivering++;
    s_deliver_batch(self, ops, n, r);
    self->delivering--;
}

/* Watches the connection while a batch on it waits for its reply. */
static void s_on_readable(uv_poll_t *poll, int status, int events);

static void
s_poll_update(acd_router_t *self)
{
    bool live = false;
    for (int i = 0; i < self->nout; i++) live = live || self->out[i].state == OUT_LIVE;
    if (!self->poll || live == self->polling) return;
    if (live) uv_poll_start(self->poll, UV_READABLE, s_on_readable);
    else uv_poll_stop(self->poll);
    self->polling = live;
}

/* The connection is gone: no batch on it gets its reply. */
static void
s_connection_lost(acd_router_t *self)
{
    for (int i = 0; i < self->nout; i++)
        if (self->out[i].state == OUT_LIVE) self->out[i].state = OUT_RERUN;
}

/* Reads the reply of b, the oldest batch still live (waiting for it when
 * wait). Returns false when it has not come yet. */
static bool
s_read(acd_router_t *self, batch_t *b, bool wait)
{
    if (!wait && !cc_redis_pipeline_ready(self->redis)) return false;   /* the socket blocks */
    redisReply *r = NULL;
    int rc;
    do rc = cc_redis_pipeline_poll(self->redis, &r);
    while (rc == 0 && wait);
    if (rc == 0) return false;
    if (rc != 1) {
        s_connection_lost(self);
    } else if (cc_redis_reply_unloaded(r)) {
        /* Redis lost its scripts; the connection still holds the replies of
         * the batches after this one. */
        freeReplyObject(r);
        b->state = OUT_RERUN;
    } else {
        b->reply = r;
        b->state = OUT_DONE;
        s_count_batch(self, b->n, cc_mono_us() - b->sent_us);
    }
    return true;
}

/* Delivers the oldest batch out, once its reply is in (waiting for it when
 * wait). A batch whose reply was lost runs again, waiting, after the
 * replies of the ones sent after it are read. With next, the operations
 * queued meanwhile are sent first, so that Redis runs them while this
 * batch's actions are carried out. Returns whether it was delivered. */
static bool
s_deliver_oldest(acd_router_t *self, bool wait, bool next)
{
    batch_t *b = &self->out[0];
    if (b->state == OUT_LIVE && !s_read(self, b, wait)) return false;
    if (b->state == OUT_RERUN)
        for (int i = 1; i < self->nout; i++)
            if (self->out[i].state == OUT_LIVE) s_read(self, &self->out[i], true);
    batch_t head = *b;
    memmove(&self->out[0], &self->out[1], (size_t) (self->nout - 1) * sizeof *self->out);
    self->nout--;
    s_poll_update(self);
    if (head.state == OUT_RERUN) {
        s_run_batch(self, head.ops, head.n, head.id);
        return true;
    }
    if (next) s_send(self);
    self->delivering++;
    s_deliver_batch(self, head.ops, head.n, head.reply);
    self->delivering--;
    return true;
}

/* Delivers what can be without waiting, oldest first, then sends what is
 * queued; a batch whose send failed runs then (waiting). Never from inside
 * a delivery: the outer one goes on in order. */
static void
s_pump(acd_router_t *self)
{
    if (self->delivering) {
        s_send(self);
        return;
    }
    for (;;) {
        while (self->nout > 0 && s_deliver_oldest(self, false, true)) {}
        s_send(self);
        if (self->nout == 0 || self->out[0].state == OUT_LIVE) return;   /* nothing out, or a reply to wait for */
    }
}

static void
s_on_readable(uv_poll_t *poll, int status, int events)
{
    (void) status;
    (void) events;
    s_pump(poll->data);
}

/* Sends the queued operations as one batch without waiting; the loop reads
 * the reply when it comes. Without a loop, the batch runs and is waited
 * for. A batch whose send fails runs again, waiting, in its turn. */
static void
s_send(acd_router_t *self)
{
    if (self->nops == 0 || self->nout == MAX_OUT) return;
    for (int i = 0; i < self->nout; i++)
        if (self->out[i].state == OUT_RERUN) return;   /* those run first, in order */
    if (self->nout > 0 && self->nops < BATCH_GO) return;
    op_t *ops = self->ops;
    int n = self->nops;
    self->ops = NULL;
    self->nops = self->cap = 0;
    if (!self->loop) {
        s_run_batch(self, ops, n, NULL);
        return;
    }
    batch_t *b = &self->out[self->nout++];
    memset(b, 0, sizeof *b);
    b->ops = ops;
    b->n = n;
    s_batch_id(self, b->id);
    char count[16];
    size_t nargs;
    const char **argv = s_batch_argv(ops, n, b->id, count, &nargs);
    int rc = cc_redis_pipeline_eval(self->redis, "acd", 0, NULL, (int) nargs, argv);
    free(argv);
    if (rc == 0) rc = cc_redis_pipeline_send(self->redis);
    int fd = cc_redis_fd(self->redis);
    if (rc || fd < 0) {
        s_connection_lost(self);
        b->state = OUT_RERUN;
        s_poll_update(self);
        return;
    }
    b->state = OUT_LIVE;
    b->sent_us = cc_mono_us();
    if (fd != self->poll_fd) {
        /* A new connection (after a reconnect): watch its socket, kept
         * blocking for hiredis's plain commands (libuv makes it not). */
        s_poll_stop(self);
        self->poll = malloc(sizeof *self->poll);
        if (!self->poll) abort();
        uv_poll_init(self->loop, self->poll, fd);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        self->poll->data = self;
        self->poll_fd = fd;
        self->polling = false;
    }
    s_poll_update(self);
}

void
acd_router_kick(acd_router_t *self)
{
    s_pump(self);
}

void
acd_router_flush(acd_router_t *self)
{
    /* The callbacks may submit again: loop until nothing is left. */
    while (self->nout || self->nops) {
        if (self->nout) {
            s_deliver_oldest(self, true, false);
            continue;
        }
        op_t *ops = self->ops;
        int n = self->nops;
        self->ops = NULL;
        self->nops = self->cap = 0;
        s_run_batch(self, ops, n, NULL);
    }
}

int acd_router_pending(acd_router_t *self) { return self->nops; }

/* A library of acd: "acd_" and 16 hex digits (cc_redis_function's name). */
static bool
s_acd_library(const char *name)
{
    if (strncmp(name, "acd_", 4) != 0 || strlen(name) != 20) return false;
    for (const char *p = name + 4; *p; p++)
        if (!strchr("0123456789abcdef", *p)) return false;
    return true;
}

int
acd_router_housekeep(acd_router_t *self, int mark_s)
{
    acd_router_flush(self);   /* plain commands follow */
    const char *own = cc_redis_function_name(self->redis, "acd");
    char key[64], ttl[16];
    snprintf(key, sizeof key, "acd:lib:%s", own);
    snprintf(ttl, sizeof ttl, "%d", mark_s);
    const char *mark[] = { "SET", key, "1", "EX", ttl };
    redisReply *r = cc_redis_cmd(self->redis, 5, mark);
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
    if (!ok) return -1;
    redisReply *list = cc_redis_cmdf(self->redis, "FUNCTION LIST LIBRARYNAME acd_*");
    if (!list || list->type != REDIS_REPLY_ARRAY) {
        if (list) freeReplyObject(list);
        return -1;
    }
    int removed = 0;
    for (size_t i = 0; i < list->elements; i++) {
        const redisReply *lib = list->element[i];
        const char *name = NULL;
        for (size_t j = 0; lib->type == REDIS_REPLY_ARRAY && j + 1 < lib->elements; j += 2)
            if (lib->element[j]->type == REDIS_REPLY_STRING && strcmp(lib->element[j]->str, "library_name") == 0
                && lib->element[j + 1]->type == REDIS_REPLY_STRING)
                name = lib->element[j + 1]->str;
        if (!name || strcmp(name, own) == 0 || !s_acd_library(name)) continue;
        snprintf(key, sizeof key, "acd:lib:%s", name);
        const char *exists[] = { "EXISTS", key };
        r = cc_redis_cmd(self->redis, 2, exists);
        bool marked = !r || r->type != REDIS_REPLY_INTEGER || r->integer != 0;
        if (r) freeReplyObject(r);
        if (marked) continue;
        /* A version starting meanwhile loads its library again at its next
         * call: removing one too early costs it a reload. */
        const char *del[] = { "FUNCTION", "DELETE", name };
        r = cc_redis_cmd(self->redis, 3, del);
        if (r && r->type == REDIS_REPLY_STATUS) {
            removed++;
            CC_INFO("library of an acd version no acd runs removed", "library=%s", name);
        } else {
            CC_WARN("library of an acd version no acd runs not removed", "library=%s error=\"%s\"", name,
                    r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
        }
        if (r) freeReplyObject(r);
    }
    freeReplyObject(list);
    return removed;
}

typedef struct { acd_action_fn *fn; void *arg; Cc__Status status; char error[256]; } run_t;

static void
s_run_action(void *arg, int argc, const char *const *argv)
{
    run_t *r = arg;
    if (r->fn) r->fn(r->arg, argc, argv);
}

static void
s_run_done(void *arg, Cc__Status status, const char *error)
{
    run_t *r = arg;
    r->status = status;
    snprintf(r->error, sizeof r->error, "%s", error ? error : "");
}

Cc__Status
acd_router_run(acd_router_t *self, int64_t now_ms, const char *op, int argc,
               const char *const *args, acd_action_fn *fn, void *arg, const char **error_p)
{
    run_t r = { fn, arg, CC__STATUS__STATUS_INTERNAL, "" };
    acd_router_submit(self, now_ms, NULL, false, op, argc, args, s_run_action, s_run_done, &r);
    acd_router_flush(self);
    snprintf(self->error, sizeof self->error, "%s", r.error);
    *error_p = self->error;
    return r.status;
}
