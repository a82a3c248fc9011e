/* cc_http: the one HTTP (and WebSocket) server of the project, on CivetWeb.
 *
 * Every HTTP surface (admin /healthz and /metrics, the agent API, the
 * platform API, reports) registers its routes here. Handlers run on
 * CivetWeb's worker threads: they must only touch thread-safe state. */
#ifndef CC_HTTP_H
#define CC_HTTP_H

#include <civetweb.h>
#include <stddef.h>

typedef struct _cc_http_t cc_http_t;

/* Returns the HTTP status sent (CivetWeb's convention: a value > 0). */
typedef int (cc_http_fn)(struct mg_connection *conn, void *arg);

/* Listens on host:port with threads workers. NULL when the port cannot be
 * bound (logged with the reason). */
cc_http_t *cc_http_new(const char *host, int port, int threads);
void cc_http_destroy(cc_http_t **self_p);

/* Routes an exact path (CivetWeb's URI pattern rules) to fn. */
void cc_http_route(cc_http_t *self, const char *path, cc_http_fn *fn, void *arg);
/* The port actually bound. */
int cc_http_port(cc_http_t *self);

/* Sends a complete response. Returns status. */
int cc_http_send(struct mg_connection *conn, int status, const char *content_type,
                 const char *body, size_t len);
/* Sends {"error": reason} with status. Returns status. */
int cc_http_error(struct mg_connection *conn, int status, const char *reason);

#endif
