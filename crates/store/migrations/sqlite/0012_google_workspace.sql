-- Directory connectors (#17): a connection either receives SCIM requests (`scim`, with tokens) or
-- reads a directory on a schedule (`google_workspace`, without tokens, with a row in
-- directory_sources).
ALTER TABLE scim_connections ADD COLUMN kind TEXT NOT NULL DEFAULT 'scim';

-- What a directory connection reads and how, and the state of its synchronisation. `settings` is
-- JSON (customer, admin e-mail, scope, base URLs); `credentials` is the service account's key,
-- sealed (see secrets.rs: directory_credentials:<connection id>). A node runs a sync while it holds
-- the lease (lease_owner until lease_until_us); a run is due at next_run_us.
CREATE TABLE directory_sources (
    connection_id     TEXT PRIMARY KEY REFERENCES scim_connections (id) ON DELETE CASCADE,
    provider          TEXT NOT NULL,
    settings          TEXT NOT NULL,
    credentials       TEXT NOT NULL,
    interval_s        INTEGER NOT NULL,
    next_run_us       INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_until_us    INTEGER,
    running_since_us  INTEGER,
    progress          TEXT,
    last_started_us   INTEGER,
    last_finished_us  INTEGER,
    last_status       TEXT,
    last_error        TEXT,
    last_counts       TEXT,
    created_us        INTEGER NOT NULL,
    updated_us        INTEGER NOT NULL
);
CREATE INDEX directory_sources_due ON directory_sources (next_run_us);
