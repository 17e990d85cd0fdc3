//! Bounded work per SCIM request and the small validations around it, over HTTP on SQLite and
//! PostgreSQL: resource bounds on create, replace, PATCH and Bulk (each refusal naming the bound
//! and changing nothing), what ServiceProviderConfig advertises, NUL characters, `If-None-Match`
//! on writes, Bulk's `bulkId` and `failOnErrors`, and integers beyond 64 bits.

mod common;

use common::*;
use reqwest::Method;
use rollcall_scim::limits::ResourceLimits;
use rollcall_server::service::ScimConfig;
use serde_json::{Value, json};

backend_tests!(
    bounds_are_enforced_on_create_replace_patch_and_bulk,
    an_oversized_patch_is_refused_before_any_work,
    service_provider_config_reflects_the_configuration,
    nul_characters_are_refused,
    if_none_match_star_never_overwrites,
    bulk_ids_must_be_unique_and_fail_on_errors_an_integer,
    integers_beyond_64_bits_keep_their_text,
);

/// Small bounds, so that requests at and over them stay small.
fn small() -> ResourceLimits {
    ResourceLimits {
        max_values_per_attribute: 3,
        max_string_bytes: 64,
        max_resource_bytes: 1024,
        max_patch_operations: 4,
    }
}

async fn start(limits: ResourceLimits) -> TestServer {
    TestServer::start_with(Setup {
        config: ScimConfig {
            resource_limits: limits,
            ..ScimConfig::default()
        },
        ..Setup::default()
    })
    .await
}

fn emails(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"value": format!("u{i}@example.com"), "type": "work"}))
            .collect(),
    )
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

/// Asserts a 400 `invalidValue` whose detail names `needles` (the bound, its value, the setting).
#[track_caller]
fn refused(r: &Resp, needles: &[&str]) {
    let detail = r.expect_error(400, Some("invalidValue"));
    for n in needles {
        assert!(detail.contains(n), "{n:?} not in {detail:?}");
    }
}

const VALUES: [&str; 2] = ["more than the 3 allowed", "max_values_per_attribute"];
const STRING: [&str; 2] = ["more than the 64 bytes allowed", "max_string_bytes"];
const RESOURCE: [&str; 2] = ["more than the 1024 bytes allowed", "max_resource_bytes"];

async fn bounds_are_enforced_on_create_replace_patch_and_bulk() {
    let srv = start(small()).await;
    let c = srv.client();
    let user = |name: &str, extra: Value| {
        let mut u = json!({"schemas": [USER_SCHEMA], "userName": name});
        u.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        u
    };

    // Create: at each bound accepted, one over refused, nothing created.
    let at = c
        .create_user(&user(
            "at-the-bounds",
            json!({"emails": emails(3), "title": "t".repeat(64), ENTERPRISE: {"department": "d".repeat(64)}}),
        ))
        .await;
    let uid = id(&at);
    let path = format!("/Users/{uid}");
    for (body, needles) in [
        (user("over-values", json!({"emails": emails(4)})), &VALUES[..]),
        (user("over-string", json!({"title": "t".repeat(65)})), &STRING[..]),
        (
            user("over-string-sub", json!({"name": {"givenName": "g".repeat(65)}})),
            &STRING[..],
        ),
        (
            user("over-string-ext", json!({ENTERPRISE: {"department": "d".repeat(65)}})),
            &STRING[..],
        ),
        (
            user(
                "over-resource",
                json!({"title": "t".repeat(60), "nickName": "n".repeat(60), "displayName": "x".repeat(60),
                "addresses": [{"streetAddress": "s".repeat(60), "locality": "l".repeat(60), "region": "r".repeat(60)},
                              {"streetAddress": "s".repeat(61), "locality": "l".repeat(60), "region": "r".repeat(60)},
                              {"streetAddress": "s".repeat(62), "locality": "l".repeat(60), "region": "r".repeat(60)}],
                "phoneNumbers": [{"value": "p".repeat(60)}, {"value": "q".repeat(60)}, {"value": "r".repeat(60)}],
                "profileUrl": "u".repeat(60)}),
            ),
            &RESOURCE[..],
        ),
    ] {
        refused(&c.post("/Users", &body).await, needles);
    }
    assert_eq!(c.total("/Users").await, 1);
    let before = c.fetch(&path).await;

    // Replace: one over refused, the user unchanged.
    let r = c.put(&path, &user("at-the-bounds", json!({"emails": emails(4)}))).await;
    refused(&r, &VALUES);
    let r = c
        .put(&path, &user("at-the-bounds", json!({"title": "t".repeat(65)})))
        .await;
    refused(&r, &STRING);
    assert_eq!(c.fetch(&path).await, before);

    // PATCH: checked on the patched result.
    let r = c
        .patch(
            &path,
            &patch(json!([{"op": "add", "path": "emails", "value": [{"value": "new@example.com"}]}])),
        )
        .await;
    refused(&r, &VALUES);
    let r = c
        .patch(
            &path,
            &patch(json!([{"op": "replace", "path": "name.familyName", "value": "f".repeat(65)}])),
        )
        .await;
    refused(&r, &STRING);
    let r = c
        .patch(
            &path,
            &patch(
                json!([{"op": "replace", "value": {"nickName": "n".repeat(64), "displayName": "x".repeat(64),
            "profileUrl": "u".repeat(64), "locale": "l".repeat(64), "timezone": "z".repeat(64),
            "preferredLanguage": "p".repeat(64), "userType": "y".repeat(64), "name": {"givenName": "g".repeat(64),
            "familyName": "f".repeat(64), "middleName": "m".repeat(64), "formatted": "o".repeat(64)}}}]),
            ),
        )
        .await;
    refused(&r, &RESOURCE);
    assert_eq!(c.fetch(&path).await, before, "refused PATCHes changed nothing");
    // Remove one value, then add one: back at the bound, accepted.
    c.patch(
        &path,
        &patch(json!([
            {"op": "remove", "path": "emails[value eq \"u0@example.com\"]"},
            {"op": "add", "path": "emails", "value": [{"value": "new@example.com"}]}
        ])),
    )
    .await
    .expect(200);

    // Bulk goes through the same checks, operation by operation.
    let r = c
        .post(
            "/Bulk",
            &json!({"schemas": [BULK_REQUEST], "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "a", "data": user("bulk-over", json!({"emails": emails(4)}))},
                {"method": "PATCH", "path": path, "data": patch(json!([{"op": "replace", "path": "title", "value": "t".repeat(65)}]))}
            ]}),
        )
        .await
        .expect(200);
    let ops = r.body["Operations"].as_array().unwrap();
    for op in ops {
        assert_eq!(op["status"], "400", "{op}");
        assert_eq!(op["response"]["scimType"], "invalidValue", "{op}");
    }
    assert!(
        ops[0]["response"]["detail"]
            .as_str()
            .unwrap()
            .contains("max_values_per_attribute")
    );
    assert!(
        ops[1]["response"]["detail"]
            .as_str()
            .unwrap()
            .contains("max_string_bytes")
    );
    assert_eq!(c.total("/Users").await, 1);

    // Group members are rows, not values: a group may have more members than the bound.
    let mut members = Vec::new();
    for i in 0..5 {
        members.push(id(&c.user(&format!("member{i}")).await));
    }
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let g = c.group("Many", &refs).await;
    assert_eq!(member_ids(&c.fetch(&format!("/Groups/{}", id(&g))).await).len(), 5);
}

async fn an_oversized_patch_is_refused_before_any_work() {
    // The default bounds refuse the requests of the attack: a user with tens of thousands of
    // e-mails, and a PATCH of ten thousand value-filtered operations (both under the body limit).
    let srv = start(ResourceLimits::default()).await;
    let c = srv.client();
    let r = c
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "many", "emails": emails(20_000)}),
        )
        .await;
    refused(
        &r,
        &["20000 values", "more than the 100 allowed", "max_values_per_attribute"],
    );
    let u = c
        .create_user(&json!({"schemas": [USER_SCHEMA], "userName": "many", "emails": emails(100)}))
        .await;
    let path = format!("/Users/{}", id(&u));
    let before = c.fetch(&path).await;
    let ops: Vec<Value> = (0..10_000)
        .map(|i| json!({"op": "replace", "path": format!("emails[value eq \"u{}@example.com\"].type", i % 100), "value": "home"}))
        .collect();
    let r = c.patch(&path, &patch(Value::Array(ops.clone()))).await;
    let detail = r.expect_error(413, None);
    for n in ["10000 operations", "more than the 1000 allowed", "patch_max_operations"] {
        assert!(detail.contains(n), "{detail}");
    }
    assert_eq!(c.fetch(&path).await, before);
    // At the bound: applied.
    let r = c
        .patch(&path, &patch(Value::Array(ops[..1000].to_vec())))
        .await
        .expect(200);
    let types: Vec<&str> = r.body["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(types.iter().all(|t| *t == "home"), "{types:?}");
}

async fn service_provider_config_reflects_the_configuration() {
    let srv = TestServer::start_with(Setup {
        config: ScimConfig {
            max_body_bytes: 200_000,
            bulk_max_operations: 7,
            max_page_size: 33,
            default_page_size: 11,
            resource_limits: small(),
            ..ScimConfig::default()
        },
        ..Setup::default()
    })
    .await;
    let spc = srv.client().fetch("/ServiceProviderConfig").await;
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(
        spc["bulk"],
        json!({"supported": true, "maxOperations": 7, "maxPayloadSize": 200_000})
    );
    assert_eq!(spc["filter"], json!({"supported": true, "maxResults": 33}));
    assert_eq!(spc["pagination"]["defaultPageSize"], 11);
    assert_eq!(spc["pagination"]["maxPageSize"], 33);
}

async fn nul_characters_are_refused() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let u = c.user("bjensen").await;
    let path = format!("/Users/{}", id(&u));
    let before = c.fetch(&path).await;
    let nul = "a\u{0}b";
    for (method, p, body) in [
        (
            Method::POST,
            "/Users".to_string(),
            json!({"schemas": [USER_SCHEMA], "userName": nul}),
        ),
        (
            Method::POST,
            "/Users".to_string(),
            json!({"schemas": [USER_SCHEMA], "userName": "x", "name": {"givenName": nul}}),
        ),
        (
            Method::POST,
            "/Groups".to_string(),
            json!({"schemas": [GROUP_SCHEMA], "displayName": nul}),
        ),
        (
            Method::PUT,
            path.clone(),
            json!({"schemas": [USER_SCHEMA], "userName": "bjensen", "title": nul}),
        ),
        (
            Method::PATCH,
            path.clone(),
            patch(json!([{"op": "replace", "path": "title", "value": nul}])),
        ),
        (
            Method::PATCH,
            path.clone(),
            patch(json!([{"op": "replace", "path": nul, "value": "x"}])),
        ),
        (
            Method::POST,
            "/Users/.search".to_string(),
            json!({"filter": format!("userName eq \"{nul}\"")}),
        ),
        (
            Method::POST,
            "/Bulk".to_string(),
            json!({"schemas": [BULK_REQUEST], "Operations": [{"method": "POST", "path": "/Users", "bulkId": "n",
                   "data": {"schemas": [USER_SCHEMA], "userName": nul}}]}),
        ),
    ] {
        let r = c.send_with(method.clone(), &p, Some(&body), &[]).await;
        let detail = r.expect_error(400, Some("invalidValue"));
        assert!(detail.contains("U+0000"), "{method} {p}: {detail}");
    }
    // A NUL written as an escape in a filter: refused as an invalid filter, not a server error.
    let r = c.get(&format!("/Users?{}", filter("userName eq \"a\\u0000b\""))).await;
    r.expect_error(400, Some("invalidFilter"));
    // A NUL in a resource id or a raw NUL in a filter is refused by the request guard before any
    // handler (or database) sees it: 400, on both databases.
    for p in ["/Users/a%00b", "/Groups/%00"] {
        c.get(p).await.expect_error(400, None);
        c.delete(p).await.expect_error(400, None);
        c.patch(
            p,
            &patch(json!([{"op": "replace", "path": "externalId", "value": "x"}])),
        )
        .await
        .expect_error(400, None);
    }
    c.put("/Users/a%00b", &json!({"schemas": [USER_SCHEMA], "userName": "x"}))
        .await
        .expect_error(400, None);
    c.get("/Users?filter=userName+eq+%22a%00b%22")
        .await
        .expect_error(400, None);
    assert_eq!(c.fetch(&path).await, before);
    assert_eq!(c.total("/Users").await, 1);
    assert_eq!(c.total("/Groups").await, 0);
}

async fn if_none_match_star_never_overwrites() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let u = c.user("bjensen").await;
    let path = format!("/Users/{}", id(&u));
    let before = c.fetch(&path).await;
    let etag = c.get(&path).await.header("etag").unwrap().to_string();
    let replacement = json!({"schemas": [USER_SCHEMA], "userName": "bjensen", "title": "overwritten"});
    for tag in ["*", etag.as_str(), "W/\"999\", *"] {
        let r = c
            .send_with(Method::PUT, &path, Some(&replacement), &[("If-None-Match", tag)])
            .await;
        let detail = r.expect_error(412, None);
        assert!(detail.contains("If-None-Match"), "{detail}");
        let r = c
            .send_with(
                Method::PATCH,
                &path,
                Some(&patch(json!([{"op": "replace", "path": "title", "value": "x"}]))),
                &[("If-None-Match", tag)],
            )
            .await;
        r.expect_error(412, None);
        c.send_with(Method::DELETE, &path, None, &[("If-None-Match", tag)])
            .await
            .expect_error(412, None);
    }
    assert_eq!(c.fetch(&path).await, before);
    // An ETag that is not the current one: the write goes ahead.
    c.send_with(
        Method::PUT,
        &path,
        Some(&replacement),
        &[("If-None-Match", "W/\"999\"")],
    )
    .await
    .expect(200);
    assert_eq!(c.fetch(&path).await["title"], "overwritten");
    // No resource: nothing to overwrite, 404 as without the header.
    c.send_with(
        Method::PUT,
        "/Users/0190c7d2-5b7e-7000-8000-000000000000",
        Some(&replacement),
        &[("If-None-Match", "*")],
    )
    .await
    .expect_error(404, None);
}

async fn bulk_ids_must_be_unique_and_fail_on_errors_an_integer() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let post = |bulk_id: &str, name: &str| json!({"method": "POST", "path": "/Users", "bulkId": bulk_id, "data": {"schemas": [USER_SCHEMA], "userName": name}});
    let r = c
        .post(
            "/Bulk",
            &json!({"schemas": [BULK_REQUEST], "Operations": [post("a", "one"), post("b", "two"), post("a", "three")]}),
        )
        .await;
    let detail = r.expect_error(400, Some("invalidValue"));
    assert!(
        detail.contains("bulkId \"a\"") && detail.contains("operation 3"),
        "{detail}"
    );
    assert_eq!(c.total("/Users").await, 0, "nothing applied");

    for bad in [
        json!("1"),
        json!(1.5),
        json!(-1),
        json!(true),
        json!([1]),
        json!({"n": 1}),
    ] {
        let r = c
            .post(
                "/Bulk",
                &json!({"schemas": [BULK_REQUEST], "failOnErrors": bad, "Operations": [post("a", "one")]}),
            )
            .await;
        let detail = r.expect_error(400, Some("invalidValue"));
        assert!(detail.contains("failOnErrors"), "{bad}: {detail}");
    }
    assert_eq!(c.total("/Users").await, 0, "nothing applied");
    c.post(
        "/Bulk",
        &json!({"schemas": [BULK_REQUEST], "failOnErrors": 1, "Operations": [post("a", "one")]}),
    )
    .await
    .expect(200);
    assert_eq!(c.total("/Users").await, 1);
}

async fn integers_beyond_64_bits_keep_their_text() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let big = "18446744073709551616";
    let body = format!(
        r#"{{"schemas": ["{USER_SCHEMA}", "{ENTERPRISE}"], "userName": "big", "{ENTERPRISE}": {{"employeeNumber": {big}, "costCenter": 12345678901234567890123}}}}"#
    );
    let r = c
        .send(
            c.request(Method::POST, "/Users")
                .header("Content-Type", SCIM_JSON)
                .body(body),
        )
        .await
        .expect(201);
    assert_eq!(r.body[ENTERPRISE]["employeeNumber"], big, "{}", r.text);
    assert_eq!(r.body[ENTERPRISE]["costCenter"], "12345678901234567890123");
    let path = format!("/Users/{}", id(&r.body));
    let stored = c.fetch(&path).await;
    assert_eq!(stored[ENTERPRISE]["employeeNumber"], big);
    // Through PATCH too.
    let r = c
        .send(
            c.request(Method::PATCH, &path).header("Content-Type", SCIM_JSON).body(format!(
                r#"{{"schemas": ["{PATCH_OP}"], "Operations": [{{"op": "replace", "path": "{ENTERPRISE}:employeeNumber", "value": 98765432109876543210}}]}}"#
            )),
        )
        .await
        .expect(200);
    assert_eq!(r.body[ENTERPRISE]["employeeNumber"], "98765432109876543210");
    assert_eq!(
        c.fetch(&path).await[ENTERPRISE]["employeeNumber"],
        "98765432109876543210"
    );
    // A filter finds it by its text.
    let found = c
        .get(&format!(
            "/Users?{}",
            filter(&format!("{ENTERPRISE}:employeeNumber eq \"98765432109876543210\""))
        ))
        .await
        .expect(200);
    assert_eq!(found.ids(), [id(&r.body)]);
}
