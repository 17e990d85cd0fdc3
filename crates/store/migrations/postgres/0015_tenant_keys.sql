-- Every table leads with its tenant (issue #16, docs/scaling.md): an e-mail lookup names its
-- connection, so the e-mail index leads with it (the index on resource_pk stays: the cascade from
-- resources and the rewrite of one resource's rows use it).
DROP INDEX resource_emails_value;
CREATE INDEX resource_emails_value ON resource_emails (connection_id, value_ci, resource_pk);

-- Provisioning's mapping table and run history carry their organization, which leads their keys
-- (they reached it only through their target before).
ALTER TABLE provisioning_objects ADD COLUMN org_id text;
UPDATE provisioning_objects o SET org_id = t.org_id FROM provisioning_targets t WHERE t.id = o.target_id;
ALTER TABLE provisioning_objects ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE provisioning_objects DROP CONSTRAINT provisioning_objects_pkey;
ALTER TABLE provisioning_objects ADD PRIMARY KEY (org_id, target_id, kind, local_id);
DROP INDEX provisioning_objects_state;
CREATE INDEX provisioning_objects_state ON provisioning_objects (org_id, target_id, state);
DROP INDEX provisioning_objects_retry;
-- Failed objects are pushed again on their own at retry_at_us (a backoff that grows with the
-- attempts; NULL once synced, or after the last automatic attempt: then only a retry asked for).
CREATE INDEX provisioning_objects_retry ON provisioning_objects (org_id, target_id, retry_at_us)
    WHERE retry_at_us IS NOT NULL;

ALTER TABLE provisioning_runs ADD COLUMN org_id text;
UPDATE provisioning_runs r SET org_id = t.org_id FROM provisioning_targets t WHERE t.id = r.target_id;
ALTER TABLE provisioning_runs ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE provisioning_runs DROP CONSTRAINT provisioning_runs_pkey;
ALTER TABLE provisioning_runs ADD PRIMARY KEY (org_id, target_id, id);

-- Delivery attempts carry their endpoint's organization ('' for a service-wide endpoint, whose
-- org_id is NULL: an empty key can lead an index and be compared with `=`), which leads the index
-- an endpoint's attempts are listed by. The (endpoint_id, event_id) index stays: it numbers an
-- event's attempts and serves the cascade from webhook_endpoints.
ALTER TABLE webhook_attempts ADD COLUMN org_id TEXT NOT NULL DEFAULT '';
UPDATE webhook_attempts SET org_id = COALESCE((SELECT e.org_id FROM webhook_endpoints e WHERE e.id = endpoint_id), '');
DROP INDEX webhook_attempts_endpoint;
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (org_id, endpoint_id, pk);
