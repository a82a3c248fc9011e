/* os_webhook: what every dialect shares: signatures (Standard Webhooks, and
 * the body HMAC of Shopify and WooCommerce), the one model events are mapped
 * to, validated field by field from tables, and decimal amounts. */
#ifndef OS_WEBHOOK_H
#define OS_WEBHOOK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "order.pb-c.h"

#define OS_REPLAY_WINDOW_S 300
/* A platform secret shorter than this (empty, "whsec_") verifies nothing:
 * every webhook signed with it is refused with 401. */
#define OS_MIN_SECRET_BYTES 16

/* Room for a "v1,<base64>" signature. */
#define OS_SIGNATURE_MAX 64

/* Writes the Standard Webhooks signature "v1,<base64 HMAC-SHA256 of
 * id.timestamp.body>" into out, keyed with secret ("whsec_<base64>", or any
 * other text used as its bytes). Returns 0, or -1 when the secret is not
 * usable (bad base64; with strict, also under OS_MIN_SECRET_BYTES). Used to
 * check what arrives (os_verify) and to sign what is pushed (os_outbox). */
int os_sign(const char *secret, const char *id, const char *timestamp, const char *body, size_t len, char *out,
            size_t cap, bool strict);

/* Checks webhook-signature ("v1,<base64> ...") against the HMAC-SHA256 of
 * "id.timestamp.body" with secret ("whsec_<base64>", or any other text used
 * as its bytes), in constant time, and
 * the timestamp against now_s within the replay window. Returns 0, or 401
 * with *why set. The secret is never logged. */
int os_verify(const char *secret, const char *id, const char *timestamp, const char *body, size_t len,
              const char *signature, int64_t now_s, const char **why);

/* Checks signature (base64 of the HMAC-SHA256 of body keyed with the secret's
 * bytes, as Shopify and WooCommerce send it) in constant time. Returns 0, or
 * 401 with *why set. */
int os_verify_body(const char *secret, const char *body, size_t len, const char *signature, const char **why);

/* The model's kinds: order, customer, product, stock, payment, shipment.
 * os_check takes one more, "products" ({"id", "products": [product...]}),
 * that dialects map a product with several variants to. */
extern const char *const os_kinds[];

/* Validates data as an event of kind (fields, types, lengths, bounds; the
 * shapes are in docs/order-sync-openapi.yaml). Returns true, or false with a
 * reason naming the field written into why. */
bool os_check(const char *kind, json_t *data, char *why, size_t cap);

/* The top-level fields of kind's data as os_check takes them (name, and
 * whether it is required), up to cap; returns how many. For tests that hold
 * the API description to the code. */
typedef struct { const char *name; bool required; } os_field_info_t;
size_t os_fields(const char *kind, os_field_info_t *out, size_t cap);

/* The kind a Standard Webhooks type ("order.updated", "stock.changed"...)
 * carries, or NULL when the type is not one we take. */
const char *os_standard_kind(const char *type);

/* Builds {"kind", "platform", "event_id", "data"} (data's reference is
 * taken; event_id NULL: not de-duplicated). */
json_t *os_event(const char *kind, const char *platform, const char *event_id, json_t *data);

/* A decimal amount text ("19.99", "-0.5" refused) in minor units of currency
 * (2 decimals unless the ISO 4217 exponent is 0 or 3), exactly, no floats.
 * Returns true with *minor, false when malformed, negative, over 10^12 minor
 * units or finer than the currency allows. */
bool os_amount_minor(const char *text, const char *currency, long long *minor);

/* minor units of currency as decimal text ("1999" USD -> "19.99") in buf. */
void os_amount_text(long long minor, const char *currency, char *buf, size_t cap);

Cc__OrderStatus os_order_status(const char *name);

/* The shop's own number of our order_number on platform, as
 * commerce.new_order_number (migration 0020) makes ours: "1001@beta" on beta
 * is beta's 1001, any other is the shop's number itself. Written into buf
 * (cap bytes); returns buf. */
char *os_platform_number(const char *order_number, const char *platform, char *buf, size_t cap);

#endif
