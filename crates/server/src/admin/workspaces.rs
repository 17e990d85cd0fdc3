//! Workspaces: IdP groups as memberships of the application's workspaces ([`rollcall_store::workspaces`]),
//! their group mappings per connection, and the organization's default workspace and
//! "a workspace for every group" setting. Previews go through the role preview.

use super::{
    Admin, AdminError, AdminResult, PREVIEW_SAMPLE, RoleEffect, admin_err, validate_name, validate_text, with_org,
};
use rollcall_store::{
    Connection, NewWorkspace, NewWorkspaceMapping, RoleChange, RoleMatch, WorkspaceSettingsUpdate, WorkspaceUpdate,
    WriteContext,
};
use rollcall_store::{Workspace, WorkspaceMapping, WorkspaceSettings};

fn no_workspace(id: &str) -> AdminError {
    AdminError::not_found(format!("no workspace \"{id}\" in this organization"))
}

fn no_mapping(id: &str) -> AdminError {
    AdminError::not_found(format!("no workspace mapping \"{id}\" on this connection"))
}

impl Admin {
    // --- workspaces ----------------------------------------------------------------------------

    pub async fn create_workspace(
        &self,
        by: &WriteContext,
        org_id: &str,
        key: &str,
        name: Option<&str>,
    ) -> AdminResult<Workspace> {
        let org = self.organization(org_id).await?;
        let key = validate_name("the workspace key", key)?;
        let name = match name {
            Some(n) => validate_name("the workspace name", n)?,
            None => key.clone(),
        };
        self.store
            .create_workspace(
                &with_org(by, &org.id),
                NewWorkspace {
                    org_id: org.id.clone(),
                    key,
                    name,
                },
            )
            .await
            .map_err(admin_err)
    }

    pub async fn list_workspaces(&self, org_id: &str) -> AdminResult<Vec<Workspace>> {
        let org = self.organization(org_id).await?;
        Ok(self.store.list_workspaces(&org.id).await?)
    }

    /// A workspace by id or key.
    pub async fn workspace(&self, org_id: &str, id_or_key: &str) -> AdminResult<Workspace> {
        let org = self.organization(org_id).await?;
        self.store
            .get_workspace(&org.id, id_or_key)
            .await?
            .ok_or_else(|| no_workspace(id_or_key))
    }

    pub async fn update_workspace(
        &self,
        by: &WriteContext,
        org_id: &str,
        id_or_key: &str,
        mut update: WorkspaceUpdate,
    ) -> AdminResult<Workspace> {
        let ws = self.workspace(org_id, id_or_key).await?;
        if let Some(k) = &update.key {
            update.key = Some(validate_name("the workspace key", k)?);
        }
        if let Some(n) = &update.name {
            update.name = Some(validate_name("the workspace name", n)?);
        }
        self.store
            .update_workspace(&with_org(by, &ws.org_id), &ws.org_id, &ws.id, update)
            .await
            .map_err(admin_err)?
            .ok_or_else(|| no_workspace(id_or_key))
    }

    pub async fn delete_workspace(&self, by: &WriteContext, org_id: &str, id_or_key: &str) -> AdminResult<()> {
        let ws = self.workspace(org_id, id_or_key).await?;
        if self
            .store
            .delete_workspace(&with_org(by, &ws.org_id), &ws.org_id, &ws.id)
            .await?
        {
            Ok(())
        } else {
            Err(no_workspace(id_or_key))
        }
    }

    // --- mappings ------------------------------------------------------------------------------

    /// The workspace (by id or key) and group match of a mapping to create on `c`, validated.
    async fn workspace_mapping_input(
        &self,
        c: &Connection,
        workspace: &str,
        matches: RoleMatch,
    ) -> AdminResult<(Workspace, RoleMatch)> {
        let ws = self.store.get_workspace(&c.org_id, workspace).await?.ok_or_else(|| {
            AdminError::invalid(format!("no workspace \"{workspace}\" in the connection's organization"))
        })?;
        if matches!(matches, RoleMatch::AppRole(_)) {
            return Err(AdminError::invalid(
                "workspaces are mapped from groups: give group_id or group_name",
            ));
        }
        let value = validate_text(&format!("the {} to match", matches.kind()), matches.value())?;
        let matches = RoleMatch::from_parts(matches.kind(), value).expect("same kind");
        Ok((ws, matches))
    }

    /// Maps a group (by IdP id or name) to a workspace (by id or key) on a connection.
    pub async fn create_workspace_mapping(
        &self,
        by: &WriteContext,
        connection_id: &str,
        workspace: &str,
        matches: RoleMatch,
    ) -> AdminResult<WorkspaceMapping> {
        let c = self.connection(connection_id).await?;
        let (ws, matches) = self.workspace_mapping_input(&c, workspace, matches).await?;
        self.store
            .create_workspace_mapping(
                &with_org(by, &c.org_id),
                NewWorkspaceMapping {
                    connection_id: c.id.clone(),
                    workspace_id: ws.id,
                    matches,
                },
            )
            .await
            .map_err(admin_err)
    }

    pub async fn list_workspace_mappings(&self, connection_id: &str) -> AdminResult<Vec<WorkspaceMapping>> {
        let c = self.connection(connection_id).await?;
        Ok(self.store.list_workspace_mappings(&c.id).await?)
    }

    pub async fn delete_workspace_mapping(&self, by: &WriteContext, connection_id: &str, id: &str) -> AdminResult<()> {
        let c = self.connection(connection_id).await?;
        if self
            .store
            .delete_workspace_mapping(&with_org(by, &c.org_id), &c.id, id)
            .await?
        {
            Ok(())
        } else {
            Err(no_mapping(id))
        }
    }

    async fn preview_workspaces(
        &self,
        c: &Connection,
        change: RoleChange,
        missing: AdminError,
    ) -> AdminResult<RoleEffect> {
        let preview = self
            .store
            .preview_workspace_change(&c.id, &change, PREVIEW_SAMPLE)
            .await
            .map_err(admin_err)?
            .ok_or(missing)?;
        let names = self
            .store
            .list_workspaces(&c.org_id)
            .await?
            .into_iter()
            .map(|w| (w.id, w.name))
            .collect();
        Ok(RoleEffect::of(preview, &names))
    }

    /// What [`Admin::create_workspace_mapping`] with these arguments would do to the connection's
    /// users' workspaces, without doing it; refused exactly as the creation would be.
    pub async fn preview_workspace_mapping(
        &self,
        connection_id: &str,
        workspace: &str,
        matches: RoleMatch,
    ) -> AdminResult<RoleEffect> {
        let c = self.connection(connection_id).await?;
        let (ws, matches) = self.workspace_mapping_input(&c, workspace, matches).await?;
        let change = RoleChange::AddMapping {
            role_id: ws.id,
            matches,
        };
        self.preview_workspaces(&c, change, super::no_connection(connection_id))
            .await
    }

    /// What [`Admin::delete_workspace_mapping`] would do, without doing it.
    pub async fn preview_workspace_mapping_removal(
        &self,
        connection_id: &str,
        mapping_id: &str,
    ) -> AdminResult<RoleEffect> {
        let c = self.connection(connection_id).await?;
        let change = RoleChange::RemoveMapping {
            mapping_id: mapping_id.to_string(),
        };
        self.preview_workspaces(&c, change, no_mapping(mapping_id)).await
    }

    // --- settings ------------------------------------------------------------------------------

    pub async fn workspace_settings(&self, org_id: &str) -> AdminResult<WorkspaceSettings> {
        let org = self.organization(org_id).await?;
        Ok(self.store.workspace_settings(&org.id).await?)
    }

    /// Changes the default workspace (by id or key; `Some(None)` clears it) and whether every
    /// pushed group gets a workspace; `None` leaves a setting as it is.
    pub async fn set_workspace_settings(
        &self,
        by: &WriteContext,
        org_id: &str,
        default_workspace: Option<Option<&str>>,
        auto_create: Option<bool>,
    ) -> AdminResult<WorkspaceSettings> {
        let org = self.organization(org_id).await?;
        let default_workspace_id = match default_workspace {
            None => None,
            Some(None) => Some(None),
            Some(Some(w)) => {
                let ws = self
                    .store
                    .get_workspace(&org.id, w)
                    .await?
                    .ok_or_else(|| AdminError::invalid(format!("no workspace \"{w}\" in this organization")))?;
                Some(Some(ws.id))
            }
        };
        self.store
            .set_workspace_settings(
                &with_org(by, &org.id),
                &org.id,
                WorkspaceSettingsUpdate {
                    default_workspace_id,
                    auto_create,
                },
            )
            .await
            .map_err(admin_err)
    }
}
