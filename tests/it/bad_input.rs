//! Bad input gets a clear error and leaves the session and its upstream state intact.

use serde_json::{json, Value};

use crate::support::{counter, TestGateway};

#[tokio::test]
async fn malformed_invalid_and_oversized_bodies_leave_the_session_usable() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let mut c = gw.connect("/mcp").await;
    assert_eq!(c.counter("counter-increment", json!({"by": 5})).await, 5);

    let (status, _, body) = c
        .post_raw("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": ")
        .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!(-32700)),
        "{body}"
    );

    for invalid in [
        r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","method":42}"#,
        r#"[]"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
        r#"17"#,
    ] {
        let (status, _, body) = c.post_raw(invalid).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status, 400, "{invalid}: {body}");
        assert_eq!(body["error"]["code"], -32600, "{invalid}: {body}");
    }
    // JSON-RPC answers with a null id only when the id cannot be read.
    for (invalid, id) in [
        (r#"{"jsonrpc":"2.0","id":14,"method":5}"#, json!(14)),
        (r#"{"jsonrpc":"2.0","id":"m","method":{}}"#, json!("m")),
        (r#"{"jsonrpc":"2.0","id":15}"#, json!(15)),
    ] {
        let (status, _, body) = c.post_raw(invalid).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status, 400, "{invalid}: {body}");
        assert_eq!(
            (&body["error"]["code"], &body["id"]),
            (&json!(-32600), &id),
            "{invalid}: {body}"
        );
    }

    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"counter-echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(5 * 1024 * 1024)
    );
    let (status, _, _) = c.post_raw(huge).await;
    assert_eq!(status, 413);

    // Streamed (chunked, no Content-Length) oversized body: still 413, not a hang.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..80).map(|_| Ok(vec![b' '; 64 * 1024])).collect();
    let (status, _, _) = c
        .post_raw(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .await;
    assert_eq!(status, 413);

    assert_eq!(
        c.counter("counter-increment", json!({"by": 1})).await,
        6,
        "session and upstream state intact"
    );
    assert_eq!(
        up.stats().initializes,
        2,
        "registration + this session; bad input built nothing"
    );
}

#[tokio::test]
async fn bad_params_get_invalid_params_without_touching_the_upstream() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let mut c = gw.connect("/mcp").await;
    for params in [
        json!([1, 2]),
        json!({"name": 7}),
        json!({}),
        // MCP: a tool's arguments are an object.
        json!({"name": "counter-increment", "arguments": [1]}),
        json!({"name": "counter-increment", "arguments": "by=1"}),
        json!({"name": "counter-increment", "arguments": null}),
        json!({"name": "counter-increment", "arguments": 5, "_meta": {"a": 1}}),
    ] {
        let a = c.request("tools/call", params.clone()).await;
        assert_eq!(a.body["error"]["code"], -32602, "{params}: {}", a.body);
    }
    assert_eq!(up.stats().tool_calls, 0);
    for params in [json!({"level": "bogus"}), json!({"level": 3}), json!({})] {
        let a = c.request("logging/setLevel", params.clone()).await;
        assert_eq!(a.body["error"]["code"], -32602, "{params}: {}", a.body);
    }
    // What reaches every upstream session opened for the client is checked
    // when it arrives.
    for params in [
        json!({"protocolVersion": 5}),
        json!({"protocolVersion": "2025-11-25", "capabilities": "x", "clientInfo": {"name": "t", "version": "1"}}),
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": 5}),
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}}),
    ] {
        let mut fresh = gw.client("/mcp");
        let a = fresh.request("initialize", params.clone()).await;
        assert_eq!(a.body["error"]["code"], -32602, "{params}: {}", a.body);
        assert!(fresh.session.is_none(), "{params}: no session opened");
    }
    let init = c
        .request("initialize", json!({"protocolVersion": "2025-11-25"}))
        .await;
    assert_eq!(
        init.status, 200,
        "a second initialize opens a new session rather than failing"
    );
}

/// Random bodies and headers against a live session: always a 2xx/4xx with
/// a parseable body, never a 5xx, and the session and its upstream state
/// survive every one. (Property testing stands in for cargo-fuzz, which
/// needs a nightly toolchain.)
#[test]
fn random_requests_never_break_the_gateway() {
    use proptest::prelude::*;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (up, gw, sid) = rt.block_on(async {
        let up = counter("counter").await;
        let gw = TestGateway::start().await;
        gw.register("counter", &up.url()).await;
        let mut c = gw.connect("/mcp").await;
        c.counter("counter-increment", json!({"by": 3})).await;
        (up, gw, c.session.clone().unwrap())
    });
    // The harness's client carries its token: the bodies must reach the parser.
    let http = gw.http.clone();
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        "[ -~]{0,120}".prop_map(String::into_bytes),
        (
            prop::sample::select(vec![
                "ping",
                "tools/list",
                "tools/call",
                "prompts/get",
                "resources/read",
                "initialize",
                "x/y",
                ""
            ]),
            prop::sample::select(vec![
                json!(1),
                json!("s"),
                json!(null),
                json!(1.5),
                json!([]),
                json!({})
            ]),
            prop::sample::select(vec![
                json!({}),
                json!([]),
                json!(7),
                json!({"name": "counter-get"}),
                json!({"uri": "switchyard://nope/x"}),
                json!({"name": {"a": 1}})
            ]),
        )
            .prop_map(|(m, id, p)| {
                json!({"jsonrpc": "2.0", "id": id, "method": m, "params": p})
                    .to_string()
                    .into_bytes()
            }),
    ];
    let header = prop::sample::select(vec![
        None,
        Some("application/json"),
        Some("text/plain"),
        Some("application/json; charset=utf-8"),
    ]);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    });
    runner
        .run(&(body, header), |(body, content_type)| {
            let (status, text) = rt.block_on(async {
                let mut req = http
                    .post(gw.url("/mcp"))
                    .header("mcp-session-id", &sid)
                    .body(body);
                if let Some(ct) = content_type {
                    req = req.header("content-type", ct);
                }
                let resp = req.send().await.unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            });
            prop_assert!(status < 500, "{status}: {text}");
            if !text.is_empty() && status != 202 {
                prop_assert!(
                    serde_json::from_str::<Value>(&text).is_ok()
                        || text.starts_with("event:")
                        || text.contains("data:"),
                    "unparseable body: {text}"
                );
            }
            Ok(())
        })
        .unwrap();
    rt.block_on(async {
        let mut c = gw.client("/mcp");
        c.session = Some(sid);
        assert_eq!(
            c.counter("counter-get", json!({})).await,
            3,
            "the session and its upstream state survived"
        );
        assert_eq!(up.stats().live_sessions, 1);
    });
}
