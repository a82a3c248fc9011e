/* cc_pg: libpq connection with reconnect, statements, and migrations. */
#include "cc/cc_pg.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_STATEMENTS 256
#define MIGRATE_LOCK_KEY 7242014   /* pg_advisory_lock key of the runner */

typedef struct {
    char *name;
    char *sql;
    bool prepared;      /* on the current connection */
} stmt_t;

struct _cc_pg_t {
    char *url;
    int reconnect_ms;
    PGconn *conn;
    bool in_tx;
    stmt_t stmts[MAX_STATEMENTS];
    int nstmts;
    char error[512];
    char sqlstate[6];
    _Atomic bool healthy;
    cc_metric_t *m_reconnects, *m_errors;
};

cc_pg_t *
cc_pg_new(const char *url, int reconnect_ms, cc_metrics_t *metrics)
{
    cc_pg_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->url = strdup(url);
    if (!self->url) abort();
    self->reconnect_ms = reconnect_ms;
    if (metrics) {
        self->m_reconnects = cc_metrics_counter(metrics, "cc_pg_reconnects_total", NULL, "PostgreSQL connections made again");
        self->m_errors = cc_metrics_counter(metrics, "cc_pg_errors_total", NULL, "PostgreSQL statements that failed");
    }
    return self;
}

void
cc_pg_destroy(cc_pg_t **self_p)
{
    if (!self_p || !*self_p) return;
    cc_pg_t *self = *self_p;
    if (self->conn) PQfinish(self->conn);
    for (int i = 0; i < self->nstmts; i++) {
        free(self->stmts[i].name);
        free(self->stmts[i].sql);
    }
    free(self->url);
    free(self);
    *self_p = NULL;
}

static void
s_set_error(cc_pg_t *self, const char *what, const char *detail)
{
    snprintf(self->error, sizeof self->error, "%s: %s", what, detail ? detail : "");
    /* One line, no double quotes: the text goes into logfmt values. */
    for (char *c = self->error; *c; c++) {
        if (*c == '\n') { *c = '\0'; break; }
        if (*c == '"') *c = '\'';
    }
}

/* Server notices ("relation exists, skipping") become debug lines. */
static void
s_on_notice(void *arg, const char *message)
{
    (void) arg;
    char text[512];
    snprintf(text, sizeof text, "%s", message);
    char *nl = strchr(text, '\n');
    if (nl) *nl = '\0';
    CC_DEBUG("postgres notice", "notice=\"%s\"", text);
}

/* One connection attempt. */
static int
s_connect_once(cc_pg_t *self)
{
    if (self->conn) PQfinish(self->conn);
    self->conn = PQconnectdb(self->url);
    for (int i = 0; i < self->nstmts; i++) self->stmts[i].prepared = false;
    self->in_tx = false;
    if (PQstatus(self->conn) != CONNECTION_OK) {
        s_set_error(self, "PQconnectdb failed", PQerrorMessage(self->conn));
        PQfinish(self->conn);
        self->conn = NULL;
        atomic_store(&self->healthy, false);
        return CC_ECONN;
    }
    PQsetNoticeProcessor(self->conn, s_on_notice, NULL);
    atomic_store(&self->healthy, true);
    return 0;
}

static int s_connect_attempt(void *self) { return s_connect_once(self); }

int
cc_pg_connect(cc_pg_t *self)
{
    int attempts;
    if (cc_retry(self->reconnect_ms, s_connect_attempt, self, &attempts)) {
        CC_ERROR("postgres unreachable", "attempts=%d error=\"%s\"", attempts, self->error);
        return CC_ECONN;
    }
    if (attempts > 1) CC_INFO("postgres connected", "attempts=%d", attempts);
    return 0;
}

bool cc_pg_healthy(cc_pg_t *self) { return atomic_load(&self->healthy); }
const char *cc_pg_error(cc_pg_t *self) { return self->error; }
const char *cc_pg_sqlstate(cc_pg_t *self) { return self->sqlstate; }
PGconn *cc_pg_conn(cc_pg_t *self) { return self->conn; }

void
cc_pg_statement(cc_pg_t *self, const char *name, const char *sql)
{
    for (int i = 0; i < self->nstmts; i++)
        if (strcmp(self->stmts[i].name, name) == 0) {
            assert(strcmp(self->stmts[i].sql, sql) == 0 && "statement registered twice");
            return;
        }
    assert(self->nstmts < MAX_STATEMENTS);
    stmt_t *s = &self->stmts[self->nstmts++];
    s->name = strdup(name);
    s->sql = strdup(sql);
    if (!s->name || !s->sql) abort();
}

static stmt_t *
s_stmt(cc_pg_t *self, const char *name)
{
    for (int i = 0; i < self->nstmts; i++)
        if (strcmp(self->stmts[i].name, name) == 0) return &self->stmts[i];
    return NULL;
}

/* Classifies a result. Returns 0, CC_EDB or CC_ECONN. */
static int
s_check(cc_pg_t *self, PGresult *res, const char *what)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    self->sqlstate[0] = '\0';
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) return 0;
    if (!self->conn || PQstatus(self->conn) != CONNECTION_OK) {
        s_set_error(self, what, self->conn ? PQerrorMessage(self->conn) : "not connected");
        atomic_store(&self->healthy, false);
        return CC_ECONN;
    }
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(self->sqlstate, sizeof self->sqlstate, "%s", state ? state : "");
    s_set_error(self, what, res ? PQresultErrorMessage(res) : PQerrorMessage(self->conn));
    if (self->m_errors) cc_metric_add(self->m_errors, 1);
    return CC_EDB;
}

/* One try of a statement or SQL text on the current connection. */
static int
s_try(cc_pg_t *self, stmt_t *stmt, const char *sql, int nparams, const char *const *params,
      PGresult **res_p)
{
    if (!self->conn) return CC_ECONN;
    if (stmt && !stmt->prepared) {
        PGresult *res = PQprepare(self->conn, stmt->name, stmt->sql, 0, NULL);
        int rc = s_check(self, res, "PQprepare failed");
        PQclear(res);
        if (rc) {
            if (rc == CC_EDB) CC_ERROR("PQprepare failed", "statement=%s error=\"%s\"", stmt->name, self->error);
            return rc;
        }
        stmt->prepared = true;
    }
    PGresult *res = stmt ? PQexecPrepared(self->conn, stmt->name, nparams, params, NULL, NULL, 0)
                         : PQexec(self->conn, sql);
    int rc = s_check(self, res, stmt ? "PQexecPrepared failed" : "PQexec failed");
    if (rc == 0 && res_p) *res_p = res;
    else PQclear(res);
    return rc;
}

static int
s_run(cc_pg_t *self, stmt_t *stmt, const char *sql, int nparams, const char *const *params,
      PGresult **res_p)
{
    if (res_p) *res_p = NULL;
    int rc = s_try(self, stmt, sql, nparams, params, res_p);
    if (rc != CC_ECONN) return rc;
    if (self->in_tx) {
        /* The transaction is gone with the connection: the caller repeats it. */
        CC_WARN("postgres connection lost in a transaction", "error=\"%s\"", self->error);
        self->in_tx = false;
        return CC_ECONN;
    }
    CC_WARN("postgres connection lost; reconnecting", "error=\"%s\"", self->error);
    if (cc_pg_connect(self)) return CC_ECONN;
    if (self->m_reconnects) cc_metric_add(self->m_reconnects, 1);
    return s_try(self, stmt, sql, nparams, params, res_p);
}

int
cc_pg_exec(cc_pg_t *self, const char *name, int nparams, const char *const *params, PGresult **res_p)
{
    stmt_t *stmt = s_stmt(self, name);
    assert(stmt && "statement not registered");
    return s_run(self, stmt, NULL, nparams, params, res_p);
}

int
cc_pg_run(cc_pg_t *self, const char *sql, PGresult **res_p)
{
    return s_run(self, NULL, sql, 0, NULL, res_p);
}

int
cc_pg_ping(cc_pg_t *self)
{
    return cc_pg_run(self, "SELECT 1", NULL);
}

int
cc_pg_check(cc_pg_t *self)
{
    if (self->conn && !self->in_tx && s_try(self, NULL, "SELECT 1", 0, NULL, NULL) == 0) return 0;
    if (self->in_tx) return 0;   /* busy in a transaction: the last result stands */
    return s_connect_once(self);
}

int
cc_pg_begin(cc_pg_t *self)
{
    int rc = cc_pg_run(self, "BEGIN", NULL);
    if (rc == 0) self->in_tx = true;
    return rc;
}

int
cc_pg_commit(cc_pg_t *self)
{
    int rc = cc_pg_run(self, "COMMIT", NULL);
    self->in_tx = false;
    return rc;
}

void
cc_pg_rollback(cc_pg_t *self)
{
    if (self->conn && PQstatus(self->conn) == CONNECTION_OK) {
        PGresult *res = PQexec(self->conn, "ROLLBACK");
        PQclear(res);
    }
    self->in_tx = false;
}

/* ------------------------------------------------------------ migrations */

static int
s_is_migration(const char *name)
{
    size_t n = strlen(name);
    return n > 9 && name[0] >= '0' && name[0] <= '9' && name[1] >= '0' && name[1] <= '9'
        && name[2] >= '0' && name[2] <= '9' && name[3] >= '0' && name[3] <= '9'
        && name[4] == '_' && strcmp(name + n - 4, ".sql") == 0;
}

static int
s_cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static void
s_checksum(const char *text, char out[17])
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++) h = (h ^ *p) * 1099511628211ULL;
    snprintf(out, 17, "%016" PRIx64, h);
}

static const char *s_migrations_ddl =
    "CREATE TABLE IF NOT EXISTS public.cc_schema_migrations ("
    " owner text NOT NULL, version integer NOT NULL, name text NOT NULL,"
    " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (owner, version))";

/* Applies one file unless recorded. Returns 0 / 1 (applied) or an error. */
static int
s_apply(cc_pg_t *self, const char *owner, const char *dir, const char *file)
{
    char path[4096], version[5], sum[17];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    memcpy(version, file, 4);
    version[4] = '\0';
    char *sql = cc_read_file(path);
    if (!sql) {
        CC_ERROR("migration unreadable", "path=%s error=\"%s\"", path, strerror(errno));
        return CC_EIO;
    }
    s_checksum(sql, sum);
    const char *params[] = { owner, version };
    PGresult *res = NULL;
    int rc = cc_pg_exec(self, "cc_migrate_get", 2, params, &res);
    if (rc) goto out;
    if (PQntuples(res) == 1) {
        if (strcmp(PQgetvalue(res, 0, 0), sum) != 0) {
            CC_ERROR("applied migration was edited", "owner=%s file=%s recorded=%s now=%s",
                     owner, file, PQgetvalue(res, 0, 0), sum);
            rc = CC_ECHECKSUM;
        }
        goto out;
    }
    if ((rc = cc_pg_begin(self))) goto out;
    if ((rc = cc_pg_run(self, sql, NULL))) {
        CC_ERROR("migration failed", "owner=%s file=%s error=\"%s\"", owner, file, self->error);
        cc_pg_rollback(self);
        goto out;
    }
    const char *ins[] = { owner, version, file, sum };
    if ((rc = cc_pg_exec(self, "cc_migrate_put", 4, ins, NULL)) || (rc = cc_pg_commit(self))) {
        cc_pg_rollback(self);
        goto out;
    }
    CC_INFO("migration applied", "owner=%s file=%s", owner, file);
    rc = 1;
out:
    PQclear(res);
    free(sql);
    return rc;
}

int
cc_pg_migrate(cc_pg_t *self, const char *owner, const char *dir, int *applied_p)
{
    if (applied_p) *applied_p = 0;
    DIR *d = opendir(dir);
    if (!d) {
        CC_ERROR("migrations folder unreadable", "dir=%s error=\"%s\"", dir, strerror(errno));
        return CC_EIO;
    }
    char **names = NULL;
    size_t count = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (!s_is_migration(de->d_name)) continue;
        names = realloc(names, (count + 1) * sizeof *names);
        if (!names) abort();
        names[count++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof *names, s_cmp_names);

    cc_pg_statement(self, "cc_migrate_get",
                    "SELECT checksum FROM public.cc_schema_migrations WHERE owner = $1 AND version = $2::int");
    cc_pg_statement(self, "cc_migrate_put",
                    "INSERT INTO public.cc_schema_migrations (owner, version, name, checksum)"
                    " VALUES ($1, $2::int, $3, $4)");
    char lock[96], unlock[96];
    snprintf(lock, sizeof lock, "SELECT pg_advisory_lock(%d)", MIGRATE_LOCK_KEY);
    snprintf(unlock, sizeof unlock, "SELECT pg_advisory_unlock(%d)", MIGRATE_LOCK_KEY);
    int rc = cc_pg_run(self, lock, NULL);
    if (rc == 0) {
        rc = cc_pg_run(self, s_migrations_ddl, NULL);
        for (size_t i = 0; rc == 0 && i < count; i++) {
            int r = s_apply(self, owner, dir, names[i]);
            if (r < 0) rc = r;
            else if (r == 1 && applied_p) (*applied_p)++;
        }
        cc_pg_run(self, unlock, NULL);
    }
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
    return rc;
}

void
cc_pg_test(void)
{
    /* Without a server: connecting fails within the budget, and says why. */
    cc_pg_t *pg = cc_pg_new("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", 200, NULL);
    int64_t t0 = cc_mono_ms();
    assert(cc_pg_connect(pg) == CC_ECONN);
    assert(cc_mono_ms() - t0 < 2000);
    assert(strstr(cc_pg_error(pg), "PQconnectdb failed"));
    assert(!cc_pg_healthy(pg));
    assert(cc_pg_run(pg, "SELECT 1", NULL) == CC_ECONN);
    cc_pg_destroy(&pg);
    assert(!pg);
    assert(s_is_migration("0001_init.sql") && !s_is_migration("001_init.sql") && !s_is_migration("0001_init.sql~"));
    char a[17], b[17];
    s_checksum("CREATE TABLE x ()", a);
    s_checksum("CREATE TABLE y ()", b);
    assert(strcmp(a, b) != 0);
}
