/* acd_sessions: agents' sessions (acd.sessions) and callbacks
 * (acd.callbacks) in PostgreSQL, written by a thread of its own with its
 * own connection, so that the loop never waits on PostgreSQL.
 *
 * The writes are applied one after the other in the order they were given
 * (so in order for each agent). One that fails because PostgreSQL cannot be
 * reached stays at the head and is tried again every retry_ms until it goes
 * through: nothing is lost while PostgreSQL is briefly down (logged once
 * when the writes stop, once when they resume). One that PostgreSQL refuses
 * (an SQL error) is logged and dropped. The calls below are for the thread
 * that made the object. */
#ifndef ACD_SESSIONS_H
#define ACD_SESSIONS_H

typedef struct _acd_sessions_t acd_sessions_t;

/* Starts the writer thread on db_url. NULL when it cannot start (logged). */
acd_sessions_t *acd_sessions_new(const char *db_url, int retry_ms);
/* Waits up to drain_ms for the queued writes, then stops the thread; the
 * writes still queued then are counted in the log. NULL-safe. */
void acd_sessions_destroy(acd_sessions_t **self_p, int drain_ms);

/* An agent logged in (ready) with its extension, skills and queues. */
void acd_sessions_login(acd_sessions_t *self, const char *agent, const char *ext, const char *skills,
                        const char *queues);
/* The agent asked for ready, or is not_ready(reason). */
void acd_sessions_state(acd_sessions_t *self, const char *agent, const char *state, const char *reason);
/* The agent answered call of queue. */
void acd_sessions_call(acd_sessions_t *self, const char *agent, const char *call, const char *queue);
/* A call ended that acd no longer knew (its live state was lost): an agent
 * whose session is on it is ready again. */
void acd_sessions_call_ended(acd_sessions_t *self, const char *call);
/* The agent logged out: its session is gone. */
void acd_sessions_end(acd_sessions_t *self, const char *agent);

/* A callback requested (acd.callbacks): call, queue, number, prio, rank,
 * enq_ms, expires_ms, customer, caller, skills, qenq_ms (0: at enq_ms). */
void acd_sessions_callback(acd_sessions_t *self, const char *const fields[11]);
/* The customer did not answer it (attempts tries so far): tried again
 * from hold_until_ms. */
void acd_sessions_callback_attempt(acd_sessions_t *self, const char *call, const char *attempts,
                                   const char *hold_until_ms);
/* It was answered, or left (failed, expired, cancelled): done for good. */
void acd_sessions_callback_done(acd_sessions_t *self, const char *call);

/* Waits until every write given before is done (or dropped). Returns 0, or
 * -1 after timeout_ms (PostgreSQL unreachable: they are still queued). */
int acd_sessions_sync(acd_sessions_t *self, int timeout_ms);

#endif
