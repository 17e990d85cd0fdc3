//! Requests the service must refuse, each with the right status and SCIM error body, and each
//! leaving every resource exactly as it was.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// A connection with a known state: one user with e-mails, a second user, and a group with the
/// first user as member.
struct Fixture {
    _srv: TestServer,
    c: Client,
    user: String,
    other: String,
    group: String,
}

/// Everything a rejected request could have changed.
#[derive(Debug, PartialEq)]
struct Snapshot {
    user: Value,
    other: Value,
    group: Value,
    users: Value,
    groups: Value,
}

impl Fixture {
    async fn new() -> Fixture {
        let srv = TestServer::start().await;
        let c = srv.client();
        let user = id(&c
            .create_user(&json!({
                "schemas": [USER_SCHEMA],
                "userName": "bjensen",
                "name": {"givenName": "Barbara", "familyName": "Jensen"},
                "displayName": "Babs Jensen",
                "emails": [
                    {"value": "bjensen@example.com", "type": "work", "primary": true},
                    {"value": "babs@jensen.org", "type": "home"}
                ],
                "active": true
            }))
            .await);
        let other = id(&c.user("jsmith").await);
        let group = id(&c.group("Tour Guides", &[&user]).await);
        Fixture {
            _srv: srv,
            c,
            user,
            other,
            group,
        }
    }

    fn user_path(&self) -> String {
        format!("/Users/{}", self.user)
    }

    fn group_path(&self) -> String {
        format!("/Groups/{}", self.group)
    }

    async fn snapshot(&self) -> Snapshot {
        Snapshot {
            user: self.c.fetch(&self.user_path()).await,
            other: self.c.fetch(&format!("/Users/{}", self.other)).await,
            group: self.c.fetch(&self.group_path()).await,
            users: self.c.fetch("/Users").await,
            groups: self.c.fetch("/Groups").await,
        }
    }

    /// Asserts that nothing changed since `before`.
    #[track_caller]
    fn unchanged(&self, before: &Snapshot, after: &Snapshot, what: &str) {
        assert_eq!(before, after, "state changed after rejected request: {what}");
    }
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

/// Asserts a 400 whose `scimType` is one of `allowed`.
#[track_caller]
fn expect_400(r: &Resp, allowed: &[&str]) {
    r.expect_error_status(400);
    let t = r.body["scimType"].as_str().unwrap_or_default();
    assert!(allowed.contains(&t), "scimType {t:?} not in {allowed:?}: {}", r.text);
}

async fn malformed_json_is_invalid_syntax() {
    let f = Fixture::new().await;
    let before = f.snapshot().await;
    let bad = [
        "{\"schemas\": [",
        "{\"userName\": \"x\",}",
        "not json at all",
        "{\"userName\": \"x\"} trailing",
        "\u{feff}{}",
    ];
    for body in bad {
        for (method, path) in [
            (Method::POST, "/Users".to_string()),
            (Method::PUT, f.user_path()),
            (Method::PATCH, f.user_path()),
            (Method::POST, "/Groups".to_string()),
            (Method::PATCH, f.group_path()),
            (Method::POST, "/Users/.search".to_string()),
            (Method::POST, "/.search".to_string()),
            (Method::POST, "/Bulk".to_string()),
        ] {
            let r = f.c.raw(method.clone(), &path, body).await;
            let what = format!("{method} {path} {body:?}");
            assert_eq!(r.status.as_u16(), 400, "{what}: {}", r.text);
            r.expect_error(400, Some("invalidSyntax"));
        }
    }
    // An empty body.
    for (method, path) in [(Method::POST, "/Users".to_string()), (Method::PATCH, f.user_path())] {
        f.c.raw(method, &path, "")
            .await
            .expect_error(400, Some("invalidSyntax"));
    }
    f.unchanged(&before, &f.snapshot().await, "malformed JSON");
}

async fn non_object_bodies_are_rejected() {
    let f = Fixture::new().await;
    let before = f.snapshot().await;
    for body in [json!([{"userName": "x"}]), json!("bjensen"), json!(42), json!(null)] {
        for (method, path) in [
            (Method::POST, "/Users".to_string()),
            (Method::PUT, f.user_path()),
            (Method::PATCH, f.user_path()),
            (Method::POST, "/Groups".to_string()),
            (Method::PUT, f.group_path()),
            (Method::POST, "/Users/.search".to_string()),
        ] {
            let r = f.c.send_with(method.clone(), &path, Some(&body), &[]).await;
            assert_eq!(r.status.as_u16(), 400, "{method} {path} {body}: {}", r.text);
            expect_400(&r, &["invalidSyntax", "invalidValue"]);
        }
    }
    f.unchanged(&before, &f.snapshot().await, "non-object bodies");
}

async fn wrong_schemas_are_rejected() {
    let f = Fixture::new().await;
    let before = f.snapshot().await;
    let r =
        f.c.post("/Users", &json!({"schemas": [GROUP_SCHEMA], "userName": "newbie"}))
            .await;
    expect_400(&r, &["invalidValue", "invalidSyntax"]);
    let r =
        f.c.put(
            &f.user_path(),
            &json!({"schemas": [GROUP_SCHEMA], "userName": "bjensen"}),
        )
        .await;
    expect_400(&r, &["invalidValue", "invalidSyntax"]);
    let r =
        f.c.post("/Groups", &json!({"schemas": [USER_SCHEMA], "displayName": "Wrong"}))
            .await;
    expect_400(&r, &["invalidValue", "invalidSyntax"]);
    let r =
        f.c.post("/Users", &json!({"schemas": "not-an-array", "userName": "newbie"}))
            .await;
    expect_400(&r, &["invalidValue", "invalidSyntax"]);
    // A PATCH whose schemas is not PatchOp.
    let r =
        f.c.patch(
            &f.user_path(),
            &json!({"schemas": [USER_SCHEMA], "Operations": [{"op": "replace", "path": "title", "value": "x"}]}),
        )
        .await;
    expect_400(&r, &["invalidSyntax", "invalidValue"]);
    f.unchanged(&before, &f.snapshot().await, "wrong schemas");
}

async fn bad_filters_are_invalid_filter() {
    let f = Fixture::new().await;
    let before = f.snapshot().await;
    for q in [
        "userName eq",
        "userName eq \"bjensen",
        "userName xx \"bjensen\"",
        "(userName eq \"bjensen\"",
        "userName eq \"bjensen\" and",
        "and",
        "emails[type eq \"work\"",
        "userName eq bjensen smith",
        "userName eq 'bjensen'",
        "noSuchAttribute eq \"x\"",
        "name.noSuchSub eq \"x\"",
        "urn:example:unknown:1.0:User:foo eq \"x\"",
    ] {
        let r = f.c.get(&format!("/Users?{}", filter(q))).await;
        assert_eq!(r.status.as_u16(), 400, "filter {q:?}: {}", r.text);
        r.expect_error(400, Some("invalidFilter"));
        let r =
            f.c.post("/Users/.search", &json!({"schemas": [SEARCH_REQUEST], "filter": q}))
                .await;
        assert_eq!(r.status.as_u16(), 400, "search filter {q:?}: {}", r.text);
        r.expect_error(400, Some("invalidFilter"));
    }
    // On groups too.
    f.c.get(&format!("/Groups?{}", filter("userName eq \"x\"")))
        .await
        .expect_error(400, Some("invalidFilter"));
    f.unchanged(&before, &f.snapshot().await, "bad filters");
}

async fn invalid_resource_bodies_are_rejected() {
    let f = Fixture::new().await;
    let before = f.snapshot().await;
    let base = || json!({"schemas": [USER_SCHEMA], "userName": "newbie"});
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "unknown attribute",
            json!({"nickname2": "x"}),
            &["invalidValue", "invalidSyntax", "invalidPath"],
        ),
        (
            "unknown sub-attribute",
            json!({"name": {"nick": "x"}}),
            &["invalidValue", "invalidSyntax", "invalidPath"],
        ),
        ("active: \"maybe\"", json!({"active": "maybe"}), &["invalidValue"]),
        ("active: 1", json!({"active": 1}), &["invalidValue"]),
        ("name: 5", json!({"name": 5}), &["invalidValue"]),
        ("emails: 7", json!({"emails": 7}), &["invalidValue"]),
        ("emails: [true]", json!({"emails": [true]}), &["invalidValue"]),
        ("userName: []", json!({"userName": ["a"]}), &["invalidValue"]),
        ("userName: {}", json!({"userName": {"value": "a"}}), &["invalidValue"]),
        ("userName: null", json!({"userName": null}), &["invalidValue"]),
        ("userName: \"\"", json!({"userName": ""}), &["invalidValue"]),
        ("userName: \"  \"", json!({"userName": "   "}), &["invalidValue"]),
        (
            "two primary emails",
            json!({"emails": [
                {"value": "a@example.com", "primary": true},
                {"value": "b@example.com", "primary": true}
            ]}),
            &["invalidValue"],
        ),
        (
            "binary value: 5",
            json!({"x509Certificates": [{"value": 5}]}),
            &["invalidValue"],
        ),
        (
            "enterprise not an object",
            json!({ENTERPRISE: "x"}),
            &["invalidValue", "invalidSyntax"],
        ),
        (
            "unknown enterprise attribute",
            json!({ENTERPRISE: {"shoeSize": "44"}}),
            &["invalidValue", "invalidSyntax", "invalidPath"],
        ),
    ];
    for (what, extra, allowed) in cases {
        let mut body = base();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = f.c.post("/Users", &body).await;
        assert_eq!(r.status.as_u16(), 400, "POST {what}: {}", r.text);
        expect_400(&r, allowed);
        // The same on PUT of the existing user.
        body["userName"] = if extra.get("userName").is_some() {
            body["userName"].clone()
        } else {
            json!("bjensen")
        };
        let r = f.c.put(&f.user_path(), &body).await;
        assert_eq!(r.status.as_u16(), 400, "PUT {what}: {}", r.text);
        expect_400(&r, allowed);
    }
    // Missing userName altogether.
    let r =
        f.c.post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "name": {"givenName": "No"}}),
        )
        .await;
    let detail = r.expect_error(400, Some("invalidValue"));
    assert!(detail.contains("userName"), "{detail}");
    f.c.put(
        &f.user_path(),
        &json!({"schemas": [USER_SCHEMA], "displayName": "No userName"}),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    // Missing group displayName.
    f.c.post("/Groups", &json!({"schemas": [GROUP_SCHEMA], "members": []}))
        .await
        .expect_error(400, Some("invalidValue"));
    f.unchanged(&before, &f.snapshot().await, "invalid bodies");
}

async fn conflicts_change_nothing() {
    let f = Fixture::new().await;
    let before = f.snapshot().await;
    f.c.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "BJENSEN"}))
        .await
        .expect_error(409, Some("uniqueness"));
    // Renaming jsmith to bjensen, by PUT and by PATCH.
    f.c.put(
        &format!("/Users/{}", f.other),
        &json!({"schemas": [USER_SCHEMA], "userName": "bjensen"}),
    )
    .await
    .expect_error(409, Some("uniqueness"));
    f.c.patch(
        &format!("/Users/{}", f.other),
        &patch(json!([{"op": "replace", "path": "userName", "value": "BJensen"}])),
    )
    .await
    .expect_error(409, Some("uniqueness"));
    f.c.post(
        "/Groups",
        &json!({"schemas": [GROUP_SCHEMA], "displayName": "Tour Guides"}),
    )
    .await
    .expect_error(409, Some("uniqueness"));
    f.unchanged(&before, &f.snapshot().await, "conflicts");
}

async fn oversize_bodies_are_413() {
    let f = Fixture::new().await;
    let before = f.snapshot().await;
    let big = "x".repeat(1024 * 1024 + 1);
    let body = json!({"schemas": [USER_SCHEMA], "userName": "huge", "displayName": big});
    let r = f.c.post("/Users", &body).await;
    r.expect_error(413, None);
    let r = f.c.put(&f.user_path(), &body).await;
    r.expect_error(413, None);
    let r =
        f.c.patch(
            &f.user_path(),
            &patch(json!([{"op": "replace", "path": "displayName", "value": big}])),
        )
        .await;
    r.expect_error(413, None);
    let r =
        f.c.post(
            "/Bulk",
            &json!({"schemas": [BULK_REQUEST], "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "a", "data": body}
            ]}),
        )
        .await;
    r.expect_error(413, None);
    // Just under the body limit, the body is read, and the string bound refuses the value.
    let long = json!({"schemas": [USER_SCHEMA], "userName": "long-title", "title": "y".repeat(1000 * 1000)});
    let detail = f.c.post("/Users", &long).await.expect_error(400, Some("invalidValue"));
    assert!(detail.contains("max_string_bytes"), "{detail}");
    let fits = json!({"schemas": [USER_SCHEMA], "userName": "fits", "title": "y".repeat(16 * 1024)});
    f.c.post("/Users", &fits).await.expect(201);
    // Indexed attributes have their own, smaller limit (1024 bytes), the same on every backend.
    let long_name = json!({"schemas": [USER_SCHEMA], "userName": "n".repeat(1025)});
    f.c.post("/Users", &long_name)
        .await
        .expect_error(400, Some("invalidValue"));
    let long_display = json!({"schemas": [USER_SCHEMA], "userName": "long", "displayName": "d".repeat(1025)});
    f.c.post("/Users", &long_display)
        .await
        .expect_error(400, Some("invalidValue"));
    let after = f.snapshot().await;
    assert_eq!(before.user, after.user);
    assert_eq!(before.group, after.group);
    assert_eq!(after.users["totalResults"], 3, "only the fitting user was created");
}

async fn unsupported_content_type_is_415() {
    let f = Fixture::new().await;
    let before = f.snapshot().await;
    let r =
        f.c.send(
            f.c.bare(Method::POST, "/Users")
                .header("Content-Type", "text/plain")
                .body(json!({"schemas": [USER_SCHEMA], "userName": "plain"}).to_string()),
        )
        .await;
    r.expect_error(415, None);
    f.unchanged(&before, &f.snapshot().await, "text/plain");
}

async fn invalid_patches_are_rejected_atomically() {
    let f = Fixture::new().await;
    let before = f.snapshot().await;
    let user = f.user_path();
    let group = f.group_path();
    let cases: Vec<(&str, &str, Value, u16, &[&str])> = vec![
        (
            "op move",
            &user,
            patch(json!([{"op": "move", "path": "title", "value": "x"}])),
            400,
            &["invalidSyntax", "invalidValue"],
        ),
        (
            "op missing",
            &user,
            patch(json!([{"path": "title", "value": "x"}])),
            400,
            &["invalidSyntax", "invalidValue"],
        ),
        (
            "op not a string",
            &user,
            patch(json!([{"op": 1, "path": "title", "value": "x"}])),
            400,
            &["invalidSyntax", "invalidValue"],
        ),
        (
            "no Operations",
            &user,
            json!({"schemas": [PATCH_OP]}),
            400,
            &["invalidSyntax", "invalidValue"],
        ),
        (
            "Operations not an array",
            &user,
            json!({"schemas": [PATCH_OP], "Operations": {}}),
            400,
            &["invalidSyntax", "invalidValue"],
        ),
        (
            "replace without value",
            &user,
            patch(json!([{"op": "replace", "path": "title"}])),
            400,
            &["invalidSyntax", "invalidValue"],
        ),
        (
            "remove without path",
            &user,
            patch(json!([{"op": "remove"}])),
            400,
            &["noTarget"],
        ),
        (
            "unknown attribute",
            &user,
            patch(json!([{"op": "replace", "path": "shoeSize", "value": "44"}])),
            400,
            &["invalidPath"],
        ),
        (
            "unknown sub-attribute",
            &user,
            patch(json!([{"op": "replace", "path": "name.nick", "value": "x"}])),
            400,
            &["invalidPath"],
        ),
        (
            "malformed path",
            &user,
            patch(json!([{"op": "replace", "path": "emails[type eq", "value": "x"}])),
            400,
            &["invalidPath", "invalidFilter"],
        ),
        (
            "readOnly id",
            &user,
            patch(json!([{"op": "replace", "path": "id", "value": "mine"}])),
            400,
            &["mutability"],
        ),
        (
            "readOnly meta",
            &user,
            patch(json!([{"op": "replace", "path": "meta.created", "value": "2000-01-01T00:00:00Z"}])),
            400,
            &["mutability"],
        ),
        (
            "readOnly groups",
            &user,
            patch(json!([{"op": "add", "path": "groups", "value": [{"value": "x"}]}])),
            400,
            &["mutability"],
        ),
        (
            "remove required userName",
            &user,
            patch(json!([{"op": "remove", "path": "userName"}])),
            400,
            &["mutability", "invalidValue"],
        ),
        (
            "type error",
            &user,
            patch(json!([{"op": "replace", "path": "active", "value": "maybe"}])),
            400,
            &["invalidValue"],
        ),
        (
            "name: 5",
            &user,
            patch(json!([{"op": "replace", "path": "name", "value": 5}])),
            400,
            &["invalidValue"],
        ),
        (
            "two primaries in one add",
            &user,
            patch(json!([{"op": "replace", "path": "emails", "value": [
                {"value": "c@example.com", "primary": true},
                {"value": "d@example.com", "primary": true}
            ]}])),
            400,
            &["invalidValue"],
        ),
        (
            "good op then bad op",
            &user,
            patch(json!([
                {"op": "replace", "path": "displayName", "value": "Changed"},
                {"op": "replace", "path": "active", "value": "perhaps"}
            ])),
            400,
            &["invalidValue"],
        ),
        (
            "unknown member",
            &group,
            patch(json!([{"op": "add", "path": "members", "value": [{"value": "no-such-user"}]}])),
            400,
            &["invalidValue", "noTarget", "invalidSyntax"],
        ),
        (
            "rename then unknown member",
            &group,
            patch(json!([
                {"op": "replace", "path": "displayName", "value": "Renamed"},
                {"op": "add", "path": "members", "value": [{"value": "no-such-user"}]}
            ])),
            400,
            &["invalidValue", "noTarget", "invalidSyntax"],
        ),
        (
            "remove displayName",
            &group,
            patch(json!([{"op": "remove", "path": "displayName"}])),
            400,
            &["mutability", "invalidValue"],
        ),
        (
            "group unknown attribute",
            &group,
            patch(json!([{"op": "add", "path": "owners", "value": "x"}])),
            400,
            &["invalidPath"],
        ),
    ];
    for (what, path, body, status, allowed) in cases {
        let r = f.c.patch(path, &body).await;
        assert_eq!(r.status.as_u16(), status, "{what}: {}", r.text);
        r.expect_error_status(status);
        let t = r.body["scimType"].as_str().unwrap_or_default();
        assert!(
            allowed.contains(&t),
            "{what}: scimType {t:?} not in {allowed:?}: {}",
            r.text
        );
        f.unchanged(&before, &f.snapshot().await, what);
    }
}

async fn unknown_members_are_rejected() {
    let f = Fixture::new().await;
    let before = f.snapshot().await;
    f.c.post(
        "/Groups",
        &json!({"schemas": [GROUP_SCHEMA], "displayName": "Ghosts", "members": [{"value": f.user}, {"value": "00000000-0000-0000-0000-000000000000"}]}),
    )
    .await
    .expect_error_status(400);
    f.c.put(
        &f.group_path(),
        &json!({"schemas": [GROUP_SCHEMA], "displayName": "Tour Guides", "members": [{"value": "ghost"}]}),
    )
    .await
    .expect_error_status(400);
    // A deleted user is unknown too.
    let gone = id(&f.c.user("gone").await);
    f.c.delete(&format!("/Users/{gone}")).await.expect(204);
    f.c.patch(
        &f.group_path(),
        &patch(json!([{"op": "add", "path": "members", "value": [{"value": gone}]}])),
    )
    .await
    .expect_error_status(400);
    f.unchanged(&before, &f.snapshot().await, "unknown members");
}

async fn bad_list_parameters_are_rejected() {
    let f = Fixture::new().await;
    let before = f.snapshot().await;
    let r = f.c.get("/Users?sortBy=userName&sortOrder=sideways").await;
    expect_400(&r, &["invalidValue", "invalidSyntax"]);
    let r = f.c.get("/Users?sortBy=shoeSize").await;
    expect_400(&r, &["invalidValue", "invalidPath", "invalidSyntax", "invalidFilter"]);
    let r = f.c.get("/Users?count=ten").await;
    expect_400(&r, &["invalidValue", "invalidSyntax"]);
    let r = f.c.get("/Users?startIndex=first").await;
    expect_400(&r, &["invalidValue", "invalidSyntax"]);
    for cursor in ["garbage", "c1.zz", "c1.-5", "c2.10"] {
        let r = f.c.get(&format!("/Users?cursor={}", enc(cursor))).await;
        assert_eq!(r.status.as_u16(), 400, "cursor {cursor}: {}", r.text);
        r.expect_error(400, Some("invalidCursor"));
    }
    let r =
        f.c.post(
            "/Users/.search",
            &json!({"schemas": [SEARCH_REQUEST], "cursor": "garbage"}),
        )
        .await;
    r.expect_error(400, Some("invalidCursor"));
    let r =
        f.c.post(
            "/Users/.search",
            &json!({"schemas": [SEARCH_REQUEST], "sortBy": "userName", "sortOrder": "up"}),
        )
        .await;
    expect_400(&r, &["invalidValue", "invalidSyntax"]);
    f.unchanged(&before, &f.snapshot().await, "bad list parameters");
}

async fn stale_if_match_is_412() {
    let f = Fixture::new().await;
    let before = f.snapshot().await;
    let version = before.user["meta"]["version"].as_str().unwrap().to_string();
    // Make the known version stale.
    let r =
        f.c.patch(
            &f.user_path(),
            &patch(json!([{"op": "replace", "path": "title", "value": "Boss"}])),
        )
        .await
        .expect(200);
    assert_ne!(r.body["meta"]["version"], version.as_str());
    let before = f.snapshot().await;
    let h = [("If-Match", version.as_str())];
    let r =
        f.c.send_with(
            Method::PUT,
            &f.user_path(),
            Some(&json!({"schemas": [USER_SCHEMA], "userName": "bjensen"})),
            &h,
        )
        .await;
    r.expect_error(412, None);
    let r =
        f.c.send_with(
            Method::PATCH,
            &f.user_path(),
            Some(&patch(json!([{"op": "replace", "path": "title", "value": "Intern"}]))),
            &h,
        )
        .await;
    r.expect_error(412, None);
    let r = f.c.send_with(Method::DELETE, &f.user_path(), None, &h).await;
    r.expect_error(412, None);
    // A version that is not a number of this service.
    let r =
        f.c.send_with(Method::DELETE, &f.user_path(), None, &[("If-Match", "W/\"abc\"")])
            .await;
    r.expect_error(412, None);
    // Group ETags, too.
    let gv = before.group["meta"]["version"].as_str().unwrap().to_string();
    let stale_group = format!(
        "W/\"{}\"",
        gv.trim_start_matches("W/").trim_matches('"').parse::<i64>().unwrap() + 7
    );
    let r =
        f.c.send_with(
            Method::PATCH,
            &f.group_path(),
            Some(&patch(json!([{"op": "remove", "path": "members"}]))),
            &[("If-Match", stale_group.as_str())],
        )
        .await;
    r.expect_error(412, None);
    f.unchanged(&before, &f.snapshot().await, "stale If-Match");
}

async fn bad_bulk_requests_are_rejected() {
    let f = Fixture::new().await;
    let before = f.snapshot().await;
    // No BulkRequest schema, or no Operations array.
    let r =
        f.c.post(
            "/Bulk",
            &json!({"Operations": [{"method": "POST", "path": "/Users", "bulkId": "a", "data": {"userName": "z"}}]}),
        )
        .await;
    expect_400(&r, &["invalidSyntax", "invalidValue"]);
    let r =
        f.c.post("/Bulk", &json!({"schemas": [BULK_REQUEST], "Operations": "all"}))
            .await;
    expect_400(&r, &["invalidSyntax", "invalidValue"]);
    // Each failing operation reports its own error.
    let r = f
        .c
        .post(
            "/Bulk",
            &json!({"schemas": [BULK_REQUEST], "Operations": [
                {"method": "POST", "path": "/Users", "data": {"schemas": [USER_SCHEMA], "userName": "no-bulk-id"}},
                {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"schemas": [USER_SCHEMA], "userName": "bjensen"}},
                {"method": "PATCH", "path": "/Users", "data": patch(json!([{"op": "replace", "path": "title", "value": "x"}]))},
                {"method": "FROB", "path": format!("/Users/{}", f.user)},
                {"method": "DELETE", "path": "/Things/1"},
                {"method": "PUT", "path": format!("/Users/{}", f.user), "data": {"schemas": [USER_SCHEMA], "userName": "bjensen", "active": "maybe"}},
                {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {"schemas": [GROUP_SCHEMA], "displayName": "Refs", "members": [{"value": "bulkId:never"}]}}
            ]}),
        )
        .await
        .expect(200);
    let ops = r.body["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 7, "{}", r.text);
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses[..6], ["400", "409", "400", "400", "400", "400"], "{}", r.text);
    // An unresolvable bulkId reference: 400, or 409 as RFC 7644 §3.7.2 allows.
    assert!(["400", "409"].contains(&statuses[6]), "{}", r.text);
    for o in ops {
        assert_eq!(o["response"]["schemas"], json!([ERROR]), "{o}");
    }
    assert_eq!(ops[1]["response"]["scimType"], "uniqueness");
    f.unchanged(&before, &f.snapshot().await, "bulk errors");
}

backend_tests!(
    malformed_json_is_invalid_syntax,
    non_object_bodies_are_rejected,
    wrong_schemas_are_rejected,
    bad_filters_are_invalid_filter,
    invalid_resource_bodies_are_rejected,
    conflicts_change_nothing,
    oversize_bodies_are_413,
    unsupported_content_type_is_415,
    invalid_patches_are_rejected_atomically,
    unknown_members_are_rejected,
    bad_list_parameters_are_rejected,
    stale_if_match_is_412,
    bad_bulk_requests_are_rejected,
);
