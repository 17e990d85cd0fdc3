-- Two indexes of the event log that every event written paid for and no read needs:
-- events_org_seq (0004_webhooks.sql) is the same index as events_org (org_id, seq) of
-- 0003_events.sql; events_resource (connection_id, resource_id) of 0001_init.sql served only the
-- check whether a list cursor names a resource that was erased, which events_resource_id
-- (resource_id, seq) serves as well (a resource's id is unique).
DROP INDEX events_org_seq;
DROP INDEX events_resource;
