/* cc_metrics: a small registry of atomic counters and gauges. */
#include "cc/cc_metrics.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _cc_metric_t {
    char *name;
    char *labels;
    char *help;
    bool gauge;
    _Atomic int64_t value;
    cc_metric_t *next;
};

struct _cc_metrics_t {
    pthread_mutex_t lock;
    cc_metric_t *head, *tail;
};

cc_metrics_t *
cc_metrics_new(void)
{
    cc_metrics_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    pthread_mutex_init(&self->lock, NULL);
    return self;
}

void
cc_metrics_destroy(cc_metrics_t **self_p)
{
    if (!self_p || !*self_p) return;
    cc_metrics_t *self = *self_p;
    for (cc_metric_t *m = self->head, *next; m; m = next) {
        next = m->next;
        free(m->name);
        free(m->labels);
        free(m->help);
        free(m);
    }
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

static cc_metric_t *
s_get(cc_metrics_t *self, const char *name, const char *labels, const char *help, bool gauge)
{
    labels = labels ? labels : "";
    pthread_mutex_lock(&self->lock);
    cc_metric_t *m = self->head;
    for (; m; m = m->next)
        if (strcmp(m->name, name) == 0 && strcmp(m->labels, labels) == 0) break;
    if (!m) {
        m = calloc(1, sizeof *m);
        if (!m) abort();
        m->name = strdup(name);
        m->labels = strdup(labels);
        m->help = strdup(help ? help : "");
        if (!m->name || !m->labels || !m->help) abort();
        m->gauge = gauge;
        if (self->tail) self->tail->next = m;
        else self->head = m;
        self->tail = m;
    }
    pthread_mutex_unlock(&self->lock);
    assert(m->gauge == gauge);
    return m;
}

cc_metric_t *
cc_metrics_counter(cc_metrics_t *self, const char *name, const char *labels, const char *help)
{
    return s_get(self, name, labels, help, false);
}

cc_metric_t *
cc_metrics_gauge(cc_metrics_t *self, const char *name, const char *labels, const char *help)
{
    return s_get(self, name, labels, help, true);
}

void cc_metric_add(cc_metric_t *m, int64_t n) { atomic_fetch_add_explicit(&m->value, n, memory_order_relaxed); }
void cc_metric_set(cc_metric_t *m, int64_t v) { atomic_store_explicit(&m->value, v, memory_order_relaxed); }
int64_t cc_metric_get(const cc_metric_t *m) { return atomic_load_explicit(&((cc_metric_t *) m)->value, memory_order_relaxed); }

char *
cc_metrics_render(cc_metrics_t *self)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out) abort();
    pthread_mutex_lock(&self->lock);
    for (cc_metric_t *m = self->head; m; m = m->next) {
        /* HELP/TYPE once per name: only before its first series. */
        bool first = true;
        for (cc_metric_t *p = self->head; p != m; p = p->next)
            if (strcmp(p->name, m->name) == 0) { first = false; break; }
        if (first)
            fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                    m->gauge ? "gauge" : "counter");
        fprintf(out, "%s%s%s%s %lld\n", m->name, *m->labels ? "{" : "", m->labels,
                *m->labels ? "}" : "", (long long) cc_metric_get(m));
    }
    pthread_mutex_unlock(&self->lock);
    fclose(out);
    return buf;
}

void
cc_metrics_test(void)
{
    cc_metrics_t *m = cc_metrics_new();
    cc_metric_t *a = cc_metrics_counter(m, "cc_test_total", "kind=\"a\"", "things counted");
    cc_metric_t *b = cc_metrics_counter(m, "cc_test_total", "kind=\"b\"", "things counted");
    cc_metric_t *g = cc_metrics_gauge(m, "cc_test_level", NULL, "a level");
    assert(cc_metrics_counter(m, "cc_test_total", "kind=\"a\"", NULL) == a);
    cc_metric_add(a, 3);
    cc_metric_add(b, 1);
    cc_metric_set(g, -5);
    char *text = cc_metrics_render(m);
    assert(strstr(text, "# HELP cc_test_total things counted\n# TYPE cc_test_total counter\n"
                        "cc_test_total{kind=\"a\"} 3\ncc_test_total{kind=\"b\"} 1\n"));
    assert(strstr(text, "# TYPE cc_test_level gauge\ncc_test_level -5\n"));
    free(text);
    cc_metrics_destroy(&m);
    assert(!m);
}
