//! Messages upstreams send on their own — on their GET streams, outside any
//! request — reach the right client's GET stream, translated; list changes
//! refresh the catalog and are announced by the gateway itself.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_fixtures::conformance::ConformanceServer;

use crate::support::{McpClient, TestGateway};

/// Reads SSE `data:` messages from a GET stream until `want` matches one.
async fn wait_for(stream: &mut reqwest::Response, want: impl Fn(&Value) -> bool) -> Value {
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("message within 10 s")
            .expect("stream readable")
            .expect("stream still open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let data: String = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            if let Ok(v) = serde_json::from_str::<Value>(&data) {
                if want(&v) {
                    return v;
                }
            }
        }
    }
}

async fn open_stream(gw: &TestGateway, sid: &str) -> reqwest::Response {
    let resp = gw
        .http
        .get(gw.url("/mcp"))
        .header("mcp-session-id", sid)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_updates_reach_only_the_subscribed_client_with_gateway_uris() {
    let upstream = ConformanceServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let gw = TestGateway::start().await;
    gw.register("conf", &upstream.url()).await;
    let mut a = gw.connect("/mcp").await;
    let mut b = gw.connect("/mcp").await;
    let uri = "switchyard://conf/test://watched-resource";
    let listed = a.request("resources/list", json!({})).await;
    assert!(
        listed.body["result"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["uri"] == uri),
        "{}",
        listed.body
    );
    let sub = a.request("resources/subscribe", json!({"uri": uri})).await;
    assert_eq!(sub.status, 200, "{}", sub.body);
    assert!(sub.body.get("error").is_none(), "{}", sub.body);
    // B uses the same gateway but did not subscribe.
    b.request(
        "resources/read",
        json!({"uri": "switchyard://conf/test://static-text"}),
    )
    .await;

    let mut a_stream = open_stream(&gw, a.session.as_deref().unwrap()).await;
    let second = gw
        .http
        .get(gw.url("/mcp"))
        .header("mcp-session-id", a.session.as_deref().unwrap())
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 409, "one GET stream per session");
    let mut b_stream = open_stream(&gw, b.session.as_deref().unwrap()).await;
    // Give the upstream GET streams a moment to open before the update.
    tokio::time::sleep(Duration::from_millis(300)).await;
    upstream.touch_watched_resource();
    let note = wait_for(&mut a_stream, |v| {
        v["method"] == "notifications/resources/updated"
    })
    .await;
    assert_eq!(
        note["params"]["uri"], uri,
        "the client sees the gateway's URI"
    );
    let nothing = tokio::time::timeout(Duration::from_millis(500), b_stream.chunk()).await;
    match nothing {
        Err(_) => {}
        Ok(Ok(Some(chunk))) => {
            let text = String::from_utf8_lossy(&chunk);
            assert!(
                !text.contains("resources/updated"),
                "an unsubscribed session got the update: {text}"
            );
        }
        Ok(other) => panic!("B's stream ended: {other:?}"),
    }

    let read = a.request("resources/read", json!({"uri": uri})).await;
    assert_eq!(
        read.body["result"]["contents"][0]["uri"], uri,
        "{}",
        read.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_changes_refresh_the_catalog_and_are_announced_to_clients() {
    let upstream = ConformanceServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let gw = TestGateway::start().await;
    gw.register("conf", &upstream.url()).await;
    let mut a = gw.connect("/mcp").await;
    a.request(
        "tools/call",
        json!({"name": "conf-test_simple_text", "arguments": {}}),
    )
    .await;
    let mut stream = open_stream(&gw, a.session.as_deref().unwrap()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(upstream.notify_all("notifications/tools/list_changed") >= 1);
    let note = wait_for(&mut stream, |v| {
        v["method"] == "notifications/tools/list_changed"
    })
    .await;
    assert!(note.get("id").is_none());
    let gws: Value = gw.get_json("/gateways").await;
    assert_eq!(gws[0]["name"], "conf");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_level_opens_no_sessions_and_reaches_sessions_opened_later() {
    let upstream = ConformanceServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let gw = TestGateway::start().await;
    gw.register("conf", &upstream.url()).await;
    let before = upstream.live_sessions();
    let mut a = gw.connect("/mcp").await;
    set_level(&mut a, "debug").await;
    assert_eq!(
        upstream.live_sessions(),
        before,
        "a log level alone opens no upstream session"
    );
    // The first call opens the session; the level goes first, so the tool's
    // debug lines come through on the call's stream.
    let text = call_logging_tool(&mut a).await;
    assert!(
        text.contains("notifications/message"),
        "log lines relayed: {text}"
    );
    assert_eq!(upstream.live_sessions(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_set_before_the_upstream_session_exists_is_applied_to_it() {
    let upstream = ConformanceServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let gw = TestGateway::start().await;
    gw.register("conf", &upstream.url()).await;
    let mut a = gw.connect("/mcp").await;
    // The tool logs at info; with the level at error the upstream sends nothing.
    set_level(&mut a, "error").await;
    let text = call_logging_tool(&mut a).await;
    assert!(
        !text.contains("notifications/message"),
        "the level never reached the new upstream session: {text}"
    );
}

/// A level set while the client already has upstream sessions reaches them,
/// not only the sessions it opens later (it is sent to them at once, and
/// checked again before each call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_changed_later_reaches_the_upstream_sessions_already_open() {
    let (_upstream, _gw, mut a) = crate::support::conformance_upstream().await;
    set_level(&mut a, "debug").await;
    let text = call_logging_tool(&mut a).await;
    assert!(
        text.contains("notifications/message"),
        "at debug the tool's log lines come through: {text}"
    );
    // The upstream session is open now; the new level must reach it.
    set_level(&mut a, "error").await;
    let text = call_logging_tool(&mut a).await;
    assert!(
        !text.contains("notifications/message"),
        "the open upstream session still logs at debug: {text}"
    );
}

/// `notifications/roots/list_changed` from a client reaches every upstream
/// session that client has, on each gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roots_list_changed_reaches_every_upstream_session_of_the_client() {
    let (one, two) = (
        crate::support::counter("one").await,
        crate::support::counter("two").await,
    );
    let gw = TestGateway::start().await;
    gw.register("one", &one.url()).await;
    gw.register("two", &two.url()).await;
    let mut client = gw.connect("/mcp").await;
    for tool in ["one-echo", "two-echo"] {
        client.call(tool, json!({"text": "hi"})).await;
    }
    assert_eq!(client.notify("notifications/roots/list_changed").await, 202);
    for (name, upstream) in [("one", &one), ("two", &two)] {
        let body = upstream.last_body().expect("a POST reached the upstream");
        assert_eq!(
            body["method"], "notifications/roots/list_changed",
            "{name} got {body}"
        );
        assert!(body.get("id").is_none(), "a notification: {body}");
    }
}

async fn set_level(client: &mut McpClient, level: &str) {
    let set = client
        .request("logging/setLevel", json!({"level": level}))
        .await;
    assert_eq!(set.body["result"], json!({}), "{}", set.body);
}

/// Calls the conformance tool that logs at info; the text of the answer
/// (an event stream when log lines come first).
async fn call_logging_tool(client: &mut McpClient) -> String {
    let (status, _, text) = client
        .post_raw(json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "conf-test_tool_with_logging", "arguments": {}}}).to_string())
        .await;
    assert_eq!(status, 200);
    text
}
