DROP TABLE sfb_group_seen;
DROP TABLE sfb_group_participant;
DROP TABLE sfb_group;
