//! The fuzz targets' bodies, one function per target: `fuzz_targets/*.rs` hand them to
//! libFuzzer, and the workspace's `reference/cli/tests/fuzz_regressions.rs` replays every
//! input under `reference/fuzz/regressions/<target>/` through the same functions, so the
//! targets are compiled and run by the test command and cannot rot. Each must never panic
//! (an assertion here is a property the fuzzer checks).

#![allow(dead_code)] // each fuzz binary uses one function

use coffer::format::{self, decrypt_parallel, Parallelism, RandomAccess};
use coffer::internal::cobblestone::{derive, SALT_LEN};
use coffer::internal::format_header::{
    encode_footer, header_check, inspect, key_id, INFO_FILE_KEY, MAGIC,
};
use coffer::internal::stream::ChunkedWriter;
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

/// A whole file whose payload is `payload`, sealed under `root`: it authenticates, so the
/// payload's parser is what gets fuzzed.
fn sealed(root: &RootKey, compression: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = preamble(root, compression, &[]);
    let header_len = out.len() - 56;
    let context = out[..header_len - 8].to_vec();
    out.truncate(header_len);
    let salt = [3u8; SALT_LEN];
    let file_key = root.derive(INFO_FILE_KEY);
    let mut writer = ChunkedWriter::new(&mut out, &file_key, &salt, &context).expect("in memory");
    std::io::Write::write_all(&mut writer, payload).expect("in memory");
    writer.finish().expect("in memory");
    let len = out.len() as u64 + 16;
    out.extend_from_slice(&encode_footer(len));
    out
}

/// `format`: the Coffer-format readers on hostile input; the sequential and parallel readers
/// agree, and random access reads what the sequential reader released. The first byte picks
/// what is fuzzed, so the fuzzer gets past the header check, the commitment and the chunk
/// tags (which random bytes never satisfy): 0: the whole file; 1/2: the body and footer
/// after a valid header (uncompressed / zstd); 3: the metadata of a valid header; 4/5: an
/// authenticated payload, zstd in one frame / seekable frames and their table.
pub(crate) fn format(data: &[u8]) {
    let root = RootKey::from_bytes([7u8; 32]);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = match mode % 6 {
        0 => rest.to_vec(),
        1 | 2 => [preamble(&root, mode % 6 - 1, &[]), rest.to_vec()].concat(),
        3 => {
            let split = rest.len().min(rest.first().copied().unwrap_or(0) as usize);
            [preamble(&root, 0, &rest[..split]), rest[split..].to_vec()].concat()
        }
        m => sealed(&root, m - 3, rest),
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
        // A file that decrypts whole reads the same at any offset (plaintexts here are
        // small: a fuzz input decompresses to at most a few frames).
        if sequential.is_ok() && access.len() < (1 << 26) {
            let mut all = vec![0u8; access.len() as usize];
            assert_eq!(access.read_at(0, &mut all).ok(), Some(all.len()));
            assert_eq!(all, out);
        }
    }
    let _ = inspect(&mut &file[..], file.len() as u64);
}

/// `vault`: the vault server's message handling on hostile bytes: every entry point either
/// answers or fails with a class; a malformed KE1 counts no guess.
pub(crate) fn vault(data: &[u8]) {
    use coffer::vault::{RecordId, SessionId};
    let vault = fuzz_vault();
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

/// The target's crypt15 key, and its crypt12/14 `key` file (the sample of wa-crypt-tools).
const LEGACY_KEY_FILE: &[u8] = include_bytes!("../../../vectors/external/wa-crypt-tools/key");
/// A real crypt14 file, whose header (salts of the sample key file, IV) the target reuses.
const CRYPT14_SAMPLE: &[u8] =
    include_bytes!("../../../vectors/external/wa-crypt-tools/msgstore.db.crypt14");

fn legacy_key() -> coffer::key::LegacyKey {
    match coffer::key::KeyFile::parse(LEGACY_KEY_FILE) {
        Ok(coffer::key::KeyFile::Legacy(key)) => key,
        _ => unreachable!("the sample key file is a crypt12/14 key"),
    }
}

/// `payload`: everything after authentication in crypt15/14/12. The input is the GCM
/// plaintext itself, sealed here under the target's key so that it authenticates: zlib
/// streams, stored ZIPs and anything else. The first byte: bit 0 appends the MD5 trailer,
/// the rest picks the read block size. Checks: any block size gives the same answer; a
/// zlib payload inflates to what C zlib (flate2) makes of it; anything else passes through.
pub(crate) fn payload(data: &[u8]) {
    use coffer::crypt15::{DecryptOptions, EncryptOptions, HeaderSpec, PayloadEncoding};
    use coffer::Classify;
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let root = RootKey::from_bytes([7u8; 32]);
    let header = HeaderSpec::new([5u8; 16], "2.22.5.13", "67", 0).encode();
    let options = EncryptOptions {
        payload: PayloadEncoding::Stored,
        md5: mode & 1 == 1,
        ..EncryptOptions::default()
    };
    let mut file = Vec::new();
    coffer::crypt15::encrypt(&root, &header, payload, &mut file, &options, &mut |_| {})
        .expect("a stored payload always encrypts");
    let key = BackupKey::Root(root);
    let run = |block_size: usize, decompress: bool| {
        let options = DecryptOptions {
            block_size,
            decompress,
        };
        let mut out = Vec::new();
        let result = coffer::crypt15::decrypt(&key, &file[..], &mut out, &options, &mut |_| {});
        (result.map_err(|e| e.class()), out)
    };
    let (whole, whole_out) = run(1 << 16, true);
    let (small, small_out) = run(1 + usize::from(mode >> 1), true);
    assert_eq!(
        whole.as_ref().map(|s| s.output_bytes),
        small.as_ref().map(|s| s.output_bytes),
        "the block size changed the answer"
    );
    let Ok(summary) = whole else {
        return;
    };
    assert_eq!(whole_out, small_out);
    assert_eq!(summary.output_bytes, whole_out.len() as u64);
    if summary.payload == coffer::crypt15::PayloadKind::Zlib {
        let mut inflated = Vec::new();
        let mut decoder = flate2::read::ZlibDecoder::new(payload);
        std::io::Read::read_to_end(&mut decoder, &mut inflated)
            .expect("C zlib inflates what Coffer accepted");
        assert_eq!(whole_out, inflated, "Coffer and C zlib inflate differently");
    } else {
        assert_eq!(
            whole_out, payload,
            "a payload that is not zlib passes through"
        );
    }
    let (raw, raw_out) = run(1 << 16, false);
    assert!(
        raw.is_ok(),
        "an accepted file also decrypts without inflating"
    );
    assert_eq!(raw_out, payload);
}

/// `legacy`: crypt14 and crypt12 under their `key` file (salt checks, the legacy headers,
/// layouts with and without MD5, the crypt12 footer). The first byte picks the file: 0, the
/// input itself; 1, a crypt14 with the input as its authenticated payload (the header of a
/// real crypt14); 2, the same as a crypt12 (its 4-byte footer from the input's end).
pub(crate) fn legacy(data: &[u8]) {
    use openssl::hash::{hash, MessageDigest};
    use openssl::symm::{encrypt_aead, Cipher};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = legacy_key();
    let seal = |header: &[u8], iv: &[u8], payload: &[u8]| {
        let mut tag = [0u8; 16];
        let body = encrypt_aead(
            Cipher::aes_256_gcm(),
            &key.aes_key,
            Some(iv),
            &[],
            payload,
            &mut tag,
        )
        .expect("AES-GCM seals");
        let mut file = [header, &body, &tag].concat();
        file.extend_from_slice(&hash(MessageDigest::md5(), &file).expect("MD5"));
        file
    };
    let file = match mode % 3 {
        0 => rest.to_vec(),
        1 => {
            let header = coffer::crypt15::read_header(&mut &CRYPT14_SAMPLE[..])
                .expect("the sample's header parses");
            seal(&header.raw, &header.iv, rest)
        }
        _ => {
            let iv = [9u8; 16];
            let header = [
                &[0x00, 0x01, 0x02][..],
                &key.server_salt,
                &key.google_id_salt,
                &iv,
            ]
            .concat();
            let split = rest.len().saturating_sub(4);
            let mut file = seal(&header, &iv, &rest[..split]);
            file.extend_from_slice(&rest[split..]);
            file
        }
    };
    let backup_key = BackupKey::Legacy(key);
    let options = coffer::crypt15::DecryptOptions {
        block_size: 64,
        ..coffer::crypt15::DecryptOptions::default()
    };
    let mut out = Vec::new();
    if let Ok(summary) =
        coffer::crypt15::decrypt(&backup_key, &file[..], &mut out, &options, &mut |_| {})
    {
        assert_eq!(summary.output_bytes, out.len() as u64);
        assert_ne!(
            summary.header.format,
            coffer::crypt15::BackupFormat::Crypt15
        );
    }
}

/// `key_file`: every form of key the CLI reads (the 64-digit text, `encrypted_backup.key`,
/// the crypt12/14 `key` file). What parses writes back to bytes that parse to the same key.
pub(crate) fn key_file(data: &[u8]) {
    use coffer::key::KeyFile;
    match KeyFile::parse(data) {
        Ok(KeyFile::EncryptedBackupKey(root)) => {
            assert_eq!(data, &root.to_encrypted_backup_key()[..]);
        }
        Ok(KeyFile::Hex(root)) => {
            let again = RootKey::parse(&root.to_grouped()).expect("the grouped form parses");
            assert_eq!(again.as_bytes(), root.as_bytes());
        }
        Ok(KeyFile::Legacy(legacy)) => {
            assert_eq!(data, &legacy.to_file_bytes()[..]);
        }
        Err(_) => {}
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(root) = RootKey::parse(text) {
            assert_eq!(
                RootKey::parse(&root.to_hex()).unwrap().as_bytes(),
                root.as_bytes()
            );
        }
    }
}

/// `hsm_uri`: `--hsm` (`soft:DIR` or an RFC 7512 `pkcs11:` URI with its percent-encoding).
/// Inputs naming a PIN file are skipped: the parser would read whatever file they name.
pub(crate) fn hsm_uri(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("pin-source") {
        return;
    }
    let token = coffer::hsm::uri::parse_token(text);
    if let Ok(coffer::hsm::uri::HsmLocation::Pkcs11(config)) = coffer::hsm::uri::parse(text) {
        // The security officer's reading of a URI names the same token, module and key.
        let token = token.expect("a URI with a PIN also parses without needing one");
        assert_eq!(
            (&config.token, &config.module, &config.key_label),
            (&token.token, &token.module, &token.key_label)
        );
    }
}

/// `etcd_config`: `--store etcd://host:port,...[/prefix]`: at least one member, each an
/// http(s) URL, and a prefix that starts and ends with `/`.
pub(crate) fn etcd_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = coffer::store::EtcdConfig::parse(text) {
        assert!(!config.endpoints.is_empty());
        let scheme = if text.starts_with("etcds://") {
            "https://"
        } else {
            "http://"
        };
        assert!(config.endpoints.iter().all(|e| e.starts_with(scheme)));
        assert!(config.prefix.starts_with('/') && config.prefix.ends_with('/'));
    }
}

/// `range`: `--range START:END`, then resolved against a plaintext length taken from the
/// input's first 8 bytes: what parses prints back to a range that parses the same, and a
/// resolved range lies inside the plaintext.
pub(crate) fn range(data: &[u8]) {
    use coffer::format::ByteRange;
    let (total, text) = match data.split_first_chunk::<8>() {
        Some((total, text)) => (u64::from_le_bytes(*total), text),
        None => (0, data),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(range) = text.parse::<ByteRange>() else {
        return;
    };
    assert_eq!(range.to_string().parse::<ByteRange>(), Ok(range));
    if let Ok((start, end)) = range.resolve(total) {
        assert!(start <= end && end <= total);
        assert!(start >= range.start.min(end));
    }
}

/// `vault_client`: the vault client's side of OPAQUE against a hostile server. The first byte
/// picks what the server sent: 0, the KSF parameters' text; 1, KE2 (to a real KE1, with
/// cheap parameters); 2, the registration response; 3, the released envelope as sent; 4, a
/// payload that the real session key seals, so that the envelope inside is what is fuzzed.
/// Nothing forged opens: only the real server's answers may succeed.
pub(crate) fn vault_client(data: &[u8]) {
    use coffer::vault::{
        KsfFloor, KsfParams, LoginDone, Parties, RecordId, RecoveryClient, RegistrationClient,
        SessionId,
    };
    struct Login {
        parties: Parties,
        done: LoginDone,
        session: SessionId,
    }
    static LOGIN: OnceLock<Login> = OnceLock::new();
    let login = LOGIN.get_or_init(|| {
        let vault = fuzz_vault();
        let root = RootKey::from_bytes([9u8; 32]);
        let (client, request) = RegistrationClient::start(b"pw").unwrap();
        let start = vault.register_start("t", "client", &request).unwrap();
        let parties = Parties {
            user: "client".into(),
            server_id: vault.server_id().into(),
        };
        let (upload, envelope) = client
            .ksf_floor(KsfFloor::NONE)
            .finish(
                &parties,
                &start.response,
                &start.ksf,
                &start.record_id,
                1,
                &root,
            )
            .unwrap();
        vault
            .register_finish("t", "client", start.record_id, &upload, &envelope, None)
            .unwrap();
        let (client, ke1) = RecoveryClient::start(b"pw").unwrap();
        let start = vault.recover_start("t", "client", &ke1).unwrap();
        let done = client
            .ksf_floor(KsfFloor::NONE)
            .finish(&parties, &start.ke2, &start.ksf)
            .unwrap();
        Login {
            parties,
            done,
            session: start.session_id,
        }
    });
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let cheap = KsfParams::TEST.name();
    match mode % 5 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(ksf) = KsfParams::parse(text) {
                assert_eq!(KsfParams::parse(&ksf.name()).ok(), Some(ksf));
                assert!(
                    ksf.argon2().is_ok(),
                    "{text}: parsed, but Argon2 refuses it"
                );
                let _ = KsfFloor::RECOMMENDED.check(&ksf);
            }
        }
        1 => {
            let (client, _) = RecoveryClient::start(b"pw").unwrap();
            let client = client.ksf_floor(KsfFloor::NONE);
            assert!(
                client.finish(&login.parties, rest, &cheap).is_err(),
                "a forged KE2 logged in"
            );
        }
        2 => {
            let (client, _) = RegistrationClient::start(b"pw").unwrap();
            let root = RootKey::from_bytes([9u8; 32]);
            let id = RecordId::from_bytes([1u8; 16]);
            let client = client.ksf_floor(KsfFloor::NONE);
            // A response is only points: any valid one completes registration (the pin and
            // the later login are what authenticate the server), so only no panic is checked.
            let _ = client.finish(&login.parties, rest, &cheap, &id, 1, &root);
        }
        3 => {
            assert!(
                login.done.open(&login.session, rest).is_err(),
                "a forged release opened"
            );
        }
        _ => {
            use coffer::internal::envelope::seal_transport;
            let sealed = seal_transport(
                login.done.session_key(),
                &login.session,
                rest,
                &mut rand_core::OsRng,
            )
            .unwrap();
            assert!(
                login.done.open(&login.session, &sealed).is_err(),
                "an envelope not sealed under the export key opened"
            );
        }
    }
}

type FuzzVault = coffer::vault::VaultServer<coffer::store::SqliteStore, coffer::hsm::SoftHsm>;

/// One vault server per fuzzing process: SQLite and a soft HSM in a temporary directory,
/// cheap KSF parameters.
fn fuzz_vault() -> &'static FuzzVault {
    use coffer::hsm::SoftHsm;
    use coffer::store::SqliteStore;
    use coffer::vault::{KsfParams, ServerConfig, VaultServer};
    static SERVER: OnceLock<FuzzVault> = OnceLock::new();
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
