//! The last request shapes real identity providers send that RFC 7644 does not allow (issue #17),
//! replayed over a real socket: older Microsoft Entra ID provisioning (unquoted filter values, as in
//! Microsoft's SCIM reference material, and the enterprise `manager` as a one-element array in
//! PATCH), and OneLogin's customer-written SCIM JSON template (a body whose `schemas` lack the core
//! User URN, <https://developers.onelogin.com/scim/define-user-schema>).

mod common;

use common::*;
use rollcall_store::IdpKind;
use serde_json::{Value, json};

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

async fn entra_legacy_generation() {
    let srv = TestServer::start_for(IdpKind::Entra).await;
    let c = srv.client();

    // The match query before create, with the value unquoted.
    let r = c
        .get(&format!("/Users?{}", filter("externalId eq jyoung")))
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], 0);

    let user = c
        .create_user(&json!({
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "externalId": "jyoung",
            "userName": "jyoung@contoso.example",
            "active": "True",
            ENTERPRISE: {"department": "Sales"}
        }))
        .await;
    let uid = id(&user);
    let boss = id(&c
        .create_user(&json!({"schemas": [USER_SCHEMA], "externalId": "2819c223", "userName": "boss@contoso.example"}))
        .await);

    let r = c
        .get(&format!("/Users?{}", filter("externalId eq jyoung")))
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![uid.clone()]);
    let r = c
        .get(&format!("/Users?{}", filter("userName eq jyoung@contoso.example")))
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![uid.clone()]);

    // The manager, as a one-element array of {"value": ...}, with a path.
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([{
                "op": "Add",
                "path": format!("{ENTERPRISE}:manager"),
                "value": [{"value": boss}]
            }])),
        )
        .await
        .expect(200);
    assert_eq!(r.body[ENTERPRISE]["manager"]["value"], boss.as_str(), "{}", r.body);
    assert_eq!(r.body[ENTERPRISE]["department"], "Sales");

    // The query by id and manager, both unquoted (the ids are GUID-like words).
    let q = format!("id eq {uid} and {ENTERPRISE}:manager.value eq {boss}");
    let r = c.get(&format!("/Users?{}", filter(&q))).await.expect(200);
    assert_eq!(r.ids(), vec![uid.clone()], "{q}");
    let q = format!("id eq {uid} and manager.value eq {uid}");
    assert_eq!(
        c.get(&format!("/Users?{}", filter(&q))).await.expect(200).ids(),
        Vec::<String>::new()
    );

    // Path-less, keyed by the attribute's URN path.
    let other = id(&c
        .create_user(&json!({"schemas": [USER_SCHEMA], "userName": "other@contoso.example"}))
        .await);
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([{"op": "Replace", "value": {format!("{ENTERPRISE}:manager"): [{"value": other}]}}])),
        )
        .await
        .expect(200);
    assert_eq!(r.body[ENTERPRISE]["manager"]["value"], other.as_str());
    assert_eq!(
        c.fetch(&format!("/Users/{uid}")).await[ENTERPRISE]["manager"]["value"],
        other.as_str()
    );

    // Two managers: refused, nothing changed.
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([{
                "op": "Replace",
                "path": format!("{ENTERPRISE}:manager"),
                "value": [{"value": boss}, {"value": other}]
            }])),
        )
        .await;
    r.expect_error(400, Some("invalidValue"));
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("\"manager\" is single-valued"),
        "{}",
        r.body
    );
    assert_eq!(
        c.fetch(&format!("/Users/{uid}")).await[ENTERPRISE]["manager"]["value"],
        other.as_str()
    );

    // A bare word followed by more words is still an invalid filter, with a clear reason.
    let r = c.get(&format!("/Users?{}", filter("displayName eq Jane Young"))).await;
    r.expect_error(400, Some("invalidFilter"));
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("after the unquoted value \"Jane\""),
        "{}",
        r.body
    );
}

/// OneLogin's documented Enterprise User template: SCIM 1.1 URNs, `emails` as one object.
fn onelogin_user(user_name: &str, title: &str) -> Value {
    json!({
        "schemas": ["urn:scim:schemas:core:1.0", "urn:scim:schemas:extension:enterprise:1.0"],
        "userName": user_name,
        "name": {"familyName": "Doe", "givenName": "Jane", "formatted": "Jane Doe"},
        "emails": {"value": user_name, "type": "work", "primary": true},
        "title": title,
        "urn:scim:schemas:extension:enterprise:1.0": {
            "department": "R&D",
            "manager": {"managerId": "m-1", "displayName": "Max Boss"}
        }
    })
}

async fn onelogin_template_without_core_urn() {
    let srv = TestServer::start_for(IdpKind::Onelogin).await;
    let c = srv.client();

    let r = c
        .post("/Users", &onelogin_user("jdoe@example.com", "Engineer"))
        .await
        .expect(201);
    let uid = id(&r.body);
    assert_eq!(r.body["schemas"], json!([USER_SCHEMA]));
    assert_eq!(r.body["userName"], "jdoe@example.com");
    assert_eq!(
        r.body["emails"],
        json!([{"value": "jdoe@example.com", "type": "work", "primary": true}])
    );
    assert_eq!(r.body["title"], "Engineer");

    // PUT with a custom URN only.
    let r = c
        .put(
            &format!("/Users/{uid}"),
            &json!({"schemas": ["urn:acme:onelogin:user"], "userName": "jdoe@example.com", "title": "Lead", "active": true}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["title"], "Lead");
    assert_eq!(c.fetch(&format!("/Users/{uid}")).await["title"], "Lead");

    // An attribute that does not belong: the error says which, and which URN is unknown.
    let r = c
        .put(
            &format!("/Users/{uid}"),
            &json!({"schemas": ["urn:acme:onelogin:user"], "userName": "jdoe@example.com", "badgeNumber": "42"}),
        )
        .await;
    r.expect_error(400, Some("invalidValue"));
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"badgeNumber\" is not an attribute of User"),
        "{detail}"
    );
    assert!(
        detail.contains("urn:acme:onelogin:user is not a schema of User"),
        "{detail}"
    );
    assert_eq!(
        c.fetch(&format!("/Users/{uid}")).await["title"],
        "Lead",
        "nothing changed"
    );

    // A Group body sent to /Users stays refused.
    c.post(
        "/Users",
        &json!({"schemas": [GROUP_SCHEMA], "displayName": "Eng", "userName": "x"}),
    )
    .await
    .expect_error(400, Some("invalidValue"));
}

backend_tests!(entra_legacy_generation, onelogin_template_without_core_urn);
