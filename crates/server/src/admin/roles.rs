//! Roles, their mappings (IdP group or app role to role) and each connection's default roles.

use super::{Admin, AdminError, AdminResult, admin_err, validate_name, validate_text, with_org};
use rollcall_scim::policy::synced_keeps;
use rollcall_store::{NewRole, NewRoleMapping, Role, RoleMapping, RoleMatch, RoleUpdate, WriteContext};

fn no_role(id: &str) -> AdminError {
    AdminError::not_found(format!("no role \"{id}\" in this organization"))
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
}
