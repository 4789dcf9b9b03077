//! Wycheproof vectors (vendored in `vectors/external/wycheproof/`, Apache-2.0) applied to the
//! C2SP layer through every interface it has (whole message, streaming, random access, raw
//! mode, encryption with an injected salt) and to the primitives under it.

use coffer::format::{FormatError, RandomAccess};
use coffer::internal::cobblestone::{self, ChunkCipher, PREFIX_LEN, SALT_LEN, SEALED_CHUNK_SIZE};
use coffer::internal::stream::{self, ChunkedReader};
use serde_json::Value;
use sha2::{Digest, Sha512};
use std::io::Read;
use std::path::PathBuf;

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../vectors/external/wycheproof")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("vector file is JSON")
}

fn hex_field(t: &Value, k: &str) -> Vec<u8> {
    hex::decode(t[k].as_str().unwrap_or_else(|| panic!("field {k}"))).expect("hex")
}

fn flags(t: &Value) -> Vec<String> {
    t["flags"]
        .as_array()
        .map(|a| a.iter().map(|f| f.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

struct C2spCase {
    id: u64,
    comment: String,
    key: Vec<u8>,
    ctx: Vec<u8>,
    ct: Vec<u8>,
    valid: bool,
    flags: Vec<String>,
    msg_len: Option<usize>,
    msg_sha: Option<Vec<u8>>,
    aead_key: Option<Vec<u8>>,
    base_nonce: Option<Vec<u8>>,
}

fn c2sp_cases() -> Vec<C2spCase> {
    let file = load("c2sp_chunked_encryption_aes_256_gcm_test.json");
    let mut out = Vec::new();
    for group in file["testGroups"].as_array().unwrap() {
        assert_eq!(group["aead"], "AEAD_AES_256_GCM");
        assert_eq!(group["sha"], "SHA-512");
        for t in group["tests"].as_array().unwrap() {
            let compressed = hex_field(t, "ct");
            let mut ct = Vec::new();
            flate2::read::ZlibDecoder::new(&compressed[..])
                .read_to_end(&mut ct)
                .expect("ct is zlib");
            out.push(C2spCase {
                id: t["tcId"].as_u64().unwrap(),
                comment: t["comment"].as_str().unwrap().to_string(),
                key: hex_field(t, "key"),
                ctx: hex_field(t, "ctx"),
                ct,
                valid: t["result"] == "valid",
                flags: flags(t),
                msg_len: t["msgLength"].as_u64().map(|n| n as usize),
                msg_sha: t.get("msgSha512").map(|_| hex_field(t, "msgSha512")),
                aead_key: t.get("aeadKey").map(|_| hex_field(t, "aeadKey")),
                base_nonce: t.get("baseNonce").map(|_| hex_field(t, "baseNonce")),
            });
        }
    }
    assert_eq!(out.len() as u64, file["numberOfTests"].as_u64().unwrap());
    out
}

fn sha512(data: &[u8]) -> Vec<u8> {
    Sha512::digest(data).to_vec()
}

#[test]
fn c2sp_whole_message_decryption() {
    let (mut valid, mut invalid) = (0, 0);
    for case in c2sp_cases() {
        let result = stream::decrypt(&case.key, &case.ctx, &case.ct);
        if case.valid {
            let msg = result.unwrap_or_else(|e| panic!("tc {} ({}): {e}", case.id, case.comment));
            assert_eq!(Some(msg.len()), case.msg_len, "tc {}", case.id);
            assert_eq!(Some(sha512(&msg)), case.msg_sha, "tc {}", case.id);
            valid += 1;
        } else {
            let refused = result.as_ref().map(drop).unwrap_err();
            assert_eq!(
                coffer::Classify::class(refused),
                expected_class(&case),
                "tc {} ({}) must be rejected with its class",
                case.id,
                case.comment
            );
            if case.flags.iter().any(|f| f == "InvalidKeySize") {
                assert!(
                    matches!(result, Err(FormatError::KeySize(_))),
                    "tc {}",
                    case.id
                );
            }
            invalid += 1;
        }
    }
    assert!(
        valid >= 10 && invalid >= 20,
        "{valid} valid, {invalid} invalid"
    );
}

/// Streaming: a reader may release only the valid prefix the vector names, must fail, and
/// must keep failing.
#[test]
fn c2sp_streaming_partial_plaintext_rule() {
    for case in c2sp_cases() {
        let Ok(key) = <[u8; 32]>::try_from(&case.key[..]) else {
            continue;
        };
        let mut released = Vec::new();
        let outcome = match ChunkedReader::new(&case.ct[..], &key, &case.ctx) {
            Err(e) => Err(e),
            Ok(mut reader) => {
                // Odd read sizes exercise the buffering.
                let mut buf = vec![0u8; 7777];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break Ok(()),
                        Ok(n) => released.extend_from_slice(&buf[..n]),
                        Err(e) => {
                            let again = reader.read(&mut buf).map(drop).unwrap_err();
                            assert_eq!(
                                again.to_string(),
                                e.to_string(),
                                "tc {}: must keep failing the same way",
                                case.id
                            );
                            break Err(FormatError::from_io(e));
                        }
                    }
                }
            }
        };
        if case.valid {
            assert!(outcome.is_ok(), "tc {}: {outcome:?}", case.id);
            assert_eq!(Some(sha512(&released)), case.msg_sha, "tc {}", case.id);
        } else {
            let refused = outcome.as_ref().map(drop).unwrap_err();
            assert_eq!(
                coffer::Classify::class(refused),
                expected_class(&case),
                "tc {} ({}) must fail with its class",
                case.id,
                case.comment
            );
            let prefix_len = if case.flags.iter().any(|f| f == "PartialPlaintext") {
                case.msg_len.unwrap()
            } else {
                0
            };
            assert!(
                released.len() <= prefix_len,
                "tc {}: released {} > {prefix_len}",
                case.id,
                released.len()
            );
            if released.len() == prefix_len && prefix_len > 0 {
                assert_eq!(Some(sha512(&released)), case.msg_sha, "tc {}", case.id);
            }
        }
    }
}

#[test]
fn c2sp_random_access() {
    for case in c2sp_cases() {
        let Ok(key) = <[u8; 32]>::try_from(&case.key[..]) else {
            continue;
        };
        let opened = RandomAccess::open_c2sp(&case.ct[..], &key, &case.ctx);
        let length_ok = case.valid || case.flags.iter().any(|f| f == "ValidFinalChunk");
        match opened {
            Ok(mut access) => {
                assert!(
                    length_ok,
                    "tc {} ({}): the length must not authenticate",
                    case.id, case.comment
                );
                let mut all = vec![0u8; access.len() as usize];
                let read = access.read_at(0, &mut all);
                if case.valid {
                    assert_eq!(read.unwrap(), all.len());
                    assert_eq!(Some(sha512(&all)), case.msg_sha, "tc {}", case.id);
                } else {
                    // Random access authenticates chunk by chunk: a bad chunk is corrupt
                    // whatever the whole-message reader would have called the file.
                    let refused = read.map(drop).unwrap_err();
                    assert_eq!(
                        coffer::Classify::class(&refused),
                        coffer::ErrorClass::Corrupt,
                        "tc {} ({}): reading everything must fail: {refused}",
                        case.id,
                        case.comment
                    );
                }
            }
            Err(e) => assert!(!case.valid, "tc {} ({}): {e}", case.id, case.comment),
        }
    }
}

/// Raw mode: the derivation reproduces aeadKey/baseNonce, and decrypting the body with them
/// gives the same verdict.
#[test]
fn c2sp_raw_mode_and_derivation() {
    let mut checked = 0;
    for case in c2sp_cases() {
        let (Some(aead_key), Some(base_nonce)) = (&case.aead_key, &case.base_nonce) else {
            continue;
        };
        let aead_key: [u8; 32] = aead_key[..].try_into().unwrap();
        let base_nonce: [u8; 12] = base_nonce[..].try_into().unwrap();
        if let (Ok(key), Some(salt)) =
            (<[u8; 32]>::try_from(&case.key[..]), case.ct.get(..SALT_LEN))
        {
            let keys = cobblestone::derive(&key, salt.try_into().unwrap(), &case.ctx);
            if case.valid {
                assert_eq!(*keys.aead_key, aead_key, "tc {}", case.id);
                assert_eq!(keys.base_nonce, base_nonce, "tc {}", case.id);
            }
        }
        let mut cipher = ChunkCipher::from_raw(&aead_key, &base_nonce).unwrap();
        let body = &case.ct[PREFIX_LEN..];
        let mut msg = Vec::new();
        let mut ok = true;
        let mut offset = 0;
        for index in 0.. {
            let end = (offset + SEALED_CHUNK_SIZE).min(body.len());
            let mut sealed = body[offset..end].to_vec();
            match cipher.open(index, &mut sealed) {
                Some(n) => msg.extend_from_slice(&sealed[..n]),
                None => {
                    ok = false;
                    break;
                }
            }
            offset = end;
            if sealed.len() < SEALED_CHUNK_SIZE {
                ok = offset == body.len();
                break;
            }
            if offset == body.len() {
                ok = false;
                break;
            }
        }
        assert_eq!(ok, case.valid, "tc {} ({})", case.id, case.comment);
        if ok {
            assert_eq!(Some(sha512(&msg)), case.msg_sha);
        }
        checked += 1;
    }
    assert!(checked >= 20, "{checked}");
}

/// Encryption with the vector's salt injected reproduces the ciphertext byte for byte.
#[test]
fn c2sp_encryption_with_injected_salt() {
    let mut checked = 0;
    for case in c2sp_cases().into_iter().filter(|c| c.valid) {
        let key: [u8; 32] = case.key[..].try_into().unwrap();
        let msg = stream::decrypt(&case.key, &case.ctx, &case.ct).unwrap();
        let salt: [u8; SALT_LEN] = case.ct[..SALT_LEN].try_into().unwrap();
        let again = cobblestone::encrypt_with_salt(&key, &salt, &case.ctx, &msg).unwrap();
        assert!(again == case.ct, "tc {}: re-encryption differs", case.id);
        let mut streamed = Vec::new();
        let mut writer =
            coffer::internal::stream::ChunkedWriter::new(&mut streamed, &key, &salt, &case.ctx)
                .unwrap();
        for piece in msg.chunks(5000) {
            std::io::Write::write_all(&mut writer, piece).unwrap();
        }
        writer.finish().unwrap();
        assert!(
            streamed == case.ct,
            "tc {}: streaming re-encryption differs",
            case.id
        );
        checked += 1;
    }
    assert!(checked >= 10);
}

/// AES-GCM (OpenSSL): every vector with the IV and tag sizes Coffer uses (12 or 16 bytes,
/// 16-byte tag) through the one-shot API
/// (as crypt15 uses it); the 256-bit / 96-bit-IV / 128-bit-tag / no-AAD ones also through
/// the chunk cipher of the C2SP layer.
#[test]
fn aes_gcm_vectors() {
    use openssl::symm::{decrypt_aead, Cipher};
    let file = load("aes_gcm_test.json");
    let (mut checked, mut via_chunk) = (0, 0);
    for group in file["testGroups"].as_array().unwrap() {
        let key_size = group["keySize"].as_u64().unwrap();
        let tag_size = group["tagSize"].as_u64().unwrap() as usize / 8;
        let cipher = match key_size {
            128 => Cipher::aes_128_gcm(),
            192 => Cipher::aes_192_gcm(),
            256 => Cipher::aes_256_gcm(),
            _ => continue,
        };
        for t in group["tests"].as_array().unwrap() {
            let (key, iv, aad, msg, ct, tag) = (
                hex_field(t, "key"),
                hex_field(t, "iv"),
                hex_field(t, "aad"),
                hex_field(t, "msg"),
                hex_field(t, "ct"),
                hex_field(t, "tag"),
            );
            let valid = t["result"] == "valid";
            if !(iv.len() == 12 || iv.len() == 16) || tag.len() != 16 {
                // Coffer uses 12-byte (C2SP) and 16-byte (crypt15) IVs with 16-byte tags only.
                continue;
            }
            let got = decrypt_aead(cipher, &key, Some(&iv), &aad, &ct, &tag);
            match got {
                Ok(plain) => {
                    assert!(t["result"] != "invalid", "tc {} accepted", t["tcId"]);
                    assert_eq!(plain, msg, "tc {}", t["tcId"]);
                }
                Err(_) => assert!(!valid, "tc {} rejected", t["tcId"]),
            }
            checked += 1;
            if key_size == 256 && iv.len() == 12 && aad.is_empty() && tag_size == 16 {
                let mut chunk = ChunkCipher::from_raw(
                    &key[..].try_into().unwrap(),
                    &iv[..].try_into().unwrap(),
                )
                .unwrap();
                let sealed = [ct.clone(), tag.clone()].concat();
                // In place, and out of place (which must leave the input untouched).
                let mut in_place = sealed.clone();
                let mut out = vec![0u8; sealed.len()];
                let results = [
                    chunk.open(0, &mut in_place),
                    chunk.open_into(0, &sealed, &mut out),
                ];
                for (result, plain) in results.into_iter().zip([&in_place, &out]) {
                    match result {
                        Some(n) => {
                            assert!(valid, "tc {} accepted by the chunk cipher", t["tcId"]);
                            assert_eq!(plain[..n], msg[..]);
                        }
                        None => assert!(!valid, "tc {} rejected by the chunk cipher", t["tcId"]),
                    }
                }
                assert_eq!(sealed, [ct, tag].concat());
                via_chunk += 1;
            }
        }
    }
    assert!(checked > 200 && via_chunk > 20, "{checked} {via_chunk}");
}

/// One HKDF vector: id, ikm, salt, info, size, okm, valid.
type HkdfCase = (u64, Vec<u8>, Vec<u8>, Vec<u8>, usize, Vec<u8>, bool);

fn hkdf_cases(name: &str) -> Vec<HkdfCase> {
    let file = load(name);
    let mut out = Vec::new();
    for group in file["testGroups"].as_array().unwrap() {
        for t in group["tests"].as_array().unwrap() {
            out.push((
                t["tcId"].as_u64().unwrap(),
                hex_field(t, "ikm"),
                hex_field(t, "salt"),
                hex_field(t, "info"),
                t["size"].as_u64().unwrap() as usize,
                hex_field(t, "okm"),
                t["result"] == "valid",
            ));
        }
    }
    out
}

/// HKDF-SHA256 (the `hkdf` crate, used for every derivation from the root key).
#[test]
fn hkdf_sha256_vectors() {
    let cases = hkdf_cases("hkdf_sha256_test.json");
    for (id, ikm, salt, info, size, okm, valid) in &cases {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), ikm);
        let mut out = vec![0u8; *size];
        match hk.expand(info, &mut out) {
            Ok(()) => {
                assert!(valid, "tc {id} accepted");
                assert_eq!(&out, okm, "tc {id}");
            }
            Err(_) => assert!(!valid, "tc {id} rejected"),
        }
    }
    assert!(cases.len() > 50);
}

/// HKDF-SHA512: extract with the `hkdf` crate, expand with Coffer's own HKDF-Expand (the
/// C2SP derivation).
#[test]
fn hkdf_sha512_vectors() {
    let cases = hkdf_cases("hkdf_sha512_test.json");
    for (id, ikm, salt, info, size, okm, valid) in &cases {
        let (prk, _) = hkdf::Hkdf::<Sha512>::extract(Some(salt), ikm);
        let mut out = vec![0u8; *size];
        match cobblestone::hkdf_expand_sha512(&prk, &[info], &mut out) {
            Ok(()) => {
                assert!(valid, "tc {id} accepted");
                assert_eq!(&out, okm, "tc {id}");
            }
            Err(_) => assert!(!valid, "tc {id} rejected"),
        }
    }
    assert!(cases.len() > 50);
}

/// The class each invalid vector gets matches what its flags say went wrong.
/// The class an invalid C2SP case must get from the bare C2SP layer, from its flags.
fn expected_class(case: &C2spCase) -> coffer::ErrorClass {
    use coffer::ErrorClass;
    let has = |f: &str| case.flags.iter().any(|x| x == f);
    if has("InvalidKeySize") {
        ErrorClass::Malformed
    } else if has("WrongKey") || has("WrongContext") {
        ErrorClass::WrongKey
    } else if case.id == 18 || case.id == 32 {
        // A last block that is no valid final chunk (18: 20 appended bytes; 32: a chunk cut
        // mid-body): the bare C2SP layer cannot tell these from a damaged final chunk
        // (corrupt). In a Coffer file the footer tells them apart (spec/format.md §7).
        ErrorClass::Corrupt
    } else if case.id == 19 {
        // A full chunk, then 12 bytes: too short for a final chunk's tag (truncated).
        ErrorClass::Truncated
    } else if has("TrailingData") {
        ErrorClass::TrailingData
    } else if has("Truncation") {
        ErrorClass::Truncated
    } else {
        // ModifiedCiphertext, ChunkReordering; a damaged salt or commitment reads as a
        // commitment mismatch, which the bare C2SP layer cannot tell from a wrong key.
        if has("HeaderFailure") {
            ErrorClass::WrongKey
        } else {
            ErrorClass::Corrupt
        }
    }
}

#[test]
fn c2sp_invalid_vectors_get_the_class_their_flags_name() {
    use coffer::Classify;
    for case in c2sp_cases().into_iter().filter(|c| !c.valid) {
        let class = stream::decrypt(&case.key, &case.ctx, &case.ct)
            .unwrap_err()
            .class();
        let expected = expected_class(&case);
        assert_eq!(
            class, expected,
            "tc {} ({}) flags {:?}",
            case.id, case.comment, case.flags
        );
    }
}
