//! `rollcall-bench webhook-latency`: how long a SCIM change takes to reach a webhook receiver.
//!
//! Starts `rollcall serve` (SQLite in a temporary directory, or the given PostgreSQL database) with a
//! global webhook endpoint pointing at a receiver in this process, then creates users at a steady
//! rate (open loop: a request starts every 1/rate seconds whatever the previous ones do) for the
//! warm-up and the measured time. For each `user.created` delivery, latency is its arrival time
//! minus the event's `created_us` (the payload's `timestamp`, written in the transaction just
//! before it commits, so the figure slightly overstates commit-to-arrival). Prints p50/p90/p99/max.

use crate::server::{self, Proc};
use axum::body::Bytes;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// SCIM changes (user creations) per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds of load before the measurement.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
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

/// When each delivery arrived (µs since the epoch) and its event's `created_us`, by webhook-id.
type Arrivals = Arc<Mutex<HashMap<String, (i64, i64)>>>;

fn now_us() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

async fn receiver() -> Result<(String, Arrivals), String> {
    let arrivals: Arrivals = Arc::default();
    let sink = arrivals.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let at = now_us();
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let created = v["timestamp"]
                    .as_str()
                    .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
                    .map(|t| (t.unix_timestamp_nanos() / 1000) as i64);
                if let (Some(id), Some(created), Some("user.created")) = (id, created, v["type"].as_str()) {
                    sink.lock().unwrap().entry(id).or_insert((at, created));
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
    Ok((url, arrivals))
}

pub async fn run(args: Args) -> Result<(), String> {
    if !(args.rate > 0.0 && args.duration > 0.0 && args.warmup >= 0.0) {
        return Err("--rate and --duration must be positive, --warmup not negative".into());
    }
    let bin = args.rollcall_bin.clone().unwrap_or_else(server::default_rollcall_bin);
    if !bin.is_file() {
        return Err(format!(
            "no rollcall binary at {} (build it with `cargo build --release -p rollcall`, or pass --rollcall-bin)",
            bin.display()
        ));
    }
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let database = args
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", tmp.path().join("rollcall.db").display()));
    let port = server::free_port()?;
    let public = format!("http://127.0.0.1:{port}");
    let org = format!("hooks-{}", std::process::id());
    server::rollcall_json(
        &bin,
        &database,
        &["--create", "org", "create", "--name", &org, "--json"],
    )?;
    let conn = server::rollcall_json(
        &bin,
        &database,
        &["connection", "create", "--org", &org, "--public-url", &public, "--json"],
    )?;
    let key = server::rollcall_json(&bin, &database, &["api-key", "create", "--name", "bench", "--json"])?;
    let (Some(base), Some(token), Some(key)) = (
        conn["scim_base_url"].as_str(),
        conn["token"].as_str(),
        key["secret"].as_str(),
    ) else {
        return Err(format!("unexpected CLI output: {conn} / {key}"));
    };

    let mut cmd = tokio::process::Command::new(&bin);
    cmd.arg("--database")
        .arg(&database)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--no-bootstrap"])
        // Measures delivery latency, not the per-connection rate limit.
        .args(["--rate-limit-per-second", "0"])
        .env("ROLLCALL_WEBHOOK_ALLOW_LOOPBACK", "true")
        .env("ROLLCALL_LOG", "warn");
    server::secrets_key_env(&mut cmd);
    let log = tmp.path().join("rollcall.log");
    let mut p: Proc = Proc::spawn("rollcall", cmd, &log)?;
    server::wait_ready(&format!("{public}/healthz"), &mut p, Duration::from_secs(60), &log).await?;

    let (hook_url, arrivals) = receiver().await?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = http
        .post(format!("{public}/api/v1/webhooks"))
        .bearer_auth(key)
        .json(&json!({"url": hook_url, "event_types": ["user.created"]}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().as_u16() != 201 {
        return Err(format!(
            "creating the webhook: {}",
            resp.text().await.unwrap_or_default()
        ));
    }

    // Open-loop load: one creation every 1/rate seconds.
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let total = Duration::from_secs_f64(args.warmup + args.duration);
    let started = Instant::now();
    let measure_from_us = now_us() + (args.warmup * 1e6) as i64;
    let mut ticker = tokio::time::interval(period);
    let errors = Arc::new(Mutex::new(0u64));
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    eprintln!(
        "webhook-latency: {} changes/s for {}s (+{}s warm-up), {}",
        args.rate,
        args.duration,
        args.warmup,
        if database.starts_with("postgres") {
            "postgres"
        } else {
            "sqlite"
        }
    );
    while started.elapsed() < total {
        ticker.tick().await;
        sent += 1;
        let (http, errors) = (http.clone(), errors.clone());
        let url = format!("{base}/Users");
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("hook-{sent}@example.com"),
        });
        let token = token.to_string();
        tasks.spawn(async move {
            let ok = http
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/scim+json")
                .body(body.to_string())
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 201);
            if !ok {
                *errors.lock().unwrap() += 1;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let end_us = now_us();
    // Wait for the deliveries still on their way (at most 30 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    let acknowledged = sent - *errors.lock().unwrap();
    while (arrivals.lock().unwrap().len() as u64) < acknowledged && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = arrivals.lock().unwrap().clone();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?;
    for (at, created) in got.values() {
        if *created >= measure_from_us && *created <= end_us {
            hist.record((at - created).max(1) as u64).map_err(|e| e.to_string())?;
        }
    }
    p.stop().await;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let missing = acknowledged.saturating_sub(got.len() as u64);
    println!("| workload | changes/s | measured | p50 | p90 | p99 | max | errors | not delivered |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| webhook-latency | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} | {missing} |",
        args.rate,
        hist.len(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        hist.max() as f64 / 1000.0,
        *errors.lock().unwrap(),
    );
    if let Some(path) = &args.json {
        let v = json!({
            "workload": "webhook-latency",
            "rate": args.rate,
            "measured": hist.len(),
            "p50_ms": ms(0.5),
            "p90_ms": ms(0.9),
            "p99_ms": ms(0.99),
            "max_ms": hist.max() as f64 / 1000.0,
            "errors": *errors.lock().unwrap(),
            "not_delivered": missing,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap_or_default()).map_err(|e| e.to_string())?;
    }
    if missing > 0 {
        return Err(format!("{missing} acknowledged changes were not delivered within 30 s"));
    }
    Ok(())
}
