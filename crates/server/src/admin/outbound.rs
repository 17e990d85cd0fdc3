//! Outbound provisioning (`rollcall_store::outbound`, `rollcall_outbound`): an organization's
//! provisioning targets, their plans, approval, runs and per-object state. The API, the command
//! line and the console call these; none reaches the store directly.

use super::{Admin, AdminError, AdminResult, admin_err, validate_name};
use rollcall_outbound::engine::{EngineError, JitOutcome};
use rollcall_outbound::{Plan, plan, profile};
use rollcall_store::outbound::{
    AttributeMapping, AuthKind, AuthSettings, DeletionThreshold, Deprovision, NewTarget, ObjectQuery, ObjectState,
    RateLimit, Run, Target, TargetObject, TargetScope, TargetStatus, TargetUpdate,
};
use rollcall_store::{GroupQuery, ResourceKind, WriteContext};

/// Longest credential accepted (a token, password or client secret), in bytes.
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;
/// Most connections, groups or pushed groups in a scope.
pub const MAX_SCOPE_ENTRIES: usize = 100;
/// Most entries in an attribute mapping.
pub const MAX_MAPPING_ENTRIES: usize = 100;
/// Most targets one access check may provision to.
pub const MAX_JIT_TARGETS: usize = 10;

/// What an operator gives to create a target.
#[derive(Clone)]
pub struct TargetInput {
    pub name: String,
    pub base_url: String,
    pub profile: String,
    pub auth_kind: AuthKind,
    pub auth: AuthSettings,
    pub credentials: String,
    pub scope: TargetScope,
    pub mapping: AttributeMapping,
    pub deprovision: Deprovision,
    pub deletion_threshold: DeletionThreshold,
    /// The target's own rate limit (`None`: its profile's).
    pub rate_limit: Option<RateLimit>,
    pub interval_s: i64,
}

fn no_target(id: &str) -> AdminError {
    AdminError::not_found(format!("no provisioning target with id \"{id}\" in this organization"))
}

fn engine_err(e: EngineError) -> AdminError {
    match e {
        EngineError::Store(e) => admin_err(e),
        EngineError::Target(e) => AdminError::new(502, format!("the target answered: {e}")).with_kind("target-failed"),
        EngineError::Config(e) => AdminError::invalid(e),
        e @ EngineError::TargetFailing(..) => AdminError::new(502, e.to_string()).with_kind("target-failed"),
        e @ EngineError::LeaseLost => AdminError::new(409, e.to_string()),
    }
}

fn check_credentials(c: &str) -> AdminResult<()> {
    if c.trim().is_empty() {
        return Err(AdminError::invalid("credentials must not be empty"));
    }
    if c.len() > MAX_CREDENTIAL_BYTES {
        return Err(AdminError::invalid(format!(
            "credentials are longer than {MAX_CREDENTIAL_BYTES} bytes"
        )));
    }
    Ok(())
}

impl Admin {
    /// The target profiles an operator chooses from, `generic` first.
    pub fn target_profiles(&self) -> &'static [profile::TargetProfile] {
        profile::PROFILES
    }

    fn check_profile(&self, profile_id: &str, kind: AuthKind) -> AdminResult<()> {
        let Some(p) = profile::profile(profile_id) else {
            return Err(AdminError::invalid(format!(
                "unknown profile \"{profile_id}\"; the profiles are: {}",
                profile::profile_ids().collect::<Vec<_>>().join(", ")
            )));
        };
        let wanted = match kind {
            AuthKind::Bearer => profile::AuthKind::Bearer,
            AuthKind::Basic => profile::AuthKind::Basic,
            AuthKind::OauthClientCredentials => profile::AuthKind::OauthClientCredentials,
        };
        if !p.accepts_auth(wanted) {
            return Err(AdminError::invalid(format!(
                "{} does not accept {} authentication",
                p.title,
                kind.as_str()
            )));
        }
        Ok(())
    }

    fn check_target_url(&self, url: &str) -> AdminResult<String> {
        self.outbound()
            .check_url(url.trim())
            .map_err(|e| AdminError::invalid(format!("base_url: {e}")))
    }

    /// Connections and groups of the scope must be the organization's.
    async fn check_scope(&self, org_id: &str, scope: &TargetScope) -> AdminResult<()> {
        for (what, list) in [
            ("connections", &scope.connections),
            ("groups", &scope.groups),
            ("push_groups", &scope.push_groups),
        ] {
            if list.len() > MAX_SCOPE_ENTRIES {
                return Err(AdminError::invalid(format!(
                    "scope.{what} lists more than {MAX_SCOPE_ENTRIES} entries"
                )));
            }
        }
        for c in &scope.connections {
            match self.store.get_connection(c).await? {
                Some(conn) if conn.org_id == org_id => {}
                _ => {
                    return Err(AdminError::invalid(format!(
                        "scope.connections: no connection with id \"{c}\" in this organization"
                    )));
                }
            }
        }
        for g in scope.groups.iter().chain(&scope.push_groups) {
            let found = self
                .store
                .directory_groups(
                    org_id,
                    &GroupQuery {
                        id: Some(g.clone()),
                        limit: 1,
                        ..Default::default()
                    },
                )
                .await?;
            if found.is_empty() {
                return Err(AdminError::invalid(format!(
                    "scope: no group with id \"{g}\" in this organization"
                )));
            }
        }
        Ok(())
    }

    fn check_mapping(mapping: &AttributeMapping) -> AdminResult<()> {
        if mapping.0.len() > MAX_MAPPING_ENTRIES {
            return Err(AdminError::invalid(format!(
                "the mapping has more than {MAX_MAPPING_ENTRIES} entries"
            )));
        }
        plan::validate_mapping(mapping).map_err(|e| AdminError::invalid(format!("mapping: {e}")))
    }

    /// Creates a target. It pushes nothing until it is approved (after its plan is read).
    pub async fn create_target(&self, by: &WriteContext, org_id: &str, input: TargetInput) -> AdminResult<Target> {
        self.organization(org_id).await?;
        let name = validate_name("the target name", &input.name)?;
        let base_url = self.check_target_url(&input.base_url)?;
        self.check_profile(&input.profile, input.auth_kind)?;
        input.auth.validate(input.auth_kind).map_err(AdminError::invalid)?;
        check_credentials(&input.credentials)?;
        self.check_scope(org_id, &input.scope).await?;
        Self::check_mapping(&input.mapping)?;
        input.deletion_threshold.validate().map_err(AdminError::invalid)?;
        if let Some(r) = &input.rate_limit {
            r.validate().map_err(AdminError::invalid)?;
        }
        let t = self
            .store
            .outbound()
            .create_target(
                by,
                NewTarget {
                    org_id: org_id.to_string(),
                    name,
                    base_url,
                    auth_kind: input.auth_kind,
                    auth: input.auth,
                    credentials: input.credentials,
                    profile: input.profile,
                    scope: input.scope,
                    mapping: input.mapping,
                    deprovision: input.deprovision,
                    deletion_threshold: input.deletion_threshold,
                    rate_limit: input.rate_limit,
                    interval_s: input.interval_s,
                    approved: false,
                },
            )
            .await
            .map_err(admin_err)?;
        Ok(t)
    }

    pub async fn list_targets(&self, org_id: &str) -> AdminResult<Vec<Target>> {
        self.organization(org_id).await?;
        Ok(self.store.outbound().list_targets(org_id).await?)
    }

    pub async fn target(&self, org_id: &str, id: &str) -> AdminResult<Target> {
        self.store
            .outbound()
            .get_target(org_id, id)
            .await?
            .ok_or_else(|| no_target(id))
    }

    /// Just-in-time provisioning for the access check: makes sure the user is on each of
    /// `target_ids` (targets of the organization), waiting up to `wait` in all.
    /// `user_id`: `None` for a user who may not sign in: the targets are checked, nothing is asked.
    pub async fn provision_for_access(
        &self,
        org_id: &str,
        user_id: Option<&str>,
        target_ids: &[String],
        wait: std::time::Duration,
    ) -> AdminResult<Vec<JitOutcome>> {
        if target_ids.len() > MAX_JIT_TARGETS {
            return Err(AdminError::invalid(format!(
                "at most {MAX_JIT_TARGETS} provisioning targets in one access check"
            )));
        }
        let mut targets = Vec::new();
        for id in target_ids {
            targets.push(self.target(org_id, id).await?);
        }
        let Some(user_id) = user_id else {
            return Ok(Vec::new());
        };
        let asks = targets.iter().map(|t| self.outbound().provision_user(t, user_id, wait));
        futures::future::try_join_all(asks).await.map_err(engine_err)
    }

    /// Changes a target. A new scope or mapping withdraws its approval; `status` pauses or resumes
    /// it.
    pub async fn update_target(
        &self,
        by: &WriteContext,
        org_id: &str,
        id: &str,
        mut update: TargetUpdate,
    ) -> AdminResult<Target> {
        let current = self.target(org_id, id).await?;
        if let Some(n) = &update.name {
            update.name = Some(validate_name("the target name", n)?);
        }
        if let Some(u) = &update.base_url {
            update.base_url = Some(self.check_target_url(u)?);
        }
        let kind = update.auth.as_ref().map_or(current.auth_kind, |a| a.0);
        if update.profile.is_some() || update.auth.is_some() {
            self.check_profile(update.profile.as_deref().unwrap_or(&current.profile), kind)?;
        }
        if let Some((k, a)) = &update.auth {
            a.validate(*k).map_err(AdminError::invalid)?;
            if *k != current.auth_kind && update.credentials.is_none() {
                return Err(AdminError::invalid(
                    "a new kind of authentication needs its credentials",
                ));
            }
        }
        if let Some(c) = &update.credentials {
            check_credentials(c)?;
        }
        if let Some(s) = &update.scope {
            self.check_scope(org_id, s).await?;
        }
        if let Some(m) = &update.mapping {
            Self::check_mapping(m)?;
        }
        if update.status == Some(TargetStatus::Quarantined) {
            return Err(AdminError::invalid(
                "status: a target is quarantined by its runs; set \"paused\" or \"enabled\"",
            ));
        }
        let resumed = update.status == Some(TargetStatus::Enabled) && current.status != TargetStatus::Enabled;
        let t = self
            .store
            .outbound()
            .update_target(by, org_id, id, update)
            .await
            .map_err(admin_err)?
            .ok_or_else(|| no_target(id))?;
        if resumed {
            self.outbound().wake();
        }
        Ok(t)
    }

    /// Deletes a target with its mapping table and runs; what it pushed stays on the target.
    pub async fn delete_target(&self, by: &WriteContext, org_id: &str, id: &str) -> AdminResult<()> {
        if self.store.outbound().delete_target(by, org_id, id).await? {
            Ok(())
        } else {
            Err(no_target(id))
        }
    }

    /// What a push would do now, writing nothing (the target is read).
    pub async fn target_plan(&self, org_id: &str, id: &str) -> AdminResult<Plan> {
        let t = self.target(org_id, id).await?;
        self.outbound().plan(&t).await.map_err(engine_err)
    }

    /// Approves the push: a full run starts at once. 409 when it is approved already.
    pub async fn approve_target(&self, by: &WriteContext, org_id: &str, id: &str) -> AdminResult<Target> {
        let t = self.target(org_id, id).await?;
        if t.approved() {
            return Err(AdminError::new(409, "this target's push is approved already").with_kind("already-approved"));
        }
        let t = self
            .store
            .outbound()
            .approve_target(by, org_id, id)
            .await?
            .ok_or_else(|| no_target(id))?;
        self.outbound().wake();
        Ok(t)
    }

    /// Asks for a full reconciliation now. 409 while the target waits for approval.
    pub async fn sync_target(&self, org_id: &str, id: &str) -> AdminResult<Target> {
        let t = self.target(org_id, id).await?;
        if !t.approved() {
            return Err(AdminError::new(
                409,
                "this target's push waits for approval: read its plan, then approve it",
            )
            .with_kind("approval-required"));
        }
        self.store
            .outbound()
            .request_target_sync(org_id, id, rollcall_store::sqlite::now_us())
            .await?;
        self.outbound().wake();
        self.target(org_id, id).await
    }

    /// Up to `limit` runs before run `before`, newest first, and whether there are more.
    pub async fn target_runs(
        &self,
        org_id: &str,
        id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> AdminResult<(Vec<Run>, bool)> {
        self.target(org_id, id).await?;
        let mut runs = self.store.outbound().list_runs(org_id, id, before, limit + 1).await?;
        let more = runs.len() as i64 > limit;
        runs.truncate(limit.max(0) as usize);
        Ok((runs, more))
    }

    /// The mapping table of a target (optionally only objects in `state`), and whether there are
    /// more.
    pub async fn target_objects(
        &self,
        org_id: &str,
        id: &str,
        state: Option<ObjectState>,
        after: Option<(ResourceKind, String)>,
        limit: i64,
    ) -> AdminResult<(Vec<TargetObject>, bool)> {
        self.target(org_id, id).await?;
        let mut found = self
            .store
            .outbound()
            .target_objects(
                org_id,
                id,
                &ObjectQuery {
                    state,
                    kind: None,
                    after,
                    limit: limit + 1,
                },
            )
            .await?;
        let more = found.len() as i64 > limit;
        found.truncate(limit.max(0) as usize);
        Ok((found, more))
    }

    /// Pushes one object again at the next run (and starts one).
    pub async fn retry_target_object(&self, org_id: &str, id: &str, object_id: &str) -> AdminResult<TargetObject> {
        let t = self.target(org_id, id).await?;
        let ob = self.store.outbound();
        for kind in [ResourceKind::User, ResourceKind::Group] {
            if ob.retry_object(&t.org_id, &t.id, kind, object_id).await? {
                self.outbound().wake();
                return ob
                    .target_object(&t.org_id, &t.id, kind, object_id)
                    .await?
                    .ok_or_else(|| AdminError::not_found("the object left the mapping table"));
            }
        }
        Err(AdminError::not_found(format!(
            "no object with id \"{object_id}\" in this target's mapping table"
        )))
    }
}
