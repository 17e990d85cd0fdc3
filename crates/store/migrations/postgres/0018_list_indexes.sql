-- Two indexes that a page of a list reads, made cheaper to read (issue #16, benchmarks.md).
--
-- A connection's live users and its live groups each get an index of their own. Before, one index
-- held both kinds: (connection_id, kind, pk). A list statement names its kind as a literal
-- (sql::list_plan), so the planner can use these partial indexes. A page counts its matches and
-- skips keys for its OFFSET, and both walk every entry up to the page. Each entry now has one key
-- to compare, the connection, instead of two, and the entries are smaller.
CREATE INDEX resources_live_users ON resources (connection_id, pk) WHERE kind = 'User' AND deleted_us IS NULL;
CREATE INDEX resources_live_groups ON resources (connection_id, pk) WHERE kind = 'Group' AND deleted_us IS NULL;
DROP INDEX resources_live;

-- A user's groups: the member index also holds the group's key. A user's groups (a GET of a user,
-- the users of a page) are then read from the index alone, not from the table row by row.
CREATE INDEX group_members_member_group ON group_members (connection_id, member_pk, group_pk);
DROP INDEX group_members_member;
ALTER INDEX group_members_member_group RENAME TO group_members_member;
