/* os_dialects: the payload dialects platforms send, mapped to the one model
 * (os_webhook's kinds and fields): our own (Standard Webhooks), Shopify's
 * REST order and fulfillment JSON, and WooCommerce's REST v3 JSON. */
#ifndef OS_DIALECTS_H
#define OS_DIALECTS_H

#include <jansson.h>
#include <stddef.h>

/* Orders mapped from Shopify or WooCommerce carry "status_derived": true (the
 * status is ours, worked out from theirs), which commerce.apply_order takes
 * as leave to keep the stored status when the machine cannot reach it. */
/* Maps body (a dialect's JSON; topic: the Shopify or WooCommerce topic
 * header, NULL for the standard dialect) to *kind and *data (the caller's;
 * to be checked with os_check). Returns 200, or 400 with why written. */
int os_dialect_map(const char *dialect, const char *topic, const char *body, size_t len, const char **kind,
                   json_t **data, char *why, size_t cap);
/* The same for a shop selling in currency (used where a payload does not
 * name its currency: WooCommerce products); os_dialect_map assumes USD. */
int os_dialect_map_shop(const char *dialect, const char *topic, const char *currency, const char *body, size_t len,
                        const char **kind, json_t **data, char *why, size_t cap);

/* An ISO 8601 time ("2026-12-01T10:00:00-05:00", fractions and "Z" allowed;
 * no zone: UTC) as microseconds since the epoch, or -1 when malformed. */
long long os_iso_us(const char *text);

#endif
