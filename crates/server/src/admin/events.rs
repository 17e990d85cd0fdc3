//! Reading what happened: the event log (the change feed and audit log) and each SCIM connection's
//! request log.

use super::{Admin, AdminError, AdminResult};
use rollcall_store::{Event, EventQuery, RequestLogEntry};

/// A page of events and whether more matched.
pub struct EventPage {
    pub events: Vec<Event>,
    pub has_more: bool,
}

impl Admin {
    /// Events matching `q`, oldest first: at most `q.limit`, and whether there are more.
    pub async fn events(&self, q: &EventQuery) -> AdminResult<EventPage> {
        let limit = q.limit.max(0);
        let mut probe = q.clone();
        probe.limit = limit + 1;
        let mut events = self.store.query_events(&probe).await?;
        let has_more = events.len() as i64 > limit;
        events.truncate(limit as usize);
        Ok(EventPage { events, has_more })
    }

    /// One event by id; 404 when there is none (or it is no longer retained).
    pub async fn event(&self, id: &str) -> AdminResult<Event> {
        self.store.get_event(id).await?.ok_or_else(|| {
            AdminError::not_found(format!(
                "no event with id \"{id}\" (events are kept for the retention period)"
            ))
        })
    }

    /// A page of a connection's request log, newest first, older than `before` (a position from a
    /// previous page): at most `limit`, and whether there are more.
    pub async fn request_log(
        &self,
        connection_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> AdminResult<(Vec<RequestLogEntry>, bool)> {
        let connection = self.connection(connection_id).await?;
        let mut found = self.store.request_log(&connection.id, before, limit + 1).await?;
        let more = found.len() as i64 > limit;
        found.truncate(limit.max(0) as usize);
        Ok((found, more))
    }
}
