-- acd: agents' sessions, kept durable so that the live agent state in Redis
-- can be rebuilt when Redis loses its data. One row per logged-in agent
-- with what it asked for last: ready, or not_ready with a reason (the
-- routine moves of a call, reserved / on_call / wrap_up, are live only).
CREATE TABLE acd.sessions (
    agent_id   text PRIMARY KEY CHECK (agent_id ~ '^[^,:[:space:]]{1,128}$'),
    extension  text NOT NULL DEFAULT '',
    skills     text NOT NULL DEFAULT '',                -- "sales:5,english:2"
    queues     text NOT NULL DEFAULT '',                -- "sales,support"
    state      text NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'not_ready')),
    reason     text NOT NULL DEFAULT '',
    since      timestamptz NOT NULL DEFAULT now()
);
