//! A private certificate authority for tests on loopback: a CA, and a server certificate it
//! signed for `localhost`, `127.0.0.1` and `::1`, written as PEM files (the key 0600) for
//! `coffer vault serve --tls-cert/--tls-key` and the clients' `--ca`.

use std::path::{Path, PathBuf};

/// The files of a test PKI.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (what clients trust).
    pub ca: PathBuf,
    /// The server's certificate chain (leaf, then CA).
    pub cert: PathBuf,
    /// The server's private key (PKCS#8).
    pub key: PathBuf,
}

/// Makes a CA named `name` and a server certificate it signed, in `dir`.
pub fn issue(dir: &Path, name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    std::fs::create_dir_all(dir).expect("the PKI directory");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let hosts = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let mut leaf_params = CertificateParams::new(hosts).expect("server parameters");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} on loopback"));
    let leaf_key = KeyPair::generate().expect("server key");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("server certificate");
    let pki = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&pki.ca, ca.pem()).expect("write the CA");
    std::fs::write(&pki.cert, format!("{}{}", leaf.pem(), ca.pem())).expect("write the chain");
    write_private(&pki.key, leaf_key.serialize_pem().as_bytes());
    pki
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .expect("write the key");
}

/// A ureq agent for raw requests in tests that trusts only `ca` (any status is an answer).
pub fn agent(ca: Option<&Path>) -> ureq::Agent {
    let config = ureq::Agent::config_builder().http_status_as_error(false);
    let config = match ca {
        None => config,
        Some(ca) => {
            let pem = std::fs::read(ca).expect("read the CA");
            let root = ureq::tls::Certificate::from_pem(&pem).expect("a PEM certificate");
            config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::Rustls)
                    .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                        rustls::crypto::aws_lc_rs::default_provider(),
                    ))
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&[root]))
                    .build(),
            )
        }
    };
    config.build().into()
}
