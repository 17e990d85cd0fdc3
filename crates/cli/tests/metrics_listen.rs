//! `rollcall serve` and its metrics settings (#18): `--metrics-listen` serves `/metrics` open on a
//! listener of its own and takes it off the main one; `metrics = false` switches it off; a short
//! `metrics_token`, or one given with `metrics_listen`, is refused at start.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_rollcall");

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("rollcall-metrics-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    fn database(&self) -> String {
        format!("sqlite://{}", self.0.join("r.db").display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn command(dir: &TempDir, extra: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ROLLCALL_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.env("ROLLCALL_LOG", "warn")
        .args(["--database", &dir.database(), "serve", "--listen", "127.0.0.1:0"])
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A running server, killed when dropped: its main address and its metrics address, if any.
struct Server {
    child: Child,
    addr: String,
    metrics_addr: Option<String>,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str], env: &[(&str, &str)]) -> Server {
    let dir = TempDir::new();
    let mut child = command(&dir, extra, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rollcall serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut addr, mut metrics_addr) = (None, None);
    for line in lines.by_ref() {
        let line = line.expect("stdout line");
        if let Some(v) = line.strip_prefix("Metrics on http://") {
            metrics_addr = v.trim().strip_suffix("/metrics").map(str::to_string);
        } else if let Some(v) = line.strip_prefix("Listening on http://") {
            addr = Some(v.trim().to_string());
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let Some(addr) = addr else {
        let _ = child.kill();
        panic!("rollcall serve did not start");
    };
    Server {
        child,
        addr,
        metrics_addr,
        _dir: dir,
    }
}

/// `GET path` on a fresh connection; the raw answer.
fn get(addr: &str, path: &str, bearer: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = bearer.map_or(String::new(), |b| format!("Authorization: Bearer {b}\r\n"));
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn a_metrics_listener_serves_metrics_openly_and_the_main_one_does_not() {
    let server = start(&["--metrics-listen", "127.0.0.1:0"], &[]);
    let metrics = server.metrics_addr.clone().expect("the metrics address is printed");
    // A request on the main listener first, to be counted.
    let health = get(&server.addr, "/healthz", None);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let answer = get(&metrics, "/metrics", None);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("rollcall_build_info{version=\""), "{answer}");
    assert!(
        answer.contains("rollcall_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1"),
        "{answer}"
    );
    // The statements the server ran (migrations, the first start's writes), timed by kind.
    assert!(
        answer.contains("rollcall_db_statement_seconds_count{statement=\"select\"}"),
        "{answer}"
    );
    // Not on the main listener, even with credentials.
    let main = get(&server.addr, "/metrics", Some("anything-at-all-0123456789"));
    assert!(main.starts_with("HTTP/1.1 404"), "{main}");
}

#[test]
fn metrics_can_be_switched_off_and_on_the_main_listener_need_credentials() {
    let off = start(&[], &[("ROLLCALL_METRICS", "false")]);
    assert!(off.metrics_addr.is_none());
    let answer = get(&off.addr, "/metrics", None);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

    let token = "a-metrics-token-0123456789";
    let on = start(&[], &[("ROLLCALL_METRICS_TOKEN", token)]);
    let refused = get(&on.addr, "/metrics", None);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.contains("application/problem+json"), "{refused}");
    assert!(refused.contains("metrics_token"), "{refused}");
    let wrong = get(&on.addr, "/metrics", Some("a-metrics-token-012345678X"));
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let answer = get(&on.addr, "/metrics", Some(token));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("text/plain; version=0.0.4"), "{answer}");
    assert!(!answer.contains(token));
}

#[test]
fn bad_metrics_settings_are_refused() {
    for (extra, env, needle) in [
        (vec![], vec![("ROLLCALL_METRICS_TOKEN", "short")], "metrics_token"),
        (
            vec!["--metrics-listen", "127.0.0.1:0"],
            vec![("ROLLCALL_METRICS_TOKEN", "a-metrics-token-0123456789")],
            "metrics_token",
        ),
        (
            vec!["--metrics-listen", "127.0.0.1:0"],
            vec![("ROLLCALL_METRICS", "false")],
            "metrics_listen",
        ),
        (vec!["--metrics-listen", "not an address"], vec![], "metrics_listen"),
    ] {
        let dir = TempDir::new();
        let out = command(&dir, &extra, &env).output().expect("run rollcall");
        assert!(!out.status.success(), "{extra:?} {env:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{extra:?} {env:?}: {stderr}");
    }
}
