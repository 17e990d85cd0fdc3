-- Every table leads with its tenant (issue #16, docs/scaling.md): an e-mail lookup names its
-- connection, so the e-mail index leads with it (the index on resource_pk stays: the cascade from
-- resources and the rewrite of one resource's rows use it).
DROP INDEX resource_emails_value;
CREATE INDEX resource_emails_value ON resource_emails (connection_id, value_ci, resource_pk);

-- Provisioning's mapping table and run history carry their organization, which leads their keys
-- (they reached it only through their target before). SQLite cannot change a primary key in
-- place: the tables are rebuilt.
CREATE TABLE provisioning_objects_new (
    org_id       TEXT NOT NULL,
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
    PRIMARY KEY (org_id, target_id, kind, local_id)
);
INSERT INTO provisioning_objects_new (org_id, target_id, kind, local_id, remote_id, sent, state, error, attempts,
    retry_at_us, updated_us)
SELECT t.org_id, o.target_id, o.kind, o.local_id, o.remote_id, o.sent, o.state, o.error, o.attempts,
    o.retry_at_us, o.updated_us
FROM provisioning_objects o JOIN provisioning_targets t ON t.id = o.target_id;
DROP TABLE provisioning_objects;
ALTER TABLE provisioning_objects_new RENAME TO provisioning_objects;
CREATE INDEX provisioning_objects_state ON provisioning_objects (org_id, target_id, state);
-- Failed objects are pushed again on their own at retry_at_us (a backoff that grows with the
-- attempts; NULL once synced, or after the last automatic attempt: then only a retry asked for).
CREATE INDEX provisioning_objects_retry ON provisioning_objects (org_id, target_id, retry_at_us)
    WHERE retry_at_us IS NOT NULL;

CREATE TABLE provisioning_runs_new (
    org_id       TEXT NOT NULL,
    target_id    TEXT NOT NULL REFERENCES provisioning_targets (id) ON DELETE CASCADE,
    id           TEXT NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    started_us   INTEGER NOT NULL,
    finished_us  INTEGER,
    counts       TEXT NOT NULL,
    error        TEXT,
    PRIMARY KEY (org_id, target_id, id)
);
INSERT INTO provisioning_runs_new (org_id, target_id, id, kind, status, started_us, finished_us, counts, error)
SELECT t.org_id, r.target_id, r.id, r.kind, r.status, r.started_us, r.finished_us, r.counts, r.error
FROM provisioning_runs r JOIN provisioning_targets t ON t.id = r.target_id;
DROP TABLE provisioning_runs;
ALTER TABLE provisioning_runs_new RENAME TO provisioning_runs;

-- Delivery attempts carry their endpoint's organization ('' for a service-wide endpoint, whose
-- org_id is NULL: an empty key can lead an index and be compared with `=`), which leads the index
-- an endpoint's attempts are listed by. The (endpoint_id, event_id) index stays: it numbers an
-- event's attempts and serves the cascade from webhook_endpoints.
ALTER TABLE webhook_attempts ADD COLUMN org_id TEXT NOT NULL DEFAULT '';
UPDATE webhook_attempts SET org_id = COALESCE((SELECT e.org_id FROM webhook_endpoints e WHERE e.id = endpoint_id), '');
DROP INDEX webhook_attempts_endpoint;
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (org_id, endpoint_id, pk);
