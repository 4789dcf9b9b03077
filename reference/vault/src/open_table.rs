//! What a vault or realm holds in memory between requests (sessions, verified sessions,
//! grants), in a table with a cap for the whole server and a smaller one per tenant, so that
//! one tenant (or one leaked token) cannot fill the table and stop every other tenant's
//! recoveries.

use std::collections::HashMap;
use std::time::Instant;

/// An entry that belongs to a tenant and expires.
pub(crate) trait Expiring {
    /// The tenant that opened it.
    fn tenant(&self) -> &str;
    /// When it stops counting.
    fn expires(&self) -> Instant;
}

/// Why there is no room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Full {
    /// The tenant holds its cap; the earliest of its entries expires in this many seconds.
    Tenant(u64),
    /// The server holds its cap.
    Server(u64),
}

/// Entries by 16-byte id, with `total` and `per_tenant` caps on live ones.
pub(crate) struct OpenTable<V> {
    entries: HashMap<[u8; 16], V>,
    per_tenant: HashMap<String, usize>,
    total: usize,
    tenant_cap: usize,
}

impl<V: Expiring> OpenTable<V> {
    /// An empty table.
    pub(crate) fn new(total: usize, tenant_cap: usize) -> Self {
        OpenTable {
            entries: HashMap::new(),
            per_tenant: HashMap::new(),
            total,
            tenant_cap: tenant_cap.min(total),
        }
    }

    /// Whether `tenant` may open one more entry now. Expired entries are swept only when a
    /// cap is reached, so the sweep's cost is spread over the entries that filled it.
    pub(crate) fn room_for(&mut self, tenant: &str, now: Instant) -> Result<(), Full> {
        if self.held_by(tenant) >= self.tenant_cap || self.entries.len() >= self.total {
            self.sweep(now);
        }
        if self.held_by(tenant) >= self.tenant_cap {
            return Err(Full::Tenant(
                self.seconds_to_first_expiry(Some(tenant), now),
            ));
        }
        if self.entries.len() >= self.total {
            return Err(Full::Server(self.seconds_to_first_expiry(None, now)));
        }
        Ok(())
    }

    /// Adds `entry` under `id` (callers make room first; a burst of concurrent requests may
    /// pass a cap by at most the number of workers).
    pub(crate) fn insert(&mut self, id: [u8; 16], entry: V) {
        *self
            .per_tenant
            .entry(entry.tenant().to_owned())
            .or_insert(0) += 1;
        if let Some(old) = self.entries.insert(id, entry) {
            self.forget(old.tenant().to_owned());
        }
    }

    /// The entry `id`, if present (expired or not), left in place.
    pub(crate) fn peek(&self, id: &[u8; 16]) -> Option<&V> {
        self.entries.get(id)
    }

    /// Takes the entry `id` out, expired or not.
    pub(crate) fn take(&mut self, id: &[u8; 16]) -> Option<V> {
        let entry = self.entries.remove(id)?;
        self.forget(entry.tenant().to_owned());
        Some(entry)
    }

    /// Takes the entry `id` out if `tenant` opened it; another tenant's request leaves it in
    /// place (so naming a session id it learnt cannot end another tenant's session).
    pub(crate) fn take_for(&mut self, id: &[u8; 16], tenant: &str) -> Option<V> {
        if self.entries.get(id)?.tenant() != tenant {
            return None;
        }
        self.take(id)
    }

    /// How many entries `tenant` holds, expired ones included until a sweep.
    pub(crate) fn held_by(&self, tenant: &str) -> usize {
        self.per_tenant.get(tenant).copied().unwrap_or(0)
    }

    fn forget(&mut self, tenant: String) {
        if let Some(n) = self.per_tenant.get_mut(&tenant) {
            *n -= 1;
            if *n == 0 {
                self.per_tenant.remove(&tenant);
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        let expired: Vec<[u8; 16]> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires() <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.take(&id);
        }
    }

    fn seconds_to_first_expiry(&self, tenant: Option<&str>, now: Instant) -> u64 {
        self.entries
            .values()
            .filter(|e| tenant.is_none_or(|t| e.tenant() == t))
            .map(|e| e.expires().saturating_duration_since(now))
            .min()
            .map_or(1, |d| d.as_secs().max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Entry(&'static str, Instant);

    impl Expiring for Entry {
        fn tenant(&self) -> &str {
            self.0
        }
        fn expires(&self) -> Instant {
            self.1
        }
    }

    #[test]
    fn another_tenant_cannot_take_an_entry_out() {
        let later = Instant::now() + Duration::from_secs(300);
        let mut table = OpenTable::new(4, 2);
        table.insert([1; 16], Entry("a", later));
        assert!(table.take_for(&[1; 16], "b").is_none());
        assert_eq!(table.held_by("a"), 1, "still there");
        assert!(table.take_for(&[1; 16], "a").is_some());
        assert!(table.take_for(&[1; 16], "a").is_none(), "taken once");
    }

    #[test]
    fn one_tenant_cannot_take_another_tenants_room() {
        let now = Instant::now();
        let later = now + Duration::from_secs(300);
        let mut table = OpenTable::new(4, 2);
        for id in 0..2u8 {
            table.room_for("a", now).unwrap();
            table.insert([id; 16], Entry("a", later));
        }
        assert_eq!(table.room_for("a", now), Err(Full::Tenant(300)));
        // Another tenant still has room, up to the realm's cap.
        for id in 2..4u8 {
            table.room_for("b", now).unwrap();
            table.insert([id; 16], Entry("b", later));
        }
        assert_eq!(table.room_for("c", now), Err(Full::Server(300)));
        // Taking an entry gives its tenant room back.
        assert!(table.take(&[0; 16]).is_some());
        assert_eq!(table.held_by("a"), 1);
        table.room_for("a", now).unwrap();
        assert!(table.take(&[0; 16]).is_none());
    }

    #[test]
    fn expired_entries_are_swept_when_a_cap_is_reached() {
        let now = Instant::now();
        let mut table = OpenTable::new(10, 2);
        table.insert([1; 16], Entry("a", now + Duration::from_secs(1)));
        table.insert([2; 16], Entry("a", now + Duration::from_secs(60)));
        assert_eq!(table.room_for("a", now), Err(Full::Tenant(1)));
        let later = now + Duration::from_secs(2);
        table.room_for("a", later).unwrap();
        assert_eq!(table.held_by("a"), 1);
        assert!(table.take(&[1; 16]).is_none(), "swept");
        assert!(table.take(&[2; 16]).is_some());
        assert_eq!(table.held_by("a"), 0);
    }

    #[test]
    fn a_replaced_id_is_counted_once() {
        let now = Instant::now();
        let mut table = OpenTable::new(10, 5);
        table.insert([1; 16], Entry("a", now));
        table.insert([1; 16], Entry("b", now));
        assert_eq!((table.held_by("a"), table.held_by("b")), (0, 1));
    }
}
