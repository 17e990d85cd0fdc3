//! The real `rollcall serve` as a child process, for the tests that crash it (SIGKILL) and start it
//! again on the same database: the command with only the settings a test controls, the CLI's JSON
//! output, a server killed when dropped, and a free address kept across restarts.
#![allow(dead_code)]

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rollcall");

/// A `rollcall` command on `database`, with the settings the test controls and nothing else.
pub fn rollcall(database: &str) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ROLLCALL_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    // Every node of one database has the same secrets key (required on PostgreSQL).
    cmd.env("ROLLCALL_SECRETS_KEY", "44".repeat(32))
        .env("ROLLCALL_LOG", "warn")
        .env("ROLLCALL_WEBHOOK_ALLOW_LOOPBACK", "true")
        .env("ROLLCALL_WEBHOOK_POLL_INTERVAL_MS", "100")
        .env("ROLLCALL_WEBHOOK_TIMEOUT_MS", "3000")
        // Writers as fast as the server goes: without the fair-share limits.
        .env("ROLLCALL_RATE_LIMIT_PER_SECOND", "0")
        .env("ROLLCALL_MAX_IN_FLIGHT_PER_CONNECTION", "1000")
        .arg("--database")
        .arg(database);
    cmd
}

/// The JSON a `rollcall … --json` command prints (it must succeed).
pub fn cli_json(database: &str, args: &[&str]) -> Value {
    let out = rollcall(database).args(args).output().expect("run rollcall");
    assert!(
        out.status.success(),
        "rollcall {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// `rollcall serve` on a fixed address, killed with SIGKILL when dropped.
pub struct Server(Child);

impl Server {
    /// Starts it and waits (up to a minute) until it is ready.
    pub async fn start(database: &str, listen: &str, http: &reqwest::Client) -> Server {
        let child = rollcall(database)
            .args(["serve", "--listen", listen, "--no-bootstrap"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rollcall serve");
        let mut server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("http://{listen}/readyz")).send().await
                && r.status().is_success()
            {
                return server;
            }
            if let Ok(Some(status)) = server.0.try_wait() {
                panic!("rollcall serve exited: {status}");
            }
            assert!(Instant::now() < deadline, "rollcall serve did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no graceful shutdown, requests and deliveries cut mid-way.
    pub fn kill(mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback address for the server (kept across restarts).
pub fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A pseudo-random number of milliseconds below `max` (when to crash the server next).
pub fn rand_ms(max: u64) -> u64 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64)
        % max
}
