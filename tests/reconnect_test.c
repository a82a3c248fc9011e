/* reconnect_test: clients survive their server's restart.
 *
 * postgres_restart_next_statement_succeeds: a prepared statement runs, the
 *   server restarts, the next call reconnects, prepares again and succeeds.
 * postgres_down_fails_fast_then_recovers: with the server down a call fails
 *   with CC_ECONN within the reconnect budget; once back, it works.
 * redis_restart_script_runs_again: a Lua script (EVALSHA) runs, Redis
 *   restarts (scripts and data gone), the next call reconnects, reloads the
 *   script on NOSCRIPT and succeeds.
 * redis_function_library_loads_once_and_again: a function library (FCALL)
 *   keeps what its top level built from call to call; a second client
 *   finds it loaded; two versions of it run side by side; after FUNCTION
 *   FLUSH and after a restart it is loaded again; a library that cannot
 *   load is an error reply, not a crash. */
#include "cc_check.h"
#include "cc_harness.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_redis.h"

#include <string.h>

static void
postgres_restart_next_statement_succeeds(cc_harness_t *h)
{
    TEST_BEGIN(__func__);
    cc_pg_t *pg = cc_pg_new(getenv("DATABASE_URL"), 10000, NULL);
    CHECK(cc_pg_connect(pg) == 0, "connect");
    cc_pg_statement(pg, "add", "SELECT $1::int + 1");
    const char *p[] = { "41" };
    PGresult *res = NULL;
    CHECK(cc_pg_exec(pg, "add", 1, p, &res) == 0, "before restart: %s", cc_pg_error(pg));
    CHECK(strcmp(PQgetvalue(res, 0, 0), "42") == 0, "value");
    PQclear(res);
    cc_harness_restart_pg(h);
    CHECK(cc_pg_exec(pg, "add", 1, p, &res) == 0, "after restart: %s", cc_pg_error(pg));
    CHECK(strcmp(PQgetvalue(res, 0, 0), "42") == 0, "value after restart");
    PQclear(res);
    CHECK(cc_pg_healthy(pg), "healthy again");
    cc_pg_destroy(&pg);
    TEST_PASS(__func__);
}

static void
postgres_down_fails_fast_then_recovers(cc_harness_t *h)
{
    TEST_BEGIN(__func__);
    cc_pg_t *pg = cc_pg_new(getenv("DATABASE_URL"), 500, NULL);
    CHECK(cc_pg_connect(pg) == 0, "connect");
    cc_harness_stop_pg(h);
    int rc = cc_pg_ping(pg);
    CHECK(rc == CC_ECONN, "rc=%s", cc_errname(rc));
    CHECK(!cc_pg_healthy(pg), "reported down");
    /* In a transaction, a lost connection is reported, not retried. */
    cc_harness_restart_pg(h);
    CHECK(cc_pg_ping(pg) == 0, "back: %s", cc_pg_error(pg));
    CHECK(cc_pg_begin(pg) == 0, "begin");
    cc_harness_restart_pg(h);
    rc = cc_pg_run(pg, "SELECT 1", NULL);
    CHECK(rc == CC_ECONN, "a transaction cut by a restart is reported (rc=%s)", cc_errname(rc));
    CHECK(cc_pg_ping(pg) == 0, "outside the transaction it reconnects: %s", cc_pg_error(pg));
    cc_pg_destroy(&pg);
    TEST_PASS(__func__);
}

static void
redis_restart_script_runs_again(cc_harness_t *h)
{
    TEST_BEGIN(__func__);
    cc_redis_t *r = cc_redis_new(getenv("REDIS_URL"), 10000, NULL);
    CHECK(r && cc_redis_connect(r) == 0, "connect");
    cc_redis_script(r, "bump", "return redis.call('INCRBY', KEYS[1], ARGV[1])");
    const char *keys[] = { "test:n" }, *args[] = { "5" };
    redisReply *rep = cc_redis_eval(r, "bump", 1, keys, 1, args);
    CHECK(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 5, "first eval");
    freeReplyObject(rep);
    cc_harness_restart_redis(h);
    rep = cc_redis_eval(r, "bump", 1, keys, 1, args);
    CHECK(rep && rep->type == REDIS_REPLY_INTEGER, "eval after restart: %s", rep ? rep->str : cc_redis_error(r));
    CHECK(rep->integer == 5, "fresh server (no save): %lld", rep->integer);
    freeReplyObject(rep);
    /* Script cache flushed without a restart: NOSCRIPT is handled too. */
    rep = cc_redis_cmdf(r, "SCRIPT FLUSH");
    freeReplyObject(rep);
    rep = cc_redis_eval(r, "bump", 1, keys, 1, args);
    CHECK(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 10, "eval after SCRIPT FLUSH");
    freeReplyObject(rep);
    CHECK(cc_redis_healthy(r), "healthy");
    cc_redis_destroy(&r);
    TEST_PASS(__func__);
}

static void
redis_function_library_loads_once_and_again(cc_harness_t *h)
{
    TEST_BEGIN(__func__);
    /* The top level runs when Redis loads the library: `built` counts the
     * calls since then, so a library rebuilt per call would always say 1. */
    static const char *lib =
        "local built = 0\n"
        "redis.register_function(FUNCTION_NAME, function(keys, args)\n"
        "  built = built + 1\n"
        "  return { redis.call('INCRBY', keys[1], args[1]), built }\n"
        "end)\n";
    cc_redis_t *r = cc_redis_new(getenv("REDIS_URL"), 10000, NULL);
    cc_redis_t *r2 = cc_redis_new(getenv("REDIS_URL"), 10000, NULL);
    CHECK(r && cc_redis_connect(r) == 0 && r2 && cc_redis_connect(r2) == 0, "connect");
    cc_redis_function(r, "lib", lib);
    cc_redis_function(r2, "lib", lib);
    const char *keys[] = { "test:f" }, *args[] = { "2" };
    for (int i = 1; i <= 3; i++) {
        redisReply *rep = cc_redis_eval(i == 2 ? r2 : r, "lib", 1, keys, 1, args);
        CHECK(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 && rep->element[0]->integer == 2 * i
              && rep->element[1]->integer == i, "call %d: %s", i, rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "");
        freeReplyObject(rep);
    }
    redisReply *list = cc_redis_cmdf(r, "FUNCTION LIST");
    CHECK(list && list->type == REDIS_REPLY_ARRAY && list->elements == 1, "one library for both clients");
    freeReplyObject(list);
    /* Another version of the same name: its own library, beside the first. */
    cc_redis_t *r3 = cc_redis_new(getenv("REDIS_URL"), 10000, NULL);
    CHECK(r3 && cc_redis_connect(r3) == 0, "connect");
    cc_redis_function(r3, "lib", "redis.register_function(FUNCTION_NAME, function() return 'v2' end)\n");
    redisReply *rep = cc_redis_eval(r3, "lib", 0, NULL, 0, NULL);
    CHECK(rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "v2") == 0, "the second version runs");
    freeReplyObject(rep);
    rep = cc_redis_eval(r, "lib", 1, keys, 1, args);
    CHECK(rep && rep->type == REDIS_REPLY_ARRAY && rep->element[1]->integer == 4, "the first still runs its own");
    freeReplyObject(rep);
    /* Flushed: loaded again at the next call (its top level runs again). */
    freeReplyObject(cc_redis_cmdf(r, "FUNCTION FLUSH"));
    rep = cc_redis_eval(r, "lib", 1, keys, 1, args);
    CHECK(rep && rep->type == REDIS_REPLY_ARRAY && rep->element[1]->integer == 1, "after FUNCTION FLUSH");
    freeReplyObject(rep);
    cc_harness_restart_redis(h);
    rep = cc_redis_eval(r2, "lib", 1, keys, 1, args);
    CHECK(rep && rep->type == REDIS_REPLY_ARRAY && rep->element[0]->integer == 2 && rep->element[1]->integer == 1,
          "after a restart (no save): loaded again on a fresh server");
    freeReplyObject(rep);
    /* A library Redis refuses (its top level calls string, which loading
     * may not): the error reply, logged. */
    cc_redis_function(r3, "bad", "local p = string.rep('x', 2)\nredis.register_function(FUNCTION_NAME, function() return p end)\n");
    rep = cc_redis_eval(r3, "bad", 0, NULL, 0, NULL);
    CHECK(rep && rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "string"), "refused: %s", rep ? rep->str : "NULL");
    freeReplyObject(rep);
    CHECK(cc_redis_healthy(r3), "still healthy");
    cc_redis_destroy(&r);
    cc_redis_destroy(&r2);
    cc_redis_destroy(&r3);
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("reconnect_test", "reconnect_test");
    cc_harness_t *h = cc_harness_new("reconnect");
    cc_harness_start_pg(h);
    cc_harness_start_redis(h);
    postgres_restart_next_statement_succeeds(h);
    postgres_down_fails_fast_then_recovers(h);
    redis_restart_script_runs_again(h);
    redis_function_library_loads_once_and_again(h);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    printf("reconnect_test: 3 passed, 0 failed\n");
    return 0;
}
