//! RFC 7644 protocol behaviour over HTTP: lists, filters, sorting, paging (index and cursor), ETags,
//! projection, derived attributes, searches, Bulk, discovery, and the error endpoints.

mod common;

use common::*;
use reqwest::Method;
use rollcall_server::ScimConfig;
use serde_json::{Value, json};
use std::collections::HashSet;

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

async fn server() -> (TestServer, Client) {
    let srv = TestServer::start().await;
    let c = srv.client();
    (srv, c)
}

/// Four users with varied attributes, returned as (userName, id).
async fn people(c: &Client) -> Vec<(String, String)> {
    let bodies = [
        json!({"schemas": [USER_SCHEMA], "userName": "charlie", "externalId": "EXT-C",
               "name": {"givenName": "Charlie", "familyName": "Brown"}, "title": "Pilot", "active": true,
               "emails": [{"value": "charlie@example.com", "type": "work", "primary": true}]}),
        json!({"schemas": [USER_SCHEMA], "userName": "Alice", "externalId": "ext-a",
               "name": {"givenName": "Alice", "familyName": "Jensen"}, "active": true,
               "emails": [{"value": "alice@example.org", "type": "home"}]}),
        json!({"schemas": [USER_SCHEMA], "userName": "bob", "externalId": "ext-b",
               "name": {"givenName": "Bob", "familyName": "Jones"}, "title": "Engineer", "active": false,
               "emails": [{"value": "bob@example.com", "type": "work"}, {"value": "bob@home.net", "type": "home"}]}),
        json!({"schemas": [USER_SCHEMA], "userName": "dave", "active": true}),
    ];
    let mut out = Vec::new();
    for b in bodies {
        let u = c.create_user(&b).await;
        out.push((u["userName"].as_str().unwrap().to_string(), id(&u)));
    }
    out
}

fn user_names(r: &Resp) -> Vec<String> {
    r.resources()
        .iter()
        .map(|u| u["userName"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn sorted_names(r: &Resp) -> Vec<String> {
    let mut v = user_names(r);
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Lists and filters

async fn list_response_shape() {
    let (_srv, c) = server().await;
    let r = c.get("/Users").await.expect(200);
    assert!(r.header("content-type").unwrap().starts_with(SCIM_JSON));
    assert_eq!(r.body["schemas"], json!([LIST_RESPONSE]));
    assert_eq!(r.body["totalResults"], 0);
    assert_eq!(r.body["startIndex"], 1);
    assert_eq!(r.body["itemsPerPage"], 0);
    people(&c).await;
    let r = c.get("/Users").await.expect(200);
    assert_eq!(r.body["totalResults"], 4);
    assert_eq!(r.body["itemsPerPage"], 4);
    for u in r.resources() {
        assert_eq!(u["meta"]["resourceType"], "User");
        assert!(u["id"].is_string());
        assert!(u.get("password").is_none());
    }
    let r = c.get("/Groups").await.expect(200);
    assert_eq!(r.body["schemas"], json!([LIST_RESPONSE]));
    assert_eq!(r.body["totalResults"], 0);
}

async fn filters() {
    let (_srv, c) = server().await;
    people(&c).await;
    let cases: &[(&str, &[&str])] = &[
        ("userName eq \"bob\"", &["bob"]),
        // userName is case-insensitive, attribute names and operators too.
        ("userName eq \"ALICE\"", &["Alice"]),
        ("USERNAME Eq \"alice\"", &["Alice"]),
        ("userName ne \"bob\"", &["Alice", "charlie", "dave"]),
        ("userName co \"li\"", &["Alice", "charlie"]),
        ("userName sw \"c\"", &["charlie"]),
        ("userName ew \"E\"", &["Alice", "charlie", "dave"]),
        ("title pr", &["bob", "charlie"]),
        ("not (title pr)", &["Alice", "dave"]),
        ("active eq false", &["bob"]),
        ("active eq true and title pr", &["charlie"]),
        ("userName eq \"dave\" or name.familyName eq \"Jones\"", &["bob", "dave"]),
        (
            "userName eq \"dave\" or userName eq \"bob\" and active eq true",
            &["dave"],
        ),
        (
            "(userName eq \"dave\" or userName eq \"bob\") and active eq false",
            &["bob"],
        ),
        ("name.familyName sw \"J\"", &["Alice", "bob"]),
        ("emails.value ew \"@example.com\"", &["bob", "charlie"]),
        ("emails co \"home.net\"", &["bob"]),
        ("emails[type eq \"work\"]", &["bob", "charlie"]),
        ("emails[type eq \"home\" and value co \"example\"]", &["Alice"]),
        ("emails[type eq \"work\"].value eq \"bob@example.com\"", &["bob"]),
        // externalId is case-exact.
        ("externalId eq \"EXT-C\"", &["charlie"]),
        ("externalId eq \"ext-c\"", &[]),
        (
            "meta.created gt \"2000-01-01T00:00:00Z\"",
            &["Alice", "bob", "charlie", "dave"],
        ),
        ("meta.lastModified lt \"2000-01-01T00:00:00Z\"", &[]),
        ("userName gt \"bob\"", &["charlie", "dave"]),
        ("userName le \"bob\"", &["Alice", "bob"]),
        // URN-qualified attribute names (RFC 7644 §3.4.2.2).
        (&format!("{USER_SCHEMA}:userName sw \"C\""), &["charlie"]),
        (&format!("{ENTERPRISE}:department pr"), &[]),
    ];
    for (f, expected) in cases {
        let r = c.get(&format!("/Users?{}", filter(f))).await;
        assert_eq!(r.status.as_u16(), 200, "filter {f}: {}", r.text);
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(sorted_names(&r), want, "filter {f}");
        assert_eq!(r.body["totalResults"], expected.len(), "filter {f}");
    }
}

async fn plus_in_query_strings_is_a_space() {
    let (_srv, c) = server().await;
    people(&c).await;
    let r = c.get("/Users?filter=userName+eq+%22bob%22").await.expect(200);
    assert_eq!(user_names(&r), vec!["bob"]);
    let r = c
        .get("/Users?filter=userName+eq+%22bob%22+or+userName+eq+%22dave%22&sortBy=userName&sortOrder=descending")
        .await
        .expect(200);
    assert_eq!(user_names(&r), vec!["dave", "bob"]);
    // A literal plus is sent encoded.
    let u = c.user("a+b@example.com").await;
    let r = c
        .get("/Users?filter=userName+eq+%22a%2Bb%40example.com%22")
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![id(&u)]);
    // Parameter names are case-insensitive (RFC 7644 §3.4.2).
    let r = c.get("/Users?FILTER=userName+eq+%22bob%22").await.expect(200);
    assert_eq!(user_names(&r), vec!["bob"]);
}

async fn group_filters() {
    let (_srv, c) = server().await;
    let ps = people(&c).await;
    let g1 = c.group("Engineering", &[&ps[0].1, &ps[2].1]).await;
    let g2 = c.group("Marketing", &[&ps[1].1]).await;
    let r = c
        .get(&format!("/Groups?{}", filter("displayName eq \"engineering\"")))
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![id(&g1)]);
    let r = c
        .get(&format!("/Groups?{}", filter("displayName sw \"M\"")))
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![id(&g2)]);
    let r = c
        .get(&format!(
            "/Groups?{}",
            filter(&format!("members[value eq \"{}\"]", ps[1].1))
        ))
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![id(&g2)], "{}", r.text);
    let r = c
        .get(&format!(
            "/Groups?{}",
            filter(&format!("members.value eq \"{}\"", ps[2].1))
        ))
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![id(&g1)], "{}", r.text);
}

// ---------------------------------------------------------------------------------------------
// Sorting and paging

async fn sorting() {
    let (_srv, c) = server().await;
    people(&c).await;
    let r = c.get("/Users?sortBy=userName").await.expect(200);
    assert_eq!(user_names(&r), vec!["Alice", "bob", "charlie", "dave"]);
    let r = c.get("/Users?sortBy=userName&sortOrder=ascending").await.expect(200);
    assert_eq!(user_names(&r), vec!["Alice", "bob", "charlie", "dave"]);
    let r = c.get("/Users?sortBy=userName&sortOrder=descending").await.expect(200);
    assert_eq!(user_names(&r), vec!["dave", "charlie", "bob", "Alice"]);
    // With a filter and paging.
    let r = c
        .get(&format!(
            "/Users?{}&sortBy=userName&sortOrder=descending&startIndex=2&count=1",
            filter("active eq true")
        ))
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 3);
    assert_eq!(r.body["startIndex"], 2);
    assert_eq!(user_names(&r), vec!["charlie"]);
    // By a sub-attribute.
    let r = c
        .get(&format!("/Users?sortBy=name.givenName&{}", filter("name.givenName pr")))
        .await
        .expect(200);
    assert_eq!(user_names(&r), vec!["Alice", "bob", "charlie"]);
    // Groups by displayName.
    c.group("b-team", &[]).await;
    c.group("A-team", &[]).await;
    c.group("c-team", &[]).await;
    let r = c
        .get("/Groups?sortBy=displayName&sortOrder=descending")
        .await
        .expect(200);
    let names: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["c-team", "b-team", "A-team"]);
}

async fn index_paging_and_limits() {
    let srv = TestServer::start_with(Setup {
        config: ScimConfig {
            default_page_size: 3,
            max_page_size: 5,
            ..ScimConfig::default()
        },
        ..Setup::default()
    })
    .await;
    let c = srv.client();
    let spc = c.fetch("/ServiceProviderConfig").await;
    assert_eq!(spc["filter"]["maxResults"], 5);
    for i in 0..7 {
        c.user(&format!("user{i}")).await;
    }
    // The default page size.
    let r = c.get("/Users?sortBy=userName").await.expect(200);
    assert_eq!(r.body["totalResults"], 7);
    assert_eq!(r.body["itemsPerPage"], 3);
    assert_eq!(user_names(&r), vec!["user0", "user1", "user2"]);
    // count above the maximum is clamped to maxResults.
    let r = c.get("/Users?sortBy=userName&count=100").await.expect(200);
    assert_eq!(r.body["totalResults"], 7);
    assert_eq!(r.body["itemsPerPage"], 5);
    assert_eq!(r.resources().len(), 5);
    // count=0: the total only.
    let r = c.get("/Users?count=0").await.expect(200);
    assert_eq!(r.body["totalResults"], 7);
    assert_eq!(r.body["itemsPerPage"], 0);
    assert!(r.body.get("Resources").is_none_or(|v| v == &json!([])), "{}", r.text);
    // A negative count is read as 0 (RFC 7644 §3.4.2.4).
    let r = c.get("/Users?count=-3").await.expect(200);
    assert_eq!(r.body["totalResults"], 7);
    assert_eq!(r.resources().len(), 0);
    // Walking the pages.
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let r = c
            .get(&format!("/Users?sortBy=userName&startIndex={start}&count=2"))
            .await
            .expect(200);
        assert_eq!(r.body["startIndex"], start);
        assert_eq!(r.body["totalResults"], 7);
        let names = user_names(&r);
        if names.is_empty() {
            break;
        }
        assert_eq!(r.body["itemsPerPage"], names.len());
        seen.extend(names);
        start += 2;
    }
    assert_eq!(seen, (0..7).map(|i| format!("user{i}")).collect::<Vec<_>>());
    // startIndex past the end.
    let r = c.get("/Users?startIndex=50").await.expect(200);
    assert_eq!(r.body["totalResults"], 7);
    assert_eq!(r.body["startIndex"], 50);
    assert_eq!(r.resources().len(), 0);
    // startIndex below 1 is read as 1.
    let r = c.get("/Users?sortBy=userName&startIndex=0&count=1").await.expect(200);
    assert_eq!(r.body["startIndex"], 1);
    assert_eq!(user_names(&r), vec!["user0"]);
    // The same limits apply to .search.
    let r = c
        .post("/Users/.search", &json!({"schemas": [SEARCH_REQUEST], "count": 1000}))
        .await
        .expect(200);
    assert_eq!(r.resources().len(), 5);
}

async fn cursor_paging_walks_every_user_once_under_concurrent_changes() {
    let (_srv, c) = server().await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(id(&c.user(&format!("walker{i:02}")).await));
    }
    let mut seen: Vec<String> = Vec::new();
    let mut deleted: HashSet<String> = HashSet::new();
    let mut added: HashSet<String> = HashSet::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let r = c
            .get(&format!("/Users?count=3&cursor={}", enc(&cursor)))
            .await
            .expect(200);
        pages += 1;
        assert!(pages < 20, "cursor paging does not end");
        let page = r.ids();
        assert!(page.len() <= 3);
        assert_eq!(r.body["itemsPerPage"], page.len());
        seen.extend(page);
        match pages {
            1 => {
                // Delete one user already seen and one not yet seen; add one.
                for victim in [&ids[1], &ids[6]] {
                    c.delete(&format!("/Users/{victim}")).await.expect(204);
                    deleted.insert(victim.clone());
                }
                added.insert(id(&c.user("walker-new-1").await));
            }
            2 => {
                c.delete(&format!("/Users/{}", ids[9])).await.expect(204);
                deleted.insert(ids[9].clone());
                added.insert(id(&c.user("walker-new-2").await));
            }
            _ => {}
        }
        match r.body.get("nextCursor").and_then(Value::as_str) {
            Some(next) if !next.is_empty() => cursor = next.to_string(),
            _ => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a user was returned twice: {seen:?}");
    // Every user that existed throughout was returned.
    for (i, uid) in ids.iter().enumerate() {
        if i == 1 {
            assert!(seen.contains(uid), "walker01 was on the first page");
        } else if deleted.contains(uid) {
            assert!(!seen.contains(uid), "user {i} was deleted before its page: {seen:?}");
        } else {
            assert!(seen.contains(uid), "user {i} was skipped: {seen:?}");
        }
    }
    for s in &seen {
        assert!(ids.contains(s) || added.contains(s), "unknown id {s}");
    }
}

async fn cursor_paging_with_a_filter() {
    let (_srv, c) = server().await;
    for i in 0..7 {
        let u = c.user(&format!("f{i}")).await;
        if i % 2 == 0 {
            c.patch(
                &format!("/Users/{}", id(&u)),
                &patch(json!([{"op": "replace", "path": "title", "value": "even"}])),
            )
            .await
            .expect(200);
        }
    }
    let mut names = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let r = c
            .get(&format!(
                "/Users?{}&count=2&cursor={}",
                filter("title eq \"even\""),
                enc(&cursor)
            ))
            .await
            .expect(200);
        names.extend(user_names(&r));
        match r.body.get("nextCursor").and_then(Value::as_str) {
            Some(n) => cursor = n.to_string(),
            None => break,
        }
    }
    names.sort();
    assert_eq!(names, vec!["f0", "f2", "f4", "f6"]);
    // Through .search too.
    let r = c
        .post(
            "/Users/.search",
            &json!({"schemas": [SEARCH_REQUEST], "cursor": "", "count": 3}),
        )
        .await
        .expect(200);
    assert_eq!(r.resources().len(), 3);
    let next = r.body["nextCursor"].as_str().expect("nextCursor").to_string();
    let r = c
        .post(
            "/Users/.search",
            &json!({"schemas": [SEARCH_REQUEST], "cursor": next, "count": 10}),
        )
        .await
        .expect(200);
    assert_eq!(r.resources().len(), 4);
    assert!(r.body.get("nextCursor").is_none_or(Value::is_null));
}

// ---------------------------------------------------------------------------------------------
// Resource round trips, ETags and meta

async fn create_location_and_meta() {
    let (srv, c) = server().await;
    let r = c
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "bjensen", "id": "client-chosen",
                    "meta": {"created": "1999-01-01T00:00:00Z"}}),
        )
        .await
        .expect(201);
    let user = r.body.clone();
    let uid = id(&user);
    assert_ne!(uid, "client-chosen", "id is assigned by the server");
    let location = user["meta"]["location"].as_str().unwrap();
    assert_eq!(location, format!("{}/Users/{uid}", srv.base_url(srv.conn())));
    assert!(location.starts_with("http://"), "absolute: {location}");
    assert_eq!(r.header("location"), Some(location));
    assert_eq!(r.header("etag"), user["meta"]["version"].as_str());
    assert!(r.header("content-type").unwrap().starts_with(SCIM_JSON));
    assert_eq!(user["meta"]["resourceType"], "User");
    assert_ne!(user["meta"]["created"], "1999-01-01T00:00:00Z");
    assert_eq!(user["meta"]["created"], user["meta"]["lastModified"]);
    assert!(user["meta"]["created"].as_str().unwrap().ends_with('Z'));
    // The location is where the resource is.
    let got = c.get(location).await.expect(200);
    assert_eq!(got.body, user);
    // Groups too.
    let r = c
        .post("/Groups", &json!({"schemas": [GROUP_SCHEMA], "displayName": "G"}))
        .await
        .expect(201);
    let loc = r.body["meta"]["location"].as_str().unwrap().to_string();
    assert_eq!(r.header("location"), Some(loc.as_str()));
    assert_eq!(loc, format!("{}/Groups/{}", srv.base_url(srv.conn()), id(&r.body)));
    assert_eq!(r.header("etag"), r.body["meta"]["version"].as_str());
}

async fn json_content_types_are_accepted() {
    let (_srv, c) = server().await;
    for (i, ct) in [
        "application/json",
        "application/scim+json; charset=utf-8",
        "application/json;charset=UTF-8",
    ]
    .into_iter()
    .enumerate()
    {
        let r = c
            .send(
                c.bare(Method::POST, "/Users")
                    .header("Content-Type", ct)
                    .body(json!({"schemas": [USER_SCHEMA], "userName": format!("ct{i}")}).to_string()),
            )
            .await;
        assert_eq!(r.status.as_u16(), 201, "{ct}: {}", r.text);
        assert!(r.header("content-type").unwrap().starts_with(SCIM_JSON));
    }
}

async fn etags_and_conditional_requests() {
    let (_srv, c) = server().await;
    let user = c.user("etag").await;
    let path = format!("/Users/{}", id(&user));
    let v1 = user["meta"]["version"].as_str().unwrap().to_string();
    assert!(v1.starts_with("W/\""), "weak ETag: {v1}");

    let r = c.get(&path).await.expect(200);
    assert_eq!(r.header("etag"), Some(v1.as_str()));
    // If-None-Match with the current version: 304, no body.
    let r = c.get_with(&path, &[("If-None-Match", &v1)]).await.expect(304);
    assert!(r.text.is_empty());
    assert_eq!(r.header("etag"), Some(v1.as_str()));
    let r = c.get_with(&path, &[("If-None-Match", "*")]).await;
    assert_eq!(r.status.as_u16(), 304);
    let r = c
        .get_with(&path, &[("If-None-Match", "W/\"999\", W/\"998\"")])
        .await
        .expect(200);
    assert_eq!(r.body["userName"], "etag");

    // PUT with the current version succeeds and changes it.
    let r = c
        .send_with(
            Method::PUT,
            &path,
            Some(&json!({"schemas": [USER_SCHEMA], "userName": "etag", "title": "One"})),
            &[("If-Match", &v1)],
        )
        .await
        .expect(200);
    let v2 = r.body["meta"]["version"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    assert_eq!(r.header("etag"), Some(v2.as_str()));
    assert_ne!(r.body["meta"]["lastModified"], user["meta"]["lastModified"]);
    assert_eq!(r.body["meta"]["created"], user["meta"]["created"]);
    // The old version no longer matches; the new one is 200 for If-None-Match with the old.
    c.get_with(&path, &[("If-None-Match", &v1)]).await.expect(200);
    c.get_with(&path, &[("If-None-Match", &v2)]).await.expect(304);
    // PATCH with the current version.
    let r = c
        .send_with(
            Method::PATCH,
            &path,
            Some(&patch(json!([{"op": "replace", "path": "title", "value": "Two"}]))),
            &[("If-Match", &v2)],
        )
        .await
        .expect(200);
    let v3 = r.body["meta"]["version"].as_str().unwrap().to_string();
    assert_eq!(r.header("etag"), Some(v3.as_str()));
    // If-Match: * matches any version.
    c.send_with(
        Method::PATCH,
        &path,
        Some(&patch(json!([{"op": "replace", "path": "title", "value": "Three"}]))),
        &[("If-Match", "*")],
    )
    .await
    .expect(200);
    // Group PATCH answers 204 with the new ETag.
    let g = c.group("etag-group", &[]).await;
    let gpath = format!("/Groups/{}", id(&g));
    let gv1 = g["meta"]["version"].as_str().unwrap().to_string();
    let r = c
        .send_with(
            Method::PATCH,
            &gpath,
            Some(&patch(
                json!([{"op": "add", "path": "members", "value": [{"value": id(&user)}]}]),
            )),
            &[("If-Match", &gv1)],
        )
        .await
        .expect(204);
    let gv2 = r.header("etag").expect("ETag on 204").to_string();
    assert_ne!(gv1, gv2);
    assert_eq!(c.fetch(&gpath).await["meta"]["version"], gv2.as_str());
    // DELETE with the current version.
    let cur = c.fetch(&path).await["meta"]["version"].as_str().unwrap().to_string();
    c.send_with(Method::DELETE, &path, None, &[("If-Match", &cur)])
        .await
        .expect(204);
    c.get(&path).await.expect_error(404, None);
}

async fn put_replaces_and_ignores_read_only_input() {
    let (_srv, c) = server().await;
    let u = c
        .create_user(&json!({"schemas": [USER_SCHEMA], "userName": "rep", "title": "Old",
                             "nickName": "Nick", "emails": [{"value": "rep@example.com"}]}))
        .await;
    let uid = id(&u);
    let g = c.group("rep-group", &[&uid]).await;
    let r = c
        .put(
            &format!("/Users/{uid}"),
            &json!({"schemas": [USER_SCHEMA], "id": "other-id", "userName": "rep", "title": "New",
                    "groups": [{"value": "made-up"}], "meta": {"version": "W/\"77\""}}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["id"], uid.as_str());
    assert_eq!(r.body["title"], "New");
    assert!(r.body.get("nickName").is_none(), "PUT replaces: {}", r.text);
    assert!(r.body.get("emails").is_none(), "PUT replaces: {}", r.text);
    assert_eq!(group_ids(&r.body), vec![id(&g)], "groups is derived, not replaced");
    let got = c.fetch(&format!("/Users/{uid}")).await;
    assert_eq!(without_meta(&got), without_meta(&r.body));
}

async fn user_groups_are_derived_and_read_only() {
    let (_srv, c) = server().await;
    let u = c
        .create_user(&json!({"schemas": [USER_SCHEMA], "userName": "member",
                             "groups": [{"value": "not-a-group", "display": "Fake"}]}))
        .await;
    let uid = id(&u);
    assert!(
        u.get("groups").is_none_or(|g| g == &json!([])),
        "input groups ignored: {u}"
    );
    let g1 = c.group("g1", &[&uid]).await;
    let g2 = c.group("g2", &[]).await;
    let user = c.fetch(&format!("/Users/{uid}")).await;
    assert_eq!(group_ids(&user), vec![id(&g1)]);
    let entry = &user["groups"][0];
    assert_eq!(entry["display"], "g1");
    assert!(
        entry["$ref"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/Groups/{}", id(&g1)))
    );
    assert_eq!(entry["type"], "direct");

    c.patch(
        &format!("/Groups/{}", id(&g2)),
        &patch(json!([{"op": "add", "path": "members", "value": [{"value": uid}]}])),
    )
    .await
    .expect(204);
    let user = c.fetch(&format!("/Users/{uid}")).await;
    assert_eq!(group_ids(&user), sorted(&[&id(&g1), &id(&g2)]));

    c.patch(
        &format!("/Groups/{}", id(&g1)),
        &patch(json!([{"op": "replace", "path": "members", "value": []}])),
    )
    .await
    .expect(204);
    let user = c.fetch(&format!("/Users/{uid}")).await;
    assert_eq!(group_ids(&user), vec![id(&g2)]);
    // The groups attribute in a path-less PATCH value is ignored.
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([{"op": "replace", "value": {"groups": [{"value": id(&g1)}], "title": "T"}}])),
        )
        .await
        .expect(200);
    assert_eq!(r.body["title"], "T");
    assert_eq!(group_ids(&r.body), vec![id(&g2)]);
    // Deleting the group takes it off the user.
    c.delete(&format!("/Groups/{}", id(&g2))).await.expect(204);
    let user = c.fetch(&format!("/Users/{uid}")).await;
    assert_eq!(group_ids(&user), Vec::<String>::new());
}

async fn soft_delete_and_recreate() {
    let (_srv, c) = server().await;
    let u = c.user("phoenix").await;
    let uid = id(&u);
    let g = c.group("nest", &[&uid]).await;
    c.delete(&format!("/Users/{uid}")).await.expect(204);
    c.get(&format!("/Users/{uid}")).await.expect_error(404, None);
    c.put(
        &format!("/Users/{uid}"),
        &json!({"schemas": [USER_SCHEMA], "userName": "phoenix"}),
    )
    .await
    .expect_error(404, None);
    c.delete(&format!("/Users/{uid}")).await.expect_error(404, None);
    assert_eq!(
        c.total(&format!("/Users?{}", filter("userName eq \"phoenix\""))).await,
        0
    );
    assert_eq!(
        member_ids(&c.fetch(&format!("/Groups/{}", id(&g))).await),
        Vec::<String>::new()
    );
    // The userName is free again; the new user has a new id and no groups.
    let again = c.user("Phoenix").await;
    assert_ne!(id(&again), uid);
    assert_eq!(
        group_ids(&c.fetch(&format!("/Users/{}", id(&again))).await),
        Vec::<String>::new()
    );
    // Same for group names.
    c.delete(&format!("/Groups/{}", id(&g))).await.expect(204);
    let g2 = c.group("nest", &[]).await;
    assert_ne!(id(&g2), id(&g));
}

// ---------------------------------------------------------------------------------------------
// Projection

/// With the default projection a stored document is written into the response from its stored
/// text (SQLite); with any other it is parsed, rendered and projected. Excluding an attribute that
/// is never returned changes nothing, so both must give the same bytes, key order included.
async fn default_rendering_equals_the_projected_rendering_byte_for_byte() {
    let (_srv, c) = server().await;
    let ps = people(&c).await;
    let ext = c
        .create_user(&json!({"schemas": [USER_SCHEMA, ENTERPRISE], "userName": "émile \"q\"",
            "externalId": "x-1", "displayName": "Émile", "password": "not-returned-1A!",
            ENTERPRISE: {"employeeNumber": "42", "manager": {"value": ps[0].1}},
            "phoneNumbers": [{"value": "+1 555", "type": "work"}]}))
        .await;
    let g = c.group("Everyone", &[&ps[0].1, &ps[1].1, &id(&ext)]).await;
    let nobody = "excludedAttributes=password";
    let paths = [
        format!("/Users/{}", id(&ext)),
        format!("/Users/{}", ps[3].1),
        format!("/Groups/{}", id(&g)),
        "/Users".to_string(),
        "/Users?count=2&startIndex=2".to_string(),
        format!("/Users?{}", filter("userName eq \"bob\"")),
        "/Groups".to_string(),
        "/Users?cursor=&count=2".to_string(),
    ];
    for path in paths {
        let default = c.get(&path).await.expect(200);
        let sep = if path.contains('?') { '&' } else { '?' };
        let projected = c.get(&format!("{path}{sep}{nobody}")).await.expect(200);
        assert_eq!(default.text, projected.text, "{path}");
        assert!(default.text.contains("\"meta\""), "{path}: {}", default.text);
    }
    let r = c.get(&format!("/Users/{}", id(&ext))).await.expect(200);
    let keys: Vec<&str> = r.body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys[..3], ["schemas", "id", "externalId"], "{}", r.text);
    assert_eq!(keys.last(), Some(&"meta"), "{}", r.text);
    assert_eq!(r.body["groups"][0]["display"], "Everyone");
    assert!(r.body.get("password").is_none());
}

async fn attributes_and_excluded_attributes() {
    let (_srv, c) = server().await;
    let ps = people(&c).await;
    let bob = &ps[2].1;
    let r = c.get(&format!("/Users/{bob}?attributes=userName")).await.expect(200);
    let keys: HashSet<&str> = r.body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, HashSet::from(["id", "schemas", "userName"]), "{}", r.text);
    // On lists, and with sub-attributes.
    let r = c
        .get(&format!(
            "/Users?{}&attributes=emails.value,name.givenName",
            filter("userName eq \"bob\"")
        ))
        .await
        .expect(200);
    let u = &r.resources()[0];
    assert_eq!(u["name"], json!({"givenName": "Bob"}));
    assert_eq!(
        u["emails"],
        json!([{"value": "bob@example.com"}, {"value": "bob@home.net"}])
    );
    assert!(u.get("userName").is_none());
    assert!(u.get("id").is_some());
    // excludedAttributes.
    let r = c
        .get(&format!("/Users/{bob}?excludedAttributes=emails,name,meta"))
        .await
        .expect(200);
    assert!(r.body.get("emails").is_none() && r.body.get("name").is_none() && r.body.get("meta").is_none());
    assert_eq!(r.body["userName"], "bob");
    assert_eq!(r.body["title"], "Engineer");
    // id is always returned.
    let r = c.get(&format!("/Users/{bob}?excludedAttributes=id")).await.expect(200);
    assert_eq!(r.body["id"], bob.as_str());
    // The attribute names are case-insensitive and may be URN-qualified.
    let r = c
        .get(&format!(
            "/Users/{bob}?attributes={}",
            enc(&format!("{USER_SCHEMA}:USERNAME"))
        ))
        .await
        .expect(200);
    assert_eq!(r.body["userName"], "bob");
    assert!(r.body.get("title").is_none());
    // On create and PUT responses.
    let r = c
        .post(
            "/Users?attributes=userName",
            &json!({"schemas": [USER_SCHEMA], "userName": "proj", "title": "X"}),
        )
        .await
        .expect(201);
    assert!(r.body.get("title").is_none(), "{}", r.text);
    assert!(r.header("location").is_some());

    // Groups: excludedAttributes=members, on reads, lists and searches.
    let g = c.group("Projected", &[bob, &ps[0].1]).await;
    let gid = id(&g);
    let r = c
        .get(&format!("/Groups/{gid}?excludedAttributes=members"))
        .await
        .expect(200);
    assert!(r.body.get("members").is_none());
    assert_eq!(r.body["displayName"], "Projected");
    let r = c.get("/Groups?excludedAttributes=members").await.expect(200);
    assert!(r.resources()[0].get("members").is_none());
    let r = c
        .post(
            "/Groups/.search",
            &json!({"schemas": [SEARCH_REQUEST], "excludedAttributes": ["members"]}),
        )
        .await
        .expect(200);
    assert!(r.resources()[0].get("members").is_none());
    let r = c
        .get(&format!("/Groups/{gid}?attributes=members.value"))
        .await
        .expect(200);
    assert_eq!(member_ids(&r.body), sorted(&[bob, &ps[0].1]));
    assert!(r.body.get("displayName").is_none());
    for m in r.body["members"].as_array().unwrap() {
        assert_eq!(m.as_object().unwrap().len(), 1, "only value: {m}");
    }
    // Users without their groups.
    let r = c
        .get(&format!("/Users/{bob}?excludedAttributes=groups"))
        .await
        .expect(200);
    assert!(r.body.get("groups").is_none());
    let r = c.get(&format!("/Users/{bob}")).await.expect(200);
    assert_eq!(group_ids(&r.body), vec![gid]);
}

// ---------------------------------------------------------------------------------------------
// Searches

async fn searches() {
    let (_srv, c) = server().await;
    let ps = people(&c).await;
    let g = c.group("Searchers", &[&ps[0].1]).await;
    // Per type, with filter, sort, paging and projection.
    let r = c
        .post(
            "/Users/.search",
            &json!({
                "schemas": [SEARCH_REQUEST],
                "filter": "emails.value co \"example\"",
                "sortBy": "userName",
                "sortOrder": "descending",
                "startIndex": 1,
                "count": 2,
                "attributes": ["userName"]
            }),
        )
        .await
        .expect(200);
    assert_eq!(r.body["schemas"], json!([LIST_RESPONSE]));
    assert_eq!(r.body["totalResults"], 3);
    assert_eq!(user_names(&r), vec!["charlie", "bob"]);
    assert!(r.resources()[0].get("emails").is_none());
    let r = c
        .post(
            "/Groups/.search",
            &json!({"schemas": [SEARCH_REQUEST], "filter": "displayName eq \"Searchers\""}),
        )
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![id(&g)]);

    // At the root: users and groups.
    let r = c
        .post("/.search", &json!({"schemas": [SEARCH_REQUEST]}))
        .await
        .expect(200);
    assert_eq!(r.body["schemas"], json!([LIST_RESPONSE]));
    assert_eq!(r.body["totalResults"], 5);
    let types: Vec<String> = r
        .resources()
        .iter()
        .map(|x| x["meta"]["resourceType"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types.iter().filter(|t| *t == "User").count(), 4);
    assert_eq!(types.iter().filter(|t| *t == "Group").count(), 1);
    // A filter on an attribute of one type only.
    let r = c
        .post(
            "/.search",
            &json!({"schemas": [SEARCH_REQUEST], "filter": "displayName sw \"Search\""}),
        )
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![id(&g)]);
    // Paging at the root.
    let r = c
        .post(
            "/.search",
            &json!({"schemas": [SEARCH_REQUEST], "startIndex": 4, "count": 10}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 5);
    assert_eq!(r.resources().len(), 2);
    // GET on .search is not allowed.
    c.get("/Users/.search").await.expect_error(405, None);
    c.get("/.search").await.expect_error(405, None);
}

async fn root_search_with_an_attribute_of_one_type() {
    let (_srv, c) = server().await;
    let ps = people(&c).await;
    c.group("Searchers", &[&ps[0].1]).await;
    let r = c
        .post(
            "/.search",
            &json!({"schemas": [SEARCH_REQUEST], "filter": "userName eq \"dave\""}),
        )
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![ps[3].1.clone()]);
    assert_eq!(r.body["totalResults"], 1);
}

async fn filter_on_meta_resource_type() {
    let (_srv, c) = server().await;
    let ps = people(&c).await;
    let g = c.group("Typed", &[&ps[0].1]).await;
    let r = c
        .get(&format!("/Users?{}", filter("meta.resourceType eq \"User\"")))
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 4);
    let r = c
        .post(
            "/.search",
            &json!({"schemas": [SEARCH_REQUEST], "filter": "meta.resourceType eq \"Group\""}),
        )
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![id(&g)]);
}

async fn filter_users_by_group() {
    let (_srv, c) = server().await;
    let ps = people(&c).await;
    let g = c.group("Filtered", &[&ps[1].1, &ps[2].1]).await;
    let r = c
        .get(&format!(
            "/Users?{}&sortBy=userName",
            filter(&format!("groups.value eq \"{}\"", id(&g)))
        ))
        .await
        .expect(200);
    assert_eq!(user_names(&r), vec!["Alice", "bob"], "{}", r.text);
    let r = c
        .get(&format!(
            "/Users?{}",
            filter(&format!("groups[value eq \"{}\"]", id(&g)))
        ))
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 2, "{}", r.text);
}

// ---------------------------------------------------------------------------------------------
// Bulk

async fn bulk_with_bulk_id_references() {
    let (srv, c) = server().await;
    let base = srv.base_url(srv.conn());
    let r = c
        .post(
            "/Bulk",
            &json!({
                "schemas": [BULK_REQUEST],
                "Operations": [
                    {"method": "POST", "path": "/Users", "bulkId": "alice",
                     "data": {"schemas": [USER_SCHEMA], "userName": "bulk-alice"}},
                    {"method": "POST", "path": "/Users", "bulkId": "bob",
                     "data": {"schemas": [USER_SCHEMA], "userName": "bulk-bob"}},
                    {"method": "POST", "path": "/Groups", "bulkId": "team",
                     "data": {"schemas": [GROUP_SCHEMA], "displayName": "bulk-team",
                              "members": [{"type": "User", "value": "bulkId:alice"}]}},
                    {"method": "POST", "path": "/Users", "bulkId": "carol",
                     "data": {"schemas": [USER_SCHEMA, ENTERPRISE], "userName": "bulk-carol",
                              ENTERPRISE: {"manager": {"value": "bulkId:alice"}}}}
                ]
            }),
        )
        .await
        .expect(200);
    assert_eq!(r.body["schemas"], json!([BULK_RESPONSE]));
    let ops = r.body["Operations"].as_array().unwrap().clone();
    assert_eq!(ops.len(), 4);
    for (op, bulk_id) in ops.iter().zip(["alice", "bob", "team", "carol"]) {
        assert_eq!(op["status"], "201", "{op}");
        assert_eq!(op["method"], "POST");
        assert_eq!(op["bulkId"], bulk_id);
        assert!(op["location"].as_str().unwrap().starts_with(&base), "{op}");
        assert!(op["version"].as_str().unwrap().starts_with("W/"), "{op}");
    }
    let alice = c.get(ops[0]["location"].as_str().unwrap()).await.expect(200).body;
    let team = c.get(ops[2]["location"].as_str().unwrap()).await.expect(200).body;
    assert_eq!(alice["userName"], "bulk-alice");
    assert_eq!(member_ids(&team), vec![id(&alice)]);
    assert_eq!(
        group_ids(&c.fetch(&format!("/Users/{}", id(&alice))).await),
        vec![id(&team)]
    );
    let carol = c.get(ops[3]["location"].as_str().unwrap()).await.expect(200).body;
    assert_eq!(carol[ENTERPRISE]["manager"]["value"], id(&alice).as_str());
    assert_eq!(ops[2]["version"], team["meta"]["version"]);

    // PUT, PATCH and DELETE by location, with versions.
    let bob_loc = ops[1]["location"].as_str().unwrap().to_string();
    let bob_id = bob_loc.rsplit('/').next().unwrap().to_string();
    let r = c
        .post(
            "/Bulk",
            &json!({
                "schemas": [BULK_REQUEST],
                "Operations": [
                    {"method": "PATCH", "path": format!("/Groups/{}", id(&team)),
                     "version": team["meta"]["version"],
                     "data": patch(json!([{"op": "add", "path": "members", "value": [{"value": bob_id}]}]))},
                    {"method": "PUT", "path": format!("/Users/{bob_id}"),
                     "data": {"schemas": [USER_SCHEMA], "userName": "bulk-bob", "title": "Bulked"}},
                    {"method": "DELETE", "path": format!("/Users/{}", id(&carol))}
                ]
            }),
        )
        .await
        .expect(200);
    let ops = r.body["Operations"].as_array().unwrap().clone();
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["200", "200", "204"], "{}", r.text);
    assert_eq!(ops[1]["location"], bob_loc.as_str());
    assert_eq!(
        member_ids(&c.fetch(&format!("/Groups/{}", id(&team))).await),
        sorted(&[&id(&alice), &bob_id])
    );
    assert_eq!(c.fetch(&format!("/Users/{bob_id}")).await["title"], "Bulked");
    c.get(&format!("/Users/{}", id(&carol))).await.expect_error(404, None);
    // A stale version fails only that operation.
    let r = c
        .post(
            "/Bulk",
            &json!({"schemas": [BULK_REQUEST], "Operations": [
                {"method": "PATCH", "path": format!("/Groups/{}", id(&team)), "version": team["meta"]["version"],
                 "data": patch(json!([{"op": "remove", "path": "members"}]))}
            ]}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["Operations"][0]["status"], "412", "{}", r.text);
}

async fn bulk_id_reference_in_path() {
    let (_srv, c) = server().await;
    let r = c
        .post(
            "/Bulk",
            &json!({"schemas": [BULK_REQUEST], "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"schemas": [USER_SCHEMA], "userName": "pathref"}},
                {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {"schemas": [GROUP_SCHEMA], "displayName": "pathref"}},
                {"method": "PATCH", "path": "/Groups/bulkId:g",
                 "data": patch(json!([{"op": "add", "path": "members", "value": [{"value": "bulkId:u"}]}]))}
            ]}),
        )
        .await
        .expect(200);
    let ops = r.body["Operations"].as_array().unwrap();
    assert_eq!(ops[2]["status"], "200", "{}", r.text);
    let team = c.get(ops[1]["location"].as_str().unwrap()).await.expect(200).body;
    let user = c.get(ops[0]["location"].as_str().unwrap()).await.expect(200).body;
    assert_eq!(member_ids(&team), vec![id(&user)]);
    assert_eq!(ops[2]["location"], ops[1]["location"]);
}

async fn bulk_fail_on_errors() {
    let (_srv, c) = server().await;
    c.user("taken").await;
    let body = |fail_on_errors: Option<i64>| {
        let mut b = json!({
            "schemas": [BULK_REQUEST],
            "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "1", "data": {"schemas": [USER_SCHEMA], "userName": "taken"}},
                {"method": "POST", "path": "/Users", "bulkId": "2", "data": {"schemas": [USER_SCHEMA], "userName": "bad", "active": "maybe"}},
                {"method": "POST", "path": "/Users", "bulkId": "3", "data": {"schemas": [USER_SCHEMA], "userName": format!("ok-{}", fail_on_errors.unwrap_or(0))}},
                {"method": "DELETE", "path": "/Users/does-not-exist"}
            ]
        });
        if let Some(n) = fail_on_errors {
            b["failOnErrors"] = json!(n);
        }
        b
    };
    // failOnErrors 1: stops after the first error.
    let r = c.post("/Bulk", &body(Some(1))).await.expect(200);
    let ops = r.body["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1, "{}", r.text);
    assert_eq!(ops[0]["status"], "409");
    assert_eq!(ops[0]["response"]["scimType"], "uniqueness");
    assert_eq!(c.total(&format!("/Users?{}", filter("userName eq \"ok-1\""))).await, 0);
    // failOnErrors 2: the second error stops it.
    let r = c.post("/Bulk", &body(Some(2))).await.expect(200);
    let ops = r.body["Operations"].as_array().unwrap();
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["409", "400"], "{}", r.text);
    assert_eq!(c.total(&format!("/Users?{}", filter("userName eq \"ok-2\""))).await, 0);
    // Without failOnErrors every operation runs.
    let r = c.post("/Bulk", &body(None)).await.expect(200);
    let ops = r.body["Operations"].as_array().unwrap();
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["409", "400", "201", "404"], "{}", r.text);
    assert_eq!(c.total(&format!("/Users?{}", filter("userName eq \"ok-0\""))).await, 1);
    // An error response carries a SCIM error.
    assert_eq!(ops[3]["response"]["schemas"], json!([ERROR]));
    assert_eq!(ops[3]["response"]["status"], "404");
}

/// Consecutive creates are written in one transaction, each still answered on its own: a name
/// taken inside the run fails only its operation (the run is then written one at a time), and a
/// run longer than one transaction takes is written as several.
async fn bulk_creates_share_a_transaction() {
    let (_srv, c) = server().await;
    let op = |i: usize, name: &str| {
        json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"),
               "data": {"schemas": [USER_SCHEMA], "userName": name}})
    };
    let names = ["ann", "ben", "cid", "ANN", "dot"];
    let ops: Vec<Value> = names.iter().enumerate().map(|(i, n)| op(i, n)).collect();
    let r = c
        .post("/Bulk", &json!({"schemas": [BULK_REQUEST], "Operations": ops}))
        .await
        .expect(200);
    let results = r.body["Operations"].as_array().unwrap();
    let statuses: Vec<&str> = results.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["201", "201", "201", "409", "201"], "{}", r.text);
    assert_eq!(results[3]["response"]["scimType"], "uniqueness");
    for (i, res) in results.iter().enumerate().filter(|(i, _)| *i != 3) {
        assert_eq!(res["bulkId"], format!("b{i}"));
        let got = c.get(res["location"].as_str().unwrap()).await.expect(200).body;
        assert_eq!(got["userName"], names[i]);
        assert_eq!(res["version"], got["meta"]["version"]);
    }
    assert_eq!(c.total("/Users").await, 4);
    // 120 creates: three transactions of at most 50, every one answered 201 with its own id.
    let ops: Vec<Value> = (0..120).map(|i| op(i, &format!("many-{i}"))).collect();
    let r = c
        .post("/Bulk", &json!({"schemas": [BULK_REQUEST], "Operations": ops}))
        .await
        .expect(200);
    let results = r.body["Operations"].as_array().unwrap();
    assert_eq!(results.len(), 120);
    let locations: HashSet<&str> = results
        .iter()
        .map(|o| {
            assert_eq!(o["status"], "201", "{o}");
            o["location"].as_str().unwrap()
        })
        .collect();
    assert_eq!(locations.len(), 120);
    assert_eq!(
        c.total(&format!("/Users?{}", filter("userName sw \"many-\""))).await,
        120
    );
    // A later operation refers to a user created in the run: still resolved.
    let r = c
        .post(
            "/Bulk",
            &json!({"schemas": [BULK_REQUEST], "Operations": [
                op(0, "eve"), op(1, "fay"),
                {"method": "POST", "path": "/Groups", "bulkId": "g",
                 "data": {"schemas": [GROUP_SCHEMA], "displayName": "pair",
                          "members": [{"value": "bulkId:b0"}, {"value": "bulkId:b1"}]}}
            ]}),
        )
        .await
        .expect(200);
    let results = r.body["Operations"].as_array().unwrap();
    assert_eq!(results[2]["status"], "201", "{}", r.text);
    let team = c.get(results[2]["location"].as_str().unwrap()).await.expect(200).body;
    assert_eq!(member_ids(&team).len(), 2);
}

async fn bulk_limits() {
    let srv = TestServer::start_with(Setup {
        config: ScimConfig {
            bulk_max_operations: 2,
            ..ScimConfig::default()
        },
        ..Setup::default()
    })
    .await;
    let c = srv.client();
    let spc = c.fetch("/ServiceProviderConfig").await;
    assert_eq!(spc["bulk"]["supported"], true);
    assert_eq!(spc["bulk"]["maxOperations"], 2);
    let ops: Vec<Value> = (0..3)
        .map(|i| {
            json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"),
                        "data": {"schemas": [USER_SCHEMA], "userName": format!("limit{i}")}})
        })
        .collect();
    let r = c
        .post("/Bulk", &json!({"schemas": [BULK_REQUEST], "Operations": ops}))
        .await;
    r.expect_error(413, None);
    assert_eq!(c.total("/Users").await, 0);
    let r = c
        .post("/Bulk", &json!({"schemas": [BULK_REQUEST], "Operations": ops[..2]}))
        .await
        .expect(200);
    assert_eq!(r.body["Operations"].as_array().unwrap().len(), 2);
    assert_eq!(c.total("/Users").await, 2);
}

// ---------------------------------------------------------------------------------------------
// Discovery

async fn service_provider_config() {
    let (srv, c) = server().await;
    let r = c.get("/ServiceProviderConfig").await.expect(200);
    let spc = &r.body;
    assert_eq!(
        spc["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"])
    );
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["bulk"]["supported"], true);
    assert_eq!(spc["bulk"]["maxPayloadSize"], srv.config.max_body_bytes);
    assert_eq!(spc["filter"]["supported"], true);
    assert_eq!(spc["filter"]["maxResults"], srv.config.max_page_size);
    assert_eq!(spc["changePassword"]["supported"], false);
    assert_eq!(spc["sort"]["supported"], true);
    assert_eq!(spc["etag"]["supported"], true);
    let schemes = spc["authenticationSchemes"].as_array().unwrap();
    assert!(schemes.iter().any(|s| s["type"] == "oauthbearertoken"));
    assert_eq!(
        spc["meta"]["location"],
        format!("{}/ServiceProviderConfig", srv.base_url(srv.conn()))
    );
    // RFC 9865 cursor pagination is advertised.
    assert_eq!(spc["pagination"]["cursor"], true);
}

async fn resource_types_and_schemas() {
    let (srv, c) = server().await;
    let base = srv.base_url(srv.conn());
    let r = c.get("/ResourceTypes").await.expect(200);
    assert_eq!(r.body["schemas"], json!([LIST_RESPONSE]));
    let rts = r.resources();
    assert_eq!(r.body["totalResults"], rts.len());
    let user = rts.iter().find(|t| t["id"] == "User").expect("User resource type");
    assert_eq!(user["endpoint"], "/Users");
    assert_eq!(user["schema"], USER_SCHEMA);
    assert!(
        user["schemaExtensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["schema"] == ENTERPRISE && e["required"] == false)
    );
    assert_eq!(user["meta"]["location"], format!("{base}/ResourceTypes/User"));
    let group = rts.iter().find(|t| t["id"] == "Group").expect("Group resource type");
    assert_eq!(group["endpoint"], "/Groups");
    assert_eq!(group["schema"], GROUP_SCHEMA);
    let one = c.fetch("/ResourceTypes/User").await;
    assert_eq!(one["id"], "User");
    c.get("/ResourceTypes/Widget").await.expect_error(404, None);

    let r = c.get("/Schemas").await.expect(200);
    let ids: Vec<String> = r.ids();
    for urn in [USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE] {
        assert!(ids.contains(&urn.to_string()), "{urn} in {ids:?}");
    }
    let s = c.fetch(&format!("/Schemas/{USER_SCHEMA}")).await;
    assert_eq!(s["id"], USER_SCHEMA);
    assert_eq!(s["meta"]["location"], format!("{base}/Schemas/{USER_SCHEMA}"));
    let attrs = s["attributes"].as_array().unwrap();
    let user_name = attrs.iter().find(|a| a["name"] == "userName").unwrap();
    assert_eq!(user_name["required"], true);
    assert_eq!(user_name["uniqueness"], "server");
    assert_eq!(user_name["caseExact"], false);
    let groups = attrs.iter().find(|a| a["name"] == "groups").unwrap();
    assert_eq!(groups["mutability"], "readOnly");
    let password = attrs.iter().find(|a| a["name"] == "password").unwrap();
    assert_eq!(password["returned"], "never");
    assert_eq!(password["mutability"], "writeOnly");
    c.get("/Schemas/urn:example:nope").await.expect_error(404, None);
}

// ---------------------------------------------------------------------------------------------
// Errors on endpoints and methods

async fn me_is_not_implemented() {
    let (_srv, c) = server().await;
    for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let body = json!({"schemas": [USER_SCHEMA], "userName": "me"});
        let r = c.send_with(method.clone(), "/Me", Some(&body), &[]).await;
        assert_eq!(r.status.as_u16(), 501, "{method} /Me: {}", r.text);
        r.expect_error(501, None);
    }
    // /Me still needs a valid token.
    let r = _srv.client_with_token(_srv.conn(), None).get("/Me").await;
    r.expect_error(401, None);
}

async fn methods_not_allowed() {
    let (_srv, c) = server().await;
    let u = c.user("x").await;
    let uid = id(&u);
    let cases = [
        (Method::PUT, "/ServiceProviderConfig".to_string()),
        (Method::POST, "/ServiceProviderConfig".to_string()),
        (Method::DELETE, "/ServiceProviderConfig".to_string()),
        (Method::POST, "/Schemas".to_string()),
        (Method::PUT, "/ResourceTypes/User".to_string()),
        (Method::DELETE, "/Users".to_string()),
        (Method::PUT, "/Users".to_string()),
        (Method::PATCH, "/Groups".to_string()),
        (Method::POST, format!("/Users/{uid}")),
        (Method::GET, "/Bulk".to_string()),
    ];
    for (method, path) in cases {
        let r = c
            .send_with(
                method.clone(),
                &path,
                Some(&json!({"schemas": [USER_SCHEMA], "userName": "y"})),
                &[],
            )
            .await;
        assert_eq!(r.status.as_u16(), 405, "{method} {path}: {}", r.text);
        r.expect_error(405, None);
    }
    // Nothing changed.
    assert_eq!(c.total("/Users").await, 1);
    assert_eq!(c.fetch(&format!("/Users/{uid}")).await, u);
}

async fn unknown_endpoints_are_404_with_scim_bodies() {
    let (srv, c) = server().await;
    for path in [
        "/Widgets",
        "/Users/a/b",
        "/Groups/x/members",
        "/v2/Users",
        "/Schemas/x/y",
    ] {
        let r = c.get(path).await;
        assert_eq!(r.status.as_u16(), 404, "{path}: {}", r.text);
        r.expect_error(404, None);
    }
    // An unknown user or group id.
    c.get("/Users/00000000-0000-0000-0000-000000000000")
        .await
        .expect_error(404, None);
    c.get("/Groups/nope").await.expect_error(404, None);
    // Outside the SCIM base.
    let r = c.get(&format!("{}/nothing-here", srv.base)).await;
    r.expect_error(404, None);
    // Health endpoints need no token.
    let anon = srv.client_with_token(srv.conn(), None);
    let r = anon.get(&format!("{}/healthz", srv.base)).await.expect(200);
    assert_eq!(r.text, "ok");
    anon.get(&format!("{}/readyz", srv.base)).await.expect(200);
}

async fn request_ids_are_echoed() {
    let (_srv, c) = server().await;
    let r = c.get_with("/Users", &[("X-Request-Id", "trace-123")]).await.expect(200);
    assert_eq!(r.header("x-request-id"), Some("trace-123"));
    let r = c.get("/Users").await.expect(200);
    assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()));
}

// ---------------------------------------------------------------------------------------------
// Concurrent writers

async fn concurrent_creates_of_one_user_name_make_one_user() {
    let (_srv, c) = server().await;
    let names = ["racer", "RACER", "Racer", "racer", "rAcEr", "racer"];
    let results = futures::future::join_all(names.iter().map(|n| {
        let c = c.clone();
        let body = json!({"schemas": [USER_SCHEMA], "userName": n});
        async move { c.post("/Users", &body).await }
    }))
    .await;
    let created = results.iter().filter(|r| r.status.as_u16() == 201).count();
    assert_eq!(created, 1, "{:?}", results.iter().map(|r| r.status).collect::<Vec<_>>());
    for r in results.iter().filter(|r| r.status.as_u16() != 201) {
        r.expect_error(409, Some("uniqueness"));
    }
    assert_eq!(c.total("/Users").await, 1);
}

async fn concurrent_member_adds_are_all_kept() {
    let (_srv, c) = server().await;
    let mut users = Vec::new();
    for i in 0..8 {
        users.push(id(&c.user(&format!("m{i}")).await));
    }
    let g = c.group("crowd", &[]).await;
    let gpath = format!("/Groups/{}", id(&g));
    let results = futures::future::join_all(users.iter().map(|u| {
        let c = c.clone();
        let gpath = gpath.clone();
        let body = patch(json!([{"op": "add", "path": "members", "value": [{"value": u}]}]));
        async move { c.patch(&gpath, &body).await }
    }))
    .await;
    for r in &results {
        assert_eq!(r.status.as_u16(), 204, "{}", r.text);
    }
    let got = c.fetch(&gpath).await;
    let mut want = users.clone();
    want.sort();
    assert_eq!(member_ids(&got), want);
}

async fn concurrent_conditional_writes_let_one_win() {
    let (_srv, c) = server().await;
    let u = c.user("contended").await;
    let path = format!("/Users/{}", id(&u));
    let v = u["meta"]["version"].as_str().unwrap().to_string();
    let results = futures::future::join_all((0..6).map(|i| {
        let c = c.clone();
        let path = path.clone();
        let v = v.clone();
        let body = patch(json!([{"op": "replace", "path": "title", "value": format!("writer {i}")}]));
        async move {
            c.send_with(Method::PATCH, &path, Some(&body), &[("If-Match", &v)])
                .await
        }
    }))
    .await;
    let ok: Vec<&Resp> = results.iter().filter(|r| r.status.as_u16() == 200).collect();
    assert_eq!(
        ok.len(),
        1,
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in results.iter().filter(|r| r.status.as_u16() != 200) {
        r.expect_error(412, None);
    }
    let got = c.fetch(&path).await;
    assert_eq!(got["title"], ok[0].body["title"]);
}

backend_tests!(
    list_response_shape,
    filters,
    plus_in_query_strings_is_a_space,
    group_filters,
    sorting,
    index_paging_and_limits,
    cursor_paging_walks_every_user_once_under_concurrent_changes,
    cursor_paging_with_a_filter,
    create_location_and_meta,
    json_content_types_are_accepted,
    etags_and_conditional_requests,
    put_replaces_and_ignores_read_only_input,
    user_groups_are_derived_and_read_only,
    soft_delete_and_recreate,
    attributes_and_excluded_attributes,
    default_rendering_equals_the_projected_rendering_byte_for_byte,
    searches,
    root_search_with_an_attribute_of_one_type,
    filter_on_meta_resource_type,
    filter_users_by_group,
    bulk_with_bulk_id_references,
    bulk_id_reference_in_path,
    bulk_fail_on_errors,
    bulk_creates_share_a_transaction,
    bulk_limits,
    service_provider_config,
    resource_types_and_schemas,
    me_is_not_implemented,
    methods_not_allowed,
    unknown_endpoints_are_404_with_scim_bodies,
    request_ids_are_echoed;
    multi_thread:
    concurrent_creates_of_one_user_name_make_one_user,
    concurrent_member_adds_are_all_kept,
    concurrent_conditional_writes_let_one_win,
);
