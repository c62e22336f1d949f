-- Multi-party conversations (docs/groups.md).
--
-- sfb_outbox keeps its shape: an entry for a multi-party conversation has
-- peer = 'group:' followed by the thread ID, which no SIP address can be,
-- so existing rows and the (login_id, peer, id) lanes stay as they are.

-- A multi-party conversation as the bridge continues it: its subject and
-- who is in it, so that a conference that ended is started again under
-- the same thread with the same people.
CREATE TABLE sfb_group (
    thread_id     TEXT PRIMARY KEY,
    subject       TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE TABLE sfb_group_participant (
    thread_id TEXT NOT NULL,
    uri       TEXT NOT NULL,
    PRIMARY KEY (thread_id, uri)
);

-- The group messages each login's session delivered, and the bridged
-- message each one was matched with. UCWA gives every endpoint its own
-- message IDs, so the copies that several logins receive of one message
-- are matched by conversation, sender, text and time (see
-- bridge/groupdedup.go); a login matches each bridged message at most
-- once, so a real repeat is bridged again.
CREATE TABLE sfb_group_seen (
    login_id     TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    thread_id    TEXT NOT NULL,
    canonical_id TEXT NOT NULL,
    sender       TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    sent_at_ms   BIGINT NOT NULL,
    -- when the row was written; old rows are pruned by it
    seen_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (login_id, message_id)
);
CREATE INDEX sfb_group_seen_match_idx ON sfb_group_seen (thread_id, sender, fingerprint, sent_at_ms);
CREATE INDEX sfb_group_seen_claim_idx ON sfb_group_seen (login_id, thread_id, canonical_id);
CREATE INDEX sfb_group_seen_age_idx ON sfb_group_seen (seen_at_ms);
