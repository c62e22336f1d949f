ALTER TABLE sfb_audit DROP COLUMN origin;
ALTER TABLE sfb_audit DROP COLUMN actor;
DROP TABLE sfb_migration_state;
DROP TABLE sfb_person;
DROP TABLE sfb_wave;
