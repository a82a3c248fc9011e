/* acd_floor_bench: what a routing decision costs inside Redis, against what
 * the commands it issues cost by themselves and against the bound's script,
 * all timed in the same Redis, in alternating steps (the machine's speed
 * moves; alternating keeps the figures comparable).
 *
 * A decision is tools/bench acd's: an enqueue offered at once to a ready
 * agent, then the call's end, which frees the agent; 1,000 agents in 100
 * queues over 5 skills. acd's library runs with bench/acd_floor.lua
 * appended, whose functions run the steps inside Redis (no network, no acd
 * process), each in a database of its own:
 *   library:  acd's operations through its batch entry (its rules,
 *             request ids, actions and JSON reply);
 *   commands: only the commands those decisions issue, same keys, fields
 *             and replies, no rules;
 *   lean:     the same decisions' commands in the leanest layout we could
 *             conceive (packed records, one ready set per group of agents
 *             with the same queues), no rules;
 *   bound:    the body of the bound's script (acd_bound.c).
 * If the commands alone cost more Redis time than a goal allows, no
 * change to the rules can reach it: only fewer or cheaper commands; if the
 * lean layout's do, no layout of this kind can.
 * BENCH_STEPS sets the number of steps (15). Prints
 * "acd_floor.<figure> <value> <unit>" lines. */
#include "acd_bound.h"
#include "cc_harness.h"
#include "cc/cc_log.h"
#include "cc/cc_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef ACD_SOURCE_DIR
#error "ACD_SOURCE_DIR must be defined"
#endif
#ifndef BENCH_SOURCE_DIR
#error "BENCH_SOURCE_DIR must be defined"
#endif

#define BATCHES 20              /* per step: 320 decisions */
#define DECISIONS (BATCHES * 16)
#define BOUND_RUNS 2000         /* bound script runs per step */

/* The premise: 20,000 decisions/s where the bound is 38,000/s. */
#define GOAL_PER_S 20000.0
#define GOAL_RATIO (20000.0 / 38000.0)

/* A connection to database db of the harness's Redis. */
static cc_redis_t *
s_connect(int db)
{
    cc_redis_t *r = cc_redis_new(getenv("REDIS_URL"), 30000, NULL);
    if (!r || cc_redis_connect(r)) {
        fprintf(stderr, "acd_floor: no Redis\n");
        exit(1);
    }
    redisReply *x = cc_redis_cmdf(r, "SELECT %d", db);
    if (!x || x->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "acd_floor: SELECT %d failed\n", db);
        exit(1);
    }
    freeReplyObject(x);
    return r;
}

/* Runs library function fn (arguments a, b) and returns the microseconds
 * it reports; exits on an error. */
static double
s_fcall(cc_redis_t *r, const char *fn, const char *a, const char *b)
{
    const char *argv[] = { "FCALL", fn, "0", a, b };
    redisReply *x = cc_redis_cmd(r, b ? 5 : a ? 4 : 3, argv);
    if (!x || x->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "acd_floor: %s failed: %s\n", fn, x && x->str ? x->str : "no reply");
        exit(1);
    }
    double us = x->type == REDIS_REPLY_INTEGER ? (double) x->integer : 0;
    freeReplyObject(x);
    return us;
}

int
main(void)
{
    int steps = getenv("BENCH_STEPS") ? atoi(getenv("BENCH_STEPS")) : 15;
    if (steps < 1 || steps > 1000) steps = 15;
    cc_log_init("bench", "bench");
    cc_log_set_level(CC_LOG_WARN);
    cc_harness_t *h = cc_harness_new("acd-floor-bench");
    const char *redis_url = cc_harness_start_redis(h);
    int redis_port = atoi(strrchr(redis_url, ':') + 1);

    /* acd's library with the floor's functions appended, loaded as acd
     * loads its own (cc_redis_function), by a first empty batch. */
    char *acd = cc_harness_read_file(ACD_SOURCE_DIR "/lua/acd.lua");
    char *floor = cc_harness_read_file(BENCH_SOURCE_DIR "/acd_floor.lua");
    if (!acd || !floor) {
        fprintf(stderr, "acd_floor: cannot read acd.lua or acd_floor.lua\n");
        return 1;
    }
    size_t len = strlen(acd) + strlen(floor) + 2;
    char *body = malloc(len);
    snprintf(body, len, "%s\n%s", acd, floor);
    cc_redis_t *lib = s_connect(0), *cmds = s_connect(1), *bound = s_connect(2), *lean = s_connect(3);
    cc_redis_function(lib, "acd_floor", body);
    const char *empty[] = { "0", "" };
    redisReply *x = cc_redis_eval(lib, "acd_floor", 0, NULL, 2, empty);
    if (!x || x->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "acd_floor: library not loaded: %s\n", x && x->str ? x->str : "no reply");
        return 1;
    }
    freeReplyObject(x);
    s_fcall(lib, "floor_setup", NULL, NULL);
    s_fcall(cmds, "floor_setup", NULL, NULL);
    acd_bound_seed(bound);
    s_fcall(lean, "floor_lean_setup", NULL, NULL);

    char batches[16], runs[16];
    snprintf(batches, sizeof batches, "%d", BATCHES);
    snprintf(runs, sizeof runs, "%d", BOUND_RUNS);
    /* A first step of each, not counted (caches, the Lua heap). */
    s_fcall(lib, "floor_acd", batches, NULL);
    s_fcall(cmds, "floor_commands", batches, NULL);
    s_fcall(bound, "floor_bound", runs, acd_bound_lua);
    s_fcall(lean, "floor_lean", batches, NULL);
    cc_samples_t lib_us = { 0 }, cmd_us = { 0 }, lean_us = { 0 }, bound_us = { 0 }, share = { 0 }, lean_share = { 0 };
    for (int i = 0; i < steps; i++) {
        double l = s_fcall(lib, "floor_acd", batches, NULL) / DECISIONS;
        double c = s_fcall(cmds, "floor_commands", batches, NULL) / DECISIONS;
        cc_samples_add(&lib_us, l);
        cc_samples_add(&cmd_us, c);
        double n = s_fcall(lean, "floor_lean", batches, NULL) / DECISIONS;
        cc_samples_add(&lean_us, n);
        cc_samples_add(&bound_us, s_fcall(bound, "floor_bound", runs, acd_bound_lua) / BOUND_RUNS);
        cc_samples_add(&share, l > 0 ? c / l : 0);
        cc_samples_add(&lean_share, l > 0 ? n / l : 0);
    }
    double bound_rate = acd_bound_evalsha_per_s(redis_port);
    double l = cc_samples_quantile(&lib_us, 0.5), c = cc_samples_quantile(&cmd_us, 0.5);
    double n = cc_samples_quantile(&lean_us, 0.5), b = cc_samples_quantile(&bound_us, 0.5);
    printf("acd_floor.library_us_per_decision %.1f us\n", l);
    printf("acd_floor.commands_us_per_decision %.1f us\n", c);
    printf("acd_floor.commands_share %.2f ratio\n", cc_samples_quantile(&share, 0.5));
    printf("acd_floor.lean_commands_us_per_decision %.1f us\n", n);
    printf("acd_floor.lean_share %.2f ratio\n", cc_samples_quantile(&lean_share, 0.5));
    printf("acd_floor.bound_script_us %.2f us\n", b);
    printf("acd_floor.redis_evalsha_per_s %.0f requests/s\n", bound_rate);
    /* The most decisions per second Redis could make if it did nothing
     * else (a whole core, no network): with the library, and with only its
     * commands. */
    printf("acd_floor.library_ceiling_per_s %.0f decisions/s\n", l > 0 ? 1e6 / l : 0);
    printf("acd_floor.commands_ceiling_per_s %.0f decisions/s\n", c > 0 ? 1e6 / c : 0);
    printf("acd_floor.commands_ceiling_ratio %.2f ratio\n", c > 0 && bound_rate > 0 ? 1e6 / c / bound_rate : 0);
    printf("acd_floor.lean_ceiling_per_s %.0f decisions/s\n", n > 0 ? 1e6 / n : 0);
    printf("acd_floor.lean_ceiling_ratio %.2f ratio\n", n > 0 && bound_rate > 0 ? 1e6 / n / bound_rate : 0);
    /* What a decision may cost Redis, at most, for the goal (20,000/s) and
     * for the ratio (20,000 to 38,000) on this machine. */
    printf("acd_floor.goal_us_per_decision %.1f us\n", 1e6 / GOAL_PER_S);
    printf("acd_floor.goal_ratio_us_per_decision %.1f us\n", bound_rate > 0 ? 1e6 / (GOAL_RATIO * bound_rate) : 0);
    printf("acd_floor.steps %d steps\n", steps);
    cc_samples_free(&lib_us);
    cc_samples_free(&cmd_us);
    cc_samples_free(&lean_us);
    cc_samples_free(&bound_us);
    cc_samples_free(&share);
    cc_samples_free(&lean_share);
    free(body);
    free(acd);
    free(floor);
    cc_redis_destroy(&lib);
    cc_redis_destroy(&cmds);
    cc_redis_destroy(&bound);
    cc_redis_destroy(&lean);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    return 0;
}
