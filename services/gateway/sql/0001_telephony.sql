-- telephony: call detail records, one row per leg.
CREATE SCHEMA IF NOT EXISTS telephony;

CREATE TABLE telephony.cdr (
    id            bigserial PRIMARY KEY,
    call_id       text NOT NULL,
    leg           text NOT NULL DEFAULT 'caller',      -- caller | agent | outbound
    sip_call_id   text NOT NULL,
    direction     text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    caller        text NOT NULL,
    dialled       text NOT NULL,
    trunk         text NOT NULL DEFAULT '',
    source        text NOT NULL,                        -- ip:port the call came from
    codec         text NOT NULL DEFAULT '',
    started_at    timestamptz NOT NULL,
    answered_at   timestamptz,
    ended_at      timestamptz NOT NULL,
    sip_cause     integer NOT NULL,
    hangup_by     text NOT NULL,                        -- caller | callee | system
    reason        text NOT NULL DEFAULT '',
    rtp_sent      bigint NOT NULL DEFAULT 0,
    rtp_received  bigint NOT NULL DEFAULT 0,
    dtmf          text NOT NULL DEFAULT '',
    recording     text NOT NULL DEFAULT '',
    instance      text NOT NULL
);
CREATE INDEX cdr_call_id ON telephony.cdr (call_id);
CREATE INDEX cdr_started ON telephony.cdr (started_at);
