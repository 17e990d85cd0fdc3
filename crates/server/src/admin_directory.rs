//! Roles, mappings, default roles, protected users, connection policy, and the read-only directory
//! (users with status, profile, groups and effective roles; groups with members; the access check),
//! independent of HTTP. The management API calls these.

use crate::admin::{Admin, AdminError, AdminResult, validate_name};
use rollcall_scim::policy::{AttributePolicy, synced_keeps};
use rollcall_scim::schema::SchemaRegistry;
use rollcall_store::index::fold;
use rollcall_store::{
    Connection, ConnectionPolicy, DirectoryGroup, DirectoryMember, DirectoryQuery, DirectoryUser, GroupQuery, NewRole,
    NewRoleMapping, ProtectedUser, Role, RoleMapping, RoleMatch, RoleUpdate, StoreError, UserStatus, WriteContext,
};
use std::collections::HashMap;

/// Longest role key, description or match value, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// Store errors for the management API: the store's SCIM-style 400s are validation failures here.
fn admin_err(e: StoreError) -> AdminError {
    let e = AdminError::from(e);
    if e.status == 400 {
        AdminError::invalid(e.detail)
    } else {
        e
    }
}

fn no_role(id: &str) -> AdminError {
    AdminError::not_found(format!("no role \"{id}\" in this organization"))
}

/// Trimmed text of 1 to [`MAX_TEXT_CHARS`] characters without control characters.
fn validate_text(what: &str, s: &str) -> AdminResult<String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(AdminError::invalid(format!("{what} must not be empty")));
    }
    if s.chars().count() > MAX_TEXT_CHARS {
        return Err(AdminError::invalid(format!(
            "{what} is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(AdminError::invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(s.to_string())
}

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
}

/// A directory page: the items and the row key to continue after, if there are more.
pub struct DirectoryPage<T> {
    pub items: Vec<T>,
    pub next_after: Option<i64>,
}

fn page_of<T>(mut items: Vec<T>, limit: i64, pk: impl Fn(&T) -> i64) -> DirectoryPage<T> {
    let next_after = if items.len() as i64 > limit {
        items.truncate(limit.max(0) as usize);
        items.last().map(&pk)
    } else {
        None
    };
    DirectoryPage { items, next_after }
}

/// The resolved attribute policies of an organization's connections, to render profiles.
pub struct Profiles {
    registry: std::sync::Arc<SchemaRegistry>,
    by_connection: HashMap<String, AttributePolicy>,
}

impl Profiles {
    /// The flat profile of a directory user, per its connection's policy.
    pub fn profile(
        &mut self,
        connections: &[Connection],
        user: &DirectoryUser,
    ) -> serde_json::Map<String, serde_json::Value> {
        let registry = self.registry.clone();
        let policy = self.by_connection.entry(user.connection_id.clone()).or_insert_with(|| {
            let c = connections.iter().find(|c| c.id == user.connection_id);
            attribute_policy(&registry, c.map(|c| &c.policy).unwrap_or(&ConnectionPolicy::default()))
                .unwrap_or_default()
        });
        policy.profile(&user.doc)
    }
}

/// Resolves a stored policy against the User schema.
pub fn attribute_policy(registry: &SchemaRegistry, p: &ConnectionPolicy) -> Result<AttributePolicy, String> {
    let rt = registry.resource_type("User").expect("User is registered");
    let profile: Option<Vec<(String, String)>> = p
        .profile_mapping
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    AttributePolicy::resolve(
        registry,
        rt,
        &p.required_attributes,
        p.synced_attributes.as_deref(),
        profile.as_deref(),
    )
    .map_err(|e| e.detail)
}

/// The caller's context, for a change in `org_id`.
fn with_org(by: &WriteContext, org_id: &str) -> WriteContext {
    WriteContext {
        org_id: org_id.to_string(),
        ..by.clone()
    }
}

impl Admin {
    // --- roles ---------------------------------------------------------------------------------

    pub async fn create_role(
        &self,
        by: &WriteContext,
        org_id: &str,
        key: &str,
        name: Option<&str>,
        description: Option<&str>,
    ) -> AdminResult<Role> {
        let org = self.organization(org_id).await?;
        let key = validate_name("the role key", key)?;
        let name = match name {
            Some(n) => validate_name("the role name", n)?,
            None => key.clone(),
        };
        let description = description.map(|d| validate_text("the description", d)).transpose()?;
        self.store
            .create_role(
                &with_org(by, &org.id),
                NewRole {
                    org_id: org.id.clone(),
                    key,
                    name,
                    description,
                },
            )
            .await
            .map_err(admin_err)
    }

    pub async fn list_roles(&self, org_id: &str) -> AdminResult<Vec<Role>> {
        let org = self.organization(org_id).await?;
        Ok(self.store.list_roles(&org.id).await?)
    }

    /// A role by id or key.
    pub async fn role(&self, org_id: &str, id_or_key: &str) -> AdminResult<Role> {
        let org = self.organization(org_id).await?;
        self.store
            .get_role(&org.id, id_or_key)
            .await?
            .ok_or_else(|| no_role(id_or_key))
    }

    pub async fn update_role(
        &self,
        by: &WriteContext,
        org_id: &str,
        id_or_key: &str,
        mut update: RoleUpdate,
    ) -> AdminResult<Role> {
        let role = self.role(org_id, id_or_key).await?;
        if let Some(k) = &update.key {
            update.key = Some(validate_name("the role key", k)?);
        }
        if let Some(n) = &update.name {
            update.name = Some(validate_name("the role name", n)?);
        }
        if let Some(Some(d)) = &update.description {
            update.description = Some(Some(validate_text("the description", d)?));
        }
        self.store
            .update_role(&with_org(by, &role.org_id), &role.org_id, &role.id, update)
            .await
            .map_err(admin_err)?
            .ok_or_else(|| no_role(id_or_key))
    }

    pub async fn delete_role(&self, by: &WriteContext, org_id: &str, id_or_key: &str) -> AdminResult<()> {
        let role = self.role(org_id, id_or_key).await?;
        if self
            .store
            .delete_role(&with_org(by, &role.org_id), &role.org_id, &role.id)
            .await?
        {
            Ok(())
        } else {
            Err(no_role(id_or_key))
        }
    }

    // --- mappings and default roles ------------------------------------------------------------

    /// Maps a group (by IdP id or name) or an app role to a role (by id or key) on a connection.
    pub async fn create_role_mapping(
        &self,
        by: &WriteContext,
        connection_id: &str,
        role: &str,
        matches: RoleMatch,
    ) -> AdminResult<RoleMapping> {
        let c = self.connection(connection_id).await?;
        let role = self
            .store
            .get_role(&c.org_id, role)
            .await?
            .ok_or_else(|| AdminError::invalid(format!("no role \"{role}\" in the connection's organization")))?;
        let value = validate_text(&format!("the {} to match", matches.kind()), matches.value())?;
        let matches = RoleMatch::from_parts(matches.kind(), value).expect("same kind");
        if matches!(matches, RoleMatch::AppRole(_)) && !synced_keeps(c.policy.synced_attributes.as_deref(), "roles") {
            return Err(AdminError::invalid(
                "the connection's synced_attributes leave out \"roles\", so a mapping by app role would never \
                 match: add \"roles\" to its synced_attributes first",
            ));
        }
        self.store
            .create_role_mapping(
                &with_org(by, &c.org_id),
                NewRoleMapping {
                    connection_id: c.id.clone(),
                    role_id: role.id,
                    matches,
                },
            )
            .await
            .map_err(admin_err)
    }

    pub async fn list_role_mappings(&self, connection_id: &str) -> AdminResult<Vec<RoleMapping>> {
        let c = self.connection(connection_id).await?;
        Ok(self.store.list_role_mappings(&c.id).await?)
    }

    pub async fn delete_role_mapping(&self, by: &WriteContext, connection_id: &str, id: &str) -> AdminResult<()> {
        let c = self.connection(connection_id).await?;
        if self
            .store
            .delete_role_mapping(&with_org(by, &c.org_id), &c.id, id)
            .await?
        {
            Ok(())
        } else {
            Err(AdminError::not_found(format!(
                "no role mapping \"{id}\" on this connection"
            )))
        }
    }

    pub async fn default_roles(&self, connection_id: &str) -> AdminResult<Vec<Role>> {
        let c = self.connection(connection_id).await?;
        Ok(self.store.default_roles(&c.id).await?)
    }

    /// Replaces a connection's default roles (by id or key).
    pub async fn set_default_roles(
        &self,
        by: &WriteContext,
        connection_id: &str,
        roles: &[String],
    ) -> AdminResult<Vec<Role>> {
        let c = self.connection(connection_id).await?;
        let mut ids = Vec::with_capacity(roles.len());
        for r in roles {
            let role = self
                .store
                .get_role(&c.org_id, r)
                .await?
                .ok_or_else(|| AdminError::invalid(format!("no role \"{r}\" in the connection's organization")))?;
            if !ids.contains(&role.id) {
                ids.push(role.id);
            }
        }
        self.store
            .set_default_roles(&with_org(by, &c.org_id), &c.id, &ids)
            .await
            .map_err(admin_err)?
            .ok_or_else(|| AdminError::not_found(format!("no SCIM connection with id \"{connection_id}\"")))
    }

    // --- policy --------------------------------------------------------------------------------

    /// Replaces a connection's attribute and lifecycle policy, after checking every path against the
    /// User schema.
    pub async fn set_connection_policy(
        &self,
        by: &WriteContext,
        registry: &SchemaRegistry,
        connection_id: &str,
        policy: ConnectionPolicy,
    ) -> AdminResult<Connection> {
        let c = self.connection(connection_id).await?;
        attribute_policy(registry, &policy).map_err(AdminError::invalid)?;
        // A mapping by Entra app role reads the user's `roles`: a policy that drops them would
        // stop it without a word.
        if !synced_keeps(policy.synced_attributes.as_deref(), "roles")
            && let Some(m) = self
                .store
                .list_role_mappings(&c.id)
                .await?
                .into_iter()
                .find(|m| matches!(m.matches, RoleMatch::AppRole(_)))
        {
            return Err(AdminError::invalid(format!(
                "synced_attributes leaves out \"roles\", which the role mapping {} (app role \"{}\" grants \
                 role \"{}\") reads: add \"roles\" to synced_attributes, or delete the mapping first",
                m.id,
                m.matches.value(),
                m.role_key
            )));
        }
        let c = self
            .store
            .set_connection_policy(&with_org(by, &c.org_id), &c.id, &policy)
            .await
            .map_err(admin_err)?
            .ok_or_else(|| AdminError::not_found(format!("no SCIM connection with id \"{connection_id}\"")))?;
        // Cached connections carry the policy: this node applies the new one at once.
        self.token_cache.forget_connection(&c.id);
        Ok(c)
    }

    // --- protected users -----------------------------------------------------------------------

    pub async fn add_protected_user(&self, by: &WriteContext, org_id: &str, email: &str) -> AdminResult<ProtectedUser> {
        let org = self.organization(org_id).await?;
        let email = validate_name("the e-mail address or userName", email)?;
        self.store
            .add_protected_user(&with_org(by, &org.id), &org.id, &email)
            .await
            .map_err(admin_err)
    }

    pub async fn list_protected_users(&self, org_id: &str) -> AdminResult<Vec<ProtectedUser>> {
        let org = self.organization(org_id).await?;
        Ok(self.store.list_protected_users(&org.id).await?)
    }

    pub async fn remove_protected_user(&self, by: &WriteContext, org_id: &str, email: &str) -> AdminResult<()> {
        let org = self.organization(org_id).await?;
        if self
            .store
            .remove_protected_user(&with_org(by, &org.id), &org.id, email)
            .await?
        {
            Ok(())
        } else {
            Err(AdminError::not_found(format!(
                "\"{email}\" is not a protected user of this organization"
            )))
        }
    }

    // --- directory -----------------------------------------------------------------------------

    /// The organization's connections and a profile renderer for its users.
    pub async fn profiles(
        &self,
        registry: std::sync::Arc<SchemaRegistry>,
        org_id: &str,
    ) -> AdminResult<(Vec<Connection>, Profiles)> {
        let connections = self.store.list_connections(Some(org_id)).await?;
        Ok((
            connections,
            Profiles {
                registry,
                by_connection: HashMap::new(),
            },
        ))
    }

    /// A page of the organization's users. Text criteria are folded here as the store keeps them.
    pub async fn directory_users(
        &self,
        org_id: &str,
        mut query: DirectoryQuery,
    ) -> AdminResult<DirectoryPage<DirectoryUser>> {
        let org = self.organization(org_id).await?;
        query.email = query.email.map(|e| fold(e.trim()));
        query.user_name = query.user_name.map(|u| fold(u.trim()));
        query.role = query.role.map(|r| fold(r.trim()));
        let limit = query.limit;
        query.limit = limit + 1;
        let users = self.store.directory_users(&org.id, &query, false).await?;
        Ok(page_of(users, limit, |u| u.pk))
    }

    /// One user of the organization, with its groups.
    pub async fn directory_user(&self, org_id: &str, id: &str) -> AdminResult<DirectoryUser> {
        let org = self.organization(org_id).await?;
        let query = DirectoryQuery {
            id: Some(id.to_string()),
            limit: 1,
            ..Default::default()
        };
        self.store
            .directory_users(&org.id, &query, true)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| AdminError::not_found(format!("no user \"{id}\" in this organization")))
    }

    pub async fn directory_groups(
        &self,
        org_id: &str,
        mut query: GroupQuery,
    ) -> AdminResult<DirectoryPage<DirectoryGroup>> {
        let org = self.organization(org_id).await?;
        query.display_name = query.display_name.map(|n| fold(n.trim()));
        let limit = query.limit;
        query.limit = limit + 1;
        let groups = self.store.directory_groups(&org.id, &query).await?;
        Ok(page_of(groups, limit, |g| g.pk))
    }

    pub async fn directory_group(&self, org_id: &str, id: &str) -> AdminResult<DirectoryGroup> {
        let org = self.organization(org_id).await?;
        let query = GroupQuery {
            id: Some(id.to_string()),
            limit: 1,
            ..Default::default()
        };
        self.store
            .directory_groups(&org.id, &query)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| AdminError::not_found(format!("no group \"{id}\" in this organization")))
    }

    pub async fn directory_group_members(
        &self,
        org_id: &str,
        group_id: &str,
        after_pk: i64,
        limit: i64,
    ) -> AdminResult<DirectoryPage<DirectoryMember>> {
        let group = self.directory_group(org_id, group_id).await?;
        let members = self
            .store
            .directory_group_members(group.pk, after_pk, limit + 1)
            .await?;
        Ok(page_of(members, limit, |m| m.pk))
    }

    /// Whether a user may sign in (active and not deleted) and its effective roles: one indexed query.
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
            });
        };
        let allowed = user.status == UserStatus::Active;
        Ok(Access {
            allowed,
            reason: user.status.as_str(),
            roles: if allowed { user.roles.clone() } else { Vec::new() },
            user: Some(user),
        })
    }
}
