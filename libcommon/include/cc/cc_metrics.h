/* cc_metrics: counters and gauges rendered in Prometheus text format.
 *
 * Values are atomics: any thread may update them and the admin HTTP threads
 * render them without locks on the hot path. Registration takes a mutex. */
#ifndef CC_METRICS_H
#define CC_METRICS_H

#include <stdint.h>

typedef struct _cc_metrics_t cc_metrics_t;
typedef struct _cc_metric_t cc_metric_t;

cc_metrics_t *cc_metrics_new(void);
void cc_metrics_destroy(cc_metrics_t **self_p);

/* Returns the counter (or gauge) name{labels}, creating it on first use; the
 * registry owns it. labels is NULL or 'k="v",k2="v2"'. Same name, same help. */
cc_metric_t *cc_metrics_counter(cc_metrics_t *self, const char *name, const char *labels, const char *help);
cc_metric_t *cc_metrics_gauge(cc_metrics_t *self, const char *name, const char *labels, const char *help);

void cc_metric_add(cc_metric_t *m, int64_t n);
void cc_metric_set(cc_metric_t *m, int64_t v);
int64_t cc_metric_get(const cc_metric_t *m);

/* Returns the exposition text; the caller frees it. */
char *cc_metrics_render(cc_metrics_t *self);

void cc_metrics_test(void);

#endif
