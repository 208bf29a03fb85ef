//! Prometheus metrics, named `switchyard_*`, one registry per [`crate::app::App`]
//! (no process-global recorder, so gateways in one test process stay apart).
//!
//! Labels are `&'static str` where the value set is closed, so counting on the
//! hot path allocates nothing; gauges that mirror a size are set at scrape time.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];
type GatewayLabels = [(&'static str, String); 1];

pub struct Metrics {
    registry: Registry,
    probes: Family<Labels, Counter>,
    evictions: Family<Labels, Counter>,
    upstream_latency: Family<GatewayLabels, Histogram>,
    upstream_sessions: Gauge<i64, AtomicI64>,
    downstream_sessions: Gauge<i64, AtomicI64>,
    /// The family's counters by [`Acquired`], found once: one is counted
    /// on every call, and the family's lock would be taken each time.
    acquired: [Counter; 3],
}

/// How the registry came by the upstream session for a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The live one, used recently.
    Reused,
    /// The live one, after an idle health probe.
    Probed,
    /// A new one.
    Created,
}

impl Acquired {
    const ALL: [Acquired; 3] = [Acquired::Reused, Acquired::Probed, Acquired::Created];

    fn label(self) -> &'static str {
        match self {
            Acquired::Reused => "reused",
            Acquired::Probed => "probed",
            Acquired::Created => "created",
        }
    }
}

/// A gateway's latency histogram, looked up on first use (kept with the
/// gateway in the catalog; a new catalog version looks it up again).
#[derive(Clone, Debug, Default)]
pub struct LatencySlot(std::sync::OnceLock<Histogram>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 s in doublings: gateway overhead and slow tools both resolve.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let acquires = Family::<Labels, Counter>::default();
        registry.register(
            "upstream_acquires",
            "Upstream session acquisitions by outcome (reused, created, probed)",
            acquires.clone(),
        );
        let probes = Family::<Labels, Counter>::default();
        registry.register(
            "upstream_probes",
            "Idle-validation probes by result (healthy, skipped, failed, refused)",
            probes.clone(),
        );
        let evictions = Family::<Labels, Counter>::default();
        registry.register(
            "upstream_evictions",
            "Upstream sessions closed, by reason",
            evictions.clone(),
        );
        let upstream_latency = Family::<GatewayLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "upstream_request_duration_seconds",
            "Upstream request latency per gateway",
            upstream_latency.clone(),
        );
        let upstream_sessions = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "upstream_sessions",
            "Live upstream sessions held by the registry",
            upstream_sessions.clone(),
        );
        let downstream_sessions = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "downstream_sessions",
            "Open downstream MCP sessions",
            downstream_sessions.clone(),
        );
        let acquired =
            Acquired::ALL.map(|a| acquires.get_or_create(&[("outcome", a.label())]).clone());
        Self {
            registry,
            acquired,
            probes,
            evictions,
            upstream_latency,
            upstream_sessions,
            downstream_sessions,
        }
    }

    pub fn acquire(&self, how: Acquired) {
        self.acquired[how as usize].inc();
    }

    pub fn probe(&self, result: &'static str) {
        self.probes.get_or_create(&[("result", result)]).inc();
    }

    pub fn evicted(&self, reason: &'static str, count: u64) {
        self.evictions
            .get_or_create(&[("reason", reason)])
            .inc_by(count);
    }

    /// Records a call's latency in `slot`, which holds the gateway's
    /// histogram once found: no label set built and no family lock taken
    /// per call (both threads would otherwise write the lock's cache line).
    pub fn upstream_latency(&self, gateway_id: &str, slot: &LatencySlot, seconds: f64) {
        slot.0
            .get_or_init(|| {
                self.upstream_latency
                    .get_or_create(&[("gateway", gateway_id.to_owned())])
                    .clone()
            })
            .observe(seconds);
    }

    /// The text exposition, with the size gauges set to the given values.
    pub fn render(&self, upstream_sessions: usize, downstream_sessions: usize) -> String {
        self.upstream_sessions.set(upstream_sessions as i64);
        self.downstream_sessions.set(downstream_sessions as i64);
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }
}
