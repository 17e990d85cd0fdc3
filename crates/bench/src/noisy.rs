//! `rollcall-bench noisy-neighbour`: does one tenant's abuse slow the others down?
//!
//! Starts `rollcall serve` (SQLite in a temporary directory, or the given PostgreSQL database) with
//! two organizations, each with a SCIM connection. Tenant B, the victim, sends a steady mix of IdP
//! traffic at a fixed rate (open loop: a request starts every 1/rate seconds whatever the previous
//! ones do): filters on `userName` (the check before every create), reads, user PATCHes, creates and
//! group member PATCHes. It does so twice: alone, then while tenant A, the attacker, runs the worst
//! requests of issue #21 at the largest sizes the server's bounds allow:
//!
//! - `patch`: one PATCH of as many operations as allowed, each `replace emails[value eq "…"].type`, on
//!   a user holding as many e-mail addresses as allowed;
//! - `list`: `GET /Users?count=<max>&filter=userName sw "…"` over users whose `title` is as long as
//!   allowed;
//! - `filter`: filters of as many `co` terms as allowed;
//! - idle sockets that connect and never send a byte.
//!
//! Reports B's p50/p99 in both phases, their ratio, what A's requests were answered, and the
//! server's peak RSS (sampled every 100 ms) in each phase.

use crate::scim::{self, ENTERPRISE_SCHEMA, GROUP_SCHEMA, PATCH_OP, USER_SCHEMA};
use crate::server::{self, Stack};
use hdrhistogram::Histogram;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Client;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Tenant B's requests per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Measured seconds of each phase (B alone, B beside A).
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Concurrent request loops of tenant A, spread over its three request kinds.
    #[arg(long, default_value_t = 12)]
    pub attackers: usize,
    /// Idle sockets tenant A holds open during the attack.
    #[arg(long, default_value_t = 500)]
    pub idle_sockets: usize,
    /// Users tenant B has before the run.
    #[arg(long, default_value_t = 500)]
    pub victim_users: usize,
    /// Users with a maximal `title` tenant A lists.
    #[arg(long, default_value_t = 150)]
    pub attacker_users: usize,
    /// Values per multi-valued attribute the server allows (sent to it as ROLLCALL_MAX_VALUES_PER_ATTRIBUTE).
    #[arg(long, default_value_t = 100)]
    pub max_values: usize,
    /// Longest string value the server allows, in bytes (ROLLCALL_MAX_STRING_BYTES).
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_string: usize,
    /// Operations per PATCH the server allows (ROLLCALL_PATCH_MAX_OPERATIONS).
    #[arg(long, default_value_t = 1000)]
    pub max_patch_operations: usize,
    /// Terms per filter the server allows (ROLLCALL_FILTER_MAX_TERMS).
    #[arg(long, default_value_t = 64)]
    pub filter_max_terms: usize,
    /// Largest page the server allows (ROLLCALL_MAX_PAGE_SIZE).
    #[arg(long, default_value_t = 1000)]
    pub max_page: usize,
    /// Database URL for the started server [default: a SQLite file in a temporary directory]. A
    /// PostgreSQL database must exist; use a fresh one.
    #[arg(long)]
    pub database: Option<String>,
    /// Rollcall binary to start [default: `rollcall` beside this binary, else target/release/rollcall].
    #[arg(long)]
    pub rollcall_bin: Option<PathBuf>,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl Args {
    /// The server's bounds, set to the sizes the attack uses, so that it runs at exactly the
    /// largest sizes they allow.
    fn server_env(&self) -> Vec<(String, String)> {
        [
            ("ROLLCALL_MAX_VALUES_PER_ATTRIBUTE", self.max_values),
            ("ROLLCALL_MAX_STRING_BYTES", self.max_string),
            ("ROLLCALL_PATCH_MAX_OPERATIONS", self.max_patch_operations),
            ("ROLLCALL_FILTER_MAX_TERMS", self.filter_max_terms),
            ("ROLLCALL_MAX_PAGE_SIZE", self.max_page),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// B's latencies and outcomes in one phase.
struct Phase {
    hist: Histogram<u64>,
    sent: u64,
    errors: u64,
    error_samples: Vec<String>,
    peak_rss_kb: u64,
    /// Tenant A's answers by kind and status (empty when alone).
    attacker: BTreeMap<String, u64>,
}

fn client(token: &str, timeout: Duration) -> Result<Client, String> {
    Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .default_headers(crate::load::scim_headers(token))
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())
}

/// POSTs `body` and expects 201; a 429 or 503 is retried after its `Retry-After`, as an identity
/// provider does (the fair-share limits are on, as in production).
pub async fn post(c: &Client, url: String, body: &Value) -> Result<Value, String> {
    let body = body.to_string();
    loop {
        let r = c
            .post(&url)
            .body(body.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        if status == 429 || status == 503 {
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait.clamp(1, 30))).await;
            continue;
        }
        let text = r.text().await.unwrap_or_default();
        if status != 201 {
            return Err(format!(
                "POST {url}: {status} {}",
                text.chars().take(300).collect::<String>()
            ));
        }
        return serde_json::from_str(&text).map_err(|e| e.to_string());
    }
}

/// B's users and one group, created before the measurement.
struct Victim {
    base: String,
    client: Client,
    ids: Vec<String>,
    names: Vec<String>,
    group: String,
    created: AtomicU64,
}

async fn seed_victim(base: &str, token: &str, users: usize) -> Result<Victim, String> {
    let c = client(token, Duration::from_secs(60))?;
    let mut ids = Vec::with_capacity(users);
    let mut names = Vec::with_capacity(users);
    for i in 0..users {
        let u = post(&c, format!("{base}/Users"), &scim::entra_user("victim", i as u64)).await?;
        ids.push(u["id"].as_str().unwrap_or_default().to_string());
        names.push(scim::user_name("victim", i as u64));
    }
    let g = post(&c, format!("{base}/Groups"), &scim::group("victims", None)).await?;
    Ok(Victim {
        base: base.to_string(),
        client: c,
        ids,
        names,
        group: g["id"].as_str().unwrap_or_default().to_string(),
        created: AtomicU64::new(0),
    })
}

/// The n-th request of B's mix: 30 % filter, 20 % get, 20 % user PATCH, 15 % create, 15 % member PATCH.
async fn victim_request(v: &Victim, n: u64) -> Result<(), String> {
    let k = (n as usize) % v.ids.len();
    let id = &v.ids[k];
    let req = match n % 20 {
        0..=5 => v
            .client
            .get(format!("{}/Users?{}", v.base, scim::eq_filter("userName", &v.names[k]))),
        6..=9 => v.client.get(format!("{}/Users/{id}", v.base)),
        10..=13 => v.client.patch(format!("{}/Users/{id}", v.base)).body(
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "Replace", "path": "title", "value": format!("Title {n}")},
                {"op": "Replace", "path": format!("{ENTERPRISE_SCHEMA}:department"), "value": format!("Dept {}", n % 7)},
            ]})
            .to_string(),
        ),
        14..=16 => {
            let i = v.created.fetch_add(1, Ordering::Relaxed);
            v.client
                .post(format!("{}/Users", v.base))
                .body(scim::okta_user(&format!("victim-new-{}", std::process::id()), i).to_string())
        }
        _ => {
            let op = if n.is_multiple_of(2) { "add" } else { "remove" };
            let body = if op == "add" {
                scim::add_members("add", std::slice::from_ref(id))
            } else {
                json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]})
            };
            v.client
                .patch(format!("{}/Groups/{}", v.base, v.group))
                .body(body.to_string())
        }
    };
    let r = req.send().await.map_err(|e| format!("transport: {e}"))?;
    let status = r.status().as_u16();
    let body = r.bytes().await.map_err(|e| format!("reading body: {e}"))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body).chars().take(200).collect::<String>()
        ))
    }
}

/// Runs B's open-loop mix for `duration`, sampling the server's RSS.
async fn victim_phase(v: &Arc<Victim>, rate: f64, duration: Duration, pid: u32) -> Result<Phase, String> {
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).map_err(|e| e.to_string())?,
    ));
    let errors = Arc::new(Mutex::new((0u64, Vec::<String>::new())));
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kb) = server::rss_kb(pid) {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = 0;
    while started.elapsed() < duration {
        ticker.tick().await;
        sent += 1;
        let (v, hist, errors) = (v.clone(), hist.clone(), errors.clone());
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            let t = Instant::now();
            let r = victim_request(&v, n).await;
            let us = t.elapsed().as_micros() as u64;
            hist.lock().unwrap().saturating_record(us.max(1));
            if let Err(e) = r {
                let mut e2 = errors.lock().unwrap();
                e2.0 += 1;
                if e2.1.len() < 5 {
                    e2.1.push(e);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let hist = hist.lock().unwrap().clone();
    let (errors, error_samples) = errors.lock().unwrap().clone();
    Ok(Phase {
        hist,
        sent,
        errors,
        error_samples,
        peak_rss_kb: peak.load(Ordering::Relaxed),
        attacker: BTreeMap::new(),
    })
}

/// Tenant A's data: a user with as many e-mail addresses as allowed, and users with a maximal title.
struct Attacker {
    base: String,
    client: Client,
    patch_user: String,
    patch_body: String,
    list_query: String,
    filter_query: String,
}

async fn seed_attacker(base: &str, token: &str, a: &Args) -> Result<Attacker, String> {
    let c = client(token, Duration::from_secs(120))?;
    let emails: Vec<Value> = (0..a.max_values)
        .map(|i| json!({"value": format!("e{i}@a.io")}))
        .collect();
    let u = post(
        &c,
        format!("{base}/Users"),
        &json!({"schemas": [USER_SCHEMA], "userName": "amp-emails@amp.example", "emails": emails}),
    )
    .await?;
    let patch_user = u["id"].as_str().unwrap_or_default().to_string();
    let ops: Vec<Value> = (0..a.max_patch_operations)
        .map(|i| {
            json!({"op": "replace", "path": format!("emails[value eq \"e{}@a.io\"].type", i % a.max_values.max(1)),
                   "value": if i % 2 == 0 { "home" } else { "work" }})
        })
        .collect();
    let patch_body = json!({"schemas": [PATCH_OP], "Operations": ops}).to_string();
    let title = "t".repeat(a.max_string);
    for i in 0..a.attacker_users {
        post(
            &c,
            format!("{base}/Users"),
            &json!({"schemas": [USER_SCHEMA], "userName": format!("amp-{i}@amp.example"), "title": title}),
        )
        .await?;
    }
    let enc = |f: &str| utf8_percent_encode(f, NON_ALPHANUMERIC).to_string();
    let list_query = format!("count={}&filter={}", a.max_page, enc("userName sw \"amp-\""));
    let terms: Vec<String> = (0..a.filter_max_terms.max(1))
        .map(|i| format!("title co \"{}{i}\"", "x".repeat(8)))
        .collect();
    let filter_query = format!("count={}&filter={}", a.max_page, enc(&terms.join(" or ")));
    // A group, so the tenant looks like any other.
    post(
        &c,
        format!("{base}/Groups"),
        &json!({"schemas": [GROUP_SCHEMA], "displayName": "amp"}),
    )
    .await?;
    Ok(Attacker {
        base: base.to_string(),
        client: c,
        patch_user,
        patch_body,
        list_query,
        filter_query,
    })
}

/// Tenant A's request loops and idle sockets until `stop`; counts answers by kind and status.
fn start_attack(
    a: Arc<Attacker>,
    loops: usize,
    idle: usize,
    addr: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinSet<Vec<String>> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..loops {
        let (a, stop) = (a.clone(), stop.clone());
        set.spawn(async move {
            let mut seen = Vec::new();
            let kind = ["patch", "list", "filter"][i % 3];
            while !stop.load(Ordering::Relaxed) {
                let req = match kind {
                    "patch" => a
                        .client
                        .patch(format!("{}/Users/{}", a.base, a.patch_user))
                        .body(a.patch_body.clone()),
                    "list" => a.client.get(format!("{}/Users?{}", a.base, a.list_query)),
                    _ => a.client.get(format!("{}/Users?{}", a.base, a.filter_query)),
                };
                let status = match req.send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        if s == 429 || s == 503 {
                            // Honour nothing: an attacker retries at once, but not in a hot loop.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        s.to_string()
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        "transport error".to_string()
                    }
                };
                seen.push(format!("{kind} {status}"));
            }
            seen
        });
    }
    let stop2 = stop.clone();
    set.spawn(async move {
        // Sockets that connect and never send a byte; reopened when the server closes them.
        let mut socks: Vec<Option<tokio::net::TcpStream>> = (0..idle).map(|_| None).collect();
        let mut opened = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            for s in socks.iter_mut() {
                let closed = match s {
                    Some(st) => {
                        let mut buf = [0u8; 1];
                        matches!(st.try_read(&mut buf), Ok(0))
                    }
                    None => true,
                };
                if closed {
                    *s = tokio::net::TcpStream::connect(&addr).await.ok();
                    opened += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        vec![format!("idle sockets opened {opened}")]
    });
    set
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub async fn run(args: Args) -> Result<(), String> {
    if !(args.rate > 0.0 && args.duration > 0.0) {
        return Err("--rate and --duration must be positive".into());
    }
    let bin = args.rollcall_bin.clone().unwrap_or_else(server::default_rollcall_bin);
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (database, backend) = server::scenario_database(args.database.clone(), tmp.path());
    let suffix = std::process::id();
    let stack: Stack = server::start_stack(
        &bin,
        &database,
        tmp.path(),
        &[&format!("victim-{suffix}"), &format!("attacker-{suffix}")],
        &args.server_env(),
    )
    .await?;
    let pid = stack.proc_.pid;
    let result = async {
        let (_, vb, vt) = &stack.connections[0];
        let (_, ab, at) = &stack.connections[1];
        eprintln!(
            "noisy-neighbour ({backend}): seeding {} victim users",
            args.victim_users
        );
        let victim = Arc::new(seed_victim(vb, vt, args.victim_users).await?);
        eprintln!(
            "seeding the attacker: a user with {} e-mails, {} users with a {}-byte title",
            args.max_values, args.attacker_users, args.max_string
        );
        let attacker = Arc::new(seed_attacker(ab, at, &args).await?);
        let duration = Duration::from_secs_f64(args.duration);
        // Warm-up, then B alone.
        let _ = victim_phase(&victim, args.rate, Duration::from_secs(2), pid).await?;
        eprintln!("B alone: {} req/s for {} s", args.rate, args.duration);
        let alone = victim_phase(&victim, args.rate, duration, pid).await?;
        let rss_before_attack = server::rss_kb(pid).unwrap_or(0);
        eprintln!(
            "B beside A: {} attack loops, {} idle sockets",
            args.attackers, args.idle_sockets
        );
        let stop = Arc::new(AtomicBool::new(false));
        let addr = stack.public.trim_start_matches("http://").to_string();
        let mut attack = start_attack(attacker.clone(), args.attackers, args.idle_sockets, addr, stop.clone());
        // Let the attack reach full strength first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut beside = victim_phase(&victim, args.rate, duration, pid).await?;
        stop.store(true, Ordering::Relaxed);
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(r) = attack.join_next().await {
            for s in r.unwrap_or_default() {
                if let Some(n) = s.strip_prefix("idle sockets opened ") {
                    counts.insert("idle sockets opened".into(), n.parse().unwrap_or(0));
                } else {
                    *counts.entry(s).or_default() += 1;
                }
            }
        }
        beside.attacker = counts;
        // Memory given back after the spike.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let rss_after = server::rss_kb(pid).unwrap_or(0);
        Ok::<_, String>((alone, beside, rss_before_attack, rss_after))
    }
    .await;
    let peak_total = server::peak_rss_kb(pid).unwrap_or(0);
    stack.proc_.stop().await;
    let (alone, beside, rss_before, rss_after) = result?;

    let ratio = ms(&beside.hist, 0.99) / ms(&alone.hist, 0.99).max(0.001);
    println!("| phase | B requests | B p50 | B p99 | B errors | peak RSS |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, p) in [("B alone", &alone), ("B beside A", &beside)] {
        println!(
            "| {name} | {} | {:.2} ms | {:.2} ms | {} | {:.0} MiB |",
            p.sent,
            ms(&p.hist, 0.5),
            ms(&p.hist, 0.99),
            p.errors,
            p.peak_rss_kb as f64 / 1024.0
        );
    }
    println!();
    println!(
        "B's p99 beside A / alone: {ratio:.2} (goal: at most 2.00, and under 50 ms on SQLite); \
         RSS before the attack {:.0} MiB, 5 s after it {:.0} MiB, peak of the process {:.0} MiB (goal: under 300 MiB)",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        peak_total as f64 / 1024.0
    );
    println!("tenant A's answers: {:?}", beside.attacker);
    for e in alone.error_samples.iter().chain(&beside.error_samples) {
        eprintln!("  B error: {e}");
    }
    if let Some(path) = &args.json {
        let phase = |p: &Phase| {
            json!({"requests": p.sent, "p50_ms": ms(&p.hist, 0.5), "p99_ms": ms(&p.hist, 0.99),
                   "max_ms": p.hist.max() as f64 / 1000.0, "errors": p.errors, "peak_rss_kb": p.peak_rss_kb})
        };
        let v = json!({
            "workload": "noisy-neighbour",
            "backend": backend,
            "rate": args.rate,
            "duration_s": args.duration,
            "attackers": args.attackers,
            "idle_sockets": args.idle_sockets,
            "bounds": {"max_values": args.max_values, "max_string": args.max_string,
                       "max_patch_operations": args.max_patch_operations,
                       "filter_max_terms": args.filter_max_terms, "max_page": args.max_page},
            "alone": phase(&alone),
            "beside": phase(&beside),
            "p99_ratio": ratio,
            "attacker_answers": beside.attacker,
            "rss_before_attack_kb": rss_before,
            "rss_after_attack_kb": rss_after,
            "peak_rss_kb": peak_total,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap_or_default()).map_err(|e| e.to_string())?;
    }
    Ok(())
}
