//! A client's `notifications/cancelled` ends its request at the gateway at
//! once, and reaches the upstream serving it under the id the upstream was
//! sent; the session goes on serving.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::conformance_upstream;

/// Polls `done` every 20 ms for up to 10 s.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The JSON-RPC message of an answer sent as JSON or as SSE events (the last one).
fn message(text: &str) -> Value {
    if let Ok(v) = serde_json::from_str(text) {
        return v;
    }
    text.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data:"))
        .find_map(|d| serde_json::from_str(d.trim()).ok())
        .unwrap_or_else(|| panic!("no JSON-RPC message in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_ends_at_once_and_the_upstream_hears_of_it() {
    let (upstream, gw, mut client) = conformance_upstream().await;

    // (the request's id as the client wrote it, the same id as its
    // cancellation names it, an id that only looks alike): a string may be
    // spelled with escapes, and a string is never an integer.
    let cases = [("41", "41", r#""41""#), (r#""\u0037""#, r#""7""#, "7")];
    for (n, (id, named, lookalike)) in cases.into_iter().enumerate() {
        let mut caller = gw.client("/mcp");
        caller.session = client.session.clone();
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"conf-test_slow","arguments":{{"ms":60000}}}}}}"#
        );
        let started = Instant::now();
        let pending = tokio::spawn(async move { caller.post_raw(call).await });
        eventually("the call to reach the upstream", || {
            upstream.requests_in_flight() == 1
        })
        .await;

        // An id that only looks alike cancels nothing.
        let (status, _, _) = client
            .post_raw(format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{lookalike}}}}}"#
            ))
            .await;
        assert_eq!(status, 202);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            upstream.requests_in_flight(),
            1,
            "a look-alike id cancelled the call"
        );
        assert!(!pending.is_finished(), "a look-alike id ended the call");

        let (status, _, _) = client
            .post_raw(format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{named},"reason":"changed my mind"}}}}"#
            ))
            .await;
        assert_eq!(status, 202);
        let answered = tokio::time::timeout(Duration::from_secs(10), pending)
            .await
            .expect("the cancelled call is answered at once, not after the upstream's 60 s")
            .expect("caller task");
        assert!(started.elapsed() < Duration::from_secs(30));
        let (status, _, text) = answered;
        assert_eq!(status, 200, "{text}");
        let answer = message(&text);
        let want_id: Value = serde_json::from_str(id).unwrap();
        assert_eq!(answer["id"], want_id, "{answer}");
        assert_eq!(answer["error"]["code"], json!(-32800), "{answer}");

        // The upstream was told, under its own id for the request.
        eventually("the upstream to hear of the cancellation", || {
            upstream.cancelled_requests() == n as u64 + 1
        })
        .await;
        assert_eq!(upstream.requests_in_flight(), 0);
    }

    // The session goes on, on the same upstream session.
    let sessions_before = upstream.live_sessions();
    let body = client.call("conf-test_simple_text", json!({})).await;
    assert!(body.get("error").is_none(), "{body}");
    assert_eq!(upstream.live_sessions(), sessions_before);
}
