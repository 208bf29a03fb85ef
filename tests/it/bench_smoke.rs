//! Keeps the benchmark load tool (`bench/`, crate `switchyard-bench`) from
//! rotting: it runs in-process against a real gateway and fixture, and must
//! count exactly what it did. Counts only — timings are for `bench/run.sh`.

use serde_json::json;
use switchyard_bench::{LoadConfig, Stop};
use switchyard_fixtures::{AnswerStyle, CounterServer, Options};

use crate::support::{counter, TestGateway};

fn echo_load(url: String, tool: &str) -> LoadConfig {
    let mut cfg = LoadConfig::new(url, tool);
    cfg.arguments = json!({"text": "hello"});
    cfg.sessions = 4;
    cfg.concurrency = 8;
    cfg.stop = Stop::Calls(300);
    cfg
}

#[tokio::test]
async fn load_tool_counts_every_call_through_the_gateway() {
    let up = counter("bench").await;
    let gw = TestGateway::start().await;
    gw.register("bench", &up.url()).await;
    let mut cfg = echo_load(gw.url("/mcp"), "bench-echo");
    cfg.headers = vec![("Authorization".into(), format!("Bearer {}", gw.token))];
    cfg.prime = true;
    cfg.cold_start = 2;
    cfg.delete = true;

    let report = switchyard_bench::run(cfg).await.unwrap();

    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert_eq!(report.calls, 300);
    assert_eq!(report.sessions, 4);
    assert_eq!((report.primed, report.prime_errors), (4, 0));
    assert_eq!((report.deleted, report.delete_errors), (4, 0));
    let cold = report.cold_start_us.expect("cold start measured");
    assert_eq!((cold.samples, cold.errors), (2, 0));
    // Measured calls, one priming call per session, one per cold-start session.
    assert_eq!(up.stats().tool_calls, 300 + 4 + 2);
    assert!(report.to_string().contains("300"));
}

#[tokio::test]
async fn tool_errors_count_as_errors() {
    let up = counter("bench").await;
    let gw = TestGateway::start().await;
    gw.register("bench", &up.url()).await;
    let mut cfg = echo_load(gw.url("/mcp"), "bench-fail");
    cfg.headers = vec![("Authorization".into(), format!("Bearer {}", gw.token))];
    cfg.stop = Stop::Calls(40);

    let report = switchyard_bench::run(cfg).await.unwrap();

    assert_eq!((report.calls, report.errors), (40, 40));
    assert!(
        report.error_samples[0].message.contains("isError"),
        "{:?}",
        report.error_samples
    );
}

#[tokio::test]
async fn sse_answers_are_read() {
    let up = CounterServer::start(Options {
        answer: AnswerStyle::Sse,
        ..Options::default()
    })
    .await
    .unwrap();

    let report = switchyard_bench::run(echo_load(up.url(), "echo"))
        .await
        .unwrap();

    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert_eq!(report.calls, 300);
    assert_eq!(up.stats().tool_calls, 300);
}

#[tokio::test]
async fn targets_measured_side_by_side_each_get_their_own_report() {
    let up = counter("bench").await;
    let gw = TestGateway::start().await;
    gw.register("bench", &up.url()).await;
    let side = |url: String, tool: &str, name: &str| {
        let mut cfg = echo_load(url, tool);
        cfg.stop = Stop::Duration(std::time::Duration::from_millis(300));
        cfg.prime = true;
        cfg.delete = true;
        cfg.tags.insert("target".into(), name.into());
        cfg
    };
    let direct = side(up.url(), "echo", "direct");
    let mut gateway = side(gw.url("/mcp"), "bench-echo", "switchyard");
    gateway.headers = vec![("Authorization".into(), format!("Bearer {}", gw.token))];
    let loads = vec![
        switchyard_bench::Load::open(direct).await.unwrap(),
        switchyard_bench::Load::open(gateway).await.unwrap(),
    ];

    let mut reports =
        switchyard_bench::measure_interleaved(&loads, std::time::Duration::from_millis(50)).await;
    for (load, report) in loads.into_iter().zip(reports.iter_mut()) {
        load.close(report).await;
    }

    let names: Vec<_> = reports.iter().map(|r| r.tags["target"].as_str()).collect();
    assert_eq!(names, ["direct", "switchyard"]);
    for r in &reports {
        assert_eq!(r.errors, 0, "{:?}", r.error_samples);
        assert!(r.calls > 0, "{} made no calls", r.tags["target"]);
        // Each target ran its whole duration, in turns that add up to it.
        assert!(
            r.duration_s >= 0.3,
            "{}: {} s",
            r.tags["target"],
            r.duration_s
        );
        assert_eq!((r.primed, r.deleted), (4, 4));
    }
    // Every measured call of both reached the one upstream, nothing else did
    // (besides one priming call per session).
    let measured: u64 = reports.iter().map(|r| r.calls).sum();
    assert_eq!(up.stats().tool_calls, measured + 8);
}
