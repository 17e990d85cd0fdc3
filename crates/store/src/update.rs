//! Updates computed outside the write transaction.
//!
//! A PATCH or PUT is work on the document (applying operations, checking schemas) that can take a
//! while for a large one. Done inside the write transaction, it held SQLite's single writer, or a
//! PostgreSQL row lock, for that long, and every other tenant's writes waited. So an update runs in
//! three steps ([`run`]):
//!
//! 1. read the resource, as any read does (no transaction of the writer's, no lock);
//! 2. run the [`Mutation`] on a copy of the document, outside any transaction (on the blocking
//!    thread pool when the document is large, so an async worker is not held either);
//! 3. write the result in a transaction that first checks `If-Match` against the current version,
//!    then that the stored document is still the one the mutation read. The version alone is not
//!    the test: membership changes bump a group's version without changing its document, and the
//!    mutation is a function of the document only (members are deltas applied to rows in the
//!    transaction), so sixteen clients changing members of one group do not redo each other's work.
//!
//! When the document did change in between, the update is read and computed again, up to
//! [`UPDATE_TRIES`] times; past that the client is asked to retry (503). From its first collision
//! on, a writer takes its turn with the other writers of that resource that collided on this node
//! (one at a time, a lock held from the read to the write), so a burst of writers on one resource
//! settles in one pass instead of racing until some run out of tries; a collision while holding the
//! turn (a newcomer, or another node) pauses a short random while that grows.

use crate::model::StoredResource;
use crate::{Mutation, StoreError, StoreResult};
use rollcall_scim::ScimError;
use rollcall_scim::patch::MemberChange;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

/// How many times an update is read and computed before the client is asked to retry.
pub(crate) const UPDATE_TRIES: u32 = 16;

/// Documents at least this large (stored JSON bytes) are mutated on the blocking thread pool;
/// smaller ones, the usual identity provider's user or group, where they are (a hand-off to
/// another thread would cost more than the work).
const BLOCKING_MUTATION_BYTES: usize = 16 * 1024;

/// What a mutation computed from one read of the resource.
pub(crate) struct Computed {
    /// The resource as read: the document the mutation started from (`doc`, with `id`), its version.
    pub current: StoredResource,
    /// The document after the mutation (with `id`, without `meta`).
    pub doc: Value,
    pub member_changes: Vec<MemberChange>,
}

impl Computed {
    /// The document as it was read.
    pub fn before(&self) -> &Value {
        &self.current.doc
    }

    pub fn doc_changed(&self) -> bool {
        self.doc != *self.current.doc
    }
}

/// How the write step ended.
pub(crate) enum Written {
    /// Written (or nothing to write); `None`: the resource was deleted in between.
    Done(Option<StoredResource>),
    /// The stored document is no longer the one the mutation read.
    Changed,
}

/// The 412 for an `If-Match` that names another version.
pub(crate) fn precondition_failed(version: i64, expected: i64) -> StoreError {
    StoreError::Scim(ScimError::precondition_failed(format!(
        "the resource has changed: its version is W/\"{version}\", not W/\"{expected}\""
    )))
}

/// Runs `mutation` on a copy of `current`'s document.
pub(crate) async fn compute(mutation: &Mutation, current: StoredResource) -> StoreResult<Computed> {
    let large = current
        .doc
        .stored_text()
        .map_or_else(|| approximate_size(&current.doc), str::len)
        >= BLOCKING_MUTATION_BYTES;
    if large {
        let mutation = mutation.clone();
        tokio::task::spawn_blocking(move || compute_here(&mutation, current))
            .await
            .map_err(|e| StoreError::Scim(ScimError::internal(format!("the update task failed: {e}"))))?
    } else {
        compute_here(mutation, current)
    }
}

fn compute_here(mutation: &Mutation, current: StoredResource) -> StoreResult<Computed> {
    let mut doc = Value::clone(&current.doc);
    // A panic in the mutation (a bug) fails this update, not the task that runs it.
    let changes = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mutation(&mut doc)))
        .unwrap_or_else(|_| Err(ScimError::internal("the update failed")))?;
    if let Value::Object(m) = &mut doc {
        m.insert("id".into(), Value::String(current.id.clone()));
        m.remove("meta");
    }
    Ok(Computed {
        current,
        doc,
        member_changes: changes,
    })
}

/// A cheap upper-bound estimate of a document's JSON size: the lengths of its strings and keys
/// plus a few bytes per value.
fn approximate_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|v| approximate_size(v) + 1).sum::<usize>(),
        Value::Object(m) => 2 + m.iter().map(|(k, v)| k.len() + 4 + approximate_size(v)).sum::<usize>(),
        _ => 8,
    }
}

/// A random pause before try `tries` (1-based) that grows with it: up to 1, 2, 4 … 64 ms.
fn pause(tries: u32) -> Duration {
    let cap_us = 1_000u64 << tries.saturating_sub(1).min(6);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    // A cheap mix of the clock's low bits: enough to spread writers that collided apart.
    let mixed = u64::from(nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17;
    Duration::from_micros(mixed % cap_us.max(1))
}

/// Turns for writers that collided, by resource id (striped: ids that share a stripe wait for each
/// other only after colliding, which is rare).
static TURNS: [tokio::sync::Mutex<()>; 64] = [const { tokio::sync::Mutex::const_new(()) }; 64];

fn turn_of(id: &str) -> &'static tokio::sync::Mutex<()> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    &TURNS[(h.finish() % TURNS.len() as u64) as usize]
}

/// Runs an update: `read` the resource (`None`: it does not exist), compute, `write` (see the
/// module documentation).
pub(crate) async fn run<R, RF, W, WF>(
    mutation: &Mutation,
    if_match: Option<i64>,
    mut read: R,
    mut write: W,
) -> StoreResult<Option<StoredResource>>
where
    R: FnMut() -> RF,
    RF: Future<Output = StoreResult<Option<StoredResource>>>,
    W: FnMut(Computed) -> WF,
    WF: Future<Output = StoreResult<Written>>,
{
    // Held from a writer's first collision on: writers of one resource that collided take turns
    // (on this node), so a burst of them cannot keep beating each other until one runs out of tries.
    let mut turn: Option<tokio::sync::MutexGuard<'static, ()>> = None;
    for tries in 1..=UPDATE_TRIES {
        let Some(current) = read().await? else {
            return Ok(None);
        };
        if let Some(v) = if_match
            && v != current.version
        {
            return Err(precondition_failed(current.version, v));
        }
        let computed = compute(mutation, current).await?;
        if !computed.doc_changed() && computed.member_changes.is_empty() {
            // Nothing to write: the resource as it was read.
            return Ok(Some(computed.current));
        }
        let id = computed.current.id.clone();
        match write(computed).await? {
            Written::Done(res) => return Ok(res),
            Written::Changed => {
                tracing::debug!(
                    tries,
                    "the document changed while an update was computed; computing again"
                );
                if turn.is_none() {
                    turn = Some(turn_of(&id).lock().await);
                } else {
                    // Changed again while holding the turn: by a writer on its first try, or on
                    // another node.
                    tokio::time::sleep(pause(tries)).await;
                }
            }
        }
    }
    tracing::warn!(
        tries = UPDATE_TRIES,
        "an update found the document changed every time; asking the client to retry"
    );
    Err(StoreError::Scim(ScimError::new(
        503,
        None,
        "the resource is being changed by other requests; retry shortly",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn resource(doc: Value) -> StoredResource {
        StoredResource {
            id: "r1".into(),
            kind: crate::ResourceKind::User,
            doc: doc.into(),
            version: 3,
            created_us: 1,
            modified_us: 2,
            related: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mutation_works_on_a_copy_and_gets_the_id_back() {
        let m: Mutation = Arc::new(|d: &mut Value| {
            d["title"] = json!("x");
            d.as_object_mut().unwrap().remove("id");
            Ok(vec![])
        });
        let c = compute(&m, resource(json!({"id": "r1", "userName": "a"})))
            .await
            .unwrap();
        assert_eq!(c.doc, json!({"id": "r1", "userName": "a", "title": "x"}));
        assert_eq!(*c.before(), json!({"id": "r1", "userName": "a"}));
        assert!(c.doc_changed());
        // A large document is mutated on the blocking pool, with the same result.
        let big = "b".repeat(BLOCKING_MUTATION_BYTES);
        let c = compute(&m, resource(json!({"id": "r1", "userName": big})))
            .await
            .unwrap();
        assert_eq!(c.doc["title"], "x");
        assert_eq!(c.doc["id"], "r1");
    }

    #[tokio::test]
    async fn a_panicking_mutation_is_an_error() {
        let m: Mutation = Arc::new(|_d: &mut Value| panic!("a bug"));
        let e = compute(&m, resource(json!({"id": "r1"}))).await.err().unwrap();
        assert!(matches!(e, StoreError::Scim(s) if s.status == 500));
    }

    #[tokio::test]
    async fn an_update_is_computed_again_while_the_document_changes_then_gives_up() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let m: Mutation = Arc::new(|d: &mut Value| {
            d["n"] = json!(d["n"].as_i64().unwrap_or(0) + 1);
            Ok(vec![])
        });
        let counter = AtomicU32::new(0);
        let reads = &counter;
        // Changed twice, then written.
        let out = run(
            &m,
            None,
            || async move {
                reads.fetch_add(1, Ordering::SeqCst);
                Ok(Some(resource(json!({"id": "r1", "n": 1}))))
            },
            |c| async move {
                if reads.load(Ordering::SeqCst) < 3 {
                    Ok(Written::Changed)
                } else {
                    Ok(Written::Done(Some(resource(c.doc))))
                }
            },
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(out.doc["n"], 2);
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        // Always changed: 503 after the last try.
        reads.store(0, Ordering::SeqCst);
        let e = run(
            &m,
            None,
            || async move {
                reads.fetch_add(1, Ordering::SeqCst);
                Ok(Some(resource(json!({"id": "r1"}))))
            },
            |_c| async { Ok(Written::Changed) },
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(e, StoreError::Scim(s) if s.status == 503));
        assert_eq!(reads.load(Ordering::SeqCst), UPDATE_TRIES);
    }

    #[tokio::test]
    async fn if_match_and_no_op_updates_need_no_write() {
        let noop: Mutation = Arc::new(|_d: &mut Value| Ok(vec![]));
        let read = || async { Ok(Some(resource(json!({"id": "r1"})))) };
        // A write would fail the test: nothing is to be written.
        let never = |_c: Computed| async { Err::<Written, _>(StoreError::Scim(ScimError::internal("written"))) };
        let e = run(&noop, Some(2), read, never).await.err().unwrap();
        assert!(matches!(e, StoreError::Scim(s) if s.status == 412));
        let same = run(&noop, Some(3), read, never).await.unwrap().unwrap();
        assert_eq!(same.version, 3);
        assert!(run(&noop, None, || async { Ok(None) }, never).await.unwrap().is_none());
    }
}
