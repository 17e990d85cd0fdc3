//! A connection's attribute policy: what is required, what is synced, how the profile is mapped,
//! and what a SCIM DELETE does.

use super::{Admin, AdminError, AdminResult, admin_err, with_org};
use rollcall_scim::policy::{AttributePolicy, synced_keeps};
use rollcall_scim::schema::SchemaRegistry;
use rollcall_store::{Connection, ConnectionPolicy, RoleMatch, WriteContext};

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

impl Admin {
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
}
