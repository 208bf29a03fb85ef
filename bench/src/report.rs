//! What one run measured: serialized as one JSON object (for scripts and
//! `bench-summary`) or printed as a small table (for people).

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub url: String,
    pub tool: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub sessions: usize,
    pub concurrency: usize,
    /// Measured calls that completed, successful or not (warm-up and priming excluded).
    pub calls: u64,
    /// Of `calls`: transport failures, HTTP errors, JSON-RPC errors and `isError: true` results.
    pub errors: u64,
    pub duration_s: f64,
    /// Successful calls per second of the measured phase.
    pub throughput_rps: f64,
    /// Latency of the successful measured calls.
    pub latency_us: Latency,
    /// CPU seconds used during the measured phase: `client` (this tool),
    /// `machine` (all processes, all CPUs) and each watched process.
    #[serde(default)]
    pub cpu_s: BTreeMap<String, f64>,
    /// `initialize` of a fresh session to its first `tools/call` result.
    pub cold_start_us: Option<ColdStart>,
    /// Time to open all sessions (`initialize` + `notifications/initialized`).
    pub open_s: f64,
    /// Sessions given one unmeasured call before measuring.
    pub primed: u64,
    pub prime_errors: u64,
    pub deleted: u64,
    pub delete_errors: u64,
    /// Distinct error messages (measured and priming calls) with counts.
    pub error_samples: Vec<ErrorCount>,
    /// Cancelled (signal) before the phase ended by itself.
    pub interrupted: bool,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            min: h.min(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct ColdStart {
    pub samples: u64,
    pub errors: u64,
    pub p50: u64,
    pub min: u64,
    pub max: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorCount {
    pub message: String,
    pub count: u64,
}

/// `12345` → `12,345`: latencies and counts are read at a glance.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, k: &str, v: String| writeln!(f, "{k:<12}  {v}");
        row(f, "target", format!("{}  (tool {})", self.url, self.tool))?;
        if !self.tags.is_empty() {
            let tags: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            row(f, "tags", tags.join(" "))?;
        }
        row(
            f,
            "sessions",
            format!(
                "{} (opened in {:.3} s), concurrency {}",
                group(self.sessions as u64),
                self.open_s,
                self.concurrency
            ),
        )?;
        if self.primed + self.prime_errors > 0 {
            row(
                f,
                "primed",
                format!(
                    "{} sessions, {} errors",
                    group(self.primed),
                    self.prime_errors
                ),
            )?;
        }
        row(
            f,
            "calls",
            format!(
                "{} in {:.2} s, {} errors{}",
                group(self.calls),
                self.duration_s,
                group(self.errors),
                if self.interrupted {
                    " (interrupted)"
                } else {
                    ""
                }
            ),
        )?;
        row(
            f,
            "throughput",
            format!("{:.1} calls/s", self.throughput_rps),
        )?;
        let l = &self.latency_us;
        row(
            f,
            "latency µs",
            format!(
                "p50 {}  p90 {}  p99 {}  max {}  (min {}, mean {:.1})",
                group(l.p50),
                group(l.p90),
                group(l.p99),
                group(l.max),
                group(l.min),
                l.mean
            ),
        )?;
        if !self.cpu_s.is_empty() && self.calls > 0 {
            let per_call: Vec<String> = self
                .cpu_s
                .iter()
                .map(|(name, s)| format!("{name} {:.1}", s * 1e6 / self.calls as f64))
                .collect();
            row(f, "CPU µs/call", per_call.join("  "))?;
        }
        if let Some(c) = &self.cold_start_us {
            row(
                f,
                "cold start",
                format!(
                    "p50 {} µs (min {}, max {}; {} samples, {} errors)",
                    group(c.p50),
                    group(c.min),
                    group(c.max),
                    c.samples,
                    c.errors
                ),
            )?;
        }
        if self.deleted + self.delete_errors > 0 {
            row(
                f,
                "deleted",
                format!(
                    "{} sessions, {} errors",
                    group(self.deleted),
                    self.delete_errors
                ),
            )?;
        }
        for e in &self.error_samples {
            row(f, "error", format!("{} × {}", group(e.count), e.message))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }
}
