/* os_platforms: the platform table behind a read-write lock. */
#include "os_platforms.h"
#include "cc/cc_log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _os_platforms_t {
    pthread_rwlock_t lock;
    os_platform_t *rows;
    size_t n;
};

os_platforms_t *
os_platforms_new(void)
{
    os_platforms_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    pthread_rwlock_init(&self->lock, NULL);
    return self;
}

void
os_platforms_destroy(os_platforms_t **self_p)
{
    if (!self_p || !*self_p) return;
    os_platforms_t *self = *self_p;
    pthread_rwlock_destroy(&self->lock);
    free(self->rows);
    free(self);
    *self_p = NULL;
}

int
os_platforms_load(os_platforms_t *self, cc_pg_t *pg)
{
    PGresult *res = NULL;
    int rc = cc_pg_run(pg, "SELECT name, dialect, secret, coalesce(domain, ''), currency FROM commerce.platforms", &res);
    if (rc) {
        CC_ERROR("platforms not read", "error=\"%s\"", cc_pg_error(pg));
        return rc;
    }
    size_t n = (size_t) PQntuples(res);
    os_platform_t *rows = calloc(n + 1, sizeof *rows);
    if (!rows) abort();
    for (size_t i = 0; i < n; i++) {
        snprintf(rows[i].name, sizeof rows[i].name, "%s", PQgetvalue(res, (int) i, 0));
        snprintf(rows[i].dialect, sizeof rows[i].dialect, "%s", PQgetvalue(res, (int) i, 1));
        snprintf(rows[i].secret, sizeof rows[i].secret, "%s", PQgetvalue(res, (int) i, 2));
        snprintf(rows[i].domain, sizeof rows[i].domain, "%s", PQgetvalue(res, (int) i, 3));
        snprintf(rows[i].currency, sizeof rows[i].currency, "%s", PQgetvalue(res, (int) i, 4));
    }
    PQclear(res);
    pthread_rwlock_wrlock(&self->lock);
    os_platform_t *old = self->rows;
    self->rows = rows;
    self->n = n;
    pthread_rwlock_unlock(&self->lock);
    free(old);
    return 0;
}

bool
os_platforms_find(os_platforms_t *self, const char *name, bool by_domain, os_platform_t *out)
{
    bool found = false;
    pthread_rwlock_rdlock(&self->lock);
    for (size_t i = 0; !found && i < self->n; i++) {
        if (strcmp(by_domain ? self->rows[i].domain : self->rows[i].name, name) == 0 && (!by_domain || *name)) {
            *out = self->rows[i];
            found = true;
        }
    }
    pthread_rwlock_unlock(&self->lock);
    return found;
}
