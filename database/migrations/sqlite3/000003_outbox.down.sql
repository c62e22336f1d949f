DROP TABLE sfb_outbox;
