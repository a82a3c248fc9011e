/* order-syncctl: the operator's command for order-sync's pushes to the
 * platforms: what waits in the outbox, the dead letters, and their replay.
 * It works on the database directly, so it works while order-sync is down. */
#include "os_outbox.h"
#include "cc/cc_cfg.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
s_usage(void)
{
    fprintf(stderr,
            "usage: order-syncctl COMMAND\n"
            "  outbox          pushes waiting, per platform (due now, retrying, oldest)\n"
            "  dead            the dead letters: id, platform, type, order, attempts, last status, reason\n"
            "  replay ID|all   put one dead letter (or all) back in the outbox, with the same webhook-id;\n"
            "                  a platform stopped by 410 Gone takes pushes again\n");
    return 2;
}

static int
s_print(cc_pg_t *pg, const char *sql, const char *header)
{
    PGresult *res = NULL;
    if (cc_pg_run(pg, sql, &res)) {
        fprintf(stderr, "order-syncctl: %s\n", cc_pg_error(pg));
        return 1;
    }
    printf("%s\n", header);
    for (int i = 0; i < PQntuples(res); i++) {
        for (int j = 0; j < PQnfields(res); j++) printf("%s%s", j ? "\t" : "", PQgetvalue(res, i, j));
        printf("\n");
    }
    if (PQntuples(res) == 0) printf("(none)\n");
    PQclear(res);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) return s_usage();
    const cc_cfg_key_t *tables[] = { cc_service_common_keys, NULL };
    cc_cfg_t *cfg = cc_cfg_new(tables);
    if (cc_cfg_load(cfg, cc_cfg_default_path())) {
        fprintf(stderr, "order-syncctl: %s\n", cc_cfg_error(cfg));
        cc_cfg_destroy(&cfg);
        return 2;
    }
    cc_log_init("order-syncctl", "order-syncctl");
    cc_log_set_level_name("warn");
    cc_pg_t *pg = cc_pg_new(cc_cfg_str(cfg, "DATABASE_URL"), 2000, NULL);
    int rc = 0;
    if (cc_pg_connect(pg)) {
        fprintf(stderr, "order-syncctl: cannot reach PostgreSQL: %s\n", cc_pg_error(pg));
        rc = 1;
    } else if (strcmp(argv[1], "outbox") == 0) {
        rc = s_print(pg,
                     "SELECT o.platform, count(*) FILTER (WHERE o.attempts = 0), count(*) FILTER (WHERE o.attempts > 0),"
                     " to_char(min(o.created_at), 'YYYY-MM-DD HH24:MI:SS'),"
                     " CASE WHEN p.push_gone_at IS NULL THEN '' ELSE 'stopped by 410 Gone' END"
                     " FROM commerce.outbox o JOIN commerce.platforms p ON p.name = o.platform"
                     " WHERE o.delivered_at IS NULL GROUP BY o.platform, p.push_gone_at ORDER BY o.platform",
                     "platform\tnew\tretrying\toldest\tnote");
    } else if (strcmp(argv[1], "dead") == 0) {
        rc = s_print(pg,
                     "SELECT id, platform, type, subject, attempts, coalesce(last_status, 0), last_error,"
                     " to_char(died_at, 'YYYY-MM-DD HH24:MI:SS') FROM commerce.outbox_dead ORDER BY id",
                     "id\tplatform\ttype\torder\tattempts\tstatus\treason\tdied");
    } else if (strcmp(argv[1], "replay") == 0 && argc == 3) {
        char *end;
        long long id = strcmp(argv[2], "all") == 0 ? 0 : strtoll(argv[2], &end, 10);
        if (id == 0 && strcmp(argv[2], "all") != 0) {
            rc = s_usage();
        } else if (id < 0 || (id > 0 && *end)) {
            rc = s_usage();
        } else {
            int n = os_outbox_replay(pg, id);
            if (n < 0) {
                fprintf(stderr, "order-syncctl: replay failed: %s\n", cc_pg_error(pg));
                rc = 1;
            } else if (n == 0 && id > 0) {
                fprintf(stderr, "order-syncctl: no dead letter %lld\n", id);
                rc = 1;
            } else {
                printf("replayed %d\n", n);
            }
        }
    } else {
        rc = s_usage();
    }
    cc_pg_destroy(&pg);
    cc_cfg_destroy(&cfg);
    cc_log_shutdown();
    return rc;
}
