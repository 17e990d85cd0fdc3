//! `rollcall-bench outbound`: outbound provisioning against the in-repo fake of a generic SCIM
//! server (in process, no rate limit on either side): the initial push of N users (time, users a
//! second, requests a user, peak RSS) beside a baseline measured in the same run (the same users
//! POSTed straight to another fake, one at a time, by a bare HTTP client: what the target can
//! take), a second full run with nothing to change (requests: only the read-back), then the latency
//! from a change committed in Rollcall to its arrival at the target under steady load (background
//! changes at `--load` a second while measured ones go one at a time; p50/p99), and the requests
//! made per change.

use hdrhistogram::Histogram;
use rollcall_fake_targets::{FakeTarget, Vendor};
use rollcall_outbound::engine::{EngineConfig, Outbound};
use rollcall_scim::schema::SchemaRegistry;
use rollcall_store::outbound::*;
use rollcall_store::secrets::{SecretBox, SecretKey};
use rollcall_store::sqlite::SqliteStore;
use rollcall_store::{IdpKind, Mutation, NewConnection, ResourceKind, Store, WriteContext};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Users pushed by the initial push.
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Changes timed one by one after it.
    #[arg(long, default_value_t = 200)]
    pub changes: usize,
    /// Background changes a second while they are timed (other users).
    #[arg(long, default_value_t = 50)]
    pub load: u32,
}

/// The target's own speed: the same user documents POSTed straight to a fresh fake, one at a
/// time over one keep-alive connection. Users a second.
async fn baseline(users: usize) -> Result<f64, String> {
    let fake = FakeTarget::start(Vendor::Generic).await;
    fake.set_recording(false);
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}Users", fake.base_url());
    let started = Instant::now();
    for i in 0..users {
        let doc = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("user{i}@example.com"),
                         "externalId": format!("ext-{i}"), "name": {"givenName": "User", "familyName": format!("Number {i}")},
                         "emails": [{"value": format!("user{i}@example.com"), "primary": true}], "active": true});
        let r = http
            .post(&url)
            .bearer_auth(fake.token())
            .header("content-type", "application/scim+json")
            .body(doc.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().as_u16() != 201 {
            return Err(format!("baseline POST answered {}", r.status()));
        }
        let _ = r.bytes().await;
    }
    Ok(users as f64 / started.elapsed().as_secs_f64())
}

fn peak_rss_mb() -> f64 {
    crate::server::peak_rss_kb(std::process::id()).unwrap_or(0) as f64 / 1024.0
}

pub async fn run(args: Args) -> Result<(), String> {
    let fake = FakeTarget::start(Vendor::Generic).await;
    fake.set_recording(false);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let url = format!("sqlite://{}", dir.path().join("outbound.db").display());
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&url, Arc::new(SchemaRegistry::standard()))
            .await
            .map_err(|e| e.to_string())?
            .with_secrets(SecretBox::new(SecretKey::generate().map_err(|e| e.to_string())?)),
    );
    let by = WriteContext::cli();
    let org = store
        .create_organization(&by, "bench")
        .await
        .map_err(|e| e.to_string())?;
    let conn = store
        .create_connection(
            &by,
            NewConnection {
                org_id: org.id.clone(),
                name: "idp".into(),
                idp: IdpKind::Okta,
                token_hash: [7u8; 32],
                token_prefix: "rc_bench".into(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let ctx = WriteContext {
        org_id: org.id.clone(),
        connection_id: conn.id.clone(),
        ..WriteContext::cli()
    };
    let started = Instant::now();
    let mut ids = Vec::with_capacity(args.users);
    for i in 0..args.users {
        let doc = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("user{i}@example.com"),
                         "name": {"givenName": "User", "familyName": format!("Number {i}")},
                         "emails": [{"value": format!("user{i}@example.com"), "primary": true}], "active": true});
        ids.push(
            store
                .create_resource(&ctx, ResourceKind::User, doc, vec![])
                .await
                .map_err(|e| e.to_string())?
                .id,
        );
    }
    eprintln!(
        "{} users written to Rollcall in {:.1} s",
        args.users,
        started.elapsed().as_secs_f64()
    );

    let outbound = Outbound::new(
        store.clone(),
        rollcall_outbound::Transport::new(rollcall_webhooks::NetworkPolicy {
            allow_loopback: true,
            ..Default::default()
        }),
        EngineConfig {
            poll_interval: Duration::from_millis(50),
            rate_limits: Some(Vec::new()),
            ..Default::default()
        },
    );
    let t = store
        .outbound()
        .create_target(
            &by,
            NewTarget {
                org_id: org.id.clone(),
                name: "fake".into(),
                base_url: fake.base_url(),
                auth_kind: AuthKind::Bearer,
                auth: AuthSettings::default(),
                credentials: fake.token(),
                profile: "generic".into(),
                scope: TargetScope::default(),
                mapping: AttributeMapping::default(),
                deprovision: Deprovision::Deactivate,
                deletion_threshold: DeletionThreshold::default(),
                rate_limit: None,
                interval_s: 7 * 24 * 3600,
                approved: true,
            },
        )
        .await
        .map_err(|e| e.to_string())?;

    let base_rate = baseline(args.users).await?;
    println!(
        "baseline: {} users POSTed straight to the fake in {:.1} s ({base_rate:.0} users/s)",
        args.users,
        args.users as f64 / base_rate
    );

    // The initial push.
    let rss_before = peak_rss_mb();
    let started = Instant::now();
    outbound.run_once("bench").await.map_err(|e| e.to_string())?;
    let took = started.elapsed().as_secs_f64();
    let runs = store
        .outbound()
        .list_runs(&t.org_id, &t.id, None, 1)
        .await
        .map_err(|e| e.to_string())?;
    let c = &runs[0].counts;
    println!(
        "initial push: {} users in {took:.1} s ({:.0} users/s, {:.2} of the baseline), created {}, failed {}, {} requests ({:.2} a user), peak RSS {:.0} MB (before the push {:.0} MB)",
        args.users,
        args.users as f64 / took,
        args.users as f64 / took / base_rate,
        c.created,
        c.failed,
        c.requests,
        c.requests as f64 / args.users.max(1) as f64,
        peak_rss_mb(),
        rss_before
    );

    // A second full run: nothing to change.
    store
        .outbound()
        .request_target_sync(&org.id, &t.id, rollcall_store::sqlite::now_us())
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    outbound.run_once("bench").await.map_err(|e| e.to_string())?;
    let runs = store
        .outbound()
        .list_runs(&t.org_id, &t.id, None, 1)
        .await
        .map_err(|e| e.to_string())?;
    let c = &runs[0].counts;
    println!(
        "unchanged full run: {:.1} s, {} requests (the read-back), {} unchanged, {} updated",
        started.elapsed().as_secs_f64(),
        c.requests,
        c.unchanged,
        c.updated
    );

    // Change → target latency under steady load: background changes to the second half of the
    // users at `--load` a second, measured changes to the first half one at a time.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(outbound.clone().run_worker("bench-worker".into(), async {
        let _ = stopped.await;
    }));
    let phase_start = rollcall_store::sqlite::now_us();
    let loading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let background = {
        let (store, ctx, outbound, loading) = (store.clone(), ctx.clone(), outbound.clone(), loading.clone());
        let others: Vec<String> = ids[ids.len() / 2..].to_vec();
        let every = Duration::from_secs_f64(1.0 / f64::from(args.load.max(1)));
        tokio::spawn(async move {
            let mut n = 0u64;
            let mut tick = tokio::time::interval(every);
            while args.load > 0 && loading.load(std::sync::atomic::Ordering::Relaxed) && !others.is_empty() {
                tick.tick().await;
                let id = &others[(n as usize * 7919) % others.len()];
                let m: Mutation = Arc::new(move |doc: &mut Value| {
                    doc["nickName"] = json!(format!("load {n}"));
                    Ok(vec![])
                });
                if store
                    .update_resource(&ctx, ResourceKind::User, id, None, m)
                    .await
                    .is_ok()
                {
                    n += 1;
                }
                outbound.wake();
            }
            n
        })
    };
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?;
    for i in 0..args.changes {
        let id = &ids[i % (ids.len() / 2).max(1)];
        let remote = store
            .outbound()
            .target_object(&t.org_id, &t.id, ResourceKind::User, id)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|o| o.remote_id)
            .ok_or("a user was not pushed")?;
        let title = format!("title {i}");
        let m: Mutation = {
            let title = title.clone();
            Arc::new(move |doc: &mut Value| {
                doc["title"] = json!(title);
                Ok(vec![])
            })
        };
        let t0 = Instant::now();
        store
            .update_resource(&ctx, ResourceKind::User, id, None, m)
            .await
            .map_err(|e| e.to_string())?;
        outbound.wake();
        loop {
            if fake.user(&remote).is_some_and(|u| u["title"] == json!(title)) {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                return Err(format!("change {i} did not reach the target in 30 s"));
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        hist.record(t0.elapsed().as_micros().max(1) as u64)
            .map_err(|e| e.to_string())?;
    }
    loading.store(false, std::sync::atomic::Ordering::Relaxed);
    let load_changes = background.await.map_err(|e| e.to_string())?;
    // Let the last background changes arrive, then count the requests of the phase's runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop.send(());
    let _ = worker.await;
    let mut requests = 0u64;
    let mut before: Option<String> = None;
    'runs: loop {
        let page = store
            .outbound()
            .list_runs(&t.org_id, &t.id, before.as_deref(), 500)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        before = Some(last.id.clone());
        for r in &page {
            if r.started_us < phase_start {
                break 'runs;
            }
            requests += r.counts.requests;
        }
    }
    let changes = args.changes as u64 + load_changes;
    println!(
        "change → target under load ({} background changes at {}/s): {} measured changes, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {requests} requests for {changes} changes ({:.2} a change)",
        load_changes,
        args.load,
        args.changes,
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0,
        requests as f64 / changes.max(1) as f64
    );
    Ok(())
}
