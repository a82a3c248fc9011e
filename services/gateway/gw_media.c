/* gw_media: SIP (libre) and RTP on the media thread. */
#define _GNU_SOURCE
#include "gw_media.h"
#include "gw_audio.h"
#include "gw_clock.h"
#include <sndfile.h>
#include "cc/cc_bus.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"
#include "call.pb-c.h"
#include "agent.pb-c.h"

#include <re.h>
#include <arpa/inet.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#define PTIME 20
#define FRAME (8000 * PTIME / 1000)   /* samples per 20 ms packet */
#define MAX_TRUNKS 32
#define MAX_ROUTES 64
#define RATE_SLOTS 256
#define TELEV_PT 101

enum { MQ_STOP = 1, MQ_OFFER, MQ_HANGUP, MQ_DROP_AGENT, MQ_USERS, MQ_OP, MQ_REQUEUE, MQ_BINDINGS, MQ_WITHDRAW };

#define MAX_REGS 4096
#define SIP_HASH_SIZE 16384            /* buckets of libre's transaction and session tables */
#define CALL_HASH_SIZE 2048            /* buckets of the calls by call id (GATEWAY_MAX_CALLS legs, 1,000 by default) */
#define LATE_BUCKETS 1000              /* 0 .. 100 ms in 100 us steps */
#define MAX_NONCES 512
#define REG_MAX_S 3600                 /* the longest registration granted */

/* A request from the service thread (heap, freed by the media thread). */
typedef struct {
    char call_id[64], agent[64], extension[64], reason[64], callback_number[64];
    int ring_ms;
    bool fallback;
    gw_media_op_t op;
    gw_user_t *users;
    size_t nusers;
    gw_binding_t *bindings;
    size_t nbindings;
} mq_req_t;

typedef struct {
    char user[64];
    char contact[256];         /* the phone's Contact URI */
    struct sa source;          /* where its REGISTER came from */
    enum sip_transp tp;
    _Atomic int64_t expires_ms;   /* read by the service thread too */
} reg_t;

typedef struct { char nonce[40]; int64_t issued_ms; uint32_t nc; } nonce_t;   /* nc: highest count used */

typedef struct { uint32_t net, mask; } cidr_t;
typedef struct { char number[32]; char action[16]; char prompt[128]; int ring_ms; char queue[64]; } route_t;
typedef struct { uint32_t ip; int64_t window; int count; } rate_t;

typedef struct gw_call gw_call_t;

#define MAX_PROMPTS 64
typedef struct { char name[128]; gw_prompt_t prompt; } cached_prompt_t;

struct _gw_media_t {
    gw_media_opts_t o;
    char *routes_text, *trunks_text, *sip_host, *prompts_dir, *bus_pub, *cdr_endpoint, *service, *instance;
    char *fallback, *recordings_dir, *tts_dir, *trunk_out, *hold_music;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int started;               /* 0 starting, 1 running, -1 failed */
    struct mqueue *mq;
    struct sip *sip;
    struct sip_lsnr *lsnr;
    struct sipsess_sock *sess_sock;
    struct list calls;
    struct hash *calls_by_id;  /* the same calls by call id (a call and its agent legs share one) */
    _Atomic int ncalls;
    cidr_t trunks[MAX_TRUNKS];
    int ntrunks;
    route_t routes[MAX_ROUTES];
    int nroutes;
    rate_t rates[RATE_SLOTS];
    cc_bus_t *bus;
    zsock_t *cdr;
    struct tmr stop_tmr;
    cached_prompt_t prompts[MAX_PROMPTS];  /* loaded once, read by every call */
    int nprompts;
    gw_user_t *users;
    size_t nusers;
    reg_t *regs;
    _Atomic int nregs;
    _Atomic uint64_t late_hist[LATE_BUCKETS];   /* RTP send lateness, 100 us buckets */
    nonce_t nonces[MAX_NONCES];
    int next_nonce;
    _Atomic int64_t register_refused;
    _Atomic int64_t rtcp_received;
    gw_clock_t *clock;         /* every call's 20 ms frames, from one timer */
};

/* The prompt called name, loaded on first use. NULL when it cannot be read. */
static const gw_prompt_t *
s_prompt(gw_media_t *m, const char *name)
{
    for (int i = 0; i < m->nprompts; i++)
        if (strcmp(m->prompts[i].name, name) == 0) return &m->prompts[i].prompt;
    if (m->nprompts == MAX_PROMPTS) return NULL;
    cached_prompt_t *p = &m->prompts[m->nprompts];
    bool tts = strncmp(name, "tts:", 4) == 0;   /* rendered speech, from the cache folder */
    if (gw_prompt_load(&p->prompt, tts ? m->tts_dir : m->prompts_dir, tts ? name + 4 : name)) return NULL;
    snprintf(p->name, sizeof p->name, "%s", name);
    m->nprompts++;
    return &p->prompt;
}

struct gw_call {
    struct le le;
    struct le by_id;           /* in calls_by_id */
    gw_media_t *media;
    struct sipsess *sess;
    struct sdp_session *sdp;
    struct sdp_media *sdpm;
    struct rtp_sock *rtp;
    struct telev *telev;
    gw_clock_member_t tx;      /* on the media clock while it sends */
    struct tmr answer_tmr;
    bool offered;
    struct sa raddr;
    int pt;                    /* 0 PCMU or 8 PCMA; -1 until negotiated */
    int telev_pt;
    bool held, established, ended, announce;
    const gw_prompt_t *prompt;  /* shared, from the media's cache */
    const gw_prompt_t *music;   /* the route's prompt, to come back to */
    size_t pos;
    uint32_t ts, ssrc_seq;
    int last_digit_ts_valid;
    uint32_t last_digit_ts;
    gw_cdr_t cdr;
    gw_call_t *peer;           /* caller <-> agent leg */
    bool outbound;             /* we called it */
    bool agent_leg;            /* the far leg of a caller's call (same call id): an agent, a transfer's target */
    bool acd_offer;            /* acd offered it: acd hears whether it was answered */
    bool direct;               /* rung by media.transfer: the caller's operation hears how it went */
    bool originated;           /* an outbound call with its own id (media.originate, a callback's customer) */
    bool told;                 /* its failure to answer was reported */
    bool api_bridge;           /* bridged by media.bridge: each call lives on when the other ends */
    bool moh;                  /* on hold by request: music, nothing relayed */
    char callback_number[64];  /* a callback's agent leg: the customer dialled once the agent answers */
    int64_t offer_end_ms;      /* a callback's agent leg: when acd gives the offer up (agent and customer ringing) */
    bool bridged;              /* media relayed between the legs */
    bool queued;               /* the caller is in an acd queue */
    bool answered_told;        /* the agent leg's answer was reported */
    char agent[64];
    char queue[64];            /* the acd queue the caller waits in */
    struct tmr ring_tmr;
    char release_reason[64];   /* why the announcement ends the call */
    gw_media_op_t op;          /* the media operation under way (kind 0: none) */
    char collected[64];
    struct tmr op_tmr;         /* collect: first and inter-digit timeouts */
    bool op_wait_played;       /* play (no loop): done when the prompt wrapped */
    SNDFILE *rec;              /* the caller's audio being recorded */
    bool rec_paused;
    int64_t rec_frames, rec_max_frames;
    gw_media_op_t dtmf;        /* media.dtmf under way, beside the other operations (kind 0: none) */
    size_t dtmf_next;          /* the digit being sent */
    int dtmf_phase;            /* DTMF_GAP, DTMF_HOLD, DTMF_END */
    int dtmf_left_ms;          /* of the digit's tone or of the gap after it */
    int dtmf_ends;             /* end-of-event packets sent for the digit */
    uint32_t dtmf_ts;          /* the event's RTP timestamp: its first packet's */
};

enum { DTMF_GAP, DTMF_HOLD, DTMF_END };
#define DTMF_END_PACKETS 3     /* libre's telev sends each end-of-event packet three times (RFC 4733 2.5.1.4) */

/* ---------------------------------------------------------------- events */

static void
s_publish(gw_media_t *m, const char *type, const char *call_id, const void *msg)
{
    if (m->bus) cc_bus_publish_msg(m->bus, type, call_id, msg);
}

/* --------------------------------------------------------------- options */

static int
s_parse_trunks(gw_media_t *m, const char *text)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *save, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (m->ntrunks == MAX_TRUNKS) return CC_EINVAL;
        char *slash = strchr(t, '/');
        int bits = slash ? atoi(slash + 1) : 32;
        if (slash) *slash = '\0';
        struct in_addr a;
        if (inet_pton(AF_INET, t, &a) != 1 || bits < 0 || bits > 32) {
            CC_ERROR("bad trunk address", "trunk=%s", t);
            return CC_EINVAL;
        }
        uint32_t mask = bits ? htonl(0xffffffffu << (32 - bits)) : 0;
        m->trunks[m->ntrunks++] = (cidr_t) { a.s_addr & mask, mask };
    }
    return 0;
}

static int
s_parse_routes(gw_media_t *m, const char *text)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        char *colon = eq ? strchr(eq + 1, ':') : NULL;
        if (!eq || !colon || m->nroutes == MAX_ROUTES) {
            CC_ERROR("bad route: want NUMBER=ACTION:TARGET", "route=%s", t);
            return CC_EINVAL;
        }
        route_t *r = &m->routes[m->nroutes++];
        snprintf(r->number, sizeof r->number, "%.*s", (int) (eq - t), t);
        snprintf(r->action, sizeof r->action, "%.*s", (int) (colon - eq - 1), eq + 1);
        snprintf(r->prompt, sizeof r->prompt, "%s", colon + 1);
        char *at = strchr(r->prompt, '@');   /* "@3000": ring 3 s before answering */
        if (at) {
            r->ring_ms = atoi(at + 1);
            *at = '\0';
            if (r->ring_ms < 0 || r->ring_ms > 120000) {
                CC_ERROR("bad route ring time (0..120000 ms)", "route=%s", t);
                return CC_EINVAL;
            }
        }
        if (strcmp(r->action, "queue") == 0) {
            /* queue:NAME[/MUSIC]: into an acd queue, hearing MUSIC meanwhile. */
            char target[128];
            snprintf(target, sizeof target, "%s", r->prompt);
            char *slash = strchr(target, '/');
            if (slash) *slash = '\0';
            snprintf(r->queue, sizeof r->queue, "%s", target);
            snprintf(r->prompt, sizeof r->prompt, "%s", slash ? slash + 1 : "tone:425");
        } else if (strcmp(r->action, "play") != 0 && strcmp(r->action, "announce") != 0 && strcmp(r->action, "wait") != 0) {
            CC_ERROR("bad route action: play, announce, wait or queue", "route=%s", t);
            return CC_EINVAL;
        }
    }
    return m->nroutes ? 0 : CC_EINVAL;
}

/* The route of a dialled number: exact, then the longest prefix ending in
 * '*', then "*". */
static const route_t *
s_route(gw_media_t *m, const char *number)
{
    const route_t *best = NULL;
    size_t best_len = 0;
    for (int i = 0; i < m->nroutes; i++) {
        const route_t *r = &m->routes[i];
        size_t n = strlen(r->number);
        if (strcmp(r->number, number) == 0) return r;
        if (n && r->number[n - 1] == '*' && strncmp(r->number, number, n - 1) == 0 && n >= best_len) {
            best = r;
            best_len = n;
        }
    }
    return best;
}

static bool
s_trunk_allowed(gw_media_t *m, const struct sa *src)
{
    if (sa_af(src) != AF_INET) return false;
    uint32_t ip = src->u.in.sin_addr.s_addr;
    for (int i = 0; i < m->ntrunks; i++)
        if ((ip & m->trunks[i].mask) == m->trunks[i].net) return true;
    return false;
}

/* Fixed one-second windows per source address. Returns how many INVITEs
 * the source sent in this window, this one included. */
static int
s_rate_count(gw_media_t *m, const struct sa *src)
{
    uint32_t ip = sa_af(src) == AF_INET ? src->u.in.sin_addr.s_addr : 0;
    rate_t *r = &m->rates[(ip * 2654435761u) % RATE_SLOTS];
    int64_t window = cc_mono_ms() / 1000;
    if (r->ip != ip || r->window != window) *r = (rate_t) { ip, window, 0 };
    return ++r->count;
}

/* ------------------------------------------------------------------ calls */

static void s_call_end(gw_call_t *c, int cause, const char *by, const char *reason);
static void s_op_done(gw_call_t *c, const char *result);
static bool s_dtmf_tick(gw_call_t *c);

/* Closes the recording under way, if any; the CDR gets its length. */
static void
s_rec_close(gw_call_t *c)
{
    if (!c->rec) return;
    sf_close(c->rec);
    c->rec = NULL;
    if (c->cdr.nrecs) c->cdr.recs[c->cdr.nrecs - 1].ms = c->rec_frames / 8;
}

static void
s_call_destroy(void *arg)
{
    gw_call_t *c = arg;
    gw_clock_leave(c->media->clock, &c->tx);
    tmr_cancel(&c->answer_tmr);
    tmr_cancel(&c->ring_tmr);
    tmr_cancel(&c->op_tmr);
    s_rec_close(c);
    list_unlink(&c->le);
    hash_unlink(&c->by_id);
    c->sess = mem_deref(c->sess);
    c->rtp = mem_deref(c->rtp);
    c->sdp = mem_deref(c->sdp);
    c->telev = mem_deref(c->telev);
}

/* Sends one 20 ms frame, when the media clock says it is due (against the
 * call's start: the schedule does not drift). */
static void
s_on_tx(void *arg, int64_t late)
{
    gw_call_t *c = arg;
    /* How late this frame leaves against its ideal 20 ms slot. */
    size_t bucket = late <= 0 ? 0 : (size_t) (late / 100);
    atomic_fetch_add_explicit(&c->media->late_hist[bucket < LATE_BUCKETS ? bucket : LATE_BUCKETS - 1], 1,
                              memory_order_relaxed);
    if (!c->held && c->pt >= 0 && sa_isset(&c->raddr, SA_ALL) && s_dtmf_tick(c)) {
        c->ts += FRAME;   /* a telephone-event went in this frame's place */
        return;
    }
    if ((c->bridged && !c->moh) || !c->prompt || c->held || c->pt < 0 || !sa_isset(&c->raddr, SA_ALL) || !c->prompt->count) return;
    /* The prompt is encoded already: copy 20 ms of it, wrapping around. */
    bool wrapped = false;
    const uint8_t *src = c->pt == 8 ? c->prompt->pcma : c->prompt->pcmu;
    uint8_t frame[RTP_HEADER_SIZE + FRAME];
    struct mbuf mb = { .buf = frame, .size = sizeof frame, .pos = RTP_HEADER_SIZE, .end = sizeof frame };
    for (size_t done = 0; done < FRAME;) {
        size_t n = c->prompt->count - c->pos < FRAME - done ? c->prompt->count - c->pos : FRAME - done;
        memcpy(frame + RTP_HEADER_SIZE + done, src + c->pos, n);
        done += n;
        c->pos += n;
        if (c->pos == c->prompt->count) {
            c->pos = 0;
            wrapped = true;
        }
    }
    if (rtp_send(c->rtp, &c->raddr, false, c->cdr.rtp_sent == 0, (uint8_t) c->pt, c->ts, &mb) == 0) c->cdr.rtp_sent++;
    c->ts += FRAME;
    if (wrapped && c->op_wait_played) {
        if (c->op.then_music && c->music) {
            /* An announcement between the music: the music again. */
            c->prompt = c->music;
            c->pos = 0;
        }
        s_op_done(c, "done");
    }
    if (c->announce && wrapped)   /* played once: hang up */
        s_call_end(c, 200, "system", c->release_reason[0] ? c->release_reason : "announcement played");
}

static void s_tell(gw_media_t *m, gw_msg_t *msg);

/* Tells the service thread that media operation token ended with result. */
static void
s_tell_done(gw_media_t *m, uint64_t token, const char *call_id, const char *result, const char *digits)
{
    gw_msg_t msg;
    memset(&msg, 0, sizeof msg);
    msg.type = GW_MSG_MEDIA_DONE;
    msg.token = token;
    snprintf(msg.call_id, sizeof msg.call_id, "%s", call_id);
    snprintf(msg.result, sizeof msg.result, "%s", result);
    snprintf(msg.digits, sizeof msg.digits, "%s", digits ? digits : "");
    s_tell(m, &msg);
}

/* Ends the call's media operation with result; the service thread replies. */
static void
s_op_done(gw_call_t *c, const char *result)
{
    if (!c->op.kind) return;
    tmr_cancel(&c->op_tmr);
    c->op.kind = 0;
    c->op_wait_played = false;
    s_tell_done(c->media, c->op.token, c->cdr.call_id, result, c->collected);
    c->collected[0] = '\0';
}

/* Ends the call's media.dtmf with result; the service thread replies. */
static void
s_dtmf_done(gw_call_t *c, const char *result)
{
    if (!c->dtmf.kind) return;
    c->dtmf.kind = 0;
    s_tell_done(c->media, c->dtmf.token, c->cdr.call_id, result, NULL);
}

static void
s_on_info_reply(int err, const struct sip_msg *msg, void *arg)
{
    (void) arg;
    if (err || (msg && msg->scode >= 300))
        CC_WARN("dtmf INFO refused", "status=%u error=\"%s\"", msg ? msg->scode : 0, err ? strerror(err) : "");
}

/* One 20 ms frame of media.dtmf. With telephone-event negotiated: a digit
 * starts (marker bit), lasts duration_ms, ends with three end-of-event
 * packets, then gap_ms of the call's own audio. Otherwise one SIP INFO
 * (application/dtmf-relay) per digit, every duration + gap. Returns whether
 * an event packet took this frame. */
static bool
s_dtmf_tick(gw_call_t *c)
{
    gw_media_op_t *d = &c->dtmf;
    if (!d->kind) return false;
    c->dtmf_left_ms -= PTIME;
    char digit = d->digits[c->dtmf_next];
    if (c->telev_pt < 0) {
        if (c->dtmf_left_ms > 0) return false;
        if (!digit) {
            s_dtmf_done(c, "done");
            return false;
        }
        struct mbuf *body = mbuf_alloc(64);
        int err = body ? mbuf_printf(body, "Signal=%c\r\nDuration=%d\r\n", digit, d->duration_ms) : ENOMEM;
        if (!err) {
            mbuf_set_pos(body, 0);
            err = sipsess_info(c->sess, "application/dtmf-relay", body, s_on_info_reply, NULL);
        }
        mem_deref(body);
        if (err) {
            CC_WARN("dtmf INFO not sent", "call_id=%s error=\"%s\"", c->cdr.call_id, strerror(err));
            s_dtmf_done(c, "failed");
            return false;
        }
        c->dtmf_next++;
        c->dtmf_left_ms = d->duration_ms + d->gap_ms;
        return false;
    }
    if (c->dtmf_phase == DTMF_GAP && c->dtmf_left_ms <= 0) {
        if (!digit) {
            s_dtmf_done(c, "done");
            return false;
        }
        telev_send(c->telev, telev_digit2code(digit), false);
        c->dtmf_phase = DTMF_HOLD;
        c->dtmf_left_ms = d->duration_ms - PTIME;   /* this frame is the first of the tone */
    } else if (c->dtmf_phase == DTMF_HOLD && c->dtmf_left_ms <= 0) {
        telev_send(c->telev, telev_digit2code(digit), true);
        c->dtmf_phase = DTMF_END;
        c->dtmf_ends = 0;
    }
    uint8_t buf[RTP_HEADER_SIZE + 4];
    struct mbuf mb = { .buf = buf, .size = sizeof buf, .pos = RTP_HEADER_SIZE, .end = RTP_HEADER_SIZE };
    bool marker = false;
    if (telev_poll(c->telev, &marker, &mb) != 0) return false;
    if (marker) c->dtmf_ts = c->ts;
    mb.pos = RTP_HEADER_SIZE;
    if (rtp_send(c->rtp, &c->raddr, false, marker, (uint8_t) c->telev_pt, c->dtmf_ts, &mb) == 0) c->cdr.rtp_sent++;
    if ((buf[RTP_HEADER_SIZE + 1] & 0x80) && ++c->dtmf_ends == DTMF_END_PACKETS) {
        CC_INFO("dtmf sent", "call_id=%s digit=%c method=rfc4733", c->cdr.call_id, digit);
        c->dtmf_next++;
        c->dtmf_phase = DTMF_GAP;
        c->dtmf_left_ms = d->gap_ms;
    }
    return true;
}

static void
s_on_op_timeout(void *arg)
{
    s_op_done(arg, "timeout");
}

/* A digit for a collect under way: terminator, enough digits, or wait on. */
static void
s_collect_digit(gw_call_t *c, char digit)
{
    if (c->op.kind != GW_MEDIA_COLLECT) return;
    if (strchr(c->op.terminators, digit)) {
        s_op_done(c, "terminator");
        return;
    }
    size_t n = strlen(c->collected);
    if (n + 1 < sizeof c->collected) { c->collected[n] = digit; c->collected[n + 1] = '\0'; }
    if ((int) strlen(c->collected) >= c->op.max_digits) s_op_done(c, "max");
    else tmr_start(&c->op_tmr, (uint64_t) c->op.inter_ms, s_on_op_timeout, c);
}

static void
s_digit(gw_call_t *c, char digit, const char *method, uint32_t duration_ms)
{
    s_collect_digit(c, digit);
    size_t n = strlen(c->cdr.dtmf);
    if (n + 1 < sizeof c->cdr.dtmf) { c->cdr.dtmf[n] = digit; c->cdr.dtmf[n + 1] = '\0'; }
    char d[2] = { digit, 0 };
    Cc__CallDtmf ev = CC__CALL_DTMF__INIT;
    ev.call_id = c->cdr.call_id;
    ev.digit = d;
    ev.duration_ms = duration_ms;
    ev.method = (char *) method;
    s_publish(c->media, "call.dtmf", c->cdr.call_id, &ev);
    CC_INFO("dtmf", "call_id=%s digit=%c method=%s", c->cdr.call_id, digit, method);
}

/* Relays one packet to the other leg, converting PCMU and PCMA as needed. */
static void
s_relay(gw_call_t *c, const struct rtp_header *hdr, struct mbuf *mb)
{
    gw_call_t *p = c->peer;
    if (!p || !c->bridged || c->moh || p->moh || p->held || p->pt < 0 || !sa_isset(&p->raddr, SA_ALL)) return;
    int pt;
    if (hdr->pt == c->telev_pt) {
        if (p->telev_pt < 0) return;
        pt = p->telev_pt;
    } else if (hdr->pt == c->pt) {
        pt = p->pt;
    } else {
        return;
    }
    size_t n = mbuf_get_left(mb);
    struct mbuf *out = mbuf_alloc(RTP_HEADER_SIZE + n);
    if (!out) return;
    out->pos = out->end = RTP_HEADER_SIZE;
    if (pt == p->pt && c->pt != p->pt) {
        int16_t pcm[1024];
        if (n > 1024) n = 1024;
        gw_g711_decode(c->pt, mbuf_buf(mb), pcm, n);
        gw_g711_encode(p->pt, pcm, out->buf + out->pos, n);
    } else {
        memcpy(out->buf + out->pos, mbuf_buf(mb), n);
    }
    out->end += n;
    if (rtp_send(p->rtp, &p->raddr, false, hdr->m, (uint8_t) pt, hdr->ts, out) == 0) p->cdr.rtp_sent++;
    mem_deref(out);
}

static void
s_on_rtp(const struct sa *src, const struct rtp_header *hdr, struct mbuf *mb, void *arg)
{
    gw_call_t *c = arg;
    c->cdr.rtp_received++;
    s_relay(c, hdr, mb);
    if (c->rec && !c->rec_paused && hdr->pt == c->pt) {
        /* Recording: the caller's audio, as it arrives (paused: nothing). */
        int16_t pcm[1024];
        size_t n = mbuf_get_left(mb) < 1024 ? mbuf_get_left(mb) : 1024;
        gw_g711_decode(c->pt, mbuf_buf(mb), pcm, n);
        c->rec_frames += sf_write_short(c->rec, pcm, (sf_count_t) n);
        if (c->rec_max_frames && c->rec_frames >= c->rec_max_frames) s_rec_close(c);
    }
    if (hdr->pt != c->telev_pt || !c->telev) return;
    int event;
    bool end;
    if (telev_recv(c->telev, mb, &event, &end) != 0 || !end) return;
    /* An end packet comes three times: one digit per event timestamp. */
    if (c->last_digit_ts_valid && c->last_digit_ts == hdr->ts) return;
    c->last_digit_ts_valid = 1;
    c->last_digit_ts = hdr->ts;
    int digit = telev_code2digit(event);
    if (digit > 0) s_digit(c, (char) digit, "rfc4733", 0);
}

/* RTCP from a peer: counted (gateway_rtcp_received_total). */
static void
s_on_rtcp(const struct sa *src, struct rtcp_msg *msg, void *arg)
{
    (void) src;
    (void) msg;
    gw_call_t *c = arg;
    atomic_fetch_add_explicit(&c->media->rtcp_received, 1, memory_order_relaxed);
}

/* Picks PCMU or PCMA and telephone-event from the remote description.
 * Returns false when no common audio codec exists. */
static bool
s_negotiate(gw_call_t *c)
{
    c->pt = -1;
    c->telev_pt = -1;
    struct le *le;
    LIST_FOREACH(sdp_media_format_lst(c->sdpm, false), le) {
        const struct sdp_format *f = le->data;
        if (!f->sup) continue;
        if (c->pt < 0 && (!str_casecmp(f->name, "PCMU") || !str_casecmp(f->name, "PCMA"))) c->pt = f->pt;
        if (!str_casecmp(f->name, "telephone-event")) c->telev_pt = f->pt;
    }
    if (c->pt < 0) return false;
    snprintf(c->cdr.codec, sizeof c->cdr.codec, "%s", c->pt == 8 ? "PCMA" : "PCMU");
    const struct sa *ra = sdp_media_raddr(c->sdpm);
    if (sa_isset(ra, SA_ALL)) {
        c->raddr = *ra;
        /* RTCP goes to the peer's RTCP port (a=rtcp, else RTP + 1), not its RTP port. */
        struct sa rtcp;
        sdp_media_raddr_rtcp(c->sdpm, &rtcp);
        rtcp_start(c->rtp, c->cdr.call_id, &rtcp);
    }
    enum sdp_dir dir = sdp_media_rdir(c->sdpm);
    c->held = dir == SDP_SENDONLY || dir == SDP_INACTIVE || sa_is_any(ra);
    return true;
}

/* Hands a message to the service thread. */
static void
s_tell(gw_media_t *m, gw_msg_t *msg)
{
    if (m->cdr && zmq_send(zsock_resolve(m->cdr), msg, sizeof *msg, 0) < 0)
        CC_ERROR("message to the service thread lost", "type=%d call_id=%s error=\"%s\"", msg->type, msg->call_id,
                 zmq_strerror(zmq_errno()));
}

static void
s_tell_call(gw_media_t *m, int type, const char *call_id, const char *agent, const char *reason)
{
    gw_msg_t msg;
    memset(&msg, 0, sizeof msg);
    msg.type = type;
    snprintf(msg.call_id, sizeof msg.call_id, "%s", call_id);
    snprintf(msg.agent, sizeof msg.agent, "%s", agent ? agent : "");
    snprintf(msg.reason, sizeof msg.reason, "%s", reason ? reason : "");
    s_tell(m, &msg);
}

/* Asks the service thread to put caller c in its acd queue (GW_MSG_ENQUEUE),
 * or to tell acd again that its agent's phone rings (GW_MSG_REOFFER). */
static void
s_tell_queue(gw_media_t *m, gw_call_t *c, int type)
{
    gw_msg_t msg;
    memset(&msg, 0, sizeof msg);
    msg.type = type;
    snprintf(msg.call_id, sizeof msg.call_id, "%s", c->cdr.call_id);
    snprintf(msg.queue, sizeof msg.queue, "%s", c->queue);
    snprintf(msg.caller, sizeof msg.caller, "%s", c->cdr.caller);
    if (type == GW_MSG_REOFFER) snprintf(msg.agent, sizeof msg.agent, "%s", c->peer->agent);
    s_tell(m, &msg);
}

static void
s_cdr_push(gw_call_t *c)
{
    gw_msg_t msg;
    memset(&msg, 0, sizeof msg);
    msg.type = GW_MSG_CDR;
    snprintf(msg.call_id, sizeof msg.call_id, "%s", c->cdr.call_id);
    msg.cdr = c->cdr;
    s_tell(c->media, &msg);
}

/* The result a call that was not answered ends its dialling with. */
static const char *
s_why(int cause)
{
    return cause == 486 || cause == 600 || cause == 603 ? "busy" : cause == 408 || cause == 480 ? "no_answer"
         : cause == 404 || cause == 484 ? "not_found" : "rejected";
}

/* Back to its music (or silence), nothing relayed. */
static void
s_back_to_music(gw_call_t *c)
{
    c->prompt = c->music;
    c->pos = 0;
}

/* An outbound leg that will not be answered (why: busy, no_answer...):
 * whoever asked for it hears so, once. */
static void
s_leg_failed(gw_call_t *c, const char *why)
{
    if (c->told) return;
    c->told = true;
    gw_call_t *p = c->peer;
    if (c->acd_offer) s_tell_call(c->media, GW_MSG_REJECTED, c->cdr.call_id, c->agent, why);
    if (c->direct && p) s_op_done(p, why);   /* a transfer's target: the caller is back to the music */
    if (c->originated && c->op.kind == GW_MEDIA_ORIGINATE) s_op_done(c, why);
    if (c->originated && p && p->callback_number[0])   /* a callback's customer */
        s_tell_call(c->media, GW_MSG_CALLBACK_FAILED, c->cdr.call_id, p->agent, why);
}

/* Ends the call once: BYE (or a final reply) through libre, CDR and event. */
static void
s_call_end(gw_call_t *c, int cause, const char *by, const char *reason)
{
    if (c->ended) return;
    if (c->outbound && !c->cdr.answered_us && strcmp(by, "system") != 0) s_leg_failed(c, s_why(cause));
    c->ended = true;
    gw_clock_leave(c->media->clock, &c->tx);
    s_rec_close(c);   /* whole, and its length in the CDR */
    s_op_done(c, "hangup");
    s_dtmf_done(c, "hangup");
    c->cdr.ended_us = cc_wall_us();
    c->cdr.sip_cause = cause;
    snprintf(c->cdr.hangup_by, sizeof c->cdr.hangup_by, "%s", by);
    snprintf(c->cdr.reason, sizeof c->cdr.reason, "%s", reason);
    Cc__CallEnded ev = CC__CALL_ENDED__INIT;
    ev.call_id = c->cdr.call_id;
    ev.sip_cause = (uint32_t) cause;
    ev.hangup_by = strcmp(by, "caller") == 0 ? CC__PARTY__PARTY_CALLER
                 : strcmp(by, "callee") == 0 ? CC__PARTY__PARTY_CALLEE : CC__PARTY__PARTY_SYSTEM;
    ev.reason = (char *) reason;
    ev.duration_ms = c->cdr.answered_us ? (c->cdr.ended_us - c->cdr.answered_us) / 1000 : 0;
    if (!c->agent_leg) s_publish(c->media, "call.ended", c->cdr.call_id, &ev);   /* the call, not the agent leg */
    s_cdr_push(c);
    gw_call_t *peer = c->peer;
    bool was_bridged = c->bridged;
    if (peer) {
        peer->peer = NULL;
        c->peer = NULL;
        peer->bridged = c->bridged = false;
    }
    if (peer && c->api_bridge) {
        /* Bridged on request: the other call lives on, back to its music. */
        peer->api_bridge = c->api_bridge = false;
        s_back_to_music(peer);
        peer = NULL;
    }
    if (c->agent_leg) {
        if (peer && was_bridged) {
            s_call_end(peer, 200, "callee", "agent hung up");
        } else if (peer && peer->originated && !peer->cdr.answered_us) {
            /* A callback's customer still ringing: acd tries again later. */
            s_tell_call(c->media, GW_MSG_CALLBACK_FAILED, peer->cdr.call_id, c->agent, "agent hung up");
            peer->told = true;
            s_call_end(peer, 487, "system", "agent hung up");
        }
    } else {
        if (c->queued) s_tell_call(c->media, GW_MSG_ENDED, c->cdr.call_id, NULL, reason);
        if (peer) s_call_end(peer, 200, "system", reason);   /* the other leg ends for the same reason */
    }
    CC_INFO("call ended", "call_id=%s cause=%d by=%s reason=\"%s\" rtp_sent=%llu rtp_received=%llu dtmf=%s",
            c->cdr.call_id, cause, by, reason, (unsigned long long) c->cdr.rtp_sent,
            (unsigned long long) c->cdr.rtp_received, c->cdr.dtmf);
    atomic_fetch_sub(&c->media->ncalls, 1);
    mem_deref(c);   /* the session's reference: BYE goes out if it was up */
}

static int
s_offer_answer(gw_call_t *c, struct mbuf **descp, bool offer)
{
    return sdp_encode(descp, c->sdp, offer);
}

/* A re-INVITE (hold, unhold, new address). */
static int
s_on_offer(struct mbuf **descp, const struct sip_msg *msg, void *arg)
{
    gw_call_t *c = arg;
    int err = sdp_decode(c->sdp, msg->mb, true);
    if (err) return err;
    if (!s_negotiate(c)) return EPROTO;
    CC_INFO("media updated", "call_id=%s held=%d", c->cdr.call_id, c->held);
    return s_offer_answer(c, descp, false);
}

/* The answer to our offer (late offer: it comes in the ACK). */
static int
s_on_answer(const struct sip_msg *msg, void *arg)
{
    gw_call_t *c = arg;
    int err = sdp_decode(c->sdp, msg->mb, false);
    if (err) return err;
    if (!s_negotiate(c)) {
        CC_WARN("no common codec in the answer", "call_id=%s", c->cdr.call_id);
        s_call_end(c, 488, "system", "no common codec");
    }
    return 0;
}

static void
s_on_estab(const struct sip_msg *msg, void *arg)
{
    gw_call_t *c = arg;
    c->established = true;
}

/* SIP INFO digits: application/dtmf-relay ("Signal=5") or application/dtmf. */
static void
s_on_info(struct sip *sip, const struct sip_msg *msg, void *arg)
{
    gw_call_t *c = arg;
    struct pl sig;
    const char *body = (const char *) mbuf_buf(msg->mb);
    size_t len = mbuf_get_left(msg->mb);
    char digit = 0;
    if (re_regex(body, len, "Signal=[ ]*[0-9*#A-D]1", NULL, &sig) == 0) digit = sig.p[0];
    else if (len >= 1 && strchr("0123456789*#ABCD", body[0])) digit = body[0];
    if (digit) {
        s_digit(c, digit, "info", 0);
        sip_reply(sip, msg, 200, "OK");
    } else {
        sip_reply(sip, msg, 415, "Unsupported Media Type");
    }
}

/* libre reports the caller's BYE and CANCEL alike (ECONNRESET): before the
 * answer it was a CANCEL. */
static void
s_on_close(int err, const struct sip_msg *msg, void *arg)
{
    gw_call_t *c = arg;
    if (c->outbound) {
        /* The agent's phone: a final error status, or BYE after the answer. */
        if (msg && msg->scode >= 300) {
            char reason[64];
            pl_strcpy(&msg->reason, reason, sizeof reason);
            s_call_end(c, msg->scode, "callee", reason);
        } else if (err == ECONNRESET || !err) {
            s_call_end(c, 200, "callee", c->agent_leg ? "agent hung up" : "callee hung up");
        } else {
            s_call_end(c, err == ETIMEDOUT ? 408 : 500, "system", strerror(err));
        }
        return;
    }
    if (err == ECONNRESET && c->cdr.answered_us) s_call_end(c, 200, "caller", "caller hung up");
    else if (err == ECONNRESET) s_call_end(c, 487, "caller", "cancelled before answer");
    else if (err) {
        char reason[64];
        snprintf(reason, sizeof reason, "session closed: %s", strerror(err));
        s_call_end(c, err == ETIMEDOUT ? 408 : 500, "system", reason);
    } else s_call_end(c, 200, "caller", "caller hung up");
}

static void
s_random_id(char *buf, size_t cap)
{
    uint64_t a, b;
    if (getrandom(&a, sizeof a, 0) != sizeof a) a = (uint64_t) cc_wall_us();
    if (getrandom(&b, sizeof b, 0) != sizeof b) b = a * 2654435761u;
    snprintf(buf, cap, "%016llx%08llx", (unsigned long long) a, (unsigned long long) (b & 0xffffffff));
}

static void s_answer(void *arg);
static void s_on_unanswered(void *arg);

/* A call refused before any session: its CDR says why. */
static void
s_refuse(gw_call_t *c, const struct sip_msg *msg, uint16_t code, const char *reason)
{
    sip_treply(NULL, c->media->sip, msg, code, reason);
    c->ended = true;
    c->cdr.ended_us = cc_wall_us();
    c->cdr.sip_cause = code;
    snprintf(c->cdr.hangup_by, sizeof c->cdr.hangup_by, "system");
    snprintf(c->cdr.reason, sizeof c->cdr.reason, "%s", reason);
    s_cdr_push(c);
    CC_WARN("call refused", "call_id=%s status=%u reason=\"%s\" source=%s", c->cdr.call_id, code, reason, c->cdr.source);
    mem_deref(c);
}

/* An INVITE for a new call. */
static void
s_on_connect(const struct sip_msg *msg, void *arg)
{
    gw_media_t *m = arg;
    char src[64];
    re_snprintf(src, sizeof src, "%J", &msg->src);
    if (atomic_load(&m->ncalls) >= m->o.max_calls) {
        CC_WARN("call refused: over capacity", "source=%s calls=%d max=%d", src, atomic_load(&m->ncalls), m->o.max_calls);
        sip_treplyf(NULL, NULL, m->sip, msg, false, 503, "Over Capacity", "Retry-After: 5\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    char dialled[64];
    pl_strcpy(&msg->uri.user, dialled, sizeof dialled);
    const route_t *route = s_route(m, dialled);
    if (!route) {
        CC_WARN("call refused: no route", "source=%s dialled=%s", src, dialled);
        sip_treply(NULL, m->sip, msg, 404, "No Route For Number");
        return;
    }
    gw_call_t *c = mem_zalloc(sizeof *c, s_call_destroy);
    if (!c) {
        sip_treply(NULL, m->sip, msg, 500, "Server Internal Error");
        return;
    }
    c->media = m;
    c->pt = -1;
    c->telev_pt = -1;
    c->announce = strcmp(route->action, "announce") == 0;
    if (strcmp(route->action, "queue") == 0) {
        c->queued = true;
        snprintf(c->queue, sizeof c->queue, "%s", route->queue);
    }
    snprintf(c->cdr.leg, sizeof c->cdr.leg, "caller");
    snprintf(c->cdr.direction, sizeof c->cdr.direction, "inbound");
    tmr_init(&c->answer_tmr);
    tmr_init(&c->op_tmr);
    s_random_id(c->cdr.call_id, sizeof c->cdr.call_id);
    pl_strcpy(&msg->callid, c->cdr.sip_call_id, sizeof c->cdr.sip_call_id);
    pl_strcpy(&msg->from.uri.user, c->cdr.caller, sizeof c->cdr.caller);
    snprintf(c->cdr.dialled, sizeof c->cdr.dialled, "%s", dialled);
    snprintf(c->cdr.source, sizeof c->cdr.source, "%s", src);
    c->cdr.started_us = cc_wall_us();
    list_append(&m->calls, &c->le, c);
    hash_append(m->calls_by_id, hash_joaat_str(c->cdr.call_id), &c->by_id, c);

    struct sa laddr;
    sa_set_str(&laddr, m->sip_host, 0);
    int err = rtp_listen(&c->rtp, IPPROTO_UDP, &laddr, (uint16_t) m->o.rtp_min, (uint16_t) m->o.rtp_max, true,
                         s_on_rtp, s_on_rtcp, c);
    struct sa rtp_local;
    if (!err) err = udp_local_get(rtp_sock(c->rtp), &rtp_local);
    if (!err) err = sdp_session_alloc(&c->sdp, &laddr);
    if (!err) err = sdp_media_add(&c->sdpm, c->sdp, "audio", sa_port(&rtp_local), "RTP/AVP");
    if (!err) err = sdp_format_add(NULL, c->sdpm, false, "0", "PCMU", 8000, 1, NULL, NULL, NULL, false, NULL);
    if (!err) err = sdp_format_add(NULL, c->sdpm, false, "8", "PCMA", 8000, 1, NULL, NULL, NULL, false, NULL);
    if (!err) err = sdp_format_add(NULL, c->sdpm, false, "101", "telephone-event", 8000, 1, NULL, NULL, NULL, false, "0-15");
    if (!err) err = telev_alloc(&c->telev, PTIME);
    if (err) {
        CC_ERROR("media set-up failed", "call_id=%s error=\"%s\"", c->cdr.call_id, strerror(err));
        s_refuse(c, msg, 503, "Media Unavailable");
        return;
    }
    bool offered = mbuf_get_left(msg->mb) > 0;
    if (offered) {
        err = sdp_decode(c->sdp, msg->mb, true);
        if (err || !s_negotiate(c)) {
            s_refuse(c, msg, err ? 400 : 488, err ? "Bad SDP" : "Not Acceptable Here");
            return;
        }
    }
    if (!(c->music = c->prompt = s_prompt(m, route->prompt))) {
        s_refuse(c, msg, 500, "Prompt Unavailable");
        return;
    }
    err = sipsess_accept(&c->sess, m->sess_sock, msg, 180, "Ringing", "gateway", "application/sdp", NULL,
                         NULL, NULL, false, s_on_offer, s_on_answer, s_on_estab, s_on_info, NULL, s_on_close, c, NULL);
    if (err) {
        CC_ERROR("sipsess_accept failed", "call_id=%s error=\"%s\"", c->cdr.call_id, strerror(err));
        s_refuse(c, msg, 500, "Server Internal Error");
        return;
    }
    atomic_fetch_add(&m->ncalls, 1);
    Cc__CallStarted ev = CC__CALL_STARTED__INIT;
    ev.call_id = c->cdr.call_id;
    ev.caller = c->cdr.caller;
    ev.dialled = c->cdr.dialled;
    ev.trunk = src;
    ev.direction = "inbound";
    ev.codec = c->cdr.codec;
    s_publish(m, "call.started", c->cdr.call_id, &ev);
    CC_INFO("call started", "call_id=%s caller=%s dialled=%s source=%s route=%s:%s", c->cdr.call_id, c->cdr.caller,
            dialled, src, route->action, route->prompt);

    c->offered = offered;
    if (strcmp(route->action, "wait") == 0)   /* rings until media.answer */
        tmr_start(&c->answer_tmr, (uint64_t) (route->ring_ms ? route->ring_ms : 30000), s_on_unanswered, c);
    else
        tmr_start(&c->answer_tmr, (uint64_t) route->ring_ms, s_answer, c);
}

/* Answers a ringing call: our SDP answers the offer, or offers itself (late
 * offer), and the prompt starts. Returns 0, or -1 when the answer failed
 * and the call was ended (c is gone). */
static int
s_answer_now(gw_call_t *c)
{
    gw_media_t *m = c->media;
    tmr_cancel(&c->answer_tmr);
    struct mbuf *desc = NULL;
    int err = s_offer_answer(c, &desc, !c->offered);
    if (!err) err = sipsess_answer(c->sess, 200, "OK", desc, NULL);
    mem_deref(desc);
    if (err) {
        s_call_end(c, 500, "system", "answer failed");
        return -1;
    }
    c->cdr.answered_us = cc_wall_us();
    Cc__CallAnswered ans = CC__CALL_ANSWERED__INIT;
    ans.call_id = c->cdr.call_id;
    s_publish(m, "call.answered", c->cdr.call_id, &ans);
    gw_clock_join(m->clock, &c->tx, cc_mono_us(), s_on_tx, c);
    if (c->queued) s_tell_queue(m, c, GW_MSG_ENQUEUE);
    return 0;
}

static void
s_answer(void *arg)
{
    s_answer_now(arg);
}

/* A wait route's call that nobody answered in time. */
static void
s_on_unanswered(void *arg)
{
    gw_call_t *c = arg;
    sipsess_reject(c->sess, 480, "Temporarily Unavailable", "Content-Length: 0\r\n\r\n");
    s_call_end(c, 480, "system", "not answered by request in time");
}

/* ---------------------------------------------------------------- registrar */

static void
s_challenge(gw_media_t *m, const struct sip_msg *msg, bool stale)
{
    nonce_t *n = &m->nonces[m->next_nonce++ % MAX_NONCES];
    s_random_id(n->nonce, sizeof n->nonce);
    n->issued_ms = cc_mono_ms();
    n->nc = 0;
    sip_treplyf(NULL, NULL, m->sip, msg, false, 401, "Unauthorized",
                "WWW-Authenticate: Digest realm=\"%s\", nonce=\"%s\", algorithm=MD5, qop=\"auth\"%s\r\n"
                "Content-Length: 0\r\n\r\n", GW_REALM, n->nonce, stale ? ", stale=true" : "");
}

/* A REGISTER refused for good: counted, logged, answered with code. */
static void
s_register_refuse(gw_media_t *m, const struct sip_msg *msg, uint16_t code, const char *reason, const char *user,
                  const char *src)
{
    atomic_fetch_add(&m->register_refused, 1);
    CC_WARN("REGISTER refused", "user=%s source=%s status=%u reason=\"%s\"", user, src, code, reason);
    sip_treply(NULL, m->sip, msg, code, reason);
}

/* The nonce we issued less than GATEWAY_NONCE_TTL_S ago, or NULL. */
static nonce_t *
s_nonce_find(gw_media_t *m, const struct pl *nonce)
{
    int64_t now = cc_mono_ms();
    for (int i = 0; i < MAX_NONCES; i++)
        if (m->nonces[i].nonce[0] && !pl_strcmp(nonce, m->nonces[i].nonce))
            return now - m->nonces[i].issued_ms < (int64_t) m->o.nonce_ttl_s * 1000 ? &m->nonces[i] : NULL;
    return NULL;
}

static reg_t *
s_reg_find(gw_media_t *m, const char *user)
{
    int64_t now = cc_mono_ms();
    for (int i = 0; i < atomic_load(&m->nregs); i++)
        if (strcmp(m->regs[i].user, user) == 0) return m->regs[i].expires_ms > now ? &m->regs[i] : NULL;
    return NULL;
}

/* The slot of user's binding, live or not; with add, a new one when there is
 * none (NULL when the registrar is full). */
static reg_t *
s_reg_slot(gw_media_t *m, const char *user, bool add)
{
    int n = atomic_load(&m->nregs);
    for (int i = 0; i < n; i++)
        if (strcmp(m->regs[i].user, user) == 0) return &m->regs[i];
    if (!add || n == MAX_REGS) return NULL;
    reg_t *r = &m->regs[n];
    snprintf(r->user, sizeof r->user, "%s", user);
    r->expires_ms = 0;
    atomic_store(&m->nregs, n + 1);
    return r;
}

static const char *const s_transports[SIP_TRANSPC] = { "udp", "tcp", "tls", "ws", "wss" };

/* Hands r's binding to the service thread to be stored; expires_s 0: it
 * was removed. */
static void
s_tell_binding(gw_media_t *m, const reg_t *r, int expires_s)
{
    gw_msg_t msg;
    memset(&msg, 0, sizeof msg);
    msg.type = GW_MSG_BINDING;
    gw_binding_t *b = &msg.binding;
    snprintf(b->user, sizeof b->user, "%s", r->user);
    snprintf(b->contact, sizeof b->contact, "%s", r->contact);
    re_snprintf(b->source, sizeof b->source, "%J", &r->source);
    snprintf(b->transport, sizeof b->transport, "%s", r->tp >= 0 && r->tp < SIP_TRANSPC ? s_transports[r->tp] : "udp");
    b->expires_ms = (int64_t) expires_s * 1000;
    s_tell(m, &msg);
}

/* The stored bindings, at start: each one the registrar has no live binding
 * for (a phone that registered since keeps its newer one) is taken with
 * what is left of its time. */
static void
s_bindings_add(gw_media_t *m, const gw_binding_t *b, size_t n)
{
    int64_t now = cc_mono_ms();
    int added = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i].expires_ms <= 0 || s_reg_find(m, b[i].user)) continue;
        int tp = SIP_TRANSP_NONE;
        for (int k = 0; k < SIP_TRANSPC; k++)
            if (strcmp(b[i].transport, s_transports[k]) == 0) tp = k;
        struct sa source;
        if (tp == SIP_TRANSP_NONE || sa_decode(&source, b[i].source, strlen(b[i].source)) != 0) {
            CC_WARN("stored registration unreadable; dropped", "user=%s transport=%s source=%s", b[i].user,
                    b[i].transport, b[i].source);
            continue;
        }
        reg_t *r = s_reg_slot(m, b[i].user, true);
        if (!r) {
            CC_WARN("stored registration dropped: registrar full", "user=%s", b[i].user);
            continue;
        }
        snprintf(r->contact, sizeof r->contact, "%s", b[i].contact);
        r->source = source;
        r->tp = (enum sip_transp) tp;
        r->expires_ms = now + b[i].expires_ms;
        added++;
    }
    CC_INFO("stored registrations loaded", "count=%d", added);
}

/* How long a binding asks to live: the Contact's expires parameter, else
 * the Expires header, else the maximum. A value that is not a number of
 * seconds counts as the maximum (RFC 3261 20.19), and so does one above it. */
static int
s_expires(const struct sip_msg *msg, const struct sip_addr *contact)
{
    struct pl v;
    const struct sip_hdr *eh = sip_msg_hdr(msg, SIP_HDR_EXPIRES);
    if (!contact || msg_param_decode(&contact->params, "expires", &v) != 0) {
        if (!eh) return REG_MAX_S;
        v = eh->val;
    }
    if (!v.l || v.l > 9) return REG_MAX_S;
    for (size_t i = 0; i < v.l; i++)
        if (v.p[i] < '0' || v.p[i] > '9') return REG_MAX_S;
    uint32_t e = pl_u32(&v);
    return e > REG_MAX_S ? REG_MAX_S : (int) e;
}

/* REGISTER with digest authentication against the stored HA1 values:
 * no or another realm's credentials get a challenge; a nonce we did not
 * give, that is too old, or whose count does not grow (a replay) gets a
 * fresh one with stale=true; a wrong password, or credentials for another
 * user than the To address's, 403; a malformed
 * Authorization or Contact 400. No Contact is a query (RFC 3261 10.3):
 * the binding is listed, not changed. "Contact: *" with Expires 0 removes
 * it. */
static void
s_register(gw_media_t *m, const struct sip_msg *msg, const char *src)
{
    const struct sip_hdr *auth = sip_msg_hdr(msg, SIP_HDR_AUTHORIZATION);
    struct pl scheme;
    if (!auth || re_regex(auth->val.p, auth->val.l, "[ \t]*[^ \t]+", NULL, &scheme) || pl_strcasecmp(&scheme, "Digest")) {
        s_challenge(m, msg, false);
        return;
    }
    struct httpauth_digest_resp resp;
    if (httpauth_digest_response_decode(&resp, &auth->val)) {
        s_register_refuse(m, msg, 400, "Malformed Authorization", "-", src);
        return;
    }
    char user[64];
    pl_strcpy(&resp.username, user, sizeof user);
    if (pl_strcmp(&resp.realm, GW_REALM)) {
        CC_WARN("REGISTER for another realm: challenged", "user=%s source=%s", user, src);
        s_challenge(m, msg, false);
        return;
    }
    nonce_t *nonce = s_nonce_find(m, &resp.nonce);
    if (!nonce) {
        s_challenge(m, msg, true);
        return;
    }
    const gw_user_t *u = NULL;
    for (size_t i = 0; i < m->nusers; i++)
        if (strcmp(m->users[i].user, user) == 0) u = &m->users[i];
    if (!u || httpauth_digest_response_auth(&resp, &msg->met, u->ha1) != 0) {
        s_register_refuse(m, msg, 403, "Bad Credentials", user, src);
        return;
    }
    /* RFC 3261 10.3: a user registers their own address of record only. */
    if (pl_strcmp(&msg->to.uri.user, user)) {
        s_register_refuse(m, msg, 403, "Not Allowed For This Address", user, src);
        return;
    }
    /* Without qop the nonce is good once; with it, each count once. */
    uint32_t nc = pl_isset(&resp.qop) ? pl_x32(&resp.nc) : 1;
    if (nc <= nonce->nc) {
        CC_WARN("REGISTER replayed: challenged", "user=%s source=%s nc=%u", user, src, nc);
        s_challenge(m, msg, true);
        return;
    }
    nonce->nc = nc;
    const struct sip_hdr *ch = sip_msg_hdr(msg, SIP_HDR_CONTACT);
    reg_t *r = s_reg_slot(m, user, false);
    if (!ch) {
        int64_t left = r ? (r->expires_ms - cc_mono_ms()) / 1000 : 0;
        if (left > 0)
            sip_treplyf(NULL, NULL, m->sip, msg, false, 200, "OK", "Contact: <%s>;expires=%d\r\nContent-Length: 0\r\n\r\n",
                        r->contact, (int) left);
        else
            sip_treplyf(NULL, NULL, m->sip, msg, false, 200, "OK", "Content-Length: 0\r\n\r\n");
        return;
    }
    struct sip_addr contact;
    bool wildcard = !pl_strcmp(&ch->val, "*");
    if (wildcard && s_expires(msg, NULL) != 0) {
        s_register_refuse(m, msg, 400, "Contact * Needs Expires 0", user, src);
        return;
    }
    if (!wildcard && sip_addr_decode(&contact, &ch->val)) {
        s_register_refuse(m, msg, 400, "Contact Invalid", user, src);
        return;
    }
    int expires = wildcard ? 0 : s_expires(msg, &contact);
    /* RFC 3261 10.3: too short a binding is refused with the shortest allowed. */
    if (expires > 0 && expires < m->o.min_expires_s) {
        CC_INFO("REGISTER interval too brief", "user=%s source=%s expires=%d min_expires=%d", user, src, expires,
                m->o.min_expires_s);
        sip_treplyf(NULL, NULL, m->sip, msg, false, 423, "Interval Too Brief", "Min-Expires: %d\r\nContent-Length: 0\r\n\r\n",
                    m->o.min_expires_s);
        return;
    }
    if (!r && expires > 0 && !(r = s_reg_slot(m, user, true))) {
        sip_treply(NULL, m->sip, msg, 503, "Registrar Full");
        return;
    }
    if (r) {
        if (!wildcard) pl_strcpy(&contact.auri, r->contact, sizeof r->contact);
        r->source = msg->src;
        r->tp = msg->tp;
        r->expires_ms = cc_mono_ms() + (int64_t) expires * 1000;
        s_tell_binding(m, r, expires);
    }
    if (wildcard)
        sip_treplyf(NULL, NULL, m->sip, msg, false, 200, "OK", "Content-Length: 0\r\n\r\n");
    else
        sip_treplyf(NULL, NULL, m->sip, msg, false, 200, "OK", "Contact: <%r>;expires=%d\r\nContent-Length: 0\r\n\r\n",
                    &contact.auri, expires);
    Cc__AgentRegistered ev2 = CC__AGENT_REGISTERED__INIT;
    ev2.agent_id = user;
    ev2.contact = r ? r->contact : "";
    ev2.expires_s = (uint32_t) expires;
    s_publish(m, "agent.registered", NULL, &ev2);
    CC_INFO("phone registered", "user=%s source=%s expires=%d", user, src, expires);
}

/* --------------------------------------------------------------- agent legs */

typedef struct { const char *call_id; bool agent_leg; } call_key_t;

static bool
s_call_is(struct le *le, void *arg)
{
    const gw_call_t *c = le->data;
    const call_key_t *k = arg;
    return !c->ended && c->agent_leg == k->agent_leg && strcmp(c->cdr.call_id, k->call_id) == 0;
}

/* The live call (or its agent leg) of call_id, NULL when none. */
static gw_call_t *
s_call_find(gw_media_t *m, const char *call_id, bool agent_leg)
{
    call_key_t k = { call_id, agent_leg };
    struct le *le = hash_lookup(m->calls_by_id, hash_joaat_str(call_id), s_call_is, &k);
    return le ? le->data : NULL;
}

static int
s_leg_answer(const struct sip_msg *msg, void *arg)
{
    gw_call_t *a = arg;
    int err = sdp_decode(a->sdp, msg->mb, false);
    if (err) return err;
    if (!s_negotiate(a)) return EPROTO;
    return 0;
}

static void
s_leg_progress(const struct sip_msg *msg, void *arg)
{
    gw_call_t *a = arg;
    if (msg->scode == 180 || msg->scode == 183) {
        Cc__CallRinging ev = CC__CALL_RINGING__INIT;
        ev.call_id = a->cdr.call_id;
        ev.agent_id = a->agent;
        s_publish(a->media, "call.ringing", a->cdr.call_id, &ev);
    }
}

static void
s_publish_answered(gw_call_t *c, const char *leg_id)
{
    Cc__CallAnswered ev = CC__CALL_ANSWERED__INIT;
    ev.call_id = c->cdr.call_id;
    ev.leg_id = (char *) leg_id;
    s_publish(c->media, "call.answered", c->cdr.call_id, &ev);
}

/* Relays media between a and b from now on; call.bridged says so. */
static void
s_bridge(gw_call_t *a, gw_call_t *b, const char *agent_id)
{
    a->peer = b;
    b->peer = a;
    a->bridged = b->bridged = true;
    Cc__CallBridged ev = CC__CALL_BRIDGED__INIT;
    ev.call_id = a->cdr.call_id;
    /* An agent's or a transfer's leg shares the call's id: no other call. */
    ev.other_call_id = strcmp(a->cdr.call_id, b->cdr.call_id) != 0 ? b->cdr.call_id : "";
    ev.agent_id = (char *) agent_id;
    s_publish(a->media, "call.bridged", a->cdr.call_id, &ev);
    CC_INFO("call bridged", "call_id=%s other_call_id=%s agent_id=%s codec=%s other_codec=%s", a->cdr.call_id,
            b->cdr.call_id, agent_id, a->cdr.codec, b->cdr.codec);
}

static gw_call_t *s_dial(gw_media_t *m, const char *call_id, const char *uri, const char *caller, const char *dialled,
                         int prefer_pt, int ring_ms);
static void s_on_ring_timeout(void *arg);

/* The far leg answered: an agent (acd hears it), a transfer's target (the
 * caller's media.transfer is done), or a callback's agent (the customer is
 * dialled now). */
static void
s_leg_estab(const struct sip_msg *msg, void *arg)
{
    gw_call_t *a = arg;
    gw_media_t *m = a->media;
    tmr_cancel(&a->ring_tmr);
    a->established = true;
    a->cdr.answered_us = cc_wall_us();
    s_publish_answered(a, a->originated ? "" : a->agent[0] ? a->agent : a->cdr.dialled);
    if (a->originated) {
        /* media.originate: the call is the caller's to drive now. */
        gw_clock_join(m->clock, &a->tx, cc_mono_us(), s_on_tx, a);
        if (a->op.kind == GW_MEDIA_ORIGINATE) s_op_done(a, "answered");
        gw_call_t *agent = a->peer;
        if (agent && agent->callback_number[0]) {
            /* A callback's customer: the waiting agent talks to them. */
            a->queued = true;   /* its end tells acd */
            s_bridge(a, agent, agent->agent);
            s_tell_call(m, GW_MSG_ANSWERED, a->cdr.call_id, agent->agent, NULL);
        }
        return;
    }
    if (a->callback_number[0]) {
        /* The agent first (a customer never answers into silence); they
         * hear a ring tone while the customer's phone rings. */
        if (!m->trunk_out[0]) {
            s_tell_call(m, GW_MSG_REJECTED, a->cdr.call_id, a->agent, "no_trunk");
            s_call_end(a, 503, "system", "no outbound trunk for the callback");
            return;
        }
        char uri[256];
        re_snprintf(uri, sizeof uri, "sip:%s@%s", a->callback_number, m->trunk_out);
        /* acd's offer time covers both phones ringing: the customer gets
         * what is left of it (at least 5 s). */
        int64_t left = a->offer_end_ms - cc_mono_ms() - 500;
        int ring = left < 5000 ? 5000 : left > m->o.dial_ring_ms ? m->o.dial_ring_ms : (int) left;
        gw_call_t *c = s_dial(m, a->cdr.call_id, uri, "callcenter", a->callback_number, a->pt, ring);
        if (!c) {
            s_tell_call(m, GW_MSG_CALLBACK_FAILED, a->cdr.call_id, a->agent, "unreachable");
            s_call_end(a, 503, "system", "customer unreachable");
            return;
        }
        c->originated = true;
        snprintf(c->agent, sizeof c->agent, "%s", a->agent);
        snprintf(c->cdr.leg, sizeof c->cdr.leg, "customer");
        c->peer = a;
        a->peer = c;
        a->music = a->prompt = s_prompt(m, "tone:425");
        gw_clock_join(m->clock, &a->tx, cc_mono_us(), s_on_tx, a);
        CC_INFO("callback: agent answered, dialling the customer", "call_id=%s agent_id=%s number=%s", a->cdr.call_id,
                a->agent, a->callback_number);
        return;
    }
    gw_call_t *c = a->peer;
    if (!c) return;
    s_bridge(c, a, a->agent);
    if (a->acd_offer) s_tell_call(m, GW_MSG_ANSWERED, c->cdr.call_id, a->agent, NULL);
    if (a->direct) s_op_done(c, "answered");
}

static void
s_on_ring_timeout(void *arg)
{
    gw_call_t *a = arg;
    s_leg_failed(a, "no_answer");
    s_call_end(a, 408, "system", "not answered in time");
}

/* Calls uri (INVITE with PCMU and PCMA, prefer_pt first) for call_id and
 * rings it for ring_ms. Returns the new leg (linked in the calls, counted),
 * or NULL when it could not be started (logged). */
static gw_call_t *
s_dial(gw_media_t *m, const char *call_id, const char *uri, const char *caller, const char *dialled, int prefer_pt,
       int ring_ms)
{
    gw_call_t *a = mem_zalloc(sizeof *a, s_call_destroy);
    if (!a) return NULL;
    a->media = m;
    a->outbound = true;
    a->pt = a->telev_pt = -1;
    tmr_init(&a->answer_tmr);
    tmr_init(&a->ring_tmr);
    tmr_init(&a->op_tmr);
    snprintf(a->cdr.call_id, sizeof a->cdr.call_id, "%s", call_id);
    snprintf(a->cdr.caller, sizeof a->cdr.caller, "%s", caller);
    snprintf(a->cdr.dialled, sizeof a->cdr.dialled, "%s", dialled);
    snprintf(a->cdr.leg, sizeof a->cdr.leg, "agent");
    snprintf(a->cdr.direction, sizeof a->cdr.direction, "outbound");
    snprintf(a->cdr.source, sizeof a->cdr.source, "%.63s", uri);
    a->cdr.started_us = cc_wall_us();
    list_append(&m->calls, &a->le, a);
    hash_append(m->calls_by_id, hash_joaat_str(a->cdr.call_id), &a->by_id, a);
    struct sa laddr;
    sa_set_str(&laddr, m->sip_host, 0);
    struct sa rtp_local;
    struct mbuf *desc = NULL;
    int err = rtp_listen(&a->rtp, IPPROTO_UDP, &laddr, (uint16_t) m->o.rtp_min, (uint16_t) m->o.rtp_max, true,
                         s_on_rtp, s_on_rtcp, a);
    if (!err) err = udp_local_get(rtp_sock(a->rtp), &rtp_local);
    if (!err) err = sdp_session_alloc(&a->sdp, &laddr);
    if (!err) err = sdp_media_add(&a->sdpm, a->sdp, "audio", sa_port(&rtp_local), "RTP/AVP");
    /* The other leg's codec first: no conversion when the phone takes it. */
    bool alaw = prefer_pt == 8;
    if (!err) err = sdp_format_add(NULL, a->sdpm, false, alaw ? "8" : "0", alaw ? "PCMA" : "PCMU", 8000, 1, NULL, NULL, NULL, false, NULL);
    if (!err) err = sdp_format_add(NULL, a->sdpm, false, alaw ? "0" : "8", alaw ? "PCMU" : "PCMA", 8000, 1, NULL, NULL, NULL, false, NULL);
    if (!err) err = sdp_format_add(NULL, a->sdpm, false, "101", "telephone-event", 8000, 1, NULL, NULL, NULL, false, "0-15");
    if (!err) err = telev_alloc(&a->telev, PTIME);
    if (!err) err = sdp_encode(&desc, a->sdp, true);
    char from[128];
    re_snprintf(from, sizeof from, "sip:%s@%s:%d", caller[0] ? caller : "callcenter", m->sip_host, m->o.sip_port);
    if (!err) err = sipsess_connect(&a->sess, m->sess_sock, uri, caller, from, "gateway", NULL, 0,
                                    "application/sdp", desc, NULL, NULL, false, s_on_offer, s_leg_answer,
                                    s_leg_progress, s_leg_estab, s_on_info, NULL, s_on_close, a,
                                    "X-Call-Id: %s\r\n", call_id);
    mem_deref(desc);
    if (err) {
        CC_ERROR("dialling failed", "call_id=%s uri=%s error=\"%s\"", call_id, uri, strerror(err));
        list_unlink(&a->le);
        mem_deref(a);
        return NULL;
    }
    atomic_fetch_add(&m->ncalls, 1);
    tmr_start(&a->ring_tmr, (uint64_t) (ring_ms > 0 ? ring_ms : 15000), s_on_ring_timeout, a);
    return a;
}

/* Calls the agent's registered phone for caller call c; for a callback (no
 * caller waiting), the customer is dialled once the agent answers. */
static void
s_offer(gw_media_t *m, const mq_req_t *q)
{
    gw_call_t *leg = s_call_find(m, q->call_id, true);
    if (leg && leg->acd_offer && strcmp(leg->agent, q->agent) == 0) {
        /* The same offer again (acd answering a retried request): it is ringing or answered already. */
        CC_DEBUG("offer repeated for the agent's leg in progress; ignored", "call_id=%s agent_id=%s", q->call_id, q->agent);
        return;
    }
    gw_call_t *c = s_call_find(m, q->call_id, false);
    bool callback = q->callback_number[0] && (!c || !c->cdr.answered_us);
    if (!callback && (!c || c->peer)) {
        CC_WARN("offer for a call that is gone or already ringing", "call_id=%s agent_id=%s", q->call_id, q->agent);
        s_tell_call(m, GW_MSG_REJECTED, q->call_id, q->agent, c ? "call_busy" : "call_gone");
        return;
    }
    if (callback && (c || s_call_find(m, q->call_id, true))) {
        CC_WARN("callback offer for a call still in progress", "call_id=%s agent_id=%s", q->call_id, q->agent);
        s_tell_call(m, GW_MSG_REJECTED, q->call_id, q->agent, "call_busy");
        return;
    }
    if (callback && !m->trunk_out[0]) {
        CC_WARN("callback offer refused: no outbound trunk (GATEWAY_TRUNK_OUT)", "call_id=%s agent_id=%s", q->call_id, q->agent);
        s_tell_call(m, GW_MSG_REJECTED, q->call_id, q->agent, "no_trunk");
        return;
    }
    reg_t *r = s_reg_find(m, q->extension);
    if (!r) {
        CC_WARN("agent phone not registered", "call_id=%s agent_id=%s extension=%s", q->call_id, q->agent, q->extension);
        s_tell_call(m, GW_MSG_REJECTED, q->call_id, q->agent, "unregistered");
        return;
    }
    gw_call_t *a = s_dial(m, q->call_id, r->contact, callback ? q->callback_number : c->cdr.caller, q->extension,
                          callback ? 0 : c->pt, q->ring_ms);
    if (!a) {
        s_tell_call(m, GW_MSG_REJECTED, q->call_id, q->agent, "unreachable");
        return;
    }
    a->agent_leg = true;
    a->acd_offer = true;
    snprintf(a->agent, sizeof a->agent, "%s", q->agent);
    re_snprintf(a->cdr.source, sizeof a->cdr.source, "%J", &r->source);
    if (callback) {
        snprintf(a->callback_number, sizeof a->callback_number, "%s", q->callback_number);
        a->offer_end_ms = cc_mono_ms() + (q->ring_ms > 0 ? q->ring_ms : 15000);
    } else {
        a->peer = c;
        c->peer = a;
    }
    CC_INFO(callback ? "ringing agent for a callback" : "ringing agent", "call_id=%s agent_id=%s contact=%s",
            q->call_id, q->agent, r->contact);
}

/* Requests outside an INVITE dialog: access control first, then OPTIONS;
 * everything else goes on to the session layer. */
static bool
s_on_request(const struct sip_msg *msg, void *arg)
{
    gw_media_t *m = arg;
    char src[64];
    re_snprintf(src, sizeof src, "%J", &msg->src);
    bool dialog = pl_isset(&msg->to.tag);
    if (!pl_strcmp(&msg->met, "OPTIONS")) {
        sip_treplyf(NULL, NULL, m->sip, msg, false, 200, "OK",
                    "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n");
        return true;
    }
    if (!pl_strcmp(&msg->met, "INVITE") && !dialog) {
        if (!s_trunk_allowed(m, &msg->src)) {
            CC_WARN("INVITE refused: unknown source", "source=%s", src);
            sip_treply(NULL, m->sip, msg, 403, "Forbidden Source");
            return true;
        }
        int count = s_rate_count(m, &msg->src);
        if (count > m->o.invites_per_s) {
            /* One line per source and second, not one per INVITE of a flood. */
            if (count == m->o.invites_per_s + 1)
                CC_WARN("INVITEs refused: rate limit", "source=%s limit_per_s=%d", src, m->o.invites_per_s);
            sip_treplyf(NULL, NULL, m->sip, msg, false, 503, "Rate Limited", "Retry-After: 1\r\nContent-Length: 0\r\n\r\n");
            return true;
        }
    }
    if (!pl_strcmp(&msg->met, "REGISTER")) {
        s_register(m, msg, src);
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------ thread */

/* media.originate: calls a number through the trunk, or an agent's
 * registered phone ("agent:ID"); done when answered (the reply carries the
 * new call's id) or when it will not be. */
static void
s_originate(gw_media_t *m, const gw_media_op_t *op)
{
    const char *d = op->destination;
    bool agent = strncmp(d, "agent:", 6) == 0;
    reg_t *r = agent ? s_reg_find(m, d + 6) : NULL;
    const char *refused = agent && !r ? "unregistered" : !agent && !m->trunk_out[0] ? "no_trunk"
                        : atomic_load(&m->ncalls) >= m->o.max_calls ? "over_capacity" : NULL;
    if (refused) {
        CC_WARN("originate refused", "destination=%s reason=%s", d, refused);
        s_tell_done(m, op->token, "", refused, NULL);
        return;
    }
    char uri[320], call_id[64];
    if (agent) snprintf(uri, sizeof uri, "%s", r->contact);
    else re_snprintf(uri, sizeof uri, "sip:%s@%s", d, m->trunk_out);
    s_random_id(call_id, sizeof call_id);
    const char *from = op->caller_id[0] ? op->caller_id : "callcenter";
    gw_call_t *c = s_dial(m, call_id, uri, from, agent ? d + 6 : d, 0, op->timeout_ms ? op->timeout_ms : m->o.dial_ring_ms);
    if (!c) {
        s_tell_done(m, op->token, "", "unreachable", NULL);
        return;
    }
    c->originated = true;
    c->op = *op;
    snprintf(c->cdr.leg, sizeof c->cdr.leg, "outbound");
    if (agent) snprintf(c->agent, sizeof c->agent, "%s", d + 6);
    Cc__CallStarted ev = CC__CALL_STARTED__INIT;
    ev.call_id = c->cdr.call_id;
    ev.caller = c->cdr.caller;
    ev.dialled = c->cdr.dialled;
    ev.trunk = agent ? "" : m->trunk_out;
    ev.direction = "outbound";
    ev.codec = "";
    s_publish(m, "call.started", c->cdr.call_id, &ev);
    CC_INFO("originating", "call_id=%s destination=%s uri=%s", call_id, d, uri);
}

/* media.transfer, blind: the caller leaves whoever they talk to (an agent
 * leg ends, a bridged call goes back to its music) and goes to a queue
 * ("queue:NAME": done once handed to acd), an agent's phone ("agent:ID") or
 * a number through the trunk (done when it answers, or busy, no_answer...:
 * the caller then hears the music again). */
static void
s_transfer(gw_media_t *m, gw_call_t *c, const gw_media_op_t *op)
{
    const char *d = op->destination;
    bool to_queue = strncmp(d, "queue:", 6) == 0, to_agent = strncmp(d, "agent:", 6) == 0;
    char uri[320] = "";
    reg_t *r = to_agent ? s_reg_find(m, d + 6) : NULL;
    const char *refused = to_agent && !r ? "unregistered" : !to_queue && !to_agent && !m->trunk_out[0] ? "no_trunk" : NULL;
    if (refused) {
        s_tell_done(m, op->token, c->cdr.call_id, refused, NULL);
        return;
    }
    if (r) snprintf(uri, sizeof uri, "%s", r->contact);
    else if (!to_queue) re_snprintf(uri, sizeof uri, "sip:%s@%s", d, m->trunk_out);
    s_op_done(c, "replaced");
    gw_call_t *p = c->peer;
    if (p) {
        c->peer = p->peer = NULL;
        c->bridged = p->bridged = false;
        c->api_bridge = p->api_bridge = false;
        if (p->agent_leg) s_call_end(p, 200, "system", "transferred");
        else s_back_to_music(p);
    }
    if (c->queued) {
        /* acd lets the agent go (wrap-up) before the call goes anywhere else. */
        s_tell_call(m, GW_MSG_ENDED, c->cdr.call_id, NULL, "transferred");
        c->queued = false;
    }
    c->moh = false;
    if (to_queue && !c->music) c->music = s_prompt(m, m->hold_music);   /* an originated call waits with music too */
    s_back_to_music(c);
    CC_INFO("transferring", "call_id=%s destination=%s", c->cdr.call_id, d);
    if (to_queue) {
        c->queued = true;
        snprintf(c->queue, sizeof c->queue, "%s", d + 6);
        s_tell_queue(m, c, GW_MSG_ENQUEUE);
        s_tell_done(m, op->token, c->cdr.call_id, "queued", NULL);
        return;
    }
    gw_call_t *a = s_dial(m, c->cdr.call_id, uri, c->cdr.caller, to_agent ? d + 6 : d, c->pt,
                          op->timeout_ms ? op->timeout_ms : m->o.dial_ring_ms);
    if (!a) {
        s_tell_done(m, op->token, c->cdr.call_id, "unreachable", NULL);
        return;
    }
    a->agent_leg = true;
    a->direct = true;
    snprintf(a->cdr.leg, sizeof a->cdr.leg, "transfer");
    if (to_agent) snprintf(a->agent, sizeof a->agent, "%s", d + 6);
    a->peer = c;
    c->peer = a;
    c->op = *op;   /* done when the target answers or will not */
}

/* media.answer, bridge, unbridge, hold: call control that answers at once.
 * Returns the result. */
static const char *
s_control(gw_media_t *m, gw_call_t *c, const gw_media_op_t *op)
{
    if (op->kind == GW_MEDIA_BRIDGE) {
        gw_call_t *o = s_call_find(m, op->other, false);
        if (!o || !o->cdr.answered_us) return "other_gone";
        if (o == c || c->peer || o->peer) return "conflict";
        s_op_done(c, "replaced");
        s_op_done(o, "replaced");
        c->api_bridge = o->api_bridge = true;
        c->moh = o->moh = false;
        s_bridge(c, o, "");
        return "done";
    }
    if (op->kind == GW_MEDIA_UNBRIDGE) {
        gw_call_t *p = c->peer;
        if (!p || !c->api_bridge) return p ? "conflict" : "not_bridged";
        c->peer = p->peer = NULL;
        c->bridged = p->bridged = false;
        c->api_bridge = p->api_bridge = false;
        s_back_to_music(c);
        s_back_to_music(p);
        CC_INFO("call unbridged", "call_id=%s other_call_id=%s", c->cdr.call_id, p->cdr.call_id);
        return "done";
    }
    /* Hold: the caller hears music and nothing is relayed either way;
     * unhold: the other party again, or the call's own music. */
    if (op->hold) {
        const gw_prompt_t *music = s_prompt(m, op->prompt[0] ? op->prompt : m->hold_music);
        if (!music) return "no_prompt";
        s_op_done(c, "replaced");
        c->moh = true;
        c->prompt = music;
        c->pos = 0;
    } else if (c->moh) {
        c->moh = false;
        s_back_to_music(c);
    }
    CC_INFO(op->hold ? "call held" : "call resumed", "call_id=%s", c->cdr.call_id);
    return "done";
}

/* Starts a media operation on a caller's call, ending the one before. */
static void
s_media_op(gw_media_t *m, const gw_media_op_t *op)
{
    if (op->kind == GW_MEDIA_ORIGINATE) {
        s_originate(m, op);
        return;
    }
    gw_call_t *c = s_call_find(m, op->call_id, false);
    if (c && op->kind == GW_MEDIA_ANSWER) {
        /* Ringing: answered now; answered already: nothing to do. */
        const char *result = c->cdr.answered_us || c->outbound ? "done" : s_answer_now(c) ? "hangup" : "done";
        s_tell_done(m, op->token, op->call_id, result, NULL);
        return;
    }
    if (c && op->kind == GW_MEDIA_HANGUP && !c->cdr.answered_us) {
        /* Still ringing: an originated call is cancelled, an inbound one refused. */
        const char *reason = op->reason[0] ? op->reason : "hung up by request";
        if (!c->outbound) sipsess_reject(c->sess, op->cause >= 300 ? (uint16_t) op->cause : 480, "Temporarily Unavailable",
                                         "Content-Length: 0\r\n\r\n");
        s_call_end(c, c->outbound ? 487 : op->cause >= 300 ? op->cause : 480, "system", reason);
        s_tell_done(m, op->token, op->call_id, "hangup", NULL);
        return;
    }
    if (!c || !c->cdr.answered_us) {
        s_tell_done(m, op->token, op->call_id, "gone", NULL);
        return;
    }
    if (op->kind == GW_MEDIA_TRANSFER) {
        s_transfer(m, c, op);
        return;
    }
    if (op->kind == GW_MEDIA_BRIDGE || op->kind == GW_MEDIA_UNBRIDGE || op->kind == GW_MEDIA_HOLD) {
        s_tell_done(m, op->token, op->call_id, s_control(m, c, op), NULL);
        return;
    }
    if (op->kind == GW_MEDIA_RECORD) {
        /* Recording runs beside the other operations: it answers at once. */
        const char *result = "done";
        if (op->record_cmd == GW_REC_START) {
            char path[600];
            snprintf(path, sizeof path, "%s/%s", m->recordings_dir, op->path);
            SF_INFO info = { .samplerate = 8000, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_PCM_16 };
            int fd;
            s_rec_close(c);
            if (c->cdr.nrecs == GW_MAX_RECORDINGS) {
                CC_WARN("recording refused: too many on this call", "call_id=%s max=%d", c->cdr.call_id, GW_MAX_RECORDINGS);
                result = "too_many";
            } else if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640)) < 0) {
                /* Never over an earlier recording: a CDR may name it. */
                if (errno == EEXIST) {
                    CC_WARN("recording refused: the file exists", "call_id=%s path=%s", c->cdr.call_id, path);
                    result = "exists";
                } else {
                    CC_ERROR("recording not started", "call_id=%s path=%s error=\"%s\"", c->cdr.call_id, path,
                             strerror(errno));
                    result = "no_file";
                }
            } else if (!(c->rec = sf_open_fd(fd, SFM_WRITE, &info, 1))) {
                CC_ERROR("recording not started", "call_id=%s path=%s error=\"%s\"", c->cdr.call_id, path, sf_strerror(NULL));
                close(fd);
                unlink(path);   /* empty: made just now */
                result = "no_file";
            } else {
                c->rec_frames = 0;
                c->rec_paused = false;
                c->rec_max_frames = (int64_t) op->max_ms * 8;
                snprintf(c->cdr.recording, sizeof c->cdr.recording, "%s", op->path);
                gw_recording_t *r = &c->cdr.recs[c->cdr.nrecs++];
                snprintf(r->path, sizeof r->path, "%s", op->path);
                r->started_us = cc_wall_us();
                r->ms = 0;
            }
        } else if (!c->rec) {
            result = "not_recording";
        } else if (op->record_cmd == GW_REC_PAUSE || op->record_cmd == GW_REC_RESUME) {
            c->rec_paused = op->record_cmd == GW_REC_PAUSE;
            CC_INFO(c->rec_paused ? "recording paused" : "recording resumed", "call_id=%s", c->cdr.call_id);
        } else {
            s_rec_close(c);
        }
        s_tell_done(m, op->token, op->call_id, result, NULL);
        return;
    }
    if (op->kind == GW_MEDIA_DTMF) {
        /* Beside the other operations: a collect or a prompt goes on. */
        s_dtmf_done(c, "replaced");
        c->dtmf = *op;
        c->dtmf_next = 0;
        c->dtmf_phase = DTMF_GAP;
        c->dtmf_left_ms = 0;
        CC_INFO("dtmf sending", "call_id=%s digits=%s method=%s", c->cdr.call_id, op->digits,
                c->telev_pt >= 0 ? "rfc4733" : "info");
        return;
    }
    if (op->prompt[0] && c->bridged && !c->moh) {
        /* The caller hears the other party, not prompts (a collect without
         * a prompt still gathers the digits). */
        s_tell_done(m, op->token, op->call_id, "bridged", NULL);
        return;
    }
    s_op_done(c, "replaced");
    if (op->kind == GW_MEDIA_HANGUP) {
        c->op = *op;
        s_call_end(c, op->cause ? op->cause : 200, "system", op->reason[0] ? op->reason : "hung up by request");
        return;
    }
    if (op->prompt[0]) {
        const gw_prompt_t *p = s_prompt(m, op->prompt);
        if (!p) {
            s_tell_done(m, op->token, op->call_id, "no_prompt", NULL);
            return;
        }
        c->prompt = p;
        c->pos = 0;
    }
    c->op = *op;
    if (op->kind == GW_MEDIA_PLAY) {
        if (op->loop) s_op_done(c, "done");   /* looping: done once it starts */
        else c->op_wait_played = true;
    } else {
        c->collected[0] = '\0';
        tmr_start(&c->op_tmr, (uint64_t) op->first_ms, s_on_op_timeout, c);
    }
}

static void
s_on_stop_timer(void *arg)
{
    (void) arg;
    re_cancel();
}

static void
s_on_mqueue(int id, void *data, void *arg)
{
    gw_media_t *m = arg;
    mq_req_t *q = data;
    if (id == MQ_OFFER) s_offer(m, q);
    if (id == MQ_HANGUP) {
        gw_call_t *c = s_call_find(m, q->call_id, false);
        const gw_prompt_t *fb = q->fallback && m->fallback[0] ? s_prompt(m, m->fallback) : NULL;
        if (c && fb && c->cdr.answered_us && !c->bridged) {
            /* The fallback message, once, then the release (s_on_tx ends it). */
            c->prompt = fb;
            c->pos = 0;
            c->announce = true;
            c->queued = false;
            snprintf(c->release_reason, sizeof c->release_reason, "%s", q->reason);
        } else if (c) {
            s_call_end(c, 200, "system", q->reason);
        }
    }
    if (id == MQ_WITHDRAW) {
        gw_call_t *a = s_call_find(m, q->call_id, true);
        if (a && a->acd_offer && !a->cdr.answered_us && strcmp(a->agent, q->agent) == 0) {
            CC_INFO("acd withdrew the offer; the agent's phone stops ringing", "call_id=%s agent_id=%s", q->call_id, q->agent);
            s_call_end(a, 487, "system", "acd withdrew the offer");
        }
    }
    if (id == MQ_DROP_AGENT) {
        gw_call_t *c = s_call_find(m, q->call_id, false);
        if (c && c->peer) {
            gw_call_t *a = c->peer;
            c->bridged = a->bridged = false;   /* the caller stays, back to its music */
            s_call_end(a, 200, "system", "acd did not accept the answer");
            if (c->originated)   /* a callback's customer: nobody left to talk to */
                s_call_end(c, 200, "system", "acd did not accept the answer");
        }
    }
    if (id == MQ_OP) s_media_op(m, &q->op);
    if (id == MQ_REQUEUE) {
        /* First the callers whose agent's phone rings (that agent is held
         * for them), then the waiting ones. */
        struct le *le;
        LIST_FOREACH(&m->calls, le) {
            gw_call_t *c = le->data;
            if (c->agent_leg || c->ended || !c->queued || c->bridged || !c->peer || !c->peer->acd_offer
                || !c->cdr.answered_us)
                continue;
            s_tell_queue(m, c, GW_MSG_REOFFER);
        }
        LIST_FOREACH(&m->calls, le) {
            gw_call_t *c = le->data;
            if (c->agent_leg || c->ended || !c->queued || c->bridged || c->peer || !c->cdr.answered_us) continue;
            s_tell_queue(m, c, GW_MSG_ENQUEUE);
        }
    }
    if (id == MQ_USERS) {
        free(m->users);
        m->users = q->users;
        m->nusers = q->nusers;
        q->users = NULL;
    }
    if (id == MQ_BINDINGS) s_bindings_add(m, q->bindings, q->nbindings);
    if (q) {
        free(q->users);
        free(q->bindings);
        free(q);
    }
    if (id != MQ_STOP) return;
    struct le *le = list_head(&m->calls);
    while (le) {
        gw_call_t *c = le->data;
        le = le->next;
        s_call_end(c, 200, "system", "gateway stopping");
    }
    /* Let the BYEs leave before the loop ends. */
    tmr_start(&m->stop_tmr, 300, s_on_stop_timer, m);
}

static void
s_signal_started(gw_media_t *m, int state)
{
    pthread_mutex_lock(&m->lock);
    m->started = state;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

static void *
s_thread(void *arg)
{
    gw_media_t *m = arg;
    cc_log_set_trace(NULL);
    if (m->o.media_priority > 0) {
        /* Frames leave on time even when the machine is busy; the kernel's
         * real-time throttling still leaves others 5% of each second. */
        struct sched_param sp = { .sched_priority = m->o.media_priority };
        int rc = pthread_setschedparam(pthread_self(), SCHED_RR, &sp);
        if (rc) CC_WARN("media thread keeps its normal priority (SCHED_RR needs CAP_SYS_NICE)",
                        "priority=%d error=\"%s\"", m->o.media_priority, strerror(rc));
        else CC_INFO("media thread runs SCHED_RR", "priority=%d", m->o.media_priority);
    }
    int err = libre_init();
    /* Two sockets a call (RTP, RTCP): let libre's poll set and the process
     * hold as many descriptors as the system allows. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (!err && getrlimit(RLIMIT_NOFILE, &rl) == 0)
        err = fd_setsize(rl.rlim_cur > 1000000 ? 1000000 : (int) rl.rlim_cur);
    struct sa laddr;
    if (!err) err = sa_set_str(&laddr, m->sip_host, (uint16_t) m->o.sip_port);
    if (!err && !(m->clock = gw_clock_new(PTIME))) err = EMFILE;
    if (!err) err = hash_alloc(&m->calls_by_id, CALL_HASH_SIZE);
    if (!err) err = mqueue_alloc(&m->mq, s_on_mqueue, m);
    /* Hash tables sized for the load: a UDP transaction lingers 32 s after
     * its end (RFC 3261 timers J and K), so 600 calls a second keep some
     * 40,000 of them; 32 buckets made every lookup walk a chain of 1,000. */
    if (!err) err = sip_alloc(&m->sip, NULL, SIP_HASH_SIZE, SIP_HASH_SIZE, 256, "callcenter-gateway", NULL, NULL);
    if (!err) err = sip_transp_add(m->sip, SIP_TRANSP_UDP, &laddr);
    if (!err) err = sip_transp_add(m->sip, SIP_TRANSP_TCP, &laddr);
    if (!err) err = sip_listen(&m->lsnr, m->sip, true, s_on_request, m);
    if (!err) err = sipsess_listen(&m->sess_sock, m->sip, SIP_HASH_SIZE, s_on_connect, m);
    if (err) {
        CC_ERROR("SIP listen failed", "address=%s:%d error=\"%s\"", m->sip_host, m->o.sip_port, strerror(err));
        goto out;
    }
    cc_bus_opts_t bo = { .service = m->service, .instance = m->instance, .pub_endpoint = m->bus_pub, .hwm = m->o.bus_hwm };
    m->bus = m->bus_pub && *m->bus_pub ? cc_bus_new(&bo) : NULL;
    m->cdr = zsock_new_push(NULL);
    zsock_set_sndhwm(m->cdr, 0);   /* CDRs are never dropped */
    zsock_connect(m->cdr, "%s", m->cdr_endpoint);
    tmr_init(&m->stop_tmr);
    CC_INFO("SIP listening", "udp=%s:%d tcp=%s:%d rtp=%d-%d", m->sip_host, m->o.sip_port, m->sip_host, m->o.sip_port,
            m->o.rtp_min, m->o.rtp_max);
    s_signal_started(m, 1);
    re_main(NULL);
out:
    if (err) s_signal_started(m, -1);
    tmr_cancel(&m->stop_tmr);
    m->sess_sock = mem_deref(m->sess_sock);
    m->lsnr = mem_deref(m->lsnr);
    if (m->sip) sip_close(m->sip, true);
    m->sip = mem_deref(m->sip);
    m->mq = mem_deref(m->mq);
    cc_bus_destroy(&m->bus);
    zsock_destroy(&m->cdr);
    for (int i = 0; i < m->nprompts; i++) gw_prompt_free(&m->prompts[i].prompt);
    free(m->users);
    m->users = NULL;
    gw_clock_destroy(&m->clock);
    /* A call freed later unlinks from nothing. */
    if (m->calls_by_id) hash_clear(m->calls_by_id);
    m->calls_by_id = mem_deref(m->calls_by_id);
    libre_close();
    return NULL;
}

static char *
s_dup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d) abort();
    return d;
}

/* Frees what gw_media_start allocated (the thread has ended). */
static void
s_media_free(gw_media_t *m)
{
    free(m->sip_host);
    free(m->prompts_dir);
    free(m->bus_pub);
    free(m->cdr_endpoint);
    free(m->service);
    free(m->instance);
    free(m->fallback);
    free(m->recordings_dir);
    free(m->tts_dir);
    free(m->trunk_out);
    free(m->hold_music);
    free(m->regs);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    free(m);
}

gw_media_t *
gw_media_start(const gw_media_opts_t *opts)
{
    gw_media_t *m = calloc(1, sizeof *m);
    if (!m) abort();
    m->o = *opts;
    m->sip_host = s_dup(opts->sip_host);
    m->prompts_dir = s_dup(opts->prompts_dir);
    m->bus_pub = s_dup(opts->bus_pub);
    m->cdr_endpoint = s_dup(opts->cdr_endpoint);
    m->service = s_dup(opts->service);
    m->instance = s_dup(opts->instance);
    m->fallback = s_dup(opts->fallback);
    m->recordings_dir = s_dup(opts->recordings_dir);
    m->tts_dir = s_dup(opts->tts_dir);
    m->trunk_out = s_dup(opts->trunk_out);
    m->hold_music = s_dup(opts->hold_music && *opts->hold_music ? opts->hold_music : "tone:425");
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    list_init(&m->calls);
    m->regs = calloc(MAX_REGS, sizeof *m->regs);
    if (!m->regs) abort();
    if (s_parse_trunks(m, opts->trunks) || s_parse_routes(m, opts->routes)) goto err;
    if (pthread_create(&m->thread, NULL, s_thread, m) != 0) abort();
    pthread_mutex_lock(&m->lock);
    while (m->started == 0) pthread_cond_wait(&m->cond, &m->lock);
    int started = m->started;
    pthread_mutex_unlock(&m->lock);
    if (started < 0) {
        pthread_join(m->thread, NULL);
        goto err;
    }
    return m;
err:
    s_media_free(m);
    return NULL;
}

void
gw_media_stop(gw_media_t **self_p)
{
    if (!self_p || !*self_p) return;
    gw_media_t *m = *self_p;
    mqueue_push(m->mq, MQ_STOP, NULL);
    pthread_join(m->thread, NULL);
    s_media_free(m);
    *self_p = NULL;
}

int gw_media_calls(gw_media_t *self) { return atomic_load(&self->ncalls); }

int64_t
gw_media_send_late_us(gw_media_t *self, double quantile, uint64_t *frames_p)
{
    uint64_t total = 0;
    for (int i = 0; i < LATE_BUCKETS; i++) total += atomic_load_explicit(&self->late_hist[i], memory_order_relaxed);
    if (frames_p) *frames_p = total;
    if (!total) return 0;
    uint64_t want = (uint64_t) ((double) total * quantile), seen = 0;
    for (int i = 0; i < LATE_BUCKETS; i++) {
        seen += atomic_load_explicit(&self->late_hist[i], memory_order_relaxed);
        if (seen >= want) return (int64_t) (i + 1) * 100;
    }
    return LATE_BUCKETS * 100;
}

int
gw_media_registrations(gw_media_t *self)
{
    int64_t now = cc_mono_ms();
    int live = 0;
    for (int i = 0; i < atomic_load(&self->nregs); i++)
        if (self->regs[i].expires_ms > now) live++;
    return live;
}

int64_t
gw_media_register_refused(gw_media_t *self)
{
    return atomic_load(&self->register_refused);
}

int64_t
gw_media_rtcp_received(gw_media_t *self)
{
    return atomic_load_explicit(&self->rtcp_received, memory_order_relaxed);
}

static int
s_push(gw_media_t *m, int id, mq_req_t *q)
{
    if (mqueue_push(m->mq, id, q) != 0) {
        free(q->users);
        free(q->bindings);
        free(q);
        return CC_EIO;
    }
    return 0;
}

static mq_req_t *
s_req(const char *call_id)
{
    mq_req_t *q = calloc(1, sizeof *q);
    if (!q) abort();
    snprintf(q->call_id, sizeof q->call_id, "%s", call_id ? call_id : "");
    return q;
}

int
gw_media_offer(gw_media_t *self, const char *call_id, const char *agent_id, const char *extension, int ring_ms,
               const char *callback_number)
{
    mq_req_t *q = s_req(call_id);
    snprintf(q->callback_number, sizeof q->callback_number, "%s", callback_number ? callback_number : "");
    snprintf(q->agent, sizeof q->agent, "%s", agent_id);
    snprintf(q->extension, sizeof q->extension, "%s", extension && *extension ? extension : agent_id);
    q->ring_ms = ring_ms;
    return s_push(self, MQ_OFFER, q);
}

int
gw_media_hangup(gw_media_t *self, const char *call_id, const char *reason, int fallback)
{
    mq_req_t *q = s_req(call_id);
    snprintf(q->reason, sizeof q->reason, "%s", reason);
    q->fallback = fallback;
    return s_push(self, MQ_HANGUP, q);
}

int
gw_media_withdraw(gw_media_t *self, const char *call_id, const char *agent)
{
    mq_req_t *q = s_req(call_id);
    snprintf(q->agent, sizeof q->agent, "%s", agent);
    return s_push(self, MQ_WITHDRAW, q);
}

int
gw_media_drop_agent(gw_media_t *self, const char *call_id)
{
    return s_push(self, MQ_DROP_AGENT, s_req(call_id));
}

int
gw_media_op(gw_media_t *self, const gw_media_op_t *op)
{
    mq_req_t *q = s_req(op->call_id);
    q->op = *op;
    return s_push(self, MQ_OP, q);
}

int
gw_media_requeue_all(gw_media_t *self)
{
    return s_push(self, MQ_REQUEUE, s_req(NULL));
}

int
gw_media_set_users(gw_media_t *self, gw_user_t *users, size_t n)
{
    mq_req_t *q = s_req(NULL);
    q->users = users;
    q->nusers = n;
    return s_push(self, MQ_USERS, q);
}

int
gw_media_set_bindings(gw_media_t *self, gw_binding_t *bindings, size_t n)
{
    mq_req_t *q = s_req(NULL);
    q->bindings = bindings;
    q->nbindings = n;
    return s_push(self, MQ_BINDINGS, q);
}
