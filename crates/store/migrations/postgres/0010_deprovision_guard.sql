-- The guard against mass deprovisioning (issue #19, `crate::guard`).

-- A connection's guard: its settings (JSON; no row or NULL: the defaults, on) and whether it has
-- tripped. A connection without a row has an armed guard with the default settings.
CREATE TABLE deprovision_guards (
    connection_id  text COLLATE "C" PRIMARY KEY REFERENCES scim_connections (id) ON DELETE CASCADE,
    settings       text,
    tripped_us     bigint
);

-- The users each connection deprovisioned recently: the sliding window the thresholds count
-- (pruned to the window as it is written).
CREATE TABLE deprovision_window (
    connection_id  text COLLATE "C" NOT NULL REFERENCES scim_connections (id) ON DELETE CASCADE,
    at_us          bigint NOT NULL,
    user_id        text NOT NULL
);
CREATE INDEX deprovision_window_connection ON deprovision_window (connection_id, at_us);

-- Events the guard holds back from the log (and so from the Events API and webhooks), written in
-- the transaction of the SCIM write that caused them, until released into `events` or discarded.
CREATE TABLE held_events (
    seq            bigserial PRIMARY KEY,
    connection_id  text COLLATE "C" NOT NULL REFERENCES scim_connections (id) ON DELETE CASCADE,
    user_id        text NOT NULL,
    held_us        bigint NOT NULL,
    id             text NOT NULL,
    type           text NOT NULL,
    org_id         text,
    resource_type  text,
    resource_id    text,
    data           jsonb NOT NULL,
    user_agent     text,
    request_id     text,
    created_us     bigint NOT NULL,
    actor          jsonb,
    member_id      text
);
CREATE INDEX held_events_connection ON held_events (connection_id, seq);
CREATE INDEX held_events_user ON held_events (connection_id, user_id);
