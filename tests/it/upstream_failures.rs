//! When the upstream misbehaves, the caller gets a clear JSON-RPC error and
//! the next call recovers on a fresh upstream session.

use std::time::Duration;

use serde_json::json;
use switchyard::config::Settings;
use switchyard_fixtures::{CounterServer, Options};

use crate::support::{counter, TestGateway};

#[tokio::test]
async fn an_expired_upstream_session_is_reported_then_rebuilt() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let mut c = gw.connect("/mcp").await;
    assert_eq!(c.counter("counter-increment", json!({"by": 4})).await, 4);
    let inits = up.stats().initializes;
    up.expire_sessions();
    let err = c.call("counter-get", json!({})).await;
    assert_eq!(err["error"]["code"], -32001, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{err}"
    );
    assert_eq!(
        up.stats().initializes,
        inits,
        "a 404 must not be silently re-initialized"
    );
    assert_eq!(
        c.counter("counter-get", json!({})).await,
        0,
        "next call runs on a fresh session"
    );
    assert_eq!(up.stats().initializes, inits + 1);
}

#[tokio::test]
async fn tool_level_errors_keep_the_session() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let mut c = gw.connect("/mcp").await;
    c.counter("counter-increment", json!({})).await;
    assert_eq!(
        c.call("counter-fail", json!({})).await["result"]["isError"],
        true
    );
    assert_eq!(c.counter("counter-get", json!({})).await, 1);
    assert_eq!(up.stats().initializes, 2);
}

#[tokio::test]
async fn a_dead_upstream_gives_an_error_and_a_restarted_one_works_again() {
    let up = counter("counter").await;
    let addr = up.addr();
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let mut c = gw.connect("/mcp").await;
    c.counter("counter-increment", json!({})).await;
    drop(up);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = c.call("counter-get", json!({})).await;
    assert_eq!(err["error"]["code"], -32000, "{err}");
    // Same port, new process state: the gateway must build a new upstream session.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("rebind the port");
    let up = CounterServer::serve(listener, Options::default()).expect("restart");
    assert_eq!(c.counter("counter-get", json!({})).await, 0);
    assert_eq!(up.stats().initializes, 1);
}

#[tokio::test]
async fn a_hanging_upstream_times_out_with_an_error_not_a_hang() {
    let up = counter("counter").await;
    let mut settings = Settings::for_tests();
    settings.timeouts.upstream_request = Duration::from_millis(300);
    let gw = TestGateway::start_with(settings).await;
    gw.register("counter", &up.url()).await;
    let mut c = gw.connect("/mcp").await;
    c.counter("counter-increment", json!({})).await;
    up.set_hang(true);
    let err = c.call("counter-get", json!({})).await;
    assert_eq!(err["error"]["code"], -32003, "{err}");
    up.set_hang(false);
    assert_eq!(
        c.counter("counter-get", json!({})).await,
        1,
        "a timeout keeps the session"
    );
}

#[tokio::test]
async fn sse_answering_upstreams_work_the_same() {
    let up = CounterServer::start(Options {
        answer: switchyard_fixtures::AnswerStyle::Sse,
        ..Options::default()
    })
    .await
    .unwrap();
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let mut a = gw.connect("/mcp").await;
    let mut b = gw.connect("/mcp").await;
    a.counter("counter-increment", json!({"by": 2})).await;
    b.counter("counter-increment", json!({"by": 5})).await;
    assert_eq!(a.counter("counter-get", json!({})).await, 2);
    assert_eq!(b.counter("counter-get", json!({})).await, 5);
}

#[tokio::test]
async fn shutdown_closes_every_upstream_session() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    for _ in 0..5 {
        let mut c = gw.connect("/mcp").await;
        c.counter("counter-increment", json!({})).await;
    }
    assert_eq!(up.stats().live_sessions, 5);
    tokio::time::timeout(Duration::from_secs(15), gw.stop())
        .await
        .expect("bounded shutdown");
    assert_eq!(up.stats().live_sessions, 0);
}

/// A server that moved (or is mounted at `/mcp/` and answers `/mcp` with a
/// redirect) keeps working: every POST, the initialize and each call, is
/// redirected with 307, which keeps method and body, and the session is
/// still reused across calls.
#[tokio::test]
async fn an_upstream_that_redirects_is_followed() {
    let up = counter("counter").await;
    let target = up.url();
    let app = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, target)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let moved = format!("http://{}/old-mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let gw = TestGateway::start().await;
    gw.register("counter", &moved).await;
    let mut c = gw.connect("/mcp").await;
    assert_eq!(c.counter("counter-increment", json!({"by": 2})).await, 2);
    assert_eq!(c.counter("counter-increment", json!({"by": 3})).await, 5);
    let inits = up.stats().initializes;
    assert_eq!(c.counter("counter-get", json!({})).await, 5);
    assert_eq!(
        up.stats().initializes,
        inits,
        "calls through the redirect reuse the upstream session"
    );
}
