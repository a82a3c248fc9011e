/* acd_server: the ACD service object: request handlers, events, the tick. */
#ifndef ACD_SERVER_H
#define ACD_SERVER_H

#include "cc/cc_service.h"

typedef struct _acd_server_t acd_server_t;

extern const cc_service_def_t acd_service_def;

/* Binds the request endpoint, loads the queues from PostgreSQL into Redis and
 * starts the tick. NULL on failure (logged). */
acd_server_t *acd_server_new(cc_service_t *svc);
void acd_server_destroy(acd_server_t **self_p);

#endif
