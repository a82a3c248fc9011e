-- Every recording of a call leg, in the order they were started (the CDR's
-- recording column keeps naming the last one).
CREATE TABLE telephony.cdr_recording (
    id          bigserial PRIMARY KEY,
    cdr_id      bigint NOT NULL REFERENCES telephony.cdr (id) ON DELETE CASCADE,
    call_id     text NOT NULL,
    seq         integer NOT NULL CHECK (seq >= 1),
    path        text NOT NULL,                 -- under GATEWAY_RECORDINGS_DIR
    started_at  timestamptz NOT NULL,
    duration_ms bigint NOT NULL CHECK (duration_ms >= 0),   -- audio in the file: paused parts are not in it
    UNIQUE (cdr_id, seq)
);
CREATE INDEX cdr_recording_call_id ON telephony.cdr_recording (call_id);
