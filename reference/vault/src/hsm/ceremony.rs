//! The key ceremony for a second site (`spec/hsm.md` §6): the master key moves from one
//! token to another wrapped under an RSA transport key whose private half never leaves the
//! destination token, and which the source token's security officer marked trusted.
//!
//! 1. destination: [`create_transport_key`] (RSA-3072 pair; the public half as SPKI PEM);
//! 2. source, security officer: [`trust_transport_key`] (the PEM becomes a trusted wrapping key);
//! 3. source, user: [`export_wrapped`] (RSA-OAEP wrap of the master key, and a check value);
//! 4. destination, user: [`import_wrapped`] (unwrap on the token, then verify the check value).
//!
//! The master key is never in the clear on either host.

use super::mechanisms::CKM_RSA_PKCS_OAEP;
use super::pkcs11::{backend, describe_error, find_one, rv, Export, Pkcs11Hsm, Token};
use super::{Hsm, HsmError};
use cryptoki::error::RvError;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Label of transport keys on tokens.
pub const TRANSPORT_LABEL: &str = "coffer-transport";
/// Size of the transport key.
pub const TRANSPORT_BITS: u64 = 3072;
/// Smallest transport key `trust_transport_key` accepts.
pub const MIN_TRANSPORT_BITS: u32 = 3072;
/// The `format` of a wrapped-key file.
pub const WRAPPED_FORMAT: &str = "coffer-wrapped-master-key/1";
/// Associated data of the check value in a wrapped-key file.
pub const CHECK_AAD: &[u8] = b"coffer/v1 key check";

/// The public half of a transport key.
pub struct TransportKey {
    /// SubjectPublicKeyInfo, PEM (`-----BEGIN PUBLIC KEY-----`).
    pub pem: String,
    /// SHA-256 of the SubjectPublicKeyInfo DER: what the officers compare out of band
    /// (`openssl pkey -pubin -in FILE -outform DER | sha256sum`).
    pub fingerprint: [u8; 32],
}

impl TransportKey {
    /// Parses an RSA SPKI PEM of at least [`MIN_TRANSPORT_BITS`].
    pub fn from_pem(pem: &str) -> Result<Self, HsmError> {
        let key = openssl::pkey::PKey::public_key_from_pem(pem.as_bytes())
            .map_err(|e| HsmError::Malformed(format!("not a PEM public key: {e}")))?;
        let rsa = key
            .rsa()
            .map_err(|_| HsmError::Malformed("the transport key is not an RSA key".into()))?;
        if rsa.n().num_bits() < MIN_TRANSPORT_BITS as i32 {
            return Err(HsmError::Policy(format!(
                "the transport key has {} bits; at least {MIN_TRANSPORT_BITS} are required",
                rsa.n().num_bits()
            )));
        }
        Self::from_components(&rsa.n().to_vec(), &rsa.e().to_vec())
    }

    fn from_components(modulus: &[u8], exponent: &[u8]) -> Result<Self, HsmError> {
        let openssl_error = |e: openssl::error::ErrorStack| HsmError::Malformed(e.to_string());
        let rsa = openssl::rsa::Rsa::from_public_components(
            openssl::bn::BigNum::from_slice(modulus).map_err(openssl_error)?,
            openssl::bn::BigNum::from_slice(exponent).map_err(openssl_error)?,
        )
        .map_err(openssl_error)?;
        let key = openssl::pkey::PKey::from_rsa(rsa).map_err(openssl_error)?;
        let der = key.public_key_to_der().map_err(openssl_error)?;
        let pem = key.public_key_to_pem().map_err(openssl_error)?;
        Ok(TransportKey {
            pem: String::from_utf8_lossy(&pem).into_owned(),
            fingerprint: Sha256::digest(&der).into(),
        })
    }

    /// `CKA_ID` of the transport key's objects: the first 16 bytes of the fingerprint.
    pub fn id(&self) -> Vec<u8> {
        self.fingerprint[..16].to_vec()
    }

    fn components(&self) -> Result<(Vec<u8>, Vec<u8>), HsmError> {
        let key = openssl::pkey::PKey::public_key_from_pem(self.pem.as_bytes())
            .map_err(|e| HsmError::Malformed(e.to_string()))?;
        let rsa = key.rsa().map_err(|e| HsmError::Malformed(e.to_string()))?;
        Ok((rsa.n().to_vec(), rsa.e().to_vec()))
    }
}

/// A wrapped master key in transit (JSON).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedKey {
    /// [`WRAPPED_FORMAT`].
    pub format: String,
    /// The master key's label on the source token.
    pub key_label: String,
    /// The wrap mechanism: `rsa-oaep-sha256` or `rsa-oaep-sha1` (MGF1 with the same hash).
    pub mechanism: String,
    /// Hex SHA-256 of the transport key's SPKI.
    pub transport_key_sha256: String,
    /// Hex of the `C_WrapKey` output.
    pub wrapped: String,
    /// Hex of the master key's seal of the empty string with [`CHECK_AAD`]: the destination
    /// opens it to confirm it unwrapped the same key.
    pub check: String,
}

/// The OAEP variants, preferred first. SoftHSM2 2.6 accepts only SHA-1 with OAEP; OAEP's
/// security does not rest on the hash's collision resistance, so SHA-1 is acceptable here.
const OAEP_VARIANTS: [(&str, MechanismType, PkcsMgfType); 2] = [
    (
        "rsa-oaep-sha256",
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
    ),
    ("rsa-oaep-sha1", MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
];

fn oaep(hash: MechanismType, mgf: PkcsMgfType) -> Mechanism<'static> {
    debug_assert_eq!(u64::from(MechanismType::RSA_PKCS_OAEP), CKM_RSA_PKCS_OAEP);
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()))
}

/// Step 1, on the destination token (user): generates an RSA transport key pair whose
/// private half is sensitive, not extractable and good only for unwrapping.
pub fn create_transport_key(hsm: &Pkcs11Hsm) -> Result<TransportKey, HsmError> {
    hsm.with_session(|session| {
        let public_template = [
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::ModulusBits(TRANSPORT_BITS.into()),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            Attribute::Wrap(true),
            Attribute::Verify(false),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Unwrap(true),
            Attribute::Decrypt(false),
            Attribute::Sign(false),
            Attribute::Label(TRANSPORT_LABEL.as_bytes().to_vec()),
        ];
        let (public, private) = session
            .generate_key_pair(
                &Mechanism::RsaPkcsKeyPairGen,
                &public_template,
                &private_template,
            )
            .map_err(backend("generating the transport key pair"))?;
        let named = (|| {
            let attrs = session
                .get_attributes(
                    public,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .map_err(backend("reading the transport public key"))?;
            let (mut modulus, mut exponent) = (Vec::new(), Vec::new());
            for attr in attrs {
                match attr {
                    Attribute::Modulus(m) => modulus = m,
                    Attribute::PublicExponent(e) => exponent = e,
                    _ => {}
                }
            }
            let transport = TransportKey::from_components(&modulus, &exponent)?;
            session
                .update_attributes(private, &[Attribute::Id(transport.id())])
                .map_err(backend("naming the transport key"))?;
            Ok(transport)
        })();
        let _ = session.destroy_object(public); // a session object: gone with the session anyway
        if named.is_err() {
            // An unnamed transport key could never be used: leave nothing behind.
            let _ = session.destroy_object(private);
        }
        named
    })
}

/// Step 2, on the source token (security officer): stores the transport public key as a
/// trusted wrapping key (`CKA_TRUSTED`, which only the security officer may set). Returns
/// whether it created the object (false: it was there already).
pub fn trust_transport_key(
    token: &Token,
    so_pin: &str,
    transport: &TransportKey,
) -> Result<bool, HsmError> {
    let session = token.session()?;
    token.login(&session, UserType::So, so_pin)?;
    let found = find_one(
        &session,
        &[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(transport.id()),
        ],
        "transport key with this id",
    )?;
    let result = match found {
        Some(existing) => match session.get_attributes(existing, &[AttributeType::Trusted]) {
            Ok(attrs) if attrs.contains(&Attribute::Trusted(true)) => Ok(false),
            _ => Err(HsmError::Policy(
                "a public key with this id is on the token but is not trusted (a user made it); \
                 remove it before trusting the transport key"
                    .into(),
            )),
        },
        None => {
            let (modulus, exponent) = transport.components()?;
            session
                .create_object(&[
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::KeyType(KeyType::RSA),
                    Attribute::Modulus(modulus),
                    Attribute::PublicExponent(exponent),
                    Attribute::Token(true),
                    Attribute::Private(false),
                    Attribute::Wrap(true),
                    Attribute::Encrypt(false),
                    Attribute::Verify(false),
                    Attribute::Trusted(true),
                    Attribute::Label(TRANSPORT_LABEL.as_bytes().to_vec()),
                    Attribute::Id(transport.id()),
                ])
                .map(|_| true)
                .map_err(|e| match rv(&e) {
                    Some(RvError::AttributeTypeInvalid | RvError::AttributeReadOnly) => {
                        HsmError::Policy(format!(
                            "the token does not let its security officer mark a key trusted ({}); \
                             it cannot be the source of a key ceremony",
                            describe_error(&e)
                        ))
                    }
                    _ => backend("creating the trusted transport key")(e),
                })
        }
    };
    let _ = session.logout();
    result
}

/// Step 3, on the source token (user): wraps the master key under the trusted transport key.
pub fn export_wrapped(hsm: &Pkcs11Hsm, transport: &TransportKey) -> Result<WrappedKey, HsmError> {
    let (mechanism, wrapped) = hsm.with_session(|session| {
        let master = hsm.key(session)?;
        let wrapping = find_one(
            session,
            &[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(transport.id()),
            ],
            "transport key with this id",
        )?
        .ok_or_else(|| {
            HsmError::Policy(
                "this transport key is not on the token: its security officer must first run \
                 coffer hsm trust with it"
                    .into(),
            )
        })?;
        let trusted = matches!(
            session
                .get_attributes(wrapping, &[AttributeType::Trusted])
                .as_deref(),
            Ok([Attribute::Trusted(true)])
        );
        let mut last = None;
        for (name, hash, mgf) in OAEP_VARIANTS {
            match session.wrap_key(&oaep(hash, mgf), wrapping, master) {
                Ok(bytes) if !trusted => {
                    // The token let the key out under an untrusted key: it does not enforce
                    // CKA_WRAP_WITH_TRUSTED, so nothing it wraps may be relied on.
                    drop(bytes);
                    return Err(HsmError::Policy(
                        "the token wrapped the master key under an untrusted key; it does not \
                         enforce CKA_WRAP_WITH_TRUSTED"
                            .into(),
                    ));
                }
                Ok(bytes) => return Ok((name, bytes)),
                Err(e)
                    if matches!(
                        rv(&e),
                        Some(RvError::ArgumentsBad | RvError::MechanismParamInvalid)
                    ) =>
                {
                    last = Some(e)
                }
                Err(e) => return Err(wrap_refusal(e)),
            }
        }
        Err(last.map_or_else(
            || HsmError::Backend("no OAEP variant".into()),
            backend("C_WrapKey (RSA-OAEP with SHA-256 and SHA-1)"),
        ))
    })?;
    let check = hsm.seal(CHECK_AAD, b"")?;
    Ok(WrappedKey {
        format: WRAPPED_FORMAT.into(),
        key_label: hsm.key_label().to_owned(),
        mechanism: mechanism.into(),
        transport_key_sha256: hex::encode(transport.fingerprint),
        wrapped: hex::encode(wrapped),
        check: hex::encode(check),
    })
}

/// Maps a refused `C_WrapKey` to a policy error naming the reason.
pub(crate) fn wrap_refusal(e: cryptoki::error::Error) -> HsmError {
    match rv(&e) {
        Some(
            RvError::KeyNotWrappable
            | RvError::KeyUnextractable
            | RvError::WrappingKeyHandleInvalid
            | RvError::WrappingKeyTypeInconsistent,
        ) => HsmError::Policy(format!(
            "the token refuses to wrap the master key ({})",
            describe_error(&e)
        )),
        _ => backend("C_WrapKey")(e),
    }
}

/// Step 4, on the destination token (user): unwraps the master key with the transport key's
/// private half, as a sensitive key that leaves this token as `export` says, and verifies
/// the check value. Fails without leaving a key if the check does not open.
pub fn import_wrapped(hsm: &Pkcs11Hsm, file: &WrappedKey, export: Export) -> Result<(), HsmError> {
    if file.format != WRAPPED_FORMAT {
        return Err(HsmError::Malformed(format!(
            "format {:?}, expected {WRAPPED_FORMAT:?}",
            file.format
        )));
    }
    let (hash, mgf) = OAEP_VARIANTS
        .iter()
        .find(|(name, _, _)| *name == file.mechanism)
        .map(|(_, h, m)| (*h, *m))
        .ok_or_else(|| HsmError::Malformed(format!("unknown mechanism {:?}", file.mechanism)))?;
    let hex_field = |name: &str, text: &str| {
        hex::decode(text).map_err(|_| HsmError::Malformed(format!("{name} is not hex")))
    };
    let fingerprint = hex_field("transport_key_sha256", &file.transport_key_sha256)?;
    let wrapped = hex_field("wrapped", &file.wrapped)?;
    let check = hex_field("check", &file.check)?;
    // The check value must be a sealed blob (spec/hsm.md §4) before anything is unwrapped.
    if check.len() < 1 + 12 + 16 || check[0] != 2 {
        return Err(HsmError::Malformed(
            "check is not a PKCS#11-sealed blob".into(),
        ));
    }
    if fingerprint.len() != 32 {
        return Err(HsmError::Malformed(
            "transport_key_sha256 is not 32 bytes".into(),
        ));
    }
    let imported = hsm.with_session(|session| {
        if hsm.find_key(session)?.is_some() {
            return Err(HsmError::Policy(format!(
                "a key labelled {:?} is already on this token",
                hsm.key_label()
            )));
        }
        let unwrapping = find_one(
            session,
            &[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(fingerprint[..16].to_vec()),
            ],
            "transport key with this id",
        )?
        .ok_or_else(|| {
            HsmError::Policy(
                "the transport key this file was wrapped for is not on this token".into(),
            )
        })?;
        let template = hsm.master_attributes(export);
        session
            .unwrap_key(&oaep(hash, mgf), unwrapping, &wrapped, &template)
            .map_err(|e| match rv(&e) {
                // OAEP decoding failed: a damaged or foreign wrapped key (SoftHSM2 2.6 says
                // CKR_GENERAL_ERROR, as for a failed GCM tag).
                Some(
                    RvError::WrappedKeyInvalid
                    | RvError::WrappedKeyLenRange
                    | RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::GeneralError,
                ) => HsmError::Unseal,
                _ => backend("C_UnwrapKey")(e),
            })
    })?;
    match hsm.unseal(CHECK_AAD, &check) {
        Ok(_) => Ok(()),
        Err(e) => {
            hsm.with_session(|session| {
                session.destroy_object(imported).map_err(backend(
                    "the check value does not open, and removing the imported key failed",
                ))
            })?;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_keys_must_be_rsa_of_3072_bits_or_more() {
        let small = openssl::rsa::Rsa::generate(2048).unwrap();
        let pem = String::from_utf8(small.public_key_to_pem().unwrap()).unwrap();
        assert!(matches!(
            TransportKey::from_pem(&pem),
            Err(HsmError::Policy(_))
        ));
        let ec = openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap();
        let pem = String::from_utf8(ec.public_key_to_pem().unwrap()).unwrap();
        assert!(matches!(
            TransportKey::from_pem(&pem),
            Err(HsmError::Malformed(_))
        ));
        assert!(matches!(
            TransportKey::from_pem("not pem"),
            Err(HsmError::Malformed(_))
        ));
        let good = openssl::rsa::Rsa::generate(3072).unwrap();
        let pem = String::from_utf8(good.public_key_to_pem().unwrap()).unwrap();
        let key = TransportKey::from_pem(&pem).unwrap();
        // The fingerprint is SHA-256 of the SPKI DER, as openssl computes it.
        let der = openssl::pkey::PKey::from_rsa(good)
            .unwrap()
            .public_key_to_der()
            .unwrap();
        assert_eq!(key.fingerprint, <[u8; 32]>::from(Sha256::digest(&der)));
        assert_eq!(key.id(), key.fingerprint[..16].to_vec());
    }
}
