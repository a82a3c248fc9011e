/* gw_clock: one 1 ms timer and a wheel of slots for every RTP sender of a
 * libre loop. */
#include "gw_clock.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

struct _gw_clock_t {
    int period_ms;
    int members;
    int tfd;                   /* timerfd: 1 ms ticks on the millisecond while members are joined */
    int64_t last_ms;           /* the last millisecond visited */
    struct le *next;           /* the run's next member: moved on when it leaves */
    gw_clock_member_t *cur;    /* the member being called: NULL once it leaves */
    struct list slots[];       /* by the millisecond of a member's start, modulo the period */
};

gw_clock_t *
gw_clock_new(int period_ms)
{
    assert(period_ms > 0 && period_ms <= 1000);
    gw_clock_t *self = calloc(1, sizeof *self + (size_t) period_ms * sizeof(struct list));
    if (!self) abort();
    self->period_ms = period_ms;
    for (int i = 0; i < period_ms; i++) list_init(&self->slots[i]);
    self->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (self->tfd < 0) {
        CC_ERROR("timerfd_create failed", "error=\"%s\"", strerror(errno));
        free(self);
        return NULL;
    }
    return self;
}

/* Ticks every millisecond, on the millisecond (on), or not at all. */
static void
s_arm(gw_clock_t *self, bool on)
{
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (on) {
        int64_t next_ms = cc_mono_us() / 1000 + 1;
        its.it_value.tv_sec = next_ms / 1000;
        its.it_value.tv_nsec = (next_ms % 1000) * 1000000;
        its.it_interval.tv_nsec = 1000000;
    }
    if (timerfd_settime(self->tfd, on ? TFD_TIMER_ABSTIME : 0, &its, NULL) != 0)
        CC_ERROR("timerfd_settime failed", "error=\"%s\"", strerror(errno));
}

void
gw_clock_destroy(gw_clock_t **self_p)
{
    if (!self_p || !*self_p) return;
    gw_clock_t *self = *self_p;
    assert(self->members == 0);   /* the last to leave took it out of the poll set */
    close(self->tfd);
    free(self);
    *self_p = NULL;
}

static void
s_on_tick(int flags, void *arg)
{
    gw_clock_t *self = arg;
    uint64_t expirations;
    (void) flags;
    if (read(self->tfd, &expirations, sizeof expirations) != sizeof expirations) return;
    gw_clock_run(self, cc_mono_us());
}

void
gw_clock_join(gw_clock_t *self, gw_clock_member_t *member, int64_t start_us, gw_clock_h *h, void *arg)
{
    gw_clock_leave(self, member);
    if (self->members == 0) self->last_ms = start_us / 1000;
    member->h = h;
    member->arg = arg;
    member->start_us = start_us;
    member->n = 0;
    member->joined = true;
    list_append(&self->slots[(start_us / 1000) % self->period_ms], &member->le, member);
    if (self->members++ == 0) {
        /* A descriptor in libre's poll set, not a libre timer: its sorted
         * timer list costs O(timers) per insert. */
        int err = fd_listen(self->tfd, FD_READ, s_on_tick, self);
        if (err) CC_ERROR("fd_listen on the media clock failed", "error=\"%s\"", strerror(err));
        s_arm(self, true);
    }
}

void
gw_clock_leave(gw_clock_t *self, gw_clock_member_t *member)
{
    if (!member || !member->joined) return;
    if (self->next == &member->le) self->next = member->le.next;
    if (self->cur == member) self->cur = NULL;
    list_unlink(&member->le);
    member->joined = false;
    if (--self->members == 0) {
        s_arm(self, false);
        fd_close(self->tfd);
    }
}

int gw_clock_members(const gw_clock_t *self) { return self->members; }

void
gw_clock_run(gw_clock_t *self, int64_t now_us)
{
    int64_t now_ms = now_us / 1000, from = self->last_ms + 1;
    if (now_ms - self->last_ms > self->period_ms) from = now_ms - self->period_ms + 1;   /* each slot once */
    const int64_t period_us = (int64_t) self->period_ms * 1000;
    for (int64_t ms = from; ms <= now_ms; ms++) {
        struct list *slot = &self->slots[ms % self->period_ms];
        for (struct le *le = slot->head; le; le = self->next) {
            gw_clock_member_t *member = le->data;
            self->next = le->next;
            self->cur = member;
            /* Every frame owed by now (more than one after a stall). */
            while (self->cur == member) {
                int64_t due_us = member->start_us + (int64_t) (member->n + 1) * period_us;
                if (due_us / 1000 > now_ms) break;
                member->n++;
                member->h(member->arg, now_us - due_us);
            }
        }
    }
    self->next = NULL;
    self->cur = NULL;
    if (now_ms > self->last_ms) self->last_ms = now_ms;
}

/* ---------------------------------------------------------------- selftest */

typedef struct {
    gw_clock_t *clock;
    gw_clock_member_t member;
    int calls;
    int64_t last_late_us;
    gw_clock_member_t *drop;   /* a member this one makes leave when called */
    bool leave_self;
} s_probe_t;

static void
s_probe_h(void *arg, int64_t late_us)
{
    s_probe_t *p = arg;
    p->calls++;
    p->last_late_us = late_us;
    if (p->drop) gw_clock_leave(p->clock, p->drop);
    if (p->leave_self) gw_clock_leave(p->clock, &p->member);
}

/* Three frames, then leaves and stops the loop. */
static void
s_on_live(void *arg, int64_t late_us)
{
    s_probe_t *p = arg;
    p->calls++;
    p->last_late_us = late_us;
    if (p->calls == 3) {
        gw_clock_leave(p->clock, &p->member);
        re_cancel();
    }
}

void
gw_clock_test(void)
{
    int err = libre_init();
    assert(err == 0);
    gw_clock_t *clock = gw_clock_new(20);
    assert(clock);
    const int64_t t = 1000000000;
    s_probe_t a = { .clock = clock }, b = { .clock = clock }, c = { .clock = clock };
    gw_clock_join(clock, &a.member, t, s_probe_h, &a);
    gw_clock_join(clock, &b.member, t + 5500, s_probe_h, &b);
    gw_clock_join(clock, &c.member, t + 5900, s_probe_h, &c);   /* b's slot */
    assert(gw_clock_members(clock) == 3);

    /* Nothing before the first period; each frame in its own millisecond. */
    gw_clock_run(clock, t + 19999);
    assert(a.calls == 0 && b.calls == 0 && c.calls == 0);
    gw_clock_run(clock, t + 20000);
    assert(a.calls == 1 && a.last_late_us == 0 && b.calls == 0);
    gw_clock_run(clock, t + 25999);
    assert(b.calls == 1 && b.last_late_us == 499 && c.calls == 1 && c.last_late_us == 99 && a.calls == 1);
    /* Up to 1 ms early, inside the due millisecond. */
    gw_clock_run(clock, t + 45000);
    assert(a.calls == 2 && a.last_late_us == 5000);   /* its millisecond passed 5 ms ago */
    assert(b.calls == 2 && b.last_late_us == -500 && c.calls == 2 && c.last_late_us == -900);

    /* A stall: every owed frame, once each, late by the stall. */
    gw_clock_run(clock, t + 100000);
    assert(a.calls == 5 && a.last_late_us == 0);
    assert(b.calls == 4 && b.last_late_us == 100000 - 85500);
    assert(c.calls == 4 && c.last_late_us == 100000 - 85900);
    gw_clock_run(clock, t + 100000);   /* the same time again: nothing */
    assert(a.calls == 5 && b.calls == 4);

    /* A handler makes the next member of its slot leave, and leaves
     * itself: neither is called again and the walk goes on safely. */
    b.drop = &c.member;
    b.leave_self = true;
    gw_clock_run(clock, t + 105500);
    assert(b.calls == 5 && c.calls == 4 && gw_clock_members(clock) == 1);
    gw_clock_run(clock, t + 200000);
    assert(b.calls == 5 && c.calls == 4 && a.calls == 10);

    /* Rejoining moves a member to its new start. */
    gw_clock_join(clock, &a.member, t + 205300, s_probe_h, &a);
    gw_clock_run(clock, t + 220000);
    assert(a.calls == 10);
    gw_clock_run(clock, t + 225300);
    assert(a.calls == 11 && gw_clock_members(clock) == 1);

    gw_clock_leave(clock, &a.member);
    gw_clock_leave(clock, &a.member);   /* twice: nothing */
    assert(gw_clock_members(clock) == 0);
    gw_clock_destroy(&clock);
    gw_clock_destroy(&clock);
    assert(clock == NULL);

    /* On libre's loop: the timer descriptor drives the frames, and the
     * clock stops ticking when its last member leaves. */
    clock = gw_clock_new(20);
    s_probe_t live = { .clock = clock, .leave_self = false };
    gw_clock_join(clock, &live.member, cc_mono_us(), s_on_live, &live);
    re_main(NULL);
    assert(live.calls == 3 && gw_clock_members(clock) == 0);
    gw_clock_destroy(&clock);
    libre_close();
}
