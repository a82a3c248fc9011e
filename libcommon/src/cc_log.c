/* cc_log: logfmt records with time, level, service, instance, trace id. */
#include "cc/cc_log.h"
#include "cc/cc_errno.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static char *s_service;
static char *s_instance;
static int s_level = CC_LOG_INFO;
static _Thread_local char s_trace[128];
static int s_fd = 2;

static const char *s_level_names[] = { "debug", "info", "warn", "error" };

void
cc_log_init(const char *service, const char *instance)
{
    cc_log_shutdown();
    s_service = strdup(service ? service : "unknown");
    s_instance = strdup(instance ? instance : s_service);
}

void
cc_log_shutdown(void)
{
    free(s_service);
    free(s_instance);
    s_service = s_instance = NULL;
}

int
cc_log_set_level_name(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, s_level_names[i]) == 0) {
            s_level = i;
            return 0;
        }
    return CC_EINVAL;
}

void cc_log_set_level(cc_log_level_t level) { s_level = level; }
cc_log_level_t cc_log_level(void) { return (cc_log_level_t) s_level; }

void
cc_log_set_trace(const char *trace_id)
{
    snprintf(s_trace, sizeof s_trace, "%s", trace_id ? trace_id : "");
}

/* Appends v to buf as a logfmt value, quoting when needed. */
static size_t
s_put_value(char *buf, size_t at, size_t cap, const char *v)
{
    int quote = *v == '\0' || strpbrk(v, " =\"\\\t\n") != NULL;
    if (quote && at < cap) buf[at++] = '"';
    for (; *v && at + 2 < cap; v++) {
        if (*v == '"' || *v == '\\') { buf[at++] = '\\'; buf[at++] = *v; }
        else if (*v == '\n') { buf[at++] = '\\'; buf[at++] = 'n'; }
        else buf[at++] = *v;
    }
    if (quote && at < cap) buf[at++] = '"';
    return at;
}

void
cc_log_write(cc_log_level_t level, const char *file, int line,
             const char *msg, const char *kvfmt, ...)
{
    char buf[4096];
    size_t cap = sizeof buf - 2, at = 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    at += strftime(buf, cap, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    at += snprintf(buf + at, cap - at, ".%03ldZ level=%s service=%s instance=%s",
                   ts.tv_nsec / 1000000, s_level_names[level],
                   s_service ? s_service : "-", s_instance ? s_instance : "-");
    if (s_trace[0] && at < cap)
        at += snprintf(buf + at, cap - at, " trace_id=%s", s_trace);
    if (at < cap) at += snprintf(buf + at, cap - at, " msg=");
    if (at < cap) at = s_put_value(buf, at, cap, msg);
    if (kvfmt && *kvfmt && at + 1 < cap) {
        buf[at++] = ' ';
        va_list ap;
        va_start(ap, kvfmt);
        int n = vsnprintf(buf + at, cap - at, kvfmt, ap);
        va_end(ap);
        if (n > 0) at += (size_t) n < cap - at ? (size_t) n : cap - at - 1;
        else at--;   /* nothing formatted: drop the separator */
    }
    const char *base = strrchr(file, '/');
    if (at < cap) at += snprintf(buf + at, cap - at, " src=%s:%d", base ? base + 1 : file, line);
    if (at > cap) at = cap;
    buf[at++] = '\n';
    ssize_t w = write(s_fd, buf, at);
    (void) w;
}

void
cc_log_test(void)
{
    int fds[2];
    assert(pipe(fds) == 0);
    int saved = s_fd;
    s_fd = fds[1];
    cc_log_init("selftest", "selftest-1");
    cc_log_set_trace("call-42");
    CC_INFO("hello world", "order_id=%d peer=%s", 7, "x");
    CC_DEBUG("hidden", "%s", "");
    cc_log_set_trace(NULL);
    s_fd = saved;
    close(fds[1]);
    char out[1024] = "";
    ssize_t n = read(fds[0], out, sizeof out - 1);
    close(fds[0]);
    assert(n > 0);
    out[n] = 0;
    assert(strstr(out, "level=info service=selftest instance=selftest-1 trace_id=call-42"));
    assert(strstr(out, "msg=\"hello world\" order_id=7 peer=x src=cc_log.c:"));
    assert(!strstr(out, "hidden"));
    assert(cc_log_set_level_name("bogus") == CC_EINVAL);
    assert(cc_log_set_level_name("WARN") == 0 && cc_log_level() == CC_LOG_WARN);
    cc_log_set_level(CC_LOG_INFO);
    cc_log_shutdown();
}
