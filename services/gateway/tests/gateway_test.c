/* gateway_test: real SIP against the gateway, from SIPp and raw sockets,
 * checked on the CDR rows in PostgreSQL and the events on the bus.
 *
 * call_with_rfc4733_digit_and_bye_from_caller (UDP, and again over TCP)
 * cancel_before_answer_gets_487
 * codec_mismatch_gets_488
 * late_offer_and_bye_from_gateway
 * hold_and_unhold_with_reinvite
 * options_answered
 * unknown_source_refused_with_403
 * invite_flood_gets_503_and_every_invite_an_answer
 * hostile_sip_does_not_stop_the_gateway
 * hundred_concurrent_calls
 * no_dead_air_when_acd_does_not_answer
 * media_api_collects_a_digit_plays_and_hangs_up
 * recording_has_the_right_duration_without_the_paused_part
 * recording_never_overwrites_an_earlier_file
 * cdr_refused_by_the_database_does_not_hold_back_the_next
 * call_control_answer_originate_bridge_hold_transfer
 * ringing_calls_refused_cancelled_or_timed_out
 * dtmf_sent_as_rfc4733_events_and_bad_requests_refused
 * dtmf_sent_as_sip_info_without_telephone_event */
#include "cc_check.h"
#include "cc_harness.h"
#include "cc/cc_bus.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_util.h"
#include "call.pb-c.h"
#include "media.pb-c.h"
#include "queue.pb-c.h"
#include "cc/cc_rpc.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <sndfile.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef GW_SOURCE_DIR
#error "GW_SOURCE_DIR must be defined"
#endif

static cc_harness_t *s_h;
static int s_sip_port, s_admin;
static pid_t s_gw;
static cc_pg_t *s_pg;
static cc_bus_t *s_events;
static int s_trunk_port;
static char s_rpc[64];

static int
s_wait_sipp(pid_t pid)
{
    int status = cc_harness_stop(s_h, pid, 0, 90000);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* SIPp's SIP port (lp) and media port (mp; it binds mp and mp + 2), free
 * for UDP and TCP: SIPp exits at once when one is taken, and the tests on
 * the machine (other gateways' RTP among them) bind ports all the time. */
static void
s_sipp_ports(char *lp, char *mp)
{
    snprintf(lp, 16, "%d", cc_harness_free_ports(1));
    snprintf(mp, 16, "%d", cc_harness_free_ports(3));
}

/* Starts a caller (uac_ivr: presses 1, waits for the gateway's BYE) in the
 * background; echo sends back what it hears. Returns its pid. */
static pid_t
s_ivr_caller(const char *label, const char *service, bool echo)
{
    char sf[512], remote[64], lp[16], mp[16];
    snprintf(sf, sizeof sf, "%s/tests/sipp/uac_ivr.xml", GW_SOURCE_DIR);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", s_sip_port);
    s_sipp_ports(lp, mp);
    const char *args[] = { "-sf", sf, "-s", service, "-m", "1", "-p", lp, "-mp", mp, "-nostdin", "-timeout", "60s",
                           "-timeout_error", echo ? "-rtp_echo" : remote, echo ? remote : NULL, NULL };
    return cc_harness_spawn_as(s_h, label, "/usr/bin/sipp", args);
}

/* Runs one SIPp scenario; returns SIPp's exit code (0: every call passed). */
static int
s_sipp(const char *scenario, const char *service, int calls, const char *extra1, const char *extra2)
{
    char sf[512], remote[64], m[16], lp[16], mp[16], log[64];
    snprintf(sf, sizeof sf, "%s/tests/sipp/%s.xml", GW_SOURCE_DIR, scenario);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", s_sip_port);
    snprintf(m, sizeof m, "%d", calls);
    s_sipp_ports(lp, mp);
    snprintf(log, sizeof log, "sipp-%s", scenario);
    /* 50 new calls a second: half the gateway's limit of 100 per source (a
     * SIPp late by up to a second, under load, catches up within it). */
    const char *args[] = { "-sf", sf, "-s", service, "-m", m, "-l", m, "-r", "50", "-p", lp, "-mp", mp,
                           "-nostdin", "-timeout", "60s", "-timeout_error", remote,
                           extra1, extra2, NULL };
    pid_t pid = cc_harness_spawn_as(s_h, log, "/usr/bin/sipp", args);
    int status = cc_harness_stop(s_h, pid, 0, 90000);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static PGresult *
s_query(const char *sql)
{
    PGresult *res = NULL;
    CHECK(cc_pg_run(s_pg, sql, &res) == 0, "%s: %s", sql, cc_pg_error(s_pg));
    return res;
}

/* The highest CDR id now: a scenario's rows come after it. */
static long
s_cdr_mark(void)
{
    PGresult *res = s_query("SELECT coalesce(max(id), 0) FROM telephony.cdr");
    long id = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    return id;
}

/* The newest CDR of caller written after mark (s_cdr_mark before the
 * scenario: an earlier scenario's row of the same caller is never taken for
 * this one's); fails the test when none comes within 30 s. */
static PGresult *
s_cdr(const char *caller, long mark)
{
    char sql[512];
    for (int i = 0; i < 300; i++) {
        snprintf(sql, sizeof sql, "SELECT sip_cause, hangup_by, codec, rtp_sent, rtp_received, dtmf, reason,"
                 " extract(epoch FROM ended_at - answered_at) FROM telephony.cdr WHERE caller = '%s' AND id > %ld"
                 " ORDER BY id DESC LIMIT 1", caller, mark);
        PGresult *res = s_query(sql);
        if (PQntuples(res) == 1) return res;
        PQclear(res);
        cc_sleep_ms(100);
    }
    CHECK(0, "no CDR for %s", caller);
    return NULL;
}

static Cc__Envelope *
s_event(const char *type, int timeout_ms)
{
    int64_t end = cc_mono_ms() + timeout_ms;
    Cc__Envelope *env;
    while (cc_mono_ms() < end) {
        if (cc_bus_recv(s_events, &env, 100) != 0) continue;
        if (strcmp(env->type, type) == 0) return env;
        cc__envelope__free_unpacked(env, NULL);
    }
    CHECK(0, "no %s event", type);
    return NULL;
}

static void
call_with_rfc4733_digit_and_bye_from_caller(const char *transport)
{
    TEST_BEGIN(__func__);
    long mark = s_cdr_mark();
    printf("transport %s\n", transport);
    CHECK(s_sipp("uac_dtmf", "100", 1, "-t", transport) == 0, "SIPp call failed (see %s)", cc_harness_dir(s_h));
    PGresult *r = s_cdr("13800138000", mark);
    CHECK(strcmp(PQgetvalue(r, 0, 0), "200") == 0 && strcmp(PQgetvalue(r, 0, 1), "caller") == 0, "cause %s by %s",
          PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
    CHECK(strcmp(PQgetvalue(r, 0, 5), "15") == 0, "digits received (RFC 4733 then INFO): '%s'", PQgetvalue(r, 0, 5));
    long sent = atol(PQgetvalue(r, 0, 3)), received = atol(PQgetvalue(r, 0, 4));
    double talk = atof(PQgetvalue(r, 0, 7));
    /* 20 ms packets for the whole talk time, give or take start and end. */
    CHECK(sent >= (long) (talk * 50) - 10 && sent <= (long) (talk * 50) + 5, "sent %ld packets in %.2f s", sent, talk);
    CHECK(received >= 5, "received %ld RTP packets (the digit's)", received);
    CHECK(strcmp(PQgetvalue(r, 0, 2), "PCMU") == 0, "codec %s", PQgetvalue(r, 0, 2));
    printf("talk %.2f s, rtp sent %ld, received %ld\n", talk, sent, received);
    PQclear(r);
    Cc__Envelope *env = s_event("call.dtmf", 30000);
    Cc__CallDtmf *d = cc__call_dtmf__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(d && strcmp(d->digit, "1") == 0 && strcmp(d->method, "rfc4733") == 0, "dtmf event");
    cc__call_dtmf__free_unpacked(d, NULL);
    cc__envelope__free_unpacked(env, NULL);
    env = s_event("call.ended", 30000);
    Cc__CallEnded *e = cc__call_ended__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(e && e->hangup_by == CC__PARTY__PARTY_CALLER && e->sip_cause == 200, "ended event");
    cc__call_ended__free_unpacked(e, NULL);
    cc__envelope__free_unpacked(env, NULL);
    TEST_PASS(__func__);
}

static void
cancel_before_answer_gets_487(void)
{
    TEST_BEGIN(__func__);
    long mark = s_cdr_mark();
    CHECK(s_sipp("uac_cancel", "555", 1, "-t", "u1") == 0, "CANCEL scenario");
    PGresult *r = s_cdr("13800138001", mark);
    CHECK(strcmp(PQgetvalue(r, 0, 0), "487") == 0 && strcmp(PQgetvalue(r, 0, 1), "caller") == 0, "cause %s",
          PQgetvalue(r, 0, 0));
    PQclear(r);
    TEST_PASS(__func__);
}

static void
codec_mismatch_gets_488(void)
{
    TEST_BEGIN(__func__);
    long mark = s_cdr_mark();
    CHECK(s_sipp("uac_codec_mismatch", "100", 1, "-t", "u1") == 0, "488 scenario");
    PGresult *r = s_cdr("13800138002", mark);
    CHECK(strcmp(PQgetvalue(r, 0, 0), "488") == 0, "cause %s", PQgetvalue(r, 0, 0));
    PQclear(r);
    TEST_PASS(__func__);
}

static void
late_offer_and_bye_from_gateway(void)
{
    TEST_BEGIN(__func__);
    long mark = s_cdr_mark();
    CHECK(s_sipp("uac_late_offer_gw_bye", "999", 1, "-t", "u1") == 0, "late offer scenario");
    PGresult *r = s_cdr("13800138003", mark);
    CHECK(strcmp(PQgetvalue(r, 0, 0), "200") == 0 && strcmp(PQgetvalue(r, 0, 1), "system") == 0, "by %s",
          PQgetvalue(r, 0, 1));
    CHECK(strcmp(PQgetvalue(r, 0, 2), "PCMA") == 0, "codec from the answer in the ACK: %s", PQgetvalue(r, 0, 2));
    /* The 1.5 s announcement went out whole: 75 packets. */
    long sent = atol(PQgetvalue(r, 0, 3));
    CHECK(sent >= 70 && sent <= 76, "announcement packets %ld", sent);
    PQclear(r);
    TEST_PASS(__func__);
}

static void
hold_and_unhold_with_reinvite(void)
{
    TEST_BEGIN(__func__);
    long mark = s_cdr_mark();
    CHECK(s_sipp("uac_hold", "100", 1, "-t", "u1") == 0, "hold scenario");
    PGresult *r = s_cdr("13800138004", mark);
    CHECK(strcmp(PQgetvalue(r, 0, 0), "200") == 0, "cause %s", PQgetvalue(r, 0, 0));
    PQclear(r);
    TEST_PASS(__func__);
}

/* Sends text as one UDP datagram and returns the first reply line (or ""). */
static void
s_udp(const char *text, size_t len, char *reply, size_t cap, int wait_ms)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t) s_sip_port) };
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = { wait_ms / 1000, (wait_ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sendto(fd, text, len, 0, (struct sockaddr *) &to, sizeof to);
    ssize_t n = reply ? recv(fd, reply, cap - 1, 0) : -1;
    if (reply) {
        reply[n > 0 ? n : 0] = '\0';
        char *nl = strchr(reply, '\r');
        if (nl) *nl = '\0';
    }
    close(fd);
}

static void
s_options_ok(void)
{
    char reply[4096];
    const char *o = "OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bKopt%d\r\n"
                    "From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:gw@127.0.0.1>\r\nCall-ID: opt-%d\r\nCSeq: 1 OPTIONS\r\n"
                    "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    char text[512];
    static int n;
    n++;
    int len = snprintf(text, sizeof text, o, n, n);
    s_udp(text, (size_t) len, reply, sizeof reply, 10000);
    CHECK(strcmp(reply, "SIP/2.0 200 OK") == 0, "OPTIONS answer: '%s'", reply);
}

static void
options_answered(void)
{
    TEST_BEGIN(__func__);
    CHECK(s_sipp("options", "100", 1, "-t", "u1") == 0, "OPTIONS by SIPp");
    s_options_ok();
    TEST_PASS(__func__);
}

static void
unknown_source_refused_with_403(void)
{
    TEST_BEGIN(__func__);
    /* SIPp from 127.0.0.3, not in GATEWAY_TRUNKS: it expects a 200 and fails. */
    CHECK(s_sipp("uac_dtmf", "100", 1, "-i", "127.0.0.3") != 0, "a call from an unknown source went through");
    char log[512];
    snprintf(log, sizeof log, "%s/gateway.log", cc_harness_dir(s_h));
    char *text = cc_harness_read_file(log);
    CHECK(text && strstr(text, "INVITE refused: unknown source\" source=127.0.0.3"), "log line for the refusal");
    free(text);
    TEST_PASS(__func__);
}

/* INVITE number i of a flood into text; G.729 only: an accepted one ends at
 * once with 488, no call stays up. Returns its length. */
static int
s_flood_invite(char *text, size_t cap, const char *name, int i)
{
    return snprintf(text, cap,
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5998;rport;branch=z9hG4bK%s%d\r\n"
        "From: <sip:flood@127.0.0.1>;tag=f%d\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: %s-%d\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:flood@127.0.0.1:5998>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n"
        "Content-Length: 85\r\n\r\nv=0\r\no=f 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 18\r\n\r\n",
        name, i, i, name, i);
}

static void
invite_flood_gets_503_and_every_invite_an_answer(void)
{
    TEST_BEGIN(__func__);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t) s_sip_port) };
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* 400 in 0.2 s (4 s even if load slowed this loop twentyfold): more than
     * the limit of 100 a second lets through. */
    int sent = 400;
    for (int i = 0; i < sent; i++) {
        char text[1024];
        int len = s_flood_invite(text, sizeof text, "flood", i);
        sendto(fd, text, (size_t) len, 0, (struct sockaddr *) &to, sizeof to);
        /* 2,000 a second: far over the limit, without overflowing the
         * kernel's socket buffers (UDP would drop; a real client resends). */
        usleep(500);
    }
    int r488 = 0, r503 = 0, other = 0;
    struct timeval tv = { 10, 0 };   /* a silence that long: no more answers come */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    /* Retransmissions repeat answers: count each Call-ID's final answer once. */
    static char seen[400];
    memset(seen, 0, sizeof seen);
    while (r488 + r503 + other < sent) {
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n <= 0) break;
        buf[n] = 0;
        char *cid = strstr(buf, "Call-ID: flood-");
        if (!cid) continue;
        int k = atoi(cid + 15);
        if (k < 0 || k >= sent || seen[k]) continue;
        if (strncmp(buf, "SIP/2.0 1", 9) == 0) continue;
        seen[k] = 1;
        if (strncmp(buf, "SIP/2.0 488", 11) == 0) r488++;
        else if (strncmp(buf, "SIP/2.0 503", 11) == 0) r503++;
        else other++;
    }
    close(fd);
    printf("flood of %d INVITEs: %d got 488, %d got 503, %d other\n", sent, r488, r503, other);
    CHECK(r503 > 0, "no INVITE was rate limited");
    CHECK(r488 >= 50, "the allowed ones were handled (%d)", r488);
    CHECK(r488 + r503 + other == sent, "every INVITE got a final answer (%d of %d)", r488 + r503 + other, sent);
    s_options_ok();
    /* The flood's second over: this source is let in again (the next test's
     * calls come from it). */
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    tv = (struct timeval) { 10, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0;; i++) {
        char text[1024], reply[4096] = "";
        int len = s_flood_invite(text, sizeof text, "after-flood", i);
        sendto(fd, text, (size_t) len, 0, (struct sockaddr *) &to, sizeof to);
        ssize_t n;
        while ((n = recv(fd, reply, sizeof reply - 1, 0)) > 0 && (reply[n] = 0, strncmp(reply, "SIP/2.0 1", 9) == 0)) {}
        if (strncmp(reply, "SIP/2.0 488", 11) == 0) break;
        CHECK(strncmp(reply, "SIP/2.0 503", 11) == 0 && i < 100, "after the flood: %.40s", reply);
        cc_sleep_ms(100);
    }
    close(fd);
    TEST_PASS(__func__);
}

static void
hostile_sip_does_not_stop_the_gateway(void)
{
    TEST_BEGIN(__func__);
    static char big[70000];
    static const char garbage[] = "\x00\x01\x02garbage\xff\xfe";
    const char *cases[] = {
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5997;branch=z9hG4bKt1\r\nFrom: <sip:a@b>;tag=1\r\n",
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5997;branch=z9hG4bKt2\r\nFrom: <sip:a@b>;tag=1\r\n"
        "To: <sip:100@b>\r\nCall-ID: cl-1\r\nCSeq: 1 INVITE\r\nContent-Length: 99999\r\n\r\nv=0\r\n",
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5997;branch=z9hG4bKt3\r\nFrom: <sip:a@b>;tag=1\r\n"
        "To: <sip:100@b>\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",                      /* no Call-ID */
        "INVITE not-a-uri SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5997;branch=z9hG4bKt4\r\nFrom: <sip:a@b>;tag=1\r\n"
        "To: <sip:100@b>\r\nCall-ID: bad-uri\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5997;branch=z9hG4bKt5\r\nFrom: <sip:a@b>;tag=1\r\n"
        "To: <sip:100@b>\r\nCall-ID: bad-sdp\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 20\r\n\r\n"
        "m=audio x RTP/AVP\r\nz",
        garbage,
        "SIP/2.0 200 OK\r\n\r\n",
        big,
    };
    /* A message of 1000 Via headers and a 60 kB header line. */
    size_t at = (size_t) snprintf(big, sizeof big, "OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\n");
    for (int i = 0; i < 1000 && at < 40000; i++)
        at += (size_t) snprintf(big + at, sizeof big - at, "Via: SIP/2.0/UDP 10.%d.0.1;branch=z9hG4bK%d\r\n", i % 250, i);
    at += (size_t) snprintf(big + at, sizeof big - at, "X-Huge: ");
    memset(big + at, 'a', 20000);
    at += 20000;
    snprintf(big + at, sizeof big - at, "\r\n\r\n");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        s_udp(cases[i], cases[i] == garbage ? sizeof garbage - 1 : strlen(cases[i]), NULL, 0, 0);
        cc_sleep_ms(20);
        s_options_ok();
    }
    CHECK(kill(s_gw, 0) == 0, "gateway alive");
    TEST_PASS(__func__);
}

static void
no_dead_air_when_acd_does_not_answer(void)
{
    TEST_BEGIN(__func__);
    long mark = s_cdr_mark();
    /* The caller hears music, then (acd silent for 500 ms) the fallback
     * message once, then the gateway's BYE. */
    CHECK(s_sipp("uac_late_offer_gw_bye", "700", 1, "-t", "u1") == 0, "released by the gateway");
    PGresult *r = s_cdr("13800138003", mark);
    CHECK(strcmp(PQgetvalue(r, 0, 1), "system") == 0 && strcmp(PQgetvalue(r, 0, 6), "acd did not answer") == 0,
          "by %s: %s", PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 6));
    long sent = atol(PQgetvalue(r, 0, 3));
    CHECK(sent >= 75, "music and the whole 1.5 s fallback message: %ld packets", sent);
    PQclear(r);
    TEST_PASS(__func__);
}

/* A request to the gateway's media API; returns the reply (caller frees).
 * The tests give it 30 s: a loaded machine (other tests, compilers) has
 * held one for 5 s. */
static Cc__Reply *
s_media(cc_rpc_client_t *c, const char *method, const ProtobufCMessage *m, int timeout_ms)
{
    uint8_t buf[512];
    size_t len = protobuf_c_message_pack(m, buf);
    Cc__Reply *r = NULL;
    CHECK(cc_rpc_call_sync(c, method, buf, len, timeout_ms, &r) == 0, "%s: no reply", method);
    return r;
}

static void
media_api_collects_a_digit_plays_and_hangs_up(void)
{
    TEST_BEGIN(__func__);
    long mark = s_cdr_mark();
    /* Drain earlier events, then the caller dials the menu number. */
    Cc__Envelope *env;
    while (cc_bus_recv(s_events, &env, 100) == 0) cc__envelope__free_unpacked(env, NULL);
    pid_t caller = s_ivr_caller("sipp-ivr", "800", false);
    env = s_event("call.started", 30000);
    char call_id[64];
    snprintf(call_id, sizeof call_id, "%s", env->trace_id);
    cc__envelope__free_unpacked(env, NULL);

    cc_rpc_client_opts_t o = { .endpoint = s_rpc, .source = "gateway_test", .retry_ms = 5000, .max_attempts = 1 };
    cc_rpc_client_t *c = cc_rpc_client_new(&o);
    Cc__MediaCollect col = CC__MEDIA_COLLECT__INIT;
    col.call_id = call_id;
    col.max_digits = 1;
    col.terminators = "#";
    col.first_digit_timeout_ms = 8000;
    col.inter_digit_timeout_ms = 3000;
    Cc__Reply *r = s_media(c, "media.collect", &col.base, 30000);
    CHECK(r->status == CC__STATUS__STATUS_OK, "collect: %s", r->error);
    Cc__MediaCollected *got = cc__media_collected__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(got && strcmp(got->digits, "1") == 0 && strcmp(got->ended_by, "max") == 0, "collected '%s' (%s)",
          got ? got->digits : "?", got ? got->ended_by : "?");
    cc__media_collected__free_unpacked(got, NULL);
    cc__reply__free_unpacked(r, NULL);

    Cc__MediaPlay play = CC__MEDIA_PLAY__INIT;
    char *files[] = { "tone:880" };
    play.call_id = call_id;
    play.files = files;
    play.n_files = 1;
    int64_t t0 = cc_mono_ms();
    r = s_media(c, "media.play", &play.base, 30000);
    int64_t took = cc_mono_ms() - t0;
    CHECK(r->status == CC__STATUS__STATUS_OK && took >= 1400, "played once (%lld ms): %s", (long long) took, r->error);
    cc__reply__free_unpacked(r, NULL);

    /* Speech: English and Mandarin, rendered once and cached by text. */
    Cc__MediaSay say = CC__MEDIA_SAY__INIT;
    say.call_id = call_id;
    say.text = "Your order has shipped.";
    say.language = "en";
    for (int i = 0; i < 2; i++) {
        t0 = cc_mono_ms();
        r = s_media(c, "media.say", &say.base, 30000);
        took = cc_mono_ms() - t0;
        CHECK(r->status == CC__STATUS__STATUS_OK && took >= 800, "said in %lld ms: %s", (long long) took, r->error);
        cc__reply__free_unpacked(r, NULL);
    }
    say.text = "您的订单已经发货了";
    say.language = "zh";
    r = s_media(c, "media.say", &say.base, 30000);
    CHECK(r->status == CC__STATUS__STATUS_OK, "Mandarin: %s", r->error);
    cc__reply__free_unpacked(r, NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s/tts/tts-*.wav | wc -l", cc_harness_dir(s_h));
    FILE *ls = popen(cmd, "r");
    int rendered = 0;
    CHECK(ls && fscanf(ls, "%d", &rendered) == 1, "count");
    pclose(ls);
    CHECK(rendered == 2, "two texts, two renderings (cache hit the second time): %d", rendered);
    say.language = "xx";
    r = s_media(c, "media.say", &say.base, 30000);
    CHECK(r->status == CC__STATUS__STATUS_BAD_REQUEST, "unknown language refused");
    cc__reply__free_unpacked(r, NULL);

    /* acd's position announcement: answered at once, spoken between the music. */
    Cc__QueuePosition pos = CC__QUEUE_POSITION__INIT;
    pos.call_id = call_id;
    pos.queue = "sales";
    pos.position = 3;
    pos.estimated_wait_s = 125;
    t0 = cc_mono_ms();
    r = s_media(c, "gateway.announce", &pos.base, 30000);
    /* Answered before it is spoken: a reply after the speech (about 4 s)
     * would take longer than this under any load. */
    CHECK(r->status == CC__STATUS__STATUS_OK && cc_mono_ms() - t0 < 3000, "announce answered at once (%lld ms)",
          (long long) (cc_mono_ms() - t0));
    cc__reply__free_unpacked(r, NULL);
    for (int i = 0; i < 600 && rendered < 3; i++) {
        cc_sleep_ms(50);
        ls = popen(cmd, "r");
        if (ls && fscanf(ls, "%d", &rendered) != 1) rendered = 0;
        if (ls) pclose(ls);
    }
    CHECK(rendered == 3, "the announcement was spoken (rendered: %d files)", rendered);
    cc_sleep_ms(4000);   /* said, and back to the music */

    /* Timeout: no more digits come. */
    col.first_digit_timeout_ms = 300;
    r = s_media(c, "media.collect", &col.base, 30000);
    got = cc__media_collected__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(got && strcmp(got->ended_by, "timeout") == 0 && !got->digits[0], "timeout");
    cc__media_collected__free_unpacked(got, NULL);
    cc__reply__free_unpacked(r, NULL);

    Cc__MediaHangup h = CC__MEDIA_HANGUP__INIT;
    h.call_id = call_id;
    h.reason = "menu finished";
    r = s_media(c, "media.hangup", &h.base, 30000);
    CHECK(r->status == CC__STATUS__STATUS_OK, "hangup: %s", r->error);
    cc__reply__free_unpacked(r, NULL);
    CHECK(s_wait_sipp(caller) == 0, "the caller got the BYE");

    /* Bad requests: clear errors, nothing breaks. */
    col.max_digits = 0;
    r = s_media(c, "media.collect", &col.base, 30000);
    CHECK(r->status == CC__STATUS__STATUS_BAD_REQUEST, "0 digits refused");
    cc__reply__free_unpacked(r, NULL);
    r = s_media(c, "media.hangup", &h.base, 30000);
    CHECK(r->status == CC__STATUS__STATUS_NOT_FOUND, "a call that is gone: %d", r->status);
    cc__reply__free_unpacked(r, NULL);
    cc_rpc_client_destroy(&c);
    PGresult *res = s_cdr("13800138010", mark);
    CHECK(strcmp(PQgetvalue(res, 0, 6), "menu finished") == 0 && strcmp(PQgetvalue(res, 0, 5), "1") == 0, "CDR %s %s",
          PQgetvalue(res, 0, 6), PQgetvalue(res, 0, 5));
    PQclear(res);
    TEST_PASS(__func__);
}

static void
recording_has_the_right_duration_without_the_paused_part(void)
{
    TEST_BEGIN(__func__);
    Cc__Envelope *env;
    while (cc_bus_recv(s_events, &env, 100) == 0) cc__envelope__free_unpacked(env, NULL);
    /* The caller echoes what it hears: steady audio to record. */
    pid_t caller = s_ivr_caller("sipp-rec", "810", true);
    env = s_event("call.started", 30000);
    char call_id[64];
    snprintf(call_id, sizeof call_id, "%s", env->trace_id);
    cc__envelope__free_unpacked(env, NULL);
    cc_rpc_client_opts_t o = { .endpoint = s_rpc, .source = "gateway_test", .retry_ms = 5000, .max_attempts = 1 };
    cc_rpc_client_t *c = cc_rpc_client_new(&o);
    Cc__MediaRecord rec = CC__MEDIA_RECORD__INIT;
    rec.call_id = call_id;
    rec.path = "../escape.wav";
    Cc__Reply *r = s_media(c, "media.record", &rec.base, 30000);
    CHECK(r->status == CC__STATUS__STATUS_BAD_REQUEST, "a path out of the folder is refused");
    cc__reply__free_unpacked(r, NULL);
    cc_sleep_ms(300);   /* the echo is flowing */
    rec.path = "rec-1.wav";
    /* What the file must hold lies between the sleeps (requests taking no
     * time) and the sleeps with the requests' round trips (under load). */
    int64_t start_sent = cc_mono_ms();
    r = s_media(c, "media.record", &rec.base, 30000);
    int64_t started = cc_mono_ms();
    CHECK(r->status == CC__STATUS__STATUS_OK, "start: %s", r->error);
    cc__reply__free_unpacked(r, NULL);
    cc_sleep_ms(1000);
    Cc__MediaRecord cmd = CC__MEDIA_RECORD__INIT;
    cmd.call_id = call_id;
    cmd.pause = 1;     /* the card number is spoken now: not recorded */
    int64_t pause_sent = cc_mono_ms();
    r = s_media(c, "media.record", &cmd.base, 30000);
    int64_t paused = cc_mono_ms();
    cc__reply__free_unpacked(r, NULL);
    cc_sleep_ms(800);
    cmd.pause = 0;
    cmd.resume = 1;
    int64_t resume_sent = cc_mono_ms();
    r = s_media(c, "media.record", &cmd.base, 30000);
    int64_t resumed = cc_mono_ms();
    cc__reply__free_unpacked(r, NULL);
    cc_sleep_ms(1000);
    cmd.resume = 0;
    cmd.stop = 1;
    int64_t stop_sent = cc_mono_ms();
    r = s_media(c, "media.record", &cmd.base, 30000);
    int64_t stopped = cc_mono_ms();
    CHECK(r->status == CC__STATUS__STATUS_OK, "stop: %s", r->error);
    cc__reply__free_unpacked(r, NULL);
    int64_t least_ms = (pause_sent - started) + (stop_sent - resumed);
    int64_t most_ms = (paused - start_sent) + (stopped - resume_sent);
    /* A second recording still running when the call is hung up: closed whole. */
    rec.path = "rec-2.wav";
    r = s_media(c, "media.record", &rec.base, 30000);
    CHECK(r->status == CC__STATUS__STATUS_OK, "start 2: %s", r->error);
    cc__reply__free_unpacked(r, NULL);
    cc_sleep_ms(500);
    Cc__MediaHangup h = CC__MEDIA_HANGUP__INIT;
    h.call_id = call_id;
    r = s_media(c, "media.hangup", &h.base, 30000);
    cc__reply__free_unpacked(r, NULL);
    CHECK(s_wait_sipp(caller) == 0, "caller done");
    cc_rpc_client_destroy(&c);
    char path2[512];
    snprintf(path2, sizeof path2, "%s/rec-2.wav", cc_harness_dir(s_h));
    SF_INFO info2 = { 0 };
    /* The call's CDR is stored after its recording is closed. */
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT 1 FROM telephony.cdr WHERE call_id = '%s'", call_id);
    PGresult *res = NULL;
    for (int i = 0; i < 300; i++) {
        if (res) PQclear(res);
        res = s_query(sql);
        if (PQntuples(res) == 1) break;
        cc_sleep_ms(100);
    }
    CHECK(PQntuples(res) == 1, "the recorded call's CDR");
    PQclear(res);
    SNDFILE *f2 = sf_open(path2, SFM_READ, &info2);
    CHECK(f2 && info2.frames > 2000, "the recording cut by the hang-up is a whole file (%lld frames)",
          f2 ? (long long) info2.frames : -1LL);
    sf_close(f2);
    CHECK(kill(s_gw, 0) == 0, "gateway alive after hanging up a recorded call");
    char path[512];
    snprintf(path, sizeof path, "%s/rec-1.wav", cc_harness_dir(s_h));
    SF_INFO info = { 0 };
    SNDFILE *f = sf_open(path, SFM_READ, &info);
    CHECK(f, "recording at %s", path);
    sf_close(f);
    double secs = (double) info.frames / info.samplerate;
    printf("recorded %.2f s (2.0 s recorded, 0.8 s paused; %lld to %lld ms given the requests' round trips)\n", secs,
           (long long) least_ms, (long long) most_ms);
    CHECK(info.samplerate == 8000 && info.channels == 1, "8 kHz mono");
    /* Give or take a few 20 ms frames at each edge. */
    CHECK(secs * 1000 > (double) least_ms - 200 && secs * 1000 < (double) most_ms + 200,
          "the recording lasts %.2f s, not %lld to %lld ms: the pause leaked or audio was lost", secs,
          (long long) least_ms, (long long) most_ms);
    res = s_query("SELECT recording FROM telephony.cdr WHERE recording <> '' ORDER BY id DESC LIMIT 1");
    CHECK(PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "rec-2.wav") == 0, "CDR names the call's last recording");
    PQclear(res);
    /* Every recording of the call, in order, with the audio each file holds. */
    snprintf(sql, sizeof sql, "SELECT r.seq, r.path, r.duration_ms, r.started_at >= c.answered_at FROM telephony.cdr_recording r"
             " JOIN telephony.cdr c ON c.id = r.cdr_id WHERE r.call_id = '%s' ORDER BY r.seq", call_id);
    res = s_query(sql);
    CHECK(PQntuples(res) == 2, "two recordings kept for the call, got %d", PQntuples(res));
    long ms1 = atol(PQgetvalue(res, 0, 2)), ms2 = atol(PQgetvalue(res, 1, 2));
    printf("recordings: %s %ld ms, %s %ld ms\n", PQgetvalue(res, 0, 1), ms1, PQgetvalue(res, 1, 1), ms2);
    CHECK(strcmp(PQgetvalue(res, 0, 0), "1") == 0 && strcmp(PQgetvalue(res, 0, 1), "rec-1.wav") == 0
          && strcmp(PQgetvalue(res, 1, 1), "rec-2.wav") == 0 && strcmp(PQgetvalue(res, 1, 3), "t") == 0, "in order");
    CHECK(ms1 == (long) (info.frames / 8), "the first one's length matches its file: %ld ms, %lld frames", ms1,
          (long long) info.frames);
    CHECK(ms2 == (long) (info2.frames / 8) && ms2 >= 250, "the one cut by the hang-up: %ld ms, file %lld frames", ms2,
          (long long) info2.frames);
    PQclear(res);
    TEST_PASS(__func__);
}

/* One answered echo call to the recording route; its call id in call_id. */
static pid_t
s_rec_call(const char *label, char *call_id, size_t size)
{
    pid_t caller = s_ivr_caller(label, "810", true);
    Cc__Envelope *env = s_event("call.started", 30000);
    snprintf(call_id, size, "%s", env->trace_id);
    cc__envelope__free_unpacked(env, NULL);
    return caller;
}

static void
s_rec_hangup(cc_rpc_client_t *c, const char *call_id, pid_t caller)
{
    Cc__MediaHangup h = CC__MEDIA_HANGUP__INIT;
    h.call_id = (char *) call_id;
    Cc__Reply *r = s_media(c, "media.hangup", &h.base, 30000);
    cc__reply__free_unpacked(r, NULL);
    CHECK(s_wait_sipp(caller) == 0, "caller done");
}

static void
recording_never_overwrites_an_earlier_file(void)
{
    TEST_BEGIN(__func__);
    Cc__Envelope *env;
    while (cc_bus_recv(s_events, &env, 100) == 0) cc__envelope__free_unpacked(env, NULL);
    cc_rpc_client_opts_t o = { .endpoint = s_rpc, .source = "gateway_test", .retry_ms = 5000, .max_attempts = 1 };
    cc_rpc_client_t *c = cc_rpc_client_new(&o);
    char first[64], second[64];
    pid_t caller = s_rec_call("sipp-rec-x1", first, sizeof first);
    cc_sleep_ms(300);   /* the echo is flowing */
    Cc__MediaRecord rec = CC__MEDIA_RECORD__INIT;
    rec.call_id = first;
    rec.path = "rec-x.wav";
    Cc__Reply *r = s_media(c, "media.record", &rec.base, 30000);
    CHECK(r->status == CC__STATUS__STATUS_OK, "first call's recording: %s", r->error);
    cc__reply__free_unpacked(r, NULL);
    cc_sleep_ms(1600);   /* the caller's scenario takes a BYE after its 1.5 s pause */
    s_rec_hangup(c, first, caller);   /* closes the file */
    char path[512];
    snprintf(path, sizeof path, "%s/rec-x.wav", cc_harness_dir(s_h));
    struct stat before;
    CHECK(stat(path, &before) == 0 && before.st_size > 44, "first recording written (%lld bytes)",
          (long long) before.st_size);
    SF_INFO info = { 0 };
    SNDFILE *f = sf_open(path, SFM_READ, &info);
    CHECK(f && info.frames > 2000, "first recording holds audio (%lld frames)", f ? (long long) info.frames : -1LL);
    sf_close(f);
    sf_count_t frames = info.frames;

    caller = s_rec_call("sipp-rec-x2", second, sizeof second);
    rec.call_id = second;
    r = s_media(c, "media.record", &rec.base, 30000);
    CHECK(r->status == CC__STATUS__STATUS_CONFLICT && strcmp(r->error, "recording file exists") == 0,
          "the same file name on another call: status %d '%s'", r->status, r->error);
    cc__reply__free_unpacked(r, NULL);
    cc_sleep_ms(1600);   /* audio that a wrongly opened file would take; past the caller's pause */
    s_rec_hangup(c, second, caller);
    cc_rpc_client_destroy(&c);
    struct stat after;
    CHECK(stat(path, &after) == 0 && after.st_size == before.st_size && after.st_mtime == before.st_mtime,
          "the first recording is untouched (%lld bytes, was %lld)", (long long) after.st_size,
          (long long) before.st_size);
    info = (SF_INFO) { 0 };
    f = sf_open(path, SFM_READ, &info);
    CHECK(f && info.frames == frames, "the first recording keeps its %lld frames (%lld)", (long long) frames,
          f ? (long long) info.frames : -1LL);
    sf_close(f);
    CHECK(kill(s_gw, 0) == 0, "gateway alive");
    TEST_PASS(__func__);
}

/* The value of a counter on the gateway's /metrics (-1 when absent). */
static long
s_metric(const char *name)
{
    char *body = NULL;
    CHECK(cc_harness_http_get(s_admin, "/metrics", &body) == 200 && body, "/metrics");
    long v = -1;
    size_t n = strlen(name);
    for (const char *l = body; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, name, n) == 0 && l[n] == ' ') v = atol(l + n + 1);
    free(body);
    return v;
}

static void
cdr_refused_by_the_database_does_not_hold_back_the_next(void)
{
    TEST_BEGIN(__func__);
    long refused = s_metric("gateway_cdr_refused_total");
    CHECK(refused == 0, "nothing refused yet (%ld)", refused);
    /* The codec mismatch's caller: a row the database refuses for good. */
    PQclear(s_query("ALTER TABLE telephony.cdr ADD CONSTRAINT gw_test_refuse CHECK (caller <> '13800138002') NOT VALID"));
    long mark = s_cdr_mark();
    CHECK(s_sipp("uac_codec_mismatch", "100", 1, "-t", "u1") == 0, "488 scenario");
    CHECK(s_sipp("uac_cancel", "555", 1, "-t", "u1") == 0, "CANCEL scenario");
    PGresult *r = s_cdr("13800138001", mark);   /* the call after the refused one */
    CHECK(strcmp(PQgetvalue(r, 0, 0), "487") == 0, "cause %s", PQgetvalue(r, 0, 0));
    PQclear(r);
    refused = s_metric("gateway_cdr_refused_total");
    CHECK(refused == 1, "one CDR refused and counted: %ld", refused);
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM telephony.cdr WHERE caller = '13800138002' AND id > %ld", mark);
    r = s_query(sql);
    CHECK(strcmp(PQgetvalue(r, 0, 0), "0") == 0, "the refused row is not there: %s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQclear(s_query("ALTER TABLE telephony.cdr DROP CONSTRAINT gw_test_refuse"));
    long backlog = s_metric("gateway_cdr_backlog");
    CHECK(backlog == 0, "nothing waits behind it: backlog %ld", backlog);
    TEST_PASS(__func__);
}

/* The next event of type about call_id (others are skipped). */
static Cc__Envelope *
s_event_for(const char *type, const char *call_id, int timeout_ms)
{
    int64_t end = cc_mono_ms() + timeout_ms;
    Cc__Envelope *env;
    while (cc_mono_ms() < end) {
        if (cc_bus_recv(s_events, &env, 100) != 0) continue;
        if (strcmp(env->type, type) == 0 && strcmp(env->trace_id, call_id) == 0) return env;
        cc__envelope__free_unpacked(env, NULL);
    }
    CHECK(0, "no %s event for %s", type, call_id);
    return NULL;
}

/* A MediaDone reply's result (the test fails on another status). */
static void
s_done(Cc__Reply *r, const char *method, const char *want)
{
    CHECK(r->status == CC__STATUS__STATUS_OK, "%s: status %d %s", method, r->status, r->error);
    Cc__MediaDone *d = cc__media_done__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(d && strcmp(d->result, want) == 0, "%s: result %s, want %s", method, d ? d->result : "?", want);
    cc__media_done__free_unpacked(d, NULL);
    cc__reply__free_unpacked(r, NULL);
}

static void
s_status(Cc__Reply *r, const char *what, int want)
{
    CHECK((int) r->status == want, "%s: status %d (%s), want %d", what, r->status, r->error, want);
    cc__reply__free_unpacked(r, NULL);
}

static void
call_control_answer_originate_bridge_hold_transfer(void)
{
    TEST_BEGIN(__func__);
    Cc__Envelope *env;
    while (cc_bus_recv(s_events, &env, 100) == 0) cc__envelope__free_unpacked(env, NULL);
    /* The carrier's side of the outbound trunk takes two calls. */
    char sf[512], lp[16], mp[16], remote[64];
    snprintf(sf, sizeof sf, "%s/tests/sipp/uas_trunk.xml", GW_SOURCE_DIR);
    snprintf(lp, sizeof lp, "%d", s_trunk_port);
    snprintf(mp, sizeof mp, "%d", cc_harness_free_ports(3));
    snprintf(remote, sizeof remote, "127.0.0.1:%d", s_sip_port);
    const char *targs[] = { "-sf", sf, "-m", "2", "-p", lp, "-mp", mp, "-nostdin", "-timeout", "60s", "-timeout_error",
                            remote, NULL };
    pid_t trunk = cc_harness_spawn_as(s_h, "sipp-trunk", "/usr/bin/sipp", targs);
    CHECK(cc_harness_wait_udp_bound(s_trunk_port, 30000), "the trunk's SIPp listens (see %s)", cc_harness_dir(s_h));
    cc_rpc_client_opts_t o = { .endpoint = s_rpc, .source = "gateway_test", .retry_ms = 15000, .max_attempts = 1 };
    cc_rpc_client_t *c = cc_rpc_client_new(&o);

    /* A wait route: the call rings until media.answer. */
    pid_t caller = s_ivr_caller("sipp-wait", "820", true);
    env = s_event("call.started", 30000);
    char a_id[64];
    snprintf(a_id, sizeof a_id, "%s", env->trace_id);
    cc__envelope__free_unpacked(env, NULL);
    Cc__MediaPlay play = CC__MEDIA_PLAY__INIT;
    char *files[] = { "tone:880" };
    play.call_id = a_id;
    play.files = files;
    play.n_files = 1;
    s_status(s_media(c, "media.play", &play.base, 30000), "play on a ringing call", CC__STATUS__STATUS_NOT_FOUND);
    Cc__MediaAnswer ans = CC__MEDIA_ANSWER__INIT;
    ans.call_id = a_id;
    s_done(s_media(c, "media.answer", &ans.base, 30000), "media.answer", "done");
    cc__envelope__free_unpacked(s_event_for("call.answered", a_id, 30000), NULL);
    s_done(s_media(c, "media.answer", &ans.base, 30000), "media.answer again", "done");

    /* Originate through the trunk: ringing, then answered with its own id. */
    Cc__MediaOriginate org = CC__MEDIA_ORIGINATE__INIT;
    org.destination = "5550001";
    org.caller_id = "4001";
    org.timeout_ms = 10000;
    Cc__Reply *r = s_media(c, "media.originate", &org.base, 30000);
    CHECK(r->status == CC__STATUS__STATUS_OK, "originate: %d %s", r->status, r->error);
    Cc__MediaOriginated *made = cc__media_originated__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(made && made->call_id[0] && strcmp(made->call_id, a_id) != 0, "originated call id");
    char b_id[64];
    snprintf(b_id, sizeof b_id, "%s", made->call_id);
    cc__media_originated__free_unpacked(made, NULL);
    cc__reply__free_unpacked(r, NULL);
    cc__envelope__free_unpacked(s_event_for("call.ringing", b_id, 30000), NULL);
    cc__envelope__free_unpacked(s_event_for("call.answered", b_id, 30000), NULL);

    /* Bridge: the customer's audio (PCMA) reaches the caller (PCMU), whose
     * echo goes back. */
    Cc__MediaBridge br = CC__MEDIA_BRIDGE__INIT;
    br.call_id = a_id;
    br.other_call_id = "no-such-call";
    s_status(s_media(c, "media.bridge", &br.base, 30000), "bridge with a call that is not there", CC__STATUS__STATUS_NOT_FOUND);
    br.other_call_id = b_id;
    s_done(s_media(c, "media.bridge", &br.base, 30000), "media.bridge", "done");
    env = s_event_for("call.bridged", a_id, 30000);
    Cc__CallBridged *cb = cc__call_bridged__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(cb && strcmp(cb->other_call_id, b_id) == 0, "call.bridged names the other call");
    cc__call_bridged__free_unpacked(cb, NULL);
    cc__envelope__free_unpacked(env, NULL);
    s_status(s_media(c, "media.bridge", &br.base, 30000), "bridging a bridged call", CC__STATUS__STATUS_CONFLICT);
    s_status(s_media(c, "media.play", &play.base, 30000), "a prompt to a bridged call", CC__STATUS__STATUS_CONFLICT);
    cc_sleep_ms(1500);
    Cc__MediaHold hold = CC__MEDIA_HOLD__INIT;
    hold.call_id = a_id;
    hold.hold = 1;
    s_done(s_media(c, "media.hold", &hold.base, 30000), "media.hold", "done");
    hold.music = "no-such-prompt";
    s_status(s_media(c, "media.hold", &hold.base, 30000), "hold with a prompt that is not there", CC__STATUS__STATUS_BAD_REQUEST);
    cc_sleep_ms(3000);   /* held: the caller hears music, and their echo of it goes nowhere */
    hold.hold = 0;
    hold.music = "";
    s_done(s_media(c, "media.hold", &hold.base, 30000), "media.hold off", "done");
    cc_sleep_ms(500);
    Cc__MediaUnbridge ub = CC__MEDIA_UNBRIDGE__INIT;
    ub.call_id = a_id;
    s_done(s_media(c, "media.unbridge", &ub.base, 30000), "media.unbridge", "done");
    s_status(s_media(c, "media.unbridge", &ub.base, 30000), "unbridging twice", CC__STATUS__STATUS_CONFLICT);

    /* Blind transfers: to a phone that is not registered, to a number
     * (answered), then to a queue (acd is silent here: the fallback
     * message, then the release). */
    Cc__MediaTransfer tr = CC__MEDIA_TRANSFER__INIT;
    tr.call_id = a_id;
    tr.destination = "agent:1009";
    s_done(s_media(c, "media.transfer", &tr.base, 30000), "transfer to an unregistered phone", "unregistered");
    tr.destination = "5550002";
    s_done(s_media(c, "media.transfer", &tr.base, 30000), "transfer to a number", "answered");
    cc_sleep_ms(500);
    tr.destination = "queue:sales";
    s_done(s_media(c, "media.transfer", &tr.base, 30000), "transfer to a queue", "queued");
    tr.destination = "bad destination";
    s_status(s_media(c, "media.transfer", &tr.base, 30000), "a bad destination", CC__STATUS__STATUS_BAD_REQUEST);
    org.destination = "not-a-number";
    s_status(s_media(c, "media.originate", &org.base, 30000), "originate to a bad number", CC__STATUS__STATUS_BAD_REQUEST);
    Cc__CallRef wd = CC__CALL_REF__INIT;
    wd.call_id = b_id;
    s_status(s_media(c, "gateway.withdraw", &wd.base, 30000), "a withdrawal without its agent", CC__STATUS__STATUS_BAD_REQUEST);
    wd.agent_id = "1009";
    s_status(s_media(c, "gateway.withdraw", &wd.base, 30000), "a withdrawal of no ringing offer (nothing to stop)",
             CC__STATUS__STATUS_OK);
    CHECK(s_wait_sipp(caller) == 0, "the caller was released after the fallback message");

    Cc__MediaHangup h = CC__MEDIA_HANGUP__INIT;
    h.call_id = b_id;
    h.reason = "customer call done";
    s_done(s_media(c, "media.hangup", &h.base, 30000), "hang up the originated call", "hangup");
    CHECK(s_wait_sipp(trunk) == 0, "the trunk's two calls were answered and got their BYE (see %s)", cc_harness_dir(s_h));
    cc_rpc_client_destroy(&c);

    /* The CDRs: the caller, its transfer leg, and the originated call. */
    char sql[512];
    PGresult *res = NULL;
    for (int i = 0; i < 300; i++) {
        if (res) PQclear(res);
        snprintf(sql, sizeof sql, "SELECT call_id = '%s', leg, direction, dialled, codec, rtp_sent, rtp_received, reason,"
                 " answered_at IS NOT NULL FROM telephony.cdr WHERE call_id IN ('%s', '%s') ORDER BY leg", a_id, a_id, b_id);
        res = s_query(sql);
        if (PQntuples(res) == 3) break;
        cc_sleep_ms(100);
    }
    CHECK(PQntuples(res) == 3, "three legs, got %d", PQntuples(res));
    for (int i = 0; i < 3; i++)
        printf("leg %s %s dialled %s codec %s sent %s received %s reason '%s'\n", PQgetvalue(res, i, 1),
               PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), PQgetvalue(res, i, 4), PQgetvalue(res, i, 5),
               PQgetvalue(res, i, 6), PQgetvalue(res, i, 7));
    /* ORDER BY leg: caller, outbound, transfer. */
    CHECK(strcmp(PQgetvalue(res, 0, 1), "caller") == 0 && strcmp(PQgetvalue(res, 0, 7), "acd did not answer") == 0,
          "the caller's leg ended after the queue transfer: %s", PQgetvalue(res, 0, 7));
    CHECK(strcmp(PQgetvalue(res, 1, 1), "outbound") == 0 && strcmp(PQgetvalue(res, 1, 0), "f") == 0
          && strcmp(PQgetvalue(res, 1, 3), "5550001") == 0 && strcmp(PQgetvalue(res, 1, 4), "PCMA") == 0
          && strcmp(PQgetvalue(res, 1, 7), "customer call done") == 0, "the originated call's row");
    CHECK(strcmp(PQgetvalue(res, 2, 1), "transfer") == 0 && strcmp(PQgetvalue(res, 2, 3), "5550002") == 0
          && strcmp(PQgetvalue(res, 2, 8), "t") == 0 && strcmp(PQgetvalue(res, 2, 7), "transferred") == 0,
          "the number the caller was transferred to answered, and was let go by the queue transfer");
    long b_received = atol(PQgetvalue(res, 1, 6)), b_sent = atol(PQgetvalue(res, 1, 5));
    long a_received = atol(PQgetvalue(res, 0, 6));
    /* 5 s bridged, 3 s of them held: the customer's audio went to the
     * caller and the caller's echo came back to the customer, 50 packets a
     * second for the 2 s not held (relaying through the hold too: 250). */
    CHECK(b_received >= 100, "the customer's audio reached the gateway: %ld packets", b_received);
    CHECK(b_sent >= 50, "the caller's audio was relayed to the customer: %ld packets", b_sent);
    CHECK(b_sent <= 160, "nothing was relayed to the customer during the hold: %ld packets", b_sent);
    CHECK(a_received >= 100, "the caller echoed what it heard: %ld packets", a_received);
    PQclear(res);
    CHECK(kill(s_gw, 0) == 0, "gateway alive");
    TEST_PASS(__func__);
}

/* A media.collect on its own client and thread, beside the test's requests. */
typedef struct {
    const char *call_id;
    Cc__MediaCollected *got;
    int status;
} collect_job_t;

static void *
s_collect_thread(void *arg)
{
    collect_job_t *j = arg;
    cc_rpc_client_opts_t o = { .endpoint = s_rpc, .source = "gateway_test", .retry_ms = 30000, .max_attempts = 1 };
    cc_rpc_client_t *c = cc_rpc_client_new(&o);
    Cc__MediaCollect col = CC__MEDIA_COLLECT__INIT;
    col.call_id = (char *) j->call_id;
    col.max_digits = 10;
    col.terminators = "#";
    col.first_digit_timeout_ms = 20000;
    col.inter_digit_timeout_ms = 10000;
    Cc__Reply *r = s_media(c, "media.collect", &col.base, 60000);
    j->status = r->status;
    if (r->status == CC__STATUS__STATUS_OK) j->got = cc__media_collected__unpack(NULL, r->payload.len, r->payload.data);
    cc__reply__free_unpacked(r, NULL);
    cc_rpc_client_destroy(&c);
    return NULL;
}

/* media.dtmf: the gateway sends "12#" as RFC 4733 events to a caller whose
 * SIPp echoes its RTP back, so the same call's media.collect gathers "12"
 * ended by '#' and call.dtmf reports each digit; bad requests are refused
 * and the call goes on. */
static void
dtmf_sent_as_rfc4733_events_and_bad_requests_refused(void)
{
    TEST_BEGIN(__func__);
    long mark = s_cdr_mark();
    Cc__Envelope *env;
    while (cc_bus_recv(s_events, &env, 100) == 0) cc__envelope__free_unpacked(env, NULL);
    pid_t caller = s_ivr_caller("sipp-dtmf-echo", "800", true);
    env = s_event("call.started", 30000);
    char call_id[64];
    snprintf(call_id, sizeof call_id, "%s", env->trace_id);
    cc__envelope__free_unpacked(env, NULL);
    /* The caller's own '1' (sip-tester's pcap) first: it is over before ours. */
    env = s_event_for("call.dtmf", call_id, 30000);
    cc__envelope__free_unpacked(env, NULL);

    cc_rpc_client_opts_t o = { .endpoint = s_rpc, .source = "gateway_test", .retry_ms = 30000, .max_attempts = 1 };
    cc_rpc_client_t *c = cc_rpc_client_new(&o);
    Cc__MediaDtmf d = CC__MEDIA_DTMF__INIT;
    d.call_id = call_id;
    d.digits = "12x";
    s_status(s_media(c, "media.dtmf", &d.base, 30000), "a digit that is not one", CC__STATUS__STATUS_BAD_REQUEST);
    d.digits = "123456789012345678901234567890123";
    s_status(s_media(c, "media.dtmf", &d.base, 30000), "33 digits", CC__STATUS__STATUS_BAD_REQUEST);
    d.digits = "";
    s_status(s_media(c, "media.dtmf", &d.base, 30000), "no digits", CC__STATUS__STATUS_BAD_REQUEST);
    d.digits = "1";
    d.duration_ms = 10;
    s_status(s_media(c, "media.dtmf", &d.base, 30000), "a 10 ms digit", CC__STATUS__STATUS_BAD_REQUEST);
    d.duration_ms = 0;
    d.call_id = "no-such-call";
    s_status(s_media(c, "media.dtmf", &d.base, 30000), "digits to a call that is not there", CC__STATUS__STATUS_NOT_FOUND);

    collect_job_t job = { .call_id = call_id };
    pthread_t t;
    CHECK(pthread_create(&t, NULL, s_collect_thread, &job) == 0, "collect thread");
    cc_sleep_ms(1000);   /* the collect reaches the gateway before the digits */
    d.call_id = call_id;
    d.digits = "12#";
    d.duration_ms = 80;
    d.gap_ms = 60;
    s_done(s_media(c, "media.dtmf", &d.base, 30000), "media.dtmf 12#", "done");
    pthread_join(t, NULL);
    CHECK(job.status == CC__STATUS__STATUS_OK && job.got, "collect: status %d", job.status);
    CHECK(strcmp(job.got->digits, "12") == 0 && strcmp(job.got->ended_by, "terminator") == 0,
          "the echoed events were collected: '%s' (%s)", job.got->digits, job.got->ended_by);
    cc__media_collected__free_unpacked(job.got, NULL);
    const char *want = "12#";
    for (int i = 0; i < 3; i++) {
        env = s_event_for("call.dtmf", call_id, 30000);
        Cc__CallDtmf *ev = cc__call_dtmf__unpack(NULL, env->payload.len, env->payload.data);
        CHECK(ev && ev->digit[0] == want[i] && !ev->digit[1] && strcmp(ev->method, "rfc4733") == 0,
              "call.dtmf %d: '%s' by %s, want '%c' by rfc4733", i, ev ? ev->digit : "?", ev ? ev->method : "?", want[i]);
        cc__call_dtmf__free_unpacked(ev, NULL);
        cc__envelope__free_unpacked(env, NULL);
    }

    Cc__MediaHangup h = CC__MEDIA_HANGUP__INIT;
    h.call_id = call_id;
    s_done(s_media(c, "media.hangup", &h.base, 30000), "hang up the dtmf call", "hangup");
    s_status(s_media(c, "media.dtmf", &d.base, 30000), "digits to a call that ended", CC__STATUS__STATUS_NOT_FOUND);
    cc_rpc_client_destroy(&c);
    CHECK(s_wait_sipp(caller) == 0, "the caller got the BYE");
    PGresult *res = s_cdr("13800138010", mark);
    CHECK(strcmp(PQgetvalue(res, 0, 5), "112#") == 0, "the CDR's digits: '%s', want the caller's 1 then our echoed 12#",
          PQgetvalue(res, 0, 5));
    PQclear(res);
    CHECK(kill(s_gw, 0) == 0, "gateway alive");
    TEST_PASS(__func__);
}

/* media.dtmf to a phone that offered no telephone-event: SIP INFO, one
 * request per digit, which the SIPp scenario checks in order. */
static void
dtmf_sent_as_sip_info_without_telephone_event(void)
{
    TEST_BEGIN(__func__);
    long mark = s_cdr_mark();
    Cc__Envelope *env;
    while (cc_bus_recv(s_events, &env, 100) == 0) cc__envelope__free_unpacked(env, NULL);
    char sf[512], remote[64], lp[16], mp[16];
    snprintf(sf, sizeof sf, "%s/tests/sipp/uac_info_dtmf.xml", GW_SOURCE_DIR);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", s_sip_port);
    s_sipp_ports(lp, mp);
    const char *args[] = { "-sf", sf, "-s", "800", "-m", "1", "-p", lp, "-mp", mp, "-nostdin", "-timeout", "60s",
                           "-timeout_error", remote, NULL };
    pid_t caller = cc_harness_spawn_as(s_h, "sipp-info-dtmf", "/usr/bin/sipp", args);
    env = s_event("call.answered", 30000);
    char call_id[64];
    snprintf(call_id, sizeof call_id, "%s", env->trace_id);
    cc__envelope__free_unpacked(env, NULL);

    cc_rpc_client_opts_t o = { .endpoint = s_rpc, .source = "gateway_test", .retry_ms = 30000, .max_attempts = 1 };
    cc_rpc_client_t *c = cc_rpc_client_new(&o);
    Cc__MediaDtmf d = CC__MEDIA_DTMF__INIT;
    d.call_id = call_id;
    d.digits = "1#9";
    s_done(s_media(c, "media.dtmf", &d.base, 30000), "media.dtmf 1#9 by SIP INFO", "done");
    Cc__MediaHangup h = CC__MEDIA_HANGUP__INIT;
    h.call_id = call_id;
    s_done(s_media(c, "media.hangup", &h.base, 30000), "hang up the INFO call", "hangup");
    cc_rpc_client_destroy(&c);
    CHECK(s_wait_sipp(caller) == 0, "SIPp got INFO Signal=1, #, 9 in order, then the BYE (see %s)", cc_harness_dir(s_h));
    PGresult *res = s_cdr("13800138011", mark);
    CHECK(strcmp(PQgetvalue(res, 0, 0), "200") == 0 && strcmp(PQgetvalue(res, 0, 5), "") == 0,
          "the CDR: cause %s, digits received '%s' (none: these were sent)", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 5));
    PQclear(res);
    TEST_PASS(__func__);
}

static void
ringing_calls_refused_cancelled_or_timed_out(void)
{
    TEST_BEGIN(__func__);
    long mark = s_cdr_mark();
    /* A wait: route nobody answers: 480 after its ring time. */
    CHECK(s_sipp("uac_ringing_refused", "821", 1, "-t", "u1") == 0, "480 after the ring time");
    PGresult *r = s_cdr("13800138011", mark);
    CHECK(strcmp(PQgetvalue(r, 0, 0), "480") == 0 && strcmp(PQgetvalue(r, 0, 1), "system") == 0, "cause %s by %s",
          PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
    PQclear(r);

    /* media.hangup while it rings: the caller gets the cause asked for. */
    mark = s_cdr_mark();
    Cc__Envelope *env;
    while (cc_bus_recv(s_events, &env, 100) == 0) cc__envelope__free_unpacked(env, NULL);
    char sf[512], remote[64], lp[16], mp[16];
    snprintf(sf, sizeof sf, "%s/tests/sipp/uac_ringing_refused.xml", GW_SOURCE_DIR);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", s_sip_port);
    s_sipp_ports(lp, mp);
    const char *args[] = { "-sf", sf, "-s", "820", "-m", "1", "-p", lp, "-mp", mp, "-nostdin", "-timeout", "30s",
                           "-timeout_error", remote, NULL };
    pid_t caller = cc_harness_spawn_as(s_h, "sipp-refused", "/usr/bin/sipp", args);
    env = s_event("call.started", 30000);
    char call_id[64];
    snprintf(call_id, sizeof call_id, "%s", env->trace_id);
    cc__envelope__free_unpacked(env, NULL);
    cc_rpc_client_opts_t o = { .endpoint = s_rpc, .source = "gateway_test", .retry_ms = 15000, .max_attempts = 1 };
    cc_rpc_client_t *c = cc_rpc_client_new(&o);
    Cc__MediaHangup h = CC__MEDIA_HANGUP__INIT;
    h.call_id = call_id;
    h.sip_cause = 486;
    h.reason = "agents busy";
    s_done(s_media(c, "media.hangup", &h.base, 30000), "hang up a ringing call", "hangup");
    CHECK(s_wait_sipp(caller) == 0, "the ringing caller got 486");
    r = s_cdr("13800138011", mark);
    CHECK(strcmp(PQgetvalue(r, 0, 0), "486") == 0 && strcmp(PQgetvalue(r, 0, 6), "agents busy") == 0, "cause %s: %s",
          PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 6));
    PQclear(r);

    /* An originated call nobody picks up: CANCEL after its ring time, and
     * the request is answered UNAVAILABLE no_answer. */
    snprintf(sf, sizeof sf, "%s/tests/sipp/uas_ring_forever.xml", GW_SOURCE_DIR);
    snprintf(lp, sizeof lp, "%d", s_trunk_port);
    snprintf(mp, sizeof mp, "%d", cc_harness_free_ports(3));
    const char *targs[] = { "-sf", sf, "-m", "1", "-p", lp, "-mp", mp, "-nostdin", "-timeout", "30s", "-timeout_error",
                            remote, NULL };
    pid_t trunk = cc_harness_spawn_as(s_h, "sipp-ring-forever", "/usr/bin/sipp", targs);
    CHECK(cc_harness_wait_udp_bound(s_trunk_port, 30000), "the trunk's SIPp listens (see %s)", cc_harness_dir(s_h));
    Cc__MediaOriginate org = CC__MEDIA_ORIGINATE__INIT;
    org.destination = "5550003";
    org.timeout_ms = 1500;
    Cc__Reply *rep = s_media(c, "media.originate", &org.base, 30000);
    CHECK(rep->status == CC__STATUS__STATUS_UNAVAILABLE && strcmp(rep->error, "no_answer") == 0, "originate: %d %s",
          rep->status, rep->error);
    cc__reply__free_unpacked(rep, NULL);
    CHECK(s_wait_sipp(trunk) == 0, "the trunk got the CANCEL (see %s)", cc_harness_dir(s_h));
    org.agent_id = "1009";
    rep = s_media(c, "media.originate", &org.base, 30000);
    CHECK(rep->status == CC__STATUS__STATUS_UNAVAILABLE && strcmp(rep->error, "unregistered") == 0,
          "originate to a phone that is not registered: %d %s", rep->status, rep->error);
    cc__reply__free_unpacked(rep, NULL);
    cc_rpc_client_destroy(&c);
    PGresult *res = s_query("SELECT sip_cause, hangup_by, answered_at IS NULL FROM telephony.cdr WHERE dialled = '5550003'");
    CHECK(PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "408") == 0 && strcmp(PQgetvalue(res, 0, 2), "t") == 0,
          "the unanswered originate's CDR");
    PQclear(res);
    TEST_PASS(__func__);
}

static void
hundred_concurrent_calls(void)
{
    TEST_BEGIN(__func__);
    long mark = s_cdr_mark();
    CHECK(s_sipp("uac_dtmf", "100", 100, "-t", "u1") == 0, "100 concurrent calls");
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*), count(*) FILTER (WHERE sip_cause = 200 AND dtmf IN ('15', '51')),"
             " string_agg(DISTINCT sip_cause || ':' || dtmf, ' ') FROM telephony.cdr"
             " WHERE caller = '13800138000' AND id > %ld", mark);
    PGresult *r = NULL;
    for (int i = 0; i < 300; i++) {
        if (r) PQclear(r);
        r = s_query(sql);
        if (atol(PQgetvalue(r, 0, 0)) >= 100) break;
        cc_sleep_ms(100);
    }
    /* Both digits of every call: SIPp sends the RFC 4733 one from its own
     * thread, so under load it may land after the INFO one. */
    CHECK(atol(PQgetvalue(r, 0, 0)) == 100 && atol(PQgetvalue(r, 0, 1)) == 100,
          "%s CDRs, %s with cause 200 and both digits (cause:digits seen: %s)", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
          PQgetvalue(r, 0, 2));
    PQclear(r);
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("gateway_test", "gateway_test");
    s_h = cc_harness_new("gateway");
    cc_harness_start_pg(s_h);
    cc_harness_start_forwarder(s_h, false, 100000);
    s_pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    CHECK(cc_pg_connect(s_pg) == 0, "pg");
    CHECK(cc_pg_migrate(s_pg, "gateway", GW_SOURCE_DIR "/sql", NULL) == 0, "migrate");
    char port[16], admin[16], rtp_min[16], rtp_max[16];
    s_sip_port = cc_harness_free_ports(1);   /* UDP and TCP */
    s_admin = cc_harness_free_port();
    int base = 30000 + (getpid() % 30) * 1000;   /* RTP and RTCP: two ports a call */
    snprintf(port, sizeof port, "%d", s_sip_port);
    snprintf(admin, sizeof admin, "%d", s_admin);
    snprintf(rtp_min, sizeof rtp_min, "%d", base);
    snprintf(rtp_max, sizeof rtp_max, "%d", base + 999);
    setenv("GATEWAY_SIP_PORT", port, 1);
    setenv("GATEWAY_ADMIN_PORT", admin, 1);
    setenv("GATEWAY_RTP_MIN", rtp_min, 1);
    setenv("GATEWAY_RTP_MAX", rtp_max, 1);
    setenv("GATEWAY_TRUNKS", "127.0.0.1", 1);
    setenv("GATEWAY_INVITES_PER_S", "100", 1);
    setenv("GATEWAY_ROUTES", "100=play:tone:440,555=play:tone:440@5000,999=announce:tone:880,700=queue:sales,"
           "800=play:tone:350,810=play:tone:350,820=wait:tone:350,821=wait:tone:350@800", 1);
    s_trunk_port = cc_harness_free_ports(1);   /* SIPp's UDP port, taken later */
    char trunk_out[32];
    snprintf(trunk_out, sizeof trunk_out, "127.0.0.1:%d", s_trunk_port);
    setenv("GATEWAY_TRUNK_OUT", trunk_out, 1);
    setenv("GATEWAY_RECORDINGS_DIR", cc_harness_dir(s_h), 1);
    char tts[512];
    snprintf(tts, sizeof tts, "%s/tts", cc_harness_dir(s_h));
    setenv("GATEWAY_TTS_DIR", tts, 1);
    /* Nobody answers on the acd endpoint: queue routes take the fallback. */
    char acd[64];
    snprintf(s_rpc, sizeof s_rpc, "tcp://127.0.0.1:%d", cc_harness_free_port());
    snprintf(acd, sizeof acd, "tcp://127.0.0.1:%d", cc_harness_free_port());
    setenv("GATEWAY_RPC", s_rpc, 1);
    setenv("GATEWAY_ACD_RPC", acd, 1);
    setenv("GATEWAY_ACD_TIMEOUT_MS", "500", 1);
    s_gw = cc_harness_spawn(s_h, "gateway", NULL);
    CHECK(cc_harness_wait_http(s_admin, "/healthz", 20000), "gateway healthy (see %s)", cc_harness_dir(s_h));
    cc_bus_opts_t o = { .service = "test", .instance = "gw", .sub_endpoint = getenv("CC_BUS_SUB") };
    s_events = cc_bus_new(&o);
    cc_bus_subscribe(s_events, "call.");
    cc_sleep_ms(300);

    call_with_rfc4733_digit_and_bye_from_caller("u1");
    call_with_rfc4733_digit_and_bye_from_caller("t1");
    cancel_before_answer_gets_487();
    codec_mismatch_gets_488();
    late_offer_and_bye_from_gateway();
    hold_and_unhold_with_reinvite();
    options_answered();
    unknown_source_refused_with_403();
    hostile_sip_does_not_stop_the_gateway();
    invite_flood_gets_503_and_every_invite_an_answer();
    hundred_concurrent_calls();
    no_dead_air_when_acd_does_not_answer();
    media_api_collects_a_digit_plays_and_hangs_up();
    recording_has_the_right_duration_without_the_paused_part();
    recording_never_overwrites_an_earlier_file();
    cdr_refused_by_the_database_does_not_hold_back_the_next();
    call_control_answer_originate_bridge_hold_transfer();
    ringing_calls_refused_cancelled_or_timed_out();
    dtmf_sent_as_rfc4733_events_and_bad_requests_refused();
    dtmf_sent_as_sip_info_without_telephone_event();

    int status = cc_harness_stop(s_h, s_gw, SIGTERM, 10000);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "gateway stops cleanly (status %d)", status);
    cc_bus_destroy(&s_events);
    cc_pg_destroy(&s_pg);
    cc_harness_destroy(&s_h);
    cc_log_shutdown();
    printf("gateway_test: 21 passed, 0 failed\n");
    return 0;
}
