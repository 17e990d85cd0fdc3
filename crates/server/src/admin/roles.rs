//! Roles, their mappings (IdP group or app role to role) and each connection's default roles.

use super::{Admin, AdminError, AdminResult, admin_err, validate_name, validate_text, with_org};
use rollcall_scim::policy::synced_keeps;
use rollcall_store::{
    Connection, NewRole, NewRoleMapping, Role, RoleChange, RoleMapping, RoleMatch, RolePreview, RoleUpdate, UserRef,
    WriteContext,
};
use serde::Serialize;
use std::collections::HashMap;

fn no_role(id: &str) -> AdminError {
    AdminError::not_found(format!("no role \"{id}\" in this organization"))
}

fn no_mapping(id: &str) -> AdminError {
    AdminError::not_found(format!("no role mapping \"{id}\" on this connection"))
}

/// How many users a preview names per role and direction.
pub const PREVIEW_SAMPLE: usize = 20;

/// How the holders of one role would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleChangeSummary {
    pub role_id: String,
    pub role_key: String,
    pub role_name: String,
    /// How many users would gain the role.
    pub gained: i64,
    /// How many users would lose it.
    pub lost: i64,
    /// The first users (oldest first) who would gain it, at most [`PREVIEW_SAMPLE`].
    pub gained_sample: Vec<UserRef>,
    /// The first users who would lose it.
    pub lost_sample: Vec<UserRef>,
}

/// What a proposed mapping or default-roles change would do to the effective roles of the
/// connection's users, computed without making it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct RoleEffect {
    /// One entry per role some user would gain or lose, by role key.
    pub changes: Vec<RoleChangeSummary>,
    /// The connection's active users whose roles were computed (deactivated and deleted users hold
    /// no roles).
    pub users_considered: i64,
}

impl RoleEffect {
    /// The effect, roles (or workspaces) named by `names` (id → name).
    pub(crate) fn of(preview: RolePreview, names: &HashMap<String, String>) -> RoleEffect {
        RoleEffect {
            changes: preview
                .changes
                .into_iter()
                .map(|c| RoleChangeSummary {
                    role_name: names
                        .get(c.role_id.as_str())
                        .map_or_else(|| c.role_key.clone(), String::clone),
                    role_id: c.role_id,
                    role_key: c.role_key,
                    gained: c.gained,
                    lost: c.lost,
                    gained_sample: c.gained_sample,
                    lost_sample: c.lost_sample,
                })
                .collect(),
            users_considered: preview.users_considered,
        }
    }

    /// Whether any user's roles would change.
    pub fn is_empty(&self) -> bool {
        self.changes.iter().all(|c| c.gained == 0 && c.lost == 0)
    }

    /// The effect in one English sentence, by role name: "12 users gain Admin, 3 users lose
    /// Viewer", or "No user's roles change".
    pub fn sentence(&self) -> String {
        self.sentence_of("roles")
    }

    /// The effect in one sentence, `what` naming the grants when nothing changes ("No user's
    /// workspaces change").
    pub fn sentence_of(&self, what: &str) -> String {
        let users = |n: i64| {
            if n == 1 {
                "1 user".to_string()
            } else {
                format!("{n} users")
            }
        };
        let mut parts = Vec::new();
        for c in &self.changes {
            if c.gained > 0 {
                let verb = if c.gained == 1 { "gains" } else { "gain" };
                parts.push(format!("{} {verb} {}", users(c.gained), c.role_name));
            }
            if c.lost > 0 {
                let verb = if c.lost == 1 { "loses" } else { "lose" };
                parts.push(format!("{} {verb} {}", users(c.lost), c.role_name));
            }
        }
        if parts.is_empty() {
            format!("No user's {what} change")
        } else {
            parts.join(", ")
        }
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
        let (role, matches) = self.mapping_input(&c, role, matches).await?;
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
            Err(no_mapping(id))
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
        let ids = self.role_ids(&c, roles).await?;
        self.store
            .set_default_roles(&with_org(by, &c.org_id), &c.id, &ids)
            .await
            .map_err(admin_err)?
            .ok_or_else(|| AdminError::not_found(format!("no SCIM connection with id \"{connection_id}\"")))
    }

    // --- previews ------------------------------------------------------------------------------

    /// The role (by id or key) and match of a mapping to create on `c`, validated.
    async fn mapping_input(&self, c: &Connection, role: &str, matches: RoleMatch) -> AdminResult<(Role, RoleMatch)> {
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
        Ok((role, matches))
    }

    /// The ids of roles given by id or key, each once, in order.
    async fn role_ids(&self, c: &Connection, roles: &[String]) -> AdminResult<Vec<String>> {
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
        Ok(ids)
    }

    async fn preview(&self, c: &Connection, change: RoleChange, missing: AdminError) -> AdminResult<RoleEffect> {
        let preview = self
            .store
            .preview_role_change(&c.id, &change, PREVIEW_SAMPLE)
            .await
            .map_err(admin_err)?
            .ok_or(missing)?;
        let names = self
            .store
            .list_roles(&c.org_id)
            .await?
            .into_iter()
            .map(|r| (r.id, r.name))
            .collect();
        Ok(RoleEffect::of(preview, &names))
    }

    /// What [`Admin::create_role_mapping`] with these arguments would do to the connection's users'
    /// roles, without doing it; refused exactly as the creation would be.
    pub async fn preview_role_mapping(
        &self,
        connection_id: &str,
        role: &str,
        matches: RoleMatch,
    ) -> AdminResult<RoleEffect> {
        let c = self.connection(connection_id).await?;
        let (role, matches) = self.mapping_input(&c, role, matches).await?;
        let change = RoleChange::AddMapping {
            role_id: role.id,
            matches,
        };
        self.preview(&c, change, super::no_connection(connection_id)).await
    }

    /// What [`Admin::delete_role_mapping`] would do to the connection's users' roles, without doing it.
    pub async fn preview_role_mapping_removal(&self, connection_id: &str, mapping_id: &str) -> AdminResult<RoleEffect> {
        let c = self.connection(connection_id).await?;
        let change = RoleChange::RemoveMapping {
            mapping_id: mapping_id.to_string(),
        };
        self.preview(&c, change, no_mapping(mapping_id)).await
    }

    /// What [`Admin::set_default_roles`] with these roles would do to the connection's users' roles,
    /// without doing it; refused exactly as setting them would be.
    pub async fn preview_default_roles(&self, connection_id: &str, roles: &[String]) -> AdminResult<RoleEffect> {
        let c = self.connection(connection_id).await?;
        let role_ids = self.role_ids(&c, roles).await?;
        self.preview(
            &c,
            RoleChange::SetDefaults { role_ids },
            super::no_connection(connection_id),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(name: &str, gained: i64, lost: i64) -> RoleChangeSummary {
        RoleChangeSummary {
            role_id: format!("r-{name}"),
            role_key: name.to_lowercase(),
            role_name: name.to_string(),
            gained,
            lost,
            gained_sample: vec![],
            lost_sample: vec![],
        }
    }

    #[test]
    fn an_effect_reads_as_one_sentence() {
        let effect = |changes| RoleEffect {
            changes,
            users_considered: 40,
        };
        assert_eq!(
            effect(vec![change("admin", 12, 0), change("viewer", 0, 3)]).sentence(),
            "12 users gain admin, 3 users lose viewer"
        );
        assert_eq!(
            effect(vec![change("Billing", 1, 1)]).sentence(),
            "1 user gains Billing, 1 user loses Billing"
        );
        let none = effect(vec![]);
        assert_eq!(none.sentence(), "No user's roles change");
        assert!(none.is_empty());
        assert!(!effect(vec![change("admin", 0, 2)]).is_empty());
    }
}
