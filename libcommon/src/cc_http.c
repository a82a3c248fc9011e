/* cc_http: CivetWeb server wrapper shared by every HTTP surface. */
#include "cc/cc_http.h"
#include "cc/cc_log.h"

#include <assert.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _cc_http_t {
    struct mg_context *ctx;
    int port;
};

static pthread_once_t s_init_once = PTHREAD_ONCE_INIT;
static void s_init(void) { mg_init_library(0); }

static int
s_log_message(const struct mg_connection *conn, const char *message)
{
    (void) conn;
    char text[512];
    snprintf(text, sizeof text, "%s", message);
    char *nl = strchr(text, '\n');
    if (nl) *nl = '\0';
    CC_WARN("http server", "detail=\"%s\"", text);
    return 1;
}

cc_http_t *
cc_http_new(const char *host, int port, int threads)
{
    pthread_once(&s_init_once, s_init);
    char ports[300], nthreads[16];
    snprintf(ports, sizeof ports, "%s:%d", host, port);
    snprintf(nthreads, sizeof nthreads, "%d", threads > 0 ? threads : 2);
    const char *options[] = {
        "listening_ports", ports,
        "num_threads", nthreads,
        "request_timeout_ms", "10000",
        "enable_keep_alive", "yes",
        /* Answers leave at once: with Nagle a reply on a keep-alive
         * connection waits for the client's delayed ACK (40 ms). */
        "tcp_nodelay", "1",
        NULL
    };
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.log_message = s_log_message;
    struct mg_init_data init = { &cb, NULL, options };
    struct mg_error_data err;
    char errtext[256] = "";
    memset(&err, 0, sizeof err);
    err.text = errtext;
    err.text_buffer_size = sizeof errtext;
    struct mg_context *ctx = mg_start2(&init, &err);
    if (!ctx) {
        CC_ERROR("http listen failed", "address=%s error=\"%s\"", ports, errtext);
        return NULL;
    }
    cc_http_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->ctx = ctx;
    struct mg_server_port sp[4];
    int n = mg_get_server_ports(ctx, 4, sp);
    self->port = n > 0 ? sp[0].port : port;
    return self;
}

void
cc_http_destroy(cc_http_t **self_p)
{
    if (!self_p || !*self_p) return;
    cc_http_t *self = *self_p;
    mg_stop(self->ctx);
    free(self);
    *self_p = NULL;
}

void
cc_http_route(cc_http_t *self, const char *path, cc_http_fn *fn, void *arg)
{
    mg_set_request_handler(self->ctx, path, fn, arg);
}

int cc_http_port(cc_http_t *self) { return self->port; }

static const char *
s_reason(int status)
{
    const char *r = mg_get_response_code_text(NULL, status);
    return r ? r : "";
}

int
cc_http_send(struct mg_connection *conn, int status, const char *content_type,
             const char *body, size_t len)
{
    /* Head and body in one write (one segment for small replies). */
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n\r\n",
                     status, s_reason(status), content_type, len);
    assert(n > 0 && (size_t) n < sizeof head);   /* content types are the program's constants */
    char *all = malloc((size_t) n + len + 1);
    if (!all) abort();
    memcpy(all, head, (size_t) n);
    if (len) memcpy(all + n, body, len);
    mg_write(conn, all, (size_t) n + len);
    free(all);
    return status;
}

int
cc_http_error(struct mg_connection *conn, int status, const char *reason)
{
    json_t *j = json_pack("{s:s}", "error", reason);
    char *text = json_dumps(j, JSON_COMPACT);
    cc_http_send(conn, status, "application/json", text, strlen(text));
    free(text);
    json_decref(j);
    return status;
}
