//! `rollcall doctor`: what would stop `rollcall serve` from starting or from serving identity
//! providers correctly, in plain words, one line per check, without changing anything (no
//! migration is applied, no key file is created).

use crate::{Settings, StoreUse, secrets};
use rollcall_scim::schema::SchemaRegistry;
use rollcall_server::admin::Admin;
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Status,
    /// What was found.
    pub message: String,
    /// What to do about it, when something should be done.
    pub fix: Option<String>,
}

fn check(check: &'static str, status: Status, message: impl Into<String>, fix: Option<String>) -> Check {
    Check {
        check,
        status,
        message: message.into(),
        fix,
    }
}

/// Runs every check on `settings` (the error that loading them gave, if any); prints them; fails
/// when one failed.
pub async fn run(settings: Result<Settings, String>, json: bool) -> Result<(), String> {
    let checks = checks(settings).await;
    if json {
        let ok = checks.iter().all(|c| c.status != Status::Fail);
        println!("{}", serde_json::json!({"ok": ok, "checks": checks}));
    } else {
        for c in &checks {
            let status = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "fail",
            };
            match &c.fix {
                Some(fix) => println!("{status}  {}: {} -> {fix}", c.check, c.message),
                None => println!("{status}  {}: {}", c.check, c.message),
            }
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if failed > 0 {
        return Err(format!("{failed} of {} checks failed", checks.len()));
    }
    Ok(())
}

async fn checks(settings: Result<Settings, String>) -> Vec<Check> {
    let mut out = Vec::new();
    let s = match settings {
        Ok(s) => s,
        Err(e) => {
            out.push(check(
                "settings",
                Status::Fail,
                e,
                Some("correct the configuration file or the ROLLCALL_* variable it names".into()),
            ));
            return out;
        }
    };
    // The settings as `serve` checks them.
    let problems: Vec<String> = [
        s.activity().err(),
        s.resource_limits().err(),
        crate::webhook_config(&s).err(),
        s.http_limits().err(),
    ]
    .into_iter()
    .flatten()
    .collect();
    out.push(if problems.is_empty() {
        check(
            "settings",
            Status::Ok,
            "the settings load and are within their bounds",
            None,
        )
    } else {
        check(
            "settings",
            Status::Fail,
            problems.join("; "),
            Some("correct them in the configuration file or the ROLLCALL_* variables".into()),
        )
    });
    out.push(match s.tls() {
        Ok(Some(_)) => check(
            "tls",
            Status::Ok,
            format!(
                "serve uses HTTPS with the certificate in {} and its key",
                s.tls_cert_file.as_deref().unwrap_or_else(|| std::path::Path::new("")).display()
            ),
            None,
        ),
        Ok(None) => check(
            "tls",
            Status::Ok,
            "not set: serve speaks plain HTTP (put it behind a proxy that terminates TLS, or set --tls-cert and --tls-key)",
            None,
        ),
        Err(e) => check(
            "tls",
            Status::Fail,
            e,
            Some("give both files, PEM, readable by the user serve runs as".into()),
        ),
    });

    // The database: reachable, its migrations those of this version.
    let db = crate::redact_url(&s.database);
    let postgres = secrets::is_postgres(&s.database);
    if let Err(e) = crate::check_database_exists(&s.database, false) {
        out.push(check(
            "database",
            Status::Fail,
            e,
            Some("`rollcall serve` creates it on its first start".into()),
        ));
        return skipped(out, "the database does not exist");
    }
    let schema = match rollcall_store::schema::schema_status(&s.database).await {
        Ok(schema) => schema,
        Err(e) => {
            out.push(check(
                "database",
                Status::Fail,
                format!("cannot open {db}: {e}"),
                Some(if postgres {
                    "check the URL, that PostgreSQL runs and accepts this user, and that the database exists".into()
                } else {
                    "check the path and that this user may read the file".into()
                }),
            ));
            return skipped(out, "the database cannot be opened");
        }
    };
    out.push(check("database", Status::Ok, format!("{db} is reachable"), None));
    let version = env!("CARGO_PKG_VERSION");
    if !schema.unknown.is_empty() {
        out.push(check(
            "migrations",
            Status::Fail,
            format!(
                "the database has migrations this version ({version}) does not know ({}): a newer Rollcall wrote it",
                join(&schema.unknown)
            ),
            Some("run the Rollcall version that last served this database, or a newer one".into()),
        ));
        return skipped(out, "the database is newer than this version");
    }
    if !schema.damaged.is_empty() {
        out.push(check(
            "migrations",
            Status::Fail,
            format!(
                "migrations {} of the database did not complete or differ from this version's",
                join(&schema.damaged)
            ),
            Some("restore a backup taken before the failed upgrade (docs/operations.md)".into()),
        ));
        return skipped(out, "the database's migrations are damaged");
    }
    if !schema.pending.is_empty() {
        out.push(check(
            "migrations",
            Status::Warn,
            format!(
                "{} migrations of this version are not applied yet (database at {}, this version at {})",
                schema.pending.len(),
                schema.applied,
                schema.latest_known
            ),
            Some("`rollcall serve` applies them when it starts; take a backup first (docs/operations.md)".into()),
        ));
        return skipped(out, "the database's migrations are not applied yet");
    }
    out.push(check(
        "migrations",
        Status::Ok,
        format!(
            "all {} applied, none newer than this version ({version})",
            schema.applied
        ),
        None,
    ));

    // Up to date: opening the store changes nothing.
    let store = match crate::open_store(&s, Arc::new(SchemaRegistry::standard()), StoreUse::Command).await {
        Ok((store, _)) => store,
        Err(e) => {
            out.push(check("database", Status::Fail, e, None));
            return skipped(out, "the database cannot be opened");
        }
    };
    out.push(secrets_check(&s, &store).await);
    out.push(public_url_check(&s, &store).await);
    out
}

fn join(versions: &[i64]) -> String {
    versions.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

/// The checks that need a usable database, marked as not done.
fn skipped(mut out: Vec<Check>, why: &str) -> Vec<Check> {
    for name in ["secrets key", "public URL"] {
        out.push(check(name, Status::Warn, format!("not checked: {why}"), None));
    }
    out
}

async fn secrets_check(s: &Settings, store: &Arc<dyn rollcall_store::Store>) -> Check {
    let name = "secrets key";
    let keys = secrets::KeyConfig::new(s.secrets_key_file.clone(), &s.database, crate::sqlite_file(&s.database));
    let inventory = match store.secret_inventory().await {
        Ok(i) => i,
        Err(e) => return check(name, Status::Fail, format!("cannot read the stored secrets: {e}"), None),
    };
    let configured = match keys.key() {
        Ok(k) => k,
        Err(e) => return check(name, Status::Fail, e, Some(secrets::HOW_TO_SET.into())),
    };
    let opening = configured
        .as_ref()
        .map(|(k, _)| rollcall_store::secrets::SecretBox::new(k.clone()));
    if let Err(e) = secrets::check(&inventory, opening.as_ref(), configured.as_ref().map(|c| &c.1)) {
        return check(
            name,
            Status::Fail,
            e,
            Some(
                "serve refuses to start like this; `rollcall secrets status` shows the keys the secrets are under"
                    .into(),
            ),
        );
    }
    match &configured {
        Some((k, origin)) => check(
            name,
            Status::Ok,
            format!(
                "key {} (from {origin}) opens the {} stored secrets{}",
                k.id(),
                inventory.sealed(),
                if inventory.clear > 0 {
                    format!("; {} in clear are encrypted when serve starts", inventory.clear)
                } else {
                    String::new()
                }
            ),
            None,
        ),
        None if secrets::is_postgres(&s.database) => check(
            name,
            Status::Fail,
            "no secrets key is configured, and on PostgreSQL serve requires one (every node the same)",
            Some(format!(
                "`rollcall secrets generate-key --out FILE`, then {}",
                secrets::HOW_TO_SET
            )),
        ),
        None => check(
            name,
            Status::Warn,
            format!(
                "no secrets key is configured: serve will create {}",
                keys.default_file()
                    .map(|f| f.display().to_string())
                    .unwrap_or_else(|| "a throwaway one".into())
            ),
            Some("keep a copy of that file apart from the database's backups".into()),
        ),
    }
}

async fn public_url_check(s: &Settings, store: &Arc<dyn rollcall_store::Store>) -> Check {
    let name = "public URL";
    let recorded = match Admin::recorded_public_url(store).await {
        Ok(r) => r,
        Err(e) => {
            return check(
                name,
                Status::Fail,
                format!("cannot read the recorded public URL: {e}"),
                None,
            );
        }
    };
    let configured = s.public_url.as_deref().map(str::trim).filter(|u| !u.is_empty());
    match (configured, recorded) {
        (Some(url), _) if !(url.starts_with("https://") || url.starts_with("http://")) => check(
            name,
            Status::Fail,
            format!("the configured public URL {url:?} is not an http:// or https:// URL"),
            Some("set ROLLCALL_PUBLIC_URL (public_url) to the URL identity providers reach the service at".into()),
        ),
        (Some(url), Some(r)) if r.value.trim_end_matches('/') != url.trim_end_matches('/') => check(
            name,
            Status::Warn,
            format!(
                "configured as {url}, but the last `rollcall serve` recorded {} ({})",
                r.value,
                rollcall_server::service::rfc3339(r.updated_us)
            ),
            Some("restart the nodes with this setting, and give every node the same public URL".into()),
        ),
        (Some(url), _) => check(name, Status::Ok, format!("{url} (configured)"), None),
        (None, Some(r)) => check(
            name,
            Status::Warn,
            format!(
                "not configured here; `rollcall serve` recorded {} ({})",
                r.value,
                rollcall_server::service::rfc3339(r.updated_us)
            ),
            Some("set ROLLCALL_PUBLIC_URL (public_url) where serve runs, so that SCIM base URLs and meta.location do not depend on the listen address".into()),
        ),
        (None, None) => check(
            name,
            Status::Warn,
            format!(
                "not configured, and no `rollcall serve` has recorded one: serve would use http://{}",
                s.listen
            ),
            Some("set ROLLCALL_PUBLIC_URL (public_url) to the URL identity providers reach the service at".into()),
        ),
    }
}
