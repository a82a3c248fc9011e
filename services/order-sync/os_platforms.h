/* os_platforms: the platforms order-sync accepts webhooks from (name,
 * dialect, secret, shop domain), read from commerce.platforms by the writer
 * and looked up by the HTTP threads. Thread-safe. */
#ifndef OS_PLATFORMS_H
#define OS_PLATFORMS_H

#include <stdbool.h>
#include <stddef.h>

#include "cc/cc_pg.h"

typedef struct _os_platforms_t os_platforms_t;

typedef struct {
    char name[65];
    char dialect[16];          /* standard, shopify, woocommerce */
    char secret[256];          /* never logged */
    char domain[256];          /* "" when none */
    char currency[4];          /* the shop's, for payloads that do not say */
} os_platform_t;

os_platforms_t *os_platforms_new(void);
void os_platforms_destroy(os_platforms_t **self_p);

/* Replaces the table with commerce.platforms read on pg. Returns 0, or the
 * cc_pg error (logged) with the old table kept. */
int os_platforms_load(os_platforms_t *self, cc_pg_t *pg);

/* Copies the platform named name (by_domain: whose domain is name) into *out.
 * Returns true when found. */
bool os_platforms_find(os_platforms_t *self, const char *name, bool by_domain, os_platform_t *out);

#endif
