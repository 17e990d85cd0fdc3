//! The fakes' SCIM resources: an in-memory store and the requests on it, checked against the
//! vendor's [`Rules`].

// Errors are the answers themselves (a `Response`), as in the server tests' Google fake.
#![allow(clippy::result_large_err)]

use crate::rules::{PageStyle, Rules};
use crate::{Fault, Inner, scim_error, scim_json};
use axum::http::Method;
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

type Res<T> = Result<T, Response>;

#[derive(Default)]
pub(crate) struct Db {
    users: BTreeMap<String, Value>,
    groups: BTreeMap<String, Value>,
    members: HashMap<String, BTreeSet<String>>,
    by_username: HashMap<String, String>,
    by_external_id: HashMap<String, String>,
    next: u64,
}

impl Db {
    pub(crate) fn users(&self) -> Vec<Value> {
        self.users.values().cloned().collect()
    }

    pub(crate) fn user(&self, id: &str) -> Option<Value> {
        self.users.get(id).cloned()
    }

    pub(crate) fn groups(&self, with_members: bool) -> Vec<Value> {
        self.groups.keys().map(|id| self.group_view(id, with_members)).collect()
    }

    pub(crate) fn members_of(&self, id: &str) -> Vec<String> {
        self.members
            .get(id)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn new_id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{:012}", self.next)
    }

    pub(crate) fn insert_user(&mut self, prefix: &str, mut user: Value) -> String {
        let id = self.new_id(prefix);
        user["id"] = json!(id);
        if user.get("active").is_none() {
            user["active"] = json!(true);
        }
        user["meta"] = json!({"resourceType": "User", "location": format!("Users/{id}")});
        self.index_user(&id, &user);
        self.users.insert(id.clone(), user);
        id
    }

    fn index_user(&mut self, id: &str, user: &Value) {
        if let Some(u) = user["userName"].as_str() {
            self.by_username.insert(u.to_lowercase(), id.to_string());
        }
        if let Some(x) = user["externalId"].as_str() {
            self.by_external_id.insert(x.to_string(), id.to_string());
        }
    }

    fn unindex_user(&mut self, id: &str) {
        self.by_username.retain(|_, v| v != id);
        self.by_external_id.retain(|_, v| v != id);
    }

    fn remove_user(&mut self, id: &str) {
        self.users.remove(id);
        self.unindex_user(id);
        for m in self.members.values_mut() {
            m.remove(id);
        }
    }

    fn group_view(&self, id: &str, with_members: bool) -> Value {
        let mut g = self.groups[id].clone();
        g["members"] = if with_members {
            Value::Array(
                self.members_of(id)
                    .into_iter()
                    .map(|m| json!({"value": m, "type": "User"}))
                    .collect(),
            )
        } else {
            json!([])
        };
        g
    }
}

/// One request to the SCIM endpoints.
#[allow(clippy::too_many_arguments)]
pub(crate) fn route(
    s: &mut Inner,
    rules: &Rules,
    method: &Method,
    resource: Option<&str>,
    id: Option<&str>,
    query: &str,
    body: &Value,
    fault: Option<&Fault>,
) -> Response {
    let result = (|| -> Res<Response> {
        if fault == Some(&Fault::NotFoundOnUpdate)
            && let Some(id) = id
            && *method != Method::POST
        {
            match resource {
                Some("Users") => s.db.remove_user(id),
                Some("Groups") => {
                    s.db.groups.remove(id);
                    s.db.members.remove(id);
                }
                _ => {}
            }
            return Err(scim_error(404, None, &format!("Resource {id} not found")));
        }
        let db = &mut s.db;
        let resp = match (resource, id, method.as_str()) {
            (Some(r), None, "GET") if r == rules.spc_path => Ok(scim_json(200, spc(rules))),
            (Some("Users"), None, "GET") => list_users(db, rules, query),
            (Some("Users"), None, "POST") => create_user(db, rules, body),
            (Some("Users"), Some(id), "GET") => {
                let u = db.users.get(id).ok_or_else(|| not_found(id))?;
                Ok(scim_json(200, u.clone()))
            }
            (Some("Users"), Some(id), "PUT") => replace_user(db, rules, id, body),
            (Some("Users"), Some(id), "PATCH") => patch_user(db, rules, id, body),
            (Some("Users"), Some(id), "DELETE") => delete_user(db, rules, id),
            (Some("Groups"), _, _) if !rules.groups => Err(scim_error(404, None, "Groups are not supported")),
            (Some("Groups"), None, "GET") => list_groups(db, rules, query),
            (Some("Groups"), None, "POST") => create_group(db, rules, body),
            (Some("Groups"), Some(id), "GET") => {
                if !db.groups.contains_key(id) {
                    return Err(not_found(id));
                }
                Ok(scim_json(200, db.group_view(id, rules.members_in_get)))
            }
            (Some("Groups"), Some(id), "PUT") => replace_group(db, rules, id, body),
            (Some("Groups"), Some(id), "PATCH") => patch_group(db, rules, id, body),
            (Some("Groups"), Some(id), "DELETE") => {
                if db.groups.remove(id).is_none() {
                    return Err(not_found(id));
                }
                db.members.remove(id);
                Ok(no_content())
            }
            (Some("Users") | Some("Groups"), _, _) => Err(scim_error(405, None, "method not allowed")),
            _ => Err(scim_error(404, None, "no such endpoint")),
        }?;
        if fault == Some(&Fault::ConflictOnCreate) && *method == Method::POST && resp.status().is_success() {
            // Made, as if it had been there before: the answer is the conflict.
            return Err(scim_error(409, Some("uniqueness"), rules.duplicate_detail));
        }
        Ok(resp)
    })();
    result.unwrap_or_else(|e| e)
}

fn no_content() -> Response {
    let mut r = Response::new(axum::body::Body::empty());
    *r.status_mut() = axum::http::StatusCode::NO_CONTENT;
    r
}

fn not_found(id: &str) -> Response {
    scim_error(404, None, &format!("Resource {id} not found"))
}

fn invalid(detail: &str) -> Response {
    scim_error(400, Some("invalidValue"), detail)
}

fn spc(rules: &Rules) -> Value {
    let max = match rules.paging {
        PageStyle::Index { max } | PageStyle::Cursor { max } => max,
    };
    let auth = if rules.oauth {
        json!([{"type": "oauth2", "name": "OAuth v2.0", "description": "OAuth 2.0"}])
    } else {
        json!([{"type": "oauthbearertoken", "name": "OAuth Bearer Token", "description": "a bearer token"}])
    };
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": max},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": auth,
    })
}

// --- filters and paging ---

struct Cmp {
    attr: String,
    op: String,
    value: Value,
}

fn split_outside_quotes<'a>(s: &'a str, word: &str) -> Vec<&'a str> {
    let lower = s.to_ascii_lowercase();
    let pat = format!(" {word} ");
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            _ if !in_quotes && lower[i..].starts_with(&pat) => {
                parts.push(&s[start..i]);
                i += pat.len();
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

fn parse_filter(rules: &Rules, filter: &str, allowed: Option<&[&str]>) -> Res<Vec<Cmp>> {
    let bad = |d: &str| scim_error(400, Some("invalidFilter"), d);
    if split_outside_quotes(filter, "or").len() > 1
        || filter.contains('(')
        || filter.trim_start().to_lowercase().starts_with("not")
    {
        return Err(bad("only comparisons joined with and are supported"));
    }
    let terms = split_outside_quotes(filter, "and");
    if terms.len() > 1 && !rules.filter_and {
        return Err(bad("and is not supported"));
    }
    let mut out = Vec::new();
    for t in terms {
        let t = t.trim();
        let mut it = t.splitn(3, ' ');
        let attr = it.next().unwrap_or("").to_string();
        let op = it.next().unwrap_or("").to_ascii_lowercase();
        let raw = it.next().unwrap_or("").trim();
        if attr.is_empty() || op.is_empty() {
            return Err(bad(&format!("cannot read the filter \"{t}\"")));
        }
        if rules.filter_eq_only && op != "eq" {
            return Err(bad(&format!("only eq is supported, not {op}")));
        }
        if !["eq", "ne", "co", "sw", "ew", "pr"].contains(&op.as_str()) {
            return Err(bad(&format!("unknown operator {op}")));
        }
        if let Some(list) = allowed
            && !list.iter().any(|a| a.eq_ignore_ascii_case(&attr))
        {
            return Err(bad(&format!("filtering on {attr} is not supported")));
        }
        let value = if op == "pr" {
            Value::Null
        } else {
            serde_json::from_str(raw).map_err(|_| bad(&format!("cannot read the value {raw}")))?
        };
        out.push(Cmp { attr, op, value });
    }
    Ok(out)
}

/// The values at an attribute path (`emails.value`, `name.givenName`, `members.value`).
fn values_at<'v>(v: &'v Value, path: &str) -> Vec<&'v Value> {
    let mut current = vec![v];
    for part in path.split('.') {
        let mut next = Vec::new();
        for c in current {
            let found = c
                .as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(part)).map(|(_, v)| v));
            match found {
                Some(Value::Array(a)) => next.extend(a.iter()),
                Some(x) => next.push(x),
                None => {}
            }
        }
        current = next;
    }
    // `emails eq "x"` compares the values of a multi-valued complex attribute.
    current
        .into_iter()
        .flat_map(|c| match c.get("value") {
            Some(v) => vec![v],
            None => vec![c],
        })
        .collect()
}

fn compare(op: &str, have: &Value, want: &Value, case_exact: bool) -> bool {
    let norm = |v: &Value| match v {
        Value::String(s) if !case_exact => Value::String(s.to_lowercase()),
        x => x.clone(),
    };
    let (h, w) = (norm(have), norm(want));
    match (op, &h, &w) {
        ("eq", _, _) => h == w,
        ("ne", _, _) => h != w,
        ("co", Value::String(a), Value::String(b)) => a.contains(b.as_str()),
        ("sw", Value::String(a), Value::String(b)) => a.starts_with(b.as_str()),
        ("ew", Value::String(a), Value::String(b)) => a.ends_with(b.as_str()),
        _ => false,
    }
}

fn user_matches(db: &Db, id: &str, u: &Value, c: &Cmp) -> bool {
    let attr = c.attr.to_ascii_lowercase();
    if c.op == "pr" {
        return !values_at(u, &c.attr).is_empty();
    }
    if attr == "groups.value" {
        return c
            .value
            .as_str()
            .is_some_and(|g| db.members.get(g).is_some_and(|m| m.contains(id)));
    }
    let path = match attr.as_str() {
        "email" => "emails",
        _ => c.attr.as_str(),
    };
    let case_exact = matches!(attr.as_str(), "id" | "externalid");
    values_at(u, path)
        .iter()
        .any(|v| compare(&c.op, v, &c.value, case_exact))
}

/// `startIndex`/`count` or `cursor`/`count`. Only the page's items are copied (a full listing of
/// a large target is read a page at a time).
fn page(rules: &Rules, query: &HashMap<String, String>, matched: Vec<&Value>) -> Res<Value> {
    let total = matched.len();
    let count = query.get("count").and_then(|c| c.parse::<usize>().ok());
    match rules.paging {
        PageStyle::Cursor { max } => {
            if count.is_some_and(|c| c > max || c == 0) {
                return Err(invalid(&format!("count must be between 1 and {max}")));
            }
            let count = count.unwrap_or(max);
            match query.get("cursor") {
                Some(cursor) => {
                    let from: usize = if cursor.is_empty() {
                        0
                    } else {
                        cursor.parse().map_err(|_| invalid("invalid cursor"))?
                    };
                    let items: Vec<Value> = matched.into_iter().skip(from).take(count).cloned().collect();
                    let mut out = json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                        "itemsPerPage": items.len(),
                        "Resources": items,
                    });
                    if from + count < total {
                        out["nextCursor"] = json!((from + count).to_string());
                    }
                    Ok(out)
                }
                None => {
                    let items: Vec<Value> = matched.into_iter().take(count).cloned().collect();
                    Ok(json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                        "totalResults": total, "startIndex": 1, "itemsPerPage": items.len(),
                        "Resources": items,
                    }))
                }
            }
        }
        PageStyle::Index { max } => {
            let start = query
                .get("startIndex")
                .and_then(|s| s.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let count = count.unwrap_or(100).min(max);
            let items: Vec<Value> = matched.into_iter().skip(start - 1).take(count).cloned().collect();
            Ok(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": total, "startIndex": start, "itemsPerPage": items.len(),
                "Resources": items,
            }))
        }
    }
}

fn query_map(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

fn list_users(db: &Db, rules: &Rules, query: &str) -> Res<Response> {
    let q = query_map(query);
    let cmps = match q.get("filter") {
        Some(f) => parse_filter(rules, f, rules.user_filter_attrs)?,
        None => vec![],
    };
    // The indexes answer the usual lookups without a scan.
    let candidates: Vec<(&String, &Value)> = match cmps.as_slice() {
        [c] if c.op == "eq" && c.attr.eq_ignore_ascii_case("userName") => c
            .value
            .as_str()
            .and_then(|u| db.by_username.get(&u.to_lowercase()))
            .and_then(|id| db.users.get_key_value(id))
            .into_iter()
            .collect(),
        [c] if c.op == "eq" && c.attr.eq_ignore_ascii_case("externalId") => c
            .value
            .as_str()
            .and_then(|x| db.by_external_id.get(x))
            .and_then(|id| db.users.get_key_value(id))
            .into_iter()
            .collect(),
        _ => db.users.iter().collect(),
    };
    let matched: Vec<&Value> = candidates
        .into_iter()
        .filter(|(id, u)| cmps.iter().all(|c| user_matches(db, id, u, c)))
        .map(|(_, u)| u)
        .collect();
    Ok(scim_json(200, page(rules, &q, matched)?))
}

fn list_groups(db: &Db, rules: &Rules, query: &str) -> Res<Response> {
    let q = query_map(query);
    let cmps = match q.get("filter") {
        Some(f) => parse_filter(rules, f, rules.group_filter_attrs)?,
        None => vec![],
    };
    let matched: Vec<Value> = db
        .groups
        .keys()
        .filter(|id| {
            let full = db.group_view(id, true);
            cmps.iter().all(|c| {
                let attr = c.attr.to_ascii_lowercase();
                let path = if attr == "member" { "members" } else { c.attr.as_str() };
                values_at(&full, path)
                    .iter()
                    .any(|v| compare(&c.op, v, &c.value, attr == "id" || attr == "externalid"))
            })
        })
        .map(|id| db.group_view(id, rules.members_in_get))
        .collect();
    Ok(scim_json(200, page(rules, &q, matched.iter().collect())?))
}

// --- users ---

fn present(v: &Value, path: &str) -> bool {
    values_at(v, path).iter().any(|x| match x {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }) || matches!(path_value(v, path), Some(Value::Array(a)) if !a.is_empty())
}

fn path_value<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(v, |c, p| {
        c.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(p))
            .map(|(_, v)| v)
    })
}

const MULTI_VALUED: &[&str] = &[
    "emails",
    "phoneNumbers",
    "addresses",
    "roles",
    "ims",
    "photos",
    "entitlements",
    "x509Certificates",
];

/// The vendor's rules for a user body; `creating`: a POST.
fn check_user(db: &Db, rules: &Rules, id: Option<&str>, u: &Value, creating: bool) -> Res<()> {
    if !u.is_object() {
        return Err(scim_error(400, Some("invalidSyntax"), "the body must be a JSON object"));
    }
    if u["userName"].as_str().is_none_or(str::is_empty) {
        return Err(invalid("userName is required"));
    }
    if creating || id.is_some() {
        for r in rules.required_on_create {
            if !present(u, r) {
                return Err(invalid(&format!("{r} is required")));
            }
        }
    }
    if creating {
        for r in rules.refused_on_create {
            if u.get(*r).is_some() {
                return Err(invalid(&format!("{r} cannot be specified on create")));
            }
        }
    }
    if rules.one_value_multi {
        for m in MULTI_VALUED {
            if u.get(*m).and_then(Value::as_array).is_some_and(|a| a.len() > 1) {
                return Err(invalid(&format!("{m}: only one value is supported")));
            }
        }
    }
    if rules.primary_email_required
        && let Some(e) = u["emails"].as_array().and_then(|a| a.first())
        && e["primary"] != json!(true)
    {
        return Err(invalid("the email must be marked primary"));
    }
    if rules.profile_entitlement_required {
        let ok = u["entitlements"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["value"].as_str().is_some_and(|v| v.starts_with("00e")));
        if !ok {
            return Err(scim_error(
                409,
                None,
                "REQUIRED_FIELD_MISSING:user_must_have_one_entitlement_which_must_be_a_profileid;",
            ));
        }
    }
    if let Some(name) = u["userName"].as_str()
        && let Some(owner) = db.by_username.get(&name.to_lowercase())
        && Some(owner.as_str()) != id
    {
        return Err(scim_error(409, Some("uniqueness"), rules.duplicate_detail));
    }
    Ok(())
}

fn create_user(db: &mut Db, rules: &Rules, body: &Value) -> Res<Response> {
    check_user(db, rules, None, body, true)?;
    let mut u = body.clone();
    if let Some(o) = u.as_object_mut() {
        o.remove("groups");
        o.remove("id");
        o.remove("password");
    }
    let id = db.insert_user(rules.user_id_prefix, u);
    Ok(scim_json(201, db.users[&id].clone()))
}

fn store_user(db: &mut Db, rules: &Rules, id: &str, mut u: Value) -> Response {
    let meta = db.users[id]["meta"].clone();
    u["id"] = json!(id);
    u["meta"] = meta;
    if let Some(o) = u.as_object_mut() {
        o.remove("groups");
        o.remove("password");
    }
    if rules.inactive_removes && u["active"] == json!(false) {
        // GitHub organization SCIM: the user leaves the organization and the identity is deleted.
        db.remove_user(id);
        return scim_json(200, u);
    }
    db.unindex_user(id);
    db.index_user(id, &u);
    db.users.insert(id.to_string(), u.clone());
    scim_json(200, u)
}

fn replace_user(db: &mut Db, rules: &Rules, id: &str, body: &Value) -> Res<Response> {
    if !db.users.contains_key(id) {
        return Err(not_found(id));
    }
    check_user(db, rules, Some(id), body, false)?;
    Ok(store_user(db, rules, id, body.clone()))
}

fn operations(body: &Value) -> Res<&Vec<Value>> {
    body.get("Operations")
        .or_else(|| body.get("operations"))
        .and_then(Value::as_array)
        .ok_or_else(|| scim_error(400, Some("invalidSyntax"), "Operations is required"))
}

fn op_name(op: &Value) -> Res<String> {
    let name = op["op"].as_str().unwrap_or("").to_ascii_lowercase();
    if ["add", "replace", "remove"].contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(scim_error(
            400,
            Some("invalidSyntax"),
            &format!("unknown op {}", op["op"]),
        ))
    }
}

fn filtered_path_refused(rules: &Rules, path: &str) -> Res<()> {
    if path.contains('[') && !rules.filtered_patch_paths {
        return Err(scim_error(
            400,
            Some("invalidPath"),
            "Complex SCIM path selectors that include filters are not supported",
        ));
    }
    Ok(())
}

/// Sets (or, with `value` `None`, removes) the attribute at a simple path; an extension URN
/// prefix (`urn:...:User:department`) is its own object.
fn set_path(target: &mut Value, path: &str, value: Option<Value>, append: bool) {
    let (obj_path, leaf): (Vec<String>, String) = if path.to_ascii_lowercase().starts_with("urn:") {
        match path.rfind(':') {
            Some(i) => (vec![path[..i].to_string()], path[i + 1..].to_string()),
            None => (vec![], path.to_string()),
        }
    } else {
        let mut parts: Vec<String> = path.split('.').map(str::to_string).collect();
        let leaf = parts.pop().unwrap_or_default();
        (parts, leaf)
    };
    let mut cur = target;
    for p in obj_path {
        if !cur.get(&p).is_some_and(Value::is_object) {
            cur[&p] = json!({});
        }
        cur = cur.get_mut(&p).expect("just made");
    }
    let Some(o) = cur.as_object_mut() else { return };
    let key = o
        .keys()
        .find(|k| k.eq_ignore_ascii_case(&leaf))
        .cloned()
        .unwrap_or(leaf);
    match value {
        None => {
            o.remove(&key);
        }
        Some(Value::Array(new)) if append => match o.get_mut(&key) {
            Some(Value::Array(old)) => old.extend(new),
            _ => {
                o.insert(key, Value::Array(new));
            }
        },
        Some(Value::Object(new)) if !append || o.get(&key).is_some_and(Value::is_object) => {
            // A complex attribute: merge sub-attributes.
            match o.get_mut(&key) {
                Some(Value::Object(old)) => old.extend(new),
                _ => {
                    o.insert(key, Value::Object(new));
                }
            }
        }
        Some(v) => {
            o.insert(key, v);
        }
    }
}

/// `attr[sub eq "x"]` and `attr[sub eq "x"].leaf`.
fn apply_filtered(target: &mut Value, path: &str, op: &str, value: Option<&Value>) -> Res<()> {
    let bad = || scim_error(400, Some("invalidPath"), &format!("cannot read the path {path}"));
    let open = path.find('[').ok_or_else(bad)?;
    let close = path.find(']').ok_or_else(bad)?;
    let attr = &path[..open];
    let inner = &path[open + 1..close];
    let leaf = path[close + 1..].strip_prefix('.');
    let mut it = inner.splitn(3, ' ');
    let (sub, cmp, raw) = (
        it.next().ok_or_else(bad)?,
        it.next().ok_or_else(bad)?,
        it.next().ok_or_else(bad)?,
    );
    if !cmp.eq_ignore_ascii_case("eq") {
        return Err(scim_error(400, Some("invalidFilter"), "only eq is supported in paths"));
    }
    let want: Value = serde_json::from_str(raw).map_err(|_| bad())?;
    let arr = target
        .as_object_mut()
        .ok_or_else(bad)?
        .entry(attr.to_string())
        .or_insert_with(|| json!([]));
    let Some(items) = arr.as_array_mut() else {
        return Err(bad());
    };
    let hit = |e: &Value| e.get(sub).is_some_and(|v| v == &want);
    match (op, leaf) {
        ("remove", None) => items.retain(|e| !hit(e)),
        ("remove", Some(l)) => items.iter_mut().filter(|e| hit(e)).for_each(|e| {
            if let Some(o) = e.as_object_mut() {
                o.remove(l);
            }
        }),
        (_, Some(l)) => {
            let v = value.cloned().unwrap_or(Value::Null);
            match items.iter_mut().find(|e| hit(e)) {
                Some(e) => e[l] = v,
                None => {
                    let mut e = Map::new();
                    e.insert(sub.to_string(), want.clone());
                    e.insert(l.to_string(), v);
                    items.push(Value::Object(e));
                }
            }
        }
        (_, None) => {
            let v = value.cloned().unwrap_or(Value::Null);
            items.retain(|e| !hit(e));
            items.push(v);
        }
    }
    Ok(())
}

fn patch_user(db: &mut Db, rules: &Rules, id: &str, body: &Value) -> Res<Response> {
    let current = db.users.get(id).ok_or_else(|| not_found(id))?.clone();
    let ops = operations(body)?;
    if rules.one_op_on_username_and_active {
        for attr in ["userName", "active"] {
            let n = ops
                .iter()
                .filter(|op| {
                    op["path"].as_str().is_some_and(|p| p.eq_ignore_ascii_case(attr))
                        || op["value"]
                            .as_object()
                            .is_some_and(|o| o.keys().any(|k| k.eq_ignore_ascii_case(attr)))
                })
                .count();
            if n > 1 {
                return Err(invalid(&format!("multiple operations on {attr} are not supported")));
            }
        }
    }
    let mut u = current;
    for op in ops {
        let name = op_name(op)?;
        let value = op.get("value");
        match op["path"].as_str() {
            None => {
                let o = value
                    .and_then(Value::as_object)
                    .ok_or_else(|| scim_error(400, Some("invalidSyntax"), "a value object is needed without a path"))?;
                if name == "remove" {
                    return Err(scim_error(400, Some("noTarget"), "remove needs a path"));
                }
                for (k, v) in o {
                    set_path(&mut u, k, Some(v.clone()), name == "add");
                }
            }
            Some(p) if p.contains('[') => {
                filtered_path_refused(rules, p)?;
                apply_filtered(&mut u, p, &name, value)?;
            }
            Some(p) => {
                let v = if name == "remove" {
                    None
                } else {
                    Some(value.cloned().unwrap_or(Value::Null))
                };
                set_path(&mut u, p, v, name == "add");
            }
        }
    }
    check_user(db, rules, Some(id), &u, false)?;
    Ok(store_user(db, rules, id, u))
}

fn delete_user(db: &mut Db, rules: &Rules, id: &str) -> Res<Response> {
    let u = db.users.get_mut(id).ok_or_else(|| not_found(id))?;
    if rules.delete_deactivates {
        u["active"] = json!(false);
    } else {
        db.remove_user(id);
    }
    Ok(no_content())
}

// --- groups ---

fn member_ids(db: &Db, v: Option<&Value>) -> Res<Vec<String>> {
    let Some(v) = v else { return Ok(vec![]) };
    let list: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![v],
        _ => return Err(invalid("members must be an array")),
    };
    list.into_iter()
        .map(|m| {
            let id = m["value"].as_str().ok_or_else(|| invalid("a member needs a value"))?;
            if !db.users.contains_key(id) {
                return Err(invalid(&format!("member {id} does not exist")));
            }
            Ok(id.to_string())
        })
        .collect()
}

fn check_group_name(db: &Db, id: Option<&str>, g: &Value) -> Res<()> {
    let name = g["displayName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("displayName is required"))?;
    let taken = db.groups.iter().any(|(gid, other)| {
        Some(gid.as_str()) != id
            && other["displayName"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
    });
    if taken {
        return Err(scim_error(
            409,
            Some("uniqueness"),
            "a group with this displayName exists",
        ));
    }
    Ok(())
}

fn check_member_count(rules: &Rules, n: usize) -> Res<()> {
    if let Some(max) = rules.max_member_changes
        && n > max
    {
        return Err(invalid(&format!(
            "at most {max} membership changes are allowed in a single request"
        )));
    }
    Ok(())
}

fn create_group(db: &mut Db, rules: &Rules, body: &Value) -> Res<Response> {
    check_group_name(db, None, body)?;
    let members = member_ids(db, body.get("members"))?;
    check_member_count(rules, members.len())?;
    let id = db.new_id("g-");
    let mut g = body.clone();
    if let Some(o) = g.as_object_mut() {
        o.remove("members");
        o.remove("id");
    }
    g["id"] = json!(id);
    g["meta"] = json!({"resourceType": "Group", "location": format!("Groups/{id}")});
    db.groups.insert(id.clone(), g);
    db.members.insert(id.clone(), members.into_iter().collect());
    Ok(scim_json(201, db.group_view(&id, rules.members_in_get)))
}

fn replace_group(db: &mut Db, rules: &Rules, id: &str, body: &Value) -> Res<Response> {
    if !db.groups.contains_key(id) {
        return Err(not_found(id));
    }
    check_group_name(db, Some(id), body)?;
    if !rules.replace_all_members {
        return Err(invalid("replacing all group members is not supported"));
    }
    let members = member_ids(db, body.get("members"))?;
    check_member_count(rules, members.len())?;
    let mut g = body.clone();
    if let Some(o) = g.as_object_mut() {
        o.remove("members");
    }
    g["id"] = json!(id);
    g["meta"] = db.groups[id]["meta"].clone();
    db.groups.insert(id.to_string(), g);
    db.members.insert(id.to_string(), members.into_iter().collect());
    Ok(scim_json(200, db.group_view(id, rules.members_in_get)))
}

fn patch_group(db: &mut Db, rules: &Rules, id: &str, body: &Value) -> Res<Response> {
    let mut g = db.groups.get(id).ok_or_else(|| not_found(id))?.clone();
    let mut members = db.members.get(id).cloned().unwrap_or_default();
    let mut changes = 0usize;
    let aws_like = !rules.replace_all_members;
    for op in operations(body)? {
        let name = op_name(op)?;
        let value = op.get("value");
        let path = op["path"].as_str();
        // A path-less op: its value's keys are the paths.
        let pairs: Vec<(String, Option<Value>)> = match path {
            Some(p) => vec![(p.to_string(), value.cloned())],
            None => value
                .and_then(Value::as_object)
                .ok_or_else(|| scim_error(400, Some("invalidSyntax"), "a value object is needed without a path"))?
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
        };
        for (p, v) in pairs {
            let lower = p.to_ascii_lowercase();
            if lower.starts_with("members[") {
                filtered_path_refused(rules, &p)?;
                let inner = &p[p.find('[').unwrap() + 1..p.rfind(']').unwrap_or(p.len())];
                let raw = inner.splitn(3, ' ').nth(2).unwrap_or("");
                let member: String = serde_json::from_str(raw).map_err(|_| invalid("cannot read the member filter"))?;
                if name != "remove" {
                    return Err(scim_error(
                        400,
                        Some("invalidPath"),
                        "only remove takes a member filter",
                    ));
                }
                members.remove(&member);
                changes += 1;
            } else if lower == "members" {
                match (name.as_str(), v) {
                    ("add", v) => {
                        let ids = member_ids(db, v.as_ref())?;
                        changes += ids.len();
                        members.extend(ids);
                    }
                    ("remove", None) => {
                        if aws_like {
                            return Err(invalid("removing all group members is not supported"));
                        }
                        changes += members.len();
                        members.clear();
                    }
                    ("remove", Some(v)) => {
                        let ids = member_ids(db, Some(&v))?;
                        changes += ids.len();
                        for m in ids {
                            members.remove(&m);
                        }
                    }
                    (_, v) => {
                        if aws_like {
                            return Err(invalid("replacing all group members is not supported"));
                        }
                        let ids = member_ids(db, v.as_ref())?;
                        changes += ids.len() + members.len();
                        members = ids.into_iter().collect();
                    }
                }
            } else {
                if aws_like && !["displayname", "externalid"].contains(&lower.as_str()) {
                    return Err(invalid(&format!(
                        "{p} cannot be changed: only displayName, members and externalId"
                    )));
                }
                let v = if name == "remove" { None } else { v };
                set_path(&mut g, &p, v, false);
            }
        }
    }
    check_member_count(rules, changes)?;
    check_group_name(db, Some(id), &g)?;
    db.groups.insert(id.to_string(), g);
    db.members.insert(id.to_string(), members);
    if aws_like {
        Ok(no_content())
    } else {
        Ok(scim_json(200, db.group_view(id, rules.members_in_get)))
    }
}
