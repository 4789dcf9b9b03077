//! The PKCS#11 backend (crate `cryptoki`): the master key is a sensitive, non-extractable
//! AES-256 key on a token, and sealing is `CKM_AES_GCM` on the token (`spec/vault.md` §7;
//! the full profile is `spec/hsm.md`, issue 5). Sessions are pooled, one per concurrent
//! operation; the login is shared by the application's sessions.

use super::{Hsm, HsmError};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// Format byte of sealed blobs: `02 ‖ iv(12) ‖ ciphertext ‖ tag(16)`, CKM_AES_GCM on a token.
const SEALED_PKCS11: u8 = 2;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Where the master key is.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// The module (`.so`).
    pub module: PathBuf,
    /// The token label.
    pub token: String,
    /// The user PIN.
    pub pin: Zeroizing<String>,
    /// The master key's label.
    pub key_label: String,
}

/// A token holding the vault's master key.
pub struct Pkcs11Hsm {
    ctx: Pkcs11,
    slot: Slot,
    key_label: String,
    sessions: Mutex<Vec<Session>>,
    describe: String,
}

fn backend(what: &str) -> impl Fn(cryptoki::error::Error) -> HsmError + '_ {
    move |e| HsmError::Backend(format!("{what}: {e}"))
}

impl Pkcs11Hsm {
    /// Loads the module, finds the token by label and logs in.
    pub fn open(config: &Pkcs11Config) -> Result<Self, HsmError> {
        let ctx = Pkcs11::new(&config.module).map_err(backend("loading the PKCS#11 module"))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::CryptokiAlreadyInitialized,
                _,
            )) => {}
            Err(e) => return Err(backend("C_Initialize")(e)),
        }
        let slot = ctx
            .get_slots_with_token()
            .map_err(backend("listing slots"))?
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .is_ok_and(|t| t.label().trim_end() == config.token)
            })
            .ok_or_else(|| {
                HsmError::Backend(format!(
                    "no token labelled {:?} in {}",
                    config.token,
                    config.module.display()
                ))
            })?;
        let session = ctx
            .open_rw_session(slot)
            .map_err(backend("opening a session"))?;
        let pin = AuthPin::new(config.pin.as_str().into());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) => {}
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => {}
            Err(e) => return Err(backend("login")(e)),
        }
        Ok(Pkcs11Hsm {
            describe: format!(
                "pkcs11 (module {}, token {}, key {})",
                config.module.display(),
                config.token,
                config.key_label
            ),
            ctx,
            slot,
            key_label: config.key_label.clone(),
            sessions: Mutex::new(vec![session]),
        })
    }

    fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let pooled = self.sessions.lock().ok().and_then(|mut p| p.pop());
        let session = match pooled {
            Some(s) => s,
            None => self
                .ctx
                .open_rw_session(self.slot)
                .map_err(backend("opening a session"))?,
        };
        let out = f(&session);
        if let Ok(mut pool) = self.sessions.lock() {
            pool.push(session);
        }
        out
    }

    fn key_template(&self) -> Vec<Attribute> {
        vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(self.key_label.as_bytes().to_vec()),
        ]
    }

    fn find_key(&self, session: &Session) -> Result<Option<ObjectHandle>, HsmError> {
        let found = session
            .find_objects(&self.key_template())
            .map_err(backend("finding the master key"))?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            _ => Err(HsmError::Backend(format!(
                "more than one key labelled {:?}",
                self.key_label
            ))),
        }
    }

    fn key(&self, session: &Session) -> Result<ObjectHandle, HsmError> {
        self.find_key(session)?.ok_or_else(|| {
            HsmError::Backend(format!(
                "no master key labelled {:?} on the token (run coffer hsm init)",
                self.key_label
            ))
        })
    }

    /// Creates the master key on the token unless it exists: AES-256, token object, private,
    /// sensitive, not extractable, for encryption and decryption only. Returns whether it
    /// created one.
    pub fn init_key(&self) -> Result<bool, HsmError> {
        self.with_session(|session| {
            if self.find_key(session)?.is_some() {
                return Ok(false);
            }
            let mut template = self.key_template();
            template.remove(1); // CKA_KEY_TYPE is implied by the mechanism
            template.extend([
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
            ]);
            session
                .generate_key(&Mechanism::AesKeyGen, &template)
                .map_err(backend("generating the master key"))?;
            Ok(true)
        })
    }

    /// Reads the master key's value: must fail on any conforming token (for tests and checks).
    pub fn try_read_key_value(&self) -> Result<Vec<u8>, HsmError> {
        self.with_session(|session| {
            let key = self.key(session)?;
            let attrs = session
                .get_attributes(key, &[AttributeType::Value])
                .map_err(backend("reading CKA_VALUE"))?;
            match attrs.into_iter().next() {
                Some(Attribute::Value(v)) => Ok(v),
                _ => Err(HsmError::Backend("CKA_VALUE not returned".into())),
            }
        })
    }
}

impl Hsm for Pkcs11Hsm {
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, HsmError> {
        let mut iv = [0u8; IV_LEN];
        getrandom::fill(&mut iv).map_err(|e| HsmError::Backend(format!("OS random: {e}")))?;
        let sealed = self.with_session(|session| {
            let key = self.key(session)?;
            let params = GcmParams::new(&mut iv, aad, (TAG_LEN as u64 * 8).into())
                .map_err(backend("GCM parameters"))?;
            session
                .encrypt(&Mechanism::AesGcm(params), key, plaintext)
                .map_err(backend("C_Encrypt (AES-GCM)"))
        })?;
        let mut out = Vec::with_capacity(1 + IV_LEN + sealed.len());
        out.push(SEALED_PKCS11);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        if sealed.len() < 1 + IV_LEN + TAG_LEN || sealed[0] != SEALED_PKCS11 {
            return Err(HsmError::Malformed(format!(
                "{} bytes, not a PKCS#11-sealed blob",
                sealed.len()
            )));
        }
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&sealed[1..1 + IV_LEN]);
        self.with_session(|session| {
            let key = self.key(session)?;
            let params = GcmParams::new(&mut iv, aad, (TAG_LEN as u64 * 8).into())
                .map_err(backend("GCM parameters"))?;
            session
                .decrypt(&Mechanism::AesGcm(params), key, &sealed[1 + IV_LEN..])
                .map(Zeroizing::new)
                .map_err(|_| HsmError::Unseal)
        })
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// The default SoftHSM2 module path on Debian.
pub fn softhsm2_module() -> &'static Path {
    Path::new("/usr/lib/softhsm/libsofthsm2.so")
}
