//! The fuzz targets' bodies, one function per target: `fuzz_targets/*.rs` hand them to
//! libFuzzer, and the workspace's `reference/cli/tests/fuzz_regressions.rs` replays every
//! input under `reference/fuzz/regressions/<target>/` through the same functions, so the
//! targets are compiled and run by the test command and cannot rot. Each must never panic
//! (an assertion here is a property the fuzzer checks).

#![allow(dead_code)] // each fuzz binary uses one function

use coffer::format::{self, decrypt_parallel, Parallelism, RandomAccess};
use coffer::internal::cobblestone::{derive, SALT_LEN};
use coffer::internal::format_header::{header_check, inspect, key_id, INFO_FILE_KEY, MAGIC};
use coffer::key::{BackupKey, RootKey};
use std::sync::OnceLock;

/// `header`: the crypt15 header/prefix parser and the protobuf reader on arbitrary bytes:
/// bounded reads, the header's bytes are a prefix of the input, the IV is 16 bytes.
pub(crate) fn header(data: &[u8]) {
    let mut input = data;
    if let Ok(header) = coffer::crypt15::read_header(&mut input) {
        assert_eq!(header.raw.len() + input.len(), data.len());
        assert_eq!(header.iv.len(), 16);
    }
    let fields: Vec<_> = coffer::internal::protobuf::fields(data).collect();
    if let Some(at) = fields.iter().position(Result::is_err) {
        assert_eq!(at, fields.len() - 1, "nothing follows an error");
    }
}

/// `decrypt`: the whole crypt15/14/12 pipeline on arbitrary files; success only for files
/// that authenticate (which random input essentially never does), and then the output is
/// what was counted.
pub(crate) fn decrypt(data: &[u8]) {
    let key = BackupKey::Root(RootKey::from_bytes([7u8; 32]));
    let options = coffer::crypt15::DecryptOptions {
        block_size: 64,
        ..coffer::crypt15::DecryptOptions::default()
    };
    let mut out = Vec::new();
    if let Ok(summary) = coffer::crypt15::decrypt(&key, data, &mut out, &options, &mut |_| {}) {
        assert_eq!(summary.output_bytes, out.len() as u64);
    }
}

/// A valid header (with its check, salt and commitment) around `meta`.
fn preamble(root: &RootKey, compression: u8, meta: &[u8]) -> Vec<u8> {
    let salt = [3u8; SALT_LEN];
    let mut context = MAGIC.to_vec();
    context.extend_from_slice(&[1, 1, compression, 0]);
    context.extend_from_slice(&((16 + 16 + meta.len() + 8) as u32).to_be_bytes());
    context.extend_from_slice(&key_id(root, &salt));
    context.extend_from_slice(meta);
    let keys = derive(&root.derive(INFO_FILE_KEY), &salt, &context);
    let mut out = context.clone();
    out.extend_from_slice(&header_check(&context, &salt, &keys.commitment));
    out.extend_from_slice(&salt);
    out.extend_from_slice(&keys.commitment);
    out
}

/// `format`: the Coffer-format readers on hostile input; the sequential and parallel readers
/// agree. The first byte picks what is fuzzed, so the fuzzer gets past the header check and
/// the commitment (which random bytes never satisfy): 0: the whole file; 1/2: the body and
/// footer after a valid header (uncompressed / zstd); 3: the metadata of a valid header.
pub(crate) fn format(data: &[u8]) {
    let root = RootKey::from_bytes([7u8; 32]);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = match mode % 4 {
        0 => rest.to_vec(),
        1 | 2 => [preamble(&root, mode % 4 - 1, &[]), rest.to_vec()].concat(),
        _ => {
            let split = rest.len().min(rest.first().copied().unwrap_or(0) as usize);
            [preamble(&root, 0, &rest[..split]), rest[split..].to_vec()].concat()
        }
    };
    let mut out = Vec::new();
    let sequential = format::decrypt(&file[..], &root, &mut out);
    let mut par_out = Vec::new();
    let parallel = decrypt_parallel(
        &file[..],
        &root,
        &mut par_out,
        Parallelism {
            threads: 2,
            min_chunks: 0,
        },
        &|_| {},
    );
    assert_eq!(sequential.is_ok(), parallel.is_ok());
    assert_eq!(out, par_out);
    if let Ok(mut access) = RandomAccess::open(&file[..], &root) {
        let mut buf = [0u8; 64];
        let _ = access.read_at(0, &mut buf);
    }
    let _ = inspect(&mut &file[..], file.len() as u64);
}

/// `vault`: the vault server's message handling on hostile bytes: every entry point either
/// answers or fails with a class; a malformed KE1 counts no guess.
pub(crate) fn vault(data: &[u8]) {
    use coffer::hsm::SoftHsm;
    use coffer::store::SqliteStore;
    use coffer::vault::{KsfParams, RecordId, ServerConfig, SessionId, VaultServer};
    static SERVER: OnceLock<VaultServer<SqliteStore, SoftHsm>> = OnceLock::new();
    let vault = SERVER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("coffer-fuzz-vault-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(&dir.join("vault.db")).unwrap();
        let hsm = SoftHsm::from_key(&[7u8; 32], &dir.join("key")).unwrap();
        let config = ServerConfig {
            ksf: KsfParams::TEST,
            ..ServerConfig::default()
        };
        VaultServer::open(store, hsm, config).unwrap()
    });
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
}
