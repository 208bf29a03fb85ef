//! An upstream may close a request's SSE stream before the response, on
//! purpose, and deliver the rest to a client that resumes with
//! `Last-Event-ID` (spec 2025-11-25, transports, SEP-1699). The gateway
//! resumes for its client, which sees one ordinary answer.

use serde_json::json;

use crate::support::conformance_upstream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_closed_before_its_answer_is_resumed_upstream() {
    let (upstream, _gw, mut client) = conformance_upstream().await;

    let mut sessions = Vec::new();
    for _ in 0..2 {
        let body = client.call("conf-test_reconnection", json!({})).await;
        assert!(body.get("error").is_none(), "{body}");
        assert_eq!(
            body["result"]["content"][0]["text"], "Reconnection test completed successfully",
            "{body}"
        );
        sessions.push(upstream.live_sessions());
    }
    // Resuming is not a failure: the upstream session was kept.
    assert_eq!(sessions, vec![1, 1]);
    let body = client.call("conf-test_simple_text", json!({})).await;
    assert!(body.get("error").is_none(), "{body}");
}
