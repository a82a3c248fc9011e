-- acd: flagged callers' queue, music on hold, position announcements.
ALTER TABLE acd.queues
    ADD COLUMN blacklist_queue text NOT NULL DEFAULT '',
    ADD COLUMN music           text NOT NULL DEFAULT 'default',
    ADD COLUMN announce_ms     integer NOT NULL DEFAULT 0 CHECK (announce_ms = 0 OR announce_ms >= 1000);
