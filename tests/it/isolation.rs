//! The heart of the gateway: one upstream session per (downstream session,
//! gateway), reused inside the session, never shared across sessions.

use serde_json::json;
use switchyard::config::Settings;

use crate::support::{counter, McpClient, TestGateway};

#[tokio::test]
async fn two_sessions_of_one_user_get_separate_upstream_sessions() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let before = up.stats().initializes; // registration used (and closed) its own session
    let mut a = gw.connect("/mcp").await;
    let mut b = gw.connect("/mcp").await;
    // Interleaved: A,B,A,B,A,B,A,A.
    for who in ["a", "b", "a", "b", "a", "b", "a", "a"] {
        let c = if who == "a" { &mut a } else { &mut b };
        c.counter("counter-increment", json!({"by": 1})).await;
    }
    assert_eq!(a.counter("counter-get", json!({})).await, 5);
    assert_eq!(b.counter("counter-get", json!({})).await, 3);
    assert_eq!(
        up.stats().initializes - before,
        2,
        "exactly one upstream session per downstream session"
    );
    assert_eq!(up.stats().live_sessions, 2);
}

#[tokio::test]
async fn ten_calls_in_one_session_initialize_upstream_once() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let before = up.stats().initializes; // registration used (and closed) its own session
    let mut a = gw.connect("/mcp").await;
    for i in 1..=10 {
        assert_eq!(a.counter("counter-increment", json!({})).await, i);
    }
    assert_eq!(up.stats().initializes - before, 1);
    assert_eq!(up.stats().tool_calls, 10);
}

#[tokio::test]
async fn concurrent_first_calls_collapse_into_one_upstream_session() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let before = up.stats().initializes;
    let a = gw.connect("/mcp").await;
    let sid = a.session.clone();
    let mut calls = Vec::new();
    for _ in 0..20 {
        let mut c = gw.client("/mcp");
        c.session = sid.clone();
        calls.push(tokio::spawn(async move {
            c.counter("counter-increment", json!({})).await
        }));
    }
    let mut values = Vec::new();
    for c in calls {
        values.push(c.await.expect("call task"));
    }
    values.sort_unstable();
    assert_eq!(
        values,
        (1..=20).collect::<Vec<i64>>(),
        "all 20 calls hit one counter"
    );
    assert_eq!(up.stats().initializes - before, 1);
}

#[tokio::test]
async fn one_session_calling_two_gateways_gets_two_upstream_sessions() {
    let up1 = counter("one").await;
    let up2 = counter("two").await;
    let gw = TestGateway::start().await;
    gw.register("one", &up1.url()).await;
    gw.register("two", &up2.url()).await;
    let (b1, b2) = (up1.stats().initializes, up2.stats().initializes);
    let mut a = gw.connect("/mcp").await;
    for _ in 0..4 {
        a.counter("one-increment", json!({"by": 1})).await;
    }
    a.counter("two-increment", json!({"by": 10})).await;
    assert_eq!(a.counter("one-get", json!({})).await, 4);
    assert_eq!(a.counter("two-get", json!({})).await, 10);
    assert_eq!(up1.stats().initializes - b1, 1);
    assert_eq!(up2.stats().initializes - b2, 1);
}

#[tokio::test]
async fn deleting_a_session_closes_its_upstream_session_for_good() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let deletes_before = up.stats().deletes;
    let mut a = gw.connect("/mcp").await;
    assert_eq!(a.counter("counter-increment", json!({"by": 7})).await, 7);
    assert_eq!(up.stats().live_sessions, 1);
    assert_eq!(a.delete().await, 200);
    assert_eq!(
        up.stats().deletes - deletes_before,
        1,
        "upstream saw DELETE"
    );
    assert_eq!(up.stats().live_sessions, 0);
    // The old id is dead: every method, and DELETE again, get 404.
    let old = a
        .request(
            "tools/call",
            json!({"name": "counter-get", "arguments": {}}),
        )
        .await;
    assert_eq!(old.status, 404);
    assert_eq!(a.request("ping", json!({})).await.status, 404);
    assert_eq!(a.delete().await, 404);
    assert_eq!(
        up.stats().live_sessions,
        0,
        "a request on a dead id must not revive an upstream session"
    );
    assert!(gw.app.registry.snapshot().is_empty());
    let mut fresh = gw.connect("/mcp").await;
    assert_eq!(fresh.counter("counter-get", json!({})).await, 0);
}

#[tokio::test]
async fn deleting_a_gateway_closes_its_sessions_everywhere_and_only_its() {
    let up1 = counter("one").await;
    let up2 = counter("two").await;
    let gw = TestGateway::start().await;
    let g1 = gw.register("one", &up1.url()).await;
    gw.register("two", &up2.url()).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = gw.connect("/mcp").await;
        c.counter("one-increment", json!({})).await;
        c.counter("two-increment", json!({"by": 2})).await;
        clients.push(c);
    }
    assert_eq!(up1.stats().live_sessions, 3);
    assert_eq!(up2.stats().live_sessions, 3);
    let d2 = up2.stats().deletes;
    let resp = gw
        .http
        .delete(gw.url(&format!("/gateways/{}", g1["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        up1.stats().live_sessions,
        0,
        "every upstream session of the deleted gateway closed"
    );
    assert_eq!(
        up2.stats().live_sessions,
        3,
        "the other gateway's sessions stay"
    );
    assert_eq!(up2.stats().deletes, d2);
    for c in &mut clients {
        assert_eq!(
            c.counter("two-increment", json!({"by": 2})).await,
            4,
            "state on the other gateway survives"
        );
        let gone = c
            .request("tools/call", json!({"name": "one-get", "arguments": {}}))
            .await;
        assert_eq!(gone.body["error"]["code"], -32602, "{}", gone.body);
    }
    assert!(gw
        .app
        .registry
        .snapshot()
        .iter()
        .all(|e| e.gateway_id != g1["id"]));
}

#[tokio::test]
async fn fifty_sessions_with_twenty_interleaved_increments_each_stay_separate() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let before = up.stats().initializes;
    let mut tasks = Vec::new();
    for n in 0..50i64 {
        let url = gw.url("/mcp");
        let token = gw.token.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = McpClient::connect_as(url, &token).await;
            for _ in 0..20 {
                c.counter("counter-increment", json!({"by": n + 1})).await;
                tokio::task::yield_now().await;
            }
            let total = c.counter("counter-get", json!({})).await;
            (n, total)
        }));
    }
    for t in tasks {
        let (n, total) = t.await.expect("session task");
        assert_eq!(
            total,
            20 * (n + 1),
            "session {n} read another session's counter"
        );
    }
    assert_eq!(up.stats().initializes - before, 50);
}

/// Client connections are spread over the gateway's I/O threads
/// (`server.rs`), and a client may send one session's requests over any of
/// its connections: wherever a call lands, the session has one upstream
/// session, and sees its own counter.
#[tokio::test]
async fn one_session_over_connections_served_by_different_io_threads_keeps_one_upstream_session() {
    let up = counter("counter").await;
    let mut settings = Settings::for_tests();
    settings.io_threads = 3;
    let gw = TestGateway::start_with(settings).await;
    gw.register("counter", &up.url()).await;
    let first = McpClient::connect_as(gw.url("/mcp"), &gw.token).await;
    let before = up.stats().initializes;
    // Each client has its own connection; three new connections in a row
    // land on the three threads, one each.
    let mut clients: Vec<McpClient> = (0..3)
        .map(|_| {
            let mut c = McpClient::with_token(gw.url("/mcp"), &gw.token);
            c.session = first.session.clone();
            c
        })
        .collect();
    for _ in 0..4 {
        for c in &mut clients {
            c.counter("counter-increment", json!({"by": 1})).await;
        }
    }
    assert_eq!(clients[1].counter("counter-get", json!({})).await, 12);
    assert_eq!(up.stats().initializes - before, 1);
    let mut other = McpClient::connect_as(gw.url("/mcp"), &gw.token).await;
    assert_eq!(other.counter("counter-get", json!({})).await, 0);
}
