/* os_import: JSON and CSV imports to model events; CSV exports. */
#define _GNU_SOURCE
#include "os_import.h"
#include "os_csv.h"
#include "os_webhook.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *
s_refused(const char *why)
{
    return json_pack("{s:i, s:s}", "code", 400, "error", why);
}

/* An item for data of kind: the event, or why data is refused. Takes data. */
static json_t *
s_item(const char *kind, const char *platform, const char *event_id, json_t *data, const char *where)
{
    char why[256], msg[300];
    json_object_del(data, "status_derived");   /* imports name their statuses */
    if (!os_check(kind, data, why, sizeof why)) {
        json_decref(data);
        snprintf(msg, sizeof msg, "%s%s", where, why);
        return s_refused(msg);
    }
    return json_pack("{s:o}", "event", os_event(kind, platform, event_id, data));
}

json_t *
os_import_json(const char *platform, const char *body, size_t len, char *why, size_t cap)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root) {
        snprintf(why, cap, "malformed JSON at line %d: %s", jerr.line, jerr.text);
        return NULL;
    }
    if (!json_is_array(root) || json_array_size(root) == 0 || json_array_size(root) > OS_IMPORT_MAX) {
        json_decref(root);
        snprintf(why, cap, "the body must be a JSON array of 1 to %d events", OS_IMPORT_MAX);
        return NULL;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < json_array_size(root); i++) {
        json_t *e = json_array_get(root, i);
        const char *kind = os_standard_kind(json_string_value(json_object_get(e, "type")));
        json_t *id = json_object_get(e, "id"), *data = json_object_get(e, "data");
        char where[32];
        snprintf(where, sizeof where, "[%zu] ", i);
        if (!kind) {
            json_array_append_new(items, s_refused("type is not one of the webhook types"));
        } else if (id && (!json_is_string(id) || strlen(json_string_value(id)) < 1 || strlen(json_string_value(id)) > 128)) {
            json_array_append_new(items, s_refused("id must be text of 1 to 128 characters"));
        } else {
            json_array_append_new(items, s_item(kind, platform, json_string_value(id), json_incref(data), where));
        }
    }
    json_decref(root);
    return items;
}

/* The columns each CSV takes, and how a field becomes model data. */
typedef enum { C_TEXT, C_INT, C_AMOUNT, C_LIST } s_col_type_t;
typedef struct { const char *name; s_col_type_t type; } s_col_t;

static const s_col_t s_customer_cols[] = {
    { "id", C_TEXT }, { "name", C_TEXT }, { "phone", C_TEXT }, { "email", C_TEXT }, { "category", C_TEXT },
    { "birthday", C_TEXT }, { "gender", C_TEXT }, { "language", C_TEXT }, { "note", C_TEXT }, { "phones", C_LIST },
    { "version", C_INT }, { NULL, 0 }
};

static const s_col_t s_product_cols[] = {
    { "code", C_TEXT }, { "name", C_TEXT }, { "price", C_AMOUNT }, { "currency", C_TEXT }, { "category", C_TEXT },
    { "description", C_TEXT }, { "status", C_TEXT }, { "version", C_INT }, { NULL, 0 }
};

json_t *
os_import_csv(const char *platform, const char *what, const char *body, size_t len, char *why, size_t cap)
{
    bool customers = strcmp(what, "customers") == 0;
    const s_col_t *cols = customers ? s_customer_cols : s_product_cols;
    os_csv_t *csv = os_csv_new(body, len);
    char **f;
    const char *err = NULL;
    int n = os_csv_row(csv, &f, &err);
    if (n <= 0) {
        snprintf(why, cap, "%s", n < 0 ? err : "the CSV is empty: the first row names the columns");
        os_csv_destroy(&csv);
        return NULL;
    }
    const s_col_t *at[64];
    int nhead = n, price = -1, currency = -1;
    for (int i = 0; i < n; i++) {
        at[i] = NULL;
        for (const s_col_t *c = cols; c->name; c++) if (strcmp(f[i], c->name) == 0) at[i] = c;
        if (!at[i]) {
            snprintf(why, cap, "unknown column %.64s", f[i]);
            os_csv_destroy(&csv);
            return NULL;
        }
        if (strcmp(f[i], "price") == 0) price = i;
        if (strcmp(f[i], "currency") == 0) currency = i;
    }
    if (price >= 0 && currency < 0) {
        snprintf(why, cap, "a price column needs a currency column");
        os_csv_destroy(&csv);
        return NULL;
    }
    json_t *items = json_array();
    long long now_us = cc_wall_us();
    while ((n = os_csv_row(csv, &f, &err)) != 0) {
        char where[48], msg[160];
        snprintf(where, sizeof where, "line %d: ", os_csv_line(csv));
        if (n < 0) {
            snprintf(msg, sizeof msg, "%s%s", where, err);
            json_array_append_new(items, s_refused(msg));
            break;   /* the rest cannot be split into rows reliably */
        }
        if ((int) json_array_size(items) >= OS_IMPORT_MAX) {
            json_decref(items);
            os_csv_destroy(&csv);
            snprintf(why, cap, "more than %d rows", OS_IMPORT_MAX);
            return NULL;
        }
        if (n != nhead) {
            snprintf(msg, sizeof msg, "%shas %d fields, the header %d", where, n, nhead);
            json_array_append_new(items, s_refused(msg));
            continue;
        }
        json_t *data = json_object();
        const char *bad = NULL;
        for (int i = 0; i < n && !bad; i++) {
            if (!*f[i]) continue;   /* an empty cell leaves the field as it is */
            switch (at[i]->type) {
            case C_TEXT:
                json_object_set_new(data, at[i]->name, json_string(f[i]));
                break;
            case C_INT: {
                char *end;
                long long v = strtoll(f[i], &end, 10);
                if (*end || v < 0) bad = "version must be a non-negative integer";
                else json_object_set_new(data, at[i]->name, json_integer(v));
                break;
            }
            case C_AMOUNT: {
                long long minor;
                if (!os_amount_minor(f[i], f[currency], &minor)) bad = "price must be a decimal amount within the currency's minor unit";
                else json_object_set_new(data, at[i]->name, json_integer(minor));
                break;
            }
            case C_LIST: {
                json_t *list = json_array();
                char *copy = strdup(f[i]), *save = NULL;
                for (char *t = strtok_r(copy, ";", &save); t; t = strtok_r(NULL, ";", &save))
                    json_array_append_new(list, json_pack("{s:s}", "phone", t));
                free(copy);
                json_object_set_new(data, at[i]->name, list);
                break;
            }
            }
        }
        if (bad) {
            json_decref(data);
            snprintf(msg, sizeof msg, "%s%s", where, bad);
            json_array_append_new(items, s_refused(msg));
            continue;
        }
        /* An import without versions is the newest word on its rows. */
        if (!json_object_get(data, "version")) json_object_set_new(data, "version", json_integer(now_us));
        json_array_append_new(items, s_item(customers ? "customer" : "product", platform, NULL, data, where));
    }
    os_csv_destroy(&csv);
    if (json_array_size(items) == 0) {
        json_decref(items);
        snprintf(why, cap, "the CSV has a header and no rows");
        return NULL;
    }
    return items;
}

char *
os_export_csv(cc_pg_t *pg, const char *platform, const char *what, size_t *len)
{
    bool customers = strcmp(what, "customers") == 0;
    cc_pg_statement(pg, "os_export_customers",
                    "SELECT external_id, name, phone, email, category, coalesce(birthday::text, ''), gender, language, note,"
                    " coalesce((SELECT string_agg(p.phone, ';' ORDER BY p.phone) FROM commerce.customer_phones p"
                    " WHERE p.customer_id = c.id), ''), version FROM commerce.customers c WHERE platform = $1"
                    " ORDER BY external_id");
    cc_pg_statement(pg, "os_export_products",
                    "SELECT code, name, price_minor, currency, category, description, status, version"
                    " FROM commerce.products WHERE platform = $1 ORDER BY code");
    PGresult *res = NULL;
    const char *p[] = { platform };
    if (cc_pg_exec(pg, customers ? "os_export_customers" : "os_export_products", 1, p, &res)) {
        CC_ERROR("export failed", "platform=%s what=%s error=\"%s\"", platform, what, cc_pg_error(pg));
        return NULL;
    }
    char *text = NULL;
    FILE *out = open_memstream(&text, len);
    const s_col_t *cols = customers ? s_customer_cols : s_product_cols;
    for (int c = 0; cols[c].name; c++) os_csv_put(out, cols[c].name, !cols[c + 1].name);
    int ncols = PQnfields(res);
    for (int r = 0; r < PQntuples(res); r++) {
        for (int c = 0; c < ncols; c++) {
            char amount[40];
            const char *v = PQgetvalue(res, r, c);
            if (!customers && c == 2) {
                os_amount_text(atoll(v), PQgetvalue(res, r, 3), amount, sizeof amount);
                v = amount;
            }
            os_csv_put(out, v, c == ncols - 1);
        }
    }
    fclose(out);
    PQclear(res);
    return text;
}
