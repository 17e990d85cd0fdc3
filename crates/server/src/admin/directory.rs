//! The read-only directory: users with status, flat profile, groups and effective roles; groups
//! with their members; a page at a time.

use super::policy::attribute_policy;
use super::{Admin, AdminError, AdminResult};
use rollcall_scim::policy::AttributePolicy;
use rollcall_scim::schema::SchemaRegistry;
use rollcall_store::index::fold;
use rollcall_store::{
    Connection, ConnectionPolicy, DirectoryGroup, DirectoryMember, DirectoryQuery, DirectoryUser, GroupQuery,
};
use std::collections::HashMap;

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

impl Admin {
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
        query.workspace = query.workspace.map(|w| fold(w.trim()));
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
            // Found by id whatever its connection's state (the lists leave staging out).
            include_staging: true,
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
            // Found by id whatever its connection's state (the lists leave staging out).
            include_staging: true,
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
        let members = self.store.directory_group_members(&group, after_pk, limit + 1).await?;
        Ok(page_of(members, limit, |m| m.pk))
    }
}
