//! The console and the setup page over a real socket, on both databases: signing in, sessions and
//! CSRF, escaping and security headers, setup links opened, expired and revoked. (The same pages
//! are driven in a real browser by tests/browser.)

mod common;
#[path = "common/google_fake.rs"]
mod google_fake;

use common::*;
use reqwest::redirect::Policy;
use rollcall_fake_targets::{FakeTarget, Fault, FaultRule, Vendor};
use rollcall_server::admin::Admin;
use rollcall_store::WriteContext;
use std::sync::Arc;

/// A client that does not follow redirects and keeps the cookies it is given, by hand.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

struct Page {
    status: u16,
    location: Option<String>,
    headers: reqwest::header::HeaderMap,
    html: String,
}

impl Page {
    /// The value of the first `csrf` hidden field.
    fn csrf(&self) -> String {
        let at = self
            .html
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token")
            + 19;
        self.html[at..].split('"').next().unwrap().to_string()
    }
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    async fn send(&mut self, b: reqwest::RequestBuilder) -> Page {
        let b = if self.cookies.is_empty() {
            b
        } else {
            b.header("cookie", self.cookie_header())
        };
        let r = b.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        for set in headers.get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !set.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), v.to_string()));
            }
        }
        Page {
            status,
            location: headers.get("location").map(|l| l.to_str().unwrap().to_string()),
            headers,
            html: r.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let b = self.http.get(format!("{}{path}", self.base));
        self.send(b).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let b = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(b).await
    }
}

async fn api_key(srv: &TestServer) -> String {
    Admin::new(srv.store.clone(), Arc::default(), &srv.base)
        .create_api_key(&WriteContext::cli(), "console tests")
        .await
        .expect("create API key")
        .secret
}

/// Signs in; returns the browser with its session.
async fn signed_in(srv: &TestServer) -> Browser {
    let key = api_key(srv).await;
    let mut b = Browser::new(&srv.base);
    let p = b.get("/console/organizations").await;
    assert_eq!(p.status, 303);
    assert_eq!(
        p.location.as_deref(),
        Some("/console/sign-in?next=%2Fconsole%2Forganizations")
    );
    let form = b.get("/console/sign-in?next=%2Fconsole%2Forganizations").await;
    assert_eq!(form.status, 200);
    let p = b
        .post(
            "/console/sign-in",
            &[
                ("csrf", &form.csrf()),
                ("next", "/console/organizations"),
                ("api_key", &key),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.html);
    assert_eq!(p.location.as_deref(), Some("/console/organizations"));
    b
}

/// Sign-in turns an API key into an HttpOnly, SameSite=Strict session; a wrong key, a missing
/// sign-in token, a form without its CSRF token are refused; sign-out ends the session.
async fn sessions_and_csrf() {
    let srv = TestServer::start().await;
    let key = api_key(&srv).await;
    let mut b = Browser::new(&srv.base);
    // Without the sign-in form's token (another site posting a key): refused.
    let p = b.post("/console/sign-in", &[("api_key", &key)]).await;
    assert_eq!(p.status, 303);
    assert!(b.cookie("rollcall_console").is_none());
    // A wrong key.
    let form = b.get("/console/sign-in").await;
    let p = b
        .post(
            "/console/sign-in",
            &[("csrf", &form.csrf()), ("api_key", "rc_key_nope")],
        )
        .await;
    assert_eq!(p.status, 303);
    assert!(b.cookie("rollcall_console").is_none());
    let p = b.get("/console/sign-in").await;
    assert!(p.html.contains("not valid"), "{}", p.html);

    let mut b = signed_in(&srv).await;
    let set = b.get("/console/organizations").await;
    assert_eq!(set.status, 200);
    let session_cookie = b.cookie("rollcall_console").unwrap().to_string();
    assert!(session_cookie.starts_with("rc_ses_"));
    // The forms' token, and a form without it.
    let csrf = set.csrf();
    let p = b.post("/console/organizations", &[("name", "Forged")]).await;
    assert_eq!(p.status, 403);
    let p = b
        .post("/console/organizations", &[("csrf", "0000"), ("name", "Forged")])
        .await;
    assert_eq!(p.status, 403);
    let p = b
        .post("/console/organizations", &[("csrf", &csrf), ("name", "Acme")])
        .await;
    assert_eq!(p.status, 303);
    let org_page = p.location.unwrap();
    assert!(org_page.starts_with("/console/organizations/"), "{org_page}");
    let p = b.get(&org_page).await;
    assert_eq!(p.status, 200);
    assert!(
        p.html.contains("Organization &#34;Acme&#34; created")
            || p.html.contains("Organization &quot;Acme&quot; created"),
        "{}",
        p.html
    );
    // An unknown field is refused, and changes nothing.
    let p = b
        .post(
            "/console/organizations",
            &[("csrf", &csrf), ("name", "Other"), ("admin", "1")],
        )
        .await;
    assert_eq!(p.status, 303);
    let p = b.get("/console/organizations").await;
    assert!(p.html.contains("unknown field"), "{}", p.html);
    assert!(!p.html.contains(">Other<"));
    // Sign-out ends the session for every copy of the cookie.
    let p = b.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
    let mut stolen = Browser::new(&srv.base);
    stolen.cookies.push(("rollcall_console".into(), session_cookie));
    let p = stolen.get("/console/organizations").await;
    assert_eq!(p.status, 303, "a signed-out session no longer works");
}

/// Every value is escaped; every page carries the CSP and refuses framing; unknown pages and
/// errors of the HTTP layer are HTML pages with the same headers.
async fn escaping_and_headers() {
    let srv = TestServer::start().await;
    let mut b = signed_in(&srv).await;
    let csrf = b.get("/console/organizations").await.csrf();
    let p = b
        .post(
            "/console/organizations",
            &[("csrf", &csrf), ("name", "<script>alert(1)</script>")],
        )
        .await;
    let p = b.get(&p.location.unwrap()).await;
    assert!(!p.html.contains("<script>alert"), "{}", p.html);
    assert!(
        p.html.contains("<h1>&#60;script&#62;alert(1)&#60;/script&#62;</h1>"),
        "{}",
        p.html
    );
    let csp = p.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(p.headers["x-frame-options"], "DENY");
    assert_eq!(p.headers["cache-control"], "no-store");
    assert!(!p.html.contains("<script>"), "no inline script");

    let p = b.get("/console/no-such-page").await;
    assert_eq!(p.status, 404);
    assert!(p.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(p.headers.contains_key("content-security-policy"));
    // A control character in the path is refused by the HTTP layer, as a page too.
    let p = b.get("/console/organizations/%00").await;
    assert_eq!(p.status, 400);
    assert!(
        p.headers["content-type"].to_str().unwrap().starts_with("text/html"),
        "{:?}",
        p.headers
    );
    assert!(p.headers.contains_key("content-security-policy"));
    // The assets are served from the binary.
    for (path, kind) in [
        ("/console/assets/console.css", "text/css"),
        ("/console/assets/console.js", "text/javascript"),
        ("/console/assets/brand.css", "text/css"),
    ] {
        let p = b.get(path).await;
        assert_eq!(p.status, 200, "{path}");
        assert!(p.headers["content-type"].to_str().unwrap().starts_with(kind), "{path}");
    }
}

/// A connection's page shows each token's prefix, when it was issued, and when it was last used
/// (from the request log), with the request log's failures explained.
async fn connection_page_shows_tokens_and_explained_requests() {
    let srv = TestServer::start().await;
    let conn = srv.conn().clone();
    let mut b = signed_in(&srv).await;
    let page = format!("/console/connections/{}", conn.id);
    let p = b.get(&page).await;
    assert_eq!(p.status, 200);
    assert!(p.html.contains("not in the request log"), "{}", p.html);
    // One request with the token, one with the token pasted without "Bearer ".
    srv.client_for(&conn).get("/Users").await.expect(200);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .get(format!("{}/Users", srv.base_url(&conn)))
        .header("authorization", srv.token(&conn))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The request log is written within a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let html = loop {
        let p = b.get(&page).await;
        // The 401's row (its status badge), not "401" anywhere on the page (an id, a token).
        if !p.html.contains("not in the request log") && p.html.contains("status-bad\">401</span>") {
            break p.html;
        }
        assert!(std::time::Instant::now() < deadline, "{}", p.html);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(html.contains("Current token"), "{html}");
    assert!(html.contains("How to fix it"), "{html}");
    assert!(html.contains("Bearer"), "{html}");
    assert!(!html.contains(&srv.token(&conn)), "the token itself is never shown");
}

/// A Google Workspace connection's page shows what it reads and its sync instead of a token, and
/// "Sync now" makes its next run due.
async fn a_google_workspace_connection_shows_its_sync() {
    let srv = TestServer::start().await;
    let (c, before) = Admin::new(srv.store.clone(), Arc::default(), &srv.base)
        .create_google_workspace_connection(
            &WriteContext::cli(),
            &srv.conn().org_id,
            rollcall_server::admin::GoogleWorkspaceInput {
                admin_email: google_fake::ADMIN_EMAIL.into(),
                credentials: google_fake::service_account_key("https://oauth2.googleapis.com/token").to_string(),
                scope: rollcall_store::SyncScope {
                    org_units: vec!["/Engineering".into()],
                    groups: vec![],
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut b = signed_in(&srv).await;
    let page = b.get(&format!("/console/connections/{}", c.id)).await;
    assert_eq!(page.status, 200);
    for text in [
        "Google Workspace",
        google_fake::CLIENT_EMAIL,
        "109876543210987654321",
        "organizational units /Engineering",
        "Every</dt><dd>10 min",
        "not yet",
        "Sync now",
    ] {
        assert!(page.html.contains(text), "{text} not on the page");
    }
    assert!(!page.html.contains("Start token rotation"));
    assert!(!page.html.contains("PRIVATE KEY"));
    // Its next run is pushed out, then "Sync now" brings it back.
    srv.execute_sql(&format!(
        "UPDATE directory_sources SET next_run_us = {} WHERE connection_id = '{}'",
        before.next_run_us + 3_600_000_000,
        c.id
    ))
    .await;
    let p = b
        .post(
            &format!("/console/connections/{}/sync", c.id),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.html);
    let s = srv.store.directory_source(&c.id).await.unwrap().unwrap();
    assert!(s.next_run_us <= rollcall_store::sqlite::now_us());
    // A SCIM connection's page is as it was.
    let scim = b.get(&format!("/console/connections/{}", srv.conn().id)).await;
    assert!(scim.html.contains("SCIM base URL") && scim.html.contains("Start token rotation"));
    assert!(!scim.html.contains("Sync now"));
}

/// The organization page's form creates a Google Workspace connection (the key pasted as JSON, OUs
/// one per line, the interval in minutes) and opens its page; a bad key changes nothing and says why.
async fn a_google_workspace_connection_is_created_from_the_form() {
    let srv = TestServer::start().await;
    let org = srv.conn().org_id.clone();
    let mut b = signed_in(&srv).await;
    let page = b.get(&format!("/console/organizations/{org}")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.html.contains("Connect Google Workspace"),
        "the form is on the page"
    );
    let key = google_fake::service_account_key("https://oauth2.googleapis.com/token").to_string();
    let connections = |srv: &TestServer| {
        let store = srv.store.clone();
        let org = org.clone();
        async move { store.list_connections(Some(&org)).await.unwrap() }
    };
    let before = connections(&srv).await.len();
    // A key that is not a service account's: refused, nothing created.
    let p = b
        .post(
            &format!("/console/organizations/{org}/google-workspace-connections"),
            &[
                ("csrf", &page.csrf()),
                ("admin_email", google_fake::ADMIN_EMAIL),
                ("credentials", "{\"type\": \"authorized_user\"}"),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    assert_eq!(
        p.location.as_deref(),
        Some(format!("/console/organizations/{org}").as_str())
    );
    assert_eq!(connections(&srv).await.len(), before);
    let back = b.get(&format!("/console/organizations/{org}")).await;
    assert!(
        back.html.contains("Not done:") && back.html.contains("not a Google service account key"),
        "says why: {}",
        back.html
    );
    // A good one.
    let p = b
        .post(
            &format!("/console/organizations/{org}/google-workspace-connections"),
            &[
                ("csrf", &page.csrf()),
                ("admin_email", google_fake::ADMIN_EMAIL),
                ("credentials", &key),
                ("org_units", "/Engineering\r\n\r\n /Research \r\n"),
                ("groups", ""),
                ("interval_minutes", "30"),
                ("name", "Acme Google"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.html);
    let created: Vec<_> = connections(&srv)
        .await
        .into_iter()
        .filter(|c| c.kind == rollcall_store::ConnectionKind::GoogleWorkspace)
        .collect();
    assert_eq!(created.len(), 1);
    let c = &created[0];
    assert_eq!(c.name, "Acme Google");
    assert_eq!(p.location, Some(format!("/console/connections/{}", c.id)));
    let s = srv.store.directory_source(&c.id).await.unwrap().unwrap();
    assert_eq!(s.interval_s, 1800);
    assert_eq!(s.settings.scope.org_units, ["/Engineering", "/Research"]);
    assert_eq!(s.settings.admin_email, google_fake::ADMIN_EMAIL);
    let shown = b.get(&format!("/console/connections/{}", c.id)).await;
    assert!(shown.html.contains(google_fake::CLIENT_EMAIL));
    assert!(!shown.html.contains("PRIVATE KEY"), "the key is never shown");
    // Without the page's CSRF token: refused.
    let p = b
        .post(
            &format!("/console/organizations/{org}/google-workspace-connections"),
            &[("admin_email", google_fake::ADMIN_EMAIL), ("credentials", &key)],
        )
        .await;
    assert_ne!(p.status, 303);
    assert_eq!(connections(&srv).await.len(), before + 1);
}

/// The connection page shows the deprovisioning guard: its settings form saves, a trip shows the
/// held events with Release and Discard, and Release delivers them.
async fn the_connection_page_shows_and_resolves_the_guard() {
    let srv = TestServer::start().await;
    let conn = srv.conn().clone();
    let mut b = signed_in(&srv).await;
    let page_path = format!("/console/connections/{}", conn.id);
    let page = b.get(&page_path).await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains("Deprovisioning guard") && page.html.contains(">armed<"));
    let csrf = page.csrf();
    let p = b
        .post(
            &format!("{page_path}/guard"),
            &[
                ("csrf", &csrf),
                ("enabled", "on"),
                ("max_users", "2"),
                ("max_percent", ""),
                ("min_users", "10"),
                ("window_minutes", "60"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.html);
    let g = srv.store.deprovision_guard(&conn.id).await.unwrap().unwrap();
    assert_eq!((g.settings.max_users, g.settings.max_percent), (Some(2), None));

    let client = srv.client();
    for i in 0..4 {
        let u = client.user(&format!("p{i}@acme.example")).await;
        let body =
            serde_json::json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": false}}]});
        client
            .patch(&format!("/Users/{}", u["id"].as_str().unwrap()), &body)
            .await
            .expect(200);
    }
    let page = b.get(&page_path).await;
    assert!(page.html.contains(">tripped<"), "the page shows the trip");
    assert_eq!(page.html.matches("<td class=\"mono\">user.deactivated</td>").count(), 2);
    assert!(page.html.contains("/guard-release") && page.html.contains("/guard-discard"));
    assert!(page.html.contains("data-confirm=\"Release 2 held events"));
    let p = b.post(&format!("{page_path}/guard-release"), &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303, "{}", p.html);
    let g = srv.store.deprovision_guard(&conn.id).await.unwrap().unwrap();
    assert_eq!((g.tripped_us, g.held_events), (None, 0));
    let released = srv.store.events_after(0, 1000).await.unwrap();
    assert_eq!(released.iter().filter(|e| e.kind == "user.deactivated").count(), 4);
    // Nothing left: the page says so instead of failing quietly.
    let p = b.post(&format!("{page_path}/guard-discard"), &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
}

/// Staging in the console: the badge, the match report page with its CSV upload (escaped), and
/// Activate and "Put back into staging" (asking first).
async fn the_console_stages_reports_and_activates() {
    let srv = TestServer::start().await;
    let conn = srv.conn().clone();
    let mut b = signed_in(&srv).await;
    let page_path = format!("/console/connections/{}", conn.id);
    let page = b.get(&page_path).await;
    assert!(!page.html.contains("id=\"staging-badge\""));
    let csrf = page.csrf();
    assert!(
        page.html
            .contains("data-confirm=\"Put this connection back into staging?")
    );
    let p = b.post(&format!("{page_path}/stage"), &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303, "{}", p.html);
    let page = b.get(&page_path).await;
    assert!(
        page.html.contains("id=\"staging-badge\""),
        "the page marks the connection"
    );
    assert!(page.html.contains("data-confirm=\"Go live?"));
    let org = b.get(&format!("/console/organizations/{}", conn.org_id)).await;
    assert!(org.html.contains(">staging</span>"));

    let client = srv.client();
    client.user("ann@acme.example").await;
    client.user("bob@acme.example").await;
    let report_path = format!("{page_path}/match-report");
    let report = b.get(&report_path).await;
    assert_eq!(report.status, 200);
    assert!(report.html.contains("none yet") && report.html.contains("type=\"file\""));
    let csv = "email,roles\nann@acme.example,admin\n<script>@x.example,\n";
    let p = b.post(&report_path, &[("csrf", &csrf), ("csv", csv)]).await;
    assert_eq!(p.status, 303, "{}", p.html);
    let report = b.get(&report_path).await;
    assert!(
        report.html.contains("<dd id=\"count-matched\">1</dd>"),
        "{}",
        report.html
    );
    assert!(report.html.contains("<dd id=\"count-app-only\">1 "));
    assert!(report.html.contains("<dd id=\"count-idp-only\">1 "));
    assert!(report.html.contains("script&#62;@x.example") || report.html.contains("script&gt;@x.example"));
    assert!(!report.html.contains("<script>@x"), "escaped");
    let bad = b
        .post(&report_path, &[("csrf", &csrf), ("csv", "email,mail\na,b\n")])
        .await;
    assert_eq!(bad.status, 303);
    assert!(
        srv.store
            .match_accounts(&conn.id)
            .await
            .unwrap()
            .unwrap()
            .accounts
            .len()
            == 2
    );

    let p = b.post(&format!("{page_path}/activate"), &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303, "{}", p.html);
    assert!(
        srv.store
            .get_connection(&conn.id)
            .await
            .unwrap()
            .unwrap()
            .staged_us
            .is_none()
    );
    let created = srv.store.events_after(0, 1000).await.unwrap();
    assert_eq!(created.iter().filter(|e| e.kind == "user.created").count(), 2);
    let page = b.get(&page_path).await;
    assert!(!page.html.contains("id=\"staging-badge\""));
}

/// Workspaces on the organization's page (create, settings, delete), mappings on the connection
/// page (previewed, then saved) and a user's workspaces on its page; names escaped.
async fn workspaces_on_the_organization_connection_and_user_pages() {
    let srv = TestServer::start().await;
    let conn = srv.conn().clone();
    let client = srv.client();
    let ada = client.user("ada@acme.example").await;
    let ada = ada["id"].as_str().unwrap().to_string();
    client.group("Sales", &[&ada]).await;
    let mut b = signed_in(&srv).await;
    let org_path = format!("/console/organizations/{}", conn.org_id);
    let page = b.get(&org_path).await;
    assert!(page.html.contains("id=\"workspaces\""), "a Workspaces section");
    let csrf = page.csrf();
    let p = b
        .post(
            &format!("{org_path}/workspaces"),
            &[("csrf", &csrf), ("key", "sales"), ("name", "<Sales>")],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.html);
    let page = b.get(&org_path).await;
    assert!(page.html.contains("&#60;Sales&#62;") && !page.html.contains("<Sales>"));
    let ws = srv.store.get_workspace(&conn.org_id, "sales").await.unwrap().unwrap();

    // A mapping: the first post previews, the second saves.
    let conn_path = format!("/console/connections/{}", conn.id);
    let page = b.get(&conn_path).await;
    assert!(page.html.contains("Map a group to a workspace"));
    let fields = [
        ("csrf", csrf.as_str()),
        ("kind", "group_name"),
        ("value", "sales"),
        ("workspace", "sales"),
    ];
    let preview = b.post(&format!("{conn_path}/workspace-mappings"), &fields).await;
    assert_eq!(preview.status, 200, "{}", preview.html);
    assert!(
        preview.html.contains("1 user gains &#60;Sales&#62;"),
        "{}",
        preview.html
    );
    assert!(srv.store.list_workspace_mappings(&conn.id).await.unwrap().is_empty());
    let mut confirmed = fields.to_vec();
    confirmed.push(("confirm", "yes"));
    let p = b.post(&format!("{conn_path}/workspace-mappings"), &confirmed).await;
    assert_eq!(p.status, 303, "{}", p.html);
    let mappings = srv.store.list_workspace_mappings(&conn.id).await.unwrap();
    assert_eq!(mappings.len(), 1);
    let listed = b.get(&format!("{org_path}/users?field=workspace&q=SALES")).await;
    assert_eq!(listed.status, 200);
    assert!(listed.html.contains(&ada), "the directory filters by workspace");
    let none = b.get(&format!("{org_path}/users?field=workspace&q=nope")).await;
    assert!(!none.html.contains(&ada));
    let user_page = b.get(&format!("{org_path}/users/{ada}")).await;
    assert!(
        user_page
            .html
            .contains("<dt>Workspaces</dt><dd class=\"mono\">sales</dd>")
    );

    // The settings: a default workspace, a workspace for every group.
    let p = b
        .post(
            &format!("{org_path}/workspace-settings"),
            &[("csrf", &csrf), ("default_workspace", &ws.id), ("auto_create", "on")],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.html);
    let s = srv.store.workspace_settings(&conn.org_id).await.unwrap();
    assert_eq!(s.default_workspace_id.as_deref(), Some(ws.id.as_str()));
    assert!(s.auto_create);
    assert!(b.get(&org_path).await.html.contains("sales (default)"));

    let p = b
        .post(
            &format!("{conn_path}/workspace-mappings/{}/delete", mappings[0].id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 303);
    assert!(srv.store.list_workspace_mappings(&conn.id).await.unwrap().is_empty());
    let p = b
        .post(&format!("{org_path}/workspaces/{}/delete", ws.id), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 303);
    assert!(srv.store.get_workspace(&conn.org_id, "sales").await.unwrap().is_none());
    // A form without its CSRF token changes nothing.
    let p = b.post(&format!("{org_path}/workspaces"), &[("key", "x")]).await;
    assert_ne!(p.status, 303);
    assert!(srv.store.get_workspace(&conn.org_id, "x").await.unwrap().is_none());
}

/// Waits (up to a minute) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(60) {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A form post of owned fields.
async fn post_owned(b: &mut Browser, path: &str, fields: &[(String, String)]) -> Page {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    b.post(path, &pairs).await
}

/// The text of the element with `id` (up to its closing tag).
fn element_text<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let start = at + html[at..].find('>').unwrap() + 1;
    let end = start + html[start..].find('<').unwrap();
    &html[start..end]
}

/// Provisioning targets: the organization page's section and form (refusals keep what was typed
/// but the credentials), a target's page with its plan, approval, runs, objects and a failed
/// object's retry, pausing, credentials, deletion; CSRF, escaping, credentials never shown, and
/// another organization's target not found.
async fn provisioning_targets_in_the_console() {
    let srv = TestServer::start_with(Setup {
        outbound_loopback: true,
        ..Setup::default()
    })
    .await;
    let fake = FakeTarget::start(Vendor::Generic).await;
    let token = fake.token();
    let conn = srv.conn().clone();
    let client = srv.client();
    let ada = client.user("ada@acme.example").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    client.user("bob@acme.example").await;
    let sales = client.group("Sales <team>", &[&ada]).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut b = signed_in(&srv).await;
    let org_path = format!("/console/organizations/{}", conn.org_id);
    let targets_of = |org: String| {
        let store = srv.store.clone();
        async move { store.outbound().list_targets(&org).await.unwrap() }
    };

    let page = b.get(&org_path).await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains("id=\"provisioning-targets\""), "{}", page.html);
    assert!(page.html.contains("No provisioning target yet."));
    assert!(
        page.html.contains("value=\"aws-iam-identity-center\""),
        "the profiles table"
    );
    let csrf = page.csrf();
    let form = |name: &str, url: &str, credentials: &str| -> Vec<(String, String)> {
        [
            ("csrf", csrf.as_str()),
            ("name", name),
            ("base_url", url),
            ("profile", "generic"),
            ("auth_kind", "bearer"),
            ("credentials", credentials),
            ("deprovision", "deactivate"),
            ("scope_mode", "all"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let create_path = format!("{org_path}/provisioning-targets");

    // The form's address, visited: the organization's page.
    let p = b.get(&create_path).await;
    assert_eq!(p.status, 303);
    assert_eq!(
        p.location.as_deref(),
        Some(format!("{org_path}#provisioning-targets").as_str())
    );

    // Without the CSRF token: refused, nothing created.
    let mut forged = form("Forged", &fake.base_url(), &token);
    forged.remove(0);
    let p = post_owned(&mut b, &create_path, &forged).await;
    assert_eq!(p.status, 403);
    assert!(targets_of(conn.org_id.clone()).await.is_empty());

    // Refused by the admin layer: its message, what was typed, never the credentials.
    let p = post_owned(
        &mut b,
        &create_path,
        &form("Typed <name>", "ftp://nowhere.example/scim", "SECRET-TYPED-1"),
    )
    .await;
    assert_eq!(p.status, 422, "{}", p.html);
    assert!(p.html.contains("base_url:"), "{}", p.html);
    assert!(p.html.contains("value=\"Typed &#60;name&#62;\""), "{}", p.html);
    assert!(p.html.contains("ftp://nowhere.example/scim"));
    assert!(!p.html.contains("SECRET-TYPED-1"));
    let p = post_owned(&mut b, &create_path, &form("No secret", &fake.base_url(), "")).await;
    assert_eq!(p.status, 422);
    assert!(p.html.contains("credentials must not be empty"), "{}", p.html);
    let mut chosen_nothing = form("Nobody", &fake.base_url(), "SECRET-TYPED-2");
    chosen_nothing.retain(|(k, _)| k != "scope_mode");
    chosen_nothing.push(("scope_mode".into(), "chosen".into()));
    let p = post_owned(&mut b, &create_path, &chosen_nothing).await;
    assert_eq!(p.status, 422);
    assert!(!p.html.contains("SECRET-TYPED-2"));
    let mut unknown = form("Unknown", &fake.base_url(), &token);
    unknown.push(("approved".into(), "yes".into()));
    let p = post_owned(&mut b, &create_path, &unknown).await;
    assert_eq!(p.status, 303);
    assert!(targets_of(conn.org_id.clone()).await.is_empty());

    // Created: waiting for approval, its plan on its page.
    let p = post_owned(&mut b, &create_path, &form("<b>Down</b>", &fake.base_url(), &token)).await;
    assert_eq!(p.status, 303, "{}", p.html);
    let target_path = p.location.unwrap();
    let targets = targets_of(conn.org_id.clone()).await;
    assert_eq!(targets.len(), 1);
    let id = targets[0].id.clone();
    assert_eq!(target_path, format!("{org_path}/provisioning-targets/{id}"));
    let page = b.get(&target_path).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(
        page.html
            .contains("Provisioning target &#34;&#60;b&#62;Down&#60;/b&#62;&#34; created"),
        "{}",
        page.html
    );
    assert!(!page.html.contains("<b>Down</b>") && !page.html.contains(&token));
    assert!(page.html.contains("set (never shown)"));
    assert!(page.html.contains("waiting for approval"));
    assert_eq!(element_text(&page.html, "plan-count-create"), "2");
    assert!(page.html.contains("id=\"plan-create\""));
    assert!(page.html.contains("ada@acme.example") && page.html.contains("bob@acme.example"));
    assert!(page.html.contains("Approve and start the first push"));
    assert!(
        page.html
            .contains("data-confirm=\"Approve and start the first push? 2 user(s) will be created")
    );
    assert!(!page.html.contains("Sync now"), "no sync before approval");
    assert!(fake.users().is_empty(), "the plan writes nothing");
    let listed = b.get(&org_path).await;
    assert!(
        listed
            .html
            .contains(&format!("href=\"{target_path}\">&#60;b&#62;Down&#60;/b&#62;</a>")),
        "{}",
        listed.html
    );
    assert!(!listed.html.contains(&token) && !listed.html.contains("<b>Down</b>"));

    // A target that refuses the credentials: its page says why there is no plan.
    let p = post_owned(
        &mut b,
        &create_path,
        &form("Wrong token", &fake.base_url(), "not-the-token"),
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.html);
    let wrong_path = p.location.unwrap();
    let page = b.get(&wrong_path).await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains("id=\"plan-error\""), "{}", page.html);
    assert!(page.html.contains("HTTP 401"), "{}", page.html);
    assert!(!page.html.contains("not-the-token"));
    assert_eq!(
        b.post(&format!("{wrong_path}/delete"), &[("csrf", &csrf)]).await.status,
        303
    );
    assert_eq!(targets_of(conn.org_id.clone()).await.len(), 1);

    // A scope of chosen groups: an unknown one refused (the choices kept), then shown by name.
    let mut scoped = form("Sales only", &fake.base_url(), &token);
    scoped.retain(|(k, _)| k != "scope_mode");
    for (k, v) in [
        ("scope_mode", "chosen"),
        ("groups", sales.as_str()),
        ("groups", "nope"),
        ("push_groups", sales.as_str()),
    ] {
        scoped.push((k.into(), v.into()));
    }
    let p = post_owned(&mut b, &create_path, &scoped).await;
    assert_eq!(p.status, 422);
    assert!(p.html.contains("scope: no group with id &#34;nope&#34;"), "{}", p.html);
    assert!(
        p.html.contains(&format!("name=\"groups\" value=\"{sales}\" checked")),
        "{}",
        p.html
    );
    assert!(p.html.contains("value=\"chosen\" checked"));
    scoped.retain(|(_, v)| v != "nope");
    let p = post_owned(&mut b, &create_path, &scoped).await;
    assert_eq!(p.status, 303, "{}", p.html);
    let scoped_path = p.location.unwrap();
    let page = b.get(&scoped_path).await;
    assert!(
        page.html.contains("the active members of Sales &#60;team&#62;"),
        "{}",
        page.html
    );
    assert!(
        page.html
            .contains("<dt>Groups pushed</dt><dd>Sales &#60;team&#62;</dd>"),
        "{}",
        page.html
    );
    assert_eq!(element_text(&page.html, "plan-count-in-scope"), "1");
    assert_eq!(
        b.post(&format!("{scoped_path}/delete"), &[("csrf", &csrf)])
            .await
            .status,
        303
    );
    assert_eq!(targets_of(conn.org_id.clone()).await.len(), 1);

    // Another organization's address of the target: not found, and nothing done through it.
    let other = srv
        .store
        .create_organization(&WriteContext::cli(), "other")
        .await
        .unwrap();
    let elsewhere = format!("/console/organizations/{}/provisioning-targets/{id}", other.id);
    assert_eq!(b.get(&elsewhere).await.status, 404);
    let p = b.post(&format!("{elsewhere}/approve"), &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
    assert!(
        !srv.store
            .outbound()
            .get_target(&conn.org_id, &id)
            .await
            .unwrap()
            .unwrap()
            .approved()
    );
    assert_eq!(b.get(&format!("{target_path}?state=nonsense")).await.status, 422);
    assert_eq!(b.get(&format!("{target_path}?unknown=1")).await.status, 400);
    // Approving without the CSRF token: refused.
    assert_eq!(b.post(&format!("{target_path}/approve"), &[]).await.status, 403);

    // Approved: a run pushes both users.
    let p = b.post(&format!("{target_path}/approve"), &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
    assert!(b.get(&target_path).await.html.contains("Push approved"));
    eventually("the first push", || async { fake.users().len() == 2 }).await;
    eventually("a succeeded run on the page", || {
        let mut b2 = Browser {
            http: b.http.clone(),
            base: b.base.clone(),
            cookies: b.cookies.clone(),
        };
        let path = target_path.clone();
        async move {
            let page = b2.get(&path).await;
            page.html.contains("id=\"runs-table\"") && page.html.contains("status-ok\">succeeded</span>")
        }
    })
    .await;
    let page = b.get(&target_path).await;
    assert!(
        page.html.contains("Sync now") && page.html.contains("2 created"),
        "{}",
        page.html
    );
    assert!(
        !page.html.contains("id=\"plan-summary\""),
        "the plan of an approved target is on demand"
    );
    let dry = b.get(&format!("{target_path}?plan=1")).await;
    assert_eq!(element_text(&dry.html, "plan-count-unchanged"), "2", "{}", dry.html);

    // A user the target refuses: a failed object with its error, retried from the page.
    fake.inject(FaultRule {
        fault: Fault::Status {
            status: 400,
            retry_after: None,
        },
        method: Some("POST".into()),
        resource: Some("Users".into()),
        times: usize::MAX,
    });
    let cy = client.user("cy@acme.example").await["id"].as_str().unwrap().to_string();
    eventually("cy's push to fail", || async {
        srv.store
            .outbound()
            .target_object(&conn.org_id, &id, rollcall_store::ResourceKind::User, &cy)
            .await
            .unwrap()
            .is_some_and(|o| o.state == rollcall_store::outbound::ObjectState::Failed)
    })
    .await;
    let page = b.get(&format!("{target_path}?state=failed")).await;
    assert!(page.html.contains("HTTP 400"), "{}", page.html);
    assert!(page.html.contains(&format!("{target_path}/objects/{cy}/retry")));
    let all = b.get(&target_path).await;
    let failed_at = all.html.find("status-bad\">failed</span>").expect("the failed object");
    let synced_at = all.html.find("status-ok\">synced</span>").expect("the synced objects");
    assert!(failed_at < synced_at, "failed objects come first");
    fake.clear_faults();
    assert_eq!(
        b.post(&format!("{target_path}/objects/{cy}/retry"), &[]).await.status,
        403
    );
    let p = b
        .post(&format!("{target_path}/objects/{cy}/retry"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 303);
    assert!(b.get(&target_path).await.html.contains("is pushed again now"));
    eventually("cy on the target", || async { fake.users().len() == 3 }).await;
    let p = b
        .post(&format!("{target_path}/objects/nobody/retry"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 303);
    assert!(b.get(&target_path).await.html.contains("no object with id"));

    // Pause, resume, sync.
    assert_eq!(
        b.post(&format!("{target_path}/pause"), &[("csrf", &csrf)]).await.status,
        303
    );
    let page = b.get(&target_path).await;
    assert_eq!(element_text(&page.html, "target-status"), "paused");
    assert!(page.html.contains(">Resume</button>"));
    assert_eq!(
        b.post(&format!("{target_path}/resume"), &[("csrf", &csrf)])
            .await
            .status,
        303
    );
    assert_eq!(
        element_text(&b.get(&target_path).await.html, "target-status"),
        "enabled"
    );
    assert_eq!(
        b.post(&format!("{target_path}/sync"), &[("csrf", &csrf)]).await.status,
        303
    );
    assert!(
        b.get(&target_path)
            .await
            .html
            .contains("A full reconciliation starts now")
    );

    // Deactivating a third of its users at once is more than the deletion threshold allows: the
    // run pauses the target, with the reason, and the plan warns.
    let deactivated = client
        .patch(
            &format!("/Users/{ada}"),
            &serde_json::json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        )
        .await;
    assert_eq!(deactivated.status.as_u16(), 200);
    eventually("the threshold to pause the target", || async {
        srv.store
            .outbound()
            .get_target(&conn.org_id, &id)
            .await
            .unwrap()
            .unwrap()
            .status
            == rollcall_store::outbound::TargetStatus::Paused
    })
    .await;
    let page = b.get(&format!("{target_path}?plan=1")).await;
    assert_eq!(element_text(&page.html, "target-status"), "paused");
    assert!(!element_text(&page.html, "target-reason").is_empty(), "{}", page.html);
    assert!(page.html.contains("id=\"plan-threshold\""), "{}", page.html);
    assert_eq!(element_text(&page.html, "plan-count-deactivate"), "1");
    assert!(page.html.contains("id=\"plan-deactivate\""));
    assert!(
        page.html
            .contains(&format!("href=\"{org_path}/users/{ada}\">ada@acme.example</a>")),
        "a deactivation names its user: {}",
        page.html
    );
    let listed = b.get(&org_path).await;
    assert!(
        listed
            .html
            .contains("status-warn\">paused</span><br><span class=\"help\">"),
        "{}",
        listed.html
    );

    // New credentials: never shown; empty ones refused.
    let p = b
        .post(
            &format!("{target_path}/credentials"),
            &[("csrf", &csrf), ("credentials", "NEW-SECRET-XYZ")],
        )
        .await;
    assert_eq!(p.status, 303);
    let page = b.get(&target_path).await;
    assert!(page.html.contains("Credentials replaced") && !page.html.contains("NEW-SECRET-XYZ"));
    assert_eq!(
        srv.store
            .outbound()
            .get_target(&conn.org_id, &id)
            .await
            .unwrap()
            .unwrap()
            .credentials,
        "NEW-SECRET-XYZ"
    );
    b.post(
        &format!("{target_path}/credentials"),
        &[("csrf", &csrf), ("credentials", "")],
    )
    .await;
    assert!(b.get(&target_path).await.html.contains("credentials must not be empty"));

    // Deleted: gone from the organization's page; its page is not found.
    assert_eq!(b.post(&format!("{target_path}/delete"), &[]).await.status, 403);
    let p = b.post(&format!("{target_path}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
    assert!(p.location.unwrap().starts_with(&org_path));
    assert!(targets_of(conn.org_id.clone()).await.is_empty());
    assert_eq!(b.get(&target_path).await.status, 404);
}

backend_tests!(
    sessions_and_csrf,
    escaping_and_headers,
    connection_page_shows_tokens_and_explained_requests,
    a_google_workspace_connection_shows_its_sync,
    a_google_workspace_connection_is_created_from_the_form,
    the_connection_page_shows_and_resolves_the_guard,
    the_console_stages_reports_and_activates,
    workspaces_on_the_organization_connection_and_user_pages,
    provisioning_targets_in_the_console
);
