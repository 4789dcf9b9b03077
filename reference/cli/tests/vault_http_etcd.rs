//! The vault HTTP suite (tests/suites/vault_http.rs, crash test included) on the etcd store:
//! `coffer vault serve --store etcd://...` against a real single-member etcd on loopback
//! (Debian etcd-server; opt out with COFFER_SKIP_ETCD=1), the master key on the soft backend.

use coffer_testkit::etcd;
#[path = "suites/vault_http.rs"]
mod suite;
use coffer_testkit::tokens;

/// HTTPS with a private CA (true), or plain HTTP on loopback.
const TLS: bool = false;

const BACKEND: Option<tokens::Module> = None;

/// A prefix of the shared etcd member, unique to the data directory.
fn store_url(data: &std::path::Path) -> Option<String> {
    Some(etcd::store_url(data))
}

/// Opted out of etcd: every case skips (never runs on SQLite under this file's name).
fn store_skipped() -> bool {
    etcd::skipped()
}
