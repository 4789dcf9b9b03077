//! The vault HTTP suite (tests/suites/vault_http.rs, crash test included) with the master
//! key on kryoptic (PKCS#11; opt out with COFFER_SKIP_KRYOPTIC=1).

#[path = "suites/vault_http.rs"]
mod suite;
use coffer_testkit::tokens;

/// HTTPS with a private CA (true), or plain HTTP on loopback.
const TLS: bool = false;

const BACKEND: Option<tokens::Module> = Some(tokens::Module::Kryoptic);

/// The embedded SQLite store.
fn store_url(_: &std::path::Path) -> Option<String> {
    None
}

fn store_skipped() -> bool {
    false
}
