/* cc-migrate: applies every versioned SQL migration of the project.
 *
 * Folders, in order: <root>/deploy/sql (owner "platform"), then
 * <root>/services/<name>/sql for each service (owner <name>, '-' as '_').
 * Safe to run from several places at once (advisory lock); a second run is a
 * no-op. DATABASE_URL comes from the defaults file or the environment. */
#include "cc/cc_cfg.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_service.h"

#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef CC_SOURCE_DIR
#define CC_SOURCE_DIR "/usr/share/callcenter"
#endif

static int
s_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static int
s_migrate_dir(cc_pg_t *pg, const char *owner, const char *dir, int *total)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
    int applied = 0;
    int rc = cc_pg_migrate(pg, owner, dir, &applied);
    if (rc == 0) printf("cc-migrate: %-12s %d applied (%s)\n", owner, applied, dir);
    *total += applied;
    return rc;
}

int
main(int argc, char **argv)
{
    const char *root = getenv("CC_SOURCE_DIR") ? getenv("CC_SOURCE_DIR") : CC_SOURCE_DIR;
    const char *config = cc_cfg_default_path();
    static const struct option opts[] = {
        { "root", required_argument, NULL, 'r' }, { "config", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
    };
    int c;
    while ((c = getopt_long(argc, argv, "r:c:h", opts, NULL)) != -1) {
        if (c == 'r') root = optarg;
        else if (c == 'c') config = optarg;
        else {
            fprintf(c == 'h' ? stdout : stderr,
                    "Usage: cc-migrate [--root DIR] [--config FILE]\n"
                    "Applies DIR/deploy/sql and DIR/services/*/sql to DATABASE_URL (default root %s).\n", CC_SOURCE_DIR);
            return c == 'h' ? 0 : 2;
        }
    }
    const cc_cfg_key_t *tables[] = { cc_service_common_keys, NULL };
    cc_cfg_t *cfg = cc_cfg_new(tables);
    if (cc_cfg_load(cfg, config)) {
        fprintf(stderr, "cc-migrate: %s\n", cc_cfg_error(cfg));
        cc_cfg_destroy(&cfg);
        return 2;
    }
    cc_log_init("cc-migrate", "cc-migrate");
    cc_log_set_level_name(cc_cfg_str(cfg, "CC_LOG_LEVEL"));
    cc_pg_t *pg = cc_pg_new(cc_cfg_str(cfg, "DATABASE_URL"), (int) cc_cfg_int(cfg, "CC_RECONNECT_MS"), NULL);
    int rc = cc_pg_connect(pg), total = 0;
    char path[4096];
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/deploy/sql", root);
        rc = s_migrate_dir(pg, "platform", path, &total);
    }
    snprintf(path, sizeof path, "%s/services", root);
    DIR *d = rc == 0 ? opendir(path) : NULL;
    char *names[256];
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d)) && n < 256;)
        if (de->d_name[0] != '.') names[n++] = strdup(de->d_name);
    if (d) closedir(d);
    qsort(names, (size_t) n, sizeof *names, s_cmp);
    for (int i = 0; i < n; i++) {
        if (rc == 0) {
            char owner[128];
            snprintf(owner, sizeof owner, "%s", names[i]);
            for (char *p = owner; *p; p++) if (*p == '-') *p = '_';
            snprintf(path, sizeof path, "%s/services/%s/sql", root, names[i]);
            rc = s_migrate_dir(pg, owner, path, &total);
        }
        free(names[i]);
    }
    if (rc) fprintf(stderr, "cc-migrate: failed: %s\n", cc_pg_error(pg));
    else printf("cc-migrate: done, %d applied\n", total);
    cc_pg_destroy(&pg);
    cc_cfg_destroy(&cfg);
    cc_log_shutdown();
    return rc ? 1 : 0;
}
