/* os_outbox: pushes to the platforms through commerce.outbox.
 *
 * A change made here (an order placed by phone, a status change, a return, a
 * cancellation) calls os_outbox_put() inside its own transaction, so the push
 * exists exactly when the change does. An os_outbox_t runs one worker thread
 * with its own PostgreSQL connection that takes due rows with FOR UPDATE SKIP
 * LOCKED (two order-sync instances never push one row twice), POSTs each to
 * the platform's endpoint signed as Standard Webhooks (webhook-id 'msg_<id>',
 * webhook-timestamp, webhook-signature v1,<base64 HMAC-SHA256 of
 * id.timestamp.body>) with libcurl, and records the outcome in the same
 * transaction: delivered on 2xx; retried with exponential backoff (or the
 * Retry-After the platform asked for) on 5xx, 408, 425, 429 and network
 * errors; moved to commerce.outbox_dead on any other 4xx (a 410 also stops
 * the platform's pushes until a replay) or after max_attempts. Pushes about
 * one order leave in the order they were written. */
#ifndef OS_OUTBOX_H
#define OS_OUTBOX_H

#include "cc/cc_metrics.h"
#include "cc/cc_pg.h"

typedef struct _os_outbox_t os_outbox_t;

typedef struct {
    const char *db_url;
    int reconnect_ms;
    int backoff_ms;       /* the first retry's delay; doubled for each next one */
    int backoff_max_ms;   /* no delay longer than this (Retry-After included) */
    int max_attempts;     /* then the push is a dead letter */
    int timeout_ms;       /* per HTTP attempt */
    int poll_ms;          /* look for due rows at least this often */
    int keep_days;        /* delivered pushes are deleted after this (at start, then hourly) */
    cc_metrics_t *metrics;
} os_outbox_opts_t;

/* Registers the statement os_outbox_put() runs on pg. */
void os_outbox_statements(cc_pg_t *pg);

/* Queues a push of type ("order.created", "order.updated", "order.cancelled",
 * "order.returned") about order_number to its platform, with extra_json (a
 * JSON object, or NULL) merged into the body's data. Call it inside the
 * transaction of the change. A platform without an endpoint gets no push.
 * Returns 0, or the cc_pg error (logged by the caller's rollback path). */
int os_outbox_put(cc_pg_t *pg, const char *type, const char *order_number, const char *extra_json);

/* Starts the worker (curl_global_init() must have run). NULL if the thread
 * cannot start. */
os_outbox_t *os_outbox_new(const os_outbox_opts_t *opts);
/* Stops the worker after its current push, then frees. */
void os_outbox_destroy(os_outbox_t **self_p);

/* Replays dead letters into the outbox: one id, or every one when id is 0;
 * clears a 410 stop of their platforms. Returns the number replayed, or a
 * negative cc error. For the operator's command. */
int os_outbox_replay(cc_pg_t *pg, long long id);

#endif
