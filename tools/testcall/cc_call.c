/* cc-call: places a test call to the running gateway with SIPp (RTP and an
 * RFC 4733 digit) and saves what the caller heard as a WAV file.
 *
 * The SIPp caller echoes the audio it receives (-rtp_echo); the gateway
 * records that echo (media.record), so the file holds what the caller heard,
 * back from the caller's side. Then the gateway hangs up (media.hangup).
 *
 *   cc-call [NUMBER [SECONDS]]     default 300 (a tone), 5 s */
#include "cc/cc_bus.h"
#include "cc/cc_cfg.h"
#include "cc/cc_log.h"
#include "cc/cc_rpc.h"
#include "cc/cc_service.h"
#include "cc/cc_util.h"
#include "call.pb-c.h"
#include "media.pb-c.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#ifndef CC_SOURCE_DIR
#define CC_SOURCE_DIR "/usr/share/callcenter"
#endif

static const cc_cfg_key_t s_keys[] = {
    { "GATEWAY_SIP_HOST", CC_CFG_STR, 0, 64, NULL, CC_CFG_NONEMPTY, "gateway SIP address" },
    { "GATEWAY_SIP_PORT", CC_CFG_INT, 1, 65535, NULL, 0, "gateway SIP port" },
    { "GATEWAY_RPC", CC_CFG_STR, 0, 255, NULL, CC_CFG_NONEMPTY, "gateway request endpoint" },
    { "GATEWAY_RECORDINGS_DIR", CC_CFG_STR, 0, 1024, NULL, CC_CFG_NONEMPTY, "where recordings land" },
    CC_CFG_END
};

static int
s_request(cc_rpc_client_t *c, const char *method, const ProtobufCMessage *m)
{
    uint8_t buf[512];
    size_t len = protobuf_c_message_pack(m, buf);
    Cc__Reply *r = NULL;
    if (cc_rpc_call_sync(c, method, buf, len, 5000, &r)) {
        fprintf(stderr, "cc-call: %s: no answer from the gateway\n", method);
        return -1;
    }
    int st = r->status;
    if (st) fprintf(stderr, "cc-call: %s: %s\n", method, r->error);
    cc__reply__free_unpacked(r, NULL);
    return st;
}

int
main(int argc, char **argv)
{
    const char *number = argc > 1 ? argv[1] : "300";
    int seconds = argc > 2 ? atoi(argv[2]) : 5;
    if (seconds < 1 || seconds > 600 || strspn(number, "0123456789*#+") != strlen(number) || strlen(number) > 32) {
        fprintf(stderr, "usage: cc-call [NUMBER [SECONDS]]   (digits; 1-600 s)\n");
        return 2;
    }
    const cc_cfg_key_t *tables[] = { cc_service_common_keys, s_keys, NULL };
    cc_cfg_t *cfg = cc_cfg_new(tables);
    if (cc_cfg_load(cfg, cc_cfg_default_path())) {
        fprintf(stderr, "cc-call: %s\n", cc_cfg_error(cfg));
        return 2;
    }
    cc_log_init("cc-call", "cc-call");
    cc_log_set_level(CC_LOG_ERROR);
    cc_bus_opts_t bo = { .service = "cc-call", .instance = "cc-call", .sub_endpoint = cc_cfg_str(cfg, "CC_BUS_SUB") };
    cc_bus_t *bus = cc_bus_new(&bo);
    cc_bus_subscribe(bus, "call.started");
    cc_sleep_ms(300);

    char scenario[512], remote[128], caller[32];
    snprintf(scenario, sizeof scenario, "%s/services/gateway/tests/sipp/uac_ivr.xml", CC_SOURCE_DIR);
    snprintf(remote, sizeof remote, "%s:%ld", cc_cfg_str(cfg, "GATEWAY_SIP_HOST"), cc_cfg_int(cfg, "GATEWAY_SIP_PORT"));
    snprintf(caller, sizeof caller, "13800138010");
    pid_t sipp = fork();
    if (sipp == 0) {
        int null = open("/dev/null", 1);   /* SIPp's screens; its errors go to its own logs */
        dup2(null, 1);
        dup2(null, 2);
        execlp("sipp", "sipp", "-sf", scenario, "-s", number, "-m", "1", "-nostdin", "-rtp_echo", "-timeout",
               "660s", "-timeout_error", remote, (char *) NULL);
        perror("cc-call: sipp");
        _exit(127);
    }
    char call_id[64] = "";
    int64_t end = cc_mono_ms() + 5000;
    while (!call_id[0] && cc_mono_ms() < end) {
        Cc__Envelope *env;
        if (cc_bus_recv(bus, &env, 200) != 0) continue;
        Cc__CallStarted *s = cc__call_started__unpack(NULL, env->payload.len, env->payload.data);
        if (s && strcmp(s->caller, caller) == 0) snprintf(call_id, sizeof call_id, "%s", s->call_id);
        if (s) cc__call_started__free_unpacked(s, NULL);
        cc__envelope__free_unpacked(env, NULL);
    }
    int rc = 1;
    if (!call_id[0]) {
        fprintf(stderr, "cc-call: the gateway did not start the call (is tools/stack up running?)\n");
        kill(sipp, SIGTERM);
    } else {
        cc_rpc_client_opts_t o = { .endpoint = cc_cfg_str(cfg, "GATEWAY_RPC"), .source = "cc-call", .retry_ms = 2000,
                                   .max_attempts = 2 };
        cc_rpc_client_t *c = cc_rpc_client_new(&o);
        char file[128], path[1200];
        snprintf(file, sizeof file, "testcall-%s.wav", call_id);
        char dir[1024];
        cc_cfg_resolve(cfg, cc_cfg_str(cfg, "GATEWAY_RECORDINGS_DIR"), dir, sizeof dir);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        Cc__MediaRecord rec = CC__MEDIA_RECORD__INIT;
        rec.call_id = call_id;
        rec.path = file;
        printf("call %s to %s: recording what the caller hears for %d s\n", call_id, number, seconds);
        if (s_request(c, "media.record", &rec.base) == 0) {
            cc_sleep_ms(seconds * 1000);
            Cc__MediaRecord stop = CC__MEDIA_RECORD__INIT;
            stop.call_id = call_id;
            stop.stop = 1;
            s_request(c, "media.record", &stop.base);
            Cc__MediaHangup h = CC__MEDIA_HANGUP__INIT;
            h.call_id = call_id;
            h.reason = "test call finished";
            s_request(c, "media.hangup", &h.base);
            printf("saved %s\n", path);
            rc = 0;
        }
        cc_rpc_client_destroy(&c);
    }
    int status;
    waitpid(sipp, &status, 0);
    cc_bus_destroy(&bus);
    cc_cfg_destroy(&cfg);
    cc_log_shutdown();
    return rc;
}
