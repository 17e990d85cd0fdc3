//! The requests Okta sends to a SCIM 2.0 application, in the order its provisioning does them
//! (user import check, create, read, full replace, deactivate/reactivate, group push).

mod common;

use common::*;
use rollcall_store::IdpKind;
use serde_json::{Value, json};

const USER_NAME: &str = "Test_User_00aa11bb-22cc-33dd-44ee-55ff66778899";

async fn okta() -> (TestServer, Client) {
    let srv = TestServer::start_for(IdpKind::Okta).await;
    let c = srv.client();
    (srv, c)
}

fn okta_user(user_name: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    })
}

fn user_lookup(user_name: &str) -> String {
    format!(
        "/Users?{}&startIndex=1&count=100",
        filter(&format!("userName eq \"{user_name}\""))
    )
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

async fn okta_user_lifecycle() {
    let (_srv, c) = okta().await;

    // 1. Okta checks whether the user already exists.
    let r = c.get(&user_lookup(USER_NAME)).await.expect(200);
    assert_eq!(r.body["schemas"], json!([LIST_RESPONSE]));
    assert_eq!(r.body["totalResults"], 0);
    assert_eq!(r.body["startIndex"], 1);
    assert_eq!(r.body["itemsPerPage"], 0);
    assert_eq!(r.resources().len(), 0);

    // 2. Create, with a placeholder password and an empty groups list.
    let r = c.post("/Users", &okta_user(USER_NAME)).await.expect(201);
    let user = r.body.clone();
    let uid = id(&user);
    assert!(!uid.is_empty());
    assert_eq!(user["userName"], USER_NAME);
    assert_eq!(user["name"], json!({"givenName": "Test", "familyName": "User"}));
    assert_eq!(user["emails"][0]["value"], "test.user@okta.local");
    assert_eq!(user["emails"][0]["primary"], true);
    assert_eq!(user["displayName"], "Test User");
    assert_eq!(user["locale"], "en-US");
    assert_eq!(user["externalId"], "00ujl29u0le5T6Aj10h7");
    assert_eq!(user["active"], true);
    assert!(user.get("password").is_none(), "password is never returned: {user}");
    assert!(
        user.get("groups").is_none_or(|g| g == &json!([])),
        "no group memberships yet: {user}"
    );
    assert_eq!(user["meta"]["resourceType"], "User");
    assert!(user["schemas"].as_array().unwrap().contains(&json!(USER_SCHEMA)));
    assert_eq!(r.header("location"), user["meta"]["location"].as_str());

    // The lookup now finds it, also when Okta's userName differs in case.
    let r = c.get(&user_lookup(USER_NAME)).await.expect(200);
    assert_eq!(r.body["totalResults"], 1);
    assert_eq!(r.ids(), vec![uid.clone()]);
    let r = c.get(&user_lookup(&USER_NAME.to_uppercase())).await.expect(200);
    assert_eq!(r.ids(), vec![uid.clone()]);

    // A second create with the same userName is a conflict.
    c.post("/Users", &okta_user(&USER_NAME.to_lowercase()))
        .await
        .expect_error(409, Some("uniqueness"));

    // 3. Read back.
    let got = c.fetch(&format!("/Users/{uid}")).await;
    assert_eq!(without_meta(&got), without_meta(&user));

    // 4. Full replace, as Okta sends it: the whole user including id, and a new password.
    let put = json!({
        "schemas": [USER_SCHEMA],
        "id": uid,
        "userName": USER_NAME,
        "name": {"givenName": "Another", "middleName": "M", "familyName": "User"},
        "emails": [{"primary": true, "value": "another.user@okta.local", "type": "work"}],
        "displayName": "Another User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "t1meMa$heen",
        "active": true
    });
    let r = c.put(&format!("/Users/{uid}"), &put).await.expect(200);
    assert_eq!(r.body["id"], uid.as_str());
    assert_eq!(r.body["name"]["givenName"], "Another");
    assert_eq!(r.body["name"]["middleName"], "M");
    assert_eq!(r.body["displayName"], "Another User");
    assert_eq!(
        r.body["emails"],
        json!([{"primary": true, "value": "another.user@okta.local", "type": "work"}])
    );
    assert!(r.body.get("password").is_none());
    let got = c.fetch(&format!("/Users/{uid}")).await;
    assert_eq!(got["name"]["givenName"], "Another");
    assert_eq!(got["emails"][0]["value"], "another.user@okta.local");
    assert_ne!(got["meta"]["version"], user["meta"]["version"]);

    // 5. Deactivate: a path-less replace of active.
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .await
        .expect(200);
    assert_eq!(r.body["active"], false);
    assert_eq!(r.body["userName"], USER_NAME);
    assert_eq!(c.fetch(&format!("/Users/{uid}")).await["active"], false);
    let inactive = c
        .get(&format!("/Users?{}", filter("active eq false")))
        .await
        .expect(200);
    assert_eq!(inactive.ids(), vec![uid.clone()]);

    // 6. Reactivate.
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([{"op": "replace", "value": {"active": true}}])),
        )
        .await
        .expect(200);
    assert_eq!(r.body["active"], true);
    let got = c.fetch(&format!("/Users/{uid}")).await;
    assert_eq!(got["active"], true);
    assert_eq!(got["displayName"], "Another User", "other attributes are untouched");

    // Okta also sends password changes as a path-less replace; the password is never stored.
    let r = c
        .patch(
            &format!("/Users/{uid}"),
            &patch(json!([{"op": "replace", "value": {"password": "n3wPassw0rd"}}])),
        )
        .await
        .expect(200);
    assert!(r.body.get("password").is_none());

    // The unfiltered list Okta uses for imports.
    let r = c.get("/Users?startIndex=1&count=100").await.expect(200);
    assert_eq!(r.body["totalResults"], 1);
    assert_eq!(r.ids(), vec![uid]);
}

async fn okta_group_push() {
    let (_srv, c) = okta().await;
    let alice = id(&c.create_user(&okta_user("alice@okta.local")).await);
    let mut bob_body = okta_user("bob@okta.local");
    bob_body["emails"][0]["value"] = json!("bob@okta.local");
    let bob = id(&c.create_user(&bob_body).await);
    let mut carol_body = okta_user("carol@okta.local");
    carol_body["emails"][0]["value"] = json!("carol@okta.local");
    let carol = id(&c.create_user(&carol_body).await);

    // Okta first looks the group up by name.
    let lookup = format!(
        "/Groups?{}&startIndex=1&count=100",
        filter("displayName eq \"Test SCIMv2\"")
    );
    let r = c.get(&lookup).await.expect(200);
    assert_eq!(r.body["totalResults"], 0);

    // Push the group with its members.
    let r = c
        .post(
            "/Groups",
            &json!({
                "schemas": [GROUP_SCHEMA],
                "displayName": "Test SCIMv2",
                "members": [
                    {"value": alice, "display": "alice@okta.local"},
                    {"value": bob, "display": "bob@okta.local"}
                ]
            }),
        )
        .await
        .expect(201);
    let group = r.body.clone();
    let gid = id(&group);
    assert_eq!(group["displayName"], "Test SCIMv2");
    assert_eq!(group["meta"]["resourceType"], "Group");
    assert_eq!(member_ids(&group), sorted(&[&alice, &bob]));
    for m in group["members"].as_array().unwrap() {
        assert!(
            m["$ref"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/Users/{}", m["value"].as_str().unwrap()))
        );
    }
    assert_eq!(r.header("location"), group["meta"]["location"].as_str());

    let got = c.fetch(&format!("/Groups/{gid}")).await;
    assert_eq!(member_ids(&got), sorted(&[&alice, &bob]));

    // The lookup finds it now.
    let r = c.get(&lookup).await.expect(200);
    assert_eq!(r.ids(), vec![gid.clone()]);

    // Membership shows on the users.
    assert_eq!(group_ids(&c.fetch(&format!("/Users/{alice}")).await), vec![gid.clone()]);

    // A second group with the same name is a conflict.
    c.post(
        "/Groups",
        &json!({"schemas": [GROUP_SCHEMA], "displayName": "Test SCIMv2"}),
    )
    .await
    .expect_error(409, Some("uniqueness"));

    // Remove one member with a value filter path.
    let r = c
        .patch(
            &format!("/Groups/{gid}"),
            &patch(json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}])),
        )
        .await
        .expect(204);
    assert!(r.text.is_empty());
    let got = c.fetch(&format!("/Groups/{gid}")).await;
    assert_eq!(member_ids(&got), vec![bob.clone()]);
    assert_eq!(
        group_ids(&c.fetch(&format!("/Users/{alice}")).await),
        Vec::<String>::new()
    );

    // Add members.
    c.patch(
        &format!("/Groups/{gid}"),
        &patch(json!([{"op": "add", "path": "members", "value": [
            {"value": alice, "display": "alice@okta.local"},
            {"value": carol, "display": "carol@okta.local"}
        ]}])),
    )
    .await
    .expect(204);
    let got = c.fetch(&format!("/Groups/{gid}")).await;
    assert_eq!(member_ids(&got), sorted(&[&alice, &bob, &carol]));

    // Adding an existing member again changes nothing.
    c.patch(
        &format!("/Groups/{gid}"),
        &patch(json!([{"op": "add", "path": "members", "value": [{"value": bob}]}])),
    )
    .await
    .expect(204);
    let got = c.fetch(&format!("/Groups/{gid}")).await;
    assert_eq!(member_ids(&got), sorted(&[&alice, &bob, &carol]));

    // Rename: a path-less replace echoing the id.
    c.patch(
        &format!("/Groups/{gid}"),
        &patch(json!([{"op": "replace", "value": {"id": gid, "displayName": "Test SCIMv2 renamed"}}])),
    )
    .await
    .expect(204);
    let got = c.fetch(&format!("/Groups/{gid}")).await;
    assert_eq!(got["id"], gid.as_str());
    assert_eq!(got["displayName"], "Test SCIMv2 renamed");
    assert_eq!(
        member_ids(&got),
        sorted(&[&alice, &bob, &carol]),
        "rename keeps members"
    );
    assert_eq!(c.get(&lookup).await.expect(200).body["totalResults"], 0);
    let renamed = format!(
        "/Groups?{}&startIndex=1&count=100",
        filter("displayName eq \"Test SCIMv2 renamed\"")
    );
    assert_eq!(c.get(&renamed).await.expect(200).ids(), vec![gid.clone()]);
    // The users' groups show the new display name.
    let carol_doc = c.fetch(&format!("/Users/{carol}")).await;
    assert_eq!(carol_doc["groups"][0]["display"], "Test SCIMv2 renamed");

    // Okta may also push the whole group with PUT.
    let r = c
        .put(
            &format!("/Groups/{gid}"),
            &json!({
                "schemas": [GROUP_SCHEMA],
                "id": gid,
                "displayName": "Test SCIMv2 renamed",
                "members": [{"value": carol, "display": "carol@okta.local"}]
            }),
        )
        .await
        .expect(200);
    assert_eq!(member_ids(&r.body), vec![carol.clone()]);
    assert_eq!(
        member_ids(&c.fetch(&format!("/Groups/{gid}")).await),
        vec![carol.clone()]
    );

    // Delete the group: it disappears and the users lose the membership.
    let r = c.delete(&format!("/Groups/{gid}")).await.expect(204);
    assert!(r.text.is_empty());
    c.get(&format!("/Groups/{gid}")).await.expect_error(404, None);
    assert_eq!(c.get(&renamed).await.expect(200).body["totalResults"], 0);
    assert_eq!(
        group_ids(&c.fetch(&format!("/Users/{carol}")).await),
        Vec::<String>::new()
    );
    c.delete(&format!("/Groups/{gid}")).await.expect_error(404, None);
    // The users remain.
    assert_eq!(c.total("/Users").await, 3);
}

backend_tests!(okta_user_lifecycle, okta_group_push);
