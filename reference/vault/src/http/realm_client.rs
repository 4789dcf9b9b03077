//! The client of `spec/realms.md` over HTTP: every realm asked in parallel, each call bounded
//! by a timeout, and every realm that fails named in the answer.

use super::api::*;
use super::tls::ClientTls;
use super::transport::{b64, enc, CallError, Transport};
use crate::key::RootKey;
use crate::realms::{
    register, EvalAnswer, RealmError, RealmSet, RealmStatus, RealmsFailure, Recovery,
};
use rand_core::OsRng;
use std::time::Duration;
use zeroize::Zeroizing;

/// Each realm's answer, by realm id: the value, or why it failed.
pub type PerRealm<T> = Vec<(String, Result<T, String>)>;

/// Realms named with what went wrong at each.
pub type Problems = Vec<(String, String)>;

/// The grants of the sessions realms unlocked, by realm id (`spec/realms.md` §7.2).
type Grants = Vec<(String, [u8; 16])>;

/// One realm, as the client's configuration names it.
pub struct RealmClient {
    realm_id: String,
    transport: Transport,
}

fn describe(e: CallError) -> String {
    match e {
        CallError::BadAnswer(message) => format!("wrong answer: {message}"),
        CallError::Remote(class, message) => format!("{message} ({class})"),
    }
}

impl RealmClient {
    /// The realm `realm_id` at `base` with a tenant token; each call gives up after `timeout`.
    pub fn new(realm_id: &str, base: &str, token: &str, timeout: Duration) -> Self {
        Self::with_tls(realm_id, base, token, timeout, &ClientTls::default())
    }

    /// [`RealmClient::new`] with these TLS settings (a CA file, `--insecure-http`).
    pub fn with_tls(
        realm_id: &str,
        base: &str,
        token: &str,
        timeout: Duration,
        tls: &ClientTls,
    ) -> Self {
        RealmClient {
            realm_id: realm_id.to_owned(),
            transport: Transport::new(base, token, timeout, tls),
        }
    }

    /// The realm's id, as configured.
    pub fn realm_id(&self) -> &str {
        &self.realm_id
    }

    /// Asks the realm who it is; refuses a realm whose id is not the configured one.
    pub fn check_identity(&self) -> Result<(), String> {
        let info: RealmInfo = self
            .transport
            .send::<(), _>("GET", "/v1/realm", None)
            .map_err(describe)?;
        if info.realm_id != self.realm_id {
            return Err(format!(
                "this server is realm {:?}, not {:?}",
                info.realm_id, self.realm_id
            ));
        }
        Ok(())
    }

    fn register_share(
        &self,
        user: &str,
        share: &crate::realms::RealmShare,
        replacing: Option<&[u8; 16]>,
    ) -> Result<[u8; 16], String> {
        let answer: RealmRegisterResponse = self
            .transport
            .send(
                "POST",
                &format!("/v1/realm/users/{}/register", enc(user)),
                Some(&RealmRegisterRequest {
                    realm_id: share.realm_id.clone(),
                    index: share.index,
                    public: B64(share.public.encode()),
                    key_share: SecretB64(Zeroizing::new(share.key_share.to_vec())),
                    secret_share: SecretB64(Zeroizing::new(share.secret_share.to_vec())),
                    tag: SecretB64(Zeroizing::new(share.tag.to_vec())),
                    grant: replacing.map(|g| B64(g.to_vec())),
                }),
            )
            .map_err(describe)?;
        answer
            .grant
            .0
            .try_into()
            .map_err(|_| "wrong answer: the grant is not 16 bytes".to_owned())
    }

    fn evaluate(&self, user: &str, blinded: &[u8; 32]) -> Result<EvalAnswer, String> {
        let answer: RealmEvaluateResponse = self
            .transport
            .send(
                "POST",
                &format!("/v1/realm/users/{}/evaluate", enc(user)),
                Some(&RealmEvaluateRequest {
                    blinded: B64(blinded.to_vec()),
                }),
            )
            .map_err(describe)?;
        fn fixed<const N: usize>(bytes: Vec<u8>, what: &str) -> Result<[u8; N], String> {
            let len = bytes.len();
            bytes
                .try_into()
                .map_err(|_| format!("wrong answer: {what} of {len} bytes, not {N}"))
        }
        Ok(EvalAnswer {
            public: answer.public.0,
            index: answer.index,
            evaluation: fixed(answer.evaluation.0, "evaluation")?,
            proof: fixed(answer.proof.0, "proof")?,
            session: fixed(answer.session.0, "session id")?,
        })
    }

    fn unlock(&self, session: &[u8; 16], proof: &[u8; 32]) -> Result<Vec<u8>, String> {
        let answer: RealmUnlockResponse = self
            .transport
            .send(
                "POST",
                &format!("/v1/realm/sessions/{}/unlock", b64(session)),
                Some(&RealmUnlockRequest {
                    proof: B64(proof.to_vec()),
                }),
            )
            .map_err(describe)?;
        Ok(answer.release.0)
    }

    fn status(&self, user: &str) -> Result<RealmStatus, String> {
        let answer: RealmStatusResponse = self
            .transport
            .send::<(), _>(
                "GET",
                &format!("/v1/realm/users/{}/status", enc(user)),
                None,
            )
            .map_err(describe)?;
        let reg_id = match answer.reg_id {
            Some(text) => Some(
                hex::decode(&text)
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or("wrong answer: reg_id is not 16 bytes of hex")?,
            ),
            None => None,
        };
        Ok(RealmStatus {
            state: answer.state,
            reg_id,
            public: answer.public.map(|p| p.0),
            guesses: answer.guesses,
            limit: answer.limit,
        })
    }

    fn delete(&self, user: &str, grant: &[u8; 16]) -> Result<bool, String> {
        let answer: serde_json::Value = self
            .transport
            .send(
                "POST",
                &format!("/v1/realm/users/{}/delete", enc(user)),
                Some(&RealmDeleteRequest {
                    grant: B64(grant.to_vec()),
                }),
            )
            .map_err(describe)?;
        Ok(answer["deleted"].as_bool().unwrap_or(false))
    }
}

/// Runs `f` on every realm at once; the answers in the realms' order, each with its realm id.
fn on_all<T: Send>(
    realms: &[RealmClient],
    f: impl Fn(&RealmClient) -> Result<T, String> + Sync,
) -> PerRealm<T> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = realms
            .iter()
            .map(|realm| scope.spawn(|| (realm.realm_id.clone(), f(realm))))
            .collect();
        handles
            .into_iter()
            .zip(realms)
            .map(|(h, realm)| {
                h.join().unwrap_or_else(|_| {
                    (realm.realm_id.clone(), Err("client thread failed".into()))
                })
            })
            .collect()
    })
}

fn named(failures: &[(String, String)]) -> String {
    failures
        .iter()
        .map(|(realm, why)| format!("{realm}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What every realm holds for `user`, asked at once and uncounted (`spec/realms.md` §12).
pub fn realms_status(realms: &[RealmClient], user: &str) -> PerRealm<RealmStatus> {
    on_all(realms, |realm| realm.status(user))
}

/// How many more wrong guesses the user has before the key is lost, from the realms'
/// statuses: each guess is counted at every realm that answers, so the key survives while
/// `threshold` realms still hold an active record of one registration; this is the
/// `threshold`-th largest number of guesses left among those realms (0 with fewer).
pub fn guesses_left(statuses: &[(String, Result<RealmStatus, String>)], threshold: u8) -> u32 {
    let mut by_registration: std::collections::BTreeMap<[u8; 16], Vec<u32>> = Default::default();
    for status in statuses.iter().filter_map(|(_, s)| s.as_ref().ok()) {
        if let (Some(reg_id), left @ 1..) = (status.reg_id, status.guesses_left()) {
            by_registration.entry(reg_id).or_default().push(left);
        }
    }
    by_registration
        .into_values()
        .filter_map(|mut lefts| {
            lefts.sort_unstable_by(|a, b| b.cmp(a));
            lefts.get(usize::from(threshold).max(1) - 1).copied()
        })
        .max()
        .unwrap_or(0)
}

/// Registers `root` behind `password` with every realm of `set` (`realms` in the same
/// order). All must accept; otherwise the error names those that did not, and says whether
/// the registration is recoverable anyway (`spec/realms.md` §7.3).
pub fn register_with_realms(
    realms: &[RealmClient],
    set: &RealmSet,
    user: &str,
    password: &[u8],
    root: &RootKey,
) -> Result<(), RealmsFailure> {
    let answers = send_registration(realms, set, user, password, root, &Vec::new())?;
    let refused = refusals(&answers);
    if refused.is_empty() {
        return Ok(());
    }
    let accepted = realms.len() - refused.len();
    let verdict = if accepted >= set.threshold as usize {
        format!(
            "{accepted} of {} realms accepted: recoverable, but retry the others",
            realms.len()
        )
    } else {
        // Shares that can never be combined: take them back with each registration's grant
        // (best effort; spec/realms.md §7.3).
        for (realm, (_, answer)) in realms.iter().zip(&answers) {
            if let Ok(grant) = answer {
                let _ = realm.delete(user, grant);
            }
        }
        format!(
            "only {accepted} of {} realms accepted, fewer than {}: nothing is registered",
            realms.len(),
            set.threshold
        )
    };
    let error = RealmError::Unavailable(format!("{verdict}; {}", named(&refused)));
    Err(RealmsFailure::naming(error, refused))
}

/// Changes the password (`spec/realms.md` §7.1): recovers K with `old` (one counted guess at
/// each realm, then a reset), then registers the same K behind `new` at every realm, each
/// share sent with the grant of the session that realm unlocked. Every realm must unlock
/// first, or nothing changes: a realm left out would keep the old password alive. If some
/// realms then refuse the new registration, the error says which password recovers now.
pub fn change_password_on_realms(
    realms: &[RealmClient],
    set: &RealmSet,
    user: &str,
    old: &[u8],
    new: &[u8],
) -> Result<(), RealmsFailure> {
    let (root, problems, grants) = recover_with_grants(realms, set, user, old)?;
    let missing: Problems = realms
        .iter()
        .filter(|realm| !grants.iter().any(|(id, _)| *id == realm.realm_id))
        .map(|realm| {
            let why = problems
                .iter()
                .find(|(id, _)| *id == realm.realm_id)
                .map_or_else(|| "did not unlock".to_owned(), |(_, why)| why.clone());
            (realm.realm_id.clone(), why)
        })
        .collect();
    if !missing.is_empty() {
        let error = RealmError::Unavailable(format!(
            "nothing changed: every realm must unlock with the old password first; {}",
            named(&missing)
        ));
        return Err(RealmsFailure::naming(error, missing));
    }
    let answers = send_registration(realms, set, user, new, &root, &grants)?;
    let refused = refusals(&answers);
    if refused.is_empty() {
        return Ok(());
    }
    let (n, t) = (realms.len(), set.threshold as usize);
    let accepted = n - refused.len();
    let verdict = if accepted >= t {
        format!("{accepted} of {n} realms took the new password, which recovers the key; run the change again to move the others")
    } else if n - accepted >= t {
        format!("only {accepted} of {n} realms took the new password: the old one still recovers the key; run the change again")
    } else {
        format!("only {accepted} of {n} realms took the new password and {} keep the old one, fewer than {t}: neither recovers the key until the change is retried on the realms named", n - accepted)
    };
    let error = RealmError::Unavailable(format!("{verdict}; {}", named(&refused)));
    Err(RealmsFailure::naming(error, refused))
}

/// Checks every realm's identity, splits `root` behind `password` and sends each realm its
/// share (with its grant from `grants`, when replacing), all at once.
fn send_registration(
    realms: &[RealmClient],
    set: &RealmSet,
    user: &str,
    password: &[u8],
    root: &RootKey,
    grants: &Grants,
) -> Result<PerRealm<[u8; 16]>, RealmsFailure> {
    let configured: Vec<&str> = realms.iter().map(|r| r.realm_id.as_str()).collect();
    if configured != set.realm_ids.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err(RealmError::Malformed(
            "the realms to register with must be exactly the realm set's, in its order".into(),
        )
        .into());
    }
    let identities: Vec<(String, String)> = on_all(realms, RealmClient::check_identity)
        .into_iter()
        .filter_map(|(realm, r)| r.err().map(|why| (realm, why)))
        .collect();
    if !identities.is_empty() {
        let error = RealmError::Unavailable(format!("nothing registered: {}", named(&identities)));
        return Err(RealmsFailure::naming(error, identities));
    }
    let shares = register(user, password, root, set, &mut OsRng)?;
    Ok(std::thread::scope(|scope| {
        let handles: Vec<_> = realms
            .iter()
            .zip(&shares)
            .map(|(realm, share)| {
                let grant = grants
                    .iter()
                    .find(|(id, _)| *id == realm.realm_id)
                    .map(|(_, g)| g);
                scope.spawn(move || {
                    (
                        realm.realm_id.clone(),
                        realm.register_share(user, share, grant),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| ("?".into(), Err("client thread failed".into())))
            })
            .collect()
    }))
}

/// The realms that refused, with why.
fn refusals<T>(answers: &PerRealm<T>) -> Problems {
    answers
        .iter()
        .filter_map(|(realm, r)| r.as_ref().err().map(|why| (realm.clone(), why.clone())))
        .collect()
}

/// Recovers K from the realms of `set` with `password`: phase 1 on every realm at once,
/// phase 2 on every realm that answered well. Returns K and the realms that failed (named,
/// with why) although recovery succeeded without them.
pub fn recover_from_realms(
    realms: &[RealmClient],
    set: &RealmSet,
    user: &str,
    password: &[u8],
) -> Result<(RootKey, Problems), RealmsFailure> {
    recover_with_grants(realms, set, user, password).map(|(root, problems, _)| (root, problems))
}

/// A recovery that also returns the grants of the sessions the realms unlocked.
fn recover_with_grants(
    realms: &[RealmClient],
    set: &RealmSet,
    user: &str,
    password: &[u8],
) -> Result<(RootKey, Problems, Grants), RealmsFailure> {
    let (recovery, blinded) = Recovery::start(user, password, set, &mut OsRng)?;
    let answers = on_all(realms, |realm| realm.evaluate(user, &blinded));
    let unlocking = recovery.combine(answers)?;
    let requests = unlocking.requests().to_vec();
    let releases: Vec<(String, Result<Vec<u8>, String>)> = on_all(realms, |realm| {
        match requests.iter().find(|r| r.realm == realm.realm_id) {
            Some(request) => realm.unlock(&request.session, &request.proof),
            None => Err("not asked in phase 2".into()),
        }
    })
    .into_iter()
    .filter(|(realm, _)| requests.iter().any(|r| r.realm == *realm))
    .collect();
    let unlocked: Vec<(String, [u8; 16])> = releases
        .iter()
        .filter(|(_, r)| r.is_ok())
        .filter_map(|(realm, _)| {
            requests
                .iter()
                .find(|q| q.realm == *realm)
                .map(|q| (realm.clone(), q.grant))
        })
        .collect();
    let (root, problems) = unlocking.finish(releases)?;
    Ok((root, problems, unlocked))
}

/// Deletes the user's registration on every realm, after proving the password to each
/// (a recovery: one counted guess per realm, then a reset). Returns each realm's answer
/// (whether it had a record), or why it failed; realms that did not unlock are not deleted.
pub fn delete_from_realms(
    realms: &[RealmClient],
    set: &RealmSet,
    user: &str,
    password: &[u8],
) -> Result<PerRealm<bool>, RealmsFailure> {
    let (_, _, unlocked) = recover_with_grants(realms, set, user, password)?;
    Ok(on_all(realms, |realm| {
        match unlocked.iter().find(|(id, _)| *id == realm.realm_id) {
            Some((_, grant)) => realm.delete(user, grant),
            None => Err("not unlocked, so not deleted".into()),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RecordState;

    fn status(reg: u8, state: RecordState, guesses: u32) -> (String, Result<RealmStatus, String>) {
        let status = RealmStatus {
            state: Some(state),
            reg_id: Some([reg; 16]),
            public: None,
            guesses,
            limit: 10,
        };
        (format!("r{reg}"), Ok(status))
    }

    #[test]
    fn guesses_left_is_the_thresholds_largest_of_one_registration() {
        use RecordState::*;
        let all = vec![
            status(1, Active, 3),
            status(1, Active, 5),
            status(1, Active, 1),
        ];
        // 2-of-3: the key lives while two realms answer; the second most left is 7.
        assert_eq!(guesses_left(&all, 2), 7);
        assert_eq!(guesses_left(&all, 3), 5);
        assert_eq!(guesses_left(&all, 1), 9);
        // A destroyed realm, a silent one and one of another registration do not count.
        let some = vec![
            status(1, Active, 4),
            status(1, Destroyed, 10),
            ("r3".into(), Err("down".into())),
            status(2, Active, 0),
        ];
        assert_eq!(guesses_left(&some, 2), 0);
        assert_eq!(guesses_left(&some, 1), 10);
        assert_eq!(guesses_left(&[], 1), 0);
    }
}
