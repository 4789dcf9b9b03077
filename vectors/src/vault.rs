//! `vault.yaml`: the record state machine of spec/vault.md §3-§4 as scripted sequences of
//! operations, with the outcome, state and guesses left after each step. (The OPAQUE
//! transcripts with fixed randomness are still to come.)

use crate::doc::{Failures, Outcome, VectorFile, SCHEMA_VERSION};
use coffer::hsm::SoftHsm;
use coffer::key::RootKey;
use coffer::store::{RecordState, SqliteStore};
use coffer::vault::client::Parties;
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
    /// verified), or `delete`.
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
    let groups = vec![VaultGroup::StateMachine {
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
    }];
    let number_of_cases = groups
        .iter()
        .map(|g| match g {
            VaultGroup::StateMachine { cases, .. } => cases.len(),
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
            ("Delete".into(), "Deletion by the record's holder.".into()),
            ("Destruction".into(), "The record is destroyed at its limit and never restored.".into()),
            ("Fake".into(), "Fake KE2 for users without an active record.".into()),
            ("Limit".into(), "Guess limits other than the default.".into()),
            ("Register".into(), "Registration rules.".into()),
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
) -> Result<([u8; 16], coffer::vault::client::LoginDone), String> {
    let (client, ke1) = RecoveryClient::start(password.as_bytes()).map_err(class)?;
    let ke2 = vault.recover_start(TENANT, user, &ke1).map_err(class)?;
    let done = client.finish(parties, &ke2.ke2, &ke2.ksf).map_err(class)?;
    Ok((ke2.session_id, done))
}

fn run_step(vault: &Vault, config: &ServerConfig, s: &Step) -> Result<(), String> {
    let parties = Parties {
        user: s.user.clone(),
        server_id: config.server_id.clone(),
    };
    let password = s.password.clone().unwrap_or_default();
    match s.op.as_str() {
        "register" => {
            let (client, request) =
                RegistrationClient::start(password.as_bytes()).map_err(class)?;
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
        "change_password_unverified" => {
            // A registration naming a session that never verified.
            let (_, request) = RegistrationClient::start(password.as_bytes()).map_err(class)?;
            vault
                .change_password_start(TENANT, &[0x5a; 16], &request)
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
        let VaultGroup::StateMachine {
            parameters, cases, ..
        } = group;
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
            for (i, s) in case.steps.iter().enumerate() {
                let at = format!("{} step {} ({})", case.id, i + 1, s.op);
                let outcome = match run_step(&vault, &config, s) {
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
