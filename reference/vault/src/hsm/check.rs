//! The profile's checks against a PKCS#11 module (`spec/hsm.md` §8). Each check uses
//! session objects only, so it leaves the token as it found it. [`run_isolated`] runs every
//! check in its own child process, so a module that crashes or hangs fails that check and
//! the run goes on; the conformance runner reuses both.

use super::mechanisms::{
    mechanism_type, name, Offered, CKM_AES_GCM, CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_KWP,
};
use super::pkcs11::{ckr_name, find_one, master_key_template, rv, KeyPolicy, Token};
use super::{HsmError, Pkcs11Config};
use cryptoki::error::RvError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How much a check matters (BCP 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// Required: the token does not conform without it.
    Must,
    /// Recommended: needed for a feature (e.g. the key ceremony) or for robustness.
    Should,
    /// Optional: reported for information.
    May,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The requirement holds.
    Pass,
    /// It does not (including a module crash or hang).
    Fail,
    /// It could not be tested; the detail says why.
    Skipped,
}

/// For checks that expect a refusal: how the module refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// With the return value the profile names.
    Exact,
    /// With another error (still a refusal).
    OtherRejection,
    /// It did what it must refuse.
    WronglyAccepted,
}

/// One check's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable id, `hsm.<area>.<case>`.
    pub id: String,
    /// How much it matters.
    pub level: Level,
    /// The outcome.
    pub verdict: Verdict,
    /// For refusal checks, how the module refused.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grade: Option<Grade>,
    /// What was seen, in words.
    pub detail: String,
}

/// A check of the profile.
pub struct Check {
    /// Stable id.
    pub id: &'static str,
    /// How much it matters.
    pub level: Level,
    /// What it verifies.
    pub title: &'static str,
    run: fn(&Ctx) -> Outcome,
}

/// What a check function returns: verdict, grade, detail.
type Outcome = (Verdict, Option<Grade>, String);

/// What a check runs with: the token, a user session, what the token offers.
struct Ctx<'a> {
    token: &'a Token,
    session: Session,
    offered: Offered,
    key_label: &'a str,
}

fn pass(detail: impl Into<String>) -> Outcome {
    (Verdict::Pass, None, detail.into())
}
fn fail(detail: impl Into<String>) -> Outcome {
    (Verdict::Fail, None, detail.into())
}
fn skipped(detail: impl Into<String>) -> Outcome {
    (Verdict::Skipped, None, detail.into())
}

/// Grades an operation that must be refused; `exact` are the return values the profile names.
fn refusal<T>(result: Result<T, cryptoki::error::Error>, exact: &[RvError]) -> Outcome {
    match result {
        Ok(_) => (
            Verdict::Fail,
            Some(Grade::WronglyAccepted),
            "accepted".into(),
        ),
        Err(e) => match rv(&e) {
            Some(code) if exact.contains(&code) => (
                Verdict::Pass,
                Some(Grade::Exact),
                format!("refused: {}", ckr_name(code)),
            ),
            Some(code) => (
                Verdict::Pass,
                Some(Grade::OtherRejection),
                format!(
                    "refused with {} (the profile names {})",
                    ckr_name(code),
                    exact
                        .iter()
                        .map(|c| ckr_name(*c))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            ),
            None => (
                Verdict::Pass,
                Some(Grade::OtherRejection),
                format!("refused: {e}"),
            ),
        },
    }
}

macro_rules! check {
    ($id:literal, $level:ident, $title:literal, $run:expr) => {
        Check {
            id: $id,
            level: Level::$level,
            title: $title,
            run: $run,
        }
    };
}

/// Every check of the profile, in the order they run.
pub const CHECKS: &[Check] = &[
    check!("hsm.mechanisms.aes_gcm", Must, "CKM_AES_GCM encrypt and decrypt", |c| {
        offered(c.offered.aes_gcm, "CKM_AES_GCM")
    }),
    check!("hsm.mechanisms.aes_key_gen", Must, "CKM_AES_KEY_GEN (the master key is made on the token)", |c| {
        offered(c.offered.aes_key_gen, "CKM_AES_KEY_GEN")
    }),
    check!("hsm.mechanisms.rsa_oaep", Should, "RSA key pairs and CKM_RSA_PKCS_OAEP wrap/unwrap (the key ceremony)", |c| {
        offered(c.offered.rsa_oaep, "CKM_RSA_PKCS_KEY_PAIR_GEN and CKM_RSA_PKCS_OAEP")
    }),
    check!("hsm.mechanisms.aes_key_wrap", May, "CKM_AES_KEY_WRAP (RFC 3394)", |c| {
        offered(c.offered.aes_key_wrap, "CKM_AES_KEY_WRAP")
    }),
    check!("hsm.mechanisms.aes_key_wrap_pad", May, "RFC 5649 key wrap, under 0x210B or 0x210A", |c| {
        match c.offered.aes_key_wrap_pad {
            Some(n) => pass(format!("offered as {}", name(n))),
            None => fail("neither 0x210B (CKM_AES_KEY_WRAP_KWP) nor 0x210A is offered"),
        }
    }),
    check!("hsm.mechanisms.hmac_sha256", May, "CKM_SHA256_HMAC", |c| {
        offered(c.offered.hmac_sha256, "CKM_SHA256_HMAC")
    }),
    check!("hsm.mechanisms.hkdf", May, "CKM_HKDF_DERIVE", |c| offered(c.offered.hkdf, "CKM_HKDF_DERIVE")),
    check!("hsm.key.generated_attributes", Must, "a generated sensitive, non-extractable AES-256 key reports CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE", generated_attributes),
    check!("hsm.key.value_refused", Must, "CKA_VALUE of a sensitive key is never returned", value_refused),
    check!("hsm.gcm.round_trip", Must, "AES-GCM with a 96-bit IV, 128-bit tag and associated data round-trips", |c| {
        with_key(c, |s, key| {
            let (iv, sealed) = gcm_seal(s, key, b"aad", b"plaintext")?;
            let opened = gcm_open(s, key, &iv, b"aad", &sealed, 128)?;
            Ok(if opened == b"plaintext" && sealed.len() == 9 + 16 { pass("ok") } else { fail("wrong output") })
        })
    }),
    check!("hsm.gcm.empty_aad", Must, "empty associated data (a non-NULL pointer of length 0)", |c| {
        with_key(c, |s, key| {
            let (iv, sealed) = gcm_seal(s, key, b"", b"x")?;
            let opened = gcm_open(s, key, &iv, b"", &sealed, 128)?;
            Ok(if opened == b"x" { pass("ok") } else { fail("wrong output") })
        })
    }),
    check!("hsm.gcm.bad_tag_rejected", Must, "a flipped tag bit is refused, with no output", |c| {
        with_key(c, |s, key| {
            let (iv, mut sealed) = gcm_seal(s, key, b"aad", b"plaintext")?;
            if let Some(last) = sealed.last_mut() { *last ^= 1; }
            Ok(refusal(gcm_open(s, key, &iv, b"aad", &sealed, 128), AUTH_FAILED))
        })
    }),
    check!("hsm.gcm.wrong_aad_rejected", Must, "other associated data is refused", |c| {
        with_key(c, |s, key| {
            let (iv, sealed) = gcm_seal(s, key, b"aad", b"plaintext")?;
            Ok(refusal(gcm_open(s, key, &iv, b"aaX", &sealed, 128), AUTH_FAILED))
        })
    }),
    check!("hsm.gcm.short_ciphertext_rejected", Must, "a ciphertext shorter than the tag is refused", |c| {
        with_key(c, |s, key| {
            let (iv, sealed) = gcm_seal(s, key, b"aad", b"plaintext")?;
            Ok(refusal(gcm_open(s, key, &iv, b"aad", &sealed[..8], 128), &[RvError::EncryptedDataLenRange, RvError::EncryptedDataInvalid]))
        })
    }),
    check!("hsm.gcm.wrong_iv_length_rejected", Must, "the right IV bytes with another length (16) are refused", |c| {
        with_key(c, |s, key| {
            let (iv, sealed) = gcm_seal(s, key, b"aad", b"plaintext")?;
            let mut long = [0u8; 16];
            long[..12].copy_from_slice(&iv);
            Ok(refusal(gcm_open(s, key, &long, b"aad", &sealed, 128), AUTH_FAILED))
        })
    }),
    check!("hsm.gcm.empty_iv_rejected", Should, "an empty IV is refused", |c| {
        with_key(c, |s, key| {
            let params = raw_gcm_params(&mut [], std::ptr::null_mut(), 0, 128);
            let mech = Mechanism::VendorDefined(VendorDefinedMechanism::new(mechanism_type(CKM_AES_GCM), Some(&params)));
            Ok(refusal(s.encrypt(&mech, key, b"plaintext"), PARAM_REFUSED))
        })
    }),
    check!("hsm.gcm.short_tag_rejected", Must, "a 96-bit tag length on a 128-bit-tag ciphertext gives no plaintext", |c| {
        with_key(c, |s, key| {
            let (iv, sealed) = gcm_seal(s, key, b"aad", b"plaintext")?;
            Ok(refusal(gcm_open(s, key, &iv, b"aad", &sealed, 96), &[RvError::EncryptedDataInvalid, RvError::MechanismParamInvalid]))
        })
    }),
    check!("hsm.gcm.null_aad_pointer_rejected", Should, "a NULL AAD pointer with a non-zero length is refused, not dereferenced", |c| {
        with_key(c, |s, key| {
            let mut iv = [7u8; 12];
            let params = raw_gcm_params(&mut iv, std::ptr::null_mut(), 16, 128);
            let mech = Mechanism::VendorDefined(VendorDefinedMechanism::new(mechanism_type(CKM_AES_GCM), Some(&params)));
            Ok(refusal(s.encrypt(&mech, key, b"plaintext"), PARAM_REFUSED))
        })
    }),
    check!("hsm.wrap.untrusted_refused", Must, "a CKA_WRAP_WITH_TRUSTED key is not wrapped under an untrusted key", untrusted_wrap_refused),
    check!("hsm.wrap.user_cannot_trust", Must, "a user (not the security officer) cannot create a key with CKA_TRUSTED", user_cannot_trust),
    check!("hsm.wrap.unextractable_refused", Must, "a non-extractable key is not wrapped at all", unextractable_wrap_refused),
    check!("hsm.wrap.rfc3394_known_answer", May, "CKM_AES_KEY_WRAP gives RFC 3394 §4.6's output", rfc3394_known_answer),
    check!("hsm.wrap.rfc5649_known_answer", May, "RFC 5649 wrap gives RFC 5649 §6's outputs", rfc5649_known_answer),
    check!("hsm.master.policy", Must, "the master key (if present) is sensitive and leaves the token only under a trusted key", master_policy),
    check!("hsm.concurrency.sessions", Must, "4 threads, one session each, seal and open 25 times with one key", concurrency),
];

const AUTH_FAILED: &[RvError] = &[RvError::EncryptedDataInvalid];
const PARAM_REFUSED: &[RvError] = &[RvError::MechanismParamInvalid, RvError::ArgumentsBad];

fn offered(yes: bool, what: &str) -> Outcome {
    if yes {
        pass(format!("{what} offered"))
    } else {
        fail(format!("{what} not offered"))
    }
}

type Step = Result<Outcome, cryptoki::error::Error>;

/// Runs `f` with a fresh session AES-256 key (sensitive, not extractable, encrypt/decrypt).
fn with_key(c: &Ctx, f: impl FnOnce(&Session, ObjectHandle) -> Step) -> Outcome {
    let key = match session_aes_key(&c.session, &[]) {
        Ok(k) => k,
        Err(e) => return fail(format!("cannot generate a session AES key: {e}")),
    };
    let out = f(&c.session, key).unwrap_or_else(|e| fail(e.to_string()));
    let _ = c.session.destroy_object(key);
    out
}

fn session_aes_key(
    session: &Session,
    extra: &[Attribute],
) -> Result<ObjectHandle, cryptoki::error::Error> {
    let mut template = vec![
        Attribute::Token(false),
        Attribute::ValueLen(32.into()),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
    ];
    for attr in extra {
        template.retain(|a| a.attribute_type() != attr.attribute_type());
        template.push(attr.clone());
    }
    session.generate_key(&Mechanism::AesKeyGen, &template)
}

fn gcm_seal(
    session: &Session,
    key: ObjectHandle,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; 12], Vec<u8>), cryptoki::error::Error> {
    let mut iv = [0u8; 12];
    let _ = getrandom::fill(&mut iv);
    let mut iv_param = iv;
    let params = GcmParams::new(&mut iv_param, aad, 128.into())?;
    let sealed = session.encrypt(&Mechanism::AesGcm(params), key, plaintext)?;
    Ok((iv, sealed))
}

fn gcm_open(
    session: &Session,
    key: ObjectHandle,
    iv: &[u8],
    aad: &[u8],
    sealed: &[u8],
    tag_bits: u64,
) -> Result<Vec<u8>, cryptoki::error::Error> {
    let mut iv = iv.to_vec();
    let params = GcmParams::new(&mut iv, aad, tag_bits.into())?;
    session.decrypt(&Mechanism::AesGcm(params), key, sealed)
}

/// GCM parameters as the C structure, for the malformed cases `GcmParams` cannot express.
fn raw_gcm_params(
    iv: &mut [u8],
    aad: *mut u8,
    aad_len: u64,
    tag_bits: u64,
) -> cryptoki_sys::CK_GCM_PARAMS {
    cryptoki_sys::CK_GCM_PARAMS {
        pIv: if iv.is_empty() {
            std::ptr::null_mut()
        } else {
            iv.as_mut_ptr()
        },
        ulIvLen: iv.len() as _,
        ulIvBits: (iv.len() * 8) as _,
        pAAD: aad,
        ulAADLen: aad_len as _,
        ulTagBits: tag_bits as _,
    }
}

fn generated_attributes(c: &Ctx) -> Outcome {
    match session_aes_key(&c.session, &[]) {
        Ok(key) => {
            let policy = KeyPolicy::read(&c.session, key);
            let _ = c.session.destroy_object(key);
            match policy {
                Ok(p) if p.always_sensitive == Some(true) && p.never_extractable == Some(true) => {
                    pass("CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE are true")
                }
                Ok(p) => fail(format!("attributes as read: {p:?}")),
                Err(e) => fail(e.to_string()),
            }
        }
        Err(e) => fail(format!("cannot generate the key: {e}")),
    }
}

fn value_refused(c: &Ctx) -> Outcome {
    use cryptoki::object::AttributeInfo;
    match session_aes_key(&c.session, &[]) {
        Ok(key) => {
            // C_GetAttributeValue's answer for CKA_VALUE, told apart (get_attributes would
            // fold a refusal into an empty answer).
            let info = c.session.get_attribute_info(key, &[AttributeType::Value]);
            let _ = c.session.destroy_object(key);
            match info.as_deref() {
                Ok([AttributeInfo::Sensitive]) => (
                    Verdict::Pass,
                    Some(Grade::Exact),
                    "refused: CKR_ATTRIBUTE_SENSITIVE".into(),
                ),
                Ok([AttributeInfo::Available(len)]) => (
                    Verdict::Fail,
                    Some(Grade::WronglyAccepted),
                    format!("the key's value ({len} bytes) is available"),
                ),
                Ok(other) => (
                    Verdict::Pass,
                    Some(Grade::OtherRejection),
                    format!("not returned: {other:?}"),
                ),
                Err(e) => (
                    Verdict::Pass,
                    Some(Grade::OtherRejection),
                    format!("refused: {}", super::pkcs11::describe_error(e)),
                ),
            }
        }
        Err(e) => fail(format!("cannot generate the key: {e}")),
    }
}

/// An untrusted wrapping key the token offers a mechanism for: an AES key (RFC 3394) or an
/// RSA public key (OAEP). Returns the key handles to destroy and the mechanism.
fn untrusted_wrapping_key(
    c: &Ctx,
) -> Result<(ObjectHandle, Vec<ObjectHandle>, Mechanism<'static>), String> {
    if c.offered.aes_key_wrap {
        let kek = session_aes_key(
            &c.session,
            &[
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
            ],
        )
        .map_err(|e| format!("cannot generate a wrapping key: {e}"))?;
        return Ok((kek, vec![kek], Mechanism::AesKeyWrap));
    }
    if c.offered.rsa_oaep {
        let (public, private) = c
            .session
            .generate_key_pair(
                &Mechanism::RsaPkcsKeyPairGen,
                &[
                    Attribute::Token(false),
                    Attribute::ModulusBits(2048.into()),
                    Attribute::PublicExponent(vec![1, 0, 1]),
                    Attribute::Wrap(true),
                ],
                &[Attribute::Token(false), Attribute::Unwrap(true)],
            )
            .map_err(|e| format!("cannot generate an RSA key pair: {e}"))?;
        let mech = Mechanism::RsaPkcsOaep(cryptoki::mechanism::rsa::PkcsOaepParams::new(
            cryptoki::mechanism::MechanismType::SHA1,
            cryptoki::mechanism::rsa::PkcsMgfType::MGF1_SHA1,
            cryptoki::mechanism::rsa::PkcsOaepSource::empty(),
        ));
        return Ok((public, vec![public, private], mech));
    }
    Err("the token offers neither CKM_AES_KEY_WRAP nor CKM_RSA_PKCS_OAEP".into())
}

fn wrap_refused(c: &Ctx, target_attrs: &[Attribute], exact: &[RvError]) -> Outcome {
    let (wrapping, cleanup, mech) = match untrusted_wrapping_key(c) {
        Ok(k) => k,
        Err(why) => return skipped(why),
    };
    // Control: the same wrapping key and mechanism wrap an ordinary extractable key, so a
    // refusal below is about the key's attributes, not about the set-up.
    let control = session_aes_key(&c.session, &[Attribute::Extractable(true)]).and_then(|k| {
        let wrapped = c.session.wrap_key(&mech, wrapping, k);
        let _ = c.session.destroy_object(k);
        wrapped
    });
    let mechanism = name(mech.mechanism_type().into());
    let out = match control {
        Err(e) => fail(format!(
            "control: wrapping an ordinary extractable key with {mechanism} fails ({}), so a \
             refusal would prove nothing",
            super::pkcs11::describe_error(&e)
        )),
        Ok(_) => match session_aes_key(&c.session, target_attrs) {
            Ok(target) => {
                let r = c.session.wrap_key(&mech, wrapping, target);
                let _ = c.session.destroy_object(target);
                let (v, g, d) = refusal(r, exact);
                (v, g, format!("{d} (wrapping with {mechanism})"))
            }
            Err(e) => fail(format!("cannot generate the key to wrap: {e}")),
        },
    };
    for handle in cleanup {
        let _ = c.session.destroy_object(handle);
    }
    out
}

fn untrusted_wrap_refused(c: &Ctx) -> Outcome {
    wrap_refused(
        c,
        &[
            Attribute::Extractable(true),
            Attribute::WrapWithTrusted(true),
        ],
        &[RvError::KeyNotWrappable, RvError::WrappingKeyHandleInvalid],
    )
}

fn user_cannot_trust(c: &Ctx) -> Outcome {
    if !c.offered.rsa_oaep {
        return skipped("no RSA key pairs to make a public key from");
    }
    let pair = c.session.generate_key_pair(
        &Mechanism::RsaPkcsKeyPairGen,
        &[
            Attribute::Token(false),
            Attribute::ModulusBits(2048.into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
        ],
        &[Attribute::Token(false)],
    );
    let (public, private) = match pair {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot generate an RSA key pair: {e}")),
    };
    let components = c.session.get_attributes(
        public,
        &[AttributeType::Modulus, AttributeType::PublicExponent],
    );
    let out = match components.as_deref() {
        Ok([Attribute::Modulus(n), Attribute::PublicExponent(e)]) => {
            let created = c.session.create_object(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Token(false),
                Attribute::Modulus(n.clone()),
                Attribute::PublicExponent(e.clone()),
                Attribute::Wrap(true),
                Attribute::Trusted(true),
            ]);
            if let Ok(handle) = &created {
                let _ = c.session.destroy_object(*handle);
            }
            refusal(
                created,
                &[RvError::AttributeReadOnly, RvError::AttributeTypeInvalid],
            )
        }
        _ => fail("cannot read the public key's modulus and exponent"),
    };
    let _ = c.session.destroy_object(public);
    let _ = c.session.destroy_object(private);
    out
}

fn unextractable_wrap_refused(c: &Ctx) -> Outcome {
    wrap_refused(c, &[], &[RvError::KeyUnextractable])
}

/// Imports `value` as a session secret key of `key_type`, readable (test material only).
fn import_clear(
    session: &Session,
    key_type: KeyType,
    value: &[u8],
    kek: bool,
) -> Result<ObjectHandle, cryptoki::error::Error> {
    session.create_object(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type),
        Attribute::Token(false),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
        Attribute::Wrap(kek),
        Attribute::Unwrap(kek),
        Attribute::Value(value.to_vec()),
    ])
}

/// Wraps `key` (imported as `key_type`) under `kek` with mechanism number `mech` and
/// compares with `expected`.
fn known_answer(c: &Ctx, mech: u64, kek: &str, cases: &[(KeyType, &str, &str)]) -> Outcome {
    let run = || -> Result<Outcome, String> {
        let bytes = |h: &str| hex::decode(h).map_err(|e| e.to_string());
        let kek = import_clear(&c.session, KeyType::AES, &bytes(kek)?, true)
            .map_err(|e| format!("cannot import the RFC's KEK: {e}"))?;
        // Every case is tried and every wrong one named (not only the last).
        let mut wrong = Vec::new();
        for (case, (key_type, key, expected)) in cases.iter().enumerate() {
            let case = format!("case {} ({}-byte key)", case + 1, key.len() / 2);
            let target = import_clear(&c.session, *key_type, &bytes(key)?, false)
                .map_err(|e| format!("cannot import the RFC's key data: {e}"))?;
            let mechanism = Mechanism::VendorDefined(VendorDefinedMechanism::new::<()>(
                mechanism_type(mech),
                None,
            ));
            let wrapped = c.session.wrap_key(&mechanism, kek, target);
            let _ = c.session.destroy_object(target);
            match wrapped {
                Ok(w) if hex::encode(&w) == *expected => {}
                Ok(w) => wrong.push(format!("{case}: {} instead of {expected}", hex::encode(w))),
                Err(e) => wrong.push(format!("{case}: {e}")),
            }
        }
        let _ = c.session.destroy_object(kek);
        Ok(if wrong.is_empty() {
            pass(format!("{} matches the RFC", name(mech)))
        } else {
            fail(format!("{}, {}", name(mech), wrong.join("; ")))
        })
    };
    run().unwrap_or_else(fail)
}

fn rfc3394_known_answer(c: &Ctx) -> Outcome {
    if !c.offered.aes_key_wrap {
        return skipped("CKM_AES_KEY_WRAP not offered");
    }
    known_answer(
        c,
        CKM_AES_KEY_WRAP,
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        &[(
            KeyType::AES,
            "00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f",
            "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21",
        )],
    )
}

fn rfc5649_known_answer(c: &Ctx) -> Outcome {
    let Some(number) = c.offered.aes_key_wrap_pad else {
        return skipped("RFC 5649 wrap not offered");
    };
    let kek = "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8";
    let (v, g, d) = known_answer(
        c,
        number,
        kek,
        &[
            (
                KeyType::GENERIC_SECRET,
                "c37b7e6492584340bed12207808941155068f738",
                "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a",
            ),
            (
                KeyType::GENERIC_SECRET,
                "466f7250617369",
                "afbeb0f07dfbf5419200f2ccb50bb24f",
            ),
        ],
    );
    let under = if number == CKM_AES_KEY_WRAP_KWP {
        "the PKCS#11 3.x number"
    } else {
        "the pre-3.0 number SoftHSM2 uses"
    };
    (v, g, format!("{d}; offered under {under}"))
}

fn master_policy(c: &Ctx) -> Outcome {
    let found = find_one(
        &c.session,
        &master_key_template(c.key_label),
        &format!("key labelled {:?}", c.key_label),
    );
    let key = match found {
        Ok(Some(key)) => key,
        Ok(None) => {
            return skipped(format!(
                "no key labelled {:?} (run coffer hsm init)",
                c.key_label
            ))
        }
        Err(e) => return fail(e.to_string()),
    };
    match KeyPolicy::read(&c.session, key) {
        Ok(policy) => match policy.objection() {
            Some(why) => fail(why),
            None => pass(format!(
                "sensitive; {}; CKA_ALWAYS_SENSITIVE {}",
                if policy.extractable == Some(false) {
                    "never leaves the token"
                } else {
                    "leaves only wrapped under a trusted key"
                },
                match policy.always_sensitive {
                    Some(true) => "true (generated on the token)",
                    Some(false) => "false (imported)",
                    None => "not reported",
                }
            )),
        },
        Err(e) => fail(e.to_string()),
    }
}

fn concurrency(c: &Ctx) -> Outcome {
    let key = match session_aes_key(&c.session, &[]) {
        Ok(k) => k,
        Err(e) => return fail(format!("cannot generate a session AES key: {e}")),
    };
    let token = c.token;
    let failures: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                scope.spawn(move || {
                    let Ok(session) = token.session() else {
                        return 25;
                    };
                    (0..25)
                        .filter(|i| {
                            let text = format!("worker {worker} message {i}");
                            !matches!(
                                gcm_seal(&session, key, b"aad", text.as_bytes())
                                    .and_then(|(iv, s)| gcm_open(&session, key, &iv, b"aad", &s, 128)),
                                Ok(out) if out == text.as_bytes()
                            )
                        })
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(25)).sum()
    });
    let _ = c.session.destroy_object(key);
    if failures == 0 {
        pass("100 round trips on 4 sessions")
    } else {
        fail(format!("{failures} of 100 round trips failed"))
    }
}

/// Runs the check `id` in this process against the token of `config` (logged in as the user).
/// A module that cannot be loaded, or a token that cannot be found or logged into, fails
/// the check; only an unknown id is an error.
pub fn run_one(id: &str, config: &Pkcs11Config) -> Result<CheckResult, HsmError> {
    let check = CHECKS
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| HsmError::Malformed(format!("no check {id:?}")))?;
    let (verdict, grade, detail) = match Token::open_logged_in(config) {
        Ok((token, session)) => {
            let ctx = Ctx {
                offered: token.offered(),
                token: &token,
                session,
                key_label: &config.key_label,
            };
            (check.run)(&ctx)
        }
        Err(e) => fail(e.to_string()),
    };
    Ok(CheckResult {
        id: check.id.into(),
        level: check.level,
        verdict,
        grade,
        detail,
    })
}

/// Runs every check, each in a child process made by `child(id)` that must print the
/// check's [`CheckResult`] as one JSON line on stdout. A child that crashes, hangs past
/// `timeout` or prints no result fails its check, and the run goes on.
pub fn run_isolated(child: impl Fn(&str) -> Command, timeout: Duration) -> Vec<CheckResult> {
    CHECKS
        .iter()
        .map(|check| {
            let failed = |detail: String| CheckResult {
                id: check.id.into(),
                level: check.level,
                verdict: Verdict::Fail,
                grade: None,
                detail,
            };
            let mut command = child(check.id);
            command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut process = match command.spawn() {
                Ok(p) => p,
                Err(e) => return failed(format!("cannot start the check process: {e}")),
            };
            // Drain the pipes while waiting: a chatty module must not block on a full pipe.
            let stdout = drain(process.stdout.take());
            let stderr = drain(process.stderr.take());
            let started = Instant::now();
            let status = loop {
                match process.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if started.elapsed() > timeout => {
                        let _ = process.kill();
                        let _ = process.wait();
                        break None;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => break None,
                }
            };
            let stdout = stdout.join().unwrap_or_default();
            let stderr = stderr.join().unwrap_or_default();
            let parsed = stdout
                .lines()
                .rev()
                .find_map(|line| serde_json::from_str::<CheckResult>(line).ok())
                .filter(|r| r.id == check.id);
            match (status, parsed) {
                (_, Some(result)) => result,
                (None, _) => failed(format!("the module hung: killed after {timeout:?}")),
                (Some(status), None) => failed(describe_exit(status, stderr.trim())),
            }
        })
        .collect()
}

/// Reads a child's pipe to the end on a thread.
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

fn describe_exit(status: std::process::ExitStatus, stderr: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match status.signal() {
        Some(11) => "the module crashed (SIGSEGV)".to_owned(),
        Some(6) => "the module aborted (SIGABRT)".to_owned(),
        Some(n) => format!("the check process died of signal {n}"),
        None => format!("the check process exited with {status} and no result"),
    };
    let last = stderr.lines().last().unwrap_or_default();
    if last.is_empty() {
        how
    } else {
        format!("{how}: {last}")
    }
}
