/* acd_bound: the bound Redis itself sets for acd's routing, shared by the
 * acd benchmarks: redis-benchmark's EVALSHA rate (50 clients, no
 * pipelining) for a script of a reservation's shape (pop the best agent,
 * read and write a few hashes, put the agent back). */
#ifndef ACD_BOUND_H
#define ACD_BOUND_H

#include "cc/cc_redis.h"

/* The script's requests per second on the Redis at port (the one
 * REDIS_URL names), seeding its keys first; 0 when not measured. */
double acd_bound_evalsha_per_s(int port);

/* Writes the script's 50 ready agents (bench:ready, bench:agent:*) in
 * r's database. */
void acd_bound_seed(cc_redis_t *r);

/* The script's body (Lua, KEYS[1] the ready set, ARGV[1] the call,
 * ARGV[2] the agent's new score). */
extern const char acd_bound_lua[];

#endif
