-- SQLite twin of ../postgres/000001_credentials_audit.up.sql; only the
-- column types of binary data and of the generated id differ.

-- Sign-in data for each bridge login. password and token are sealed by the
-- caller (internal/secret, AES-256-GCM bound to login_id); this table never
-- holds a plaintext secret. Times are Unix milliseconds, like mautrix's.
CREATE TABLE sfb_credential (
    login_id        TEXT PRIMARY KEY,
    sign_in_address TEXT NOT NULL,
    username        TEXT NOT NULL,
    password        BLOB,
    token           BLOB,
    token_expiry_ms BIGINT,
    updated_at_ms   BIGINT NOT NULL
);

-- What happened to logins and credentials, for the migration team and
-- security reviews. Rows outlive the credentials they talk about, so there
-- is no foreign key.
CREATE TABLE sfb_audit (
    -- INTEGER PRIMARY KEY is SQLite's rowid: assigned on insert.
    id          INTEGER PRIMARY KEY,
    login_id    TEXT NOT NULL,
    matrix_user TEXT NOT NULL,
    action      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    time_ms     BIGINT NOT NULL
);
CREATE INDEX sfb_audit_login_time_idx ON sfb_audit (login_id, time_ms DESC, id DESC);
CREATE INDEX sfb_audit_time_idx ON sfb_audit (time_ms DESC, id DESC);
