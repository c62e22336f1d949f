-- Where SfB stands with an entry: sent_message_id is set once SfB took
-- the message (the POST was answered), sent_at_ms once it confirmed
-- delivery. After a crash, an entry with sent_at_ms is only reported; one
-- with only sent_message_id is looked up (was it delivered?) instead of
-- being sent again. This narrows the window in which a crash sends a
-- message twice to the time between SfB taking the message and the first
-- update.
ALTER TABLE sfb_outbox ADD COLUMN sent_message_id TEXT;
ALTER TABLE sfb_outbox ADD COLUMN sent_at_ms BIGINT;
