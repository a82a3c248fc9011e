-- acd: when a kept callback entered its queue (after an overflow, later than
-- its caller's arrival): the queue's widen rules count the wait from then,
-- after a restore too. 0: at enq_ms.
ALTER TABLE acd.callbacks ADD COLUMN qenq_ms bigint NOT NULL DEFAULT 0;
