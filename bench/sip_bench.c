/* sip_bench: how much SIP and RTP the gateway carries on this machine.
 *
 * cps: the highest rate of short calls (INVITE, 200, ACK, BYE) SIPp can
 * place with zero failed calls, against the gateway and, in the same run,
 * against Kamailio answering statelessly (sl_send_reply): the bound for SIP
 * handling here. concurrent: calls held with G.711 both ways (the gateway
 * plays a prompt, SIPp -rtp_echo sends it back), the gateway's CPU per call
 * and how late its RTP frames leave their 20 ms slots (p99).
 * Prints "sip.<figure> <value> <unit>" lines. */
#include "cc_harness.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CC_SOURCE_DIR
#error "CC_SOURCE_DIR must be defined"
#endif

static cc_harness_t *s_h;

static pid_t
s_sipp(const char *scenario, int port, int rate, int calls, int limit, int hold_ms, bool echo)
{
    char sf[512], remote[64], r[16], m[16], l[16], d[16], lp[16], mp[16];
    snprintf(sf, sizeof sf, "%s/bench/sipp/%s.xml", CC_SOURCE_DIR, scenario);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", port);
    snprintf(r, sizeof r, "%d", rate);
    snprintf(m, sizeof m, "%d", calls);
    snprintf(l, sizeof l, "%d", limit);
    snprintf(d, sizeof d, "%d", hold_ms);
    snprintf(lp, sizeof lp, "%d", cc_harness_free_port());
    snprintf(mp, sizeof mp, "%d", 44000 + (getpid() % 100) * 10);
    const char *args[] = { "-sf", sf, "-s", "100", "-r", r, "-m", m, "-l", l, "-d", d, "-p", lp, "-mp", mp,
                           "-nostdin", "-timeout", "120s", "-timeout_error", "-max_socket", "65000",
                           echo ? "-rtp_echo" : remote, echo ? remote : NULL, NULL };
    return cc_harness_spawn_as(s_h, "sipp-bench", "/usr/bin/sipp", args);
}

static int
s_wait(pid_t pid)
{
    int status = cc_harness_stop(s_h, pid, 0, 180000);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The highest rate of short calls completed with zero failures (3 s of calls
 * at each rate asked for). The figure is the rate achieved, calls over the
 * run's wall time, not the rate asked for: past what SIPp itself can place,
 * a run takes longer and its achieved rate says so. The search stops at the
 * first rate that fails (tried once more first, so one burst of noise from
 * the rest of the machine does not end it) or that SIPp cannot reach (under
 * 80 % of the rate asked for). */
static int
s_cps(int port, const int *rates, int n)
{
    double best = 0;
    for (int i = 0; i < n; i++) {
        int rc = -1, calls = rates[i] * 3;
        double achieved = 0;
        for (int attempt = 0; attempt < 2 && rc != 0; attempt++) {
            int64_t t0 = cc_mono_ms();
            rc = s_wait(s_sipp("short", port, rates[i], calls, rates[i] * 2, 0, false));
            double secs = (double) (cc_mono_ms() - t0) / 1000.0;
            achieved = secs > 0 ? calls / secs : 0;
            if (achieved > rates[i]) achieved = rates[i];
            fprintf(stderr, "sip_bench: port %d, %d calls/s asked, %.0f achieved -> %s\n", port, rates[i], achieved,
                    rc == 0 ? "zero failures" : "failures");
        }
        if (rc != 0) break;
        if (achieved > best) best = achieved;
        if (achieved < 0.8 * rates[i]) break;
    }
    return (int) best;
}

static double
s_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long utime = 0, stime = 0;
    /* fields after the command: state(3) ... utime(14) stime(15) */
    if (p) sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime);
    return (double) (utime + stime) / (double) sysconf(_SC_CLK_TCK);
}

static long
s_metric(int admin, const char *name)
{
    char *body = NULL;
    cc_harness_http_get(admin, "/metrics", &body);
    long v = -1;
    char line[160];
    snprintf(line, sizeof line, "\n%s ", name);   /* the sample, not its # HELP line */
    char *p = body ? strstr(body, line) : NULL;
    if (p) v = atol(p + strlen(line));
    free(body);
    return v;
}

int
main(void)
{
    int target = getenv("BENCH_CALLS") ? atoi(getenv("BENCH_CALLS")) : 1000;
    cc_log_init("bench", "bench");
    cc_log_set_level(CC_LOG_WARN);
    s_h = cc_harness_new("sip-bench");
    setenv("CC_LOG_LEVEL", "warn", 1);
    cc_harness_start_pg(s_h);
    cc_harness_start_forwarder(s_h, false, 100000);
    cc_pg_t *pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    if (cc_pg_connect(pg) || cc_pg_migrate(pg, "gateway", CC_SOURCE_DIR "/services/gateway/sql", NULL)) return 1;
    cc_pg_destroy(&pg);

    /* Kamailio, stateless, as the bound. */
    int kport = cc_harness_free_port();
    char cfg[512], text[1024];
    snprintf(cfg, sizeof cfg, "%s/kamailio.cfg", cc_harness_dir(s_h));
    snprintf(text, sizeof text,
             "#!KAMAILIO\ndebug=0\nlog_stderror=yes\nchildren=2\nlisten=udp:127.0.0.1:%d\n"
             "mpath=\"/usr/lib/x86_64-linux-gnu/kamailio/modules/\"\nloadmodule \"sl.so\"\n"
             "request_route {\n    if (method == \"ACK\") { exit; }\n    sl_send_reply(\"200\", \"OK\");\n    exit;\n}\n", kport);
    FILE *f = fopen(cfg, "w");
    fputs(text, f);
    fclose(f);
    const char *kargs[] = { "-f", cfg, "-DD", "-E", "-w", cc_harness_dir(s_h), NULL };
    cc_harness_spawn_as(s_h, "kamailio", "/usr/sbin/kamailio", kargs);
    if (!cc_harness_wait_udp_bound(kport, 20000)) { fprintf(stderr, "kamailio did not start\n"); return 1; }

    char v[16];
    int port = cc_harness_free_port(), admin = cc_harness_free_port();
    snprintf(v, sizeof v, "%d", port);
    setenv("GATEWAY_SIP_PORT", v, 1);
    snprintf(v, sizeof v, "%d", admin);
    setenv("GATEWAY_ADMIN_PORT", v, 1);
    setenv("GATEWAY_RTP_MIN", "30000", 1);
    setenv("GATEWAY_RTP_MAX", "39999", 1);
    setenv("GATEWAY_INVITES_PER_S", "100000", 1);
    setenv("GATEWAY_MAX_CALLS", "10000", 1);
    setenv("GATEWAY_ROUTES", "100=play:tone:440", 1);
    char rpc[64];
    snprintf(rpc, sizeof rpc, "tcp://127.0.0.1:%d", cc_harness_free_port());
    setenv("GATEWAY_RPC", rpc, 1);
    snprintf(rpc, sizeof rpc, "tcp://127.0.0.1:%d", cc_harness_free_port());
    setenv("GATEWAY_ACD_RPC", rpc, 1);
    pid_t gw = cc_harness_spawn(s_h, "gateway", NULL);
    if (!cc_harness_wait_http(admin, "/healthz", 20000)) { fprintf(stderr, "gateway not healthy\n"); return 1; }

    static const int ours[] = { 100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000 };
    static const int kam[] = { 1000, 2000, 5000, 10000, 15000, 20000, 25000, 30000 };
    bool skip_cps = getenv("BENCH_SKIP_CPS") != NULL;   /* media phase alone, when tuning */
    int cps = skip_cps ? 0 : s_cps(port, ours, sizeof ours / sizeof *ours);
    int kcps = skip_cps ? 0 : s_cps(kport, kam, sizeof kam / sizeof *kam);

    /* Concurrent calls with media both ways, on a fresh gateway (so its RTP
     * lateness figures cover this load only): ramp at 200 calls/s, hold. */
    cc_harness_stop(s_h, gw, SIGTERM, 10000);
    gw = cc_harness_spawn_as(s_h, "gateway-media", "gateway", NULL);
    if (!cc_harness_wait_http(admin, "/healthz", 20000)) { fprintf(stderr, "gateway not healthy\n"); return 1; }
    int ramp_s = target / 200 + 1, hold_ms = (ramp_s + 12) * 1000;
    pid_t load = s_sipp("media", port, 200, target, target, hold_ms, true);
    cc_sleep_ms((ramp_s + 2) * 1000);
    long held = s_metric(admin, "gateway_calls");
    double c0 = s_cpu_s(gw);
    int64_t t0 = cc_mono_ms();
    cc_sleep_ms(5000);
    double cpu_pct = (s_cpu_s(gw) - c0) / ((double) (cc_mono_ms() - t0) / 1000.0) * 100.0;
    long late_p99_us = s_metric(admin, "gateway_rtp_send_late_p99_us");
    int load_rc = s_wait(load);

    printf("sip.cps_zero_fail %d calls/s\n", cps);
    printf("sip.kamailio_cps %d calls/s\n", kcps);
    printf("sip.cps_ratio %.2f ratio\n", kcps ? (double) cps / kcps : 0);
    printf("sip.concurrent_media_calls %ld calls\n", load_rc == 0 ? held : -held);
    printf("sip.rtp_jitter_p99_ms %.1f ms\n", late_p99_us / 1000.0);
    printf("sip.cpu_per_call_pct %.3f %%\n", held > 0 ? cpu_pct / (double) held : 0);
    printf("sip.gateway_cpu_pct %.1f %%\n", cpu_pct);
    printf("sip.media_calls_failed %s\n", load_rc == 0 ? "0 calls" : "some calls");
    cc_harness_destroy(&s_h);
    cc_log_shutdown();
    return 0;
}
