/* cc_loop: libuv loop with edge-triggered ZeroMQ sockets and signals. */
#include "cc/cc_loop.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"

#include <assert.h>
#include <czmq.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DRAIN_BATCH 256

typedef struct watch {
    uv_poll_t poll;
    zsock_t *sock;
    cc_zsock_fn *fn;
    void *arg;
    struct watch *next;
    bool removed;
} watch_t;

typedef struct sigwatch {
    uv_signal_t sig;
    cc_signal_fn *fn;
    void *arg;
    struct sigwatch *next;
} sigwatch_t;

#define MAX_TURN_HOOKS 8

struct _cc_loop_t {
    uv_loop_t uv;
    struct { cc_turn_fn *fn; void *arg; } turn[MAX_TURN_HOOKS];
    int nturn;
    uv_prepare_t prepare;
    uv_idle_t idle;      /* active while a socket still had input after a batch */
    watch_t *watches;
    sigwatch_t *signals;
};

/* Reads up to one batch from w. Returns true when input is still pending. */
static bool
s_drain(watch_t *w)
{
    for (int i = 0; i < DRAIN_BATCH; i++) {
        if (w->removed || !(zsock_events(w->sock) & ZMQ_POLLIN)) return false;
        w->fn(w->arg, w->sock);
    }
    return !w->removed && (zsock_events(w->sock) & ZMQ_POLLIN);
}

static void
s_on_idle(uv_idle_t *idle)
{
    cc_loop_t *self = idle->data;
    bool pending = false;
    for (watch_t *w = self->watches; w; w = w->next)
        if (!w->removed && s_drain(w)) pending = true;
    if (!pending) uv_idle_stop(idle);
}

static void
s_on_poll(uv_poll_t *poll, int status, int events)
{
    (void) status;
    (void) events;
    watch_t *w = poll->data;
    cc_loop_t *self = w->poll.loop->data;
    if (s_drain(w)) uv_idle_start(&self->idle, s_on_idle);
}

/* Before the loop sleeps: any socket with input (an edge consumed by a send
 * elsewhere) keeps the loop awake through the idle handle. */
static void
s_on_prepare(uv_prepare_t *prepare)
{
    cc_loop_t *self = prepare->data;
    for (int i = 0; i < self->nturn; i++) self->turn[i].fn(self->turn[i].arg);
    for (watch_t *w = self->watches; w; w = w->next)
        if (!w->removed && (zsock_events(w->sock) & ZMQ_POLLIN)) {
            uv_idle_start(&self->idle, s_on_idle);
            return;
        }
}

cc_loop_t *
cc_loop_new(void)
{
    cc_loop_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    int rc = uv_loop_init(&self->uv);
    assert(rc == 0);
    self->uv.data = self;
    uv_prepare_init(&self->uv, &self->prepare);
    self->prepare.data = self;
    uv_prepare_start(&self->prepare, s_on_prepare);
    uv_unref((uv_handle_t *) &self->prepare);
    uv_idle_init(&self->uv, &self->idle);
    self->idle.data = self;
    return self;
}

uv_loop_t *cc_loop_uv(cc_loop_t *self) { return &self->uv; }

static void
s_close_walk(uv_handle_t *h, void *arg)
{
    (void) arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void
cc_loop_destroy(cc_loop_t **self_p)
{
    if (!self_p || !*self_p) return;
    cc_loop_t *self = *self_p;
    uv_walk(&self->uv, s_close_walk, NULL);
    uv_run(&self->uv, UV_RUN_DEFAULT);
    for (watch_t *w = self->watches, *n; w; w = n) { n = w->next; free(w); }
    for (sigwatch_t *s = self->signals, *n; s; s = n) { n = s->next; free(s); }
    int rc = uv_loop_close(&self->uv);
    if (rc) CC_ERROR("uv_loop_close failed", "error=%s", uv_strerror(rc));
    free(self);
    *self_p = NULL;
}

int
cc_loop_add_zsock(cc_loop_t *self, void *zsock, cc_zsock_fn *fn, void *arg)
{
    if (!zsock_is(zsock)) return CC_EINVAL;
    watch_t *w = calloc(1, sizeof *w);
    if (!w) abort();
    w->sock = zsock;
    w->fn = fn;
    w->arg = arg;
    int rc = uv_poll_init(&self->uv, &w->poll, zsock_fd(zsock));
    if (rc) {
        CC_ERROR("uv_poll_init failed", "error=%s", uv_strerror(rc));
        free(w);
        return CC_EINVAL;
    }
    w->poll.data = w;
    uv_poll_start(&w->poll, UV_READABLE, s_on_poll);
    w->next = self->watches;
    self->watches = w;
    /* Input may already be queued: its edge has passed. */
    uv_idle_start(&self->idle, s_on_idle);
    return 0;
}

static void
s_on_watch_closed(uv_handle_t *h)
{
    watch_t *w = h->data;
    free(w);
}

void
cc_loop_remove_zsock(cc_loop_t *self, void *zsock)
{
    for (watch_t **p = &self->watches; *p; p = &(*p)->next) {
        watch_t *w = *p;
        if (w->sock == zsock) {
            *p = w->next;
            w->removed = true;
            uv_close((uv_handle_t *) &w->poll, s_on_watch_closed);
            return;
        }
    }
}

static void s_free_timer(uv_handle_t *h) { free(h); }

uv_timer_t *
cc_loop_timer(cc_loop_t *self, uv_timer_cb fn, void *arg, uint64_t every_ms)
{
    uv_timer_t *t = malloc(sizeof *t);
    if (!t) abort();
    uv_timer_init(&self->uv, t);
    t->data = arg;
    uv_timer_start(t, fn, every_ms, every_ms);
    return t;
}

void
cc_loop_timer_close(uv_timer_t **timer_p)
{
    if (!timer_p || !*timer_p) return;
    uv_close((uv_handle_t *) *timer_p, s_free_timer);   /* freed by libuv's close callback */
    *timer_p = NULL;
}

void
cc_loop_on_turn_end(cc_loop_t *self, cc_turn_fn *fn, void *arg)
{
    assert(self->nturn < MAX_TURN_HOOKS);
    self->turn[self->nturn].fn = fn;
    self->turn[self->nturn].arg = arg;
    self->nturn++;
}

void
cc_loop_off_turn_end(cc_loop_t *self, cc_turn_fn *fn, void *arg)
{
    for (int i = 0; i < self->nturn; i++)
        if (self->turn[i].fn == fn && self->turn[i].arg == arg) {
            memmove(&self->turn[i], &self->turn[i + 1], (size_t) (self->nturn - i - 1) * sizeof self->turn[0]);
            self->nturn--;
            return;
        }
}

static void
s_on_signal(uv_signal_t *sig, int signum)
{
    sigwatch_t *s = sig->data;
    s->fn(s->arg, signum);
}

int
cc_loop_on_signal(cc_loop_t *self, int signum, cc_signal_fn *fn, void *arg)
{
    sigwatch_t *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->fn = fn;
    s->arg = arg;
    uv_signal_init(&self->uv, &s->sig);
    s->sig.data = s;
    int rc = uv_signal_start(&s->sig, s_on_signal, signum);
    if (rc) {
        CC_ERROR("uv_signal_start failed", "signal=%d error=%s", signum, uv_strerror(rc));
        return CC_EINVAL;
    }
    uv_unref((uv_handle_t *) &s->sig);
    s->next = self->signals;
    self->signals = s;
    return 0;
}

int
cc_loop_run(cc_loop_t *self)
{
    uv_run(&self->uv, UV_RUN_DEFAULT);
    return 0;
}

void
cc_loop_stop(cc_loop_t *self)
{
    uv_stop(&self->uv);
}

/* --- selftest --- */

typedef struct { int got; cc_loop_t *loop; zsock_t *pull; } loop_test_t;

static void
s_test_read(void *arg, void *sock)
{
    loop_test_t *t = arg;
    char *s = zstr_recv(sock);
    assert(s);
    zstr_free(&s);
    if (++t->got == 1000) cc_loop_stop(t->loop);
}

static void
s_test_timeout(uv_timer_t *timer)
{
    loop_test_t *t = timer->data;
    cc_loop_stop(t->loop);
}

void
cc_loop_test(void)
{
    loop_test_t t = { 0 };
    t.loop = cc_loop_new();
    zsock_t *pull = zsock_new_pull("inproc://cc_loop_test");
    zsock_t *push = zsock_new_push(">inproc://cc_loop_test");
    assert(pull && push);
    /* Messages queued before joining must still be read (edge already gone). */
    for (int i = 0; i < 1000; i++) zstr_send(push, "x");
    assert(cc_loop_add_zsock(t.loop, pull, s_test_read, &t) == 0);
    uv_timer_t timer;
    uv_timer_init(cc_loop_uv(t.loop), &timer);
    timer.data = &t;
    uv_timer_start(&timer, s_test_timeout, 5000, 0);
    cc_loop_run(t.loop);
    assert(t.got == 1000);
    cc_loop_remove_zsock(t.loop, pull);
    cc_loop_destroy(&t.loop);
    assert(!t.loop);
    zsock_destroy(&push);
    zsock_destroy(&pull);
}
