//! Over HTTP, on both backends: list pages stop at the configured byte budget (fewer resources
//! than `count`, RFC 7644 §3.4.2.4) and paging still reads every resource once; list cursors are
//! opaque, tell nothing about other tenants and work only on the list they came from; concurrent
//! PATCHes of one user all apply.

mod common;

use base64::Engine;
use common::*;
use rollcall_server::ScimConfig;
use rollcall_store::IdpKind;
use serde_json::{Value, json};
use std::collections::HashSet;

backend_tests!(
    list_pages_stop_at_the_byte_budget,
    cursors_are_opaque_and_belong_to_their_connection;
    multi_thread: concurrent_patches_of_one_user_all_apply,
);

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

async fn list_pages_stop_at_the_byte_budget() {
    let srv = TestServer::start_with(Setup {
        config: ScimConfig {
            max_list_bytes: 3_000,
            ..ScimConfig::default()
        },
        ..Setup::default()
    })
    .await;
    let c = srv.client();
    let mut all = Vec::new();
    for i in 0..25 {
        let u = c
            .create_user(&json!({"schemas": [USER_SCHEMA], "userName": format!("amp-{i:02}"),
                                  "title": "t".repeat(400)}))
            .await;
        all.push(id(&u));
    }
    c.user("other").await;
    let f = filter("userName sw \"amp-\"");
    // Index paging: each page is cut short; the next one starts after what was returned.
    let mut seen = Vec::new();
    let mut start = 1;
    let mut pages = 0;
    while start <= 25 {
        let r = c
            .get(&format!("/Users?{f}&count=1000&startIndex={start}"))
            .await
            .expect(200);
        pages += 1;
        let n = r.resources().len();
        assert_eq!(r.body["totalResults"], 25);
        assert_eq!(r.body["itemsPerPage"], n);
        assert_eq!(r.body["startIndex"], start);
        assert!(
            (1..25).contains(&n),
            "{n} users on a page of at most 3,000 bytes of documents"
        );
        seen.extend(r.ids());
        start += n as i64;
        assert!(pages <= 25);
    }
    assert_eq!(seen, all, "every user once, in order");
    // Cursor paging: the next cursor follows the last user returned.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..30 {
        let r = c
            .get(&format!("/Users?{f}&count=1000&cursor={}", enc(&cursor)))
            .await
            .expect(200);
        assert_eq!(r.body["itemsPerPage"], r.resources().len());
        assert!(r.resources().len() < 25);
        seen.extend(r.ids());
        match r.body.get("nextCursor").and_then(Value::as_str) {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, all, "every user once, in order");
    // Through /.search as well.
    let r = c
        .post(
            "/Users/.search",
            &json!({"schemas": [SEARCH_REQUEST], "filter": "userName sw \"amp-\"", "count": 1000}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 25);
    assert!((1..25).contains(&r.resources().len()));
}

/// The 16 bytes a cursor carries after its prefix.
fn cursor_bytes(cursor: &str) -> Vec<u8> {
    let body = cursor.strip_prefix("c2.").expect("a cursor of this version");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .expect("base64url")
}

async fn cursors_are_opaque_and_belong_to_their_connection() {
    let srv = TestServer::start_with(Setup {
        connections: vec![("acme".into(), IdpKind::Okta), ("beta".into(), IdpKind::Entra)],
        ..Setup::default()
    })
    .await;
    let a = srv.client_for(&srv.conns[0]);
    let b = srv.client_for(&srv.conns[1]);
    for i in 0..3 {
        a.user(&format!("a{i}")).await;
    }
    let first = a.get("/Users?count=1&cursor=").await.expect(200);
    let cursor = first.body["nextCursor"].as_str().expect("nextCursor").to_string();
    let last = first.ids().pop().unwrap();
    // The cursor is the id of the page's last user, which the tenant has, and nothing else: no row
    // number, nothing that moves when others write.
    assert_eq!(
        cursor_bytes(&cursor),
        uuid::Uuid::parse_str(&last).unwrap().as_bytes().to_vec()
    );
    for i in 0..30 {
        b.user(&format!("b{i}")).await;
    }
    let again = a.get("/Users?count=1&cursor=").await.expect(200);
    assert_eq!(
        again.body["nextCursor"],
        cursor.as_str(),
        "other tenants' writes do not show"
    );
    // Another connection's list, or another resource type, refuses it.
    let r = b.get(&format!("/Users?cursor={}", enc(&cursor))).await;
    let detail = r.expect_error(400, Some("invalidCursor"));
    assert!(detail.contains("does not belong"), "{detail}");
    let r = a.get(&format!("/Groups?cursor={}", enc(&cursor))).await;
    r.expect_error(400, Some("invalidCursor"));
    // A well-formed cursor naming nothing at all is refused the same way.
    let forged = format!(
        "c2.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
    );
    a.get(&format!("/Users?cursor={}", enc(&forged)))
        .await
        .expect_error(400, Some("invalidCursor"));
    // Its own list takes it.
    let next = a
        .get(&format!("/Users?count=5&cursor={}", enc(&cursor)))
        .await
        .expect(200);
    assert_eq!(next.resources().len(), 2);
    assert!(!next.ids().contains(&last));
}

async fn concurrent_patches_of_one_user_all_apply() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let uid = id(&c.user("alice").await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (c, uid) = (c.clone(), uid.clone());
        tasks.push(tokio::spawn(async move {
            c.patch(
                &format!("/Users/{uid}"),
                &json!({"schemas": [PATCH_OP], "Operations": [
                    {"op": "add", "path": "emails", "value": [{"value": format!("a{i}@example.com"), "type": "work"}]}
                ]}),
            )
            .await
            .expect(200);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let u = c.fetch(&format!("/Users/{uid}")).await;
    let emails: HashSet<String> = u["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(emails, (0..20).map(|i| format!("a{i}@example.com")).collect());
    assert_eq!(u["meta"]["version"], "W/\"21\"");
}
