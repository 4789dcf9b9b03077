//! `realms.yaml`: threshold recovery across realms (spec/realms.md): the hash functions, whole
//! transcripts (registration, both recovery phases, the combination, hostile realms) with
//! every random byte fixed, and the per-realm guess counts as scripts.

use crate::doc::{Failures, Outcome, VectorFile, SCHEMA_VERSION};
use crate::vault::{replay, Replay, StreamRng};
use coffer::hsm::SoftHsm;
use coffer::internal::realm_hashes;
use coffer::key::RootKey;
use coffer::realms::{
    register, EvalAnswer, Realm, RealmConfig, RealmSet, RealmShare, RealmStore, Recovery,
    SqliteRealmStore,
};
use coffer::store::RecordState;
use coffer::vault::{KsfParams, VaultRng};
use coffer::Classify;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const TENANT: &str = "vectors";

/// A group of `realms.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RealmsGroup {
    /// `HashToGroup` and `HashToScalar` of spec/realms.md §1.
    Hash {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<HashCase>,
    },
    /// One registration and one recovery over several realms, every random byte fixed.
    Transcript {
        /// What the group covers.
        description: String,
        /// The cases.
        cases: Vec<TranscriptCase>,
    },
    /// Scripts of recoveries against fresh realms, with each realm's count after every step.
    GuessCounts {
        /// What the group covers.
        description: String,
        /// The realms' configuration for every script.
        parameters: CountParameters,
        /// The cases.
        cases: Vec<CountScript>,
    },
}

/// The `realms.yaml` file.
pub type RealmsFile = VectorFile<RealmsGroup>;

/// One hash input and its output.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HashCase {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// `hash_to_group` or `hash_to_scalar`.
    pub function: String,
    /// The input (hex).
    pub input: String,
    /// The encoded element or scalar (hex).
    pub output: String,
}

/// A hostile realm's change to what it sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tamper {
    /// The realm that lies.
    pub realm: String,
    /// `evaluation` or `proof` (phase 1), or `release` (phase 2).
    pub field: String,
    /// What it sends instead (hex).
    pub value: String,
}

/// One realm's registration share and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareOutput {
    /// Shamir index.
    pub index: u8,
    /// `k_i` (scalar, hex).
    pub key_share: String,
    /// `s_i` (scalar, hex).
    pub secret_share: String,
    /// `tag_i` (hex).
    pub tag: String,
    /// The grant the realm answered (its first 16 bytes drawn after its fake seed).
    pub grant: String,
}

/// One realm's phase-1 answer, as the realm computed it (before any tampering).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerOutput {
    /// The public part it answered with (hex).
    pub public: String,
    /// Its index.
    pub index: u8,
    /// `Z_i` (hex).
    pub evaluation: String,
    /// `c ‖ σ` (hex).
    pub proof: String,
    /// The phase-2 session (hex).
    pub session: String,
}

/// One realm's phase 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockOutput {
    /// The client's proof (hex).
    pub proof: String,
    /// The realm's release, as the realm computed it (hex), or its error class.
    pub release: String,
}

/// Every random byte of a transcript, by party, in the order drawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TranscriptRandomness {
    /// `register` (§3.1): `reg_id` (16); `k` (64 bytes read little-endian and reduced mod
    /// q, redrawn if zero, as every scalar here); `s` (64); the `t − 1` higher coefficients
    /// of `k`'s polynomial, `a_1` first (64 each); those of `s`'s polynomial; the nonce of
    /// `wrapped` (12).
    pub client_registration: String,
    /// Recovery start: the blind `r` (64).
    pub client_recovery: String,
    /// Each realm's draws: its fake seed (32) at first start; the grant of its registration
    /// (16); in phase 1, the DLEQ nonce `ρ` (64), then the session (16); in phase 2, the
    /// release nonce (12).
    pub realms: BTreeMap<String, String>,
}

/// A registration and a recovery over several realms.
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
    /// The user id.
    pub user: String,
    /// The password registered (text); absent: the user never registers.
    pub password: Option<String>,
    /// The password of the recovery (text).
    pub recovery_password: String,
    /// K (hex).
    pub root_key: String,
    /// The realm ids, in index order.
    pub realm_ids: Vec<String>,
    /// `t`.
    pub threshold: u8,
    /// `L`.
    pub limit: u32,
    /// Argon2id parameters, as text.
    pub ksf: String,
    /// The realms the client's phase 1 reaches; the others do not answer.
    pub answering: Vec<String>,
    /// A hostile realm's change to what it sends, if any.
    pub tamper: Option<Tamper>,
    /// Random bytes, by party.
    pub randomness: TranscriptRandomness,
    /// The public part (hex).
    pub public: String,
    /// Its commitment (hex).
    pub commitment: String,
    /// What each realm receives, and its grant.
    pub shares: BTreeMap<String, ShareOutput>,
    /// The blinded element `M` (hex).
    pub blinded: String,
    /// Each answering realm's phase-1 answer.
    pub answers: BTreeMap<String, AnswerOutput>,
    /// Phase 2, for each realm the client unlocks.
    pub unlocks: BTreeMap<String, UnlockOutput>,
    /// The answering realms the client names as having answered wrongly, space-separated in
    /// id order ("" for none).
    pub named: String,
    /// K as recovered (hex), or "" when recovery fails.
    pub recovered_key: String,
    /// `ok`, or the error class where recovery stops.
    pub outcome: String,
}

/// The realms every script runs against.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountParameters {
    /// The realm ids, in index order.
    pub realm_ids: Vec<String>,
    /// `t`.
    pub threshold: u8,
    /// `L`.
    pub limit: u32,
    /// The user of every script.
    pub user: String,
    /// The registered password.
    pub password: String,
}

/// One script.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountScript {
    /// Stable id.
    pub id: String,
    /// What the case shows.
    pub comment: String,
    /// Expected outcome.
    pub result: Outcome,
    /// Flags (explained in the file's notes).
    pub flags: Vec<String>,
    /// The steps, in order.
    pub steps: Vec<CountStep>,
}

/// One operation and what holds after it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountStep {
    /// `register` (on every realm), `recover` (both phases), or `evaluate` (phase 1 only:
    /// the client stops after combining).
    pub op: String,
    /// The password of the step (`register` uses the group's).
    pub password: Option<String>,
    /// The realms the step reaches (all when absent); the others do not answer.
    pub realms: Option<Vec<String>>,
    /// `ok`, or the client's error class.
    pub outcome: String,
    /// Each realm's count after the step.
    pub guesses: BTreeMap<String, u32>,
    /// Each realm's record state after the step: `active`, `destroyed` or `none`.
    pub states: BTreeMap<String, String>,
}

fn class(e: impl Classify) -> String {
    e.class().to_string()
}

fn root_for(user: &str) -> RootKey {
    RootKey::from_bytes(Sha256::digest(user.as_bytes()).into())
}

type TestRealm = Realm<SqliteRealmStore, SoftHsm>;
/// Gives each realm, by id, its generator.
type RngFor<'a> = dyn FnMut(&str) -> Result<Box<dyn VaultRng>, String> + 'a;
/// A script to run: id, comment, flags, steps, and the outcome its last step must have.
type ScriptPlan = (
    &'static str,
    &'static str,
    &'static [&'static str],
    Vec<CountStep>,
    &'static str,
);

/// Where a party's bytes come from: a fresh stream (generating) or the recorded bytes
/// (checking), whose exact use is checked at the end.
enum Party {
    Stream(std::sync::Arc<std::sync::Mutex<Vec<u8>>>),
    Replay(Replay),
}

impl Party {
    fn new(generate: Option<&str>, recorded: &str) -> Result<(Self, Box<dyn VaultRng>), String> {
        match generate {
            Some(seed) => {
                let (rng, drawn) = StreamRng::new(seed);
                Ok((Party::Stream(drawn), Box::new(rng)))
            }
            None => {
                let mut rep = replay(recorded)?;
                let rng = rep.rng.take().ok_or("replay")?;
                Ok((Party::Replay(rep), Box::new(rng)))
            }
        }
    }

    /// The bytes drawn (generating), or whether exactly the recorded bytes were drawn.
    fn finish(&self, name: &str, inexact: &mut Vec<String>) -> String {
        match self {
            Party::Stream(drawn) => drawn
                .lock()
                .map(|v| hex::encode(&v[..]))
                .unwrap_or_default(),
            Party::Replay(rep) => {
                if !rep.exact() {
                    inexact.push(name.to_owned());
                }
                String::new()
            }
        }
    }
}

/// The inputs of a transcript.
struct Inputs<'a> {
    user: &'a str,
    password: Option<&'a str>,
    recovery_password: &'a str,
    root: &'a RootKey,
    set: RealmSet,
    answering: &'a [String],
    tamper: Option<&'a Tamper>,
}

/// What a transcript run gives, with the parties whose replay was inexact.
struct Run {
    randomness: TranscriptRandomness,
    public: String,
    commitment: String,
    shares: BTreeMap<String, ShareOutput>,
    blinded: String,
    answers: BTreeMap<String, AnswerOutput>,
    unlocks: BTreeMap<String, UnlockOutput>,
    named: String,
    recovered_key: String,
    outcome: String,
    inexact: Vec<String>,
}

fn open_realms(
    dir: &std::path::Path,
    ids: &[String],
    rng_for: &mut RngFor<'_>,
) -> Result<Vec<TestRealm>, String> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let store = SqliteRealmStore::open(&dir.join(format!("realm{i}.db"))).map_err(class)?;
            let hsm =
                SoftHsm::from_key(&[i as u8 + 1; 32], &dir.join(format!("k{i}"))).map_err(class)?;
            let mut config = RealmConfig::new(id);
            config.ksf = KsfParams::TEST;
            Realm::open_with_rng(store, hsm, config, rng_for(id)?).map_err(class)
        })
        .collect()
}

fn tampered(tamper: Option<&Tamper>, realm: &str, field: &str, honest: &[u8]) -> Vec<u8> {
    match tamper {
        Some(t) if t.realm == realm && t.field == field => {
            hex::decode(&t.value).unwrap_or_default()
        }
        _ => honest.to_vec(),
    }
}

fn run(
    inputs: &Inputs<'_>,
    generate: Option<&str>,
    recorded: &TranscriptRandomness,
) -> Result<Run, String> {
    let ids = &inputs.set.realm_ids;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut parties: BTreeMap<String, Party> = BTreeMap::new();
    let mut rng_for = |id: &str| -> Result<Box<dyn VaultRng>, String> {
        let recorded = recorded.realms.get(id).map(String::as_str).unwrap_or("");
        let (party, rng) = Party::new(generate.map(|s| format!("{s}/{id}")).as_deref(), recorded)?;
        parties.insert(id.to_owned(), party);
        Ok(rng)
    };
    let realms = open_realms(dir.path(), ids, &mut rng_for)?;
    let mut out = Run {
        randomness: TranscriptRandomness {
            client_registration: String::new(),
            client_recovery: String::new(),
            realms: BTreeMap::new(),
        },
        public: String::new(),
        commitment: String::new(),
        shares: BTreeMap::new(),
        blinded: String::new(),
        answers: BTreeMap::new(),
        unlocks: BTreeMap::new(),
        named: String::new(),
        recovered_key: String::new(),
        outcome: String::new(),
        inexact: Vec::new(),
    };
    let seed = |name: &str| generate.map(|s| format!("{s}/{name}"));
    let (registering, mut reg_rng) = Party::new(
        seed("client_registration").as_deref(),
        &recorded.client_registration,
    )?;
    let (recovering, mut rec_rng) = Party::new(
        seed("client_recovery").as_deref(),
        &recorded.client_recovery,
    )?;
    let result = (|| -> Result<(), String> {
        if let Some(password) = inputs.password {
            let shares: Vec<RealmShare> = register(
                inputs.user,
                password.as_bytes(),
                inputs.root,
                &inputs.set,
                &mut *reg_rng,
            )
            .map_err(class)?;
            out.public = hex::encode(shares[0].public.encode());
            out.commitment = hex::encode(shares[0].public.commitment());
            for (share, realm) in shares.iter().zip(&realms) {
                let grant = realm
                    .register(TENANT, inputs.user, share, None)
                    .map_err(class)?;
                out.shares.insert(
                    share.realm_id.clone(),
                    ShareOutput {
                        index: share.index,
                        key_share: hex::encode(&share.key_share[..]),
                        secret_share: hex::encode(&share.secret_share[..]),
                        tag: hex::encode(&share.tag[..]),
                        grant: hex::encode(grant),
                    },
                );
            }
        }
        let (recovery, blinded) = Recovery::start(
            inputs.user,
            inputs.recovery_password.as_bytes(),
            &inputs.set,
            &mut *rec_rng,
        )
        .map_err(class)?;
        out.blinded = hex::encode(blinded);
        let mut answers = Vec::new();
        for (id, realm) in ids.iter().zip(&realms) {
            if !inputs.answering.contains(id) {
                answers.push((id.clone(), Err("does not answer".to_owned())));
                continue;
            }
            let answer = realm
                .evaluate(TENANT, inputs.user, &blinded)
                .map_err(class)?;
            out.answers.insert(
                id.clone(),
                AnswerOutput {
                    public: hex::encode(&answer.public),
                    index: answer.index,
                    evaluation: hex::encode(answer.evaluation),
                    proof: hex::encode(answer.proof),
                    session: hex::encode(answer.session),
                },
            );
            let sent = EvalAnswer {
                evaluation: tampered(inputs.tamper, id, "evaluation", &answer.evaluation)
                    .try_into()
                    .map_err(|_| "a tampered evaluation of the wrong length")?,
                proof: tampered(inputs.tamper, id, "proof", &answer.proof)
                    .try_into()
                    .map_err(|_| "a tampered proof of the wrong length")?,
                ..answer
            };
            answers.push((id.clone(), Ok(sent)));
        }
        let unlocking = recovery.combine(answers).map_err(class)?;
        let mut releases = Vec::new();
        for request in unlocking.requests() {
            let at = ids
                .iter()
                .position(|id| *id == request.realm)
                .ok_or("unknown realm")?;
            let release = realms[at].unlock(TENANT, &request.session, &request.proof);
            out.unlocks.insert(
                request.realm.clone(),
                UnlockOutput {
                    proof: hex::encode(request.proof),
                    release: match &release {
                        Ok(r) => hex::encode(r),
                        Err(e) => e.class().to_string(),
                    },
                },
            );
            let sent = release
                .map(|r| tampered(inputs.tamper, &request.realm, "release", &r))
                .map_err(|e| e.to_string());
            releases.push((request.realm.clone(), sent));
        }
        let (root, problems) = unlocking.finish(releases).map_err(class)?;
        let mut named: Vec<String> = problems
            .into_iter()
            .map(|(realm, _)| realm)
            .filter(|realm| inputs.answering.contains(realm))
            .collect();
        named.sort();
        named.dedup();
        out.named = named.join(" ");
        out.recovered_key = hex::encode(root.as_bytes());
        Ok(())
    })();
    out.outcome = match result {
        Ok(()) => "ok".into(),
        Err(c) => c,
    };
    drop(realms);
    out.randomness.client_registration =
        registering.finish("client_registration", &mut out.inexact);
    out.randomness.client_recovery = recovering.finish("client_recovery", &mut out.inexact);
    for (id, party) in &parties {
        let drawn = party.finish(id, &mut out.inexact);
        out.randomness.realms.insert(id.clone(), drawn);
    }
    Ok(out)
}

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The case list: (id, comment, flags, user, registers, recovery password, realms, t,
/// answering, tamper-builder, expected outcome, expected named).
struct Plan {
    id: &'static str,
    comment: &'static str,
    flags: &'static [&'static str],
    user: &'static str,
    registers: bool,
    recovery_password: &'static str,
    realm_ids: Vec<String>,
    threshold: u8,
    answering: Vec<String>,
    /// Builds the tamper from an honest run's outputs.
    tamper: Option<fn(&Run) -> Tamper>,
    outcome: &'static str,
    named: &'static str,
}

const PASSWORD: &str = "correct horse";

fn plans() -> Vec<Plan> {
    let three = ids(&["realm-a", "realm-b", "realm-c"]);
    let five = ids(&["r1", "r2", "r3", "r4", "r5"]);
    let plan = |id, comment, flags, realm_ids: &Vec<String>, t, answering: &[&str]| Plan {
        id,
        comment,
        flags,
        user: "alice",
        registers: true,
        recovery_password: PASSWORD,
        realm_ids: realm_ids.clone(),
        threshold: t,
        answering: ids(answering),
        tamper: None,
        outcome: "ok",
        named: "",
    };
    vec![
        plan("two_of_three", "2-of-3: registration on three realms, recovery with all three answering; every realm unlocks", &["Transcript"], &three, 2, &["realm-a", "realm-b", "realm-c"]),
        Plan {
            recovery_password: "battery staple",
            outcome: "wrong_password",
            ..plan("wrong_password", "2-of-3, another password: the combined output fails `check`, every answering realm has counted, and no phase 2 is sent", &["Transcript", "Counting"], &three, 2, &["realm-a", "realm-b", "realm-c"])
        },
        plan("one_realm_down", "2-of-3 with realm-b not answering: any two realms recover K", &["Transcript", "Availability"], &three, 2, &["realm-a", "realm-c"]),
        Plan {
            tamper: Some(|run| Tamper { realm: "realm-b".into(), field: "evaluation".into(), value: run.answers["realm-a"].evaluation.clone() }),
            named: "realm-b",
            ..plan("wrong_evaluation", "realm-b sends realm-a's evaluation as its own: its proof fails against P_2, it is named, and realms a and c recover K", &["Transcript", "Hostile"], &three, 2, &["realm-a", "realm-b", "realm-c"])
        },
        Plan {
            tamper: Some(|run| {
                let mut proof = hex::decode(&run.answers["realm-c"].proof).unwrap_or_default();
                if let Some(b) = proof.get_mut(40) { *b ^= 1; }
                Tamper { realm: "realm-c".into(), field: "proof".into(), value: hex::encode(proof) }
            }),
            named: "realm-c",
            ..plan("wrong_proof", "realm-c's proof has one bit changed: named, and realms a and b recover K", &["Transcript", "Hostile"], &three, 2, &["realm-a", "realm-b", "realm-c"])
        },
        Plan {
            tamper: Some(|run| {
                let mut release = hex::decode(&run.unlocks["r4"].release).unwrap_or_default();
                if let Some(b) = release.last_mut() { *b ^= 1; }
                Tamper { realm: "r4".into(), field: "release".into(), value: hex::encode(release) }
            }),
            named: "r4",
            ..plan("three_of_five_wrong_release", "3-of-5 with r2 down and r4's release altered: r4 is named and r1, r3, r5 recover K", &["Transcript", "Hostile", "Availability"], &five, 3, &["r1", "r3", "r4", "r5"])
        },
        Plan {
            outcome: "io",
            ..plan("below_threshold", "3-of-5 with only two realms answering: not enough realms, nothing combined", &["Transcript", "Availability"], &five, 3, &["r1", "r5"])
        },
        plan("one_of_one", "a single realm (1-of-1): the combination is the realm's evaluation itself", &["Transcript"], &ids(&["solo"]), 1, &["solo"]),
        Plan {
            user: "nobody",
            registers: false,
            outcome: "no_record",
            ..plan("unknown_user", "a user never registered: every realm answers a fake 1-of-1 registration whose proof verifies; a 2-of-3 client ignores them and reports no_record", &["Transcript", "Fake"], &three, 2, &["realm-a", "realm-b", "realm-c"])
        },
    ]
}

/// The transcripts, generated and checked against their intent.
fn transcripts() -> anyhow::Result<Vec<TranscriptCase>> {
    let mut cases = Vec::new();
    for plan in plans() {
        let case_id = format!("realms.transcript.{}", plan.id);
        let root = root_for(plan.user);
        let set = RealmSet {
            realm_ids: plan.realm_ids.clone(),
            threshold: plan.threshold,
            limit: 10,
            ksf: KsfParams::TEST,
        };
        let empty = TranscriptRandomness {
            client_registration: String::new(),
            client_recovery: String::new(),
            realms: BTreeMap::new(),
        };
        let mut inputs = Inputs {
            user: plan.user,
            password: plan.registers.then_some(PASSWORD),
            recovery_password: plan.recovery_password,
            root: &root,
            set: set.clone(),
            answering: &plan.answering,
            tamper: None,
        };
        let honest =
            run(&inputs, Some(&case_id), &empty).map_err(|e| anyhow::anyhow!("{case_id}: {e}"))?;
        let tamper = plan.tamper.map(|f| f(&honest));
        inputs.tamper = tamper.as_ref();
        let out =
            run(&inputs, Some(&case_id), &empty).map_err(|e| anyhow::anyhow!("{case_id}: {e}"))?;
        let outcome = out.outcome.as_str();
        anyhow::ensure!(
            outcome == plan.outcome && out.named == plan.named,
            "{case_id}: {} naming {:?}, expected {} naming {:?}",
            out.outcome,
            out.named,
            plan.outcome,
            plan.named
        );
        if plan.outcome == "ok" {
            anyhow::ensure!(
                out.recovered_key == hex::encode(root.as_bytes()),
                "{case_id}: another K"
            );
        }
        cases.push(TranscriptCase {
            id: case_id,
            comment: plan.comment.into(),
            result: Outcome::Valid,
            flags: plan.flags.iter().map(|f| f.to_string()).collect(),
            user: plan.user.into(),
            password: inputs.password.map(str::to_owned),
            recovery_password: plan.recovery_password.into(),
            root_key: hex::encode(root.as_bytes()),
            realm_ids: set.realm_ids.clone(),
            threshold: set.threshold,
            limit: set.limit,
            ksf: set.ksf.name(),
            answering: plan.answering.clone(),
            tamper,
            randomness: out.randomness,
            public: out.public,
            commitment: out.commitment,
            shares: out.shares,
            blinded: out.blinded,
            answers: out.answers,
            unlocks: out.unlocks,
            named: out.named,
            recovered_key: out.recovered_key,
            outcome: out.outcome,
        });
    }
    Ok(cases)
}

fn verify_transcript(case: &TranscriptCase, failures: &mut Failures) {
    let id = case.id.as_str();
    let Ok(root) = hex::decode(&case.root_key)
        .map_err(|e| e.to_string())
        .and_then(|b| <[u8; 32]>::try_from(b).map_err(|_| "K is not 32 bytes".to_string()))
    else {
        failures.add(id, "root_key is not 32 bytes of hex");
        return;
    };
    let root = RootKey::from_bytes(root);
    let ksf = match KsfParams::parse(&case.ksf) {
        Ok(k) => k,
        Err(e) => return failures.add(id, format!("ksf: {e}")),
    };
    let inputs = Inputs {
        user: &case.user,
        password: case.password.as_deref(),
        recovery_password: &case.recovery_password,
        root: &root,
        set: RealmSet {
            realm_ids: case.realm_ids.clone(),
            threshold: case.threshold,
            limit: case.limit,
            ksf,
        },
        answering: &case.answering,
        tamper: case.tamper.as_ref(),
    };
    let out = match run(&inputs, None, &case.randomness) {
        Ok(out) => out,
        Err(e) => return failures.add(id, e),
    };
    if !out.inexact.is_empty() {
        failures.add(
            id,
            format!("randomness not drawn exactly by {}", out.inexact.join(", ")),
        );
    }
    failures.expect_eq(id, "public", &case.public, &out.public);
    failures.expect_eq(id, "commitment", &case.commitment, &out.commitment);
    failures.expect_eq(id, "shares", &case.shares, &out.shares);
    failures.expect_eq(id, "blinded", &case.blinded, &out.blinded);
    failures.expect_eq(id, "answers", &case.answers, &out.answers);
    failures.expect_eq(id, "unlocks", &case.unlocks, &out.unlocks);
    failures.expect_eq(id, "named", &case.named, &out.named);
    failures.expect_eq(id, "recovered_key", &case.recovered_key, &out.recovered_key);
    failures.expect_eq(id, "outcome", &case.outcome, &out.outcome);
}

fn hash_cases() -> Vec<HashCase> {
    let inputs: [(&str, &str, &[u8]); 4] = [
        ("empty", "the empty input", b""),
        ("abc", "three bytes", b"abc"),
        ("access", "32 bytes, the size of `access`", &[0x5a; 32]),
        (
            "long",
            "a 300-byte input (longer than one SHA-512 block)",
            &[0xa5; 300],
        ),
    ];
    let mut cases = Vec::new();
    for function in ["hash_to_group", "hash_to_scalar"] {
        for (name, comment, input) in inputs {
            cases.push(HashCase {
                id: format!("realms.{function}.{name}"),
                comment: comment.into(),
                result: Outcome::Valid,
                flags: vec!["Hash".into()],
                function: function.into(),
                input: hex::encode(input),
                output: hash(function, input).unwrap_or_default(),
            });
        }
    }
    cases
}

fn hash(function: &str, input: &[u8]) -> Option<String> {
    match function {
        "hash_to_group" => Some(hex::encode(realm_hashes::to_group(input))),
        "hash_to_scalar" => Some(hex::encode(realm_hashes::to_scalar(input))),
        _ => None,
    }
}

/// The scripts' configuration.
fn count_parameters() -> CountParameters {
    CountParameters {
        realm_ids: ids(&["realm-a", "realm-b", "realm-c"]),
        threshold: 2,
        limit: 3,
        user: "alice".into(),
        password: PASSWORD.into(),
    }
}

/// Runs a script's steps against fresh realms; returns each step's outcome, counts and states.
fn run_script(params: &CountParameters, steps: &[CountStep]) -> Result<Vec<CountStep>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut os = |_: &str| -> Result<Box<dyn VaultRng>, String> { Ok(Box::new(rand_core::OsRng)) };
    let realms = open_realms(dir.path(), &params.realm_ids, &mut os)?;
    let set = RealmSet {
        realm_ids: params.realm_ids.clone(),
        threshold: params.threshold,
        limit: params.limit,
        ksf: KsfParams::TEST,
    };
    let user = params.user.as_str();
    let root = root_for(user);
    let mut done = Vec::new();
    for step in steps {
        let reached = step
            .realms
            .clone()
            .unwrap_or_else(|| params.realm_ids.clone());
        let password = step.password.as_deref().unwrap_or(&params.password);
        let outcome = (|| -> Result<(), String> {
            match step.op.as_str() {
                "register" => {
                    let shares = register(
                        user,
                        params.password.as_bytes(),
                        &root,
                        &set,
                        &mut rand_core::OsRng,
                    )
                    .map_err(class)?;
                    for (share, realm) in shares.iter().zip(&realms) {
                        realm.register(TENANT, user, share, None).map_err(class)?;
                    }
                    Ok(())
                }
                "recover" | "evaluate" => {
                    let (recovery, blinded) =
                        Recovery::start(user, password.as_bytes(), &set, &mut rand_core::OsRng)
                            .map_err(class)?;
                    let answers = params
                        .realm_ids
                        .iter()
                        .zip(&realms)
                        .map(|(id, realm)| {
                            let answer = if reached.contains(id) {
                                realm
                                    .evaluate(TENANT, user, &blinded)
                                    .map_err(|e| e.to_string())
                            } else {
                                Err("does not answer".into())
                            };
                            (id.clone(), answer)
                        })
                        .collect();
                    let unlocking = recovery.combine(answers).map_err(class)?;
                    if step.op == "evaluate" {
                        return Ok(());
                    }
                    let releases = unlocking
                        .requests()
                        .iter()
                        .map(|q| {
                            let at = params
                                .realm_ids
                                .iter()
                                .position(|id| *id == q.realm)
                                .unwrap_or(0);
                            (
                                q.realm.clone(),
                                realms[at]
                                    .unlock(TENANT, &q.session, &q.proof)
                                    .map_err(|e| e.to_string()),
                            )
                        })
                        .collect();
                    let (k, _) = unlocking.finish(releases).map_err(class)?;
                    if k != root {
                        return Err("another K".into());
                    }
                    Ok(())
                }
                other => Err(format!("unknown op {other}")),
            }
        })();
        let mut guesses = BTreeMap::new();
        let mut states = BTreeMap::new();
        for (id, realm) in params.realm_ids.iter().zip(&realms) {
            let record = realm.store().get(TENANT, user).map_err(class)?;
            let (g, state) = match record {
                Some(r) => (
                    r.guesses,
                    match r.state {
                        RecordState::Active => "active",
                        RecordState::Destroyed => "destroyed",
                        RecordState::Deleted => "deleted",
                    },
                ),
                None => (0, "none"),
            };
            guesses.insert(id.clone(), g);
            states.insert(id.clone(), state.to_owned());
        }
        done.push(CountStep {
            outcome: match outcome {
                Ok(()) => "ok".into(),
                Err(c) => c,
            },
            guesses,
            states,
            ..step.clone()
        });
    }
    Ok(done)
}

/// A step with its expected results left blank; `run_script` fills them.
fn op(op: &str, password: Option<&str>, realms: Option<&[&str]>) -> CountStep {
    CountStep {
        op: op.into(),
        password: password.map(str::to_owned),
        realms: realms.map(ids),
        outcome: String::new(),
        guesses: BTreeMap::new(),
        states: BTreeMap::new(),
    }
}

fn scripts() -> anyhow::Result<Vec<CountScript>> {
    let params = count_parameters();
    let wrong = Some("battery staple");
    let register = || op("register", None, None);
    let guess = |realms| op("recover", wrong, realms);
    let right = |realms| op("recover", None, realms);
    #[rustfmt::skip]
    let plans: Vec<ScriptPlan> = vec![
        ("counts_and_reset", "every answering realm counts each wrong guess; the right password unlocks and resets all three", &["Counting"],
            vec![register(), guess(None), guess(None), right(None)], "ok"),
        ("reset_only_where_unlocked", "a recovery through realms a and b resets only them; realm c keeps its count", &["Counting"],
            vec![register(), guess(None), guess(None), right(Some(&["realm-a", "realm-b"]))], "ok"),
        ("phase_one_alone_counts", "a recovery abandoned after phase 1 still counts on every realm that answered", &["Counting"],
            vec![register(), op("evaluate", None, None), op("evaluate", None, Some(&["realm-b", "realm-c"])), right(None)], "ok"),
        ("destroyed_at_limit", "L = 3: three wrong guesses use every realm's limit; the next evaluation destroys each record, and the right password then finds no registration", &["Limit", "Destruction"],
            vec![register(), guess(None), guess(None), guess(None), guess(None), right(None)], "no_record"),
        ("one_realm_destroyed", "guesses through realm c alone are counted there although nothing can be combined; c is destroyed at its limit, and realms a and b still recover K", &["Limit", "Destruction", "Availability"],
            vec![register(), guess(Some(&["realm-c"])), guess(Some(&["realm-c"])), guess(Some(&["realm-c"])), guess(Some(&["realm-c"])), right(None)], "ok"),
        ("two_realms_destroyed", "once two of three realms are destroyed, fewer than t hold shares: K is gone for good", &["Limit", "Destruction"],
            vec![register(), guess(Some(&["realm-b", "realm-c"])), guess(Some(&["realm-b", "realm-c"])), guess(Some(&["realm-b", "realm-c"])), guess(Some(&["realm-b", "realm-c"])), right(None)], "locked"),
        ("last_guess_right", "with every realm at its last guess, the right password still recovers K and resets", &["Limit"],
            vec![register(), guess(None), guess(None), right(None)], "ok"),
        ("unknown_user", "a user never registered: fakes only, counted nowhere", &["Fake"],
            vec![right(None), guess(None)], "no_record"),
    ];
    let mut cases = Vec::new();
    for (id, comment, flags, steps, last) in plans {
        let steps = run_script(&params, &steps).map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
        let outcome = steps.last().map(|s| s.outcome.as_str()).unwrap_or("");
        anyhow::ensure!(
            outcome == last,
            "realms.count.{id}: ends {outcome}, expected {last}"
        );
        cases.push(CountScript {
            id: format!("realms.count.{id}"),
            comment: comment.into(),
            result: Outcome::Valid,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            steps,
        });
    }
    Ok(cases)
}

/// Builds `realms.yaml`.
pub fn generate() -> anyhow::Result<RealmsFile> {
    let groups = vec![
        RealmsGroup::Hash {
            description: "Compute `function` of `input` (spec/realms.md §1) and compare the \
                          encoding with `output`."
                .into(),
            cases: hash_cases(),
        },
        RealmsGroup::Transcript {
            description: "Register `password` for `user` with K = `root_key` on the realms \
                          (ids in index order, threshold, limit, Argon2id parameters as given; \
                          every realm fresh, tenant \"vectors\"), each party drawing exactly \
                          the bytes of `randomness` in order. Then recover with \
                          `recovery_password`, phase 1 reaching only `answering`; a `tamper` \
                          replaces one field of what that realm sends (its honest output is \
                          still the one recorded). Every output must be as given, the client \
                          must name exactly `named`, and the flow must end with `outcome` \
                          (`io`: fewer than t realms answered)."
                .into(),
            cases: transcripts()?,
        },
        RealmsGroup::GuessCounts {
            description: "Run each script against fresh realms with these parameters (tenant \
                          \"vectors\"; K = SHA-256(user); Argon2id m=256 t=1 p=1). A \
                          `recover` runs both phases through the realms listed (all when \
                          absent; the others do not answer); `evaluate` stops after the \
                          client combines. After each step, the client's outcome and every \
                          realm's count and state must be as given."
                .into(),
            parameters: count_parameters(),
            cases: scripts()?,
        },
    ];
    let number_of_cases = groups
        .iter()
        .map(|g| match g {
            RealmsGroup::Hash { cases, .. } => cases.len(),
            RealmsGroup::Transcript { cases, .. } => cases.len(),
            RealmsGroup::GuessCounts { cases, .. } => cases.len(),
        })
        .sum();
    Ok(VectorFile {
        schema: SCHEMA_VERSION.into(),
        topic: "realms".into(),
        description: "Threshold recovery of K across realms: the hash functions, transcripts of \
                      registration and both recovery phases with every random byte fixed \
                      (right and wrong passwords, realms down, wrong evaluations, proofs and \
                      releases, fakes), and the per-realm guess counts as scripts."
            .into(),
        how_to_apply: "Hash cases: recompute. Transcripts: run the client and the realms with \
                       the recorded randomness and compare every output (or, for a client alone, \
                       feed it the recorded answers and compare its messages and K). Scripts: \
                       run against fresh realms and compare after every step."
            .into(),
        sources: vec!["spec/realms.md §1 (conventions, hashes), §3 (registration), §4 (phase 1), §5 (DLEQ), §6 (phase 2, fakes), §8 (counting)".into()],
        notes: BTreeMap::from([
            ("Availability".into(), "Realms that do not answer: recovery needs any t that do.".into()),
            ("Counting".into(), "Every phase-1 evaluation is counted before the realm answers; an unlock resets that realm only.".into()),
            ("Destruction".into(), "An evaluation at the limit destroys the realm's record; below t holders K is gone.".into()),
            ("Fake".into(), "Fake 1-of-1 answers for users without a record (§6.4).".into()),
            ("Hash".into(), "HashToGroup and HashToScalar (§1).".into()),
            ("Hostile".into(), "A realm that answers wrongly: named, and recovery goes on with the others.".into()),
            ("Limit".into(), "The per-realm guess limit L.".into()),
            ("Transcript".into(), "Every message of a flow, with all randomness fixed.".into()),
        ]),
        number_of_cases,
        groups,
    })
}

/// Checks every case against the reference.
pub fn verify(file: &RealmsFile) -> Failures {
    let mut failures = Failures::default();
    for group in &file.groups {
        match group {
            RealmsGroup::Hash { cases, .. } => {
                for case in cases {
                    match hex::decode(&case.input) {
                        Ok(input) => failures.expect_eq(
                            &case.id,
                            "output",
                            &Some(case.output.clone()),
                            &hash(&case.function, &input),
                        ),
                        Err(e) => failures.add(&case.id, format!("input: {e}")),
                    }
                }
            }
            RealmsGroup::Transcript { cases, .. } => {
                for case in cases {
                    verify_transcript(case, &mut failures);
                }
            }
            RealmsGroup::GuessCounts {
                parameters, cases, ..
            } => {
                for case in cases {
                    match run_script(parameters, &case.steps) {
                        Ok(done) => {
                            for (i, (want, got)) in case.steps.iter().zip(&done).enumerate() {
                                let at = format!("{} step {}", case.id, i + 1);
                                failures.expect_eq(&at, "outcome", &want.outcome, &got.outcome);
                                failures.expect_eq(&at, "guesses", &want.guesses, &got.guesses);
                                failures.expect_eq(&at, "states", &want.states, &got.states);
                            }
                        }
                        Err(e) => failures.add(&case.id, e),
                    }
                }
            }
        }
    }
    failures
}
