-- The bridge bot's messages to people whose wave started
-- (docs/migration.md, "Announcements"): one row per person and wave, so
-- that a restart sends nothing twice and the team sees who was told and
-- who signed in. sent is how many messages went out (the announcement,
-- then reminders); pending is the number of a message being sent (0:
-- none), sent again with the same transaction ID after a crash. Times are
-- Unix milliseconds, 0 for "not yet".
CREATE TABLE sfb_announcement (
    address         TEXT NOT NULL,
    wave            TEXT NOT NULL,
    matrix_user     TEXT NOT NULL,
    room_id         TEXT NOT NULL DEFAULT '',
    sent            INTEGER NOT NULL DEFAULT 0,
    pending         INTEGER NOT NULL DEFAULT 0,
    first_sent_ms   BIGINT NOT NULL DEFAULT 0,
    last_sent_ms    BIGINT NOT NULL DEFAULT 0,
    signed_in_ms    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (address, wave)
);
