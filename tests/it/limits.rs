//! Input limits: JSON nesting depth (400 / -32600), requests in flight per
//! session and per principal (429 with Retry-After), timeouts as JSON-RPC
//! errors. Every refusal leaves the session, its upstream session and the
//! catalog as they were.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard::config::Settings;
use switchyard_fixtures::CounterServer;

use crate::support::gateway::authorized_client;
use crate::support::{counter, McpClient, TestGateway};

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// `ping` whose params hold `inner` arrays: the message nests `inner + 2` deep.
fn deep_ping(inner: usize) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":{}}}}}"#,
        nested(inner)
    )
}

async fn gateway_count(gw: &TestGateway) -> usize {
    let all: Value = gw.get_json("/gateways").await;
    all.as_array().unwrap().len()
}

#[tokio::test]
async fn json_nested_too_deep_is_refused_before_parsing_and_changes_nothing() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let mut c = gw.connect("/mcp").await;
    assert_eq!(c.counter("counter-increment", json!({"by": 3})).await, 3);
    let inits = up.stats().initializes;

    // 64 levels (the default limit) pass, 65 do not.
    let (status, _, body) = c.post_raw(deep_ping(62)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = c.post_raw(deep_ping(63)).await;
    assert_eq!(status, 400, "{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["code"], -32600, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("64"),
        "{err}"
    );
    // Far deeper than any parser's recursion limit: still a clean 400.
    let (status, _, _) = c.post_raw(deep_ping(100_000)).await;
    assert_eq!(status, 400);
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"counter-increment","arguments":{{"by":1,"x":{}}}}}}}"#,
        nested(200)
    );
    let (status, _, _) = c.post_raw(call).await;
    assert_eq!(status, 400);

    let rpc = gw
        .http
        .post(gw.url("/rpc"))
        .header("content-type", "application/json")
        .body(deep_ping(500))
        .send()
        .await
        .unwrap();
    assert_eq!(rpc.status(), 400);
    assert_eq!(rpc.json::<Value>().await.unwrap()["error"]["code"], -32600);

    let rest = gw
        .http
        .post(gw.url("/gateways"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"name":"deep","url":"{}","tags":{}}}"#,
            up.url(),
            nested(100)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 400);
    assert!(rest.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .contains("nested"));

    assert_eq!(gateway_count(&gw).await, 1, "catalog untouched");
    assert_eq!(
        c.counter("counter-increment", json!({"by": 1})).await,
        4,
        "session intact"
    );
    assert_eq!(up.stats().initializes, inits, "same upstream session");
    assert_eq!(
        up.stats().tool_calls,
        2,
        "no refused call reached the upstream"
    );
}

/// Waits until the fixture has received `n` more requests than `before`.
async fn until_requests(up: &CounterServer, before: u64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.stats().requests < before + n {
        assert!(
            Instant::now() < deadline,
            "requests never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn spawn_call(mut c: McpClient, tool: &'static str) -> tokio::task::JoinHandle<(McpClient, Value)> {
    tokio::spawn(async move {
        let body = c.call(tool, json!({})).await;
        (c, body)
    })
}

fn limits(edit: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = Settings::for_tests();
    s.timeouts.upstream_request = Duration::from_millis(1500);
    s.timeouts.upstream_connect = Duration::from_millis(1500);
    edit(&mut s);
    s
}

#[tokio::test]
async fn a_session_over_its_in_flight_limit_gets_429_and_carries_on() {
    let up = counter("counter").await;
    let gw = TestGateway::start_with(limits(|s| s.limits.max_inflight_per_session = 2)).await;
    gw.register("counter", &up.url()).await;
    let mut a = gw.connect("/mcp").await;
    assert_eq!(a.counter("counter-increment", json!({"by": 7})).await, 7);
    let inits = up.stats().initializes;

    up.set_hang(true);
    let before = up.stats().requests;
    let mut twin = gw.client("/mcp");
    twin.session = a.session.clone();
    let mut twin2 = gw.client("/mcp");
    twin2.session = a.session.clone();
    let hung = [
        spawn_call(twin, "counter-get"),
        spawn_call(twin2, "counter-get"),
    ];
    until_requests(&up, before, 2).await;

    let (status, headers, body) = a
        .post_raw(json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}).to_string())
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "1");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["code"], -32004, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session"),
        "{err}"
    );
    // Another session of the same principal is not affected.
    let mut b = gw.connect("/mcp").await;
    assert_eq!(b.request("ping", json!({})).await.status, 200);

    // The hung calls end in a JSON-RPC timeout error, not a hang.
    for h in hung {
        let (_, body) = h.await.unwrap();
        assert_eq!(body["error"]["code"], -32003, "{body}");
    }
    up.set_hang(false);
    assert_eq!(
        a.counter("counter-get", json!({})).await,
        7,
        "session and counter intact"
    );
    assert_eq!(
        up.stats().initializes,
        inits,
        "a timeout keeps the upstream session"
    );
    assert_eq!(gateway_count(&gw).await, 1);
}

#[tokio::test]
async fn a_principal_over_its_in_flight_limit_gets_429_others_do_not() {
    let up = counter("counter").await;
    let gw = TestGateway::start_with(limits(|s| s.limits.max_inflight_per_principal = 2)).await;
    gw.register("counter", &up.url()).await;
    let busy = gw.mint("busy", false).await;
    let calm = gw.mint("calm", false).await;
    let mut a = McpClient::connect_as(gw.url("/mcp"), &busy).await;
    let mut b = McpClient::connect_as(gw.url("/mcp"), &busy).await;
    let mut c = McpClient::connect_as(gw.url("/mcp"), &busy).await;
    // Upstream sessions exist before the upstream hangs: the hung requests are tool calls.
    a.counter("counter-increment", json!({})).await;
    b.counter("counter-increment", json!({})).await;

    up.set_hang(true);
    let before = up.stats().requests;
    let hung = [spawn_call(a, "counter-get"), spawn_call(b, "counter-get")];
    until_requests(&up, before, 2).await;

    // A third session of the same principal, a new session, /rpc: all 429.
    let (status, headers, body) = c
        .post_raw(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string())
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(body.contains("principal"), "{body}");
    let mut fresh = McpClient::with_token(gw.url("/mcp"), &busy);
    let init = fresh
        .request("initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}))
        .await;
    assert_eq!(init.status, 429);
    let sessions_before = gw.app.sessions.len();
    let rpc = authorized_client(&busy)
        .post(gw.url("/rpc"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rpc.status(), 429);
    assert!(rpc.headers().contains_key("retry-after"));
    // Someone else is not slowed down by it.
    let mut other = McpClient::connect_as(gw.url("/mcp"), &calm).await;
    assert_eq!(other.request("ping", json!({})).await.status, 200);
    assert_eq!(
        gw.app.sessions.len(),
        sessions_before + 1,
        "only calm's session was added"
    );

    for h in hung {
        let (_, body) = h.await.unwrap();
        assert_eq!(body["error"]["code"], -32003, "{body}");
    }
    up.set_hang(false);
    assert_eq!(
        c.counter("counter-increment", json!({})).await,
        1,
        "the refused session works"
    );
    assert_eq!(gateway_count(&gw).await, 1);
}

/// The REST API takes the same `--max-body-bytes` as the MCP endpoints, in
/// both directions: below it a body is read, above it 413 and nothing stored.
#[tokio::test]
async fn rest_bodies_follow_the_configured_limit() {
    let gw = TestGateway::start_with(limits(|s| s.limits.max_body_bytes = 8 * 1024)).await;
    let body_of = |len: usize| json!({"name": "s", "description": "x".repeat(len)}).to_string();
    let post = |body: String| {
        gw.http
            .post(gw.url("/servers"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let big = post(body_of(16 * 1024)).await.unwrap();
    assert_eq!(big.status(), 413);
    let fits = post(body_of(4 * 1024)).await.unwrap();
    assert_eq!(fits.status(), 201);
    let servers = gw.get_json("/servers").await;
    assert_eq!(servers.as_array().unwrap().len(), 1, "{servers}");
}
