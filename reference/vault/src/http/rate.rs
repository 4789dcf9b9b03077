//! Token-bucket rate limits per tenant and per user (`spec/vault.md` §9). In memory: a
//! restart refills the buckets, which the guess limit (durable) does not depend on.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits: a bucket of `burst` tokens refilled at `per_second`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size.
    pub burst: f64,
}

/// The vault's limits.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// All requests of one tenant.
    pub tenant: Rate,
    /// Guesses (KE1) and registrations for one user.
    pub user: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            tenant: Rate {
                per_second: 10_000.0,
                burst: 20_000.0,
            },
            user: Rate {
                per_second: 30.0 / 60.0,
                burst: 30.0,
            },
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets by key, at most `capacity` of them.
pub struct Limiter {
    rate: Rate,
    capacity: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Most buckets kept (about 10 MiB), whatever the number of users asking.
const MAX_BUCKETS: usize = 100_000;

impl Limiter {
    /// A limiter with one rate for every key.
    pub fn new(rate: Rate) -> Self {
        Self::with_capacity(rate, MAX_BUCKETS)
    }

    fn with_capacity(rate: Rate, capacity: usize) -> Self {
        Limiter {
            rate,
            capacity: capacity.max(2),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`, or says how long until one is available.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        // A panic elsewhere while holding the lock leaves the buckets usable: refuse nothing
        // and allow nothing that a sound map would not.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= self.capacity && !buckets.contains_key(key) {
            self.make_room(&mut buckets, now);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.rate.burst,
            at: now,
        });
        bucket.tokens = (bucket.tokens
            + now.saturating_duration_since(bucket.at).as_secs_f64() * self.rate.per_second)
            .min(self.rate.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate.per_second.max(1e-9);
            Err(Duration::from_secs_f64(wait))
        }
    }

    /// Forgets the buckets that have refilled (forgetting them changes no answer); if that
    /// is not half of them, also the least recently used down to half (`spec/vault.md` §9).
    /// Runs at most once per `capacity / 2` new keys, so a flood of new keys costs O(1) per
    /// request.
    fn make_room(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        let rate = self.rate;
        buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate.per_second
                < rate.burst
        });
        let keep = self.capacity / 2;
        if buckets.len() > keep {
            let mut by_age: Vec<(Instant, String)> =
                buckets.iter().map(|(k, b)| (b.at, k.clone())).collect();
            let cut = by_age.len() - keep;
            by_age.select_nth_unstable_by_key(cut - 1, |(at, _)| *at);
            for (_, key) in &by_age[..cut] {
                buckets.remove(key);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_MINUTE_30: Rate = Rate {
        per_second: 0.5,
        burst: 3.0,
    };

    #[test]
    fn a_burst_then_waits_then_refills() {
        let limiter = Limiter::new(PER_MINUTE_30);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take_at("alice", t0), Ok(()));
        }
        let wait = limiter.take_at("alice", t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(2), "one token at 0.5/s");
        // Another key has its own bucket.
        assert_eq!(limiter.take_at("bob", t0), Ok(()));
        // Half a token later: still refused, a second to go.
        let wait = limiter
            .take_at("alice", t0 + Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert_eq!(
            limiter.take_at("alice", t0 + Duration::from_secs(2)),
            Ok(())
        );
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(limiter.take_at("alice", later), Ok(()));
        }
        let retry = limiter.take_at("alice", later).unwrap_err();
        assert!(
            retry > Duration::ZERO && retry <= Duration::from_secs(60),
            "retry after {retry:?}"
        );
    }

    #[test]
    fn a_flood_of_new_keys_stays_within_capacity() {
        let limiter = Limiter::with_capacity(PER_MINUTE_30, 1000);
        let t0 = Instant::now();
        // Every key drained (none idle), so the refilled ones cannot simply be dropped.
        for i in 0..10_000u32 {
            let key = format!("user-{i}");
            let now = t0 + Duration::from_millis(u64::from(i));
            while limiter.take_at(&key, now).is_ok() {}
            assert!(
                limiter.len() <= 1000,
                "{} buckets after {i} keys",
                limiter.len()
            );
        }
        // The most recent keys are still limited: forgetting them would reset their count.
        let now = t0 + Duration::from_millis(10_000);
        let retry = limiter.take_at("user-9999", now).unwrap_err();
        assert!(retry > Duration::ZERO, "retry after {retry:?}");
    }

    #[test]
    fn buckets_seen_at_one_instant_are_still_bounded() {
        let slow = Rate {
            per_second: 1e-6,
            burst: 1.0,
        };
        let limiter = Limiter::with_capacity(slow, 4);
        let t0 = Instant::now();
        for key in ["a", "b", "c", "d"] {
            assert_eq!(limiter.take_at(key, t0), Ok(()));
        }
        assert_eq!(limiter.take_at("e", t0 + Duration::from_secs(1)), Ok(()));
        assert!(limiter.len() <= 4, "{}", limiter.len());
        let retry = limiter
            .take_at("e", t0 + Duration::from_secs(1))
            .unwrap_err();
        // One token per million seconds: the wait is about that long.
        assert!(
            retry >= Duration::from_secs(999_000),
            "retry after {retry:?}"
        );
    }

    #[test]
    fn refilled_buckets_go_first_and_forgetting_them_changes_no_answer() {
        let limiter = Limiter::with_capacity(PER_MINUTE_30, 4);
        let t0 = Instant::now();
        for key in ["a", "b", "c", "d"] {
            assert_eq!(limiter.take_at(key, t0), Ok(()));
        }
        // A minute later every bucket has refilled: all four go, not just half.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(limiter.take_at("e", later), Ok(()));
        assert_eq!(limiter.len(), 1);
        // "a" gets its whole burst, as it would have if it were remembered.
        for _ in 0..3 {
            assert_eq!(limiter.take_at("a", later), Ok(()));
        }
        let retry = limiter.take_at("a", later).unwrap_err();
        assert!(
            retry > Duration::ZERO && retry <= Duration::from_secs(60),
            "retry after {retry:?}"
        );
    }
}
