/* forwarder: the bus's XSUB/XPUB forwarder as its own small process. */
#include "cc/cc_forwarder.h"
#include "cc/cc_service.h"

#include <stdlib.h>

static const cc_cfg_key_t s_keys[] = {
    { "FORWARDER_ADMIN_PORT", CC_CFG_INT, 0, 65535, NULL, 0, "Admin HTTP port (/healthz, /metrics)" },
    CC_CFG_END
};

static const cc_service_def_t s_def = {
    .name = "forwarder",
    .summary = "Forwards bus events from publishers (CC_BUS_PUB) to subscribers (CC_BUS_SUB).",
    .keys = s_keys,
    .admin_port_key = "FORWARDER_ADMIN_PORT",
    .needs = 0,
};

typedef struct {
    cc_forwarder_t *fw;
    cc_metric_t *messages, *subscriptions;
    uv_timer_t timer;
} fw_t;

static bool s_running(void *arg) { return ((fw_t *) arg)->fw != NULL; }

/* Copies the forwarder's counters into the metrics registry. */
static void
s_on_timer(uv_timer_t *t)
{
    fw_t *f = t->data;
    cc_metric_set(f->messages, (int64_t) cc_forwarder_messages(f->fw));
    cc_metric_set(f->subscriptions, (int64_t) cc_forwarder_subscriptions(f->fw));
}

int
main(int argc, char **argv)
{
    int code;
    cc_service_t *svc = cc_service_new(&s_def, argc, argv, &code);
    if (!svc) return code;
    cc_cfg_t *cfg = cc_service_cfg(svc);
    fw_t f = { 0 };
    f.fw = cc_forwarder_new(cc_cfg_str(cfg, "CC_BUS_PUB"), cc_cfg_str(cfg, "CC_BUS_SUB"),
                            (int) cc_cfg_int(cfg, "CC_BUS_HWM"), cc_cfg_bool(cfg, "CC_BUS_NODROP"));
    int rc = 1;
    if (f.fw) {
        cc_metrics_t *m = cc_service_metrics(svc);
        f.messages = cc_metrics_gauge(m, "cc_forwarder_messages", NULL, "Events forwarded since start");
        f.subscriptions = cc_metrics_gauge(m, "cc_forwarder_subscriptions", NULL, "Subscription changes forwarded");
        cc_service_add_check(svc, "forwarder", s_running, &f);
        uv_timer_init(cc_loop_uv(cc_service_loop(svc)), &f.timer);
        f.timer.data = &f;
        uv_timer_start(&f.timer, s_on_timer, 0, 500);
        rc = cc_service_run(svc);
    }
    cc_forwarder_destroy(&f.fw);
    cc_service_destroy(&svc);
    return rc;
}
