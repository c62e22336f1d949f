ALTER TABLE sfb_outbox DROP COLUMN sealed;
