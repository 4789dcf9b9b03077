//! Which mechanisms a token offers (`spec/hsm.md` §3). Mechanism numbers differ between
//! tokens: RFC 5649 key wrap is `0x210A` (`CKM_AES_KEY_WRAP_PAD`, the pre-3.0 number that
//! SoftHSM2 2.6 uses) or `0x210B` (`CKM_AES_KEY_WRAP_KWP`, PKCS#11 3.x, e.g. kryoptic).
//! cryptoki 0.12 names the first but not the second, and its mechanism list drops numbers it
//! does not know, so every mechanism is probed by number with `C_GetMechanismInfo`.

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::{MechanismInfo, MechanismType};
use cryptoki::slot::Slot;
use serde::Serialize;

/// `CKM_AES_GCM`.
pub(super) const CKM_AES_GCM: u64 = 0x1087;
/// `CKM_AES_KEY_GEN`.
pub(super) const CKM_AES_KEY_GEN: u64 = 0x1080;
/// `CKM_AES_KEY_WRAP` (RFC 3394).
pub(super) const CKM_AES_KEY_WRAP: u64 = 0x2109;
/// `CKM_AES_KEY_WRAP_PAD` as SoftHSM2 2.6 uses it: RFC 5649 under the pre-3.0 number.
pub(super) const CKM_AES_KEY_WRAP_PAD: u64 = 0x210A;
/// `CKM_AES_KEY_WRAP_KWP` (RFC 5649, PKCS#11 3.x).
pub(super) const CKM_AES_KEY_WRAP_KWP: u64 = 0x210B;
/// `CKM_RSA_PKCS_KEY_PAIR_GEN`.
pub(super) const CKM_RSA_PKCS_KEY_PAIR_GEN: u64 = 0x0000;
/// `CKM_RSA_PKCS_OAEP`.
pub(super) const CKM_RSA_PKCS_OAEP: u64 = 0x0009;
/// `CKM_SHA256_HMAC`.
pub(super) const CKM_SHA256_HMAC: u64 = 0x0251;
/// `CKM_HKDF_DERIVE` (PKCS#11 3.0).
pub(super) const CKM_HKDF_DERIVE: u64 = 0x402A;

/// A mechanism type for any number, including those cryptoki does not name.
#[allow(unsafe_code)] // cryptoki has no safe constructor for numbers it does not name
pub(super) fn mechanism_type(number: u64) -> MechanismType {
    // SAFETY: `MechanismType` is `#[repr(transparent)]` over `CK_MECHANISM_TYPE` (a u64 on
    // the platforms cryptoki supports); cryptoki declares it so precisely so that the two have
    // the same layout. Every value is a valid mechanism number to pass to a module, which
    // answers CKR_MECHANISM_INVALID for one it does not know.
    unsafe { std::mem::transmute::<cryptoki_sys::CK_MECHANISM_TYPE, MechanismType>(number) }
}

// The transmute above needs the two types to have one size: the build fails if cryptoki ever
// changes that.
const _: () = assert!(
    std::mem::size_of::<MechanismType>() == std::mem::size_of::<cryptoki_sys::CK_MECHANISM_TYPE>()
);

/// What a token offers among the mechanisms of the profile.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Offered {
    /// `CKM_AES_GCM` for encryption and decryption (required).
    pub aes_gcm: bool,
    /// `CKM_AES_KEY_GEN` (required: the master key is made on the token).
    pub aes_key_gen: bool,
    /// `CKM_AES_KEY_WRAP` (RFC 3394) for wrapping.
    pub aes_key_wrap: bool,
    /// The number under which the token offers RFC 5649 wrap, if it does.
    pub aes_key_wrap_pad: Option<u64>,
    /// `CKM_RSA_PKCS_KEY_PAIR_GEN` and `CKM_RSA_PKCS_OAEP` wrap/unwrap (the ceremony).
    pub rsa_oaep: bool,
    /// `CKM_SHA256_HMAC` for signing.
    pub hmac_sha256: bool,
    /// `CKM_HKDF_DERIVE`.
    pub hkdf: bool,
}

fn has(ctx: &Pkcs11, slot: Slot, number: u64, needs: impl Fn(&MechanismInfo) -> bool) -> bool {
    ctx.get_mechanism_info(slot, mechanism_type(number))
        .is_ok_and(|info| needs(&info))
}

impl Offered {
    /// Probes the token in `slot`.
    pub fn detect(ctx: &Pkcs11, slot: Slot) -> Self {
        let wrap = |i: &MechanismInfo| i.wrap() && i.unwrap();
        let aes_key_wrap_pad = [CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD]
            .into_iter()
            .find(|n| has(ctx, slot, *n, wrap));
        Offered {
            aes_gcm: has(ctx, slot, CKM_AES_GCM, |i| i.encrypt() && i.decrypt()),
            aes_key_gen: has(ctx, slot, CKM_AES_KEY_GEN, |i| i.generate()),
            aes_key_wrap: has(ctx, slot, CKM_AES_KEY_WRAP, wrap),
            aes_key_wrap_pad,
            rsa_oaep: has(ctx, slot, CKM_RSA_PKCS_KEY_PAIR_GEN, |i| {
                i.generate_key_pair()
            }) && has(ctx, slot, CKM_RSA_PKCS_OAEP, wrap),
            hmac_sha256: has(ctx, slot, CKM_SHA256_HMAC, |i| i.sign()),
            hkdf: has(ctx, slot, CKM_HKDF_DERIVE, |i| i.derive()),
        }
    }
}

/// The PKCS#11 name of a mechanism number of the profile.
pub(super) fn name(number: u64) -> &'static str {
    match number {
        CKM_AES_GCM => "CKM_AES_GCM",
        CKM_AES_KEY_GEN => "CKM_AES_KEY_GEN",
        CKM_AES_KEY_WRAP => "CKM_AES_KEY_WRAP",
        CKM_AES_KEY_WRAP_PAD => "CKM_AES_KEY_WRAP_PAD (0x210A)",
        CKM_AES_KEY_WRAP_KWP => "CKM_AES_KEY_WRAP_KWP (0x210B)",
        CKM_RSA_PKCS_KEY_PAIR_GEN => "CKM_RSA_PKCS_KEY_PAIR_GEN",
        CKM_RSA_PKCS_OAEP => "CKM_RSA_PKCS_OAEP",
        CKM_SHA256_HMAC => "CKM_SHA256_HMAC",
        CKM_HKDF_DERIVE => "CKM_HKDF_DERIVE",
        _ => "another mechanism",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_number_becomes_a_mechanism_type() {
        // A number cryptoki names maps to its own constant, and one it does not name keeps
        // its value (the transmute is layout-preserving).
        assert_eq!(
            mechanism_type(CKM_AES_KEY_WRAP),
            MechanismType::AES_KEY_WRAP
        );
        assert_eq!(mechanism_type(CKM_AES_GCM), MechanismType::AES_GCM);
        let kwp: u64 = mechanism_type(CKM_AES_KEY_WRAP_KWP).into();
        assert_eq!(kwp, 0x210B);
    }
}
