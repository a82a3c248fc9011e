/* cc_check: test assertions that say what failed, where, and with what
 * values, then abort (the harness then stops every server it started). */
#ifndef CC_CHECK_H
#define CC_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond, ...) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); fflush(stdout); abort(); } } while (0)

#define TEST_BEGIN(name) do { printf("--- %s\n", name); fflush(stdout); } while (0)
#define TEST_PASS(name) do { printf("ok  %s\n", name); fflush(stdout); } while (0)

#endif
