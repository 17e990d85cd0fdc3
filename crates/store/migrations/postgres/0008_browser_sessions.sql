-- Browser sessions and setup links (#14).
--
-- A setup link lets a customer's IT admin set up SCIM for one organization without an account: an
-- operator creates it (shown once), the admin opens it. Only the SHA-256 of its token is stored.
-- `created_by` is the actor who created it (the JSON of `events.actor`); `connection_id` is the
-- connection the admin created through it, if any.
CREATE TABLE setup_links (
    id             text COLLATE "C" PRIMARY KEY,
    org_id         text COLLATE "C" NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    token_hash     bytea NOT NULL,
    token_prefix   text NOT NULL,
    return_url     text,
    created_by     text NOT NULL,
    connection_id  text REFERENCES scim_connections (id) ON DELETE SET NULL,
    created_us     bigint NOT NULL,
    expires_us     bigint NOT NULL,
    revoked_us     bigint,
    last_used_us   bigint
);
CREATE UNIQUE INDEX setup_links_token ON setup_links (token_hash);
CREATE INDEX setup_links_org ON setup_links (org_id, created_us);
CREATE INDEX setup_links_connection ON setup_links (connection_id) WHERE connection_id IS NOT NULL;

-- Signed-in browsers: the operator console (`console`, signed in with an API key: `subject_id` is
-- the key's id) and the setup page (`setup`: `subject_id` is the setup link's id, `org_id` its
-- organization). Keyed by the SHA-256 of the session token (the cookie's value).
CREATE TABLE browser_sessions (
    token_hash    bytea PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('console', 'setup')),
    subject_id    text COLLATE "C" NOT NULL,
    org_id        text COLLATE "C" REFERENCES organizations (id) ON DELETE CASCADE,
    created_us    bigint NOT NULL,
    expires_us    bigint NOT NULL,
    last_seen_us  bigint NOT NULL
);
CREATE INDEX browser_sessions_subject ON browser_sessions (kind, subject_id);
CREATE INDEX browser_sessions_expires ON browser_sessions (expires_us);
CREATE INDEX browser_sessions_org ON browser_sessions (org_id) WHERE org_id IS NOT NULL;
