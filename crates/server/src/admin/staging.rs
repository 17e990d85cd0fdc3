//! Staging connections (`rollcall_store::staging`): putting a connection into staging, taking it
//! live, and the match report that compares the application's accounts with what the identity
//! provider pushed. See docs/go-live.md.

use super::{Admin, AdminError, AdminResult, admin_err, no_connection};
use crate::service::rfc3339;
use rollcall_store::index::fold;
use rollcall_store::staging::{self, MatchAccount, MatchUser};
use rollcall_store::{Connection, Snapshot, StagingOutcome, WriteContext};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use utoipa::ToSchema;

/// Each list of a match report holds at most this many items (the counts are exact).
pub const REPORT_LIST_LIMIT: usize = 1000;

/// An account of the application, as uploaded.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MatchAccountView {
    #[schema(required = true)]
    pub email: Option<String>,
    #[schema(required = true)]
    pub external_id: Option<String>,
    /// Its roles in the application; `null` when not given (not compared).
    #[schema(required = true)]
    pub roles: Option<Vec<String>>,
}

impl From<&MatchAccount> for MatchAccountView {
    fn from(a: &MatchAccount) -> Self {
        MatchAccountView {
            email: a.email.clone(),
            external_id: a.external_id.clone(),
            roles: a.roles.clone(),
        }
    }
}

/// A user the identity provider pushed (not deleted).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MatchUserView {
    /// Rollcall's (SCIM) id.
    pub id: String,
    #[schema(required = true)]
    pub user_name: Option<String>,
    #[schema(required = true)]
    pub external_id: Option<String>,
    /// Its e-mail addresses, lower case.
    pub emails: Vec<String>,
    /// `active` or `deactivated`.
    #[schema(example = "active")]
    pub status: String,
    /// Its effective role keys (none unless active).
    pub roles: Vec<String>,
}

impl From<&MatchUser> for MatchUserView {
    fn from(u: &MatchUser) -> Self {
        MatchUserView {
            id: u.id.clone(),
            user_name: u.user_name.clone(),
            external_id: u.external_id.clone(),
            emails: u.emails.clone(),
            status: u.status.as_str().to_string(),
            roles: u.roles.clone(),
        }
    }
}

/// How an account and a user were matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    Email,
    ExternalId,
    /// Both the e-mail address and the external id.
    EmailAndExternalId,
}

impl MatchedBy {
    /// How the console says it.
    pub fn label(&self) -> &'static str {
        match self {
            MatchedBy::Email => "e-mail",
            MatchedBy::ExternalId => "external id",
            MatchedBy::EmailAndExternalId => "e-mail and external id",
        }
    }
}

/// An account and the one user it matched (and no other account matched that user).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MatchedPair {
    pub account: MatchAccountView,
    pub user: MatchUserView,
    pub by: MatchedBy,
}

/// What is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AmbiguityKind {
    /// One account matches several users (by e-mail and external id, or an address two users share).
    AccountMatchesSeveralUsers,
    /// One user is matched by several accounts.
    UserMatchesSeveralAccounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Ambiguity {
    pub kind: AmbiguityKind,
    pub accounts: Vec<MatchAccountView>,
    pub users: Vec<MatchUserView>,
}

/// A matched account whose roles in the application differ from its effective roles in Rollcall
/// (role keys compared ignoring case).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RoleDifference {
    pub account: MatchAccountView,
    pub user_id: String,
    pub app_roles: Vec<String>,
    pub idp_roles: Vec<String>,
    /// Roles the account would gain at go-live.
    pub would_gain: Vec<String>,
    /// Roles it would lose.
    pub would_lose: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct MatchCounts {
    pub matched: usize,
    pub idp_only: usize,
    pub app_only: usize,
    pub ambiguous: usize,
    pub role_differences: usize,
}

/// The match report: the application's accounts against the connection's users, as they are now.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MatchReport {
    pub connection_id: String,
    /// Whether the connection is still in staging.
    pub staging: bool,
    /// When the accounts were uploaded; `null`: none were (every user is then `idp_only`).
    #[schema(required = true, format = DateTime)]
    pub uploaded_at: Option<String>,
    /// Accounts uploaded.
    pub accounts: usize,
    /// Users of the connection (not deleted).
    pub idp_users: usize,
    pub counts: MatchCounts,
    /// Accounts matched to exactly one user (by e-mail ignoring case, or external id).
    pub matched: Vec<MatchedPair>,
    /// Users no account matches: they would be new accounts.
    pub idp_only: Vec<MatchUserView>,
    /// Accounts no user matches: they would lose access.
    pub app_only: Vec<MatchAccountView>,
    pub ambiguous: Vec<Ambiguity>,
    pub role_differences: Vec<RoleDifference>,
    /// Whether a list was cut at 1000 items (the counts are exact).
    pub truncated: bool,
}

fn roles_of(keys: &[String]) -> BTreeSet<String> {
    keys.iter().map(|k| fold(k)).collect()
}

/// Compares `accounts` with `users` (see [`MatchReport`]).
pub fn compare(accounts: &[MatchAccount], users: &[MatchUser]) -> (MatchCounts, MatchLists) {
    let mut by_email: HashMap<String, Vec<usize>> = HashMap::new();
    let mut by_external: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, u) in users.iter().enumerate() {
        let mut addresses: BTreeSet<String> = u.emails.iter().map(|e| fold(e)).collect();
        if let Some(n) = u.user_name.as_deref().filter(|n| n.contains('@')) {
            addresses.insert(fold(n));
        }
        for a in addresses {
            by_email.entry(a).or_default().push(i);
        }
        if let Some(x) = &u.external_id {
            by_external.entry(x.as_str()).or_default().push(i);
        }
    }
    // Each account's candidate users, with how each was found.
    let mut candidates: Vec<Vec<(usize, MatchedBy)>> = Vec::with_capacity(accounts.len());
    let mut matched_by: Vec<Vec<usize>> = vec![Vec::new(); users.len()];
    for (ai, a) in accounts.iter().enumerate() {
        let mut found: Vec<(usize, MatchedBy)> = Vec::new();
        let email_hits = a
            .email
            .as_deref()
            .and_then(|e| by_email.get(&fold(e)))
            .cloned()
            .unwrap_or_default();
        let ext_hits = a
            .external_id
            .as_deref()
            .and_then(|x| by_external.get(x))
            .cloned()
            .unwrap_or_default();
        for &u in &email_hits {
            let by = if ext_hits.contains(&u) {
                MatchedBy::EmailAndExternalId
            } else {
                MatchedBy::Email
            };
            found.push((u, by));
        }
        for &u in &ext_hits {
            if !email_hits.contains(&u) {
                found.push((u, MatchedBy::ExternalId));
            }
        }
        found.sort_by_key(|f| f.0);
        for (u, _) in &found {
            matched_by[*u].push(ai);
        }
        candidates.push(found);
    }
    let mut lists = MatchLists::default();
    let mut counts = MatchCounts::default();
    let mut ambiguous_users: BTreeSet<usize> = BTreeSet::new();
    for (ui, accs) in matched_by.iter().enumerate() {
        if accs.len() > 1 {
            ambiguous_users.insert(ui);
            counts.ambiguous += 1;
            lists
                .ambiguous
                .push((AmbiguityKind::UserMatchesSeveralAccounts, accs.clone(), vec![ui]));
        } else if accs.is_empty() {
            counts.idp_only += 1;
            lists.idp_only.push(ui);
        }
    }
    for (ai, found) in candidates.iter().enumerate() {
        match found.as_slice() {
            [] => {
                counts.app_only += 1;
                lists.app_only.push(ai);
            }
            [(u, by)] => {
                if ambiguous_users.contains(u) {
                    continue;
                }
                counts.matched += 1;
                lists.matched.push((ai, *u, *by));
                if let Some(app) = &accounts[ai].roles {
                    let (app, idp) = (roles_of(app), roles_of(&users[*u].roles));
                    if app != idp {
                        counts.role_differences += 1;
                        lists.role_differences.push((ai, *u));
                    }
                }
            }
            several => {
                counts.ambiguous += 1;
                lists.ambiguous.push((
                    AmbiguityKind::AccountMatchesSeveralUsers,
                    vec![ai],
                    several.iter().map(|f| f.0).collect(),
                ));
            }
        }
    }
    (counts, lists)
}

/// The report's lists as positions in the accounts and users compared.
#[derive(Debug, Default, PartialEq)]
pub struct MatchLists {
    pub matched: Vec<(usize, usize, MatchedBy)>,
    pub idp_only: Vec<usize>,
    pub app_only: Vec<usize>,
    pub ambiguous: Vec<(AmbiguityKind, Vec<usize>, Vec<usize>)>,
    pub role_differences: Vec<(usize, usize)>,
}

fn report(connection: &Connection, upload: Option<staging::MatchUpload>, users: &[MatchUser]) -> MatchReport {
    let (uploaded_us, accounts) = match upload {
        Some(u) => (Some(u.uploaded_us), u.accounts),
        None => (None, Vec::new()),
    };
    let (counts, lists) = compare(&accounts, users);
    let limit = REPORT_LIST_LIMIT;
    let truncated = [
        lists.matched.len(),
        lists.idp_only.len(),
        lists.app_only.len(),
        lists.ambiguous.len(),
        lists.role_differences.len(),
    ]
    .iter()
    .any(|n| *n > limit);
    let acc = |i: usize| MatchAccountView::from(&accounts[i]);
    let usr = |i: usize| MatchUserView::from(&users[i]);
    MatchReport {
        connection_id: connection.id.clone(),
        staging: connection.staged_us.is_some(),
        uploaded_at: uploaded_us.map(rfc3339),
        accounts: accounts.len(),
        idp_users: users.len(),
        counts,
        matched: lists
            .matched
            .iter()
            .take(limit)
            .map(|(a, u, by)| MatchedPair {
                account: acc(*a),
                user: usr(*u),
                by: *by,
            })
            .collect(),
        idp_only: lists.idp_only.iter().take(limit).map(|u| usr(*u)).collect(),
        app_only: lists.app_only.iter().take(limit).map(|a| acc(*a)).collect(),
        ambiguous: lists
            .ambiguous
            .iter()
            .take(limit)
            .map(|(kind, a, u)| Ambiguity {
                kind: *kind,
                accounts: a.iter().map(|i| acc(*i)).collect(),
                users: u.iter().map(|i| usr(*i)).collect(),
            })
            .collect(),
        role_differences: lists
            .role_differences
            .iter()
            .take(limit)
            .map(|(a, u)| {
                let app = roles_of(accounts[*a].roles.as_deref().unwrap_or_default());
                let idp = roles_of(&users[*u].roles);
                RoleDifference {
                    account: acc(*a),
                    user_id: users[*u].id.clone(),
                    app_roles: app.iter().cloned().collect(),
                    idp_roles: idp.iter().cloned().collect(),
                    would_gain: idp.difference(&app).cloned().collect(),
                    would_lose: app.difference(&idp).cloned().collect(),
                }
            })
            .collect(),
        truncated,
    }
}

/// Reads accounts from CSV text: a header naming the columns `email`, `external_id` and `roles`
/// (any order, any of them; roles separated by `;`), or no header and the columns in that order.
/// Quoted fields (`"a, b"`, `""` for a quote) are understood; blank lines are skipped.
pub fn parse_accounts_csv(text: &str) -> Result<Vec<MatchAccount>, String> {
    let rows = csv_rows(text)?;
    let mut rows = rows.into_iter().filter(|r| r.iter().any(|f| !f.trim().is_empty()));
    let Some(first) = rows.next() else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = first.iter().map(|f| fold(f.trim())).collect();
    let known = |n: &str| matches!(n, "email" | "external_id" | "roles");
    let (columns, pending): (Vec<String>, Option<Vec<String>>) = if names.iter().all(|n| known(n)) {
        (names, None)
    } else if names.iter().any(|n| known(n)) {
        let bad: Vec<&String> = names.iter().filter(|n| !known(n)).collect();
        return Err(format!(
            "unknown CSV column(s) {bad:?}: the columns are email, external_id and roles"
        ));
    } else {
        (
            ["email", "external_id", "roles"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Some(first),
        )
    };
    let mut out = Vec::new();
    for (n, row) in pending.into_iter().chain(rows).enumerate() {
        if row.len() > columns.len() {
            return Err(format!(
                "CSV row {} has {} fields; expected at most {}",
                n + 1,
                row.len(),
                columns.len()
            ));
        }
        let mut account = MatchAccount {
            email: None,
            external_id: None,
            roles: None,
        };
        for (name, value) in columns.iter().zip(row) {
            match name.as_str() {
                "email" => account.email = Some(value),
                "external_id" => account.external_id = Some(value),
                _ => {
                    account.roles = Some(
                        value
                            .split(';')
                            .map(|r| r.trim().to_string())
                            .filter(|r| !r.is_empty())
                            .collect(),
                    )
                }
            }
        }
        out.push(account);
        if out.len() > staging::MAX_MATCH_ACCOUNTS {
            return Err(format!(
                "more than {} accounts: one upload holds at most that many",
                staging::MAX_MATCH_ACCOUNTS
            ));
        }
    }
    Ok(out)
}

/// Splits CSV text into rows of fields (RFC 4180, with `\n` or `\r\n` line ends).
fn csv_rows(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut line = 1;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                line += 1;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(format!("CSV: a quoted field opened before line {line} is not closed"));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

impl Admin {
    /// Puts a live connection into staging (`connection.staged`). 409 when it already is, or while
    /// its deprovisioning guard holds events.
    pub async fn stage_connection(&self, by: &WriteContext, connection_id: &str) -> AdminResult<Connection> {
        match self
            .store
            .stage_connection(by, connection_id)
            .await
            .map_err(admin_err)?
        {
            None => Err(no_connection(connection_id)),
            Some(StagingOutcome::Done(c, _)) => Ok(c),
            Some(StagingOutcome::Already(_)) => {
                Err(AdminError::new(409, "the connection is already in staging").with_kind("connection-staging"))
            }
            Some(StagingOutcome::GuardHolds(n)) => Err(AdminError::new(
                409,
                format!(
                    "the deprovisioning guard of this connection holds {n} event(s): release or discard them \
                     before putting it into staging"
                ),
            )
            .with_kind("guard-holds-events")),
        }
    }

    /// Takes a staging connection live: the application receives its current state, then its
    /// changes (`connection.activated`). 409 when it is live already.
    pub async fn activate_connection(
        &self,
        by: &WriteContext,
        connection_id: &str,
    ) -> AdminResult<(Connection, Snapshot)> {
        match self
            .store
            .activate_connection(by, connection_id)
            .await
            .map_err(admin_err)?
        {
            None => Err(no_connection(connection_id)),
            Some(StagingOutcome::Done(c, snapshot)) => {
                self.webhooks().wake();
                Ok((c, snapshot.unwrap_or_default()))
            }
            Some(StagingOutcome::Already(_)) => {
                Err(AdminError::new(409, "the connection is live, not in staging").with_kind("connection-live"))
            }
            Some(StagingOutcome::GuardHolds(_)) => unreachable!("going live does not look at the guard"),
        }
    }

    /// Replaces the accounts of a connection's match report and answers the report.
    pub async fn upload_match_accounts(
        &self,
        by: &WriteContext,
        connection_id: &str,
        accounts: Vec<MatchAccount>,
    ) -> AdminResult<MatchReport> {
        let accounts = staging::normalize_accounts(accounts).map_err(AdminError::invalid)?;
        self.store
            .set_match_accounts(by, connection_id, &accounts)
            .await
            .map_err(admin_err)?
            .ok_or_else(|| no_connection(connection_id))?;
        self.match_report(connection_id).await
    }

    /// A connection's match report, computed now from the uploaded accounts and its users.
    pub async fn match_report(&self, connection_id: &str) -> AdminResult<MatchReport> {
        let connection = self.connection(connection_id).await?;
        let upload = self.store.match_accounts(&connection.id).await?;
        let users = self.store.match_users(&connection.id).await?;
        Ok(report(&connection, upload, &users))
    }

    /// Forgets the uploaded accounts; 404 when there were none.
    pub async fn delete_match_accounts(&self, by: &WriteContext, connection_id: &str) -> AdminResult<()> {
        let connection = self.connection(connection_id).await?;
        if self.store.delete_match_accounts(by, &connection.id).await? {
            Ok(())
        } else {
            Err(AdminError::not_found(
                "no accounts were uploaded for this connection's match report",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcall_store::UserStatus;

    fn user(id: &str, user_name: &str, emails: &[&str], ext: Option<&str>, roles: &[&str]) -> MatchUser {
        MatchUser {
            id: id.into(),
            user_name: Some(user_name.into()),
            external_id: ext.map(String::from),
            emails: emails.iter().map(|e| e.to_string()).collect(),
            status: UserStatus::Active,
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn account(email: Option<&str>, ext: Option<&str>, roles: Option<&[&str]>) -> MatchAccount {
        MatchAccount {
            email: email.map(String::from),
            external_id: ext.map(String::from),
            roles: roles.map(|r| r.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn sorts_accounts_and_users_into_the_five_lists() {
        let users = vec![
            user("u-ann", "ann@example.com", &["ann@example.com"], None, &["admin"]),
            user("u-bob", "bob", &["bob@example.com"], Some("okta-bob"), &["viewer"]),
            user("u-new", "new@example.com", &[], None, &[]),
            // Two users sharing an address: an account with it is ambiguous.
            user("u-s1", "s1", &["shared@example.com"], None, &[]),
            user("u-s2", "s2", &["shared@example.com"], None, &[]),
            // One user two accounts match.
            user("u-dup", "dup", &["dup@example.com"], Some("x-dup"), &[]),
        ];
        let accounts = vec![
            account(Some("ANN@Example.COM"), None, Some(&["Admin"])),
            account(None, Some("okta-bob"), Some(&["admin", "viewer"])),
            account(Some("gone@example.com"), None, None),
            account(Some("shared@example.com"), None, None),
            account(Some("dup@example.com"), None, None),
            account(None, Some("x-dup"), None),
        ];
        let (counts, lists) = compare(&accounts, &users);
        assert_eq!(
            counts,
            MatchCounts {
                matched: 2,
                idp_only: 1,
                app_only: 1,
                ambiguous: 2,
                role_differences: 1
            }
        );
        assert_eq!(
            lists.matched,
            vec![(0, 0, MatchedBy::Email), (1, 1, MatchedBy::ExternalId)]
        );
        assert_eq!(lists.idp_only, vec![2]);
        assert_eq!(lists.app_only, vec![2]);
        assert_eq!(lists.role_differences, vec![(1, 1)]);
        assert!(
            lists
                .ambiguous
                .contains(&(AmbiguityKind::UserMatchesSeveralAccounts, vec![4, 5], vec![5]))
        );
        assert!(
            lists
                .ambiguous
                .contains(&(AmbiguityKind::AccountMatchesSeveralUsers, vec![3], vec![3, 4]))
        );
        // The ambiguous users are in no other list.
        assert!(!lists.idp_only.contains(&3) && !lists.idp_only.contains(&5));
    }

    #[test]
    fn csv_with_and_without_header() {
        let with =
            parse_accounts_csv("roles,email\r\n\"admin; viewer\",ann@example.com\n\n,bob@example.com\n").unwrap();
        assert_eq!(with.len(), 2);
        assert_eq!(with[0].email.as_deref(), Some("ann@example.com"));
        assert_eq!(with[0].roles, Some(vec!["admin".to_string(), "viewer".to_string()]));
        assert_eq!(with[1].roles, Some(vec![]));
        let without = parse_accounts_csv("ann@example.com,okta-1\n\"quoted, \"\"x\"\"\"@example.com\n").unwrap();
        assert_eq!(without[0].external_id.as_deref(), Some("okta-1"));
        assert_eq!(without[0].roles, None);
        assert_eq!(without[1].email.as_deref(), Some("quoted, \"x\"@example.com"));
        assert!(parse_accounts_csv("email,mail\na@b,c\n").is_err());
        assert!(parse_accounts_csv("a@b,1,r,extra\n").is_err());
        assert!(parse_accounts_csv("\"open\n").is_err());
        assert!(parse_accounts_csv("").unwrap().is_empty());
    }
}
