//! switchyard-bench: a load tool that talks to an MCP server (or a gateway in
//! front of one) the way a real Streamable HTTP client does, and measures it.
//!
//! A run opens N downstream sessions (`initialize`, then
//! `notifications/initialized`), then C concurrent workers issue `tools/call`
//! on those sessions until a call count or a duration is reached. Latencies go
//! into per-worker HdrHistograms (microseconds) merged at the end. A few fresh
//! sessions then measure cold start: `initialize` to first `tools/call` result.
//! Every phase is bounded in time, and a [`CancellationToken`] ends any of them.
//!
//! # Layout
//! - `client`: the wire (POST/DELETE, JSON or SSE answers); no counting.
//! - `cpu`: CPU time of this and other processes, for CPU-per-call figures.
//! - this file: the phases of a run, [`run`], the steppable [`Load`], and
//!   [`measure_interleaved`] for targets side by side.
//! - [`report`]: what a run measured, as JSON and as a table.
//! - [`summary`]: tables and target checks across many reports (used by `bench/run.sh`).

mod client;
mod cpu;
pub mod report;
pub mod summary;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use client::CallError;
use client::{McpHttp, Session};
pub use report::{ColdStart, ErrorCount, Latency, Report};

/// When the measured phase ends. Both are bounded: a call count also stops
/// at [`LoadConfig::max_time`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    Calls(u64),
    Duration(Duration),
}

/// Everything a run needs; [`LoadConfig::new`] fills sensible defaults.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The Streamable HTTP endpoint, e.g. `http://127.0.0.1:4444/mcp`.
    pub url: String,
    pub tool: String,
    /// The `arguments` object of every `tools/call`.
    pub arguments: serde_json::Value,
    /// Extra headers on every request (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    pub sessions: usize,
    /// Workers with one call in flight each.
    pub concurrency: usize,
    /// Sessions opened (and primed, and deleted) at once; 0 means `concurrency`.
    pub open_concurrency: usize,
    pub stop: Stop,
    /// Unrecorded calls before the measured phase (connections, caches, upstream sessions).
    pub warmup: Duration,
    /// One unrecorded call on every session before measuring, so each holds
    /// its upstream session behind a gateway and no measured call is a first call.
    pub prime: bool,
    /// Fresh sessions used to measure cold start after the measured phase; 0 skips it.
    pub cold_start: usize,
    /// DELETE every session at the end ([`Load::close`]).
    pub delete: bool,
    pub request_timeout: Duration,
    /// Hard cap on the measured phase in [`Stop::Calls`] mode.
    pub max_time: Duration,
    /// Offered in `initialize`.
    pub protocol_version: String,
    /// Copied into the report, to label it (scenario, target, round ...).
    pub tags: BTreeMap<String, String>,
    /// Processes (name, pid) whose CPU time (with their children's) over the
    /// measured phase goes into the report, next to this tool's own (`client`)
    /// and the whole machine's (`machine`).
    pub watch: Vec<(String, u32)>,
    /// Cancelling ends the current phase early; the report says `interrupted`.
    pub cancel: CancellationToken,
}

impl LoadConfig {
    pub fn new(url: impl Into<String>, tool: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tool: tool.into(),
            arguments: serde_json::json!({}),
            headers: Vec::new(),
            sessions: 1,
            concurrency: 1,
            open_concurrency: 0,
            stop: Stop::Duration(Duration::from_secs(5)),
            warmup: Duration::ZERO,
            prime: false,
            cold_start: 0,
            delete: false,
            request_timeout: Duration::from_secs(30),
            max_time: Duration::from_secs(600),
            protocol_version: "2025-11-25".to_owned(),
            tags: BTreeMap::new(),
            watch: Vec::new(),
            cancel: CancellationToken::new(),
        }
    }

    fn setup_parallelism(&self) -> usize {
        if self.open_concurrency == 0 {
            self.concurrency
        } else {
            self.open_concurrency
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        let bad = |reason: &str| {
            Err(LoadError::Config {
                reason: reason.to_owned(),
            })
        };
        if self.sessions == 0 {
            return bad("sessions must be at least 1");
        }
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        if !self.arguments.is_object() {
            return bad("arguments must be a JSON object");
        }
        if self.request_timeout.is_zero() || self.max_time.is_zero() {
            return bad("timeouts must be positive");
        }
        if let Stop::Duration(d) = self.stop {
            if d > self.max_time {
                return bad("duration exceeds max_time");
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid configuration: {reason}")]
    Config { reason: String },
    #[error("{failed} of {of} sessions failed to open; first error: {first}")]
    Open {
        failed: usize,
        of: usize,
        #[source]
        first: CallError,
    },
    #[error("cancelled while opening sessions")]
    Cancelled,
}

/// Opens the sessions, measures, and (if configured) deletes them.
pub async fn run(cfg: LoadConfig) -> Result<Report, LoadError> {
    let load = Load::open(cfg).await?;
    let mut report = load.measure().await;
    load.close(&mut report).await;
    Ok(report)
}

/// Measures several targets side by side: each runs its measured phase in
/// slices of `slice`, taking turns (the order rotates every round), until
/// each has run for its [`Stop::Duration`]. A shared machine's speed drifts
/// by tens of per cent over seconds; runs one after another see different
/// minutes, while turns a fraction of a second long see the same one, so
/// the ratios between targets stop moving with the machine. Each target's
/// CPU figures add up its own slices only. Warm-up runs first and cold
/// start last, each target in turn; the reports come in the order of `loads`.
pub async fn measure_interleaved(loads: &[Load], slice: Duration) -> Vec<Report> {
    for load in loads {
        load.warm_up().await;
    }
    let slice = slice.max(Duration::from_millis(10));
    let mut measured: Vec<(PhaseResult, BTreeMap<String, f64>)> = loads
        .iter()
        .map(|_| (PhaseResult::new(Duration::ZERO), BTreeMap::new()))
        .collect();
    let goal = |load: &Load| match load.cfg.stop {
        Stop::Duration(d) => d,
        // One slice each: interleaving is for timed runs (the CLI requires --duration).
        Stop::Calls(_) => slice,
    };
    let cancelled = || loads.iter().any(|l| l.cfg.cancel.is_cancelled());
    for round in 0.. {
        let mut ran = false;
        for i in 0..loads.len() {
            let j = (i + round) % loads.len();
            let (load, (result, cpu_s)) = (&loads[j], &mut measured[j]);
            let left = goal(load).saturating_sub(result.elapsed);
            if left.is_zero() || cancelled() {
                continue;
            }
            ran = true;
            let before = load.cpu_now();
            let part = load.phase(Stop::Duration(left.min(slice))).await;
            add_cpu(cpu_s, &before, &load.cpu_now());
            let elapsed = result.elapsed + part.elapsed;
            result.merge(part);
            result.elapsed = elapsed;
        }
        if !ran {
            break;
        }
    }
    let mut reports = Vec::with_capacity(loads.len());
    for (load, (result, cpu_s)) in loads.iter().zip(measured) {
        reports.push(load.finish(result, cpu_s).await);
    }
    reports
}

/// Adds what each watched process spent between two readings to `into`.
fn add_cpu(
    into: &mut BTreeMap<String, f64>,
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) {
    for (name, t0) in before {
        if let Some(t1) = after.get(name) {
            *into.entry(name.clone()).or_insert(0.0) += t1 - t0;
        }
    }
}

/// A run in steps, for callers that do something between measuring and
/// closing (hold mode: keep the sessions open while memory is sampled).
pub struct Load {
    cfg: LoadConfig,
    http: Arc<McpHttp>,
    sessions: Arc<Vec<Session>>,
    /// `{"name":..,"arguments":..}`, serialized once.
    params: Arc<str>,
    open_s: f64,
    /// Where each worker is in its round-robin over the sessions, kept from
    /// one phase to the next: side-by-side runs measure in many short
    /// phases, and each must go on where the last stopped, or the sessions
    /// at the start of every share would take all the calls.
    cursors: Arc<Vec<AtomicU64>>,
    primed: u64,
    prime_errors: u64,
    prime_samples: Errors,
}

impl Load {
    /// Opens `sessions` sessions, `concurrency` at a time, and primes them if
    /// asked. Any session failing to open fails the run: the workload would
    /// otherwise not be the one asked for.
    pub async fn open(cfg: LoadConfig) -> Result<Load, LoadError> {
        cfg.validate()?;
        let http = McpHttp::new(
            &cfg.url,
            &cfg.headers,
            &cfg.protocol_version,
            cfg.request_timeout,
            cfg.concurrency.max(cfg.setup_parallelism()),
        )
        .map_err(|reason| LoadError::Config { reason })?;
        let http = Arc::new(http);
        let params: Arc<str> = serde_json::json!({"name": cfg.tool, "arguments": cfg.arguments})
            .to_string()
            .into();

        let started = Instant::now();
        let opened: Vec<Result<Session, CallError>> = stream::iter(0..cfg.sessions)
            .map(|_| {
                let http = Arc::clone(&http);
                async move { http.initialize().await }
            })
            .buffer_unordered(cfg.setup_parallelism())
            .take_until(cfg.cancel.clone().cancelled_owned())
            .collect()
            .await;
        let open_s = started.elapsed().as_secs_f64();
        let interrupted = opened.len() < cfg.sessions;
        let (sessions, failures): (Vec<_>, Vec<_>) = opened.into_iter().partition(Result::is_ok);
        let sessions: Vec<Session> = sessions.into_iter().filter_map(Result::ok).collect();
        let first_failure = failures.into_iter().find_map(Result::err);
        if interrupted || first_failure.is_some() {
            // Leave no half-opened workload behind on the server.
            if cfg.delete {
                delete_all(&http, &sessions, cfg.setup_parallelism()).await;
            }
            return Err(match first_failure {
                Some(first) => LoadError::Open {
                    failed: cfg.sessions - sessions.len(),
                    of: cfg.sessions,
                    first,
                },
                None => LoadError::Cancelled,
            });
        }

        let mut load = Load {
            http,
            sessions: Arc::new(sessions),
            params,
            open_s,
            cursors: Arc::new((0..cfg.concurrency).map(|_| AtomicU64::new(0)).collect()),
            primed: 0,
            prime_errors: 0,
            prime_samples: Errors::default(),
            cfg,
        };
        if load.cfg.prime {
            load.prime().await;
        }
        Ok(load)
    }

    /// One call per session, `concurrency` at a time; not part of the measurement.
    async fn prime(&mut self) {
        let results: Vec<Result<(), CallError>> = stream::iter(self.sessions.iter().cloned())
            .map(|s| {
                let http = Arc::clone(&self.http);
                let params = Arc::clone(&self.params);
                async move { http.call(&s, 1, &params).await }
            })
            .buffer_unordered(self.cfg.setup_parallelism())
            .take_until(self.cfg.cancel.clone().cancelled_owned())
            .collect()
            .await;
        for r in results {
            match r {
                Ok(()) => self.primed += 1,
                Err(e) => {
                    self.prime_errors += 1;
                    self.prime_samples.add(&e);
                }
            }
        }
    }

    /// Warm-up, the measured phase, then cold start.
    pub async fn measure(&self) -> Report {
        self.warm_up().await;
        let before = self.cpu_now();
        let measured = self.phase(self.cfg.stop).await;
        let mut cpu_s = BTreeMap::new();
        add_cpu(&mut cpu_s, &before, &self.cpu_now());
        self.finish(measured, cpu_s).await
    }

    async fn warm_up(&self) {
        if !self.cfg.warmup.is_zero() && !self.cfg.cancel.is_cancelled() {
            self.phase(Stop::Duration(self.cfg.warmup)).await;
        }
    }

    /// Cold start, then the report of a measured phase.
    async fn finish(&self, measured: PhaseResult, cpu_s: BTreeMap<String, f64>) -> Report {
        let cancel = &self.cfg.cancel;
        let cold = if self.cfg.cold_start > 0 && !cancel.is_cancelled() {
            Some(self.cold_start().await)
        } else {
            None
        };
        let mut errors = measured.errors;
        errors.merge(&self.prime_samples);
        let calls = measured.ok + measured.failed;
        Report {
            url: self.cfg.url.clone(),
            tool: self.cfg.tool.clone(),
            tags: self.cfg.tags.clone(),
            sessions: self.sessions.len(),
            concurrency: self.cfg.concurrency,
            calls,
            errors: measured.failed,
            duration_s: measured.elapsed.as_secs_f64(),
            throughput_rps: rate(measured.ok, measured.elapsed),
            latency_us: Latency::from_histogram(&measured.hist),
            cpu_s,
            cold_start_us: cold,
            open_s: self.open_s,
            primed: self.primed,
            prime_errors: self.prime_errors,
            deleted: 0,
            delete_errors: 0,
            error_samples: errors.into_samples(),
            interrupted: cancel.is_cancelled(),
        }
    }

    /// Keeps the sessions open for `max`, or until `until` is cancelled.
    pub async fn hold(&self, max: Duration, until: &CancellationToken) {
        tokio::select! {
            _ = tokio::time::sleep(max) => {}
            _ = until.cancelled() => {}
        }
    }

    /// Deletes the sessions if configured, and says so in `report`.
    pub async fn close(self, report: &mut Report) {
        if !self.cfg.delete {
            return;
        }
        let (ok, failed) =
            delete_all(&self.http, &self.sessions, self.cfg.setup_parallelism()).await;
        report.deleted = ok;
        report.delete_errors = failed;
    }

    /// Deletes the sessions if configured, with no report to tell (a
    /// side-by-side run whose next target failed to open).
    pub async fn discard(self) {
        if self.cfg.delete {
            delete_all(&self.http, &self.sessions, self.cfg.setup_parallelism()).await;
        }
    }

    fn cpu_now(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        if let Some(t) = cpu::own_cpu_seconds() {
            out.insert("client".to_owned(), t);
        }
        if let Some(t) = cpu::machine_busy_seconds() {
            out.insert("machine".to_owned(), t);
        }
        for (name, pid) in &self.cfg.watch {
            if let Some(t) = cpu::tree_cpu_seconds(*pid) {
                out.insert(name.clone(), t);
            }
        }
        out
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    async fn phase(&self, stop: Stop) -> PhaseResult {
        let (limit, deadline_in) = match stop {
            Stop::Calls(n) => (Some(n), self.cfg.max_time),
            Stop::Duration(d) => (None, d),
        };
        let started = Instant::now();
        let shared = Arc::new(Shared {
            http: Arc::clone(&self.http),
            sessions: Arc::clone(&self.sessions),
            params: Arc::clone(&self.params),
            issued: AtomicU64::new(0),
            limit,
            deadline: started + deadline_in,
            cancel: self.cfg.cancel.clone(),
            workers: self.cfg.concurrency,
            cursors: Arc::clone(&self.cursors),
        });
        let mut workers = JoinSet::new();
        for w in 0..self.cfg.concurrency {
            workers.spawn(worker(Arc::clone(&shared), w));
        }
        let mut total = PhaseResult::new(Duration::ZERO);
        while let Some(done) = workers.join_next().await {
            match done {
                Ok(r) => total.merge(r),
                Err(e) => {
                    // A panicking worker is a bug in this tool; count it, keep the rest.
                    total.failed += 1;
                    total.errors.add_text(format!("worker task failed: {e}"));
                }
            }
        }
        total.elapsed = started.elapsed();
        total
    }

    /// Fresh sessions one after another, so each is measured on a quiet server.
    async fn cold_start(&self) -> ColdStart {
        let mut hist = new_histogram();
        let mut errors = 0;
        for _ in 0..self.cfg.cold_start {
            if self.cfg.cancel.is_cancelled() {
                break;
            }
            let t0 = Instant::now();
            let session = match self.http.initialize().await {
                Ok(s) => s,
                Err(_) => {
                    errors += 1;
                    continue;
                }
            };
            match self.http.call(&session, 1, &self.params).await {
                Ok(()) => record(&mut hist, t0.elapsed()),
                Err(_) => errors += 1,
            }
            if self.cfg.delete {
                let _ = self.http.delete(&session).await;
            }
        }
        ColdStart {
            samples: hist.len(),
            errors,
            p50: hist.value_at_quantile(0.5),
            min: hist.min(),
            max: hist.max(),
        }
    }
}

async fn delete_all(http: &Arc<McpHttp>, sessions: &[Session], parallel: usize) -> (u64, u64) {
    let results: Vec<Result<(), CallError>> = stream::iter(sessions.iter().cloned())
        .map(|s| {
            let http = Arc::clone(http);
            async move { http.delete(&s).await }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
    (ok, results.len() as u64 - ok)
}

struct Shared {
    http: Arc<McpHttp>,
    sessions: Arc<Vec<Session>>,
    params: Arc<str>,
    /// Calls started so far; doubles as the JSON-RPC id source.
    issued: AtomicU64,
    limit: Option<u64>,
    deadline: Instant,
    cancel: CancellationToken,
    workers: usize,
    /// Per worker, the round-robin position its next call starts from.
    cursors: Arc<Vec<AtomicU64>>,
}

impl Shared {
    fn cursor(&self, w: usize) -> u64 {
        self.cursors.get(w).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn set_cursor(&self, w: usize, k: u64) {
        if let Some(c) = self.cursors.get(w) {
            c.store(k, Ordering::Relaxed);
        }
    }

    /// Worker `w`'s sessions: with at least as many sessions as workers, each
    /// worker cycles through its own disjoint share (w, w+C, w+2C, ...), so all
    /// sessions are used round-robin and no two calls share a session at once;
    /// with fewer, workers share sessions round-robin.
    fn session_for(&self, w: usize, k: u64) -> &Session {
        let n = self.sessions.len();
        let c = self.workers;
        let idx = if n >= c {
            let mine = (n - w).div_ceil(c) as u64;
            w + (k % mine) as usize * c
        } else {
            w % n
        };
        &self.sessions[idx]
    }
}

struct PhaseResult {
    hist: Histogram<u64>,
    ok: u64,
    failed: u64,
    errors: Errors,
    elapsed: Duration,
}

impl PhaseResult {
    fn new(elapsed: Duration) -> Self {
        Self {
            hist: new_histogram(),
            ok: 0,
            failed: 0,
            errors: Errors::default(),
            elapsed,
        }
    }

    fn merge(&mut self, other: PhaseResult) {
        // Both histograms share bounds, so adding cannot fail; if it ever did,
        // the sample counts would still be right and only percentiles skewed.
        let _ = self.hist.add(&other.hist);
        self.ok += other.ok;
        self.failed += other.failed;
        self.errors.merge(&other.errors);
    }
}

async fn worker(shared: Arc<Shared>, w: usize) -> PhaseResult {
    let mut out = PhaseResult::new(Duration::ZERO);
    let mut k = shared.cursor(w);
    loop {
        if shared.cancel.is_cancelled() || Instant::now() >= shared.deadline {
            break;
        }
        let ticket = shared.issued.fetch_add(1, Ordering::Relaxed);
        if shared.limit.is_some_and(|limit| ticket >= limit) {
            break;
        }
        let session = shared.session_for(w, k);
        k += 1;
        let t0 = Instant::now();
        let result = tokio::select! {
            r = shared.http.call(session, ticket + 1, &shared.params) => r,
            _ = shared.cancel.cancelled() => break,
        };
        match result {
            Ok(()) => {
                record(&mut out.hist, t0.elapsed());
                out.ok += 1;
            }
            Err(e) => {
                out.failed += 1;
                out.errors.add(&e);
            }
        }
    }
    shared.set_cursor(w, k);
    out
}

/// 1 µs to 2 minutes at 3 significant digits: about 150 KB per histogram.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("constant bounds are valid")
}

fn record(hist: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    hist.saturating_record(us);
}

fn rate(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// Distinct error messages with counts; bounded so a storm of unique
/// messages cannot grow memory.
#[derive(Default, Clone)]
struct Errors {
    by_message: BTreeMap<String, u64>,
    other: u64,
}

const MAX_DISTINCT_ERRORS: usize = 8;

impl Errors {
    fn add(&mut self, e: &CallError) {
        self.add_text(e.to_string());
    }

    fn add_text(&mut self, msg: String) {
        self.add_n(msg, 1);
    }

    fn add_n(&mut self, msg: String, n: u64) {
        if let Some(c) = self.by_message.get_mut(&msg) {
            *c += n;
        } else if self.by_message.len() < MAX_DISTINCT_ERRORS {
            self.by_message.insert(msg, n);
        } else {
            self.other += n;
        }
    }

    fn merge(&mut self, other: &Errors) {
        for (m, n) in &other.by_message {
            self.add_n(m.clone(), *n);
        }
        self.other += other.other;
    }

    fn into_samples(self) -> Vec<ErrorCount> {
        let mut out: Vec<ErrorCount> = self
            .by_message
            .into_iter()
            .map(|(message, count)| ErrorCount { message, count })
            .collect();
        if self.other > 0 {
            out.push(ErrorCount {
                message: "(other messages)".into(),
                count: self.other,
            });
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.count));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(n: usize, c: usize) -> Shared {
        let session = Session {
            id: None,
            protocol_version: reqwest::header::HeaderValue::from_static("2025-11-25"),
        };
        let sessions = (0..n)
            .map(|i| Session {
                id: Some(reqwest::header::HeaderValue::from(i as u64)),
                ..session.clone()
            })
            .collect();
        Shared {
            http: Arc::new(
                McpHttp::new(
                    "http://127.0.0.1:9/mcp",
                    &[],
                    "x",
                    Duration::from_secs(1),
                    1,
                )
                .unwrap(),
            ),
            sessions: Arc::new(sessions),
            params: "{}".into(),
            issued: AtomicU64::new(0),
            limit: None,
            deadline: Instant::now(),
            cancel: CancellationToken::new(),
            workers: c,
            cursors: Arc::new((0..c).map(|_| AtomicU64::new(0)).collect()),
        }
    }

    fn id(s: &Session) -> usize {
        s.id.as_ref().unwrap().to_str().unwrap().parse().unwrap()
    }

    #[test]
    fn every_session_is_used_round_robin_and_workers_never_share_one() {
        let sh = shared(10, 4);
        let mut seen = std::collections::BTreeSet::new();
        for w in 0..4 {
            let mine: Vec<usize> = (0..6).map(|k| id(sh.session_for(w, k))).collect();
            assert!(mine.iter().all(|i| i % 4 == w), "worker {w}: {mine:?}");
            seen.extend(mine);
        }
        assert_eq!(seen.len(), 10);
        assert_eq!(
            (0..4).map(|k| id(sh.session_for(1, k))).collect::<Vec<_>>(),
            [1, 5, 9, 1]
        );
        let few = shared(2, 5);
        assert_eq!(
            (0..5)
                .map(|w| id(few.session_for(w, 0)))
                .collect::<Vec<_>>(),
            [0, 1, 0, 1, 0]
        );
    }

    #[test]
    fn a_phase_goes_on_where_the_last_stopped() {
        // One worker over 5 sessions, measured in phases of 3 calls: without
        // the cursor every phase would use sessions 0, 1, 2 only.
        let sh = shared(5, 1);
        let mut used = Vec::new();
        for _ in 0..3 {
            let mut k = sh.cursor(0);
            for _ in 0..3 {
                used.push(id(sh.session_for(0, k)));
                k += 1;
            }
            sh.set_cursor(0, k);
        }
        assert_eq!(used, [0, 1, 2, 3, 4, 0, 1, 2, 3]);
    }

    #[test]
    fn error_messages_are_bounded() {
        let mut e = Errors::default();
        for i in 0..20 {
            e.add_text(format!("m{i}"));
        }
        e.add_text("m0".into());
        let s = e.into_samples();
        assert_eq!(s.len(), MAX_DISTINCT_ERRORS + 1);
        assert_eq!(s.iter().map(|c| c.count).sum::<u64>(), 21);
    }
}
