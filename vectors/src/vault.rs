//! `vault.yaml`: the record state machine of spec/vault.md §3-§4 as scripted sequences of
//! operations, with the outcome, state and guesses left after each step. (The OPAQUE
//! transcripts with fixed randomness are still to come.)

use crate::doc::{Failures, Outcome, VectorFile, SCHEMA_VERSION};
use coffer::hsm::SoftHsm;
use coffer::key::RootKey;
use coffer::store::{RecordState, SqliteStore};
use coffer::vault::Parties;
use coffer::vault::{KsfParams, RecoveryClient, RegistrationClient, ServerConfig, VaultServer};
use coffer::Classify;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// A group of `vault.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum VaultGroup {
    /// One registration and one recovery with every random input fixed: the messages and
    /// keys on the wire.
    Transcript {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<TranscriptCase>,
    },
    /// Scripts run against a fresh vault, one step after another.
    StateMachine {
        /// What the group covers.
        description: String,
        /// The vault's configuration for every script.
        parameters: StateMachineParameters,
        /// The cases.
        cases: Vec<ScriptCase>,
    },
}

/// The configuration the scripts assume.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateMachineParameters {
    /// The guess limit of a registration that names none.
    pub default_limit: u32,
    /// The smallest limit a registration may ask for.
    pub min_limit: u32,
    /// The largest.
    pub max_limit: u32,
    /// How the root key K of a user is chosen: `sha256(user)`.
    pub root_key: String,
}

/// One script.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// One operation and what must hold after it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// `register`, `recover` (the whole flow), `recover_abandoned` (KE1 only, the client
    /// vanishes after KE2), `forged_ke3` (KE1, then a KE3 of random bytes), `change_password`
    /// (a recovery with `password`, then a registration of `new_password` on its verified
    /// session), `change_password_unverified` (a password change naming a session that never
    /// verified), `recover_hold` (a recovery up to the client's KE3, which is kept back),
    /// `recover_release` (the held KE3 is sent), or `delete`.
    pub op: String,
    /// The user id.
    pub user: String,
    /// The password (text), for every operation but `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `change_password`: the new password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_password: Option<String>,
    /// `register`: the guess limit asked for (default: the parameters').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `ok`, or the error class of the operation (a client-side failure included).
    pub outcome: String,
    /// The status afterwards: `active`, `destroyed`, `deleted` or `none`.
    pub state: String,
    /// The status afterwards: guesses left (0 unless active).
    pub guesses_left: u32,
}

/// The `vault.yaml` file.
pub type VaultFile = VectorFile<VaultGroup>;

fn step(
    op: &str,
    user: &str,
    password: Option<&str>,
    outcome: &str,
    state: &str,
    left: u32,
) -> Step {
    Step {
        op: op.into(),
        user: user.into(),
        password: password.map(str::to_owned),
        new_password: None,
        limit: None,
        outcome: outcome.into(),
        state: state.into(),
        guesses_left: left,
    }
}

fn script(id: &str, comment: &str, flags: &[&str], steps: Vec<Step>) -> ScriptCase {
    ScriptCase {
        id: format!("vault.script.{id}"),
        comment: comment.into(),
        result: Outcome::Valid,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        steps,
    }
}

/// Builds `vault.yaml`.
pub fn generate() -> anyhow::Result<VaultFile> {
    let (a, right, wrong) = ("alice", Some("correct horse"), Some("battery staple"));
    let register = |limit: Option<u32>, outcome: &str, state: &str, left: u32| Step {
        limit,
        ..step("register", a, right, outcome, state, left)
    };
    let recover = |password, outcome: &str, state: &str, left| {
        step("recover", a, password, outcome, state, left)
    };
    let abandoned = |left| step("recover_abandoned", a, right, "ok", "active", left);
    let forged =
        |outcome: &str, state: &str, left| step("forged_ke3", a, right, outcome, state, left);
    let mut wrong_down: Vec<Step> = (0..3)
        .map(|i| recover(wrong, "wrong_password", "active", 9 - i))
        .collect();
    wrong_down.insert(0, register(None, "ok", "active", 10));
    wrong_down.push(recover(right, "ok", "active", 10));
    let cases = vec![
        script("register_recover", "register, then recover K with the password", &[], vec![
            register(None, "ok", "active", 10),
            recover(right, "ok", "active", 10),
        ]),
        script("wrong_then_right", "three wrong passwords count; the right one resets the count", &["Counting"], wrong_down),
        script("abandoned_count", "a recovery abandoned after KE2 still counts (§4.3 invariant 5)", &["Counting"], vec![
            register(None, "ok", "active", 10),
            abandoned(9),
            abandoned(8),
            recover(right, "ok", "active", 10),
        ]),
        script("forged_ke3_counts", "a KE3 that does not verify counts, as a wrong password does", &["Counting"], vec![
            register(None, "ok", "active", 10),
            forged("wrong_password", "active", 9),
            forged("wrong_password", "active", 8),
        ]),
        script("last_guess_right", "with one guess left, the right password still recovers K and resets", &["Limit"], vec![
            register(Some(3), "ok", "active", 3),
            recover(wrong, "wrong_password", "active", 2),
            recover(wrong, "wrong_password", "active", 1),
            recover(right, "ok", "active", 3),
        ]),
        script("lockout_at_ke1", "limit 3: three wrong guesses use it up; the next KE1 destroys the record, and even the right password then gets a fake KE2", &["Limit", "Destruction"], vec![
            register(Some(3), "ok", "active", 3),
            recover(wrong, "wrong_password", "active", 2),
            recover(wrong, "wrong_password", "active", 1),
            recover(wrong, "wrong_password", "active", 0),
            recover(right, "wrong_password", "destroyed", 0),
            recover(right, "wrong_password", "destroyed", 0),
        ]),
        script("lockout_at_ke3", "limit 2: a failed KE3 on the last guess destroys the record at once", &["Limit", "Destruction"], vec![
            register(Some(2), "ok", "active", 2),
            recover(wrong, "wrong_password", "active", 1),
            forged("wrong_password", "destroyed", 0),
            recover(right, "wrong_password", "destroyed", 0),
        ]),
        script("register_after_destruction", "a destroyed record is never restored; a new registration starts afresh", &["Destruction"], vec![
            register(Some(1), "ok", "active", 1),
            recover(wrong, "wrong_password", "active", 0),
            recover(right, "wrong_password", "destroyed", 0),
            register(None, "ok", "active", 10),
            recover(right, "ok", "active", 10),
        ]),
        script("delete", "a deleted record answers like an unknown user; deleting twice is no_record", &["Delete"], vec![
            register(None, "ok", "active", 10),
            step("delete", a, None, "ok", "deleted", 0),
            recover(right, "wrong_password", "deleted", 0),
            step("delete", a, None, "no_record", "deleted", 0),
        ]),
        script("unknown_user", "an unknown user gets a fake KE2: the client fails with wrong_password, nothing is stored", &["Fake"], vec![
            step("recover", "nobody", right, "wrong_password", "none", 0),
            step("recover_abandoned", "nobody", right, "ok", "none", 0),
            step("delete", "nobody", None, "no_record", "none", 0),
        ]),
        script("register_twice", "registering over an active record is refused", &["Register"], vec![
            register(None, "ok", "active", 10),
            register(None, "unauthorized", "active", 10),
        ]),
        script("limit_bounds", "limits outside 1..=100 are unsupported", &["Limit", "Register"], vec![
            register(Some(0), "unsupported", "none", 0),
            register(Some(101), "unsupported", "none", 0),
            register(Some(100), "ok", "active", 100),
        ]),
        script("change_password", "a password change needs a verified recovery; afterwards only the new password works", &["ChangePassword"], vec![
            register(None, "ok", "active", 10),
            Step { new_password: Some("new password".into()), ..step("change_password", a, right, "ok", "active", 10) },
            recover(right, "wrong_password", "active", 9),
            recover(Some("new password"), "ok", "active", 10),
        ]),
        script("change_password_unverified", "a password change without a verified session is refused and changes nothing", &["ChangePassword"], vec![
            register(None, "ok", "active", 10),
            step("change_password_unverified", a, Some("new password"), "unauthorized", "active", 10),
            recover(right, "ok", "active", 10),
        ]),
        script("locked_after_change", "a KE3 that verifies after the record changed since its KE1 is locked, and releases nothing", &["Locked", "ChangePassword"], vec![
            register(None, "ok", "active", 10),
            step("recover_hold", a, right, "ok", "active", 9),
            Step { new_password: Some("new password".into()), ..step("change_password", a, right, "ok", "active", 10) },
            step("recover_release", a, None, "locked", "active", 10),
            recover(Some("new password"), "ok", "active", 10),
        ]),
        script("locked_after_destruction", "a held KE3 of the right password, sent after the record was destroyed, is locked", &["Locked", "Destruction"], vec![
            register(Some(2), "ok", "active", 2),
            step("recover_hold", a, right, "ok", "active", 1),
            recover(wrong, "wrong_password", "active", 0),
            recover(wrong, "wrong_password", "destroyed", 0),
            step("recover_release", a, None, "locked", "destroyed", 0),
        ]),
        script("change_password_wrong", "a change with the wrong password fails at its recovery and counts", &["ChangePassword", "Counting"], vec![
            register(None, "ok", "active", 10),
            Step { new_password: Some("new password".into()), ..step("change_password", a, wrong, "wrong_password", "active", 9) },
            recover(right, "ok", "active", 10),
        ]),
        script("users_are_separate", "guesses against one user do not touch another", &["Counting"], vec![
            register(None, "ok", "active", 10),
            step("register", "bob", Some("bob's password"), "ok", "active", 10),
            step("recover", "bob", wrong, "wrong_password", "active", 9),
            recover(right, "ok", "active", 10),
        ]),
    ];
    let mut transcripts = Vec::new();
    for (id, comment, flags, user, register, recovery_password) in [
        ("register_and_recover", "registration, then a recovery with the right password: K comes back", &["Transcript"][..], "alice", true, "correct horse"),
        ("wrong_password", "registration, then a recovery with another password: the client refuses KE2 and sends no KE3", &["Transcript", "Counting"][..], "alice", true, "battery staple"),
        ("unknown_user", "a recovery for a user never registered: a fake KE2 of the real length, refused by the client", &["Transcript", "Fake"][..], "nobody", false, "correct horse"),
    ] {
        let case_id = format!("vault.transcript.{id}");
        let root = root_for(user);
        let (randomness, messages, outcome, _) = run_transcript(user, "correct horse", recovery_password, &root, register, Source::Generate(&case_id))
            .map_err(|e| anyhow::anyhow!("{case_id}: {e}"))?;
        transcripts.push(TranscriptCase {
            id: case_id,
            comment: comment.into(),
            result: Outcome::Valid,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            user: user.into(),
            password: "correct horse".into(),
            recovery_password: recovery_password.into(),
            root_key: hex::encode(root.as_bytes()),
            randomness,
            messages,
            outcome,
        });
    }
    // Expected outcomes by intent (spec/vault.md §3.2 step 3): only the right password gets K.
    let expected = ["ok", "wrong_password", "wrong_password"];
    for (case, want) in transcripts.iter().zip(expected) {
        anyhow::ensure!(
            case.outcome == want,
            "{}: {} instead of {want}",
            case.id,
            case.outcome
        );
    }
    let groups = vec![
        VaultGroup::Transcript {
            description: "Run the registration (unless the case has no registration_request) and \
                      the recovery with the vault's suite (spec/vault.md §2: ristretto255, \
                      SHA-512, Argon2id m=256 t=1 p=1 for these vectors, context \
                      \"coffer-vault-v1\", identities user and \"coffer-vault\", credential id \
                      tenant \"vectors\" ‖ 00 ‖ user), every party drawing exactly the bytes of \
                      `randomness` in order. The messages and keys must be as given, and the \
                      flow must stop with `outcome`."
                .into(),
            cases: transcripts,
        },
        VaultGroup::StateMachine {
            description: "Run each script against a fresh vault with these parameters. After each \
                      step, the operation's outcome and the user's status must be as given."
                .into(),
            parameters: StateMachineParameters {
                default_limit: 10,
                min_limit: 1,
                max_limit: 100,
                root_key: "sha256(user)".into(),
            },
            cases,
        },
    ];
    let number_of_cases = groups
        .iter()
        .map(|g| match g {
            VaultGroup::StateMachine { cases, .. } => cases.len(),
            VaultGroup::Transcript { cases, .. } => cases.len(),
        })
        .sum();
    Ok(VectorFile {
        schema: SCHEMA_VERSION.into(),
        topic: "vault".into(),
        description: "The vault's record state machine: registration, counted guesses at KE1, \
                      resets, destruction at the limit, deletion, password change, unknown \
                      users, as scripts with the state after every step."
            .into(),
        how_to_apply: "For each script, start a vault with the group's parameters and no \
                       records, run the steps in order through its API (HTTP or in process), \
                       and compare each step's outcome and the user's status after it."
            .into(),
        sources: vec!["spec/vault.md §3 (flows), §4 (states, transitions, invariants), §5 (fake responses), §8 (errors)".into()],
        notes: BTreeMap::from([
            ("ChangePassword".into(), "A password change (§3.3).".into()),
            ("Counting".into(), "Every KE1 is a guess, counted before KE2; a verified KE3 resets the count.".into()),
            ("Delete".into(), "Deletion by the tenant's administrator (DELETE /v1/users/{user}, spec/vault.md §3.3): no password, no guess counted.".into()),
            ("Destruction".into(), "The record is destroyed at its limit and never restored.".into()),
            ("Fake".into(), "Fake KE2 for users without an active record.".into()),
            ("Limit".into(), "Guess limits other than the default.".into()),
            ("Locked".into(), "A verified KE3 for a record destroyed or changed since its KE1 (§3.2 step 4).".into()),
            ("Register".into(), "Registration rules.".into()),
            ("Transcript".into(), "Every message of a flow, with all randomness fixed.".into()),
        ]),
        number_of_cases,
        groups,
    })
}

const TENANT: &str = "vectors";

fn root_for(user: &str) -> RootKey {
    RootKey::from_bytes(Sha256::digest(user.as_bytes()).into())
}

type Vault = VaultServer<SqliteStore, SoftHsm>;

fn class(e: impl Classify) -> String {
    e.class().to_string()
}

/// A recovery up to the client's KE2 check: Ok((session id, KE3, login)) or the class.
fn login(
    vault: &Vault,
    parties: &Parties,
    user: &str,
    password: &str,
) -> Result<(coffer::vault::SessionId, coffer::vault::LoginDone), String> {
    let (client, ke1) = RecoveryClient::start(password.as_bytes()).map_err(class)?;
    let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
    let ke2 = vault.recover_start(TENANT, user, &ke1).map_err(class)?;
    let done = client.finish(parties, &ke2.ke2, &ke2.ksf).map_err(class)?;
    Ok((ke2.session_id, done))
}

/// A recovery whose KE3 is held back: session id and the client's finished login.
type Held = BTreeMap<String, (coffer::vault::SessionId, coffer::vault::LoginDone)>;

fn run_step(vault: &Vault, config: &ServerConfig, s: &Step, held: &mut Held) -> Result<(), String> {
    let parties = Parties {
        user: s.user.clone(),
        server_id: config.server_id.clone(),
    };
    let password = s.password.clone().unwrap_or_default();
    match s.op.as_str() {
        "register" => {
            let (client, request) =
                RegistrationClient::start(password.as_bytes()).map_err(class)?;
            let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
            let start = vault
                .register_start(TENANT, &s.user, &request)
                .map_err(class)?;
            let (upload, envelope) = client
                .finish(
                    &parties,
                    &start.response,
                    &start.ksf,
                    &start.record_id,
                    1,
                    &root_for(&s.user),
                )
                .map_err(class)?;
            vault
                .register_finish(
                    TENANT,
                    &s.user,
                    start.record_id,
                    &upload,
                    &envelope,
                    s.limit,
                )
                .map_err(class)
        }
        "recover" => {
            let (session, done) = login(vault, &parties, &s.user, &password)?;
            let released = vault
                .recover_finish(TENANT, &session, &done.ke3)
                .map_err(class)?;
            let (_, _, k) = done.open(&session, &released).map_err(class)?;
            if k.as_bytes() == root_for(&s.user).as_bytes() {
                Ok(())
            } else {
                Err("server_auth_failed".into())
            }
        }
        "recover_abandoned" => {
            let (_, ke1) = RecoveryClient::start(password.as_bytes()).map_err(class)?;
            vault
                .recover_start(TENANT, &s.user, &ke1)
                .map(|_| ())
                .map_err(class)
        }
        "forged_ke3" => {
            let (_, ke1) = RecoveryClient::start(password.as_bytes()).map_err(class)?;
            let ke2 = vault.recover_start(TENANT, &s.user, &ke1).map_err(class)?;
            let forged: Vec<u8> = Sha256::digest(b"forged KE3")
                .iter()
                .chain(Sha256::digest(b"more").iter())
                .copied()
                .collect();
            vault
                .recover_finish(TENANT, &ke2.session_id, &forged)
                .map(|_| ())
                .map_err(class)
        }
        "change_password" => {
            let (session, done) = login(vault, &parties, &s.user, &password)?;
            let released = vault
                .recover_finish(TENANT, &session, &done.ke3)
                .map_err(class)?;
            let (record_id, version, k) = done.open(&session, &released).map_err(class)?;
            let new = s.new_password.clone().unwrap_or_default();
            let (client, request) = RegistrationClient::start(new.as_bytes()).map_err(class)?;
            let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
            let start = vault
                .change_password_start(TENANT, &session, &request)
                .map_err(class)?;
            let (upload, envelope) = client
                .finish(
                    &parties,
                    &start.response,
                    &start.ksf,
                    &record_id,
                    version + 1,
                    &k,
                )
                .map_err(class)?;
            vault
                .change_password_finish(TENANT, &session, &upload, &envelope)
                .map(|_| ())
                .map_err(class)
        }
        "delete" => vault.delete(TENANT, &s.user).map_err(class),
        "recover_hold" => {
            let (session, done) = login(vault, &parties, &s.user, &password)?;
            held.insert(s.user.clone(), (session, done));
            Ok(())
        }
        "recover_release" => {
            let (session, done) = held
                .remove(&s.user)
                .ok_or_else(|| "no held recovery".to_string())?;
            vault
                .recover_finish(TENANT, &session, &done.ke3)
                .map(|_| ())
                .map_err(class)
        }
        "change_password_unverified" => {
            // A registration naming a session that never verified.
            let (_, request) = RegistrationClient::start(password.as_bytes()).map_err(class)?;
            vault
                .change_password_start(
                    TENANT,
                    &coffer::vault::SessionId::from_bytes([0x5a; 16]),
                    &request,
                )
                .map(|_| ())
                .map_err(class)
        }
        other => Err(format!("unknown operation {other:?}")),
    }
}

/// Runs every script of `file` against a fresh reference vault each.
pub fn verify(file: &VaultFile) -> Failures {
    let mut failures = Failures::default();
    for group in &file.groups {
        let (parameters, cases) = match group {
            VaultGroup::StateMachine {
                parameters, cases, ..
            } => (parameters, cases),
            VaultGroup::Transcript { cases, .. } => {
                for case in cases {
                    failures.expect_eq(&case.id, "result", &Outcome::Valid, &case.result);
                    let Ok(bytes) = hex::decode(&case.root_key) else {
                        failures.add(&case.id, "root_key is not hex");
                        continue;
                    };
                    let Ok(bytes) = <[u8; 32]>::try_from(bytes.as_slice()) else {
                        failures.add(&case.id, "root_key is not 32 bytes");
                        continue;
                    };
                    let register = case.messages.contains_key("registration_request");
                    match run_transcript(
                        &case.user,
                        &case.password,
                        &case.recovery_password,
                        &RootKey::from_bytes(bytes),
                        register,
                        Source::Replay(&case.randomness),
                    ) {
                        Ok((_, messages, outcome, inexact)) => {
                            failures.expect_eq(&case.id, "messages", &case.messages, &messages);
                            failures.expect_eq(&case.id, "outcome", &case.outcome, &outcome);
                            if !inexact.is_empty() {
                                failures.add(&case.id, format!("the recorded randomness was not drawn exactly by {inexact:?}"));
                            }
                        }
                        Err(e) => failures.add(&case.id, e),
                    }
                }
                continue;
            }
        };
        let config = ServerConfig {
            ksf: KsfParams::TEST,
            ..ServerConfig::default()
        };
        if parameters.root_key != "sha256(user)" {
            failures.add(
                "vault.state_machine",
                "the reference derives K as sha256(user) only",
            );
        }
        let limits = (config.default_limit, config.min_limit, config.max_limit);
        failures.expect_eq(
            "vault.state_machine",
            "parameters (default, min, max limit)",
            &(
                parameters.default_limit,
                parameters.min_limit,
                parameters.max_limit,
            ),
            &limits,
        );
        for case in cases {
            // The store is durable (fsync per commit); in memory-backed /dev/shm when there
            // is one, so the scripts run in milliseconds.
            let shm = std::path::Path::new("/dev/shm");
            let dir = if shm.is_dir() {
                tempfile::tempdir_in(shm)
            } else {
                tempfile::tempdir()
            };
            let dir = match dir {
                Ok(d) => d,
                Err(e) => {
                    failures.add(&case.id, e);
                    continue;
                }
            };
            let vault = SqliteStore::open(&dir.path().join("vault.db"))
                .map_err(class)
                .and_then(|store| {
                    VaultServer::open(
                        store,
                        SoftHsm::from_key(&[7; 32], &dir.path().join("k")).map_err(class)?,
                        config.clone(),
                    )
                    .map_err(class)
                });
            let vault = match vault {
                Ok(v) => v,
                Err(e) => {
                    failures.add(&case.id, e);
                    continue;
                }
            };
            failures.expect_eq(&case.id, "result", &Outcome::Valid, &case.result);
            let mut held = Held::new();
            for (i, s) in case.steps.iter().enumerate() {
                let at = format!("{} step {} ({})", case.id, i + 1, s.op);
                let outcome = match run_step(&vault, &config, s, &mut held) {
                    Ok(()) => "ok".to_owned(),
                    Err(c) => c,
                };
                failures.expect_eq(&at, "outcome", &s.outcome, &outcome);
                match vault.status(TENANT, &s.user) {
                    Ok(status) => {
                        let state = match (status.registered, status.state) {
                            (_, Some(RecordState::Active)) => "active",
                            (_, Some(RecordState::Destroyed)) => "destroyed",
                            (_, Some(RecordState::Deleted)) => "deleted",
                            (_, None) => "none",
                        };
                        failures.expect_eq(&at, "state", &s.state.as_str(), &state);
                        failures.expect_eq(
                            &at,
                            "guesses_left",
                            &s.guesses_left,
                            &status.guesses_left,
                        );
                    }
                    Err(e) => failures.add(&at, format!("status: {}", class(e))),
                }
            }
        }
    }
    failures
}

/// A transcript of one registration and one recovery, every random input fixed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TranscriptCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// The user id (the OPAQUE client identity and, with the tenant, the credential id).
    pub user: String,
    /// The password registered (text).
    pub password: String,
    /// The password of the recovery (text).
    pub recovery_password: String,
    /// K (hex).
    pub root_key: String,
    /// Random bytes, exactly as each party draws them, in order (hex).
    pub randomness: TranscriptRandomness,
    /// The messages and keys (hex); absent when the flow stops before them.
    pub messages: BTreeMap<String, String>,
    /// `ok`, or the error class where the flow stops.
    pub outcome: String,
}

/// Every random byte of a transcript, by party and call.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TranscriptRandomness {
    /// Server, on its first start: `ServerSetup::new`: the server key pair's scalar (64),
    /// the OPRF seed (64), the fake-reply key pair's scalar (64).
    pub server_setup: String,
    /// Client `ClientRegistration::start`: the OPRF blind's 64 wide bytes (reduced mod ℓ).
    pub registration_client_start: String,
    /// Server registration start: the 16-byte record id.
    pub registration_server_start: String,
    /// Client registration finish: OPAQUE's 32-byte envelope nonce, then the Coffer
    /// envelope's 12-byte AES-GCM nonce.
    pub registration_client_finish: String,
    /// Client `ClientLogin::start`: the blind (64 bytes), the client keyshare seed (32), the
    /// client nonce (32).
    pub recovery_client_start: String,
    /// Server recovery start: the 16-byte session id, then `ServerLogin::start`'s draws: a
    /// fake record's masking key (64, drawn even for a real record), the masking nonce (32),
    /// the server keyshare seed (32), the server nonce (32).
    pub recovery_server_start: String,
    /// Server recovery finish: the release's 12-byte AES-GCM nonce.
    pub recovery_server_finish: String,
}

/// A deterministic generator for vectors: SHA-256(seed ‖ counter) blocks. Not for keys in
/// service; it only makes transcripts reproducible.
pub(crate) struct StreamRng {
    seed: Vec<u8>,
    counter: u64,
    buffer: Vec<u8>,
    drawn: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl StreamRng {
    pub(crate) fn new(seed: &str) -> (Self, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
        let drawn = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        (
            StreamRng {
                seed: seed.as_bytes().to_vec(),
                counter: 0,
                buffer: Vec::new(),
                drawn: drawn.clone(),
            },
            drawn,
        )
    }
}

impl rand_core::RngCore for StreamRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest.iter_mut() {
            if self.buffer.is_empty() {
                let block = Sha256::digest([&self.seed[..], &self.counter.to_be_bytes()].concat());
                self.counter += 1;
                self.buffer = block.iter().rev().copied().collect();
            }
            *byte = self.buffer.pop().unwrap_or_default();
        }
        if let Ok(mut drawn) = self.drawn.lock() {
            drawn.extend_from_slice(dest);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for StreamRng {}

/// Serves exactly the given bytes; drawing more is an error (and fills zeros).
pub(crate) struct ReplayRng {
    bytes: Vec<u8>,
    at: std::sync::Arc<std::sync::Mutex<usize>>,
    overdrawn: std::sync::Arc<std::sync::Mutex<bool>>,
}

impl rand_core::RngCore for ReplayRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let mut at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        for byte in dest.iter_mut() {
            match self.bytes.get(*at) {
                Some(b) => *byte = *b,
                None => {
                    *byte = 0;
                    *self.overdrawn.lock().unwrap_or_else(|p| p.into_inner()) = true;
                }
            }
            *at += 1;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for ReplayRng {}

pub(crate) struct Replay {
    pub(crate) rng: Option<ReplayRng>,
    at: std::sync::Arc<std::sync::Mutex<usize>>,
    overdrawn: std::sync::Arc<std::sync::Mutex<bool>>,
    len: usize,
}

pub(crate) fn replay(hex_bytes: &str) -> Result<Replay, String> {
    let bytes = hex::decode(hex_bytes).map_err(|e| e.to_string())?;
    let at = std::sync::Arc::new(std::sync::Mutex::new(0));
    let overdrawn = std::sync::Arc::new(std::sync::Mutex::new(false));
    Ok(Replay {
        len: bytes.len(),
        rng: Some(ReplayRng {
            bytes,
            at: at.clone(),
            overdrawn: overdrawn.clone(),
        }),
        at,
        overdrawn,
    })
}

impl Replay {
    /// Whether exactly all the bytes were drawn.
    pub(crate) fn exact(&self) -> bool {
        let at = *self.at.lock().unwrap_or_else(|p| p.into_inner());
        at == self.len && !*self.overdrawn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The bytes a stream generator handed out, in order.
type Drawn = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;
/// A client call's generator, with its replay (checking) or record (generating).
type ClientRng = (
    Box<dyn coffer::vault::VaultRng>,
    Option<Replay>,
    Option<Drawn>,
);
/// What a transcript run gives: randomness drawn, messages, outcome, inexact replays.
type TranscriptRun = (
    TranscriptRandomness,
    BTreeMap<String, String>,
    String,
    Vec<String>,
);

/// Where a transcript's bytes come from: fresh streams when generating, the recorded bytes
/// when checking.
enum Source<'a> {
    Generate(&'a str),
    Replay(&'a TranscriptRandomness),
}

/// Runs a registration of `password` and a recovery with `recovery_password` for `user`,
/// drawing randomness from `source`. Returns the randomness actually drawn, the messages,
/// the outcome, and whether a replay drew exactly the recorded bytes at every call.
fn run_transcript(
    user: &str,
    password: &str,
    recovery_password: &str,
    root: &RootKey,
    register: bool,
    source: Source<'_>,
) -> Result<TranscriptRun, String> {
    let config = ServerConfig {
        ksf: KsfParams::TEST,
        ..ServerConfig::default()
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut messages = BTreeMap::new();
    let mut inexact = Vec::new();
    // One generator per party and call; the server's single generator is split by call.
    let mut drawn = TranscriptRandomness {
        server_setup: String::new(),
        registration_client_start: String::new(),
        registration_server_start: String::new(),
        registration_client_finish: String::new(),
        recovery_client_start: String::new(),
        recovery_server_start: String::new(),
        recovery_server_finish: String::new(),
    };
    let mut server_replay: Option<Replay> = None;
    let (server_rng, server_drawn): (Box<dyn coffer::vault::VaultRng>, _) = match &source {
        Source::Generate(seed) => {
            let (rng, drawn) = StreamRng::new(&format!("{seed}/server"));
            (Box::new(rng), Some(drawn))
        }
        Source::Replay(r) => {
            let all = [
                r.server_setup.as_str(),
                &r.registration_server_start,
                &r.recovery_server_start,
                &r.recovery_server_finish,
            ]
            .concat();
            let mut rep = replay(&all)?;
            let rng = rep.rng.take().ok_or("replay")?;
            server_replay = Some(rep);
            (Box::new(rng), None)
        }
    };
    let server_position = || -> usize {
        server_drawn
            .as_ref()
            .map(|d| d.lock().map(|v| v.len()).unwrap_or(0))
            .unwrap_or(0)
    };
    let server_hex = |from: usize, to: usize| -> String {
        server_drawn
            .as_ref()
            .and_then(|d| d.lock().ok().map(|v| hex::encode(&v[from..to])))
            .unwrap_or_default()
    };
    let store = SqliteStore::open(&dir.path().join("vault.db")).map_err(class)?;
    let hsm = SoftHsm::from_key(&[7; 32], &dir.path().join("k")).map_err(class)?;
    let vault =
        VaultServer::open_with_rng(store, hsm, config.clone(), server_rng).map_err(class)?;
    let p0 = server_position();
    drawn.server_setup = server_hex(0, p0);
    let parties = Parties {
        user: user.into(),
        server_id: config.server_id.clone(),
    };
    // A client call drawing from a fresh stream, or from its recorded bytes.
    let client_rng = |name: &str, recorded: &str| -> Result<ClientRng, String> {
        match &source {
            Source::Generate(seed) => {
                let (rng, d) = StreamRng::new(&format!("{seed}/{name}"));
                Ok((Box::new(rng), None, Some(d)))
            }
            Source::Replay(_) => {
                let mut rep = replay(recorded)?;
                let rng = rep.rng.take().ok_or("replay")?;
                Ok((Box::new(rng), Some(rep), None))
            }
        }
    };
    let recorded = match &source {
        Source::Replay(r) => (*r).clone(),
        Source::Generate(_) => drawn.clone(),
    };
    let mut note = |name: &str, rep: &Option<Replay>, d: &Option<Drawn>, slot: &mut String| {
        if let Some(rep) = rep {
            if !rep.exact() {
                inexact.push(name.to_owned());
            }
        }
        if let Some(d) = d {
            *slot = d.lock().map(|v| hex::encode(&v[..])).unwrap_or_default();
        }
    };
    let outcome = (|| -> Result<(), String> {
        if register {
            let (mut rng, rep, d) = client_rng(
                "registration_client_start",
                &recorded.registration_client_start,
            )?;
            let (client, request) =
                RegistrationClient::start_with(password.as_bytes(), &mut *rng).map_err(class)?;
            let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
            note(
                "registration_client_start",
                &rep,
                &d,
                &mut drawn.registration_client_start,
            );
            messages.insert("registration_request".into(), hex::encode(&request));
            let before = server_position();
            let start = vault
                .register_start(TENANT, user, &request)
                .map_err(class)?;
            drawn.registration_server_start = server_hex(before, server_position());
            messages.insert("registration_response".into(), hex::encode(&start.response));
            messages.insert("record_id".into(), hex::encode(start.record_id));
            let (mut rng, rep, d) = client_rng(
                "registration_client_finish",
                &recorded.registration_client_finish,
            )?;
            let (upload, envelope) = client
                .finish_with(
                    &parties,
                    &start.response,
                    &start.ksf,
                    &start.record_id,
                    1,
                    root,
                    &mut *rng,
                )
                .map_err(class)?;
            note(
                "registration_client_finish",
                &rep,
                &d,
                &mut drawn.registration_client_finish,
            );
            messages.insert("registration_upload".into(), hex::encode(&upload));
            messages.insert("envelope".into(), hex::encode(&envelope));
            vault
                .register_finish(TENANT, user, start.record_id, &upload, &envelope, None)
                .map_err(class)?;
        }
        let (mut rng, rep, d) =
            client_rng("recovery_client_start", &recorded.recovery_client_start)?;
        let (client, ke1) =
            RecoveryClient::start_with(recovery_password.as_bytes(), &mut *rng).map_err(class)?;
        let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
        note(
            "recovery_client_start",
            &rep,
            &d,
            &mut drawn.recovery_client_start,
        );
        messages.insert("ke1".into(), hex::encode(&ke1));
        let before = server_position();
        let ke2 = vault.recover_start(TENANT, user, &ke1).map_err(class)?;
        drawn.recovery_server_start = server_hex(before, server_position());
        messages.insert("session_id".into(), hex::encode(ke2.session_id));
        messages.insert("ke2".into(), hex::encode(&ke2.ke2));
        let done = client.finish(&parties, &ke2.ke2, &ke2.ksf).map_err(class)?;
        messages.insert("ke3".into(), hex::encode(&done.ke3));
        messages.insert("export_key".into(), hex::encode(done.export_key()));
        messages.insert("session_key".into(), hex::encode(done.session_key()));
        let before = server_position();
        let released = vault
            .recover_finish(TENANT, &ke2.session_id, &done.ke3)
            .map_err(class)?;
        drawn.recovery_server_finish = server_hex(before, server_position());
        messages.insert("release".into(), hex::encode(&released));
        let (_, _, k) = done.open(&ke2.session_id, &released).map_err(class)?;
        messages.insert("recovered_key".into(), hex::encode(k.as_bytes()));
        Ok(())
    })();
    let outcome = match outcome {
        Ok(()) => "ok".to_owned(),
        Err(c) => c,
    };
    if server_replay.as_ref().is_some_and(|r| !r.exact()) {
        inexact.push("server".into());
    }
    Ok((drawn, messages, outcome, inexact))
}
