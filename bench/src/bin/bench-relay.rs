//! `bench-relay`: the floor for gateway benchmarks. A bare relay that does the
//! least a federating MCP gateway must do per call — parse the JSON body,
//! rename the tool, forward over a pooled keep-alive client, pass the session
//! header through — and nothing else: no session table, no validation, no
//! logging. What Switchyard costs above this is its own overhead.
//!
//! Upstream requests go out on hyper-util's pooled client, as the gateway's
//! per-call POSTs to `http://` upstreams do (its `upstream/plain.rs`), so
//! both pay the same client costs; `--client reqwest` is the relay as it was
//! before the gateway moved off reqwest, for comparison. Connections are
//! served as the gateway serves them (its `server.rs`): handed to one of
//! `--io-threads` threads, each with its own runtime and upstream pool;
//! `--work-stealing` is the shape both had before, for comparison.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;

const SESSION_HEADER: &str = "mcp-session-id";

/// The gateway's allocator (see its `main.rs`): the floor should not lose
/// to Switchyard on allocation alone.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bare MCP relay: POST /mcp → upstream, stripping a prefix from tools/call names.
/// Prints its URL as the first stdout line.
#[derive(Parser)]
#[command(name = "bench-relay")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Upstream Streamable HTTP endpoint.
    #[arg(long)]
    upstream: reqwest::Url,
    /// Prefix removed from params.name of tools/call (e.g. "bench-").
    #[arg(long, default_value = "")]
    strip_prefix: String,
    /// Threads serving connections, each with its own current-thread runtime
    /// and upstream pool, as the gateway's I/O threads [default: one per CPU].
    #[arg(long)]
    io_threads: Option<usize>,
    /// Instead: tokio's work-stealing runtime with this many workers (the
    /// gateway's shape before its I/O threads); 0 runs everything on one
    /// current-thread runtime.
    #[arg(long)]
    threads: Option<usize>,
    /// Tokio's work-stealing runtime with one worker per CPU (as --threads).
    #[arg(long, conflicts_with_all = ["threads", "io_threads"])]
    work_stealing: bool,
    /// HTTP client for upstream requests.
    #[arg(long, value_enum, default_value_t = ClientKind::Hyper)]
    client: ClientKind,
}

#[derive(Clone, Copy, ValueEnum)]
enum ClientKind {
    /// hyper-util's pooled client, as the gateway's plain-HTTP path.
    Hyper,
    /// reqwest (built on the same pool, plus its own per-request work).
    Reqwest,
}

// One value per process, read on every call: boxing would add a load per call.
#[allow(clippy::large_enum_variant)]
enum Client {
    Hyper(hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>),
    Reqwest(reqwest::Client),
}

struct Relay {
    client: Client,
    upstream: reqwest::Url,
    upstream_uri: Uri,
    prefix: String,
}

async fn post_mcp(State(r): State<Arc<Relay>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    if msg["method"] == "tools/call" {
        if let Some(Value::String(name)) = msg.pointer_mut("/params/name") {
            if let Some(rest) = name.strip_prefix(r.prefix.as_str()) {
                *name = rest.to_owned();
            }
        }
    }
    let mut out = HeaderMap::new();
    out.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    if let Some(sid) = headers.get(SESSION_HEADER) {
        out.insert(SESSION_HEADER, sid.clone());
    }
    relay(&r, Method::POST, out, Bytes::from(msg.to_string())).await
}

/// Lets the load tool end sessions through the relay, so all targets see the same workload.
async fn delete_mcp(State(r): State<Arc<Relay>>, headers: HeaderMap) -> Response {
    let mut out = HeaderMap::new();
    if let Some(sid) = headers.get(SESSION_HEADER) {
        out.insert(SESSION_HEADER, sid.clone());
    }
    relay(&r, Method::DELETE, out, Bytes::new()).await
}

async fn relay(r: &Relay, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let answer = match &r.client {
        Client::Hyper(client) => {
            let mut req = axum::http::Request::new(Full::new(body));
            *req.method_mut() = method;
            *req.uri_mut() = r.upstream_uri.clone();
            *req.headers_mut() = headers;
            match client.request(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    body.collect()
                        .await
                        .map(|b| (parts.status, parts.headers, b.to_bytes()))
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Client::Reqwest(client) => {
            let sent = client
                .request(method, r.upstream.clone())
                .headers(headers)
                .body(body)
                .send()
                .await;
            match sent {
                Ok(resp) => {
                    let (status, headers) = (resp.status(), resp.headers().clone());
                    resp.bytes()
                        .await
                        .map(|b| (status, headers, b))
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let (status, headers, body) = match answer {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, e).into_response(),
    };
    let mut out = HeaderMap::new();
    for name in [CONTENT_TYPE.as_str(), SESSION_HEADER] {
        if let Some(v) = headers.get(name) {
            out.insert(name, v.clone());
        }
    }
    (status, out, body).into_response()
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let shape = match args.threads {
        Some(0) => Shape::CurrentThread,
        Some(n) => Shape::WorkStealing(n),
        None if args.work_stealing => Shape::WorkStealing(cpus()),
        None => Shape::PerCore(args.io_threads.unwrap_or_else(cpus)),
    };
    let mut rt = match shape {
        Shape::WorkStealing(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        Shape::CurrentThread | Shape::PerCore(_) => tokio::runtime::Builder::new_current_thread(),
    };
    match rt.enable_all().build() {
        Ok(rt) => rt.block_on(run(args, shape)),
        Err(e) => fail(&format!("cannot start the runtime: {e}")),
    }
}

/// How the relay's work is spread over threads.
#[derive(Clone, Copy)]
enum Shape {
    /// As the gateway (its `server.rs`): one thread accepts, N threads with
    /// a current-thread runtime and an upstream pool each serve the
    /// connections handed to them.
    PerCore(usize),
    /// Tokio's multi-thread runtime with N workers, one pool for all.
    WorkStealing(usize),
    /// Everything on one thread.
    CurrentThread,
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn build_relay(args: &Args) -> Result<Arc<Relay>, String> {
    let client = match args.client {
        ClientKind::Hyper => {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            Client::Hyper(
                hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .pool_max_idle_per_host(1024)
                    .build(connector),
            )
        }
        ClientKind::Reqwest => reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map(Client::Reqwest)
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?,
    };
    let upstream_uri = args
        .upstream
        .as_str()
        .parse::<Uri>()
        .map_err(|e| format!("--upstream is not a URI: {e}"))?;
    Ok(Arc::new(Relay {
        client,
        upstream: args.upstream.clone(),
        upstream_uri,
        prefix: args.strip_prefix.clone(),
    }))
}

fn router(relay: Arc<Relay>) -> Router {
    Router::new()
        .route("/mcp", post(post_mcp).delete(delete_mcp))
        .with_state(relay)
}

async fn run(args: Args, shape: Shape) -> std::process::ExitCode {
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on {}: {e}", args.listen)),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return fail(&format!("no local address: {e}")),
    };
    let stop = async {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    };
    let Shape::PerCore(threads) = shape else {
        let relay = match build_relay(&args) {
            Ok(r) => r,
            Err(e) => return fail(&e),
        };
        println!("http://{addr}/mcp");
        return match axum::serve(listener, router(relay))
            .with_graceful_shutdown(stop)
            .await
        {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => fail(&format!("server failed: {e}")),
        };
    };
    let args = Arc::new(args);
    let mut inboxes = Vec::new();
    for _ in 0..threads.max(1) {
        let (inbox, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<std::net::TcpStream>();
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return fail(&format!("cannot start a runtime: {e}")),
        };
        // Built on its own thread, so its pooled connections are driven there.
        let args = Arc::clone(&args);
        std::thread::spawn(move || {
            rt.block_on(async move {
                let app = match build_relay(&args) {
                    Ok(relay) => router(relay),
                    Err(e) => return eprintln!("bench-relay: {e}"),
                };
                while let Some(tcp) = arrivals.recv().await {
                    let Ok(tcp) = tokio::net::TcpStream::from_std(tcp) else {
                        continue;
                    };
                    let service = TowerToHyperService::new(app.clone());
                    tokio::spawn(async move {
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                    });
                }
            })
        });
        inboxes.push(inbox);
    }
    println!("http://{addr}/mcp");
    let mut stop = std::pin::pin!(stop);
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return std::process::ExitCode::SUCCESS,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let _ = tcp.set_nodelay(true);
        if let Ok(tcp) = tcp.into_std() {
            let _ = inboxes[next % inboxes.len()].send(tcp);
        }
        next = next.wrapping_add(1);
    }
}

fn fail(msg: &str) -> std::process::ExitCode {
    eprintln!("bench-relay: {msg}");
    std::process::ExitCode::FAILURE
}
