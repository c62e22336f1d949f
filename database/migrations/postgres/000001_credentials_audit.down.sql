DROP TABLE sfb_audit;
DROP TABLE sfb_credential;
