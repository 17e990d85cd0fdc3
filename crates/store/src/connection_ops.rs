//! Changes to a connection's settings and tokens, computed from its current row the same way for
//! both stores: each store locks the row, applies one of these, writes the columns back and records
//! the events returned, in one transaction.

use crate::events;
use crate::model::{Connection, ConnectionUpdate};
use crate::{StoreError, StoreResult};
use rollcall_scim::ScimError;
use serde_json::{Value, json};

/// An event to record: its type and data.
pub(crate) type PendingChange = (&'static str, Value);

/// A change to a connection's tokens.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TokenOp<'a> {
    Start { hash: &'a [u8; 32], prefix: &'a str },
    Complete,
    Cancel,
    Revoke,
}

fn conflict(detail: &str) -> StoreError {
    StoreError::Scim(ScimError::conflict(detail))
}

/// Applies `update` to `c`; returns the events to record (none when nothing changed).
pub(crate) fn apply_update(c: &mut Connection, update: &ConnectionUpdate) -> Vec<PendingChange> {
    let mut out = Vec::new();
    let mut changed = serde_json::Map::new();
    if let Some(name) = &update.name
        && *name != c.name
    {
        changed.insert("name".into(), json!({"before": c.name, "after": name}));
        c.name = name.clone();
    }
    if let Some(idp) = update.idp
        && idp != c.idp
    {
        changed.insert("idp".into(), json!({"before": c.idp, "after": idp}));
        c.idp = idp;
    }
    if let Some(debug) = update.debug_logging
        && debug != c.debug_logging
    {
        changed.insert(
            "debug_logging".into(),
            json!({"before": c.debug_logging, "after": debug}),
        );
        c.debug_logging = debug;
    }
    if !changed.is_empty() {
        out.push((events::CONNECTION_UPDATED, json!({ "changed": changed })));
    }
    if let Some(status) = update.status
        && status != c.status
    {
        c.status = status;
        let kind = match status {
            crate::model::ConnectionStatus::Active => events::CONNECTION_ENABLED,
            crate::model::ConnectionStatus::Disabled => events::CONNECTION_DISABLED,
        };
        out.push((kind, json!({})));
    }
    out
}

/// Records that the identity provider `detected` was recognised on `c` at `at_us`: a new kind
/// (first seen now), or the same one seen again. Returns the event to record when the kind changed
/// to one other than the configured `idp` (once per change, never per request).
pub(crate) fn apply_detection(
    c: &mut Connection,
    detected: crate::model::IdpKind,
    at_us: i64,
    user_agent: Option<&str>,
) -> Option<PendingChange> {
    if c.detected_idp == Some(detected) {
        c.detected_idp_last_seen_us = Some(c.detected_idp_last_seen_us.map_or(at_us, |l| l.max(at_us)));
        return None;
    }
    let previous = c.detected_idp.replace(detected);
    c.detected_idp_first_seen_us = Some(at_us);
    c.detected_idp_last_seen_us = Some(at_us);
    (detected != c.idp).then(|| {
        (
            events::CONNECTION_IDP_DETECTED,
            json!({
                "detected_idp": detected,
                "configured_idp": c.idp,
                "previous_detected_idp": previous,
                "user_agent": user_agent,
            }),
        )
    })
}

/// Applies a token change to `c`; returns the event to record, or 409 when the connection is not in
/// a state the change applies to.
pub(crate) fn apply_token_op(c: &mut Connection, op: TokenOp<'_>, now_us: i64) -> StoreResult<PendingChange> {
    match op {
        TokenOp::Start { hash, prefix } => {
            if c.next_token_hash.is_some() {
                return Err(conflict(
                    "a token rotation is already in progress on this connection; complete or cancel it first",
                ));
            }
            if c.token_hash.is_none() {
                // Nothing to overlap with: the new token is the connection's token at once.
                c.token_hash = Some(*hash);
                c.token_prefix = Some(prefix.to_string());
                return Ok((events::CONNECTION_TOKEN_ROTATED, json!({"token_prefix": prefix})));
            }
            c.next_token_hash = Some(*hash);
            c.next_token_prefix = Some(prefix.to_string());
            c.rotation_started_us = Some(now_us);
            Ok((
                events::CONNECTION_TOKEN_ROTATION_STARTED,
                json!({"next_token_prefix": prefix}),
            ))
        }
        TokenOp::Complete => {
            let (Some(hash), Some(prefix)) = (c.next_token_hash.take(), c.next_token_prefix.take()) else {
                return Err(conflict("no token rotation is in progress on this connection"));
            };
            let old = c.token_prefix.replace(prefix.clone());
            c.token_hash = Some(hash);
            c.rotation_started_us = None;
            Ok((
                events::CONNECTION_TOKEN_ROTATION_COMPLETED,
                json!({"token_prefix": prefix, "retired_token_prefix": old}),
            ))
        }
        TokenOp::Cancel => {
            let (Some(_), Some(prefix)) = (c.next_token_hash.take(), c.next_token_prefix.take()) else {
                return Err(conflict("no token rotation is in progress on this connection"));
            };
            c.rotation_started_us = None;
            Ok((
                events::CONNECTION_TOKEN_ROTATION_CANCELLED,
                json!({"dropped_token_prefix": prefix}),
            ))
        }
        TokenOp::Revoke => {
            let revoked: Vec<String> = [c.token_prefix.take(), c.next_token_prefix.take()]
                .into_iter()
                .flatten()
                .collect();
            c.token_hash = None;
            c.next_token_hash = None;
            c.rotation_started_us = None;
            Ok((
                events::CONNECTION_TOKENS_REVOKED,
                json!({"revoked_token_prefixes": revoked}),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConnectionStatus, IdpKind};

    fn conn() -> Connection {
        Connection {
            id: "c".into(),
            org_id: "o".into(),
            name: "n".into(),
            idp: IdpKind::Okta,
            kind: Default::default(),
            status: ConnectionStatus::Active,
            token_prefix: Some("rc_scim_old".into()),
            token_hash: Some([1; 32]),
            next_token_prefix: None,
            next_token_hash: None,
            rotation_started_us: None,
            created_us: 0,
            last_request_us: None,
            last_user_agent: None,
            detected_idp: None,
            detected_idp_first_seen_us: None,
            detected_idp_last_seen_us: None,
            policy: Default::default(),
            debug_logging: false,
            staged_us: None,
        }
    }

    #[test]
    fn detection_raises_one_event_per_change_away_from_the_configured_idp() {
        let mut c = conn();
        // Configured as Okta, called by Okta: recorded, no event.
        assert!(apply_detection(&mut c, IdpKind::Okta, 10, Some("Okta SCIM Client 1.0.0")).is_none());
        assert_eq!(
            (c.detected_idp, c.detected_idp_first_seen_us),
            (Some(IdpKind::Okta), Some(10))
        );
        // Entra: one event.
        let (kind, data) = apply_detection(&mut c, IdpKind::Entra, 20, Some("ua")).unwrap();
        assert_eq!(kind, events::CONNECTION_IDP_DETECTED);
        assert_eq!(data["detected_idp"], "entra");
        assert_eq!(data["configured_idp"], "okta");
        assert_eq!(data["previous_detected_idp"], "okta");
        // Entra again: last seen moves, first seen stays, no event.
        assert!(apply_detection(&mut c, IdpKind::Entra, 30, None).is_none());
        assert_eq!(
            (c.detected_idp_first_seen_us, c.detected_idp_last_seen_us),
            (Some(20), Some(30))
        );
        // Last seen never moves backwards (another node's older record).
        assert!(apply_detection(&mut c, IdpKind::Entra, 25, None).is_none());
        assert_eq!(c.detected_idp_last_seen_us, Some(30));
    }

    #[test]
    fn rotation_states() {
        let mut c = conn();
        assert!(apply_token_op(&mut c, TokenOp::Complete, 5).is_err());
        assert!(apply_token_op(&mut c, TokenOp::Cancel, 5).is_err());
        apply_token_op(
            &mut c,
            TokenOp::Start {
                hash: &[2; 32],
                prefix: "rc_scim_new",
            },
            5,
        )
        .unwrap();
        assert!(c.token_matches(&[1; 32]) && c.token_matches(&[2; 32]));
        assert_eq!(c.rotation_started_us, Some(5));
        assert!(
            apply_token_op(
                &mut c,
                TokenOp::Start {
                    hash: &[3; 32],
                    prefix: "x"
                },
                6
            )
            .is_err()
        );
        let (kind, _) = apply_token_op(&mut c, TokenOp::Complete, 7).unwrap();
        assert_eq!(kind, events::CONNECTION_TOKEN_ROTATION_COMPLETED);
        assert!(!c.token_matches(&[1; 32]) && c.token_matches(&[2; 32]));
        assert_eq!(c.token_prefix.as_deref(), Some("rc_scim_new"));
        apply_token_op(&mut c, TokenOp::Revoke, 8).unwrap();
        assert!(!c.token_matches(&[2; 32]));
        let (kind, _) = apply_token_op(
            &mut c,
            TokenOp::Start {
                hash: &[4; 32],
                prefix: "p",
            },
            9,
        )
        .unwrap();
        assert_eq!(kind, events::CONNECTION_TOKEN_ROTATED);
        assert!(c.token_matches(&[4; 32]) && c.next_token_hash.is_none());
    }

    #[test]
    fn updates_record_what_changed() {
        let mut c = conn();
        assert!(apply_update(&mut c, &ConnectionUpdate::default()).is_empty());
        let ev = apply_update(
            &mut c,
            &ConnectionUpdate {
                name: Some("m".into()),
                idp: Some(IdpKind::Okta),
                status: Some(ConnectionStatus::Disabled),
                debug_logging: None,
            },
        );
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].1, json!({"changed": {"name": {"before": "n", "after": "m"}}}));
        assert_eq!(ev[1].0, events::CONNECTION_DISABLED);
        let ev = apply_update(
            &mut c,
            &ConnectionUpdate {
                debug_logging: Some(true),
                ..Default::default()
            },
        );
        assert_eq!(
            ev,
            vec![(
                events::CONNECTION_UPDATED,
                json!({"changed": {"debug_logging": {"before": false, "after": true}}})
            )]
        );
        assert!(c.debug_logging);
        assert!(
            apply_update(
                &mut c,
                &ConnectionUpdate {
                    debug_logging: Some(true),
                    ..Default::default()
                }
            )
            .is_empty()
        );
    }
}
