/* os_writer: group commit. HTTP threads hand verified, validated events to
 * one writer thread, which applies everything waiting as one batch
 * (commerce.apply_batch: each event in its own subtransaction) in one
 * transaction, then answers each caller with its own results and hands the
 * bus events of the committed changes to the service loop. The writer also
 * refreshes the platform table. */
#ifndef OS_WRITER_H
#define OS_WRITER_H

#include "os_platforms.h"
#include "cc/cc_metrics.h"

#define OS_BATCH_LIMIT 64        /* see commerce.apply_batch */

typedef struct _os_writer_t os_writer_t;

typedef struct {
    const char *db_url;
    int reconnect_ms;
    int batch_max;               /* events per transaction, 1..OS_BATCH_LIMIT */
    int refresh_ms;              /* platform table re-read every refresh_ms */
    int wait_ms;                 /* a caller gives up (503) after wait_ms */
    os_platforms_t *platforms;   /* loaded before os_writer_new returns; NULL: another writer keeps it */
    const char *changes;         /* PULL endpoint of the loop: frames topic, key, protobuf */
    cc_metrics_t *metrics;       /* required: batches, events, failures, dropped events */
} os_writer_opts_t;

/* Starts the writer thread. NULL when its sockets cannot be made (logged). */
os_writer_t *os_writer_new(const os_writer_opts_t *opts);
/* Applies what is queued, then stops the thread. */
void os_writer_destroy(os_writer_t **self_p);

/* Asks the writer to read the platform table again now (any thread that
 * created the writer). */
void os_writer_reload(os_writer_t *self);

/* Applies events (a JSON array text of 1..batch_max events, {"kind",
 * "platform", "event_id", "data"}) and returns once they are committed or
 * refused: 0 with *results_p (a JSON array text, one {"code", "result" |
 * "error"} per event; the caller frees it), CC_ECONN when the database could
 * not take them (nothing committed), CC_ETIMEDOUT when no answer came within
 * wait_ms (the outcome is unknown; the platform's retry is de-duplicated).
 * Safe from any thread. */
int os_writer_apply(os_writer_t *self, const char *events, int count, char **results_p);

#endif
