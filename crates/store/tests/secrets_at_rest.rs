//! Secrets at rest on both databases: webhook signing secrets are stored sealed, read back as they
//! were written, bound to their row, counted by the inventory, migrated from clear text and
//! resealed under a new key in one transaction.

use rollcall_store::postgres::{PgSettings, PostgresStore};
use rollcall_store::secrets::{Reseal, SecretBox, SecretError, SecretKey};
use rollcall_store::sqlite::SqliteStore;
use rollcall_store::*;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, SqliteConnection};
use std::sync::Arc;

mod harness;
use harness::*;

/// Raw SQL on the database under the store, to see and change what it stores.
struct Raw(String);

impl Raw {
    async fn strings(&self, sql: &str) -> Vec<String> {
        if self.0.starts_with("postgres") {
            let mut c = PgConnection::connect(&self.0).await.unwrap();
            sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
                .fetch_all(&mut c)
                .await
                .unwrap()
        } else {
            let mut c = SqliteConnection::connect(&self.0).await.unwrap();
            sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
                .fetch_all(&mut c)
                .await
                .unwrap()
        }
    }

    async fn exec(&self, sql: &str) {
        if self.0.starts_with("postgres") {
            let mut c = PgConnection::connect(&self.0).await.unwrap();
            sqlx::query(AssertSqlSafe(sql.to_string()))
                .execute(&mut c)
                .await
                .unwrap();
        } else {
            let mut c = SqliteConnection::connect(&self.0).await.unwrap();
            sqlx::query(AssertSqlSafe(sql.to_string()))
                .execute(&mut c)
                .await
                .unwrap();
        }
    }

    /// The same database through another store, with `keys` (or none).
    async fn reopen(&self, keys: Option<SecretBox>) -> Arc<dyn Store> {
        if self.0.starts_with("postgres") {
            let s = PostgresStore::open(&self.0, registry(), PgSettings::default())
                .await
                .unwrap();
            if let Some(k) = keys {
                s.set_secret_keys(k);
            }
            Arc::new(s)
        } else {
            let s = SqliteStore::open(&self.0, registry()).await.unwrap();
            if let Some(k) = keys {
                s.set_secret_keys(k);
            }
            Arc::new(s)
        }
    }
}

fn new_webhook(url: &str, secret: &str) -> NewWebhook {
    NewWebhook {
        org_id: None,
        url: url.into(),
        description: String::new(),
        event_types: vec![],
        secret: secret.into(),
    }
}

fn secret_error(e: StoreError) -> SecretError {
    match e {
        StoreError::Secrets(s) => s,
        other => panic!("expected a secrets error, got {other}"),
    }
}

async fn secrets_are_sealed_bound_to_their_row_and_resealed(store: Arc<dyn Store>, url: String) {
    let raw = Raw(url);
    let keys = secret_keys();
    let a = store
        .create_webhook(new_webhook("https://a.example/h", "whsec_first_a"))
        .await
        .unwrap();
    let b = store
        .create_webhook(new_webhook("https://b.example/h", "whsec_first_b"))
        .await
        .unwrap();
    assert_eq!(a.secret, "whsec_first_a");
    // Read back as written, and stored sealed under the key, never in clear.
    assert_eq!(store.get_webhook(&a.id).await.unwrap().unwrap().secret, "whsec_first_a");
    let stored = raw.strings("SELECT secret FROM webhook_endpoints ORDER BY id").await;
    assert_eq!(stored.len(), 2);
    for s in &stored {
        assert!(s.starts_with(&format!("enc:v1:{}:", keys.key_id())), "{s}");
        assert!(!s.contains("whsec_"), "{s}");
    }
    // A rotation keeps the previous secret, sealed too.
    let rotated = store
        .rotate_webhook_secret(&a.id, "whsec_second_a", i64::MAX)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rotated.secret.as_str(), rotated.previous_secret.as_deref()),
        ("whsec_second_a", Some("whsec_first_a"))
    );
    let listed = store.list_webhooks(None).await.unwrap();
    assert_eq!(listed[0].signing_secrets(0), vec!["whsec_second_a", "whsec_first_a"]);
    let inv = store.secret_inventory().await.unwrap();
    assert_eq!((inv.total, inv.clear, inv.sealed()), (3, 0, 3));
    assert_eq!(inv.by_key.get(keys.key_id()), Some(&3));
    assert_eq!(inv.by_column["webhook_endpoints.previous_secret"], 1);

    // A sealed value copied into another row does not open there.
    raw.exec(&format!(
        "UPDATE webhook_endpoints SET previous_secret = (SELECT secret FROM webhook_endpoints WHERE id = '{}') WHERE id = '{}'",
        a.id, b.id
    ))
    .await;
    let moved = secret_error(store.get_webhook(&b.id).await.unwrap_err());
    assert!(matches!(moved, SecretError::Tampered { .. }), "{moved}");
    raw.exec(&format!(
        "UPDATE webhook_endpoints SET previous_secret = NULL WHERE id = '{}'",
        b.id
    ))
    .await;

    // A database written before encryption at rest: its clear secrets are read as they are and
    // counted, then sealed by the migration.
    raw.exec(&format!(
        "UPDATE webhook_endpoints SET secret = 'whsec_clear_b' WHERE id = '{}'",
        b.id
    ))
    .await;
    assert_eq!(store.get_webhook(&b.id).await.unwrap().unwrap().secret, "whsec_clear_b");
    assert_eq!(store.secret_inventory().await.unwrap().clear, 1);
    assert_eq!(store.reseal_secrets(&keys, Reseal::Clear).await.unwrap(), 1);
    let inv = store.secret_inventory().await.unwrap();
    assert_eq!((inv.total, inv.clear, inv.by_key.get(keys.key_id())), (3, 0, Some(&3)));
    assert_eq!(store.get_webhook(&b.id).await.unwrap().unwrap().secret, "whsec_clear_b");
    assert_eq!(
        store.reseal_secrets(&keys, Reseal::Clear).await.unwrap(),
        0,
        "nothing left to migrate"
    );

    // A store without keys reads no sealed secret and writes none.
    let keyless = raw.reopen(None).await;
    let e = secret_error(keyless.get_webhook(&a.id).await.unwrap_err());
    assert!(matches!(e, SecretError::NoKey { .. }), "{e}");
    let e = secret_error(
        keyless
            .create_webhook(new_webhook("https://c.example/h", "whsec_c"))
            .await
            .unwrap_err(),
    );
    assert!(matches!(e, SecretError::NoKeyToSeal { .. }), "{e}");
    // Nor does a store with another key.
    let other = SecretBox::new(SecretKey::generate().unwrap());
    let wrong = raw.reopen(Some(other.clone())).await;
    let e = secret_error(wrong.get_webhook(&a.id).await.unwrap_err());
    assert!(matches!(e, SecretError::WrongKey { .. }), "{e}");
    // A rotation the wrong store cannot open changes nothing.
    assert!(wrong.reseal_secrets(&other, Reseal::NotUnderPrimary).await.is_err());
    assert_eq!(
        store.secret_inventory().await.unwrap().by_key.get(keys.key_id()),
        Some(&3)
    );

    // Rotation: every secret resealed under the new key, the secrets themselves unchanged.
    let new_key = SecretKey::generate().unwrap();
    let new_box = SecretBox::new(new_key.clone());
    let before = raw.strings("SELECT secret FROM webhook_endpoints ORDER BY id").await;
    assert_eq!(
        store.reseal_secrets(&new_box, Reseal::NotUnderPrimary).await.unwrap(),
        3
    );
    let inv = store.secret_inventory().await.unwrap();
    assert_eq!(
        (inv.total, inv.by_key.len(), inv.by_key.get(new_key.id())),
        (3, 1, Some(&3))
    );
    let after = raw.strings("SELECT secret FROM webhook_endpoints ORDER BY id").await;
    assert!(before.iter().zip(&after).all(|(x, y)| x != y));
    // The old keys alone no longer open them; the new key does, to the same secrets.
    assert!(store.get_webhook(&a.id).await.is_err());
    let rotated_store = raw.reopen(Some(new_box.clone())).await;
    let a2 = rotated_store.get_webhook(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (a2.secret.as_str(), a2.previous_secret.as_deref()),
        ("whsec_second_a", Some("whsec_first_a"))
    );
    assert_eq!(
        rotated_store.get_webhook(&b.id).await.unwrap().unwrap().secret,
        "whsec_clear_b"
    );
    // Run again, nothing is left under another key.
    let both = raw
        .reopen(Some(new_box.clone().with_previous(keys.primary_key().clone())))
        .await;
    assert_eq!(both.reseal_secrets(&new_box, Reseal::NotUnderPrimary).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_secrets_at_rest() {
    let db = sqlite_db().await;
    secrets_are_sealed_bound_to_their_row_and_resealed(db.store.clone(), db.url.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_secrets_at_rest() {
    let Some(db) = pg_db().await else {
        skip_note("secrets_at_rest");
        return;
    };
    secrets_are_sealed_bound_to_their_row_and_resealed(db.store.clone(), db.url.clone()).await;
}
