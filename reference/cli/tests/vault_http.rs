//! The vault HTTP suite (tests/suites/vault_http.rs, crash test included) over HTTPS (a
//! private CA made for the test), with the master key on the embedded soft backend (a key
//! file).

#[path = "suites/vault_http.rs"]
mod suite;
use coffer_testkit::tokens;

/// HTTPS with a private CA (true), or plain HTTP on loopback.
const TLS: bool = true;

const BACKEND: Option<tokens::Module> = None;

/// The embedded SQLite store.
fn store_url(_: &std::path::Path) -> Option<String> {
    None
}

fn store_skipped() -> bool {
    false
}
