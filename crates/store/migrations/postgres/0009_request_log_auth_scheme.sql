-- How each logged request presented its credentials, classified (`bearer`, `basic`, `none`, ...),
-- so that a refused request can be explained; never the credentials themselves.
ALTER TABLE request_log ADD COLUMN auth_scheme text;
