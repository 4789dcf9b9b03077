//! What an operator watches (`spec/vault.md` §9.2): Prometheus metrics in the OpenMetrics
//! text format (prometheus-client, the Prometheus project's Rust client), and the admin
//! endpoints `/healthz`, `/readyz` and `/metrics`, served apart from the API. No label ever
//! names a user or a tenant: routes are the API's templates, classes those of
//! `spec/errors.md`, operations the store's and the HSM's method names.

use crate::error::ErrorClass;
use crate::hsm::{Hsm, HsmError};
use crate::ids::RecordId;
use crate::store::{AuditEvent, GroupCommitObserver, GuessOutcome, Record, Store, StoreError};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: String,
}

type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_buckets() -> Histogram {
    // 100 µs to about 3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The metrics of one served vault or realm.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Timings<RouteLabels>,
    store: Timings<OpLabels>,
    hsm: Timings<OpLabels>,
    events: Family<EventLabels, Counter>,
    group_commit_changes: Histogram,
    group_commit_retries: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Empty metrics, registered under the prefix `coffer`.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("coffer");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Timings::<RouteLabels>::new_with_constructor(latency_buckets);
        let store = Timings::<OpLabels>::new_with_constructor(latency_buckets);
        let hsm = Timings::<OpLabels>::new_with_constructor(latency_buckets);
        let events = Family::<EventLabels, Counter>::default();
        // 1, 2, 4, ..., 32: a batch carries at most 32 changes (`spec/vault.md` §6.1).
        let group_commit_changes = Histogram::new(exponential_buckets(1.0, 2.0, 6));
        let group_commit_retries = Counter::default();
        registry.register(
            "http_requests",
            "Requests answered, by route template, HTTP status and error class (ok when none)",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's headers to its answer, by route template",
            durations.clone(),
        );
        registry.register(
            "store_duration_seconds",
            "Time of each store operation (a durable commit for writes)",
            store.clone(),
        );
        registry.register(
            "hsm_duration_seconds",
            "Time of each HSM operation",
            hsm.clone(),
        );
        registry.register(
            "vault_events",
            "Guesses counted, recoveries, registrations, destructions and deletions",
            events.clone(),
        );
        registry.register(
            "store_group_commit_changes",
            "Changes (guesses; on etcd also KE3 outcomes) answered by each group commit",
            group_commit_changes.clone(),
        );
        registry.register(
            "store_group_commit_retries",
            "Group-commit attempts that did not commit: the shard changed first, or the answer was lost",
            group_commit_retries.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            durations,
            store,
            hsm,
            events,
            group_commit_changes,
            group_commit_retries,
        })
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    fn event(&self, event: &str) {
        self.events
            .get_or_create(&EventLabels {
                event: event.to_owned(),
            })
            .inc();
    }

    fn time<T>(family: &Timings<OpLabels>, op: &str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        family
            .get_or_create(&OpLabels { op: op.to_owned() })
            .observe(start.elapsed().as_secs_f64());
        out
    }
}

impl GroupCommitObserver for Metrics {
    fn group_committed(&self, changes: usize, retries: usize) {
        self.group_commit_changes.observe(changes as f64);
        self.group_commit_retries.inc_by(retries as u64);
    }
}

/// Counts and times every request of `router` in `metrics`.
pub fn metered(router: Router, metrics: Arc<Metrics>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(metrics, record))
}

async fn record(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let class = match response.extensions().get::<ErrorClass>() {
        Some(class) => class.as_str().to_owned(),
        None if status.is_success() => "ok".to_owned(),
        None => "other".to_owned(),
    };
    metrics
        .durations
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            status: status.as_u16(),
            class,
        })
        .inc();
    response
}

/// A readiness check: the store and the HSM answer.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The admin endpoints: `/healthz` (the process answers), `/readyz` (the store and the HSM
/// answer: 200, or 503 with why) and `/metrics` (OpenMetrics text). Serve them where only
/// operators reach (`vault serve --admin-listen`).
pub fn admin_router(metrics: Arc<Metrics>, ready: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match tokio::task::spawn_blocking(move || ready()).await {
                        Ok(Ok(())) => (StatusCode::OK, "ready\n".to_owned()),
                        Ok(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = metrics.encode();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response()
                }
            }),
        )
}

/// A store whose every operation is timed, and whose counted guesses, destructions,
/// recoveries and deletions are counted.
pub struct MeteredStore<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S: Store> MeteredStore<S> {
    /// `inner`, measured into `metrics` (its group commits included).
    pub fn new(inner: S, metrics: Arc<Metrics>) -> Self {
        inner.observe_group_commits(metrics.clone());
        MeteredStore { inner, metrics }
    }
}

impl<S: Store> Store for MeteredStore<S> {
    fn bind(
        &self,
        integrity: Arc<crate::store::integrity::Integrity>,
    ) -> Result<crate::store::integrity::StoreSummary, StoreError> {
        Metrics::time(&self.metrics.store, "bind", || self.inner.bind(integrity))
    }

    fn server_setup(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Metrics::time(&self.metrics.store, "server_setup", || {
            self.inner.server_setup()
        })
    }

    fn init_server_setup(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        Metrics::time(&self.metrics.store, "init_server_setup", || {
            self.inner.init_server_setup(sealed)
        })
    }

    fn insert(&self, record: &Record) -> Result<(), StoreError> {
        let out = Metrics::time(&self.metrics.store, "insert", || self.inner.insert(record));
        if out.is_ok() {
            self.metrics.event("registered");
        }
        out
    }

    fn latest(&self, tenant: &str, user: &str) -> Result<Option<Record>, StoreError> {
        Metrics::time(&self.metrics.store, "latest", || {
            self.inner.latest(tenant, user)
        })
    }

    fn count_guess(&self, tenant: &str, user: &str) -> Result<GuessOutcome, StoreError> {
        let out = Metrics::time(&self.metrics.store, "count_guess", || {
            self.inner.count_guess(tenant, user)
        });
        match &out {
            Ok(GuessOutcome::Counted(_)) => self.metrics.event("guess_counted"),
            Ok(GuessOutcome::Destroyed) => self.metrics.event("destroyed"),
            _ => {}
        }
        out
    }

    fn recovered(
        &self,
        tenant: &str,
        user: &str,
        record_id: &RecordId,
        version: u32,
    ) -> Result<bool, StoreError> {
        let out = Metrics::time(&self.metrics.store, "recovered", || {
            self.inner.recovered(tenant, user, record_id, version)
        });
        if matches!(out, Ok(true)) {
            self.metrics.event("recovered");
        }
        out
    }

    fn failed_at_limit(
        &self,
        tenant: &str,
        user: &str,
        record_id: &RecordId,
    ) -> Result<bool, StoreError> {
        let out = Metrics::time(&self.metrics.store, "failed_at_limit", || {
            self.inner.failed_at_limit(tenant, user, record_id)
        });
        if matches!(out, Ok(true)) {
            self.metrics.event("destroyed");
        }
        out
    }

    fn replace(
        &self,
        record_id: &RecordId,
        version: u32,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let out = Metrics::time(&self.metrics.store, "replace", || {
            self.inner.replace(record_id, version, sealed)
        });
        if matches!(out, Ok(true)) {
            self.metrics.event("password_changed");
        }
        out
    }

    fn delete(&self, tenant: &str, user: &str) -> Result<bool, StoreError> {
        let out = Metrics::time(&self.metrics.store, "delete", || {
            self.inner.delete(tenant, user)
        });
        if matches!(out, Ok(true)) {
            self.metrics.event("deleted");
        }
        out
    }

    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        Metrics::time(&self.metrics.store, "audit", || {
            self.inner.audit(after, limit)
        })
    }

    fn calls_waiting_on_network(&self) -> usize {
        self.inner.calls_waiting_on_network()
    }

    fn observe_group_commits(&self, observer: Arc<dyn GroupCommitObserver>) {
        self.inner.observe_group_commits(observer);
    }
}

/// An HSM whose every operation is timed.
pub struct MeteredHsm<H> {
    inner: H,
    metrics: Arc<Metrics>,
}

impl<H> MeteredHsm<H> {
    /// `inner`, measured into `metrics`.
    pub fn new(inner: H, metrics: Arc<Metrics>) -> Self {
        MeteredHsm { inner, metrics }
    }
}

impl<H: Hsm> Hsm for MeteredHsm<H> {
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, HsmError> {
        Metrics::time(&self.metrics.hsm, "seal", || {
            self.inner.seal(aad, plaintext)
        })
    }

    fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, HsmError> {
        Metrics::time(&self.metrics.hsm, "unseal", || {
            self.inner.unseal(aad, sealed)
        })
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
