//! A SCIM request that fails with a server error is logged at WARN with what finds it (the
//! connection, the request id, the method, the redacted path and the error's detail), whether or not
//! the request log is on, and the client gets a SCIM error, not a dropped connection.

mod common;

use common::*;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Everything logged in this test process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Captured::default();
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        log
    })
}

async fn check(request_log: bool) {
    let log = captured();
    let mut setup = Setup::default();
    if !request_log {
        setup.node.activity.request_log.keep_per_connection = 0;
    }
    let srv = TestServer::start_with(setup).await;
    let c = srv.client();
    let id = c
        .create_user(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada@example.com"
        }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The store breaks under the running server.
    srv.execute_sql("ALTER TABLE resources RENAME TO resources_gone").await;
    let request_id = format!("req-{}", uuid::Uuid::new_v4().simple());
    let r = c
        .get_with(&format!("/Users/{id}"), &[("X-Request-Id", &request_id)])
        .await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(r.body["status"], "500", "a SCIM error: {}", r.text);
    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).to_string();
    let line = text
        .lines()
        .find(|l| l.contains(&request_id) && l.contains("SCIM request failed with a server error"))
        .unwrap_or_else(|| panic!("no WARN with the request id (request log {request_log}): {text}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&srv.conn().id), "{line}");
    assert!(line.contains("method=GET"), "{line}");
    assert!(line.contains(&format!("/Users/{id}")), "{line}");
    assert!(line.contains("status=500"), "{line}");
}

async fn server_errors_are_logged_with_the_request_log_on() {
    check(true).await;
}

async fn server_errors_are_logged_with_the_request_log_off() {
    check(false).await;
}

backend_tests!(
    server_errors_are_logged_with_the_request_log_on,
    server_errors_are_logged_with_the_request_log_off,
);
