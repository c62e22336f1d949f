DROP TABLE sfb_resume_state;
