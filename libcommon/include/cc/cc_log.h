/* cc_log: structured logging in logfmt, one line per record, to stderr.
 *
 *   CC_INFO("bus connected", "endpoint=%s", ep);
 *   ts=2026-11-24T09:20:00.123Z level=info service=acd instance=acd-1
 *     msg="bus connected" endpoint=tcp://127.0.0.1:5570 src=cc_bus.c:120
 *
 * The second argument is a printf format for extra key=value pairs (may be
 * ""). A per-thread trace id (call id) is added when set. Thread-safe: each
 * record is written with one write(2). */
#ifndef CC_LOG_H
#define CC_LOG_H

#include <stdarg.h>

typedef enum { CC_LOG_DEBUG = 0, CC_LOG_INFO, CC_LOG_WARN, CC_LOG_ERROR } cc_log_level_t;

/* Sets the process-wide identity printed on every line. Copies the strings. */
void cc_log_init(const char *service, const char *instance);
/* Sets the minimum level; returns 0, or CC_EINVAL for an unknown name. */
int cc_log_set_level_name(const char *name);
void cc_log_set_level(cc_log_level_t level);
cc_log_level_t cc_log_level(void);
/* Sets (or clears with NULL) this thread's trace id, e.g. the call id. */
void cc_log_set_trace(const char *trace_id);
/* Frees the identity strings; safe to call more than once. */
void cc_log_shutdown(void);

void cc_log_write(cc_log_level_t level, const char *file, int line,
                  const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 5, 6)));

#define CC_LOG_(lvl, msg, ...) \
    do { if ((lvl) >= cc_log_level()) \
        cc_log_write((lvl), __FILE__, __LINE__, (msg), __VA_ARGS__); } while (0)
#define CC_DEBUG(msg, ...) CC_LOG_(CC_LOG_DEBUG, msg, __VA_ARGS__)
#define CC_INFO(msg, ...)  CC_LOG_(CC_LOG_INFO,  msg, __VA_ARGS__)
#define CC_WARN(msg, ...)  CC_LOG_(CC_LOG_WARN,  msg, __VA_ARGS__)
#define CC_ERROR(msg, ...) CC_LOG_(CC_LOG_ERROR, msg, __VA_ARGS__)

void cc_log_test(void);

#endif
