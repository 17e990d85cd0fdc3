-- Directory connectors (#17): a connection either receives SCIM requests (`scim`, with tokens) or
-- reads a directory on a schedule (`google_workspace`, without tokens, with a row in
-- directory_sources).
ALTER TABLE scim_connections ADD COLUMN kind text NOT NULL DEFAULT 'scim';

-- What a directory connection reads and how, and the state of its synchronisation. `settings` is
-- JSON (customer, admin e-mail, scope, base URLs); `credentials` is the service account's key,
-- sealed (see secrets.rs: directory_credentials:<connection id>). A node runs a sync while it holds
-- the lease (lease_owner until lease_until_us); a run is due at next_run_us.
CREATE TABLE directory_sources (
    connection_id     text PRIMARY KEY REFERENCES scim_connections (id) ON DELETE CASCADE,
    provider          text NOT NULL,
    settings          text NOT NULL,
    credentials       text NOT NULL,
    interval_s        bigint NOT NULL,
    next_run_us       bigint NOT NULL,
    lease_owner       text,
    lease_until_us    bigint,
    running_since_us  bigint,
    progress          text,
    last_started_us   bigint,
    last_finished_us  bigint,
    last_status       text,
    last_error        text,
    last_counts       text,
    created_us        bigint NOT NULL,
    updated_us        bigint NOT NULL
);
CREATE INDEX directory_sources_due ON directory_sources (next_run_us);
