-- Membership and effective grants lead with their connection (issue #16, docs/scaling.md): each
-- row carries the connection of the resources it names, its key leads with it, and it refers to
-- those resources by (connection_id, pk), so a row cannot join two connections and the cascade from
-- resources (a purged user, a deleted connection) finds the rows by an index that leads with the
-- tenant. SQLite cannot change a primary key in place: the tables are rebuilt.
CREATE UNIQUE INDEX resources_tenant_pk ON resources (connection_id, pk);

-- A rowid table (it was WITHOUT ROWID): without statistics SQLite deletes from a WITHOUT ROWID
-- table by its primary key whenever a prefix of it matches, so removing a member's rows (a deleted
-- user, and the cascade of a purge or of a deleted connection) would read every membership of the
-- connection (the key's prefix) rather than seek the member index. With a rowid, both keys are
-- indexes and the planner seeks the one that matches (tests/sqlite_explain.rs).
CREATE TABLE group_members_new (
    connection_id  TEXT NOT NULL,
    group_pk       INTEGER NOT NULL,
    member_pk      INTEGER NOT NULL,
    -- `display` as the client sent it (RFC 7643 leaves it to the client); NULL when not given.
    display        TEXT,
    PRIMARY KEY (connection_id, group_pk, member_pk),
    FOREIGN KEY (connection_id, group_pk) REFERENCES resources (connection_id, pk) ON DELETE CASCADE,
    FOREIGN KEY (connection_id, member_pk) REFERENCES resources (connection_id, pk) ON DELETE CASCADE
);
INSERT INTO group_members_new (connection_id, group_pk, member_pk, display)
SELECT g.connection_id, m.group_pk, m.member_pk, m.display
FROM group_members m JOIN resources g ON g.pk = m.group_pk;
DROP TABLE group_members;
ALTER TABLE group_members_new RENAME TO group_members;
-- group_pk in the member index makes it cover a user's groups, as the primary key covers a group's
-- members (without it, SQLite prefers reading the key's connection prefix to seeking this index).
CREATE INDEX group_members_member ON group_members (connection_id, member_pk, group_pk);

CREATE TABLE user_roles_new (
    connection_id  TEXT NOT NULL,
    user_pk        INTEGER NOT NULL,
    role_id        TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (connection_id, user_pk, role_id),
    FOREIGN KEY (connection_id, user_pk) REFERENCES resources (connection_id, pk) ON DELETE CASCADE
) WITHOUT ROWID;
INSERT INTO user_roles_new (connection_id, user_pk, role_id)
SELECT u.connection_id, x.user_pk, x.role_id FROM user_roles x JOIN resources u ON u.pk = x.user_pk;
DROP TABLE user_roles;
ALTER TABLE user_roles_new RENAME TO user_roles;
CREATE INDEX user_roles_role ON user_roles (role_id);

CREATE TABLE user_workspaces_new (
    connection_id  TEXT NOT NULL,
    user_pk        INTEGER NOT NULL,
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    PRIMARY KEY (connection_id, user_pk, workspace_id),
    FOREIGN KEY (connection_id, user_pk) REFERENCES resources (connection_id, pk) ON DELETE CASCADE
) WITHOUT ROWID;
INSERT INTO user_workspaces_new (connection_id, user_pk, workspace_id)
SELECT u.connection_id, x.user_pk, x.workspace_id FROM user_workspaces x JOIN resources u ON u.pk = x.user_pk;
DROP TABLE user_workspaces;
ALTER TABLE user_workspaces_new RENAME TO user_workspaces;
CREATE INDEX user_workspaces_workspace ON user_workspaces (workspace_id);
