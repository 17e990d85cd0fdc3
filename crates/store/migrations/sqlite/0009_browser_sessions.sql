-- Browser sessions and setup links (#14).
--
-- A setup link lets a customer's IT admin set up SCIM for one organization without an account: an
-- operator creates it (shown once), the admin opens it. Only the SHA-256 of its token is stored.
-- `created_by` is the actor who created it (the JSON of `events.actor`); `connection_id` is the
-- connection the admin created through it, if any.
CREATE TABLE setup_links (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    token_hash     BLOB NOT NULL,
    token_prefix   TEXT NOT NULL,
    return_url     TEXT,
    created_by     TEXT NOT NULL,
    connection_id  TEXT REFERENCES scim_connections (id) ON DELETE SET NULL,
    created_us     INTEGER NOT NULL,
    expires_us     INTEGER NOT NULL,
    revoked_us     INTEGER,
    last_used_us   INTEGER
);
CREATE UNIQUE INDEX setup_links_token ON setup_links (token_hash);
CREATE INDEX setup_links_org ON setup_links (org_id, created_us);
CREATE INDEX setup_links_connection ON setup_links (connection_id) WHERE connection_id IS NOT NULL;

-- Signed-in browsers: the operator console (`console`, signed in with an API key: `subject_id` is
-- the key's id) and the setup page (`setup`: `subject_id` is the setup link's id, `org_id` its
-- organization). Keyed by the SHA-256 of the session token (the cookie's value).
CREATE TABLE browser_sessions (
    token_hash    BLOB PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('console', 'setup')),
    subject_id    TEXT NOT NULL,
    org_id        TEXT REFERENCES organizations (id) ON DELETE CASCADE,
    created_us    INTEGER NOT NULL,
    expires_us    INTEGER NOT NULL,
    last_seen_us  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX browser_sessions_subject ON browser_sessions (kind, subject_id);
CREATE INDEX browser_sessions_expires ON browser_sessions (expires_us);
CREATE INDEX browser_sessions_org ON browser_sessions (org_id) WHERE org_id IS NOT NULL;
