//! The MCP Streamable HTTP client side of the load tool: one POST per
//! message, answers read as JSON or as an SSE stream, DELETE to end a session.
//!
//! Owns only wire concerns; what to call when, and what to count, is
//! `lib.rs`'s business. Nothing here panics on what a server sends.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
/// A longer body is not an answer to `echo`; stop reading rather than buffer it all.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Why one exchange did not produce a successful result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("transport: {reason}")]
    Transport { reason: String },
    #[error("timed out")]
    Timeout,
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("JSON-RPC error {code}: {message}")]
    Rpc { code: i64, message: String },
    #[error("tool error (isError: true): {text}")]
    Tool { text: String },
    #[error("protocol: {reason}")]
    Protocol { reason: String },
}

/// One downstream session as the server named it.
#[derive(Clone, Debug)]
pub struct Session {
    /// `None` when the server runs without sessions (no header on initialize).
    pub id: Option<HeaderValue>,
    pub protocol_version: HeaderValue,
}

/// A shared HTTP client plus the endpoint; cheap to share across workers.
pub struct McpHttp {
    http: reqwest::Client,
    url: reqwest::Url,
    protocol_version: String,
}

impl McpHttp {
    /// `extra` headers (e.g. `Authorization`) go on every request.
    pub fn new(
        url: &str,
        extra: &[(String, String)],
        protocol_version: &str,
        timeout: Duration,
        pool: usize,
    ) -> Result<Self, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("--url {url}: {e}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in extra {
            let n = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|e| format!("header name {name:?}: {e}"))?;
            let v = HeaderValue::from_str(value.trim())
                .map_err(|e| format!("header {name:?} value: {e}"))?;
            headers.insert(n, v);
        }
        // Proxies from the environment would put a third process on the path.
        let http = reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers)
            .pool_max_idle_per_host(pool.max(1))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .user_agent(concat!("switchyard-bench/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))?;
        Ok(Self {
            http,
            url,
            protocol_version: protocol_version.to_owned(),
        })
    }

    /// `initialize`, then `notifications/initialized`: a session ready for calls.
    pub async fn initialize(&self) -> Result<Session, CallError> {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":{},"capabilities":{{}},"clientInfo":{{"name":"switchyard-bench","version":"{}"}}}}}}"#,
            json_string(&self.protocol_version),
            env!("CARGO_PKG_VERSION")
        );
        let resp = self.post(None, body).await?;
        let id = resp.headers().get(SESSION_HEADER).cloned();
        let result = read_response(resp, "0").await?;
        #[derive(Deserialize)]
        struct InitResult {
            #[serde(rename = "protocolVersion")]
            protocol_version: String,
        }
        let init: InitResult =
            serde_json::from_str(result.get()).map_err(|e| CallError::Protocol {
                reason: format!("initialize result without protocolVersion: {e}"),
            })?;
        let protocol_version =
            HeaderValue::from_str(&init.protocol_version).map_err(|_| CallError::Protocol {
                reason: format!("unusable protocolVersion {:?}", init.protocol_version),
            })?;
        let session = Session {
            id,
            protocol_version,
        };
        let resp = self
            .post(
                Some(&session),
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
            )
            .await?;
        let status = resp.status();
        // Drained so the connection goes back to the pool.
        let _ = resp.bytes().await;
        if !status.is_success() {
            return Err(CallError::Status {
                status: status.as_u16(),
                body: "on notifications/initialized".into(),
            });
        }
        Ok(session)
    }

    /// One `tools/call` with JSON-RPC id `id`; `params` is the pre-serialized
    /// `{"name":..,"arguments":..}` object. Ok only for a non-error result.
    pub async fn call(&self, session: &Session, id: u64, params: &str) -> Result<(), CallError> {
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{params}}}"#);
        let resp = self.post(Some(session), body).await?;
        let result = read_response(resp, &id.to_string()).await?;
        check_tool_result(&result)
    }

    /// Ends the session. 404 and 405 count as done: nothing is left to end.
    pub async fn delete(&self, session: &Session) -> Result<(), CallError> {
        let Some(id) = &session.id else {
            return Ok(());
        };
        let resp = self
            .http
            .delete(self.url.clone())
            .header(SESSION_HEADER, id.clone())
            .header(VERSION_HEADER, session.protocol_version.clone())
            .send()
            .await
            .map_err(classify)?;
        let status = resp.status();
        let _ = resp.bytes().await;
        if status.is_success()
            || status == StatusCode::NOT_FOUND
            || status == StatusCode::METHOD_NOT_ALLOWED
        {
            Ok(())
        } else {
            Err(CallError::Status {
                status: status.as_u16(),
                body: "on DELETE".into(),
            })
        }
    }

    async fn post(
        &self,
        session: Option<&Session>,
        body: String,
    ) -> Result<reqwest::Response, CallError> {
        let mut req = self.http.post(self.url.clone()).body(body);
        if let Some(s) = session {
            if let Some(id) = &s.id {
                req = req.header(SESSION_HEADER, id.clone());
            }
            req = req.header(VERSION_HEADER, s.protocol_version.clone());
        }
        req.send().await.map_err(classify)
    }
}

fn classify(e: reqwest::Error) -> CallError {
    if e.is_timeout() {
        CallError::Timeout
    } else {
        CallError::Transport { reason: chain(&e) }
    }
}

/// reqwest's Display stops at "error sending request"; the cause is what helps.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Reads the answer to the request with id `id` (its JSON text), from a JSON
/// body or from the first SSE event that is a JSON-RPC response.
async fn read_response(mut resp: reqwest::Response, id: &str) -> Result<Box<RawValue>, CallError> {
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(CallError::Status {
            status: status.as_u16(),
            body: truncate(&text, 200),
        });
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("text/event-stream") {
        let mut scanner = SseScanner::default();
        loop {
            let chunk = resp.chunk().await.map_err(classify)?;
            let ended = chunk.is_none();
            let events = match chunk {
                Some(bytes) => scanner.feed(&bytes)?,
                None => scanner.finish(),
            };
            for data in events {
                if let Some(outcome) = response_in(&data, id)? {
                    return outcome;
                }
            }
            if ended {
                return Err(CallError::Protocol {
                    reason: "SSE stream ended without a JSON-RPC response".into(),
                });
            }
        }
    } else if content_type.starts_with("application/json") {
        let bytes = resp.bytes().await.map_err(classify)?;
        match response_in(&bytes, id)? {
            Some(outcome) => outcome,
            None => Err(CallError::Protocol {
                reason: "JSON body is not a JSON-RPC response".into(),
            }),
        }
    } else {
        Err(CallError::Protocol {
            reason: format!("unexpected Content-Type {content_type:?}"),
        })
    }
}

/// `Some(outcome)` when `data` is a JSON-RPC response; `None` for anything
/// else (notifications, server requests, priming events), which the caller skips.
fn response_in(
    data: &[u8],
    id: &str,
) -> Result<Option<Result<Box<RawValue>, CallError>>, CallError> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow, default)]
        id: Option<&'a RawValue>,
        #[serde(borrow, default)]
        result: Option<&'a RawValue>,
        #[serde(default)]
        error: Option<RpcError>,
    }
    #[derive(Deserialize)]
    struct RpcError {
        code: i64,
        #[serde(default)]
        message: String,
    }
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let env: Envelope<'_> = serde_json::from_slice(data).map_err(|e| CallError::Protocol {
        reason: format!("unreadable JSON: {e}"),
    })?;
    let outcome = match (env.result, env.error) {
        (_, Some(e)) => Err(CallError::Rpc {
            code: e.code,
            message: truncate(&e.message, 200),
        }),
        (Some(r), None) => Ok(r.to_owned()),
        (None, None) => return Ok(None),
    };
    let got = env.id.map(|r| r.get().trim_matches('"')).unwrap_or("null");
    // An error with a null id is the server refusing the request as a whole.
    if got != id && !(got == "null" && outcome.is_err()) {
        return Err(CallError::Protocol {
            reason: format!("response id {got} does not match request id {id}"),
        });
    }
    Ok(Some(outcome))
}

fn check_tool_result(result: &RawValue) -> Result<(), CallError> {
    #[derive(Deserialize)]
    struct ToolResult {
        #[serde(rename = "isError", default)]
        is_error: bool,
    }
    let r: ToolResult = serde_json::from_str(result.get()).map_err(|e| CallError::Protocol {
        reason: format!("tools/call result is not an object: {e}"),
    })?;
    if !r.is_error {
        return Ok(());
    }
    #[derive(Deserialize)]
    struct Text {
        #[serde(default)]
        text: String,
    }
    #[derive(Deserialize)]
    struct Content {
        #[serde(default)]
        content: Vec<Text>,
    }
    let text = serde_json::from_str::<Content>(result.get())
        .ok()
        .and_then(|c| c.content.into_iter().next())
        .map(|t| truncate(&t.text, 200))
        .unwrap_or_default();
    Err(CallError::Tool { text })
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// Incremental SSE parsing (WHATWG event-stream rules, reduced to what a
/// client needs): `data:` lines of one event are joined by `\n`; other fields
/// and comments are skipped; an event ends at an empty line.
#[derive(Default)]
struct SseScanner {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    total: usize,
}

impl SseScanner {
    /// Returns the data of every event completed by `bytes`.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, CallError> {
        self.total += bytes.len();
        if self.total > MAX_BODY_BYTES {
            return Err(CallError::Protocol {
                reason: format!("SSE answer longer than {MAX_BODY_BYTES} bytes"),
            });
        }
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                let line = std::mem::take(&mut self.line);
                self.end_line(&line, &mut out);
            } else {
                self.line.push(b);
            }
        }
        Ok(out)
    }

    /// End of stream: an unterminated last event still counts.
    fn finish(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.end_line(&line, &mut out);
        }
        self.end_line(&[], &mut out);
        out
    }

    fn end_line(&mut self, line: &[u8], out: &mut Vec<Vec<u8>>) {
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.data));
                self.has_data = false;
            }
            return;
        }
        let Some(rest) = line.strip_prefix(b"data") else {
            return;
        };
        let value = match rest {
            [] => &[][..],
            [b':', b' ', v @ ..] | [b':', v @ ..] => v,
            // `dataX:` is another field name, not data.
            _ => return,
        };
        if self.has_data {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
        self.has_data = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&str]) -> Vec<String> {
        let mut s = SseScanner::default();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.feed(c.as_bytes()).unwrap());
        }
        out.extend(s.finish());
        out.into_iter()
            .map(|d| String::from_utf8(d).unwrap())
            .collect()
    }

    #[test]
    fn sse_events_split_anywhere_and_priming_events_are_kept_empty() {
        let got = events(&[
            "id: 0\nda",
            "ta: \n\nevent: message\r\ndata: {\"a\":",
            "1}\r\n\r\n: comment\n\ndata: x\ndata: y",
        ]);
        assert_eq!(got, vec!["", "{\"a\":1}", "x\ny"]);
    }

    #[test]
    fn responses_are_matched_by_id_and_errors_classified() {
        let ok = response_in(br#"{"jsonrpc":"2.0","id":7,"result":{"content":[]}}"#, "7")
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(check_tool_result(&ok).is_ok());
        let tool_err = response_in(
            br#"{"jsonrpc":"2.0","id":7,"result":{"isError":true,"content":[{"type":"text","text":"boom"}]}}"#,
            "7",
        )
        .unwrap()
        .unwrap()
        .unwrap();
        assert!(
            matches!(check_tool_result(&tool_err), Err(CallError::Tool { text }) if text == "boom")
        );
        let rpc = response_in(
            br#"{"jsonrpc":"2.0","id":"7","error":{"code":-32602,"message":"unknown tool"}}"#,
            "7",
        )
        .unwrap()
        .unwrap();
        assert!(matches!(rpc, Err(CallError::Rpc { code: -32602, .. })));
        assert!(response_in(
            br#"{"jsonrpc":"2.0","method":"notifications/progress"}"#,
            "7"
        )
        .unwrap()
        .is_none());
        assert!(response_in(br#"{"jsonrpc":"2.0","id":8,"result":{}}"#, "7").is_err());
        assert!(response_in(b"", "7").unwrap().is_none());
    }
}
