/* gw_media: the SIP and RTP engine, on its own thread running libre's loop.
 *
 * It answers the trunk's INVITEs (PCMU/PCMA with telephone-event, early or
 * late offer), refuses unknown sources, floods and calls over capacity with a
 * SIP status and a log line, plays the dialled number's route (a prompt in a
 * loop, or once and hang up), keeps RTP on a 20 ms schedule, reads RFC 4733
 * and SIP INFO digits, sends digits (RFC 4733, else SIP INFO), and ends calls on BYE or CANCEL from either side.
 * Events go out on its own bus publisher; finished legs are handed to the
 * service thread as CDRs through an inproc socket. */
#ifndef GW_MEDIA_H
#define GW_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
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
    const char *fallback;     /* prompt played once before a release: no dead air */
    const char *recordings_dir; /* where media.record writes WAV files */
    const char *tts_dir;      /* rendered speech: prompts named "tts:<file>" */
    const char *trunk_out;    /* "host:port" numbers are dialled through (originate, transfer,
                               * callbacks); empty: none */
    const char *hold_music;   /* prompt of media.hold when the request names none */
    int dial_ring_ms;         /* how long an outbound call rings when the request says nothing */
    int media_priority;       /* 1-99: the SIP and RTP thread runs SCHED_RR at it; 0: as any thread */
    const char *service, *instance;
    int nonce_ttl_s;          /* how long a REGISTER nonce stays good */
    int min_expires_s;        /* a REGISTER asking less gets 423 with Min-Expires */
} gw_media_opts_t;

/* One recording of a leg (media.record start .. stop). */
#define GW_MAX_RECORDINGS 16
typedef struct {
    char path[160];            /* under the recordings folder */
    int64_t started_us, ms;    /* ms: audio in the file (paused parts are not in it) */
} gw_recording_t;

/* A finished call leg. */
typedef struct {
    char call_id[64], sip_call_id[128], caller[64], dialled[64], source[64], codec[8], hangup_by[8];
    char leg[16], direction[12];
    char reason[64], dtmf[64], recording[160];
    int64_t started_us, answered_us, ended_us;
    int sip_cause;
    uint64_t rtp_sent, rtp_received;
    gw_recording_t recs[GW_MAX_RECORDINGS];   /* every recording, in order */
    int nrecs;
} gw_cdr_t;

/* A phone's binding, as the registrar keeps it and telephony.registrations
 * stores it. */
typedef struct {
    char user[64], contact[256], source[64];
    char transport[8];         /* udp, tcp, tls, ws, wss */
    int64_t expires_ms;        /* left from now; 0: removed */
} gw_binding_t;

/* What the media thread tells the service thread, through the inproc socket
 * (same process: plain bytes). */
typedef enum {
    GW_MSG_CDR = 1,      /* cdr: a leg ended */
    GW_MSG_ENQUEUE,      /* call_id, queue, caller: put the caller in an acd queue */
    GW_MSG_ANSWERED,     /* call_id, agent: the agent's phone answered the offer */
    GW_MSG_REJECTED,     /* call_id, agent, reason: the agent could not be reached */
    GW_MSG_ENDED,        /* call_id: a queued caller's call ended */
    GW_MSG_MEDIA_DONE,   /* token, call_id, result (done, max, terminator, timeout, hangup, gone), digits */
    GW_MSG_CALLBACK_FAILED, /* call_id, agent, reason: the customer of a callback did not answer */
    GW_MSG_BINDING,      /* binding: a REGISTER was accepted (or removed it): to be stored */
    GW_MSG_REOFFER,      /* call_id, queue, caller, agent: after acd.rebuilt, a caller whose agent's phone rings */
} gw_msg_type_t;

typedef struct {
    int type;
    char call_id[64], queue[64], caller[64], agent[64], reason[64];
    uint64_t token;            /* GW_MSG_MEDIA_DONE: the request it answers */
    char result[16], digits[64];
    char other[64];            /* GW_MSG_MEDIA_DONE of an originate: the new call's id */
    gw_cdr_t cdr;
    gw_binding_t binding;
} gw_msg_t;

/* A media operation asked on the bus, carried out on the media thread; its
 * end comes back as GW_MSG_MEDIA_DONE with the same token. */
typedef struct {
    int kind;                  /* GW_MEDIA_PLAY, GW_MEDIA_COLLECT, GW_MEDIA_HANGUP */
    uint64_t token;
    char call_id[64], prompt[128], terminators[16], reason[64];
    int loop, max_digits, first_ms, inter_ms, cause;
    char path[160];            /* record: file under the recordings folder */
    int then_music;            /* play: afterwards, back to the call's music */
    int record_cmd, max_ms;    /* record: GW_REC_START, PAUSE, RESUME, STOP */
    char other[64];            /* bridge: the other call */
    char destination[64];      /* originate: a number or an agent; transfer: queue:NAME, agent:ID or a number */
    char caller_id[64];        /* originate: the From user */
    int hold, timeout_ms;      /* hold: on (1) or off (0); originate and transfer: ring time */
    char digits[40];           /* dtmf: 0-9 * # A-D, up to GW_DTMF_MAX */
    int duration_ms, gap_ms;   /* dtmf: each digit's length and the silence after it */
} gw_media_op_t;

#define GW_DTMF_MAX 32

enum { GW_MEDIA_PLAY = 1, GW_MEDIA_COLLECT, GW_MEDIA_HANGUP, GW_MEDIA_RECORD, GW_MEDIA_ANSWER, GW_MEDIA_BRIDGE,
       GW_MEDIA_UNBRIDGE, GW_MEDIA_HOLD, GW_MEDIA_ORIGINATE, GW_MEDIA_TRANSFER, GW_MEDIA_DTMF };
enum { GW_REC_START = 1, GW_REC_PAUSE, GW_REC_RESUME, GW_REC_STOP };

/* A phone's credentials: HA1 = MD5(user:realm:password), never the password. */
typedef struct { char user[64]; uint8_t ha1[16]; } gw_user_t;

#define GW_REALM "callcenter"

typedef struct _gw_media_t gw_media_t;

/* Starts the thread and binds SIP. NULL when SIP cannot be bound or the
 * options are invalid (logged). */
gw_media_t *gw_media_start(const gw_media_opts_t *opts);
/* Ends every call (BYE) and stops the thread. */
void gw_media_stop(gw_media_t **self_p);
/* Calls in progress (thread-safe). */
int gw_media_calls(gw_media_t *self);
/* The quantile (0.99) of how late RTP frames left against their 20 ms
 * schedule, in microseconds, over all frames sent so far (thread-safe);
 * *frames_p (may be NULL) gets how many frames that covers. */
int64_t gw_media_send_late_us(gw_media_t *self, double quantile, uint64_t *frames_p);
/* Phones registered now, expired ones left out (thread-safe). */
int gw_media_registrations(gw_media_t *self);
/* REGISTERs refused so far: wrong password, malformed (thread-safe). */
int64_t gw_media_register_refused(gw_media_t *self);
/* RTCP packets received from peers so far (thread-safe). */
int64_t gw_media_rtcp_received(gw_media_t *self);

/* Requests from the service thread, carried out on the media thread. Each
 * returns 0, or CC_ENOMEM / CC_EIO when it could not be queued. */
/* Ring the phone registered as extension for caller call_id. With a
 * callback_number (a callback: no caller is waiting), the agent's answer
 * dials that number through the trunk and bridges the two; acd hears
 * answered when the customer answers, callback_failed when they do not. */
int gw_media_offer(gw_media_t *self, const char *call_id, const char *agent_id, const char *extension,
                   int ring_ms, const char *callback_number);
/* End call_id (and any agent leg) with reason. With fallback, the caller
 * first hears the fallback prompt once (no dead air). */
int gw_media_hangup(gw_media_t *self, const char *call_id, const char *reason, int fallback);
/* Hang up call_id's agent leg only; the caller goes back to music. */
int gw_media_drop_agent(gw_media_t *self, const char *call_id);
/* acd gave up call_id's offer to agent (not answered in its time, a
 * supervisor): that agent's leg stops ringing (CANCEL); the caller stays. */
int gw_media_withdraw(gw_media_t *self, const char *call_id, const char *agent);
/* Sends every caller still waiting in a queue to acd again (acd lost its
 * state). */
int gw_media_requeue_all(gw_media_t *self);
/* Replaces the phones' credentials; takes ownership of users (malloc'd). */
int gw_media_set_users(gw_media_t *self, gw_user_t *users, size_t n);
/* Adds the stored bindings (gateway start); takes ownership of bindings
 * (malloc'd). A user who registered meanwhile keeps the newer binding. */
int gw_media_set_bindings(gw_media_t *self, gw_binding_t *bindings, size_t n);
/* Starts a media operation (copied). A call has one at a time: a new one
 * ends the previous with result "replaced". */
int gw_media_op(gw_media_t *self, const gw_media_op_t *op);

#endif
