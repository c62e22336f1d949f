-- Where each login's SfB session continues after a bridge restart: the
-- transport's opaque resume state (for UCWA the application and the event
-- channel position, as JSON). Not secret: its URLs only work with the
-- token, which sfb_credential keeps sealed. A stale row only makes the
-- server deliver again what the bridge already bridged (deduplicated by
-- message ID); the bridge never writes one ahead of what reached Matrix.
CREATE TABLE sfb_resume_state (
    login_id      TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
