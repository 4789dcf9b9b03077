//! Coffer's conformance runner (spec/conformance.md): suites of cases run against an
//! implementation, results graded against an expected-failures file, reports for CI. Suites:
//! `client-format` and `client-vault` (through a shim adapter), `vault-server` (black-box
//! HTTP), `hsm` (a PKCS#11 module, one child process per check).

pub mod adapter;
pub mod bench;
pub mod case;
pub mod expected;
pub mod http;
pub mod jobs;
pub mod local_vault;
pub mod matrix;
pub mod report;
pub mod shim;
pub mod suites {
    //! One module per suite.
    pub mod client_format;
    pub mod client_realms;
    pub mod client_vault;
    pub mod hsm;
    pub mod realm_server;
    pub mod vault_server;
}
