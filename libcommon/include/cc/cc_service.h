/* cc_service: the skeleton every service stands on.
 *
 * From a service definition (name, config keys, admin port key, what it
 * needs) it parses the command line (--help, --print-config, --check-config,
 * --config FILE), loads and validates the configuration, starts structured
 * logging, connects what the service needs (bus through the forwarder,
 * PostgreSQL, Redis; each with reconnect), serves /healthz and /metrics on
 * the admin port, and runs one libuv loop until SIGTERM or SIGINT, when it
 * calls the service's stop hooks and returns. A service's main() is:
 *
 *     int code;
 *     cc_service_t *svc = cc_service_new(&acd_def, argc, argv, &code);
 *     if (!svc) return code;
 *     acd_server_t *server = acd_server_new(svc);
 *     int rc = server ? cc_service_run(svc) : 1;
 *     acd_server_destroy(&server);
 *     cc_service_destroy(&svc);
 *     return rc;
 */
#ifndef CC_SERVICE_H
#define CC_SERVICE_H

#include <stdbool.h>

#include "cc/cc_bus.h"
#include "cc/cc_cfg.h"
#include "cc/cc_http.h"
#include "cc/cc_loop.h"
#include "cc/cc_metrics.h"
#include "cc/cc_pg.h"
#include "cc/cc_redis.h"

#define CC_NEED_BUS   0x1u   /* publisher + subscriber through the forwarder */
#define CC_NEED_PG    0x2u
#define CC_NEED_REDIS 0x4u

typedef struct {
    const char *name;            /* "acd": logs, metrics, default instance */
    const char *summary;         /* one line for --help */
    const cc_cfg_key_t *keys;    /* the service's own keys, or NULL */
    const char *admin_port_key;  /* e.g. "ACD_ADMIN_PORT" (declared in keys) */
    unsigned needs;              /* CC_NEED_* */
} cc_service_def_t;

typedef struct _cc_service_t cc_service_t;
typedef void (cc_service_hook_fn)(void *arg);
typedef bool (cc_service_check_fn)(void *arg);

/* The keys every service has (log level, instance, bus, database, redis...). */
extern const cc_cfg_key_t cc_service_common_keys[];

/* Returns the running service, or NULL with *exit_code set: 0 after --help,
 * --print-config or --check-config; 2 for bad usage or configuration (the
 * message names the key and value); 1 when a dependency cannot be reached or
 * the admin port cannot be bound. */
cc_service_t *cc_service_new(const cc_service_def_t *def, int argc, char **argv, int *exit_code);
void cc_service_destroy(cc_service_t **self_p);

/* Runs the loop until a stop signal or cc_service_stop(). Returns 0. */
int cc_service_run(cc_service_t *self);
/* Asks the loop to stop (from the loop thread). */
void cc_service_stop(cc_service_t *self);

/* Hooks run on the loop thread: on stop (before the loop exits, in reverse
 * order of registration) and on SIGHUP. */
void cc_service_on_stop(cc_service_t *self, cc_service_hook_fn *fn, void *arg);
void cc_service_on_reload(cc_service_t *self, cc_service_hook_fn *fn, void *arg);
/* Removes hooks registered with arg (before arg is freed). */
void cc_service_off(cc_service_t *self, void *arg);
/* Calls fn for every bus event whose type starts with prefix (subscribed
 * here), on the loop thread. Needs CC_NEED_BUS. */
void cc_service_on_event(cc_service_t *self, const char *prefix, cc_bus_event_fn *fn, void *arg);

/* Adds a component to /healthz; fn runs on an HTTP thread (thread-safe). */
void cc_service_add_check(cc_service_t *self, const char *name, cc_service_check_fn *fn, void *arg);

cc_cfg_t *cc_service_cfg(cc_service_t *self);
cc_loop_t *cc_service_loop(cc_service_t *self);
cc_metrics_t *cc_service_metrics(cc_service_t *self);
cc_http_t *cc_service_admin(cc_service_t *self);
/* NULL when the service did not declare the need. */
cc_bus_t *cc_service_bus(cc_service_t *self);
cc_pg_t *cc_service_pg(cc_service_t *self);
cc_redis_t *cc_service_redis(cc_service_t *self);
const char *cc_service_name(cc_service_t *self);
const char *cc_service_instance(cc_service_t *self);

#endif
