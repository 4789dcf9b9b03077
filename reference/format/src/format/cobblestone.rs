//! c2sp.org/chunked-encryption instantiated as Cobblestone-256: AES-256-GCM chunks of 16 KiB,
//! key, base nonce and commitment from HKDF-Expand with SHA-512.
//!
//! This module is the whole C2SP layer (it passes the Wycheproof Cobblestone-256 vectors);
//! the Coffer header, footer and compression live in the modules around it.

use super::aead::{aead_choice, Key};
use super::FormatError;
use hmac::{Hmac, Mac};
use sha2::Sha512;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Plaintext bytes per chunk; the final chunk is always shorter.
pub const CHUNK_SIZE: usize = 16384;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Encrypted length of a full chunk.
pub const SEALED_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_LEN;
/// Length of the per-message salt.
pub const SALT_LEN: usize = 24;
/// Length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;
/// Salt and commitment, the fixed prefix of every C2SP ciphertext.
pub const PREFIX_LEN: usize = SALT_LEN + COMMITMENT_LEN;
/// The input key, the derived AEAD key: 32 bytes for AES-256.
pub const KEY_LEN: usize = 32;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// Chunk counters must stay below 2^38 (4 PiB of plaintext).
pub const MAX_CHUNKS: u64 = 1 << 38;

const AEAD_NAME: &[u8] = b"AEAD_AES_256_GCM";
const INFO_PREFIX: &[u8] = b"c2sp.org/chunked-encryption@v1+";

/// What HKDF-Expand yields for one message.
pub struct MessageKeys {
    /// The AES-256-GCM key of every chunk.
    pub aead_key: Zeroizing<[u8; KEY_LEN]>,
    /// XORed with the chunk counter to give each chunk's nonce.
    pub base_nonce: [u8; NONCE_LEN],
    /// Stored after the salt; checked before any chunk is decrypted.
    pub commitment: [u8; COMMITMENT_LEN],
}

/// HKDF-Expand (RFC 5869 §2.3) with HMAC-SHA-512, `info` given in parts. Written out over
/// HMAC because the `hkdf` crate's `from_prk` refuses a PRK shorter than the hash (64
/// bytes), while C2SP uses the 32-byte input key as PRK, as RFC 5869 allows for a
/// uniformly random key. Fails only if more than 255 blocks are asked for.
pub fn hkdf_expand_sha512(prk: &[u8], info: &[&[u8]], okm: &mut [u8]) -> Result<(), FormatError> {
    const HASH_LEN: usize = 64;
    if okm.len() > 255 * HASH_LEN {
        return Err(FormatError::Crypto(format!(
            "HKDF-Expand cannot give {} bytes",
            okm.len()
        )));
    }
    let mut previous = Zeroizing::new([0u8; HASH_LEN]);
    for (i, block) in okm.chunks_mut(HASH_LEN).enumerate() {
        let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(prk)
            .map_err(|e| FormatError::Crypto(e.to_string()))?;
        if i > 0 {
            mac.update(&previous[..]);
        }
        for part in info {
            mac.update(part);
        }
        mac.update(&[(i + 1) as u8]);
        previous.copy_from_slice(&mac.finalize().into_bytes());
        block.copy_from_slice(&previous[..block.len()]);
    }
    Ok(())
}

/// `key || base nonce || commitment = HKDF-Expand-SHA-512(input key, info)` with
/// `info = "c2sp.org/chunked-encryption@v1+" || "AEAD_AES_256_GCM" || 0x00 || salt || context`.
pub fn derive(input_key: &[u8; KEY_LEN], salt: &[u8; SALT_LEN], context: &[u8]) -> MessageKeys {
    let mut okm = Zeroizing::new([0u8; KEY_LEN + NONCE_LEN + COMMITMENT_LEN]);
    hkdf_expand_sha512(
        input_key,
        &[INFO_PREFIX, AEAD_NAME, &[0], salt, context],
        &mut okm[..],
    )
    .expect("76 bytes is within HKDF-Expand's limit");
    let mut aead_key = Zeroizing::new([0u8; KEY_LEN]);
    aead_key.copy_from_slice(&okm[..KEY_LEN]);
    let mut base_nonce = [0u8; NONCE_LEN];
    base_nonce.copy_from_slice(&okm[KEY_LEN..KEY_LEN + NONCE_LEN]);
    let mut commitment = [0u8; COMMITMENT_LEN];
    commitment.copy_from_slice(&okm[KEY_LEN + NONCE_LEN..]);
    MessageKeys {
        aead_key,
        base_nonce,
        commitment,
    }
}

/// Constant-time comparison of a stored commitment with the derived one.
pub fn commitment_matches(keys: &MessageKeys, stored: &[u8]) -> bool {
    stored.len() == COMMITMENT_LEN && bool::from(keys.commitment.ct_eq(stored))
}

/// AES-256-GCM keyed once for the chunks of one message, in the crate measured fastest on
/// this CPU for each direction (`super::aead`).
pub struct ChunkCipher {
    seal_key: Key,
    /// `None`: the sealing key opens too (the same crate was chosen for both).
    open_key: Option<Key>,
    key_bytes: Zeroizing<[u8; KEY_LEN]>,
    base_nonce: [u8; NONCE_LEN],
}

impl ChunkCipher {
    /// A cipher for the chunks of one message.
    pub fn new(keys: &MessageKeys) -> Result<Self, FormatError> {
        Self::from_raw(&keys.aead_key, &keys.base_nonce)
    }

    /// Raw mode: chunk cipher straight from an AEAD key and base nonce (no commitment).
    pub fn from_raw(
        aead_key: &[u8; KEY_LEN],
        base_nonce: &[u8; NONCE_LEN],
    ) -> Result<Self, FormatError> {
        let choice = aead_choice();
        let open_key = if choice.open == choice.seal {
            None
        } else {
            Some(Key::new(choice.open, aead_key)?)
        };
        Ok(ChunkCipher {
            seal_key: Key::new(choice.seal, aead_key)?,
            open_key,
            key_bytes: Zeroizing::new(*aead_key),
            base_nonce: *base_nonce,
        })
    }

    /// An independent copy (same key and base nonce) for another thread.
    pub fn try_clone(&self) -> Result<Self, FormatError> {
        Self::from_raw(&self.key_bytes, &self.base_nonce)
    }

    /// The nonce of chunk `index`: the base nonce XOR the big-endian counter.
    pub fn nonce(&self, index: u64) -> [u8; NONCE_LEN] {
        let mut nonce = self.base_nonce;
        for (n, c) in nonce[NONCE_LEN - 8..].iter_mut().zip(index.to_be_bytes()) {
            *n ^= c;
        }
        nonce
    }

    /// Encrypts `data` in place as chunk `index` and returns its tag.
    pub fn seal(&mut self, index: u64, data: &mut [u8]) -> Result<[u8; TAG_LEN], FormatError> {
        if index >= MAX_CHUNKS {
            return Err(FormatError::TooLong);
        }
        self.seal_key.seal(&self.nonce(index), data)
    }

    fn open_key(&self) -> &Key {
        self.open_key.as_ref().unwrap_or(&self.seal_key)
    }

    /// Decrypts an encrypted chunk (`ciphertext || tag`) in place as chunk `index` and
    /// returns the plaintext length, or `None` if it does not authenticate (the buffer then
    /// holds no usable bytes: never release it).
    pub fn open(&mut self, index: u64, sealed: &mut [u8]) -> Option<usize> {
        if index >= MAX_CHUNKS || sealed.len() < TAG_LEN {
            return None;
        }
        self.open_key().open(&self.nonce(index), sealed)
    }

    /// Decrypts `sealed` (`ciphertext || tag`) as chunk `index` into `out`, leaving `sealed`
    /// untouched. Returns the plaintext length, or `None` if it does not authenticate (then
    /// `out` holds no usable bytes).
    pub fn open_into(&self, index: u64, sealed: &[u8], out: &mut [u8]) -> Option<usize> {
        if index >= MAX_CHUNKS || sealed.len() < TAG_LEN {
            return None;
        }
        self.open_key().open_into(&self.nonce(index), sealed, out)
    }

    /// After chunk `index` failed, looks for a valid *final* chunk at the start of `sealed`:
    /// if one exists the message ended there and what follows it is trailing data. Tries
    /// every final-chunk length shorter than `sealed` (at most 16 KiB of candidates, once
    /// per failed message).
    pub fn find_final_chunk(&self, index: u64, sealed: &[u8]) -> Option<usize> {
        let longest = sealed.len().min(SEALED_CHUNK_SIZE);
        let mut scratch = Zeroizing::new(vec![0u8; CHUNK_SIZE]);
        (TAG_LEN..longest).find(|&len| {
            self.open_into(index, &sealed[..len], &mut scratch[..])
                .is_some()
        })
    }
}

/// Encrypts a whole message in memory with a caller-chosen salt (for tests and vectors;
/// real writers draw the salt from the OS). Returns `salt || commitment || chunks`.
pub fn encrypt_with_salt(
    input_key: &[u8; KEY_LEN],
    salt: &[u8; SALT_LEN],
    context: &[u8],
    message: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let keys = derive(input_key, salt, context);
    let mut cipher = ChunkCipher::new(&keys)?;
    let chunks = message.len() / CHUNK_SIZE + 1;
    let mut out = Vec::with_capacity(PREFIX_LEN + message.len() + chunks * TAG_LEN);
    out.extend_from_slice(salt);
    out.extend_from_slice(&keys.commitment);
    // The final chunk is the remainder, empty when the length is a multiple of CHUNK_SIZE.
    let full = message.len() / CHUNK_SIZE;
    for index in 0..=full {
        let start = index * CHUNK_SIZE;
        let end = (start + CHUNK_SIZE).min(message.len());
        let at = out.len();
        out.extend_from_slice(&message[start..end]);
        let tag = cipher.seal(index as u64, &mut out[at..])?;
        out.extend_from_slice(&tag);
    }
    Ok(out)
}
