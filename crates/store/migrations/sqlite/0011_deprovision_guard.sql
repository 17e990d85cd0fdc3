-- The guard against mass deprovisioning (issue #19, `crate::guard`).

-- A connection's guard: its settings (JSON; no row or NULL: the defaults, on) and whether it has
-- tripped. A connection without a row has an armed guard with the default settings.
CREATE TABLE deprovision_guards (
    connection_id  TEXT PRIMARY KEY REFERENCES scim_connections (id) ON DELETE CASCADE,
    settings       TEXT,
    tripped_us     INTEGER
);

-- The users each connection deprovisioned recently: the sliding window the thresholds count
-- (pruned to the window as it is written).
CREATE TABLE deprovision_window (
    connection_id  TEXT NOT NULL REFERENCES scim_connections (id) ON DELETE CASCADE,
    at_us          INTEGER NOT NULL,
    user_id        TEXT NOT NULL
);
CREATE INDEX deprovision_window_connection ON deprovision_window (connection_id, at_us);

-- Events the guard holds back from the log (and so from the Events API and webhooks), written in
-- the transaction of the SCIM write that caused them, until released into `events` or discarded.
CREATE TABLE held_events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id  TEXT NOT NULL REFERENCES scim_connections (id) ON DELETE CASCADE,
    user_id        TEXT NOT NULL,
    held_us        INTEGER NOT NULL,
    id             TEXT NOT NULL,
    type           TEXT NOT NULL,
    org_id         TEXT,
    resource_type  TEXT,
    resource_id    TEXT,
    data           TEXT NOT NULL,
    user_agent     TEXT,
    request_id     TEXT,
    created_us     INTEGER NOT NULL,
    actor          TEXT,
    member_id      TEXT
);
CREATE INDEX held_events_connection ON held_events (connection_id, seq);
CREATE INDEX held_events_user ON held_events (connection_id, user_id);
