/* os_server: the order-sync service object: the platform HTTP API and the
 * bus lookups. */
#ifndef OS_SERVER_H
#define OS_SERVER_H

#include "cc/cc_service.h"

typedef struct _os_server_t os_server_t;

extern const cc_service_def_t os_service_def;

os_server_t *os_server_new(cc_service_t *svc);
void os_server_destroy(os_server_t **self_p);

#endif
