//! The guess bound of `spec/realms.md` §8, checked by exhaustive model checking (stateright,
//! breadth first) rather than argued only: every interleaving of concurrent attackers asking
//! three realms, answers lost on the way, realms crashing between counting and answering,
//! failed unlocks, replayed unlock proofs and (in the second model) one realm's counter reset
//! on disk at any moment. The property: the number of candidates the attacker tested (those
//! with `t` delivered evaluations from distinct realms) never exceeds the stated bound, and
//! some interleaving reaches it (the bound is tight, so the model is not vacuous).
//!
//! The model abstracts the cryptography the way §8's argument does: a candidate is tested
//! exactly when `t − c` honest realms delivered an evaluation for it.

use stateright::{Checker, Model, Property};

const REALMS: usize = 3;
const THRESHOLD: usize = 2;
const LIMIT: u8 = 2;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct State {
    /// Evaluations counted at each realm since its last reset.
    guesses: [u8; REALMS],
    /// Whether each realm destroyed its record.
    destroyed: [bool; REALMS],
    /// Whether each realm is up.
    up: [bool; REALMS],
    /// For each candidate, the realms (bit r) whose evaluation the attacker received. Kept
    /// sorted: candidates are interchangeable, so states that differ only by their names are
    /// one state (symmetry reduction).
    delivered: Vec<u8>,
}

impl State {
    fn canonical(mut self) -> Self {
        self.delivered.sort_unstable();
        self
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Action {
    /// Phase 1 for candidate c at realm r, the answer delivered.
    Evaluate(u8, u8),
    /// Phase 1 counted, but the answer lost (network, or the realm crashed before sending).
    EvaluateLost(u8, u8),
    /// A phase-2 attempt at realm r with a wrong tag (for any session it answered).
    Unlock(u8),
    /// A replayed phase-2 proof from an earlier, legitimate recovery.
    Replay(u8),
    /// Realm r crashes (counts are durable; sessions are in memory).
    Crash(u8),
    /// Realm r comes back.
    Restart(u8),
    /// The attacker writes realm r's store: its count back to 0.
    DiskReset(u8),
}

struct Realms {
    candidates: u8,
    /// A realm whose store the attacker can write (counts only; its shares stay sealed).
    writable: Option<u8>,
    /// Whether realms commit the count before they answer (the spec); the mutant answers
    /// first, so a crash between answer and commit loses the count.
    count_first: bool,
}

impl Realms {
    fn bound(&self) -> usize {
        let c = usize::from(self.writable.is_some());
        (REALMS - c) * usize::from(LIMIT) / (THRESHOLD - c)
    }

    fn tested(&self, state: &State) -> usize {
        state
            .delivered
            .iter()
            .filter(|realms| realms.count_ones() as usize >= THRESHOLD)
            .count()
    }
}

impl Model for Realms {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            guesses: [0; REALMS],
            destroyed: [false; REALMS],
            up: [true; REALMS],
            delivered: vec![0; usize::from(self.candidates)],
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        for r in 0..REALMS as u8 {
            let i = r as usize;
            if state.up[i] {
                let mut seen = Vec::new();
                for (c, realms) in state.delivered.iter().enumerate() {
                    // Asking again for a delivered evaluation teaches nothing; candidates with
                    // the same knowledge are interchangeable, so one of them stands for all.
                    if realms & (1 << r) == 0 && !seen.contains(realms) {
                        seen.push(*realms);
                        actions.push(Action::Evaluate(c as u8, r));
                        actions.push(Action::EvaluateLost(c as u8, r));
                    }
                }
                if state.delivered.iter().any(|realms| realms & (1 << r) != 0) {
                    actions.push(Action::Unlock(r));
                }
                actions.push(Action::Replay(r));
                actions.push(Action::Crash(r));
            } else {
                actions.push(Action::Restart(r));
            }
            if self.writable == Some(r) && state.guesses[i] > 0 {
                actions.push(Action::DiskReset(r));
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Evaluate(c, r) | Action::EvaluateLost(c, r) => {
                let i = r as usize;
                if s.destroyed[i] {
                    return None; // a fake answer: nothing counted, nothing learnt
                }
                // Counted durably before the answer exists (§4 step 2).
                if s.guesses[i] >= LIMIT {
                    s.destroyed[i] = true;
                    return Some(s);
                }
                let lost = matches!(action, Action::EvaluateLost(..));
                if self.count_first || !lost {
                    s.guesses[i] += 1;
                }
                // Counting first, a lost answer is lost to the attacker too; answering
                // first, the "lost" case is the crash after the answer left, before the
                // count was committed.
                if !lost || !self.count_first {
                    s.delivered[usize::from(c)] |= 1 << r;
                }
            }
            Action::Unlock(r) => {
                // The attacker's tag is wrong (it does not know the password); at the limit
                // the record is destroyed now (§6.2).
                let i = r as usize;
                if s.guesses[i] < LIMIT || s.destroyed[i] {
                    return None;
                }
                s.destroyed[i] = true;
            }
            Action::Replay(_) => {
                // The proof is bound to a session the legitimate recovery used up: the realm
                // knows no such session and answers wrong_password. Nothing changes.
                return None;
            }
            Action::Crash(r) => s.up[r as usize] = false,
            Action::Restart(r) => s.up[r as usize] = true,
            Action::DiskReset(r) => s.guesses[r as usize] = 0,
        }
        Some(s.canonical())
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(
                "never more candidates than the bound",
                |m: &Realms, s: &State| m.tested(s) <= m.bound(),
            ),
            Property::always(
                "an honest realm never counts past its limit",
                |m: &Realms, s: &State| {
                    (0..REALMS).all(|i| m.writable == Some(i as u8) || s.guesses[i] <= LIMIT)
                },
            ),
            Property::sometimes("the bound is reached", |m: &Realms, s: &State| {
                m.tested(s) == m.bound()
            }),
        ]
    }
}

fn check(model: Realms) -> usize {
    let bound = model.bound();
    let checker = model.checker().spawn_bfs().join();
    checker.assert_properties();
    let states = checker.unique_state_count();
    eprintln!("bound {bound} holds and is reached over {states} distinct states");
    states
}

#[test]
fn three_realms_two_of_three_give_at_most_n_l_over_t_candidates() {
    // ⌊3 · 2 / 2⌋ = 3; one candidate more than the bound, so exceeding it is possible.
    let states = check(Realms {
        candidates: 4,
        writable: None,
        count_first: true,
    });
    assert!(states > 1000, "explored only {states} states");
}

#[test]
fn one_writable_store_gives_at_most_n_minus_c_l_over_t_minus_c() {
    // ⌊(3 − 1) · 2 / (2 − 1)⌋ = 4.
    let states = check(Realms {
        candidates: 5,
        writable: Some(0),
        count_first: true,
    });
    assert!(states > 1000, "explored only {states} states");
}

#[test]
fn a_realm_that_answers_before_counting_breaks_the_bound() {
    // The mutant: crash between answer and commit. The checker must find the interleaving
    // that tests more candidates than the bound, or it proves nothing.
    let checker = Realms {
        candidates: 4,
        writable: None,
        count_first: false,
    }
    .checker()
    .spawn_bfs()
    .join();
    let path = checker
        .discovery("never more candidates than the bound")
        .expect("answering before counting must break the bound");
    let evaluations: u32 = path
        .last_state()
        .delivered
        .iter()
        .map(|r| r.count_ones())
        .sum();
    assert!(evaluations > (REALMS * usize::from(LIMIT)) as u32);
}
