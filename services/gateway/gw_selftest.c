/* gw_selftest: runs one gateway class's selftest by name (one ctest per
 * class), or all of them. The table is the list of classes. */
#include "gw_clock.h"

#include <stdio.h>
#include <string.h>

static const struct { const char *name; void (*fn)(void); } s_tests[] = {
    { "gw_clock", gw_clock_test },
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
        fprintf(stderr, "gw_selftest: no test named '%s'\n", argc > 1 ? argv[1] : "");
        return 2;
    }
    return 0;
}
