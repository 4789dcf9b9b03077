//! A record's transitions (`spec/vault.md` §4), the same for every store: each takes the
//! record as read and says what to write, which audit events to log, and what to answer.
//! The stores only read, check and write them atomically.

use super::{GuessOutcome, Record, RecordState, StoreError};

/// What an operation does to the record it read.
pub(crate) enum Change<T> {
    /// Nothing to write: return this.
    Done(T),
    /// Write this record (and log these events), then return `out`.
    Write {
        record: Record,
        events: Vec<(&'static str, String)>,
        out: T,
    },
}

impl<T> Change<T> {
    /// The same change, answering `f(out)` instead of `out`.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Change<U> {
        match self {
            Change::Done(out) => Change::Done(f(out)),
            Change::Write {
                record,
                events,
                out,
            } => Change::Write {
                record,
                events,
                out: f(out),
            },
        }
    }
}

fn write<T>(record: Record, event: &'static str, detail: String, out: T) -> Change<T> {
    Change::Write {
        record,
        events: vec![(event, detail)],
        out,
    }
}

fn ended(r: &Record, state: RecordState) -> Record {
    Record {
        state,
        sealed: None,
        ..r.clone()
    }
}

/// The user's record as read, if it is active.
fn active(current: Option<&Record>) -> Option<&Record> {
    current.filter(|r| r.state == RecordState::Active)
}

/// A registration: `new` becomes the user's active record unless one exists.
pub(crate) fn insert(current: Option<&Record>, new: &Record) -> Result<Change<()>, StoreError> {
    if active(current).is_some() {
        return Err(StoreError::Exists);
    }
    let record = Record {
        state: RecordState::Active,
        guesses: 0,
        ..new.clone()
    };
    let detail = format!("limit={} ksf={}", new.limit, new.ksf);
    Ok(write(record, "registered", detail, ()))
}

/// One guess (§4.2): counted, or the record destroyed if it had used them all.
pub(crate) fn count_guess(current: Option<&Record>) -> Change<GuessOutcome> {
    let Some(r) = active(current) else {
        return Change::Done(GuessOutcome::Absent);
    };
    if r.guesses >= r.limit {
        let detail = format!("guesses={}/{} used up", r.guesses, r.limit);
        return write(
            ended(r, RecordState::Destroyed),
            "destroyed",
            detail,
            GuessOutcome::Destroyed,
        );
    }
    let counted = Record {
        guesses: r.guesses + 1,
        ..r.clone()
    };
    let mut events = vec![(
        "guess",
        format!("guesses={}/{}", counted.guesses, counted.limit),
    )];
    if counted.guesses == counted.limit {
        events.push((
            "locked",
            "last guess given out: a failure destroys the record".into(),
        ));
    }
    Change::Write {
        record: counted.clone(),
        events,
        out: GuessOutcome::Counted(counted),
    }
}

/// The active record `id` as read, if `current` is it.
fn this_active<'a>(current: Option<&'a Record>, id: &super::RecordId) -> Option<&'a Record> {
    active(current).filter(|r| r.record_id == *id)
}

/// A verified recovery of `id` at `version`: guesses back to 0.
pub(crate) fn recovered(
    current: Option<&Record>,
    id: &super::RecordId,
    version: u32,
) -> Change<bool> {
    match this_active(current, id).filter(|r| r.version == version) {
        Some(r) => write(
            Record {
                guesses: 0,
                ..r.clone()
            },
            "recovered",
            format!("after guesses={}/{}", r.guesses, r.limit),
            true,
        ),
        None => Change::Done(false),
    }
}

/// A failed KE3 of `id`: destroyed if it has used all its guesses.
pub(crate) fn failed_at_limit(current: Option<&Record>, id: &super::RecordId) -> Change<bool> {
    match this_active(current, id).filter(|r| r.guesses >= r.limit) {
        Some(r) => write(
            ended(r, RecordState::Destroyed),
            "destroyed",
            format!("last guess failed at {}/{}", r.guesses, r.limit),
            true,
        ),
        None => Change::Done(false),
    }
}

/// A password change of `id` from `version`: new secrets, version + 1, guesses back to 0 (as
/// after the recovery the change follows in the same session).
pub(crate) fn replace(
    current: Option<&Record>,
    id: &super::RecordId,
    version: u32,
    sealed: &[u8],
) -> Change<bool> {
    match this_active(current, id).filter(|r| r.version == version) {
        Some(r) => write(
            Record {
                version: version + 1,
                guesses: 0,
                sealed: Some(sealed.to_vec()),
                ..r.clone()
            },
            "password_changed",
            format!("version={}", version + 1),
            true,
        ),
        None => Change::Done(false),
    }
}

/// A deletion by the account holder.
pub(crate) fn delete(current: Option<&Record>) -> Change<bool> {
    match active(current) {
        Some(r) => write(
            ended(r, RecordState::Deleted),
            "deleted",
            "by the account holder".into(),
            true,
        ),
        None => Change::Done(false),
    }
}
