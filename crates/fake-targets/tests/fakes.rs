//! Each fake enforces its vendor's documented rules, each fault works, and the outbound client
//! behaves right against each fault.

use rollcall_fake_targets::{CLIENT_ID, CLIENT_SECRET, FakeTarget, Fault, FaultRule, Vendor};
use rollcall_outbound::auth::{ClientAuthMethod, Credentials, OAuthClientCredentials, Secret};
use rollcall_outbound::client::{
    ClientError, ErrorKind, RetryMode, RetryPolicy, ScimRequest, ScimResponse, TargetClient, TargetConfig, Transport,
};
use rollcall_outbound::profile::{self, TargetProfile};
use rollcall_webhooks::ssrf::NetworkPolicy;
use serde_json::{Value, json};
use std::time::Duration;

fn transport() -> Transport {
    Transport::new(NetworkPolicy {
        allow_loopback: true,
        ..Default::default()
    })
}

fn retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(10),
    }
}

fn profile_of(fake: &FakeTarget) -> TargetProfile {
    profile::profile(fake.vendor().profile_id()).unwrap().clone()
}

/// A client of the fake with its vendor's profile and the fake's long-lived token.
fn client(fake: &FakeTarget) -> TargetClient {
    let mut config = TargetConfig::new(fake.base_url(), profile_of(fake), Credentials::bearer(fake.token()));
    config.retry = retries();
    config.timeout = Duration::from_secs(5);
    TargetClient::new(transport(), config).unwrap()
}

/// The same without rate limits or retries: what the fake answers, as it answers it.
fn raw_client(fake: &FakeTarget) -> TargetClient {
    let mut config = TargetConfig::new(fake.base_url(), profile_of(fake), Credentials::bearer(fake.token()));
    config.retry = RetryPolicy {
        max_attempts: 1,
        ..retries()
    };
    config.rate_limits = Some(vec![]);
    TargetClient::new(transport(), config).unwrap()
}

async fn ok(c: &TargetClient, req: ScimRequest) -> ScimResponse {
    let what = format!("{} {}", req.method, req.path);
    c.send(req).await.unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn err(c: &TargetClient, req: ScimRequest) -> ClientError {
    let what = format!("{} {}", req.method, req.path);
    match c.send(req).await {
        Ok(r) => panic!("{what}: expected an error, got HTTP {} {}", r.status, r.body),
        Err(e) => e,
    }
}

fn aws_user(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "externalId": format!("ext-{name}"),
        "displayName": format!("{name} Doe"),
        "name": {"givenName": name, "familyName": "Doe"},
        "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true}],
        "active": true
    })
}

fn filter(path: &str, f: &str) -> ScimRequest {
    ScimRequest::get(path).query("filter", f)
}

#[tokio::test]
async fn aws_refuses_what_its_create_user_page_refuses() {
    let fake = FakeTarget::start(Vendor::AwsIamIdentityCenter).await;
    let c = raw_client(&fake);
    let mut no_given = aws_user("a");
    no_given["name"].as_object_mut().unwrap().remove("givenName");
    let mut no_display = aws_user("a");
    no_display.as_object_mut().unwrap().remove("displayName");
    let mut two_emails = aws_user("a");
    two_emails["emails"] = json!([{"value": "a@x.com", "primary": true}, {"value": "b@x.com"}]);
    let mut not_primary = aws_user("a");
    not_primary["emails"] = json!([{"value": "a@x.com"}]);
    let mut with_groups = aws_user("a");
    with_groups["groups"] = json!([{"value": "g"}]);
    for bad in [no_given, no_display, two_emails, not_primary, with_groups] {
        let e = err(&c, ScimRequest::post("Users", bad)).await;
        assert_eq!(e.status, Some(400), "{e}");
    }
    assert!(fake.users().is_empty());
    let made = ok(&c, ScimRequest::post("Users", aws_user("a"))).await;
    assert_eq!(made.status, 201);
    let e = err(&c, ScimRequest::post("Users", aws_user("A"))).await;
    assert!(e.is_conflict(), "userName is unique, whatever its case");
}

#[tokio::test]
async fn aws_filters_are_eq_on_the_documented_attributes_and_pages_are_cursors_of_100() {
    let fake = FakeTarget::start(Vendor::AwsIamIdentityCenter).await;
    let c = raw_client(&fake);
    for i in 0..120 {
        fake.insert_user(aws_user(&format!("u{i:03}")));
    }
    let found = ok(&c, filter("Users", r#"userName eq "U007""#)).await;
    assert_eq!(found.body["Resources"].as_array().unwrap().len(), 1);
    let found = ok(
        &c,
        filter("Users", r#"externalId eq "ext-u007" and userName eq "u007""#),
    )
    .await;
    assert_eq!(found.body["Resources"].as_array().unwrap().len(), 1);
    for refused in [
        r#"userName co "u00""#,
        r#"emails.value eq "u007@example.com""#,
        r#"userName eq "a" or userName eq "b""#,
    ] {
        let e = err(&c, filter("Users", refused)).await;
        assert_eq!(e.status, Some(400), "{refused}");
        assert_eq!(e.scim_type.as_deref(), Some("invalidFilter"));
    }
    let e = err(&c, ScimRequest::get("Users").query("count", "101")).await;
    assert_eq!(e.status, Some(400));
    let first = ok(&c, ScimRequest::get("Users").query("count", "100").query("cursor", "")).await;
    assert_eq!(first.body["Resources"].as_array().unwrap().len(), 100);
    let next = first.body["nextCursor"].as_str().unwrap().to_string();
    let second = ok(
        &c,
        ScimRequest::get("Users").query("count", "100").query("cursor", next),
    )
    .await;
    assert_eq!(second.body["Resources"].as_array().unwrap().len(), 20);
    assert!(second.body.get("nextCursor").is_none());
}

#[tokio::test]
async fn aws_groups_hide_members_and_cap_member_changes_at_100() {
    let fake = FakeTarget::start(Vendor::AwsIamIdentityCenter).await;
    let c = raw_client(&fake);
    let ids: Vec<String> = (0..150).map(|i| fake.insert_user(aws_user(&format!("m{i}")))).collect();
    let g = ok(&c, ScimRequest::post("Groups", json!({"displayName": "eng"}))).await;
    let gid = g.body["id"].as_str().unwrap().to_string();
    let add = |from: usize, to: usize| {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
            {"op": "add", "path": "members", "value": ids[from..to].iter().map(|i| json!({"value": i})).collect::<Vec<_>>()}
        ]})
    };
    let e = err(&c, ScimRequest::patch(format!("Groups/{gid}"), add(0, 101))).await;
    assert_eq!(e.status, Some(400));
    assert!(fake.group_members(&gid).is_empty(), "a refused PATCH changes nothing");
    let done = ok(&c, ScimRequest::patch(format!("Groups/{gid}"), add(0, 100))).await;
    assert_eq!(done.status, 204);
    ok(&c, ScimRequest::patch(format!("Groups/{gid}"), add(100, 150))).await;
    assert_eq!(fake.group_members(&gid).len(), 150);
    // GET never shows members.
    let read = ok(&c, ScimRequest::get(format!("Groups/{gid}"))).await;
    assert_eq!(read.body["members"], json!([]));
    // No replace-all, no remove-all; removing one by filter is fine.
    let replace = json!({"Operations": [{"op": "replace", "path": "members", "value": [{"value": ids[0]}]}]});
    assert_eq!(
        err(&c, ScimRequest::patch(format!("Groups/{gid}"), replace))
            .await
            .status,
        Some(400)
    );
    let remove_all = json!({"Operations": [{"op": "remove", "path": "members"}]});
    assert_eq!(
        err(&c, ScimRequest::patch(format!("Groups/{gid}"), remove_all))
            .await
            .status,
        Some(400)
    );
    let remove_one = json!({"Operations": [{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])}]});
    ok(&c, ScimRequest::patch(format!("Groups/{gid}"), remove_one)).await;
    assert_eq!(fake.group_members(&gid).len(), 149);
    // Membership can be asked per member.
    let of_member = ok(&c, filter("Groups", &format!("members eq \"{}\"", ids[1]))).await;
    assert_eq!(of_member.body["Resources"].as_array().unwrap().len(), 1);
    // The outbound profile agrees with the fake.
    let p = profile_of(&fake);
    assert_eq!(p.member_changes_per_patch(1000), 100);
    assert!(!p.groups.members_read_back && !p.patch.replace_all_members);
}

#[tokio::test]
async fn a_throttled_fake_answers_429_with_retry_after() {
    let fake = FakeTarget::start(Vendor::AwsIamIdentityCenter).await;
    fake.set_throttle(Some((60, 2)));
    let c = raw_client(&fake);
    ok(&c, ScimRequest::get("Users")).await;
    ok(&c, ScimRequest::get("Users")).await;
    let e = err(&c, ScimRequest::get("Users")).await;
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(e.retry_after.is_some_and(|r| r >= Duration::from_secs(1)));
    // The client waits it out.
    let r = ok(&client(&fake), ScimRequest::get("Users")).await;
    assert!(r.attempts >= 1);
}

#[tokio::test]
async fn github_needs_a_user_agent_and_refuses_filtered_patch_paths() {
    for vendor in [Vendor::GithubEmu, Vendor::GithubOrganization] {
        let fake = FakeTarget::start(vendor).await;
        // Without a User-Agent: 403.
        let req = http::Request::get(format!("{}Users", fake.base_url()))
            .header("authorization", format!("Bearer {}", fake.token()))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let raw = transport().send(req, Duration::from_secs(5)).await.unwrap();
        assert_eq!(raw.status, 403, "{vendor:?}");
        // The profile's headers carry one.
        let c = raw_client(&fake);
        ok(&c, ScimRequest::get("Users")).await;
        let user = json!({
            "userName": "mona", "externalId": "e-mona", "displayName": "Mona",
            "name": {"givenName": "Mona", "familyName": "Lisa"},
            "emails": [{"value": "mona@example.com", "type": "work", "primary": true}], "active": true
        });
        let id = ok(&c, ScimRequest::post("Users", user)).await.body["id"]
            .as_str()
            .unwrap()
            .to_string();
        let filtered =
            json!({"Operations": [{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "m@x.com"}]});
        let e = err(&c, ScimRequest::patch(format!("Users/{id}"), filtered)).await;
        assert_eq!(e.status, Some(400));
        assert_eq!(e.scim_type.as_deref(), Some("invalidPath"));
        assert!(!profile_of(&fake).patch.filtered_paths);
    }
}

#[tokio::test]
async fn github_emu_suspends_on_active_false_and_deletes_for_good_on_delete() {
    let fake = FakeTarget::start(Vendor::GithubEmu).await;
    let c = raw_client(&fake);
    let user = json!({"userName": "a", "externalId": "e-a", "displayName": "A", "emails": [{"value": "a@x.com"}], "active": true});
    let id = ok(&c, ScimRequest::post("Users", user)).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let off = json!({"Operations": [{"op": "replace", "path": "active", "value": false}]});
    ok(&c, ScimRequest::patch(format!("Users/{id}"), off)).await;
    assert_eq!(fake.user(&id).unwrap()["active"], json!(false));
    ok(&c, ScimRequest::delete(format!("Users/{id}"))).await;
    assert!(fake.user(&id).is_none());
}

#[tokio::test]
async fn github_organization_has_no_groups_and_active_false_removes_the_identity() {
    let fake = FakeTarget::start(Vendor::GithubOrganization).await;
    let c = raw_client(&fake);
    assert_eq!(err(&c, ScimRequest::get("Groups")).await.status, Some(404));
    let user =
        json!({"userName": "a", "name": {"givenName": "A", "familyName": "B"}, "emails": [{"value": "a@x.com"}]});
    let id = ok(&c, ScimRequest::post("Users", user)).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let off = json!({"Operations": [{"op": "replace", "path": "active", "value": false}]});
    ok(&c, ScimRequest::patch(format!("Users/{id}"), off)).await;
    assert!(fake.user(&id).is_none());
    assert_eq!(
        profile_of(&fake).users.deactivate,
        profile::DeactivateMeaning::RemovesAccess
    );
}

fn salesforce_client(fake: &FakeTarget, secret: &str) -> TargetClient {
    let creds = Credentials::OAuthClientCredentials(OAuthClientCredentials {
        token_url: fake.token_url(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(secret),
        scope: None,
        client_auth: ClientAuthMethod::ClientSecretBasic,
    });
    let mut config = TargetConfig::new(fake.base_url(), profile_of(fake), creds);
    config.retry = RetryPolicy {
        max_attempts: 1,
        ..retries()
    };
    TargetClient::new(transport(), config).unwrap()
}

#[tokio::test]
async fn salesforce_needs_oauth_one_profile_entitlement_and_only_deactivates() {
    let fake = FakeTarget::start(Vendor::Salesforce).await;
    // A token it never issued: 401.
    let mut config = TargetConfig::new(fake.base_url(), profile_of(&fake), Credentials::bearer("made-up"));
    config.retry.max_attempts = 1;
    let stranger = TargetClient::new(transport(), config).unwrap();
    assert_eq!(
        err(&stranger, ScimRequest::get("Users")).await.kind,
        ErrorKind::Unauthorized
    );
    // A wrong client secret: the token endpoint refuses.
    let e = err(&salesforce_client(&fake, "nope"), ScimRequest::get("Users")).await;
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert!(e.to_string().contains("invalid_client"), "{e}");

    let c = salesforce_client(&fake, CLIENT_SECRET);
    // The plural ServiceProviderConfigs, where the profile says.
    let spc = c.service_provider_config().await.unwrap();
    assert_eq!(spc["filter"]["maxResults"], 200);
    assert_eq!(
        err(&c, ScimRequest::get("ServiceProviderConfig")).await.status,
        Some(404)
    );
    assert_eq!(fake.tokens_issued(), 1);

    let mut user =
        json!({"userName": "a@acme.example", "name": {"familyName": "A"}, "emails": [{"value": "a@acme.example"}]});
    let e = err(&c, ScimRequest::post("Users", user.clone())).await;
    assert!(e.is_conflict());
    assert!(
        !c.profile().conflict_means_exists(e.detail.as_deref()),
        "a 409 for a missing profile means invalid: {e}"
    );
    user["entitlements"] = json!([{"value": "00e5g000001AbCd", "type": "Profile", "primary": true}]);
    let id = ok(&c, ScimRequest::post("Users", user.clone())).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let e = err(&c, ScimRequest::post("Users", user)).await;
    assert!(e.is_conflict());
    assert!(
        c.profile().conflict_means_exists(e.detail.as_deref()),
        "a taken username means exists: {e}"
    );
    ok(&c, ScimRequest::delete(format!("Users/{id}"))).await;
    let kept = fake.user(&id).expect("DELETE only deactivates");
    assert_eq!(kept["active"], json!(false));
}

#[tokio::test]
async fn slack_enforces_its_create_rate_and_the_profile_keeps_under_it() {
    let fake = FakeTarget::start(Vendor::Slack).await;
    let user = |i: usize| json!({"userName": format!("u{i}"), "emails": [{"value": format!("u{i}@x.com")}]});
    // Without the client's limiter: the create-user burst is 20, then 429 with Retry-After.
    let raw = raw_client(&fake);
    let mut limited = None;
    for i in 0..25 {
        if let Err(e) = raw.send(ScimRequest::post("Users", user(i))).await {
            limited = Some((i, e));
            break;
        }
    }
    let (at, e) = limited.expect("Slack's fake limits creates");
    assert_eq!(at, 20);
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(e.retry_after.is_some());

    // With the Slack profile's buckets no request is refused.
    let fake = FakeTarget::start(Vendor::Slack).await;
    let c = client(&fake);
    for i in 0..24 {
        ok(&c, ScimRequest::post("Users", user(i))).await;
    }
    assert!(fake.requests().iter().all(|r| r.status != 429));
    assert_eq!(fake.users().len(), 24);
}

#[tokio::test]
async fn slack_delete_deactivates_a_user_and_removes_a_group() {
    let fake = FakeTarget::start(Vendor::Slack).await;
    let c = raw_client(&fake);
    let id = ok(
        &c,
        ScimRequest::post("Users", json!({"userName": "a", "emails": [{"value": "a@x.com"}]})),
    )
    .await
    .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&c, ScimRequest::delete(format!("Users/{id}"))).await;
    assert_eq!(fake.user(&id).unwrap()["active"], json!(false));
    let gid = ok(&c, ScimRequest::post("Groups", json!({"displayName": "g"})))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&c, ScimRequest::delete(format!("Groups/{gid}"))).await;
    assert!(fake.groups().is_empty());
    let e = err(&c, filter("Users", r#"userName sw "a""#)).await;
    assert_eq!(e.scim_type.as_deref(), Some("invalidFilter"));
    assert!(ok(&c, filter("Users", r#"email eq "a@x.com""#)).await.body["totalResults"] == 1);
}

#[tokio::test]
async fn the_generic_fake_describes_itself_and_filters_fully() {
    let fake = FakeTarget::start(Vendor::Generic).await;
    let c = client(&fake);
    let spc = c.service_provider_config().await.unwrap();
    let p = TargetProfile::from_service_provider_config(&spc).unwrap();
    assert!(p.patch.supported && p.filter.can_find_users_by("emails.value"));
    fake.insert_user(json!({"userName": "alice", "emails": [{"value": "alice@x.com"}]}));
    fake.insert_user(json!({"userName": "bob"}));
    let found = ok(&c, filter("Users", r#"userName sw "al" and emails.value co "@x""#)).await;
    assert_eq!(found.body["totalResults"], 1);
}

// --- faults, and the client against each ---

fn generic_user(name: &str) -> Value {
    json!({"userName": name, "externalId": format!("ext-{name}")})
}

#[tokio::test]
async fn a_429_fault_with_retry_after_is_waited_out() {
    let fake = FakeTarget::start(Vendor::Generic).await;
    fake.inject(
        FaultRule::new(Fault::Status {
            status: 429,
            retry_after: Some("1".into()),
        })
        .on("POST", "Users"),
    );
    let r = ok(&client(&fake), ScimRequest::post("Users", generic_user("a"))).await;
    assert_eq!(r.attempts, 2);
    let reqs = fake.requests();
    assert_eq!(reqs.iter().map(|r| r.status).collect::<Vec<_>>(), vec![429, 201]);
    assert!(reqs[1].at - reqs[0].at >= Duration::from_secs(1));
    assert_eq!(fake.users().len(), 1);
}

#[tokio::test]
async fn a_503_fault_is_retried_and_exhausts_into_an_error() {
    let fake = FakeTarget::start(Vendor::Generic).await;
    fake.inject(
        FaultRule::new(Fault::Status {
            status: 503,
            retry_after: None,
        })
        .times(2),
    );
    let c = client(&fake);
    assert_eq!(ok(&c, ScimRequest::get("Users")).await.attempts, 3);
    fake.inject(
        FaultRule::new(Fault::Status {
            status: 503,
            retry_after: None,
        })
        .always(),
    );
    let e = err(&c, ScimRequest::get("Users")).await;
    assert_eq!(e.kind, ErrorKind::ServerError);
    assert_eq!(e.attempts, 4);
    assert!(e.counts_against_target());
}

#[tokio::test]
async fn a_delayed_answer_times_out_a_get_which_is_retried() {
    let fake = FakeTarget::start(Vendor::Generic).await;
    fake.inject(FaultRule::new(Fault::Delay(Duration::from_secs(3))).on("GET", "Users"));
    let r = ok(
        &client(&fake),
        ScimRequest::get("Users").timeout(Duration::from_millis(300)),
    )
    .await;
    assert_eq!(r.attempts, 2);
}

#[tokio::test]
async fn a_slow_answer_after_commit_leaves_a_post_unretried_and_flagged() {
    let fake = FakeTarget::start(Vendor::Generic).await;
    fake.inject(FaultRule::new(Fault::SlowAnswer(Duration::from_secs(2))).on("POST", "Users"));
    let e = err(
        &client(&fake),
        ScimRequest::post("Users", generic_user("a")).timeout(Duration::from_millis(300)),
    )
    .await;
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(e.may_have_committed);
    assert_eq!(e.attempts, 1);
    assert_eq!(
        fake.users().len(),
        1,
        "the target made the user although the client gave up"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_dropped_connection_after_commit_is_not_retried_for_a_post() {
    let fake = FakeTarget::start(Vendor::Generic).await;
    fake.inject(FaultRule::new(Fault::DropAfterCommit).on("POST", "Users"));
    let c = client(&fake);
    let e = err(&c, ScimRequest::post("Users", generic_user("a"))).await;
    assert_eq!(e.kind, ErrorKind::ConnectionLost);
    assert!(e.may_have_committed);
    assert_eq!(fake.users().len(), 1);
    assert_eq!(fake.requests().len(), 1, "no second POST");

    // When the caller says a retry is safe, the retry meets the user the first attempt made: the
    // 409 comes flagged so the engine searches and links instead of failing.
    fake.inject(FaultRule::new(Fault::DropAfterCommit).on("POST", "Users"));
    let e = err(
        &c,
        ScimRequest::post("Users", generic_user("b")).retry(RetryMode::Idempotent),
    )
    .await;
    assert!(e.is_conflict());
    assert!(e.may_have_committed);
    let found = ok(&c, filter("Users", r#"externalId eq "ext-b""#)).await;
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(fake.users().len(), 2, "one user b, not two");
}

#[tokio::test]
async fn a_dropped_connection_on_a_put_is_retried() {
    let fake = FakeTarget::start(Vendor::Generic).await;
    let id = fake.insert_user(generic_user("a"));
    fake.inject(FaultRule::new(Fault::DropAfterCommit).on("PUT", "Users"));
    let r = ok(
        &client(&fake),
        ScimRequest::put(format!("Users/{id}"), json!({"userName": "a", "displayName": "A"})),
    )
    .await;
    assert_eq!(r.attempts, 2);
    assert!(r.earlier_outcome_unknown);
    assert_eq!(fake.user(&id).unwrap()["displayName"], "A");
}

#[tokio::test]
async fn a_conflict_on_create_fault_means_the_user_exists() {
    let fake = FakeTarget::start(Vendor::AwsIamIdentityCenter).await;
    fake.inject(FaultRule::new(Fault::ConflictOnCreate).on("POST", "Users"));
    let c = client(&fake);
    let e = err(&c, ScimRequest::post("Users", aws_user("a"))).await;
    assert!(e.is_conflict());
    assert_eq!(e.scim_type.as_deref(), Some("uniqueness"));
    assert!(c.profile().conflict_means_exists(e.detail.as_deref()));
    let found = ok(&c, filter("Users", r#"userName eq "a""#)).await;
    assert_eq!(found.body["Resources"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_not_found_on_update_fault_means_the_mapping_is_stale() {
    let fake = FakeTarget::start(Vendor::Generic).await;
    let id = fake.insert_user(generic_user("a"));
    fake.inject(FaultRule::new(Fault::NotFoundOnUpdate).on("PATCH", "Users"));
    let c = client(&fake);
    let patch = json!({"Operations": [{"op": "replace", "path": "displayName", "value": "A"}]});
    let e = err(&c, ScimRequest::patch(format!("Users/{id}"), patch)).await;
    assert!(e.is_not_found());
    assert_eq!(e.kind, ErrorKind::Rejected);
    assert!(fake.user(&id).is_none());
}

#[tokio::test]
async fn faults_apply_as_many_times_as_asked_and_then_stop() {
    let fake = FakeTarget::start(Vendor::Generic).await;
    fake.inject(
        FaultRule::new(Fault::Status {
            status: 500,
            retry_after: None,
        })
        .on("GET", "Groups")
        .times(2),
    );
    let c = raw_client(&fake);
    // Users are not affected.
    ok(&c, ScimRequest::get("Users")).await;
    assert_eq!(err(&c, ScimRequest::get("Groups")).await.status, Some(500));
    assert_eq!(err(&c, ScimRequest::get("Groups")).await.status, Some(500));
    ok(&c, ScimRequest::get("Groups")).await;
    fake.inject(
        FaultRule::new(Fault::Status {
            status: 500,
            retry_after: None,
        })
        .always(),
    );
    assert!(c.send(ScimRequest::get("Users")).await.is_err());
    fake.clear_faults();
    ok(&c, ScimRequest::get("Users")).await;
}

#[tokio::test]
async fn an_expired_token_from_the_fake_endpoint_is_replaced() {
    let fake = FakeTarget::start(Vendor::Salesforce).await;
    fake.set_token_lifetime(Duration::from_secs(1));
    let c = salesforce_client(&fake, CLIENT_SECRET);
    ok(&c, ScimRequest::get("Users")).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The token has expired: the client knows it from expires_in and fetches a new one first.
    ok(&c, ScimRequest::get("Users")).await;
    assert_eq!(fake.tokens_issued(), 2);
    assert!(
        fake.requests().iter().all(|r| r.status != 401),
        "no request went out with the expired token"
    );
    // Revoked behind the client's back: one 401, one refresh, success.
    fake.set_token_lifetime(Duration::from_secs(3600));
    fake.revoke_issued_tokens();
    ok(&c, ScimRequest::get("Users")).await;
    assert_eq!(fake.tokens_issued(), 3);
    assert_eq!(fake.requests().iter().filter(|r| r.status == 401).count(), 1);
}

/// The fakes and the profiles are two readings of the same documentation: where both say
/// something, they must say the same.
#[test]
fn each_fake_agrees_with_its_profile() {
    for vendor in Vendor::ALL {
        let r = vendor.rules();
        let p = profile::profile(vendor.profile_id()).unwrap_or_else(|| panic!("{vendor:?} has no profile"));
        let id = p.id;
        assert_eq!(r.spc_path, p.service_provider_config_path, "{id}");
        assert_eq!(r.filtered_patch_paths, p.patch.filtered_paths, "{id}");
        assert_eq!(
            r.max_member_changes,
            p.patch.max_member_changes.map(|m| m as usize),
            "{id}"
        );
        assert_eq!(r.groups, p.groups.supported, "{id}");
        if r.groups {
            assert_eq!(r.replace_all_members, p.patch.replace_all_members, "{id}");
            assert_eq!(r.members_in_get, p.groups.members_read_back, "{id}");
        }
        assert_eq!(r.one_value_multi, p.users.one_value_per_multi_valued, "{id}");
        assert_eq!(r.primary_email_required, p.users.primary_email_required, "{id}");
        assert_eq!(
            r.required_on_create,
            p.users
                .required_on_create
                .iter()
                .filter(|a| **a != "entitlements")
                .copied()
                .collect::<Vec<_>>(),
            "{id}"
        );
        assert_eq!(r.refused_on_create, p.users.refused_on_create, "{id}");
        assert_eq!(
            r.profile_entitlement_required,
            p.users.exactly_one.contains(&"entitlements"),
            "{id}"
        );
        assert_eq!(
            r.delete_deactivates,
            p.users.delete == profile::DeleteMeaning::Deactivates,
            "{id}"
        );
        assert_eq!(
            r.inactive_removes,
            p.users.deactivate == profile::DeactivateMeaning::RemovesAccess,
            "{id}"
        );
        assert_eq!(
            r.user_agent_required,
            p.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("user-agent")),
            "{id}"
        );
        assert_eq!(
            r.oauth,
            p.auth.first() == Some(&profile::AuthKind::OauthClientCredentials),
            "{id}"
        );
        if vendor != Vendor::Generic {
            // The generic profile's filters come from the target's ServiceProviderConfig.
            assert_eq!(r.filter_and, p.filter.and, "{id}");
            assert_eq!(
                r.filter_eq_only,
                p.filter.operators == profile::FilterOperators::EqOnly,
                "{id}"
            );
            if let Some(attrs) = r.user_filter_attrs {
                assert!(
                    attrs.iter().all(|a| p.filter.can_find_users_by(a) || *a == "emails"),
                    "{id}: {attrs:?}"
                );
            }
        }
        // The fake's base path fits the profile's URL shape.
        let shape = p.base_url.splitn(4, '/').nth(3).unwrap_or("");
        let fake: Vec<&str> = r.base_path.trim_matches('/').split('/').collect();
        let want: Vec<&str> = shape.trim_matches('/').split('/').collect();
        assert_eq!(fake.len(), want.len(), "{id}: {} vs {}", r.base_path, p.base_url);
        for (f, w) in fake.iter().zip(&want) {
            assert!(w.starts_with('{') || f == w, "{id}: {} vs {}", r.base_path, p.base_url);
        }
        // Documented rate limits: the fake enforces what the profile keeps under.
        for l in r.limits {
            assert!(
                p.rate_limits.iter().any(|b| b.documented
                    && b.requests == l.per_minute
                    && b.per_seconds == 60
                    && b.burst == l.burst
                    && b.scope.methods == l.methods
                    && b.scope.resource == l.resource
                    && b.scope.by_id == l.by_id),
                "{id}: {l:?}"
            );
        }
    }
}
