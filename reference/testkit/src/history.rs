//! Guess histories of the multi-site tests and their check (a small checker for counters, not
//! a general linearizability checker such as porcupine). Every KE1 is recorded with its
//! outcome; for each record the audit log's `guess` events must count 1, 2, ..., c with no
//! value missing or repeated (two nodes that read the same count and both wrote it back would
//! repeat one), in log order, with acknowledged <= c <= acknowledged + unknown (an operation
//! cut by a fault may or may not have committed). That is exactly when some sequential order
//! of the operations explains every answer.

use coffer_vault::store::AuditEvent;
use coffer_vault::vault::{KsfFloor, Parties, RecoveryClient};
use std::time::Duration;

/// What one KE1 got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with a KE2: the guess was committed before the answer.
    Acknowledged,
    /// A refusal that says nothing was done (4xx).
    Refused,
    /// No answer or a server error: it may or may not have been counted.
    Unknown,
}

/// Sends one KE1 for `user` to the vault at `url` with tenant token `token`, as a client that
/// never sends KE3 (the guess is spent either way). Returns what came back, and whether the
/// KE2 verified with `password`: a real evaluation verifies, the fake one after the limit
/// never does. Gives up after `timeout`.
pub fn guess(
    url: &str,
    token: &str,
    user: &str,
    password: &[u8],
    timeout: Duration,
) -> (Outcome, bool) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let (state, ke1) = RecoveryClient::start(password).expect("KE1");
    let state = state.ksf_floor(KsfFloor::NONE);
    let sent = agent
        .post(format!("{url}/v1/users/{user}/recover/start"))
        .header("authorization", format!("Bearer {token}"))
        .send(format!(r#"{{"ke1":"{}"}}"#, b64.encode(&ke1)).as_bytes());
    let Ok(mut response) = sent else {
        return (Outcome::Unknown, false);
    };
    let status = response.status().as_u16();
    let body: serde_json::Value =
        serde_json::from_slice(&response.body_mut().read_to_vec().unwrap_or_default())
            .unwrap_or_default();
    match status {
        200 => {
            let ke2 = b64
                .decode(body["ke2"].as_str().unwrap_or_default())
                .unwrap_or_default();
            let parties = Parties {
                user: user.into(),
                server_id: "coffer-vault".into(),
            };
            let real = state
                .finish(&parties, &ke2, body["ksf"].as_str().unwrap_or_default())
                .is_ok();
            (Outcome::Acknowledged, real)
        }
        400..=499 => (Outcome::Refused, false),
        _ => (Outcome::Unknown, false),
    }
}

/// The history check for `user` over the audit log `events`: its guess counts are 1..=c,
/// each once, in log order, and c lies between the acknowledged guesses and those plus the
/// unknown ones. Returns c.
pub fn check_counter(
    events: &[AuditEvent],
    user: &str,
    acknowledged: usize,
    unknown: usize,
) -> usize {
    let in_log_order: Vec<u32> = events
        .iter()
        .filter(|e| e.user == user && e.event == "guess")
        .map(|e| {
            let n = e.detail.trim_start_matches("guesses=");
            n.split('/').next().unwrap().parse().unwrap()
        })
        .collect();
    let mut counts = in_log_order.clone();
    counts.sort_unstable();
    let c = counts.len();
    assert_eq!(
        counts,
        (1..=c as u32).collect::<Vec<_>>(),
        "{user}: the counts in the audit log must be 1..={c} with none lost or repeated"
    );
    assert_eq!(
        in_log_order, counts,
        "{user}: the log's order is the counts' order (one sequential history)"
    );
    assert!(
        acknowledged <= c && c <= acknowledged + unknown,
        "{user}: {c} guesses counted for {acknowledged} acknowledged and {unknown} unknown"
    );
    c
}
