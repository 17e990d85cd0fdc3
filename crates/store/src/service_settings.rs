//! Settings of the service kept in the database, so that every node and the command line read the
//! same value: the public URL identity providers reach the service at ([`PUBLIC_URL`]), recorded
//! by `rollcall serve` when it starts. The statements are written once for both databases.

/// The public base URL `rollcall serve` was last started with.
pub const PUBLIC_URL: &str = "public_url";

/// The statement reading a setting (`key`).
pub(crate) const GET: &str = "SELECT value, updated_us FROM service_settings WHERE key = $1";
/// The statement writing a setting (`key`, `value`, `updated_us`).
pub(crate) const PUT: &str = "INSERT INTO service_settings (key, value, updated_us) VALUES ($1, $2, $3)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_us = excluded.updated_us";

/// One setting as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSetting {
    pub value: String,
    /// When it was last written, in microseconds since the epoch.
    pub updated_us: i64,
}
