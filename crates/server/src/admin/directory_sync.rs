//! Directory connections (Google Workspace): creating one from a service account key, changing its
//! settings, reading its sync status, and asking for a sync now. The key is checked here (a service
//! account's, with an RSA key that signs), sealed by the store, and never returned.

use super::{Admin, AdminError, AdminResult, admin_err, validate_name, with_org};
use crate::directory_sync::google::ServiceAccountKey;
use crate::directory_sync::http::check_url;
use rollcall_store::directory_sync::{DEFAULT_INTERVAL_S, MAX_INTERVAL_S, MIN_INTERVAL_S};
use rollcall_store::sqlite::now_us;
use rollcall_store::{
    Connection, ConnectionKind, DirectorySettings, DirectorySource, DirectorySourceUpdate, NewDirectoryConnection,
    SyncScope, WriteContext,
};

/// The longest list of organizational units or groups in a scope.
pub const MAX_SCOPE_ENTRIES: usize = 100;

/// What is needed to create a Google Workspace connection.
#[derive(Clone, Default)]
pub struct GoogleWorkspaceInput {
    pub name: Option<String>,
    /// `None`: `my_customer` (the admin's own account).
    pub customer: Option<String>,
    pub admin_email: String,
    /// The service account key file's JSON.
    pub credentials: String,
    pub scope: SyncScope,
    /// `None`: every ten minutes.
    pub interval_s: Option<i64>,
    /// Test doubles of Google's endpoints (`None`: Google's).
    pub api_base_url: Option<String>,
    pub token_url: Option<String>,
}

/// A change to a Google Workspace connection; `None` leaves a field as it is (for the base URLs,
/// `Some(None)` goes back to Google's).
#[derive(Clone, Default)]
pub struct GoogleWorkspaceChange {
    pub customer: Option<String>,
    pub admin_email: Option<String>,
    pub credentials: Option<String>,
    pub scope: Option<SyncScope>,
    pub interval_s: Option<i64>,
    pub api_base_url: Option<Option<String>>,
    pub token_url: Option<Option<String>>,
}

fn validate_customer(c: &str) -> AdminResult<String> {
    let c = c.trim();
    if c == "my_customer"
        || (!c.is_empty() && c.len() <= 64 && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
    {
        Ok(c.to_string())
    } else {
        Err(AdminError::invalid(format!(
            "customer \"{c}\" is not a Google customer id (like C03az79cb, in the Admin console under Account › \
             Account settings) or my_customer"
        )))
    }
}

fn validate_email(what: &str, e: &str) -> AdminResult<String> {
    let e = e.trim();
    match e.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
                && e.len() <= 254 =>
        {
            Ok(e.to_string())
        }
        _ => Err(AdminError::invalid(format!("{what} \"{e}\" is not an e-mail address"))),
    }
}

fn validate_scope(scope: &SyncScope) -> AdminResult<SyncScope> {
    if scope.org_units.len() > MAX_SCOPE_ENTRIES || scope.groups.len() > MAX_SCOPE_ENTRIES {
        return Err(AdminError::invalid(format!(
            "a scope names at most {MAX_SCOPE_ENTRIES} organizational units and {MAX_SCOPE_ENTRIES} groups"
        )));
    }
    let mut out = SyncScope::default();
    for u in &scope.org_units {
        let u = u.trim();
        if !u.starts_with('/') || u.len() > 1000 || u.chars().any(char::is_control) {
            return Err(AdminError::invalid(format!(
                "organizational unit \"{u}\" is not a path like /Engineering"
            )));
        }
        out.org_units.push(u.to_string());
    }
    for g in &scope.groups {
        out.groups.push(validate_email("group", g)?);
    }
    Ok(out)
}

fn validate_interval(i: i64) -> AdminResult<i64> {
    if (MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(&i) {
        Ok(i)
    } else {
        Err(AdminError::invalid(format!(
            "interval_s must be between {MIN_INTERVAL_S} and {MAX_INTERVAL_S} seconds, not {i}"
        )))
    }
}

fn validate_url(what: &str, u: Option<&str>) -> AdminResult<Option<String>> {
    match u.map(str::trim).filter(|u| !u.is_empty()) {
        None => Ok(None),
        Some(u) => check_url(u)
            .map(|_| Some(u.trim_end_matches('/').to_string()))
            .map_err(|e| AdminError::invalid(format!("{what}: {e}"))),
    }
}

fn parse_key(credentials: &str) -> AdminResult<ServiceAccountKey> {
    let key = ServiceAccountKey::parse(credentials).map_err(AdminError::invalid)?;
    if let Some(uri) = &key.token_uri {
        check_url(uri).map_err(|e| AdminError::invalid(format!("the credentials' token_uri: {e}")))?;
    }
    Ok(key)
}

impl Admin {
    /// Creates a Google Workspace connection in an organization: no token; its first sync is due
    /// at once.
    pub async fn create_google_workspace_connection(
        &self,
        by: &WriteContext,
        org_id: &str,
        input: GoogleWorkspaceInput,
    ) -> AdminResult<(Connection, DirectorySource)> {
        let org = self.organization(org_id).await?;
        let name = match input.name.as_deref() {
            Some(n) => validate_name("the connection name", n)?,
            None => "Google Workspace".to_string(),
        };
        let key = parse_key(&input.credentials)?;
        let settings = DirectorySettings {
            customer: validate_customer(input.customer.as_deref().unwrap_or("my_customer"))?,
            admin_email: validate_email("admin_email", &input.admin_email)?,
            client_email: key.client_email.clone(),
            client_id: key.client_id.clone(),
            scope: validate_scope(&input.scope)?,
            api_base_url: validate_url("api_base_url", input.api_base_url.as_deref())?,
            token_url: validate_url("token_url", input.token_url.as_deref())?,
        };
        let interval_s = validate_interval(input.interval_s.unwrap_or(DEFAULT_INTERVAL_S))?;
        let created = self
            .store
            .create_directory_connection(
                &with_org(by, &org.id),
                NewDirectoryConnection {
                    org_id: org.id,
                    name,
                    kind: ConnectionKind::GoogleWorkspace,
                    settings,
                    credentials: input.credentials,
                    interval_s,
                },
            )
            .await
            .map_err(admin_err)?;
        self.wake_directory_sync();
        Ok(created)
    }

    /// A directory connection's settings and sync status: 404 without the connection, 409 for a
    /// SCIM connection.
    pub async fn directory_source(&self, connection_id: &str) -> AdminResult<(Connection, DirectorySource)> {
        let c = self.connection(connection_id).await?;
        let s = self.store.directory_source(connection_id).await?.ok_or_else(|| {
            AdminError::new(
                409,
                format!("connection \"{connection_id}\" is a SCIM connection: its identity provider pushes, nothing is synced"),
            )
        })?;
        Ok((c, s))
    }

    /// Changes a Google Workspace connection's settings or key.
    pub async fn update_google_workspace(
        &self,
        by: &WriteContext,
        connection_id: &str,
        change: GoogleWorkspaceChange,
    ) -> AdminResult<(Connection, DirectorySource)> {
        let (c, current) = self.directory_source(connection_id).await?;
        let mut settings = current.settings.clone();
        if let Some(customer) = &change.customer {
            settings.customer = validate_customer(customer)?;
        }
        if let Some(admin) = &change.admin_email {
            settings.admin_email = validate_email("admin_email", admin)?;
        }
        if let Some(scope) = &change.scope {
            settings.scope = validate_scope(scope)?;
        }
        if let Some(u) = &change.api_base_url {
            settings.api_base_url = validate_url("api_base_url", u.as_deref())?;
        }
        if let Some(u) = &change.token_url {
            settings.token_url = validate_url("token_url", u.as_deref())?;
        }
        if let Some(credentials) = &change.credentials {
            let key = parse_key(credentials)?;
            settings.client_email = key.client_email;
            settings.client_id = key.client_id;
        }
        let interval_s = change.interval_s.map(validate_interval).transpose()?;
        let s = self
            .store
            .update_directory_source(
                &with_org(by, &c.org_id),
                connection_id,
                DirectorySourceUpdate {
                    settings: Some(settings),
                    credentials: change.credentials,
                    interval_s,
                },
            )
            .await
            .map_err(admin_err)?
            .ok_or_else(|| AdminError::not_found(format!("no SCIM connection with id \"{connection_id}\"")))?;
        Ok((c, s))
    }

    /// Asks for a sync of a directory connection now (after the one in progress, if any); a
    /// serving node starts it within moments (at once on this node).
    pub async fn request_directory_sync(&self, connection_id: &str) -> AdminResult<(Connection, DirectorySource)> {
        let (c, _) = self.directory_source(connection_id).await?;
        if c.status == rollcall_store::ConnectionStatus::Disabled {
            return Err(AdminError::new(
                409,
                format!("connection \"{connection_id}\" is disabled: enable it to sync"),
            ));
        }
        self.store.request_directory_sync(connection_id, now_us()).await?;
        self.wake_directory_sync();
        self.directory_source(connection_id).await
    }

    fn wake_directory_sync(&self) {
        if let Some(w) = &self.directory_wake {
            w.notify_one();
        }
    }
}
