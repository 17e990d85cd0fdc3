-- Rollcall schema (PostgreSQL). Times are microseconds since the Unix epoch, UTC.
--
-- Text that is searched by range or prefix, or sorted, uses COLLATE "C": comparisons are by code
-- point, as on SQLite, whatever the database's default collation, and the indexes serve `>`/`<` and
-- prefix ranges as well as equality.

CREATE TABLE organizations (
    id          text COLLATE "C" PRIMARY KEY,
    name        text NOT NULL,
    created_us  bigint NOT NULL
);
CREATE UNIQUE INDEX organizations_name ON organizations (name);

-- A connection has up to two tokens, stored as SHA-256 hashes: the current one and, while a rotation
-- is in progress, the next one; both authenticate. Both are NULL after its tokens are revoked.
CREATE TABLE scim_connections (
    id                   text PRIMARY KEY,
    org_id               text COLLATE "C" NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name                 text NOT NULL,
    idp                  text NOT NULL,
    status               text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    token_hash           bytea,
    token_prefix         text,
    next_token_hash      bytea,
    next_token_prefix    text,
    rotation_started_us  bigint,
    created_us           bigint NOT NULL,
    -- The last authenticated SCIM request, recorded at most about once a minute per node.
    last_request_us      bigint,
    last_user_agent      text
);
CREATE UNIQUE INDEX scim_connections_token ON scim_connections (token_hash);
CREATE UNIQUE INDEX scim_connections_next_token ON scim_connections (next_token_hash)
    WHERE next_token_hash IS NOT NULL;
CREATE INDEX scim_connections_org ON scim_connections (org_id);

-- Operator API keys for the management API (`/api/v1`), stored as SHA-256 hashes. Revoked keys keep
-- their row (revoked_us) so that lists show them.
CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    key_hash    bytea NOT NULL,
    key_prefix  text NOT NULL,
    created_us  bigint NOT NULL,
    revoked_us  bigint
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys (key_hash);

-- Users and groups. `doc` is the canonical SCIM document (no meta, no members); `doc_ci` its search
-- copy with case-insensitive strings folded in Rust. Deleted resources keep their row (deleted_us).
CREATE TABLE resources (
    pk               bigserial PRIMARY KEY,
    connection_id    text COLLATE "C" NOT NULL REFERENCES scim_connections (id) ON DELETE CASCADE,
    kind             text COLLATE "C" NOT NULL,
    id               text COLLATE "C" NOT NULL,
    external_id      text COLLATE "C",
    user_name_ci     text COLLATE "C",
    display_name_ci  text COLLATE "C",
    active           boolean,
    version          bigint NOT NULL,
    created_us       bigint NOT NULL,
    modified_us      bigint NOT NULL,
    deleted_us       bigint,
    doc              jsonb NOT NULL,
    doc_ci           jsonb NOT NULL
);
CREATE UNIQUE INDEX resources_id ON resources (connection_id, id);
-- userName (users) and displayName (groups) are unique per connection among live resources; the
-- store names `kind` as a literal in its queries so these partial indexes also serve lookups.
CREATE UNIQUE INDEX resources_user_name ON resources (connection_id, user_name_ci)
    WHERE kind = 'User' AND deleted_us IS NULL;
CREATE UNIQUE INDEX resources_group_name ON resources (connection_id, display_name_ci)
    WHERE kind = 'Group' AND deleted_us IS NULL;
CREATE INDEX resources_external_id ON resources (connection_id, kind, external_id) WHERE deleted_us IS NULL;
CREATE INDEX resources_display_name ON resources (connection_id, kind, display_name_ci) WHERE deleted_us IS NULL;
CREATE INDEX resources_live ON resources (connection_id, kind, pk) WHERE deleted_us IS NULL;

CREATE TABLE resource_emails (
    resource_pk    bigint NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    connection_id  text COLLATE "C" NOT NULL,
    value_ci       text COLLATE "C" NOT NULL
);
-- `emails.value eq` compiles to an EXISTS on the value alone (correlated by resource_pk), so the
-- value leads this index.
CREATE INDEX resource_emails_value ON resource_emails (value_ci, resource_pk);
CREATE INDEX resource_emails_resource ON resource_emails (resource_pk);

-- Group membership as rows: adding or removing one member never rewrites the group.
CREATE TABLE group_members (
    group_pk   bigint NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    member_pk  bigint NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    -- `display` as the client sent it (RFC 7643 leaves it to the client); NULL when not given.
    display    text,
    PRIMARY KEY (group_pk, member_pk)
);
CREATE INDEX group_members_member ON group_members (member_pk);

-- The event log, written in the same transaction as each change (transactional outbox). The store
-- inserts a transaction's events last, under a transaction-scoped advisory lock, so `seq` order is
-- commit order and a reader paging by `seq` never skips an event committed late.
CREATE TABLE events (
    seq            bigserial PRIMARY KEY,
    id             text NOT NULL,
    type           text NOT NULL,
    org_id         text,
    connection_id  text,
    resource_type  text,
    resource_id    text,
    data           jsonb NOT NULL,
    user_agent     text,
    request_id     text,
    created_us     bigint NOT NULL
);
CREATE INDEX events_resource ON events (connection_id, resource_id);
