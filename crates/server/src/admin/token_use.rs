//! When each of a connection's tokens was issued and last used, read from what is already kept:
//! the events that issued them and the request log (each entry names the prefix of the token that
//! authenticated it).

use super::{Admin, AdminResult};
use rollcall_store::EventQuery;
use rollcall_store::events::{CONNECTION_CREATED, CONNECTION_TOKEN_ROTATED, CONNECTION_TOKEN_ROTATION_COMPLETED};

/// Request log entries read, at most, to find when a token was last used (the log keeps the last
/// requests of each connection, 1000 by default).
const LOG_SCAN: i64 = 1000;

/// One token of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUse {
    pub prefix: String,
    /// When it was issued; `None` when the event is no longer retained.
    pub issued_us: Option<i64>,
    /// The last request it authenticated that the request log still holds.
    pub last_used_us: Option<i64>,
}

/// The current token and, during a rotation, the next one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenUses {
    pub current: Option<TokenUse>,
    pub next: Option<TokenUse>,
}

impl Admin {
    /// When each token of a connection was issued and last used.
    pub async fn token_uses(&self, connection_id: &str) -> AdminResult<TokenUses> {
        let c = self.connection(connection_id).await?;
        // The current token was issued by the last of these (a completed rotation makes the next
        // token the current one).
        let issuing = self
            .store
            .query_events(&EventQuery {
                limit: 1000,
                types: [
                    CONNECTION_CREATED,
                    CONNECTION_TOKEN_ROTATED,
                    CONNECTION_TOKEN_ROTATION_COMPLETED,
                ]
                .map(str::to_string)
                .to_vec(),
                connection_id: Some(c.id.clone()),
                ..Default::default()
            })
            .await?;
        let current_issued = issuing.last().map(|e| e.created_us);
        let (log, _) = self.request_log(&c.id, None, LOG_SCAN).await?;
        let last_used = |prefix: &str| {
            log.iter()
                .filter(|e| e.token_prefix.as_deref() == Some(prefix))
                .map(|e| e.at_us)
                .max()
        };
        Ok(TokenUses {
            current: c.token_prefix.as_ref().map(|p| TokenUse {
                prefix: p.clone(),
                issued_us: current_issued,
                last_used_us: last_used(p),
            }),
            next: c.next_token_prefix.as_ref().map(|p| TokenUse {
                prefix: p.clone(),
                issued_us: c.rotation_started_us,
                last_used_us: last_used(p),
            }),
        })
    }
}
