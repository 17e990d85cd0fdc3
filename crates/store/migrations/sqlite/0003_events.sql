-- Events with actors, the Events API's indexes, and the per-connection request log (issue #6).

-- Who made each change, as JSON: {"type":"scim_token","connection_id":…,"token_prefix":…},
-- {"type":"api_key","id":…,"name":…}, {"type":"cli"} or {"type":"system"}. NULL on older events
-- (read as system).
ALTER TABLE events ADD COLUMN actor TEXT;
-- The member a group.member_added / group.member_removed event is about, so that the audit log of a
-- user (resource_id filter) also shows its group membership changes.
ALTER TABLE events ADD COLUMN member_id TEXT;

-- One index per Events API filter, each ordered by seq so that a page after a cursor is a range scan
-- (in SQLite the rowid, seq, ends every index anyway; it is named for clarity).
CREATE UNIQUE INDEX events_id ON events (id);
CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_org ON events (org_id, seq);
CREATE INDEX events_connection ON events (connection_id, seq);
CREATE INDEX events_resource_id ON events (resource_id, seq);
CREATE INDEX events_member_id ON events (member_id, seq) WHERE member_id IS NOT NULL;
-- Retention deletes the oldest events by time.
CREATE INDEX events_created ON events (created_us);

-- Debug logging keeps (redacted) request and response bodies in the request log.
ALTER TABLE scim_connections ADD COLUMN debug_logging INTEGER NOT NULL DEFAULT 0;

-- The last SCIM requests of each connection (bounded: trimmed to the newest N per connection).
CREATE TABLE request_log (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id  TEXT NOT NULL REFERENCES scim_connections (id) ON DELETE CASCADE,
    at_us          INTEGER NOT NULL,
    method         TEXT NOT NULL,
    path           TEXT NOT NULL,
    status         INTEGER NOT NULL,
    latency_us     INTEGER NOT NULL,
    scim_type      TEXT,
    error_detail   TEXT,
    user_agent     TEXT,
    request_id     TEXT,
    token_prefix   TEXT,
    request_body   TEXT,
    response_body  TEXT
);
CREATE INDEX request_log_connection ON request_log (connection_id, seq);
