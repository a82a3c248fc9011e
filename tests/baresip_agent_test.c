/* baresip_agent_test: baresip as the agent's softphone, against the gateway
 * and acd, every part real.
 *
 * baresip runs headless in the test's folder: its own config, a 440 Hz
 * sine as microphone, the audio bridge as a null speaker, its sndfile module
 * writing what it hears, and its ctrl_tcp socket, over which the test adds
 * the account (auto or manual answer), answers, hangs up, and reads its
 * events. The SIPp callers echo what they hear, so baresip hears its own
 * tone back through both legs. Hand-made REGISTERs (user 1002) probe the
 * registrar's answers to malformed and hostile requests.
 *
 * wrong_password_is_refused
 * right_password_registers
 * queued_caller_is_bridged_to_baresip_and_audio_flows_both_ways
 * unregister_on_exit_removes_the_registration
 * phone_on_tcp_registers_and_is_rung_over_tcp
 * pcma_phone_and_pcmu_caller_are_bridged_through_conversion
 * unanswered_and_declined_offers_then_a_manual_answer_and_the_agent_hangs_up
 * malformed_registers_get_the_right_status_and_the_next_one_works
 * unrefreshed_registration_expires_and_the_offer_puts_the_agent_not_ready
 * registration_survives_a_gateway_restart
 * registration_while_postgresql_is_down_is_stored_when_it_is_back */
#define _GNU_SOURCE
#include "cc_check.h"
#include "cc_harness.h"
#include "cc/cc_bus.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_redis.h"
#include "cc/cc_rpc.h"
#include "cc/cc_util.h"
#include "agent.pb-c.h"
#include "call.pb-c.h"

/* libre's own headers, not <re.h>: its JSON types clash with jansson's. */
#include <re_types.h>
#include <re_fmt.h>
#include <re_mem.h>
#include <re_mbuf.h>
#include <re_list.h>
#include <re_sa.h>
#include <re_tmr.h>
#include <re_uri.h>
#include <re_msg.h>
#include <re_sip.h>
#include <re_md5.h>
#include <re_httpauth.h>
#include <arpa/inet.h>
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <sndfile.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CC_SOURCE_DIR
#error "CC_SOURCE_DIR must be defined"
#endif

static cc_harness_t *s_h;
static cc_callpath_t s_path;
static cc_pg_t *s_pg;
static cc_bus_t *s_events;

/* ------------------------------------------------------------- baresip */

typedef struct {
    char label[32];
    char dir[512];
    int sip_port, ctrl_port;
    pid_t pid;
    int fd;                    /* ctrl_tcp connection */
    json_t *pending;           /* events read while waiting for a response */
    char buf[65536];
    size_t len;
} phone_t;

static json_t *s_phone_next(phone_t *p, int timeout_ms);

/* Runs a baresip command over ctrl_tcp; fails the test unless it succeeds.
 * Events that come first are kept for s_phone_event. */
static void
s_phone_cmd(phone_t *p, const char *command, const char *params)
{
    json_t *req = json_pack("{s:s, s:s, s:s}", "command", command, "params", params, "token", "t");
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char *frame = NULL;
    int n = asprintf(&frame, "%zu:%s,", strlen(text), text);
    CHECK(n > 0 && send(p->fd, frame, (size_t) n, 0) == n, "send to baresip");
    free(frame);
    free(text);
    for (;;) {
        json_t *j = s_phone_next(p, 10000);
        CHECK(j, "no answer from baresip to %s", command);
        if (json_is_true(json_object_get(j, "response"))) {
            CHECK(json_is_true(json_object_get(j, "ok")), "baresip %s %s: %s", command, params,
                  json_string_value(json_object_get(j, "data")));
            json_decref(j);
            return;
        }
        json_array_append_new(p->pending, j);
    }
}

/* Starts baresip, connects to its control socket, then adds the account of
 * user with password, registration interval, SIP transport ("udp" or
 * "tcp"), codecs ("PCMU,PCMA") and answer mode ("auto", "manual"), after
 * the connection, so that no registration event is missed. */
static void
s_phone_start(phone_t *p, const char *label, const char *user, const char *password, int regint, const char *transport,
              const char *codecs, const char *answermode)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    snprintf(p->dir, sizeof p->dir, "%s/%s", cc_harness_dir(s_h), label);
    CHECK(mkdir(p->dir, 0755) == 0 || errno == EEXIST, "mkdir %s", p->dir);
    p->sip_port = cc_harness_free_ports(2);   /* SIP over UDP and TCP, then TLS */
    p->ctrl_port = cc_harness_free_port();
    int rtp = cc_harness_free_ports(20);
    char path[600];
    snprintf(path, sizeof path, "%s/config", p->dir);
    FILE *f = fopen(path, "w");
    CHECK(f, "write %s", path);
    fprintf(f, "poll_method\tepoll\n"
               "sip_listen\t127.0.0.1:%d\n"
               "net_interface\t127.0.0.1\n"
               "audio_source\tausine,440\n"
               "ausrc_srate\t48000\n"   /* ausine makes 48 kHz stereo only: resampled */
               "ausrc_channels\t2\n"
               "audio_player\taubridge,speaker\n"
               "audio_alert\taubridge,alert\n"
               "rtp_ports\t%d-%d\n"
               "rtp_stats\tyes\n"
               "module_path\t/usr/lib/baresip/modules\n"
               "module\tg711.so\n"
               "module\tausine.so\n"
               "module\taubridge.so\n"
               "module\tsndfile.so\n"   /* what it hears, decoded, into dump-*-dec.wav */
               "snd_path\t%s\n"
               "module_app\taccount.so\n"
               "module_app\tmenu.so\n"
               "module_app\tctrl_tcp.so\n"
               "ctrl_tcp_listen\t127.0.0.1:%d\n",
            p->sip_port, rtp, rtp + 19, p->dir, p->ctrl_port);
    fclose(f);
    snprintf(path, sizeof path, "%s/accounts", p->dir);
    f = fopen(path, "w");
    CHECK(f, "write %s", path);
    fclose(f);   /* none at start */
    const char *args[] = { "-f", p->dir, NULL };
    p->pid = cc_harness_spawn_as(s_h, label, "/usr/bin/baresip", args);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) p->ctrl_port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0;; i++) {
        p->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(p->fd, (struct sockaddr *) &a, sizeof a) == 0) break;
        close(p->fd);
        CHECK(i < 200, "baresip's ctrl_tcp never listened (see %s/%s.log)", cc_harness_dir(s_h), label);
        cc_sleep_ms(50);
    }
    p->pending = json_array();
    char account[512];
    snprintf(account, sizeof account, "<sip:%s@127.0.0.1:%d;transport=%s>;auth_pass=%s;regint=%d;answermode=%s;"
             "audio_codecs=%s", user, s_path.sip_port, transport, password, regint, answermode, codecs);
    s_phone_cmd(p, "uanew", account);
}

/* Stops baresip with sig; returns when it has exited. */
static void
s_phone_stop(phone_t *p, int sig)
{
    if (p->fd > 0) close(p->fd);
    p->fd = -1;
    json_decref(p->pending);
    p->pending = NULL;
    cc_harness_stop(s_h, p->pid, sig, 15000);
    p->pid = 0;
}

/* The next netstring-framed JSON message from baresip, or NULL after
 * timeout_ms. The caller owns the result. */
static json_t *
s_phone_next(phone_t *p, int timeout_ms)
{
    int64_t end = cc_mono_ms() + timeout_ms;
    for (;;) {
        char *colon = memchr(p->buf, ':', p->len);
        if (colon) {
            size_t n = strtoul(p->buf, NULL, 10), head = (size_t) (colon - p->buf) + 1;
            CHECK(head + n + 1 <= sizeof p->buf, "message of %zu bytes from baresip", n);
            if (p->len >= head + n + 1) {
                CHECK(p->buf[head + n] == ',', "netstring from baresip ends with '%c'", p->buf[head + n]);
                json_error_t jerr;
                json_t *j = json_loadb(p->buf + head, n, 0, &jerr);
                CHECK(j, "JSON from baresip: %s", jerr.text);
                memmove(p->buf, p->buf + head + n + 1, p->len - head - n - 1);
                p->len -= head + n + 1;
                return j;
            }
        }
        int64_t left = end - cc_mono_ms();
        if (left <= 0) return NULL;
        struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
        if (poll(&pfd, 1, (int) left) <= 0) continue;
        ssize_t r = recv(p->fd, p->buf + p->len, sizeof p->buf - p->len, 0);
        CHECK(r > 0, "baresip closed its control socket (see %s/%s.log)", cc_harness_dir(s_h), p->label);
        p->len += (size_t) r;
    }
}

/* Waits for baresip's event type; returns its param (caller frees). */
static char *
s_phone_event(phone_t *p, const char *type, int timeout_ms)
{
    int64_t end = cc_mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = end - cc_mono_ms();
        json_t *j = NULL;
        if (json_array_size(p->pending)) {
            j = json_incref(json_array_get(p->pending, 0));
            json_array_remove(p->pending, 0);
        } else if (left > 0) {
            j = s_phone_next(p, (int) left);
        }
        CHECK(j, "no %s event from baresip (see %s/%s.log)", type, cc_harness_dir(s_h), p->label);
        const char *t = json_string_value(json_object_get(j, "type"));
        const char *param = json_string_value(json_object_get(j, "param"));
        printf("%s: event %s \"%s\"\n", p->label, t ? t : "-", param ? param : "");
        if (t && strcmp(t, type) == 0) {
            char *out = strdup(param ? param : "");
            json_decref(j);
            return out;
        }
        json_decref(j);
    }
}

/* The RTP packets baresip sent and received in its call, from the summary
 * it prints when the call's stream ends (rtp_stats), and whether RTCP
 * reports reached it, on its RTCP port and not its RTP port. */
static void
s_phone_rtp(phone_t *p, long *tx, long *rx, bool *rtcp_ok)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s.log", cc_harness_dir(s_h), p->label);
    char *log = cc_harness_read_file(path);
    CHECK(log, "read %s", path);
    const char *line = strstr(log, "\npackets:");
    CHECK(line && sscanf(line, "\npackets: %ld %ld", tx, rx) == 2, "no RTP summary in %s", path);
    *rtcp_ok = strstr(log, "\npkt.report:") && !strstr(log, "RTCP packet on RTP port");
    free(log);
}

/* How much of what baresip heard is a tone of hz: the share of each 100 ms
 * block's power at hz (Goertzel), averaged over the blocks with sound, from
 * the decoded audio its sndfile module wrote. Near 1 for a clean tone; a
 * garbled conversion spreads the power. *blocks_p gets how many counted. */
static double
s_phone_tone_share(phone_t *p, double hz, int *blocks_p)
{
    char pattern[600];
    snprintf(pattern, sizeof pattern, "%s/dump-*-dec.wav", p->dir);
    glob_t g;
    CHECK(glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc == 1, "one %s", pattern);
    SF_INFO info = { 0 };
    SNDFILE *sf = sf_open(g.gl_pathv[0], SFM_READ, &info);
    CHECK(sf && info.samplerate == 8000 && info.channels == 1, "8 kHz mono in %s", g.gl_pathv[0]);
    globfree(&g);
    enum { BLOCK = 800 };
    short x[BLOCK];
    double sum = 0;
    int blocks = 0;
    double w = 2 * M_PI * hz / 8000, coeff = 2 * cos(w);
    while (sf_read_short(sf, x, BLOCK) == BLOCK) {
        double s1 = 0, s2 = 0, energy = 0;
        for (int i = 0; i < BLOCK; i++) {
            double s0 = x[i] + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
            energy += (double) x[i] * x[i];
        }
        if (energy < BLOCK * 100.0 * 100.0) continue;   /* silence: below an amplitude of about 100 */
        double power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        sum += 2 * power / (BLOCK * energy);
        blocks++;
    }
    sf_close(sf);
    *blocks_p = blocks;
    return blocks ? sum / blocks : 0;
}

/* ----------------------------------------------------------------- helpers */

static void
s_sql(const char *sql)
{
    CHECK(cc_pg_run(s_pg, sql, NULL) == 0, "%s: %s", sql, cc_pg_error(s_pg));
}

static int
s_wait(pid_t pid, int ms)
{
    int status = cc_harness_stop(s_h, pid, 0, ms);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A SIPp caller of service with scenario; -rtp_echo when echo; its pauses
 * last pause_ms. */
static pid_t
s_caller(const char *label, const char *scenario, const char *service, bool echo, int pause_ms)
{
    char sf[512], remote[64], lp[16], mp[16], d[16];
    snprintf(sf, sizeof sf, "%s/services/gateway/tests/sipp/%s.xml", CC_SOURCE_DIR, scenario);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", s_path.sip_port);
    snprintf(lp, sizeof lp, "%d", cc_harness_free_ports(1));
    snprintf(mp, sizeof mp, "%d", cc_harness_free_ports(3));   /* SIPp binds mp and mp + 2 */
    snprintf(d, sizeof d, "%d", pause_ms);
    const char *args[] = { "-sf", sf, "-s", service, "-m", "1", "-p", lp, "-mp", mp, "-d", d, "-nostdin", "-timeout",
                           "60s", "-timeout_error", echo ? "-rtp_echo" : remote, echo ? remote : NULL, NULL };
    return cc_harness_spawn_as(s_h, label, "/usr/bin/sipp", args);
}

/* A number from the gateway's /metrics; -1 when the metric is absent. */
static long
s_metric(const char *name)
{
    char *body = NULL;
    CHECK(cc_harness_http_get(s_path.gw_admin, "/metrics", &body) == 200, "gateway /metrics");
    long v = -1;
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *at = strstr(body, key);
    if (at) v = atol(at + strlen(key));
    free(body);
    return v;
}

/* Waits for the metric name to read want (the gateway refreshes its
 * gauges every second); fails the test otherwise. */
static void
s_metric_becomes(const char *name, long want, int timeout_ms)
{
    long v = -1;
    for (int64_t end = cc_mono_ms() + timeout_ms; cc_mono_ms() < end; cc_sleep_ms(100))
        if ((v = s_metric(name)) == want) return;
    CHECK(0, "%s is %ld, not %ld", name, v, want);
}

/* Waits for the counter name to reach at least want. */
static void
s_metric_reaches(const char *name, long want, int timeout_ms)
{
    long v = -1;
    for (int64_t end = cc_mono_ms() + timeout_ms; cc_mono_ms() < end; cc_sleep_ms(100))
        if ((v = s_metric(name)) >= want) return;
    CHECK(0, "%s is %ld, not %ld or more", name, v, want);
}

/* The next agent.registered event of agent; fails the test after
 * timeout_ms. */
static Cc__AgentRegistered *
s_registered_event(const char *agent, int timeout_ms)
{
    Cc__Envelope *env = NULL;
    for (int64_t end = cc_mono_ms() + timeout_ms; cc_mono_ms() < end;) {
        if (cc_bus_recv(s_events, &env, 100) != 0) continue;
        if (strcmp(env->type, "agent.registered") == 0) {
            Cc__AgentRegistered *r = cc__agent_registered__unpack(NULL, env->payload.len, env->payload.data);
            cc__envelope__free_unpacked(env, NULL);
            CHECK(r, "agent.registered payload");
            if (strcmp(r->agent_id, agent) == 0) return r;
            cc__agent_registered__free_unpacked(r, NULL);
            continue;
        }
        cc__envelope__free_unpacked(env, NULL);
    }
    CHECK(0, "no agent.registered event");
    return NULL;
}

/* The call id of the next call.bridged event; fails the test after
 * timeout_ms. The caller frees it. */
static char *
s_bridged_call(int timeout_ms)
{
    Cc__Envelope *env = NULL;
    for (int64_t end = cc_mono_ms() + timeout_ms; cc_mono_ms() < end;) {
        if (cc_bus_recv(s_events, &env, 100) != 0) continue;
        if (strcmp(env->type, "call.bridged") == 0) {
            Cc__CallBridged *b = cc__call_bridged__unpack(NULL, env->payload.len, env->payload.data);
            cc__envelope__free_unpacked(env, NULL);
            CHECK(b && strcmp(b->agent_id, "1001") == 0, "call.bridged to agent %s", b ? b->agent_id : "?");
            char *id = strdup(b->call_id);
            cc__call_bridged__free_unpacked(b, NULL);
            return id;
        }
        cc__envelope__free_unpacked(env, NULL);
    }
    CHECK(0, "no call.bridged event");
    return NULL;
}

static bool
s_bus_saw(const char *type, int timeout_ms)
{
    Cc__Envelope *env = NULL;
    for (int64_t end = cc_mono_ms() + timeout_ms; cc_mono_ms() < end;) {
        if (cc_bus_recv(s_events, &env, 100) != 0) continue;
        bool hit = strcmp(env->type, type) == 0;
        cc__envelope__free_unpacked(env, NULL);
        if (hit) return true;
    }
    return false;
}

static char *
s_hget(cc_redis_t *r, const char *key, const char *field)
{
    redisReply *rep = cc_redis_cmdf(r, "HGET %s %s", key, field);
    char *v = strdup(rep && rep->type == REDIS_REPLY_STRING ? rep->str : "");
    if (rep) freeReplyObject(rep);
    return v;
}

static void
s_agent_becomes(cc_redis_t *r, const char *state, int timeout_ms)
{
    char *st = NULL;
    for (int64_t end = cc_mono_ms() + timeout_ms;; cc_sleep_ms(100)) {
        free(st);
        st = s_hget(r, "acd:agent:1001", "state");
        if (strcmp(st, state) == 0) break;
        CHECK(cc_mono_ms() < end, "agent 1001 is %s, not %s", st, state);
    }
    free(st);
}

static size_t
s_count_lines(const char *file, const char *text)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", cc_harness_dir(s_h), file);
    char *log = cc_harness_read_file(path);
    size_t n = 0;
    for (const char *at = log; at && (at = strstr(at, text)); at += strlen(text)) n++;
    free(log);
    return n;
}

/* user's row in telephony.registrations (contact, transport, source,
 * seconds left), once its contact holds want (NULL: once there is no row);
 * fails the test after 30 s. Returns the row (caller clears), or NULL. */
static PGresult *
s_stored_binding(const char *user, const char *want)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT contact, transport, source, extract(epoch FROM expires_at - now())::int"
             " FROM telephony.registrations WHERE username = '%s'", user);
    PGresult *res = NULL;
    for (int64_t end = cc_mono_ms() + 30000;; cc_sleep_ms(100)) {
        if (res) PQclear(res);
        CHECK(cc_pg_run(s_pg, sql, &res) == 0, "registrations");
        if (!want && PQntuples(res) == 0) {
            PQclear(res);
            return NULL;
        }
        if (want && PQntuples(res) == 1 && strstr(PQgetvalue(res, 0, 0), want)) return res;
        CHECK(cc_mono_ms() < end, "%s's stored binding: %d rows, contact %s, want %s", user, PQntuples(res),
              PQntuples(res) ? PQgetvalue(res, 0, 0) : "-", want ? want : "none");
    }
}

/* ------------------------------------------------------------------ tests */

static void
wrong_password_is_refused(void)
{
    TEST_BEGIN(__func__);
    phone_t bad;
    s_phone_start(&bad, "baresip-bad", "1001", "wrong", 60, "udp", "PCMU,PCMA", "auto");
    char *why = s_phone_event(&bad, "REGISTER_FAIL", 20000);
    CHECK(strstr(why, "403"), "baresip reports the refusal: \"%s\"", why);
    free(why);
    s_phone_stop(&bad, SIGKILL);
    s_metric_becomes("gateway_register_refused_total", 1, 5000);
    CHECK(s_metric("gateway_registrations") == 0, "no phone registered");
    CHECK(s_count_lines("gateway.log", "msg=\"REGISTER refused\" user=1001 ") >= 1
          && s_count_lines("gateway.log", "status=403 reason=\"Bad Credentials\"") >= 1, "the refusal is logged");
    CHECK(!s_bus_saw("agent.registered", 300), "no agent.registered for a refused phone");
    TEST_PASS(__func__);
}

/* Starts the agent's baresip over transport and checks its registration:
 * baresip's event, agent.registered, the gateway's gauge. */
static void
s_register_agent(phone_t *agent, const char *label, const char *transport, const char *codecs, const char *answermode)
{
    s_phone_start(agent, label, "1001", "secret1001", 60, transport, codecs, answermode);
    char *ok = s_phone_event(agent, "REGISTER_OK", 20000);
    CHECK(strstr(ok, "200"), "baresip reports the registration: \"%s\"", ok);
    free(ok);
    Cc__AgentRegistered *r = s_registered_event("1001", 5000);
    char port[16], tp[32];
    snprintf(port, sizeof port, ":%d", agent->sip_port);
    snprintf(tp, sizeof tp, "transport=%s", transport);
    CHECK(strstr(r->contact, port), "the contact is baresip's: %s", r->contact);
    CHECK(strcmp(transport, "udp") == 0 || strstr(r->contact, tp), "the contact says %s: %s", tp, r->contact);
    CHECK(r->expires_s == 60, "expires %u", r->expires_s);
    cc__agent_registered__free_unpacked(r, NULL);
    s_metric_becomes("gateway_registrations", 1, 5000);   /* what the gateway reports */
}

static void
right_password_registers(phone_t *agent)
{
    TEST_BEGIN(__func__);
    s_register_agent(agent, "baresip-agent", "udp", "PCMU,PCMA", "auto");
    TEST_PASS(__func__);
}

/* A SIPp caller (PCMU, echoing what it hears) dials 100; acd offers the
 * call to 1001; baresip auto-answers with agent_codec; the legs are
 * bridged; the caller hangs up. Checks both legs' CDRs against each other
 * and against what baresip counted, then stops baresip (SIGTERM: it
 * unregisters). */
static void
s_bridged_call_with_audio(phone_t *agent, cc_redis_t *redis, const char *label, const char *agent_codec)
{
    long rtcp_before = s_metric("gateway_rtcp_received_total");
    pid_t caller = s_caller(label, "uac_queue_talk", "100", true, 8000);
    char *peer = s_phone_event(agent, "CALL_ESTABLISHED", 30000);
    printf("baresip answered a call from %s\n", peer);
    free(peer);
    char *call_id = s_bridged_call(10000);
    char *why = s_phone_event(agent, "CALL_CLOSED", 30000);
    printf("baresip's call closed: %s\n", why);
    free(why);
    CHECK(s_wait(caller, 30000) == 0, "the caller's call passed (see %s/%s.log)", cc_harness_dir(s_h), label);

    char sql[512];
    snprintf(sql, sizeof sql, "SELECT leg, hangup_by, rtp_sent, rtp_received, answered_at IS NOT NULL, codec, reason"
             " FROM telephony.cdr WHERE call_id = '%s' ORDER BY leg", call_id);
    PGresult *res = NULL;
    for (int i = 0; i < 50; i++) {
        if (res) PQclear(res);
        CHECK(cc_pg_run(s_pg, sql, &res) == 0, "cdr");
        if (PQntuples(res) == 2) break;
        cc_sleep_ms(100);
    }
    CHECK(PQntuples(res) == 2, "two legs for %s, got %d", call_id, PQntuples(res));
    free(call_id);
    CHECK(strcmp(PQgetvalue(res, 0, 0), "agent") == 0 && strcmp(PQgetvalue(res, 1, 0), "caller") == 0, "legs");
    CHECK(strcmp(PQgetvalue(res, 1, 1), "caller") == 0, "the caller hung up: %s", PQgetvalue(res, 1, 1));
    CHECK(strcmp(PQgetvalue(res, 0, 6), "caller hung up") == 0, "the agent leg ended because %s", PQgetvalue(res, 0, 6));
    CHECK(strcmp(PQgetvalue(res, 0, 4), "t") == 0 && strcmp(PQgetvalue(res, 1, 4), "t") == 0, "both legs answered");
    CHECK(strcmp(PQgetvalue(res, 0, 5), agent_codec) == 0 && strcmp(PQgetvalue(res, 1, 5), "PCMU") == 0,
          "%s to the agent, PCMU to the caller: %s, %s", agent_codec, PQgetvalue(res, 0, 5), PQgetvalue(res, 1, 5));
    long agent_sent = atol(PQgetvalue(res, 0, 2)), agent_recv = atol(PQgetvalue(res, 0, 3));
    long caller_sent = atol(PQgetvalue(res, 1, 2)), caller_recv = atol(PQgetvalue(res, 1, 3));
    PQclear(res);

    /* What baresip sent and heard; printed when it exits. */
    s_phone_stop(agent, SIGTERM);
    long phone_tx, phone_rx;
    bool rtcp_ok;
    s_phone_rtp(agent, &phone_tx, &phone_rx, &rtcp_ok);
    printf("baresip: tx %ld rx %ld; agent leg: sent %ld received %ld; caller leg: sent %ld received %ld\n", phone_tx,
           phone_rx, agent_sent, agent_recv, caller_sent, caller_recv);

    /* Audio both ways: at least a second each way, and the counts agree. */
    CHECK(phone_tx >= 50 && phone_rx >= 50, "baresip sent %ld and heard %ld packets", phone_tx, phone_rx);
    CHECK(agent_recv <= phone_tx && agent_recv + 10 >= phone_tx, "gateway got %ld of baresip's %ld", agent_recv, phone_tx);
    CHECK(phone_rx <= agent_sent && phone_rx + 10 >= agent_sent, "baresip heard %ld of the gateway's %ld", phone_rx, agent_sent);
    CHECK(caller_sent >= agent_recv, "the agent's %ld packets were relayed to the caller (%ld)", agent_recv, caller_sent);
    CHECK(agent_sent <= caller_recv, "what the agent heard (%ld) came from the caller (%ld)", agent_sent, caller_recv);
    /* SIPp echoes what it hears: back from it comes what was sent to it. */
    CHECK(caller_recv <= caller_sent && caller_recv + 10 >= caller_sent, "SIPp echoed %ld of the gateway's %ld",
          caller_recv, caller_sent);
    /* baresip's 440 Hz tone came back through both legs (SIPp echoes it):
     * whole, not garbled on the way, through any PCMA/PCMU conversion. */
    int blocks;
    double share = s_phone_tone_share(agent, 440, &blocks);
    printf("baresip heard its 440 Hz tone back: %.3f of the power in %d blocks of 100 ms\n", share, blocks);
    CHECK(blocks >= 20 && share > 0.8, "the tone came back clean: %.3f in %d blocks", share, blocks);
    /* The call lasts 8 s: the gateway's first report leaves 5 s after the answer. */
    CHECK(rtcp_ok, "baresip got the gateway's RTCP on its RTCP port (see %s/%s.log)", cc_harness_dir(s_h), agent->label);
    s_metric_reaches("gateway_rtcp_received_total", rtcp_before + 1, 5000);   /* and the gateway baresip's */
    s_agent_becomes(redis, "ready", 10000);
}

static void
queued_caller_is_bridged_to_baresip_and_audio_flows_both_ways(phone_t *agent, cc_redis_t *redis)
{
    TEST_BEGIN(__func__);
    s_bridged_call_with_audio(agent, redis, "sipp-caller", "PCMU");
    TEST_PASS(__func__);
}

/* The same over TCP: baresip registers on a TCP connection, the gateway
 * rings its contact (transport=tcp) and the call is bridged as over UDP. */
static void
phone_on_tcp_registers_and_is_rung_over_tcp(cc_redis_t *redis)
{
    TEST_BEGIN(__func__);
    phone_t agent;
    s_register_agent(&agent, "baresip-tcp", "tcp", "PCMU,PCMA", "auto");
    s_bridged_call_with_audio(&agent, redis, "sipp-caller-tcp", "PCMU");
    Cc__AgentRegistered *r = s_registered_event("1001", 5000);
    CHECK(r->expires_s == 0, "unregistered over TCP on exit: expires %u", r->expires_s);
    cc__agent_registered__free_unpacked(r, NULL);
    s_metric_becomes("gateway_registrations", 0, 5000);
    TEST_PASS(__func__);
}

/* A phone that takes only PCMA, a caller only PCMU: the gateway converts
 * the audio it relays, both ways. */
static void
pcma_phone_and_pcmu_caller_are_bridged_through_conversion(cc_redis_t *redis)
{
    TEST_BEGIN(__func__);
    phone_t agent;
    s_register_agent(&agent, "baresip-pcma", "udp", "PCMA", "auto");
    s_bridged_call_with_audio(&agent, redis, "sipp-caller-pcma", "PCMA");
    Cc__AgentRegistered *r = s_registered_event("1001", 5000);
    CHECK(r->expires_s == 0, "unregistered on exit: expires %u", r->expires_s);
    cc__agent_registered__free_unpacked(r, NULL);
    s_metric_becomes("gateway_registrations", 0, 5000);
    TEST_PASS(__func__);
}

static void
s_set_ready(cc_rpc_client_t *acd)
{
    Cc__AgentSetState st = CC__AGENT_SET_STATE__INIT;
    st.agent_id = "1001";
    st.state = CC__AGENT_STATE__AGENT_READY;
    uint8_t buf[128];
    size_t len = cc__agent_set_state__pack(&st, buf);
    Cc__Reply *reply = NULL;
    CHECK(cc_rpc_call_sync(acd, "agent.set_state", buf, len, 5000, &reply) == 0 && reply->status == 0, "agent ready");
    cc__reply__free_unpacked(reply, NULL);
}

static void
s_agent_not_ready_because(cc_redis_t *redis, const char *reason)
{
    s_agent_becomes(redis, "not_ready", 20000);
    char *why = s_hget(redis, "acd:agent:1001", "reason");
    CHECK(strcmp(why, reason) == 0, "agent not ready because %s, not %s", why, reason);
    free(why);
}

/* A phone that does not auto-answer. The first offer rings out
 * (GATEWAY_RING_MS, 3 s here): not ready (no_answer). Ready again, the
 * same caller is offered again and the agent declines (486): not ready
 * (busy). Ready again, offered again, the agent answers by hand: bridged.
 * Then the agent hangs up first: the caller gets the gateway's BYE. */
static void
unanswered_and_declined_offers_then_a_manual_answer_and_the_agent_hangs_up(cc_redis_t *redis, cc_rpc_client_t *acd)
{
    TEST_BEGIN(__func__);
    phone_t agent;
    s_register_agent(&agent, "baresip-manual", "udp", "PCMU,PCMA", "manual");
    s_agent_becomes(redis, "ready", 10000);
    pid_t caller = s_caller("sipp-caller-manual", "uac_queue_hung_up", "100", true, 0);

    free(s_phone_event(&agent, "CALL_INCOMING", 30000));
    free(s_phone_event(&agent, "CALL_CLOSED", 30000));   /* the gateway gave up: CANCEL */
    s_agent_not_ready_because(redis, "no_answer");

    s_set_ready(acd);
    free(s_phone_event(&agent, "CALL_INCOMING", 30000));
    s_phone_cmd(&agent, "hangup", "");
    free(s_phone_event(&agent, "CALL_CLOSED", 10000));
    s_agent_not_ready_because(redis, "busy");

    s_set_ready(acd);
    free(s_phone_event(&agent, "CALL_INCOMING", 30000));
    s_phone_cmd(&agent, "accept", "");
    free(s_phone_event(&agent, "CALL_ESTABLISHED", 10000));
    char *call_id = s_bridged_call(10000);
    s_phone_cmd(&agent, "hangup", "");
    free(s_phone_event(&agent, "CALL_CLOSED", 10000));
    CHECK(s_wait(caller, 30000) == 0, "the caller got the gateway's BYE (see %s/sipp-caller-manual.log)",
          cc_harness_dir(s_h));

    char sql[512];
    snprintf(sql, sizeof sql, "SELECT leg, sip_cause, hangup_by, reason FROM telephony.cdr WHERE call_id = '%s'"
             " ORDER BY leg, id", call_id);
    free(call_id);
    PGresult *res = NULL;
    for (int i = 0; i < 50; i++) {
        if (res) PQclear(res);
        CHECK(cc_pg_run(s_pg, sql, &res) == 0, "cdr");
        if (PQntuples(res) == 4) break;
        cc_sleep_ms(100);
    }
    CHECK(PQntuples(res) == 4, "three agent legs and the caller's, got %d", PQntuples(res));
    const char *want[4][3] = { { "408", "system", NULL }, { "486", "callee", NULL },
                               { "200", "callee", "agent hung up" }, { "200", "callee", "agent hung up" } };
    for (int i = 0; i < 4; i++) {
        printf("%s leg: %s %s \"%s\"\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
               PQgetvalue(res, i, 3));
        CHECK(strcmp(PQgetvalue(res, i, 0), i < 3 ? "agent" : "caller") == 0, "leg %d is %s", i, PQgetvalue(res, i, 0));
        CHECK(strcmp(PQgetvalue(res, i, 1), want[i][0]) == 0 && strcmp(PQgetvalue(res, i, 2), want[i][1]) == 0
              && (!want[i][2] || strcmp(PQgetvalue(res, i, 3), want[i][2]) == 0),
              "leg %d: %s %s \"%s\"", i, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3));
    }
    PQclear(res);
    s_agent_becomes(redis, "ready", 10000);   /* after wrap-up */
    s_phone_stop(&agent, SIGTERM);
    Cc__AgentRegistered *r = s_registered_event("1001", 5000);
    CHECK(r->expires_s == 0, "unregistered on exit: expires %u", r->expires_s);
    cc__agent_registered__free_unpacked(r, NULL);
    s_metric_becomes("gateway_registrations", 0, 5000);
    TEST_PASS(__func__);
}

static void
unregister_on_exit_removes_the_registration(void)
{
    TEST_BEGIN(__func__);
    /* baresip stopped with SIGTERM above: it unregistered (Expires 0). */
    Cc__AgentRegistered *r = s_registered_event("1001", 5000);
    CHECK(strcmp(r->agent_id, "1001") == 0 && r->expires_s == 0, "agent.registered %s expires %u", r->agent_id,
          r->expires_s);
    cc__agent_registered__free_unpacked(r, NULL);
    s_metric_becomes("gateway_registrations", 0, 5000);
    TEST_PASS(__func__);
}

/* ---------------------------------------------- hand-made REGISTERs (1002) */

static int s_udp = -1;

/* True when the header value holds text. */
static bool
s_has(const struct sip_hdr *h, const char *text)
{
    return h && memmem(h->val.p, h->val.l, text, strlen(text));
}
static uint32_t s_cseq;

/* Sends text to the gateway and returns its decoded answer (caller derefs). */
static struct sip_msg *
s_transact(const char *text)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) s_path.sip_port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(sendto(s_udp, text, strlen(text), 0, (struct sockaddr *) &a, sizeof a) == (ssize_t) strlen(text), "send");
    struct pollfd pfd = { .fd = s_udp, .events = POLLIN };
    CHECK(poll(&pfd, 1, 5000) == 1, "no answer from the gateway to:\n%s", text);
    char buf[4096];
    ssize_t n = recv(s_udp, buf, sizeof buf, 0);
    CHECK(n > 0, "recv");
    struct mbuf *mb = mbuf_alloc((size_t) n);
    mbuf_write_mem(mb, (uint8_t *) buf, (size_t) n);
    mb->pos = 0;
    struct sip_msg *msg = NULL;
    CHECK(sip_msg_decode(&msg, mb) == 0, "the gateway's answer decodes: %.*s", (int) n, buf);
    mem_deref(mb);
    return msg;
}

/* A REGISTER for the address of record of user (To); extra holds its
 * Authorization, Contact and Expires lines (each ending in \r\n). */
static struct sip_msg *
s_register_as(const char *user, const char *extra)
{
    struct sockaddr_in l = { .sin_family = AF_INET };
    l.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof l;
    if (s_udp < 0) {
        s_udp = socket(AF_INET, SOCK_DGRAM, 0);
        CHECK(bind(s_udp, (struct sockaddr *) &l, sizeof l) == 0, "bind");
    }
    getsockname(s_udp, (struct sockaddr *) &l, &len);
    char *text = NULL;
    CHECK(asprintf(&text, "REGISTER sip:127.0.0.1:%d SIP/2.0\r\n"
                          "Via: SIP/2.0/UDP 127.0.0.1:%d;rport;branch=z9hG4bK-bare-%u\r\n"
                          "From: <sip:%s@127.0.0.1>;tag=bare%u\r\n"
                          "To: <sip:%s@127.0.0.1>\r\n"
                          "Call-ID: bare-register-%s\r\n"
                          "CSeq: %u REGISTER\r\n"
                          "Max-Forwards: 70\r\n"
                          "%s"
                          "Content-Length: 0\r\n\r\n",
                   s_path.sip_port, ntohs(l.sin_port), s_cseq + 1, user, getpid(), user, user, s_cseq + 1, extra) > 0,
          "asprintf");
    s_cseq++;
    struct sip_msg *msg = s_transact(text);
    free(text);
    return msg;
}

static struct sip_msg *
s_register(const char *extra)
{
    return s_register_as("1002", extra);
}

/* A fresh nonce from a 401 to a REGISTER without credentials. */
static void
s_nonce(char *nonce, size_t cap)
{
    struct sip_msg *msg = s_register("Contact: <sip:1002@127.0.0.1:5999>\r\n");
    CHECK(msg->scode == 401, "a REGISTER without credentials gets 401, not %u", msg->scode);
    const struct sip_hdr *h = sip_msg_hdr(msg, SIP_HDR_WWW_AUTHENTICATE);
    struct httpauth_digest_chall ch;
    CHECK(h && httpauth_digest_challenge_decode(&ch, &h->val) == 0, "a digest challenge");
    CHECK(pl_strcmp(&ch.realm, "callcenter") == 0, "realm %.*s", (int) ch.realm.l, ch.realm.p);
    pl_strcpy(&ch.nonce, nonce, cap);
    mem_deref(msg);
}

/* An Authorization line for user with password in realm, nonce and nc. */
static void
s_auth_as(char *out, size_t cap, const char *user, const char *realm, const char *password, const char *nonce,
          unsigned nc)
{
    char uri[64];
    snprintf(uri, sizeof uri, "sip:127.0.0.1:%d", s_path.sip_port);
    uint8_t ha1[16], ha2[16], resp[16];
    CHECK(md5_printf(ha1, "%s:%s:%s", user, realm, password) == 0, "md5");
    CHECK(md5_printf(ha2, "REGISTER:%s", uri) == 0, "md5");
    CHECK(md5_printf(resp, "%w:%s:%08x:0a4f113b:auth:%w", ha1, sizeof ha1, nonce, nc, ha2, sizeof ha2) == 0, "md5");
    re_snprintf(out, cap, "Authorization: Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"%s\","
                          " response=\"%w\", algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=%08x\r\n",
                user, realm, nonce, uri, resp, sizeof resp, nc);
}

static void
s_auth(char *out, size_t cap, const char *realm, const char *password, const char *nonce, unsigned nc)
{
    s_auth_as(out, cap, "1002", realm, password, nonce, nc);
}

/* Sends the REGISTER and checks its status; returns the answer. */
static struct sip_msg *
s_expect(const char *what, const char *auth, const char *rest, uint16_t status)
{
    char extra[2048];
    snprintf(extra, sizeof extra, "%s%s", auth, rest);
    struct sip_msg *msg = s_register(extra);
    CHECK(msg->scode == status, "%s: got %u %.*s, want %u", what, msg->scode, (int) msg->reason.l, msg->reason.p, status);
    printf("%s: %u %.*s\n", what, msg->scode, (int) msg->reason.l, msg->reason.p);
    return msg;
}

/* A good REGISTER right after: it works, with a fresh nonce. */
static void
s_good(const char *after)
{
    char nonce[64], auth[1024];
    s_nonce(nonce, sizeof nonce);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 1);
    char what[128];
    snprintf(what, sizeof what, "good REGISTER after %s", after);
    mem_deref(s_expect(what, auth, "Contact: <sip:1002@127.0.0.1:5999>\r\nExpires: 120\r\n", 200));
}

static bool
s_stale(const struct sip_msg *msg)
{
    const struct sip_hdr *h = sip_msg_hdr(msg, SIP_HDR_WWW_AUTHENTICATE);
    return s_has(h, "stale=true");
}

static void
malformed_registers_get_the_right_status_and_the_next_one_works(void)
{
    TEST_BEGIN(__func__);
    const char *contact = "Contact: <sip:1002@127.0.0.1:5999>\r\nExpires: 120\r\n";
    char nonce[64], auth[1024], extra[2048];
    struct sip_msg *msg;
    s_good("nothing");
    s_metric_becomes("gateway_registrations", 1, 5000);
    /* Stored as accepted: contact, transport, where it came from, when it ends. */
    PGresult *row = s_stored_binding("1002", "sip:1002@127.0.0.1:5999");
    struct sockaddr_in l;
    socklen_t llen = sizeof l;
    getsockname(s_udp, (struct sockaddr *) &l, &llen);
    char source[32];
    snprintf(source, sizeof source, "127.0.0.1:%d", ntohs(l.sin_port));
    CHECK(strcmp(PQgetvalue(row, 0, 0), "sip:1002@127.0.0.1:5999") == 0 && strcmp(PQgetvalue(row, 0, 1), "udp") == 0
          && strcmp(PQgetvalue(row, 0, 2), source) == 0 && atoi(PQgetvalue(row, 0, 3)) > 100
          && atoi(PQgetvalue(row, 0, 3)) <= 120, "the stored binding: %s %s %s, %s s left (from %s)",
          PQgetvalue(row, 0, 0), PQgetvalue(row, 0, 1), PQgetvalue(row, 0, 2), PQgetvalue(row, 0, 3), source);
    PQclear(row);

    mem_deref(s_expect("Authorization without digest fields", "Authorization: Digest garbage\r\n", contact, 400));
    s_good("a bad Authorization");

    s_nonce(nonce, sizeof nonce);
    s_auth_as(auth, sizeof auth, "1999", "callcenter", "secret1999", nonce, 1);
    msg = s_register_as("1999", (snprintf(extra, sizeof extra, "%s%s", auth, contact), extra));
    CHECK(msg->scode == 403, "a user who is not in telephony.sip_users: %u", msg->scode);
    mem_deref(msg);
    s_good("an unknown user");

    /* 1002's own password, for 1001's address of record. */
    s_nonce(nonce, sizeof nonce);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 1);
    msg = s_register_as("1001", (snprintf(extra, sizeof extra, "%s%s", auth, contact), extra));
    CHECK(msg->scode == 403, "credentials of another user than To's: %u", msg->scode);
    mem_deref(msg);
    s_good("credentials for another address of record");
    s_metric_becomes("gateway_registrations", 1, 5000);   /* only 1002 */

    s_nonce(nonce, sizeof nonce);
    s_auth(auth, sizeof auth, "elsewhere", "secret1002", nonce, 1);
    msg = s_expect("wrong realm", auth, contact, 401);
    const struct sip_hdr *h = sip_msg_hdr(msg, SIP_HDR_WWW_AUTHENTICATE);
    CHECK(s_has(h, "realm=\"callcenter\""), "a fresh challenge for our realm");
    mem_deref(msg);
    s_good("a wrong realm");

    /* The same Authorization twice: the replay is refused, its Contact unused. */
    s_nonce(nonce, sizeof nonce);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 1);
    mem_deref(s_expect("first use of a nonce", auth, contact, 200));
    msg = s_expect("replayed nonce and count", auth, "Contact: <sip:1002@192.0.2.66:5060>\r\nExpires: 120\r\n", 401);
    CHECK(s_stale(msg), "a replay gets a fresh nonce with stale=true");
    mem_deref(msg);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 2);
    msg = s_expect("same nonce, next count: a query", auth, "", 200);
    h = sip_msg_hdr(msg, SIP_HDR_CONTACT);
    CHECK(s_has(h, "sip:1002@127.0.0.1:5999") && !s_has(h, "192.0.2.66"), "the replay's Contact was not bound");
    mem_deref(msg);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 3);
    mem_deref(s_expect("same nonce, count 3", auth, contact, 200));
    s_auth(auth, sizeof auth, "callcenter", "secret1002", "0123456789abcdef0123456789abcdef", 1);
    msg = s_expect("a nonce the gateway never gave", auth, contact, 401);
    CHECK(s_stale(msg), "an unknown nonce gets stale=true");
    mem_deref(msg);
    s_good("an unknown nonce");
    /* A nonce older than GATEWAY_NONCE_TTL_S (6 s here), used for the first time. */
    s_nonce(nonce, sizeof nonce);
    cc_sleep_ms(7000);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 1);
    msg = s_expect("an expired nonce", auth, contact, 401);
    CHECK(s_stale(msg), "an expired nonce gets stale=true");
    mem_deref(msg);
    s_good("an expired nonce");

    s_nonce(nonce, sizeof nonce);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 1);
    msg = s_expect("huge Expires", auth, "Contact: <sip:1002@127.0.0.1:5999>\r\nExpires: 99999999999999999999\r\n", 200);
    h = sip_msg_hdr(msg, SIP_HDR_CONTACT);
    CHECK(s_has(h, "expires=3600"), "huge Expires capped at an hour: %.*s", h ? (int) h->val.l : 0, h ? h->val.p : "");
    mem_deref(msg);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 2);
    /* RFC 3261 20.19: a malformed Expires counts as 3600. */
    msg = s_expect("Expires not a number", auth, "Contact: <sip:1002@127.0.0.1:5999>\r\nExpires: soon\r\n", 200);
    h = sip_msg_hdr(msg, SIP_HDR_CONTACT);
    CHECK(s_has(h, "expires=3600"), "a malformed Expires is an hour");
    mem_deref(msg);
    s_good("a bad Expires");

    /* RFC 3261 10.3: shorter than GATEWAY_MIN_EXPIRES_S (5 s here), in the
     * header or the Contact: 423 with Min-Expires, the binding unchanged. */
    s_nonce(nonce, sizeof nonce);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 1);
    msg = s_expect("Expires under the minimum", auth, "Contact: <sip:1002@192.0.2.77:5060>\r\nExpires: 4\r\n", 423);
    h = sip_msg_hdr(msg, SIP_HDR_MIN_EXPIRES);
    CHECK(h && pl_strcmp(&h->val, "5") == 0, "Min-Expires: %.*s", h ? (int) h->val.l : 0, h ? h->val.p : "");
    mem_deref(msg);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 2);
    msg = s_expect("a Contact's expires under the minimum", auth,
                   "Contact: <sip:1002@192.0.2.77:5060>;expires=1\r\nExpires: 120\r\n", 423);
    h = sip_msg_hdr(msg, SIP_HDR_MIN_EXPIRES);
    CHECK(h && pl_strcmp(&h->val, "5") == 0, "Min-Expires for the Contact's expires");
    mem_deref(msg);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 3);
    msg = s_expect("a query after the 423s", auth, "", 200);
    h = sip_msg_hdr(msg, SIP_HDR_CONTACT);
    CHECK(s_has(h, "sip:1002@127.0.0.1:5999") && !s_has(h, "192.0.2.77"), "a refused interval binds nothing");
    mem_deref(msg);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 4);
    msg = s_expect("the minimum itself", auth, "Contact: <sip:1002@127.0.0.1:5999>\r\nExpires: 5\r\n", 200);
    h = sip_msg_hdr(msg, SIP_HDR_CONTACT);
    CHECK(s_has(h, "expires=5"), "granted the minimum: %.*s", h ? (int) h->val.l : 0, h ? h->val.p : "");
    mem_deref(msg);
    s_good("an interval too brief");

    s_nonce(nonce, sizeof nonce);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 1);
    msg = s_expect("no Contact: a query", auth, "", 200);
    h = sip_msg_hdr(msg, SIP_HDR_CONTACT);
    CHECK(s_has(h, "sip:1002@127.0.0.1:5999"), "the query lists the binding");
    mem_deref(msg);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 2);
    mem_deref(s_expect("invalid Contact", auth, "Contact: <<not a uri\r\n", 400));
    s_good("an invalid Contact");
    s_metric_becomes("gateway_registrations", 1, 5000);
    s_metric_becomes("gateway_register_refused_total", 5, 5000);   /* baresip's 403, these two 403s and two 400s */

    /* Contact * with Expires 0 removes the binding. */
    s_nonce(nonce, sizeof nonce);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 1);
    mem_deref(s_expect("Contact * with Expires 0", auth, "Contact: *\r\nExpires: 0\r\n", 200));
    s_metric_becomes("gateway_registrations", 0, 5000);
    s_stored_binding("1002", NULL);   /* the row is deleted too */
    s_good("removing every binding");
    /* A fresh nonce: the waits above may outlast GATEWAY_NONCE_TTL_S (6 s here) under load. */
    s_nonce(nonce, sizeof nonce);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 1);
    mem_deref(s_expect("Contact * without Expires 0", auth, "Contact: *\r\n", 400));
    s_metric_becomes("gateway_register_refused_total", 6, 5000);
    s_nonce(nonce, sizeof nonce);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 1);
    mem_deref(s_expect("unregister 1002", auth, "Contact: <sip:1002@127.0.0.1:5999>\r\nExpires: 0\r\n", 200));
    s_metric_becomes("gateway_registrations", 0, 5000);
    s_stored_binding("1002", NULL);
    TEST_PASS(__func__);
}

static void
unrefreshed_registration_expires_and_the_offer_puts_the_agent_not_ready(cc_redis_t *redis)
{
    TEST_BEGIN(__func__);
    phone_t agent;
    s_phone_start(&agent, "baresip-short", "1001", "secret1001", 5, "udp", "PCMU,PCMA", "auto");
    char *ok = s_phone_event(&agent, "REGISTER_OK", 20000);
    free(ok);
    int64_t registered = cc_mono_ms();
    /* Killed at once (it would refresh after 90% of 5 s): no refresh, no unregister. */
    s_phone_stop(&agent, SIGKILL);
    Cc__AgentRegistered *r = s_registered_event("1001", 5000);
    CHECK(r->expires_s == 5, "registered for %u s", r->expires_s);
    cc__agent_registered__free_unpacked(r, NULL);
    /* Past the expiry and the gauge's next refresh (every second): none left. */
    int64_t wait = registered + 6500 - cc_mono_ms();
    if (wait > 0) cc_sleep_ms((int) wait);
    s_metric_becomes("gateway_registrations", 0, 5000);

    s_agent_becomes(redis, "ready", 10000);
    size_t before = s_count_lines("gateway.log", "agent phone not registered");
    pid_t caller = s_caller("sipp-caller-2", "uac_queue", "100", false, 0);
    s_agent_becomes(redis, "not_ready", 20000);
    char *reason = s_hget(redis, "acd:agent:1001", "reason");
    CHECK(strcmp(reason, "unregistered") == 0, "not ready because %s", reason);
    free(reason);
    CHECK(s_count_lines("gateway.log", "agent phone not registered") == before + 1, "the gateway said why");
    CHECK(s_wait(caller, 30000) == 0, "the caller's call ended normally (see %s/sipp-caller-2.log)", cc_harness_dir(s_h));
    TEST_PASS(__func__);
}

/* The phone registers; the gateway is stopped (SIGTERM) and started again;
 * acd's next offer still rings the phone, which did not register again: the
 * binding came back from telephony.registrations. */
static void
registration_survives_a_gateway_restart(cc_redis_t *redis, cc_rpc_client_t *acd)
{
    TEST_BEGIN(__func__);
    phone_t agent;
    s_register_agent(&agent, "baresip-restart", "udp", "PCMU,PCMA", "auto");
    char port[16], source[32];
    snprintf(port, sizeof port, "@127.0.0.1:%d", agent.sip_port);
    snprintf(source, sizeof source, "127.0.0.1:%d", agent.sip_port);
    PGresult *row = s_stored_binding("1001", port);
    CHECK(strcmp(PQgetvalue(row, 0, 1), "udp") == 0 && strcmp(PQgetvalue(row, 0, 2), source) == 0
          && atoi(PQgetvalue(row, 0, 3)) > 40 && atoi(PQgetvalue(row, 0, 3)) <= 60, "stored: %s %s %s, %s s left",
          PQgetvalue(row, 0, 0), PQgetvalue(row, 0, 1), PQgetvalue(row, 0, 2), PQgetvalue(row, 0, 3));
    PQclear(row);
    size_t registers = s_count_lines("gateway.log", "msg=\"phone registered\"");

    int status = cc_harness_stop(s_h, s_path.gateway, SIGTERM, 20000);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the gateway stopped cleanly (status %d)", status);
    PQclear(s_stored_binding("1001", port));   /* a stop keeps the bindings */
    s_path.gateway = cc_harness_spawn(s_h, "gateway", NULL);
    CHECK(cc_harness_wait_http(s_path.gw_admin, "/healthz", 30000), "the gateway is back (see %s/gateway.log)",
          cc_harness_dir(s_h));
    s_metric_becomes("gateway_registrations", 1, 10000);
    CHECK(s_count_lines("gateway.log", "msg=\"stored registrations loaded\" count=1") == 1, "one binding loaded at start");

    s_set_ready(acd);
    s_agent_becomes(redis, "ready", 10000);
    s_bridged_call_with_audio(&agent, redis, "sipp-caller-restart", "PCMU");   /* stops baresip: it unregisters */
    Cc__AgentRegistered *r = s_registered_event("1001", 5000);
    CHECK(r->expires_s == 0, "unregistered on exit: expires %u", r->expires_s);
    cc__agent_registered__free_unpacked(r, NULL);
    CHECK(s_count_lines("gateway.log", "msg=\"phone registered\"") == registers + 1,
          "the phone's only REGISTER since the restart was its unregister on exit");
    s_stored_binding("1001", NULL);
    s_metric_becomes("gateway_registrations", 0, 5000);
    TEST_PASS(__func__);
}

/* PostgreSQL stopped: a REGISTER is still accepted (the registrar is in
 * memory), its row waits and is written when the database is back; the
 * removal after it too. */
static void
registration_while_postgresql_is_down_is_stored_when_it_is_back(void)
{
    TEST_BEGIN(__func__);
    size_t kept = s_count_lines("gateway.log", "registration not stored; kept for retry");
    cc_harness_stop_pg(s_h);
    s_good("PostgreSQL stopped");
    s_metric_becomes("gateway_registrations", 1, 5000);
    for (int64_t end = cc_mono_ms() + 20000; s_count_lines("gateway.log", "registration not stored; kept for retry") == kept;
         cc_sleep_ms(100))
        CHECK(cc_mono_ms() < end, "the gateway says the registration waits");
    cc_harness_restart_pg(s_h);
    PQclear(s_stored_binding("1002", "sip:1002@127.0.0.1:5999"));
    char nonce[64], auth[1024];
    s_nonce(nonce, sizeof nonce);
    s_auth(auth, sizeof auth, "callcenter", "secret1002", nonce, 1);
    mem_deref(s_expect("unregister 1002", auth, "Contact: <sip:1002@127.0.0.1:5999>\r\nExpires: 0\r\n", 200));
    s_stored_binding("1002", NULL);
    s_metric_becomes("gateway_registrations", 0, 5000);
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("baresip_agent_test", "baresip_agent_test");
    s_h = cc_harness_new("baresip");
    cc_harness_start_pg(s_h);
    cc_harness_start_redis(s_h);
    cc_harness_start_forwarder(s_h, false, 100000);
    s_pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    CHECK(cc_pg_connect(s_pg) == 0, "pg");
    CHECK(cc_pg_migrate(s_pg, "acd", CC_SOURCE_DIR "/services/acd/sql", NULL) == 0, "acd migrations");
    CHECK(cc_pg_migrate(s_pg, "gateway", CC_SOURCE_DIR "/services/gateway/sql", NULL) == 0, "gateway migrations");
    s_sql("INSERT INTO acd.queues (name, skills, wrap_up_ms, offer_timeout_ms) VALUES ('sales', 'sales:1', 1000, 20000)");
    s_sql("INSERT INTO acd.agents (id, extension, skills, queues) VALUES ('1001', '1001', 'sales:3', 'sales')");
    s_sql("INSERT INTO telephony.sip_users (username, ha1) VALUES ('1001', md5('1001:callcenter:secret1001')),"
          " ('1002', md5('1002:callcenter:secret1002'))");

    cc_bus_opts_t bo = { .service = "test", .instance = "baresip", .sub_endpoint = getenv("CC_BUS_SUB") };
    s_events = cc_bus_new(&bo);
    cc_bus_subscribe(s_events, "agent.registered");
    cc_bus_subscribe(s_events, "call.bridged");
    setenv("GATEWAY_NONCE_TTL_S", "6", 1);
    setenv("GATEWAY_RING_MS", "3000", 1);
    /* The unrefreshed registration lasts 5 s (the default minimum is 60 s). */
    setenv("GATEWAY_MIN_EXPIRES_S", "5", 1);
    cc_harness_start_callpath(s_h, &s_path, "100=queue:sales", 34000 + (getpid() % 30) * 100);

    cc_redis_t *redis = cc_redis_new(getenv("REDIS_URL"), 2000, NULL);
    CHECK(cc_redis_connect(redis) == 0, "redis");

    wrong_password_is_refused();
    phone_t agent;
    right_password_registers(&agent);

    cc_rpc_client_opts_t ro = { .endpoint = s_path.acd_rpc, .source = "baresip", .retry_ms = 300, .max_attempts = 3 };
    cc_rpc_client_t *acd = cc_rpc_client_new(&ro);
    Cc__AgentLogin login = CC__AGENT_LOGIN__INIT;
    login.agent_id = "1001";
    uint8_t buf[128];
    size_t len = cc__agent_login__pack(&login, buf);
    Cc__Reply *reply = NULL;
    CHECK(cc_rpc_call_sync(acd, "agent.login", buf, len, 5000, &reply) == 0 && reply->status == 0, "agent login");
    cc__reply__free_unpacked(reply, NULL);

    queued_caller_is_bridged_to_baresip_and_audio_flows_both_ways(&agent, redis);
    unregister_on_exit_removes_the_registration();
    phone_on_tcp_registers_and_is_rung_over_tcp(redis);
    pcma_phone_and_pcmu_caller_are_bridged_through_conversion(redis);
    unanswered_and_declined_offers_then_a_manual_answer_and_the_agent_hangs_up(redis, acd);
    malformed_registers_get_the_right_status_and_the_next_one_works();
    unrefreshed_registration_expires_and_the_offer_puts_the_agent_not_ready(redis);
    registration_survives_a_gateway_restart(redis, acd);
    registration_while_postgresql_is_down_is_stored_when_it_is_back();

    if (s_udp >= 0) close(s_udp);
    cc_rpc_client_destroy(&acd);
    cc_redis_destroy(&redis);
    cc_bus_destroy(&s_events);
    cc_pg_destroy(&s_pg);
    cc_harness_destroy(&s_h);
    cc_log_shutdown();
    printf("baresip_agent_test: 11 passed, 0 failed\n");
    return 0;
}
