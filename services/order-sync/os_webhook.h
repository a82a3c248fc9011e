/* os_webhook: platform webhooks in the Standard Webhooks dialect: signature,
 * replay window, idempotency by event id, and the order they carry stored in
 * one transaction. */
#ifndef OS_WEBHOOK_H
#define OS_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "cc/cc_pg.h"

#define OS_REPLAY_WINDOW_S 300

/* Checks webhook-signature ("v1,<base64> ...") against the HMAC-SHA256 of
 * "id.timestamp.body" with secret ("whsec_<base64>"), in constant time, and
 * the timestamp against now_s within the replay window. Returns 0, or 401
 * with *why set. The secret is never logged. */
int os_verify(const char *secret, const char *id, const char *timestamp, const char *body, size_t len,
              const char *signature, int64_t now_s, const char **why);

/* Registers the statements os_store uses on pg. */
void os_statements(cc_pg_t *pg);

/* What an applied webhook changed, for the order.* event. */
typedef struct {
    int applied;               /* 1 when the order was written */
    char order_number[65], status[16], previous[16];
    long long total_minor, version;
    char currency[4];
} os_change_t;

/* Applies one verified event (JSON text) from platform in one transaction.
 * Returns an HTTP status (200, 400, 422, 503) and writes a JSON reply body
 * into reply; fills *change. Nothing is stored unless it returns 200. */
int os_store(cc_pg_t *pg, const char *platform, const char *event_id, const char *body, size_t len,
             char *reply, size_t cap, os_change_t *change);

#endif
