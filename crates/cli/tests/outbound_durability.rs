//! Outbound provisioning survives crashes: the real `rollcall serve` is killed with SIGKILL several
//! times while SCIM writes arrive and its outbound worker pushes them on to a real SCIM server
//! (scim2-server), and restarted on the same database. Afterwards, once the worker has caught up:
//!
//! - every user Rollcall has is on the target exactly once (by its externalId, Rollcall's id): no
//!   create cut by the crash made a second one;
//! - no change was lost: every acknowledged title change is there;
//! - the mapping table has every user synced, none failed.
//!
//! Runs on SQLite always, and on PostgreSQL when `ROLLCALL_TEST_DATABASE_URL` names a server.

#[path = "../../outbound/tests/downstream/mod.rs"]
mod downstream;

mod serving;

use downstream::{Downstream, TOKEN};
use rollcall_testkit::{Backend, TestDatabase, pg_admin_url, skip_note};
use serde_json::{Value, json};
use serving::{Server, cli_json, free_address, rand_ms};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const KILLS: usize = 3;
const WRITERS: usize = 2;

async fn crash_and_recover(backend: Backend) {
    let db = TestDatabase::create(backend, "rollcall_outbound_durable").await;
    let url = db.url().to_string();
    let down = Downstream::start().await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let key = cli_json(
        &url,
        &["--create", "api-key", "create", "--name", "durability", "--json"],
    )["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let org = cli_json(&url, &["org", "create", "--name", "acme", "--json"]);
    let org_id = org["id"].as_str().unwrap().to_string();
    let conn = cli_json(&url, &["connection", "create", "--org", "acme", "--json"]);
    let (conn_id, token) = (
        conn["id"].as_str().unwrap().to_string(),
        conn["token"].as_str().unwrap().to_string(),
    );
    let listen = free_address();
    let mut server = Server::start(&url, &listen, &http).await;
    let targets = format!("http://{listen}/api/v1/organizations/{org_id}/provisioning-targets");
    let t: Value = http
        .post(&targets)
        .bearer_auth(&key)
        .json(
            &json!({"name": "Downstream", "base_url": down.url, "auth": {"kind": "bearer", "token": TOKEN},
                      "deletion_threshold": {"max_percent": null, "max_users": null}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let target_id = t["id"].as_str().expect("a target").to_string();
    let r = http
        .post(format!("{targets}/{target_id}/approve"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Writers: each creates a user, then changes its title; a 2xx is an acknowledged change.
    let stop = Arc::new(AtomicBool::new(false));
    let titles: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (http, stop, titles) = (http.clone(), stop.clone(), titles.clone());
        let base = format!("http://{listen}/scim/v2/{conn_id}");
        let token = token.clone();
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let body = json!({"schemas": [USER_SCHEMA], "userName": format!("w{w}-{i}@example.com"),
                                  "emails": [{"value": format!("w{w}-{i}@example.com"), "primary": true}]});
                let created = http
                    .post(format!("{base}/Users"))
                    .bearer_auth(&token)
                    .header("content-type", "application/scim+json")
                    .body(body.to_string())
                    .send()
                    .await;
                let id = match created {
                    Ok(r) if r.status().as_u16() == 201 => match r.json::<Value>().await {
                        Ok(doc) => doc["id"].as_str().unwrap().to_string(),
                        Err(_) => continue,
                    },
                    _ => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let title = format!("title {i}");
                let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                   "Operations": [{"op": "replace", "path": "title", "value": title}]});
                let changed = http
                    .patch(format!("{base}/Users/{id}"))
                    .bearer_auth(&token)
                    .header("content-type", "application/scim+json")
                    .body(patch.to_string())
                    .send()
                    .await;
                if matches!(changed, Ok(ref r) if r.status().is_success()) {
                    titles.lock().unwrap().insert(id, title);
                }
            }
        }));
    }
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(800 + rand_ms(400))).await;
        server.kill();
        tokio::time::sleep(Duration::from_millis(100)).await;
        server = Server::start(&url, &listen, &http).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let titles = titles.lock().unwrap().clone();
    assert!(titles.len() > 20, "too few writes to mean anything: {}", titles.len());

    // Every user of Rollcall ends up on the target once, with its last acknowledged title.
    let mut rollcall_users: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("http://{listen}/api/v1/organizations/{org_id}/users?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = http
            .get(url)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        rollcall_users.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    // A crashed node's lease (30 s) must expire before the target is pushed again, and then the
    // backlog goes to a Python server on a loaded machine: the deadline is generous (this is not a
    // measure of speed; rollcall-bench outbound is).
    let caught_up = Instant::now();
    let deadline = caught_up + Duration::from_secs(300);
    loop {
        let remote = down.users().await;
        let mut by_external: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        for u in &remote {
            if let Some(x) = u["externalId"].as_str() {
                by_external.entry(x.to_string()).or_default().push(u);
            }
        }
        let dups: Vec<&String> = by_external
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, _)| k)
            .collect();
        assert!(dups.is_empty(), "users made twice on the target: {dups:?}");
        let missing = rollcall_users
            .iter()
            .filter(|id| !by_external.contains_key(*id))
            .count();
        let stale = titles
            .iter()
            .filter(|(id, title)| {
                by_external
                    .get(*id)
                    .is_none_or(|v| v[0]["title"].as_str() != Some(title.as_str()))
            })
            .count();
        if missing == 0 && stale == 0 && remote.len() == rollcall_users.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} users never reached the target, {stale} title changes lost ({} remote users)",
            rollcall_users.len(),
            remote.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed: Value = http
        .get(format!("{targets}/{target_id}/objects?state=failed"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(failed["data"], json!([]), "no object failed");
    eprintln!(
        "{} users, {} acknowledged title changes, all on the target once across {KILLS} SIGKILLs \
         ({:.1} s after the writers stopped)",
        rollcall_users.len(),
        titles.len(),
        caught_up.elapsed().as_secs_f64()
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_outbound_survives_sigkill_without_duplicates_or_lost_changes() {
    crash_and_recover(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outbound_survives_sigkill_without_duplicates_or_lost_changes() {
    if pg_admin_url().is_none() {
        skip_note("postgres_outbound_survives_sigkill_without_duplicates_or_lost_changes");
        return;
    }
    crash_and_recover(Backend::Postgres).await;
}
