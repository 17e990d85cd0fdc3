//! SCIM operations on one target, shaped by its profile: lookups by one attribute (only those the
//! target can filter on), listing every user page by page, create, update (PATCH of the attributes
//! that changed where PATCH exists, else PUT), deactivate, delete, and group members in chunks of
//! the size the target accepts.

use crate::client::{ClientError, ScimRequest, ScimResponse, TargetClient, path_segment};
use crate::plan::{AttributeChange, GROUP_SCHEMA, RemoteUser};
use crate::profile::{Paging, TargetProfile};
use serde_json::{Value, json};

/// The SCIM PATCH message schema.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The most users a listing reads before it gives up (a target far bigger than Rollcall's
/// directory is not matched by listing: lookups go one by one).
pub const MAX_LISTED: usize = 500_000;

/// A target, as the engine talks to it.
#[derive(Debug, Clone)]
pub struct Remote {
    client: TargetClient,
    /// The profile in force: the table's, or for `generic` the one read from the target's
    /// `/ServiceProviderConfig`.
    profile: TargetProfile,
    requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// `attr eq "value"`, quoted as RFC 7644 §3.4.2.2 (JSON string) says.
pub fn eq_filter(attr: &str, value: &str) -> String {
    format!("{attr} eq {}", Value::String(value.to_string()))
}

fn user_of(v: &Value) -> Option<RemoteUser> {
    Some(RemoteUser {
        id: v.get("id")?.as_str()?.to_string(),
        doc: v.clone(),
    })
}

fn resources(body: &Value) -> Vec<Value> {
    body.get("Resources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

impl Remote {
    pub fn new(client: TargetClient, profile: TargetProfile) -> Remote {
        Remote {
            client,
            profile,
            requests: Default::default(),
        }
    }

    /// The same client (its connections, OAuth token and rate-limit buckets) and profile, with
    /// its own request count: one run's.
    pub fn session(&self) -> Remote {
        Remote {
            client: self.client.clone(),
            profile: self.profile.clone(),
            requests: Default::default(),
        }
    }

    /// The same target (and request count) under a refined profile.
    pub fn with_profile(mut self, profile: TargetProfile) -> Remote {
        self.profile = profile;
        self
    }

    pub fn profile(&self) -> &TargetProfile {
        &self.profile
    }

    /// HTTP requests made so far (retries included).
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn send(&self, req: ScimRequest) -> Result<ScimResponse, ClientError> {
        let r = self.client.send(req).await;
        let attempts = match &r {
            Ok(a) => a.attempts,
            Err(e) => e.attempts,
        };
        self.requests
            .fetch_add(u64::from(attempts.max(1)), std::sync::atomic::Ordering::Relaxed);
        r
    }

    /// Reads the target's `/ServiceProviderConfig` (for the generic profile).
    pub async fn service_provider_config(&self) -> Result<Value, ClientError> {
        Ok(self
            .send(ScimRequest::get(self.profile.service_provider_config_path))
            .await?
            .body)
    }

    /// Whether users can be found by `attr` on this target.
    pub fn can_find_by(&self, attr: &str) -> bool {
        self.profile.filter.can_find_users_by(attr)
    }

    /// The users with `attr eq value`.
    pub async fn find_users(&self, attr: &str, value: &str) -> Result<Vec<RemoteUser>, ClientError> {
        let resp = self
            .send(ScimRequest::get("Users").query("filter", eq_filter(attr, value)))
            .await?;
        Ok(resources(&resp.body).iter().filter_map(user_of).collect())
    }

    /// Every user of the target, page by page (`None` when it has more than [`MAX_LISTED`]).
    pub async fn list_users(&self) -> Result<Option<Vec<RemoteUser>>, ClientError> {
        let size = self.profile.paging.page_size(100);
        let mut out: Vec<RemoteUser> = Vec::new();
        match self.profile.paging {
            Paging::Index { .. } => {
                let mut start = 1u64;
                loop {
                    let resp = self
                        .send(
                            ScimRequest::get("Users")
                                .query("startIndex", start.to_string())
                                .query("count", size.to_string()),
                        )
                        .await?;
                    let page = resources(&resp.body);
                    let total = resp.body.get("totalResults").and_then(Value::as_u64);
                    let n = page.len() as u64;
                    out.extend(page.iter().filter_map(user_of));
                    start += n;
                    if n == 0 || total.is_some_and(|t| start > t) || out.len() > MAX_LISTED {
                        break;
                    }
                }
            }
            Paging::Cursor { .. } => {
                let mut cursor = String::new();
                loop {
                    let resp = self
                        .send(
                            ScimRequest::get("Users")
                                .query("cursor", cursor.clone())
                                .query("count", size.to_string()),
                        )
                        .await?;
                    out.extend(resources(&resp.body).iter().filter_map(user_of));
                    match resp.body.get("nextCursor").and_then(Value::as_str) {
                        Some(c) if !c.is_empty() && out.len() <= MAX_LISTED => cursor = c.to_string(),
                        _ => break,
                    }
                }
            }
        }
        Ok((out.len() <= MAX_LISTED).then_some(out))
    }

    /// One user (`None`: 404).
    pub async fn get_user(&self, id: &str) -> Result<Option<Value>, ClientError> {
        match self.send(ScimRequest::get(format!("Users/{}", path_segment(id)))).await {
            Ok(r) => Ok(Some(r.body)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a user; the id the target gave it.
    pub async fn create_user(&self, doc: &Value) -> Result<RemoteUser, ClientError> {
        let mut body = doc.clone();
        if let Some(o) = body.as_object_mut() {
            for refused in self.profile.users.refused_on_create {
                o.remove(*refused);
            }
        }
        let resp = self.send(ScimRequest::post("Users", body)).await?;
        user_of(&resp.body).ok_or_else(|| invalid_answer("POST", "Users", "the created user has no id"))
    }

    /// Brings a user to `desired`: a PATCH replacing the attributes that changed where the target
    /// has PATCH, else a PUT of the whole document.
    pub async fn update_user(&self, id: &str, desired: &Value, changes: &[AttributeChange]) -> Result<(), ClientError> {
        let path = format!("Users/{}", path_segment(id));
        if self.profile.patch.supported && !changes.is_empty() {
            let ops: Vec<Value> = changes
                .iter()
                .map(|c| {
                    if c.after.is_null() {
                        json!({"op": "remove", "path": c.attribute})
                    } else {
                        json!({"op": "replace", "path": c.attribute, "value": c.after})
                    }
                })
                .collect();
            self.send(ScimRequest::patch(
                path,
                json!({"schemas": [PATCH_OP], "Operations": ops}),
            ))
            .await?;
        } else {
            let mut body = desired.clone();
            body["id"] = json!(id);
            self.send(ScimRequest::put(path, body)).await?;
        }
        Ok(())
    }

    /// `active: false` (`true` to reactivate), with the rest of `desired` for targets without PATCH.
    pub async fn set_active(&self, id: &str, active: bool, desired: Option<&Value>) -> Result<(), ClientError> {
        let change = AttributeChange {
            attribute: "active".into(),
            before: json!(!active),
            after: json!(active),
        };
        let mut doc = desired.cloned().unwrap_or_else(|| json!({}));
        doc["active"] = json!(active);
        self.update_user(id, &doc, std::slice::from_ref(&change)).await
    }

    /// Deletes a user; a 404 is success (it is gone).
    pub async fn delete_user(&self, id: &str) -> Result<(), ClientError> {
        match self
            .send(ScimRequest::delete(format!("Users/{}", path_segment(id))))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The groups with `displayName eq name`.
    pub async fn find_groups(&self, attr: &str, value: &str) -> Result<Vec<RemoteUser>, ClientError> {
        let resp = self
            .send(ScimRequest::get("Groups").query("filter", eq_filter(attr, value)))
            .await?;
        Ok(resources(&resp.body).iter().filter_map(user_of).collect())
    }

    /// Creates a group, with its members when the target takes them on create (else empty: the
    /// caller adds them in chunks).
    pub async fn create_group(&self, doc: &Value, members: &[String]) -> Result<RemoteUser, ClientError> {
        let mut body = doc.clone();
        body["schemas"] = json!([GROUP_SCHEMA]);
        if self.profile.groups.members_on_create && !members.is_empty() {
            body["members"] = Value::Array(members.iter().map(|m| json!({"value": m})).collect());
        }
        let resp = self.send(ScimRequest::post("Groups", body)).await?;
        user_of(&resp.body).ok_or_else(|| invalid_answer("POST", "Groups", "the created group has no id"))
    }

    /// Changes a group's displayName / externalId.
    pub async fn update_group(&self, id: &str, changes: &[AttributeChange]) -> Result<(), ClientError> {
        if changes.is_empty() {
            return Ok(());
        }
        let ops: Vec<Value> = changes
            .iter()
            .map(|c| json!({"op": "replace", "path": c.attribute, "value": c.after}))
            .collect();
        self.send(ScimRequest::patch(
            format!("Groups/{}", path_segment(id)),
            json!({"schemas": [PATCH_OP], "Operations": ops}),
        ))
        .await?;
        Ok(())
    }

    /// Adds and removes members, at most as many per PATCH as the target accepts.
    pub async fn change_members(&self, id: &str, add: &[String], remove: &[String]) -> Result<(), ClientError> {
        let chunk = self.profile.member_changes_per_patch(100) as usize;
        let path = format!("Groups/{}", path_segment(id));
        for part in add.chunks(chunk) {
            let value: Vec<Value> = part.iter().map(|m| json!({"value": m})).collect();
            self.send(ScimRequest::patch(
                path.clone(),
                json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": value}]}),
            ))
            .await?;
        }
        for part in remove.chunks(chunk) {
            let ops: Vec<Value> = if self.profile.patch.filtered_paths {
                part.iter()
                    .map(|m| json!({"op": "remove", "path": format!("members[value eq {}]", Value::String(m.clone()))}))
                    .collect()
            } else {
                let value: Vec<Value> = part.iter().map(|m| json!({"value": m})).collect();
                vec![json!({"op": "remove", "path": "members", "value": value})]
            };
            self.send(ScimRequest::patch(
                path.clone(),
                json!({"schemas": [PATCH_OP], "Operations": ops}),
            ))
            .await?;
        }
        Ok(())
    }

    /// Deletes a group; a 404 is success.
    pub async fn delete_group(&self, id: &str) -> Result<(), ClientError> {
        match self
            .send(ScimRequest::delete(format!("Groups/{}", path_segment(id))))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn invalid_answer(method: &str, path: &str, detail: &str) -> ClientError {
    ClientError::new(crate::client::ErrorKind::InvalidAnswer, method, path, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_quote_values() {
        assert_eq!(eq_filter("userName", "alice"), r#"userName eq "alice""#);
        assert_eq!(eq_filter("userName", r#"a"b\c"#), r#"userName eq "a\"b\\c""#);
    }
}
