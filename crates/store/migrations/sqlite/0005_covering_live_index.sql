-- `resources_live` now also holds `deleted_us`, so that counting a connection's live users
-- (`totalResults`) and skipping the rows before a page (`startIndex`) read only the index.
-- Without the column, SQLite preferred `resources_all` (same leading columns, added in 0002) and
-- read every row from the table to check `deleted_us IS NULL`: a table seek per user counted or
-- skipped.
DROP INDEX resources_live;
CREATE INDEX resources_live ON resources (connection_id, kind, pk, deleted_us) WHERE deleted_us IS NULL;
