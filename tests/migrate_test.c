/* migrate_test: the migrations runner against a real PostgreSQL.
 *
 * migrations_apply_once: two files apply, a second run applies none.
 * concurrent_runners_leave_a_correct_schema: four processes run the same
 *   migrations at once; each file is applied exactly once.
 * failed_migration_is_rolled_back: a broken file leaves no trace and stops
 *   the files after it.
 * edited_migration_is_refused: changing an applied file is an error. */
#include "cc_check.h"
#include "cc_harness.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void
s_write(const char *dir, const char *name, const char *sql)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f, "write %s", path);
    fputs(sql, f);
    fclose(f);
}

static cc_pg_t *
s_pg(void)
{
    cc_pg_t *pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    CHECK(cc_pg_connect(pg) == 0, "connect: %s", cc_pg_error(pg));
    return pg;
}

static long
s_count(cc_pg_t *pg, const char *sql)
{
    PGresult *res = NULL;
    CHECK(cc_pg_run(pg, sql, &res) == 0, "%s: %s", sql, cc_pg_error(pg));
    long n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return n;
}

static void
migrations_apply_once(const char *dir)
{
    TEST_BEGIN(__func__);
    cc_pg_t *pg = s_pg();
    int applied = -1;
    CHECK(cc_pg_migrate(pg, "shop", dir, &applied) == 0, "migrate: %s", cc_pg_error(pg));
    CHECK(applied == 2, "applied %d", applied);
    CHECK(s_count(pg, "SELECT count(*) FROM shop.items") == 1, "seed row");
    CHECK(cc_pg_migrate(pg, "shop", dir, &applied) == 0 && applied == 0, "second run applied %d", applied);
    CHECK(s_count(pg, "SELECT count(*) FROM public.cc_schema_migrations WHERE owner = 'shop'") == 2, "recorded twice?");
    cc_pg_destroy(&pg);
    TEST_PASS(__func__);
}

static void
concurrent_runners_leave_a_correct_schema(const char *dir)
{
    TEST_BEGIN(__func__);
    pid_t kids[4];
    for (int i = 0; i < 4; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            cc_pg_t *pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
            int rc = cc_pg_connect(pg) ? 10 : cc_pg_migrate(pg, "race", dir, NULL) ? 11 : 0;
            cc_pg_destroy(&pg);
            _exit(rc);
        }
    }
    for (int i = 0; i < 4; i++) {
        int status;
        waitpid(kids[i], &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "runner %d status %d", i, status);
    }
    cc_pg_t *pg = s_pg();
    CHECK(s_count(pg, "SELECT count(*) FROM public.cc_schema_migrations WHERE owner = 'race'") == 3, "three recorded");
    CHECK(s_count(pg, "SELECT count(*) FROM race.log") == 3, "each file ran once (rows in race.log)");
    CHECK(s_count(pg, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'race'"
                      " AND table_name = 'log' AND column_name = 'note'") == 1, "column from 0003");
    cc_pg_destroy(&pg);
    TEST_PASS(__func__);
}

static void
failed_migration_is_rolled_back(const char *dir)
{
    TEST_BEGIN(__func__);
    cc_pg_t *pg = s_pg();
    int applied = -1;
    int rc = cc_pg_migrate(pg, "broken", dir, &applied);
    CHECK(rc == CC_EDB, "rc=%s", cc_errname(rc));
    CHECK(applied == 1, "the good file before it applied (%d)", applied);
    CHECK(s_count(pg, "SELECT count(*) FROM public.cc_schema_migrations WHERE owner = 'broken'") == 1, "only 0001 recorded");
    CHECK(s_count(pg, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'broken'"
                      " AND table_name = 'half'") == 0, "the broken file's first statement was rolled back");
    cc_pg_destroy(&pg);
    TEST_PASS(__func__);
}

static void
edited_migration_is_refused(const char *dir)
{
    TEST_BEGIN(__func__);
    s_write(dir, "0001_items.sql", "CREATE SCHEMA shop; CREATE TABLE shop.items (id int); -- edited\n");
    cc_pg_t *pg = s_pg();
    int rc = cc_pg_migrate(pg, "shop", dir, NULL);
    CHECK(rc == CC_ECHECKSUM, "rc=%s", cc_errname(rc));
    cc_pg_destroy(&pg);
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("migrate_test", "migrate_test");
    cc_harness_t *h = cc_harness_new("migrate");
    cc_harness_start_pg(h);
    char shop[512], race[512], broken[512];
    snprintf(shop, sizeof shop, "%s/shop", cc_harness_dir(h));
    snprintf(race, sizeof race, "%s/race", cc_harness_dir(h));
    snprintf(broken, sizeof broken, "%s/broken", cc_harness_dir(h));
    mkdir(shop, 0755);
    mkdir(race, 0755);
    mkdir(broken, 0755);
    s_write(shop, "0001_items.sql", "CREATE SCHEMA shop; CREATE TABLE shop.items (id int);\n");
    s_write(shop, "0002_seed.sql", "INSERT INTO shop.items VALUES (1);\n");
    s_write(shop, "README.md", "not a migration\n");
    s_write(race, "0001_log.sql", "CREATE SCHEMA race; CREATE TABLE race.log (n int); INSERT INTO race.log VALUES (1);\n");
    s_write(race, "0002_more.sql", "INSERT INTO race.log VALUES (2); SELECT pg_sleep(0.2);\n");
    s_write(race, "0003_note.sql", "ALTER TABLE race.log ADD COLUMN note text; INSERT INTO race.log VALUES (3);\n");
    s_write(broken, "0001_ok.sql", "CREATE SCHEMA broken;\n");
    s_write(broken, "0002_bad.sql", "CREATE TABLE broken.half (id int); SELECT * FROM no_such_table;\n");
    s_write(broken, "0003_after.sql", "CREATE TABLE broken.after (id int);\n");
    migrations_apply_once(shop);
    concurrent_runners_leave_a_correct_schema(race);
    failed_migration_is_rolled_back(broken);
    edited_migration_is_refused(shop);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    printf("migrate_test: 4 passed, 0 failed\n");
    return 0;
}
