/* os_dialects: standard, Shopify and WooCommerce payloads to the model. */
#define _GNU_SOURCE
#include "os_dialects.h"
#include "os_webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

long long
os_iso_us(const char *text)
{
    if (!text) return -1;
    struct tm tm = { 0 };
    const char *p = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p) return -1;
    long long us = 0, scale = 100000;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            us += (*p - '0') * scale;
            scale /= 10;
        }
    }
    long offset = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, hh, mm, n = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &hh, &mm, &n) != 2 || n != 5) return -1;
        offset = sign * (hh * 3600L + mm * 60L);
        p += 6;
    }
    if (*p) return -1;
    time_t t = timegm(&tm);
    return ((long long) t - offset) * 1000000LL + us;
}

static int
s_fail(char *why, size_t cap, const char *text)
{
    snprintf(why, cap, "%s", text);
    return 400;
}

/* A JSON string, or a JSON integer as text, or NULL. Integers go into buf. */
static const char *
s_text(json_t *v, char *buf, size_t cap)
{
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, cap, "%lld", (long long) json_integer_value(v));
        return buf;
    }
    return NULL;
}

static const char *
s_str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* Sets key to the string value when there is one (an empty string stays out). */
static void
s_set(json_t *obj, const char *key, const char *value)
{
    if (value && *value) json_object_set_new(obj, key, json_string(value));
}

/* "first last" of a name pair, trimmed. */
static void
s_full_name(json_t *o, const char *first_key, const char *last_key, char *buf, size_t cap)
{
    const char *f = s_str(o, first_key), *l = s_str(o, last_key);
    snprintf(buf, cap, "%s%s%s", f ? f : "", f && *f && l && *l ? " " : "", l ? l : "");
}

/* --------------------------------------------------------- the standard */

static int
s_standard(const char *body, size_t len, const char **kind, json_t **data, char *why, size_t cap)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root) {
        snprintf(why, cap, "malformed JSON at line %d: %s", jerr.line, jerr.text);
        return 400;
    }
    const char *type = s_str(root, "type");
    *kind = os_standard_kind(type);
    json_t *d = json_object_get(root, "data");
    int status = 200;
    if (!*kind) status = s_fail(why, cap, "type must be one of order.created, order.updated, customer.updated, "
                                          "product.updated, stock.changed, payment.updated, shipment.updated");
    else if (!json_is_object(d)) status = s_fail(why, cap, "data must be an object");
    else {
        /* Our dialect names its statuses: a step the machine refuses is a 422. */
        json_object_del(d, "status_derived");
        *data = json_incref(d);
    }
    json_decref(root);
    return status;
}

/* ------------------------------------------------------------- Shopify */

/* Shopify's fulfillment shipment_status and status to our shipment status. */
static const char *
s_shopify_parcel_status(json_t *f)
{
    const char *st = s_str(f, "status"), *ss = s_str(f, "shipment_status");
    if (st && (strcmp(st, "cancelled") == 0 || strcmp(st, "error") == 0 || strcmp(st, "failure") == 0)) return "cancelled";
    if (ss) {
        if (strcmp(ss, "delivered") == 0) return "delivered";
        if (strcmp(ss, "out_for_delivery") == 0) return "out_for_delivery";
        if (strcmp(ss, "in_transit") == 0 || strcmp(ss, "attempted_delivery") == 0 || strcmp(ss, "ready_for_pickup") == 0)
            return "in_transit";
        if (strcmp(ss, "failure") == 0) return "failed";
    }
    return st && strcmp(st, "success") == 0 ? "in_transit" : "pending";
}

/* A Shopify fulfillment as a shipment; lines maps line_item ids to our line
 * numbers (NULL: items left out). */
static int
s_shopify_parcel(json_t *f, json_t *lines, const char *currency, json_t **out, char *why, size_t cap)
{
    char idbuf[32], obuf[32];
    const char *id = s_text(json_object_get(f, "id"), idbuf, sizeof idbuf);
    if (!id) return s_fail(why, cap, "fulfillment id is required");
    long long v = os_iso_us(s_str(f, "updated_at"));
    if (v < 0) v = os_iso_us(s_str(f, "created_at"));
    if (v < 0) return s_fail(why, cap, "fulfillment updated_at must be an ISO 8601 time");
    json_t *s = json_pack("{s:s, s:s, s:I}", "id", id, "status", s_shopify_parcel_status(f), "version", (json_int_t) v);
    s_set(s, "carrier", s_str(f, "tracking_company"));
    const char *tn = s_str(f, "tracking_number");
    if (!tn) tn = json_string_value(json_array_get(json_object_get(f, "tracking_numbers"), 0));
    s_set(s, "tracking_number", tn);
    if (currency) s_set(s, "currency", currency);
    const char *order = s_text(json_object_get(f, "order_id"), obuf, sizeof obuf);
    if (order) s_set(s, "order_external_id", order);
    if (lines) {
        json_t *items = json_array(), *li = json_object_get(f, "line_items");
        for (size_t i = 0; i < json_array_size(li); i++) {
            json_t *e = json_array_get(li, i);
            char b[32];
            const char *lid = s_text(json_object_get(e, "id"), b, sizeof b);
            json_t *line = lid ? json_object_get(lines, lid) : NULL;
            if (line) json_array_append_new(items, json_pack("{s:O, s:O*}", "line", line, "quantity", json_object_get(e, "quantity")));
        }
        json_object_set_new(s, "items", items);
    }
    *out = s;
    return 200;
}

/* A Shopify address (order shipping_address, customer addresses) as ours. */
static json_t *
s_shopify_address(json_t *sa)
{
    char full[256];
    s_full_name(sa, "first_name", "last_name", full, sizeof full);
    json_t *a = json_object();
    s_set(a, "name", s_str(sa, "name") ? s_str(sa, "name") : full);
    s_set(a, "phone", s_str(sa, "phone"));
    s_set(a, "line1", s_str(sa, "address1"));
    s_set(a, "line2", s_str(sa, "address2"));
    s_set(a, "city", s_str(sa, "city"));
    s_set(a, "province", s_str(sa, "province"));
    s_set(a, "postal_code", s_str(sa, "zip"));
    s_set(a, "country", s_str(sa, "country_code"));
    return a;
}

/* Shopify's customer JSON (customers/create, customers/update): the profile,
 * every address, and every number found on it. */
static int
s_shopify_customer(json_t *c, json_t **out, char *why, size_t cap)
{
    char cbuf[32], full[256];
    const char *id = s_text(json_object_get(c, "id"), cbuf, sizeof cbuf);
    if (!id) return s_fail(why, cap, "id is required");
    long long v = os_iso_us(s_str(c, "updated_at"));
    if (v < 0) return s_fail(why, cap, "updated_at must be an ISO 8601 time");
    s_full_name(c, "first_name", "last_name", full, sizeof full);
    json_t *d = json_pack("{s:s, s:I}", "id", id, "version", (json_int_t) v);
    s_set(d, "name", full);
    s_set(d, "email", s_str(c, "email"));
    s_set(d, "note", s_str(c, "note"));
    json_t *addrs = json_object_get(c, "addresses"), *ours = json_array(), *phones = json_array();
    const char *main_phone = s_str(c, "phone");
    if (!main_phone) main_phone = s_str(json_object_get(c, "default_address"), "phone");
    s_set(d, "phone", main_phone);
    if (main_phone && *main_phone) json_array_append_new(phones, json_pack("{s:s}", "phone", main_phone));
    for (size_t i = 0; i < json_array_size(addrs); i++) {
        json_t *sa = json_array_get(addrs, i), *a = s_shopify_address(sa);
        json_object_set_new(a, "is_default", json_boolean(json_is_true(json_object_get(sa, "default"))));
        json_array_append_new(ours, a);
        const char *ph = s_str(sa, "phone");
        bool seen = !ph || !*ph;
        for (size_t k = 0; !seen && k < json_array_size(phones); k++)
            seen = strcmp(json_string_value(json_object_get(json_array_get(phones, k), "phone")), ph) == 0;
        if (!seen) json_array_append_new(phones, json_pack("{s:s}", "phone", ph));
    }
    json_object_set_new(d, "addresses", ours);
    json_object_set_new(d, "phones", phones);
    *out = d;
    return 200;
}

/* Our status for a Shopify order: cancelled, refunded, fulfilled, delivered,
 * paid or just placed; an archived (closed) order that was shipped is settled. */
static const char *
s_shopify_status(json_t *o)
{
    const char *fin = s_str(o, "financial_status"), *ful = s_str(o, "fulfillment_status");
    bool fulfilled = ful && (strcmp(ful, "fulfilled") == 0 || strcmp(ful, "partial") == 0);
    if (!json_is_null(json_object_get(o, "cancelled_at")) && json_object_get(o, "cancelled_at")) return "cancelled";
    if (fin && strcmp(fin, "refunded") == 0) return fulfilled ? "returned" : "cancelled";
    if (fulfilled) {
        json_t *fs = json_object_get(o, "fulfillments");
        bool delivered = json_array_size(fs) > 0;
        for (size_t i = 0; i < json_array_size(fs); i++) {
            const char *ss = s_str(json_array_get(fs, i), "shipment_status");
            delivered &= ss && strcmp(ss, "delivered") == 0;
        }
        bool closed = json_is_string(json_object_get(o, "closed_at"));
        return closed && fin && strcmp(fin, "paid") == 0 ? "settled" : delivered ? "delivered" : "shipped";
    }
    if (fin && (strcmp(fin, "paid") == 0 || strcmp(fin, "partially_paid") == 0 || strcmp(fin, "partially_refunded") == 0))
        return "reviewed";
    return "ordered";
}

static int
s_shopify_order(json_t *o, json_t **out, char *why, size_t cap)
{
    char buf[64], num[80];
    const char *name = s_str(o, "name");
    if (name && *name == '#') name++;
    if (!name || !*name) name = s_text(json_object_get(o, "order_number"), buf, sizeof buf);
    if (!name) return s_fail(why, cap, "name (or order_number) is required");
    snprintf(num, sizeof num, "%s", name);
    const char *id = s_text(json_object_get(o, "id"), buf, sizeof buf);
    if (!id) return s_fail(why, cap, "id is required");
    const char *currency = s_str(o, "currency");
    if (!currency) return s_fail(why, cap, "currency is required");
    long long total;
    if (!os_amount_minor(s_str(o, "total_price"), currency, &total))
        return s_fail(why, cap, "total_price must be a decimal amount as a string, within the currency's minor unit");
    long long v = os_iso_us(s_str(o, "updated_at"));
    if (v < 0) return s_fail(why, cap, "updated_at must be an ISO 8601 time");
    json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "order_number", num, "external_id", id, "status",
                          s_shopify_status(o), "currency", currency, "total", (json_int_t) total, "version", (json_int_t) v);
    json_object_set_new(d, "status_derived", json_true());
    s_set(d, "financial_status", s_str(o, "financial_status"));
    s_set(d, "fulfillment_status", s_str(o, "fulfillment_status"));
    s_set(d, "note", s_str(o, "note"));
    json_t *sa = json_object_get(o, "shipping_address");
    if (json_is_object(sa)) json_object_set_new(d, "shipping_address", s_shopify_address(sa));
    json_t *c = json_object_get(o, "customer");
    if (json_is_object(c)) {
        char cbuf[32], full[256];
        const char *cid = s_text(json_object_get(c, "id"), cbuf, sizeof cbuf);
        if (cid) {
            s_full_name(c, "first_name", "last_name", full, sizeof full);
            const char *phone = s_str(c, "phone");
            if (!phone && json_is_object(sa)) phone = s_str(sa, "phone");
            if (!phone) phone = s_str(json_object_get(o, "billing_address"), "phone");
            if (!phone) phone = s_str(o, "phone");
            json_t *k = json_pack("{s:s}", "id", cid);
            s_set(k, "name", full);
            s_set(k, "phone", phone);
            s_set(k, "email", s_str(c, "email") ? s_str(c, "email") : s_str(o, "email"));
            json_object_set_new(d, "customer", k);
        }
    }
    json_t *li = json_object_get(o, "line_items"), *items = json_array(), *lines = json_object();
    json_object_set_new(d, "items", items);
    for (size_t i = 0; i < json_array_size(li); i++) {
        json_t *e = json_array_get(li, i);
        char sku[80], b[32], vb[32];
        const char *s = s_str(e, "sku"), *vid = s_text(json_object_get(e, "variant_id"), vb, sizeof vb);
        const char *lid = s_text(json_object_get(e, "id"), b, sizeof b);
        if (s && strlen(s) >= sizeof sku) {   /* cut, it could split a character: refused, never dropped */
            json_decref(d);
            json_decref(lines);
            snprintf(why, cap, "line_items[%zu].sku is longer than 64 characters", i);
            return 400;
        }
        if (s && *s) snprintf(sku, sizeof sku, "%s", s);
        else if (vid) snprintf(sku, sizeof sku, "variant-%s", vid);
        else snprintf(sku, sizeof sku, "item-%s", lid ? lid : "");
        long long price;
        if (!os_amount_minor(s_str(e, "price"), currency, &price)) {
            json_decref(d);
            json_decref(lines);
            snprintf(why, cap, "line_items[%zu].price must be a decimal amount as a string", i);
            return 400;
        }
        json_t *item = json_pack("{s:s, s:O*, s:I}", "sku", sku, "quantity", json_object_get(e, "quantity"),
                                 "unit_price", (json_int_t) price);
        s_set(item, "name", s_str(e, "name") ? s_str(e, "name") : s_str(e, "title"));
        json_array_append_new(items, item);
        if (lid) json_object_set_new(lines, lid, json_integer((json_int_t) i + 1));
    }
    json_t *fs = json_object_get(o, "fulfillments");
    if (json_array_size(fs)) {
        json_t *ships = json_array();
        json_object_set_new(d, "shipments", ships);
        for (size_t i = 0; i < json_array_size(fs); i++) {
            json_t *s = NULL;
            if (s_shopify_parcel(json_array_get(fs, i), lines, currency, &s, why, cap) != 200) {
                json_decref(d);
                json_decref(lines);
                return 400;
            }
            json_object_del(s, "order_external_id");
            json_array_append_new(ships, s);
        }
    }
    json_decref(lines);
    *out = d;
    return 200;
}

/* Shopify's product status to ours. */
static const char *
s_shopify_product_status(const char *st)
{
    if (st && strcmp(st, "draft") == 0) return "draft";
    if (st && strcmp(st, "archived") == 0) return "discontinued";
    return "active";
}

/* Shopify's product JSON (products/create, products/update): every variant a
 * product of ours, by SKU ("variant-<id>" without one, as order lines name
 * it), priced in the shop's currency (the JSON names none), its options
 * ("Size": "M") as the specification. */
static int
s_shopify_product(json_t *o, const char *currency, json_t **out, char *why, size_t cap)
{
    char ibuf[32];
    const char *id = s_text(json_object_get(o, "id"), ibuf, sizeof ibuf);
    if (!id) return s_fail(why, cap, "id is required");
    const char *title = s_str(o, "title");
    if (!title || !*title) return s_fail(why, cap, "title is required");
    long long pv = os_iso_us(s_str(o, "updated_at"));
    if (pv < 0) return s_fail(why, cap, "updated_at must be an ISO 8601 time");
    json_t *variants = json_object_get(o, "variants"), *options = json_object_get(o, "options");
    if (!json_is_array(variants) || json_array_size(variants) == 0)
        return s_fail(why, cap, "variants must list at least one variant");
    json_t *list = json_array();
    for (size_t i = 0; i < json_array_size(variants); i++) {
        json_t *v = json_array_get(variants, i);
        char vbuf[32], code[80], name[420];
        const char *vid = s_text(json_object_get(v, "id"), vbuf, sizeof vbuf), *sku = s_str(v, "sku");
        long long price, vv = os_iso_us(s_str(v, "updated_at"));
        if (!vid || !os_amount_minor(s_str(v, "price"), currency, &price)) {
            json_decref(list);
            snprintf(why, cap, "variants[%zu] needs an id and a price (a decimal amount as a string)", i);
            return 400;
        }
        if (sku && *sku) snprintf(code, sizeof code, "%s", sku);
        else snprintf(code, sizeof code, "variant-%s", vid);
        const char *vt = s_str(v, "title");
        if (vt && *vt && strcmp(vt, "Default Title") != 0) snprintf(name, sizeof name, "%s - %s", title, vt);
        else snprintf(name, sizeof name, "%s", title);
        json_t *spec = json_object();
        for (size_t k = 0; k < 3 && k < json_array_size(options); k++) {
            char key[16];
            snprintf(key, sizeof key, "option%zu", k + 1);
            const char *oname = s_str(json_array_get(options, k), "name"), *value = s_str(v, key);
            if (oname && value && strcmp(oname, "Title") != 0) json_object_set_new(spec, oname, json_string(value));
        }
        json_object_set_new(spec, "product_id", json_string(id));
        json_t *p = json_pack("{s:s, s:s, s:s, s:I, s:s, s:I, s:s, s:o}", "code", code, "external_id", vid, "name", name,
                              "price", (json_int_t) price, "currency", currency, "version",
                              (json_int_t) (vv > pv ? vv : pv), "status", s_shopify_product_status(s_str(o, "status")),
                              "specification", spec);
        s_set(p, "category", s_str(o, "product_type"));
        json_array_append_new(list, p);
    }
    *out = json_pack("{s:s, s:o}", "id", id, "products", list);
    return 200;
}

static int
s_shopify(const char *topic, const char *currency, const char *body, size_t len, const char **kind, json_t **data,
          char *why, size_t cap)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root) {
        snprintf(why, cap, "malformed JSON at line %d: %s", jerr.line, jerr.text);
        return 400;
    }
    int status;
    if (!json_is_object(root)) {
        status = s_fail(why, cap, "the body must be a JSON object");
    } else if (strcmp(topic, "orders/create") == 0 || strcmp(topic, "orders/updated") == 0
               || strcmp(topic, "orders/paid") == 0 || strcmp(topic, "orders/cancelled") == 0
               || strcmp(topic, "orders/fulfilled") == 0 || strcmp(topic, "orders/partially_fulfilled") == 0) {
        *kind = "order";
        status = s_shopify_order(root, data, why, cap);
    } else if (strcmp(topic, "customers/create") == 0 || strcmp(topic, "customers/update") == 0) {
        *kind = "customer";
        status = s_shopify_customer(root, data, why, cap);
    } else if (strcmp(topic, "products/create") == 0 || strcmp(topic, "products/update") == 0) {
        *kind = "products";
        status = s_shopify_product(root, currency, data, why, cap);
    } else if (strcmp(topic, "fulfillments/create") == 0 || strcmp(topic, "fulfillments/update") == 0) {
        *kind = "shipment";
        status = s_shopify_parcel(root, NULL, NULL, data, why, cap);
        if (status == 200 && !json_object_get(*data, "order_external_id")) {
            json_decref(*data);
            *data = NULL;
            status = s_fail(why, cap, "order_id is required");
        }
    } else {
        snprintf(why, cap, "topic %.64s is not taken (orders/create, orders/updated, orders/paid, orders/cancelled, "
                 "fulfillments/create, customers/create, customers/update, products/create, products/update)", topic);
        status = 400;
    }
    json_decref(root);
    return status;
}

/* --------------------------------------------------------- WooCommerce */

/* WooCommerce's order status to ours. */
static const char *
s_woo_status(const char *st)
{
    static const struct { const char *woo, *ours; } map[] = {
        { "pending", "ordered" }, { "on-hold", "ordered" }, { "failed", "ordered" }, { "checkout-draft", "ordered" },
        { "processing", "reviewed" }, { "completed", "delivered" }, { "cancelled", "cancelled" },
        { "refunded", "returned" },
    };
    for (size_t i = 0; st && i < sizeof map / sizeof *map; i++)
        if (strcmp(st, map[i].woo) == 0) return map[i].ours;
    return NULL;
}

/* A WooCommerce time: date_modified_gmt is UTC without a zone. */
static long long
s_woo_version(json_t *o)
{
    long long v = os_iso_us(s_str(o, "date_modified_gmt"));
    return v >= 0 ? v : os_iso_us(s_str(o, "date_created_gmt"));
}

static int
s_woo_order(json_t *o, json_t **out, char *why, size_t cap)
{
    char ibuf[32], nbuf[80];
    const char *id = s_text(json_object_get(o, "id"), ibuf, sizeof ibuf);
    const char *num = s_text(json_object_get(o, "number"), nbuf, sizeof nbuf);
    if (!id) return s_fail(why, cap, "id is required");
    if (!num || !*num) num = id;
    const char *status = s_woo_status(s_str(o, "status"));
    if (!status) return s_fail(why, cap, "status must be a WooCommerce order status");
    const char *currency = s_str(o, "currency");
    if (!currency) return s_fail(why, cap, "currency is required");
    long long total;
    if (!os_amount_minor(s_str(o, "total"), currency, &total))
        return s_fail(why, cap, "total must be a decimal amount as a string, within the currency's minor unit");
    long long v = s_woo_version(o);
    if (v < 0) return s_fail(why, cap, "date_modified_gmt must be an ISO 8601 time");
    json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "order_number", num, "external_id", id, "status", status,
                          "currency", currency, "total", (json_int_t) total, "version", (json_int_t) v);
    json_object_set_new(d, "status_derived", json_true());
    s_set(d, "financial_status", s_str(o, "status"));
    s_set(d, "note", s_str(o, "customer_note"));
    json_t *bill = json_object_get(o, "billing"), *ship = json_object_get(o, "shipping");
    if (json_is_object(ship)) {
        char full[256];
        s_full_name(ship, "first_name", "last_name", full, sizeof full);
        json_t *a = json_object();
        s_set(a, "name", full);
        s_set(a, "phone", s_str(ship, "phone"));
        s_set(a, "line1", s_str(ship, "address_1"));
        s_set(a, "line2", s_str(ship, "address_2"));
        s_set(a, "city", s_str(ship, "city"));
        s_set(a, "province", s_str(ship, "state"));
        s_set(a, "postal_code", s_str(ship, "postcode"));
        s_set(a, "country", s_str(ship, "country"));
        json_object_set_new(d, "shipping_address", a);
    }
    json_int_t cid = json_integer_value(json_object_get(o, "customer_id"));
    if (cid > 0 && json_is_object(bill)) {
        char cbuf[32], full[256];
        snprintf(cbuf, sizeof cbuf, "%lld", (long long) cid);
        s_full_name(bill, "first_name", "last_name", full, sizeof full);
        json_t *k = json_pack("{s:s}", "id", cbuf);
        s_set(k, "name", full);
        s_set(k, "phone", s_str(bill, "phone"));
        s_set(k, "email", s_str(bill, "email"));
        json_object_set_new(d, "customer", k);
    }
    json_t *li = json_object_get(o, "line_items"), *items = json_array();
    json_object_set_new(d, "items", items);
    for (size_t i = 0; i < json_array_size(li); i++) {
        json_t *e = json_array_get(li, i);
        json_int_t qty = json_integer_value(json_object_get(e, "quantity"));
        long long sub;
        /* The unit price is the line's subtotal (a decimal string) over its
         * quantity; WooCommerce's own "price" is a float. */
        if (!os_amount_minor(s_str(e, "subtotal"), currency, &sub) || qty < 1 || sub % qty != 0) {
            json_decref(d);
            snprintf(why, cap, "line_items[%zu] needs a quantity of at least 1 and a subtotal (a decimal string) "
                     "that divides by it", i);
            return 400;
        }
        char sku[80], pb[32];
        const char *s = s_str(e, "sku"), *pid = s_text(json_object_get(e, "product_id"), pb, sizeof pb);
        if (s && strlen(s) >= sizeof sku) {
            json_decref(d);
            snprintf(why, cap, "line_items[%zu].sku is longer than 64 characters", i);
            return 400;
        }
        if (s && *s) snprintf(sku, sizeof sku, "%s", s);
        else snprintf(sku, sizeof sku, "product-%s", pid ? pid : "");
        json_t *item = json_pack("{s:s, s:I, s:I}", "sku", sku, "quantity", qty, "unit_price", (json_int_t) (sub / qty));
        s_set(item, "name", s_str(e, "name"));
        json_array_append_new(items, item);
    }
    *out = d;
    return 200;
}

static int
s_woo_product(json_t *o, const char *currency, json_t **out, char *why, size_t cap)
{
    char ibuf[32], code[80];
    const char *id = s_text(json_object_get(o, "id"), ibuf, sizeof ibuf);
    if (!id) return s_fail(why, cap, "id is required");
    const char *sku = s_str(o, "sku");
    snprintf(code, sizeof code, "%s", sku && *sku ? sku : id);
    long long price;
    const char *ptext = s_str(o, "regular_price");
    if (!ptext || !*ptext) ptext = s_str(o, "price");
    if (!os_amount_minor(ptext, currency, &price))
        return s_fail(why, cap, "regular_price (or price) must be a decimal amount as a string");
    long long v = s_woo_version(o);
    if (v < 0) return s_fail(why, cap, "date_modified_gmt must be an ISO 8601 time");
    const char *st = s_str(o, "status");
    json_t *d = json_pack("{s:s, s:s, s:I, s:s, s:I, s:s}", "code", code, "external_id", id, "price", (json_int_t) price,
                          "currency", currency, "version", (json_int_t) v, "status",
                          st && strcmp(st, "publish") == 0 ? "active" : "draft");
    if (s_str(o, "name")) json_object_set_new(d, "name", json_string(s_str(o, "name")));
    s_set(d, "description", s_str(o, "short_description"));
    json_t *cats = json_object_get(o, "categories");
    s_set(d, "category", s_str(json_array_get(cats, 0), "name"));
    *out = d;
    return 200;
}

static int
s_woo_customer(json_t *o, json_t **out, char *why, size_t cap)
{
    char ibuf[32], full[256];
    const char *id = s_text(json_object_get(o, "id"), ibuf, sizeof ibuf);
    if (!id) return s_fail(why, cap, "id is required");
    long long v = s_woo_version(o);
    if (v < 0) return s_fail(why, cap, "date_modified_gmt must be an ISO 8601 time");
    s_full_name(o, "first_name", "last_name", full, sizeof full);
    json_t *d = json_pack("{s:s, s:I}", "id", id, "version", (json_int_t) v);
    s_set(d, "name", full);
    s_set(d, "email", s_str(o, "email"));
    json_t *bill = json_object_get(o, "billing");
    s_set(d, "phone", s_str(bill, "phone"));
    *out = d;
    return 200;
}

static int
s_woo(const char *topic, const char *currency, const char *body, size_t len, const char **kind, json_t **data,
      char *why, size_t cap)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root) {
        snprintf(why, cap, "malformed JSON at line %d: %s", jerr.line, jerr.text);
        return 400;
    }
    int status;
    if (!json_is_object(root)) {
        status = s_fail(why, cap, "the body must be a JSON object");
    } else if (strcmp(topic, "order.created") == 0 || strcmp(topic, "order.updated") == 0) {
        *kind = "order";
        status = s_woo_order(root, data, why, cap);
    } else if (strcmp(topic, "product.created") == 0 || strcmp(topic, "product.updated") == 0) {
        *kind = "product";
        status = s_woo_product(root, currency, data, why, cap);
    } else if (strcmp(topic, "customer.created") == 0 || strcmp(topic, "customer.updated") == 0) {
        *kind = "customer";
        status = s_woo_customer(root, data, why, cap);
    } else {
        snprintf(why, cap, "topic %.64s is not taken (order.*, product.*, customer.* created or updated)", topic);
        status = 400;
    }
    json_decref(root);
    return status;
}

int
os_dialect_map_shop(const char *dialect, const char *topic, const char *currency, const char *body, size_t len,
                    const char **kind, json_t **data, char *why, size_t cap)
{
    *kind = NULL;
    *data = NULL;
    if (strcmp(dialect, "shopify") == 0) return s_shopify(topic, currency, body, len, kind, data, why, cap);
    if (strcmp(dialect, "woocommerce") == 0) return s_woo(topic, currency, body, len, kind, data, why, cap);
    return s_standard(body, len, kind, data, why, cap);
}

int
os_dialect_map(const char *dialect, const char *topic, const char *body, size_t len, const char **kind,
               json_t **data, char *why, size_t cap)
{
    return os_dialect_map_shop(dialect, topic, "USD", body, len, kind, data, why, cap);
}
