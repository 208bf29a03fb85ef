//! Tables across many runs: side-by-side figures per scenario and target
//! (median over rounds), the overhead of one target over another, the
//! scaling curve, memory samples, and the issue's targets checked against
//! them. Input is JSON lines: [`Report`]s labelled with `--tag`s, and memory
//! samples written by `bench/run.sh`.
//!
//! Tags read: `scenario` and `target` on every report; `open` (sessions held
//! open) on `scenario=scaling` reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::report::{group, Report};

/// Resident memory of the gateway process at one moment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemorySample {
    pub label: String,
    /// Downstream sessions held open while sampling.
    pub sessions: u64,
    pub rss_kb: u64,
    /// Failed opens or calls of the holding load run.
    #[serde(default)]
    pub errors: u64,
    /// Live sessions the upstream reported while sampling: evidence that each
    /// held downstream session really holds an upstream session.
    #[serde(default)]
    pub upstream_sessions: Option<u64>,
}

/// One line of input.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Record {
    Memory { memory: MemorySample },
    Report(Box<Report>),
}

pub fn parse_jsonl(text: &str) -> Result<Vec<Record>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

const SCALING: &str = "scaling";

fn scenario_name(id: &str) -> String {
    match id {
        "seq" => "1 session sequential".into(),
        "s64" => "64 sessions x 64 concurrent".into(),
        "s1000" => "1000 sessions round-robin (c64)".into(),
        other => other.into(),
    }
}

/// Pairs compared in the overhead table, (subject, baseline), when both ran.
const PAIRS: [(&str, &str); 6] = [
    ("switchyard", "direct"),
    ("relay", "direct"),
    ("switchyard", "relay"),
    ("contextforge", "direct"),
    ("switchyard", "contextforge"),
    // The ceiling of the ContextForge ratio on this machine: what any relay
    // sharing the cores with the upstream and the load tool can reach.
    ("relay", "contextforge"),
];

/// Medians over the rounds of one (scenario, target).
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    rounds: usize,
    p50: f64,
    p99: f64,
    rps: f64,
    cold_p50: Option<f64>,
    errors: u64,
    /// CPU µs per successful call of each process on the path (`client`, `proxy`, `upstream`).
    cpu: Cpu,
}

#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    client: Option<f64>,
    proxy: Option<f64>,
    upstream: Option<f64>,
    /// Machine-wide busy time minus the three above: whatever else ran.
    other: Option<f64>,
}

impl Cpu {
    /// All CPU the machine spent per call, over the processes that ran.
    fn total(&self) -> Option<f64> {
        let client = self.client?;
        Some(client + self.proxy.unwrap_or(0.0) + self.upstream.unwrap_or(0.0))
    }
}

fn cpu_per_call(reports: &[&Report], name: &str) -> Option<f64> {
    median_of(reports, |r| r.cpu_s.get(name).copied())
}

fn other_cpu_per_call(reports: &[&Report]) -> Option<f64> {
    median_of(reports, |r| {
        let ours: f64 = ["client", "proxy", "upstream"]
            .iter()
            .filter_map(|n| r.cpu_s.get(*n))
            .sum();
        Some((r.cpu_s.get("machine")? - ours).max(0.0))
    })
}

/// Median over reports of `seconds(report)` per successful call, in µs.
fn median_of(reports: &[&Report], seconds: impl Fn(&Report) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = reports
        .iter()
        .filter(|r| r.calls > r.errors)
        .filter_map(|r| Some(seconds(r)? * 1e6 / (r.calls - r.errors) as f64))
        .collect();
    (!v.is_empty()).then(|| median(v))
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn figures(reports: &[&Report]) -> Figures {
    let cold: Vec<f64> = reports
        .iter()
        .filter_map(|r| {
            r.cold_start_us
                .filter(|c| c.samples > 0)
                .map(|c| c.p50 as f64)
        })
        .collect();
    Figures {
        rounds: reports.len(),
        p50: median(reports.iter().map(|r| r.latency_us.p50 as f64).collect()),
        p99: median(reports.iter().map(|r| r.latency_us.p99 as f64).collect()),
        rps: median(reports.iter().map(|r| r.throughput_rps).collect()),
        cold_p50: (!cold.is_empty()).then(|| median(cold)),
        errors: reports.iter().map(|r| r.errors + r.prime_errors).sum(),
        cpu: Cpu {
            client: cpu_per_call(reports, "client"),
            proxy: cpu_per_call(reports, "proxy"),
            upstream: cpu_per_call(reports, "upstream"),
            other: other_cpu_per_call(reports),
        },
    }
}

/// Keeps first-seen order, so tables follow the order the script ran things in.
struct Ordered<T> {
    keys: Vec<String>,
    map: BTreeMap<String, T>,
}

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            map: BTreeMap::new(),
        }
    }
}

impl<T: Default> Ordered<T> {
    fn new() -> Self {
        Self::default()
    }
    fn entry(&mut self, k: &str) -> &mut T {
        if !self.map.contains_key(k) {
            self.keys.push(k.to_owned());
        }
        self.map.entry(k.to_owned()).or_default()
    }
    fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.keys
            .iter()
            .filter_map(|k| self.map.get(k).map(|v| (k, v)))
    }
}

/// Everything the tables and checks need, gathered once.
struct Collected<'a> {
    /// scenario → target → reports
    side: Ordered<Ordered<Vec<&'a Report>>>,
    /// target → open sessions → reports
    scaling: Ordered<BTreeMap<u64, Vec<&'a Report>>>,
    memory: Vec<&'a MemorySample>,
}

fn collect(records: &[Record]) -> Collected<'_> {
    let mut c = Collected {
        side: Ordered::new(),
        scaling: Ordered::new(),
        memory: Vec::new(),
    };
    for r in records {
        match r {
            Record::Memory { memory } => c.memory.push(memory),
            Record::Report(rep) => {
                let tag = |k: &str| rep.tags.get(k).map(String::as_str);
                let target = tag("target").unwrap_or("?");
                match tag("scenario") {
                    Some(SCALING) => {
                        let open = tag("open")
                            .and_then(|o| o.parse().ok())
                            .unwrap_or(rep.sessions as u64);
                        c.scaling
                            .entry(target)
                            .entry(open)
                            .or_default()
                            .push(rep.as_ref());
                    }
                    scenario => c
                        .side
                        .entry(scenario.unwrap_or("?"))
                        .entry(target)
                        .push(rep.as_ref()),
                }
            }
        }
    }
    c
}

fn us(v: f64) -> String {
    if v.is_finite() {
        group(v.round().max(0.0) as u64)
    } else {
        "-".into()
    }
}

fn signed_us(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let sign = if v < 0.0 { "-" } else { "+" };
    format!("{sign}{}", group(v.abs().round() as u64))
}

fn opt_us(v: Option<f64>) -> String {
    v.map(us).unwrap_or_else(|| "-".into())
}

fn ratio(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".into()
    }
}

/// The whole summary: tables, then (if `targets`) the target checks.
pub fn render(records: &[Record], targets: bool) -> String {
    let c = collect(records);
    let mut out = String::new();
    let figs = side_figures(&c);

    if !figs.keys.is_empty() {
        let _ = writeln!(
            out,
            "Side by side (median over rounds; latency of successful calls in µs; CPU in µs per call of"
        );
        let _ = writeln!(
            out,
            "the gateway or relay, the upstream fixture, the load tool, and everything else the machine"
        );
        let _ = writeln!(
            out,
            "did meanwhile: kernel network softirq and any other process, i.e. contention)"
        );
        let _ = writeln!(
            out,
            "{:<32} {:<11} {:>6} {:>7} {:>7} {:>8} {:>6} {:>8} {:>9} {:>9} {:>8} {:>9}",
            "scenario",
            "target",
            "rounds",
            "p50",
            "p99",
            "calls/s",
            "errors",
            "cold p50",
            "cpu proxy",
            "cpu upstr",
            "cpu load",
            "cpu other"
        );
        for (scenario, targets) in figs.iter() {
            let mut first = true;
            for (target, f) in targets.iter() {
                let name = if first {
                    scenario_name(scenario)
                } else {
                    String::new()
                };
                first = false;
                let _ = writeln!(
                    out,
                    "{:<32} {:<11} {:>6} {:>7} {:>7} {:>8} {:>6} {:>8} {:>9} {:>9} {:>8} {:>9}",
                    name,
                    target,
                    f.rounds,
                    us(f.p50),
                    us(f.p99),
                    group(f.rps.round().max(0.0) as u64),
                    f.errors,
                    opt_us(f.cold_p50),
                    opt_us(f.cpu.proxy),
                    opt_us(f.cpu.upstream),
                    opt_us(f.cpu.client),
                    opt_us(f.cpu.other),
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Overhead (A vs B: added latency A − B in µs, throughput A / B, cold start A − B in µs,"
        );
        let _ = writeln!(out, "          all processes' CPU per call A − B in µs)");
        let _ = writeln!(
            out,
            "{:<32} {:<25} {:>9} {:>9} {:>10} {:>9} {:>9}",
            "scenario", "A vs B", "+p50", "+p99", "rps ratio", "cold Δ", "+CPU"
        );
        for (scenario, targets) in figs.iter() {
            let mut first = true;
            for (a, b) in PAIRS {
                let (Some(fa), Some(fb)) = (targets.map.get(a), targets.map.get(b)) else {
                    continue;
                };
                let name = if first {
                    scenario_name(scenario)
                } else {
                    String::new()
                };
                first = false;
                let cold = match (fa.cold_p50, fb.cold_p50) {
                    (Some(x), Some(y)) => signed_us(x - y),
                    _ => "-".into(),
                };
                let cpu = match (fa.cpu.total(), fb.cpu.total()) {
                    (Some(x), Some(y)) => signed_us(x - y),
                    _ => "-".into(),
                };
                let _ = writeln!(
                    out,
                    "{:<32} {:<25} {:>9} {:>9} {:>10} {:>9} {:>9}",
                    name,
                    format!("{a} vs {b}"),
                    signed_us(fa.p50 - fb.p50),
                    signed_us(fa.p99 - fb.p99),
                    ratio(fa.rps / fb.rps),
                    cold,
                    cpu,
                );
            }
        }
        let _ = writeln!(out);
    }

    for (target, levels) in c.scaling.iter() {
        let _ = writeln!(
            out,
            "Scaling: {target}, calls round-robin over open sessions that each hold an upstream session"
        );
        let _ = writeln!(
            out,
            "{:>14} {:>9} {:>9} {:>11} {:>7}",
            "open sessions", "p50 µs", "p99 µs", "calls/s", "errors"
        );
        for (open, reports) in levels {
            let f = figures(reports);
            let _ = writeln!(
                out,
                "{:>14} {:>9} {:>9} {:>11} {:>7}",
                group(*open),
                us(f.p50),
                us(f.p99),
                group(f.rps.round().max(0.0) as u64),
                f.errors
            );
        }
        let _ = writeln!(out);
    }

    if !c.memory.is_empty() {
        let _ = writeln!(out, "Memory: gateway VmRSS");
        let _ = writeln!(
            out,
            "{:<44} {:>9} {:>9} {:>7} {:>12}",
            "state", "sessions", "RSS MB", "errors", "upstream live"
        );
        for m in &c.memory {
            let _ = writeln!(
                out,
                "{:<44} {:>9} {:>9.1} {:>7} {:>12}",
                m.label,
                group(m.sessions),
                m.rss_kb as f64 / 1024.0,
                m.errors,
                m.upstream_sessions.map(group).unwrap_or_else(|| "-".into())
            );
        }
        let _ = writeln!(out);
    }

    let checks = if targets {
        checks(&c, &figs)
    } else {
        Vec::new()
    };
    if !checks.is_empty() {
        let _ = writeln!(out, "Targets (issue \"Benchmarks\")");
        for ch in checks {
            let verdict = match ch.met {
                Some(true) => "MET",
                Some(false) => "NOT MET",
                None => "n/a",
            };
            let _ = writeln!(out, "{verdict:<8} {:<62} {}", ch.what, ch.measured);
        }
    }
    out
}

fn side_figures(c: &Collected<'_>) -> Ordered<Ordered<Figures>> {
    let mut figs: Ordered<Ordered<Figures>> = Ordered::new();
    for (scenario, targets) in c.side.iter() {
        let row = figs.entry(scenario);
        for (target, reports) in targets.iter() {
            *row.entry(target) = figures(reports);
        }
    }
    figs
}

struct Check {
    what: String,
    measured: String,
    met: Option<bool>,
}

fn checks(c: &Collected<'_>, figs: &Ordered<Ordered<Figures>>) -> Vec<Check> {
    let mut out = Vec::new();
    let pair = |scenario: &str, a: &str, b: &str| {
        let t = figs.map.get(scenario)?;
        Some((*t.map.get(a)?, *t.map.get(b)?))
    };
    let mut check = |what: &str, value: Option<(String, bool)>| {
        let (measured, met) = match value {
            Some((m, ok)) => (m, Some(ok)),
            None => ("not measured in this run".into(), None),
        };
        out.push(Check {
            what: what.into(),
            measured,
            met,
        });
    };
    let seq = pair("seq", "switchyard", "direct");
    check(
        "added latency, 1 session sequential, p50 ≤ 0.1 ms",
        seq.map(|(g, d)| {
            let v = g.p50 - d.p50;
            (format!("{} µs", signed_us(v)), v <= 100.0)
        }),
    );
    check(
        "added latency, 1 session sequential, p99 ≤ 0.5 ms",
        seq.map(|(g, d)| {
            let v = g.p99 - d.p99;
            (format!("{} µs", signed_us(v)), v <= 500.0)
        }),
    );
    check(
        "throughput, 64 concurrent, ≥ 40 % of direct",
        pair("s64", "switchyard", "direct").map(|(g, d)| {
            let v = g.rps / d.rps;
            (format!("{:.1} %", v * 100.0), v >= 0.40)
        }),
    );
    check(
        "throughput, 64 concurrent, ≥ 80 % of the bare relay",
        pair("s64", "switchyard", "relay").map(|(g, r)| {
            let v = g.rps / r.rps;
            (format!("{:.1} %", v * 100.0), v >= 0.80)
        }),
    );
    let held = c
        .memory
        .iter()
        .filter(|m| m.sessions >= 10_000)
        .max_by_key(|m| m.sessions);
    check(
        "10,000 sessions with live upstream sessions: RSS ≤ 150 MB, 0 errors",
        held.map(|m| {
            let mb = m.rss_kb as f64 / 1024.0;
            (
                format!("{mb:.1} MB, {} errors", m.errors),
                mb <= 150.0 && m.errors == 0,
            )
        }),
    );
    let idle = c.memory.iter().find(|m| m.sessions == 0);
    check(
        "idle RSS ≤ 30 MB",
        idle.map(|m| {
            let mb = m.rss_kb as f64 / 1024.0;
            (format!("{mb:.1} MB"), mb <= 30.0)
        }),
    );
    check(
        "cold start ≤ direct + 1 ms (1 session sequential)",
        seq.and_then(|(g, d)| {
            let v = g.cold_p50? - d.cold_p50?;
            Some((format!("{} µs", signed_us(v)), v <= 1000.0))
        }),
    );
    let flat = c.scaling.map.get("switchyard").and_then(|levels| {
        let (lo_open, lo) = levels.iter().next()?;
        let (hi_open, hi) = levels.iter().next_back()?;
        if hi_open / lo_open.max(&1) < 100 {
            return None;
        }
        let (lo, hi) = (figures(lo), figures(hi));
        let raw = hi.p50 / lo.p50;
        let mut text = format!(
            "p50 {} µs at {} → {} µs at {} open ({raw:.2}×",
            us(lo.p50),
            group(*lo_open),
            us(hi.p50),
            group(*hi_open)
        );
        // Direct at the same levels, measured alongside, takes out what is
        // not the gateway's: the machine's drift over the minutes the curve
        // takes, and the upstream's own cost of holding more sessions.
        let direct = c.scaling.map.get("direct").and_then(|d| {
            let (lo_d, hi_d) = (d.get(lo_open)?, d.get(hi_open)?);
            Some(figures(hi_d).p50 / figures(lo_d).p50)
        });
        let r = match direct {
            Some(d) => {
                let r = raw / d;
                text.push_str(&format!("; {r:.2}× relative to direct's {d:.2}×)"));
                r
            }
            None => {
                text.push(')');
                raw
            }
        };
        Some((text, r <= FLAT_TOLERANCE))
    });
    check(
        "per-call latency flat from 100 to 10,000 sessions (p50 within 25 %)",
        flat,
    );
    out
}

/// "Flat" made checkable: the p50 at 100× the open sessions may be at most
/// this much higher (relative to direct's growth over the same levels, when
/// measured).
const FLAT_TOLERANCE: f64 = 1.25;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Latency;

    fn report(scenario: &str, target: &str, p50: u64, rps: f64) -> Record {
        let mut tags = BTreeMap::new();
        tags.insert("scenario".into(), scenario.into());
        tags.insert("target".into(), target.into());
        Record::Report(Box::new(Report {
            url: "http://127.0.0.1:1/mcp".into(),
            tool: "echo".into(),
            tags,
            sessions: 1,
            concurrency: 1,
            calls: 10,
            errors: 0,
            duration_s: 1.0,
            throughput_rps: rps,
            latency_us: Latency {
                p50,
                p99: p50 * 2,
                ..Latency::default()
            },
            cpu_s: BTreeMap::new(),
            cold_start_us: None,
            open_s: 0.0,
            primed: 0,
            prime_errors: 0,
            deleted: 0,
            delete_errors: 0,
            error_samples: Vec::new(),
            interrupted: false,
        }))
    }

    #[test]
    fn medians_pairs_and_checks() {
        let mut records = Vec::new();
        for (p, r) in [(100, 1000.0), (300, 900.0), (200, 1100.0)] {
            records.push(report("seq", "direct", p, r));
            records.push(report("seq", "switchyard", p + 50, r / 2.0));
        }
        records.push(Record::Memory {
            memory: MemorySample {
                label: "idle".into(),
                sessions: 0,
                rss_kb: 20 * 1024,
                errors: 0,
                upstream_sessions: None,
            },
        });
        let text = render(&records, true);
        assert!(text.contains("switchyard vs direct"), "{text}");
        assert!(text.contains("+50"), "{text}");
        assert!(text.contains("0.50"), "{text}");
        assert!(
            text.contains("MET      added latency, 1 session sequential, p50"),
            "{text}"
        );
        assert!(text.contains("MET      idle RSS"), "{text}");
        assert!(
            text.contains("n/a      throughput, 64 concurrent"),
            "{text}"
        );
        let line = serde_json::to_string(&records[0]).unwrap();
        assert!(matches!(parse_jsonl(&line).unwrap()[0], Record::Report(_)));
        let mem = r#"{"memory":{"label":"idle","sessions":0,"rss_kb":1}}"#;
        assert!(matches!(
            parse_jsonl(mem).unwrap()[0],
            Record::Memory { .. }
        ));
    }

    #[test]
    fn flatness_is_judged_relative_to_direct_at_the_same_levels() {
        let level = |target: &str, open: &str, p50| {
            let Record::Report(mut r) = report("scaling", target, p50, 1000.0) else {
                unreachable!()
            };
            r.tags.insert("open".into(), open.into());
            Record::Report(r)
        };
        // The gateway grows 1.40× from 100 to 10,000, direct 1.30×: flat.
        let records = vec![
            level("direct", "100", 100),
            level("switchyard", "100", 200),
            level("direct", "10000", 130),
            level("switchyard", "10000", 280),
        ];
        let text = render(&records, true);
        assert!(
            text.contains("MET      per-call latency flat") && text.contains("1.08×"),
            "{text}"
        );
        // Without direct, the gateway's own growth decides: 1.40× is not flat.
        let text = render(&[records[1].clone(), records[3].clone()], true);
        assert!(text.contains("NOT MET  per-call latency flat"), "{text}");
    }

    #[test]
    fn median_of_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
