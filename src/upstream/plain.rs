//! The POST path for `http://` upstreams, on hyper-util's pooled client
//! directly instead of through reqwest.
//!
//! Every tools/call is one upstream POST, so what the client library does
//! per request is paid on every call. reqwest (0.12 and 0.13 alike) re-parses
//! the request URL twice per request (its redirect policy and its response
//! both rebuild a `Url` from the `Uri`) and clones the request for its retry
//! policy: about 25,000 instructions per call, a fifth of the gateway's whole
//! per-call work (`bench/instructions.sh`, see bench/RESULTS.md). hyper-util
//! is the pool reqwest itself is built on, so connection reuse is the same.
//!
//! What reqwest does that this path does not, and how that is covered:
//! - TLS: only `http://` URLs come here; `https://` stays on reqwest, with
//!   the gateway's CA bundle and client certificate.
//! - Proxies: with `HTTP_PROXY`/`ALL_PROXY` set, no pool is built at all.
//! - Redirects (e.g. a server mounted at `/mcp/` answering `/mcp` with 307):
//!   a 3xx answer is sent again through reqwest, which follows it.
//! - URL credentials (`http://user:pass@host`): such endpoints keep reqwest,
//!   which turns them into a Basic header.
//! - Names are resolved under the egress policy, like reqwest's resolver.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::egress::{self, GuardedDns};
#[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
use super::http::TCP_USER_TIMEOUT;
use super::http::{
    proxy_configured, MAX_IDLE_PER_HOST, POOL_IDLE_TIMEOUT, TCP_CONNECT_TIMEOUT, TCP_KEEPALIVE,
    TCP_KEEPALIVE_RETRIES,
};

/// Keep-alive connections to plain-HTTP upstreams, shared by all sessions:
/// one pool per I/O thread (`server.rs`), and one for every other thread.
/// A pooled connection is driven by a task on the thread that opened it, so
/// a request on another thread would hand its bytes across threads twice;
/// with a pool per thread, a request and its upstream connection share one.
/// Behind an `Arc`: hyper-util's client is several hundred bytes, and every
/// upstream session holds a copy of its connector (measured: 2 KB more per
/// held session with the client inline).
#[derive(Clone)]
pub struct Pool {
    lanes: Arc<[Client<HttpConnector<GuardedDns>, Full<Bytes>>]>,
}

impl Pool {
    /// `None` when a proxy variable is set: reqwest honours those, this pool
    /// would bypass them. `io_threads` pools, plus one for other threads.
    pub fn new(policy: egress::Policy, io_threads: usize) -> Option<Pool> {
        if proxy_configured() {
            return None;
        }
        let mut connector = HttpConnector::new_with_resolver(GuardedDns { policy });
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(TCP_CONNECT_TIMEOUT));
        connector.set_keepalive(Some(TCP_KEEPALIVE));
        connector.set_keepalive_interval(Some(TCP_KEEPALIVE));
        connector.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        connector.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT));
        let lanes = (0..=io_threads)
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                    .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
                    .build(connector.clone())
            })
            .collect();
        Some(Pool { lanes })
    }

    /// One POST; the caller bounds it in time.
    pub async fn post(
        &self,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        self.lane().request(req).await
    }

    /// This thread's pool.
    fn lane(&self) -> &Client<HttpConnector<GuardedDns>, Full<Bytes>> {
        let last = self.lanes.len() - 1;
        let index = crate::server::io_thread().map_or(last, |i| i.min(last));
        &self.lanes[index]
    }
}

/// Where the pool sends an endpoint's POSTs, worked out once per endpoint.
pub struct Target {
    pub uri: Uri,
    /// The `Host` header hyper-util would otherwise format per request.
    pub host: HeaderValue,
}

impl Target {
    /// `None` unless `url` is plain `http://` without credentials in it (see
    /// the module comment).
    pub fn for_url(url: &reqwest::Url) -> Option<Target> {
        if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let mut text = url.as_str();
        if let Some(at) = text.find('#') {
            text = &text[..at]; // a fragment is never sent
        }
        let uri: Uri = text.parse().ok()?;
        // `port()` is `None` for the scheme's default, which `Host` leaves out.
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => HeaderValue::from_str(&format!("{h}:{p}")).ok()?,
            (Some(h), None) => HeaderValue::from_str(h).ok()?,
            (None, _) => return None,
        };
        Some(Target { uri, host })
    }

    /// A copy that shares no buffer with `self`. Every POST clones the
    /// target's URI and `Host` (as the request needs them owned), and a
    /// clone of a shared buffer is a write to its reference count: with
    /// one buffer for all sessions of a gateway, every call on every core
    /// would write the same cache line. A session's own copy keeps those
    /// writes on that session's line (about 200 bytes per session).
    pub fn detached(&self) -> Target {
        let copy = |text: &str| Uri::from_maybe_shared(Bytes::copy_from_slice(text.as_bytes()));
        Target {
            uri: copy(&self.uri.to_string()).unwrap_or_else(|_| self.uri.clone()),
            host: HeaderValue::from_bytes(self.host.as_bytes())
                .unwrap_or_else(|_| self.host.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str) -> Option<(String, String)> {
        Target::for_url(&reqwest::Url::parse(s).unwrap()).map(|t| {
            (
                t.uri.to_string(),
                t.host.to_str().unwrap_or_default().to_owned(),
            )
        })
    }

    fn pair(uri: &str, host: &str) -> Option<(String, String)> {
        Some((uri.to_owned(), host.to_owned()))
    }

    #[test]
    fn a_detached_target_is_equal_and_shares_no_buffer() {
        let url = reqwest::Url::parse("http://127.0.0.1:8000/mcp?key=v").unwrap();
        let shared = Target::for_url(&url).unwrap();
        let own = shared.detached();
        assert_eq!(own.uri, shared.uri);
        assert_eq!(own.host, shared.host);
        // What the pool keys connections by is unchanged: sessions still
        // share keep-alive connections.
        assert_eq!(own.uri.authority(), shared.uri.authority());
        assert_ne!(
            own.host.as_bytes().as_ptr(),
            shared.host.as_bytes().as_ptr()
        );
        assert_ne!(
            own.uri.path_and_query().unwrap().as_str().as_ptr(),
            shared.uri.path_and_query().unwrap().as_str().as_ptr()
        );
    }

    #[test]
    fn only_plain_http_without_url_credentials() {
        assert_eq!(
            target("http://127.0.0.1:8000/mcp?key=v"),
            pair("http://127.0.0.1:8000/mcp?key=v", "127.0.0.1:8000")
        );
        assert_eq!(
            target("http://upstream.internal:80/mcp#frag"),
            pair("http://upstream.internal/mcp", "upstream.internal")
        );
        assert_eq!(
            target("http://[::1]:9000/mcp"),
            pair("http://[::1]:9000/mcp", "[::1]:9000")
        );
        assert_eq!(target("https://upstream.example/mcp"), None);
        assert_eq!(target("http://user:pw@upstream.internal/mcp"), None);
    }
}
