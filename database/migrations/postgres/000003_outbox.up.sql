-- Matrix messages accepted by the bridge and not yet settled with SfB:
-- the connector writes a row before it acknowledges the Matrix event and
-- deletes it once SfB confirmed or refused delivery and the outcome was
-- reported in the room. Rows left by a crash are sent after the restart
-- (at least once: a crash between SfB's confirmation and the delete sends
-- that message again). Rows of one login and peer are sent in id order.
CREATE TABLE sfb_outbox (
    id            BIGSERIAL PRIMARY KEY,
    login_id      TEXT NOT NULL,
    peer          TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    sender_mxid   TEXT NOT NULL,
    msg_type      TEXT NOT NULL,
    txn_id        TEXT NOT NULL,
    text          TEXT NOT NULL,
    html          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    -- Synapse may push the same event again after a bridge restart.
    UNIQUE (login_id, event_id)
);
CREATE INDEX sfb_outbox_login_peer_idx ON sfb_outbox (login_id, peer, id);
