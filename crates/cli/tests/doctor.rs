//! `rollcall doctor` against a good setup and broken ones: a wrong secrets key, a missing public
//! URL (a warning), a missing database, a database written by a newer version, bad settings.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_rollcall");

fn command(dir: &Path, database: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ROLLCALL_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .env("ROLLCALL_LOG", "warn")
        .args(["--database", database])
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// `rollcall doctor --json`: its exit status and its checks by name (status, message).
fn doctor(
    dir: &Path,
    database: &str,
    env: &[(&str, &str)],
) -> (bool, Value, std::collections::HashMap<String, (String, String)>) {
    let out: Output = command(dir, database, env).args(["doctor", "--json"]).output().unwrap();
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["ok"].as_bool(), Some(out.status.success()), "{report}");
    let checks = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                (
                    c["status"].as_str().unwrap().to_string(),
                    c["message"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(1));
    }
    (out.status.success(), report, checks)
}

fn serve(dir: &Path, database: &str) -> (Child, String) {
    let mut child = command(dir, database, &[("ROLLCALL_WEBHOOK_ALLOW_LOOPBACK", "true")])
        .args(["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut origin = None;
    for line in lines.by_ref() {
        if let Some(a) = line.unwrap().strip_prefix("Listening on ") {
            origin = Some(a.trim().to_string());
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, origin.expect("serve started"))
}

#[tokio::test]
async fn good_and_broken_setups() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = format!("sqlite://{}", d.join("r.db").display());

    // No database yet: a failure that names it; the checks that need it are not done.
    let (ok, _, checks) = doctor(d, &db, &[]);
    assert!(!ok);
    assert_eq!(checks["database"].0, "fail");
    assert!(checks["database"].1.contains("r.db"), "{:?}", checks["database"]);
    assert!(checks["secrets key"].1.starts_with("not checked"));

    // A database served once, holding an encrypted webhook secret.
    let out = command(d, &db, &[])
        .args(["--create", "api-key", "create", "--name", "t", "--json"])
        .output()
        .unwrap();
    let api_key = serde_json::from_slice::<Value>(&out.stdout).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut child, origin) = serve(d, &db);
    let r = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .post(format!("{origin}/api/v1/webhooks"))
        .bearer_auth(&api_key)
        .json(&json!({ "url": "http://127.0.0.1:9/hook", "event_types": ["organization.*"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let _ = child.kill();
    let _ = child.wait();

    // Good: every check ok but the public URL, which is not configured (serve recorded one).
    let (ok, report, checks) = doctor(d, &db, &[]);
    assert!(ok, "{report}");
    for name in ["settings", "tls", "database", "migrations", "secrets key"] {
        assert_eq!(checks[name].0, "ok", "{name}: {report}");
    }
    assert!(
        checks["secrets key"].1.contains("opens the 1 stored secrets"),
        "{report}"
    );
    assert_eq!(checks["public URL"].0, "warn");
    assert!(
        checks["public URL"].1.contains(&origin),
        "the recorded URL is named: {report}"
    );
    // Configured as recorded: ok.
    let (ok, report, checks) = doctor(d, &db, &[("ROLLCALL_PUBLIC_URL", &origin)]);
    assert!(ok && checks["public URL"].0 == "ok", "{report}");
    // The text form: one line per check, with what to do.
    let out = command(d, &db, &[]).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("warn  public URL:") && l.contains("ROLLCALL_PUBLIC_URL")),
        "{text}"
    );

    // A wrong secrets key: serve would refuse to start; so does the doctor's check.
    let other = d.join("other.key");
    assert!(
        command(d, &db, &[])
            .args(["secrets", "generate-key", "--out"])
            .arg(&other)
            .status()
            .unwrap()
            .success()
    );
    let (ok, report, checks) = doctor(d, &db, &[("ROLLCALL_SECRETS_KEY_FILE", other.to_str().unwrap())]);
    assert!(!ok);
    assert_eq!(checks["secrets key"].0, "fail", "{report}");
    assert!(checks["secrets key"].1.contains("encrypted under key"), "{report}");
    assert!(
        report.to_string().contains("rollcall secrets status"),
        "says what to do: {report}"
    );

    // Bad settings and TLS files named.
    let (ok, report, checks) = doctor(d, &db, &[("ROLLCALL_WEBHOOK_CONCURRENCY", "0")]);
    assert!(!ok && checks["settings"].0 == "fail", "{report}");
    let (ok, report, checks) = doctor(d, &db, &[("ROLLCALL_TLS_CERT_FILE", "/nonexistent/cert.pem")]);
    assert!(
        !ok && checks["tls"].0 == "fail" && checks["tls"].1.contains("no private key"),
        "{report}"
    );
    let (ok, _, checks) = doctor(d, &db, &[("ROLLCALL_MAX_LIST_BYTES", "nope")]);
    assert!(!ok && checks["settings"].0 == "fail");

    // A database a newer Rollcall migrated: refused, and nothing else is looked at.
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99999, 'from the future', TRUE, X'00', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let (ok, report, checks) = doctor(d, &db, &[]);
    assert!(!ok);
    assert_eq!(checks["migrations"].0, "fail", "{report}");
    assert!(
        checks["migrations"].1.contains("99999") && checks["migrations"].1.contains("newer"),
        "{report}"
    );
    assert!(checks["public URL"].1.starts_with("not checked"), "{report}");
}
