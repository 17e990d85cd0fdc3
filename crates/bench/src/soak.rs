//! `rollcall-bench soak`: a long run of mixed IdP traffic with webhook deliveries, watching the
//! server's memory and open file descriptors, and checking that nothing acknowledged is lost.
//!
//! Starts `rollcall serve` (SQLite in a temporary directory, or the given PostgreSQL database) with
//! two tenants (an Okta-style and an Entra-style connection) and a global webhook endpoint pointing
//! at a receiver in this process. At a steady rate (open loop), it creates users, changes them,
//! adds them to and removes them from groups, deactivates and deletes some, and reads (filters and
//! gets). Every `--sample` seconds it records the server's RSS and open file descriptors.
//!
//! At the end it checks, as the durability test does:
//! - every acknowledged create (201) has exactly one `user.created` event, and there are no others;
//! - every event recorded after the webhook endpoint was created reached the receiver (by
//!   `webhook-id`), within a minute of the load's end.

use crate::scim::{self, PATCH_OP};
use crate::server::{self, Stack};
use axum::body::Bytes;
use reqwest::Client;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Seconds of load.
    #[arg(long, default_value_t = 1800.0)]
    pub duration: f64,
    /// SCIM requests per second (about two thirds of them changes).
    #[arg(long, default_value_t = 40.0)]
    pub rate: f64,
    /// Seconds between samples of RSS and open file descriptors.
    #[arg(long, default_value_t = 10.0)]
    pub sample: f64,
    /// Database URL for the started server [default: a SQLite file in a temporary directory]. A
    /// PostgreSQL database must exist; use a fresh one.
    #[arg(long)]
    pub database: Option<String>,
    /// Rollcall binary to start [default: `rollcall` beside this binary, else target/release/rollcall].
    #[arg(long)]
    pub rollcall_bin: Option<PathBuf>,
    /// Write the figures (and every sample) as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    failed: AtomicU64,
    created: AtomicU64,
}

/// One tenant's live users (ids) and its groups.
struct Tenant {
    base: String,
    client: Client,
    entra: bool,
    users: Mutex<Vec<String>>,
    groups: Vec<String>,
    next: AtomicU64,
}

fn scim_client(token: &str) -> Result<Client, String> {
    Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .default_headers(crate::load::scim_headers(token))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())
}

async fn make_tenant(base: &str, token: &str, entra: bool) -> Result<Tenant, String> {
    let client = scim_client(token)?;
    let mut groups = Vec::new();
    for g in 0..5 {
        let r = client
            .post(format!("{base}/Groups"))
            .body(scim::group(&format!("soak-group-{g}"), None).to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        groups.push(
            v["id"]
                .as_str()
                .ok_or(format!("group create answered {v}"))?
                .to_string(),
        );
    }
    Ok(Tenant {
        base: base.to_string(),
        client,
        entra,
        users: Mutex::new(Vec::new()),
        groups,
        next: AtomicU64::new(0),
    })
}

/// One request of the mix; `n` picks the kind. Answers whether it was acknowledged as expected.
async fn one_request(t: &Tenant, n: u64, counts: &Counts) -> bool {
    let pick = |salt: u64| {
        let users = t.users.lock().unwrap();
        (!users.is_empty()).then(|| users[((n / 7 + salt) as usize) % users.len()].clone())
    };
    let group = &t.groups[(n as usize / 3) % t.groups.len()];
    let kind = n % 12;
    // With few users, create first.
    let kind = if t.users.lock().unwrap().len() < 20 { 0 } else { kind };
    let req = match kind {
        0..=2 => {
            let i = t.next.fetch_add(1, Ordering::Relaxed);
            let prefix = format!("soak{}", std::process::id());
            let body = if t.entra {
                scim::entra_user(&prefix, i)
            } else {
                scim::okta_user(&prefix, i)
            };
            let r = t
                .client
                .post(format!("{}/Users", t.base))
                .body(body.to_string())
                .send()
                .await;
            return match r {
                Ok(r) if r.status().as_u16() == 201 => {
                    counts.created.fetch_add(1, Ordering::Relaxed);
                    if let Ok(v) = r.json::<Value>().await
                        && let Some(id) = v["id"].as_str()
                    {
                        t.users.lock().unwrap().push(id.to_string());
                    }
                    true
                }
                _ => false,
            };
        }
        3 | 4 => {
            let Some(id) = pick(0) else { return true };
            t.client.patch(format!("{}/Users/{id}", t.base)).body(
                json!({"schemas": [PATCH_OP], "Operations": [
                    {"op": "replace", "path": "displayName", "value": format!("Soak {n}")}]})
                .to_string(),
            )
        }
        5 => {
            let Some(id) = pick(1) else { return true };
            t.client
                .patch(format!("{}/Groups/{group}", t.base))
                .body(scim::add_members("add", &[id]).to_string())
        }
        6 => {
            let Some(id) = pick(1) else { return true };
            t.client.patch(format!("{}/Groups/{group}", t.base)).body(
                json!({"schemas": [PATCH_OP], "Operations": [
                    {"op": "remove", "path": format!("members[value eq \"{id}\"]")}]})
                .to_string(),
            )
        }
        7 => {
            let Some(id) = pick(2) else { return true };
            let active = n.is_multiple_of(2);
            t.client.patch(format!("{}/Users/{id}", t.base)).body(
                json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": active}]})
                    .to_string(),
            )
        }
        8 => {
            // Delete one user in three visits; the others read it.
            let Some(id) = pick(3) else { return true };
            if n.is_multiple_of(3) {
                t.users.lock().unwrap().retain(|u| *u != id);
                t.client.delete(format!("{}/Users/{id}", t.base))
            } else {
                t.client.get(format!("{}/Users/{id}", t.base))
            }
        }
        9 | 10 => {
            let i = n % t.next.load(Ordering::Relaxed).max(1);
            let un = scim::user_name(&format!("soak{}", std::process::id()), i);
            t.client
                .get(format!("{}/Users?{}", t.base, scim::eq_filter("userName", &un)))
        }
        _ => t.client.get(format!("{}/Groups?count=10", t.base)),
    };
    match req.send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            let _ = r.bytes().await;
            (200..300).contains(&s)
        }
        Err(_) => false,
    }
}

type Received = Arc<Mutex<HashSet<String>>>;

async fn receiver() -> Result<(String, Received), String> {
    let got: Received = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, _body: Bytes| {
            let sink = sink.clone();
            async move {
                if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                    sink.lock().unwrap().insert(id.to_string());
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!("http://{}/hook", listener.local_addr().map_err(|e| e.to_string())?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, got))
}

/// Events after the cursor `after` (from the start when empty), through the Events API: (id, type,
/// connection id), and the cursor after the last.
type Events = Vec<(String, String, Option<String>)>;
async fn events_after(http: &Client, public: &str, key: &str, after: &str) -> Result<(Events, String), String> {
    let mut out = Vec::new();
    let mut after = after.to_string();
    loop {
        let url = format!("{public}/api/v1/events?limit=1000&after={after}");
        let v: Value = http
            .get(&url)
            .bearer_auth(key)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let data = v["data"].as_array().ok_or(format!("events API answered {v}"))?;
        for e in data {
            out.push((
                e["id"].as_str().unwrap_or_default().to_string(),
                e["type"].as_str().unwrap_or_default().to_string(),
                e["connection_id"].as_str().map(str::to_string),
            ));
        }
        after = v["next_cursor"].as_str().unwrap_or_default().to_string();
        if !v["has_more"].as_bool().unwrap_or(false) {
            return Ok((out, after));
        }
    }
}

pub async fn run(args: Args) -> Result<(), String> {
    if !(args.rate > 0.0 && args.duration > 0.0 && args.sample > 0.0) {
        return Err("--rate, --duration and --sample must be positive".into());
    }
    let bin = args.rollcall_bin.clone().unwrap_or_else(server::default_rollcall_bin);
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (database, backend) = server::scenario_database(args.database.clone(), tmp.path());
    let suffix = std::process::id();
    let stack: Stack = server::start_stack(
        &bin,
        &database,
        tmp.path(),
        &[&format!("soak-okta-{suffix}"), &format!("soak-entra-{suffix}")],
        &[("ROLLCALL_WEBHOOK_ALLOW_LOOPBACK".into(), "true".into())],
    )
    .await?;
    let pid = stack.proc_.pid;
    let result = async {
        let http = Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let (hook_url, received) = receiver().await?;
        // The endpoint receives the events recorded from its creation on.
        let (_, start_cursor) = events_after(&http, &stack.public, &stack.api_key, "").await?;
        let r = http
            .post(format!("{}/api/v1/webhooks", stack.public))
            .bearer_auth(&stack.api_key)
            .json(&json!({"url": hook_url}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().as_u16() != 201 {
            return Err(format!("creating the webhook: {}", r.text().await.unwrap_or_default()));
        }
        let tenants = Arc::new([
            make_tenant(&stack.connections[0].1, &stack.connections[0].2, false).await?,
            make_tenant(&stack.connections[1].1, &stack.connections[1].2, true).await?,
        ]);
        let counts = Arc::new(Counts::default());
        let samples: Arc<Mutex<Vec<Value>>> = Arc::default();
        let started = Instant::now();
        let duration = Duration::from_secs_f64(args.duration);
        let sampler = {
            let (samples, counts, received) = (samples.clone(), counts.clone(), received.clone());
            let every = Duration::from_secs_f64(args.sample);
            tokio::spawn(async move {
                loop {
                    let at = started.elapsed().as_secs_f64();
                    let s = json!({
                        "t_s": (at * 10.0).round() / 10.0,
                        "rss_kb": server::rss_kb(pid),
                        "fds": server::open_fds(pid),
                        "sent": counts.sent.load(Ordering::Relaxed),
                        "failed": counts.failed.load(Ordering::Relaxed),
                        "delivered": received.lock().unwrap().len(),
                    });
                    eprintln!("soak {at:>7.0} s: {s}");
                    samples.lock().unwrap().push(s);
                    if at > duration.as_secs_f64() {
                        break;
                    }
                    tokio::time::sleep(every).await;
                }
            })
        };
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
        let mut tasks = tokio::task::JoinSet::new();
        let mut n = 0u64;
        while started.elapsed() < duration {
            ticker.tick().await;
            n += 1;
            let (tenants, counts) = (tenants.clone(), counts.clone());
            tasks.spawn(async move {
                let t = &tenants[(n % 2) as usize];
                counts.sent.fetch_add(1, Ordering::Relaxed);
                if !one_request(t, n / 2, &counts).await {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                }
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        let _ = sampler.await;
        let load_end = Instant::now();
        // Every event must arrive; wait for the dispatcher to catch up (at most a minute).
        let events = loop {
            let (events, _) = events_after(&http, &stack.public, &stack.api_key, &start_cursor).await?;
            let got = received.lock().unwrap().clone();
            let missing = events.iter().filter(|e| !got.contains(&e.0)).count();
            if missing == 0 || load_end.elapsed() > Duration::from_secs(60) {
                break events;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        Ok::<_, String>((
            events,
            received.lock().unwrap().clone(),
            counts,
            samples.lock().unwrap().clone(),
        ))
    }
    .await;
    let peak = server::peak_rss_kb(pid).unwrap_or(0);
    stack.proc_.stop().await;
    let (events, received, counts, samples) = result?;
    let conns: HashSet<&str> = stack
        .connections
        .iter()
        .map(|c| c.1.rsplit('/').next().unwrap_or(""))
        .collect();
    let created_events = events
        .iter()
        .filter(|e| e.1 == "user.created" && e.2.as_deref().is_some_and(|c| conns.contains(c)))
        .count() as u64;
    let undelivered = events.iter().filter(|e| !received.contains(&e.0)).count();
    let created = counts.created.load(Ordering::Relaxed);
    let at = |frac: f64| {
        let i = ((samples.len() as f64 - 1.0) * frac).round() as usize;
        samples.get(i).cloned().unwrap_or(Value::Null)
    };
    let kb = |v: &Value| v["rss_kb"].as_u64().unwrap_or(0) as f64 / 1024.0;
    let (early, late) = (at(0.1), at(1.0));
    println!("| soak | {backend} |");
    println!("|---|---|");
    println!("| load | {} s at {} req/s |", args.duration, args.rate);
    println!(
        "| requests | {} sent, {} not 2xx |",
        counts.sent.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed)
    );
    println!("| acknowledged creates / user.created events | {created} / {created_events} |");
    println!("| events recorded / not delivered | {} / {undelivered} |", events.len());
    println!(
        "| RSS at 10 % / at the end / peak | {:.1} / {:.1} / {:.1} MiB |",
        kb(&early),
        kb(&late),
        peak as f64 / 1024.0
    );
    println!("| open fds at 10 % / at the end | {} / {} |", early["fds"], late["fds"]);
    if let Some(path) = &args.json {
        let v = json!({
            "workload": "soak", "backend": backend, "duration_s": args.duration, "rate": args.rate,
            "sent": counts.sent.load(Ordering::Relaxed), "failed": counts.failed.load(Ordering::Relaxed),
            "acknowledged_creates": created, "user_created_events": created_events,
            "events": events.len(), "undelivered": undelivered, "peak_rss_kb": peak, "samples": samples,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap_or_default()).map_err(|e| e.to_string())?;
    }
    if created != created_events || undelivered > 0 {
        return Err(format!(
            "lost: {created} acknowledged creates but {created_events} user.created events; {undelivered} events not delivered"
        ));
    }
    Ok(())
}
