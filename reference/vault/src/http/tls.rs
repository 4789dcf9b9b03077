//! TLS for the vault's HTTP (`spec/vault.md` §9.1): the server's certificate and key, read
//! from PEM files and reloadable; the client's roots (the system's, or a CA file the operator
//! names); and the rule that a client speaks plain HTTP only to a loopback address unless
//! told otherwise by name.

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key or CA file that cannot be read or does not hold what it should.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The certificate and key do not go together, or rustls refused them.
    #[error("TLS: {0}")]
    Config(String),
}

fn file_error(path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        why: why.to_string(),
    }
}

/// The crypto provider of every TLS connection Coffer makes or accepts (aws-lc-rs).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// Every certificate of a PEM file.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The server's certificate chain and key, as files, and what was last read from them.
pub struct ServerTls {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: Arc<Current>,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// The certificate last loaded, which rustls asks for at each handshake.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|current| current.clone())
    }
}

fn load_certified(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| file_error(key_path, e))?;
    CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| TlsError::Config(format!("{}: {e}", key_path.display())))
}

/// The SHA-256 of a client's verified leaf certificate: how a tenant is known by its
/// certificate (`spec/vault.md` §9). Set by the listener on each request of a connection
/// whose handshake verified one; a request cannot set it itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCert(pub [u8; 32]);

impl ClientCert {
    /// The fingerprint of a DER certificate.
    pub fn of(der: &[u8]) -> Self {
        use sha2::Digest;
        ClientCert(sha2::Sha256::digest(der).into())
    }
}

impl ServerTls {
    /// Reads the PEM certificate chain and private key (PKCS#8, PKCS#1 or SEC1), checking
    /// that they go together. TLS 1.2 and 1.3, HTTP/1.1 by ALPN.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        Self::load_with_client_ca(cert_path, key_path, None)
    }

    /// [`ServerTls::load`], and, with `client_ca`, client certificates asked for and
    /// verified against the CA certificates of that PEM file (a client without one still
    /// connects, and authenticates with a token instead).
    pub fn load_with_client_ca(
        cert_path: &Path,
        key_path: &Path,
        client_ca: Option<&Path>,
    ) -> Result<Arc<Self>, TlsError> {
        let current = Arc::new(Current(RwLock::new(Arc::new(load_certified(
            cert_path, key_path,
        )?))));
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certificates(path)? {
                    roots.add(cert).map_err(|e| file_error(path, e))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| file_error(path, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(ServerTls {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        }))
    }

    /// What identifies the files' current contents cheaply: size, modification time and
    /// inode of each (`None` for a file that cannot be read).
    pub(super) fn fingerprint(&self) -> [Option<(u64, std::time::SystemTime, u64)>; 2] {
        let of = |path: &Path| {
            let meta = std::fs::metadata(path).ok()?;
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&meta);
            #[cfg(not(unix))]
            let inode = 0;
            Some((meta.len(), meta.modified().ok()?, inode))
        };
        [of(&self.cert_path), of(&self.key_path)]
    }

    /// Reads the files again; on failure the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let certified = load_certified(&self.cert_path, &self.key_path)?;
        let mut current = self
            .current
            .0
            .write()
            .map_err(|_| TlsError::Config("the certificate lock is poisoned".into()))?;
        *current = Arc::new(certified);
        Ok(())
    }

    pub(super) fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }
}

/// How a client reaches a server: whose certificates it trusts, and whether it may speak
/// plain HTTP to a host that is not loopback.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// Trust only these roots (a CA file); `None` trusts the system's roots.
    pub roots: Option<Vec<CertificateDer<'static>>>,
    /// Allow `http://` to any host (`--insecure-http`): the token and the messages then
    /// cross the network in clear.
    pub insecure_http: bool,
    /// A client certificate to present (a tenant known by its certificate, `spec/vault.md`
    /// §9), from [`ClientIdentity::load`].
    pub identity: Option<ClientIdentity>,
}

/// A client certificate chain and its private key, as presented in the TLS handshake.
#[derive(Clone)]
pub struct ClientIdentity(ureq::tls::ClientCert);

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity { .. }")
    }
}

impl ClientIdentity {
    /// Reads a PEM certificate chain and its PEM private key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let chain: Vec<ureq::tls::Certificate<'static>> = read_certificates(cert_path)?
            .iter()
            .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        let pem =
            zeroize::Zeroizing::new(std::fs::read(key_path).map_err(|e| file_error(key_path, e))?);
        let key = ureq::tls::PrivateKey::from_pem(&pem).map_err(|e| file_error(key_path, e))?;
        Ok(ClientIdentity(ureq::tls::ClientCert::new_with_certs(
            &chain, key,
        )))
    }
}

impl ClientTls {
    /// Trust only the certificates of a PEM file.
    pub fn with_ca_file(path: &Path) -> Result<Self, TlsError> {
        Ok(ClientTls {
            roots: Some(read_certificates(path)?),
            insecure_http: false,
            identity: None,
        })
    }

    /// The ureq TLS settings: these roots, or the system's (for callers that make raw
    /// requests, as the conformance runner does).
    pub fn ureq_config(&self) -> Result<ureq::tls::TlsConfig, String> {
        let roots: Vec<ureq::tls::Certificate<'static>> = match &self.roots {
            Some(roots) => roots
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                .collect(),
            None => {
                let found = rustls_native_certs::load_native_certs();
                if found.certs.is_empty() {
                    return Err(format!(
                        "no system root certificates ({}): install ca-certificates or name a CA file",
                        found
                            .errors
                            .first()
                            .map(|e| e.to_string())
                            .unwrap_or_else(|| "none found".into())
                    ));
                }
                found
                    .certs
                    .iter()
                    .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                    .collect()
            }
        };
        Ok(ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(provider())
            .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
            .client_cert(self.identity.as_ref().map(|i| i.0.clone()))
            .build())
    }
}

/// The scheme of a server URL, checked against the rule of `spec/vault.md` §9.1: `https`
/// anywhere; `http` only to a loopback host (`localhost`, 127.0.0.0/8, `::1`) unless
/// `insecure_http`. Returns true for `https`.
pub fn check_url(url: &str, insecure_http: bool) -> Result<bool, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url}: not a URL (http://HOST:PORT or https://HOST:PORT)"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(true),
        "http" if insecure_http || is_loopback(rest) => Ok(false),
        "http" => Err(format!(
            "{url}: plain HTTP to a host that is not loopback would send the token and every \
             message in clear; use https:// (or, on a network you trust, --insecure-http)"
        )),
        _ => Err(format!("{url}: the scheme must be https or http")),
    }
}

/// Whether the authority of a URL (after `scheme://`) names a loopback host.
fn is_loopback(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn plain_http_only_to_loopback_unless_named() {
        for ok in [
            "http://127.0.0.1:8443",
            "http://127.9.9.9",
            "http://localhost:1/x",
            "http://LOCALHOST",
            "http://[::1]:8443/",
            "HTTP://127.0.0.1",
        ] {
            assert_eq!(check_url(ok, false), Ok(false), "{ok}");
        }
        for refused in [
            "http://vault.example:8443",
            "http://10.0.0.1",
            "http://[::2]:1",
            "http://127.0.0.1.example",
            "http://localhost.example",
            "http://user@vault.example",
            "http://127.0.0.1@vault.example",
        ] {
            let why = check_url(refused, false).unwrap_err();
            assert!(why.contains("--insecure-http"), "{refused}: {why}");
            assert_eq!(check_url(refused, true), Ok(false), "{refused}");
        }
        assert_eq!(check_url("https://vault.example", false), Ok(true));
        for (url, why) in [
            ("ftp://127.0.0.1", "ftp"),
            ("127.0.0.1:8443", "127.0.0.1:8443"),
        ] {
            let refused = check_url(url, true).unwrap_err();
            assert!(refused.contains(why), "{url}: {refused}");
        }
    }
}
