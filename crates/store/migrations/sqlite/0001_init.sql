-- Rollcall schema (SQLite). Times are microseconds since the Unix epoch, UTC.

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_us  INTEGER NOT NULL
);
CREATE UNIQUE INDEX organizations_name ON organizations (name);

-- A connection has up to two tokens, stored as SHA-256 hashes: the current one and, while a rotation
-- is in progress, the next one; both authenticate. Both are NULL after its tokens are revoked.
CREATE TABLE scim_connections (
    id                   TEXT PRIMARY KEY,
    org_id               TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    idp                  TEXT NOT NULL,
    status               TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    token_hash           BLOB,
    token_prefix         TEXT,
    next_token_hash      BLOB,
    next_token_prefix    TEXT,
    rotation_started_us  INTEGER,
    created_us           INTEGER NOT NULL,
    -- The last authenticated SCIM request, recorded at most about once a minute per node.
    last_request_us      INTEGER,
    last_user_agent      TEXT
);
CREATE UNIQUE INDEX scim_connections_token ON scim_connections (token_hash);
CREATE UNIQUE INDEX scim_connections_next_token ON scim_connections (next_token_hash)
    WHERE next_token_hash IS NOT NULL;
CREATE INDEX scim_connections_org ON scim_connections (org_id);

-- Operator API keys for the management API (`/api/v1`), stored as SHA-256 hashes. Revoked keys keep
-- their row (revoked_us) so that lists show them.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    key_hash    BLOB NOT NULL,
    key_prefix  TEXT NOT NULL,
    created_us  INTEGER NOT NULL,
    revoked_us  INTEGER
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys (key_hash);

-- Users and groups. `doc` is the canonical SCIM document (no meta, no members); `doc_ci` its search
-- copy with case-insensitive strings folded in Rust. Deleted resources keep their row (deleted_us).
CREATE TABLE resources (
    pk               INTEGER PRIMARY KEY,
    connection_id    TEXT NOT NULL REFERENCES scim_connections (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    id               TEXT NOT NULL,
    external_id      TEXT,
    user_name_ci     TEXT,
    display_name_ci  TEXT,
    active           INTEGER,
    version          INTEGER NOT NULL,
    created_us       INTEGER NOT NULL,
    modified_us      INTEGER NOT NULL,
    deleted_us       INTEGER,
    doc              TEXT NOT NULL,
    doc_ci           TEXT NOT NULL
);
CREATE UNIQUE INDEX resources_id ON resources (connection_id, id);
CREATE UNIQUE INDEX resources_user_name ON resources (connection_id, user_name_ci)
    WHERE kind = 'User' AND deleted_us IS NULL;
CREATE UNIQUE INDEX resources_group_name ON resources (connection_id, display_name_ci)
    WHERE kind = 'Group' AND deleted_us IS NULL;
CREATE INDEX resources_external_id ON resources (connection_id, kind, external_id) WHERE deleted_us IS NULL;
CREATE INDEX resources_display_name ON resources (connection_id, kind, display_name_ci) WHERE deleted_us IS NULL;
CREATE INDEX resources_live ON resources (connection_id, kind, pk) WHERE deleted_us IS NULL;

CREATE TABLE resource_emails (
    resource_pk    INTEGER NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    connection_id  TEXT NOT NULL,
    value_ci       TEXT NOT NULL
);
CREATE INDEX resource_emails_value ON resource_emails (value_ci, resource_pk);
CREATE INDEX resource_emails_resource ON resource_emails (resource_pk);

-- Group membership as rows: adding or removing one member never rewrites the group.
CREATE TABLE group_members (
    group_pk   INTEGER NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    member_pk  INTEGER NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    -- `display` as the client sent it (RFC 7643 leaves it to the client); NULL when not given.
    display    TEXT,
    PRIMARY KEY (group_pk, member_pk)
) WITHOUT ROWID;
CREATE INDEX group_members_member ON group_members (member_pk);

-- The event log, written in the same transaction as each change (transactional outbox).
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL,
    type           TEXT NOT NULL,
    org_id         TEXT,
    connection_id  TEXT,
    resource_type  TEXT,
    resource_id    TEXT,
    data           TEXT NOT NULL,
    user_agent     TEXT,
    request_id     TEXT,
    created_us     INTEGER NOT NULL
);
CREATE INDEX events_resource ON events (connection_id, resource_id);
