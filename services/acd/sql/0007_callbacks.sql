-- acd: callbacks kept durably. A callback's caller has hung up and nobody
-- but acd holds the request, so it is kept here from its request until it
-- is answered or leaves (failed, expired, cancelled), and put back in its
-- place (its rank) when Redis loses its data. A callback done stays as a
-- marker (done) until it expires (a day at least), so that a late write
-- (another acd's, a retried request's) cannot bring it back; expired rows
-- are deleted at each reload of the queues.
CREATE TABLE acd.callbacks (
    call_id     text PRIMARY KEY,
    queue       text NOT NULL,
    number      text NOT NULL,
    prio        integer NOT NULL DEFAULT 0,
    rank        bigint NOT NULL,             -- its place: priority, then arrival (ms)
    enq_ms      bigint NOT NULL,             -- when the caller arrived (ms since 1970)
    expires_ms  bigint NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,  -- calls to the customer not answered
    hold_until_ms bigint NOT NULL DEFAULT 0, -- not tried again before
    customer    text NOT NULL DEFAULT '',
    caller      text NOT NULL DEFAULT '',
    skills      text NOT NULL DEFAULT '',
    done        boolean NOT NULL DEFAULT false,
    requested   timestamptz NOT NULL DEFAULT now()
);
