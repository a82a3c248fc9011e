-- acd: the hours in which a queue calls its customers back. A callback
-- keeps its place in line at any hour, but is offered to an agent (and the
-- customer dialled) only inside them.
--
-- Hours per weekday (0 = Sunday, as extract(dow)), in the queue's time
-- zone; a queue without rows calls back whenever it is open (its business
-- hours). Holidays (acd.holidays) are days without callbacks either way.
CREATE TABLE acd.callback_hours (
    queue  text NOT NULL REFERENCES acd.queues (name) ON DELETE CASCADE,
    dow    smallint NOT NULL CHECK (dow BETWEEN 0 AND 6),
    opens  time NOT NULL,
    closes time NOT NULL CHECK (closes > opens),
    PRIMARY KEY (queue, dow, opens)
);

-- Whether queue q may call a customer back at time at.
CREATE FUNCTION acd.may_call_back(q text, at timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
    WITH here AS (
        SELECT at AT TIME ZONE coalesce((SELECT timezone FROM acd.queues WHERE name = q), 'UTC') AS t
    )
    SELECT CASE
        WHEN NOT EXISTS (SELECT 1 FROM acd.callback_hours WHERE queue = q) THEN acd.is_open(q, at)
        WHEN EXISTS (SELECT 1 FROM acd.holidays h, here
                     WHERE (h.queue IS NULL OR h.queue = q) AND h.day = here.t::date) THEN false
        ELSE EXISTS (SELECT 1 FROM acd.callback_hours hr, here
                     WHERE hr.queue = q AND hr.dow = extract(dow FROM here.t)
                       AND here.t::time >= hr.opens AND here.t::time < hr.closes)
    END
$$;
