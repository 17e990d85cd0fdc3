//! The directory as the application reads it: an organization's users (live, deactivated and
//! deleted) with their effective roles, and its groups with member counts, across all of its SCIM
//! connections. The SQL is written once here for both backends ([`Dialect`]); every filter is an
//! indexed lookup.

use crate::sql::{Bind, Dialect, SqlBuilder};
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// A user's status as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    /// `active: false` from the identity provider.
    Deactivated,
    /// Deleted by the identity provider (SCIM no longer sees it).
    Deleted,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Deactivated => "deactivated",
            UserStatus::Deleted => "deleted",
        }
    }
}

impl fmt::Display for UserStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UserStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(UserStatus::Active),
            "deactivated" => Ok(UserStatus::Deactivated),
            "deleted" => Ok(UserStatus::Deleted),
            other => Err(format!(
                "unknown status \"{other}\"; expected \"active\", \"deactivated\" or \"deleted\""
            )),
        }
    }
}

/// Which users to list. Text criteria are matched as stored: `email` and `user_name` folded,
/// `external_id` exactly, `role` by key (folded).
#[derive(Debug, Clone, Default)]
pub struct DirectoryQuery {
    pub connection_id: Option<String>,
    pub status: Option<UserStatus>,
    pub id: Option<String>,
    pub email: Option<String>,
    pub user_name: Option<String>,
    pub external_id: Option<String>,
    pub role: Option<String>,
    /// Members of this workspace, by key (folded).
    pub workspace: Option<String>,
    /// Members of this group (its Rollcall id).
    pub group_id: Option<String>,
    /// Users of connections in staging too ([`crate::staging`]); left out by default.
    pub include_staging: bool,
    /// Users with a row key above this (cursor paging).
    pub after_pk: i64,
    pub limit: i64,
}

/// A user in the directory.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryUser {
    pub pk: i64,
    pub id: String,
    pub connection_id: String,
    pub external_id: Option<String>,
    pub status: UserStatus,
    /// The SCIM document (without `id`, `meta`, `groups`).
    pub doc: Value,
    /// Effective role keys, sorted.
    pub roles: Vec<String>,
    /// Effective workspace keys, sorted.
    pub workspaces: Vec<String>,
    /// The live groups it is a direct member of, when asked for.
    pub groups: Option<Vec<GroupRef>>,
    pub created_us: i64,
    pub modified_us: i64,
    pub deleted_us: Option<i64>,
}

/// A group, named.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRef {
    pub id: String,
    pub display_name: Option<String>,
}

/// Which groups to list.
#[derive(Debug, Clone, Default)]
pub struct GroupQuery {
    pub connection_id: Option<String>,
    pub id: Option<String>,
    /// Folded.
    pub display_name: Option<String>,
    pub external_id: Option<String>,
    /// Groups of connections in staging too; left out by default.
    pub include_staging: bool,
    pub after_pk: i64,
    pub limit: i64,
}

/// A live group in the directory.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryGroup {
    pub pk: i64,
    pub id: String,
    pub connection_id: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub member_count: i64,
    pub created_us: i64,
    pub modified_us: i64,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirectoryMember {
    #[serde(skip)]
    pub pk: i64,
    pub id: String,
    /// `User` or `Group`.
    #[serde(rename = "type")]
    pub kind: String,
    /// userName of a user, displayName of a group.
    pub name: Option<String>,
    /// A user's status; `None` for a group.
    pub status: Option<UserStatus>,
}

/// `status` computed in SQL, the same text on both backends.
fn status_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "CASE WHEN r.deleted_us IS NOT NULL THEN 'deleted' WHEN r.active = 0 THEN 'deactivated' ELSE 'active' END"
        }
        Dialect::Postgres => {
            "CASE WHEN r.deleted_us IS NOT NULL THEN 'deleted' WHEN r.active = false THEN 'deactivated' ELSE 'active' END"
        }
    }
}

/// The role keys of user `r` as a JSON array text.
fn roles_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "(SELECT json_group_array(k) FROM (SELECT ro.key AS k FROM user_roles ur JOIN roles ro ON ro.id = ur.role_id
               WHERE ur.connection_id = r.connection_id AND ur.user_pk = r.pk ORDER BY ro.key))"
        }
        Dialect::Postgres => {
            "(SELECT coalesce(json_agg(ro.key ORDER BY ro.key), '[]')::text FROM user_roles ur JOIN roles ro ON ro.id = ur.role_id
               WHERE ur.connection_id = r.connection_id AND ur.user_pk = r.pk)"
        }
    }
}

/// The workspace keys of user `r` as a JSON array text.
fn workspaces_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "(SELECT json_group_array(k) FROM (SELECT w.key AS k FROM user_workspaces uw JOIN workspaces w ON w.id = uw.workspace_id
               WHERE uw.connection_id = r.connection_id AND uw.user_pk = r.pk ORDER BY w.key))"
        }
        Dialect::Postgres => {
            "(SELECT coalesce(json_agg(w.key ORDER BY w.key), '[]')::text FROM user_workspaces uw JOIN workspaces w ON w.id = uw.workspace_id
               WHERE uw.connection_id = r.connection_id AND uw.user_pk = r.pk)"
        }
    }
}

fn doc_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "r.doc",
        Dialect::Postgres => "r.doc::text",
    }
}

/// Restricts `r` to the organization's connections (and to one of them when asked), without those
/// in staging unless `include_staging`.
fn in_org(b: &mut SqlBuilder, org_id: &str, connection_id: Option<&str>, include_staging: bool) {
    b.push("r.connection_id IN (SELECT c.id FROM scim_connections c WHERE c.org_id = ");
    b.text(org_id);
    if !include_staging {
        b.push(" AND c.staged_us IS NULL");
    }
    b.push(")");
    if let Some(c) = connection_id {
        b.push(" AND r.connection_id = ");
        b.text(c);
    }
}

/// The users query: columns `pk, id, connection_id, external_id, status, doc, roles, workspaces,
/// created_us, modified_us, deleted_us`, ordered by `pk`.
pub fn users_sql(dialect: Dialect, org_id: &str, q: &DirectoryQuery) -> SqlBuilder {
    let mut b = SqlBuilder::new(dialect);
    b.push(&format!(
        "SELECT r.pk, r.id, r.connection_id, r.external_id, {} AS status, {} AS doc, {} AS roles,
                {} AS workspaces, r.created_us, r.modified_us, r.deleted_us
         FROM resources r WHERE r.kind = 'User' AND ",
        status_sql(dialect),
        doc_sql(dialect),
        roles_sql(dialect),
        workspaces_sql(dialect)
    ));
    in_org(&mut b, org_id, q.connection_id.as_deref(), q.include_staging);
    match q.status {
        None => {}
        Some(UserStatus::Deleted) => {
            b.push(" AND r.deleted_us IS NOT NULL");
        }
        Some(UserStatus::Deactivated) => {
            b.push(match dialect {
                Dialect::Sqlite => " AND r.deleted_us IS NULL AND r.active = 0",
                Dialect::Postgres => " AND r.deleted_us IS NULL AND r.active = false",
            });
        }
        Some(UserStatus::Active) => {
            b.push(match dialect {
                Dialect::Sqlite => " AND r.deleted_us IS NULL AND (r.active IS NULL OR r.active <> 0)",
                Dialect::Postgres => " AND r.deleted_us IS NULL AND r.active IS NOT false",
            });
        }
    }
    if let Some(id) = &q.id {
        b.push(" AND r.id = ");
        b.text(id.clone());
    }
    if let Some(e) = &q.email {
        // The e-mail index leads with the connection: name the organization's.
        b.push(" AND r.pk IN (SELECT e.resource_pk FROM resource_emails e WHERE e.connection_id IN ");
        b.push("(SELECT c.id FROM scim_connections c WHERE c.org_id = ");
        b.text(org_id);
        b.push(") AND e.value_ci = ");
        b.text(e.clone());
        b.push(")");
    }
    if let Some(u) = &q.user_name {
        b.push(" AND r.user_name_ci = ");
        b.text(u.clone());
    }
    if let Some(x) = &q.external_id {
        b.push(" AND r.external_id = ");
        b.text(x.clone());
    }
    if let Some(role) = &q.role {
        b.push(
            " AND r.pk IN (SELECT ur.user_pk FROM user_roles ur JOIN roles ro ON ro.id = ur.role_id
               WHERE ur.connection_id = r.connection_id AND ro.org_id = ",
        );
        b.text(org_id);
        b.push(" AND ro.key_ci = ");
        b.text(role.clone());
        b.push(")");
    }
    if let Some(w) = &q.workspace {
        b.push(
            " AND r.pk IN (SELECT uw.user_pk FROM user_workspaces uw JOIN workspaces w ON w.id = uw.workspace_id
               WHERE uw.connection_id = r.connection_id AND w.org_id = ",
        );
        b.text(org_id);
        b.push(" AND w.key_ci = ");
        b.text(w.clone());
        b.push(")");
    }
    if let Some(g) = &q.group_id {
        b.push(
            " AND r.pk IN (SELECT m.member_pk FROM group_members m JOIN resources g ON g.pk = m.group_pk
               WHERE m.connection_id = r.connection_id AND g.connection_id = r.connection_id AND g.id = ",
        );
        b.text(g.clone());
        b.push(" AND g.kind = 'Group')");
    }
    b.push(" AND r.pk > ");
    b.bind(Bind::Int(q.after_pk));
    b.push(" ORDER BY r.pk LIMIT ");
    b.bind(Bind::Int(q.limit));
    b
}

/// The live groups of user `user_pk` of the connection: columns `id, display_name`.
pub fn user_groups_sql(dialect: Dialect, connection_id: &str, user_pk: i64) -> SqlBuilder {
    let mut b = SqlBuilder::new(dialect);
    b.push(match dialect {
        Dialect::Sqlite => "SELECT g.id, json_extract(g.doc, '$.displayName') AS display_name",
        Dialect::Postgres => "SELECT g.id, g.doc->>'displayName' AS display_name",
    });
    b.push(" FROM group_members m JOIN resources g ON g.pk = m.group_pk WHERE m.connection_id = ");
    b.text(connection_id);
    b.push(" AND m.member_pk = ");
    b.bind(Bind::Int(user_pk));
    b.push(" AND g.deleted_us IS NULL ORDER BY g.pk");
    b
}

/// The groups query: columns `pk, id, connection_id, external_id, display_name, member_count,
/// created_us, modified_us`, ordered by `pk`.
pub fn groups_sql(dialect: Dialect, org_id: &str, q: &GroupQuery) -> SqlBuilder {
    let mut b = SqlBuilder::new(dialect);
    b.push(match dialect {
        Dialect::Sqlite => {
            "SELECT r.pk, r.id, r.connection_id, r.external_id, json_extract(r.doc, '$.displayName') AS display_name,"
        }
        Dialect::Postgres => {
            "SELECT r.pk, r.id, r.connection_id, r.external_id, r.doc->>'displayName' AS display_name,"
        }
    });
    b.push(
        " (SELECT count(*) FROM group_members m WHERE m.connection_id = r.connection_id AND m.group_pk = r.pk) AS member_count, r.created_us, r.modified_us
         FROM resources r WHERE r.kind = 'Group' AND r.deleted_us IS NULL AND ",
    );
    in_org(&mut b, org_id, q.connection_id.as_deref(), q.include_staging);
    if let Some(id) = &q.id {
        b.push(" AND r.id = ");
        b.text(id.clone());
    }
    if let Some(n) = &q.display_name {
        b.push(" AND r.display_name_ci = ");
        b.text(n.clone());
    }
    if let Some(x) = &q.external_id {
        b.push(" AND r.external_id = ");
        b.text(x.clone());
    }
    b.push(" AND r.pk > ");
    b.bind(Bind::Int(q.after_pk));
    b.push(" ORDER BY r.pk LIMIT ");
    b.bind(Bind::Int(q.limit));
    b
}

/// The members of group `group_pk` of the connection after `after_pk`: columns `pk, id, kind,
/// name, status`.
pub fn members_sql(dialect: Dialect, connection_id: &str, group_pk: i64, after_pk: i64, limit: i64) -> SqlBuilder {
    let mut b = SqlBuilder::new(dialect);
    b.push(&format!(
        "SELECT r.pk, r.id, r.kind, {} AS name, CASE WHEN r.kind = 'User' THEN {} END AS status
         FROM group_members m JOIN resources r ON r.pk = m.member_pk WHERE m.connection_id = ",
        match dialect {
            Dialect::Sqlite => "coalesce(json_extract(r.doc, '$.userName'), json_extract(r.doc, '$.displayName'))",
            Dialect::Postgres => "coalesce(r.doc->>'userName', r.doc->>'displayName')",
        },
        status_sql(dialect)
    ));
    b.text(connection_id);
    b.push(" AND m.group_pk = ");
    b.bind(Bind::Int(group_pk));
    b.push(" AND m.member_pk > ");
    b.bind(Bind::Int(after_pk));
    b.push(" ORDER BY m.member_pk LIMIT ");
    b.bind(Bind::Int(limit));
    b
}

/// Parses the `roles` column (a JSON array of keys).
pub fn parse_roles(text: Option<&str>) -> Vec<String> {
    text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default()
}

/// Parses the `status` column.
pub fn parse_status(text: &str) -> UserStatus {
    text.parse().unwrap_or(UserStatus::Deleted)
}
