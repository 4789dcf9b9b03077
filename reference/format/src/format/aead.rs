//! AES-256-GCM for the chunks, from whichever of two crates is faster on the CPU at hand.
//!
//! ring and aws-lc-rs lead on different CPUs, by a lot (`benches/README.md`, group
//! `aead_crates`): sealing 16 KiB chunks, ring was 2.4x faster on an AMD EPYC with VAES but
//! no AVX-512 and 1.17x on an Intel Xeon with AVX-512, while aws-lc-rs was 1.16x faster on a
//! Zen 4; opening, aws-lc-rs decrypts out of place, which ring cannot (it copies first), and
//! was 1.38x faster on the Xeon. So the first cipher made in a process times both crates on a
//! few chunks (under a millisecond) and keeps the faster one for each direction. Both give
//! the same bytes; only the speed depends on the choice. `COFFER_AEAD=ring` or
//! `COFFER_AEAD=aws-lc-rs` fixes both directions (for benches and bug reports).

use super::FormatError;
use aws_lc_rs::aead as aws;
use ring::aead as rg;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Tag length of AES-GCM.
const TAG_LEN: usize = 16;
/// Nonce length of AES-GCM.
const NONCE_LEN: usize = 12;

/// An AES-256-GCM implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// The `ring` crate.
    Ring,
    /// The `aws-lc-rs` crate.
    AwsLcRs,
}

impl Backend {
    /// The crate's name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ring => "ring",
            Backend::AwsLcRs => "aws-lc-rs",
        }
    }
}

/// The crate that seals and the one that opens, in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AeadChoice {
    /// Seals chunks (encryption).
    pub seal: Backend,
    /// Opens chunks (decryption).
    pub open: Backend,
    /// Chosen by timing both here (`false`: fixed by `COFFER_AEAD`).
    pub measured: bool,
}

/// The backends this process uses, measured on first use.
pub fn aead_choice() -> AeadChoice {
    static CHOICE: OnceLock<AeadChoice> = OnceLock::new();
    *CHOICE.get_or_init(|| match std::env::var("COFFER_AEAD").as_deref() {
        Ok("ring") => fixed(Backend::Ring),
        Ok("aws-lc-rs") => fixed(Backend::AwsLcRs),
        _ => measure(),
    })
}

fn fixed(backend: Backend) -> AeadChoice {
    AeadChoice {
        seal: backend,
        open: backend,
        measured: false,
    }
}

/// Times sealing and opening 8 chunks with each crate, best of 5 rounds (interleaved, so
/// that a burst of load on a shared machine hits both alike).
fn measure() -> AeadChoice {
    const CHUNK: usize = 16384;
    let key = [0x5au8; 32];
    let (Ok(ring_key), Ok(aws_key)) = (
        Key::new(Backend::Ring, &key),
        Key::new(Backend::AwsLcRs, &key),
    ) else {
        return fixed(Backend::AwsLcRs);
    };
    let mut data = vec![0u8; 8 * (CHUNK + TAG_LEN)];
    let mut out = vec![0u8; CHUNK];
    let mut best = [[Duration::MAX; 2]; 2];
    for _ in 0..5 {
        for (b, k) in [&ring_key, &aws_key].into_iter().enumerate() {
            let start = Instant::now();
            for (i, chunk) in data.chunks_mut(CHUNK + TAG_LEN).enumerate() {
                let (plain, tag) = chunk.split_at_mut(CHUNK);
                if let Ok(t) = k.seal(&nonce(i), plain) {
                    tag.copy_from_slice(&t);
                }
            }
            best[0][b] = best[0][b].min(start.elapsed());
            let start = Instant::now();
            for (i, chunk) in data.chunks(CHUNK + TAG_LEN).enumerate() {
                std::hint::black_box(k.open_into(&nonce(i), chunk, &mut out));
            }
            best[1][b] = best[1][b].min(start.elapsed());
            // Sealed by this crate, opened by the same: restore for the next one.
            data.fill(0);
        }
    }
    let pick = |times: [Duration; 2]| {
        if times[0] <= times[1] {
            Backend::Ring
        } else {
            Backend::AwsLcRs
        }
    };
    AeadChoice {
        seal: pick(best[0]),
        open: pick(best[1]),
        measured: true,
    }
}

fn nonce(i: usize) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[4..].copy_from_slice(&(i as u64).to_be_bytes());
    n
}

/// An AES-256-GCM key in one crate.
pub(crate) enum Key {
    /// Boxed: ring keeps its key schedule inline (over 500 bytes).
    Ring(Box<rg::LessSafeKey>),
    AwsLcRs(aws::LessSafeKey),
}

fn setup_failed() -> FormatError {
    FormatError::Crypto("AES-256-GCM key setup failed".into())
}

impl Key {
    pub(crate) fn new(backend: Backend, key: &[u8; 32]) -> Result<Self, FormatError> {
        Ok(match backend {
            Backend::Ring => Key::Ring(Box::new(rg::LessSafeKey::new(
                rg::UnboundKey::new(&rg::AES_256_GCM, key).map_err(|_| setup_failed())?,
            ))),
            Backend::AwsLcRs => Key::AwsLcRs(aws::LessSafeKey::new(
                aws::UnboundKey::new(&aws::AES_256_GCM, key).map_err(|_| setup_failed())?,
            )),
        })
    }

    /// Encrypts `data` in place and returns the tag.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN], FormatError> {
        let failed = || FormatError::Crypto("AES-256-GCM seal failed".into());
        let mut out = [0u8; TAG_LEN];
        match self {
            Key::Ring(k) => {
                let n = rg::Nonce::assume_unique_for_key(*nonce);
                let tag = k
                    .seal_in_place_separate_tag(n, rg::Aad::empty(), data)
                    .map_err(|_| failed())?;
                out.copy_from_slice(tag.as_ref());
            }
            Key::AwsLcRs(k) => {
                let n = aws::Nonce::assume_unique_for_key(*nonce);
                let tag = k
                    .seal_in_place_separate_tag(n, aws::Aad::empty(), data)
                    .map_err(|_| failed())?;
                out.copy_from_slice(tag.as_ref());
            }
        }
        Ok(out)
    }

    /// Decrypts `sealed` (`ciphertext ‖ tag`) in place; the plaintext length, or `None`.
    pub(crate) fn open(&self, nonce: &[u8; NONCE_LEN], sealed: &mut [u8]) -> Option<usize> {
        match self {
            Key::Ring(k) => k
                .open_in_place(
                    rg::Nonce::assume_unique_for_key(*nonce),
                    rg::Aad::empty(),
                    sealed,
                )
                .ok()
                .map(|p| p.len()),
            Key::AwsLcRs(k) => k
                .open_in_place(
                    aws::Nonce::assume_unique_for_key(*nonce),
                    aws::Aad::empty(),
                    sealed,
                )
                .ok()
                .map(|p| p.len()),
        }
    }

    /// Decrypts `sealed` (`ciphertext ‖ tag`) into `out`, leaving `sealed` as it is; the
    /// plaintext length, or `None` (then `out` holds nothing usable).
    pub(crate) fn open_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        sealed: &[u8],
        out: &mut [u8],
    ) -> Option<usize> {
        let len = sealed.len().checked_sub(TAG_LEN)?;
        let out = out.get_mut(..len)?;
        let (ciphertext, tag) = sealed.split_at(len);
        match self {
            Key::Ring(k) => {
                // ring opens only in place: copy, then open there.
                out.copy_from_slice(ciphertext);
                let tag = rg::Tag::try_from(tag).ok()?;
                k.open_in_place_separate_tag(
                    rg::Nonce::assume_unique_for_key(*nonce),
                    rg::Aad::empty(),
                    tag,
                    out,
                    0..,
                )
                .ok()?;
            }
            Key::AwsLcRs(k) => {
                k.open_separate_gather(
                    aws::Nonce::assume_unique_for_key(*nonce),
                    aws::Aad::empty(),
                    ciphertext,
                    tag,
                    out,
                )
                .ok()?;
            }
        }
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both crates seal to the same bytes, open each other's chunks, and refuse a changed
    /// byte, a changed tag, a wrong nonce and a short input.
    #[test]
    fn both_crates_agree_and_refuse_the_same() {
        let key = [7u8; 32];
        let ring = Key::new(Backend::Ring, &key).unwrap();
        let aws = Key::new(Backend::AwsLcRs, &key).unwrap();
        for len in [0usize, 1, 15, 16, 17, 4096, 16384] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let mut a = plain.clone();
            let mut b = plain.clone();
            let ta = ring.seal(&nonce(3), &mut a).unwrap();
            let tb = aws.seal(&nonce(3), &mut b).unwrap();
            assert_eq!((&a, ta), (&b, tb), "{len} bytes");
            let sealed = [a, ta.to_vec()].concat();
            for opener in [&ring, &aws] {
                let mut out = vec![0u8; len];
                assert_eq!(opener.open_into(&nonce(3), &sealed, &mut out), Some(len));
                assert_eq!(out, plain);
                let mut in_place = sealed.clone();
                assert_eq!(opener.open(&nonce(3), &mut in_place), Some(len));
                assert_eq!(&in_place[..len], &plain[..]);
                assert_eq!(opener.open_into(&nonce(4), &sealed, &mut out), None);
                for at in [0, sealed.len() / 2, sealed.len() - 1] {
                    let mut bad = sealed.clone();
                    bad[at] ^= 1;
                    assert_eq!(opener.open_into(&nonce(3), &bad, &mut out), None);
                    assert_eq!(opener.open(&nonce(3), &mut bad), None);
                }
                assert_eq!(opener.open_into(&nonce(3), &sealed[..15], &mut out), None);
                // An output too small for the plaintext is refused before any work.
                let too_small = (len == 0).then_some(0);
                assert_eq!(opener.open_into(&nonce(3), &sealed, &mut []), too_small);
            }
        }
    }

    #[test]
    fn the_choice_is_made_once_and_names_real_crates() {
        let first = aead_choice();
        assert_eq!(aead_choice(), first);
        for b in [first.seal, first.open] {
            assert!(["ring", "aws-lc-rs"].contains(&b.name()));
        }
    }
}
