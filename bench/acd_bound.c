/* acd_bound: see acd_bound.h. */
#include "acd_bound.h"
#include "cc/cc_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char acd_bound_lua[] =
    "local a = redis.call('ZRANGE', KEYS[1], 0, 0)[1] "
    "redis.call('ZREM', KEYS[1], a) "
    "local h = redis.call('HGETALL', 'bench:agent:' .. a) "
    "redis.call('HSET', 'bench:agent:' .. a, 'state', 'reserved', 'call', ARGV[1]) "
    "redis.call('HSET', 'bench:call:' .. ARGV[1], 'state', 'offered', 'agent', a) "
    "redis.call('ZADD', KEYS[1], ARGV[2], a) "
    "return a";

void
acd_bound_seed(cc_redis_t *r)
{
    for (int i = 0; i < 50; i++) {
        redisReply *x = cc_redis_cmdf(r, "ZADD bench:ready %d a%d", i, i);
        freeReplyObject(x);
        x = cc_redis_cmdf(r, "HSET bench:agent:a%d state ready skills s1:3", i);
        freeReplyObject(x);
    }
}

double
acd_bound_evalsha_per_s(int port)
{
    cc_redis_t *r = cc_redis_new(getenv("REDIS_URL"), 2000, NULL);
    if (!r || cc_redis_connect(r)) return 0;
    acd_bound_seed(r);
    const char *argv[] = { "SCRIPT", "LOAD", acd_bound_lua };
    redisReply *sha = cc_redis_cmd(r, 3, argv);
    if (!sha || sha->type != REDIS_REPLY_STRING) {
        fprintf(stderr, "acd_bound: the bound's script not loaded: %s\n", sha && sha->str ? sha->str : "no reply");
        if (sha) freeReplyObject(sha);
        cc_redis_destroy(&r);
        return 0;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "redis-benchmark -p %d -c 50 -n 200000 -P 1 -q EVALSHA %s 1 bench:ready c1 1",
             port, sha->str);
    freeReplyObject(sha);
    cc_redis_destroy(&r);
    FILE *p = popen(cmd, "r");
    double rate = 0;
    char line[1024];
    while (p && fgets(line, sizeof line, p)) {
        char *rps = strstr(line, "requests per second");
        if (!rps) continue;
        /* "EVALSHA ...: 38000.00 requests per second, p50=..." */
        char *colon = strrchr(line, ':');
        for (char *q = rps; q > line; q--) if (*q == ':') { colon = q; break; }
        rate = strtod(colon + 1, NULL);
    }
    if (p) pclose(p);
    return rate;
}
