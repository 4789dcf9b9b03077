//! The `vault-server` suite: the runner plays clients against a vault URL as a black box
//! (spec/conformance.md §8): the flows, guess counting at KE2 (abandoned recoveries count),
//! the exact limit and destruction, parallel guesses, fake KE2s for unknown users, replayed
//! and unknown sessions, malformed and oversized requests, tenant authentication and rate
//! limits. Every case works on its own users, named with a random prefix, so a run leaves
//! only its own records behind and never touches anyone else's.

use crate::case::{CaseResult, Level, Status};
use crate::http::{b64, segment, Method, Reply, Vault};
use coffer::http::{check_url, status_of};
use coffer::key::RootKey;
use coffer::vault::{LoginDone, Parties};
use coffer::vault::{RecordId, SessionId};
use coffer::vault::{RecoveryClient, RegistrationClient};
use coffer::ErrorClass;
use serde_json::{json, Value};

/// What a case found.
struct Outcome {
    pass: bool,
    actual: String,
    detail: String,
    skipped: bool,
}

fn pass(actual: impl Into<String>) -> Outcome {
    Outcome {
        pass: true,
        actual: actual.into(),
        detail: String::new(),
        skipped: false,
    }
}

fn fail(actual: impl Into<String>, detail: impl Into<String>) -> Outcome {
    Outcome {
        pass: false,
        actual: actual.into(),
        detail: detail.into(),
        skipped: false,
    }
}

/// Not run: the report says why (never a pass).
fn skip(why: impl Into<String>) -> Outcome {
    Outcome {
        pass: false,
        actual: "not run".into(),
        detail: why.into(),
        skipped: true,
    }
}

/// One case of the suite.
struct Case {
    id: &'static str,
    level: Level,
    expected: &'static str,
    run: fn(&Ctx) -> Outcome,
}

/// The vault under test and what the cases share.
pub struct Ctx {
    vault: Vault,
    server_id: String,
    prefix: String,
    timeout: std::time::Duration,
    signer: Option<UserSigner>,
    other: Option<Vault>,
    session_lifetime: Option<std::time::Duration>,
    restart: Option<Restart>,
    tenant_rate: Option<f64>,
}

/// Restarts the vault under test (a crash, then a start over the same store), returning once
/// it listens again, or why it could not.
pub type Restart = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A tenant's signing key for user tokens (spec/vault.md §9.3), for the cases that check
/// them.
pub struct UserSigner {
    /// The PKCS#8 Ed25519 signing key.
    pub key: zeroize::Zeroizing<Vec<u8>>,
    /// Its key id in the vault's configuration.
    pub kid: String,
    /// The tenant it signs for (that of the tenant token).
    pub tenant: String,
}

/// A recovery's end.
enum Recovery {
    /// K came back.
    Key {
        root: RootKey,
        session: SessionId,
        ke3: Vec<u8>,
        record_id: RecordId,
    },
    /// KE2 did not verify at the client: no KE3 was sent.
    Ke2Refused,
    /// The vault answered an error.
    Refused(Reply),
    /// Something off-protocol (what went wrong).
    Broken(String),
}

impl Recovery {
    fn describe(&self) -> String {
        match self {
            Recovery::Key { .. } => "K recovered".into(),
            Recovery::Ke2Refused => "KE2 does not verify (wrong_password at the client)".into(),
            Recovery::Refused(r) => format!("vault answered {}", r.describe()),
            Recovery::Broken(why) => why.clone(),
        }
    }
}

const PASSWORD: &[u8] = b"correct horse battery staple";
const WRONG: &[u8] = b"not the password";

fn record_id(bytes: Option<Vec<u8>>) -> Option<RecordId> {
    bytes.and_then(|b| RecordId::from_slice(&b))
}

fn session_id(bytes: Option<Vec<u8>>) -> Option<SessionId> {
    bytes.and_then(|b| SessionId::from_slice(&b))
}

impl Ctx {
    /// A context for the vault at `vault` whose server identity is `server_id`; a case that
    /// loops stops after `timeout`.
    pub fn new(
        vault: Vault,
        server_id: &str,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Self> {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
        Ok(Ctx {
            vault,
            server_id: server_id.to_owned(),
            prefix: format!("conformance-{}", hex::encode(random)),
            timeout,
            signer: None,
            other: None,
            session_lifetime: None,
            restart: None,
            tenant_rate: None,
        })
    }

    /// Checks tenant isolation too, with `other`: the same vault under a second tenant's
    /// token.
    pub fn with_other_tenant(mut self, other: Vault) -> Self {
        self.other = Some(other);
        self
    }

    /// Checks that sessions expire too: the vault is configured with `lifetime`
    /// (spec/vault.md §3.2 step 2), which the case waits out.
    pub fn with_session_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.session_lifetime = Some(lifetime);
        self
    }

    /// Checks the per-tenant rate limit too: the vault allows one tenant `per_second`
    /// requests a second (the case floods it from the other tenant).
    pub fn with_tenant_rate(mut self, per_second: f64) -> Self {
        self.tenant_rate = Some(per_second);
        self
    }

    /// Checks durability too: `restart` kills the vault and starts it again.
    pub fn with_restart(mut self, restart: Restart) -> Self {
        self.restart = Some(restart);
        self
    }

    /// Restarts the vault, then waits (up to the timeout) until it answers `user`'s status.
    fn restarted(&self, user: &str) -> Result<(), String> {
        let restart = self.restart.as_ref().ok_or("no restart")?;
        restart().map_err(|e| format!("restarting the vault: {e}"))?;
        let began = std::time::Instant::now();
        loop {
            match self.status(user) {
                Ok(_) => return Ok(()),
                Err(e) if began.elapsed() > self.timeout => {
                    return Err(format!("no answer after the restart: {e}"))
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
    }

    /// Checks user tokens too, signed with `signer`.
    pub fn with_user_signer(mut self, signer: UserSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// A user token for `user`, this vault and `[iat, exp]` relative to now, or why not.
    fn user_token(
        &self,
        user: &str,
        audience: Option<&str>,
        iat: i64,
        exp: i64,
    ) -> Result<String, Outcome> {
        let Some(signer) = &self.signer else {
            return Err(skip(
                "no user-token signing key given (--vault-user-key, --vault-user-kid)",
            ));
        };
        let now = coffer::http::unix_now() as i64;
        let claims = coffer::http::UserClaims {
            iss: signer.tenant.clone(),
            sub: user.to_owned(),
            aud: audience.unwrap_or(&self.server_id).to_owned(),
            iat: (now + iat).max(0) as u64,
            exp: (now + exp).max(0) as u64,
        };
        coffer::http::mint_user_token(&signer.key, &signer.kid, &claims)
            .map_err(|e| fail(format!("signing: {e}"), ""))
    }

    fn user(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn parties(&self, user: &str) -> Parties {
        Parties {
            user: user.to_owned(),
            server_id: self.server_id.clone(),
        }
    }

    fn register(
        &self,
        user: &str,
        password: &[u8],
        root: &RootKey,
        limit: Option<u32>,
    ) -> Result<(), String> {
        let (client, request) = RegistrationClient::start(password).map_err(|e| e.to_string())?;
        let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
        let start = self.vault.post(
            &format!("/v1/users/{}/register/start", segment(user)),
            &json!({"request": b64(&request)}),
        );
        if start.status != 200 {
            return Err(format!("register/start: {}", start.describe()));
        }
        let record_id =
            record_id(start.bytes("record_id")).ok_or("register/start: no record_id")?;
        let (response, ksf) = (
            start
                .bytes("response")
                .ok_or("register/start: no response")?,
            start.body["ksf"].as_str().unwrap_or_default(),
        );
        let (upload, envelope) = client
            .finish(&self.parties(user), &response, ksf, &record_id, 1, root)
            .map_err(|e| format!("registration at the client: {e}"))?;
        let mut body = json!({"record_id": b64(record_id.as_bytes()), "upload": b64(&upload), "envelope": b64(&envelope)});
        if let Some(limit) = limit {
            body["limit"] = json!(limit);
        }
        let finish = self.vault.post(
            &format!("/v1/users/{}/register/finish", segment(user)),
            &body,
        );
        if finish.status != 200 {
            return Err(format!("register/finish: {}", finish.describe()));
        }
        Ok(())
    }

    /// KE1 → KE2 only; the client state comes back with the reply (None on an error).
    fn ke1(&self, user: &str, password: &[u8]) -> (Reply, Option<RecoveryClient>) {
        let Ok((client, ke1)) = RecoveryClient::start(password) else {
            return (Reply::no_reply("the client could not start"), None);
        };
        let reply = self.vault.post(
            &format!("/v1/users/{}/recover/start", segment(user)),
            &json!({"ke1": b64(&ke1)}),
        );
        let client = (reply.status == 200).then_some(client);
        (reply, client)
    }

    /// Checks a KE2 at the client: the login state if it verifies.
    fn verify_ke2(&self, user: &str, reply: &Reply, client: RecoveryClient) -> Option<LoginDone> {
        let ke2 = reply.bytes("ke2")?;
        let ksf = reply.body["ksf"].as_str()?;
        client.finish(&self.parties(user), &ke2, ksf).ok()
    }

    fn recover(&self, user: &str, password: &[u8]) -> Recovery {
        let (start, client) = self.ke1(user, password);
        let Some(client) = client else {
            return Recovery::Refused(start);
        };
        let Some(session) = session_id(start.bytes("session_id")) else {
            return Recovery::Broken("recover/start: no 16-byte session_id".into());
        };
        let Some(done) = self.verify_ke2(user, &start, client) else {
            return Recovery::Ke2Refused;
        };
        let finish = self.finish(&session, &done.ke3);
        if finish.status != 200 {
            return Recovery::Refused(finish);
        }
        let Some(release) = finish.bytes("release") else {
            return Recovery::Broken("finish: no release".into());
        };
        match done.open(&session, &release) {
            Ok((record_id, _, root)) => Recovery::Key {
                root,
                session,
                ke3: done.ke3.clone(),
                record_id,
            },
            Err(e) => Recovery::Broken(format!("the release does not open: {e}")),
        }
    }

    fn finish(&self, session: &SessionId, ke3: &[u8]) -> Reply {
        self.vault.post(
            &format!("/v1/sessions/{}/finish", b64(session.as_bytes())),
            &json!({"ke3": b64(ke3)}),
        )
    }

    fn status(&self, user: &str) -> Result<Value, String> {
        let reply = self
            .vault
            .get(&format!("/v1/users/{}/status", segment(user)));
        if reply.status == 200 {
            Ok(reply.body)
        } else {
            Err(format!("status: {}", reply.describe()))
        }
    }

    fn guesses_left(&self, user: &str) -> Result<u64, String> {
        let status = self.status(user)?;
        status["guesses_left"]
            .as_u64()
            .ok_or_else(|| format!("status without guesses_left: {status}"))
    }

    /// A fresh user registered with [`PASSWORD`] and a random K.
    fn registered(&self, name: &str, limit: Option<u32>) -> Result<(String, RootKey), String> {
        let user = self.user(name);
        let root = RootKey::generate().map_err(|e| e.to_string())?;
        self.register(&user, PASSWORD, &root, limit)?;
        Ok((user, root))
    }
}

/// Whether a reply is the error the spec names: the class and its HTTP status (spec/vault.md
/// §10). `unauthorized` at the tenant-token level is 401, not 403 (spec/vault.md §9): see
/// [`is_token_refusal`].
fn is_error(reply: &Reply, class: &str) -> bool {
    ErrorClass::from_name(class)
        .is_some_and(|c| reply.status == status_of(c) && reply.class() == class)
}

/// A missing or unknown tenant token: 401 `unauthorized` (spec/vault.md §9).
fn is_token_refusal(reply: &Reply) -> bool {
    reply.status == 401 && reply.class() == "unauthorized"
}

fn expect_error(reply: &Reply, class: &str) -> Outcome {
    if is_error(reply, class) {
        pass(reply.describe())
    } else {
        fail(reply.describe(), format!("body: {}", reply.body))
    }
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return fail("setup failed", e),
        }
    };
}

fn flow_register_recover(ctx: &Ctx) -> Outcome {
    let (user, root) = tri!(ctx.registered("flow", None));
    match ctx.recover(&user, PASSWORD) {
        Recovery::Key { root: got, .. } if got.as_bytes() == root.as_bytes() => pass("K recovered"),
        Recovery::Key { .. } => fail("another K", "the envelope opened to another key"),
        other => fail(other.describe(), ""),
    }
}

fn flow_status(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("status", Some(7)));
    let status = tri!(ctx.status(&user));
    if status["registered"] == true && status["guesses_left"] == 7 && status["limit"] == 7 {
        pass("registered, 7 of 7 guesses left")
    } else {
        fail(status.to_string(), "")
    }
}

/// Changes `user`'s password from version 1 to `new` in the verified `session` (§3.3).
fn change_password(
    ctx: &Ctx,
    user: &str,
    session: &SessionId,
    root: &RootKey,
    new: &[u8],
) -> Result<(), String> {
    let (client, request) = RegistrationClient::start(new).map_err(|e| e.to_string())?;
    let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
    let start = ctx.vault.post(
        &format!("/v1/sessions/{}/password/start", b64(session.as_bytes())),
        &json!({"request": b64(&request)}),
    );
    if start.status != 200 {
        return Err(format!("password/start: {}", start.describe()));
    }
    let record_id = record_id(start.bytes("record_id")).ok_or("no record_id")?;
    let response = start.bytes("response").ok_or("no response")?;
    let ksf = start.body["ksf"].as_str().unwrap_or_default();
    let (upload, envelope) = client
        .finish(&ctx.parties(user), &response, ksf, &record_id, 2, root)
        .map_err(|e| e.to_string())?;
    let finish = ctx.vault.post(
        &format!("/v1/sessions/{}/password/finish", b64(session.as_bytes())),
        &json!({"upload": b64(&upload), "envelope": b64(&envelope)}),
    );
    if finish.status != 200 || finish.body["version"] != 2 {
        return Err(format!("password/finish: {}", finish.describe()));
    }
    Ok(())
}

fn flow_change_password(ctx: &Ctx) -> Outcome {
    let (user, root) = tri!(ctx.registered("change", None));
    let Recovery::Key { session, .. } = ctx.recover(&user, PASSWORD) else {
        return fail("setup failed", "the first recovery failed");
    };
    let new = b"a new password for the change";
    tri!(change_password(ctx, &user, &session, &root, new));
    let with_new = ctx.recover(&user, new);
    let with_old = ctx.recover(&user, PASSWORD);
    match (&with_new, &with_old) {
        (Recovery::Key { root: got, .. }, Recovery::Ke2Refused)
            if got.as_bytes() == root.as_bytes() =>
        {
            pass("version 2; the new password recovers K, the old one does not verify")
        }
        _ => fail(
            format!(
                "new password: {}; old password: {}",
                with_new.describe(),
                with_old.describe()
            ),
            "",
        ),
    }
}

/// `POST /v1/sessions/{session}/delete` after a verified recovery.
fn delete_in(ctx: &Ctx, session: &SessionId) -> Reply {
    ctx.vault.post(
        &format!("/v1/sessions/{}/delete", b64(session.as_bytes())),
        &json!({}),
    )
}

fn flow_delete(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("delete", None));
    let session = match ctx.recover(&user, PASSWORD) {
        Recovery::Key { session, .. } => session,
        other => return fail(format!("recovery: {}", other.describe()), ""),
    };
    let deleted = delete_in(ctx, &session);
    if deleted.status != 200 {
        return fail(format!("delete: {}", deleted.describe()), "");
    }
    let again = delete_in(ctx, &session);
    let status = tri!(ctx.status(&user));
    let recovery = ctx.recover(&user, PASSWORD);
    if is_error(&again, "unauthorized")
        && status["registered"] == false
        && matches!(recovery, Recovery::Ke2Refused)
    {
        pass("deleted; the session deletes once; the password no longer verifies")
    } else {
        fail(
            format!(
                "second delete {}; status {status}; recovery: {}",
                again.describe(),
                recovery.describe()
            ),
            "",
        )
    }
}

/// spec/vault.md §3.1 step 4: register/finish sends back a record id the client holds, so
/// a client can name another record's; the vault refuses it and changes nothing.
fn record_id_taken(ctx: &Ctx) -> Outcome {
    let (owner, root) = tri!(ctx.registered("id-owner", Some(3)));
    let Recovery::Key {
        record_id: taken, ..
    } = ctx.recover(&owner, PASSWORD)
    else {
        return fail("setup failed", "the owner's recovery failed");
    };
    let taker = ctx.user("id-taker");
    let (client, request) = tri!(RegistrationClient::start(WRONG).map_err(|e| e.to_string()));
    let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
    let start = ctx.vault.post(
        &format!("/v1/users/{}/register/start", segment(&taker)),
        &json!({"request": b64(&request)}),
    );
    let response = tri!(start.bytes("response").ok_or(start.describe()));
    let ksf = start.body["ksf"].as_str().unwrap_or_default();
    let other = tri!(RootKey::generate().map_err(|e| e.to_string()));
    let (upload, envelope) = tri!(client
        .finish(&ctx.parties(&taker), &response, ksf, &taken, 1, &other)
        .map_err(|e| e.to_string()));
    let finish = ctx.vault.post(
        &format!("/v1/users/{}/register/finish", segment(&taker)),
        &json!({"record_id": b64(taken.as_bytes()), "upload": b64(&upload),
            "envelope": b64(&envelope), "limit": 100}),
    );
    let status = tri!(ctx.status(&owner));
    let taker_status = tri!(ctx.status(&taker));
    let again = ctx.recover(&owner, PASSWORD);
    let owner_intact = matches!(&again, Recovery::Key { root: got, .. } if got.as_bytes() == root.as_bytes())
        && status["limit"] == 3;
    if is_error(&finish, "unauthorized") && owner_intact && taker_status["registered"] == false {
        pass("403 unauthorized; the owner's record is unchanged, the taker has none")
    } else {
        fail(
            format!(
                "{}; owner's status {status}; owner's recovery: {}",
                finish.describe(),
                again.describe()
            ),
            "",
        )
    }
}

fn register_over_active(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("twice", None));
    let (_, request) = tri!(RegistrationClient::start(WRONG).map_err(|e| e.to_string()));
    let reply = ctx.vault.post(
        &format!("/v1/users/{}/register/start", segment(&user)),
        &json!({"request": b64(&request)}),
    );
    expect_error(&reply, "unauthorized")
}

fn limit_out_of_bounds(ctx: &Ctx) -> Outcome {
    let root = tri!(RootKey::generate().map_err(|e| e.to_string()));
    match ctx.register(&ctx.user("limit0"), PASSWORD, &root, Some(0)) {
        Ok(()) => fail("registered with limit 0", ""),
        Err(e) if e.contains("422 unsupported") => pass(e),
        Err(e) => fail(e, ""),
    }
}

/// spec/vault.md §3.3: a password change needs a verified session: neither a session never
/// issued nor one whose KE3 was never sent will do.
fn password_change_without_recovery(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("change-unverified", None));
    let (start, _) = ctx.ke1(&user, PASSWORD);
    let Some(unverified) = session_id(start.bytes("session_id")) else {
        return fail(format!("recover/start: {}", start.describe()), "");
    };
    let (_, request) = tri!(RegistrationClient::start(WRONG).map_err(|e| e.to_string()));
    let answers: Vec<Reply> = [[7u8; 16], *unverified.as_bytes()]
        .iter()
        .map(|session| {
            ctx.vault.post(
                &format!("/v1/sessions/{}/password/start", b64(session)),
                &json!({"request": b64(&request)}),
            )
        })
        .collect();
    if answers.iter().all(|a| is_error(a, "unauthorized")) {
        pass("403 unauthorized twice")
    } else {
        let seen: Vec<String> = answers.iter().map(Reply::describe).collect();
        fail(
            format!(
                "unknown session {}; unverified session {}",
                seen[0], seen[1]
            ),
            "",
        )
    }
}

fn abandoned_counts(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("abandoned", Some(5)));
    let (reply, _) = ctx.ke1(&user, WRONG);
    if reply.status != 200 {
        return fail(format!("KE1: {}", reply.describe()), "");
    }
    match tri!(ctx.guesses_left(&user)) {
        4 => pass("4 of 5 guesses left after one KE2 without KE3"),
        n => fail(
            format!("{n} of 5 guesses left"),
            "the guess must count when KE2 is released",
        ),
    }
}

fn success_resets(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("reset", Some(5)));
    for _ in 0..2 {
        let _ = ctx.ke1(&user, WRONG);
    }
    let before = tri!(ctx.guesses_left(&user));
    let recovered = ctx.recover(&user, PASSWORD);
    let after = tri!(ctx.guesses_left(&user));
    match (&recovered, before, after) {
        (Recovery::Key { .. }, 3, 5) => pass("3 left after two guesses; 5 after a recovery"),
        _ => fail(
            format!(
                "{before} left, then {}, then {after} left",
                recovered.describe()
            ),
            "",
        ),
    }
}

fn last_guess_works(ctx: &Ctx) -> Outcome {
    let (user, root) = tri!(ctx.registered("last", Some(3)));
    for _ in 0..2 {
        let _ = ctx.ke1(&user, WRONG);
    }
    match ctx.recover(&user, PASSWORD) {
        Recovery::Key { root: got, .. } if got.as_bytes() == root.as_bytes() => {
            pass("the third of three guesses recovers K")
        }
        other => fail(other.describe(), "the last guess must still be honoured"),
    }
}

fn exact_limit_destroys(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("exact", Some(3)));
    for _ in 0..3 {
        let _ = ctx.ke1(&user, WRONG);
    }
    let recovery = ctx.recover(&user, PASSWORD);
    let status = tri!(ctx.status(&user));
    if matches!(recovery, Recovery::Ke2Refused)
        && status["registered"] == false
        && status["state"] == "destroyed"
    {
        pass("after 3 guesses the right password no longer verifies; the record is destroyed")
    } else {
        fail(
            format!("recovery: {}; status {status}", recovery.describe()),
            "",
        )
    }
}

fn parallel_guesses_bounded(ctx: &Ctx) -> Outcome {
    const LIMIT: usize = 4;
    const CLIENTS: usize = 12;
    let (user, _) = tri!(ctx.registered("parallel", Some(LIMIT as u32)));
    // Every client guesses the right password, so each KE2 that verifies at the client is
    // a real OPRF evaluation (a fake one never verifies): their number is what was released.
    // The guesses go out together; their KE2s are then checked one at a time, so the KSF
    // the vault names is paid once at a time, not twelve times at once.
    let answers: Vec<Option<(Reply, Option<RecoveryClient>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| scope.spawn(|| ctx.ke1(&user, PASSWORD)))
            .collect();
        handles.into_iter().map(|h| h.join().ok()).collect()
    });
    if answers.iter().any(Option::is_none) {
        return fail("a guessing thread panicked", "");
    }
    // Every client guessed the right password, so each KE2 that verifies is a real OPRF
    // evaluation (a fake one never verifies): their number is what the vault released.
    let verified = answers
        .into_iter()
        .flatten()
        .filter_map(|(reply, client)| client.and_then(|c| ctx.verify_ke2(&user, &reply, c)))
        .count();
    let status = tri!(ctx.status(&user));
    if verified <= LIMIT && status["registered"] == false && status["state"] == "destroyed" {
        pass(format!(
            "{verified} real KE2s for {CLIENTS} parallel guesses with limit {LIMIT}; destroyed"
        ))
    } else {
        fail(
            format!("{verified} real KE2s for {CLIENTS} parallel guesses with limit {LIMIT}; status {status}"),
            "parallel guesses must never exceed the limit",
        )
    }
}

fn fake_ke2_for_unknown_user(ctx: &Ctx) -> Outcome {
    let (real_user, _) = tri!(ctx.registered("real", None));
    let (real, _) = ctx.ke1(&real_user, WRONG);
    let unknown = ctx.user("never-registered");
    let (fake, client) = ctx.ke1(&unknown, PASSWORD);
    let Some(client) = client else {
        return fail(
            format!("KE1 of an unknown user: {}", fake.describe()),
            "a fake KE2 is required",
        );
    };
    let shape = |r: &Reply| {
        (
            r.bytes("ke2").map(|k| k.len()),
            r.bytes("session_id").map(|s| s.len()),
            r.body["ksf"].clone(),
        )
    };
    let verifies = ctx.verify_ke2(&unknown, &fake, client).is_some();
    if shape(&fake) == shape(&real) && !verifies {
        pass("200 with a KE2 shaped like a real one; it does not verify")
    } else {
        fail(
            format!(
                "fake {:?}, real {:?}, verifies: {verifies}",
                shape(&fake),
                shape(&real)
            ),
            "",
        )
    }
}

fn fake_session_ke3(ctx: &Ctx) -> Outcome {
    let unknown = ctx.user("fake-session");
    let (fake, _) = ctx.ke1(&unknown, PASSWORD);
    let Some(session) = session_id(fake.bytes("session_id")) else {
        return fail(fake.describe(), "no session id");
    };
    expect_error(&ctx.finish(&session, &[1u8; 64]), "wrong_password")
}

fn replayed_ke3(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("replay", None));
    let Recovery::Key { session, ke3, .. } = ctx.recover(&user, PASSWORD) else {
        return fail("setup failed", "the recovery failed");
    };
    expect_error(&ctx.finish(&session, &ke3), "wrong_password")
}

fn unknown_session(ctx: &Ctx) -> Outcome {
    expect_error(
        &ctx.finish(&SessionId::from_bytes([9u8; 16]), &[1u8; 64]),
        "wrong_password",
    )
}

fn wrong_ke3_counts(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("bad-ke3", Some(5)));
    let (reply, _) = ctx.ke1(&user, WRONG);
    let Some(session) = session_id(reply.bytes("session_id")) else {
        return fail(reply.describe(), "no session id");
    };
    let answer = ctx.finish(&session, &[1u8; 64]);
    let left = tri!(ctx.guesses_left(&user));
    if is_error(&answer, "wrong_password") && left == 4 {
        pass("wrong_password; the guess stays counted (4 of 5 left)")
    } else {
        fail(format!("{}; {left} of 5 left", answer.describe()), "")
    }
}

/// spec/vault.md §3.2 step 4 and §4.2: a failed KE3 on the session of the last guess
/// destroys the record then, not at the next KE1.
fn failed_ke3_at_limit_destroys(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("ke3-at-limit", Some(2)));
    let _ = ctx.ke1(&user, WRONG);
    let (reply, _) = ctx.ke1(&user, WRONG);
    let Some(session) = session_id(reply.bytes("session_id")) else {
        return fail(reply.describe(), "no session id for the second guess");
    };
    let answer = ctx.finish(&session, &[1u8; 64]);
    let status = tri!(ctx.status(&user));
    if is_error(&answer, "wrong_password")
        && status["registered"] == false
        && status["state"] == "destroyed"
    {
        pass("wrong_password; the record is destroyed at once")
    } else {
        fail(format!("{}; status {status}", answer.describe()), "")
    }
}

/// spec/vault.md §3.2 step 4: a KE3 that verifies for a record whose password changed since
/// its KE1 is `locked`, and releases nothing (the envelope it would release is the old one).
fn ke3_after_password_change_locked(ctx: &Ctx) -> Outcome {
    let (user, root) = tri!(ctx.registered("held-ke3", None));
    let (held, client) = ctx.ke1(&user, PASSWORD);
    let Some(client) = client else {
        return fail(format!("KE1: {}", held.describe()), "");
    };
    let Some(held_session) = session_id(held.bytes("session_id")) else {
        return fail(held.describe(), "no session id");
    };
    let Some(done) = ctx.verify_ke2(&user, &held, client) else {
        return fail("the held KE2 does not verify", "");
    };
    let Recovery::Key { session, .. } = ctx.recover(&user, PASSWORD) else {
        return fail("setup failed", "the second recovery failed");
    };
    tri!(change_password(
        ctx,
        &user,
        &session,
        &root,
        b"changed while a KE3 was held"
    ));
    let answer = ctx.finish(&held_session, &done.ke3);
    if is_error(&answer, "locked") && answer.bytes("release").is_none() {
        pass("423 locked; nothing released")
    } else {
        fail(
            answer.describe(),
            "the held KE3 was sent after the password change",
        )
    }
}

/// spec/vault.md §3.2 steps 2 and 4: past the session lifetime, a held KE3 is
/// `wrong_password` (its guess stays counted) and a verified session no longer changes the
/// password.
fn session_expired(ctx: &Ctx) -> Outcome {
    let Some(lifetime) = ctx.session_lifetime else {
        return skip("no session lifetime given (--vault-session-lifetime)");
    };
    let (user, _) = tri!(ctx.registered("expiry-held", Some(5)));
    let (held, client) = ctx.ke1(&user, PASSWORD);
    let (Some(client), Some(session)) = (client, session_id(held.bytes("session_id"))) else {
        return fail(held.describe(), "KE1");
    };
    let Some(done) = ctx.verify_ke2(&user, &held, client) else {
        return fail("the KE2 does not verify", "");
    };
    let (owner, _) = tri!(ctx.registered("expiry-verified", None));
    let Recovery::Key {
        session: verified, ..
    } = ctx.recover(&owner, PASSWORD)
    else {
        return fail("setup failed", "the recovery failed");
    };
    std::thread::sleep(lifetime + std::time::Duration::from_secs(1));
    let late = ctx.finish(&session, &done.ke3);
    let left = tri!(ctx.guesses_left(&user));
    let (_, request) = tri!(RegistrationClient::start(WRONG).map_err(|e| e.to_string()));
    let change = ctx.vault.post(
        &format!("/v1/sessions/{}/password/start", b64(verified.as_bytes())),
        &json!({"request": b64(&request)}),
    );
    if is_error(&late, "wrong_password") && left == 4 && is_error(&change, "unauthorized") {
        pass(format!(
            "after {} s: KE3 wrong_password (4 of 5 left); password change unauthorized",
            lifetime.as_secs() + 1
        ))
    } else {
        fail(
            format!(
                "after {} s: KE3 {}; {left} of 5 left; password change {}",
                lifetime.as_secs() + 1,
                late.describe(),
                change.describe()
            ),
            "",
        )
    }
}

/// spec/vault.md §4.3: what the vault acknowledged survives a crash: a counted guess (KE2
/// returned), the reset of a recovery (release returned), a password change (version 2
/// returned); restarted after each, it shows each.
fn durable_across_restarts(ctx: &Ctx) -> Outcome {
    if ctx.restart.is_none() {
        return skip("no way to restart the vault given (--vault-restart-command)");
    }
    let (user, root) = tri!(ctx.registered("durable", Some(5)));
    let (guess, _) = ctx.ke1(&user, WRONG);
    if guess.status != 200 {
        return fail(format!("KE1: {}", guess.describe()), "");
    }
    tri!(ctx.restarted(&user));
    let after_guess = tri!(ctx.guesses_left(&user));
    if !matches!(ctx.recover(&user, PASSWORD), Recovery::Key { .. }) {
        return fail("the recovery after the first restart failed", "");
    }
    tri!(ctx.restarted(&user));
    let after_reset = tri!(ctx.guesses_left(&user));
    let Recovery::Key { session: held, .. } = ctx.recover(&user, PASSWORD) else {
        return fail("the recovery after the second restart failed", "");
    };
    let new = b"changed just before a restart";
    tri!(change_password(ctx, &user, &held, &root, new));
    tri!(ctx.restarted(&user));
    let with_new = ctx.recover(&user, new);
    let recovered =
        matches!(&with_new, Recovery::Key { root: got, .. } if got.as_bytes() == root.as_bytes());
    if after_guess == 4 && after_reset == 5 && recovered {
        pass("after each restart: 4 of 5 left, then 5 of 5, then the new password recovers K")
    } else {
        fail(
            format!(
                "after the guess {after_guess} of 5 left; after the recovery {after_reset} of 5; \
                 after the password change: {}",
                with_new.describe()
            ),
            "",
        )
    }
}

/// spec/vault.md §9 and §3.2 step 4: tenants never see each other's records, and another
/// tenant's KE3 naming a session neither answers differently nor ends that session.
fn tenancy_isolated(ctx: &Ctx) -> Outcome {
    let Some(other) = &ctx.other else {
        return skip("no second tenant's token given (--vault-other-tenant-token-file)");
    };
    let (user, root) = tri!(ctx.registered("tenancy", Some(5)));
    let path = |what: &str| format!("/v1/users/{}/{what}", segment(&user));
    // The other tenant does not see the record, and its guesses are not this tenant's.
    let seen = other.get(&path("status"));
    let (client, ke1) = tri!(RecoveryClient::start(PASSWORD).map_err(|e| e.to_string()));
    let fake = other.post(&path("recover/start"), &json!({"ke1": b64(&ke1)}));
    let fake_verifies = ctx.verify_ke2(&user, &fake, client).is_some();
    let left_after_other = tri!(ctx.guesses_left(&user));
    // A session of this tenant, its KE3 held; the other tenant sends a KE3 for it first.
    let (held, client) = ctx.ke1(&user, PASSWORD);
    let (Some(client), Some(session)) = (client, session_id(held.bytes("session_id"))) else {
        return fail(held.describe(), "KE1 of the owning tenant");
    };
    let Some(done) = ctx.verify_ke2(&user, &held, client) else {
        return fail("the owning tenant's KE2 does not verify", "");
    };
    let intruder = other.post(
        &format!("/v1/sessions/{}/finish", b64(session.as_bytes())),
        &json!({"ke3": b64(&done.ke3)}),
    );
    let owner = ctx.finish(&session, &done.ke3);
    let recovered = owner
        .bytes("release")
        .and_then(|release| done.open(&session, &release).ok())
        .is_some_and(|(_, _, k)| k.as_bytes() == root.as_bytes());
    let checks = [
        (
            seen.status == 200 && seen.body["registered"] == false,
            "the other tenant sees no record",
        ),
        (
            fake.status == 200 && !fake_verifies,
            "the other tenant gets a fake KE2",
        ),
        (
            left_after_other == 5,
            "the other tenant's KE1 counts no guess here",
        ),
        (
            is_error(&intruder, "wrong_password"),
            "the other tenant's KE3 is wrong_password",
        ),
        (recovered, "the session still recovers K for its own tenant"),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        None => pass("isolated: no record, a fake KE2, no guess, no session taken"),
        Some((_, what)) => fail(
            format!(
                "not so: {what} (status {}; KE1 {}; {left_after_other} of 5 left; KE3 {}; own KE3 {})",
                seen.describe(),
                fake.describe(),
                intruder.describe(),
                owner.describe()
            ),
            "",
        ),
    }
}

/// spec/vault.md §3.2 step 2: a KE1 of the right length whose blinded element is not a
/// valid ristretto255 element (a non-canonical encoding, or the identity) is `malformed`
/// and counts no guess.
fn invalid_element_not_counted(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("bad-element", Some(5)));
    let (_, ke1) = tri!(RecoveryClient::start(PASSWORD).map_err(|e| e.to_string()));
    let mut answers = Vec::new();
    for element in [[0xffu8; 32], [0u8; 32]] {
        let mut bad = ke1.clone();
        bad[..32].copy_from_slice(&element);
        answers.push(ctx.vault.post(
            &format!("/v1/users/{}/recover/start", segment(&user)),
            &json!({"ke1": b64(&bad)}),
        ));
    }
    let left = tri!(ctx.guesses_left(&user));
    if answers.iter().all(|a| is_error(a, "malformed")) && left == 5 {
        pass("400 malformed twice; no guess counted")
    } else {
        let seen: Vec<String> = answers.iter().map(Reply::describe).collect();
        fail(format!("{}; {left} of 5 left", seen.join("; ")), "")
    }
}

fn malformed_ke1_not_counted(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("short-ke1", Some(5)));
    let reply = ctx.vault.post(
        &format!("/v1/users/{}/recover/start", segment(&user)),
        &json!({"ke1": b64(&[5u8; 40])}),
    );
    let left = tri!(ctx.guesses_left(&user));
    if is_error(&reply, "malformed") && left == 5 {
        pass("400 malformed; no guess counted")
    } else {
        fail(format!("{}; {left} of 5 left", reply.describe()), "")
    }
}

/// spec/vault.md §10: a path the API does not have is 400 `malformed`; a path it has, asked
/// with another method, is 405 with the same error body.
fn unknown_route_and_wrong_method(ctx: &Ctx) -> Outcome {
    let token = Some(ctx.vault.token());
    let route = ctx
        .vault
        .raw(Method::Get, "/v1/no-such-endpoint", None, token);
    let user = ctx.user("wrong-method");
    let method = ctx.vault.raw(
        Method::Get,
        &format!("/v1/users/{}/recover/start", segment(&user)),
        None,
        token,
    );
    let allows_post = method
        .allow
        .as_deref()
        .is_some_and(|a| a.split(',').any(|m| m.trim() == "POST"));
    if is_error(&route, "malformed")
        && method.status == 405
        && method.class() == "malformed"
        && allows_post
    {
        pass("400 malformed; 405 malformed with Allow: POST")
    } else {
        fail(
            format!(
                "unknown path {}; GET on recover/start {} (Allow: {:?})",
                route.describe(),
                method.describe(),
                method.allow
            ),
            "",
        )
    }
}

fn raw_post(ctx: &Ctx, path: &str, body: &[u8]) -> Reply {
    ctx.vault
        .raw(Method::Post, path, Some(body), Some(ctx.vault.token()))
}

fn not_json(ctx: &Ctx) -> Outcome {
    let path = format!("/v1/users/{}/recover/start", segment(&ctx.user("not-json")));
    expect_error(&raw_post(ctx, &path, b"{not json"), "malformed")
}

/// A valid KE1 (so that only the rule under test can refuse the request).
fn valid_ke1() -> Result<Vec<u8>, String> {
    RecoveryClient::start(PASSWORD)
        .map(|(_, ke1)| ke1)
        .map_err(|e| e.to_string())
}

fn unknown_field(ctx: &Ctx) -> Outcome {
    let path = format!(
        "/v1/users/{}/recover/start",
        segment(&ctx.user("unknown-field"))
    );
    let body = json!({"ke1": b64(&tri!(valid_ke1())), "extra": 1}).to_string();
    expect_error(&raw_post(ctx, &path, body.as_bytes()), "malformed")
}

/// A valid KE1 with one character that is not base64url in the middle of its encoding: a
/// decoder that skips it would read the KE1 and count a guess.
fn bad_base64(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("bad-base64", Some(5)));
    let mut text = b64(&tri!(valid_ke1()));
    text.insert(64, '*');
    let path = format!("/v1/users/{}/recover/start", segment(&user));
    let reply = raw_post(ctx, &path, json!({"ke1": text}).to_string().as_bytes());
    let left = tri!(ctx.guesses_left(&user));
    if is_error(&reply, "malformed") && left == 5 {
        pass("400 malformed; no guess counted")
    } else {
        fail(format!("{}; {left} of 5 left", reply.describe()), "")
    }
}

fn oversized(ctx: &Ctx) -> Outcome {
    let path = format!(
        "/v1/users/{}/recover/start",
        segment(&ctx.user("oversized"))
    );
    // Just over the 8 KiB limit. A server may close the connection without reading the
    // body, which can reset it before the 413 is read: one retry, then the reply counts.
    let body = json!({"ke1": "A".repeat(9 * 1024)}).to_string();
    let mut reply = raw_post(ctx, &path, body.as_bytes());
    if reply.transport.is_some() {
        reply = raw_post(ctx, &path, body.as_bytes());
    }
    if reply.status == 413 && reply.class() == "malformed" {
        pass(reply.describe())
    } else {
        fail(reply.describe(), "a body above 8 KiB is 413 malformed")
    }
}

fn long_user(ctx: &Ctx) -> Outcome {
    let user = ctx.user(&"u".repeat(257));
    let body = json!({"ke1": b64(&tri!(valid_ke1()))}).to_string();
    expect_error(
        &raw_post(
            ctx,
            &format!("/v1/users/{user}/recover/start"),
            body.as_bytes(),
        ),
        "malformed",
    )
}

fn bad_session_id(ctx: &Ctx) -> Outcome {
    let body = json!({"ke3": b64(&[0u8; 64])}).to_string();
    expect_error(
        &raw_post(ctx, "/v1/sessions/not-16-bytes/finish", body.as_bytes()),
        "malformed",
    )
}

fn missing_token(ctx: &Ctx) -> Outcome {
    let reply = ctx.vault.raw(
        Method::Get,
        &format!("/v1/users/{}/status", segment(&ctx.user("missing-token"))),
        None,
        None,
    );
    if is_token_refusal(&reply) && reply.www_authenticate.is_some() {
        pass("401 unauthorized with WWW-Authenticate")
    } else {
        fail(reply.describe(), "")
    }
}

fn wrong_token(ctx: &Ctx) -> Outcome {
    let reply = ctx.vault.raw(
        Method::Get,
        &format!("/v1/users/{}/status", segment(&ctx.user("wrong-token"))),
        None,
        Some("not-a-tenant-token-of-this-vault-at-all"),
    );
    if is_token_refusal(&reply) {
        pass(reply.describe())
    } else {
        fail(reply.describe(), format!("body: {}", reply.body))
    }
}

fn user_rate_limited(ctx: &Ctx) -> Outcome {
    let user = ctx.user("rate");
    let started = std::time::Instant::now();
    for n in 1..=200 {
        if started.elapsed() > ctx.timeout {
            return fail(
                format!("{n} guesses in {:?} without a 429", ctx.timeout),
                "",
            );
        }
        let (reply, _) = ctx.ke1(&user, WRONG);
        if reply.status == 429 {
            return if reply.class() == "rate_limited" && reply.retry_after.is_some() {
                pass(format!("429 rate_limited with Retry-After at guess {n}"))
            } else {
                fail(
                    reply.describe(),
                    "429 needs class rate_limited and Retry-After",
                )
            };
        }
        if reply.status != 200 {
            return fail(reply.describe(), format!("at guess {n}"));
        }
    }
    fail("200 guesses in a row for one user without a 429", "")
}

/// spec/vault.md §9: one tenant's flood of requests meets its own bucket (429 with
/// Retry-After) and leaves the other tenants served.
fn tenant_rate_limited(ctx: &Ctx) -> Outcome {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (Some(other), Some(rate)) = (&ctx.other, ctx.tenant_rate) else {
        return skip(
            "no tenant rate and second tenant given (--vault-tenant-rate, \
             --vault-other-tenant-token-file)",
        );
    };
    // The flood comes from the other tenant, so that this tenant's other cases are not
    // slowed; at most 20 seconds' worth of the rate, plus room for a burst, before the first
    // 429. After it the flood goes on while this tenant asks MINE times: asked only after
    // the flood stopped, a shared bucket could have refilled a token in between, so a vault
    // that keeps one bucket for all tenants passed now and then.
    const MINE: usize = 5;
    let budget = (rate * 20.0) as usize + 1000;
    let path = format!("/v1/users/{}/status", segment(&ctx.user("tenant-flood")));
    let (sent, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
    let first_429 = std::sync::Mutex::new(None::<Reply>);
    let flooders_done = AtomicUsize::new(0);
    let mut mine = Vec::new();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let started = std::time::Instant::now();
                while !stop.load(Ordering::SeqCst) && started.elapsed() < ctx.timeout {
                    let limited_yet = first_429.lock().is_ok_and(|f| f.is_some());
                    if !limited_yet && sent.fetch_add(1, Ordering::SeqCst) >= budget {
                        break;
                    }
                    let reply = other.get(&path);
                    if reply.status == 429 {
                        if let Ok(mut first) = first_429.lock() {
                            first.get_or_insert(reply);
                        }
                    }
                }
                flooders_done.fetch_add(1, Ordering::SeqCst);
            });
        }
        while flooders_done.load(Ordering::SeqCst) < 4 {
            if first_429.lock().is_ok_and(|f| f.is_some()) {
                mine = (0..MINE).map(|_| ctx.vault.get(&path)).collect();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        stop.store(true, Ordering::SeqCst);
    });
    let limited: Vec<Reply> = first_429.into_inner().ok().flatten().into_iter().collect();
    let sent = sent.load(Ordering::SeqCst).min(budget);
    let refused = mine.iter().find(|r| r.status != 200);
    match limited.first() {
        Some(_) if mine.is_empty() => fail(
            "the flood ended (--timeout) before this tenant could ask",
            "",
        ),
        Some(reply) if reply.class() == "rate_limited" && reply.retry_after.is_some() => {
            match refused {
                None => pass(format!(
                    "429 rate_limited with Retry-After within {sent} requests; this tenant \
                     was served {MINE} times during the other's flood"
                )),
                Some(reply) => fail(
                    format!(
                        "this tenant got {} during the other's flood",
                        reply.describe()
                    ),
                    "one tenant's bucket must not be another's",
                ),
            }
        }
        Some(reply) => fail(
            reply.describe(),
            "429 needs class rate_limited and Retry-After",
        ),
        None => fail(
            format!("{sent} requests of one tenant without a 429 (rate {rate}/s)"),
            "",
        ),
    }
}

/// spec/vault.md §9.1 (1): HTTPS, or plain HTTP on loopback only.
fn transport_https(ctx: &Ctx) -> Outcome {
    let base = ctx.vault.base();
    match check_url(base, false) {
        Ok(true) => pass("https"),
        Ok(false) => pass("plain HTTP on loopback"),
        Err(_) => fail(
            format!("plain HTTP at {base}"),
            "a vault reachable from another host must be served over HTTPS",
        ),
    }
}

/// How long the suite waits for a vault to close a connection that sends nothing more.
const IDLE_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

/// spec/vault.md §9.1 (3): a connection that never finishes its handshake or headers is
/// closed by the vault within a bound (the suite allows 30 s; the reference takes 10).
fn transport_stalled_connection_closed(ctx: &Ctx) -> Outcome {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let authority = ctx.vault.authority();
    let Some(address) = authority.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return fail(format!("cannot resolve {authority}"), "");
    };
    let mut stream =
        match std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(10)) {
            Ok(stream) => stream,
            Err(e) => return fail(format!("cannot connect to {authority}: {e}"), ""),
        };
    // Plain HTTP: half a request. HTTPS: the first bytes of a ClientHello. Then nothing.
    let start: &[u8] = if ctx.vault.base().starts_with("https") {
        &[0x16, 0x03, 0x01]
    } else {
        b"POST /v1/users/x/recover/start HTTP/1.1\r\nHost: x\r\n"
    };
    let began = std::time::Instant::now();
    if let Err(e) = stream.write_all(start) {
        return fail(format!("write: {e}"), "");
    }
    let _ = stream.set_read_timeout(Some(IDLE_BOUND));
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(_) => {
                return fail(
                    format!("still open after {} s", IDLE_BOUND.as_secs()),
                    "a stalled connection must be closed (spec/vault.md §9.1)",
                )
            }
        }
    }
    pass(format!(
        "closed after {:.1} s",
        began.elapsed().as_secs_f64()
    ))
}

/// spec/vault.md §3.3: the tenant token alone cannot delete a record, nor can a session
/// whose recovery did not verify.
fn delete_needs_the_password(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("delete-proof", None));
    let bare = ctx.vault.delete(&format!("/v1/users/{}", segment(&user)));
    let (start, _) = ctx.ke1(&user, WRONG);
    let unverified = match session_id(start.bytes("session_id")) {
        Some(session) => delete_in(ctx, &session),
        None => return fail(format!("recover/start: {}", start.describe()), ""),
    };
    let status = tri!(ctx.status(&user));
    if is_error(&bare, "unauthorized")
        && is_error(&unverified, "unauthorized")
        && status["registered"] == true
    {
        pass("403 unauthorized twice; still registered")
    } else {
        fail(
            format!(
                "bare DELETE {}; delete in an unverified session {}; status {status}",
                bare.describe(),
                unverified.describe()
            ),
            "",
        )
    }
}

/// spec/vault.md §9.3: a valid user token is accepted for its own user (the control).
fn user_token_accepted(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("token-own", None));
    let token = match ctx.user_token(&user, None, 0, 600) {
        Ok(token) => token,
        Err(outcome) => return outcome,
    };
    let reply = ctx.vault.raw(
        Method::Get,
        &format!("/v1/users/{}/status", segment(&user)),
        None,
        Some(&token),
    );
    if reply.status == 200 && reply.body["registered"] == true {
        pass("200, registered")
    } else {
        fail(reply.describe(), "")
    }
}

/// spec/vault.md §9.3: a user token for one user is refused for another's record, before
/// anything is counted.
fn user_token_for_another_user(ctx: &Ctx) -> Outcome {
    let (victim, _) = tri!(ctx.registered("token-victim", None));
    let token = match ctx.user_token(&ctx.user("token-other"), None, 0, 600) {
        Ok(token) => token,
        Err(outcome) => return outcome,
    };
    let (_, ke1) = tri!(RecoveryClient::start(PASSWORD).map_err(|e| e.to_string()));
    let reply = ctx.vault.raw(
        Method::Post,
        &format!("/v1/users/{}/recover/start", segment(&victim)),
        Some(json!({"ke1": b64(&ke1)}).to_string().as_bytes()),
        Some(&token),
    );
    let status = tri!(ctx.status(&victim));
    if is_error(&reply, "unauthorized") && status["guesses_left"] == status["limit"] {
        pass("403 unauthorized; nothing counted")
    } else {
        fail(format!("{}; status {status}", reply.describe()), "")
    }
}

/// spec/vault.md §9.3: a token whose claims are right but whose signature is another key's
/// (same `kid`) is 401: the claims alone prove nothing.
fn user_token_forged(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("token-forged", None));
    let Some(signer) = &ctx.signer else {
        return skip("no user-token signing key given (--vault-user-key, --vault-user-kid)");
    };
    let (forger, _) = tri!(coffer::http::new_signing_key().map_err(|e| e.to_string()));
    let now = coffer::http::unix_now();
    let claims = coffer::http::UserClaims {
        iss: signer.tenant.clone(),
        sub: user.clone(),
        aud: ctx.server_id.clone(),
        iat: now,
        exp: now + 600,
    };
    let token = tri!(
        coffer::http::mint_user_token(&forger, &signer.kid, &claims).map_err(|e| e.to_string())
    );
    let reply = ctx.vault.raw(
        Method::Get,
        &format!("/v1/users/{}/status", segment(&user)),
        None,
        Some(&token),
    );
    if is_token_refusal(&reply) {
        pass(reply.describe())
    } else {
        fail(
            reply.describe(),
            "a token signed with another key was accepted",
        )
    }
}

/// spec/vault.md §9.3: an expired token, and one for another server, are 401.
fn user_token_expired_or_elsewhere(ctx: &Ctx) -> Outcome {
    let (user, _) = tri!(ctx.registered("token-stale", None));
    let mut answers = Vec::new();
    for (audience, iat, exp) in [(None, -600, -120), (Some("another-server"), 0, 600)] {
        let token = match ctx.user_token(&user, audience, iat, exp) {
            Ok(token) => token,
            Err(outcome) => return outcome,
        };
        answers.push(ctx.vault.raw(
            Method::Get,
            &format!("/v1/users/{}/status", segment(&user)),
            None,
            Some(&token),
        ));
    }
    if answers.iter().all(is_token_refusal) {
        pass("401 unauthorized twice")
    } else {
        let seen: Vec<String> = answers.iter().map(Reply::describe).collect();
        fail(seen.join("; "), "expired, then another audience")
    }
}

const CASES: &[Case] = &[
    Case {
        id: "vault.transport.https",
        level: Level::Must,
        expected: "HTTPS, or plain HTTP only on loopback",
        run: transport_https,
    },
    Case {
        id: "vault.transport.stalled_connection_closed",
        level: Level::Must,
        expected: "a connection that stalls in its handshake or headers is closed within 30 s",
        run: transport_stalled_connection_closed,
    },
    Case {
        id: "vault.flow.register_recover",
        level: Level::Must,
        expected: "K recovered",
        run: flow_register_recover,
    },
    Case {
        id: "vault.flow.status",
        level: Level::Must,
        expected: "registered, guesses left = limit",
        run: flow_status,
    },
    Case {
        id: "vault.flow.change_password",
        level: Level::Must,
        expected: "version 2; only the new password verifies",
        run: flow_change_password,
    },
    Case {
        id: "vault.flow.delete",
        level: Level::Must,
        expected: "deleted, then no_record",
        run: flow_delete,
    },
    Case {
        id: "vault.flow.record_id_taken",
        level: Level::Must,
        expected: "register/finish naming another record's id: 403 unauthorized, nothing changed",
        run: record_id_taken,
    },
    Case {
        id: "vault.flow.register_over_active",
        level: Level::Must,
        expected: "403 unauthorized",
        run: register_over_active,
    },
    Case {
        id: "vault.flow.limit_out_of_bounds",
        level: Level::Must,
        expected: "422 unsupported",
        run: limit_out_of_bounds,
    },
    Case {
        id: "vault.flow.password_change_without_recovery",
        level: Level::Must,
        expected: "in a session never issued, and in one whose KE3 was never sent: 403 unauthorized",
        run: password_change_without_recovery,
    },
    Case {
        id: "vault.guess.abandoned_counts",
        level: Level::Must,
        expected: "a KE2 without KE3 costs one guess",
        run: abandoned_counts,
    },
    Case {
        id: "vault.guess.failed_ke3_counts",
        level: Level::Must,
        expected: "401 wrong_password; the guess stays counted",
        run: wrong_ke3_counts,
    },
    Case {
        id: "vault.guess.success_resets",
        level: Level::Must,
        expected: "a recovery restores every guess",
        run: success_resets,
    },
    Case {
        id: "vault.guess.malformed_not_counted",
        level: Level::Must,
        expected: "400 malformed; no guess counted",
        run: malformed_ke1_not_counted,
    },
    Case {
        id: "vault.guess.invalid_element_not_counted",
        level: Level::Must,
        expected: "400 malformed for a bad group element; no guess counted",
        run: invalid_element_not_counted,
    },
    Case {
        id: "vault.tenancy.isolated",
        level: Level::Must,
        expected: "another tenant sees no record, gets a fake KE2, counts no guess, cannot end a session",
        run: tenancy_isolated,
    },
    Case {
        id: "vault.limit.failed_ke3_at_limit_destroys",
        level: Level::Must,
        expected: "a failed KE3 on the last guess destroys the record",
        run: failed_ke3_at_limit_destroys,
    },
    Case {
        id: "vault.session.ke3_after_password_change_locked",
        level: Level::Must,
        expected: "423 locked; nothing released",
        run: ke3_after_password_change_locked,
    },
    Case {
        id: "vault.limit.last_guess_works",
        level: Level::Must,
        expected: "the limit-th guess recovers K",
        run: last_guess_works,
    },
    Case {
        id: "vault.limit.exact_then_destroyed",
        level: Level::Must,
        expected: "after limit guesses, destroyed",
        run: exact_limit_destroys,
    },
    Case {
        id: "vault.limit.parallel_bounded",
        level: Level::Must,
        expected: "at most limit real KE2s",
        run: parallel_guesses_bounded,
    },
    Case {
        id: "vault.fake.unknown_user",
        level: Level::Must,
        expected: "a fake KE2, shaped like a real one",
        run: fake_ke2_for_unknown_user,
    },
    Case {
        id: "vault.fake.session_ke3",
        level: Level::Must,
        expected: "401 wrong_password",
        run: fake_session_ke3,
    },
    Case {
        id: "vault.session.expired",
        level: Level::Must,
        expected: "past the session lifetime: a held KE3 401 wrong_password (its guess stays counted), a verified session's password change 403 unauthorized",
        run: session_expired,
    },
    Case {
        id: "vault.durability.restart",
        level: Level::Must,
        expected: "restarted after a guess, a recovery and a password change: 4 of 5 left, 5 of 5, the new password recovers K",
        run: durable_across_restarts,
    },
    Case {
        id: "vault.session.replayed_ke3",
        level: Level::Must,
        expected: "401 wrong_password",
        run: replayed_ke3,
    },
    Case {
        id: "vault.session.unknown",
        level: Level::Must,
        expected: "401 wrong_password",
        run: unknown_session,
    },
    Case {
        id: "vault.request.not_json",
        level: Level::Must,
        expected: "400 malformed",
        run: not_json,
    },
    Case {
        id: "vault.request.unknown_field",
        level: Level::Must,
        expected: "400 malformed",
        run: unknown_field,
    },
    Case {
        id: "vault.request.bad_base64",
        level: Level::Must,
        expected: "400 malformed, no guess counted",
        run: bad_base64,
    },
    Case {
        id: "vault.request.oversized",
        level: Level::Must,
        expected: "413 malformed",
        run: oversized,
    },
    Case {
        id: "vault.request.long_user_id",
        level: Level::Must,
        expected: "400 malformed",
        run: long_user,
    },
    Case {
        id: "vault.request.unknown_route_and_wrong_method",
        level: Level::Must,
        expected: "400 malformed for an unknown path; 405 malformed for a wrong method",
        run: unknown_route_and_wrong_method,
    },
    Case {
        id: "vault.request.bad_session_id",
        level: Level::Must,
        expected: "400 malformed",
        run: bad_session_id,
    },
    Case {
        id: "vault.auth.delete_needs_password",
        level: Level::Must,
        expected: "DELETE with the tenant token, or delete in an unverified session: 403 unauthorized; still registered",
        run: delete_needs_the_password,
    },
    Case {
        id: "vault.auth.user_token_accepted",
        level: Level::Must,
        expected: "a user token for its own user: 200",
        run: user_token_accepted,
    },
    Case {
        id: "vault.auth.user_token_for_another_user",
        level: Level::Must,
        expected: "a user token on another user's record: 403 unauthorized, nothing counted",
        run: user_token_for_another_user,
    },
    Case {
        id: "vault.auth.user_token_expired_or_elsewhere",
        level: Level::Must,
        expected: "an expired user token, and one for another server: 401 unauthorized",
        run: user_token_expired_or_elsewhere,
    },
    Case {
        id: "vault.auth.user_token_forged",
        level: Level::Must,
        expected: "a user token signed with another key under the same kid: 401 unauthorized",
        run: user_token_forged,
    },
    Case {
        id: "vault.auth.missing_token",
        level: Level::Must,
        expected: "401 unauthorized",
        run: missing_token,
    },
    Case {
        id: "vault.auth.wrong_token",
        level: Level::Must,
        expected: "401 unauthorized",
        run: wrong_token,
    },
    Case {
        id: "vault.rate.tenant_requests",
        level: Level::Should,
        expected: "the other tenant's flood: 429 rate_limited with Retry-After; this tenant still served",
        run: tenant_rate_limited,
    },
    Case {
        id: "vault.rate.user_guesses",
        level: Level::Should,
        expected: "429 rate_limited with Retry-After",
        run: user_rate_limited,
    },
];

/// The ids of every case with its level (for `--list`).
pub fn case_ids() -> Vec<(&'static str, Level)> {
    CASES.iter().map(|c| (c.id, c.level)).collect()
}

/// Runs every case that `keep` selects against the vault of `ctx`, `jobs` cases at a time
/// (cases never share a user, so they may overlap), except those that disturb every other:
/// a restart of the vault, and a flood that empties the second tenant's bucket (which the
/// tenancy case uses). They run last, one at a time.
pub fn run(ctx: &Ctx, keep: impl Fn(&str) -> bool, jobs: usize) -> anyhow::Result<Vec<CaseResult>> {
    let disturbs =
        |c: &&Case| c.id.starts_with("vault.durability.") || c.id == "vault.rate.tenant_requests";
    let (cases, alone): (Vec<&Case>, Vec<&Case>) = CASES
        .iter()
        .filter(|c| keep(c.id))
        .partition(|c| !disturbs(c));
    let run_case = |_: &mut (), c: &&Case| {
        let outcome = (c.run)(ctx);
        CaseResult {
            suite: "vault-server".into(),
            id: c.id.into(),
            level: c.level,
            status: if outcome.skipped {
                Status::Skipped
            } else if outcome.pass {
                Status::Pass
            } else {
                Status::Fail
            },
            expected: c.expected.into(),
            actual: outcome.actual,
            detail: outcome.detail,
        }
    };
    let mut results = crate::jobs::map(&cases, jobs, || Ok(()), run_case)?;
    results.extend(crate::jobs::map(&alone, 1, || Ok(()), run_case)?);
    Ok(results)
}
