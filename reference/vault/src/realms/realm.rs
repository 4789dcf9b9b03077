//! One realm's side (`spec/realms.md` §3.2, §4 step 2, §6.2, §6.4): it stores its shares
//! sealed by its HSM, counts every evaluation durably before computing it, and releases its
//! secret share only to a client that proves it knows the unlock tag.

use super::client::{
    release_aad, release_key, seal, session_grant, unlock_proof, EvalAnswer, RealmShare,
};
use super::group::{base, decode_point, decode_scalar, dleq_prove, hash_to_scalar};
use super::public::{PublicPart, REG_ID_LEN, WRAPPED_LEN};
use super::store::{RealmGuess, RealmRecord, RealmStore};
use super::RealmError;
use crate::hsm::Hsm;
use crate::open_table::{Expiring, Full, OpenTable};
use crate::store::RecordState;
use crate::vault::randomness::Randomness;
use crate::vault::{KsfParams, VaultRng};
use curve25519_dalek::scalar::Scalar;
use rand_core::RngCore;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Open sessions (and, apart, grants) a realm keeps at most (each a few hundred bytes).
const MAX_SESSIONS: usize = 100_000;

/// How a realm runs.
#[derive(Debug, Clone)]
pub struct RealmConfig {
    /// The name this realm gives itself; registrations name it.
    pub realm_id: String,
    /// The largest guess limit a registration may ask for.
    pub max_limit: u32,
    /// Parameters shown in fake answers (those new registrations use).
    pub ksf: KsfParams,
    /// How long a phase-1 session waits for phase 2.
    pub session_lifetime: Duration,
    /// Open sessions (and, apart, grants) one tenant may hold at once, so that one tenant
    /// cannot fill the realm's tables for the others.
    pub sessions_per_tenant: usize,
}

impl RealmConfig {
    /// A realm named `realm_id` with the defaults: limit up to 100, Argon2id defaults, 300 s.
    pub fn new(realm_id: &str) -> Self {
        RealmConfig {
            realm_id: realm_id.to_owned(),
            max_limit: 100,
            ksf: KsfParams::DEFAULT,
            session_lifetime: Duration::from_secs(300),
            sessions_per_tenant: MAX_SESSIONS / 10,
        }
    }
}

/// What a realm holds for one user (`Realm::status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmStatus {
    /// The record's state, if the user ever registered here.
    pub state: Option<RecordState>,
    /// The registration the record belongs to.
    pub reg_id: Option<[u8; REG_ID_LEN]>,
    /// Its public part, encoded (`spec/realms.md` §3.1 step 8): commitments only, nothing
    /// that tests a password.
    pub public: Option<Vec<u8>>,
    /// Evaluations counted since the last unlock.
    pub guesses: u32,
    /// Evaluations allowed (0 without a record).
    pub limit: u32,
}

impl RealmStatus {
    /// Evaluations this realm still answers before it destroys the record (0 unless active).
    pub fn guesses_left(&self) -> u32 {
        if self.state == Some(RecordState::Active) {
            self.limit.saturating_sub(self.guesses)
        } else {
            0
        }
    }
}

/// A phase-1 session waiting for phase 2.
struct Session {
    tenant: String,
    user: String,
    reg_id: [u8; REG_ID_LEN],
    /// The record's public part as answered: phase 2 needs the record unchanged.
    public: Vec<u8>,
    expires: Instant,
}

impl Expiring for Session {
    fn tenant(&self) -> &str {
        &self.tenant
    }
    fn expires(&self) -> Instant {
        self.expires
    }
}

impl Expiring for Grant {
    fn tenant(&self) -> &str {
        &self.tenant
    }
    fn expires(&self) -> Instant {
        self.expires
    }
}

/// A full table as an error: `rate_limited`, with when to retry.
fn full(what: &str, why: Full) -> RealmError {
    let (whose, seconds) = match why {
        Full::Tenant(s) => ("this tenant", s),
        Full::Server(s) => ("this realm", s),
    };
    RealmError::Busy {
        message: format!("too many open {what} for {whose}; retry in {seconds} s"),
        retry_after: seconds,
    }
}

/// The secrets of one record, as unsealed.
pub(super) struct Secrets {
    pub(super) key_share: Scalar,
    secret_share: Scalar,
    tag: Zeroizing<[u8; 32]>,
}

impl Drop for Secrets {
    fn drop(&mut self) {
        self.key_share.zeroize();
        self.secret_share.zeroize();
    }
}

fn lp(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn record_aad(tenant: &str, user: &str, reg_id: &[u8; REG_ID_LEN]) -> Vec<u8> {
    [
        b"coffer-realms-v1 record".as_slice(),
        &lp(tenant.as_bytes()),
        &lp(user.as_bytes()),
        reg_id,
    ]
    .concat()
}

/// A realm: its store, its HSM and its open sessions.
pub struct Realm<St: RealmStore, H: Hsm> {
    store: St,
    hsm: H,
    config: RealmConfig,
    fake_seed: Zeroizing<Vec<u8>>,
    sessions: Mutex<OpenTable<Session>>,
    /// Deletion grants (`spec/realms.md` §7.2, §7.3): that of a session unlocked in phase 2, or the
    /// grant a registration answered, each usable once before it expires.
    grants: Mutex<OpenTable<Grant>>,
    /// Where sessions, grants, proofs and release nonces come from.
    randomness: Randomness,
}

/// Who may delete, until when.
struct Grant {
    tenant: String,
    user: String,
    /// The registration it may delete or replace.
    reg_id: [u8; REG_ID_LEN],
    expires: Instant,
}

impl<St: RealmStore, H: Hsm> Realm<St, H> {
    /// Opens a realm, drawing and sealing its fake seed on first start.
    pub fn open(store: St, hsm: H, config: RealmConfig) -> Result<Self, RealmError> {
        Self::open_with(store, hsm, config, Randomness::Os)
    }

    /// [`Realm::open`] drawing every random value (fake seed, sessions, DLEQ nonces, release
    /// nonces, grants) from `rng`, one at a time: for deterministic test vectors only.
    pub fn open_with_rng(
        store: St,
        hsm: H,
        config: RealmConfig,
        rng: Box<dyn VaultRng>,
    ) -> Result<Self, RealmError> {
        Self::open_with(store, hsm, config, Randomness::Fixed(Mutex::new(rng)))
    }

    fn open_with(
        store: St,
        hsm: H,
        config: RealmConfig,
        randomness: Randomness,
    ) -> Result<Self, RealmError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        randomness.with(|rng| rng.fill_bytes(&mut seed[..]));
        let sealed = hsm.seal(b"coffer-realms-v1 fake seed", &seed[..])?;
        let stored = store.init_fake_seed(&sealed)?;
        let fake_seed = hsm.unseal(b"coffer-realms-v1 fake seed", &stored)?;
        let per_tenant = config.sessions_per_tenant;
        Ok(Realm {
            store,
            hsm,
            config,
            fake_seed,
            sessions: Mutex::new(OpenTable::new(MAX_SESSIONS, per_tenant)),
            grants: Mutex::new(OpenTable::new(MAX_SESSIONS, per_tenant)),
            randomness,
        })
    }

    /// The store (for status pages and tests).
    pub fn store(&self) -> &St {
        &self.store
    }

    /// This realm's name.
    pub fn realm_id(&self) -> &str {
        &self.config.realm_id
    }

    /// Stores a registration share for `tenant`/`user`, replacing any earlier one. Returns a
    /// grant that deletes it within the session lifetime (a half-finished registration,
    /// `spec/realms.md` §7.3).
    /// An active record of another registration is replaced only with `grant`: the grant of
    /// a session this realm unlocked for it (a password change, after a recovery); without one the
    /// answer is `unauthorized`, so that a tenant token cannot overwrite other users'
    /// registrations. The same registration sent again is accepted (a retry).
    pub fn register(
        &self,
        tenant: &str,
        user: &str,
        share: &RealmShare,
        grant: Option<&[u8; 16]>,
    ) -> Result<[u8; 16], RealmError> {
        if share.realm_id != self.config.realm_id {
            return Err(RealmError::Malformed(format!(
                "a share for realm {:?} sent to realm {:?}",
                share.realm_id, self.config.realm_id
            )));
        }
        let public = &share.public;
        if share.index == 0 || share.index > public.n {
            return Err(RealmError::Malformed(format!("index {}", share.index)));
        }
        if public.limit == 0 || public.limit > self.config.max_limit {
            return Err(RealmError::Unsupported(format!(
                "limit {}: this realm allows 1 to {}",
                public.limit, self.config.max_limit
            )));
        }
        KsfParams::parse(&public.ksf).map_err(|e| RealmError::Unsupported(e.to_string()))?;
        let mut k = decode_scalar(&share.key_share[..], "key share")?;
        let mut s = decode_scalar(&share.secret_share[..], "secret share")?;
        let i = share.index as usize - 1;
        let matches = k * base() == public.key_shares[i] && s * base() == public.secret_shares[i];
        k.zeroize();
        s.zeroize();
        if !matches {
            return Err(RealmError::Malformed(
                "the shares do not match their public commitments".into(),
            ));
        }
        if let Some(existing) = self.store.get(tenant, user)? {
            let replacing =
                existing.state == RecordState::Active && existing.reg_id != public.reg_id;
            if replacing && !self.take_grant(grant, tenant, user, &existing.reg_id)? {
                return Err(RealmError::Unauthorized(
                    "this user has an active registration: replacing it needs a session unlocked with its password".into(),
                ));
            }
        }
        let secrets = Zeroizing::new(
            [
                &share.key_share[..],
                &share.secret_share[..],
                &share.tag[..],
            ]
            .concat(),
        );
        let sealed = self
            .hsm
            .seal(&record_aad(tenant, user, &public.reg_id), &secrets)?;
        self.store.put(&RealmRecord {
            tenant: tenant.to_owned(),
            user: user.to_owned(),
            reg_id: public.reg_id,
            public: public.encode(),
            index: share.index,
            sealed: Some(sealed),
            guesses: 0,
            limit: public.limit,
            state: RecordState::Active,
        })?;
        let mut grant = [0u8; 16];
        self.randomness.with(|rng| rng.fill_bytes(&mut grant));
        self.add_grant(grant, tenant, user, &public.reg_id)?;
        Ok(grant)
    }

    /// Uses up `grant` if it is valid for this tenant, user and registration.
    fn take_grant(
        &self,
        grant: Option<&[u8; 16]>,
        tenant: &str,
        user: &str,
        reg_id: &[u8; REG_ID_LEN],
    ) -> Result<bool, RealmError> {
        let Some(grant) = grant else {
            return Ok(false);
        };
        let taken = self
            .grants
            .lock()
            .map_err(|_| RealmError::Internal("grant lock poisoned".into()))?
            .take(grant);
        Ok(taken.is_some_and(|g| {
            g.tenant == tenant
                && g.user == user
                && g.reg_id == *reg_id
                && g.expires > Instant::now()
        }))
    }

    fn add_grant(
        &self,
        id: [u8; 16],
        tenant: &str,
        user: &str,
        reg_id: &[u8; REG_ID_LEN],
    ) -> Result<(), RealmError> {
        let mut grants = self
            .grants
            .lock()
            .map_err(|_| RealmError::Internal("grant lock poisoned".into()))?;
        let now = Instant::now();
        grants
            .room_for(tenant, now)
            .map_err(|why| full("grants", why))?;
        grants.insert(
            id,
            Grant {
                tenant: tenant.to_owned(),
                user: user.to_owned(),
                reg_id: *reg_id,
                expires: now + self.config.session_lifetime,
            },
        );
        Ok(())
    }

    pub(super) fn unseal(&self, record: &RealmRecord) -> Result<Secrets, RealmError> {
        let sealed = record
            .sealed
            .as_ref()
            .ok_or_else(|| RealmError::Locked("the record's shares are erased".into()))?;
        let plain = self.hsm.unseal(
            &record_aad(&record.tenant, &record.user, &record.reg_id),
            sealed,
        )?;
        if plain.len() != 96 {
            return Err(RealmError::Internal(
                "sealed shares of the wrong size".into(),
            ));
        }
        let mut tag = Zeroizing::new([0u8; 32]);
        tag.copy_from_slice(&plain[64..]);
        Ok(Secrets {
            key_share: decode_scalar(&plain[..32], "stored key share")?,
            secret_share: decode_scalar(&plain[32..64], "stored secret share")?,
            tag,
        })
    }

    fn room_for_a_session(&self, tenant: &str) -> Result<(), RealmError> {
        self.sessions
            .lock()
            .map_err(|_| RealmError::Internal("session lock poisoned".into()))?
            .room_for(tenant, Instant::now())
            .map_err(|why| full("sessions", why))
    }

    fn open_session(&self, session: Session) -> Result<[u8; 16], RealmError> {
        let mut id = [0u8; 16];
        self.randomness.with(|rng| rng.fill_bytes(&mut id));
        // Room was made before the guess was counted (room_for_a_session); a burst of
        // concurrent evaluations may pass the cap by at most the number of workers.
        self.sessions
            .lock()
            .map_err(|_| RealmError::Internal("session lock poisoned".into()))?
            .insert(id, session);
        Ok(id)
    }

    /// What this realm holds for `user`, uncounted (`spec/realms.md` §12): the state, the
    /// guesses counted since the last unlock and the limit of its record, if it has one.
    pub fn status(&self, tenant: &str, user: &str) -> Result<RealmStatus, RealmError> {
        Ok(match self.store.get(tenant, user)? {
            Some(r) => RealmStatus {
                state: Some(r.state),
                reg_id: Some(r.reg_id),
                public: Some(r.public),
                guesses: r.guesses,
                limit: r.limit,
            },
            None => RealmStatus {
                state: None,
                reg_id: None,
                public: None,
                guesses: 0,
                limit: 0,
            },
        })
    }

    /// The user of `tenant` whose open phase-1 session `id` is, if it is known.
    pub fn session_user(&self, tenant: &str, id: &[u8; 16]) -> Option<String> {
        let sessions = self.sessions.lock().ok()?;
        sessions
            .peek(id)
            .filter(|s| s.tenant == tenant)
            .map(|s| s.user.clone())
    }

    /// Whether the store and the HSM answer (`/readyz`): a read of the store, and a seal
    /// opened again by the HSM.
    pub fn ready(&self) -> Result<(), RealmError> {
        self.store.get("", "")?;
        let sealed = self.hsm.seal(b"coffer-realms-v1 ready", b"")?;
        self.hsm.unseal(b"coffer-realms-v1 ready", &sealed)?;
        Ok(())
    }

    /// Phase 1 (`spec/realms.md` §4 step 2): counts the evaluation durably, then evaluates
    /// `M` with this realm's key share and proves it. Unknown, deleted and destroyed users get
    /// a fake answer.
    pub fn evaluate(
        &self,
        tenant: &str,
        user: &str,
        blinded: &[u8],
    ) -> Result<EvalAnswer, RealmError> {
        let m = decode_point(blinded, "blinded element")?;
        let expires = Instant::now() + self.config.session_lifetime;
        // Room for the session is made before the guess is counted, so that a full table
        // never costs a user a guess it cannot use.
        self.room_for_a_session(tenant)?;
        let record = match self.store.count_guess(tenant, user)? {
            RealmGuess::Counted(record) => record,
            RealmGuess::Destroyed | RealmGuess::Absent => return self.fake_answer(user, &m),
        };
        let secrets = self.unseal(&record)?;
        let public = PublicPart::decode(&record.public)?;
        let p = public.key_shares[record.index as usize - 1];
        let z = secrets.key_share * m;
        let proof = self
            .randomness
            .with(|rng| dleq_prove(&secrets.key_share, &p, &m, &z, rng));
        let session = self.open_session(Session {
            tenant: tenant.to_owned(),
            user: user.to_owned(),
            reg_id: record.reg_id,
            public: record.public.clone(),
            expires,
        })?;
        Ok(EvalAnswer {
            public: record.public,
            index: record.index,
            evaluation: z.compress().to_bytes(),
            proof,
            session,
        })
    }

    /// The fake answer of `spec/realms.md` §6.4: the same registration for every request
    /// about `user`, shaped like a real 1-of-1 answer, counted nowhere.
    fn fake_answer(
        &self,
        user: &str,
        m: &curve25519_dalek::ristretto::RistrettoPoint,
    ) -> Result<EvalAnswer, RealmError> {
        let mut seed = super::client::hmac(
            &self.fake_seed,
            &[b"coffer-realms-v1 fake", &lp(user.as_bytes())],
        );
        let derive = |label: &[u8]| hash_to_scalar(&[seed.as_slice(), label].concat());
        let bytes = |label: &[u8], len: usize| super::group::expand_message_xmd(&seed, label, len);
        let mut k = derive(b"k");
        let mut s = derive(b"s");
        let mut reg_id = [0u8; REG_ID_LEN];
        reg_id.copy_from_slice(&bytes(b"reg_id", REG_ID_LEN));
        let mut check = [0u8; 32];
        check.copy_from_slice(&bytes(b"check", 32));
        let public = PublicPart {
            reg_id,
            t: 1,
            n: 1,
            ksf: self.config.ksf.name(),
            limit: self.config.max_limit.min(10),
            key_shares: vec![k * base()],
            secret_shares: vec![s * base()],
            check,
            wrapped: bytes(b"wrapped", WRAPPED_LEN),
        };
        let z = k * m;
        let proof = self
            .randomness
            .with(|rng| dleq_prove(&k, &public.key_shares[0], m, &z, rng));
        k.zeroize();
        s.zeroize();
        seed.zeroize();
        // A fake's session is never kept: phase 2 answers an unknown session as it answers a
        // wrong proof, and fakes fill no table.
        let mut session = [0u8; 16];
        self.randomness.with(|rng| rng.fill_bytes(&mut session));
        Ok(EvalAnswer {
            public: public.encode(),
            index: 1,
            evaluation: z.compress().to_bytes(),
            proof,
            session,
        })
    }

    /// Phase 2 (`spec/realms.md` §6.2): checks the proof of the tag for a phase-1 session;
    /// on success resets the count durably and releases the secret share, sealed to the tag.
    pub fn unlock(
        &self,
        tenant: &str,
        session: &[u8; 16],
        proof: &[u8],
    ) -> Result<Vec<u8>, RealmError> {
        let taken = self
            .sessions
            .lock()
            .map_err(|_| RealmError::Internal("session lock poisoned".into()))?
            // Another tenant's unlock leaves the session to its own tenant's client.
            .take_for(session, tenant);
        let Some(taken) = taken else {
            return Err(RealmError::WrongPassword);
        };
        if taken.expires <= Instant::now() {
            return Err(RealmError::WrongPassword);
        }
        let reg_id = taken.reg_id;
        let record = self
            .store
            .get(tenant, &taken.user)?
            .filter(|r| {
                r.state == RecordState::Active && r.reg_id == reg_id && r.public == taken.public
            })
            .ok_or_else(|| {
                RealmError::Locked("the registration was destroyed or replaced".into())
            })?;
        let secrets = self.unseal(&record)?;
        let expected = unlock_proof(&secrets.tag, session);
        if !bool::from(expected.as_slice().ct_eq(proof)) {
            self.store.destroy_if_spent(tenant, &taken.user, &reg_id)?;
            return Err(RealmError::WrongPassword);
        }
        if !self.store.reset(tenant, &taken.user, &reg_id)? {
            return Err(RealmError::Locked(
                "the registration was destroyed or replaced".into(),
            ));
        }
        // The reset is done; a full grant table only costs the caller the grant.
        if self
            .add_grant(
                session_grant(&secrets.tag, session),
                tenant,
                &taken.user,
                &reg_id,
            )
            .is_err()
        {
            tracing::warn!("grant table full: this unlock grants no deletion");
        }
        let key = release_key(&secrets.tag, session);
        self.randomness.with(|rng| {
            seal(
                &key,
                &release_aad(session),
                secrets.secret_share.as_bytes(),
                rng,
            )
        })
    }

    /// Deletes the user's record (its shares and tag erased) with a grant: that of a session
    /// this realm unlocked, or the grant its registration answered, within the session lifetime
    /// and once. Returns whether there was a record. Without a valid grant: `unauthorized`,
    /// so that a tenant token alone deletes nothing (`spec/realms.md` §7.2).
    pub fn delete(&self, tenant: &str, user: &str, grant: &[u8; 16]) -> Result<bool, RealmError> {
        let refused = || {
            RealmError::Unauthorized(
                "deleting needs a session unlocked with the password, or the registration's grant"
                    .into(),
            )
        };
        let Some(record) = self.store.get(tenant, user)? else {
            return Err(refused());
        };
        if !self.take_grant(Some(grant), tenant, user, &record.reg_id)? {
            return Err(refused());
        }
        Ok(self.store.delete(tenant, user)?)
    }
}
