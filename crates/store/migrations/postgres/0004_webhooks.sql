-- Webhooks (PostgreSQL). Each endpoint reads the event log (`events`, the transactional outbox) through
-- a cursor of its own: `cursor_seq` is the last event it has acknowledged (answered 2xx) or skipped
-- (not subscribed), so delivery is at least once and in `seq` order per endpoint.

CREATE TABLE webhook_endpoints (
    id                          text COLLATE "C" PRIMARY KEY,
    -- NULL: a global endpoint, which sees the events of every organization and those of none.
    org_id                      text COLLATE "C" REFERENCES organizations (id) ON DELETE CASCADE,
    url                         text NOT NULL,
    description                 text NOT NULL DEFAULT '',
    -- A JSON array of event types (`user.created`) and prefixes (`user.*`); empty: every event.
    event_types                 text NOT NULL DEFAULT '[]',
    -- `whsec_<base64>`: kept in clear, since signing needs it.
    secret                      text NOT NULL,
    -- After a rotation, deliveries are signed with the previous secret too until it expires.
    previous_secret             text,
    previous_secret_expires_us  bigint,
    status                      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    disabled_reason             text,
    cursor_seq                  bigint NOT NULL,
    -- When the dispatcher may next try (after a failure: backoff with jitter).
    next_attempt_us             bigint NOT NULL,
    failing_since_us            bigint,
    consecutive_failures        bigint NOT NULL DEFAULT 0,
    last_error                  text,
    -- The dispatcher (node) working on the endpoint, until the lease expires.
    lease_owner                 text,
    lease_expires_us            bigint,
    created_us                  bigint NOT NULL,
    updated_us                  bigint NOT NULL
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (org_id);
CREATE INDEX webhook_endpoints_due ON webhook_endpoints (next_attempt_us) WHERE status = 'active';

-- Every delivery attempt: by the dispatcher, a redelivery or a test ping.
CREATE TABLE webhook_attempts (
    pk                bigserial PRIMARY KEY,
    endpoint_id       text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id          text NOT NULL,
    -- NULL for a test ping (not an event of the log).
    event_seq         bigint,
    event_type        text NOT NULL,
    attempt           bigint NOT NULL,
    origin            text NOT NULL CHECK (origin IN ('dispatch', 'redeliver', 'ping')),
    succeeded         boolean NOT NULL,
    status_code       bigint,
    latency_us        bigint NOT NULL,
    response_excerpt  text,
    error             text,
    created_us        bigint NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, pk);
CREATE INDEX webhook_attempts_event ON webhook_attempts (endpoint_id, event_id);

-- Organization endpoints read the log by organization.
CREATE INDEX events_org_seq ON events (org_id, seq);
