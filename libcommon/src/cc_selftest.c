/* cc_selftest: runs one class's selftest by name (one ctest per class), or
 * all of them. The table is the list of classes. */
#include "cc/cc_bus.h"
#include "cc/cc_cfg.h"
#include "cc/cc_log.h"
#include "cc/cc_loop.h"
#include "cc/cc_metrics.h"
#include "cc/cc_pg.h"
#include "cc/cc_redis.h"
#include "cc/cc_rpc.h"
#include "cc/cc_util.h"
#include "cc/cc_worker.h"

#include <stdio.h>
#include <string.h>

static const struct { const char *name; void (*fn)(void); } s_tests[] = {
    { "cc_util", cc_util_test },
    { "cc_log", cc_log_test },
    { "cc_cfg", cc_cfg_test },
    { "cc_metrics", cc_metrics_test },
    { "cc_loop", cc_loop_test },
    { "cc_bus", cc_bus_test },
    { "cc_rpc", cc_rpc_test },
    { "cc_pg", cc_pg_test },
    { "cc_redis", cc_redis_test },
    { "cc_worker", cc_worker_test },
    { NULL, NULL }
};

int
main(int argc, char **argv)
{
    int ran = 0;
    for (int i = 0; s_tests[i].name; i++) {
        if (argc > 1 && strcmp(argv[1], s_tests[i].name) != 0) continue;
        printf("selftest %s ...\n", s_tests[i].name);
        fflush(stdout);
        s_tests[i].fn();
        printf("selftest %s: OK\n", s_tests[i].name);
        ran++;
    }
    if (!ran) {
        fprintf(stderr, "cc_selftest: no test named '%s'\n", argc > 1 ? argv[1] : "");
        return 2;
    }
    return 0;
}
