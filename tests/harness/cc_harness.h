/* cc_harness: private servers and processes for one test.
 *
 * Starts PostgreSQL, Redis, the bus forwarder and service binaries on free
 * loopback ports under a fresh temporary folder, and stops every one of them
 * when the harness is destroyed, when the test fails (assert, crash, SIGTERM
 * from ctest's timeout: handlers kill them), or when the test process is
 * killed outright (each child has a parent-death signal). Settings that
 * services read (DATABASE_URL, REDIS_URL, CC_BUS_PUB, ...) are put in the
 * environment, so spawned services find the private servers.
 *
 * Failures to start a server abort the test with a message: a harness that
 * cannot set up is a failed test, not a skipped one. */
#ifndef CC_HARNESS_H
#define CC_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct _cc_harness_t cc_harness_t;

cc_harness_t *cc_harness_new(const char *test_name);
void cc_harness_destroy(cc_harness_t **self_p);
const char *cc_harness_dir(cc_harness_t *self);

/* A port on 127.0.0.1 free for UDP and TCP now: cc_harness_free_ports(1),
 * so no client socket's ephemeral port and no other test takes it meanwhile
 * (a port from the kernel's ephemeral range could be). */
int cc_harness_free_port(void);
/* The first of count (1..64) consecutive ports on 127.0.0.1, each free for
 * UDP and TCP now, for a process that binds fixed ports (SIPp's -p, and -mp
 * with -mp + 2; baresip's SIP and RTP; a gateway's SIP port). They come
 * from 10000-19999: below the kernel's ephemeral ports (no client socket
 * lands there meanwhile) and below every gateway's RTP range (the stack's
 * 20000-29999, the tests' 30000 and up), so a gateway picking RTP ports
 * never takes them. Every test on the machine takes its blocks in turn from
 * one counter (a locked file), so a block handed out is not handed out again
 * until the other 9,999 ports have been. Aborts the test when none is free. */
int cc_harness_free_ports(int count);
/* Waits until a process binds UDP port of 127.0.0.1 (a SIPp that must be
 * listening before it is called). Returns true, or false on timeout. */
bool cc_harness_wait_udp_bound(int port, int timeout_ms);

/* Starts a private PostgreSQL; returns its DATABASE_URL (also exported). */
const char *cc_harness_start_pg(cc_harness_t *self);
void cc_harness_stop_pg(cc_harness_t *self);
/* Stops and starts it again on the same port and data. */
void cc_harness_restart_pg(cc_harness_t *self);

/* Starts a private Redis; returns its REDIS_URL (also exported). */
const char *cc_harness_start_redis(cc_harness_t *self);
void cc_harness_stop_redis(cc_harness_t *self);
void cc_harness_restart_redis(cc_harness_t *self);

/* Starts the forwarder binary on free ports; exports CC_BUS_PUB/CC_BUS_SUB
 * and FORWARDER_ADMIN_PORT. Returns its pid. */
pid_t cc_harness_start_forwarder(cc_harness_t *self, bool nodrop, int hwm);

/* Spawns a built binary ("forwarder" or a path) with extra argv; its output
 * goes to <dir>/<name>.log. Returns its pid. */
pid_t cc_harness_spawn(cc_harness_t *self, const char *name, const char *const *args);
/* Same, with the output in <dir>/<label>.log. */
pid_t cc_harness_spawn_as(cc_harness_t *self, const char *label, const char *name, const char *const *args);
/* Sends sig and waits up to timeout_ms. Returns the exit status as
 * waitpid() gives it, or -1 after SIGKILL on timeout. */
int cc_harness_stop(cc_harness_t *self, pid_t pid, int sig, int timeout_ms);

/* acd and the gateway wired to each other on free ports: the call path. */
typedef struct {
    char acd_rpc[64], gw_rpc[64];
    int acd_admin, gw_admin, sip_port;
    pid_t acd, gateway;
} cc_callpath_t;

/* Starts acd, then the gateway with routes and RTP ports from rtp_base (100
 * of them), both healthy (aborts the test otherwise). Their migrations must
 * be applied. */
void cc_harness_start_callpath(cc_harness_t *self, cc_callpath_t *p, const char *routes, int rtp_base);

/* GETs http://127.0.0.1:port/path. Returns the status (0 if unreachable)
 * and the body in *body_p (caller frees; may be NULL). */
int cc_harness_http_get(int port, const char *path, char **body_p);
/* POSTs body to http://127.0.0.1:port/path with extra header lines
 * ("Name: value\r\n" each, may be ""). Returns the status (0 if unreachable)
 * and the reply body in *body_p (caller frees; may be NULL). */
int cc_harness_http_post(int port, const char *path, const char *headers, const char *body, char **body_p);
/* GET path with extra header lines (each ending in CRLF). Same returns. */
int cc_harness_http_get_with(int port, const char *path, const char *headers, char **body_p);
/* Waits until GET path answers 200. Returns true, or false on timeout. */
bool cc_harness_wait_http(int port, const char *path, int timeout_ms);

/* Full path of a built binary by service name (or the name if it has '/'). */
const char *cc_harness_bin(const char *name, char *buf, size_t cap);
/* Reads a whole file (caller frees), NULL when absent. */
char *cc_harness_read_file(const char *path);

/* Measured values (latencies, step times) for a benchmark's percentiles:
 * zero-initialised, grown as values are added. */
typedef struct { double *v; size_t n, cap; bool sorted; } cc_samples_t;
void cc_samples_add(cc_samples_t *s, double x);
/* The p-quantile (0 to 1) of the values: the value ranked p * n, 0 when
 * there is none (sorts them on first use). */
double cc_samples_quantile(cc_samples_t *s, double p);
void cc_samples_free(cc_samples_t *s);

#endif
