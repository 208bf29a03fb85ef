//! A minimal Streamable HTTP MCP client for tests: raw enough to send bad
//! input, convenient enough for counter scenarios.

use serde_json::{json, Value};

pub struct McpClient {
    http: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
    /// Sent as `Authorization: Bearer …` on every request, when set.
    pub bearer: Option<String>,
    next_id: u64,
}

/// What came back for one POST.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl McpClient {
    /// A client that sends no credentials.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.into(),
            session: None,
            bearer: None,
            next_id: 1,
        }
    }

    /// A client that authenticates with `token`.
    pub fn with_token(url: impl Into<String>, token: &str) -> Self {
        let mut c = Self::new(url);
        c.bearer = Some(token.to_owned());
        c
    }

    /// `initialize` + `notifications/initialized` with `token`; panics on failure.
    pub async fn connect_as(url: impl Into<String>, token: &str) -> Self {
        Self::with_token(url, token).initialized().await
    }

    /// `initialize` + `notifications/initialized` without credentials (`--auth none`).
    pub async fn connect(url: impl Into<String>) -> Self {
        Self::new(url).initialized().await
    }

    async fn initialized(self) -> Self {
        let mut c = self;
        let a = c
            .request(
                "initialize",
                json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}),
            )
            .await;
        assert_eq!(a.status, 200, "initialize: {}", a.body);
        c.notify("notifications/initialized").await;
        c
    }

    pub async fn post_raw(
        &mut self,
        body: impl Into<reqwest::Body>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("POST");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        (status, headers, text)
    }

    pub async fn request(&mut self, method: &str, params: Value) -> Answer {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (status, headers, text) = self.post_raw(msg.to_string()).await;
        if method == "initialize" {
            if let Some(sid) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) {
                self.session = Some(sid.to_owned());
            }
        }
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status == 200 {
            assert_eq!(
                body["id"],
                json!(id),
                "response id must echo the request id: {body}"
            );
        }
        Answer { status, body }
    }

    pub async fn notify(&mut self, method: &str) -> u16 {
        let msg = json!({"jsonrpc": "2.0", "method": method});
        self.post_raw(msg.to_string()).await.0
    }

    /// `tools/call`; returns the JSON-RPC response body.
    pub async fn call(&mut self, tool: &str, args: Value) -> Value {
        let a = self
            .request("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        assert_eq!(a.status, 200, "tools/call {tool}: {}", a.body);
        a.body
    }

    /// Calls a counter tool and returns its value, checking both encodings agree.
    pub async fn counter(&mut self, tool: &str, args: Value) -> i64 {
        let body = self.call(tool, args).await;
        let result = &body["result"];
        let text: i64 = result["content"][0]["text"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("counter answer without a number: {body}"));
        assert_eq!(result["structuredContent"]["value"], json!(text), "{body}");
        text
    }

    pub async fn delete(&mut self) -> u16 {
        let mut req = self.http.delete(&self.url);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("DELETE").status().as_u16()
    }
}
