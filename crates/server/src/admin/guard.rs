//! The guard against mass deprovisioning (`rollcall_store::guard`): its settings, what it holds,
//! and the operator's decision to release or discard.

use super::{Admin, AdminError, AdminResult, admin_err, no_connection};
use rollcall_store::{GuardResolution, GuardSettings, GuardState, HeldEvent, WriteContext};

impl Admin {
    /// A connection's guard: settings, state and what it holds.
    pub async fn deprovision_guard(&self, connection_id: &str) -> AdminResult<GuardState> {
        self.store
            .deprovision_guard(connection_id)
            .await?
            .ok_or_else(|| no_connection(connection_id))
    }

    /// Replaces a connection's guard settings. A tripped guard stays tripped (and keeps what it
    /// holds) until released or discarded, even when turned off.
    pub async fn set_deprovision_guard(
        &self,
        by: &WriteContext,
        connection_id: &str,
        settings: GuardSettings,
    ) -> AdminResult<GuardState> {
        settings.validate().map_err(AdminError::invalid)?;
        self.store
            .set_deprovision_guard(by, connection_id, &settings)
            .await
            .map_err(admin_err)?
            .ok_or_else(|| no_connection(connection_id))
    }

    /// Up to `limit` held events after position `after`, oldest first, and whether there are more.
    pub async fn held_events(
        &self,
        connection_id: &str,
        after: Option<i64>,
        limit: i64,
    ) -> AdminResult<(Vec<HeldEvent>, bool)> {
        let connection = self.connection(connection_id).await?;
        let mut found = self
            .store
            .held_events(&connection.id, after.unwrap_or(0), limit + 1)
            .await?;
        let more = found.len() as i64 > limit;
        found.truncate(limit.max(0) as usize);
        Ok((found, more))
    }

    /// Releases (`release`) or discards every held event of a connection and re-arms its guard.
    /// 409 when the guard has not tripped and holds nothing.
    pub async fn resolve_deprovision_guard(
        &self,
        by: &WriteContext,
        connection_id: &str,
        release: bool,
    ) -> AdminResult<GuardResolution> {
        let r = self
            .store
            .resolve_deprovision_guard(by, connection_id, release)
            .await
            .map_err(admin_err)?
            .ok_or_else(|| no_connection(connection_id))?;
        if r.tripped_us.is_none() && r.events == 0 {
            return Err(AdminError::new(
                409,
                "the deprovisioning guard of this connection has not tripped and holds nothing",
            )
            .with_kind("guard-not-tripped"));
        }
        if release && r.events > 0 {
            self.webhooks().wake();
        }
        Ok(r)
    }
}
