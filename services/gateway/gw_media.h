/* gw_media: the SIP and RTP engine, on its own thread running libre's loop.
 *
 * It answers the trunk's INVITEs (PCMU/PCMA with telephone-event, early or
 * late offer), refuses unknown sources, floods and calls over capacity with a
 * SIP status and a log line, plays the dialled number's route (a prompt in a
 * loop, or once and hang up), keeps RTP on a 20 ms schedule, reads RFC 4733
 * and SIP INFO digits, and ends calls on BYE or CANCEL from either side.
 * Events go out on its own bus publisher; finished legs are handed to the
 * service thread as CDRs through an inproc socket. */
#ifndef GW_MEDIA_H
#define GW_MEDIA_H

#include <stdint.h>

typedef struct {
    const char *sip_host;
    int sip_port;
    int rtp_min, rtp_max;
    const char *trunks;       /* "127.0.0.1,192.0.2.0/24": sources allowed to call in */
    int max_calls;
    int invites_per_s;        /* per source */
    const char *routes;       /* "100=play:tone:440,999=announce:tone:880,*=play:tone:440" */
    const char *prompts_dir;
    const char *bus_pub;      /* forwarder endpoint for events */
    int bus_hwm;
    const char *cdr_endpoint; /* inproc endpoint the CDRs are pushed to */
    const char *service, *instance;
} gw_media_opts_t;

/* A finished call leg, pushed as bytes through the inproc socket. */
typedef struct {
    char call_id[64], sip_call_id[128], caller[64], dialled[64], source[64], codec[8], hangup_by[8];
    char reason[64], dtmf[64];
    int64_t started_us, answered_us, ended_us;
    int sip_cause;
    uint64_t rtp_sent, rtp_received;
} gw_cdr_t;

typedef struct _gw_media_t gw_media_t;

/* Starts the thread and binds SIP. NULL when SIP cannot be bound or the
 * options are invalid (logged). */
gw_media_t *gw_media_start(const gw_media_opts_t *opts);
/* Ends every call (BYE) and stops the thread. */
void gw_media_stop(gw_media_t **self_p);
/* Calls in progress (thread-safe). */
int gw_media_calls(gw_media_t *self);

#endif
