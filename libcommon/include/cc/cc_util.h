/* cc_util: clocks, sleeping, whole-file reads and retry with backoff, written
 * once for every class. */
#ifndef CC_UTIL_H
#define CC_UTIL_H

#include <stdint.h>

/* Monotonic milliseconds (for deadlines and durations). */
int64_t cc_mono_ms(void);
/* Monotonic microseconds. */
int64_t cc_mono_us(void);
/* Wall clock, microseconds since the epoch (for timestamps on the wire). */
int64_t cc_wall_us(void);
void cc_sleep_ms(int ms);

/* Returns the whole file as a NUL-terminated string (caller frees), or NULL
 * with errno set. */
char *cc_read_file(const char *path);

/* Calls attempt(arg) until it returns 0 or budget_ms has passed, sleeping 50
 * ms, then twice as long each time up to 1 s. Returns 0 or attempt's last
 * error; *attempts_p (may be NULL) gets the number of calls. */
int cc_retry(int budget_ms, int (*attempt)(void *arg), void *arg, int *attempts_p);

/* Writes v in decimal (cc_u64_text) or as 16 lowercase hex digits
 * (cc_hex64_text) at at, without a NUL; returns the end. For hot paths,
 * where snprintf's parsing of its format costs more than the digits: at
 * needs 20 and 16 bytes. */
char *cc_u64_text(char *at, uint64_t v);
char *cc_hex64_text(char *at, uint64_t v);
void cc_util_test(void);

#endif
