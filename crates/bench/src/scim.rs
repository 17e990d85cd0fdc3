//! SCIM request bodies and the fixed-duration Rollcall workloads.

use crate::load::Op;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rand::Rng;
use rand::rngs::SmallRng;
use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

/// The userName of user `i` of a run-unique `prefix`.
pub fn user_name(prefix: &str, i: u64) -> String {
    format!("{prefix}-{i}@bench.example")
}

/// A plain user, as seeded and as created by the `create` workload.
pub fn plain_user(prefix: &str, i: u64) -> Value {
    let un = user_name(prefix, i);
    json!({
        "schemas": [USER_SCHEMA],
        "userName": un,
        "externalId": format!("{prefix}-{i}"),
        "name": {"givenName": "Bench", "familyName": format!("User {i}")},
        "displayName": format!("Bench User {i}"),
        "emails": [{"value": un, "type": "work", "primary": true}],
        "active": true,
    })
}

/// A user as Okta's provisioning sends it on create: a password, and an empty `groups`.
pub fn okta_user(prefix: &str, i: u64) -> Value {
    let un = user_name(prefix, i);
    json!({
        "schemas": [USER_SCHEMA],
        "userName": un,
        "name": {"givenName": "Okta", "familyName": format!("Person {i}")},
        "emails": [{"primary": true, "value": un, "type": "work"}],
        "displayName": format!("Okta Person {i}"),
        "locale": "en-US",
        "externalId": format!("00u{prefix}{i:08}"),
        "groups": [],
        "password": format!("Pw-{prefix}-{i}-x9!"),
        "active": true,
    })
}

/// A user as Microsoft Entra's provisioning sends it on create: the enterprise extension and
/// `"active": true`.
pub fn entra_user(prefix: &str, i: u64) -> Value {
    let un = user_name(prefix, i);
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "externalId": format!("{prefix}-entra-{i}"),
        "userName": un,
        "active": true,
        "displayName": format!("Entra Person {i}"),
        "title": "Engineer",
        "emails": [{"primary": true, "type": "work", "value": un}],
        "name": {
            "formatted": format!("Entra Person {i}"),
            "familyName": format!("Person {i}"),
            "givenName": "Entra",
        },
        ENTERPRISE_SCHEMA: {
            "employeeNumber": format!("{i}"),
            "department": "Engineering",
            "costCenter": "CC-42",
        },
    })
}

pub fn group(display_name: &str, external_id: Option<&str>) -> Value {
    let mut g = json!({"schemas": [GROUP_SCHEMA], "displayName": display_name, "members": []});
    if let Some(e) = external_id {
        g["externalId"] = json!(e);
    }
    g
}

/// `PATCH` adding `ids` as members; `op` is "add" or Entra's "Add".
pub fn add_members(op: &str, ids: &[String]) -> Value {
    let value: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
    json!({"schemas": [PATCH_OP], "Operations": [{"op": op, "path": "members", "value": value}]})
}

/// `PATCH` removing one member then adding it back.
pub fn remove_then_add(id: &str) -> Value {
    json!({
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "remove", "path": format!("members[value eq \"{id}\"]")},
            {"op": "add", "path": "members", "value": [{"value": id}]},
        ],
    })
}

/// The query string for `attr eq "value"`.
pub fn eq_filter(attr: &str, value: &str) -> String {
    let f = format!("{attr} eq \"{value}\"");
    format!("filter={}", utf8_percent_encode(&f, NON_ALPHANUMERIC))
}

/// `GET /Users/{id}` on a random seeded user.
pub struct GetUser {
    pub base: String,
    pub ids: Arc<Vec<String>>,
}

impl Op for GetUser {
    fn request(&self, client: &Client, rng: &mut SmallRng) -> RequestBuilder {
        let id = &self.ids[rng.random_range(0..self.ids.len())];
        client.get(format!("{}/Users/{id}", self.base))
    }
}

/// `GET /Users?filter=userName eq "..."` on a random seeded user.
pub struct FilterUser {
    pub base: String,
    pub prefix: String,
    pub users: u64,
}

impl Op for FilterUser {
    fn request(&self, client: &Client, rng: &mut SmallRng) -> RequestBuilder {
        let i = rng.random_range(0..self.users);
        let q = eq_filter("userName", &user_name(&self.prefix, i));
        client.get(format!("{}/Users?{q}", self.base))
    }
}

/// `GET /Users?startIndex=R&count=100` with random R.
pub struct PageUsers {
    pub base: String,
    pub users: u64,
}

impl Op for PageUsers {
    fn request(&self, client: &Client, rng: &mut SmallRng) -> RequestBuilder {
        let last = self.users.saturating_sub(99).max(1);
        let r = rng.random_range(1..=last);
        client.get(format!("{}/Users?startIndex={r}&count=100", self.base))
    }
}

/// PATCH remove-then-add of a random member of one group.
pub struct PatchMember {
    pub base: String,
    pub group_id: String,
    pub members: Arc<Vec<String>>,
    pub count: usize,
}

impl Op for PatchMember {
    fn request(&self, client: &Client, rng: &mut SmallRng) -> RequestBuilder {
        let id = &self.members[rng.random_range(0..self.count)];
        client
            .patch(format!("{}/Groups/{}", self.base, self.group_id))
            .body(remove_then_add(id).to_string())
    }
}

/// `POST /Users` with a new user each time.
pub struct CreateUser {
    pub base: String,
    pub prefix: String,
    pub counter: AtomicU64,
}

impl Op for CreateUser {
    fn request(&self, client: &Client, _rng: &mut SmallRng) -> RequestBuilder {
        let i = self.counter.fetch_add(1, Ordering::Relaxed);
        client
            .post(format!("{}/Users", self.base))
            .body(plain_user(&self.prefix, i).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_is_percent_encoded() {
        assert_eq!(
            eq_filter("userName", "a-1@b.example"),
            "filter=userName%20eq%20%22a%2D1%40b%2Eexample%22"
        );
    }

    #[test]
    fn patch_bodies() {
        let p = remove_then_add("u1");
        assert_eq!(p["Operations"][0]["path"], "members[value eq \"u1\"]");
        assert_eq!(p["Operations"][1]["value"][0]["value"], "u1");
        let a = add_members("Add", &["a".into(), "b".into()]);
        assert_eq!(a["Operations"][0]["value"].as_array().unwrap().len(), 2);
        assert_eq!(okta_user("p", 1)["groups"], json!([]));
        assert_eq!(entra_user("p", 1)["active"], true);
        assert!(entra_user("p", 1)[ENTERPRISE_SCHEMA].is_object());
    }
}
