ALTER TABLE sfb_outbox DROP COLUMN sent_at_ms;
ALTER TABLE sfb_outbox DROP COLUMN sent_message_id;
