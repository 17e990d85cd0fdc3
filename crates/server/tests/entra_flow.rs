//! The requests Microsoft Entra ID's provisioning service sends, including the forms its "known
//! issues" page lists (capitalised ops, string booleans, path-less URN-keyed values, bare-string
//! manager, the ADSCIM group schema).

mod common;

use common::*;
use rollcall_store::IdpKind;
use serde_json::{Value, json};

const USER_NAME: &str = "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1";

async fn entra() -> (TestServer, Client) {
    let srv = TestServer::start_for(IdpKind::Entra).await;
    let c = srv.client();
    (srv, c)
}

fn entra_user(user_name: &str, external_id: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "externalId": external_id,
        "userName": user_name,
        "active": "True",
        "emails": [{"primary": "true", "type": "work", "value": format!("{user_name}@testuser.com")}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
        ENTERPRISE: {"employeeNumber": 701984, "department": "Tour Operations"}
    })
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn by_user_name(user_name: &str) -> String {
    format!("/Users?{}", filter(&format!("userName eq \"{user_name}\"")))
}

async fn entra_user_lifecycle() {
    let (_srv, c) = entra().await;

    // Entra matches on userName before creating.
    let r = c.get(&by_user_name(USER_NAME)).await.expect(200);
    assert_eq!(r.body["schemas"], json!([LIST_RESPONSE]));
    assert_eq!(r.body["totalResults"], 0);
    assert_eq!(r.resources().len(), 0);

    // Create with the enterprise extension and string booleans.
    let r = c
        .post("/Users", &entra_user(USER_NAME, "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"))
        .await
        .expect(201);
    let user = r.body.clone();
    let uid = id(&user);
    assert_eq!(user["userName"], USER_NAME);
    assert_eq!(
        user["active"], true,
        "\"True\" is read as a boolean and answered as one"
    );
    assert_eq!(user["emails"][0]["primary"], true);
    assert_eq!(user["externalId"], "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef");
    assert_eq!(user["name"]["formatted"], "givenName familyName");
    assert_eq!(user[ENTERPRISE]["employeeNumber"], "701984");
    assert_eq!(user[ENTERPRISE]["department"], "Tour Operations");
    assert!(user["schemas"].as_array().unwrap().contains(&json!(ENTERPRISE)));
    assert_eq!(user["meta"]["resourceType"], "User");
    assert!(user.get("roles").is_none_or(|v| v == &json!([])));

    // Read it back and find it by userName; a non-existent userName finds nothing.
    let got = c.fetch(&format!("/Users/{uid}")).await;
    assert_eq!(without_meta(&got), without_meta(&user));
    assert_eq!(
        c.get(&by_user_name(USER_NAME)).await.expect(200).ids(),
        vec![uid.clone()]
    );
    assert_eq!(
        c.get(&by_user_name("non-existent user")).await.expect(200).body["totalResults"],
        0
    );
    // Entra also matches on externalId.
    let r = c
        .get(&format!(
            "/Users?{}",
            filter("externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\"")
        ))
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![uid.clone()]);

    // Update several attributes with capitalised ops.
    let new_name = "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com";
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([
                {"op": "Replace", "path": "userName", "value": new_name},
                {"op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"}
            ])),
        )
        .await
        .expect(200);
    assert_eq!(r.body["userName"], new_name);
    assert_eq!(
        r.body["displayName"],
        "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
    );
    let got = c.fetch(&format!("/Users/{uid}")).await;
    assert_eq!(got["userName"], new_name);
    assert_eq!(
        c.get(&by_user_name(USER_NAME)).await.expect(200).body["totalResults"],
        0
    );
    assert_eq!(
        c.get(&by_user_name(new_name)).await.expect(200).ids(),
        vec![uid.clone()]
    );

    // A path-less Replace whose keys are dotted and URN-qualified attribute paths.
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([{"op": "Replace", "value": {
                "name.givenName": "Grace",
                "name.familyName": "Hopper",
                format!("{ENTERPRISE}:department"): "Research",
                format!("{ENTERPRISE}:costCenter"): "CC-42",
                "title": "Rear Admiral"
            }}])),
        )
        .await
        .expect(200);
    assert_eq!(r.body["name"]["givenName"], "Grace");
    assert_eq!(r.body["name"]["familyName"], "Hopper");
    assert_eq!(r.body["name"]["formatted"], "givenName familyName", "siblings kept");
    assert_eq!(r.body[ENTERPRISE]["department"], "Research");
    assert_eq!(r.body[ENTERPRISE]["costCenter"], "CC-42");
    assert_eq!(r.body[ENTERPRISE]["employeeNumber"], "701984");
    assert_eq!(r.body["title"], "Rear Admiral");
    let got = c.fetch(&format!("/Users/{uid}")).await;
    assert_eq!(got["name"]["givenName"], "Grace");
    assert_eq!(got[ENTERPRISE]["department"], "Research");

    // The work e-mail through a value-filter path.
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "grace@navy.example"}])),
        )
        .await
        .expect(200);
    assert_eq!(r.body["emails"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["emails"][0]["value"], "grace@navy.example");
    assert_eq!(r.body["emails"][0]["type"], "work");
    assert_eq!(r.body["emails"][0]["primary"], true);
    // And Entra's filter form for it.
    let r = c
        .get(&format!(
            "/Users?{}",
            filter("emails[type eq \"work\"].value eq \"grace@navy.example\"")
        ))
        .await
        .expect(200);
    assert_eq!(r.ids(), vec![uid.clone()]);

    // Add a work street address to a user that has no addresses yet.
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([
                {"op": "Add", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Navy Way"},
                {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Arlington"}
            ])),
        )
        .await
        .expect(200);
    assert_eq!(
        r.body["addresses"],
        json!([{"type": "work", "streetAddress": "1 Navy Way", "locality": "Arlington"}])
    );
    let got = c.fetch(&format!("/Users/{uid}")).await;
    assert_eq!(got["addresses"][0]["streetAddress"], "1 Navy Way");

    // Manager as a bare id string.
    let boss = id(&c.create_user(&entra_user("boss@testuser.com", "ext-boss")).await);
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([{"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": boss}])),
        )
        .await
        .expect(200);
    assert_eq!(r.body[ENTERPRISE]["manager"]["value"], boss.as_str());
    let got = c.fetch(&format!("/Users/{uid}")).await;
    assert_eq!(got[ENTERPRISE]["manager"]["value"], boss.as_str());
    // Removing the manager.
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([{"op": "Remove", "path": format!("{ENTERPRISE}:manager")}])),
        )
        .await
        .expect(200);
    assert!(r.body[ENTERPRISE].get("manager").is_none(), "{}", r.body);

    // Disable with a string boolean, then enable with a path-less value.
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([{"op": "Replace", "path": "active", "value": "False"}])),
        )
        .await
        .expect(200);
    assert_eq!(r.body["active"], false);
    assert_eq!(c.fetch(&format!("/Users/{uid}")).await["active"], false);
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([{"op": "Replace", "value": {"active": "True"}}])),
        )
        .await
        .expect(200);
    assert_eq!(r.body["active"], true);

    // Delete: gone from reads and lists.
    let r = c.delete(&format!("/Users/{uid}")).await.expect(204);
    assert!(r.text.is_empty());
    c.get(&format!("/Users/{uid}")).await.expect_error(404, None);
    c.patch(
        &format!("/Users/{uid}"),
        &patch(json!([{"op": "Replace", "path": "active", "value": false}])),
    )
    .await
    .expect_error(404, None);
    assert_eq!(c.get(&by_user_name(new_name)).await.expect(200).body["totalResults"], 0);
    assert_eq!(c.total("/Users").await, 1);

    // Provisioning the same userName again creates a new user.
    let again = c
        .create_user(&entra_user(new_name, "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"))
        .await;
    assert_ne!(id(&again), uid);
    assert_eq!(c.get(&by_user_name(new_name)).await.expect(200).ids(), vec![id(&again)]);
}

async fn entra_group_lifecycle() {
    let (_srv, c) = entra().await;
    let u1 = id(&c.create_user(&entra_user("u1@testuser.com", "ext-1")).await);
    let u2 = id(&c.create_user(&entra_user("u2@testuser.com", "ext-2")).await);

    let lookup = format!(
        "/Groups?excludedAttributes=members&{}",
        filter("displayName eq \"displayName\"")
    );
    assert_eq!(c.get(&lookup).await.expect(200).body["totalResults"], 0);

    // Create with the Microsoft ADSCIM schema URN beside the core one.
    let r = c
        .post(
            "/Groups",
            &json!({
                "schemas": [
                    GROUP_SCHEMA,
                    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/Group"
                ],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                "displayName": "displayName",
                "meta": {"resourceType": "Group"}
            }),
        )
        .await
        .expect(201);
    let group = r.body.clone();
    let gid = id(&group);
    assert_eq!(group["displayName"], "displayName");
    assert_eq!(group["externalId"], "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159");
    assert_eq!(group["schemas"], json!([GROUP_SCHEMA]));
    // RFC 7643 §2.5: an empty multi-valued attribute may be returned as [] or left out.
    assert!(group.get("members").is_none_or(|m| m == &json!([])), "{group}");
    assert_eq!(group["meta"]["resourceType"], "Group");

    // Read without members, by id and by name.
    let got = c.fetch(&format!("/Groups/{gid}?excludedAttributes=members")).await;
    assert_eq!(got["id"], gid.as_str());
    assert_eq!(got["displayName"], "displayName");
    assert!(got.get("members").is_none(), "{got}");
    let r = c.get(&lookup).await.expect(200);
    assert_eq!(r.ids(), vec![gid.clone()]);
    assert!(r.resources()[0].get("members").is_none());
    assert_eq!(r.resources()[0]["displayName"], "displayName");

    // Rename with a capitalised Replace.
    let renamed = "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName";
    let r = c
        .patch(
            &format!("/Groups/{gid}"),
            &patch(json!([{"op": "Replace", "path": "displayName", "value": renamed}])),
        )
        .await
        .expect(204);
    assert!(r.text.is_empty());
    assert_eq!(c.fetch(&format!("/Groups/{gid}")).await["displayName"], renamed);

    // Add members, each as Entra sends them (with "$ref": null).
    c.patch(
        &format!("/Groups/{gid}"),
        &patch(json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": u1}]}])),
    )
    .await
    .expect(204);
    c.patch(
        &format!("/Groups/{gid}"),
        &patch(json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": u2}]}])),
    )
    .await
    .expect(204);
    let got = c.fetch(&format!("/Groups/{gid}")).await;
    assert_eq!(member_ids(&got), sorted(&[&u1, &u2]));
    assert_eq!(group_ids(&c.fetch(&format!("/Users/{u1}")).await), vec![gid.clone()]);

    // Remove a member with a value list.
    c.patch(
        &format!("/Groups/{gid}"),
        &patch(json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": u1}]}])),
    )
    .await
    .expect(204);
    let got = c.fetch(&format!("/Groups/{gid}")).await;
    assert_eq!(member_ids(&got), vec![u2.clone()]);
    assert_eq!(group_ids(&c.fetch(&format!("/Users/{u1}")).await), Vec::<String>::new());

    // Asking for attributes on a PATCH returns the group.
    let r = c
        .patch(
            &format!("/Groups/{gid}?attributes=displayName,members"),
            &patch(json!([{"op": "Add", "path": "members", "value": [{"value": u1}]}])),
        )
        .await
        .expect(200);
    assert_eq!(r.body["displayName"], renamed);
    assert_eq!(member_ids(&r.body), sorted(&[&u1, &u2]));

    // Deleting a member user removes it from the group.
    c.delete(&format!("/Users/{u1}")).await.expect(204);
    c.get(&format!("/Users/{u1}")).await.expect_error(404, None);
    let got = c.fetch(&format!("/Groups/{gid}")).await;
    assert_eq!(member_ids(&got), vec![u2.clone()]);

    // Delete the group.
    c.delete(&format!("/Groups/{gid}")).await.expect(204);
    c.get(&format!("/Groups/{gid}")).await.expect_error(404, None);
    c.get(&format!("/Groups/{gid}?excludedAttributes=members"))
        .await
        .expect_error(404, None);
    assert_eq!(c.total("/Groups").await, 0);
    assert_eq!(group_ids(&c.fetch(&format!("/Users/{u2}")).await), Vec::<String>::new());
}

backend_tests!(entra_user_lifecycle, entra_group_lifecycle);
