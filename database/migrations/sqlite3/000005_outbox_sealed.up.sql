-- The message of an outbox entry sealed with the bridge's secret key
-- (AES-256-GCM, bound to its login and Matrix event), like the stored
-- credentials: text and html are then empty. Without a key, and in rows
-- written before this version, text and html hold the message and sealed
-- is NULL.
ALTER TABLE sfb_outbox ADD COLUMN sealed BLOB;
