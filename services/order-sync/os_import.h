/* os_import: the bulk side of the platform API: imports of model events as
 * a JSON array, imports of customers and products as CSV, and their CSV
 * exports. */
#ifndef OS_IMPORT_H
#define OS_IMPORT_H

#include <jansson.h>
#include <stddef.h>

#include "cc/cc_pg.h"

#define OS_IMPORT_MAX 10000      /* items per import */

/* Turns an import body (a JSON array of {"type", "id" (optional: the event
 * id that de-duplicates), "data"}) into items, one per entry, in order: each
 * {"event": a model event} or {"code": 400, "error": why}. Returns them (the
 * caller's), or NULL with why when the body is not a JSON array of 1 to
 * OS_IMPORT_MAX entries. */
json_t *os_import_json(const char *platform, const char *body, size_t len, char *why, size_t cap);

/* The same from CSV (what: "customers" or "products"), whose first row names
 * the columns (docs/order-sync-openapi.yaml lists them). */
json_t *os_import_csv(const char *platform, const char *what, const char *body, size_t len, char *why, size_t cap);

/* The platform's customers or products as CSV, in the columns the import
 * takes. Returns the text (the caller frees it) with *len, or NULL when the
 * database failed (logged). */
char *os_export_csv(cc_pg_t *pg, const char *platform, const char *what, size_t *len);

#endif
