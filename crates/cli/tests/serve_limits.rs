//! The real `rollcall serve` under hostile connections: slow headers and silent sockets are cut,
//! idle keep-alive connections are closed, the connection cap pauses accepting and closes unused
//! connections early (and running out of file descriptors does not stop the server), the rate
//! limit is on by default, and SIGTERM right after a request ends the process promptly with the
//! request logged.
//!
//! Timeouts are short here; the assertions are about connections being closed and the server
//! still answering, with generous bounds, not about speed.

use rollcall_scim::schema::SchemaRegistry;
use rollcall_store::EventStore;
use rollcall_store::sqlite::SqliteStore;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rollcall");

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("rollcall-limits-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `rollcall serve` on a fresh SQLite database, killed when dropped.
struct Server {
    child: Child,
    addr: String,
    connection_id: String,
    token: String,
    database: String,
    stderr: PathBuf,
    _dir: TempDir,
}

impl Server {
    /// Starts the server with `env` (ROLLCALL_* settings); `shell_prefix` runs it under `sh -c`
    /// after that command (e.g. `ulimit -n 64`).
    fn start(env: &[(&str, &str)], shell_prefix: Option<&str>) -> Server {
        let dir = TempDir::new();
        let database = format!("sqlite://{}", dir.0.join("r.db").display());
        let stderr = dir.0.join("stderr.log");
        let args = ["--database", &database, "serve", "--listen", "127.0.0.1:0"];
        let mut cmd = match shell_prefix {
            Some(prefix) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("{prefix} && exec \"$0\" \"$@\""))
                    .arg(BIN)
                    .args(args);
                c
            }
            None => {
                let mut c = Command::new(BIN);
                c.args(args);
                c
            }
        };
        for (k, _) in std::env::vars() {
            if k.starts_with("ROLLCALL_") || k == "DATABASE_URL" {
                cmd.env_remove(k);
            }
        }
        cmd.env("ROLLCALL_LOG", "warn,rollcall_server=warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start rollcall serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut base, mut token, mut addr) = (None, None, None);
        for line in lines.by_ref() {
            let line = line.expect("stdout line");
            if let Some(v) = line.strip_prefix("SCIM base URL: ") {
                base = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Bearer token:") {
                token = v.split_whitespace().next().map(str::to_string);
            } else if let Some(v) = line.strip_prefix("Listening on http://") {
                addr = Some(v.trim().to_string());
                break;
            }
        }
        // Keep reading stdout so that the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let (Some(base), Some(token), Some(addr)) = (base, token, addr) else {
            let _ = child.kill();
            panic!(
                "rollcall serve did not start: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        };
        let connection_id = base.rsplit('/').next().expect("connection id").to_string();
        Server {
            child,
            addr,
            connection_id,
            token,
            database,
            stderr,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn connect(&self) -> TcpStream {
        TcpStream::connect(&self.addr).expect("connect")
    }

    /// One request on a fresh connection (`Connection: close`); returns the raw answer.
    fn request(&self, method: &str, path: &str, auth: bool) -> String {
        let mut s = self.connect();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let auth = if auth {
            format!("Authorization: Bearer {}\r\n", self.token)
        } else {
            String::new()
        };
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    fn scim_path(&self, rest: &str) -> String {
        format!("/scim/v2/{}{rest}", self.connection_id)
    }

    fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().expect("try_wait").is_none(),
            "the server exited: {}",
            self.stderr()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the server closes `s` within `limit` (reads end-of-file or a reset), reading and
/// discarding whatever it sends before.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn slow_headers_and_silent_sockets_are_cut() {
    let mut srv = Server::start(
        &[
            ("ROLLCALL_HEADER_READ_TIMEOUT_MS", "500"),
            // Long, so that only the header timeout can close the trickling connection.
            ("ROLLCALL_IDLE_TIMEOUT_MS", "60000"),
        ],
        None,
    );
    // A client sending one header line every 200 ms never completes its head: cut.
    let mut slow = srv.connect();
    let mut writer = slow.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        let _ = writer.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
        for i in 0..100 {
            std::thread::sleep(Duration::from_millis(200));
            if writer.write_all(format!("X-Line-{i}: y\r\n").as_bytes()).is_err() {
                return true;
            }
        }
        false
    });
    assert!(
        closed_within(&mut slow, Duration::from_secs(15)),
        "a head trickling in one line at a time was not cut"
    );
    assert!(trickle.join().unwrap(), "the trickling writer was never refused");
    // The server still answers.
    let answer = srv.request("GET", "/healthz", false);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    srv.assert_alive();

    let srv = Server::start(
        &[
            ("ROLLCALL_HEADER_READ_TIMEOUT_MS", "60000"),
            ("ROLLCALL_IDLE_TIMEOUT_MS", "500"),
        ],
        None,
    );
    // A socket that never sends a byte is closed after the idle timeout.
    let mut silent = srv.connect();
    assert!(
        closed_within(&mut silent, Duration::from_secs(15)),
        "a silent socket stayed open"
    );
    // Kept-alive connections that go idle after a request are closed too.
    let mut kept: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = srv.connect();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            s
        })
        .collect();
    for s in &mut kept {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).expect("an answer");
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    for (i, s) in kept.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(15)),
            "idle keep-alive connection {i} stayed open"
        );
    }
    let answer = srv.request("GET", "/healthz", false);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// One keep-alive request on `s`; returns the status line. Reads exactly the answer (by its
/// `Content-Length`), so the connection can carry the next request.
fn keep_alive_request(s: &mut TcpStream, path: &str, token: &str) -> String {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return format!("connection closed after {:?}", String::from_utf8_lossy(&head)),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("a Content-Length");
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).expect("the body");
    head.lines().next().unwrap_or_default().to_string()
}

#[test]
fn the_connection_cap_pauses_accepting_and_closes_unused_connections() {
    let mut srv = Server::start(
        &[
            ("ROLLCALL_MAX_CONNECTIONS", "8"),
            ("ROLLCALL_IDLE_TIMEOUT_MS", "60000"),
            ("ROLLCALL_HEADER_READ_TIMEOUT_MS", "60000"),
        ],
        None,
    );
    let path = srv.scim_path("/Users");
    // A client in use before the flood: it keeps its connection while it keeps sending requests.
    let mut busy = srv.connect();
    assert!(keep_alive_request(&mut busy, &path, &srv.token).starts_with("HTTP/1.1 200"));
    // Forty silent sockets, held open all along: eight are accepted, the rest wait in the backlog.
    let silent: Vec<TcpStream> = (0..40).map(|_| srv.connect()).collect();
    let (addr, token, p) = (srv.addr.clone(), srv.token.clone(), path.clone());
    let started = Instant::now();
    let waiting = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "GET {p} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        (out, started.elapsed())
    });
    // Meanwhile the client in use goes on, one request every 100 ms, on the same connection.
    let mut answered = 0;
    while !waiting.is_finished() && started.elapsed() < Duration::from_secs(30) {
        let status = keep_alive_request(&mut busy, &path, &srv.token);
        assert!(status.starts_with("HTTP/1.1 200"), "request {answered}: {status}");
        answered += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let (answer, took) = waiting.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Far below the 60 s idle timeout: the silent sockets ahead of it were closed under pressure.
    assert!(took < Duration::from_secs(20), "served after {took:?}");
    assert!(answered > 0);
    srv.assert_alive();
    assert!(
        srv.stderr().contains("cap on open connections was reached"),
        "{}",
        srv.stderr()
    );
    drop(silent);
}

#[test]
fn running_out_of_file_descriptors_does_not_stop_the_server() {
    // A low limit on open files and a connection cap above it: accept fails with EMFILE.
    let mut srv = Server::start(&[("ROLLCALL_MAX_CONNECTIONS", "5000")], Some("ulimit -n 96"));
    let mut idle = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !srv.stderr().contains("accept failed") {
        assert!(Instant::now() < deadline, "no accept error logged: {}", srv.stderr());
        for _ in 0..20 {
            if let Ok(s) = TcpStream::connect(&srv.addr) {
                idle.push(s);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(srv.stderr().contains("Too many open files"), "{}", srv.stderr());
    assert!(
        srv.stderr().contains("limit on open files"),
        "the start-up warning: {}",
        srv.stderr()
    );
    srv.assert_alive();
    drop(idle);
    // Descriptors come back as the server closes the sockets: a request is served again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = srv.request("GET", &srv.scim_path("/Users"), true);
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "not served again: {answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
    srv.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_on_by_default() {
    let srv = Server::start(&[], None);
    let url = format!("http://{}{}", srv.addr, srv.scim_path("/ServiceProviderConfig"));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (http, url, token) = (http.clone(), url.clone(), srv.token.clone());
        tasks.spawn(async move {
            let mut refused = Vec::new();
            // 8 × 500 requests: far more than the burst plus what the rate refills meanwhile.
            for _ in 0..500 {
                let r = http.get(&url).bearer_auth(&token).send().await.expect("request");
                if r.status().as_u16() == 429 {
                    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                    let body: serde_json::Value = r.json().await.unwrap();
                    refused.push((retry, body));
                    if refused.len() >= 5 {
                        break;
                    }
                } else {
                    assert_eq!(r.status().as_u16(), 200);
                }
            }
            refused
        });
    }
    let refused: Vec<_> = tasks.join_all().await.into_iter().flatten().collect();
    assert!(!refused.is_empty(), "no 429 with the default settings");
    for (retry, body) in &refused {
        assert!(retry.is_some(), "429 without Retry-After");
        assert_eq!(body["status"], "429");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("100 requests per second") && detail.contains("bursts of 200"),
            "{detail}"
        );
    }
    // One warning names the connection; the flood is counted, not logged line by line.
    let log = srv.stderr();
    let warnings = log
        .lines()
        .filter(|l| l.contains("over its rate limit") && l.contains(&srv.connection_id))
        .count();
    assert!(warnings >= 1, "{log}");
    assert!(
        warnings < refused.len(),
        "{warnings} warnings for {} refusals",
        refused.len()
    );
}

#[tokio::test]
async fn sigterm_right_after_a_request_exits_promptly_and_keeps_the_log() {
    let mut srv = Server::start(&[], None);
    let answer = srv.request("GET", &srv.scim_path("/Users?count=1"), true);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let pid = srv.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = srv.child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "still running 5 s after SIGTERM: {}",
            srv.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}: {}", srv.stderr());
    // The request was written to the request log before the process ended.
    let store = SqliteStore::open(&srv.database, Arc::new(SchemaRegistry::standard()))
        .await
        .expect("open the database");
    let log = store.request_log(&srv.connection_id, None, 10).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.method == "GET" && e.path.ends_with("/Users?count=1") && e.status == 200),
        "{log:?}"
    );
}

#[test]
fn limit_settings_out_of_range_are_refused() {
    let dir = TempDir::new();
    let database = format!("sqlite://{}", dir.0.join("r.db").display());
    let config = dir.0.join("rollcall.toml");
    std::fs::write(&config, "max_connections = 0\n").unwrap();
    let config = config.display().to_string();
    let serve = |extra: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("ROLLCALL_") || k == "DATABASE_URL" {
                cmd.env_remove(k);
            }
        }
        cmd.args(["--database", &database])
            .args(extra)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run rollcall")
    };
    for (extra, env, needle) in [
        (vec![], vec![("ROLLCALL_MAX_IN_FLIGHT", "0")], "max_in_flight"),
        (vec![], vec![("ROLLCALL_MAX_URI_BYTES", "100000")], "max_uri_bytes"),
        (
            vec![],
            vec![("ROLLCALL_HEADER_READ_TIMEOUT_MS", "0")],
            "header_read_timeout_ms",
        ),
        (vec!["--config", config.as_str()], vec![], "max_connections"),
    ] {
        let out = serve(&extra, &env);
        assert!(!out.status.success(), "{extra:?} {env:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{extra:?} {env:?}: {stderr}");
    }
    // Flags are read too (`serve --idle-timeout-ms`).
    let mut cmd = Command::new(BIN);
    cmd.env_remove("ROLLCALL_IDLE_TIMEOUT_MS")
        .args([
            "--database",
            &database,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-bootstrap",
        ])
        .args(["--idle-timeout-ms", "0"]);
    let out = cmd.output().expect("run rollcall");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("idle_timeout_ms"));
}
