DROP TABLE sfb_announcement;
