-- acd: overflow, maximum wait, empty-queue rules, business hours, holidays.
ALTER TABLE acd.queues
    ADD COLUMN overflow_queue  text NOT NULL DEFAULT '',
    ADD COLUMN overflow_after_ms integer NOT NULL DEFAULT 0 CHECK (overflow_after_ms >= 0),
    ADD COLUMN max_wait_ms     integer NOT NULL DEFAULT 0 CHECK (max_wait_ms >= 0),
    ADD COLUMN max_wait_action text NOT NULL DEFAULT 'leave' CHECK (max_wait_action IN ('leave', 'overflow')),
    ADD COLUMN join_empty      boolean NOT NULL DEFAULT true,
    ADD COLUMN leave_when_empty boolean NOT NULL DEFAULT false,
    ADD COLUMN closed_action   text NOT NULL DEFAULT 'reject' CHECK (closed_action ~ '^(reject|overflow:[a-z0-9_-]+)$'),
    ADD COLUMN timezone        text NOT NULL DEFAULT 'UTC',
    ADD COLUMN callback_max_attempts integer NOT NULL DEFAULT 3 CHECK (callback_max_attempts BETWEEN 1 AND 10),
    ADD COLUMN callback_retry_ms integer NOT NULL DEFAULT 300000 CHECK (callback_retry_ms >= 1000),
    ADD COLUMN callback_expire_ms integer NOT NULL DEFAULT 14400000 CHECK (callback_expire_ms >= 60000);

-- Opening hours per weekday (0 = Sunday, as extract(dow)); a queue without
-- rows is always open.
CREATE TABLE acd.queue_hours (
    queue  text NOT NULL REFERENCES acd.queues (name) ON DELETE CASCADE,
    dow    smallint NOT NULL CHECK (dow BETWEEN 0 AND 6),
    opens  time NOT NULL,
    closes time NOT NULL CHECK (closes > opens),
    PRIMARY KEY (queue, dow, opens)
);

-- Days closed: for one queue, or for all (queue NULL).
CREATE TABLE acd.holidays (
    queue text REFERENCES acd.queues (name) ON DELETE CASCADE,
    day   date NOT NULL,
    name  text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX holidays_queue_day ON acd.holidays (coalesce(queue, ''), day);

-- Whether queue q is open at time at, in the queue's own time zone.
CREATE FUNCTION acd.is_open(q text, at timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
    WITH here AS (
        SELECT at AT TIME ZONE coalesce((SELECT timezone FROM acd.queues WHERE name = q), 'UTC') AS t
    )
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM acd.holidays h, here
                     WHERE (h.queue IS NULL OR h.queue = q) AND h.day = here.t::date) THEN false
        WHEN NOT EXISTS (SELECT 1 FROM acd.queue_hours WHERE queue = q) THEN true
        ELSE EXISTS (SELECT 1 FROM acd.queue_hours hr, here
                     WHERE hr.queue = q AND hr.dow = extract(dow FROM here.t)
                       AND here.t::time >= hr.opens AND here.t::time < hr.closes)
    END
$$;
