//! Whether the vault's HSM answers (`spec/vault.md` §3.2 step 2). A KE1 counts its guess
//! before the HSM opens the record, so an HSM that fails or hangs would spend a guess on
//! every retry and, at the limit, destroy the record. The watch remembers a failed call, and
//! sees a call in flight for longer than [`STALL`]; the server then checks the HSM (failed)
//! or refuses at once (stalled) before it counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one HSM call may take before the HSM counts as not answering. A local token
/// answers in microseconds to milliseconds; a network HSM under load in tens.
pub(crate) const STALL: Duration = Duration::from_secs(5);

/// What the watch knows of the HSM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// The last call answered and none is stuck.
    Answering,
    /// The last call failed.
    Failed,
    /// A call has been in flight this long (more than [`STALL`]).
    Stalled(Duration),
}

/// The HSM calls in flight and the outcome of the last one.
#[derive(Default)]
pub(crate) struct HsmWatch {
    failed: AtomicBool,
    /// When each call in flight started, by a number of its own.
    in_flight: Mutex<(u64, BTreeMap<u64, Instant>)>,
}

impl HsmWatch {
    /// Runs `call` as one HSM call: its time in flight is watched, its outcome kept.
    pub(crate) fn call<T, E>(&self, call: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let id = self.in_flight.lock().ok().map(|mut calls| {
            let id = calls.0;
            calls.0 += 1;
            calls.1.insert(id, Instant::now());
            id
        });
        let out = call();
        if let (Some(id), Ok(mut calls)) = (id, self.in_flight.lock()) {
            calls.1.remove(&id);
        }
        self.failed.store(out.is_err(), Ordering::Release);
        out
    }

    /// A stuck call first (its failure is yet to come), then the last call's outcome.
    pub(crate) fn health(&self) -> Health {
        let oldest = self
            .in_flight
            .lock()
            .ok()
            .and_then(|calls| calls.1.values().min().map(Instant::elapsed));
        match oldest {
            Some(stuck) if stuck > STALL => Health::Stalled(stuck),
            _ if self.failed.load(Ordering::Acquire) => Health::Failed,
            _ => Health::Answering,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Health, HsmWatch, STALL};
    use std::time::Instant;

    #[test]
    fn a_failure_is_remembered_until_a_call_answers() {
        let watch = HsmWatch::default();
        assert_eq!(watch.health(), Health::Answering);
        let _ = watch.call(|| Err::<(), _>("gone"));
        assert_eq!(watch.health(), Health::Failed);
        let _ = watch.call(|| Ok::<_, ()>(()));
        assert_eq!(watch.health(), Health::Answering);
    }

    #[test]
    fn a_call_in_flight_past_the_bound_is_a_stall() {
        let watch = HsmWatch::default();
        // A call that started STALL and a bit ago and has not returned.
        watch.in_flight.lock().unwrap().1.insert(
            7,
            Instant::now() - STALL - std::time::Duration::from_millis(10),
        );
        assert!(matches!(watch.health(), Health::Stalled(d) if d > STALL));
        watch.in_flight.lock().unwrap().1.clear();
        assert_eq!(watch.health(), Health::Answering);
    }
}
