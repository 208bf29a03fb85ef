//! A counter and a histogram for what every call records, from every worker
//! thread: one copy per thread slot, each on cache lines of its own, summed
//! when scraped.
//!
//! prometheus-client's own keep one copy: its histogram behind a mutex, its
//! counter in one atomic. Every call on every core then writes the same
//! line, which moves between the cores on each call. Scrapes are rare and
//! may add up the slots; calls are not and should not share a line.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Thread slots. More threads than this share slots, which stays correct
/// (the slots are atomics) and only costs them the sharing.
const SLOTS: usize = 16;

/// Finite upper bounds of [`ShardedHistogram`]: 100 µs .. ~6.5 s in
/// doublings (gateway overhead and slow tools both resolve), then +Inf.
const BOUNDS: usize = 17;

fn bound(i: usize) -> f64 {
    0.0001 * f64::from(1u32 << i)
}

/// This thread's slot, assigned round-robin on its first record.
fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SLOT.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS);
        }
        s.get()
    })
}

/// Two lines: the adjacent-line prefetcher pulls lines in pairs.
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

/// A monotonic counter.
#[derive(Clone, Debug, Default)]
pub struct ShardedCounter(Arc<[Padded<AtomicU64>; SLOTS]>);

impl std::fmt::Debug for Padded<AtomicU64> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ShardedCounter {
    pub fn inc(&self) {
        self.0[slot()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[derive(Default)]
struct Counts {
    count: AtomicU64,
    /// An `f64`'s bits: there is no atomic float.
    sum: AtomicU64,
    /// Per bucket, not cumulative (the encoder adds them up); the last is +Inf.
    buckets: [AtomicU64; BOUNDS + 1],
}

/// A latency histogram in seconds, on fixed buckets (see [`BOUNDS`]).
#[derive(Clone, Default)]
pub struct ShardedHistogram(Arc<[Padded<Counts>; SLOTS]>);

impl std::fmt::Debug for ShardedHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sum, count, _) = self.snapshot();
        f.debug_struct("ShardedHistogram")
            .field("count", &count)
            .field("sum", &sum)
            .finish()
    }
}

impl ShardedHistogram {
    pub fn observe(&self, v: f64) {
        let counts = &self.0[slot()].0;
        // NaN falls into +Inf, as in prometheus-client.
        let bucket = (0..BOUNDS).find(|&i| v <= bound(i)).unwrap_or(BOUNDS);
        counts.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        counts.count.fetch_add(1, Ordering::Relaxed);
        // Another thread writes this slot only when there are more threads
        // than slots: the loop nearly always runs once.
        let _ = counts
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    /// Sum, count, and (upper bound, count) per bucket, not cumulative.
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut sum = 0.0;
        let mut count = 0;
        let mut buckets: Vec<(f64, u64)> = (0..BOUNDS)
            .map(bound)
            .chain(std::iter::once(f64::INFINITY))
            .map(|b| (b, 0))
            .collect();
        for slot in self.0.iter() {
            let c = &slot.0;
            sum += f64::from_bits(c.sum.load(Ordering::Relaxed));
            count += c.count.load(Ordering::Relaxed);
            for (into, n) in buckets.iter_mut().zip(&c.buckets) {
                into.1 += n.load(Ordering::Relaxed);
            }
        }
        (sum, count, buckets)
    }
}

impl TypedMetric for ShardedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ShardedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
    use prometheus_client::registry::Registry;

    fn render(register: impl FnOnce(&mut Registry)) -> String {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    /// Scrapers see exactly what prometheus-client's own metrics would
    /// show for the same records, written from several threads.
    #[test]
    fn sharded_metrics_render_as_prometheus_clients_own() {
        let values: Vec<f64> = (0..400)
            .map(|i| 0.00003 * f64::from(i % 37).powi(3))
            .chain([0.0001, 0.0002, 100.0])
            .collect();
        let (sharded, counter) = (ShardedHistogram::default(), ShardedCounter::default());
        std::thread::scope(|s| {
            for chunk in values.chunks(50) {
                let (sharded, counter) = (&sharded, &counter);
                s.spawn(move || {
                    for &v in chunk {
                        sharded.observe(v);
                        counter.inc();
                    }
                });
            }
        });
        let (plain, plain_counter) = (
            Histogram::new(exponential_buckets(0.0001, 2.0, BOUNDS as u16)),
            Counter::<u64>::default(),
        );
        for &v in &values {
            plain.observe(v);
            plain_counter.inc();
        }
        assert_eq!(counter.get(), values.len() as u64);
        let ours = render(|r| {
            r.register("latency", "l", sharded);
            r.register("calls", "c", counter);
        });
        let theirs = render(|r| {
            r.register("latency", "l", plain);
            r.register("calls", "c", plain_counter);
        });
        // The sums may differ in their last bits (the order of addition).
        let without_sum = |text: &str| {
            text.lines()
                .filter(|l| !l.starts_with("latency_sum"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(without_sum(&ours), without_sum(&theirs));
        let sum = ours
            .lines()
            .find_map(|l| l.strip_prefix("latency_sum "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap();
        let expected: f64 = values.iter().sum();
        assert!((sum - expected).abs() < 1e-9, "{sum} vs {expected}");
        assert!(ours.contains("latency_count 403"), "{ours}");
        assert!(ours.contains("le=\"+Inf\"} 403"), "{ours}");
    }
}
