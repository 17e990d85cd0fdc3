//! `rollcall-bench`: load workloads against a Rollcall server (started here with a temporary
//! SQLite database, or one already running), next to a trivial axum + SQLite baseline run on
//! the same machine in the same run, reported as a markdown table and optionally JSON.

mod baseline;
mod directory;
#[path = "../../server/tests/common/google_fake.rs"]
mod google_fake;
mod load;
mod noisy;
mod outbound;
mod report;
mod scim;
mod server;
mod soak;
mod sync;
mod webhook_latency;

use clap::{Parser, Subcommand, ValueEnum};
use load::{Exchange, Op, Tally, Timing, exchange};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use server::Proc;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "rollcall-bench",
    version,
    about = "Load workloads against Rollcall, with a trivial axum + SQLite baseline for ratios",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the trivial baseline (the benchmark spawns this itself as a separate process).
    BaselineServer {
        #[arg(long)]
        port: u16,
        /// SQLite file for the baseline table.
        #[arg(long, required_unless_present = "database_url", conflicts_with = "database_url")]
        db: Option<PathBuf>,
        /// PostgreSQL database for the baseline table (instead of --db); it must exist.
        #[arg(long)]
        database_url: Option<String>,
        /// Rows to hold (inserted at start when missing).
        #[arg(long, default_value_t = 2000)]
        rows: u64,
    },
    /// Latency from a SCIM change's commit to its webhook's arrival at a local receiver, at a steady
    /// rate of changes (p50/p90/p99).
    WebhookLatency(webhook_latency::Args),
    /// One tenant's worst requests (issue #21) against another tenant's steady IdP traffic: the
    /// victim's p50/p99 alone and beside the attacker, and the server's RSS.
    NoisyNeighbour(noisy::Args),
    /// Reading a large Google Workspace directory (100,000 users) from the fake of Google's Directory
    /// API as a directory sync does; `--full` also syncs it into a temporary store.
    DirectoryRead(directory::Args),
    /// Outbound provisioning against the in-repo fake of a generic SCIM server: the initial push
    /// of N users, an unchanged full run, and change → target latency (p50/p99).
    Outbound(outbound::Args),
    /// A long run of mixed IdP traffic with webhook deliveries: RSS and open file descriptors over
    /// time, and a check that every acknowledged change was recorded and delivered.
    Soak(soak::Args),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Workload {
    Get,
    Filter,
    Page,
    PatchMember,
    Create,
    OktaSync,
    EntraSync,
}

impl Workload {
    const ALL: [Workload; 7] = [
        Workload::Get,
        Workload::Filter,
        Workload::Page,
        Workload::PatchMember,
        Workload::Create,
        Workload::OktaSync,
        Workload::EntraSync,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::Get => "get",
            Workload::Filter => "filter",
            Workload::Page => "page",
            Workload::PatchMember => "patch-member",
            Workload::Create => "create",
            Workload::OktaSync => "okta-sync",
            Workload::EntraSync => "entra-sync",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Workload::Get => "GET /Users/{id}",
            Workload::Filter => "GET /Users?filter=userName eq",
            Workload::Page => "GET /Users?startIndex=R&count=100",
            Workload::PatchMember => "PATCH /Groups/{id} remove+add member",
            Workload::Create => "POST /Users",
            Workload::OktaSync => "Okta initial sync",
            Workload::EntraSync => "Entra initial sync",
        }
    }

    fn shape(self) -> Shape {
        match self {
            Workload::Get | Workload::Filter => Shape::Read,
            Workload::Page => Shape::Page,
            Workload::PatchMember | Workload::Create => Shape::Write,
            Workload::OktaSync | Workload::EntraSync => Shape::Mix,
        }
    }
}

/// Which baseline a workload is compared with: one-row reads, 100-row pages, one-row writes;
/// `Mix` weighs the read and write baselines by the workload's own share of reads and writes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shape {
    Read,
    Page,
    Write,
    Mix,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum SeedMode {
    /// `/Bulk` from 10,000 users up, single POSTs below.
    Auto,
    Post,
    Bulk,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// SCIM base URL of a running server (…/scim/v2/{connection}); without it a server is started.
    #[arg(long, requires = "token")]
    base_url: Option<String>,
    /// Bearer token for --base-url.
    #[arg(long)]
    token: Option<String>,
    /// Process id of the --base-url server, to report its RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Rollcall binary to start [default: `rollcall` beside this binary, else target/release/rollcall].
    #[arg(long)]
    rollcall_bin: Option<PathBuf>,
    /// Database URL for the started server [default: a SQLite file in a temporary directory].
    /// `sqlite` stands for that temporary file. Repeat the flag to run the whole set once per
    /// database (e.g. `--database sqlite --database postgres://…/bench`): one table each, then a
    /// side-by-side table. A PostgreSQL database must exist; use a fresh one.
    #[arg(long, conflicts_with = "base_url")]
    database: Vec<String>,
    /// Port for the started server [default: a free one].
    #[arg(long)]
    port: Option<u16>,
    /// Rollcall nodes to start on the one --database (PostgreSQL only), each on its own loopback
    /// address (127.0.0.1, 127.0.0.2, …); the load generator's connections are spread over them
    /// in turn, as a round-robin load balancer would.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Workloads to run, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    workloads: Vec<Workload>,
    /// Connections, each a task with its own keep-alive HTTP/1.1 connection.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Measured seconds per workload [default: 10; 1 with --smoke].
    #[arg(long)]
    duration: Option<f64>,
    /// Warm-up seconds before each measurement [default: 2; 0.5 with --smoke].
    #[arg(long)]
    warmup: Option<f64>,
    /// Users seeded before the workloads [default: 2000; 50 with --smoke].
    #[arg(long)]
    seed_users: Option<usize>,
    /// Members of the patch-member group, taken from the seeded users [default: all seeded];
    /// a comma-separated list (e.g. 1000,10000,100000) runs patch-member once per group size.
    #[arg(long, value_delimiter = ',')]
    group_members: Vec<usize>,
    /// Users created by each initial-sync workload [default: 1000; 50 with --smoke].
    #[arg(long)]
    sync_users: Option<usize>,
    /// Groups pushed by each initial-sync workload (users spread over them round-robin).
    #[arg(long, default_value_t = 10)]
    sync_groups: usize,
    /// Members per PATCH when a sync pushes group memberships.
    #[arg(long, default_value_t = 50)]
    sync_batch: usize,
    /// How to seed users.
    #[arg(long, value_enum, default_value_t = SeedMode::Auto)]
    seed_mode: SeedMode,
    /// Operations per /Bulk request when seeding with /Bulk (server maximum: 1000).
    #[arg(long, default_value_t = 1000)]
    bulk_ops: usize,
    /// Largest request body the server accepts, in bytes (Rollcall's default: 1 MiB).
    #[arg(long, default_value_t = 1024 * 1024)]
    max_body: usize,
    /// Rounds of every workload; the report shows medians.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Skip the baseline.
    #[arg(long)]
    no_baseline: bool,
    /// With a PostgreSQL --database, skip the `VACUUM ANALYZE` run after seeding and before each
    /// round (it stands in for autovacuum, which may be off on a test machine).
    #[arg(long)]
    no_analyze: bool,
    /// Write machine-readable results to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Tiny run for CI: 50 seeded users, 1 s per workload after 0.5 s warm-up, 50 sync users.
    #[arg(long)]
    smoke: bool,
}

/// Settings after defaults are applied.
#[derive(Clone)]
pub struct Config {
    pub workloads: Vec<Workload>,
    pub timing: Timing,
    pub seed_users: usize,
    pub group_members: Vec<usize>,
    pub sync_users: usize,
    pub sync_groups: usize,
    pub sync_batch: usize,
    pub bulk_seed: bool,
    pub bulk_ops: usize,
    pub max_body: usize,
    pub repeat: usize,
}

impl RunArgs {
    fn config(&self) -> Result<Config, String> {
        let (duration, warmup, seed, sync) = if self.smoke {
            (1.0, 0.5, 50, 50)
        } else {
            (10.0, 2.0, 2000, 1000)
        };
        let seed_users = self.seed_users.unwrap_or(seed);
        let group_members = if self.group_members.is_empty() {
            vec![seed_users]
        } else {
            self.group_members.clone()
        };
        if seed_users == 0 {
            return Err("--seed-users must be at least 1".into());
        }
        if group_members.iter().any(|&m| m == 0 || m > seed_users) {
            return Err(format!(
                "--group-members must be between 1 and --seed-users ({seed_users})"
            ));
        }
        if self.concurrency == 0 || self.repeat == 0 || self.sync_batch == 0 || self.bulk_ops == 0 {
            return Err("--concurrency, --repeat, --sync-batch and --bulk-ops must be at least 1".into());
        }
        let secs = |s: f64, what: &str| {
            Duration::try_from_secs_f64(s).map_err(|_| format!("--{what} must be a number of seconds"))
        };
        Ok(Config {
            workloads: if self.workloads.is_empty() {
                Workload::ALL.to_vec()
            } else {
                self.workloads.clone()
            },
            timing: Timing {
                concurrency: self.concurrency,
                warmup: secs(self.warmup.unwrap_or(warmup), "warmup")?,
                duration: secs(self.duration.unwrap_or(duration), "duration")?,
            },
            seed_users,
            group_members,
            sync_users: self.sync_users.unwrap_or(sync),
            sync_groups: self.sync_groups.max(1),
            sync_batch: self.sync_batch,
            bulk_seed: match self.seed_mode {
                SeedMode::Bulk => true,
                SeedMode::Post => false,
                SeedMode::Auto => seed_users >= 10_000,
            },
            bulk_ops: self.bulk_ops,
            max_body: self.max_body,
            repeat: self.repeat,
        })
    }
}

/// The server under test. A server started here has three connections: the seeded one, which
/// get, filter, page and patch-member use and which keeps exactly the seeded users; one for
/// create and okta-sync, which add users every round; and an Entra one for entra-sync. With
/// --base-url all three are the same.
pub struct Target {
    pub base: String,
    pub headers: HeaderMap,
    /// Connection used by create and okta-sync.
    pub write_base: String,
    pub write_headers: HeaderMap,
    /// Connection used by entra-sync.
    pub entra_base: String,
    pub entra_headers: HeaderMap,
    /// The server processes (one per node), for RSS and CPU: summed over all of them.
    pub pids: Vec<u32>,
}

/// One measured round of one workload.
#[derive(Clone, Debug)]
pub struct Round {
    pub rps: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub requests: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub rss_kb: Option<u64>,
    /// Server CPU time per request (warm-up included), in microseconds.
    pub server_cpu_us: Option<f64>,
    /// The load generator's own CPU time per request, in microseconds.
    pub client_cpu_us: Option<f64>,
    pub reads: u64,
    pub writes: u64,
    pub sync: Option<sync::SyncInfo>,
}

impl Round {
    /// Adds CPU per request from CPU times (seconds) taken before the run.
    pub fn with_cpu(mut self, t: &Tally, before: CpuMark) -> Round {
        let after = CpuMark::take(&before.pids);
        let n = (t.requests + t.warmup_requests).max(1) as f64;
        let per = |a: Option<f64>, b: Option<f64>| Some((b? - a?) * 1e6 / n);
        self.server_cpu_us = per(before.server, after.server);
        self.client_cpu_us = per(before.client, after.client);
        self
    }

    fn from_tally(t: &Tally, secs: f64, pids: &[u32]) -> Round {
        Round {
            rps: t.requests as f64 / secs,
            p50_us: t.p50(),
            p99_us: t.p99(),
            requests: t.requests,
            errors: t.errors,
            error_samples: t.error_samples.clone(),
            rss_kb: server::sum_over(pids, server::rss_kb),
            server_cpu_us: None,
            client_cpu_us: None,
            reads: 0,
            writes: 0,
            sync: None,
        }
    }
}

/// CPU times of the server and of this process at one moment.
#[derive(Clone)]
pub struct CpuMark {
    pids: Vec<u32>,
    server: Option<f64>,
    client: Option<f64>,
}

impl CpuMark {
    pub fn take(pids: &[u32]) -> CpuMark {
        CpuMark {
            pids: pids.to_vec(),
            server: server::sum_over(pids, server::cpu_secs),
            client: server::cpu_secs(std::process::id()),
        }
    }
}

/// All rounds of one row of the report.
pub struct Outcome {
    pub name: String,
    pub describe: String,
    pub shape: Shape,
    pub baseline: bool,
    pub rounds: Vec<Round>,
}

/// What seeding left for the workloads.
struct Seed {
    prefix: String,
    ids: Arc<Vec<String>>,
    /// Member groups for patch-member, by size: (members, group id).
    groups: Vec<(usize, String)>,
}

/// One row of the report: a workload, and for patch-member the group size.
#[derive(Clone, Copy)]
struct Job {
    workload: Workload,
    members: Option<usize>,
}

fn jobs(cfg: &Config) -> Vec<Job> {
    let mut out = Vec::new();
    for &w in &cfg.workloads {
        if w == Workload::PatchMember {
            for &m in &cfg.group_members {
                out.push(Job {
                    workload: w,
                    members: Some(m),
                });
            }
        } else {
            out.push(Job {
                workload: w,
                members: None,
            });
        }
    }
    out
}

impl Job {
    fn name(&self, cfg: &Config) -> String {
        match self.members {
            Some(m) if cfg.group_members.len() > 1 => format!("{}@{m}", self.workload.name()),
            _ => self.workload.name().to_string(),
        }
    }

    fn describe(&self) -> String {
        match self.members {
            Some(m) => format!("{} ({m} members)", self.workload.describe()),
            None => self.workload.describe().to_string(),
        }
    }
}

fn run_id() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    format!("{:08x}", r.random::<u32>())
}

fn fail_with_samples(what: &str, t: &Tally) -> String {
    format!(
        "{what}: {} failed requests, e.g.\n  {}",
        t.errors,
        t.error_samples.join("\n  ")
    )
}

/// Creates the seed users (POSTs or /Bulk) and, for patch-member, the group holding them.
async fn seed(target: &Target, cfg: &Config, conc: usize) -> Result<Seed, String> {
    let prefix = format!("seed{}", run_id());
    let n = cfg.seed_users;
    let ids: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; n]));
    let started = Instant::now();
    let tally = if cfg.bulk_seed {
        let chunk = cfg.bulk_ops;
        let chunks = n.div_ceil(chunk);
        let (base, p, ids, max_body) = (target.base.clone(), prefix.clone(), ids.clone(), cfg.max_body);
        load::pool(chunks, conc.min(4), &target.headers, move |c, j| {
            let (base, p, ids) = (base.clone(), p.clone(), ids.clone());
            async move {
                let range = j * chunk..((j + 1) * chunk).min(n);
                let ops: Vec<Value> = range
                    .clone()
                    .map(|i| {
                        json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
                               "data": scim::plain_user(&p, i as u64)})
                    })
                    .collect();
                let body = json!({"schemas": [scim::BULK_REQUEST], "Operations": ops}).to_string();
                if body.len() > max_body {
                    let mut ex = Exchange {
                        status: 0,
                        body: Vec::new(),
                        micros: 0,
                        failure: None,
                    };
                    ex.fail(format!(
                        "a /Bulk body of {} bytes exceeds --max-body {max_body}: lower --bulk-ops",
                        body.len()
                    ));
                    return vec![ex];
                }
                let mut ex = exchange(c.post(format!("{base}/Bulk")).body(body)).await;
                if ex.ok() {
                    let results = ex
                        .json()
                        .and_then(|v| v["Operations"].as_array().cloned())
                        .unwrap_or_default();
                    let mut got = 0;
                    let mut bad = None;
                    for r in &results {
                        let idx = r["bulkId"]
                            .as_str()
                            .and_then(|b| b.strip_prefix('u')?.parse::<usize>().ok());
                        let ok = r["status"].as_str().is_some_and(|s| s.starts_with('2'));
                        let id = r["location"].as_str().and_then(|l| l.rsplit('/').next());
                        match (idx, ok, id) {
                            (Some(i), true, Some(id)) if range.contains(&i) => {
                                ids.lock().unwrap()[i] = Some(id.to_string());
                                got += 1;
                            }
                            _ => bad = Some(r.to_string()),
                        }
                    }
                    if (j + 1) % 20 == 0 {
                        eprintln!("  seeding: {} of {n} users", (j + 1) * chunk);
                    }
                    if got != range.len() {
                        ex.fail(format!(
                            "/Bulk created {got} of {} users; e.g. {}",
                            range.len(),
                            bad.unwrap_or_default()
                        ));
                    }
                }
                vec![ex]
            }
        })
        .await
    } else {
        let (base, p, ids) = (target.base.clone(), prefix.clone(), ids.clone());
        load::pool(n, conc, &target.headers, move |c, i| {
            let (base, p, ids) = (base.clone(), p.clone(), ids.clone());
            async move {
                let body = scim::plain_user(&p, i as u64).to_string();
                let mut ex = exchange(c.post(format!("{base}/Users")).body(body)).await;
                if ex.ok() {
                    match ex.json().and_then(|v| v["id"].as_str().map(str::to_string)) {
                        Some(id) => ids.lock().unwrap()[i] = Some(id),
                        None => ex.fail("the created user has no id"),
                    }
                }
                vec![ex]
            }
        })
        .await
    };
    if tally.errors > 0 {
        return Err(fail_with_samples("seeding users", &tally));
    }
    let ids: Vec<String> = std::mem::take(&mut *ids.lock().unwrap())
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or("seeding users: some users have no id")?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "seeded {n} users in {secs:.1} s ({:.0} users/s, {})",
        n as f64 / secs,
        if cfg.bulk_seed { "/Bulk" } else { "POST /Users" }
    );
    let ids = Arc::new(ids);
    let mut groups = Vec::new();
    if cfg.workloads.contains(&Workload::PatchMember) {
        for &m in &cfg.group_members {
            groups.push((m, member_group(target, cfg, &prefix, &ids, m, conc).await?));
        }
    }
    Ok(Seed { prefix, ids, groups })
}

/// Creates the patch-member group and adds the first `group_members` seeded users to it
/// with PATCH add in batches.
async fn member_group(
    target: &Target,
    cfg: &Config,
    prefix: &str,
    ids: &Arc<Vec<String>>,
    members: usize,
    conc: usize,
) -> Result<String, String> {
    let started = Instant::now();
    let client = load::client(&target.headers);
    let ex = exchange(
        client
            .post(format!("{}/Groups", target.base))
            .body(scim::group(&format!("{prefix}-members-{members}"), None).to_string()),
    )
    .await;
    let gid = ex
        .ok()
        .then(|| ex.json())
        .flatten()
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .ok_or_else(|| format!("creating the member group: {}", ex.describe()))?;
    // About 50 bytes per member: 1000 per PATCH stays far below the body limit.
    let batch = 1000.min((cfg.max_body / 80).max(1));
    let batches = members.div_ceil(batch);
    let (base, g, ids2) = (target.base.clone(), gid.clone(), ids.clone());
    let tally = load::pool(batches, conc.min(4), &target.headers, move |c, j| {
        let (base, g, ids) = (base.clone(), g.clone(), ids2.clone());
        async move {
            let slice = &ids[j * batch..((j + 1) * batch).min(members)];
            let body = scim::add_members("add", slice).to_string();
            vec![exchange(c.patch(format!("{base}/Groups/{g}")).body(body)).await]
        }
    })
    .await;
    if tally.errors > 0 {
        return Err(fail_with_samples("building the member group", &tally));
    }
    eprintln!(
        "built a group of {members} members in {:.1} s ({batches} PATCHes)",
        started.elapsed().as_secs_f64()
    );
    Ok(gid)
}

async fn timed_round(cfg: &Config, headers: &HeaderMap, op: Arc<dyn Op>, pids: &[u32]) -> Round {
    let mark = CpuMark::take(pids);
    let t = load::timed(cfg.timing, headers, op).await;
    Round::from_tally(&t, cfg.timing.duration.as_secs_f64(), pids).with_cpu(&t, mark)
}

async fn run_workload(job: Job, target: &Target, seed: &Seed, cfg: &Config, round: usize) -> Round {
    let w = job.workload;
    let base = target.base.clone();
    let users = seed.ids.len() as u64;
    let op: Arc<dyn Op> = match w {
        Workload::Get => Arc::new(scim::GetUser {
            base,
            ids: seed.ids.clone(),
        }),
        Workload::Filter => Arc::new(scim::FilterUser {
            base,
            prefix: seed.prefix.clone(),
            users,
        }),
        Workload::Page => Arc::new(scim::PageUsers { base, users }),
        Workload::PatchMember => {
            let members = job.members.expect("patch-member has a group size");
            let (_, gid) = seed
                .groups
                .iter()
                .find(|(m, _)| *m == members)
                .expect("member group is seeded");
            Arc::new(scim::PatchMember {
                base,
                group_id: gid.clone(),
                members: seed.ids.clone(),
                count: members,
            })
        }
        Workload::Create => Arc::new(scim::CreateUser {
            base: target.write_base.clone(),
            prefix: format!("new{}r{round}", run_id()),
            counter: AtomicU64::new(0),
        }),
        Workload::OktaSync | Workload::EntraSync => {
            return sync::initial_sync(w == Workload::OktaSync, target, cfg).await;
        }
    };
    let headers = if w == Workload::Create {
        &target.write_headers
    } else {
        &target.headers
    };
    let mut r = timed_round(cfg, headers, op, &target.pids).await;
    match w.shape() {
        Shape::Read | Shape::Page => r.reads = r.requests,
        _ => r.writes = r.requests,
    }
    r
}

/// The database of one run: `None` is a temporary SQLite file.
fn backend_name(database: Option<&str>) -> &'static str {
    match database {
        Some(d) if d.starts_with("postgres://") || d.starts_with("postgresql://") => "postgres",
        _ => "sqlite",
    }
}

/// A database URL without its password, for messages and reports.
fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let end = url[start..].find(['/', '?']).map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    match (authority.find(':'), authority.rfind('@')) {
        (Some(colon), Some(at)) if colon < at => {
            format!("{}{}:***{}", &url[..start], &authority[..colon], &url[start + at..])
        }
        _ => url.to_string(),
    }
}

async fn start_rollcall(
    args: &RunArgs,
    database: Option<&str>,
    tmp: &std::path::Path,
) -> Result<(Target, Vec<Proc>), String> {
    let bin = args.rollcall_bin.clone().unwrap_or_else(server::default_rollcall_bin);
    if !bin.is_file() {
        return Err(format!(
            "no rollcall binary at {} (build it with `cargo build --release -p rollcall`, or pass --rollcall-bin)",
            bin.display()
        ));
    }
    let port = match args.port {
        Some(p) => p,
        None => server::free_port()?,
    };
    let database = database
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", tmp.join("rollcall.db").display()));
    let nodes = args.nodes.max(1);
    if nodes > 1 && backend_name(Some(&database)) != "postgres" {
        return Err("--nodes above 1 needs a PostgreSQL --database (nodes share one database)".into());
    }
    // One node answers on 127.0.0.1; several on 127.0.0.1, 127.0.0.2, … with the same port, behind
    // one host name that each load-generator connection resolves to the next node in turn
    // ([`load::spread_over`]): the load is spread as a round-robin balancer spreads connections.
    let public = if nodes == 1 {
        format!("http://127.0.0.1:{port}")
    } else {
        format!("http://{}:{port}", load::NODES_HOST)
    };
    let node_addrs: Vec<std::net::SocketAddr> = (0..nodes)
        .map(|k| std::net::SocketAddr::from(([127, 0, 0, 1 + k as u8], port)))
        .collect();
    let org = format!("bench-{}", run_id());
    server::rollcall_json(
        &bin,
        &database,
        &["--create", "org", "create", "--name", &org, "--json"],
    )?;
    let conn = |idp: &str, name: &str| {
        server::rollcall_json(
            &bin,
            &database,
            &[
                "connection",
                "create",
                "--org",
                &org,
                "--idp",
                idp,
                "--name",
                name,
                "--public-url",
                &public,
                "--json",
            ],
        )
        .and_then(|v| match (v["scim_base_url"].as_str(), v["token"].as_str()) {
            (Some(b), Some(t)) => Ok((b.to_string(), t.to_string())),
            _ => Err(format!("connection create printed {v}")),
        })
    };
    let (okta_base, okta_token) = conn("okta", "bench-seeded")?;
    let (write_base, write_token) = conn("okta", "bench-writes")?;
    let (entra_base, entra_token) = conn("entra", "bench-entra")?;
    let mut procs = Vec::new();
    for addr in &node_addrs {
        let mut cmd = tokio::process::Command::new(&bin);
        cmd.arg("--database")
            .arg(&database)
            .args(["serve", "--listen", &addr.to_string(), "--no-bootstrap"])
            .args(["--max-body-bytes", &args.max_body.to_string()])
            // The benchmark measures the server, not its fair-share limits: no rate limit, and room for
            // every benchmark connection (and the seeding) on one SCIM connection, all executing at
            // once (the default lets one SCIM connection execute half the cores' worth of requests;
            // docs/benchmarks.md, "Noisy neighbour", gives what that costs one tenant alone).
            .args(["--rate-limit-per-second", "0"])
            .args([
                "--max-in-flight-per-connection",
                &(args.concurrency * 4).max(64).to_string(),
            ])
            .args(["--max-active-per-connection", &args.concurrency.max(1).to_string()])
            .args(["--max-in-flight", &(args.concurrency * 8).max(256).to_string()]);
        server::secrets_key_env(&mut cmd);
        let log = tmp.join(format!("rollcall-{}.log", addr.ip()));
        let mut p = Proc::spawn("rollcall", cmd, &log)?;
        server::wait_ready(&format!("http://{addr}/healthz"), &mut p, Duration::from_secs(60), &log).await?;
        eprintln!("rollcall started on {addr} (pid {}, {})", p.pid, redact(&database));
        procs.push(p);
    }
    if nodes > 1 {
        load::spread_over(node_addrs);
    }
    let target = Target {
        base: okta_base,
        headers: load::scim_headers(&okta_token),
        write_base,
        write_headers: load::scim_headers(&write_token),
        entra_base,
        entra_headers: load::scim_headers(&entra_token),
        pids: procs.iter().map(|p| p.pid).collect(),
    };
    Ok((target, procs))
}

async fn start_baseline(tmp: &std::path::Path, rows: usize, database: Option<&str>) -> Result<(String, Proc), String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let port = server::free_port()?;
    let mut cmd = tokio::process::Command::new(me);
    cmd.arg("baseline-server")
        .args(["--port", &port.to_string(), "--rows", &rows.to_string()]);
    let on = match database {
        Some(url) if backend_name(Some(url)) == "postgres" => {
            let baseline_url = server::fresh_sibling_database(url, "baseline").await?;
            cmd.args(["--database-url", &baseline_url]);
            format!("PostgreSQL {}", redact(&baseline_url))
        }
        _ => {
            cmd.arg("--db").arg(tmp.join("baseline.db"));
            "SQLite".to_string()
        }
    };
    let log = tmp.join("baseline.log");
    let mut p = Proc::spawn("baseline-server", cmd, &log)?;
    let base = format!("http://127.0.0.1:{port}");
    server::wait_ready(&format!("{base}/healthz"), &mut p, Duration::from_secs(600), &log).await?;
    eprintln!("baseline started (pid {}, {rows} rows, {on})", p.pid);
    Ok((base, p))
}

fn progress(name: &str, round: usize, of: usize, r: &Round) {
    eprintln!(
        "[{}/{of}] {name}: {:.0} req/s, p50 {}, p99 {}, {} errors",
        round + 1,
        r.rps,
        report::fmt_us(r.p50_us),
        report::fmt_us(r.p99_us),
        r.errors
    );
    for s in r.error_samples.iter().take(3) {
        eprintln!("    {s}");
    }
}

/// Everything one run (one database) measured.
pub struct RunResult {
    pub settings: Value,
    pub outcomes: Vec<Outcome>,
    pub peak: Value,
}

/// The baselines, in the order they run each round.
fn baseline_rows() -> [(&'static str, &'static str, Shape); 3] {
    [
        ("baseline-read", "GET /rows/{id}", Shape::Read),
        ("baseline-page", "GET /rows?offset=R&limit=100", Shape::Page),
        ("baseline-write", "POST /rows", Shape::Write),
    ]
}

fn baseline_op(shape: Shape, base: &str, cfg: &Config, round: usize) -> Arc<dyn Op> {
    let rows = cfg.seed_users as u64;
    match shape {
        Shape::Read => Arc::new(baseline::ReadRow {
            base: base.to_string(),
            rows,
        }),
        Shape::Page => Arc::new(baseline::PageRows {
            base: base.to_string(),
            rows,
        }),
        _ => Arc::new(baseline::InsertRow {
            base: base.to_string(),
            prefix: format!("w{}r{round}", run_id()),
            counter: AtomicU64::new(0),
        }),
    }
}

/// Starts the servers, seeds, runs every round of every workload, stops the servers.
async fn run_one(args: &RunArgs, cfg: &Config, database: Option<&str>) -> Result<RunResult, String> {
    let tmp = tempfile::Builder::new()
        .prefix("rollcall-bench-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let mut procs: Vec<Proc> = Vec::new();
    let result = async {
        let target = match &args.base_url {
            Some(b) => {
                let headers = load::scim_headers(args.token.as_deref().unwrap_or_default());
                Target {
                    base: b.trim_end_matches('/').to_string(),
                    headers: headers.clone(),
                    write_base: b.trim_end_matches('/').to_string(),
                    write_headers: headers.clone(),
                    entra_base: b.trim_end_matches('/').to_string(),
                    entra_headers: headers,
                    pids: args.server_pid.into_iter().collect(),
                }
            }
            None => {
                let (t, nodes) = start_rollcall(args, database, tmp.path()).await?;
                procs.extend(nodes);
                t
            }
        };
        let baseline = if args.no_baseline {
            None
        } else {
            let (b, p) = start_baseline(tmp.path(), cfg.seed_users, database).await?;
            let pid = p.pid;
            procs.push(p);
            Some((b, pid))
        };
        let seed = seed(&target, cfg, cfg.timing.concurrency).await?;
        let mut outcomes: Vec<Outcome> = Vec::new();
        if baseline.is_some() {
            for (name, describe, shape) in baseline_rows() {
                outcomes.push(Outcome {
                    name: name.into(),
                    describe: describe.into(),
                    shape,
                    baseline: true,
                    rounds: Vec::new(),
                });
            }
        }
        let jobs = jobs(cfg);
        for j in &jobs {
            outcomes.push(Outcome {
                name: j.name(cfg),
                describe: j.describe(),
                shape: j.workload.shape(),
                baseline: false,
                rounds: Vec::new(),
            });
        }
        let plain = load::scim_headers("none");
        let analyze_url = database.filter(|d| !args.no_analyze && backend_name(Some(d)) == "postgres");
        for round in 0..cfg.repeat {
            if let Some(url) = analyze_url {
                server::pg_analyze(url).await?;
            }
            let mut k = 0;
            if let Some((b, pid)) = &baseline {
                for (name, _, shape) in baseline_rows() {
                    let op = baseline_op(shape, b, cfg, round);
                    let mut r = timed_round(cfg, &plain, op, &[*pid]).await;
                    match shape {
                        Shape::Write => r.writes = r.requests,
                        _ => r.reads = r.requests,
                    }
                    progress(name, round, cfg.repeat, &r);
                    outcomes[k].rounds.push(r);
                    k += 1;
                }
            }
            for (i, j) in jobs.iter().enumerate() {
                let r = run_workload(*j, &target, &seed, cfg, round).await;
                progress(&j.name(cfg), round, cfg.repeat, &r);
                outcomes[k + i].rounds.push(r);
            }
        }
        let peak = json!({
            "rollcall_kb": server::sum_over(&target.pids, server::peak_rss_kb),
            "baseline_kb": baseline.as_ref().and_then(|(_, pid)| server::peak_rss_kb(*pid)),
        });
        Ok::<_, String>((outcomes, peak))
    }
    .await;
    for p in procs {
        p.stop().await;
    }
    let (outcomes, peak) = result?;
    let settings = json!({
        "target": if args.base_url.is_some() { "external" } else { "self-started" },
        "backend": if args.base_url.is_some() { "unknown" } else { backend_name(database) },
        "database": database.map(redact).unwrap_or_else(|| "sqlite (temporary file)".into()),
        "nodes": if args.base_url.is_some() { 1 } else { args.nodes.max(1) },
        "concurrency": cfg.timing.concurrency,
        "duration_s": cfg.timing.duration.as_secs_f64(),
        "warmup_s": cfg.timing.warmup.as_secs_f64(),
        "seed_users": cfg.seed_users,
        "group_members": cfg.group_members,
        "sync_users": cfg.sync_users,
        "sync_groups": cfg.sync_groups,
        "sync_batch": cfg.sync_batch,
        "seed_mode": if cfg.bulk_seed { "bulk" } else { "post" },
        "repeat": cfg.repeat,
        "vacuum_analyze": backend_name(database) == "postgres" && args.base_url.is_none() && !args.no_analyze,
    });
    Ok(RunResult {
        settings,
        outcomes,
        peak,
    })
}

async fn run(args: RunArgs) -> Result<bool, String> {
    let cfg = args.config()?;
    let databases: Vec<Option<String>> = if args.database.is_empty() {
        vec![None]
    } else {
        args.database
            .iter()
            .map(|d| (d != "sqlite").then(|| d.clone()))
            .collect()
    };
    let mut runs = Vec::new();
    for (i, db) in databases.iter().enumerate() {
        if databases.len() > 1 {
            eprintln!(
                "== run {} of {}: {}",
                i + 1,
                databases.len(),
                db.as_deref()
                    .map(redact)
                    .unwrap_or_else(|| "sqlite (temporary file)".into())
            );
        }
        runs.push(run_one(&args, &cfg, db.as_deref()).await?);
    }
    let machine = server::machine();
    for r in &runs {
        print!("{}", report::markdown(&machine, &r.settings, &r.outcomes, &r.peak));
    }
    if runs.len() > 1 {
        print!("{}", report::side_by_side(&runs));
    }
    if let Some(path) = &args.json {
        let docs: Vec<Value> = runs
            .iter()
            .map(|r| report::json(&machine, &r.settings, &r.outcomes, &r.peak))
            .collect();
        let doc = match <[Value; 1]>::try_from(docs) {
            Ok([one]) => one,
            Err(docs) => json!({"machine": machine, "runs": docs}),
        };
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let errors: u64 = runs
        .iter()
        .flat_map(|r| &r.outcomes)
        .flat_map(|o| &o.rounds)
        .map(|r| r.errors)
        .sum();
    if errors > 0 {
        eprintln!("rollcall-bench: {errors} requests failed (non-2xx or unexpected answers)");
    }
    Ok(errors == 0)
}

/// The same allocator as the `rollcall` binary, so that the baseline server (which runs in this
/// binary) is not handicapped against Rollcall by its allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.command {
        Some(Cmd::BaselineServer {
            port,
            db,
            database_url,
            rows,
        }) => {
            let db = match (db, database_url) {
                (_, Some(url)) => baseline::BaselineDb::Postgres(url),
                (Some(file), None) => baseline::BaselineDb::Sqlite(file),
                (None, None) => unreachable!("clap requires --db or --database-url"),
            };
            match rt.block_on(baseline::serve(port, &db, rows)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("baseline-server: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Cmd::WebhookLatency(args)) => match rt.block_on(webhook_latency::run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rollcall-bench webhook-latency: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Cmd::NoisyNeighbour(args)) => match rt.block_on(noisy::run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rollcall-bench noisy-neighbour: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Cmd::Outbound(args)) => match rt.block_on(outbound::run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rollcall-bench outbound: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Cmd::DirectoryRead(args)) => match rt.block_on(directory::run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rollcall-bench directory-read: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Cmd::Soak(args)) => match rt.block_on(soak::run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rollcall-bench soak: {e}");
                ExitCode::FAILURE
            }
        },
        None => match rt.block_on(run(cli.run)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("rollcall-bench: {e}");
                ExitCode::from(2)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_and_redaction() {
        assert_eq!(backend_name(None), "sqlite");
        assert_eq!(backend_name(Some("sqlite:///tmp/x.db")), "sqlite");
        assert_eq!(backend_name(Some("postgres://u@h/db")), "postgres");
        assert_eq!(backend_name(Some("postgresql://u@h/db")), "postgres");
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h:5432/db"), "postgres://u@h:5432/db");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn page_has_its_own_baseline() {
        assert_eq!(Workload::Page.shape(), Shape::Page);
        assert!(
            baseline_rows()
                .iter()
                .any(|(n, _, s)| *n == "baseline-page" && *s == Shape::Page)
        );
    }
}
