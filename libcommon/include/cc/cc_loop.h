/* cc_loop: one libuv loop per thread, with czmq sockets joined to it.
 *
 * A ZeroMQ socket's ZMQ_FD signals edges, not levels: after any operation on
 * the socket, ZMQ_EVENTS must be read again. cc_loop watches the fd and, before
 * every poll, re-checks ZMQ_EVENTS of every joined socket, so a message is
 * never left unread while the loop sleeps. Input is drained in batches so one
 * busy socket cannot starve timers and other sockets. */
#ifndef CC_LOOP_H
#define CC_LOOP_H

#include <uv.h>

typedef struct _cc_loop_t cc_loop_t;

/* Called while the socket has input; must read exactly one message (or fail
 * with a logged error and discard it). */
typedef void (cc_zsock_fn)(void *arg, void *zsock);
typedef void (cc_signal_fn)(void *arg, int signum);

cc_loop_t *cc_loop_new(void);
/* Closes every handle still open, runs their close callbacks, frees. */
void cc_loop_destroy(cc_loop_t **self_p);
uv_loop_t *cc_loop_uv(cc_loop_t *self);

/* Joins a czmq socket (zsock_t *) to the loop; the caller keeps ownership and
 * must remove it before destroying it. Returns 0 or CC_EINVAL. */
int cc_loop_add_zsock(cc_loop_t *self, void *zsock, cc_zsock_fn *fn, void *arg);
void cc_loop_remove_zsock(cc_loop_t *self, void *zsock);

/* A repeating timer calling fn(timer) every every_ms, with timer->data =
 * arg. The loop owns the memory: stop it with cc_loop_timer_close(). */
uv_timer_t *cc_loop_timer(cc_loop_t *self, uv_timer_cb fn, void *arg, uint64_t every_ms);
/* Stops and frees a timer from cc_loop_timer() (NULL-safe, clears *timer_p). */
void cc_loop_timer_close(uv_timer_t **timer_p);

/* Calls fn at the end of every turn of the loop, before it checks the
 * sockets and sleeps: the place to flush work batched during the turn (its
 * sends cannot hide a socket's input, which is checked after). */
typedef void (cc_turn_fn)(void *arg);
void cc_loop_on_turn_end(cc_loop_t *self, cc_turn_fn *fn, void *arg);
/* Removes a turn-end hook (before arg is freed). */
void cc_loop_off_turn_end(cc_loop_t *self, cc_turn_fn *fn, void *arg);

/* Calls fn on the loop when signum arrives (libuv's self-pipe: the handler
 * only records it). */
int cc_loop_on_signal(cc_loop_t *self, int signum, cc_signal_fn *fn, void *arg);

/* Runs until cc_loop_stop(). Returns 0. */
int cc_loop_run(cc_loop_t *self);
void cc_loop_stop(cc_loop_t *self);

void cc_loop_test(void);

#endif
