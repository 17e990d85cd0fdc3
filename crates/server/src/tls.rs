//! TLS for `rollcall serve --tls-cert FILE --tls-key FILE`: rustls with the ring provider (the
//! one sqlx and the webhook client use), HTTP/1.1 only.
//!
//! The handshake runs in the accept loop's connection task before hyper sees the connection,
//! under the header-read timeout (see [`crate::serve`]), so a client that opens a socket and
//! never finishes its handshake holds a connection slot no longer than one that never finishes
//! its request head.

pub use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The TLS configuration of the server: the certificate chain in `cert` and its private key in
/// `key`, both PEM. Errors name the file and say what is wrong with it.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| format!("cannot read the TLS {what} file {}: {e}", path.display()))
    };
    let cert_pem = read(cert, "certificate")?;
    let key_pem = read(key, "private key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the TLS certificate file {} is not valid PEM: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "the TLS certificate file {} holds no certificate (expected PEM \"-----BEGIN CERTIFICATE-----\")",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "the TLS private key file {} holds no usable private key (expected PEM PKCS#8, PKCS#1 or SEC1): {e}",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!(
                "the TLS private key in {} does not go with the certificate in {} (or is of an unsupported kind): {e}",
                key.display(),
                cert.display()
            )
        })?;
    // The server speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let e = server_config(&cert, &key).unwrap_err();
        assert!(
            e.contains("cannot read the TLS certificate file") && e.contains("cert.pem"),
            "{e}"
        );
        std::fs::write(&cert, "not a certificate\n").unwrap();
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        let e = server_config(&cert, &key).unwrap_err();
        assert!(e.contains("holds no certificate") && e.contains("cert.pem"), "{e}");
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
        std::fs::write(&key, "nothing\n").unwrap();
        let e = server_config(&cert, &key).unwrap_err();
        assert!(e.contains("no usable private key") && e.contains("key.pem"), "{e}");
    }
}
