//! The access check the application calls at sign-in: may this user sign in, with which roles and
//! in which workspaces.

use super::{Admin, AdminResult};
use rollcall_store::index::fold;
use rollcall_store::{DirectoryQuery, DirectoryUser, UserStatus};

/// How the access check finds the user.
#[derive(Debug, Clone)]
pub enum UserLookup {
    Id(String),
    Email(String),
    UserName(String),
    ExternalId(String),
}

/// The answer of the access check.
#[derive(Debug, Clone)]
pub struct Access {
    pub allowed: bool,
    /// `active`, `deactivated`, `deleted` or `unknown_user`.
    pub reason: &'static str,
    /// The user decided on (the active one first, when several connections know the address).
    pub user: Option<DirectoryUser>,
    pub roles: Vec<String>,
    /// Effective workspace keys; empty unless allowed.
    pub workspaces: Vec<String>,
}

impl Admin {
    /// Whether a user may sign in (active and not deleted) and its effective roles and workspaces:
    /// one indexed query.
    pub async fn access(&self, org_id: &str, lookup: UserLookup) -> AdminResult<Access> {
        let mut query = DirectoryQuery {
            limit: 20,
            ..Default::default()
        };
        match lookup {
            UserLookup::Id(v) => query.id = Some(v),
            UserLookup::Email(v) => query.email = Some(fold(v.trim())),
            UserLookup::UserName(v) => query.user_name = Some(fold(v.trim())),
            UserLookup::ExternalId(v) => query.external_id = Some(v),
        }
        let users = self.store.directory_users(org_id, &query, false).await?;
        if users.is_empty() {
            // Tell an unknown organization apart from an unknown user.
            self.organization(org_id).await?;
        }
        let chosen = users
            .iter()
            .find(|u| u.status == UserStatus::Active)
            .or_else(|| users.iter().find(|u| u.status == UserStatus::Deactivated))
            .or_else(|| users.first())
            .cloned();
        let Some(user) = chosen else {
            return Ok(Access {
                allowed: false,
                reason: "unknown_user",
                user: None,
                roles: Vec::new(),
                workspaces: Vec::new(),
            });
        };
        let allowed = user.status == UserStatus::Active;
        Ok(Access {
            allowed,
            reason: user.status.as_str(),
            roles: if allowed { user.roles.clone() } else { Vec::new() },
            workspaces: if allowed { user.workspaces.clone() } else { Vec::new() },
            user: Some(user),
        })
    }
}
