-- An entry is marked sent as soon as SfB confirmed delivery, before the
-- outcome is reported in the room: after a crash, a marked entry is only
-- reported, not sent again. The mark narrows the window in which a crash
-- sends a message twice to the time between SfB accepting the message
-- and this update.
ALTER TABLE sfb_outbox ADD COLUMN sent_message_id TEXT;
ALTER TABLE sfb_outbox ADD COLUMN sent_at_ms BIGINT;
