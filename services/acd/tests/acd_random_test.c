/* acd_random_test: thousands of random arrivals, answers, rejections,
 * abandons, hang-ups and agent state changes spread over two acd instances
 * sharing one Redis, with the invariants checked on an atomic snapshot after
 * every step:
 *   - an agent never holds two calls, a call never has two agents, and the
 *     agent and call records agree;
 *   - every waiting call is in exactly its queue's wait set, no other call is;
 *   - the ready sets hold exactly the ready agents, in each of their queues;
 *   - no ready agent is left idle while a call it qualifies for waits;
 *   - a call offered in a step had the best rank (priority, then arrival)
 *     among the waiting calls the agent qualifies for in its queues (FIFO
 *     within a priority, fairness across queues);
 *   - the calls in Redis are exactly those enqueued and not ended: none lost,
 *     none duplicated.
 * Then two clients hammer both instances at once while one instance is
 * killed with SIGKILL and restarted; the same invariants hold throughout and
 * at the end. */
#include "acd_fixture.h"
#include "cc_check.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"

#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AGENTS 16
#define STEPS 3000

static const char *s_queues_sql =
    "INSERT INTO acd.queues (name, strategy, skills, offer_timeout_ms, wrap_up_ms) VALUES"
    " ('q1', 'longest_idle', '', 300000, 0), ('q2', 'fewest_calls', '', 300000, 0),"
    " ('q3', 'round_robin', 'sales:3', 300000, 0), ('q4', 'best_skill', 'support:1', 300000, 0);";

typedef struct {
    char id[16], skills[64], queues[64];
} agent_def_t;

static agent_def_t s_agents[AGENTS];
static fx_t s_fx;

/* The model: calls accepted and not ended; the value says whether the
 * outcome of a request about it is unknown (no reply came). */
static zhashx_t *s_live;
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
#define CERTAIN ((void *) 1)
#define UNCERTAIN ((void *) 2)

/* Calls ended for sure. A call id is used once, so an accept that comes
 * after the call's end (its reply was retried while the other client ended
 * it) does not bring it back to the model. */
static zhashx_t *s_ended;

static void
s_live_add(const char *id, bool uncertain)
{
    pthread_mutex_lock(&s_lock);
    if (!zhashx_lookup(s_ended, id)) zhashx_update(s_live, id, uncertain ? UNCERTAIN : CERTAIN);
    pthread_mutex_unlock(&s_lock);
}

static void
s_live_del(const char *id, bool uncertain)
{
    pthread_mutex_lock(&s_lock);
    if (uncertain) { if (zhashx_lookup(s_live, id)) zhashx_update(s_live, id, UNCERTAIN); }
    else {
        zhashx_delete(s_live, id);
        zhashx_update(s_ended, id, CERTAIN);
    }
    pthread_mutex_unlock(&s_lock);
}

static bool
s_in_list(const char *list, const char *item)
{
    size_t n = strlen(item);
    for (const char *p = list; (p = strstr(p, item)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return true;
    return false;
}

/* The invariants that hold on any snapshot. */
static void
s_check_state(fx_snap_t *s, bool check_model)
{
    CHECK(s->ready_unknown == 0, "%d ready-set members are not ready agents", s->ready_unknown);
    for (int i = 0; i < s->na; i++) {
        fx_agent_t *a = &s->agents[i];
        bool holds = strcmp(a->state, "reserved") == 0 || strcmp(a->state, "on_call") == 0;
        if (holds) {
            fx_call_t *c = fx_snap_call(s, a->call);
            CHECK(c, "agent %s is %s with call %s, which does not exist", a->id, a->state, a->call);
            CHECK(strcmp(c->agent, a->id) == 0, "agent %s holds %s, which belongs to %s", a->id, c->id, c->agent);
            CHECK(strcmp(a->state, "reserved") == 0 ? strcmp(c->state, "offered") == 0 : strcmp(c->state, "answered") == 0,
                  "agent %s is %s but call %s is %s", a->id, a->state, c->id, c->state);
        }
        if (strcmp(a->state, "ready") == 0) {
            for (int q = 0; q < s->nq; q++)
                CHECK(a->in_ready[q] == s_in_list(a->queues, s->queues[q]),
                      "ready agent %s (queues %s) in ready set of %s: %d", a->id, a->queues, s->queues[q], a->in_ready[q]);
        }
    }
    for (int i = 0; i < s->nc; i++) {
        fx_call_t *c = &s->calls[i];
        if (strcmp(c->state, "waiting") == 0) {
            CHECK(c->waiting_in == 1, "waiting call %s is in %d wait sets", c->id, c->waiting_in);
            /* No ready agent that could take it is left idle. */
            int q = fx_snap_queue(s, c->queue);
            for (int j = 0; j < s->na; j++) {
                fx_agent_t *a = &s->agents[j];
                CHECK(!(q >= 0 && a->in_ready[q] && fx_qualifies(a->skills, c->skills)),
                      "agent %s (skills %s) is ready in %s while call %s (needs %s) waits there",
                      a->id, a->skills, c->queue, c->id, c->skills);
            }
        } else {
            CHECK(c->waiting_in == 0, "%s call %s is still in a wait set", c->state, c->id);
            fx_agent_t *a = fx_snap_agent(s, c->agent);
            CHECK(a && strcmp(a->call, c->id) == 0, "%s call %s: its agent %s does not hold it", c->state, c->id, c->agent);
        }
    }
    if (!check_model) return;
    pthread_mutex_lock(&s_lock);
    for (int i = 0; i < s->nc; i++)
        CHECK(zhashx_lookup(s_live, s->calls[i].id), "call %s is in Redis but was never accepted (or was ended)",
              s->calls[i].id);
    size_t in_redis = 0;
    for (void *v = zhashx_first(s_live); v; v = zhashx_next(s_live)) {
        const char *id = zhashx_cursor(s_live);
        bool there = fx_snap_call(s, id) != NULL;
        CHECK(v == UNCERTAIN || there, "accepted call %s is lost", id);
        in_redis += there;
    }
    CHECK(in_redis == (size_t) s->nc, "Redis holds %d calls, the model %zu", s->nc, in_redis);
    pthread_mutex_unlock(&s_lock);
}

/* Whether call a must be served before call b: higher priority first, then
 * the earlier arrival (computed here from the fields, not the script's rank). */
static bool
s_before(const fx_call_t *a, const fx_call_t *b)
{
    return a->prio != b->prio ? a->prio > b->prio : a->enq < b->enq;
}

static const char *s_strategy[] = { "q1", "longest_idle", "q2", "fewest_calls", "q3", "round_robin", "q4", "best_skill" };

static int
s_level(const char *skills, const char *name)
{
    const char *p = strstr(skills, name);
    return p ? atoi(p + strlen(name) + 1) : 0;
}

/* Whether ready agent a beats b for a call of queue q by q's strategy. */
static bool
s_agent_better(const char *q, const fx_agent_t *a, const fx_agent_t *b)
{
    const char *strategy = "longest_idle";
    for (int i = 0; i < 8; i += 2) if (strcmp(s_strategy[i], q) == 0) strategy = s_strategy[i + 1];
    if (strcmp(strategy, "fewest_calls") == 0 && a->calls != b->calls) return a->calls < b->calls;
    if (strcmp(strategy, "round_robin") == 0) return a->last_offer <= b->last_offer;
    if (strcmp(strategy, "best_skill") == 0 && s_level(a->skills, "support") != s_level(b->skills, "support"))
        return s_level(a->skills, "support") > s_level(b->skills, "support");
    return a->since <= b->since;
}

/* Offers made between pre and post: the agent qualifies; the call was the
 * one to serve first among those the agent could take in its queues (FIFO
 * within a priority, fairness across queues); and when the agent was
 * already waiting, it was the best ready agent by the queue's strategy. */
static void
s_check_offers(fx_snap_t *pre, fx_snap_t *post)
{
    for (int i = 0; i < post->nc; i++) {
        fx_call_t *c = &post->calls[i];
        if (strcmp(c->state, "offered") != 0) continue;
        fx_call_t *before = fx_snap_call(pre, c->id);
        if (before && strcmp(before->state, "waiting") != 0) continue;   /* not offered in this step */
        fx_agent_t *a = fx_snap_agent(post, c->agent);
        CHECK(a && fx_qualifies(a->skills, c->skills), "call %s (needs %s) offered to %s (skills %s)",
              c->id, c->skills, c->agent, a ? a->skills : "?");
        for (int j = 0; j < post->nc; j++) {
            fx_call_t *w = &post->calls[j];
            if (strcmp(w->state, "waiting") != 0 || !s_in_list(a->queues, w->queue)) continue;
            if (!fx_qualifies(a->skills, w->skills)) continue;
            CHECK(!s_before(w, c), "agent %s got %s (prio %d, arrived %lld) while %s (prio %d, arrived %lld, queue %s) "
                  "should have come first", a->id, c->id, c->prio, (long long) c->enq, w->id, w->prio,
                  (long long) w->enq, w->queue);
        }
        fx_agent_t *a_pre = fx_snap_agent(pre, a->id);
        if (!a_pre || strcmp(a_pre->state, "ready") != 0) continue;
        for (int j = 0; j < pre->na; j++) {
            fx_agent_t *b = &pre->agents[j];
            fx_agent_t *b_post = fx_snap_agent(post, b->id);
            if (b == a_pre || strcmp(b->state, "ready") != 0 || !b_post || strcmp(b_post->state, "ready") != 0) continue;
            if (!s_in_list(b->queues, c->queue) || !fx_qualifies(b->skills, c->skills)) continue;
            CHECK(s_agent_better(c->queue, a_pre, b), "queue %s offered %s to %s although %s was the better ready agent",
                  c->queue, c->id, a->id, b->id);
        }
    }
}

static const char *
s_pick(fx_snap_t *s, const char *state, bool of_calls, unsigned *seed)
{
    int idx[2048], n = 0;
    int total = of_calls ? s->nc : s->na;
    for (int i = 0; i < total; i++) {
        const char *st = of_calls ? s->calls[i].state : s->agents[i].state;
        if (strcmp(st, state) == 0) idx[n++] = i;
    }
    if (!n) return NULL;
    int k = idx[rand_r(seed) % (unsigned) n];
    return of_calls ? s->calls[k].id : s->agents[k].id;
}

typedef struct { int ops[10]; } counts_t;

/* One random operation against instance inst. */
static void
s_step(int inst, unsigned *seed, fx_snap_t *s, int *next_call, counts_t *cnt, const char *prefix)
{
    int dice = (int) (rand_r(seed) % 100);
    char call[24];
    const char *id;
    int st;
    if (dice < 28) {
        snprintf(call, sizeof call, "%s%d", prefix, (*next_call)++);
        static const char *qs[] = { "q1", "q2", "q3", "q4" };
        int prio = rand_r(seed) % 10 == 0 ? 9 : (int) (rand_r(seed) % 3);
        st = fx_enqueue(&s_fx, inst, call, qs[rand_r(seed) % 4], prio, NULL, NULL);
        if (st == 0) s_live_add(call, false);
        else if (st < 0) s_live_add(call, true);
        else CHECK(0, "enqueue %s: status %d", call, st);
        cnt->ops[0]++;
    } else if (dice < 48 && (id = s_pick(s, "offered", true, seed))) {
        fx_call_t *c = fx_snap_call(s, id);
        st = fx_call_op(&s_fx, inst, "acd.answered", id, c->agent);
        cnt->ops[1] += st == 0;
    } else if (dice < 53 && (id = s_pick(s, "offered", true, seed))) {
        fx_call_t *c = fx_snap_call(s, id);
        st = fx_call_op(&s_fx, inst, "acd.rejected", id, c->agent);
        cnt->ops[2] += st == 0;
    } else if (dice < 70 && s->nc > 0) {
        id = s->calls[rand_r(seed) % (unsigned) s->nc].id;
        char copy[64];
        snprintf(copy, sizeof copy, "%s", id);
        st = fx_call_op(&s_fx, inst, "acd.ended", copy, NULL);
        if (st == 0 || st == 2 /* NOT_FOUND: ended by the other client */) s_live_del(copy, false);
        else if (st < 0) s_live_del(copy, true);
        cnt->ops[3]++;
    } else if (dice < 85 && (id = s_pick(s, "not_ready", false, seed))) {
        st = fx_state(&s_fx, inst, id, "ready", "");
        cnt->ops[4] += st == 0;
    } else if (dice < 90 && (id = s_pick(s, "ready", false, seed))) {
        st = fx_state(&s_fx, inst, id, "not_ready", "break");
        cnt->ops[5] += st == 0;
    } else if (dice < 94 && (id = s_pick(s, "ready", false, seed))) {
        st = fx_state(&s_fx, inst, id, "logged_out", "");
        cnt->ops[6] += st == 0;
    } else if ((id = s_pick(s, "logged_out", false, seed))) {
        for (int i = 0; i < AGENTS; i++)
            if (strcmp(s_agents[i].id, id) == 0) {
                st = fx_login(&s_fx, inst, id, s_agents[i].skills, s_agents[i].queues);
                cnt->ops[7] += st == 0;
            }
    }
}

static void
s_setup_agents(unsigned *seed)
{
    static const char *qs[] = { "q1", "q2", "q3", "q4" };
    for (int i = 0; i < AGENTS; i++) {
        agent_def_t *a = &s_agents[i];
        snprintf(a->id, sizeof a->id, "a%02d", i);
        snprintf(a->skills, sizeof a->skills, "sales:%d,support:%d", 1 + rand_r(seed) % 5, rand_r(seed) % 6);
        int first = (int) (rand_r(seed) % 4), count = 1 + (int) (rand_r(seed) % 3);
        a->queues[0] = '\0';
        for (int k = 0; k < count; k++) {
            size_t at = strlen(a->queues);
            snprintf(a->queues + at, sizeof a->queues - at, "%s%s", k ? "," : "", qs[(first + k) % 4]);
        }
        CHECK(fx_login(&s_fx, i % 2, a->id, a->skills, a->queues) == 0, "login %s", a->id);
    }
}

static void
random_steps_keep_every_invariant(void)
{
    TEST_BEGIN(__func__);
    unsigned seed = (unsigned) (getenv("ACD_SEED") ? atoi(getenv("ACD_SEED")) : 20261124);
    printf("seed %u\n", seed);
    s_setup_agents(&seed);
    static fx_snap_t pre, post;
    fx_snapshot(&s_fx, &pre);
    s_check_state(&pre, true);
    counts_t cnt = { { 0 } };
    int next_call = 0;
    for (int step = 0; step < STEPS; step++) {
        s_step(step % 2, &seed, &pre, &next_call, &cnt, "c");
        fx_snapshot(&s_fx, &post);
        s_check_state(&post, true);
        s_check_offers(&pre, &post);
        pre = post;
    }
    printf("enqueued %d, answered %d, rejected %d, ended %d, ready %d, not_ready %d, logout %d, login %d; live %zu\n",
           cnt.ops[0], cnt.ops[1], cnt.ops[2], cnt.ops[3], cnt.ops[4], cnt.ops[5], cnt.ops[6], cnt.ops[7],
           zhashx_size(s_live));
    CHECK(cnt.ops[1] > 100 && cnt.ops[3] > 100 && cnt.ops[4] > 100, "the walk covered answers, ends and ready");
    TEST_PASS(__func__);
}

typedef struct { int inst; unsigned seed; int ops; const char *prefix; atomic_int *done; } worker_t;

/* Random steps against one instance, reading state on its own connection. */
static void *
s_worker(void *arg)
{
    worker_t *w = arg;
    fx_snap_t *snap = malloc(sizeof *snap);
    cc_redis_t *r = cc_redis_new(getenv("REDIS_URL"), 5000, NULL);
    CHECK(snap && r && cc_redis_connect(r) == 0, "worker set-up");
    fx_t view = s_fx;
    view.redis = r;
    counts_t cnt = { { 0 } };
    int next_call = 0;
    for (int i = 0; i < w->ops; i++) {
        fx_snapshot(&view, snap);
        s_step(w->inst, &w->seed, snap, &next_call, &cnt, w->prefix);
    }
    cc_redis_destroy(&r);
    free(snap);
    atomic_fetch_add(w->done, 1);
    return NULL;
}

static void
concurrent_clients_and_a_killed_instance_keep_invariants(void)
{
    TEST_BEGIN(__func__);
    atomic_int done = 0;
    /* One worker per instance: each request client is used by one thread. */
    worker_t w[2] = { { 0, 7, 1500, "x", &done }, { 1, 11, 1500, "y", &done } };
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, s_worker, &w[i]);
    static fx_snap_t s;
    int64_t t0 = cc_mono_ms();
    bool killed = false;
    int snaps = 0;
    while (atomic_load(&done) < 2) {
        fx_snapshot(&s_fx, &s);
        s_check_state(&s, false);
        snaps++;
        if (!killed && cc_mono_ms() - t0 > 1000) {
            cc_harness_stop(s_fx.h, s_fx.pid[1], SIGKILL, 5000);
            cc_sleep_ms(200);
            fx_start_instance(&s_fx, 1);
            killed = true;
            printf("instance 1 killed with SIGKILL and restarted\n");
        }
        cc_sleep_ms(5);
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECK(killed, "the run lasted long enough to kill an instance");
    fx_snapshot(&s_fx, &s);
    s_check_state(&s, true);
    printf("%d snapshots checked during the concurrent run; live calls %zu\n", snaps, zhashx_size(s_live));
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("acd_random_test", "acd_random_test");
    s_live = zhashx_new();
    s_ended = zhashx_new();
    fx_start(&s_fx, "acd-random", 2, s_queues_sql);
    random_steps_keep_every_invariant();
    concurrent_clients_and_a_killed_instance_keep_invariants();
    fx_stop(&s_fx);
    zhashx_destroy(&s_live);
    zhashx_destroy(&s_ended);
    cc_log_shutdown();
    printf("acd_random_test: 2 passed, 0 failed\n");
    return 0;
}
