-- Roles, group-to-role mappings, effective roles, protected users and per-connection policy.

-- Roles are defined per organization by the application. `key_ci` is the key folded for
-- case-insensitive matching (the `scim:<group name>` convention, lookups).
CREATE TABLE roles (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    key_ci       TEXT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    created_us   INTEGER NOT NULL
);
CREATE UNIQUE INDEX roles_key ON roles (org_id, key_ci);

-- What grants a role on one connection: membership of a group (by the IdP's group id, i.e. the
-- group's externalId or Rollcall id, or by its displayName, folded) or an app role value in the
-- user's `roles` attribute (Entra). `match_value` is folded; `match_display` is as configured.
CREATE TABLE role_mappings (
    id             TEXT PRIMARY KEY,
    connection_id  TEXT NOT NULL REFERENCES scim_connections (id) ON DELETE CASCADE,
    role_id        TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    match_kind     TEXT NOT NULL CHECK (match_kind IN ('group_id', 'group_name', 'app_role')),
    match_value    TEXT NOT NULL,
    match_display  TEXT NOT NULL,
    created_us     INTEGER NOT NULL
);
CREATE UNIQUE INDEX role_mappings_unique ON role_mappings (connection_id, match_kind, match_value, role_id);
CREATE INDEX role_mappings_role ON role_mappings (role_id);

-- Roles every provisioned (active) user of a connection has.
CREATE TABLE connection_default_roles (
    connection_id  TEXT NOT NULL REFERENCES scim_connections (id) ON DELETE CASCADE,
    role_id        TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (connection_id, role_id)
);
CREATE INDEX connection_default_roles_role ON connection_default_roles (role_id);

-- Effective roles as rows, recomputed in the transaction of every change that affects them.
CREATE TABLE user_roles (
    user_pk  INTEGER NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    role_id  TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_pk, role_id)
) WITHOUT ROWID;
CREATE INDEX user_roles_role ON user_roles (role_id);

-- Users (by e-mail address or userName, folded) that SCIM may not deactivate or delete.
CREATE TABLE protected_users (
    org_id      TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email_ci    TEXT NOT NULL,
    email       TEXT NOT NULL,
    created_us  INTEGER NOT NULL,
    PRIMARY KEY (org_id, email_ci)
);

-- The connection's attribute and lifecycle policy (JSON); NULL is the default policy.
ALTER TABLE scim_connections ADD COLUMN policy TEXT;

-- Directory listings include deleted users, which the partial `resources_live` index leaves out.
CREATE INDEX resources_all ON resources (connection_id, kind, pk);
