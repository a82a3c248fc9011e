/* acdctl: the operator's command for the ACD: list queues and agents, log
 * agents in and out, set their state, and drive calls by hand. */
#include "cc/cc_cfg.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_rpc.h"
#include "cc/cc_service.h"
#include "cc/cc_util.h"
#include "agent.pb-c.h"
#include "queue.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cc_cfg_key_t s_keys[] = {
    { "ACD_RPC", CC_CFG_STR, 0, 255, NULL, CC_CFG_NONEMPTY, "acd request endpoint" },
    CC_CFG_END
};

static int
s_usage(void)
{
    fprintf(stderr,
            "usage: acdctl COMMAND [ARGS]\n"
            "  status                         queues (waiting, longest wait, ready, callbacks) and agents\n"
            "  login AGENT [EXT]              log in (skills and queues from acd.agents)\n"
            "  ready AGENT | not-ready AGENT [REASON] | logout AGENT\n"
            "  enqueue CALL QUEUE [PRIORITY]  put a call in a queue\n"
            "  answer CALL AGENT | reject CALL AGENT | end CALL\n");
    return 2;
}

/* Sends one request; prints the error and returns non-zero on failure. */
static int
s_call(cc_rpc_client_t *c, const char *method, const void *msg, Cc__Reply **reply_p)
{
    size_t len = msg ? protobuf_c_message_get_packed_size(msg) : 0;
    uint8_t *buf = malloc(len ? len : 1);
    if (msg) protobuf_c_message_pack(msg, buf);
    Cc__Reply *reply = NULL;
    int rc = cc_rpc_call_sync(c, method, buf, len, 5000, &reply);
    free(buf);
    if (rc) {
        fprintf(stderr, "acdctl: %s: no answer from acd (%s)\n", method, cc_strerror(rc));
        return 1;
    }
    if (reply->status != CC__STATUS__STATUS_OK) {
        fprintf(stderr, "acdctl: %s: %s\n", method, reply->error);
        cc__reply__free_unpacked(reply, NULL);
        return 1;
    }
    if (reply_p) *reply_p = reply;
    else cc__reply__free_unpacked(reply, NULL);
    return 0;
}

static int
s_status(cc_rpc_client_t *c)
{
    Cc__Reply *reply;
    if (s_call(c, "acd.status", NULL, &reply)) return 1;
    Cc__AcdStatus *st = cc__acd_status__unpack(NULL, reply->payload.len, reply->payload.data);
    cc__reply__free_unpacked(reply, NULL);
    if (!st) { fprintf(stderr, "acdctl: malformed status\n"); return 1; }
    int64_t now = cc_wall_us() / 1000;
    printf("%-12s %8s %14s %6s %10s\n", "QUEUE", "WAITING", "LONGEST_WAIT_S", "READY", "CALLBACKS");
    for (size_t i = 0; i < st->n_queues; i++) {
        const Cc__QueueStatus *q = st->queues[i];
        printf("%-12s %8u %14.1f %6u %10u%s\n", q->queue, q->waiting, q->longest_wait_ms / 1000.0, q->ready,
               q->callbacks, q->calling_hours_closed ? " (held: outside calling hours)" : "");
    }
    printf("\n%-10s %-10s %9s %-12s %-20s %-20s %s\n", "AGENT", "STATE", "SINCE_S", "REASON", "CALL", "QUEUES",
           "SKILLS");
    for (size_t i = 0; i < st->n_agents; i++) {
        Cc__AgentStatus *a = st->agents[i];
        printf("%-10s %-10s %9.1f %-12s %-20s %-20s %s\n", a->agent_id, a->state,
               a->since_ms ? (now - a->since_ms) / 1000.0 : 0.0, a->reason[0] ? a->reason : "-",
               a->call_id[0] ? a->call_id : "-", a->queues[0] ? a->queues : "-", a->skills[0] ? a->skills : "-");
    }
    cc__acd_status__free_unpacked(st, NULL);
    return 0;
}

static int
s_run(cc_rpc_client_t *c, int argc, char **argv)
{
    const char *cmd = argv[1];
    if (strcmp(cmd, "status") == 0) return s_status(c);
    if (strcmp(cmd, "login") == 0 && argc >= 3) {
        Cc__AgentLogin m = CC__AGENT_LOGIN__INIT;
        m.agent_id = argv[2];
        m.extension = argc > 3 ? argv[3] : "";
        return s_call(c, "agent.login", &m, NULL);
    }
    if ((strcmp(cmd, "ready") == 0 || strcmp(cmd, "not-ready") == 0 || strcmp(cmd, "logout") == 0) && argc >= 3) {
        Cc__AgentSetState m = CC__AGENT_SET_STATE__INIT;
        m.agent_id = argv[2];
        m.state = cmd[0] == 'r' ? CC__AGENT_STATE__AGENT_READY
                : cmd[0] == 'n' ? CC__AGENT_STATE__AGENT_NOT_READY : CC__AGENT_STATE__AGENT_LOGGED_OUT;
        m.reason = argc > 3 ? argv[3] : (cmd[0] == 'n' ? "break" : "");
        m.by = "acdctl";
        return s_call(c, "agent.set_state", &m, NULL);
    }
    if (strcmp(cmd, "enqueue") == 0 && argc >= 4) {
        Cc__Enqueue m = CC__ENQUEUE__INIT;
        m.call_id = argv[2];
        m.queue = argv[3];
        m.priority = argc > 4 ? atoi(argv[4]) : 0;
        Cc__Reply *reply;
        if (s_call(c, "acd.enqueue", &m, &reply)) return 1;
        Cc__Enqueued *e = cc__enqueued__unpack(NULL, reply->payload.len, reply->payload.data);
        if (e) printf("%s queued at position %u\n", m.call_id, e->position);
        cc__enqueued__free_unpacked(e, NULL);
        cc__reply__free_unpacked(reply, NULL);
        return 0;
    }
    const char *method = strcmp(cmd, "answer") == 0 ? "acd.answered" : strcmp(cmd, "reject") == 0 ? "acd.rejected"
                       : strcmp(cmd, "end") == 0 ? "acd.ended" : NULL;
    if (method && argc >= 3) {
        Cc__CallRef m = CC__CALL_REF__INIT;
        m.call_id = argv[2];
        m.agent_id = argc > 3 ? argv[3] : "";
        return s_call(c, method, &m, NULL);
    }
    return s_usage();
}

int
main(int argc, char **argv)
{
    if (argc < 2) return s_usage();
    const cc_cfg_key_t *tables[] = { cc_service_common_keys, s_keys, NULL };
    cc_cfg_t *cfg = cc_cfg_new(tables);
    if (cc_cfg_load(cfg, cc_cfg_default_path())) {
        fprintf(stderr, "acdctl: %s\n", cc_cfg_error(cfg));
        cc_cfg_destroy(&cfg);
        return 2;
    }
    cc_log_init("acdctl", "acdctl");
    cc_log_set_level(CC_LOG_ERROR);
    cc_rpc_client_opts_t o = { .endpoint = cc_cfg_str(cfg, "ACD_RPC"), .source = "acdctl",
                               .retry_ms = 500, .max_attempts = 3 };
    cc_rpc_client_t *c = cc_rpc_client_new(&o);
    int rc = c ? s_run(c, argc, argv) : 1;
    cc_rpc_client_destroy(&c);
    cc_cfg_destroy(&cfg);
    cc_log_shutdown();
    return rc;
}
