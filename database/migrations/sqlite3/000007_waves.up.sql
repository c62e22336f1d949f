-- SQLite twin of ../postgres/000007_waves.up.sql.

-- Migration modes and waves (docs/migration.md). Addresses are lower-case
-- SfB addresses without "sip:", like login IDs; times are Unix
-- milliseconds. Mode values are the bridge's three modes; NULL means "not
-- set here" (a person without an override, a wave without a mode).
CREATE TABLE sfb_wave (
    name             TEXT PRIMARY KEY,
    planned_start_ms BIGINT,
    mode             TEXT CHECK (mode IN ('sfb_only', 'coexistence', 'matrix_only')),
    created_at_ms    BIGINT NOT NULL
);

CREATE TABLE sfb_person (
    address       TEXT PRIMARY KEY,
    matrix_user   TEXT NOT NULL UNIQUE,
    wave          TEXT REFERENCES sfb_wave (name),
    mode          TEXT CHECK (mode IN ('sfb_only', 'coexistence', 'matrix_only')),
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX sfb_person_wave_idx ON sfb_person (wave);

-- One row: the mode of people in no wave and without an override, and a
-- counter every change of modes or waves increments in its transaction,
-- so that every bridge process (a standby too) notices a change by reading
-- one number.
CREATE TABLE sfb_migration_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    default_mode TEXT NOT NULL CHECK (default_mode IN ('sfb_only', 'coexistence', 'matrix_only')),
    generation   BIGINT NOT NULL
);
INSERT INTO sfb_migration_state (id, default_mode, generation) VALUES (1, 'sfb_only', 0);

-- Who did an admin action (a Matrix user, or the provisioning secret) and
-- from where (an address, a management room).
ALTER TABLE sfb_audit ADD COLUMN actor TEXT NOT NULL DEFAULT '';
ALTER TABLE sfb_audit ADD COLUMN origin TEXT NOT NULL DEFAULT '';
