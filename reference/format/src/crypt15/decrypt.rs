//! Streaming decryption with bounded memory: the last trailer-length bytes are held back
//! until the input ends, then the trailer layout is decided and the file is classified.

use super::auth_stage::{Auth, AuthStage};
use super::header::{read_header, BackupFormat, BackupHeader};
use super::payload::{InnerKind, PayloadKind, PayloadReport, PayloadSink, ZlibState};
use super::{Crypt15Error, DEFAULT_BLOCK_SIZE};
use crate::key::BackupKey;
use crate::read_full::read_full;
use openssl::hash::{Hasher, MessageDigest};
use openssl::symm::{Cipher, Crypter, Mode};
use serde::Serialize;
use std::io::{Read, Write};
use zeroize::Zeroizing;

const TAG_LEN: usize = 16;
const MD5_LEN: usize = 16;

/// Options for [`decrypt`].
#[derive(Debug, Clone)]
pub struct DecryptOptions {
    /// Inflate a zlib payload (the default). When false, the decrypted payload is written
    /// as is; it is still inflated internally to classify failures.
    pub decompress: bool,
    /// Size of the blocks read from the input.
    pub block_size: usize,
}

impl Default for DecryptOptions {
    fn default() -> Self {
        DecryptOptions {
            decompress: true,
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }
}

/// Whether the file carried an MD5 trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Md5Status {
    /// Present and matching.
    Verified,
    /// Absent (older multi-file backups end with the tag).
    Absent,
}

/// The result of a successful decryption.
#[derive(Debug, Clone, Serialize)]
pub struct DecryptSummary {
    /// The header.
    pub header: BackupHeader,
    /// What the payload was.
    pub payload: PayloadKind,
    /// For zlib payloads, what they inflated to.
    pub inner: Option<InnerKind>,
    /// The MD5 trailer.
    pub md5: Md5Status,
    /// crypt12 only: the 4-byte footer (dashes and the last two phone digits).
    pub crypt12_footer: Option<String>,
    /// Bytes read, the whole file.
    pub input_bytes: u64,
    /// Ciphertext bytes.
    pub ciphertext_bytes: u64,
    /// Bytes written to the output.
    pub output_bytes: u64,
}

/// The AES key for this file from the key the user gave.
fn file_key(key: &BackupKey, header: &BackupHeader) -> Result<Zeroizing<[u8; 32]>, Crypt15Error> {
    match (key, header.format) {
        (BackupKey::Root(root), BackupFormat::Crypt15) => Ok(root.crypt15_file_key()),
        (BackupKey::Legacy(_), BackupFormat::Crypt15) => Err(Crypt15Error::WrongKey(
            "this is a crypt15 backup: it needs the 64-digit key or encrypted_backup.key, not a crypt12/14 key file"
                .into(),
        )),
        // For crypt12/14 a 32-byte key is the AES key itself (the last 32 bytes of `key`).
        (BackupKey::Root(root), _) => Ok(Zeroizing::new(*root.as_bytes())),
        (BackupKey::Legacy(legacy), format) => {
            let (server_salt, google_id_salt) = match (&header.prefix, &header.crypt12) {
                (Some(prefix), _) => match &prefix.c14_cipher {
                    Some(c14) => (c14.server_salt.as_slice(), c14.google_id_salt.as_slice()),
                    None => return Err(Crypt15Error::Malformed("crypt14 header without cipher block".into())),
                },
                (None, Some(c12)) => (c12.server_salt.as_slice(), c12.google_id_salt.as_slice()),
                (None, None) => return Err(Crypt15Error::Malformed("header without salts".into())),
            };
            if server_salt != legacy.server_salt || google_id_salt != legacy.google_id_salt {
                return Err(Crypt15Error::WrongKey(format!(
                    "this key file belongs to another account or key: the {} header's server salt or Google id salt differs from the key file's",
                    format.as_str()
                )));
            }
            Ok(Zeroizing::new(legacy.aes_key))
        }
    }
}

/// Decrypts a crypt15, crypt14 or crypt12 backup from `input` to `output`.
///
/// Memory is bounded by `options.block_size` plus a few hundred KiB whatever the input size.
/// `progress` is called with the number of input bytes consumed so far.
/// On `Err`, whatever was written to `output` is unauthenticated and must be discarded.
pub fn decrypt<R: Read, W: Write>(
    key: &BackupKey,
    input: R,
    output: W,
    options: &DecryptOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<DecryptSummary, Crypt15Error> {
    decrypt_at_most(key, input, output, options, progress, GCM_MAX_CIPHERTEXT)
}

/// Writes the next block that came back from `stage` (waiting for it if `wait`); returns
/// whether there was one.
fn write_block<W: Write>(
    stage: &mut AuthStage,
    sink: &mut PayloadSink<W>,
    wait: bool,
) -> Result<bool, Crypt15Error> {
    let Some(done) = stage.take(wait) else {
        return Ok(false);
    };
    let block = done?;
    sink.write(&block.plain[..block.count])
        .map_err(Crypt15Error::io("writing the output"))?;
    stage.recycle(block);
    Ok(true)
}

/// The most ciphertext one AES-GCM (key, IV) can have produced: 2^39 − 256 bits,
/// 2^36 − 32 bytes (`spec/crypt15.md` §17.4).
const GCM_MAX_CIPHERTEXT: u64 = (1 << 36) - 32;

/// A ciphertext longer than one AES-GCM message can be: `corrupt` (§17.4).
fn too_long(max_ciphertext: u64) -> Crypt15Error {
    Crypt15Error::Corrupt(format!(
        "more than {max_ciphertext} bytes of ciphertext: no AES-GCM message is that long, so \
         this file cannot be authentic"
    ))
}

/// [`decrypt`], refusing as `corrupt` a file with more than `max_ciphertext` bytes before its
/// trailer (a parameter so that tests can reach the refusal without 64 GiB).
fn decrypt_at_most<R: Read, W: Write>(
    key: &BackupKey,
    mut input: R,
    output: W,
    options: &DecryptOptions,
    progress: &mut dyn FnMut(u64),
    max_ciphertext: u64,
) -> Result<DecryptSummary, Crypt15Error> {
    let header = read_header(&mut input)?;
    let aes_key = file_key(key, &header)?;
    let mut md5 = Hasher::new(MessageDigest::md5())?;
    md5.update(&header.raw)?;
    let gcm = Crypter::new(
        Cipher::aes_256_gcm(),
        Mode::Decrypt,
        aes_key.as_slice(),
        Some(&header.iv),
    )?;
    let mut sink = PayloadSink::new(output, options.decompress);

    // Reading, inflating and writing stay on this thread; MD5 and AES-GCM run on the stage's
    // own thread for files of more than one block (`auth_stage`).
    let trailer = header.format.trailer_len();
    let block = options.block_size.max(1);
    let mut stage = AuthStage::new(Auth { md5, gcm }, trailer + block);
    let mut buf = stage.buffer();
    buf.cipher.resize(trailer + block, 0);
    let mut held = 0usize;
    let mut released = 0u64;
    loop {
        let n = read_full(&mut input, &mut buf.cipher[held..])
            .map_err(Crypt15Error::io("reading the backup"))?;
        if n == 0 {
            break;
        }
        let total = held + n;
        if total > trailer {
            let release = total - trailer;
            if released + release as u64 > max_ciphertext {
                return Err(too_long(max_ciphertext));
            }
            while stage.full() {
                write_block(&mut stage, &mut sink, true)?;
            }
            // The held-back bytes start the next buffer; this one goes to the stage.
            let mut next = stage.buffer();
            next.cipher.resize(trailer + block, 0);
            next.cipher[..trailer].copy_from_slice(&buf.cipher[release..total]);
            buf.cipher.truncate(release);
            stage.submit(std::mem::replace(&mut buf, next))?;
            released += release as u64;
            held = trailer;
        } else {
            held = total;
        }
        while write_block(&mut stage, &mut sink, false)? {}
        progress(header.len() as u64 + released + held as u64);
    }
    while write_block(&mut stage, &mut sink, true)? {}
    let Auth { md5, mut gcm } = stage.finish()?;
    let tail = &buf.cipher[..held];
    let mut plain = vec![0u8; trailer + 32];
    let body_len = released + held as u64;
    let input_bytes = header.len() as u64 + body_len;

    // Layout A: ciphertext, tag, MD5 (and for crypt12 a 4-byte footer).
    let mut md5_matched = false;
    if held == trailer {
        let mut with_tag = md5.clone();
        with_tag.update(&tail[..TAG_LEN])?;
        md5_matched = *with_tag.finish()? == tail[TAG_LEN..TAG_LEN + MD5_LEN];
    }
    let (authenticated, md5_status, ciphertext_bytes) = if md5_matched {
        gcm.set_tag(&tail[..TAG_LEN])?;
        (
            gcm.finalize(&mut plain).is_ok(),
            Md5Status::Verified,
            released,
        )
    } else if header.format != BackupFormat::Crypt12 && held >= TAG_LEN {
        // Layout B: ciphertext then tag, no MD5.
        let extra = held - TAG_LEN;
        if released + extra as u64 > max_ciphertext {
            return Err(too_long(max_ciphertext));
        }
        let count = gcm.update(&tail[..extra], &mut plain)?;
        sink.write(&plain[..count])
            .map_err(Crypt15Error::io("writing the output"))?;
        gcm.set_tag(&tail[extra..])?;
        (
            gcm.finalize(&mut plain).is_ok(),
            Md5Status::Absent,
            released + extra as u64,
        )
    } else {
        (false, Md5Status::Absent, released)
    };
    let (_, report) = sink
        .finish()
        .map_err(Crypt15Error::io("writing the output"))?;

    if !authenticated {
        return Err(classify_failure(
            &header,
            &report,
            body_len,
            held,
            md5_matched,
        ));
    }
    check_authenticated_payload(&report, md5_status)?;
    let crypt12_footer = (header.format == BackupFormat::Crypt12)
        .then(|| String::from_utf8_lossy(&tail[TAG_LEN + MD5_LEN..]).into_owned());
    Ok(DecryptSummary {
        header,
        payload: report.kind,
        inner: report.inner,
        md5: md5_status,
        crypt12_footer,
        input_bytes,
        ciphertext_bytes,
        output_bytes: report.written,
    })
}

/// Checks a file whose tag verified: a zlib payload must carry its MD5 (cutting exactly the MD5
/// off leaves a file that still authenticates), and its stream must be whole and end the payload.
fn check_authenticated_payload(report: &PayloadReport, md5: Md5Status) -> Result<(), Crypt15Error> {
    if md5 == Md5Status::Absent && report.kind == PayloadKind::Zlib {
        return Err(Crypt15Error::Truncated(
            "the file authenticates without an MD5 trailer, but zlib payloads always carry one: its last 16 bytes are missing"
                .into(),
        ));
    }
    match &report.zlib {
        Some(ZlibState::Failed(why)) => Err(Crypt15Error::Corrupt(format!(
            "the file authenticates, but its payload is not a valid zlib stream ({why})"
        ))),
        Some(ZlibState::Running) => Err(Crypt15Error::Corrupt(
            "the file authenticates, but its zlib stream is incomplete".into(),
        )),
        Some(ZlibState::Ended { at }) if *at != report.received => {
            Err(Crypt15Error::Corrupt(format!(
                "the file authenticates, but {} bytes follow the end of its zlib stream",
                report.received - at
            )))
        }
        _ => Ok(()),
    }
}

/// Names the failure of a file whose tag did not verify (`spec/crypt15.md`, "Classifying failures").
fn classify_failure(
    header: &BackupHeader,
    report: &PayloadReport,
    body_len: u64,
    held: usize,
    md5_matched: bool,
) -> Crypt15Error {
    let trailer = header.format.trailer_len() as u64;
    if held < TAG_LEN {
        return Crypt15Error::Truncated(format!(
            "the file ends {body_len} bytes after the header, before an authentication tag could fit"
        ));
    }
    if md5_matched {
        return if report.plausible() {
            Crypt15Error::Corrupt(
                "the MD5 matches but the authentication tag does not, and the data decrypts to a valid payload start: \
                 the file was modified and its MD5 recomputed"
                    .into(),
            )
        } else {
            Crypt15Error::WrongKey(
                "the file is intact (its MD5 matches) but the key does not open it".into(),
            )
        };
    }
    match (&report.kind, &report.zlib) {
        (PayloadKind::Zlib, Some(ZlibState::Ended { at })) => {
            let expected = at + trailer;
            if body_len > expected {
                Crypt15Error::TrailingData(format!(
                    "{} bytes follow the end of the backup (its compressed stream ends at byte {})",
                    body_len - expected,
                    header.len() as u64 + at
                ))
            } else if body_len < expected {
                Crypt15Error::Truncated(format!(
                    "the file ends {} bytes before its trailer is complete",
                    expected - body_len
                ))
            } else {
                Crypt15Error::Corrupt("the MD5 and authentication tag do not match: the file was modified".into())
            }
        }
        (PayloadKind::Zlib, Some(ZlibState::Failed(why))) => Crypt15Error::Corrupt(format!(
            "the MD5 does not match and the data does not decompress ({why}): the file was modified"
        )),
        (PayloadKind::Zlib, _) => Crypt15Error::Truncated(format!(
            "the file ends inside its compressed stream, after {body_len} bytes of ciphertext"
        )),
        (PayloadKind::Zip, _) if report.zip_complete => {
            Crypt15Error::Corrupt("the authentication tag does not match: the file was modified".into())
        }
        (PayloadKind::Zip, _) => {
            Crypt15Error::Truncated("the file ends before its ZIP archive's end record".into())
        }
        (PayloadKind::Empty | PayloadKind::Unknown, _) if report.received < 4 => Crypt15Error::Truncated(format!(
            "the file ends {body_len} bytes after its header, too short for a payload and its trailer"
        )),
        (PayloadKind::Empty | PayloadKind::Unknown, _) => Crypt15Error::Corrupt(
            "neither the MD5 nor the authentication tag matches and the data does not decrypt to a known payload: \
             the file is damaged (or, for an MD5-less multi-file backup, the key is wrong)"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt15::{encrypt, EncryptOptions, HeaderSpec, PayloadEncoding};
    use crate::error::Classify;
    use crate::key::RootKey;

    /// A file whose ciphertext is longer than AES-GCM allows is `corrupt` (a property of
    /// the data, not `io`), found while reading, before its tag; at the limit it decrypts.
    #[test]
    fn ciphertext_beyond_the_gcm_limit_is_corrupt() {
        let root = RootKey::from_bytes([7; 32]);
        let header = HeaderSpec::new([9; 16], "2.22.5.13", "67", 0).encode();
        let plaintext = vec![0x42u8; 1000];
        // With the MD5 (layout A) and without (layout B, where the last 16 of the held-back
        // bytes are ciphertext and count too).
        let files: Vec<Vec<u8>> = [true, false]
            .into_iter()
            .map(|md5| {
                let options = EncryptOptions {
                    payload: PayloadEncoding::Stored,
                    md5,
                    ..EncryptOptions::default()
                };
                let mut file = Vec::new();
                encrypt(
                    &root,
                    &header,
                    &plaintext[..],
                    &mut file,
                    &options,
                    &mut |_| {},
                )
                .unwrap();
                file
            })
            .collect();
        let key = BackupKey::Root(root);
        let read = DecryptOptions {
            decompress: false,
            block_size: 64,
        };
        let run = |file: &[u8], limit: u64| {
            let mut out = Vec::new();
            let result = decrypt_at_most(&key, file, &mut out, &read, &mut |_| {}, limit);
            (result, out)
        };
        for file in &files {
            let (at_limit, out) = run(file, 1000);
            assert!(at_limit.is_ok(), "{at_limit:?}");
            assert_eq!(out, plaintext);
            // Over by 1, and over by 16 (in layout B, inside the held-back trailer).
            for limit in [999, 984] {
                let (over, out) = run(file, limit);
                assert!(
                    matches!(&over, Err(e) if e.class() == crate::ErrorClass::Corrupt),
                    "limit {limit}: {over:?}"
                );
                assert!(out.len() < 1000, "{} bytes released", out.len());
            }
        }
    }
}
