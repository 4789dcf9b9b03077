//! Where the vault's randomness comes from: the operating system in service; a caller's
//! generator only for deterministic test vectors (`vectors/vault.yaml`), which fix every
//! random input of a transcript.

use super::VaultError;
use rand_core::{CryptoRng, OsRng, RngCore};
use std::sync::Mutex;

/// A cryptographic generator the vault can draw from.
pub trait VaultRng: RngCore + CryptoRng + Send {}
impl<T: RngCore + CryptoRng + Send> VaultRng for T {}

/// A sized handle on any [`VaultRng`], for APIs generic over `R: RngCore + CryptoRng`.
pub struct RngRef<'a>(pub &'a mut dyn VaultRng);

impl RngCore for RngRef<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl CryptoRng for RngRef<'_> {}

/// The server's source: the OS (no lock, so logins run in parallel), or a fixed generator
/// behind a lock (test vectors only).
pub(crate) enum Randomness {
    Os,
    Fixed(Mutex<Box<dyn VaultRng>>),
}

impl Randomness {
    /// Runs `f` with the generator.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut RngRef<'_>) -> T) -> T {
        match self {
            Randomness::Os => f(&mut RngRef(&mut OsRng)),
            Randomness::Fixed(rng) => {
                let mut guard = rng.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut RngRef(&mut **guard))
            }
        }
    }

    /// Fills `out`.
    pub(crate) fn fill(&self, out: &mut [u8]) -> Result<(), VaultError> {
        self.with(|rng| rng.try_fill_bytes(out))
            .map_err(|e| VaultError::Internal(format!("random generator: {e}")))
    }
}
