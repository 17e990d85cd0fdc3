-- Outbound provisioning (#15): each organization's directory pushed on to downstream SCIM
-- applications ("provisioning targets").
--
-- A target: where (base_url), how to authenticate (auth_kind; auth: JSON of the parts that are not
-- secret; credentials: the secret, sealed — see secrets.rs, provisioning_credentials:<target id>),
-- the target's rules (profile), what is pushed (scope, mapping: JSON), what deprovisioning means,
-- its status, the deletion threshold, its own rate limit (JSON; NULL: the profile's), whether its first push (or the push after a change of scope
-- or mapping) is approved, the event-log cursor and a lease (a node pushes a target only while it
-- holds it), the next full reconciliation and the backoff after failures.
CREATE TABLE provisioning_targets (
    org_id              TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    base_url            TEXT NOT NULL,
    auth_kind           TEXT NOT NULL,
    auth                TEXT NOT NULL,
    credentials         TEXT NOT NULL,
    profile             TEXT NOT NULL,
    scope               TEXT NOT NULL,
    mapping             TEXT NOT NULL,
    deprovision         TEXT NOT NULL,
    status              TEXT NOT NULL,
    status_reason       TEXT,
    deletion_threshold  TEXT NOT NULL,
    rate_limit          TEXT,
    approved_us         INTEGER,
    cursor_seq          INTEGER NOT NULL,
    interval_s          INTEGER NOT NULL,
    next_full_us        INTEGER NOT NULL,
    failures            INTEGER NOT NULL DEFAULT 0,
    next_attempt_us     INTEGER NOT NULL DEFAULT 0,
    lease_owner         TEXT,
    lease_until_us      INTEGER,
    created_us          INTEGER NOT NULL,
    updated_us          INTEGER NOT NULL
);
CREATE UNIQUE INDEX provisioning_targets_name ON provisioning_targets (org_id, name);

-- The mapping table: (target, local object) -> remote id, with the attributes last sent and the
-- object's state (synced, pending, failed, deactivated, deleted), its last error and failed attempts.
CREATE TABLE provisioning_objects (
    target_id    TEXT NOT NULL REFERENCES provisioning_targets (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    local_id     TEXT NOT NULL,
    remote_id    TEXT,
    sent         TEXT,
    state        TEXT NOT NULL,
    error        TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    retry_at_us  INTEGER,
    updated_us   INTEGER NOT NULL,
    PRIMARY KEY (target_id, kind, local_id)
);
CREATE INDEX provisioning_objects_state ON provisioning_objects (target_id, state);
-- Failed objects are pushed again on their own at retry_at_us (a backoff that grows with the
-- attempts; NULL once synced, or after the last automatic attempt: then only a retry asked for).
CREATE INDEX provisioning_objects_retry ON provisioning_objects (target_id, retry_at_us) WHERE retry_at_us IS NOT NULL;

-- Runs of a target: event-driven syncs that pushed something, full reconciliations.
CREATE TABLE provisioning_runs (
    target_id    TEXT NOT NULL REFERENCES provisioning_targets (id) ON DELETE CASCADE,
    id           TEXT NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    started_us   INTEGER NOT NULL,
    finished_us  INTEGER,
    counts       TEXT NOT NULL,
    error        TEXT,
    PRIMARY KEY (target_id, id)
);
