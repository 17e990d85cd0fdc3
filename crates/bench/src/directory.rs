//! `rollcall-bench directory-read`: reading a large Google Workspace directory (100,000 users by
//! default) from the in-repo fake of Google's Directory API, page by page as a sync does (500 users
//! a page, one access token), and with `--full`, a first sync of it into a temporary SQLite store
//! (every user created through the SCIM write path) and a second, unchanged one (nothing written).

use crate::google_fake::{ADMIN_EMAIL, FakeGoogle, google_group, google_member, google_user};
use rollcall_server::directory_sync::google::{GoogleDirectory, GoogleTarget, RetryPolicy, ServiceAccountKey};
use rollcall_server::directory_sync::http::HttpClient;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Users in the fake directory.
    #[arg(long, default_value_t = 100_000)]
    pub users: usize,
    /// Groups (each with 100 members).
    #[arg(long, default_value_t = 100)]
    pub groups: usize,
    /// Also sync the directory into a temporary SQLite store, twice.
    #[arg(long)]
    pub full: bool,
}

fn fill(fake: &FakeGoogle, args: &Args) {
    fake.with(|s| {
        s.users = (0..args.users)
            .map(|i| {
                google_user(
                    &format!("1{i:08}"),
                    &format!("user{i}@example.com"),
                    "User",
                    &format!("Number {i}"),
                )
            })
            .collect();
        for g in 0..args.groups {
            let id = format!("g{g:05}");
            s.groups.push(google_group(
                &id,
                &format!("group{g}@example.com"),
                &format!("Group {g}"),
            ));
            let members = (0..100.min(args.users))
                .map(|k| {
                    let i = (g * 100 + k) % args.users.max(1);
                    google_member(&format!("1{i:08}"), &format!("user{i}@example.com"), "USER")
                })
                .collect();
            s.members.insert(id, members);
        }
    });
}

pub async fn run(args: Args) -> Result<(), String> {
    let fake = FakeGoogle::start().await;
    fill(&fake, &args);
    let key = ServiceAccountKey::parse(&fake.key().to_string())?;
    let mut google = GoogleDirectory::new(
        HttpClient::new(Duration::from_secs(60)),
        key,
        GoogleTarget {
            api_base_url: fake.base.clone(),
            token_url: fake.token_url(),
            customer: "my_customer".into(),
            admin_email: ADMIN_EMAIL.into(),
        },
        RetryPolicy::default(),
    );
    let started = Instant::now();
    let (mut read, mut pages, mut token) = (0usize, 0usize, None::<String>);
    loop {
        let page = google.users(token.as_deref()).await.map_err(|e| e.0)?;
        read += page.items.len();
        pages += 1;
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let elapsed = started.elapsed();
    if read != args.users {
        return Err(format!("read {read} users, not {}", args.users));
    }
    println!("| step | users | pages | seconds | users/s |");
    println!("|---|---|---|---|---|");
    let row = |step: &str, users: usize, pages: String, d: Duration| {
        println!(
            "| {step} | {users} | {pages} | {:.2} | {:.0} |",
            d.as_secs_f64(),
            users as f64 / d.as_secs_f64().max(1e-9)
        );
    };
    row("read users (Directory API fake)", read, pages.to_string(), elapsed);
    if args.full {
        let (first, second) = full_sync(&fake, &args).await?;
        row("first sync (all created)", args.users, "-".into(), first);
        row("second sync (unchanged)", args.users, "-".into(), second);
    }
    Ok(())
}

/// A first and a second sync into a temporary SQLite store.
async fn full_sync(fake: &FakeGoogle, args: &Args) -> Result<(Duration, Duration), String> {
    use rollcall_store::secrets::{SecretBox, SecretKey};
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let registry = Arc::new(rollcall_scim::schema::SchemaRegistry::standard());
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = rollcall_store::sqlite::SqliteStore::open(&url, registry.clone())
        .await
        .map_err(|e| e.to_string())?
        .with_secrets(SecretBox::new(SecretKey::generate().map_err(|e| e.to_string())?));
    let store: Arc<dyn rollcall_store::Store> = Arc::new(store);
    let scim = rollcall_server::Scim::new(store.clone(), registry, Default::default());
    let admin = rollcall_server::admin::Admin::new(store.clone(), Arc::default(), "http://127.0.0.1");
    let by = rollcall_store::WriteContext::cli();
    let org = admin
        .create_organization(&by, "bench")
        .await
        .map_err(|e| e.to_string())?;
    let (c, _) = admin
        .create_google_workspace_connection(
            &by,
            &org.id,
            rollcall_server::admin::GoogleWorkspaceInput {
                admin_email: ADMIN_EMAIL.into(),
                credentials: fake.key().to_string(),
                api_base_url: Some(fake.base.clone()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let sync = rollcall_server::directory_sync::DirectorySync::new(scim, Default::default());
    let mut times = Vec::new();
    for _ in 0..2 {
        let t = Instant::now();
        let s = sync.sync_now(&c.id).await?;
        times.push(t.elapsed());
        let counts = s.last_counts.unwrap_or_default();
        if s.last_status != Some(rollcall_store::SyncStatus::Succeeded) || counts.users_read as usize != args.users {
            return Err(format!(
                "the sync did not succeed: {:?} {:?}",
                s.last_status, s.last_error
            ));
        }
    }
    Ok((times[0], times[1]))
}
