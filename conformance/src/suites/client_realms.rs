//! The `client-realms` suite (spec/conformance.md §13): the runner plays three realms on
//! loopback, each a reference realm with its own store and master key behind an endpoint
//! that answers honestly or plays one hostile move per case, and asks the client adapter to
//! register and recover 2-of-3 through the shim. Moves: down (a closed port), never
//! answering, a wrong evaluation, a wrong or missing-proof answer, another realm's answer
//! passed off as its own, a fake (as for a destroyed record), another user's record, a
//! tampered, replayed or wrong-share release, `locked` at unlock, another realm id, and a
//! refused registration. The client must recover the registered K whenever two honest
//! realms answer, name exactly the realms that failed, fail with the class the spec names
//! otherwise, never send phase 2 after a wrong password, and never register with a realm
//! that names itself otherwise.

use crate::case::{CaseResult, Level, Status};
use crate::local_vault::serve_loopback;
use crate::shim::Adapter;
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use coffer::error::Classify;
use coffer::hsm::SoftHsm;
use coffer::http::api::*;
use coffer::http::status_of;
use coffer::key::RootKey;
use coffer::realms::{
    register, PublicPart, Realm, RealmConfig, RealmError, RealmSet, RealmShare, Recovery,
    SqliteRealmStore,
};
use coffer::vault::KsfParams;
use rand_core::OsRng;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zeroize::Zeroizing;

const TENANT: &str = "default";
const TOKEN: &str = "runner-played-realm";
const PASSWORD: &str = "correct horse battery staple";
const REALM_IDS: [&str; 3] = ["realm-a", "realm-b", "realm-c"];
/// ristretto255's generator, encoded (RFC 9496 §4.4): an element the client did not send.
const BASEPOINT: &str = "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76";

/// What one played realm does during a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Play {
    /// Forwards to its reference realm.
    Honest,
    /// Its URL is a closed loopback port.
    Down,
    /// Accepts the evaluation and never answers.
    Hangs,
    /// Answers with `k_i` applied to another element, with the proof for the right one.
    WrongEvaluation,
    /// Flips one byte of the DLEQ proof.
    WrongProof,
    /// Answers with the identity element as its evaluation.
    IdentityEvaluation,
    /// Passes off realm-a's answer (index 1) as its own.
    StolenIndex,
    /// Answers as for an unknown user (what a realm says after destruction).
    Fake,
    /// Answers with the record of the user `<user>-other` (same password, another K).
    OtherUser,
    /// Flips one byte of its release.
    TamperedRelease,
    /// Answers phase 2 with a release of an earlier session.
    ReplayedRelease,
    /// Releases a well-sealed share that is not its share.
    WrongShare,
    /// Answers phase 2 with 423 `locked`.
    LockedAtUnlock,
    /// `GET /v1/realm` names another realm.
    WrongRealmId,
    /// Refuses the registration with 422 `unsupported`.
    RefusesRegistration,
}

use Play::*;

/// One played realm: its reference realm, its move, and what it saw.
struct Played {
    id: &'static str,
    realm: Realm<SqliteRealmStore, SoftHsm>,
    play: Mutex<Play>,
    /// Phase-2 requests received, any session.
    unlocks: AtomicUsize,
    /// Registration requests received.
    shares: AtomicUsize,
    /// Grants its registrations answered.
    grants: Mutex<Vec<[u8; 16]>>,
    /// Deletions done with one of those grants.
    deleted_with_grant: AtomicUsize,
    /// Phase-1 sessions and the user they are for (phase 2 names only the session).
    sessions: Mutex<HashMap<[u8; 16], String>>,
    /// The runner's own registrations: each user's tag here (for a wrong share).
    tags: Mutex<HashMap<String, Zeroizing<[u8; 32]>>>,
    /// A release of an earlier session, per user.
    recorded: Mutex<HashMap<String, Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Played {
    fn play(&self) -> Play {
        *lock(&self.play)
    }
}

#[derive(Clone)]
struct Endpoint {
    realms: Arc<Vec<Played>>,
    me: usize,
}

impl Endpoint {
    fn played(&self) -> &Played {
        &self.realms[self.me]
    }
}

/// An error answered as a realm would.
fn refuse(class: &str, message: &str) -> Response {
    let status = coffer::ErrorClass::from_name(class).map_or(500, status_of);
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(ErrorBody {
            error: class.into(),
            message: message.into(),
        }),
    )
        .into_response()
}

fn realm_error(e: RealmError) -> Response {
    refuse(e.class().as_str(), &e.to_string())
}

/// A request body, or why it is malformed.
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// Exactly `N` bytes, or why not.
fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], String> {
    bytes.try_into().map_err(|_| format!("expected {N} bytes"))
}

fn malformed(why: String) -> Response {
    refuse("malformed", &why)
}

async fn info(State(ep): State<Endpoint>) -> Response {
    let played = ep.played();
    let realm_id = match played.play() {
        WrongRealmId => "an-impostor",
        _ => played.id,
    };
    Json(RealmInfo {
        realm_id: realm_id.into(),
    })
    .into_response()
}

async fn register_share(
    State(ep): State<Endpoint>,
    Path(user): Path<String>,
    body: Bytes,
) -> Response {
    let played = ep.played();
    played.shares.fetch_add(1, Ordering::SeqCst);
    if played.play() == RefusesRegistration {
        return refuse(
            "unsupported",
            "this realm refuses the registration (played)",
        );
    }
    let req: RealmRegisterRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return malformed(e),
    };
    let share = match (|| {
        Ok::<_, String>(RealmShare {
            realm_id: req.realm_id.clone(),
            index: req.index,
            public: PublicPart::decode(&req.public.0).map_err(|e| e.to_string())?,
            key_share: Zeroizing::new(fixed(&req.key_share.0)?),
            secret_share: Zeroizing::new(fixed(&req.secret_share.0)?),
            tag: Zeroizing::new(fixed(&req.tag.0)?),
        })
    })() {
        Ok(s) => s,
        Err(e) => return malformed(e),
    };
    match played.realm.register(TENANT, &user, &share, None) {
        Ok(grant) => {
            lock(&played.grants).push(grant);
            Json(RealmRegisterResponse {
                registered: true,
                grant: B64(grant.to_vec()),
            })
            .into_response()
        }
        Err(e) => realm_error(e),
    }
}

async fn evaluate(State(ep): State<Endpoint>, Path(user): Path<String>, body: Bytes) -> Response {
    let played = ep.played();
    let req: RealmEvaluateRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return malformed(e),
    };
    let blinded = &req.blinded.0;
    let answer = match played.play() {
        Hangs => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return refuse("io", "never reached");
        }
        Fake => played
            .realm
            .evaluate(TENANT, &format!("{user}-nobody"), blinded),
        OtherUser => played
            .realm
            .evaluate(TENANT, &format!("{user}-other"), blinded),
        StolenIndex => ep.realms[0].realm.evaluate(TENANT, &user, blinded),
        _ => played.realm.evaluate(TENANT, &user, blinded),
    };
    let mut answer = match answer {
        Ok(a) => a,
        Err(e) => return realm_error(e),
    };
    match played.play() {
        WrongEvaluation => {
            let other = hex::decode(BASEPOINT).unwrap_or_default();
            match played.realm.evaluate(TENANT, &user, &other) {
                Ok(wrong) => answer.evaluation = wrong.evaluation,
                Err(e) => return realm_error(e),
            }
        }
        WrongProof => answer.proof[40] ^= 1,
        IdentityEvaluation => answer.evaluation = [0; 32],
        _ => {}
    }
    lock(&played.sessions).insert(answer.session, user);
    Json(RealmEvaluateResponse {
        public: B64(answer.public),
        index: answer.index,
        evaluation: B64(answer.evaluation.to_vec()),
        proof: B64(answer.proof.to_vec()),
        session: B64(answer.session.to_vec()),
    })
    .into_response()
}

async fn unlock(State(ep): State<Endpoint>, Path(session): Path<String>, body: Bytes) -> Response {
    use base64::Engine;
    let played = ep.played();
    played.unlocks.fetch_add(1, Ordering::SeqCst);
    let session = match base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&session)
        .map_err(|_| "session ids are base64url".to_owned())
        .and_then(|s| fixed::<16>(&s))
    {
        Ok(s) => s,
        Err(e) => return malformed(e),
    };
    let req: RealmUnlockRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return malformed(e),
    };
    if played.play() == LockedAtUnlock {
        return refuse("locked", "the registration was destroyed (played)");
    }
    let mut release = match played.realm.unlock(TENANT, &session, &req.proof.0) {
        Ok(r) => r,
        Err(e) => return realm_error(e),
    };
    let user = lock(&played.sessions).get(&session).cloned();
    match (played.play(), user) {
        (TamperedRelease, _) => {
            if let Some(b) = release.last_mut() {
                *b ^= 1;
            }
        }
        (ReplayedRelease, Some(user)) => {
            if let Some(earlier) = lock(&played.recorded).get(&user) {
                release = earlier.clone();
            }
        }
        (WrongShare, Some(user)) => {
            if let Some(tag) = lock(&played.tags).get(&user) {
                // The scalar 1: canonical, and not this realm's share.
                let mut one = [0u8; 32];
                one[0] = 1;
                release = coffer::internal::realm_hashes::release(tag, &session, &one);
            }
        }
        _ => {}
    }
    Json(RealmUnlockResponse {
        release: B64(release),
    })
    .into_response()
}

async fn delete(State(ep): State<Endpoint>, Path(user): Path<String>, body: Bytes) -> Response {
    let played = ep.played();
    let req: RealmDeleteRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return malformed(e),
    };
    let grant: [u8; 16] = match fixed(&req.grant.0) {
        Ok(g) => g,
        Err(e) => return malformed(e),
    };
    let issued = lock(&played.grants).contains(&grant);
    match played.realm.delete(TENANT, &user, &grant) {
        Ok(deleted) => {
            if deleted && issued {
                played.deleted_with_grant.fetch_add(1, Ordering::SeqCst);
            }
            Json(json!({ "deleted": deleted })).into_response()
        }
        Err(e) => realm_error(e),
    }
}

/// The runner's three realms, served on loopback; stopped when dropped.
pub struct PlayedRealms {
    realms: Arc<Vec<Played>>,
    urls: Vec<String>,
    /// A loopback URL where nothing listens.
    dead: String,
    runtimes: Vec<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl PlayedRealms {
    /// Opens three reference realms (each its own SQLite file and software HSM key) and
    /// serves each behind its played endpoint.
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("a directory for the runner's realms")?;
        let mut realms = Vec::new();
        for id in REALM_IDS {
            let store = SqliteRealmStore::open(&dir.path().join(format!("{id}.db")))
                .context("a realm's store")?;
            let hsm = SoftHsm::open_or_create(&dir.path().join(format!("{id}.key")))
                .context("a realm's software HSM")?;
            let config = RealmConfig {
                ksf: KsfParams::TEST,
                ..RealmConfig::new(id)
            };
            realms.push(Played {
                id,
                realm: Realm::open(store, hsm, config).context("opening a realm")?,
                play: Mutex::new(Honest),
                unlocks: AtomicUsize::new(0),
                shares: AtomicUsize::new(0),
                grants: Mutex::new(Vec::new()),
                deleted_with_grant: AtomicUsize::new(0),
                sessions: Mutex::new(HashMap::new()),
                tags: Mutex::new(HashMap::new()),
                recorded: Mutex::new(HashMap::new()),
            });
        }
        let realms = Arc::new(realms);
        let (mut urls, mut runtimes) = (Vec::new(), Vec::new());
        for me in 0..REALM_IDS.len() {
            let app = Router::new()
                .route("/v1/realm", get(info))
                .route("/v1/realm/users/{user}/register", post(register_share))
                .route("/v1/realm/users/{user}/evaluate", post(evaluate))
                .route("/v1/realm/users/{user}/delete", post(delete))
                .route("/v1/realm/sessions/{session}/unlock", post(unlock))
                .with_state(Endpoint {
                    realms: realms.clone(),
                    me,
                });
            let (url, runtime) = serve_loopback(app)?;
            urls.push(url);
            runtimes.push(runtime);
        }
        let closed = std::net::TcpListener::bind("127.0.0.1:0").context("binding loopback")?;
        let dead = format!("http://{}", closed.local_addr()?);
        drop(closed);
        Ok(PlayedRealms {
            realms,
            urls,
            dead,
            runtimes,
            _dir: dir,
        })
    }

    fn set(&self, plays: [Play; 3]) {
        for (played, play) in self.realms.iter().zip(plays) {
            *lock(&played.play) = play;
            played.unlocks.store(0, Ordering::SeqCst);
            played.shares.store(0, Ordering::SeqCst);
            played.deleted_with_grant.store(0, Ordering::SeqCst);
        }
    }

    fn realm_set() -> RealmSet {
        RealmSet {
            realm_ids: REALM_IDS.iter().map(|s| s.to_string()).collect(),
            threshold: 2,
            limit: 100,
            ksf: KsfParams::TEST,
        }
    }

    /// Registers `root` for `user` directly (no HTTP) on the realms `on`, keeping the tags.
    fn register_direct(&self, user: &str, root: &RootKey, on: &[usize]) -> anyhow::Result<()> {
        let shares = register(
            user,
            PASSWORD.as_bytes(),
            root,
            &Self::realm_set(),
            &mut OsRng,
        )?;
        for &i in on {
            let played = &self.realms[i];
            played.realm.register(TENANT, user, &shares[i], None)?;
            lock(&played.tags).insert(user.to_owned(), shares[i].tag.clone());
        }
        Ok(())
    }

    /// Recovers `user` directly (no HTTP), keeping each realm's release for replays.
    fn recover_direct(&self, user: &str) -> anyhow::Result<RootKey> {
        let (recovery, m) =
            Recovery::start(user, PASSWORD.as_bytes(), &Self::realm_set(), &mut OsRng)?;
        let answers = self
            .realms
            .iter()
            .map(|r| {
                let answer = r.realm.evaluate(TENANT, user, &m);
                (r.id.to_owned(), answer.map_err(|e| e.to_string()))
            })
            .collect();
        let unlocking = recovery.combine(answers)?;
        let mut releases = Vec::new();
        for request in unlocking.requests() {
            let Some(played) = self.realms.iter().find(|r| r.id == request.realm) else {
                continue;
            };
            let release = played
                .realm
                .unlock(TENANT, &request.session, &request.proof);
            if let Ok(release) = &release {
                lock(&played.recorded).insert(user.to_owned(), release.clone());
            }
            releases.push((request.realm.clone(), release.map_err(|e| e.to_string())));
        }
        Ok(unlocking.finish(releases)?.0)
    }
}

impl Drop for PlayedRealms {
    fn drop(&mut self) {
        for runtime in self.runtimes.drain(..) {
            runtime.shutdown_background();
        }
    }
}

/// How the runner registers the case's user before the request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// On all three realms (and `<user>-other` too, same password, another K).
    Registered,
    /// Nowhere.
    Unknown,
    /// realm-a and realm-b hold the K the case expects; realm-c another registration.
    Stale,
}

/// What a case must get back.
#[derive(Clone, Copy)]
enum Want {
    /// The registered K.
    Key,
    /// Refused with this class.
    Refused(&'static str),
    /// Registered; the runner then recovers the same K directly.
    Registered,
}

/// What the realms must have seen.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Anything,
    /// No phase-2 request at any realm.
    NoUnlock,
    /// No share sent to realm-c.
    NoShareToC,
    /// realm-a's share deleted with the grant it answered.
    DeletedOnA,
}

struct Case {
    id: &'static str,
    plays: [Play; 3],
    setup: Setup,
    op: &'static str,
    wrong_password: bool,
    want: Want,
    /// The realms the answer must name, exactly (by index); `None`: not checked.
    named: Option<&'static [usize]>,
    seen: Seen,
    expected: &'static str,
}

const H: Play = Honest;
const RECOVER: &str = "realms_recover";
const REGISTER: &str = "realms_register";

const fn recover(
    id: &'static str,
    plays: [Play; 3],
    want: Want,
    named: Option<&'static [usize]>,
    expected: &'static str,
) -> Case {
    Case {
        id,
        plays,
        setup: Setup::Registered,
        op: RECOVER,
        wrong_password: false,
        want,
        named,
        seen: Seen::Anything,
        expected,
    }
}

const CASES: &[Case] = &[
    recover(
        "client.realms.recover.honest",
        [H, H, H],
        Want::Key,
        Some(&[]),
        "K, nobody named",
    ),
    Case {
        wrong_password: true,
        seen: Seen::NoUnlock,
        ..recover(
            "client.realms.recover.wrong_password",
            [H, H, H],
            Want::Refused("wrong_password"),
            Some(&[]),
            "wrong_password, no phase 2",
        )
    },
    recover(
        "client.realms.recover.one_down",
        [H, H, Down],
        Want::Key,
        Some(&[2]),
        "K, realm-c named",
    ),
    recover(
        "client.realms.recover.one_hangs",
        [H, H, Hangs],
        Want::Key,
        Some(&[2]),
        "K within the time limit, realm-c named",
    ),
    recover(
        "client.realms.recover.wrong_evaluation",
        [H, WrongEvaluation, H],
        Want::Key,
        Some(&[1]),
        "K, realm-b named",
    ),
    recover(
        "client.realms.recover.wrong_proof",
        [H, WrongProof, H],
        Want::Key,
        Some(&[1]),
        "K, realm-b named",
    ),
    recover(
        "client.realms.recover.identity_evaluation",
        [H, IdentityEvaluation, H],
        Want::Key,
        Some(&[1]),
        "K, realm-b named",
    ),
    recover(
        "client.realms.recover.stolen_index",
        [H, H, StolenIndex],
        Want::Key,
        Some(&[2]),
        "K, realm-c named",
    ),
    Case {
        setup: Setup::Stale,
        ..recover(
            "client.realms.recover.other_registration",
            [H, H, H],
            Want::Key,
            None,
            "the K realm-a and realm-b hold",
        )
    },
    recover(
        "client.realms.recover.one_fake",
        [H, H, Fake],
        Want::Key,
        None,
        "K",
    ),
    recover(
        "client.realms.recover.tampered_release",
        [H, TamperedRelease, H],
        Want::Key,
        Some(&[1]),
        "K, realm-b named",
    ),
    recover(
        "client.realms.recover.replayed_release",
        [H, ReplayedRelease, H],
        Want::Key,
        Some(&[1]),
        "K, realm-b named",
    ),
    recover(
        "client.realms.recover.wrong_share",
        [H, WrongShare, H],
        Want::Key,
        Some(&[1]),
        "K, realm-b named",
    ),
    recover(
        "client.realms.recover.below_threshold",
        [H, Down, Down],
        Want::Refused("io"),
        Some(&[1, 2]),
        "io, realm-b and realm-c named",
    ),
    Case {
        setup: Setup::Unknown,
        ..recover(
            "client.realms.recover.unknown_user",
            [H, H, H],
            Want::Refused("no_record"),
            Some(&[]),
            "no_record",
        )
    },
    Case {
        seen: Seen::NoUnlock,
        ..recover(
            "client.realms.recover.other_users_record",
            [OtherUser, OtherUser, OtherUser],
            Want::Refused("wrong_password"),
            Some(&[]),
            "wrong_password, no phase 2",
        )
    },
    recover(
        "client.realms.recover.locked_at_unlock",
        [H, LockedAtUnlock, LockedAtUnlock],
        Want::Refused("locked"),
        Some(&[1, 2]),
        "locked, realm-b and realm-c named",
    ),
    recover(
        "client.realms.recover.too_few_releases",
        [H, TamperedRelease, Down],
        Want::Refused("locked"),
        Some(&[1, 2]),
        "locked, realm-b and realm-c named",
    ),
    Case {
        setup: Setup::Unknown,
        op: REGISTER,
        ..recover(
            "client.realms.register.honest",
            [H, H, H],
            Want::Registered,
            Some(&[]),
            "registered; the runner recovers the same K",
        )
    },
    Case {
        setup: Setup::Unknown,
        op: REGISTER,
        seen: Seen::NoShareToC,
        ..recover(
            "client.realms.register.wrong_realm_id",
            [H, H, WrongRealmId],
            Want::Refused("io"),
            Some(&[2]),
            "io, realm-c named and sent nothing",
        )
    },
    Case {
        setup: Setup::Unknown,
        op: REGISTER,
        ..recover(
            "client.realms.register.one_refuses",
            [H, H, RefusesRegistration],
            Want::Refused("io"),
            Some(&[2]),
            "io, realm-c named",
        )
    },
    Case {
        setup: Setup::Unknown,
        op: REGISTER,
        seen: Seen::DeletedOnA,
        ..recover(
            "client.realms.register.below_threshold",
            [H, RefusesRegistration, RefusesRegistration],
            Want::Refused("io"),
            Some(&[1, 2]),
            "io, realm-b and realm-c named, realm-a's share deleted with its grant",
        )
    },
];

/// The ids of every case (for `--list`).
pub fn case_ids() -> Vec<&'static str> {
    CASES.iter().map(|c| c.id).collect()
}

/// Runs every case that `keep` selects against the client adapter `argv`.
pub fn run(
    argv: &[String],
    keep: impl Fn(&str) -> bool,
    timeout: Duration,
) -> anyhow::Result<Vec<CaseResult>> {
    let cases: Vec<&Case> = CASES.iter().filter(|c| keep(c.id)).collect();
    if cases.is_empty() {
        return Ok(Vec::new());
    }
    let mut adapter = Adapter::start(argv, timeout)?;
    let declared = adapter.hello["capabilities"]["realms_client"] == true;
    let realms = if declared {
        Some(PlayedRealms::start()?)
    } else {
        None
    };
    let mut prefix = [0u8; 6];
    getrandom::fill(&mut prefix).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    let prefix = format!("conformance-{}", hex::encode(prefix));
    let mut results = Vec::new();
    for (n, case) in cases.into_iter().enumerate() {
        let result = |status, actual: String, detail: String| CaseResult {
            suite: "client-realms".into(),
            id: case.id.into(),
            level: Level::Must,
            status,
            expected: case.expected.into(),
            actual,
            detail,
        };
        let Some(realms) = &realms else {
            results.push(result(
                Status::Skipped,
                "not run".into(),
                "the adapter does not declare realms_client".into(),
            ));
            continue;
        };
        let user = format!("{prefix}-{n}");
        let (status, actual, detail) = match run_case(&mut adapter, realms, case, &user, timeout) {
            Ok(outcome) => outcome,
            Err(e) => (Status::Fail, "setup failed".into(), format!("{e:#}")),
        };
        results.push(result(status, actual, detail));
    }
    Ok(results)
}

fn run_case(
    adapter: &mut Adapter,
    realms: &PlayedRealms,
    case: &Case,
    user: &str,
    timeout: Duration,
) -> anyhow::Result<(Status, String, String)> {
    realms.set([Honest; 3]);
    let root = RootKey::generate()?;
    match case.setup {
        Setup::Registered => {
            realms.register_direct(user, &root, &[0, 1, 2])?;
            realms.register_direct(&format!("{user}-other"), &RootKey::generate()?, &[0, 1, 2])?;
            let back = realms.recover_direct(user)?;
            anyhow::ensure!(back.as_bytes() == root.as_bytes(), "direct recovery");
        }
        Setup::Stale => {
            realms.register_direct(user, &RootKey::generate()?, &[2])?;
            realms.register_direct(user, &root, &[0, 1])?;
        }
        Setup::Unknown => {}
    }
    realms.set(case.plays);
    let list: Vec<_> = REALM_IDS
        .iter()
        .zip(&realms.urls)
        .zip(case.plays)
        .map(|((id, url), play)| {
            let url = if play == Down { &realms.dead } else { url };
            json!({"realm_id": id, "url": url, "token": TOKEN})
        })
        .collect();
    let password = if case.wrong_password {
        "not the password"
    } else {
        PASSWORD
    };
    let mut request = json!({"op": case.op, "realms": list, "threshold": 2, "limit": 100,
        "ksf": KsfParams::TEST.name(), "user": user, "password": password, "timeout_ms": 2000});
    if case.op == REGISTER {
        request["key"] = json!(root.to_hex().as_str());
    }
    let answer = match adapter.request(case.id, request, timeout) {
        Ok(a) => a,
        Err(e) => return Ok((Status::Fail, "no answer".into(), e.to_string())),
    };
    let mut detail = answer["detail"].as_str().unwrap_or_default().to_owned();
    if answer["unimplemented"] == true {
        return Ok((Status::Unimplemented, "unimplemented".into(), detail));
    }
    let ok = answer["ok"] == true;
    let class = answer["error"].as_str().unwrap_or("?");
    let mut got = if ok {
        "accepted".to_owned()
    } else {
        format!("refused as {class}")
    };
    let mut pass = match case.want {
        Want::Key => {
            let key = answer["key"].as_str().unwrap_or_default();
            if ok {
                got = if key.eq_ignore_ascii_case(&root.to_hex()) {
                    "K recovered".into()
                } else {
                    "another key".into()
                };
            }
            ok && key.eq_ignore_ascii_case(&root.to_hex())
        }
        Want::Refused(want) => {
            if !ok && answer.get("key").is_some() {
                got.push_str(", with a key");
            }
            !ok && class == want && answer.get("key").is_none()
        }
        Want::Registered => {
            if ok {
                realms.set([Honest; 3]);
                match realms.recover_direct(user) {
                    Ok(back) if back.as_bytes() == root.as_bytes() => {
                        got = "registered; the runner recovers K".into();
                        true
                    }
                    Ok(_) => {
                        got = "registered another key".into();
                        false
                    }
                    Err(e) => {
                        got = "registered, but the runner cannot recover".into();
                        detail = format!("{e:#}");
                        false
                    }
                }
            } else {
                false
            }
        }
    };
    if let Some(want) = case.named {
        let named: BTreeSet<String> = answer["named"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let wanted: BTreeSet<String> = want.iter().map(|&i| REALM_IDS[i].to_owned()).collect();
        if named != wanted {
            pass = false;
        }
    }
    if let Some(named) = answer["named"].as_array().filter(|a| !a.is_empty()) {
        let names: Vec<&str> = named.iter().filter_map(|v| v.as_str()).collect();
        got.push_str(&format!(", naming {}", names.join(" ")));
    }
    let a = &realms.realms[0];
    let (unlocks, shares_to_c) = (
        realms
            .realms
            .iter()
            .map(|r| r.unlocks.load(Ordering::SeqCst))
            .sum::<usize>(),
        realms.realms[2].shares.load(Ordering::SeqCst),
    );
    match case.seen {
        Seen::NoUnlock if unlocks > 0 => {
            pass = false;
            got.push_str(&format!(", after {unlocks} phase-2 requests"));
        }
        Seen::NoShareToC if shares_to_c > 0 => {
            pass = false;
            got.push_str(", after sending realm-c a share");
        }
        Seen::DeletedOnA if a.deleted_with_grant.load(Ordering::SeqCst) == 0 => {
            pass = false;
            got.push_str(", leaving realm-a's share in place");
        }
        _ => {}
    }
    let status = if pass { Status::Pass } else { Status::Fail };
    Ok((status, got, detail))
}
