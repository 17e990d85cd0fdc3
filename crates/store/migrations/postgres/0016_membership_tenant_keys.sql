-- Membership and effective grants lead with their connection (issue #16, docs/scaling.md): each
-- row carries the connection of the resources it names, its key leads with it, and it refers to
-- those resources by (connection_id, pk), so a row cannot join two connections and the cascade from
-- resources (a purged user, a deleted connection) finds the rows by an index that leads with the
-- tenant.
CREATE UNIQUE INDEX resources_tenant_pk ON resources (connection_id, pk);

ALTER TABLE group_members ADD COLUMN connection_id text COLLATE "C";
UPDATE group_members m SET connection_id = g.connection_id FROM resources g WHERE g.pk = m.group_pk;
ALTER TABLE group_members ALTER COLUMN connection_id SET NOT NULL;
ALTER TABLE group_members DROP CONSTRAINT group_members_pkey;
ALTER TABLE group_members DROP CONSTRAINT group_members_group_pk_fkey;
ALTER TABLE group_members DROP CONSTRAINT group_members_member_pk_fkey;
ALTER TABLE group_members ADD PRIMARY KEY (connection_id, group_pk, member_pk);
ALTER TABLE group_members ADD CONSTRAINT group_members_group_fkey FOREIGN KEY (connection_id, group_pk)
    REFERENCES resources (connection_id, pk) ON DELETE CASCADE;
ALTER TABLE group_members ADD CONSTRAINT group_members_member_fkey FOREIGN KEY (connection_id, member_pk)
    REFERENCES resources (connection_id, pk) ON DELETE CASCADE;
DROP INDEX group_members_member;
CREATE INDEX group_members_member ON group_members (connection_id, member_pk);

ALTER TABLE user_roles ADD COLUMN connection_id text COLLATE "C";
UPDATE user_roles x SET connection_id = u.connection_id FROM resources u WHERE u.pk = x.user_pk;
ALTER TABLE user_roles ALTER COLUMN connection_id SET NOT NULL;
ALTER TABLE user_roles DROP CONSTRAINT user_roles_pkey;
ALTER TABLE user_roles DROP CONSTRAINT user_roles_user_pk_fkey;
ALTER TABLE user_roles ADD PRIMARY KEY (connection_id, user_pk, role_id);
ALTER TABLE user_roles ADD CONSTRAINT user_roles_user_fkey FOREIGN KEY (connection_id, user_pk)
    REFERENCES resources (connection_id, pk) ON DELETE CASCADE;

ALTER TABLE user_workspaces ADD COLUMN connection_id text COLLATE "C";
UPDATE user_workspaces x SET connection_id = u.connection_id FROM resources u WHERE u.pk = x.user_pk;
ALTER TABLE user_workspaces ALTER COLUMN connection_id SET NOT NULL;
ALTER TABLE user_workspaces DROP CONSTRAINT user_workspaces_pkey;
ALTER TABLE user_workspaces DROP CONSTRAINT user_workspaces_user_pk_fkey;
ALTER TABLE user_workspaces ADD PRIMARY KEY (connection_id, user_pk, workspace_id);
ALTER TABLE user_workspaces ADD CONSTRAINT user_workspaces_user_fkey FOREIGN KEY (connection_id, user_pk)
    REFERENCES resources (connection_id, pk) ON DELETE CASCADE;
