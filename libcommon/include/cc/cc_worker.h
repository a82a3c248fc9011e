/* cc_worker: a thread of its own for blocking work (HTTP pushes to a shop,
 * polling a platform), which its owner stops and which sleeps until it is
 * stopped, a descriptor is readable or a timeout passes.
 *
 *     self->worker = cc_worker_new("outbox");
 *     if (!self->worker || cc_worker_start(self->worker, s_run, self)) goto err;
 *     ...
 *     static void s_run(cc_worker_t *w, void *arg) {
 *         while (!cc_worker_stopping(w)) { work(arg); cc_worker_wait(w, 1000, -1); }
 *     }
 *
 * Creating and starting are two steps so that the owner holds the worker
 * before the thread runs: the thread may read it through its owner. */
#ifndef CC_WORKER_H
#define CC_WORKER_H

#include <stdbool.h>

typedef struct _cc_worker_t cc_worker_t;

/* The thread's body: returns when cc_worker_stopping() says so. */
typedef void (cc_worker_fn)(cc_worker_t *worker, void *arg);

/* A worker not yet running, or NULL (logged) when its wake-up pipe could not
 * be made. name appears in its log lines. */
cc_worker_t *cc_worker_new(const char *name);
/* Runs fn(worker, arg) on a new thread. Returns 0, or -1 (logged). */
int cc_worker_start(cc_worker_t *self, cc_worker_fn *fn, void *arg);
/* Stops the thread, wakes it from cc_worker_wait(), waits until fn has
 * returned, and frees the worker. NULL-safe; clears the caller's pointer. */
void cc_worker_destroy(cc_worker_t **self_p);
/* True once the owner has asked the thread to stop (any thread may ask). */
bool cc_worker_stopping(cc_worker_t *self);
/* From the worker's thread: sleeps up to ms (-1: no limit) until the owner
 * stops it or fd (ignored when negative) is readable. Returns 1 when fd is
 * readable, 0 on timeout, -1 when stopping. */
int cc_worker_wait(cc_worker_t *self, int ms, int fd);

void cc_worker_test(void);

#endif
