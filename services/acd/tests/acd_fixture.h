/* acd_fixture: private servers, acd instances and request helpers for the
 * acd tests, plus an atomic snapshot of the live state in Redis. */
#ifndef ACD_FIXTURE_H
#define ACD_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cc_harness.h"
#include "cc/cc_redis.h"
#include "cc/cc_rpc.h"

#define FX_MAX_INSTANCES 4

typedef struct {
    cc_harness_t *h;
    int n;
    pid_t pid[FX_MAX_INSTANCES];
    char rpc[FX_MAX_INSTANCES][64];
    int admin[FX_MAX_INSTANCES];
    cc_rpc_client_t *client[FX_MAX_INSTANCES];
    cc_redis_t *redis;
} fx_t;

/* Starts PostgreSQL, Redis and the forwarder, applies acd's migrations, runs
 * queues_sql (INSERTs into acd.queues / acd.agents) and starts n instances. */
void fx_start(fx_t *fx, const char *name, int n, const char *queues_sql);
void fx_stop(fx_t *fx);
/* Starts (again) instance i. */
void fx_start_instance(fx_t *fx, int i);

/* Sends a request to instance i. Returns the reply status, or -1 when no
 * reply came (the outcome is unknown). error_out (may be NULL) gets the
 * error text. */
int fx_login(fx_t *fx, int i, const char *agent, const char *skills, const char *queues);
int fx_state(fx_t *fx, int i, const char *agent, const char *state, const char *reason);
int fx_enqueue(fx_t *fx, int i, const char *call, const char *queue, int prio, const char *last_agent,
               unsigned *position);
int fx_call_op(fx_t *fx, int i, const char *method, const char *call, const char *agent);
/* acd.rejected with the gateway's reason (no_answer, call_busy...). */
int fx_rejected(fx_t *fx, int i, const char *call, const char *agent, const char *reason);
int fx_request(fx_t *fx, int i, const char *method, const void *payload, size_t len, char *error, size_t cap);
/* acd.callback: the waiting caller of call is to be called back at number. */
int fx_callback(fx_t *fx, int i, const char *call, const char *number, char *error, size_t cap);

/* Sends request_id (as a retry would: the same id, maybe to another
 * instance) with method and message m to instance i, and waits 3 s for the
 * reply. Returns its status (*reply_p, when given, gets it: free with
 * cc__reply__free_unpacked), or -1 when none came. */
int fx_request_as(fx_t *fx, int i, const char *request_id, const char *method, const ProtobufCMessage *m,
                  Cc__Reply **reply_p);
/* Live state read in one atomic script. */
typedef struct {
    char id[64], state[16], call[64], queues[128], skills[128];
    int64_t since, calls, last_offer;
    bool in_ready[32];         /* per queue index of the snapshot */
} fx_agent_t;
typedef struct {
    char id[64], queue[32], state[16], agent[64], skills[128];
    double rank;
    int prio;
    int64_t enq;
    int waiting_in;            /* how many wait sets hold it */
} fx_call_t;
typedef struct {
    int nq;
    char queues[32][32];
    int na, nc;
    fx_agent_t agents[256];
    fx_call_t calls[2048];
    int ready_entries;         /* total members of all ready sets */
    int ready_unknown;         /* ready-set members that are not agents in state ready */
} fx_snap_t;

void fx_snapshot(fx_t *fx, fx_snap_t *s);
fx_agent_t *fx_snap_agent(fx_snap_t *s, const char *id);
fx_call_t *fx_snap_call(fx_snap_t *s, const char *id);
int fx_snap_queue(fx_snap_t *s, const char *q);
/* The first value of sql's first row on PostgreSQL ("" when none, "?" on
 * an error). */
void fx_pg_text(const char *sql, char *out, size_t cap);
/* Polls sql (up to 10 s) until its first value is want; says what it got
 * when it never was. */
bool fx_pg_until(const char *sql, const char *want);
/* Whether the agent's skills meet "name:level,..." requirements. */
bool fx_qualifies(const char *agent_skills, const char *required);

#endif
