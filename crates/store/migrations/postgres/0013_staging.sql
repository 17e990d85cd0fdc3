-- Staging connections (issue #19, `crate::staging`).

-- When the connection was put into staging; NULL: live. While it is set, the connection's user and
-- group events are not written to the log (so neither the Events API nor webhooks see them), and
-- the directory and the access check leave its users out unless asked.
ALTER TABLE scim_connections ADD COLUMN staged_us bigint;

-- The accounts the application already has for the connection's organization, uploaded to be
-- matched against what the identity provider pushes (one upload per connection; JSON array).
CREATE TABLE match_reports (
    connection_id  text COLLATE "C" PRIMARY KEY REFERENCES scim_connections (id) ON DELETE CASCADE,
    accounts       jsonb NOT NULL,
    account_count  integer NOT NULL,
    uploaded_us    bigint NOT NULL
);
