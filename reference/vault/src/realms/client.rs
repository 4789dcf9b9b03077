//! The client's side of the realms (`spec/realms.md` §3.1, §4, §6.1, §6.3): registration,
//! the evaluate phase with its verification and combination, and the unlock phase.

use super::group::{
    base, decode_point, decode_scalar, dleq_verify, hash_to_group, random_scalar, PROOF_LEN,
};
use super::public::{PublicPart, REG_ID_LEN, WRAPPED_LEN};
use super::shamir::{lagrange_at_zero, split};
use super::{RealmError, RealmsFailure};
use crate::key::RootKey;
use crate::vault::{KsfParams, VaultRng};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

type HmacSha256 = Hmac<Sha256>;

/// Largest user id.
const MAX_USER: usize = 256;
/// Largest realm id.
const MAX_REALM_ID: usize = 64;
/// Most realms in one registration: the public part of 64 realms fits the 8 KiB request
/// body with room to spare (spec/realms.md §1).
pub const MAX_REALMS: usize = 64;
/// Guess limits a registration may ask for.
const LIMITS: std::ops::RangeInclusive<u32> = 1..=1000;

fn internal(e: impl std::fmt::Display) -> RealmError {
    RealmError::Internal(e.to_string())
}

pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut out[..])
        .expect("32 bytes is a valid HKDF length");
    out
}

fn lp(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn aead_key(key: &[u8; 32]) -> Result<LessSafeKey, RealmError> {
    Ok(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key).map_err(|_| internal("AES key"))?,
    ))
}

/// `nonce ‖ AES-256-GCM(key, nonce, plaintext, aad) ‖ tag`.
pub(crate) fn seal(
    key: &[u8; 32],
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut dyn VaultRng,
) -> Result<Vec<u8>, RealmError> {
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    let mut sealed = plaintext.to_vec();
    aead_key(key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut sealed,
        )
        .map_err(|_| internal("AES-GCM seal"))?;
    Ok([nonce.as_slice(), &sealed].concat())
}

/// Opens [`seal`]; `None` when it does not authenticate.
pub(crate) fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < 12 + 16 {
        return None;
    }
    let nonce = Nonce::try_assume_unique_for_key(&sealed[..12]).ok()?;
    let mut buffer = Zeroizing::new(sealed[12..].to_vec());
    let len = aead_key(key)
        .ok()?
        .open_in_place(nonce, Aad::from(aad), &mut buffer)
        .ok()?
        .len();
    buffer.truncate(len);
    Some(buffer)
}

/// `access = Argon2id(password, salt(user))` (§3.1 step 2).
fn stretch(
    user: &str,
    password: &[u8],
    ksf: &KsfParams,
) -> Result<Zeroizing<[u8; 32]>, RealmError> {
    let salt = Sha256::new()
        .chain_update(b"coffer-realms-v1 salt")
        .chain_update(lp(user.as_bytes()))
        .finalize();
    let mut access = Zeroizing::new([0u8; 32]);
    ksf.argon2()
        .map_err(|e| RealmError::Unsupported(e.to_string()))?
        .hash_password_into(password, &salt[..16], &mut access[..])
        .map_err(internal)?;
    Ok(access)
}

/// `y = SHA-512(lp(access) ‖ lp(N) ‖ "Finalize")` (RFC 9497's Finalize layout).
fn oprf_output(access: &[u8; 32], unblinded: &RistrettoPoint) -> Zeroizing<[u8; 64]> {
    let digest = Sha512::new()
        .chain_update(lp(access))
        .chain_update(lp(unblinded.compress().as_bytes()))
        .chain_update(b"Finalize")
        .finalize();
    let mut y = Zeroizing::new([0u8; 64]);
    y.copy_from_slice(&digest);
    y
}

/// The keys that come from `y`.
struct Unlock {
    key: Zeroizing<[u8; 32]>,
}

impl Unlock {
    fn new(reg_id: &[u8; REG_ID_LEN], y: &[u8; 64]) -> Self {
        Unlock {
            key: hkdf(reg_id, y, b"coffer-realms-v1 unlock"),
        }
    }

    fn check(&self) -> [u8; 32] {
        hmac(&self.key[..], &[b"coffer-realms-v1 check"])
    }

    fn tag(&self, index: u8, realm_id: &str) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(hmac(
            &self.key[..],
            &[b"coffer-realms-v1 tag", &[index], &lp(realm_id.as_bytes())],
        ))
    }
}

fn wrap_key(reg_id: &[u8; REG_ID_LEN], y: &[u8; 64], s: &Scalar) -> Zeroizing<[u8; 32]> {
    let ikm = Zeroizing::new([y.as_slice(), s.as_bytes()].concat());
    hkdf(reg_id, &ikm, b"coffer-realms-v1 wrap")
}

fn wrap_aad(reg_id: &[u8; REG_ID_LEN]) -> Vec<u8> {
    [b"coffer-realms-v1 K".as_slice(), reg_id].concat()
}

/// The proof a realm checks in phase 2: `HMAC(tag_i, "coffer-realms-v1 unlock" ‖ session)`.
pub(crate) fn unlock_proof(tag: &[u8; 32], session: &[u8; 16]) -> [u8; 32] {
    hmac(tag, &[b"coffer-realms-v1 unlock", session])
}

/// The grant of an unlocked session (`spec/realms.md` §7.2): it deletes or replaces the
/// record, and only the realm and a client that knows the tag can compute it.
pub(crate) fn session_grant(tag: &[u8; 32], session: &[u8; 16]) -> [u8; 16] {
    let mac = hmac(tag, &[b"coffer-realms-v1 grant", session]);
    let mut grant = [0u8; 16];
    grant.copy_from_slice(&mac[..16]);
    grant
}

/// The key a realm seals its secret share under in phase 2.
pub(crate) fn release_key(tag: &[u8; 32], session: &[u8; 16]) -> Zeroizing<[u8; 32]> {
    hkdf(session, tag, b"coffer-realms-v1 release")
}

/// The associated data of a release.
pub(crate) fn release_aad(session: &[u8; 16]) -> Vec<u8> {
    [b"coffer-realms-v1 release".as_slice(), session].concat()
}

/// What one realm receives at registration (`spec/realms.md` §3.1 step 9). Secret fields are
/// zeroized on drop.
pub struct RealmShare {
    /// The realm's name, as the client knows it.
    pub realm_id: String,
    /// Its Shamir index, 1..=n.
    pub index: u8,
    /// The public part, the same for all realms.
    pub public: PublicPart,
    /// `k_i`.
    pub key_share: Zeroizing<[u8; 32]>,
    /// `s_i`.
    pub secret_share: Zeroizing<[u8; 32]>,
    /// `tag_i`.
    pub tag: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for RealmShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealmShare")
            .field("realm_id", &self.realm_id)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// The client's configuration of a registration: which realms (in index order), how many
/// recover, how many guesses each allows, and the password-stretching parameters.
#[derive(Debug, Clone)]
pub struct RealmSet {
    /// Realm ids; realm `i` (1-based) gets Shamir index `i`.
    pub realm_ids: Vec<String>,
    /// How many realms recover K.
    pub threshold: u8,
    /// Guesses each realm allows between unlocks.
    pub limit: u32,
    /// Argon2id parameters.
    pub ksf: KsfParams,
}

/// Splits a registration of `root` under `password` over the realms of `set`, `t` of
/// which will recover it.
pub fn register(
    user: &str,
    password: &[u8],
    root: &RootKey,
    set: &RealmSet,
    rng: &mut dyn VaultRng,
) -> Result<Vec<RealmShare>, RealmError> {
    let (realm_ids, t, limit, ksf) = (&set.realm_ids, set.threshold, set.limit, &set.ksf);
    if realm_ids.len() > MAX_REALMS {
        return Err(RealmError::Unsupported(format!(
            "at most {MAX_REALMS} realms"
        )));
    }
    let n = realm_ids.len() as u8;
    if t == 0 || n == 0 || t > n {
        return Err(RealmError::Unsupported(format!(
            "threshold {t} of {n} realms: needs 1 ≤ t ≤ n"
        )));
    }
    if !LIMITS.contains(&limit) {
        return Err(RealmError::Unsupported(format!("limit {limit}: 1 to 1000")));
    }
    if user.is_empty() || user.len() > MAX_USER {
        return Err(RealmError::Malformed("user id: 1 to 256 bytes".into()));
    }
    for (i, id) in realm_ids.iter().enumerate() {
        if id.is_empty() || id.len() > MAX_REALM_ID || !id.is_ascii() {
            return Err(RealmError::Malformed(format!(
                "realm id {i}: 1 to 64 ASCII bytes"
            )));
        }
        if realm_ids[..i].contains(id) {
            return Err(RealmError::Malformed(format!("realm {id} is listed twice")));
        }
    }
    let mut reg_id = [0u8; REG_ID_LEN];
    rng.fill_bytes(&mut reg_id);
    let access = stretch(user, password, ksf)?;

    let mut k = random_scalar(rng);
    let mut s = random_scalar(rng);
    let key_shares = Zeroizing::new(split(&k, t, n, rng));
    let secret_shares = Zeroizing::new(split(&s, t, n, rng));
    let mut evaluated = k * hash_to_group(&access[..]);
    let y = oprf_output(&access, &evaluated);
    evaluated.zeroize();
    let unlock = Unlock::new(&reg_id, &y);
    let wrapped = seal(
        &wrap_key(&reg_id, &y, &s),
        &wrap_aad(&reg_id),
        root.as_bytes(),
        rng,
    )?;
    k.zeroize();
    s.zeroize();

    let public = PublicPart {
        reg_id,
        t,
        n,
        ksf: ksf.name(),
        limit,
        key_shares: key_shares.iter().map(|k| k * base()).collect(),
        secret_shares: secret_shares.iter().map(|s| s * base()).collect(),
        check: unlock.check(),
        wrapped,
    };
    Ok(realm_ids
        .iter()
        .enumerate()
        .map(|(i, realm_id)| {
            let index = (i + 1) as u8;
            RealmShare {
                realm_id: realm_id.clone(),
                index,
                public: public.clone(),
                key_share: Zeroizing::new(key_shares[i].to_bytes()),
                secret_share: Zeroizing::new(secret_shares[i].to_bytes()),
                tag: unlock.tag(index, realm_id),
            }
        })
        .collect())
}

/// A realm's phase-1 answer (`spec/realms.md` §4 step 2).
#[derive(Debug, Clone)]
pub struct EvalAnswer {
    /// The public part, encoded.
    pub public: Vec<u8>,
    /// The realm's index.
    pub index: u8,
    /// `Z_i = k_i · M`.
    pub evaluation: [u8; 32],
    /// DLEQ proof.
    pub proof: [u8; PROOF_LEN],
    /// The realm's session for phase 2.
    pub session: [u8; 16],
}

/// Phase 1, before any realm has answered.
pub struct Recovery {
    user: String,
    ksf: String,
    threshold: u8,
    realms: u8,
    /// The configured realm ids: realm `i` must answer with index `i` (1-based).
    realm_ids: Vec<String>,
    access: Zeroizing<[u8; 32]>,
    blind: Scalar,
    blinded: RistrettoPoint,
}

impl Drop for Recovery {
    fn drop(&mut self) {
        self.blind.zeroize();
    }
}

/// One verified answer, kept for phase 2.
struct Verified {
    realm: String,
    index: u8,
    evaluation: RistrettoPoint,
    session: [u8; 16],
}

/// Phase 2: the requests to send, and what to check in the answers.
pub struct Unlocking {
    public: PublicPart,
    y: Zeroizing<[u8; 64]>,
    requests: Vec<UnlockRequest>,
    tags: BTreeMap<String, (u8, Zeroizing<[u8; 32]>)>,
    problems: Vec<(String, String)>,
}

/// What to send one realm in phase 2.
#[derive(Debug, Clone)]
pub struct UnlockRequest {
    /// The realm.
    pub realm: String,
    /// Its session from phase 1.
    pub session: [u8; 16],
    /// `HMAC(tag_i, "coffer-realms-v1 unlock" ‖ session)`.
    pub proof: [u8; 32],
    /// What deletes or replaces the record at this realm once it has unlocked (§7.2).
    pub grant: [u8; 16],
}

fn named(problems: &[(String, String)]) -> String {
    problems
        .iter()
        .map(|(realm, what)| format!("{realm}: {what}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Recovery {
    /// Stretches the password and blinds it: `M`, to send to the realms of `set`.
    pub fn start(
        user: &str,
        password: &[u8],
        set: &RealmSet,
        rng: &mut dyn VaultRng,
    ) -> Result<(Self, [u8; 32]), RealmError> {
        let (ksf, threshold) = (&set.ksf, set.threshold);
        if set.realm_ids.len() > MAX_REALMS {
            return Err(RealmError::Unsupported(format!(
                "at most {MAX_REALMS} realms"
            )));
        }
        for (i, id) in set.realm_ids.iter().enumerate() {
            if set.realm_ids[..i].contains(id) {
                return Err(RealmError::Malformed(format!("realm {id} is listed twice")));
            }
        }
        let realms = set.realm_ids.len() as u8;
        if threshold == 0 || realms == 0 || threshold > realms {
            return Err(RealmError::Unsupported(format!(
                "threshold {threshold} of {realms} realms: needs 1 ≤ t ≤ n"
            )));
        }
        let access = stretch(user, password, ksf)?;
        let blind = random_scalar(rng);
        let blinded = blind * hash_to_group(&access[..]);
        let message = blinded.compress().to_bytes();
        Ok((
            Recovery {
                user: user.to_owned(),
                ksf: ksf.name(),
                threshold,
                realms,
                realm_ids: set.realm_ids.clone(),
                access,
                blind,
                blinded,
            },
            message,
        ))
    }

    /// The user this recovery is for.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Verifies the realms' answers (each `Err` is a realm that did not answer, with why),
    /// combines `t` of them and checks the password. Every realm that answered wrongly is
    /// named in the error, or in [`Unlocking::problems`] when recovery goes on without it.
    pub fn combine(
        self,
        answers: Vec<(String, Result<EvalAnswer, String>)>,
    ) -> Result<Unlocking, RealmsFailure> {
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut silent = 0usize;
        // commitment -> (public part, verified answers)
        let mut groups: BTreeMap<[u8; 32], (PublicPart, Vec<Verified>)> = BTreeMap::new();
        for (realm, answer) in answers {
            let answer = match answer {
                Ok(answer) => answer,
                Err(why) => {
                    silent += 1;
                    problems.push((realm, why));
                    continue;
                }
            };
            let public = match PublicPart::decode(&answer.public) {
                Ok(public) => public,
                Err(e) => {
                    problems.push((realm, format!("wrong answer: {e}")));
                    continue;
                }
            };
            if public.t != self.threshold || public.n != self.realms {
                // Another registration's shape, or a fake answer (spec/realms.md §6.4).
                continue;
            }
            if public.ksf != self.ksf {
                problems.push((
                    realm,
                    format!("registered with other parameters ({})", public.ksf),
                ));
                continue;
            }
            let commitment = public.commitment();
            let (public, verified) = groups
                .entry(commitment)
                .or_insert_with(|| (public, Vec::new()));
            let index = answer.index;
            // Realm i of the configuration is index i (spec/realms.md §1): a realm that
            // answers with another's index (forwarding that realm's answer) is refused.
            let position = self.realm_ids.iter().position(|id| *id == realm);
            if position.map(|p| p + 1) != Some(usize::from(index))
                || verified.iter().any(|v| v.index == index)
            {
                problems.push((realm, format!("wrong answer: index {index}")));
                continue;
            }
            let evaluation = match decode_point(&answer.evaluation, "evaluation") {
                Ok(z) => z,
                Err(e) => {
                    problems.push((realm, format!("wrong evaluation: {e}")));
                    continue;
                }
            };
            let p = &public.key_shares[index as usize - 1];
            if !dleq_verify(p, &self.blinded, &evaluation, &answer.proof) {
                problems.push((realm, "wrong evaluation: the proof does not verify".into()));
                continue;
            }
            verified.push(Verified {
                realm,
                index,
                evaluation,
                session: answer.session,
            });
        }
        let largest = groups.values().map(|(_, v)| v.len()).max().unwrap_or(0);
        let best = groups
            .into_values()
            .filter(|(public, verified)| verified.len() >= public.t as usize)
            .max_by(|(a, va), (b, vb)| va.len().cmp(&vb.len()).then(a.reg_id.cmp(&b.reg_id)));
        let Some((public, verified)) = best else {
            let answered = self.realm_ids.len().saturating_sub(silent);
            if answered < usize::from(self.threshold) {
                let error = RealmError::Unavailable(named(&problems));
                return Err(RealmsFailure::naming(error, problems));
            }
            if largest == 0 && problems.len() == silent {
                // Every answer was a fake or another registration's shape.
                return Err(RealmsFailure::naming(RealmError::NoRecord, problems));
            }
            let mut why = format!(
                "{largest} of the {} realms needed hold this registration",
                self.threshold
            );
            if !problems.is_empty() {
                why.push_str(&format!("; {}", named(&problems)));
            }
            return Err(RealmsFailure::naming(RealmError::Locked(why), problems));
        };
        let chosen = &verified[..public.t as usize];
        let xs: Vec<u8> = chosen.iter().map(|v| v.index).collect();
        let mut combined: RistrettoPoint = lagrange_at_zero(&xs)
            .iter()
            .zip(chosen)
            .map(|(lambda, v)| lambda * v.evaluation)
            .sum();
        let mut unblinded = self.blind.invert() * combined;
        combined.zeroize();
        let y = oprf_output(&self.access, &unblinded);
        unblinded.zeroize();
        let unlock = Unlock::new(&public.reg_id, &y);
        if !bool::from(unlock.check().ct_eq(&public.check)) {
            return Err(RealmsFailure::naming(RealmError::WrongPassword, problems));
        }
        let mut requests = Vec::new();
        let mut tags = BTreeMap::new();
        for v in &verified {
            let tag = unlock.tag(v.index, &v.realm);
            requests.push(UnlockRequest {
                realm: v.realm.clone(),
                session: v.session,
                proof: unlock_proof(&tag, &v.session),
                grant: session_grant(&tag, &v.session),
            });
            tags.insert(v.realm.clone(), (v.index, tag));
        }
        Ok(Unlocking {
            public,
            y,
            requests,
            tags,
            problems,
        })
    }
}

impl Unlocking {
    /// The phase-2 requests, one per verified realm.
    pub fn requests(&self) -> &[UnlockRequest] {
        &self.requests
    }

    /// Realms that did not answer or answered wrongly in phase 1, with why.
    pub fn problems(&self) -> &[(String, String)] {
        &self.problems
    }

    /// Opens the realms' releases (each `Err` a realm that refused or did not answer),
    /// combines `t` secret shares and opens K. Returns K with every realm that failed in
    /// either phase although recovery succeeded without it (named, with why).
    #[allow(clippy::type_complexity)]
    pub fn finish(
        mut self,
        releases: Vec<(String, Result<Vec<u8>, String>)>,
    ) -> Result<(RootKey, Vec<(String, String)>), RealmsFailure> {
        let mut shares: Vec<(u8, Scalar)> = Vec::new();
        let mut sessions = BTreeMap::new();
        for request in &self.requests {
            sessions.insert(request.realm.clone(), request.session);
        }
        for (realm, release) in releases {
            let (Some((index, tag)), Some(session)) = (self.tags.get(&realm), sessions.get(&realm))
            else {
                self.problems
                    .push((realm, "answered phase 2 unasked".into()));
                continue;
            };
            let release = match release {
                Ok(release) => release,
                Err(why) => {
                    self.problems.push((realm, why));
                    continue;
                }
            };
            let key = release_key(tag, session);
            let Some(plain) = open(&key, &release_aad(session), &release) else {
                self.problems
                    .push((realm, "wrong release: it does not open".into()));
                continue;
            };
            let share = match decode_scalar(&plain, "secret share") {
                Ok(share) if share * base() == self.public.secret_shares[*index as usize - 1] => {
                    share
                }
                _ => {
                    self.problems.push((
                        realm,
                        "wrong release: the share does not match its commitment".into(),
                    ));
                    continue;
                }
            };
            shares.push((*index, share));
        }
        let t = self.public.t as usize;
        if shares.len() < t {
            let error = RealmError::Locked(format!(
                "{} of {t} realms released their share: {}",
                shares.len(),
                named(&self.problems)
            ));
            return Err(RealmsFailure::naming(
                error,
                std::mem::take(&mut self.problems),
            ));
        }
        let chosen = &shares[..t];
        let xs: Vec<u8> = chosen.iter().map(|(x, _)| *x).collect();
        let mut s: Scalar = lagrange_at_zero(&xs)
            .iter()
            .zip(chosen)
            .map(|(lambda, (_, share))| lambda * share)
            .sum();
        let key = wrap_key(&self.public.reg_id, &self.y, &s);
        s.zeroize();
        for (_, share) in &mut shares {
            share.zeroize();
        }
        let plain = open(&key, &wrap_aad(&self.public.reg_id), &self.public.wrapped)
            .filter(|k| k.len() == 32)
            .ok_or_else(|| {
                RealmError::Locked(
                    "K does not open although every share verified: the registration is damaged"
                        .into(),
                )
            })?;
        let mut root = [0u8; 32];
        root.copy_from_slice(&plain);
        let key = RootKey::from_bytes(root);
        root.zeroize();
        debug_assert_eq!(self.public.wrapped.len(), WRAPPED_LEN);
        Ok((key, std::mem::take(&mut self.problems)))
    }
}

/// The attacker of `spec/realms.md` §9, for the insider test: it combines the key shares it
/// holds as if they were enough and tests a candidate against the stored check.
#[cfg(test)]
pub(crate) struct Insider {
    public: PublicPart,
    key: Scalar,
}

#[cfg(test)]
impl Insider {
    /// One realm's share alone (its own Lagrange coefficient over itself is 1).
    pub(crate) fn new(public: &PublicPart, _index: u8, key_share: &Scalar) -> Self {
        Insider {
            public: public.clone(),
            key: *key_share,
        }
    }

    /// Two shares, combined properly.
    pub(crate) fn with_two(public: &PublicPart, a: (u8, &Scalar), b: (u8, &Scalar)) -> Self {
        let lambdas = lagrange_at_zero(&[a.0, b.0]);
        Insider {
            public: public.clone(),
            key: lambdas[0] * a.1 + lambdas[1] * b.1,
        }
    }

    /// Whether `candidate` passes the stored check under this attacker's key.
    pub(crate) fn matches(&self, user: &str, candidate: &[u8], ksf: &KsfParams) -> bool {
        let access = stretch(user, candidate, ksf).expect("test parameters");
        let y = oprf_output(&access, &(self.key * hash_to_group(&access[..])));
        bool::from(
            Unlock::new(&self.public.reg_id, &y)
                .check()
                .ct_eq(&self.public.check),
        )
    }
}
