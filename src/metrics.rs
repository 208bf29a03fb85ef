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
    acquires: Family<Labels, Counter>,
    probes: Family<Labels, Counter>,
    evictions: Family<Labels, Counter>,
    upstream_latency: Family<GatewayLabels, Histogram>,
    /// The family's histograms by gateway id, found without building (and
    /// allocating) a label set per call; they share the family's data.
    latency_by_gateway: std::sync::RwLock<std::collections::HashMap<String, Histogram>>,
    upstream_sessions: Gauge<i64, AtomicI64>,
    downstream_sessions: Gauge<i64, AtomicI64>,
}

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
        Self {
            registry,
            acquires,
            probes,
            evictions,
            upstream_latency,
            latency_by_gateway: Default::default(),
            upstream_sessions,
            downstream_sessions,
        }
    }

    pub fn acquire(&self, outcome: &'static str) {
        self.acquires.get_or_create(&[("outcome", outcome)]).inc();
    }

    pub fn probe(&self, result: &'static str) {
        self.probes.get_or_create(&[("result", result)]).inc();
    }

    pub fn evicted(&self, reason: &'static str, count: u64) {
        self.evictions
            .get_or_create(&[("reason", reason)])
            .inc_by(count);
    }

    pub fn upstream_latency(&self, gateway_id: &str, seconds: f64) {
        let cache = &self.latency_by_gateway;
        if let Some(h) = cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(gateway_id)
        {
            h.observe(seconds);
            return;
        }
        let h = self
            .upstream_latency
            .get_or_create(&[("gateway", gateway_id.to_owned())])
            .clone();
        h.observe(seconds);
        cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(gateway_id.to_owned(), h);
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
