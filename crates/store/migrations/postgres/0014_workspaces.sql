-- Workspaces (issue #19): IdP groups as memberships of the application's workspaces.

-- Workspaces are defined per organization, like roles. A workspace created for a pushed group
-- (the organization's auto-create setting) names that group: its connection and Rollcall id.
CREATE TABLE workspaces (
    id                   TEXT PRIMARY KEY,
    org_id               TEXT COLLATE "C" NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    key                  TEXT NOT NULL,
    key_ci               TEXT NOT NULL,
    name                 TEXT NOT NULL,
    group_connection_id  TEXT REFERENCES scim_connections (id) ON DELETE CASCADE,
    group_id             TEXT,
    created_us           bigint NOT NULL
);
CREATE UNIQUE INDEX workspaces_key ON workspaces (org_id, key_ci);
CREATE UNIQUE INDEX workspaces_group ON workspaces (group_connection_id, group_id) WHERE group_id IS NOT NULL;

-- What grants a workspace on one connection: membership of a group, by the IdP's group id (the
-- group's externalId or Rollcall id) or by its displayName; `match_value` folded.
CREATE TABLE workspace_mappings (
    id             TEXT PRIMARY KEY,
    connection_id  TEXT NOT NULL REFERENCES scim_connections (id) ON DELETE CASCADE,
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    match_kind     TEXT NOT NULL CHECK (match_kind IN ('group_id', 'group_name')),
    match_value    TEXT NOT NULL,
    match_display  TEXT NOT NULL,
    created_us     bigint NOT NULL
);
CREATE UNIQUE INDEX workspace_mappings_unique ON workspace_mappings (connection_id, match_kind, match_value, workspace_id);
CREATE INDEX workspace_mappings_workspace ON workspace_mappings (workspace_id);

-- The organization's default workspace (every active user) and whether every pushed group gets one.
CREATE TABLE workspace_settings (
    org_id                TEXT COLLATE "C" PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    default_workspace_id  TEXT REFERENCES workspaces (id) ON DELETE SET NULL,
    auto_create           boolean NOT NULL DEFAULT false
);

-- Effective workspaces as rows, recomputed in the transaction of every change that affects them.
CREATE TABLE user_workspaces (
    user_pk       bigint NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    PRIMARY KEY (user_pk, workspace_id)
);
CREATE INDEX user_workspaces_workspace ON user_workspaces (workspace_id);
