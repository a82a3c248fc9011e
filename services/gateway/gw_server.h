/* gw_server: the gateway service object: starts the media thread, stores
 * the CDRs it hands over, reports health and metrics. */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include "cc/cc_service.h"

typedef struct _gw_server_t gw_server_t;

extern const cc_service_def_t gw_service_def;

/* NULL when SIP cannot be bound or the routes or trunks are invalid (logged). */
gw_server_t *gw_server_new(cc_service_t *svc);
void gw_server_destroy(gw_server_t **self_p);

#endif
