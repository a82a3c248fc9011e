/* cc_worker: a thread with a stop flag and a wake-up pipe. */
#include "cc/cc_worker.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct _cc_worker_t {
    char name[32];
    int wake[2];               /* destroy writes one byte; never drained: every later wait returns */
    atomic_bool stop;
    bool started;
    pthread_t thread;
    cc_worker_fn *fn;
    void *arg;
};

cc_worker_t *
cc_worker_new(const char *name)
{
    cc_worker_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    snprintf(self->name, sizeof self->name, "%s", name);
    if (pipe(self->wake)) {
        CC_ERROR("pipe failed", "worker=%s error=\"%s\"", self->name, strerror(errno));
        free(self);
        return NULL;
    }
    return self;
}

static void *
s_run(void *arg)
{
    cc_worker_t *self = arg;
    self->fn(self, self->arg);
    return NULL;
}

int
cc_worker_start(cc_worker_t *self, cc_worker_fn *fn, void *arg)
{
    assert(self && fn && !self->started);
    self->fn = fn;
    self->arg = arg;
    int rc = pthread_create(&self->thread, NULL, s_run, self);
    if (rc) {
        CC_ERROR("pthread_create failed", "worker=%s error=\"%s\"", self->name, strerror(rc));
        return -1;
    }
    self->started = true;
    return 0;
}

void
cc_worker_destroy(cc_worker_t **self_p)
{
    if (!self_p || !*self_p) return;
    cc_worker_t *self = *self_p;
    atomic_store(&self->stop, true);
    if (write(self->wake[1], "x", 1) != 1) CC_WARN("write failed", "worker=%s error=\"%s\"", self->name, strerror(errno));
    if (self->started) pthread_join(self->thread, NULL);
    close(self->wake[0]);
    close(self->wake[1]);
    free(self);
    *self_p = NULL;
}

bool
cc_worker_stopping(cc_worker_t *self)
{
    return atomic_load(&self->stop);
}

int
cc_worker_wait(cc_worker_t *self, int ms, int fd)
{
    if (cc_worker_stopping(self)) return -1;
    struct pollfd fds[2] = { { .fd = self->wake[0], .events = POLLIN }, { .fd = fd, .events = POLLIN } };
    int n = poll(fds, 2, ms);
    if (cc_worker_stopping(self)) return -1;
    return n > 0 && (fds[1].revents & POLLIN) ? 1 : 0;
}

/* --- selftest --- */

typedef struct { int fd; atomic_int turns, readable; } s_probe_t;

static void
s_probe(cc_worker_t *w, void *arg)
{
    s_probe_t *p = arg;
    while (!cc_worker_stopping(w)) {
        atomic_fetch_add(&p->turns, 1);
        if (cc_worker_wait(w, 10, p->fd) == 1) {
            char c;
            if (read(p->fd, &c, 1) == 1) atomic_fetch_add(&p->readable, 1);
        }
    }
}

void
cc_worker_test(void)
{
    cc_worker_destroy(NULL);
    cc_worker_t *none = NULL;
    cc_worker_destroy(&none);
    /* Never started: destroy does not join. */
    cc_worker_t *idle = cc_worker_new("idle");
    assert(idle && !cc_worker_stopping(idle));
    cc_worker_destroy(&idle);
    assert(idle == NULL);

    int fds[2];
    assert(pipe(fds) == 0);
    s_probe_t p = { .fd = fds[0] };
    cc_worker_t *w = cc_worker_new("probe");
    assert(cc_worker_start(w, s_probe, &p) == 0);
    /* Timeouts keep it turning. */
    int64_t end = cc_mono_ms() + 5000;
    while (atomic_load(&p.turns) < 3 && cc_mono_ms() < end) cc_sleep_ms(5);
    assert(atomic_load(&p.turns) >= 3);
    /* A readable descriptor wakes it and is told apart from a timeout. */
    assert(write(fds[1], "a", 1) == 1);
    while (atomic_load(&p.readable) < 1 && cc_mono_ms() < end) cc_sleep_ms(5);
    assert(atomic_load(&p.readable) == 1);
    /* A wait with no limit still ends when the owner stops the worker. */
    close(fds[0]);
    close(fds[1]);
    cc_worker_destroy(&w);
    assert(w == NULL);
}
