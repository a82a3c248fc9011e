/* os_webhook: signatures (libsodium), the model's validation tables, amounts. */
#include "os_webhook.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
os_sign(const char *secret, const char *id, const char *timestamp, const char *body, size_t len, char *out, size_t cap,
        bool strict)
{
    /* "whsec_<base64>" is the Standard Webhooks form; any other secret (a
     * Shopify or WooCommerce one, for the bulk API) is used as its bytes. */
    unsigned char key[256];
    size_t keylen = 0;
    if (strncmp(secret, "whsec_", 6) != 0) {
        keylen = strlen(secret) < sizeof key ? strlen(secret) : sizeof key;
        memcpy(key, secret, keylen);
    } else if (sodium_base642bin(key, sizeof key, secret + 6, strlen(secret + 6), NULL, &keylen, NULL,
                                 sodium_base64_VARIANT_ORIGINAL)) {
        return -1;
    }
    if (strict && keylen < OS_MIN_SECRET_BYTES) {   /* an empty or short key signs for anyone */
        sodium_memzero(key, sizeof key);
        return -1;
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
    char b64[sodium_base64_ENCODED_LEN(crypto_auth_hmacsha256_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(b64, sizeof b64, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
    snprintf(out, cap, "v1,%s", b64);
    return 0;
}

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
    char expected[OS_SIGNATURE_MAX];
    if (os_sign(secret, id, timestamp, body, len, expected, sizeof expected, true)) {
        *why = "platform secret unusable";
        return 401;
    }
    size_t elen = strlen(expected);
    /* Several signatures may be listed, space-separated ("v1,<sig> v1,<sig2>"). */
    int ok = 0;
    for (const char *p = signature; *p;) {
        while (*p == ' ') p++;
        size_t n = strcspn(p, " ");
        if (n == elen && sodium_memcmp(p, expected, elen) == 0) ok = 1;
        p += n;
    }
    if (!ok) { *why = "signature does not match"; return 401; }
    return 0;
}


int
os_verify_body(const char *secret, const char *body, size_t len, const char *signature, const char **why)
{
    if (!signature || !*signature) { *why = "signature header missing"; return 401; }
    if (strlen(secret) < OS_MIN_SECRET_BYTES) { *why = "platform secret unusable"; return 401; }
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *) secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) body, len);
    crypto_auth_hmacsha256_final(&st, mac);
    char expected[sodium_base64_ENCODED_LEN(crypto_auth_hmacsha256_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(expected, sizeof expected, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
    size_t elen = strlen(expected);
    if (strlen(signature) != elen || sodium_memcmp(signature, expected, elen) != 0) {
        *why = "signature does not match";
        return 401;
    }
    return 0;
}

/* ------------------------------------------------------------ the model */

typedef enum { F_STR, F_INT, F_OBJ, F_ARR, F_STATUS } s_type_t;

typedef struct s_field {
    const char *key;
    s_type_t type;
    long long min, max;              /* F_STR: length; F_INT: value; F_ARR: count */
    bool required;
    const struct s_field *items;     /* F_ARR: the fields of each element; F_OBJ: of the object (NULL: any) */
} s_field_t;

#define MONEY_MAX 1000000000000LL
#define VERSION_MAX 9223372036854775807LL

static const char *const s_statuses[] = { "ordered", "reviewed", "shipped", "delivered", "settled", "returned",
                                          "exchanged", "cancelled", NULL };

static const s_field_t s_item[] = {
    { "sku", F_STR, 1, 64, true, NULL },
    { "name", F_STR, 0, 200, false, NULL },
    { "quantity", F_INT, 1, 100000, true, NULL },
    { "unit_price", F_INT, 0, MONEY_MAX, true, NULL },
    { NULL, 0, 0, 0, false, NULL }
};

static const s_field_t s_phone[] = {
    { "phone", F_STR, 1, 32, true, NULL },
    { "kind", F_STR, 1, 16, false, NULL },
    { NULL, 0, 0, 0, false, NULL }
};

static const s_field_t s_address[] = {
    { "kind", F_STR, 1, 16, false, NULL },
    { "name", F_STR, 0, 200, false, NULL },
    { "phone", F_STR, 0, 32, false, NULL },
    { "line1", F_STR, 0, 300, false, NULL },
    { "line2", F_STR, 0, 300, false, NULL },
    { "city", F_STR, 0, 100, false, NULL },
    { "province", F_STR, 0, 100, false, NULL },
    { "postal_code", F_STR, 0, 20, false, NULL },
    { "country", F_STR, 0, 2, false, NULL },
    { NULL, 0, 0, 0, false, NULL }
};

static const s_field_t s_customer[] = {
    { "id", F_STR, 1, 64, true, NULL },
    { "name", F_STR, 0, 200, false, NULL },
    { "phone", F_STR, 0, 32, false, NULL },
    { "email", F_STR, 0, 200, false, NULL },
    { "category", F_STR, 1, 32, false, NULL },
    { "birthday", F_STR, 0, 10, false, NULL },
    { "gender", F_STR, 0, 8, false, NULL },
    { "language", F_STR, 0, 16, false, NULL },
    { "note", F_STR, 0, 2000, false, NULL },
    { "custom_fields", F_OBJ, 0, 0, false, NULL },
    { "phones", F_ARR, 0, 20, false, s_phone },
    { "addresses", F_ARR, 0, 20, false, s_address },
    { "version", F_INT, 0, VERSION_MAX, false, NULL },
    { NULL, 0, 0, 0, false, NULL }
};

static const s_field_t s_customer_event[] = {
    { "id", F_STR, 1, 64, true, NULL },
    { "version", F_INT, 0, VERSION_MAX, true, NULL },
    { NULL, 0, 0, 0, false, s_customer }     /* and the rest of a customer */
};

static const s_field_t s_track[] = {
    { "at", F_STR, 10, 40, true, NULL },
    { "status", F_STR, 1, 32, true, NULL },
    { "location", F_STR, 0, 200, false, NULL },
    { "description", F_STR, 0, 500, false, NULL },
    { NULL, 0, 0, 0, false, NULL }
};

static const s_field_t s_parcel_item[] = {
    { "line", F_INT, 1, 500, true, NULL },
    { "quantity", F_INT, 1, 100000, true, NULL },
    { NULL, 0, 0, 0, false, NULL }
};

static const s_field_t s_shipment[] = {
    { "id", F_STR, 1, 64, true, NULL },
    { "order_number", F_STR, 1, 64, false, NULL },
    { "order_external_id", F_STR, 1, 64, false, NULL },
    { "carrier", F_STR, 0, 64, false, NULL },
    { "tracking_number", F_STR, 0, 64, false, NULL },
    { "fee", F_INT, 0, MONEY_MAX, false, NULL },
    { "currency", F_STR, 3, 3, false, NULL },
    { "status", F_STR, 1, 32, false, NULL },
    { "version", F_INT, 0, VERSION_MAX, false, NULL },
    { "events", F_ARR, 0, 200, false, s_track },
    { "items", F_ARR, 0, 500, false, s_parcel_item },
    { NULL, 0, 0, 0, false, NULL }
};

static const s_field_t s_order[] = {
    { "order_number", F_STR, 1, 64, true, NULL },
    { "status", F_STATUS, 0, 0, true, NULL },
    { "currency", F_STR, 3, 3, true, NULL },
    { "total", F_INT, 0, MONEY_MAX, true, NULL },
    { "version", F_INT, 0, VERSION_MAX, true, NULL },
    { "external_id", F_STR, 1, 64, false, NULL },
    { "financial_status", F_STR, 0, 32, false, NULL },
    { "fulfillment_status", F_STR, 0, 32, false, NULL },
    { "note", F_STR, 0, 2000, false, NULL },
    { "shipping_address", F_OBJ, 0, 0, false, s_address },
    { "customer", F_OBJ, 0, 0, false, s_customer },
    { "items", F_ARR, 1, 500, true, s_item },
    { "shipments", F_ARR, 0, 50, false, s_shipment },
    { NULL, 0, 0, 0, false, NULL }
};

static const s_field_t s_product[] = {
    { "code", F_STR, 1, 64, true, NULL },
    { "name", F_STR, 1, 200, true, NULL },
    { "price", F_INT, 0, MONEY_MAX, true, NULL },
    { "currency", F_STR, 3, 3, true, NULL },
    { "version", F_INT, 0, VERSION_MAX, true, NULL },
    { "external_id", F_STR, 1, 64, false, NULL },
    { "description", F_STR, 0, 5000, false, NULL },
    { "category", F_STR, 0, 100, false, NULL },
    { "specification", F_OBJ, 0, 0, false, NULL },
    { "status", F_STR, 1, 16, false, NULL },
    { NULL, 0, 0, 0, false, NULL }
};

static const s_field_t s_stock[] = {
    { "product_code", F_STR, 1, 64, true, NULL },
    { "warehouse", F_STR, 1, 32, true, NULL },
    { "on_hand", F_INT, 0, 1000000000, true, NULL },
    { "version", F_INT, 0, VERSION_MAX, true, NULL },
    { NULL, 0, 0, 0, false, NULL }
};

static const s_field_t s_payment[] = {
    { "id", F_STR, 1, 64, true, NULL },
    { "order_number", F_STR, 1, 64, false, NULL },
    { "order_external_id", F_STR, 1, 64, false, NULL },
    { "method", F_STR, 1, 32, true, NULL },
    { "kind", F_STR, 1, 16, false, NULL },
    { "status", F_STR, 1, 16, false, NULL },
    { "amount", F_INT, 0, MONEY_MAX, true, NULL },
    { "currency", F_STR, 3, 3, true, NULL },
    { "reference", F_STR, 0, 128, false, NULL },
    { "paid_at", F_STR, 10, 40, false, NULL },
    { "version", F_INT, 0, VERSION_MAX, true, NULL },
    { NULL, 0, 0, 0, false, NULL }
};

/* Several products in one event (a Shopify product's variants): applied
 * together, each as a product event. */
static const s_field_t s_products[] = {
    { "id", F_STR, 1, 64, true, NULL },
    { "products", F_ARR, 1, 250, true, s_product },
    { NULL, 0, 0, 0, false, NULL }
};

const char *const os_kinds[] = { "order", "customer", "product", "stock", "payment", "shipment", NULL };

static const struct { const char *kind; const s_field_t *fields; bool needs_order; } s_models[] = {
    { "order", s_order, false }, { "customer", s_customer_event, false }, { "product", s_product, false },
    { "stock", s_stock, false }, { "payment", s_payment, true }, { "shipment", s_shipment, true },
    { "products", s_products, false },
};

static bool s_fields(json_t *obj, const s_field_t *spec, const char *path, char *why, size_t cap);

static bool
s_field(json_t *v, const s_field_t *f, const char *path, char *why, size_t cap)
{
    switch (f->type) {
    case F_STR: {
        const char *s = json_string_value(v);
        long long n = 0;   /* characters: jansson has checked the UTF-8 */
        for (const char *c = s; c && *c; c++) n += ((unsigned char) *c & 0xC0) != 0x80;
        if (!s || n < f->min || n > f->max) {
            snprintf(why, cap, "%s must be text of %lld to %lld characters", path, f->min, f->max);
            return false;
        }
        return true;
    }
    case F_INT:
        if (!json_is_integer(v) || json_integer_value(v) < f->min || json_integer_value(v) > f->max) {
            snprintf(why, cap, "%s must be an integer from %lld to %lld", path, f->min, f->max);
            return false;
        }
        return true;
    case F_STATUS:
        for (int i = 0; json_is_string(v) && s_statuses[i]; i++)
            if (strcmp(json_string_value(v), s_statuses[i]) == 0) return true;
        snprintf(why, cap, "%s must be one of ordered, reviewed, shipped, delivered, settled, returned, exchanged, "
                 "cancelled", path);
        return false;
    case F_OBJ:
        if (!json_is_object(v)) {
            snprintf(why, cap, "%s must be an object", path);
            return false;
        }
        return !f->items || s_fields(v, f->items, path, why, cap);
    case F_ARR:
        if (!json_is_array(v) || (long long) json_array_size(v) < f->min || (long long) json_array_size(v) > f->max) {
            snprintf(why, cap, "%s must list %lld to %lld entries", path, f->min, f->max);
            return false;
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
            char sub[160];
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            json_t *e = json_array_get(v, i);
            if (!json_is_object(e)) {
                snprintf(why, cap, "%s must be an object", sub);
                return false;
            }
            if (!s_fields(e, f->items, sub, why, cap)) return false;
        }
        return true;
    }
    return false;
}

static bool
s_fields(json_t *obj, const s_field_t *spec, const char *path, char *why, size_t cap)
{
    const s_field_t *f = spec;
    for (; f->key; f++) {
        char sub[160];
        snprintf(sub, sizeof sub, "%s.%s", path, f->key);
        json_t *v = json_object_get(obj, f->key);
        if (!v || json_is_null(v)) {
            if (f->required) {
                snprintf(why, cap, "%s is required", sub);
                return false;
            }
            if (v) json_object_del(obj, f->key);   /* null means left out */
            continue;
        }
        if (!s_field(v, f, sub, why, cap)) return false;
    }
    return !f->items || s_fields(obj, f->items, path, why, cap);   /* a spec's tail may extend another */
}

bool
os_check(const char *kind, json_t *data, char *why, size_t cap)
{
    for (size_t i = 0; i < sizeof s_models / sizeof *s_models; i++) {
        if (strcmp(kind, s_models[i].kind) != 0) continue;
        if (!json_is_object(data)) {
            snprintf(why, cap, "data must be an object");
            return false;
        }
        if (!s_fields(data, s_models[i].fields, "data", why, cap)) return false;
        if (s_models[i].needs_order && !json_object_get(data, "order_number") && !json_object_get(data, "order_external_id")) {
            snprintf(why, cap, "data.order_number or data.order_external_id is required");
            return false;
        }
        return true;
    }
    snprintf(why, cap, "unknown kind %s", kind);
    return false;
}

size_t
os_fields(const char *kind, os_field_info_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof s_models / sizeof *s_models; i++) {
        if (strcmp(kind, s_models[i].kind) != 0) continue;
        for (const s_field_t *spec = s_models[i].fields; spec; ) {
            const s_field_t *f = spec;
            for (; f->key; f++) {
                bool seen = false;
                for (size_t k = 0; k < n; k++) seen |= strcmp(out[k].name, f->key) == 0;
                if (seen || n == cap) continue;
                out[n].name = f->key;
                out[n++].required = f->required;
            }
            spec = f->items;   /* a spec's tail may extend another */
        }
    }
    return n;
}

static const struct { const char *type, *kind; } s_types[] = {
    { "order.created", "order" }, { "order.updated", "order" },
    { "customer.created", "customer" }, { "customer.updated", "customer" },
    { "product.created", "product" }, { "product.updated", "product" },
    { "stock.changed", "stock" }, { "stock.updated", "stock" },
    { "payment.created", "payment" }, { "payment.updated", "payment" },
    { "shipment.created", "shipment" }, { "shipment.updated", "shipment" },
};

const char *
os_standard_kind(const char *type)
{
    for (size_t i = 0; type && i < sizeof s_types / sizeof *s_types; i++)
        if (strcmp(type, s_types[i].type) == 0) return s_types[i].kind;
    return NULL;
}

json_t *
os_event(const char *kind, const char *platform, const char *event_id, json_t *data)
{
    return json_pack("{s:s, s:s, s:s?, s:o}", "kind", kind, "platform", platform, "event_id", event_id, "data", data);
}

/* ISO 4217 currencies whose minor unit is not the cent. */
static const struct { const char *code; int exponent; } s_exponents[] = {
    { "BIF", 0 }, { "CLP", 0 }, { "DJF", 0 }, { "GNF", 0 }, { "ISK", 0 }, { "JPY", 0 }, { "KMF", 0 }, { "KRW", 0 },
    { "PYG", 0 }, { "RWF", 0 }, { "UGX", 0 }, { "UYI", 0 }, { "VND", 0 }, { "VUV", 0 }, { "XAF", 0 }, { "XOF", 0 },
    { "XPF", 0 }, { "BHD", 3 }, { "IQD", 3 }, { "JOD", 3 }, { "KWD", 3 }, { "LYD", 3 }, { "OMR", 3 }, { "TND", 3 },
};

static int
s_exponent(const char *currency)
{
    for (size_t i = 0; i < sizeof s_exponents / sizeof *s_exponents; i++)
        if (strcmp(currency, s_exponents[i].code) == 0) return s_exponents[i].exponent;
    return 2;
}

void
os_amount_text(long long minor, const char *currency, char *buf, size_t cap)
{
    int e = s_exponent(currency);
    long long scale = e == 0 ? 1 : e == 3 ? 1000 : 100;
    if (e == 0) snprintf(buf, cap, "%lld", minor);
    else snprintf(buf, cap, "%lld.%0*lld", minor / scale, e, minor % scale);
}

bool
os_amount_minor(const char *text, const char *currency, long long *minor)
{
    if (!text || !currency) return false;
    int exponent = s_exponent(currency);
    const char *p = text;
    long long units = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (digits >= 13) return false;
        units = units * 10 + (*p - '0');
    }
    if (digits == 0) return false;
    long long frac = 0;
    int fdigits = 0;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            if (fdigits < exponent) {
                frac = frac * 10 + (*p - '0');
                fdigits++;
            } else if (*p != '0') {
                return false;                    /* finer than the currency's minor unit */
            }
        }
    }
    if (*p) return false;
    for (; fdigits < exponent; fdigits++) frac *= 10;
    long long scale = 1;
    for (int i = 0; i < exponent; i++) scale *= 10;
    long long v = units * scale + frac;
    if (v > MONEY_MAX) return false;
    *minor = v;
    return true;
}

static const char *const s_status_names[] = { "", "ordered", "reviewed", "shipped", "delivered", "settled", "returned",
                                               "exchanged", "cancelled" };

Cc__OrderStatus
os_order_status(const char *name)
{
    for (int k = 1; k < 9; k++) if (strcmp(name, s_status_names[k]) == 0) return (Cc__OrderStatus) k;
    return CC__ORDER_STATUS__ORDER_UNKNOWN;
}

char *
os_platform_number(const char *order_number, const char *platform, char *buf, size_t cap)
{
    size_t n = strlen(order_number), pl = strlen(platform);
    if (pl && n > pl + 1 && order_number[n - pl - 1] == '@' && strcmp(order_number + n - pl, platform) == 0)
        n -= pl + 1;
    snprintf(buf, cap, "%.*s", (int) n, order_number);
    return buf;
}
