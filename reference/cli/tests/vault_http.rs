//! The vault HTTP suite (tests/suites/vault_http.rs, crash test included) with the master
//! key on the embedded soft backend (a key file).

#[path = "suites/vault_http.rs"]
mod suite;
use coffer_testkit::tokens;

const BACKEND: Option<tokens::Module> = None;

/// The embedded SQLite store.
fn store_url(_: &std::path::Path) -> Option<String> {
    None
}
