/* cc_pg: one PostgreSQL connection (libpq) with reconnect, prepared
 * statements, transactions and the migrations runner.
 *
 * Statements are registered once by name and prepared lazily on each
 * connection, so they survive a reconnect. When the server goes away outside a
 * transaction, the next call reconnects with backoff (up to the reconnect
 * budget) and runs once more; inside a transaction it fails with CC_ECONN and
 * the caller runs the transaction again. Not thread-safe: one per thread. */
#ifndef CC_PG_H
#define CC_PG_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "cc/cc_metrics.h"

typedef struct _cc_pg_t cc_pg_t;

/* url: a libpq connection string or URI. reconnect_ms: how long one call may
 * spend reconnecting. Does not connect yet. Never NULL. */
cc_pg_t *cc_pg_new(const char *url, int reconnect_ms, cc_metrics_t *metrics);
void cc_pg_destroy(cc_pg_t **self_p);

/* Connects (with backoff, within reconnect_ms). Returns 0 or CC_ECONN. */
int cc_pg_connect(cc_pg_t *self);
/* True when the last operation found the server reachable (thread-safe). */
bool cc_pg_healthy(cc_pg_t *self);
/* Runs "SELECT 1". Returns 0 or an error. */
int cc_pg_ping(cc_pg_t *self);

/* For health probes: pings once or tries one reconnect, never waits out the
 * reconnect budget. Returns 0 or CC_ECONN; updates cc_pg_healthy(). */
int cc_pg_check(cc_pg_t *self);

/* Registers a statement to be prepared on every connection. */
void cc_pg_statement(cc_pg_t *self, const char *name, const char *sql);

/* Runs a registered statement with text parameters (NULL = SQL NULL).
 * Returns 0 with *res_p (caller PQclear()s; res_p may be NULL), CC_EDB on an
 * SQL error, CC_ECONN when the server could not be reached. */
int cc_pg_exec(cc_pg_t *self, const char *name, int nparams,
               const char *const *params, PGresult **res_p);
/* Runs SQL text (one or more statements, no parameters). Same returns. */
int cc_pg_run(cc_pg_t *self, const char *sql, PGresult **res_p);

int cc_pg_begin(cc_pg_t *self);
int cc_pg_commit(cc_pg_t *self);
/* Rolls back; harmless when no transaction is open. */
void cc_pg_rollback(cc_pg_t *self);

/* The last error text, and the SQLSTATE of the last SQL error ("" if none). */
const char *cc_pg_error(cc_pg_t *self);
const char *cc_pg_sqlstate(cc_pg_t *self);
PGconn *cc_pg_conn(cc_pg_t *self);

/* Applies the migrations NNNN_name.sql in dir, in order, for owner (a schema
 * name such as "acd"). Each runs once in its own transaction and is recorded
 * in public.cc_schema_migrations with a checksum; an applied file that was
 * edited is refused (CC_ECHECKSUM). Runners exclude each other with an
 * advisory lock. *applied_p (may be NULL) gets the number applied now. */
int cc_pg_migrate(cc_pg_t *self, const char *owner, const char *dir, int *applied_p);

void cc_pg_test(void);

#endif
