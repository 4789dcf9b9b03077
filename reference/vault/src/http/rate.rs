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

/// Buckets by key.
pub struct Limiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Most buckets kept before idle full ones are dropped.
const MAX_BUCKETS: usize = 100_000;

impl Limiter {
    /// A limiter with one rate for every key.
    pub fn new(rate: Rate) -> Self {
        Limiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`, or says how long until one is available.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_BUCKETS {
            let rate = self.rate;
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * rate.per_second < rate.burst
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.rate.burst,
            at: now,
        });
        bucket.tokens = (bucket.tokens
            + now.duration_since(bucket.at).as_secs_f64() * self.rate.per_second)
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
}
