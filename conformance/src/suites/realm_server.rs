//! The `realm-server` suite: the runner plays clients against one realm as a black box
//! (spec/realms.md, spec/conformance.md §9): whole 1-of-1 recoveries, counting before
//! answering (abandoned evaluations count), the exact limit and destruction, the reset after
//! an unlock, single-use sessions and proofs bound to them, consistent fake answers, refused
//! shares, deletion grants, tenant authentication, malformed elements and parallel guesses.
//! Every case uses its own users, named with a random prefix.

use crate::case::{CaseResult, Level, Status};
use crate::http::{b64, segment, Method, Reply, Vault};
use coffer::key::RootKey;
use coffer::realms::{register, EvalAnswer, RealmError, RealmSet, RealmShare, Recovery};
use coffer::vault::KsfParams;
use serde_json::json;

/// What a case found.
struct Outcome {
    pass: bool,
    actual: String,
    detail: String,
}

fn pass(actual: impl Into<String>) -> Outcome {
    Outcome {
        pass: true,
        actual: actual.into(),
        detail: String::new(),
    }
}

fn fail(actual: impl Into<String>, detail: impl Into<String>) -> Outcome {
    Outcome {
        pass: false,
        actual: actual.into(),
        detail: detail.into(),
    }
}

struct Case {
    id: &'static str,
    expected: &'static str,
    run: fn(&Ctx) -> Outcome,
}

/// The realm under test and what the cases share.
pub struct Ctx {
    realm: Vault,
    prefix: String,
}

const PASSWORD: &[u8] = b"correct horse battery staple";
const WRONG: &[u8] = b"not the password";

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return fail("setup failed", e),
        }
    };
}

fn answer(reply: &Reply) -> Result<EvalAnswer, String> {
    if reply.status != 200 {
        return Err(format!("evaluate: {}", reply.describe()));
    }
    let fixed = |field: &str, len: usize| -> Result<Vec<u8>, String> {
        reply
            .bytes(field)
            .filter(|b| b.len() == len)
            .ok_or_else(|| format!("evaluate: no {len}-byte {field}"))
    };
    Ok(EvalAnswer {
        public: reply.bytes("public").ok_or("evaluate: no public part")?,
        index: reply.body["index"]
            .as_u64()
            .and_then(|i| u8::try_from(i).ok())
            .ok_or("evaluate: no index")?,
        evaluation: fixed("evaluation", 32)?.try_into().unwrap_or([0; 32]),
        proof: fixed("proof", 64)?.try_into().unwrap_or([0; 64]),
        session: fixed("session", 16)?.try_into().unwrap_or([0; 16]),
    })
}

impl Ctx {
    /// A context for the realm at `realm`.
    pub fn new(realm: Vault) -> anyhow::Result<Self> {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
        Ok(Ctx {
            realm,
            prefix: format!("conformance-{}", hex::encode(random)),
        })
    }

    fn user(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn realm_id(&self) -> Result<String, String> {
        let reply = self.realm.get("/v1/realm");
        reply.body["realm_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("GET /v1/realm: {}", reply.describe()))
    }

    /// A 1-of-1 registration with this realm (or its share of 2-of-3 with two others).
    fn set(&self, limit: u32, of_three: bool) -> Result<RealmSet, String> {
        let mut realm_ids = vec![self.realm_id()?];
        if of_three {
            realm_ids.extend([
                "conformance-other-1".to_owned(),
                "conformance-other-2".to_owned(),
            ]);
        }
        Ok(RealmSet {
            threshold: if of_three { 2 } else { 1 },
            realm_ids,
            limit,
            ksf: KsfParams::TEST,
        })
    }

    fn send_share(&self, user: &str, share: &RealmShare) -> Reply {
        self.realm.post(
            &format!("/v1/realm/users/{}/register", segment(user)),
            &json!({
                "realm_id": share.realm_id,
                "index": share.index,
                "public": b64(&share.public.encode()),
                "key_share": b64(&share.key_share[..]),
                "secret_share": b64(&share.secret_share[..]),
                "tag": b64(&share.tag[..]),
            }),
        )
    }

    /// A fresh user registered 1-of-1 with [`PASSWORD`]; its K and the registration grant.
    fn registered(&self, name: &str, limit: u32) -> Result<(String, RootKey, RealmSet), String> {
        let user = self.user(name);
        let root = RootKey::generate().map_err(|e| e.to_string())?;
        let set = self.set(limit, false)?;
        let shares = register(&user, PASSWORD, &root, &set, &mut rand_core::OsRng)
            .map_err(|e| e.to_string())?;
        let reply = self.send_share(&user, &shares[0]);
        if reply.status != 200 {
            return Err(format!("register: {}", reply.describe()));
        }
        Ok((user, root, set))
    }

    fn evaluate(&self, user: &str, blinded: &[u8]) -> Reply {
        self.realm.post(
            &format!("/v1/realm/users/{}/evaluate", segment(user)),
            &json!({ "blinded": b64(blinded) }),
        )
    }

    fn unlock(&self, session: &[u8; 16], proof: &[u8]) -> Reply {
        self.realm.post(
            &format!("/v1/realm/sessions/{}/unlock", b64(session)),
            &json!({ "proof": b64(proof) }),
        )
    }

    /// A whole 1-of-1 recovery: K, or the error where it stopped.
    fn recover(&self, user: &str, password: &[u8], set: &RealmSet) -> Result<RootKey, String> {
        let (recovery, m) = Recovery::start(user, password, set, &mut rand_core::OsRng)
            .map_err(|e| e.to_string())?;
        let id = set.realm_ids[0].clone();
        let first = answer(&self.evaluate(user, &m))?;
        let unlocking = recovery
            .combine(vec![(id.clone(), Ok(first))])
            .map_err(|e| class_of(&e.error).to_owned())?;
        let request = unlocking.requests()[0].clone();
        let reply = self.unlock(&request.session, &request.proof);
        if reply.status != 200 {
            return Err(format!("unlock: {}", reply.describe()));
        }
        let release = reply.bytes("release").ok_or("unlock: no release")?;
        unlocking
            .finish(vec![(id, Ok(release))])
            .map(|(root, _)| root)
            .map_err(|e| format!("the release: {e}"))
    }

    /// Blinded element of a password for `user` (phase 1 without a client state).
    fn blinded(&self, user: &str, password: &[u8], set: &RealmSet) -> Result<[u8; 32], String> {
        Recovery::start(user, password, set, &mut rand_core::OsRng)
            .map(|(_, m)| m)
            .map_err(|e| e.to_string())
    }
}

fn class_of(e: &RealmError) -> &'static str {
    use coffer::Classify;
    e.class().as_str()
}

fn expect_class(reply: &Reply, status: u16, class: &str) -> Outcome {
    if reply.status == status && reply.class() == class {
        pass(reply.describe())
    } else {
        fail(
            reply.describe(),
            format!("expected HTTP {status} {class}; body: {}", reply.body),
        )
    }
}

fn info(ctx: &Ctx) -> Outcome {
    match ctx.realm_id() {
        Ok(id) if !id.is_empty() && id.len() <= 64 && id.is_ascii() => {
            pass(format!("realm_id {id}"))
        }
        Ok(id) => fail(format!("realm_id {id:?}"), "1 to 64 ASCII bytes"),
        Err(e) => fail(e, ""),
    }
}

fn flow(ctx: &Ctx) -> Outcome {
    let (user, root, set) = tri!(ctx.registered("flow", 10));
    match ctx.recover(&user, PASSWORD, &set) {
        Ok(k) if k == root => pass("K recovered"),
        Ok(_) => fail("another K", "the release opened to another key"),
        Err(e) => fail(
            e,
            "a 1-of-1 recovery with the right password must give back K",
        ),
    }
}

fn wrong_password(ctx: &Ctx) -> Outcome {
    let (user, _, set) = tri!(ctx.registered("wrong", 10));
    match ctx.recover(&user, WRONG, &set) {
        Err(e) if e == "wrong_password" => pass("wrong_password at the client (check fails)"),
        other => fail(format!("{other:?}"), "a wrong password must fail the check"),
    }
}

/// Abandoned evaluations count: `L` of them, then the next destroys the record.
fn abandoned_count(ctx: &Ctx) -> Outcome {
    let (user, _, set) = tri!(ctx.registered("abandoned", 2));
    let m = tri!(ctx.blinded(&user, WRONG, &set));
    for _ in 0..2 {
        tri!(answer(&ctx.evaluate(&user, &m)));
    }
    match ctx.recover(&user, PASSWORD, &set) {
        // Destroyed: a fake answers now, which a client cannot tell from a registration
        // with other parameters, so any refusal will do; K must not come back.
        Err(e) => pass(format!(
            "after 2 abandoned evaluations at limit 2, the right password fails ({e})"
        )),
        other => fail(
            format!("{other:?}"),
            "abandoned evaluations must count before the answer",
        ),
    }
}

fn last_guess_works(ctx: &Ctx) -> Outcome {
    let (user, root, set) = tri!(ctx.registered("last", 2));
    let _ = ctx.recover(&user, WRONG, &set);
    match ctx.recover(&user, PASSWORD, &set) {
        Ok(k) if k == root => pass("the limit's last guess recovers"),
        other => fail(
            format!("{other:?}"),
            "the L-th evaluation is still answered",
        ),
    }
}

fn unlock_resets(ctx: &Ctx) -> Outcome {
    let (user, root, set) = tri!(ctx.registered("reset", 2));
    for round in 0..3 {
        let _ = ctx.recover(&user, WRONG, &set);
        match ctx.recover(&user, PASSWORD, &set) {
            Ok(k) if k == root => {}
            other => {
                return fail(
                    format!("round {round}: {other:?}"),
                    "an unlock must reset the count to 0",
                )
            }
        }
    }
    pass("three rounds of one wrong and one right guess at limit 2")
}

fn destroyed(ctx: &Ctx) -> Outcome {
    let (user, _, set) = tri!(ctx.registered("destroy", 2));
    for _ in 0..2 {
        let _ = ctx.recover(&user, WRONG, &set);
    }
    match ctx.recover(&user, PASSWORD, &set) {
        Err(e) => pass(format!(
            "destroyed: the right password meets a fake answer ({e})"
        )),
        other => fail(
            format!("{other:?}"),
            "the evaluation after the limit destroys the record",
        ),
    }
}

fn fake_consistent(ctx: &Ctx) -> Outcome {
    let user = ctx.user("nobody");
    let set = tri!(ctx.set(10, false));
    let m = tri!(ctx.blinded(&user, PASSWORD, &set));
    let a = tri!(answer(&ctx.evaluate(&user, &m)));
    let b = tri!(answer(&ctx.evaluate(&user, &m)));
    if a.public != b.public || a.evaluation != b.evaluation {
        return fail(
            "two different fake registrations",
            "a fake answer is the same for every request about a user",
        );
    }
    if coffer::realms::PublicPart::decode(&a.public).is_err() {
        return fail(
            "a malformed fake public part",
            "fakes are shaped like real answers",
        );
    }
    pass("the same well-formed fake twice")
}

fn session_single_use(ctx: &Ctx) -> Outcome {
    let (user, _, set) = tri!(ctx.registered("session", 10));
    let (recovery, m) = tri!(
        Recovery::start(&user, PASSWORD, &set, &mut rand_core::OsRng).map_err(|e| e.to_string())
    );
    let first = tri!(answer(&ctx.evaluate(&user, &m)));
    let unlocking = tri!(recovery
        .combine(vec![(set.realm_ids[0].clone(), Ok(first))])
        .map_err(|e| e.to_string()));
    let request = unlocking.requests()[0].clone();
    let once = ctx.unlock(&request.session, &request.proof);
    if once.status != 200 {
        return fail(once.describe(), "the first unlock must succeed");
    }
    expect_class(
        &ctx.unlock(&request.session, &request.proof),
        401,
        "wrong_password",
    )
}

fn proof_bound_to_session(ctx: &Ctx) -> Outcome {
    let (user, _, set) = tri!(ctx.registered("bound", 10));
    let (recovery, m) = tri!(
        Recovery::start(&user, PASSWORD, &set, &mut rand_core::OsRng).map_err(|e| e.to_string())
    );
    let first = tri!(answer(&ctx.evaluate(&user, &m)));
    let unlocking = tri!(recovery
        .combine(vec![(set.realm_ids[0].clone(), Ok(first))])
        .map_err(|e| e.to_string()));
    let proof = unlocking.requests()[0].proof;
    let other = tri!(answer(&ctx.evaluate(&user, &m)));
    expect_class(&ctx.unlock(&other.session, &proof), 401, "wrong_password")
}

fn refuses_other_realms_share(ctx: &Ctx) -> Outcome {
    let user = ctx.user("other-share");
    let root = tri!(RootKey::generate().map_err(|e| e.to_string()));
    let set = tri!(ctx.set(10, true));
    let shares = tri!(
        register(&user, PASSWORD, &root, &set, &mut rand_core::OsRng).map_err(|e| e.to_string())
    );
    expect_class(&ctx.send_share(&user, &shares[1]), 400, "malformed")
}

fn refuses_false_commitment(ctx: &Ctx) -> Outcome {
    let user = ctx.user("false-share");
    let root = tri!(RootKey::generate().map_err(|e| e.to_string()));
    let set = tri!(ctx.set(10, true));
    let shares = tri!(
        register(&user, PASSWORD, &root, &set, &mut rand_core::OsRng).map_err(|e| e.to_string())
    );
    let forged = RealmShare {
        realm_id: shares[0].realm_id.clone(),
        index: 1,
        public: shares[0].public.clone(),
        key_share: shares[1].key_share.clone(),
        secret_share: shares[0].secret_share.clone(),
        tag: shares[0].tag.clone(),
    };
    expect_class(&ctx.send_share(&user, &forged), 400, "malformed")
}

fn refuses_huge_limit(ctx: &Ctx) -> Outcome {
    let user = ctx.user("huge-limit");
    let root = tri!(RootKey::generate().map_err(|e| e.to_string()));
    let set = tri!(ctx.set(1000, false));
    let shares = tri!(
        register(&user, PASSWORD, &root, &set, &mut rand_core::OsRng).map_err(|e| e.to_string())
    );
    let reply = ctx.send_share(&user, &shares[0]);
    if reply.status == 200 {
        return pass("limit 1000 accepted (within this realm's bound)");
    }
    expect_class(&reply, 422, "unsupported")
}

fn status_is_uncounted(ctx: &Ctx) -> Outcome {
    let (user, _, set) = tri!(ctx.registered("status", 10));
    let status = |user: &str| {
        ctx.realm
            .get(&format!("/v1/realm/users/{}/status", segment(user)))
    };
    let fields = |reply: &Reply| {
        (
            reply.body["state"].clone(),
            reply.body["guesses"].as_u64(),
            reply.body["limit"].as_u64(),
            reply.body["guesses_left"].as_u64(),
        )
    };
    let before = status(&user);
    if before.status != 200 || fields(&before) != (json!("active"), Some(0), Some(10), Some(10)) {
        return fail(before.describe(), "active, 0 guesses of 10, 10 left");
    }
    let m = tri!(ctx.blinded(&user, PASSWORD, &set));
    tri!(answer(&ctx.evaluate(&user, &m)));
    for _ in 0..3 {
        let after = status(&user);
        if fields(&after) != (json!("active"), Some(1), Some(10), Some(9)) {
            return fail(
                after.describe(),
                "one evaluation counted, and status requests none",
            );
        }
    }
    let stranger = status(&ctx.user("status-never-registered"));
    if stranger.status != 200
        || !stranger.body["state"].is_null()
        || stranger.body["guesses_left"] != 0
    {
        return fail(stranger.describe(), "an unknown user: state null, 0 left");
    }
    pass("counts shown, status itself uncounted, unknown users without a state")
}

fn delete_needs_grant(ctx: &Ctx) -> Outcome {
    let (user, _, set) = tri!(ctx.registered("delete", 10));
    let refused = ctx.realm.post(
        &format!("/v1/realm/users/{}/delete", segment(&user)),
        &json!({ "grant": b64(&[0u8; 16]) }),
    );
    if refused.status != 403 || refused.class() != "unauthorized" {
        return fail(
            refused.describe(),
            "a tenant token without a grant must delete nothing",
        );
    }
    let (recovery, m) = tri!(
        Recovery::start(&user, PASSWORD, &set, &mut rand_core::OsRng).map_err(|e| e.to_string())
    );
    let first = tri!(answer(&ctx.evaluate(&user, &m)));
    let unlocking = tri!(recovery
        .combine(vec![(set.realm_ids[0].clone(), Ok(first))])
        .map_err(|e| e.to_string()));
    let request = unlocking.requests()[0].clone();
    let unlocked = ctx.unlock(&request.session, &request.proof);
    if unlocked.status != 200 {
        return fail(unlocked.describe(), "unlock");
    }
    let by_id = ctx.realm.post(
        &format!("/v1/realm/users/{}/delete", segment(&user)),
        &json!({ "grant": b64(&request.session) }),
    );
    if by_id.status != 403 || by_id.class() != "unauthorized" {
        return fail(
            by_id.describe(),
            "the unlocked session's id is no grant (spec/realms.md §7.2: grant_i)",
        );
    }
    let deleted = ctx.realm.post(
        &format!("/v1/realm/users/{}/delete", segment(&user)),
        &json!({ "grant": b64(&request.grant) }),
    );
    if deleted.status != 200 || deleted.body["deleted"] != true {
        return fail(
            deleted.describe(),
            "the grant of an unlocked session must delete",
        );
    }
    match ctx.recover(&user, PASSWORD, &set) {
        Err(_) => pass("refused without a grant and with the session id; deleted with the unlocked session's grant; gone"),
        Ok(_) => fail("K still recovers", "a deleted record must be gone"),
    }
}

fn token_required(ctx: &Ctx) -> Outcome {
    let reply = ctx.realm.raw(Method::Get, "/v1/realm", None, None);
    expect_class(&reply, 401, "unauthorized")
}

fn malformed_element(ctx: &Ctx) -> Outcome {
    let user = ctx.user("malformed");
    for (what, bytes) in [
        ("the identity", vec![0u8; 32]),
        ("31 bytes", vec![1u8; 31]),
        ("not an element", vec![0xffu8; 32]),
    ] {
        let reply = ctx.evaluate(&user, &bytes);
        if reply.status != 400 || reply.class() != "malformed" {
            return fail(
                format!("{what}: {}", reply.describe()),
                "HTTP 400 malformed",
            );
        }
    }
    pass("identity, short and invalid elements: 400 malformed")
}

fn parallel_guesses_bounded(ctx: &Ctx) -> Outcome {
    let (user, _, set) = tri!(ctx.registered("parallel", 3));
    let real = {
        let shares_public = tri!(ctx.blinded(&user, WRONG, &set));
        let first = tri!(answer(&ctx.evaluate(&user, &shares_public)));
        first.public
    };
    let m = tri!(ctx.blinded(&user, WRONG, &set));
    let answers: Vec<Result<EvalAnswer, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| answer(&ctx.evaluate(&user, &m))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread".into())))
            .collect()
    });
    let real_answers = answers
        .iter()
        .filter(|a| a.as_ref().is_ok_and(|a| a.public == real))
        .count();
    // One real evaluation was spent finding the public part; two are left of the three.
    if real_answers <= 2 {
        pass(format!(
            "{real_answers} of 8 parallel evaluations answered for real at 2 left"
        ))
    } else {
        fail(
            format!("{real_answers} real answers"),
            "parallel evaluations must not pass the limit",
        )
    }
}

const CASES: &[Case] = &[
    Case {
        id: "realm.info",
        expected: "GET /v1/realm names the realm",
        run: info,
    },
    Case {
        id: "realm.flow.register_recover",
        expected: "a 1-of-1 registration recovers K",
        run: flow,
    },
    Case {
        id: "realm.flow.wrong_password",
        expected: "the check fails: wrong_password",
        run: wrong_password,
    },
    Case {
        id: "realm.guess.abandoned_evaluations_count",
        expected: "evaluations count before the answer",
        run: abandoned_count,
    },
    Case {
        id: "realm.guess.last_guess_works",
        expected: "the L-th evaluation is answered",
        run: last_guess_works,
    },
    Case {
        id: "realm.guess.unlock_resets",
        expected: "an unlock resets the count",
        run: unlock_resets,
    },
    Case {
        id: "realm.guess.limit_destroys",
        expected: "the evaluation after L destroys",
        run: destroyed,
    },
    Case {
        id: "realm.guess.parallel_bounded",
        expected: "parallel evaluations never pass the limit",
        run: parallel_guesses_bounded,
    },
    Case {
        id: "realm.fake.consistent",
        expected: "the same well-formed fake for an unknown user",
        run: fake_consistent,
    },
    Case {
        id: "realm.session.single_use",
        expected: "401 wrong_password on a reused session",
        run: session_single_use,
    },
    Case {
        id: "realm.session.proof_bound",
        expected: "401 wrong_password for a proof of another session",
        run: proof_bound_to_session,
    },
    Case {
        id: "realm.register.other_realms_share",
        expected: "400 malformed",
        run: refuses_other_realms_share,
    },
    Case {
        id: "realm.register.false_commitment",
        expected: "400 malformed",
        run: refuses_false_commitment,
    },
    Case {
        id: "realm.register.limit_bounds",
        expected: "accepted within bounds, else 422 unsupported",
        run: refuses_huge_limit,
    },
    Case {
        id: "realm.status.uncounted",
        expected: "state, guesses, limit and guesses_left of the record; status requests count nothing",
        run: status_is_uncounted,
    },
    Case {
        id: "realm.delete.needs_grant",
        expected: "403 unauthorized without a grant or with the session id; deleted with the unlocked session's grant",
        run: delete_needs_grant,
    },
    Case {
        id: "realm.auth.token_required",
        expected: "401 unauthorized",
        run: token_required,
    },
    Case {
        id: "realm.malformed.element",
        expected: "400 malformed",
        run: malformed_element,
    },
];

/// The case ids, for `--list` and expected-failure checks.
pub fn case_ids() -> Vec<&'static str> {
    CASES.iter().map(|c| c.id).collect()
}

/// Runs every case `keep` selects, `jobs` at a time.
pub fn run(ctx: &Ctx, keep: impl Fn(&str) -> bool, jobs: usize) -> anyhow::Result<Vec<CaseResult>> {
    let cases: Vec<&Case> = CASES.iter().filter(|c| keep(c.id)).collect();
    let run_case = |_: &mut (), c: &&Case| {
        let outcome = (c.run)(ctx);
        CaseResult {
            suite: "realm-server".into(),
            id: c.id.into(),
            level: Level::Must,
            status: if outcome.pass {
                Status::Pass
            } else {
                Status::Fail
            },
            expected: c.expected.into(),
            actual: outcome.actual,
            detail: outcome.detail,
        }
    };
    crate::jobs::map(&cases, jobs, || Ok(()), run_case)
}
