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
    org_id              text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id                  text PRIMARY KEY,
    name                text NOT NULL,
    base_url            text NOT NULL,
    auth_kind           text NOT NULL,
    auth                text NOT NULL,
    credentials         text NOT NULL,
    profile             text NOT NULL,
    scope               text NOT NULL,
    mapping             text NOT NULL,
    deprovision         text NOT NULL,
    status              text NOT NULL,
    status_reason       text,
    deletion_threshold  text NOT NULL,
    rate_limit          text,
    approved_us         bigint,
    cursor_seq          bigint NOT NULL,
    interval_s          bigint NOT NULL,
    next_full_us        bigint NOT NULL,
    failures            bigint NOT NULL DEFAULT 0,
    next_attempt_us     bigint NOT NULL DEFAULT 0,
    lease_owner         text,
    lease_until_us      bigint,
    created_us          bigint NOT NULL,
    updated_us          bigint NOT NULL
);
CREATE UNIQUE INDEX provisioning_targets_name ON provisioning_targets (org_id, name);

-- The mapping table: (target, local object) -> remote id, with the attributes last sent and the
-- object's state (synced, pending, failed, deactivated, deleted), its last error and failed attempts.
CREATE TABLE provisioning_objects (
    target_id    text NOT NULL REFERENCES provisioning_targets (id) ON DELETE CASCADE,
    kind         text NOT NULL,
    local_id     text NOT NULL,
    remote_id    text,
    sent         text,
    state        text NOT NULL,
    error        text,
    attempts     bigint NOT NULL DEFAULT 0,
    retry_at_us  bigint,
    updated_us   bigint NOT NULL,
    PRIMARY KEY (target_id, kind, local_id)
);
CREATE INDEX provisioning_objects_state ON provisioning_objects (target_id, state);
-- Failed objects are pushed again on their own at retry_at_us (a backoff that grows with the
-- attempts; NULL once synced, or after the last automatic attempt: then only a retry asked for).
CREATE INDEX provisioning_objects_retry ON provisioning_objects (target_id, retry_at_us) WHERE retry_at_us IS NOT NULL;

-- Runs of a target: event-driven syncs that pushed something, full reconciliations.
CREATE TABLE provisioning_runs (
    target_id    text NOT NULL REFERENCES provisioning_targets (id) ON DELETE CASCADE,
    id           text NOT NULL,
    kind         text NOT NULL,
    status       text NOT NULL,
    started_us   bigint NOT NULL,
    finished_us  bigint,
    counts       text NOT NULL,
    error        text,
    PRIMARY KEY (target_id, id)
);
