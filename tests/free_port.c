/* free_port: prints N free TCP ports on 127.0.0.1 (for shell tests). */
#include "cc_harness.h"

#include <stdio.h>
#include <stdlib.h>

int
main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1;
    for (int i = 0; i < n; i++) printf("%d\n", cc_harness_free_port());
    return 0;
}
