//! The OPAQUE ciphersuite and its key-stretching parameters (`spec/vault.md` §2).

use super::VaultError;
use argon2::{Algorithm, Argon2, Params, Version};
use opaque_ke::{CipherSuite, Ristretto255, TripleDh};

/// OPRF ristretto255-SHA512, 3DH over ristretto255 with SHA-512, KSF Argon2id.
pub struct Suite;

impl CipherSuite for Suite {
    type OprfCs = Ristretto255;
    type KeyExchange = TripleDh<Ristretto255, sha2::Sha512>;
    type Ksf = Argon2<'static>;
}

/// The context string bound into every login (RFC 9807 §6.1).
pub const CONTEXT: &[u8] = b"coffer-vault-v1";

/// Argon2id parameters, named in every record as `argon2id:m=KIB,t=PASSES,p=LANES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KsfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KsfParams {
    /// The default: 64 MiB, 3 passes, 1 lane (RFC 9106 §4, second recommendation, one lane).
    pub const DEFAULT: KsfParams = KsfParams {
        m_kib: 65536,
        t: 3,
        p: 1,
    };
    /// Cheap parameters for tests only (never accepted by a server unless configured).
    pub const TEST: KsfParams = KsfParams {
        m_kib: 256,
        t: 1,
        p: 1,
    };

    /// The textual form stored with records and sent to clients.
    pub fn name(&self) -> String {
        format!("argon2id:m={},t={},p={}", self.m_kib, self.t, self.p)
    }

    /// Parses [`KsfParams::name`]; refuses values outside sane bounds.
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        let bad = || VaultError::Unsupported(format!("KSF {text:?}"));
        let rest = text.strip_prefix("argon2id:").ok_or_else(bad)?;
        let mut values = [None; 3];
        for part in rest.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(bad)?;
            let v: u32 = v.parse().map_err(|_| bad())?;
            let slot = match k {
                "m" => 0,
                "t" => 1,
                "p" => 2,
                _ => return Err(bad()),
            };
            if values[slot].replace(v).is_some() {
                return Err(bad());
            }
        }
        let [Some(m_kib), Some(t), Some(p)] = values else {
            return Err(bad());
        };
        let params = KsfParams { m_kib, t, p };
        // Bounds: at most 4 GiB, 100 passes, 16 lanes; at least what argon2 accepts. The
        // lanes are checked first, so that 8 · p cannot overflow.
        if !(1..=16).contains(&p)
            || !(8 * p..=4 * 1024 * 1024).contains(&m_kib)
            || !(1..=100).contains(&t)
        {
            return Err(bad());
        }
        Ok(params)
    }

    /// The Argon2id instance (64-byte output, as OPAQUE asks).
    pub fn argon2(&self) -> Result<Argon2<'static>, VaultError> {
        let params = Params::new(self.m_kib, self.t, self.p, None)
            .map_err(|e| VaultError::Unsupported(format!("Argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// The least key stretching a client accepts from a server (`spec/vault.md` §2): a server
/// that sends less makes every password cheap to test for whoever holds its records. Lower
/// only by name (`--allow-weak-ksf`: tests, vectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KsfFloor {
    /// Least memory, in KiB.
    pub m_kib: u32,
    /// Fewest passes.
    pub t: u32,
}

impl KsfFloor {
    /// 19 MiB and 2 passes: OWASP's least recommended Argon2id configuration.
    pub const RECOMMENDED: KsfFloor = KsfFloor {
        m_kib: 19 * 1024,
        t: 2,
    };
    /// No floor, for tests and vectors with cheap parameters.
    pub const NONE: KsfFloor = KsfFloor { m_kib: 0, t: 0 };

    /// `unsupported` when `ksf` is below this floor.
    pub fn check(&self, ksf: &KsfParams) -> Result<(), VaultError> {
        if ksf.m_kib < self.m_kib || ksf.t < self.t {
            return Err(VaultError::Unsupported(format!(
                "KSF {}: below this client's floor (m={} KiB, t={}); a vault that stretches \
                 passwords this little makes them cheap to test offline",
                ksf.name(),
                self.m_kib,
                self.t
            )));
        }
        Ok(())
    }
}

/// The OPAQUE credential identifier of a user: `tenant ‖ 00 ‖ user`.
pub fn credential_id(tenant: &str, user: &str) -> Vec<u8> {
    let mut id = Vec::with_capacity(tenant.len() + 1 + user.len());
    id.extend_from_slice(tenant.as_bytes());
    id.push(0);
    id.extend_from_slice(user.as_bytes());
    id
}

#[cfg(test)]
mod tests {
    use super::{KsfFloor, KsfParams};
    use crate::error::Classify;

    #[test]
    fn hostile_ksf_text_is_refused_without_overflow() {
        // Every parameter text the client cannot use is `unsupported` (spec/vault.md §2),
        // whether out of bounds or not of the form.
        use crate::error::ErrorClass::Unsupported;
        for (text, class) in [
            ("argon2id:m=65536,t=3,p=536870912", Unsupported),
            ("argon2id:m=65536,t=3,p=4294967295", Unsupported),
            ("argon2id:m=65536,t=3,p=0", Unsupported),
            ("argon2id:m=4294967295,t=3,p=1", Unsupported),
            ("argon2id:m=65536,t=3,p=1,p=1", Unsupported),
            ("argon2id:m=65536,m=8,t=3,p=1", Unsupported),
            ("argon2id:m=65536,t=3", Unsupported),
            ("argon2id:m=-1,t=3,p=1", Unsupported),
            ("argon2i:m=65536,t=3,p=1", Unsupported),
            ("argon2id:m=7,t=1,p=1", Unsupported),
        ] {
            let refused = KsfParams::parse(text).unwrap_err();
            assert_eq!(refused.class(), class, "{text}: {refused}");
        }
        assert_eq!(
            KsfParams::parse("argon2id:m=65536,t=3,p=1").unwrap(),
            KsfParams::DEFAULT
        );
    }

    #[test]
    fn the_floor_refuses_cheap_stretching_unless_lowered() {
        let floor = KsfFloor::RECOMMENDED;
        assert!(floor.check(&KsfParams::DEFAULT).is_ok());
        assert!(floor
            .check(&KsfParams::parse("argon2id:m=19456,t=2,p=1").unwrap())
            .is_ok());
        for weak in [
            "argon2id:m=19455,t=2,p=1",
            "argon2id:m=65536,t=1,p=1",
            "argon2id:m=8,t=1,p=1",
        ] {
            let ksf = KsfParams::parse(weak).unwrap();
            let refused = floor.check(&ksf).unwrap_err();
            assert_eq!(
                refused.class(),
                crate::error::ErrorClass::Unsupported,
                "{weak}: {refused}"
            );
            assert!(KsfFloor::NONE.check(&ksf).is_ok(), "{weak}");
        }
    }
}
