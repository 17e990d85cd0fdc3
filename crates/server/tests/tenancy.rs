//! Isolation between connections, within one organization and across organizations: a token only
//! works at its own base URL, and nothing of one connection is visible or reachable from another.

mod common;

use common::*;
use reqwest::Method;
use rollcall_store::IdpKind;
use serde_json::{Value, json};

/// Connections 0 and 1 belong to organization "north", connection 2 to "south".
async fn three() -> TestServer {
    TestServer::start_with(Setup {
        connections: vec![
            ("north".into(), IdpKind::Okta),
            ("north".into(), IdpKind::Entra),
            ("south".into(), IdpKind::Generic),
        ],
        ..Setup::default()
    })
    .await
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

async fn harness_creates_separate_connections() {
    let srv = three().await;
    assert_eq!(srv.conns[0].org_id, srv.conns[1].org_id);
    assert_ne!(srv.conns[0].org_id, srv.conns[2].org_id);
    assert_ne!(srv.conns[0].id, srv.conns[1].id);
    assert_ne!(srv.token(&srv.conns[0]), srv.token(&srv.conns[1]));
}

async fn a_token_only_works_at_its_own_base_url() {
    let srv = three().await;
    let (a, b, c) = (&srv.conns[0], &srv.conns[1], &srv.conns[2]);
    srv.client_for(b).user("someone@b.example").await;

    for (victim, token) in [(b, &a.token), (a, &b.token), (c, &a.token), (a, &c.token)] {
        let cl = srv.client_with_token(victim, Some(token));
        for path in [
            "/Users",
            "/Groups",
            "/ServiceProviderConfig",
            "/Schemas",
            "/ResourceTypes",
            "/Me",
        ] {
            let r = cl.get(path).await;
            r.expect_error(401, None);
            let www = r.header("www-authenticate").unwrap_or_default();
            assert!(
                www.to_ascii_lowercase().starts_with("bearer"),
                "WWW-Authenticate: {www:?}"
            );
        }
        cl.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "intruder"}))
            .await
            .expect_error(401, None);
        cl.post("/.search", &json!({"schemas": [SEARCH_REQUEST]}))
            .await
            .expect_error(401, None);
        cl.post("/Bulk", &json!({"schemas": [BULK_REQUEST], "Operations": []}))
            .await
            .expect_error(401, None);
    }
    // Nothing was created anywhere by the rejected requests.
    assert_eq!(srv.client_for(a).total("/Users").await, 0);
    assert_eq!(srv.client_for(b).total("/Users").await, 1);
    assert_eq!(srv.client_for(c).total("/Users").await, 0);
}

async fn missing_malformed_and_unknown_credentials_are_401() {
    let srv = three().await;
    let a = &srv.conns[0];
    let cases: Vec<Option<&str>> = vec![None, Some(""), Some("rc_scim_not-a-real-token")];
    for token in cases {
        let r = srv.client_with_token(a, token).get("/Users").await;
        r.expect_error(401, None);
        assert!(r.header("www-authenticate").is_some());
    }
    // Other schemes than Bearer.
    let cl = srv.client_with_token(a, None);
    for value in [
        format!("Basic {}", a.token),
        a.token.clone(),
        format!("Token {}", a.token),
    ] {
        let r = cl
            .send(cl.request(Method::GET, "/Users").header("Authorization", value))
            .await;
        r.expect_error(401, None);
    }
    // The scheme name is case-insensitive (RFC 7235).
    let r = cl
        .send(
            cl.request(Method::GET, "/Users")
                .header("Authorization", format!("bearer {}", a.token)),
        )
        .await;
    r.expect(200);
    // A valid token at a connection id that does not exist looks the same as a wrong token.
    let url = format!("{}/scim/v2/no-such-connection/Users", srv.base);
    let r = srv.client_for(a).get(&url).await;
    let detail_unknown = r.expect_error(401, None);
    let r = srv.client_with_token(&srv.conns[1], Some(&a.token)).get("/Users").await;
    let detail_other = r.expect_error(401, None);
    assert_eq!(
        detail_unknown, detail_other,
        "does not reveal whether a connection exists"
    );
}

async fn resources_of_another_connection_are_not_found() {
    let srv = three().await;
    for other in [1usize, 2] {
        let a = srv.client_for(&srv.conns[0]);
        let b = srv.client_for(&srv.conns[other]);
        let user_name = format!("victim{other}@example.com");
        let bu = b
            .create_user(&json!({
                "schemas": [USER_SCHEMA], "userName": user_name, "displayName": "Victim", "active": true
            }))
            .await;
        let bu_id = id(&bu);
        let bg = b.group(&format!("victims{other}"), &[&bu_id]).await;
        let bg_id = id(&bg);
        // The user as it is now, with its group.
        let bu = b.fetch(&format!("/Users/{bu_id}")).await;
        assert_eq!(group_ids(&bu), vec![bg_id.clone()]);

        for (path, doc) in [(format!("/Users/{bu_id}"), &bu), (format!("/Groups/{bg_id}"), &bg)] {
            a.get(&path).await.expect_error(404, None);
            a.get_with(&path, &[("If-None-Match", "*")])
                .await
                .expect_error(404, None);
            let body = if path.starts_with("/Users") {
                json!({"schemas": [USER_SCHEMA], "userName": "hijacked", "displayName": "Hijacked"})
            } else {
                json!({"schemas": [GROUP_SCHEMA], "displayName": "hijacked", "members": []})
            };
            a.put(&path, &body).await.expect_error(404, None);
            a.patch(
                &path,
                &patch(json!([{"op": "replace", "path": "displayName", "value": "hijacked"}])),
            )
            .await
            .expect_error(404, None);
            a.delete(&path).await.expect_error(404, None);
            // B's resource is untouched.
            let after = b.fetch(&path).await;
            assert_eq!(after, *doc, "the other connection's resource changed");
        }

        // Bulk in A cannot reach B's resources either.
        let r = a
            .post(
                "/Bulk",
                &json!({"schemas": [BULK_REQUEST], "Operations": [
                    {"method": "DELETE", "path": format!("/Users/{bu_id}")},
                    {"method": "PATCH", "path": format!("/Groups/{bg_id}"), "data": patch(json!([
                        {"op": "replace", "path": "displayName", "value": "hijacked"}]))}
                ]}),
            )
            .await
            .expect(200);
        for op in r.body["Operations"].as_array().unwrap() {
            assert_eq!(op["status"], "404", "{op}");
        }
        assert_eq!(b.fetch(&format!("/Users/{bu_id}")).await, bu);
        assert_eq!(b.fetch(&format!("/Groups/{bg_id}")).await, bg);
    }
}

async fn lists_and_searches_never_show_another_connections_data() {
    let srv = three().await;
    let a = srv.client_for(&srv.conns[0]);
    let b = srv.client_for(&srv.conns[1]);
    let c = srv.client_for(&srv.conns[2]);
    let au = a.user("alpha@a.example").await;
    let ag = a.group("alpha-team", &[&id(&au)]).await;
    for other in [&b, &c] {
        for i in 0..3 {
            let u = other.user(&format!("user{i}@other.example")).await;
            other.group(&format!("team{i}"), &[&id(&u)]).await;
        }
    }

    let r = a.get("/Users").await.expect(200);
    assert_eq!(r.body["totalResults"], 1);
    assert_eq!(r.ids(), vec![id(&au)]);
    let r = a.get("/Groups").await.expect(200);
    assert_eq!(r.body["totalResults"], 1);
    assert_eq!(r.ids(), vec![id(&ag)]);
    assert_eq!(member_ids(&r.resources()[0]), vec![id(&au)]);

    // Filters that would match the others' data.
    for f in [
        "userName eq \"user0@other.example\"",
        "userName co \"other\"",
        "userName sw \"user\"",
        "not (userName eq \"alpha@a.example\")",
        "meta.created gt \"2000-01-01T00:00:00Z\" and not (userName eq \"alpha@a.example\")",
    ] {
        let r = a.get(&format!("/Users?{}", filter(f))).await.expect(200);
        assert_eq!(r.body["totalResults"], 0, "filter {f}: {}", r.text);
    }
    let r = a
        .get(&format!("/Groups?{}", filter("displayName sw \"team\"")))
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 0);
    let other_id = id(&b.fetch("/Users").await["Resources"][0]);
    let r = a
        .get(&format!("/Users?{}", filter(&format!("id eq \"{other_id}\""))))
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 0);

    // Searches.
    let r = a
        .post("/.search", &json!({"schemas": [SEARCH_REQUEST]}))
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 2);
    assert_eq!(
        sorted(&r.ids().iter().map(String::as_str).collect::<Vec<_>>()),
        sorted(&[&id(&au), &id(&ag)])
    );
    let r = a
        .post(
            "/Users/.search",
            &json!({"schemas": [SEARCH_REQUEST], "filter": "userName pr"}),
        )
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![id(&au)]);
    let r = a
        .post(
            "/Groups/.search",
            &json!({"schemas": [SEARCH_REQUEST], "filter": "displayName pr"}),
        )
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![id(&ag)]);

    // Cursor paging.
    let r = a.get("/Users?cursor=&count=10").await.expect(200);
    assert_eq!(r.ids(), vec![id(&au)]);
    assert!(r.body.get("nextCursor").is_none_or(Value::is_null));

    // The other connections see only their own.
    assert_eq!(b.total("/Users").await, 3);
    assert_eq!(c.total("/Users").await, 3);
    assert_eq!(b.total("/Groups").await, 3);
    assert_eq!(
        b.total(&format!("/Users?{}", filter("userName eq \"alpha@a.example\"")))
            .await,
        0
    );
}

async fn members_from_another_connection_are_rejected() {
    let srv = three().await;
    for other in [1usize, 2] {
        let a = srv.client_for(&srv.conns[0]);
        let b = srv.client_for(&srv.conns[other]);
        let mine = a.user(&format!("mine{other}@a.example")).await;
        let theirs = b.user(&format!("theirs{other}@b.example")).await;
        let their_group = b.group(&format!("their-team{other}"), &[]).await;
        let (mine, theirs, their_group) = (id(&mine), id(&theirs), id(&their_group));
        let groups_before = a.total("/Groups").await;

        // POST /Groups with a foreign member.
        a.post(
            "/Groups",
            &json!({"schemas": [GROUP_SCHEMA], "displayName": format!("mixed{other}"),
                    "members": [{"value": mine}, {"value": theirs}]}),
        )
        .await
        .expect_error_status(400);
        assert_eq!(a.total("/Groups").await, groups_before, "no group was created");

        // A foreign group as a nested member.
        a.post(
            "/Groups",
            &json!({"schemas": [GROUP_SCHEMA], "displayName": format!("nested{other}"),
                    "members": [{"value": their_group, "type": "Group"}]}),
        )
        .await
        .expect_error_status(400);

        // PATCH add and PUT on an existing group.
        let g = a.group(&format!("team{other}"), &[&mine]).await;
        let gid = id(&g);
        a.patch(
            &format!("/Groups/{gid}"),
            &patch(json!([{"op": "add", "path": "members", "value": [{"value": theirs}]}])),
        )
        .await
        .expect_error_status(400);
        a.put(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [GROUP_SCHEMA], "displayName": format!("team{other}"),
                    "members": [{"value": theirs}]}),
        )
        .await
        .expect_error_status(400);
        let after = a.fetch(&format!("/Groups/{gid}")).await;
        assert_eq!(member_ids(&after), vec![mine.clone()]);
        assert_eq!(after["meta"]["version"], g["meta"]["version"]);

        // The foreign user did not gain a group.
        assert_eq!(
            group_ids(&b.fetch(&format!("/Users/{theirs}")).await),
            Vec::<String>::new()
        );
    }
}

async fn the_same_names_may_exist_in_every_connection() {
    let srv = three().await;
    let mut ids = Vec::new();
    for conn in &srv.conns {
        let cl = srv.client_for(conn);
        let u = cl.user("jdoe@example.com").await;
        let g = cl.group("Engineering", &[&id(&u)]).await;
        // Uniqueness still holds within each connection, case-insensitively for userName.
        cl.user_conflict("JDoe@Example.com").await;
        cl.post(
            "/Groups",
            &json!({"schemas": [GROUP_SCHEMA], "displayName": "Engineering"}),
        )
        .await
        .expect_error(409, Some("uniqueness"));
        ids.push((id(&u), id(&g)));
    }
    for (i, conn) in srv.conns.iter().enumerate() {
        let cl = srv.client_for(conn);
        let r = cl
            .get(&format!("/Users?{}", filter("userName eq \"jdoe@example.com\"")))
            .await
            .expect(200);
        assert_eq!(r.ids(), vec![ids[i].0.clone()]);
        let r = cl
            .get(&format!("/Groups?{}", filter("displayName eq \"Engineering\"")))
            .await
            .expect(200);
        assert_eq!(r.ids(), vec![ids[i].1.clone()]);
        assert_eq!(member_ids(&r.resources()[0]), vec![ids[i].0.clone()]);
    }
    let all: std::collections::HashSet<_> = ids.iter().flat_map(|(u, g)| [u.clone(), g.clone()]).collect();
    assert_eq!(all.len(), 6, "ids are distinct across connections");

    // Deleting in one connection leaves the others alone.
    let c0 = srv.client_for(&srv.conns[0]);
    c0.delete(&format!("/Users/{}", ids[0].0)).await.expect(204);
    for (i, conn) in srv.conns.iter().enumerate().skip(1) {
        srv.client_for(conn).fetch(&format!("/Users/{}", ids[i].0)).await;
    }
}

trait Conflict {
    async fn user_conflict(&self, user_name: &str);
}

impl Conflict for Client {
    async fn user_conflict(&self, user_name: &str) {
        self.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": user_name}))
            .await
            .expect_error(409, Some("uniqueness"));
    }
}

backend_tests!(
    harness_creates_separate_connections,
    a_token_only_works_at_its_own_base_url,
    missing_malformed_and_unknown_credentials_are_401,
    resources_of_another_connection_are_not_found,
    lists_and_searches_never_show_another_connections_data,
    members_from_another_connection_are_rejected,
    the_same_names_may_exist_in_every_connection,
);
