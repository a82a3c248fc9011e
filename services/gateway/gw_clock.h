/* gw_clock: the media clock of one libre loop (one thread).
 *
 * Every member (a call sending RTP) is due at its start + k * period. One
 * timer drives them all: a timerfd ticking on every millisecond, in libre's
 * poll set (not a libre timer: libre keeps its timers in a sorted list, an
 * O(timers) walk per insert, which one timer per call made O(calls) per
 * frame). Members sit in a wheel of period slots by the millisecond of their
 * start; a tick visits only the slots of the milliseconds that passed, so it
 * costs what is due, not the number of calls. */
#ifndef GW_CLOCK_H
#define GW_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>   /* before re.h, which otherwise declares its own socklen_t */
#include <re.h>

/* Called once per due frame; late_us is how late it is against its slot
 * (negative: up to 1 ms early). The handler may leave the clock, and may make
 * other members leave. */
typedef void (gw_clock_h)(void *arg, int64_t late_us);

typedef struct _gw_clock_t gw_clock_t;

/* A member, embedded in its owner; zeroed before the first join. */
typedef struct {
    struct le le;
    gw_clock_h *h;
    void *arg;
    int64_t start_us;
    uint64_t n;                /* frames sent so far */
    bool joined;
} gw_clock_member_t;

/* A clock of period_ms slots, on the calling thread's libre loop. NULL when
 * its timer descriptor cannot be made (logged). */
gw_clock_t *gw_clock_new(int period_ms);
/* NULL-safe; members must have left. */
void gw_clock_destroy(gw_clock_t **self_p);
/* Adds member: its first frame is due at start_us + period (cc_mono_us
 * clock); rejoining moves it. */
void gw_clock_join(gw_clock_t *self, gw_clock_member_t *member, int64_t start_us, gw_clock_h *h, void *arg);
/* Removes member (NULL-safe for a member that never joined). */
void gw_clock_leave(gw_clock_t *self, gw_clock_member_t *member);
/* Members joined now. */
int gw_clock_members(const gw_clock_t *self);
/* Calls the handlers of every frame due by now_us (the timer calls it with
 * cc_mono_us(); tests call it with chosen times). */
void gw_clock_run(gw_clock_t *self, int64_t now_us);

void gw_clock_test(void);

#endif
