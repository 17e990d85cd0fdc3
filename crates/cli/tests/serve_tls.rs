//! `rollcall serve --tls-cert FILE --tls-key FILE`: the real binary over TLS with a self-signed
//! certificate (rcgen), a SCIM request by a client that trusts that certificate, plain HTTP to the
//! TLS port refused, a silent client cut at the header-read timeout, and the settings refused when
//! a file is missing, unreadable or not PEM, naming the file.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rollcall");

/// `rollcall` with no ROLLCALL_* variable of the environment the tests run in.
fn rollcall(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ROLLCALL_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .env("ROLLCALL_LOG", "warn")
        .args(["--database", &format!("sqlite://{}", dir.join("r.db").display())]);
    cmd
}

struct Tls {
    cert: PathBuf,
    key: PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn self_signed(dir: &Path) -> Tls {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    Tls {
        cert,
        key,
        der: generated.cert.der().clone(),
    }
}

struct Server {
    child: Child,
    addr: String,
    connection_id: String,
    token: String,
    stderr: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(mut cmd: Command, dir: &Path) -> Server {
    let stderr = dir.join("stderr.log");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("start rollcall serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut base, mut token, mut addr) = (None, None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("SCIM base URL: ") {
            base = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("Bearer token:") {
            token = v.split_whitespace().next().map(str::to_string);
        } else if let Some(v) = line.strip_prefix("Listening on ") {
            addr = Some(v.trim().to_string());
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let (Some(base), Some(token), Some(addr)) = (base, token, addr) else {
        let _ = child.kill();
        panic!(
            "serve did not start: {}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
    };
    assert!(base.starts_with("https://"), "the default public URL is https: {base}");
    Server {
        child,
        addr: addr
            .strip_prefix("https://")
            .expect("Listening on https://")
            .to_string(),
        connection_id: base.rsplit('/').next().unwrap().to_string(),
        token,
        stderr,
    }
}

/// One request over TLS (trusting only `cert`, server name `localhost`); the raw answer.
fn https(addr: &str, cert: &rustls::pki_types::CertificateDer<'static>, request: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    // The server may end without close_notify after `Connection: close`; what was read counts.
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn serves_scim_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let tls = self_signed(dir.path());
    let mut cmd = rollcall(dir.path());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&tls.cert)
        .arg("--tls-key")
        .arg(&tls.key)
        .env("ROLLCALL_HEADER_READ_TIMEOUT_MS", "500")
        .env("ROLLCALL_IDLE_TIMEOUT_MS", "60000");
    let srv = start(cmd, dir.path());

    // A SCIM write and read over TLS.
    let body = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"tls@example.com"}"#;
    let created = https(
        &srv.addr,
        &tls.der,
        &format!(
            "POST /scim/v2/{}/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            srv.connection_id,
            srv.token,
            body.len()
        ),
    );
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    assert!(
        created.contains(&format!("https://{}/scim/v2/{}/Users/", srv.addr, srv.connection_id)),
        "meta.location under the https public URL: {created}"
    );
    let listed = https(
        &srv.addr,
        &tls.der,
        &format!(
            "GET /scim/v2/{}/Users?filter=userName+eq+%22tls@example.com%22 HTTP/1.1\r\nHost: localhost\r\n\
             Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
            srv.connection_id, srv.token
        ),
    );
    assert!(
        listed.starts_with("HTTP/1.1 200") && listed.contains("\"totalResults\":1"),
        "{listed}"
    );
    let health = https(
        &srv.addr,
        &tls.der,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // Plain HTTP to the TLS port gets no HTTP answer: the handshake fails and the connection closes.
    let mut plain = TcpStream::connect(&srv.addr).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"),
        "plain HTTP answered"
    );

    // A client that opens a connection and never completes its handshake is cut at the header-read
    // timeout (500 ms here), not the idle timeout (60 s).
    let mut silent = TcpStream::connect(&srv.addr).unwrap();
    silent.write_all(&[0x16, 0x03, 0x01]).unwrap(); // the start of a ClientHello, then nothing
    silent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 64];
    let closed = matches!(silent.read(&mut buf), Ok(0) | Err(_));
    assert!(
        closed && t.elapsed() < Duration::from_secs(10),
        "handshake not cut: {:?}",
        t.elapsed()
    );
    // Still serving.
    let health = https(
        &srv.addr,
        &tls.der,
        "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(
        health.starts_with("HTTP/1.1 200"),
        "{health}\n{}",
        std::fs::read_to_string(&srv.stderr).unwrap()
    );
}

/// Runs `serve` with `args` and the environment `env`, expecting it to refuse to start; its stderr.
fn refused(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = rollcall(dir);
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        !out.status.success(),
        "started: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_tls_settings_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let tls = self_signed(dir.path());
    let (cert, key) = (tls.cert.to_str().unwrap(), tls.key.to_str().unwrap());

    let e = refused(dir.path(), &["--tls-cert", cert], &[]);
    assert!(e.contains("no private key") && e.contains("--tls-key"), "{e}");
    let e = refused(dir.path(), &[], &[("ROLLCALL_TLS_KEY_FILE", key)]);
    assert!(e.contains("no certificate") && e.contains("--tls-cert"), "{e}");

    let missing = dir.path().join("missing.pem");
    let e = refused(
        dir.path(),
        &["--tls-cert", missing.to_str().unwrap(), "--tls-key", key],
        &[],
    );
    assert!(
        e.contains("cannot read the TLS certificate file") && e.contains("missing.pem"),
        "{e}"
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let e = refused(
        dir.path(),
        &["--tls-cert", cert, "--tls-key", garbage.to_str().unwrap()],
        &[],
    );
    assert!(e.contains("no usable private key") && e.contains("garbage.pem"), "{e}");
    let e = refused(
        dir.path(),
        &[],
        &[
            ("ROLLCALL_TLS_CERT_FILE", garbage.to_str().unwrap()),
            ("ROLLCALL_TLS_KEY_FILE", key),
        ],
    );
    assert!(e.contains("holds no certificate") && e.contains("garbage.pem"), "{e}");

    // A key that is not the certificate's.
    let other = self_signed(&{
        let d = dir.path().join("other");
        std::fs::create_dir(&d).unwrap();
        d
    });
    let e = refused(
        dir.path(),
        &["--tls-cert", cert, "--tls-key", other.key.to_str().unwrap()],
        &[],
    );
    assert!(e.contains("does not go with the certificate"), "{e}");
}
