//! Every lifecycle path of an upstream session: idle probes, expiry,
//! enable/disable, bounded shutdown, health checks, per-call sessions,
//! the admin window, metrics and trace context.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard::config::Settings;
use switchyard_fixtures::{CounterServer, Options};

use crate::support::{counter, TestGateway};

fn settings(edit: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = Settings::for_tests();
    edit(&mut s);
    s
}

async fn metric(gw: &TestGateway, line_start: &str) -> f64 {
    gw.metrics_text()
        .await
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn idle_sessions_are_probed_before_reuse_and_replaced_when_dead() {
    let up = counter("counter").await;
    let gw = TestGateway::start_with(settings(|s| {
        s.lifecycle.upstream_idle_validation = Duration::from_millis(100)
    }))
    .await;
    gw.register("counter", &up.url()).await;
    let mut c = gw.connect("/mcp").await;
    assert_eq!(c.counter("counter-increment", json!({})).await, 1);
    let inits = up.stats().initializes;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        c.counter("counter-increment", json!({})).await,
        2,
        "healthy probe: same session"
    );
    assert_eq!(up.stats().pings, 1);
    assert_eq!(up.stats().initializes, inits);

    tokio::time::sleep(Duration::from_millis(200)).await;
    up.expire_sessions();
    // The probe finds the session dead; the call itself succeeds on a fresh one.
    assert_eq!(c.counter("counter-increment", json!({})).await, 1);
    assert_eq!(up.stats().initializes, inits + 1);
    assert_eq!(
        metric(&gw, "switchyard_upstream_probes_total{result=\"healthy\"}").await,
        1.0
    );
    assert_eq!(
        metric(&gw, "switchyard_upstream_probes_total{result=\"failed\"}").await,
        1.0
    );
}

#[tokio::test]
async fn idle_downstream_sessions_expire_like_a_delete() {
    let up = counter("counter").await;
    let gw = TestGateway::start_with(settings(|s| {
        s.lifecycle.session_idle_timeout = Duration::from_millis(300)
    }))
    .await;
    gw.register("counter", &up.url()).await;
    let deletes = up.stats().deletes;
    let mut c = gw.connect("/mcp").await;
    c.counter("counter-increment", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.stats().live_sessions > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        up.stats().live_sessions,
        0,
        "expiry closed the upstream session"
    );
    assert_eq!(up.stats().deletes, deletes + 1);
    assert_eq!(
        c.request("ping", json!({})).await.status,
        404,
        "an expired id is gone for good"
    );
    assert_eq!(
        metric(
            &gw,
            "switchyard_upstream_evictions_total{reason=\"session_expired\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn disabling_a_gateway_hides_its_tools_and_closes_its_sessions_enabling_restores() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    let g = gw.register("counter", &up.url()).await;
    let path = format!("/gateways/{}", g["id"].as_str().unwrap());
    let mut c = gw.connect("/mcp").await;
    c.counter("counter-increment", json!({})).await;
    let off = gw
        .http
        .put(gw.url(&path))
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 200);
    assert_eq!(up.stats().live_sessions, 0);
    let list = c.request("tools/list", json!({})).await;
    assert_eq!(list.body["result"]["tools"], json!([]));
    let call = c
        .request(
            "tools/call",
            json!({"name": "counter-get", "arguments": {}}),
        )
        .await;
    assert_eq!(call.body["error"]["code"], -32602);
    let on = gw
        .http
        .put(gw.url(&path))
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(on.status(), 200);
    assert_eq!(
        c.request("tools/list", json!({})).await.body["result"]["tools"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        c.counter("counter-get", json!({})).await,
        0,
        "a fresh upstream session"
    );
}

#[tokio::test]
async fn shutdown_closes_fifty_slow_sessions_in_parallel() {
    let up = counter("counter").await;
    let timeout = Duration::from_millis(1500);
    let gw = TestGateway::start_with(settings(|s| s.timeouts.shutdown = timeout)).await;
    gw.register("counter", &up.url()).await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut c = gw.connect("/mcp").await;
        c.counter("counter-increment", json!({})).await;
        clients.push(c);
    }
    // Each DELETE takes 300 ms: serially 15 s, in parallel about 0.3 s.
    up.set_delete_delay(Duration::from_millis(300));
    let started = Instant::now();
    gw.stop().await;
    let took = started.elapsed();
    assert_eq!(up.stats().live_sessions, 0, "every session got its DELETE");
    assert!(
        took < 2 * timeout,
        "shutdown took {took:?}, bound is {:?}",
        2 * timeout
    );
}

#[tokio::test]
async fn a_wedged_upstream_cannot_stall_shutdown() {
    let up = counter("counter").await;
    let timeout = Duration::from_millis(400);
    let gw = TestGateway::start_with(settings(|s| s.timeouts.shutdown = timeout)).await;
    gw.register("counter", &up.url()).await;
    for _ in 0..10 {
        let mut c = gw.connect("/mcp").await;
        c.counter("counter-increment", json!({})).await;
    }
    up.set_delete_delay(Duration::MAX);
    let started = Instant::now();
    gw.stop().await;
    // Slack for a loaded CI machine; the design bound is 2 × timeout.
    let took = started.elapsed();
    assert!(
        took < 2 * timeout + Duration::from_millis(600),
        "shutdown took {took:?}"
    );
}

/// The binary returns the memory of ended sessions to the OS through a
/// per-thread upkeep (src/main.rs). Only a thread can collect its own
/// allocator heap, so the upkeep must run on every I/O thread, and keep
/// running while no request comes; and it must not hold up shutdown.
#[tokio::test]
async fn thread_upkeep_runs_on_every_io_thread_while_idle_and_does_not_hold_shutdown() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static THREADS_SEEN: AtomicU64 = AtomicU64::new(0);
    static RUNS: AtomicU64 = AtomicU64::new(0);
    fn note_thread() {
        if let Some(i) = switchyard::server::io_thread() {
            THREADS_SEEN.fetch_or(1 << i, Ordering::SeqCst);
            RUNS.fetch_add(1, Ordering::SeqCst);
        }
    }
    let upkeep = switchyard::ThreadUpkeep {
        every: Duration::from_millis(20),
        run: note_thread,
    };
    let gw = TestGateway::start_with_upkeep(settings(|s| s.io_threads = 3), Some(upkeep)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while (THREADS_SEEN.load(Ordering::SeqCst) != 0b111 || RUNS.load(Ordering::SeqCst) < 30)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        THREADS_SEEN.load(Ordering::SeqCst),
        0b111,
        "the upkeep ran on I/O threads {:b} of 3, {} times",
        THREADS_SEEN.load(Ordering::SeqCst),
        RUNS.load(Ordering::SeqCst)
    );
    assert!(
        RUNS.load(Ordering::SeqCst) >= 30,
        "it ran once per thread only"
    );
    let started = Instant::now();
    gw.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn health_checks_mark_a_dead_gateway_unreachable_and_its_recovery() {
    let up = counter("counter").await;
    let addr = up.addr();
    let gw = TestGateway::start_with(settings(|s| {
        s.lifecycle.health_check_interval = Duration::from_millis(100);
        s.lifecycle.health_failure_threshold = 2;
        s.timeouts.upstream_connect = Duration::from_millis(500);
    }))
    .await;
    let g = gw.register("counter", &up.url()).await;
    let path = format!("/gateways/{}", g["id"].as_str().unwrap());
    let mut c = gw.connect("/mcp").await;
    c.counter("counter-increment", json!({})).await;
    drop(up);

    let state = |gw: &TestGateway| {
        let (http, url) = (gw.http.clone(), gw.url(&path));
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut g = state(&gw).await;
    while g["reachable"] == true && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        g = state(&gw).await;
    }
    assert_eq!(g["reachable"], false, "{g}");
    assert!(
        g["lastError"].as_str().is_some_and(|e| !e.is_empty()),
        "{g}"
    );
    let fast = c.call("counter-get", json!({})).await;
    assert_eq!(fast["error"]["code"], -32000);
    assert!(
        fast["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{fast}"
    );
    assert_eq!(
        c.request("tools/list", json!({})).await.body["result"]["tools"]
            .as_array()
            .unwrap()
            .len(),
        5,
        "tools stay listed"
    );

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let _up = CounterServer::serve(listener, Options::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(&gw).await["reachable"] == false && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state(&gw).await["reachable"], true);
    assert!(state(&gw).await["lastSeen"].is_string());
    assert_eq!(c.counter("counter-get", json!({})).await, 0);
}

#[tokio::test]
async fn sessionless_calls_use_a_session_of_their_own_and_never_the_registry() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let (inits, deletes) = (up.stats().initializes, up.stats().deletes);
    for _ in 0..2 {
        let resp: Value = gw
            .http
            .post(gw.url("/rpc"))
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "counter-increment", "arguments": {"by": 4}}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            resp["result"]["structuredContent"]["value"], 4,
            "fresh state every call: {resp}"
        );
    }
    let id = gw.tool_id("counter-increment").await;
    let invoked = gw
        .http
        .post(gw.url(&format!("/tools/{id}/invoke")))
        .json(&json!({"by": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(invoked.status(), 200);
    assert_eq!(
        invoked.json::<Value>().await.unwrap()["structuredContent"]["value"],
        9
    );
    let listed: Value = gw
        .http
        .post(gw.url("/rpc"))
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["result"]["tools"].as_array().unwrap().len(), 5);
    let batch = gw
        .http
        .post(gw.url("/rpc"))
        .json(&json!([{"jsonrpc": "2.0", "id": 3, "method": "tools/list"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 400);
    let batch: Value = batch.json().await.unwrap();
    assert!(
        batch["error"]["message"].as_str().unwrap().contains("/rpc"),
        "no word of sessions on a sessionless endpoint: {batch}"
    );
    assert_eq!(up.stats().initializes - inits, 3);
    assert_eq!(
        up.stats().deletes - deletes,
        3,
        "each per-call session is closed"
    );
    assert!(gw.app.registry.snapshot().is_empty());
    let missing = gw
        .http
        .post(gw.url("/tools/nope/invoke"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn admin_sessions_shows_the_registry_and_ends_a_session_by_force() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    let g = gw.register("counter", &up.url()).await;
    let mut c = gw.connect("/mcp").await;
    for _ in 0..3 {
        c.counter("counter-increment", json!({})).await;
    }
    let sid = c.session.clone().unwrap();
    let view: Value = gw.get_json("/admin/sessions").await;
    let entry = &view["upstreamSessions"][0];
    assert_eq!(entry["downstream_session_id"], sid);
    assert_eq!(entry["gateway_id"], g["id"]);
    assert_eq!(entry["use_count"], 3);
    assert!(entry["age_secs"].as_f64().is_some());
    assert_eq!(view["downstreamSessions"][0]["id"], sid);
    let del = gw
        .http
        .delete(gw.url(&format!("/admin/sessions/{sid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(up.stats().live_sessions, 0);
    assert_eq!(c.request("ping", json!({})).await.status, 404);
    let again = gw
        .http
        .delete(gw.url(&format!("/admin/sessions/{sid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn metrics_count_a_scripted_sequence() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    let g = gw.register("counter", &up.url()).await;
    let mut a = gw.connect("/mcp").await;
    let mut b = gw.connect("/mcp").await;
    for _ in 0..3 {
        a.counter("counter-increment", json!({})).await;
    }
    b.counter("counter-increment", json!({})).await;
    assert_eq!(metric(&gw, "switchyard_upstream_sessions ").await, 2.0);
    assert_eq!(metric(&gw, "switchyard_downstream_sessions ").await, 2.0);
    a.delete().await;
    assert_eq!(
        metric(
            &gw,
            "switchyard_upstream_acquires_total{outcome=\"created\"}"
        )
        .await,
        2.0
    );
    assert_eq!(
        metric(
            &gw,
            "switchyard_upstream_acquires_total{outcome=\"reused\"}"
        )
        .await,
        2.0
    );
    assert_eq!(
        metric(
            &gw,
            "switchyard_upstream_evictions_total{reason=\"session_ended\"}"
        )
        .await,
        1.0
    );
    assert_eq!(metric(&gw, "switchyard_upstream_sessions ").await, 1.0);
    let count = format!(
        "switchyard_upstream_request_duration_seconds_count{{gateway=\"{}\"}}",
        g["id"].as_str().unwrap()
    );
    assert_eq!(metric(&gw, &count).await, 4.0);
}

#[tokio::test]
async fn trace_context_is_forwarded_per_request_on_the_reused_session() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let c = gw.connect("/mcp").await;
    let sid = c.session.clone().unwrap();
    let inits = up.stats().initializes;
    for (i, parent) in [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ]
    .iter()
    .enumerate()
    {
        let resp = gw
            .http
            .post(gw.url("/mcp"))
            .header("mcp-session-id", &sid)
            .header("traceparent", *parent)
            .header("tracestate", "vendor=abc")
            .json(&json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "counter-increment", "arguments": {}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let headers = up.last_headers();
        let got = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(got("traceparent").as_deref(), Some(*parent));
        assert_eq!(got("tracestate").as_deref(), Some("vendor=abc"));
        let body = up.last_body().unwrap();
        assert_eq!(body["params"]["_meta"]["traceparent"], *parent);
    }
    assert_eq!(
        up.stats().initializes,
        inits + 1,
        "tracing does not cost session reuse"
    );
    // An untraced call carries no stale trace header.
    let mut c = c;
    c.counter("counter-get", json!({})).await;
    assert!(up.last_headers().iter().all(|(k, _)| k != "traceparent"));
}

#[tokio::test]
async fn probes_fall_back_when_ping_is_missing_and_report_auth_failures_to_the_caller() {
    let up = counter("counter").await;
    let gw = TestGateway::start_with(settings(|s| {
        s.lifecycle.upstream_idle_validation = Duration::from_millis(50)
    }))
    .await;
    gw.register("counter", &up.url()).await;
    let mut c = gw.connect("/mcp").await;
    c.counter("counter-increment", json!({})).await;
    let inits = up.stats().initializes;

    // No ping: the probe falls back to tools/list and the session is kept.
    up.set_unsupported(&["ping"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(c.counter("counter-increment", json!({})).await, 2);
    assert_eq!(up.stats().pings, 0);
    assert_eq!(
        metric(&gw, "switchyard_upstream_probes_total{result=\"healthy\"}").await,
        1.0
    );

    // Nothing to probe with: skipped, still reused.
    up.set_unsupported(&["ping", "tools/list", "prompts/list", "resources/list"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(c.counter("counter-increment", json!({})).await, 3);
    assert_eq!(
        metric(&gw, "switchyard_upstream_probes_total{result=\"skipped\"}").await,
        1.0
    );
    assert_eq!(up.stats().initializes, inits, "no reconnect so far");

    // An auth failure is the caller's answer, not a reason to reconnect forever.
    up.set_unsupported(&[]);
    up.force_status(Some(401));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = c.call("counter-get", json!({})).await;
    assert_eq!(refused["error"]["code"], -32000, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("401"),
        "{refused}"
    );
    assert_eq!(
        metric(&gw, "switchyard_upstream_probes_total{result=\"refused\"}").await,
        1.0
    );
    assert_eq!(up.stats().initializes, inits);
    up.force_status(None);
    assert_eq!(
        c.counter("counter-get", json!({})).await,
        3,
        "the session survived the refusal"
    );
}
