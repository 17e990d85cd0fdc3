//! The inventory and resealing of stored secrets ([`crate::secrets`]) on both databases, from the
//! statements of [`SecretColumn`], written once.

use crate::backend::{Backend, Tx};
use crate::postgres::PostgresStore;
use crate::secrets::{self, COLUMNS, Reseal, SecretBox, SecretInventory};
use crate::sqlite::SqliteStore;
use crate::{StoreError, StoreResult};
use sqlx::{AssertSqlSafe, Row};

/// The rows of one column to rewrite: `(row id, value read, new value)`.
type Rewrites = Vec<(String, String, String)>;

fn rewrites(
    store_keys: &secrets::SecretKeys,
    column: &secrets::SecretColumn,
    to: &SecretBox,
    which: Reseal,
    rows: Vec<(String, String)>,
) -> StoreResult<Rewrites> {
    let mut out = Vec::new();
    for (id, value) in rows {
        if let Some(new) = secrets::reseal_value(store_keys, to, which, &value, &column.context(&id))? {
            out.push((id, value, new));
        }
    }
    Ok(out)
}

/// An update that found its row changed since it was read: nothing is written.
fn changed_meanwhile(column: &secrets::SecretColumn, id: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(format!(
        "{} of row {id} changed while its secrets were being resealed; run it again",
        column.name()
    )))
}

/// The inventory and the resealing for a [`Backend`].
macro_rules! secrets_store {
    ($store:ty) => {
        impl $store {
            pub(crate) async fn secret_inventory_impl(&self) -> StoreResult<SecretInventory> {
                let mut inv = SecretInventory::default();
                for column in COLUMNS {
                    let sql = column.select_sql(<$store as Backend>::DIALECT, false);
                    for row in sqlx::query(AssertSqlSafe(sql)).fetch_all(self.reads()).await? {
                        inv.add(column, &row.get::<String, _>("value"));
                    }
                }
                Ok(inv)
            }

            pub(crate) async fn reseal_secrets_impl(&self, to: &SecretBox, which: Reseal) -> StoreResult<u64> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let mut count = 0;
                    for column in COLUMNS {
                        // Locked on PostgreSQL: a node changing an endpoint's secret meanwhile waits
                        // for this transaction.
                        let sql = column.select_sql(<$store as Backend>::DIALECT, true);
                        let rows: Vec<(String, String)> = sqlx::query(AssertSqlSafe(sql))
                            .fetch_all(tx.conn())
                            .await?
                            .iter()
                            .map(|r| (r.get("id"), r.get("value")))
                            .collect();
                        for (id, old, new) in rewrites(&self.secrets, column, to, which, rows)? {
                            let done = sqlx::query(AssertSqlSafe(column.update_sql(<$store as Backend>::DIALECT)))
                                .bind(&new)
                                .bind(&id)
                                .bind(&old)
                                .execute(tx.conn())
                                .await?;
                            if done.rows_affected() != 1 {
                                return Err(changed_meanwhile(column, &id));
                            }
                            count += 1;
                        }
                    }
                    tx.commit().await?;
                    Ok(count)
                })
                .await
            }
        }
    };
}

secrets_store!(SqliteStore);
secrets_store!(PostgresStore);
