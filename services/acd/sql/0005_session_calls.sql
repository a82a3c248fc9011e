-- acd: an agent's session also names the call the agent is on, so that an
-- agent on a call when Redis lost its data comes back on that call (the
-- gateway still holds it) and goes through wrap-up when it ends.
ALTER TABLE acd.sessions DROP CONSTRAINT sessions_state_check;
ALTER TABLE acd.sessions ADD CONSTRAINT sessions_state_check CHECK (state IN ('ready', 'not_ready', 'on_call'));
ALTER TABLE acd.sessions
    ADD COLUMN call_id    text NOT NULL DEFAULT '',
    ADD COLUMN call_queue text NOT NULL DEFAULT '';
