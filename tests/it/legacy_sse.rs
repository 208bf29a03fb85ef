//! The 2024-11-05 HTTP+SSE transport downstream: `GET /sse`, `POST
//! /message?session_id=…`, answers on the stream, the session tied to the
//! stream's life.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{counter, TestGateway};

/// A legacy client: the event stream plus the URL it announced.
struct LegacyClient {
    stream: reqwest::Response,
    buf: String,
    post_url: String,
    http: reqwest::Client,
    next_id: u64,
}

impl LegacyClient {
    async fn open(gw: &TestGateway, path: &str) -> LegacyClient {
        Self::open_with(gw, path, gw.http.clone()).await
    }

    /// Opens the stream with `http`'s credentials (the harness's admin token by default).
    async fn open_with(gw: &TestGateway, path: &str, http: reqwest::Client) -> LegacyClient {
        let stream = http
            .get(gw.url(path))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        let mut c = LegacyClient {
            stream,
            buf: String::new(),
            post_url: String::new(),
            http,
            next_id: 1,
        };
        let (event, data) = c.next_event().await;
        assert_eq!(event.as_deref(), Some("endpoint"));
        assert!(data.contains("session_id="), "{data}");
        c.post_url = gw.url(&data);
        c
    }

    async fn next_event(&mut self) -> (Option<String>, String) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let event = raw
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .map(str::to_owned);
                let data: String = raw
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if event.is_none() && data.is_empty() {
                    continue; // a comment (keep-alive)
                }
                return (event, data);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("stream open");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    async fn post(&self, msg: Value) -> u16 {
        self.http
            .post(&self.post_url)
            .json(&msg)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        assert_eq!(
            self.post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
                .await,
            202
        );
        loop {
            let (_, data) = self.next_event().await;
            let msg: Value = serde_json::from_str(&data).unwrap();
            if msg["id"] == json!(id) {
                return msg;
            }
        }
    }

    async fn initialize(&mut self) -> Value {
        let init = self
            .request("initialize", json!({"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "legacy", "version": "1"}}))
            .await;
        assert_eq!(
            self.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                .await,
            202
        );
        init
    }

    async fn count(&mut self, tool: &str, args: Value) -> i64 {
        let answer = self
            .request("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        answer["result"]["structuredContent"]["value"]
            .as_i64()
            .unwrap_or_else(|| panic!("{answer}"))
    }
}

#[tokio::test]
async fn legacy_sse_clients_get_isolated_sessions_that_end_with_their_stream() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let mut a = LegacyClient::open(&gw, "/sse").await;
    let mut b = LegacyClient::open(&gw, "/sse").await;
    let init = a.initialize().await;
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05", "{init}");
    b.initialize().await;
    for _ in 0..3 {
        a.count("counter-increment", json!({})).await;
    }
    b.count("counter-increment", json!({"by": 7})).await;
    assert_eq!(a.count("counter-get", json!({})).await, 3);
    assert_eq!(b.count("counter-get", json!({})).await, 7);
    let list = a.request("tools/list", json!({})).await;
    assert!(list["result"]["tools"].as_array().unwrap().len() >= 5);
    assert_eq!(up.stats().live_sessions, 2);

    // Dropping A's stream ends A's session and its upstream session only.
    let a_url = a.post_url.clone();
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.stats().live_sessions > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.stats().live_sessions, 1);
    let late = gw
        .http
        .post(&a_url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 404, "a dropped stream's session is gone");
    assert_eq!(b.count("counter-get", json!({})).await, 7);

    // Without session_id, or with a made-up one.
    let bare = gw
        .http
        .post(gw.url("/message"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 400);
    let body: Value = bare.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session_id"),
        "names the query parameter, not /mcp's header: {body}"
    );
    for made_up in ["zzz", "0123456789abcdef0123456789abcdef"] {
        let resp = gw
            .http
            .post(gw.url(&format!("/message?session_id={made_up}")))
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{made_up}");
    }
}
