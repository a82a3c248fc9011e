/* os_webhook: Standard Webhooks verification (libsodium) and storage. */
#include "os_webhook.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
os_verify(const char *secret, const char *id, const char *timestamp, const char *body, size_t len,
          const char *signature, int64_t now_s, const char **why)
{
    if (!id || !*id || !timestamp || !signature) { *why = "webhook-id, webhook-timestamp and webhook-signature are required"; return 401; }
    char *end;
    long long ts = strtoll(timestamp, &end, 10);
    if (*end || end == timestamp) { *why = "webhook-timestamp is not a number"; return 401; }
    if (ts < now_s - OS_REPLAY_WINDOW_S || ts > now_s + OS_REPLAY_WINDOW_S) {
        *why = "webhook-timestamp outside the 5 minute replay window";
        return 401;
    }
    const char *b64 = strncmp(secret, "whsec_", 6) == 0 ? secret + 6 : secret;
    unsigned char key[256];
    size_t keylen = 0;
    if (sodium_base642bin(key, sizeof key, b64, strlen(b64), NULL, &keylen, NULL, sodium_base64_VARIANT_ORIGINAL)) {
        *why = "platform secret unusable";
        return 401;
    }
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&st, key, keylen);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) id, strlen(id));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) ".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) timestamp, strlen(timestamp));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) ".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) body, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(key, sizeof key);
    char expected[sodium_base64_ENCODED_LEN(crypto_auth_hmacsha256_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(expected, sizeof expected, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
    size_t elen = strlen(expected);
    /* Several signatures may be listed, space-separated ("v1,<sig> v1,<sig2>"). */
    int ok = 0;
    for (const char *p = signature; *p;) {
        while (*p == ' ') p++;
        size_t n = strcspn(p, " ");
        if (n == elen + 3 && strncmp(p, "v1,", 3) == 0 && sodium_memcmp(p + 3, expected, elen) == 0) ok = 1;
        p += n;
    }
    if (!ok) { *why = "signature does not match"; return 401; }
    return 0;
}

static const struct { const char *name, *sql; } s_stmts[] = {
    { "os_event", "INSERT INTO commerce.webhook_events (platform, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1" },
    { "os_customer", "INSERT INTO commerce.customers (platform, external_id, name, phone, email) VALUES ($1, $2, $3, $4, $5)"
                     " ON CONFLICT (platform, external_id) DO UPDATE SET name = $3, phone = $4, email = $5 RETURNING id" },
    { "os_order_get", "SELECT status, version FROM commerce.orders WHERE order_number = $1 FOR UPDATE" },
    { "os_transition", "SELECT 1 FROM commerce.status_transitions WHERE from_status = $1 AND to_status = $2" },
    { "os_order_put", "INSERT INTO commerce.orders (order_number, platform, customer_id, status, total_minor, currency, version)"
                      " VALUES ($1, $2, $3::bigint, $4, $5::bigint, $6, $7::bigint) ON CONFLICT (order_number) DO UPDATE"
                      " SET customer_id = $3::bigint, status = $4, total_minor = $5::bigint, currency = $6, version = $7::bigint,"
                      " updated_at = now()" },
    { "os_items_del", "DELETE FROM commerce.order_items WHERE order_number = $1" },
    { "os_item", "INSERT INTO commerce.order_items (order_number, line, sku, name, quantity, unit_minor)"
                 " VALUES ($1, $2::int, $3, $4, $5::int, $6::bigint)" },
    { "os_audit", "INSERT INTO commerce.order_audit (order_number, from_status, to_status, by_whom, source)"
                  " VALUES ($1, $2, $3, $4, $5)" },
};

void
os_statements(cc_pg_t *pg)
{
    for (size_t i = 0; i < sizeof s_stmts / sizeof *s_stmts; i++) cc_pg_statement(pg, s_stmts[i].name, s_stmts[i].sql);
}

static const char *s_statuses[] = { "ordered", "reviewed", "shipped", "delivered", "settled", "returned",
                                    "exchanged", "cancelled", NULL };

static int
s_reply(char *reply, size_t cap, int status, const char *key, const char *text)
{
    json_t *j = json_pack("{s:s}", key, text);
    char *t = json_dumps(j, JSON_COMPACT);
    snprintf(reply, cap, "%s", t);
    free(t);
    json_decref(j);
    return status;
}

/* A string field of 1..max characters, or NULL. */
static const char *
s_str(json_t *obj, const char *key, size_t max, bool required)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return required ? NULL : "";
    const char *s = json_string_value(v);
    if (!s || (required && !*s) || strlen(s) > max) return NULL;
    return s;
}

int
os_store(cc_pg_t *pg, const char *platform, const char *event_id, const char *body, size_t len,
         char *reply, size_t cap, os_change_t *change)
{
    memset(change, 0, sizeof *change);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root) {
        char why[256];
        snprintf(why, sizeof why, "malformed JSON at line %d: %s", jerr.line, jerr.text);
        return s_reply(reply, cap, 400, "error", why);
    }
    int status = 400;
    const char *why = NULL;
    json_t *data = json_object_get(root, "data");
    json_t *cust = json_object_get(data, "customer"), *items = json_object_get(data, "items");
    const char *type = s_str(root, "type", 64, true);
    const char *number = s_str(data, "order_number", 64, true), *st = s_str(data, "status", 16, true);
    const char *currency = s_str(data, "currency", 3, true);
    json_t *total = json_object_get(data, "total"), *version = json_object_get(data, "version");
    bool known = false;
    for (int i = 0; st && s_statuses[i]; i++) known |= strcmp(st, s_statuses[i]) == 0;
    if (!type || (strcmp(type, "order.created") != 0 && strcmp(type, "order.updated") != 0)) why = "type must be order.created or order.updated";
    else if (!number) why = "data.order_number must be 1-64 characters";
    else if (!known) why = "data.status is not a known status";
    else if (!currency || strlen(currency) != 3) why = "data.currency must be a 3-letter code";
    else if (!json_is_integer(total) || json_integer_value(total) < 0 || json_integer_value(total) > 1000000000000LL)
        why = "data.total must be an amount in minor units, 0 to 10^12";
    else if (!json_is_integer(version) || json_integer_value(version) < 0) why = "data.version must be a non-negative integer";
    else if (!json_is_object(cust) || !s_str(cust, "id", 64, true) || !s_str(cust, "name", 200, false)
             || !s_str(cust, "phone", 32, false) || !s_str(cust, "email", 200, false))
        why = "data.customer needs an id (and name, phone, email within their lengths)";
    else if (!json_is_array(items) || json_array_size(items) == 0 || json_array_size(items) > 500)
        why = "data.items must list 1 to 500 items";
    for (size_t i = 0; !why && i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i), *q = json_object_get(it, "quantity"), *p = json_object_get(it, "unit_price");
        if (!s_str(it, "sku", 64, true) || !s_str(it, "name", 200, false) || !json_is_integer(q)
            || json_integer_value(q) < 1 || json_integer_value(q) > 100000 || !json_is_integer(p)
            || json_integer_value(p) < 0 || json_integer_value(p) > 1000000000000LL)
            why = "each item needs a sku, a quantity of 1 to 100000 and a unit_price in minor units";
    }
    if (why) {
        json_decref(root);
        return s_reply(reply, cap, 400, "error", why);
    }

    PGresult *res = NULL;
    char buf[6][32];
    if (cc_pg_begin(pg)) goto unavailable;
    const char *ev[] = { platform, event_id };
    if (cc_pg_exec(pg, "os_event", 2, ev, &res)) goto failed;
    if (PQntuples(res) == 0) {   /* seen before: acknowledged, not applied again */
        PQclear(res);
        cc_pg_commit(pg);
        json_decref(root);
        return s_reply(reply, cap, 200, "result", "duplicate");
    }
    PQclear(res);
    const char *cp[] = { platform, s_str(cust, "id", 64, true), s_str(cust, "name", 200, false),
                         s_str(cust, "phone", 32, false), s_str(cust, "email", 200, false) };
    if (cc_pg_exec(pg, "os_customer", 5, cp, &res)) goto failed;
    char customer_id[32];
    snprintf(customer_id, sizeof customer_id, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    const char *gp[] = { number };
    if (cc_pg_exec(pg, "os_order_get", 1, gp, &res)) goto failed;
    char old_status[16] = "";
    if (PQntuples(res) == 1) {
        snprintf(old_status, sizeof old_status, "%s", PQgetvalue(res, 0, 0));
        long long old_version = atoll(PQgetvalue(res, 0, 1));
        PQclear(res);
        if (json_integer_value(version) <= old_version) {
            /* An older update arriving late: recorded as received, not applied. */
            cc_pg_commit(pg);
            json_decref(root);
            return s_reply(reply, cap, 200, "result", "stale");
        }
        if (strcmp(old_status, st) != 0) {
            const char *tp[] = { old_status, st };
            if (cc_pg_exec(pg, "os_transition", 2, tp, &res)) goto failed;
            int allowed = PQntuples(res);
            PQclear(res);
            if (!allowed) {
                cc_pg_rollback(pg);
                char msg[96];
                snprintf(msg, sizeof msg, "status %s -> %s is not allowed", old_status, st);
                json_decref(root);
                return s_reply(reply, cap, 422, "error", msg);
            }
        }
    } else {
        PQclear(res);
    }
    snprintf(buf[0], sizeof buf[0], "%lld", (long long) json_integer_value(total));
    snprintf(buf[1], sizeof buf[1], "%lld", (long long) json_integer_value(version));
    const char *op[] = { number, platform, customer_id, st, buf[0], currency, buf[1] };
    if (cc_pg_exec(pg, "os_order_put", 7, op, NULL) || cc_pg_exec(pg, "os_items_del", 1, gp, NULL)) goto failed;
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        snprintf(buf[2], sizeof buf[2], "%zu", i + 1);
        snprintf(buf[3], sizeof buf[3], "%lld", (long long) json_integer_value(json_object_get(it, "quantity")));
        snprintf(buf[4], sizeof buf[4], "%lld", (long long) json_integer_value(json_object_get(it, "unit_price")));
        const char *ip[] = { number, buf[2], s_str(it, "sku", 64, true), s_str(it, "name", 200, false), buf[3], buf[4] };
        if (cc_pg_exec(pg, "os_item", 6, ip, NULL)) goto failed;
    }
    if (strcmp(old_status, st) != 0) {
        const char *ap[] = { number, old_status[0] ? old_status : NULL, st, platform, "webhook" };
        if (cc_pg_exec(pg, "os_audit", 5, ap, NULL)) goto failed;
    }
    if (cc_pg_commit(pg)) goto unavailable;
    change->applied = 1;
    snprintf(change->order_number, sizeof change->order_number, "%s", number);
    snprintf(change->status, sizeof change->status, "%s", st);
    snprintf(change->previous, sizeof change->previous, "%s", old_status);
    snprintf(change->currency, sizeof change->currency, "%s", currency);
    change->total_minor = (long long) json_integer_value(total);
    change->version = (long long) json_integer_value(version);
    json_decref(root);
    status = 200;
    return s_reply(reply, cap, status, "result", "applied");
failed:
    if (strcmp(cc_pg_sqlstate(pg), "23514") == 0 || strcmp(cc_pg_sqlstate(pg), "22001") == 0) {
        cc_pg_rollback(pg);
        json_decref(root);
        return s_reply(reply, cap, 400, "error", "a value is out of range");
    }
    cc_pg_rollback(pg);
unavailable:
    CC_ERROR("webhook not stored", "platform=%s event_id=%s error=\"%s\"", platform, event_id, cc_pg_error(pg));
    json_decref(root);
    return s_reply(reply, cap, 503, "error", "storage unavailable; retry later");
}
