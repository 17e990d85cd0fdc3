//! The statements of the grant engine (effective roles and workspaces, [`crate::roles`]), written
//! once for both databases over [`GrantDb`]: a connection the engine runs statements on. On SQLite
//! that is the writer's handle through rusqlite, run synchronously inside a resource write of the
//! group commit (or inside a read of the inline reader, for a preview); on PostgreSQL the write
//! transaction. Statements use `$n` placeholders on both; the few real differences (lists, the JSON
//! document as text) are behind [`Dialect`].

use crate::StoreResult;
use crate::backend::Backend;
use crate::model::{ResourceKind, WriteContext};
use crate::roles::{
    ConfigBind, GrantKind, GroupFacts, RoleChange, RoleConfig, RoleMatch, RolePreview, RoleScope, UserFacts, UserRef,
    app_roles_of, diff_roles,
};
use crate::sql::Dialect;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};

/// A value bound to a statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Int(i64),
    Real(f64),
    Text(&'a str),
    OptText(Option<&'a str>),
    OptBool(Option<bool>),
    /// A list, for [`in_list`] and [`elements`]: a JSON array on SQLite, an array on PostgreSQL.
    Ints(&'a [i64]),
    Texts(&'a [String]),
    OptTexts(&'a [Option<String>]),
}

/// A value read from a row (a boolean reads as 0 or 1).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
}

/// Typed reads of a cell; the text ones take the text out.
impl Cell {
    pub(crate) fn opt_int(&self) -> Option<i64> {
        match self {
            Cell::Int(v) => Some(*v),
            _ => None,
        }
    }
    pub(crate) fn int(&self) -> i64 {
        self.opt_int().unwrap_or_default()
    }
    pub(crate) fn opt_text(&mut self) -> Option<String> {
        match std::mem::replace(self, Cell::Null) {
            Cell::Text(s) => Some(s),
            Cell::Int(v) => Some(v.to_string()),
            Cell::Null => None,
        }
    }
    pub(crate) fn text(&mut self) -> String {
        self.opt_text().unwrap_or_default()
    }
}

/// A connection the grant engine runs on, inside the caller's transaction.
pub(crate) trait GrantDb {
    const DIALECT: Dialect;
    /// The rows of a statement.
    async fn rows(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<Vec<Cell>>>;
    /// Runs a statement.
    async fn run(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<()>;
    /// Records events of one type and resource in the transaction, one per item of `data`.
    async fn record_events(
        &mut self,
        ctx: &WriteContext,
        kind: &'static str,
        resource: Option<(ResourceKind, &str)>,
        data: Vec<Value>,
    ) -> StoreResult<()>;
    /// Records an event in the transaction.
    async fn grant_event(
        &mut self,
        ctx: &WriteContext,
        kind: &'static str,
        resource: Option<(ResourceKind, &str)>,
        data: Value,
    ) -> StoreResult<()> {
        self.record_events(ctx, kind, resource, vec![data]).await
    }
    /// A mark of the events recorded so far, for [`GrantDb::guard`].
    async fn events_mark(&mut self) -> StoreResult<i64>;
    /// The guard against mass deprovisioning ([`crate::guard`]) on the events recorded since `mark`.
    async fn guard(&mut self, ctx: &WriteContext, mark: i64) -> StoreResult<()>;
}

/// The first row of a statement.
pub(crate) async fn first<D: GrantDb>(db: &mut D, sql: &str, args: &[Arg<'_>]) -> StoreResult<Option<Vec<Cell>>> {
    Ok(db.rows(sql, args).await?.into_iter().next())
}

/// `expr` is one of the list bound at `$n` (of SQL type `ty` on PostgreSQL).
pub(crate) fn in_list(d: Dialect, expr: &str, n: u8, ty: &str) -> String {
    match d {
        Dialect::Sqlite => format!("{expr} IN (SELECT value FROM json_each(${n}))"),
        Dialect::Postgres => format!("{expr} = ANY(${n}::{ty}[])"),
    }
}

/// The rows `e(v)` of the list bound at `$n` (of SQL type `ty` on PostgreSQL), for a `FROM`.
pub(crate) fn elements(d: Dialect, n: u8, ty: &str) -> String {
    match d {
        Dialect::Sqlite => format!("(SELECT value AS v FROM json_each(${n})) AS e"),
        Dialect::Postgres => format!("UNNEST(${n}::{ty}[]) AS e(v)"),
    }
}

/// A resource's document as text.
pub(crate) fn doc_text(d: Dialect, alias: &str) -> String {
    match d {
        Dialect::Sqlite => format!("{alias}.doc"),
        Dialect::Postgres => format!("{alias}.doc::text"),
    }
}

/// A predicate on `r` (a user row of the connection bound at `$1`) selecting the scope, and its
/// arguments.
fn scope_sql<'a>(d: Dialect, connection_id: &'a str, scope: &'a RoleScope) -> (String, Vec<Arg<'a>>) {
    let mut args = vec![Arg::Text(connection_id)];
    let pred = match scope {
        RoleScope::Users(pks) => {
            args.push(Arg::Ints(pks));
            in_list(d, "r.pk", 2, "bigint")
        }
        RoleScope::MembersOf(g) => {
            args.push(Arg::Int(*g));
            "r.pk IN (SELECT member_pk FROM group_members WHERE connection_id = $1 AND group_pk = $2)".to_string()
        }
        RoleScope::Connection => "1 = 1".to_string(),
    };
    (pred, args)
}

/// The organization's grants of `kind` and the defaults and mappings that apply on the connection.
pub(crate) async fn role_config<D: GrantDb>(
    db: &mut D,
    kind: GrantKind,
    org_id: &str,
    connection_id: &str,
) -> StoreResult<RoleConfig> {
    let [keys_sql, defaults_sql, mappings_sql] = kind.config_sql();
    let args = |binds: &[ConfigBind]| -> Vec<Arg<'_>> {
        binds
            .iter()
            .map(|b| match b {
                ConfigBind::Org => Arg::Text(org_id),
                ConfigBind::Connection => Arg::Text(connection_id),
            })
            .collect()
    };
    let grants: Vec<(String, String)> = db
        .rows(keys_sql.0, &args(keys_sql.1))
        .await?
        .into_iter()
        .map(|mut r| (r[0].text(), r[1].text()))
        .collect();
    if grants.is_empty() {
        return Ok(RoleConfig::default());
    }
    let defaults: Vec<String> = db
        .rows(defaults_sql.0, &args(defaults_sql.1))
        .await?
        .into_iter()
        .map(|mut r| r[0].text())
        .collect();
    let mappings: Vec<(String, String, String)> = db
        .rows(mappings_sql.0, &args(mappings_sql.1))
        .await?
        .into_iter()
        .map(|mut r| (r[0].text(), r[1].text(), r[2].text()))
        .collect();
    Ok(RoleConfig::of_kind(kind, grants, defaults, mappings))
}

/// Users in scope (live or not) with their live groups; app roles only when asked.
pub(crate) async fn user_facts<D: GrantDb>(
    db: &mut D,
    connection_id: &str,
    scope: &RoleScope,
    with_app_roles: bool,
) -> StoreResult<Vec<UserFacts>> {
    let (pred, args) = scope_sql(D::DIALECT, connection_id, scope);
    let doc = if with_app_roles {
        doc_text(D::DIALECT, "r")
    } else {
        "NULL".into()
    };
    let sql = format!(
        "SELECT r.pk, r.id, r.active, r.deleted_us, {doc} AS doc
         FROM resources r WHERE r.connection_id = $1 AND r.kind = 'User' AND {pred} ORDER BY r.pk"
    );
    let mut users: Vec<UserFacts> = db
        .rows(&sql, &args)
        .await?
        .into_iter()
        .map(|mut row| UserFacts {
            pk: row[0].int(),
            id: row[1].text(),
            connection_id: connection_id.to_string(),
            active: row[3].opt_int().is_none() && row[2].opt_int() != Some(0),
            app_roles: row[4]
                .opt_text()
                .and_then(|d| serde_json::from_str::<Value>(&d).ok())
                .map(|d| app_roles_of(&d))
                .unwrap_or_default(),
            groups: Vec::new(),
        })
        .collect();
    if users.is_empty() {
        return Ok(users);
    }
    let sql = format!(
        "SELECT m.member_pk, g.id, g.external_id, g.display_name_ci
         FROM group_members m JOIN resources g ON g.pk = m.group_pk AND g.deleted_us IS NULL
         WHERE m.connection_id = $1 AND m.member_pk IN (SELECT r.pk FROM resources r WHERE r.connection_id = $1 AND r.kind = 'User' AND {pred})"
    );
    let index: HashMap<i64, usize> = users.iter().enumerate().map(|(i, u)| (u.pk, i)).collect();
    for mut row in db.rows(&sql, &args).await? {
        if let Some(&i) = index.get(&row[0].int()) {
            users[i].groups.push(GroupFacts {
                id: row[1].text(),
                external_id: row[2].opt_text(),
                name_ci: row[3].opt_text(),
            });
        }
    }
    Ok(users)
}

/// The stored effective grants of `kind` of the users in scope.
async fn stored_grants<D: GrantDb>(
    db: &mut D,
    kind: GrantKind,
    connection_id: &str,
    scope: &RoleScope,
) -> StoreResult<HashMap<i64, BTreeSet<String>>> {
    let (pred, args) = scope_sql(D::DIALECT, connection_id, scope);
    let (table, column) = kind.held();
    let sql = format!(
        "SELECT ur.user_pk, ur.{column} FROM {table} ur
         WHERE ur.connection_id = $1 AND ur.user_pk IN (SELECT r.pk FROM resources r WHERE r.connection_id = $1 AND r.kind = 'User' AND {pred})"
    );
    let mut out: HashMap<i64, BTreeSet<String>> = HashMap::new();
    for mut row in db.rows(&sql, &args).await? {
        out.entry(row[0].int()).or_default().insert(row[1].text());
    }
    Ok(out)
}

/// Grants `ids` of `kind` to a user of the connection.
async fn grant<D: GrantDb>(
    db: &mut D,
    kind: GrantKind,
    connection_id: &str,
    user_pk: i64,
    ids: &[String],
) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let (table, column) = kind.held();
    let sql = format!(
        "INSERT INTO {table} (connection_id, user_pk, {column}) SELECT $1, $2, e.v FROM {} WHERE true
         ON CONFLICT DO NOTHING",
        elements(D::DIALECT, 3, "text")
    );
    db.run(&sql, &[Arg::Text(connection_id), Arg::Int(user_pk), Arg::Texts(ids)])
        .await
}

/// Takes `ids` of `kind` from a user of the connection.
async fn revoke<D: GrantDb>(
    db: &mut D,
    kind: GrantKind,
    connection_id: &str,
    user_pk: i64,
    ids: &[String],
) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let (table, column) = kind.held();
    let sql = format!(
        "DELETE FROM {table} WHERE connection_id = $1 AND user_pk = $2 AND {}",
        in_list(D::DIALECT, column, 3, "text")
    );
    db.run(&sql, &[Arg::Text(connection_id), Arg::Int(user_pk), Arg::Texts(ids)])
        .await
}

/// Recomputes the effective grants of `kind` (roles or workspaces) of the users in `scope` on one
/// connection, writing the differences and one `user.roles_changed` (`user.workspaces_changed`)
/// event per user whose set changed, as if `without_grant` granted nothing. Returns how many users
/// changed.
pub(crate) async fn recompute<D: GrantDb>(
    db: &mut D,
    kind: GrantKind,
    ctx: &WriteContext,
    connection_id: &str,
    scope: RoleScope,
    without_grant: Option<&str>,
) -> StoreResult<usize> {
    if let RoleScope::Users(pks) = &scope
        && pks.is_empty()
    {
        return Ok(0);
    }
    let org_id = ctx.org_id.as_str();
    let mut config = role_config(db, kind, org_id, connection_id).await?;
    if config.is_empty() {
        return Ok(0);
    }
    if let Some(r) = without_grant {
        config.exclude(r);
    }
    let users = user_facts(db, connection_id, &scope, config.uses_app_roles()).await?;
    let mut stored = stored_grants(db, kind, connection_id, &scope).await?;
    let mut changed = 0;
    for user in users {
        let before = stored.remove(&user.pk).unwrap_or_default();
        let after = config.effective(&user);
        if before == after {
            continue;
        }
        let added: Vec<String> = after.difference(&before).cloned().collect();
        let removed: Vec<String> = before.difference(&after).cloned().collect();
        revoke(db, kind, connection_id, user.pk, &removed).await?;
        grant(db, kind, connection_id, user.pk, &added).await?;
        let event_ctx = WriteContext {
            org_id: org_id.to_string(),
            connection_id: user.connection_id.clone(),
            ..ctx.clone()
        };
        let data = json!({
            "before": config.keys_of(&before),
            "after": config.keys_of(&after),
            "added": config.keys_of(&added.into_iter().collect()),
            "removed": config.keys_of(&removed.into_iter().collect()),
        });
        db.grant_event(
            &event_ctx,
            kind.changed_event(),
            Some((ResourceKind::User, &user.id)),
            data,
        )
        .await?;
        changed += 1;
    }
    Ok(changed)
}

/// Recomputes the effective roles and workspaces of the users in `scope` on the write's
/// connection, in a resource write's transaction. Without roles or workspaces in the organization
/// there is nothing to compute (and, since they are always kept up to date, nothing to remove).
pub(crate) async fn recompute_grants<D: GrantDb>(
    db: &mut D,
    ctx: &WriteContext,
    scope: RoleScope,
) -> StoreResult<usize> {
    if let RoleScope::Users(pks) = &scope
        && pks.is_empty()
    {
        return Ok(0);
    }
    let any = first(
        db,
        "SELECT EXISTS (SELECT 1 FROM roles WHERE org_id = $1) OR EXISTS (SELECT 1 FROM workspaces WHERE org_id = $1)",
        &[Arg::Text(&ctx.org_id)],
    )
    .await?;
    if any.is_none_or(|r| r[0].int() == 0) {
        return Ok(0);
    }
    let mut changed = 0;
    for kind in GrantKind::ALL {
        changed += recompute(db, kind, ctx, &ctx.connection_id, scope.clone(), None).await?;
    }
    Ok(changed)
}

/// A recomputation a management write runs in its transaction (`ctx` names the organization, and
/// the connection where there is one).
#[derive(Debug, Clone, Copy)]
pub(crate) enum GrantJob<'a> {
    /// Every user of every connection of the organization, as if `without` (about to be deleted)
    /// granted nothing.
    Org { kind: GrantKind, without: Option<&'a str> },
    /// Every user of the connection.
    Connection { kind: GrantKind },
    /// The users a mapping can affect: members of the matching groups, or every user of the
    /// connection for app-role mappings.
    Mapping { kind: GrantKind, matches: &'a RoleMatch },
    /// The workspaces of the organization's groups that have none (creating a workspace for every
    /// group was turned on).
    GroupWorkspaces,
}

/// Runs `job` on `db`.
pub(crate) async fn run_job<D: GrantDb>(db: &mut D, ctx: &WriteContext, job: GrantJob<'_>) -> StoreResult<()> {
    let connection_id = ctx.connection_id.as_str();
    match job {
        GrantJob::Org { kind, without } => {
            let connections = db
                .rows(
                    "SELECT id FROM scim_connections WHERE org_id = $1",
                    &[Arg::Text(&ctx.org_id)],
                )
                .await?;
            for mut c in connections {
                recompute(db, kind, ctx, &c[0].text(), RoleScope::Connection, without).await?;
            }
        }
        GrantJob::Connection { kind } => {
            recompute(db, kind, ctx, connection_id, RoleScope::Connection, None).await?;
        }
        GrantJob::Mapping { kind, matches } => {
            let value = matches.folded();
            let groups = match matches {
                RoleMatch::GroupId(raw) => {
                    let sql =
                        "SELECT pk FROM resources WHERE connection_id = $1 AND kind = 'Group' AND deleted_us IS NULL
                         AND (id = $2 OR external_id = $2 OR lower(id) = $3 OR lower(external_id) = $3)";
                    let args = [Arg::Text(connection_id), Arg::Text(raw.trim()), Arg::Text(&value)];
                    db.rows(sql, &args).await?
                }
                RoleMatch::GroupName(_) => {
                    let sql =
                        "SELECT pk FROM resources WHERE connection_id = $1 AND kind = 'Group' AND deleted_us IS NULL
                         AND display_name_ci = $2";
                    db.rows(sql, &[Arg::Text(connection_id), Arg::Text(&value)]).await?
                }
                RoleMatch::AppRole(_) => {
                    recompute(db, kind, ctx, connection_id, RoleScope::Connection, None).await?;
                    return Ok(());
                }
            };
            for g in groups {
                recompute(db, kind, ctx, connection_id, RoleScope::MembersOf(g[0].int()), None).await?;
            }
        }
        GrantJob::GroupWorkspaces => crate::workspaces::create_group_workspaces(db, ctx).await?,
    }
    Ok(())
}

/// What `change` would do to the effective grants of `kind` of the users of a connection, read on
/// `db` (one snapshot). `None` when the connection, or the mapping to remove, does not exist.
pub(crate) async fn preview<D: GrantDb>(
    db: &mut D,
    kind: GrantKind,
    connection_id: &str,
    change: &RoleChange,
    sample: usize,
) -> StoreResult<Option<RolePreview>> {
    let org = first(
        db,
        "SELECT org_id FROM scim_connections WHERE id = $1",
        &[Arg::Text(connection_id)],
    )
    .await?;
    let Some(org_id) = org.map(|mut r| r[0].text()) else {
        return Ok(None);
    };
    let before = role_config(db, kind, &org_id, connection_id).await?;
    let removed = match change {
        RoleChange::RemoveMapping { mapping_id } => {
            let (_, grant_column) = kind.held();
            let sql = format!(
                "SELECT match_kind, match_value, {grant_column} FROM {} WHERE connection_id = $1 AND id = $2",
                kind.mappings_table()
            );
            match first(db, &sql, &[Arg::Text(connection_id), Arg::Text(mapping_id)]).await? {
                Some(mut m) => Some((m[0].text(), m[1].text(), m[2].text())),
                None => return Ok(None),
            }
        }
        _ => None,
    };
    let after = before.changed(change, removed.as_ref())?;
    let with_app_roles = before.uses_app_roles() || after.uses_app_roles();
    let users = user_facts(db, connection_id, &RoleScope::Connection, with_app_roles).await?;
    let diff = diff_roles(&before, &after, users, sample);
    let pks = diff.sample_pks();
    let mut refs = HashMap::new();
    if !pks.is_empty() {
        let sql = format!(
            "SELECT pk, id, {} FROM resources r WHERE r.connection_id = $1 AND {}",
            doc_text(D::DIALECT, "r"),
            in_list(D::DIALECT, "pk", 2, "bigint")
        );
        for mut row in db.rows(&sql, &[Arg::Text(connection_id), Arg::Ints(&pks)]).await? {
            let doc = serde_json::from_str::<Value>(&row[2].text()).unwrap_or(Value::Null);
            refs.insert(row[0].int(), UserRef::of(row[1].text(), &doc));
        }
    }
    Ok(Some(diff.named(&refs)))
}

/// The protected e-mail address (or userName) that user `pk` of the organization matches, if any.
pub(crate) async fn protected_match<D: GrantDb>(
    db: &mut D,
    org_id: &str,
    pk: i64,
    doc: &Value,
) -> StoreResult<Option<String>> {
    let user_name = crate::rows::folded_user_name(doc);
    let sql = "SELECT email FROM protected_users WHERE org_id = $1
           AND (email_ci = $2 OR email_ci IN (SELECT value_ci FROM resource_emails WHERE resource_pk = $3)) LIMIT 1";
    let row = first(db, sql, &[Arg::Text(org_id), Arg::Text(&user_name), Arg::Int(pk)]).await?;
    Ok(row.map(|mut r| r[0].text()))
}

/// What the role and workspace store bodies ([`crate::roles_stores`], [`crate::workspaces`]) need
/// of a backend beyond [`Backend`]: where the grant engine runs.
pub(crate) trait GrantBackend: Backend {
    /// Runs `job` in the write transaction.
    async fn grant_job(tx: &mut Self::Tx, ctx: &WriteContext, job: GrantJob<'_>) -> StoreResult<()>;
    /// [`preview`] on one consistent read, writing nothing.
    async fn preview_grants(
        &self,
        kind: GrantKind,
        connection_id: &str,
        change: &RoleChange,
        sample: usize,
    ) -> StoreResult<Option<RolePreview>>;
}
