//! The vault server's message handling on hostile bytes: every entry point either answers or
//! fails with a class, never panics, and a guess is never counted for a malformed KE1.
#![no_main]

use coffer::hsm::SoftHsm;
use coffer::store::SqliteStore;
use coffer::vault::{KsfParams, RecordId, ServerConfig, SessionId, VaultServer};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn server() -> &'static VaultServer<SqliteStore, SoftHsm> {
    static SERVER: OnceLock<VaultServer<SqliteStore, SoftHsm>> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("coffer-fuzz-vault-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(&dir.join("vault.db")).unwrap();
        let hsm = SoftHsm::from_key(&[7u8; 32], &dir.join("key")).unwrap();
        let config = ServerConfig {
            ksf: KsfParams::TEST,
            ..ServerConfig::default()
        };
        VaultServer::open(store, hsm, config).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let vault = server();
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut id = [0u8; 16];
    let n = rest.len().min(16);
    id[..n].copy_from_slice(&rest[..n]);
    let (record, session) = (RecordId::from_bytes(id), SessionId::from_bytes(id));
    let _ = match selector % 6 {
        0 => vault.register_start("t", "u", rest).map(|_| ()),
        1 => vault.register_finish("t", "u", record, rest, rest.get(..60).unwrap_or(rest), None),
        2 => vault.recover_start("t", "fuzz", rest).map(|_| ()),
        3 => vault.recover_finish("t", &session, rest).map(|_| ()),
        4 => vault.change_password_start("t", &session, rest).map(|_| ()),
        _ => vault
            .change_password_finish("t", &session, rest, rest)
            .map(|_| ()),
    };
});
