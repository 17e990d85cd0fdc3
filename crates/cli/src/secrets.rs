//! The secrets key and the `rollcall secrets` commands ([`rollcall_store::secrets`]).
//!
//! The key comes from, in order: `ROLLCALL_SECRETS_KEY` (the key itself), the key file
//! (`--secrets-key-file`, `ROLLCALL_SECRETS_KEY_FILE` or `secrets_key_file` in the TOML file), or,
//! for a SQLite database, `rollcall-secrets.key` beside the database when it exists. `rollcall
//! serve` on a SQLite database with none of these, and no sealed secret in it, creates that file
//! (mode 0600) with a new key and says where; on PostgreSQL a key is required, since every node
//! must have the same one. `serve` refuses to start when the database holds secrets sealed under a
//! key it was not given, and seals the secrets it finds in clear.

use clap::Subcommand;
use rollcall_store::Store;
use rollcall_store::postgres::PostgresStore;
use rollcall_store::secrets::{Reseal, SecretBox, SecretInventory, SecretKey};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The variable that gives the key itself.
pub const KEY_VARIABLE: &str = "ROLLCALL_SECRETS_KEY";
/// The default key file's name, beside a SQLite database.
pub const DEFAULT_KEY_FILE: &str = "rollcall-secrets.key";

/// What to set, for messages.
pub const HOW_TO_SET: &str = "set ROLLCALL_SECRETS_KEY to the key, or ROLLCALL_SECRETS_KEY_FILE (--secrets-key-file, \
     secrets_key_file in the configuration file) to a file holding it";

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Show the configured key's id and the secrets the database holds, by key.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Re-encrypt every stored secret under a new key, in one transaction. Stop every `rollcall
    /// serve` first; then start them with the new key.
    RotateKey {
        /// File holding the new key (`rollcall secrets generate-key --out FILE` makes one).
        #[arg(long)]
        new_key_file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print a new random key (base64), or write it to a new file only its owner can read.
    GenerateKey {
        /// Write the key to this file (mode 0600) instead of printing it; refuses an existing file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Where the key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    Variable,
    File(PathBuf),
    /// `rollcall-secrets.key` beside the SQLite database.
    DefaultFile(PathBuf),
    /// Created by this start of `serve`, in this file.
    Created(PathBuf),
    /// A throwaway key for a throwaway database (`sqlite::memory:`).
    Ephemeral,
}

impl std::fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyOrigin::Variable => write!(f, "{KEY_VARIABLE}"),
            KeyOrigin::File(p) => write!(f, "key file {}", p.display()),
            KeyOrigin::DefaultFile(p) => write!(f, "key file {} beside the database", p.display()),
            KeyOrigin::Created(p) => write!(f, "key file {}, created now", p.display()),
            KeyOrigin::Ephemeral => write!(f, "a throwaway key for the in-memory database"),
        }
    }
}

/// How the key is configured, read once.
#[derive(Clone)]
pub struct KeyConfig {
    variable: Option<Zeroizing<String>>,
    file: Option<PathBuf>,
    /// The SQLite database's file, `None` for PostgreSQL or an in-memory database.
    sqlite_file: Option<PathBuf>,
    postgres: bool,
}

impl KeyConfig {
    pub fn new(file: Option<PathBuf>, database: &str, sqlite_file: Option<PathBuf>) -> KeyConfig {
        let variable = std::env::var(KEY_VARIABLE)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(Zeroizing::new);
        KeyConfig {
            variable,
            file: file.filter(|f| !f.as_os_str().is_empty()),
            sqlite_file,
            postgres: is_postgres(database),
        }
    }

    /// `rollcall-secrets.key` beside the SQLite database (an absolute path, for messages).
    pub fn default_file(&self) -> Option<PathBuf> {
        let db = self.sqlite_file.as_ref()?;
        let dir = db
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file = dir.join(DEFAULT_KEY_FILE);
        Some(std::path::absolute(&file).unwrap_or(file))
    }

    /// The configured key, if any.
    pub fn key(&self) -> Result<Option<(SecretKey, KeyOrigin)>, String> {
        match (&self.variable, &self.file) {
            (Some(_), Some(_)) => Err(format!(
                "both {KEY_VARIABLE} and a secrets key file are set; set one of them"
            )),
            (Some(text), None) => SecretKey::parse(text)
                .map(|k| Some((k, KeyOrigin::Variable)))
                .map_err(|e| format!("{KEY_VARIABLE}: {e}")),
            (None, Some(file)) => {
                warn_if_readable_by_others(file);
                SecretKey::read_file(file)
                    .map(|k| Some((k, KeyOrigin::File(file.clone()))))
                    .map_err(|e| e.to_string())
            }
            (None, None) => match self.default_file().filter(|f| f.exists()) {
                Some(file) => {
                    warn_if_readable_by_others(&file);
                    SecretKey::read_file(&file)
                        .map(|k| Some((k, KeyOrigin::DefaultFile(file))))
                        .map_err(|e| e.to_string())
                }
                None => Ok(None),
            },
        }
    }
}

pub fn is_postgres(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", m.permissions().mode() & 0o777),
            "the secrets key file can be read by other users than its owner: chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// Writes a new file that only its owner can read (mode 0600); refuses an existing one.
pub fn write_new_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

fn key_ids(ids: &[&str]) -> String {
    ids.join(", ")
}

/// Checks `inventory` against `keys`: every sealed secret must open.
pub(crate) fn check(
    inventory: &SecretInventory,
    keys: Option<&SecretBox>,
    origin: Option<&KeyOrigin>,
) -> Result<(), String> {
    if inventory.unreadable > 0 {
        return Err(format!(
            "the database holds {} secrets this version cannot read (written by a newer Rollcall, or damaged)",
            inventory.unreadable
        ));
    }
    let missing = inventory.missing_keys(keys);
    if missing.is_empty() {
        return Ok(());
    }
    let count: u64 = missing.iter().map(|id| inventory.by_key[*id]).sum();
    Err(match keys {
        None => format!(
            "the database holds {count} secrets encrypted under key {} and no secrets key is configured: {HOW_TO_SET}, \
             with the key they were encrypted with",
            key_ids(&missing)
        ),
        Some(k) => format!(
            "the database holds {count} secrets encrypted under key {}, but the configured key{} is key {}: \
             {HOW_TO_SET}, with the key they were encrypted with",
            key_ids(&missing),
            origin.map(|o| format!(" (from {o})")).unwrap_or_default(),
            key_ids(&k.key_ids())
        ),
    })
}

/// Gives `store` its keys before `rollcall serve` starts: the configured key, or (SQLite only) a
/// new one in the default file; refuses what cannot work; seals the secrets stored in clear.
pub async fn prepare_serve(config: &KeyConfig, store: &Arc<dyn Store>) -> Result<(), String> {
    let inventory = store.secret_inventory().await.map_err(|e| e.to_string())?;
    let (key, origin) = match config.key()? {
        Some(k) => k,
        None => {
            check(&inventory, None, None)?;
            if config.postgres {
                return Err(format!(
                    "no secrets key is configured: on PostgreSQL every node must be given the same key; {HOW_TO_SET} \
                     (`rollcall secrets generate-key` makes one)"
                ));
            }
            match config.default_file() {
                None => (SecretKey::generate().map_err(|e| e.to_string())?, KeyOrigin::Ephemeral),
                Some(file) => {
                    let key = SecretKey::generate().map_err(|e| e.to_string())?;
                    write_new_private(&file, &format!("{}\n", *key.to_base64()))
                        .map_err(|e| format!("cannot write a new secrets key to {}: {e}", file.display()))?;
                    (key, KeyOrigin::Created(file))
                }
            }
        }
    };
    let keys = SecretBox::new(key);
    check(&inventory, Some(&keys), Some(&origin))?;
    if let KeyOrigin::Created(file) = &origin {
        tracing::warn!(
            key_file = %file.display(),
            key_id = keys.key_id(),
            "no secrets key configured: created one to encrypt the secrets Rollcall stores (webhook signing secrets, Google Workspace service account keys); \
             keep a copy apart from the database's backups, and in production give the key with \
             ROLLCALL_SECRETS_KEY_FILE"
        );
    }
    store.set_secret_keys(keys.clone());
    if inventory.clear > 0 {
        let sealed = store
            .reseal_secrets(&keys, Reseal::Clear)
            .await
            .map_err(|e| format!("cannot encrypt the secrets stored in clear: {e}"))?;
        tracing::info!(
            secrets = sealed,
            key_id = keys.key_id(),
            "encrypted the secrets that were stored in clear"
        );
    }
    tracing::info!(key_id = keys.key_id(), source = %origin, secrets = inventory.total, "secrets key");
    Ok(())
}

/// The configured key set on `store` for a command other than `serve` (none is created).
pub fn use_configured(config: &KeyConfig, store: &Arc<dyn Store>) -> Result<Option<KeyOrigin>, String> {
    Ok(config.key()?.map(|(key, origin)| {
        store.set_secret_keys(SecretBox::new(key));
        origin
    }))
}

/// `rollcall secrets status`.
pub async fn status(config: &KeyConfig, store: &Arc<dyn Store>, as_json: bool) -> Result<(), String> {
    let inventory = store.secret_inventory().await.map_err(|e| e.to_string())?;
    let configured = config.key()?;
    let keys = configured.as_ref().map(|(k, _)| SecretBox::new(k.clone()));
    let problem = check(&inventory, keys.as_ref(), configured.as_ref().map(|c| &c.1)).err();
    if as_json {
        println!(
            "{}",
            json!({
                "key_id": keys.as_ref().map(|k| k.key_id()),
                "key_source": configured.as_ref().map(|c| c.1.to_string()),
                "secrets": inventory,
                "problem": problem,
            })
        );
    } else {
        match &configured {
            Some((k, origin)) => println!("secrets key: {} (from {origin})", k.id()),
            None => println!("secrets key: none configured ({HOW_TO_SET})"),
        }
        let columns: Vec<String> = inventory.by_column.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        println!(
            "stored secrets: {}{}",
            inventory.total,
            if columns.is_empty() {
                String::new()
            } else {
                format!(" ({})", columns.join(", "))
            }
        );
        for (id, n) in &inventory.by_key {
            let note = if keys.as_ref().is_some_and(|k| k.has_key(id)) {
                "the configured key"
            } else {
                "NOT the configured key"
            };
            println!("  encrypted under key {id}: {n} ({note})");
        }
        if inventory.clear > 0 {
            println!(
                "  in clear: {} (written before encryption at rest; `rollcall serve` encrypts them when it starts)",
                inventory.clear
            );
        }
    }
    match problem {
        Some(p) => Err(p),
        None => Ok(()),
    }
}

/// `rollcall secrets rotate-key`: every secret resealed under the key in `new_key_file`, in one
/// transaction, refused while a server has the database open.
pub async fn rotate_key(
    config: &KeyConfig,
    store: &Arc<dyn Store>,
    postgres: Option<&PostgresStore>,
    new_key_file: &Path,
    as_json: bool,
) -> Result<(), String> {
    if let Some(pg) = postgres {
        let serving = pg.serving_connections().await.map_err(|e| e.to_string())?;
        if serving > 0 {
            return Err(format!(
                "`rollcall serve` nodes are connected to this database ({serving} connections): stop every node \
                 first, rotate, then start them with the new key"
            ));
        }
    }
    let new_key = SecretKey::read_file(new_key_file).map_err(|e| e.to_string())?;
    let configured = config.key()?;
    let inventory = store.secret_inventory().await.map_err(|e| e.to_string())?;
    // The store opens with the configured key and the new one (a rotation run again finds its
    // secrets under the new key already).
    let opening = match &configured {
        Some((old, _)) => SecretBox::new(old.clone()).with_previous(new_key.clone()),
        None => SecretBox::new(new_key.clone()),
    };
    check(&inventory, Some(&opening), configured.as_ref().map(|c| &c.1))?;
    store.set_secret_keys(opening);
    let target = SecretBox::new(new_key.clone());
    let count = store
        .reseal_secrets(&target, Reseal::NotUnderPrimary)
        .await
        .map_err(|e| e.to_string())?;
    let old_ids: Vec<&String> = inventory.by_key.keys().filter(|id| *id != new_key.id()).collect();
    // The quick start's key file follows the rotation, so that `serve` finds the new key there;
    // the old key is kept aside, for the backups taken before (they hold secrets under it).
    let mut replaced = None;
    if let Some((old, KeyOrigin::DefaultFile(file))) = &configured {
        let temp = file.with_extension(format!("key.new-{}", uuid::Uuid::new_v4().simple()));
        let aside = file.with_extension(format!("key.{}.old", old.id()));
        write_new_private(&aside, &format!("{}\n", *old.to_base64()))
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .and_then(|()| write_new_private(&temp, &format!("{}\n", *new_key.to_base64())))
            .and_then(|()| std::fs::rename(&temp, file))
            .map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                format!(
                    "the secrets are now encrypted under the key in {}, but {} could not be replaced with it ({e}): \
                     point --secrets-key-file (or ROLLCALL_SECRETS_KEY_FILE) at {}",
                    new_key_file.display(),
                    file.display(),
                    new_key_file.display()
                )
            })?;
        replaced = Some((file.clone(), aside));
    }
    if as_json {
        println!(
            "{}",
            json!({"resealed": count, "key_id": new_key.id(), "previous_key_ids": old_ids,
                   "key_file_replaced": replaced.as_ref().map(|f| f.0.display().to_string()),
                   "previous_key_file": replaced.as_ref().map(|f| f.1.display().to_string())})
        );
    } else {
        println!(
            "{count} secrets re-encrypted under key {} (from {}).",
            new_key.id(),
            if old_ids.is_empty() {
                "clear text or none".to_string()
            } else {
                old_ids.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            }
        );
        match &replaced {
            Some((f, aside)) => println!(
                "{} now holds the new key; start `rollcall serve` as before. The old key is in {}: keep it as \
                 long as you keep backups taken before now (their secrets are under it), then delete it.",
                f.display(),
                aside.display()
            ),
            None => println!(
                "Start every `rollcall serve` with the new key ({HOW_TO_SET}). Keep the old key as long as you keep \
                 backups taken before now (their secrets are under it), then destroy it."
            ),
        }
    }
    Ok(())
}

/// `rollcall secrets generate-key`.
pub fn generate_key(out: Option<&Path>) -> Result<(), String> {
    let key = SecretKey::generate().map_err(|e| e.to_string())?;
    match out {
        Some(path) => {
            write_new_private(path, &format!("{}\n", *key.to_base64()))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            println!("new secrets key {} written to {}", key.id(), path.display());
        }
        None => println!("{}", *key.to_base64()),
    }
    Ok(())
}
