//! A real SCIM 2.0 server for tests: the PyPI `scim2-server` (pinned), installed into a virtual
//! environment under the target directory when missing, started on a free port, stopped when
//! dropped. Shared by the engine's tests and the server's API test (`#[path]`).
#![allow(dead_code)]

use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The scim2-server release the tests run against.
const SCIM2_SERVER: &str = "scim2-server==0.8.3";
pub const TOKEN: &str = "downstream-token";

/// The virtual environment holding scim2-server, installed once (a temporary directory renamed
/// into place, so concurrent test processes never see half an installation).
fn scim2_server_bin() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let venv = base.join(format!("scim2-server-venv-{}", SCIM2_SERVER.replace("==", "-")));
    let bin = venv.join("bin").join("scim2-server");
    if bin.exists() {
        return bin;
    }
    std::fs::create_dir_all(&base).expect("target dir");
    let tmp = base.join(format!("scim2-server-venv-tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&tmp)
        .status()
        .expect("python3 -m venv")
        .success();
    assert!(ok, "creating the virtual environment failed");
    let ok = Command::new(tmp.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", SCIM2_SERVER])
        .status()
        .expect("pip install")
        .success();
    assert!(ok, "pip install {SCIM2_SERVER} failed");
    // The console script names the temporary path in its shebang: the server is started through
    // the environment's interpreter instead (which finds its packages after the rename). When the
    // rename fails, another process installed it first: its copy is used.
    if std::fs::rename(&tmp, &venv).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    bin
}

/// A running scim2-server, stopped when dropped.
pub struct Downstream {
    child: Child,
    pub url: String,
    http: reqwest::Client,
}

impl Drop for Downstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Downstream {
    pub async fn start() -> Downstream {
        let bin = scim2_server_bin();
        let python = bin.parent().unwrap().join("python");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Run the module through the environment's interpreter (its console script names the
        // directory it was installed in).
        let child = Command::new(python)
            .args([
                "-c",
                "import sys; from scim2_server.testserver.cli import main; sys.exit(main())",
            ])
            .args(["--port", &port.to_string(), "--bearer-token", TOKEN])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scim2-server");
        let d = Downstream {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..300 {
            if let Ok(r) = d
                .http
                .get(format!("{}/ServiceProviderConfig", d.url))
                .bearer_auth(TOKEN)
                .send()
                .await
                && r.status().is_success()
            {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("scim2-server did not start on {}", d.url);
    }

    pub async fn users(&self) -> Vec<Value> {
        let r: Value = self
            .http
            .get(format!("{}/Users?count=1000", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["Resources"].as_array().cloned().unwrap_or_default()
    }

    pub async fn user_named(&self, name: &str) -> Vec<Value> {
        self.users()
            .await
            .into_iter()
            .filter(|u| u["userName"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .collect()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/{path}", self.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.json().await.unwrap()
    }

    pub async fn patch(&self, path: &str, ops: Value) {
        let r = self
            .http
            .patch(format!("{}/{path}", self.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/scim+json")
            .body(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops}).to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    pub async fn delete(&self, path: &str) {
        let r = self
            .http
            .delete(format!("{}/{path}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/{path}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}
