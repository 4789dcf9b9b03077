//! The reference implementation's adapter: the shim protocol (spec/conformance.md §7) over
//! the `coffer` library, on stdin and stdout.

use crate::shim::PROTOCOL;
use coffer::crypt15::{self, DecryptOptions, EncryptOptions, HeaderSpec, PayloadEncoding};
use coffer::format::{decrypt_parallel_at, Parallelism};
use coffer::format::{Compression, Header, WriteOptions};
use coffer::http::{recover_from_realms, register_with_realms, RealmClient, VaultClient};
use coffer::internal::cobblestone::{encrypt_with_salt, SALT_LEN};
use coffer::internal::format_header::{encode_footer, header_check, INFO_FILE_KEY};
use coffer::key::{BackupKey, KeyFile, RootKey};
use coffer::realms::{RealmSet, RealmsFailure};
use coffer::vault::KsfParams;
use coffer::Classify;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::time::Duration;

fn bytes(request: &Value, field: &str) -> Result<Vec<u8>, String> {
    let text = request[field]
        .as_str()
        .ok_or_else(|| format!("no {field}"))?;
    hex::decode(text).map_err(|e| format!("{field}: {e}"))
}

fn root(request: &Value) -> Result<RootKey, String> {
    let key: [u8; 32] = bytes(request, "key")?
        .try_into()
        .map_err(|_| "key: 32 bytes".to_string())?;
    Ok(RootKey::from_bytes(key))
}

fn backup_key(request: &Value) -> Result<BackupKey, String> {
    if request.get("key_file").is_some() {
        return match KeyFile::parse(&bytes(request, "key_file")?).map_err(|e| e.to_string())? {
            KeyFile::Legacy(l) => Ok(BackupKey::Legacy(l)),
            KeyFile::EncryptedBackupKey(k) | KeyFile::Hex(k) => Ok(BackupKey::Root(k)),
        };
    }
    Ok(BackupKey::Root(root(request)?))
}

fn text<'a>(request: &'a Value, field: &str) -> Result<&'a str, String> {
    request[field].as_str().ok_or_else(|| format!("no {field}"))
}

fn vault_client(request: &Value) -> Result<VaultClient, String> {
    let client = VaultClient::new(
        text(request, "url")?,
        text(request, "token")?,
        text(request, "server_id")?,
    );
    Ok(match request["server_key"].as_str() {
        None => client,
        Some(text) => {
            let mut key = [0u8; coffer::vault::SERVER_KEY_LEN];
            hex::decode_to_slice(text, &mut key).map_err(|_| "server_key: not 64 hex digits")?;
            client.pin_server_key(key)
        }
    })
}

/// The realms of a `realms_register` or `realms_recover` request, and the client's
/// configuration of them (spec/conformance.md §13).
fn realms_of(request: &Value) -> Result<(Vec<RealmClient>, RealmSet), String> {
    let timeout = Duration::from_millis(request["timeout_ms"].as_u64().unwrap_or(10_000));
    let mut realms = Vec::new();
    for realm in request["realms"].as_array().ok_or("no realms")? {
        realms.push(RealmClient::new(
            text(realm, "realm_id")?,
            text(realm, "url")?,
            text(realm, "token")?,
            timeout,
        ));
    }
    let set = RealmSet {
        realm_ids: realms.iter().map(|r| r.realm_id().to_owned()).collect(),
        threshold: request["threshold"]
            .as_u64()
            .and_then(|t| u8::try_from(t).ok())
            .ok_or("no threshold")?,
        limit: request["limit"]
            .as_u64()
            .and_then(|l| u32::try_from(l).ok())
            .unwrap_or(100),
        ksf: KsfParams::parse(text(request, "ksf")?).map_err(|e| e.to_string())?,
    };
    Ok((realms, set))
}

/// Each realm named once, in the order first named.
fn named(problems: &[(String, String)]) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for (realm, _) in problems {
        if !names.contains(&realm.as_str()) {
            names.push(realm);
        }
    }
    names
}

/// A realms failure as a shim answer: its class and the realms it names.
fn realms_failure(e: &RealmsFailure) -> Value {
    json!({"ok": false, "error": e.class().as_str(), "named": named(&e.realms),
        "detail": e.to_string()})
}

/// `decrypt_file` / `encrypt_file` (the bench workloads, spec/conformance.md §7): streaming
/// from `input` to `output` as the `coffer` CLI does (Coffer files decrypt on all cores). A
/// failure leaves no output behind.
fn file_op(request: &Value, format: &str) -> Result<Result<Value, String>, String> {
    let input = std::path::Path::new(text(request, "input")?);
    let output = std::path::Path::new(text(request, "output")?);
    let io = |e: std::io::Error| format!("{}: {e}", input.display());
    let source = std::fs::File::open(input).map_err(io)?;
    let target = std::fs::File::create(output).map_err(io)?;
    let buffered = |f| std::io::BufReader::with_capacity(1 << 20, f);
    let done: Result<(), String> = match (request["op"].as_str().unwrap_or_default(), format) {
        ("decrypt_file", "crypt15") => {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, target);
            crypt15::decrypt(
                &backup_key(request)?,
                buffered(source),
                &mut out,
                &DecryptOptions::default(),
                &mut |_| {},
            )
            .map_err(|e| e.class().to_string())
            .and_then(|_| out.flush().map_err(|_| "io".to_string()))
        }
        ("decrypt_file", "coffer") => decrypt_parallel_at(
            &source,
            &root(request)?,
            &target,
            Parallelism::threads(0),
            &|_| {},
        )
        .map(|_| ())
        .map_err(|e| e.class().to_string()),
        ("encrypt_file", "crypt15") => {
            let mut iv = [0u8; 16];
            getrandom::fill(&mut iv).map_err(|e| e.to_string())?;
            let header = HeaderSpec::new(iv, "2.24.1.1", "00", 1).encode();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, target);
            crypt15::encrypt(
                &root(request)?,
                &header,
                buffered(source),
                &mut out,
                &EncryptOptions::default(),
                &mut |_| {},
            )
            .map_err(|e| e.class().to_string())
            .and_then(|_| out.flush().map_err(|_| "io".to_string()))
        }
        ("encrypt_file", "coffer") => {
            let compression = match request["compression"].as_str() {
                Some("none") => Compression::None,
                _ => Compression::ZstdSeekable,
            };
            let mut out = std::io::BufWriter::with_capacity(1 << 20, target);
            let encrypted = coffer::format::encrypt(
                &root(request)?,
                Header::new(compression, Vec::new()),
                &mut buffered(source),
                &mut out,
                &WriteOptions::default(),
            )
            .map(|_| ())
            .map_err(|e| e.class().to_string());
            encrypted.and_then(|()| out.flush().map_err(|_| "io".to_string()))
        }
        ("realms_recover", _) => {
            let (realms, set) = realms_of(request)?;
            let password = text(request, "password")?.as_bytes();
            return Ok(Ok(
                match recover_from_realms(&realms, &set, text(request, "user")?, password) {
                    Ok((root, problems)) => json!({"ok": true, "key": root.to_hex().as_str(),
                        "named": named(&problems)}),
                    Err(e) => realms_failure(&e),
                },
            ));
        }
        ("realms_register", _) => {
            let (realms, set) = realms_of(request)?;
            let (user, password) = (text(request, "user")?, text(request, "password")?);
            return Ok(Ok(
                match register_with_realms(
                    &realms,
                    &set,
                    user,
                    password.as_bytes(),
                    &root(request)?,
                ) {
                    Ok(()) => json!({"ok": true, "named": []}),
                    Err(e) => realms_failure(&e),
                },
            ));
        }
        _ => return Ok(Err("unimplemented".into())),
    };
    if done.is_err() {
        let _ = std::fs::remove_file(output);
    }
    Ok(done.map(|()| json!({})))
}

/// One request's answer fields (without type and id).
fn answer(request: &Value) -> Result<Result<Value, String>, String> {
    let format = request["format"].as_str().unwrap_or_default();
    Ok(match (request["op"].as_str().unwrap_or_default(), format) {
        // The crypt15 reader reads crypt14 and crypt12 too (spec/crypt15.md §9, §10).
        ("decrypt", "crypt15" | "crypt14" | "crypt12") => {
            let file = bytes(request, "file")?;
            let mut out = Vec::new();
            crypt15::decrypt(
                &backup_key(request)?,
                &file[..],
                &mut out,
                &DecryptOptions::default(),
                &mut |_| {},
            )
            .map(|_| json!({"plaintext": hex::encode(&out)}))
            .map_err(|e| e.class().to_string())
        }
        ("decrypt", "coffer") => {
            let file = bytes(request, "file")?;
            let mut out = Vec::new();
            coffer::format::decrypt(&file[..], &root(request)?, &mut out)
                .map(|_| json!({"plaintext": hex::encode(&out)}))
                .map_err(|e| e.class().to_string())
        }
        ("encrypt", "crypt15") => {
            let options = EncryptOptions {
                payload: PayloadEncoding::Stored,
                md5: request["md5"].as_bool().unwrap_or(true),
                ..EncryptOptions::default()
            };
            let payload = bytes(request, "payload")?;
            let mut out = Vec::new();
            crypt15::encrypt(
                &root(request)?,
                &bytes(request, "header")?,
                &payload[..],
                &mut out,
                &options,
                &mut |_| {},
            )
            .map(|_| json!({"file": hex::encode(&out)}))
            .map_err(|e| e.class().to_string())
        }
        ("encrypt", "coffer") => {
            let header = bytes(request, "header")?;
            let salt: [u8; SALT_LEN] = bytes(request, "salt")?
                .try_into()
                .map_err(|_| "salt: 24 bytes".to_string())?;
            let context = &header[..header.len().saturating_sub(8)];
            let file_key = root(request)?.derive(INFO_FILE_KEY);
            let body = encrypt_with_salt(&file_key, &salt, context, &bytes(request, "payload")?)
                .map_err(|e| e.to_string())?;
            let mut file = context.to_vec();
            file.extend_from_slice(&header_check(
                context,
                &salt,
                &body[SALT_LEN..SALT_LEN + 32],
            ));
            file.extend_from_slice(&body);
            let len = file.len() as u64 + 16;
            file.extend_from_slice(&encode_footer(len));
            Ok(json!({"file": hex::encode(file)}))
        }
        ("decrypt_file" | "encrypt_file", _) => file_op(request, format)?,
        ("vault_recover", _) => {
            let client = vault_client(request)?;
            client
                .recover(
                    text(request, "user")?,
                    text(request, "password")?.as_bytes(),
                )
                .map(|r| json!({"key": r.root.to_hex().as_str()}))
                .map_err(|e| e.class().to_string())
        }
        ("vault_register", _) => {
            let client = vault_client(request)?;
            let limit = request["limit"]
                .as_u64()
                .and_then(|l| u32::try_from(l).ok());
            client
                .register(
                    text(request, "user")?,
                    text(request, "password")?.as_bytes(),
                    &root(request)?,
                    limit,
                )
                .map(|()| json!({}))
                .map_err(|e| e.class().to_string())
        }
        ("realms_recover", _) => {
            let (realms, set) = realms_of(request)?;
            let password = text(request, "password")?.as_bytes();
            return Ok(Ok(
                match recover_from_realms(&realms, &set, text(request, "user")?, password) {
                    Ok((root, problems)) => json!({"ok": true, "key": root.to_hex().as_str(),
                        "named": named(&problems)}),
                    Err(e) => realms_failure(&e),
                },
            ));
        }
        ("realms_register", _) => {
            let (realms, set) = realms_of(request)?;
            let (user, password) = (text(request, "user")?, text(request, "password")?);
            return Ok(Ok(
                match register_with_realms(
                    &realms,
                    &set,
                    user,
                    password.as_bytes(),
                    &root(request)?,
                ) {
                    Ok(()) => json!({"ok": true, "named": []}),
                    Err(e) => realms_failure(&e),
                },
            ));
        }
        _ => return Ok(Err("unimplemented".into())),
    })
}

/// Serves the protocol until stdin closes.
pub fn serve() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let request: Value = serde_json::from_str(&line?)?;
        let reply = if request["type"] == "hello" {
            json!({"type": "hello", "protocol": PROTOCOL, "name": "coffer (reference)",
                "version": env!("CARGO_PKG_VERSION"),
                "capabilities": {"decrypt": ["crypt15", "crypt14", "crypt12", "coffer"], "encrypt": ["crypt15", "coffer"],
                    "decrypt_file": ["crypt15", "coffer"], "encrypt_file": ["crypt15", "coffer"],
                    "vault_client": true, "realms_client": true}})
        } else {
            let mut reply = match answer(&request) {
                Ok(Ok(fields)) => {
                    let mut r = fields;
                    if r.get("ok").is_none() {
                        r["ok"] = json!(true);
                    }
                    r
                }
                Ok(Err(class)) if class == "unimplemented" => {
                    json!({"ok": false, "unimplemented": true})
                }
                Ok(Err(class)) => json!({"ok": false, "error": class}),
                Err(bad) => json!({"ok": false, "error": "malformed", "detail": bad}),
            };
            reply["type"] = json!("response");
            reply["id"] = request["id"].clone();
            reply
        };
        writeln!(stdout, "{reply}")?;
        stdout.flush()?;
    }
    Ok(())
}
