//! Starting and stopping the servers under test, and reading their memory from /proc.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Gives a `rollcall serve` the secrets key it needs on PostgreSQL (on SQLite it would create one
/// beside the database): a random key for this run, unless the environment configures one.
pub fn secrets_key_env(cmd: &mut Command) {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if std::env::var_os("ROLLCALL_SECRETS_KEY").is_some() || std::env::var_os("ROLLCALL_SECRETS_KEY_FILE").is_some() {
        return;
    }
    let key = KEY.get_or_init(|| {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    });
    cmd.env("ROLLCALL_SECRETS_KEY", key);
}

/// A child server process; killed if dropped without `stop`.
pub struct Proc {
    pub name: &'static str,
    pub pid: u32,
    child: Child,
}

impl Proc {
    pub fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> Result<Proc, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {name}: {e}"))?;
        let pid = child.id().ok_or_else(|| format!("{name} exited at once"))?;
        Ok(Proc { name, pid, child })
    }

    /// Fails if the process has already exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!("{} exited: {status}", self.name)),
            _ => Ok(()),
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s.
    pub async fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Polls `url` until it answers 2xx, the process exits, or `limit` passes.
pub async fn wait_ready(url: &str, proc_: &mut Proc, limit: Duration, log: &Path) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if let Err(e) = proc_.check_alive() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{e}; its output:\n{tail}"));
        }
        if start.elapsed() > limit {
            return Err(format!("{} not ready at {url} after {limit:?}", proc_.name));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a `rollcall` admin command and parses its `--json` output.
pub fn rollcall_json(bin: &Path, database: &str, args: &[&str]) -> Result<Value, String> {
    let out = std::process::Command::new(bin)
        .arg("--database")
        .arg(database)
        .args(args)
        .env("ROLLCALL_LOG", "warn")
        .output()
        .map_err(|e| format!("running {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "rollcall {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line).map_err(|e| format!("rollcall {}: unexpected output {text:?}: {e}", args.join(" ")))
}

/// The default `rollcall` binary: beside this one (both in target/release), else the path
/// relative to the workspace root.
pub fn default_rollcall_bin() -> PathBuf {
    if let Ok(me) = std::env::current_exe()
        && let Some(dir) = me.parent()
    {
        let sibling = dir.join("rollcall");
        if sibling.is_file() {
            return sibling;
        }
    }
    PathBuf::from("target/release/rollcall")
}

/// Runs `VACUUM ANALYZE` on a PostgreSQL database, so the planner has statistics for tables
/// that seeding has just filled and index-only scans see an up-to-date visibility map.
/// Autovacuum does this in production; it may be off on a test machine.
pub async fn pg_analyze(url: &str) -> Result<(), String> {
    use sqlx::Connection;
    let started = Instant::now();
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| format!("connecting to PostgreSQL for VACUUM ANALYZE: {e}"))?;
    sqlx::raw_sql("VACUUM ANALYZE")
        .execute(&mut conn)
        .await
        .map_err(|e| format!("VACUUM ANALYZE: {e}"))?;
    let _ = conn.close().await;
    eprintln!("VACUUM ANALYZE took {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Creates (afresh) a database beside the one `url` names, called `<name>_<suffix>`, on the same
/// server, and returns its URL: the PostgreSQL baseline runs there, so that it shares the server
/// with the measured Rollcall but not its tables.
pub async fn fresh_sibling_database(url: &str, suffix: &str) -> Result<String, String> {
    use sqlx::Connection;
    let (sibling_url, sibling) = sibling_database(url, suffix)?;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| format!("connecting to PostgreSQL to create {sibling}: {e}"))?;
    for statement in [
        format!("DROP DATABASE IF EXISTS \"{sibling}\" WITH (FORCE)"),
        format!("CREATE DATABASE \"{sibling}\""),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("{statement}: {e}"))?;
    }
    let _ = conn.close().await;
    Ok(sibling_url)
}

/// The URL and name of the database `<name>_<suffix>` beside the one `url` names.
fn sibling_database(url: &str, suffix: &str) -> Result<(String, String), String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (server, name) = base
        .rsplit_once('/')
        .filter(|(server, name)| server.contains("://") && !server.ends_with('/') && !name.is_empty())
        .ok_or_else(|| format!("\"{}\" names no database", crate::redact(url)))?;
    let sibling = format!("{name}_{suffix}");
    if !sibling.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "cannot name a database after \"{name}\": use a database name of letters, digits and _"
        ));
    }
    let sibling_url = match query {
        Some(q) => format!("{server}/{sibling}?{q}"),
        None => format!("{server}/{sibling}"),
    };
    Ok((sibling_url, sibling))
}

fn status_field_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `read` summed over the processes; `None` when there are none or one cannot be read.
pub fn sum_over<T: std::iter::Sum<T>>(pids: &[u32], read: impl Fn(u32) -> Option<T>) -> Option<T> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| read(*p)).sum()
}

/// Resident set size in KiB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    status_field_kb(pid, "VmRSS:")
}

/// Peak resident set size since the process started, in KiB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    status_field_kb(pid, "VmHWM:")
}

/// CPU time (user + system) the process has used, in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// `nproc`, CPU model and memory of this machine.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    serde_json::json!({
        "nproc": nproc,
        "cpu_model": model,
        "memory_gib": (mem_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

/// A `rollcall serve` started for a scenario (noisy-neighbour, soak): its address, its connections
/// (one organization each) and an operator API key.
pub struct Stack {
    pub public: String,
    /// (organization id, SCIM base URL, bearer token) per connection, in the order asked.
    pub connections: Vec<(String, String, String)>,
    pub api_key: String,
    pub proc_: Proc,
}

/// Creates one organization and connection per entry of `tenants` (an organization name) and an
/// API key with the command line, then starts `rollcall serve` on a free port with `env` added.
pub async fn start_stack(
    bin: &Path,
    database: &str,
    dir: &Path,
    tenants: &[&str],
    env: &[(String, String)],
) -> Result<Stack, String> {
    if !bin.is_file() {
        return Err(format!(
            "no rollcall binary at {} (build it with `cargo build --release -p rollcall`, or pass --rollcall-bin)",
            bin.display()
        ));
    }
    let port = free_port()?;
    let public = format!("http://127.0.0.1:{port}");
    let mut connections = Vec::new();
    for name in tenants {
        let org = rollcall_json(bin, database, &["--create", "org", "create", "--name", name, "--json"])?;
        let conn = rollcall_json(
            bin,
            database,
            &["connection", "create", "--org", name, "--public-url", &public, "--json"],
        )?;
        match (
            org["id"].as_str(),
            conn["scim_base_url"].as_str(),
            conn["token"].as_str(),
        ) {
            (Some(o), Some(b), Some(t)) => connections.push((o.to_string(), b.to_string(), t.to_string())),
            _ => return Err(format!("unexpected CLI output: {org} / {conn}")),
        }
    }
    let key = rollcall_json(bin, database, &["api-key", "create", "--name", "bench", "--json"])?;
    let api_key = key["secret"]
        .as_str()
        .ok_or_else(|| format!("unexpected CLI output: {key}"))?
        .to_string();
    let mut cmd = Command::new(bin);
    cmd.arg("--database")
        .arg(database)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--no-bootstrap"])
        .env("ROLLCALL_LOG", "warn");
    secrets_key_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let log = dir.join("rollcall.log");
    let mut proc_ = Proc::spawn("rollcall", cmd, &log)?;
    wait_ready(&format!("{public}/healthz"), &mut proc_, Duration::from_secs(60), &log).await?;
    Ok(Stack {
        public,
        connections,
        api_key,
        proc_,
    })
}

/// The database a scenario runs on: the one given, else a SQLite file in `dir`; with its backend's
/// name (`sqlite` or `postgres`).
pub fn scenario_database(given: Option<String>, dir: &Path) -> (String, &'static str) {
    let database = given.unwrap_or_else(|| format!("sqlite://{}", dir.join("rollcall.db").display()));
    let backend = if database.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    (database, backend)
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| d.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_proc_status() {
        let me = std::process::id();
        assert!(rss_kb(me).unwrap() > 0);
        assert!(peak_rss_kb(me).unwrap() >= rss_kb(me).unwrap() / 2);
        assert!(cpu_secs(me).unwrap() >= 0.0);
        assert!(machine()["nproc"].as_u64().unwrap() >= 1);
    }
}

#[cfg(test)]
mod sibling_tests {
    use super::sibling_database;

    #[test]
    fn the_baseline_database_sits_beside_the_measured_one() {
        assert_eq!(
            sibling_database("postgres://u:p@h:5432/bench", "baseline").unwrap(),
            ("postgres://u:p@h:5432/bench_baseline".into(), "bench_baseline".into())
        );
        assert_eq!(
            sibling_database("postgres://h/bench?sslmode=disable", "baseline")
                .unwrap()
                .0,
            "postgres://h/bench_baseline?sslmode=disable"
        );
        assert!(sibling_database("postgres://h", "baseline").is_err());
        assert!(sibling_database("postgres://h/", "baseline").is_err());
        assert!(sibling_database("postgres://h/we\"ird", "baseline").is_err());
    }
}
