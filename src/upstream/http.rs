//! The client side of MCP Streamable HTTP (spec 2025-11-25, basic/transports):
//! one POST per message, answered by JSON or by an SSE stream that ends with
//! the response; DELETE to end a session.
//!
//! Stateless helpers over the shared clients ([`Via`]): the session owner
//! task (`session.rs`) decides when to call them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT,
};
use reqwest::StatusCode;
use serde_json::value::RawValue;

use super::link::TokenSource;
use super::plain;
use super::{Reply, UpstreamError};
use crate::jsonrpc::{self, Message};
use crate::mcp;
use crate::sse;

pub const SESSION_HEADER: &str = "mcp-session-id";
pub const VERSION_HEADER: &str = "mcp-protocol-version";
/// Bound on one SSE event from an upstream.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;
/// Resumptions of one request's SSE answer, each after a stream that ended
/// without the response but with a new event id; the request's time limit
/// bounds them too.
const MAX_RESUMES: u32 = 16;
/// Wait before resuming when the stream announced no `retry:`.
const DEFAULT_RESUME_WAIT: Duration = Duration::from_millis(100);
/// Longest `retry:` honoured before resuming.
const MAX_RESUME_WAIT: Duration = Duration::from_secs(10);
/// Idle keep-alive connections are closed after this long.
pub(super) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle keep-alive connections kept per upstream host.
pub(super) const MAX_IDLE_PER_HOST: usize = 1024;
/// Bound on opening one TCP connection to an upstream.
pub(super) const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalive probes on upstream connections (reqwest's defaults, set
/// explicitly so both clients find a dead peer the same way): first probe
/// after this much idle time, then at this interval.
pub(super) const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
pub(super) const TCP_KEEPALIVE_RETRIES: u32 = 3;
/// Unacknowledged data for this long drops the connection (Linux).
#[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
pub(super) const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
const USER_AGENT_VALUE: &str = concat!("switchyard/", env!("CARGO_PKG_VERSION"));

/// The clients an upstream request may go out on: reqwest for everything,
/// and the plain-HTTP pool for POSTs to `http://` endpoints (`plain.rs`).
#[derive(Clone, Copy)]
pub struct Via<'a> {
    pub client: &'a reqwest::Client,
    pub plain: Option<&'a plain::Pool>,
}

/// Where and how to POST: the upstream endpoint plus the per-session headers.
#[derive(Clone)]
pub struct Endpoint {
    /// With a `query_param` credential appended: never log it (see [`describe`]).
    pub url: reqwest::Url,
    /// Where the plain-HTTP pool sends it, when it can take it; shared by
    /// the endpoint's copies (every upstream session holds several), and
    /// each session's own (see [`plain::Target::detached`]).
    plain: Option<Arc<plain::Target>>,
    /// Static credentials, and `Mcp-Session-Id` and `MCP-Protocol-Version`
    /// once the session is set up. Shared by the endpoint's copies (each
    /// upstream session holds several): a map is ~1 KB, measured per session.
    headers: Arc<HeaderMap>,
    /// `headers` plus what every POST carries (`Accept`, `Content-Type`,
    /// `User-Agent`, and for the plain pool `Host`): built once here, copied
    /// per request in one clone. A clone has no spare room: one insert per
    /// request would reallocate it.
    post_headers: Arc<HeaderMap>,
    /// For OAuth upstreams: the current access token, added per request.
    pub oauth: Option<Arc<TokenSource>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a credential; the headers are marked sensitive.
        f.debug_struct("Endpoint")
            .field("url", &redacted_url(&self.url))
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// The URL without its query, which may carry a credential.
fn redacted_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    if u.query().is_some() {
        u.set_query(Some("[redacted]"));
    }
    u.to_string()
}

impl Endpoint {
    pub fn new(url: reqwest::Url, headers: HeaderMap, oauth: Option<Arc<TokenSource>>) -> Endpoint {
        let plain = plain::Target::for_url(&url).map(Arc::new);
        Endpoint {
            url,
            post_headers: Arc::new(with_post_headers(headers.clone(), plain.as_deref())),
            plain,
            headers: Arc::new(headers),
            oauth,
        }
    }

    pub fn with_session(&self, session_id: Option<&str>, protocol_version: &str) -> Endpoint {
        let mut headers = HeaderMap::clone(&self.headers);
        if let Some(v) = session_id.and_then(|s| HeaderValue::from_str(s).ok()) {
            headers.insert(SESSION_HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(protocol_version) {
            headers.insert(VERSION_HEADER, v);
        }
        let plain = self.plain.as_deref().map(|t| Arc::new(t.detached()));
        Endpoint {
            url: self.url.clone(),
            post_headers: Arc::new(with_post_headers(headers.clone(), plain.as_deref())),
            plain,
            headers: Arc::new(headers),
            oauth: self.oauth.clone(),
        }
    }

    /// Credentials and session headers: what every request carries.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn has_session(&self) -> bool {
        self.headers.contains_key(SESSION_HEADER)
    }
}

/// What came back for a request: the reply and, on `initialize`, the session id.
pub struct Answer {
    pub reply: Reply,
    session_id: Option<HeaderValue>,
}

impl Answer {
    /// The `Mcp-Session-Id` the upstream answered with, if it is text.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_ref().and_then(|v| v.to_str().ok())
    }
}

fn classify(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout
    } else {
        UpstreamError::Transport {
            reason: describe(e),
        }
    }
}

/// An error's whole cause chain, without the request URL: a `query_param`
/// credential must not reach a log line or a client's error message.
pub fn describe(e: reqwest::Error) -> String {
    error_chain(&e.without_url())
}

/// A current OAuth access token for requests to `ep`, when it uses OAuth.
/// Awaited before a request is built, so no request builder is held across
/// it; boxed because the token fetch is a large future, and inlined it would
/// grow every session task that may send a request, OAuth or not.
pub(super) async fn oauth_token(ep: &Endpoint) -> Result<Option<HeaderValue>, UpstreamError> {
    match &ep.oauth {
        None => Ok(None),
        Some(source) => Box::pin(source.header()).await.map(Some),
    }
}

/// The endpoint's headers (static credentials, session) and the OAuth token.
pub(super) fn with_credentials(
    rb: reqwest::RequestBuilder,
    ep: &Endpoint,
    token: &Option<HeaderValue>,
) -> reqwest::RequestBuilder {
    rb.headers(credential_headers(ep, token))
}

fn credential_headers(ep: &Endpoint, token: &Option<HeaderValue>) -> HeaderMap {
    with_token(HeaderMap::clone(&ep.headers), token)
}

fn with_token(mut headers: HeaderMap, token: &Option<HeaderValue>) -> HeaderMap {
    if let Some(t) = token {
        headers.insert(AUTHORIZATION, t.clone());
    }
    headers
}

fn with_post_headers(mut headers: HeaderMap, plain: Option<&plain::Target>) -> HeaderMap {
    headers.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    if let Some(target) = plain {
        // What hyper-util would otherwise format per request.
        headers.insert(HOST, target.host.clone());
    }
    headers
}

/// reqwest's Display omits the cause ("error sending request"); operators need it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// An upstream's answer to a POST, from whichever client sent it.
enum Answered {
    Reqwest(reqwest::Response),
    Plain(http::Response<hyper::body::Incoming>),
}

impl Answered {
    fn status(&self) -> StatusCode {
        match self {
            Answered::Reqwest(r) => r.status(),
            Answered::Plain(r) => r.status(),
        }
    }

    fn headers(&self) -> &HeaderMap {
        match self {
            Answered::Reqwest(r) => r.headers(),
            Answered::Plain(r) => r.headers(),
        }
    }

    async fn bytes(self) -> Result<Bytes, UpstreamError> {
        match self {
            Answered::Reqwest(r) => r.bytes().await.map_err(classify),
            Answered::Plain(r) => {
                use http_body_util::BodyExt as _;
                match r.into_body().collect().await {
                    Ok(body) => Ok(body.to_bytes()),
                    Err(e) => Err(transport(&e)),
                }
            }
        }
    }

    /// The body as it arrives, for SSE answers.
    fn chunks(self) -> BoxStream<'static, Result<Bytes, UpstreamError>> {
        match self {
            Answered::Reqwest(r) => r.bytes_stream().map(|c| c.map_err(classify)).boxed(),
            Answered::Plain(r) => http_body_util::BodyDataStream::new(r.into_body())
                .map(|c| c.map_err(|e| transport(&e)))
                .boxed(),
        }
    }
}

fn transport(e: &dyn std::error::Error) -> UpstreamError {
    UpstreamError::Transport {
        reason: error_chain(e),
    }
}

/// One POST, with `extra` headers on top of the endpoint's (a call's trace
/// context), and its status checked; the caller bounds it in time.
async fn post(
    via: Via<'_>,
    ep: &Endpoint,
    extra: &HeaderMap,
    body: String,
) -> Result<Answered, UpstreamError> {
    let body = Bytes::from(body);
    // An OAuth token can be revoked or expire early: one retry with a fresh one.
    let retry = ep.oauth.as_ref().map(|_| body.clone());
    let token = oauth_token(ep).await?;
    let mut resp = send_post(via, ep, extra, &token, body).await?;
    if let (StatusCode::UNAUTHORIZED, Some(source), Some(token), Some(body)) =
        (resp.status(), &ep.oauth, token, retry)
    {
        // Boxed, like the error body below: rare paths that would otherwise
        // grow every call's future.
        resp = Box::pin(async move {
            source.reject(&token).await;
            let token = oauth_token(ep).await?;
            send_post(via, ep, extra, &token, body).await
        })
        .await?;
    }
    let status = resp.status();
    if status == StatusCode::NOT_FOUND && ep.has_session() {
        return Err(UpstreamError::SessionExpired);
    }
    if !status.is_success() {
        let text = match Box::pin(resp.bytes()).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => String::new(),
        };
        return Err(UpstreamError::Status {
            status: status.as_u16(),
            body: truncate(text, 512),
        });
    }
    Ok(resp)
}

/// One POST. To an `http://` endpoint it goes through the plain pool; a
/// redirect from there, and everything else, goes through reqwest, built as
/// a whole `reqwest::Request` (the endpoint's header map copied once, the
/// constant headers static) rather than merged entry by entry by a builder.
async fn send_post(
    via: Via<'_>,
    ep: &Endpoint,
    extra: &HeaderMap,
    token: &Option<HeaderValue>,
    body: Bytes,
) -> Result<Answered, UpstreamError> {
    if let (Some(pool), Some(target)) = (via.plain, &ep.plain) {
        let resp = pool
            .post(
                target.uri.clone(),
                post_headers(ep, extra, token),
                body.clone(),
            )
            .await
            .map_err(|e| transport(&e))?;
        if !resp.status().is_redirection() {
            return Ok(Answered::Plain(resp));
        }
        // reqwest follows redirects (a server mounted at `/mcp/` answering
        // `/mcp` with 307, say); the pool does not.
    }
    let mut req = reqwest::Request::new(reqwest::Method::POST, ep.url.clone());
    *req.headers_mut() = reqwest_post_headers(ep, extra, token);
    *req.body_mut() = Some(body.into());
    via.client
        .execute(req)
        .await
        .map(Answered::Reqwest)
        .map_err(classify)
}

/// The headers of one POST: the endpoint's, prepared once, then the call's
/// own (replacing same-named ones) and the OAuth token.
fn post_headers(ep: &Endpoint, extra: &HeaderMap, token: &Option<HeaderValue>) -> HeaderMap {
    let mut headers = HeaderMap::clone(&ep.post_headers);
    if !extra.is_empty() {
        headers.extend(extra.clone());
    }
    with_token(headers, token)
}

/// [`post_headers`] without the plain pool's `Host`: reqwest sets its own,
/// and after a redirect to another host that one would be wrong.
fn reqwest_post_headers(
    ep: &Endpoint,
    extra: &HeaderMap,
    token: &Option<HeaderValue>,
) -> HeaderMap {
    let mut headers = post_headers(ep, extra, token);
    headers.remove(HOST);
    headers
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// POSTs a request with id `id` and waits for its response. Other messages the
/// upstream interleaves on an SSE answer (notifications, its own requests) go
/// to `on_other`. `extra` goes on this request only (a call's trace context).
/// `timeout` bounds the whole exchange, the answer's body included.
pub async fn request(
    via: Via<'_>,
    ep: &Endpoint,
    extra: &HeaderMap,
    id: u64,
    body: String,
    timeout: Duration,
    on_other: &mut (dyn FnMut(Message) + Send),
) -> Result<Answer, UpstreamError> {
    match tokio::time::timeout(timeout, exchange(via, ep, extra, id, body, on_other)).await {
        Ok(answer) => answer,
        Err(_) => Err(UpstreamError::Timeout),
    }
}

async fn exchange(
    via: Via<'_>,
    ep: &Endpoint,
    extra: &HeaderMap,
    id: u64,
    body: String,
    on_other: &mut (dyn FnMut(Message) + Send),
) -> Result<Answer, UpstreamError> {
    let resp = post(via, ep, extra, body).await?;
    // Only `initialize` needs it; kept as the header value (no copy) on the
    // calls that do not.
    let session_id = resp.headers().get(SESSION_HEADER).cloned();
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let reply = if mcp::is_media_type(content_type, "text/event-stream") {
        // Boxed: resuming made it a large future, and inlined it would grow
        // every call's, JSON answers included.
        Box::pin(read_sse(via, ep, resp, id, on_other)).await?
    } else if mcp::is_media_type(content_type, "application/json") {
        let bytes = resp.bytes().await?;
        match_response(&bytes, id)?
    } else {
        return Err(UpstreamError::Protocol {
            reason: format!("unexpected Content-Type {content_type:?} for a request"),
        });
    };
    Ok(Answer { reply, session_id })
}

fn match_response(bytes: &Bytes, id: u64) -> Result<Reply, UpstreamError> {
    match jsonrpc::parse_one(bytes) {
        Ok(Message::Response(r)) if id_matches(&r.id, id) => Ok(Reply(r.outcome)),
        Ok(_) => Err(UpstreamError::Protocol {
            reason: "JSON answer is not the response to our request".into(),
        }),
        Err(e) => Err(UpstreamError::Protocol {
            reason: format!("unreadable JSON answer: {e}"),
        }),
    }
}

fn id_matches(raw: &RawValue, id: u64) -> bool {
    let s = raw.get();
    s.parse::<u64>().ok() == Some(id) || s.trim_matches('"').parse::<u64>().ok() == Some(id)
}

/// Reads a request's SSE answer up to the response. A stream that ends
/// before it, after an event id, is resumed with a GET carrying
/// `Last-Event-ID` (spec 2025-11-25, transports, "Resumability and
/// Redelivery"): a server may close the stream early on purpose and deliver
/// the rest that way, after the `retry:` wait it announced.
async fn read_sse(
    via: Via<'_>,
    ep: &Endpoint,
    resp: Answered,
    id: u64,
    on_other: &mut (dyn FnMut(Message) + Send),
) -> Result<Reply, UpstreamError> {
    let mut resp = resp;
    let mut last_id: Option<String> = None;
    let mut retry = None;
    for resumed in 0.. {
        let mut decoder = sse::Decoder::new(MAX_EVENT_BYTES);
        let mut stream = resp.chunks();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            let events = decoder.feed(&chunk).map_err(|e| UpstreamError::Protocol {
                reason: e.to_string(),
            })?;
            for ev in events {
                if ev.data.trim().is_empty() {
                    continue; // priming event
                }
                match jsonrpc::parse_one(ev.data.as_bytes()) {
                    Ok(Message::Response(r)) if id_matches(&r.id, id) => {
                        return Ok(Reply(r.outcome))
                    }
                    Ok(other) => on_other(other),
                    Err(e) => {
                        tracing::debug!(error = %e, "ignoring unreadable SSE event from upstream")
                    }
                }
            }
        }
        let seen = decoder.last_event_id().map(str::to_owned);
        // A resumed stream that brought no new event is a server with
        // nothing more to say: resuming again would only repeat that.
        if resumed > 0 && (seen.is_none() || seen == last_id) {
            break;
        }
        last_id = seen.or(last_id);
        retry = decoder.retry().or(retry);
        let Some(from) = last_id.as_deref() else {
            break; // nothing to resume from
        };
        if resumed >= MAX_RESUMES {
            break;
        }
        tokio::time::sleep(retry.unwrap_or(DEFAULT_RESUME_WAIT).min(MAX_RESUME_WAIT)).await;
        // Boxed: rare, and inlined it would grow every call's future.
        resp = Box::pin(resume(via, ep, from)).await?;
    }
    Err(UpstreamError::Transport {
        reason: "SSE stream ended before the response arrived".into(),
    })
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| mcp::is_media_type(ct, "text/event-stream"))
}

/// Resumes a request's SSE stream after event `last_id`.
async fn resume(via: Via<'_>, ep: &Endpoint, last_id: &str) -> Result<Answered, UpstreamError> {
    let token = oauth_token(ep).await?;
    let resp = with_credentials(via.client.get(ep.url.clone()), ep, &token)
        .header(ACCEPT, "text/event-stream")
        .header("last-event-id", last_id)
        .send()
        .await
        .map_err(classify)?;
    let status = resp.status();
    if status == StatusCode::NOT_FOUND && ep.has_session() {
        return Err(UpstreamError::SessionExpired);
    }
    if !status.is_success() || !is_event_stream(resp.headers()) {
        return Err(UpstreamError::Transport {
            reason: format!(
                "SSE stream ended before the response arrived, and resuming it after event {last_id:?} was refused ({status})"
            ),
        });
    }
    Ok(Answered::Reqwest(resp))
}

/// POSTs a notification; the upstream answers 202 with no body.
pub async fn notify(
    via: Via<'_>,
    ep: &Endpoint,
    body: String,
    timeout: Duration,
) -> Result<(), UpstreamError> {
    let sent = async {
        let resp = post(via, ep, &HeaderMap::new(), body).await?;
        // Drain so the connection goes back to the pool.
        let _ = resp.bytes().await;
        Ok(())
    };
    match tokio::time::timeout(timeout, sent).await {
        Ok(sent) => sent,
        Err(_) => Err(UpstreamError::Timeout),
    }
}

/// Ends the upstream session. 404 (already gone) and 405 (server does not
/// allow client-initiated termination) both leave nothing to clean up.
pub async fn delete(
    client: &reqwest::Client,
    ep: &Endpoint,
    timeout: Duration,
) -> Result<(), UpstreamError> {
    let token = oauth_token(ep).await?;
    let resp = with_credentials(client.delete(ep.url.clone()), ep, &token)
        .timeout(timeout)
        .send()
        .await
        .map_err(classify)?;
    match resp.status() {
        s if s.is_success()
            || s == StatusCode::NOT_FOUND
            || s == StatusCode::METHOD_NOT_ALLOWED =>
        {
            Ok(())
        }
        s => Err(UpstreamError::Status {
            status: s.as_u16(),
            body: String::new(),
        }),
    }
}

/// Builds the shared upstream HTTP client: pooled keep-alive connections,
/// HTTP/2 when the upstream offers it over TLS, and names resolved under the
/// egress policy (a name resolving to a refused address cannot be connected to).
pub fn client(egress: super::egress::Policy) -> Result<reqwest::Client, reqwest::Error> {
    client_builder(egress).build()
}

/// The shared client's settings, for per-gateway clients to add TLS to.
pub fn client_builder(egress: super::egress::Policy) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    // reqwest honours the proxy variables; without any, it would still
    // match every request against an empty proxy list (measurably, per call).
    let builder = if proxy_configured() {
        builder
    } else {
        builder.no_proxy()
    };
    let builder = builder
        .dns_resolver(std::sync::Arc::new(super::egress::GuardedResolver {
            policy: egress,
        }))
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
        .tcp_nodelay(true)
        .tcp_keepalive(TCP_KEEPALIVE)
        .tcp_keepalive_interval(TCP_KEEPALIVE)
        .tcp_keepalive_retries(TCP_KEEPALIVE_RETRIES)
        .connect_timeout(TCP_CONNECT_TIMEOUT)
        .user_agent(USER_AGENT_VALUE);
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let builder = builder.tcp_user_timeout(TCP_USER_TIMEOUT);
    builder
}

/// Whether any variable reqwest takes a proxy from is set.
pub(super) fn proxy_configured() -> bool {
    [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .any(|n| std::env::var_os(n).is_some_and(|v| !v.is_empty()))
}

/// How a GET stream ended.
pub enum Listened {
    /// The upstream offers no GET stream (405) or forgot the session (404):
    /// there is nothing to reconnect to.
    Unavailable,
    /// The stream ended or broke; a reconnect may succeed.
    Ended,
}

/// Opens the session's GET stream (spec: "Listening for Messages from the
/// Server") and hands every message on it to `on_message` until it ends.
pub async fn listen(
    client: &reqwest::Client,
    ep: &Endpoint,
    on_message: &(dyn Fn(Message) + Send + Sync),
) -> Listened {
    let rb = match oauth_token(ep).await {
        Ok(token) => with_credentials(client.get(ep.url.clone()), ep, &token),
        Err(e) => {
            tracing::debug!(error = %e, "upstream GET stream not opened");
            return Listened::Ended;
        }
    };
    let resp = match rb.header(ACCEPT, "text/event-stream").send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %describe(e), "upstream GET stream failed to open");
            return Listened::Ended;
        }
    };
    let status = resp.status();
    if status == StatusCode::METHOD_NOT_ALLOWED
        || status == StatusCode::NOT_FOUND
        || status == StatusCode::CONFLICT
    {
        return Listened::Unavailable;
    }
    if !status.is_success() || !is_event_stream(resp.headers()) {
        return Listened::Unavailable;
    }
    let mut decoder = sse::Decoder::new(MAX_EVENT_BYTES);
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Listened::Ended;
        };
        let Ok(events) = decoder.feed(&chunk) else {
            return Listened::Ended;
        };
        for ev in events.into_iter().filter(|e| !e.data.trim().is_empty()) {
            match jsonrpc::parse_one(ev.data.as_bytes()) {
                Ok(m) => on_message(m),
                Err(e) => {
                    tracing::debug!(error = %e, "ignoring unreadable SSE event on an upstream GET stream")
                }
            }
        }
    }
    Listened::Ended
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        let url = reqwest::Url::parse(url).unwrap();
        Endpoint::new(url, HeaderMap::new(), None).with_session(Some("s-1"), "2025-11-25")
    }

    #[test]
    fn plain_posts_carry_host_and_session_headers_prebuilt() {
        let ep = endpoint("http://127.0.0.1:8000/mcp");
        let headers = post_headers(&ep, &HeaderMap::new(), &None);
        assert_eq!(headers.get(HOST).unwrap(), "127.0.0.1:8000");
        assert_eq!(headers.get(SESSION_HEADER).unwrap(), "s-1");
        assert_eq!(headers.get(VERSION_HEADER).unwrap(), "2025-11-25");
        assert_eq!(headers.get(CONTENT_TYPE).unwrap(), "application/json");
        // The default port is left out of `Host`, as a client would.
        let ep = endpoint("http://upstream.internal:80/mcp");
        let headers = post_headers(&ep, &HeaderMap::new(), &None);
        assert_eq!(headers.get(HOST).unwrap(), "upstream.internal");
    }

    #[test]
    fn posts_through_reqwest_get_no_prebuilt_host() {
        // reqwest sets `Host` itself, and again after a redirect: a plain
        // endpoint's POST that is redirected goes through reqwest too.
        for url in ["https://upstream.example/mcp", "http://127.0.0.1:8000/mcp"] {
            let ep = endpoint(url);
            let headers = reqwest_post_headers(&ep, &HeaderMap::new(), &None);
            assert!(headers.get(HOST).is_none(), "{url}");
            assert_eq!(headers.get(SESSION_HEADER).unwrap(), "s-1", "{url}");
        }
    }
}
