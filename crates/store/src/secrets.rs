//! Secrets at rest: every secret Rollcall must read back (webhook signing secrets, directory
//! connectors' service account keys; outbound provisioning credentials as they come) is stored sealed with
//! AES-256-GCM under a key the operator gives, never in clear. Tokens and API keys are not secrets
//! of this kind: Rollcall never reads them back, so they are kept as SHA-256 hashes.
//!
//! A sealed value is self-describing text, `enc:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`:
//!
//! - `v1`: this format (AES-256-GCM, 96-bit random nonce per value, 128-bit tag);
//! - the key id: the first 8 bytes of a SHA-256 of the key, in hex, so that a wrong key is named as
//!   such (not as a corrupt value), and a rotation can tell values under the old key from the new;
//! - the associated data binds the value to where it is stored ([`SecretColumn::context`], e.g.
//!   `webhook_secret:<endpoint id>`) and to its header: a value copied into another row, or under
//!   another header, does not open.
//!
//! [`SecretBox`] seals with its primary key and opens with any of its keys (the primary and, during
//! a rotation, previous ones). Values written before encryption at rest existed are clear text
//! (anything not starting with `enc:`); they are read as they are and sealed by
//! [`crate::Store::reseal_secrets`], which `rollcall serve` runs when it starts.
//!
//! Every column that holds such a secret is listed in [`COLUMNS`]: the inventory, the start-up
//! migration and key rotation work from that list, so a new kind of secret is covered by adding
//! its column there (and sealing it on write, opening it on read, with its context).

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use zeroize::Zeroizing;

use crate::sql::Dialect;

/// What every sealed value starts with.
pub const SEALED_PREFIX: &str = "enc:";
/// The current format's prefix.
const V1_PREFIX: &str = "enc:v1:";
/// Bytes of the key's SHA-256 that identify it (16 hex characters).
const KEY_ID_BYTES: usize = 8;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
/// Key length: AES-256.
pub const KEY_BYTES: usize = 32;

/// Why a key could not be read, or a secret could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The key text is not 32 bytes in base64 or hex.
    #[error("{0}")]
    InvalidKey(String),
    /// A secret is to be written but no key is configured.
    #[error("no secrets key is configured, so {context} cannot be stored (secrets are never stored in clear)")]
    NoKeyToSeal { context: String },
    /// A stored secret is sealed but no key is configured.
    #[error("{context} is encrypted under key {key_id}, and no secrets key is configured")]
    NoKey { context: String, key_id: String },
    /// A stored secret is sealed under a key that is not configured.
    #[error("{context} is encrypted under key {key_id}, not under the configured key ({configured})")]
    WrongKey {
        context: String,
        key_id: String,
        configured: String,
    },
    /// The key matches but the value does not open: altered, or copied from another row.
    #[error("{context} does not decrypt under key {key_id}: the stored value was altered or belongs to another row")]
    Tampered { context: String, key_id: String },
    /// Not a value this version can read.
    #[error("{context} is not a readable sealed value: {detail}")]
    Malformed { context: String, detail: String },
    /// The operating system's random source failed.
    #[error("no random bytes from the operating system: {0}")]
    Random(String),
}

/// A 256-bit key. Its bytes are wiped from memory when it is dropped and never printed: `Debug`
/// shows the key id only.
#[derive(Clone)]
pub struct SecretKey {
    bytes: Zeroizing<[u8; KEY_BYTES]>,
    id: String,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// A new random key from the operating system's random source.
    pub fn generate() -> Result<SecretKey, SecretError> {
        let key = Key::<Aes256Gcm>::try_generate().map_err(|e| SecretError::Random(e.to_string()))?;
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        bytes.copy_from_slice(key.as_slice());
        Ok(SecretKey::from_bytes(bytes))
    }

    fn from_bytes(bytes: Zeroizing<[u8; KEY_BYTES]>) -> SecretKey {
        let digest = Sha256::new()
            .chain_update(b"rollcall secrets key id\0")
            .chain_update(bytes.as_slice())
            .finalize();
        let id = hex::encode(&digest[..KEY_ID_BYTES]);
        SecretKey { bytes, id }
    }

    /// A key from text: 32 bytes in base64 (standard or URL-safe, padded or not) or in hex (64
    /// characters). Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<SecretKey, SecretError> {
        let text = text.trim();
        let decoded: Option<Zeroizing<Vec<u8>>> =
            if text.len() == KEY_BYTES * 2 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                hex::decode(text).ok().map(Zeroizing::new)
            } else {
                [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                    .iter()
                    .find_map(|engine| engine.decode(text).ok())
                    .map(Zeroizing::new)
            };
        match decoded {
            Some(d) if d.len() == KEY_BYTES => {
                let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
                bytes.copy_from_slice(&d);
                Ok(SecretKey::from_bytes(bytes))
            }
            Some(d) => Err(SecretError::InvalidKey(format!(
                "a secrets key is 32 bytes, not {}: generate one with `rollcall secrets generate-key`",
                d.len()
            ))),
            None => Err(SecretError::InvalidKey(
                "a secrets key is 32 bytes in base64 (44 characters) or hex (64 characters): generate one with \
                 `rollcall secrets generate-key`"
                    .into(),
            )),
        }
    }

    /// A key from a file holding its text (see [`SecretKey::parse`]).
    pub fn read_file(path: &Path) -> Result<SecretKey, SecretError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            SecretError::InvalidKey(format!("cannot read the secrets key file {}: {e}", path.display()))
        })?);
        SecretKey::parse(&text)
            .map_err(|e| SecretError::InvalidKey(format!("secrets key file {}: {e}", path.display())))
    }

    /// The key id stored with every value it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as standard base64 (44 characters), the form [`SecretKey::parse`] reads.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.bytes.as_slice()))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(*self.bytes))
    }
}

/// Seals with its primary key; opens with the primary or any previous key.
#[derive(Clone, Debug)]
pub struct SecretBox {
    primary: SecretKey,
    previous: Vec<SecretKey>,
}

/// The associated data of a value: its header and where it is stored.
fn associated_data(key_id: &str, context: &str) -> Vec<u8> {
    format!("{V1_PREFIX}{key_id}:{context}").into_bytes()
}

/// What a stored value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored<'a> {
    /// Written before encryption at rest.
    Clear,
    /// Sealed under the key with this id.
    Sealed { key_id: &'a str },
}

/// Tells a sealed value from a clear one; `Err` for a value that starts like a sealed one but
/// cannot be read by this version (another format version, or damaged).
pub fn classify(stored: &str) -> Result<Stored<'_>, String> {
    if !stored.starts_with(SEALED_PREFIX) {
        return Ok(Stored::Clear);
    }
    let Some(rest) = stored.strip_prefix(V1_PREFIX) else {
        return Err("an unknown format version (written by a newer Rollcall?)".into());
    };
    match rest.split_once(':') {
        Some((key_id, payload))
            if key_id.len() == KEY_ID_BYTES * 2
                && key_id.bytes().all(|b| b.is_ascii_hexdigit())
                && !payload.is_empty() =>
        {
            Ok(Stored::Sealed { key_id })
        }
        _ => Err("not enc:v1:<key id>:<data>".into()),
    }
}

impl SecretBox {
    pub fn new(primary: SecretKey) -> SecretBox {
        SecretBox {
            primary,
            previous: Vec::new(),
        }
    }

    /// Also opens values sealed under `key` (a key being rotated away from). Its id must differ
    /// from the keys already there; a duplicate is ignored.
    pub fn with_previous(mut self, key: SecretKey) -> SecretBox {
        if key.id != self.primary.id && !self.previous.iter().any(|k| k.id == key.id) {
            self.previous.push(key);
        }
        self
    }

    /// The key new values are sealed under.
    pub fn primary_key(&self) -> &SecretKey {
        &self.primary
    }

    /// The id of the key new values are sealed under.
    pub fn key_id(&self) -> &str {
        self.primary.id()
    }

    /// Every key id this box opens.
    pub fn key_ids(&self) -> Vec<&str> {
        std::iter::once(&self.primary)
            .chain(&self.previous)
            .map(SecretKey::id)
            .collect()
    }

    /// Whether this box opens values sealed under `key_id`.
    pub fn has_key(&self, key_id: &str) -> bool {
        self.key(key_id).is_some()
    }

    fn key(&self, key_id: &str) -> Option<&SecretKey> {
        std::iter::once(&self.primary)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
    }

    /// Seals `plaintext` for `context` (where it is stored) under the primary key, with a new
    /// random nonce.
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, SecretError> {
        let key = &self.primary;
        let nonce = Nonce::try_generate().map_err(|e| SecretError::Random(e.to_string()))?;
        let aad = associated_data(&key.id, context);
        let sealed = key
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            // Only for messages of more than 64 GiB.
            .map_err(|_| SecretError::Malformed {
                context: context.into(),
                detail: "too long to encrypt".into(),
            })?;
        let mut data = Vec::with_capacity(NONCE_BYTES + sealed.len());
        data.extend_from_slice(nonce.as_slice());
        data.extend_from_slice(&sealed);
        Ok(format!("{V1_PREFIX}{}:{}", key.id, URL_SAFE_NO_PAD.encode(data)))
    }

    /// Opens a sealed value stored for `context`. Clear text is refused here (see
    /// [`SecretKeys::open`], which reads it as it is).
    pub fn open(&self, stored: &str, context: &str) -> Result<String, SecretError> {
        let malformed = |detail: &str| SecretError::Malformed {
            context: context.into(),
            detail: detail.into(),
        };
        let key_id = match classify(stored).map_err(|e| malformed(&e))? {
            Stored::Sealed { key_id } => key_id,
            Stored::Clear => return Err(malformed("it is not sealed")),
        };
        let Some(key) = self.key(key_id) else {
            return Err(SecretError::WrongKey {
                context: context.into(),
                key_id: key_id.into(),
                configured: self.key_ids().join(", "),
            });
        };
        let payload = &stored[V1_PREFIX.len() + key_id.len() + 1..];
        let data = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| malformed("its data is not base64url"))?;
        if data.len() < NONCE_BYTES + TAG_BYTES {
            return Err(malformed("its data is too short"));
        }
        let (nonce, sealed) = data.split_at(NONCE_BYTES);
        let nonce = Nonce::try_from(nonce).map_err(|_| malformed("bad nonce"))?;
        let aad = associated_data(key_id, context);
        let plain = key
            .cipher()
            .decrypt(&nonce, Payload { msg: sealed, aad: &aad })
            .map_err(|_| SecretError::Tampered {
                context: context.into(),
                key_id: key_id.into(),
            })?;
        String::from_utf8(plain).map_err(|_| malformed("it is not UTF-8"))
    }
}

/// The keys a store seals and opens secrets with: none until they are set, once (a store opened
/// for something that touches no secret needs none).
#[derive(Clone, Default)]
pub struct SecretKeys(Arc<OnceLock<Arc<SecretBox>>>);

impl SecretKeys {
    /// Sets the keys; `false` when they were set already (they are left as they were).
    pub fn set(&self, keys: SecretBox) -> bool {
        self.0.set(Arc::new(keys)).is_ok()
    }

    pub fn get(&self) -> Option<&SecretBox> {
        self.0.get().map(|b| &**b)
    }

    /// Seals a secret to store for `context`.
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, SecretError> {
        match self.get() {
            Some(b) => b.seal(plaintext, context),
            None => Err(SecretError::NoKeyToSeal {
                context: context.into(),
            }),
        }
    }

    /// Reads a stored secret: opens a sealed one, returns a clear one (written before encryption
    /// at rest, and sealed at the next start of `rollcall serve`) as it is.
    pub fn open(&self, stored: &str, context: &str) -> Result<String, SecretError> {
        match (classify(stored), self.get()) {
            (Ok(Stored::Clear), _) => Ok(stored.to_string()),
            (Ok(Stored::Sealed { .. }), Some(b)) => b.open(stored, context),
            (Ok(Stored::Sealed { key_id }), None) => Err(SecretError::NoKey {
                context: context.into(),
                key_id: key_id.into(),
            }),
            (Err(detail), _) => Err(SecretError::Malformed {
                context: context.into(),
                detail,
            }),
        }
    }
}

/// A column that holds secrets, with the table's key and the purpose that goes into each value's
/// associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretColumn {
    pub table: &'static str,
    pub id_column: &'static str,
    pub column: &'static str,
    /// The first part of the context (`<purpose>:<row id>`).
    pub purpose: &'static str,
}

/// The purpose of webhook signing secrets, current and previous alike (both sign deliveries of
/// the same endpoint).
pub const WEBHOOK_SECRET: &str = "webhook_secret";

/// The context of an endpoint's signing secrets.
pub fn webhook_secret_context(endpoint_id: &str) -> String {
    format!("{WEBHOOK_SECRET}:{endpoint_id}")
}

/// Every column that holds secrets.
pub const COLUMNS: &[SecretColumn] = &[
    SecretColumn {
        table: "webhook_endpoints",
        id_column: "id",
        column: "secret",
        purpose: WEBHOOK_SECRET,
    },
    SecretColumn {
        table: "webhook_endpoints",
        id_column: "id",
        column: "previous_secret",
        purpose: WEBHOOK_SECRET,
    },
    SecretColumn {
        table: "directory_sources",
        id_column: "connection_id",
        column: "credentials",
        purpose: crate::directory_sync::DIRECTORY_CREDENTIALS,
    },
    SecretColumn {
        table: "provisioning_targets",
        id_column: "id",
        column: "credentials",
        purpose: crate::outbound::PROVISIONING_CREDENTIALS,
    },
];

impl SecretColumn {
    /// `table.column`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }

    /// The associated data of the value in row `id`.
    pub fn context(&self, id: &str) -> String {
        format!("{}:{id}", self.purpose)
    }

    /// Every stored value with its row id, for both databases (`lock`: `FOR UPDATE`, PostgreSQL).
    pub(crate) fn select_sql(&self, dialect: Dialect, lock: bool) -> String {
        let SecretColumn {
            table,
            id_column,
            column,
            ..
        } = self;
        let lock = if lock && dialect == Dialect::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        format!(
            "SELECT {id_column} AS id, {column} AS value FROM {table} WHERE {column} IS NOT NULL ORDER BY {id_column}{lock}"
        )
    }

    /// Replaces one value (`value`, `id`, the value read: it must not have changed).
    pub(crate) fn update_sql(&self, dialect: Dialect) -> String {
        let SecretColumn {
            table,
            id_column,
            column,
            ..
        } = self;
        let sql = format!("UPDATE {table} SET {column} = $1 WHERE {id_column} = $2 AND {column} = $3");
        match dialect {
            Dialect::Postgres => sql,
            Dialect::Sqlite => sql.replace('$', "?"),
        }
    }
}

/// What secrets a database holds, without reading any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SecretInventory {
    /// Every stored secret.
    pub total: u64,
    /// Stored in clear (written before encryption at rest).
    pub clear: u64,
    /// Sealed, by key id.
    pub by_key: BTreeMap<String, u64>,
    /// Values this version cannot read (another format version, or damaged).
    pub unreadable: u64,
    /// By column (`table.column`).
    pub by_column: BTreeMap<String, u64>,
}

impl SecretInventory {
    pub(crate) fn add(&mut self, column: &SecretColumn, stored: &str) {
        self.total += 1;
        *self.by_column.entry(column.name()).or_default() += 1;
        match classify(stored) {
            Ok(Stored::Clear) => self.clear += 1,
            Ok(Stored::Sealed { key_id }) => *self.by_key.entry(key_id.to_string()).or_default() += 1,
            Err(_) => self.unreadable += 1,
        }
    }

    /// How many secrets are sealed.
    pub fn sealed(&self) -> u64 {
        self.by_key.values().sum()
    }

    /// The key ids of sealed secrets that `keys` cannot open (all of them without keys).
    pub fn missing_keys(&self, keys: Option<&SecretBox>) -> Vec<&str> {
        self.by_key
            .keys()
            .map(String::as_str)
            .filter(|id| !keys.is_some_and(|k| k.has_key(id)))
            .collect()
    }
}

/// Which stored secrets [`crate::Store::reseal_secrets`] rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// Those stored in clear (the migration `rollcall serve` runs when it starts).
    Clear,
    /// Every one not already sealed under the new primary key (a key rotation).
    NotUnderPrimary,
}

/// The new stored text of one value, or `None` when `which` leaves it as it is. Opens with `from`
/// (the store's keys) and seals under `to`'s primary key.
pub(crate) fn reseal_value(
    from: &SecretKeys,
    to: &SecretBox,
    which: Reseal,
    stored: &str,
    context: &str,
) -> Result<Option<String>, SecretError> {
    let rewrite = match (which, classify(stored)) {
        (_, Err(detail)) => {
            return Err(SecretError::Malformed {
                context: context.into(),
                detail,
            });
        }
        (_, Ok(Stored::Clear)) => true,
        (Reseal::Clear, Ok(Stored::Sealed { .. })) => false,
        (Reseal::NotUnderPrimary, Ok(Stored::Sealed { key_id })) => key_id != to.key_id(),
    };
    if !rewrite {
        return Ok(None);
    }
    let plain = Zeroizing::new(from.open(stored, context)?);
    to.seal(&plain, context).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::parse(&hex::encode([byte; KEY_BYTES])).unwrap()
    }

    #[test]
    fn round_trip_with_a_new_nonce_each_time() {
        let b = SecretBox::new(key(1));
        let a = b.seal("whsec_abc", "webhook_secret:w1").unwrap();
        let again = b.seal("whsec_abc", "webhook_secret:w1").unwrap();
        assert_ne!(a, again, "a random nonce per value");
        assert!(a.starts_with(&format!("enc:v1:{}:", b.key_id())), "{a}");
        assert!(!a.contains("whsec_abc"));
        assert_eq!(b.open(&a, "webhook_secret:w1").unwrap(), "whsec_abc");
        assert_eq!(b.open(&again, "webhook_secret:w1").unwrap(), "whsec_abc");
        assert_eq!(classify(&a), Ok(Stored::Sealed { key_id: b.key_id() }));
        // An empty secret and a long one.
        assert_eq!(b.open(&b.seal("", "c").unwrap(), "c").unwrap(), "");
        let long = "x".repeat(10_000);
        assert_eq!(b.open(&b.seal(&long, "c").unwrap(), "c").unwrap(), long);
    }

    #[test]
    fn wrong_key_is_named_not_taken_for_damage() {
        let sealed = SecretBox::new(key(1)).seal("whsec_abc", "ctx").unwrap();
        let other = SecretBox::new(key(2));
        match other.open(&sealed, "ctx") {
            Err(SecretError::WrongKey { key_id, configured, .. }) => {
                assert_eq!(key_id, key(1).id());
                assert_eq!(configured, key(2).id());
            }
            other => panic!("{other:?}"),
        }
        // With the old key as a previous key, it opens.
        let both = SecretBox::new(key(2)).with_previous(key(1));
        assert_eq!(both.open(&sealed, "ctx").unwrap(), "whsec_abc");
        assert_eq!(both.key_id(), key(2).id());
        assert_eq!(both.key_ids(), vec![key(2).id(), key(1).id()]);
    }

    #[test]
    fn tampered_ciphertext_does_not_open() {
        let b = SecretBox::new(key(1));
        let sealed = b.seal("whsec_abc", "ctx").unwrap();
        let (head, payload) = sealed.rsplit_once(':').unwrap();
        let mut data = URL_SAFE_NO_PAD.decode(payload).unwrap();
        for i in [0, NONCE_BYTES, data.len() - 1] {
            let mut d = data.clone();
            d[i] ^= 1;
            let altered = format!("{head}:{}", URL_SAFE_NO_PAD.encode(&d));
            assert!(
                matches!(b.open(&altered, "ctx"), Err(SecretError::Tampered { .. })),
                "byte {i}"
            );
        }
        data.truncate(NONCE_BYTES + TAG_BYTES - 1);
        let short = format!("{head}:{}", URL_SAFE_NO_PAD.encode(&data));
        assert!(matches!(b.open(&short, "ctx"), Err(SecretError::Malformed { .. })));
        assert!(matches!(
            b.open(&format!("{head}:!!!"), "ctx"),
            Err(SecretError::Malformed { .. })
        ));
        // Another key id in the header (the associated data covers it too).
        let other_id = key(3).id().to_string();
        let relabelled = sealed.replace(b.key_id(), &other_id);
        let both = SecretBox::new(key(1)).with_previous(key(3));
        assert!(matches!(
            both.open(&relabelled, "ctx"),
            Err(SecretError::Tampered { .. })
        ));
    }

    #[test]
    fn wrong_associated_data_does_not_open() {
        let b = SecretBox::new(key(1));
        let sealed = b.seal("whsec_abc", &webhook_secret_context("w1")).unwrap();
        assert!(matches!(
            b.open(&sealed, &webhook_secret_context("w2")),
            Err(SecretError::Tampered { .. })
        ));
        assert!(matches!(
            b.open(&sealed, "outbound:w1"),
            Err(SecretError::Tampered { .. })
        ));
    }

    #[test]
    fn keys_parse_from_base64_and_hex() {
        let k = SecretKey::generate().unwrap();
        let text = k.to_base64();
        assert_eq!(text.len(), 44);
        assert_eq!(SecretKey::parse(&text).unwrap().id(), k.id());
        assert_eq!(SecretKey::parse(&format!("  {}\n", *text)).unwrap().id(), k.id());
        let raw = STANDARD.decode(text.as_bytes()).unwrap();
        assert_eq!(SecretKey::parse(&hex::encode(&raw)).unwrap().id(), k.id());
        assert_eq!(SecretKey::parse(&URL_SAFE_NO_PAD.encode(&raw)).unwrap().id(), k.id());
        assert_ne!(SecretKey::generate().unwrap().id(), k.id());
        assert_eq!(k.id().len(), 16);
        for bad in [
            "",
            "short",
            &STANDARD.encode([0u8; 16]),
            &hex::encode([0u8; 31]),
            &"g".repeat(64),
        ] {
            assert!(
                matches!(SecretKey::parse(bad), Err(SecretError::InvalidKey(_))),
                "{bad}"
            );
        }
        // Debug never shows the key.
        let shown = format!("{k:?}");
        assert!(shown.contains(k.id()) && !shown.contains(text.as_str()), "{shown}");
    }

    #[test]
    fn store_keys_read_clear_text_and_refuse_to_seal_without_a_key() {
        let keys = SecretKeys::default();
        assert_eq!(keys.open("whsec_old", "ctx").unwrap(), "whsec_old");
        assert!(matches!(
            keys.seal("whsec_new", "ctx"),
            Err(SecretError::NoKeyToSeal { .. })
        ));
        let sealed = SecretBox::new(key(1)).seal("whsec_abc", "ctx").unwrap();
        assert!(matches!(keys.open(&sealed, "ctx"), Err(SecretError::NoKey { .. })));
        assert!(keys.set(SecretBox::new(key(1))));
        assert!(!keys.set(SecretBox::new(key(2))), "set once");
        assert_eq!(keys.open(&sealed, "ctx").unwrap(), "whsec_abc");
        assert!(matches!(
            keys.open("enc:v9:x", "ctx"),
            Err(SecretError::Malformed { .. })
        ));
    }

    #[test]
    fn reseal_rewrites_what_it_is_asked_to() {
        let old = SecretBox::new(key(1));
        let new = SecretBox::new(key(2));
        let from = SecretKeys::default();
        from.set(SecretBox::new(key(1)).with_previous(key(2)));
        let under_old = old.seal("whsec_a", "ctx").unwrap();
        let under_new = new.seal("whsec_b", "ctx").unwrap();
        assert_eq!(
            reseal_value(&from, &new, Reseal::Clear, &under_old, "ctx").unwrap(),
            None
        );
        let cleared = reseal_value(&from, &new, Reseal::Clear, "whsec_c", "ctx")
            .unwrap()
            .unwrap();
        assert_eq!(new.open(&cleared, "ctx").unwrap(), "whsec_c");
        let rotated = reseal_value(&from, &new, Reseal::NotUnderPrimary, &under_old, "ctx")
            .unwrap()
            .unwrap();
        assert_eq!(new.open(&rotated, "ctx").unwrap(), "whsec_a");
        assert_eq!(
            reseal_value(&from, &new, Reseal::NotUnderPrimary, &under_new, "ctx").unwrap(),
            None
        );
    }

    #[test]
    fn inventory_counts_without_reading() {
        let b = SecretBox::new(key(1));
        let mut inv = SecretInventory::default();
        inv.add(&COLUMNS[0], &b.seal("a", "c").unwrap());
        inv.add(&COLUMNS[1], &b.seal("b", "c").unwrap());
        inv.add(&COLUMNS[0], "whsec_clear");
        inv.add(&COLUMNS[0], "enc:v2:whatever");
        assert_eq!((inv.total, inv.clear, inv.sealed(), inv.unreadable), (4, 1, 2, 1));
        assert_eq!(inv.by_column["webhook_endpoints.secret"], 3);
        assert_eq!(inv.missing_keys(Some(&b)), Vec::<&str>::new());
        assert_eq!(inv.missing_keys(None), vec![b.key_id()]);
        assert_eq!(inv.missing_keys(Some(&SecretBox::new(key(2)))), vec![b.key_id()]);
    }

    #[test]
    fn statements_for_both_databases() {
        let c = &COLUMNS[0];
        assert_eq!(
            c.update_sql(Dialect::Sqlite),
            "UPDATE webhook_endpoints SET secret = ?1 WHERE id = ?2 AND secret = ?3"
        );
        assert!(c.update_sql(Dialect::Postgres).ends_with("secret = $3"));
        assert!(c.select_sql(Dialect::Postgres, true).ends_with("FOR UPDATE"));
        assert!(!c.select_sql(Dialect::Sqlite, true).contains("FOR UPDATE"));
        assert_eq!(c.context("w1"), webhook_secret_context("w1"));
    }
}
