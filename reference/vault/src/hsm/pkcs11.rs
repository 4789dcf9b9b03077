//! The PKCS#11 backend (crate `cryptoki`): the master key is a sensitive, non-extractable
//! AES-256 key on a token, and sealing is `CKM_AES_GCM` on the token (`spec/vault.md` §7,
//! `spec/hsm.md`). Sessions are pooled, one per concurrent
//! operation; the login is shared by the application's sessions.

use super::mechanisms::Offered;
use super::{Hsm, HsmError, Pkcs11Config};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::path::Path;
use std::sync::Mutex;
use zeroize::Zeroizing;

/// Format byte of sealed blobs: `02 ‖ iv(12) ‖ ciphertext ‖ tag(16)`, CKM_AES_GCM on a token.
const SEALED_PKCS11: u8 = 2;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A token found by label in a loaded module, without any login.
pub struct Token {
    pub(crate) ctx: Pkcs11,
    pub(crate) slot: Slot,
    label: String,
}

/// The `CKR_*` name of a return value (`EncryptedDataInvalid` → `CKR_ENCRYPTED_DATA_INVALID`).
pub(super) fn ckr_name(code: RvError) -> String {
    let mut name = String::from("CKR");
    for ch in format!("{code:?}").chars() {
        if ch.is_ascii_uppercase() {
            name.push('_');
        }
        name.push(ch.to_ascii_uppercase());
    }
    name
}

/// A module error in words: the `CKR_*` name when the module returned one.
pub(crate) fn describe_error(e: &cryptoki::error::Error) -> String {
    match rv(e) {
        Some(code) => ckr_name(code),
        None => e.to_string(),
    }
}

pub(crate) fn backend(what: &str) -> impl Fn(cryptoki::error::Error) -> HsmError + '_ {
    move |e| HsmError::Backend(format!("{what}: {}", describe_error(&e)))
}

/// The `CKR_*` value of a module error, if it is one.
pub(crate) fn rv(e: &cryptoki::error::Error) -> Option<cryptoki::error::RvError> {
    match e {
        cryptoki::error::Error::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

impl Token {
    /// Loads the module and finds the token by its label. A module is initialised once per
    /// process; later opens reuse it (`CKR_CRYPTOKI_ALREADY_INITIALIZED` is accepted).
    pub fn open(module: &Path, label: &str) -> Result<Self, HsmError> {
        let ctx = Pkcs11::new(module).map_err(backend("loading the PKCS#11 module"))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(e) if rv(&e) == Some(RvError::CryptokiAlreadyInitialized) => {}
            Err(e) => return Err(backend("C_Initialize")(e)),
        }
        let slot = ctx
            .get_slots_with_token()
            .map_err(backend("listing slots"))?
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .is_ok_and(|t| t.label().trim_end() == label)
            })
            .ok_or_else(|| {
                HsmError::Backend(format!(
                    "no token labelled {label:?} in {}",
                    module.display()
                ))
            })?;
        Ok(Token {
            ctx,
            slot,
            label: label.to_owned(),
        })
    }

    /// Opens a read-write session.
    pub fn session(&self) -> Result<Session, HsmError> {
        self.ctx
            .open_rw_session(self.slot)
            .map_err(backend("opening a session"))
    }

    /// Logs `session` in (the login then holds for all the application's sessions).
    pub fn login(&self, session: &Session, user: UserType, pin: &str) -> Result<(), HsmError> {
        match session.login(user, Some(&AuthPin::new(pin.into()))) {
            Ok(()) => Ok(()),
            Err(e) if rv(&e) == Some(RvError::UserAlreadyLoggedIn) => Ok(()),
            Err(e) => Err(backend("login")(e)),
        }
    }

    /// Opens the token of `config` and a session logged in as the user.
    pub fn open_logged_in(config: &Pkcs11Config) -> Result<(Self, Session), HsmError> {
        let token = Token::open(&config.module, &config.token)?;
        let session = token.session()?;
        token.login(&session, UserType::User, &config.pin)?;
        Ok((token, session))
    }

    /// The module and token as they name themselves (`C_GetInfo`, `C_GetTokenInfo`), for
    /// reports: "LIBRARY VERSION (MANUFACTURER); token MODEL firmware VERSION".
    pub fn identity(&self) -> Result<String, HsmError> {
        let info = self.ctx.get_library_info().map_err(backend("C_GetInfo"))?;
        let token = self
            .ctx
            .get_token_info(self.slot)
            .map_err(backend("C_GetTokenInfo"))?;
        let version = |v: cryptoki::types::Version| format!("{}.{}", v.major(), v.minor());
        Ok(format!(
            "{} {} ({}); token {} firmware {}",
            info.library_description().trim_end(),
            version(info.library_version()),
            info.manufacturer_id().trim_end(),
            token.model().trim_end(),
            version(token.firmware_version()),
        ))
    }

    /// The token's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The profile's mechanisms this token offers.
    pub fn offered(&self) -> Offered {
        Offered::detect(&self.ctx, self.slot)
    }
}

/// Finds the one object matching `template`: None if there is none, an error if several.
pub(crate) fn find_one(
    session: &Session,
    template: &[Attribute],
    what: &str,
) -> Result<Option<ObjectHandle>, HsmError> {
    let found = session
        .find_objects(template)
        .map_err(backend("finding objects"))?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(HsmError::Backend(format!(
            "more than one {what} on the token"
        ))),
    }
}

/// The template that finds a master key by its label.
pub(crate) fn master_key_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// What a key's attributes allow (`spec/hsm.md` §2). `None`: the token did not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KeyPolicy {
    /// `CKA_SENSITIVE`.
    pub sensitive: Option<bool>,
    /// `CKA_ALWAYS_SENSITIVE` (false for a key that was imported, by definition).
    pub always_sensitive: Option<bool>,
    /// `CKA_EXTRACTABLE`.
    pub extractable: Option<bool>,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: Option<bool>,
    /// `CKA_WRAP_WITH_TRUSTED`.
    pub wrap_with_trusted: Option<bool>,
}

impl KeyPolicy {
    /// Reads the policy attributes of `key`, one by one: an attribute the token does not
    /// have or will not show is `None`; any other module error is an error.
    pub fn read(session: &Session, key: ObjectHandle) -> Result<Self, HsmError> {
        let get = |t: AttributeType| -> Result<Option<bool>, HsmError> {
            match session.get_attributes(key, &[t]) {
                Ok(attrs) => Ok(attrs.into_iter().find_map(|a| match a {
                    Attribute::Sensitive(b)
                    | Attribute::AlwaysSensitive(b)
                    | Attribute::Extractable(b)
                    | Attribute::NeverExtractable(b)
                    | Attribute::WrapWithTrusted(b) => Some(b),
                    _ => None,
                })),
                Err(e)
                    if matches!(
                        rv(&e),
                        Some(RvError::AttributeTypeInvalid | RvError::AttributeSensitive)
                    ) =>
                {
                    Ok(None)
                }
                Err(e) => Err(backend("reading the key's attributes")(e)),
            }
        };
        Ok(KeyPolicy {
            sensitive: get(AttributeType::Sensitive)?,
            always_sensitive: get(AttributeType::AlwaysSensitive)?,
            extractable: get(AttributeType::Extractable)?,
            never_extractable: get(AttributeType::NeverExtractable)?,
            wrap_with_trusted: get(AttributeType::WrapWithTrusted)?,
        })
    }

    /// Refuses (`unsupported`) a master key labelled `label` with this policy if it has an
    /// [objection](KeyPolicy::objection).
    pub fn enforce(&self, label: &str) -> Result<(), HsmError> {
        match self.objection() {
            Some(why) => Err(HsmError::Policy(format!(
                "the master key {label:?} is refused: {why}"
            ))),
            None => Ok(()),
        }
    }

    /// Why a master key with this policy must not be used, if it must not: its value can be
    /// read, or it can be wrapped under a key nobody marked trusted.
    pub fn objection(&self) -> Option<&'static str> {
        if self.sensitive != Some(true) {
            return Some("it is not CKA_SENSITIVE, so its value can be read");
        }
        if self.extractable != Some(false) && self.wrap_with_trusted != Some(true) {
            return Some(
                "it is CKA_EXTRACTABLE without CKA_WRAP_WITH_TRUSTED, so any key could wrap it out",
            );
        }
        None
    }
}

/// How the master key may leave its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// Never (`CKA_EXTRACTABLE` false): a single-site vault.
    Never,
    /// Only wrapped under a transport key the security officer marked trusted
    /// (`CKA_EXTRACTABLE` and `CKA_WRAP_WITH_TRUSTED` true): a multi-site vault.
    ToTrustedOnly,
}

/// A token holding the vault's master key, logged in as the user.
pub struct Pkcs11Hsm {
    pub(crate) token: Token,
    key_label: String,
    sessions: Mutex<Vec<Session>>,
    /// The master key's handle once found (valid for all the application's sessions); found
    /// again if the token says it no longer is.
    key_handle: Mutex<Option<ObjectHandle>>,
    describe: String,
}

impl Pkcs11Hsm {
    /// Loads the module, finds the token by label and logs in. If the master key exists,
    /// refuses it unless its attributes keep it on the token ([`KeyPolicy::objection`]).
    pub fn open(config: &Pkcs11Config) -> Result<Self, HsmError> {
        let (token, session) = Token::open_logged_in(config)?;
        let hsm = Pkcs11Hsm {
            describe: format!(
                "pkcs11 (module {}, token {}, key {})",
                config.module.display(),
                config.token,
                config.key_label
            ),
            token,
            key_label: config.key_label.clone(),
            sessions: Mutex::new(vec![session]),
            key_handle: Mutex::new(None),
        };
        if let Some(policy) = hsm.master_key_policy()? {
            policy.enforce(&hsm.key_label)?;
        }
        Ok(hsm)
    }

    /// The master key's label.
    pub fn key_label(&self) -> &str {
        &self.key_label
    }

    /// Runs `f` on a pooled session (one per concurrent operation).
    pub(crate) fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let pooled = self.sessions.lock().ok().and_then(|mut p| p.pop());
        let session = match pooled {
            Some(s) => s,
            None => self.token.session()?,
        };
        let out = f(&session);
        if let Ok(mut pool) = self.sessions.lock() {
            pool.push(session);
        }
        out
    }

    pub(crate) fn find_key(&self, session: &Session) -> Result<Option<ObjectHandle>, HsmError> {
        find_one(
            session,
            &master_key_template(&self.key_label),
            &format!("key labelled {:?}", self.key_label),
        )
    }

    pub(crate) fn key(&self, session: &Session) -> Result<ObjectHandle, HsmError> {
        self.find_key(session)?.ok_or_else(|| {
            HsmError::Backend(format!(
                "no master key labelled {:?} on the token (run coffer hsm init)",
                self.key_label
            ))
        })
    }

    /// Runs `op` with the master key on a pooled session. The key's handle is found once and
    /// cached; when `op` fails, the key is looked up again and, if the handle changed (the key
    /// was replaced from another process), `op` runs once more. Tokens report a stale handle
    /// differently (SoftHSM2 `CKR_OBJECT_HANDLE_INVALID`, kryoptic `CKR_GENERAL_ERROR`), so
    /// any failure triggers the look-up; it costs one `C_FindObjects` on an error path.
    fn with_master_key<T>(
        &self,
        op: impl Fn(&Session, ObjectHandle) -> Result<T, cryptoki::error::Error>,
        error: impl Fn(cryptoki::error::Error) -> HsmError,
    ) -> Result<T, HsmError> {
        self.with_session(|session| {
            let cached = self.key_handle.lock().ok().and_then(|k| *k);
            let first_error = match cached {
                Some(key) => match op(session, key) {
                    Ok(out) => return Ok(out),
                    Err(e) => Some(e),
                },
                None => None,
            };
            let key = self.key(session)?;
            if let (Some(e), Some(old)) = (first_error, cached) {
                if old == key {
                    return Err(error(e));
                }
            }
            // A key found anew (first use, or replaced under us) must meet the policy too.
            KeyPolicy::read(session, key)?.enforce(&self.key_label)?;
            if let Ok(mut slot) = self.key_handle.lock() {
                *slot = Some(key);
            }
            op(session, key).map_err(&error)
        })
    }

    /// The attributes of the master key that decide whether it can leave the token, if the
    /// key exists.
    pub fn master_key_policy(&self) -> Result<Option<KeyPolicy>, HsmError> {
        self.with_session(|session| {
            self.find_key(session)?
                .map(|key| KeyPolicy::read(session, key))
                .transpose()
        })
    }

    /// The attributes of a master key: AES-256, token object, private, sensitive, for
    /// encryption and decryption only, and as `export` says.
    pub(crate) fn master_attributes(&self, export: Export) -> Vec<Attribute> {
        let exportable = export == Export::ToTrustedOnly;
        let mut template = master_key_template(&self.key_label);
        template.extend([
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(exportable),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
        ]);
        if exportable {
            template.push(Attribute::WrapWithTrusted(true));
        }
        template
    }

    /// Creates the master key on the token unless it exists. Returns whether it created one.
    pub fn init_key(&self, export: Export) -> Result<bool, HsmError> {
        self.with_session(|session| {
            if self.find_key(session)?.is_some() {
                return Ok(false);
            }
            let mut template = self.master_attributes(export);
            template.retain(|a| !matches!(a, Attribute::KeyType(_))); // implied by the mechanism
            template.push(Attribute::ValueLen(32.into()));
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
        let sealed = self.with_master_key(
            |session, key| {
                let mut iv = iv;
                let params = GcmParams::new(&mut iv, aad, (TAG_LEN as u64 * 8).into())?;
                session.encrypt(&Mechanism::AesGcm(params), key, plaintext)
            },
            backend("C_Encrypt (AES-GCM)"),
        )?;
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
        self.with_master_key(
            |session, key| {
                let mut iv = iv;
                let params = GcmParams::new(&mut iv, aad, (TAG_LEN as u64 * 8).into())?;
                session
                    .decrypt(&Mechanism::AesGcm(params), key, &sealed[1 + IV_LEN..])
                    .map(Zeroizing::new)
            },
            |e| match rv(&e) {
                // A failed tag check: CKR_ENCRYPTED_DATA_INVALID per PKCS#11; SoftHSM2 2.6
                // answers CKR_GENERAL_ERROR instead.
                Some(
                    RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::GeneralError,
                ) => HsmError::Unseal,
                _ => backend("C_Decrypt (AES-GCM)")(e),
            },
        )
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// The default SoftHSM2 module path on Debian.
pub fn softhsm2_module() -> &'static Path {
    Path::new("/usr/lib/softhsm/libsofthsm2.so")
}
