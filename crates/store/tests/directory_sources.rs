//! Directory connections (#17) on both databases: created without a token and with their key
//! sealed, leased to one node at a time, "sync now" during a run, progress and outcome recorded.

use rollcall_store::*;
use std::sync::Arc;

mod harness;
use harness::*;

const KEY: &str = r#"{"type":"service_account","client_email":"sync@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n","token_uri":"https://oauth2.googleapis.com/token"}"#;

fn settings() -> DirectorySettings {
    DirectorySettings {
        customer: "my_customer".into(),
        admin_email: "admin@example.com".into(),
        client_email: "sync@p.iam.gserviceaccount.com".into(),
        client_id: Some("1234567890".into()),
        scope: SyncScope {
            org_units: vec!["/Engineering".into()],
            groups: vec![],
        },
        api_base_url: None,
        token_url: None,
    }
}

async fn google(store: &dyn Store) -> (Connection, DirectorySource) {
    let org = store.create_organization(&WriteContext::cli(), "acme").await.unwrap();
    store
        .create_directory_connection(
            &WriteContext::cli(),
            NewDirectoryConnection {
                org_id: org.id,
                name: "Google".into(),
                kind: ConnectionKind::GoogleWorkspace,
                settings: settings(),
                credentials: KEY.into(),
                interval_s: 600,
            },
        )
        .await
        .unwrap()
}

async fn created_without_token_and_sealed(store: Arc<dyn Store>) {
    let (c, s) = google(&*store).await;
    assert_eq!(c.kind, ConnectionKind::GoogleWorkspace);
    assert_eq!(c.idp, IdpKind::Google);
    assert!(c.token_hash.is_none() && c.token_prefix.is_none());
    let read = store.get_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(read.kind, ConnectionKind::GoogleWorkspace);
    let source = store.directory_source(&c.id).await.unwrap().unwrap();
    assert_eq!(source.credentials, KEY);
    assert_eq!(source.settings, settings());
    assert_eq!(source.interval_s, 600);
    assert!(source.next_run_us <= s.created_us, "due at once");
    assert!(!format!("{source:?}").contains("PRIVATE KEY"), "Debug hides the key");
    // Sealed at rest: the inventory counts it under the key, nothing in clear.
    let inv = store.secret_inventory().await.unwrap();
    assert_eq!(inv.clear, 0);
    assert_eq!(inv.by_key.get(secret_keys().key_id()), Some(&1));
    // A SCIM connection has no source; the created event names the kind, not the key.
    let tenant = tenant(&*store, "scim").await;
    assert!(store.directory_source(&tenant.connection_id).await.unwrap().is_none());
    let events = store
        .query_events(&EventQuery {
            limit: 100,
            connection_id: Some(c.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let created = events.iter().find(|e| e.kind == "connection.created").unwrap();
    assert_eq!(created.data["kind"], "google_workspace");
    assert!(!created.data.to_string().contains("PRIVATE"));
    // A too short interval is refused.
    let org = store.get_organization("acme").await.unwrap().unwrap();
    let err = store
        .create_directory_connection(
            &WriteContext::cli(),
            NewDirectoryConnection {
                org_id: org.id,
                name: "g2".into(),
                kind: ConnectionKind::GoogleWorkspace,
                settings: settings(),
                credentials: KEY.into(),
                interval_s: 5,
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("interval"), "{err}");
}

async fn one_node_at_a_time(store: Arc<dyn Store>) {
    let (c, _) = google(&*store).await;
    let now = rollcall_store::sqlite::now_us();
    let a = store
        .claim_directory_syncs("node-a", now, now + 60_000_000, 10, None)
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].lease_owner.as_deref(), Some("node-a"));
    assert!(a[0].running_since_us.is_some());
    // Another node gets nothing while the lease holds, not even on demand.
    assert!(
        store
            .claim_directory_syncs("node-b", now + 1, now + 60_000_000, 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .claim_directory_syncs("node-b", now + 1, now + 60_000_000, 10, Some(&c.id))
            .await
            .unwrap()
            .is_empty()
    );
    // Progress only from the holder.
    let mut p = SyncCounts {
        phase: "users".into(),
        users_read: 500,
        ..Default::default()
    };
    assert!(
        store
            .directory_sync_progress(&c.id, "node-a", &p, now + 120_000_000)
            .await
            .unwrap()
    );
    assert!(!store.directory_sync_progress(&c.id, "node-b", &p, now).await.unwrap());
    let s = store.directory_source(&c.id).await.unwrap().unwrap();
    assert_eq!(s.progress.as_ref().map(|p| p.users_read), Some(500));
    // "Sync now" during the run: another run is due when it ends.
    assert!(store.request_directory_sync(&c.id, now + 2).await.unwrap());
    p.phase = "done".into();
    p.users_created = 3;
    let outcome = SyncOutcome {
        finished_us: now + 10,
        status: SyncStatus::Succeeded,
        error: None,
        counts: p.clone(),
    };
    assert!(!store.finish_directory_sync(&c.id, "node-b", &outcome).await.unwrap());
    assert!(store.finish_directory_sync(&c.id, "node-a", &outcome).await.unwrap());
    let s = store.directory_source(&c.id).await.unwrap().unwrap();
    assert_eq!(s.last_status, Some(SyncStatus::Succeeded));
    assert_eq!(s.last_counts.as_ref().map(|c| c.users_created), Some(3));
    assert_eq!(s.last_started_us, a[0].running_since_us);
    assert_eq!(s.last_finished_us, Some(now + 10));
    assert!(s.lease_owner.is_none() && s.running_since_us.is_none() && s.progress.is_none());
    assert_eq!(s.next_run_us, now + 2, "the run asked for during the run is due");
    let b = store
        .claim_directory_syncs("node-b", now + 20, now + 60_000_000, 10, None)
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    // Without a request, the next run comes one interval after the end.
    let failed = SyncOutcome {
        finished_us: now + 30,
        status: SyncStatus::Failed,
        error: Some("token endpoint: unauthorized_client".into()),
        counts: SyncCounts::default(),
    };
    assert!(store.finish_directory_sync(&c.id, "node-b", &failed).await.unwrap());
    let s = store.directory_source(&c.id).await.unwrap().unwrap();
    assert_eq!(s.next_run_us, now + 30 + 600_000_000);
    assert_eq!(s.last_status, Some(SyncStatus::Failed));
    assert_eq!(s.last_error.as_deref(), Some("token endpoint: unauthorized_client"));
    // Not due: nothing to claim, unless asked for by id.
    assert!(
        store
            .claim_directory_syncs("node-a", now + 40, now + 60_000_000, 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    let forced = store
        .claim_directory_syncs("node-a", now + 40, now + 60_000_000, 10, Some(&c.id))
        .await
        .unwrap();
    assert_eq!(forced.len(), 1);
    // An expired lease can be taken over.
    let taken = store
        .claim_directory_syncs("node-b", now + 61_000_000, now + 120_000_000, 10, Some(&c.id))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert!(!store.finish_directory_sync(&c.id, "node-a", &outcome).await.unwrap());
    // A disabled connection is not synced.
    assert!(store.finish_directory_sync(&c.id, "node-b", &outcome).await.unwrap());
    // The runs' events: the failure, and the success after it; the first success and the finishes
    // of a lease not held raise none.
    let runs = store
        .query_events(&EventQuery {
            limit: 100,
            types: vec![
                "connection.directory_sync_failed".into(),
                "connection.directory_sync_recovered".into(),
            ],
            connection_id: Some(c.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let kinds: Vec<&str> = runs.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "connection.directory_sync_failed",
            "connection.directory_sync_recovered"
        ]
    );
    assert_eq!(runs[0].data["status"], "failed");
    assert_eq!(runs[0].data["error"], "token endpoint: unauthorized_client");
    assert_eq!(runs[0].data["previous_status"], "succeeded");
    assert_eq!(runs[1].data["status"], "succeeded");
    assert_eq!(runs[1].data["previous_status"], "failed");
    assert_eq!(runs[1].data["counts"]["users_created"], 3);
    assert_eq!(runs[0].org_id.as_deref(), Some(c.org_id.as_str()));
    assert_eq!(
        runs[0].actor,
        Actor::DirectorySync {
            connection_id: c.id.clone()
        }
    );
    store
        .update_connection(
            &WriteContext::cli(),
            &c.id,
            ConnectionUpdate {
                status: Some(ConnectionStatus::Disabled),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_directory_syncs("node-a", now + 10_000_000_000, now + 10_060_000_000, 10, Some(&c.id))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn settings_change_and_key_replaced(store: Arc<dyn Store>) {
    let (c, s) = google(&*store).await;
    let mut new_settings = settings();
    new_settings.scope.groups = vec!["eng@example.com".into()];
    let updated = store
        .update_directory_source(
            &WriteContext::cli(),
            &c.id,
            DirectorySourceUpdate {
                settings: Some(new_settings.clone()),
                credentials: Some(KEY.replace("sync@", "sync2@")),
                interval_s: Some(900),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.settings, new_settings);
    assert_eq!(updated.interval_s, 900);
    assert_eq!(updated.next_run_us, s.next_run_us + 300_000_000);
    let read = store.directory_source(&c.id).await.unwrap().unwrap();
    assert!(read.credentials.contains("sync2@"));
    let events = store
        .query_events(&EventQuery {
            limit: 100,
            types: vec!["connection.updated".into()],
            connection_id: Some(c.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let data = events[0].data.to_string();
    assert!(data.contains("\"credentials\":{\"replaced\":true}"), "{data}");
    assert!(!data.contains("sync2@"), "the key is never in an event: {data}");
    // Deleting the connection deletes its source.
    assert!(store.delete_connection(&WriteContext::cli(), &c.id).await.unwrap());
    assert!(store.directory_source(&c.id).await.unwrap().is_none());
}

contract!(
    created_without_token_and_sealed,
    one_node_at_a_time,
    settings_change_and_key_replaced
);
