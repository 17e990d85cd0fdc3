-- Webhooks (SQLite). Each endpoint reads the event log (`events`, the transactional outbox) through
-- a cursor of its own: `cursor_seq` is the last event it has acknowledged (answered 2xx) or skipped
-- (not subscribed), so delivery is at least once and in `seq` order per endpoint.

CREATE TABLE webhook_endpoints (
    id                          TEXT PRIMARY KEY,
    -- NULL: a global endpoint, which sees the events of every organization and those of none.
    org_id                      TEXT REFERENCES organizations (id) ON DELETE CASCADE,
    url                         TEXT NOT NULL,
    description                 TEXT NOT NULL DEFAULT '',
    -- A JSON array of event types (`user.created`) and prefixes (`user.*`); empty: every event.
    event_types                 TEXT NOT NULL DEFAULT '[]',
    -- `whsec_<base64>`: kept in clear, since signing needs it.
    secret                      TEXT NOT NULL,
    -- After a rotation, deliveries are signed with the previous secret too until it expires.
    previous_secret             TEXT,
    previous_secret_expires_us  INTEGER,
    status                      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    disabled_reason             TEXT,
    cursor_seq                  INTEGER NOT NULL,
    -- When the dispatcher may next try (after a failure: backoff with jitter).
    next_attempt_us             INTEGER NOT NULL,
    failing_since_us            INTEGER,
    consecutive_failures        INTEGER NOT NULL DEFAULT 0,
    last_error                  TEXT,
    -- The dispatcher (node) working on the endpoint, until the lease expires.
    lease_owner                 TEXT,
    lease_expires_us            INTEGER,
    created_us                  INTEGER NOT NULL,
    updated_us                  INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (org_id);
CREATE INDEX webhook_endpoints_due ON webhook_endpoints (next_attempt_us) WHERE status = 'active';

-- Every delivery attempt: by the dispatcher, a redelivery or a test ping.
CREATE TABLE webhook_attempts (
    pk                INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id       TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id          TEXT NOT NULL,
    -- NULL for a test ping (not an event of the log).
    event_seq         INTEGER,
    event_type        TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    origin            TEXT NOT NULL CHECK (origin IN ('dispatch', 'redeliver', 'ping')),
    succeeded         INTEGER NOT NULL,
    status_code       INTEGER,
    latency_us        INTEGER NOT NULL,
    response_excerpt  TEXT,
    error             TEXT,
    created_us        INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, pk);
CREATE INDEX webhook_attempts_event ON webhook_attempts (endpoint_id, event_id);

-- Organization endpoints read the log by organization.
CREATE INDEX events_org_seq ON events (org_id, seq);
