//! One live upstream MCP session: a cheap, cloneable [`UpstreamSession`]
//! handle in front of an owner task.
//!
//! The task owns everything about the session's life: its id, its in-flight
//! requests (in a `JoinSet`, so they die with it) and its ending (the upstream
//! DELETE). Callers only send commands. A request that finds the session dead
//! (transport failure, upstream 404) ends the task; the handle then reports
//! closed and the registry builds a fresh session on the next call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::http::{self, Endpoint};
use super::wire::Wire;
use super::{Connector, Reply, UpstreamError};
use crate::catalog::{Connection, Transport};
use crate::interim;
use crate::jsonrpc::{self, Message};
use crate::mcp;

/// What was agreed with the upstream at `initialize`.
#[derive(Debug)]
pub struct SessionInfo {
    pub gateway_id: String,
    /// `None` when the upstream runs without sessions.
    pub upstream_session_id: Option<String>,
    pub protocol_version: String,
    pub init_result: Box<RawValue>,
}

/// Receives what an upstream sends on its own (its GET stream): log lines,
/// resource updates, list changes, requests to the client.
pub type OnMessage = Arc<dyn Fn(Message) + Send + Sync>;

/// One request to send on a session.
pub struct Call {
    pub method: String,
    pub params: Option<Box<RawValue>>,
    /// Added to this one POST only (e.g. `traceparent`), never to the session.
    pub headers: HeaderMap,
    /// Where messages the upstream interleaves before its answer go
    /// (progress, logging, its own requests such as sampling); dropped when `None`.
    pub interim: Option<interim::Sender<Message>>,
}

impl Call {
    pub fn new(method: &str, params: Option<Box<RawValue>>) -> Call {
        Call {
            method: method.to_owned(),
            params,
            headers: HeaderMap::new(),
            interim: None,
        }
    }
}

enum Command {
    Request {
        id: u64,
        /// Boxed: channels allocate slots of the largest variant, per session.
        call: Box<Call>,
        reply: oneshot::Sender<Result<Reply, UpstreamError>>,
    },
    /// A notification or a response of ours (to a request the upstream sent).
    Post {
        body: String,
        reply: oneshot::Sender<Result<(), UpstreamError>>,
    },
}

/// Handle to a live upstream session. Cloning is one reference count (a
/// call clones it twice: out of the registry and into the in-flight table);
/// the session lives until its [`SessionTask`] is closed or it fails.
#[derive(Clone)]
pub struct UpstreamSession {
    shared: Arc<Handle>,
}

struct Handle {
    commands: mpsc::Sender<Command>,
    info: Arc<SessionInfo>,
    /// Request ids are chosen by the caller's handle so a caller can name its
    /// request later (to cancel it) without asking the task.
    next_id: AtomicU64,
    /// How long a caller waits for an answer.
    timeout: Duration,
    /// The `logging/setLevel` this session was last given, so it is sent once.
    log_level: std::sync::Mutex<Option<String>>,
    /// Streamable HTTP: each request is its own POST, so callers send it
    /// from their own task instead of through the owner (two channel hops
    /// and a spawn less per call). The owner keeps the session's life: its
    /// GET stream and its DELETE. A caller that sees the session fail has
    /// the registry discard it.
    direct: Option<Direct>,
}

struct Direct {
    connector: Connector,
    endpoint: Endpoint,
}

/// The owner task of a session; held by exactly one owner (the registry, or
/// a per-call user), which closes it.
pub struct SessionTask {
    stop: CancellationToken,
    join: JoinHandle<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The task ended within the grace period.
    Closed,
    /// It did not; it was aborted.
    Aborted,
}

impl UpstreamSession {
    fn new(handle: Handle) -> Self {
        Self {
            shared: Arc::new(handle),
        }
    }

    /// Runs the `initialize` handshake and starts the owner task.
    pub async fn connect(
        connector: &Connector,
        gateway_id: &str,
        connection: &Connection,
        init_params: &RawValue,
        on_message: Option<OnMessage>,
    ) -> Result<(UpstreamSession, SessionTask), UpstreamError> {
        // Names are checked by the client's resolver on every connection;
        // IP literals are never resolved, so they are checked here.
        connector
            .egress
            .check_host(connection.url.host_str().unwrap_or_default())
            .map_err(|e| UpstreamError::Transport {
                reason: format!("refused by the SSRF guard: {e}"),
            })?;
        if connection.transport != Transport::StreamableHttp {
            return connect_multiplexed(connector, gateway_id, connection, init_params, on_message)
                .await;
        }
        let (linked, base) = connector.link(connection)?;
        let connector = &linked;
        let body = jsonrpc::request_body(0, "initialize", Some(init_params));
        let mut ignore = |m: Message| {
            tracing::debug!(?m, "upstream message before initialize completed; ignored")
        };
        let answer = http::request(
            connector.via(),
            &base,
            &HeaderMap::new(),
            0,
            body,
            connector.connect_timeout,
            &mut ignore,
        )
        .await?;
        let upstream_session_id = answer.session_id().map(str::to_owned);
        let (result, version) = accept_initialize(answer.reply)?;
        let endpoint = base.with_session(upstream_session_id.as_deref(), &version);
        let initialized = jsonrpc::notification_body("notifications/initialized", None);
        http::notify(
            connector.via(),
            &endpoint,
            initialized,
            connector.connect_timeout,
        )
        .await?;

        let info = Arc::new(SessionInfo {
            gateway_id: gateway_id.to_owned(),
            upstream_session_id,
            protocol_version: version,
            init_result: result,
        });
        let (tx, rx) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let direct = Direct {
            connector: connector.clone(),
            endpoint: endpoint.clone(),
        };
        let owner = Owner {
            connector: connector.clone(),
            endpoint,
            info: info.clone(),
            commands: rx,
            stop: stop.clone(),
            on_message,
        };
        let join = tokio::spawn(owner.run());
        Ok((
            UpstreamSession::new(Handle {
                commands: tx,
                info,
                next_id: AtomicU64::new(1),
                timeout: connector.request_timeout,
                log_level: std::sync::Mutex::default(),
                direct: Some(direct),
            }),
            SessionTask { stop, join },
        ))
    }

    pub fn info(&self) -> &Arc<SessionInfo> {
        &self.shared.info
    }

    /// False once the owner task has ended (closed, failed or aborted).
    pub fn is_open(&self) -> bool {
        !self.shared.commands.is_closed()
    }

    /// Whether both handles lead to the same session.
    pub fn same_session(&self, other: &UpstreamSession) -> bool {
        self.shared.commands.same_channel(&other.shared.commands)
    }

    /// Sends a request and waits for the upstream's answer.
    pub async fn request(
        &self,
        method: &str,
        params: Option<Box<RawValue>>,
    ) -> Result<Reply, UpstreamError> {
        self.call(self.next_request_id(), Call::new(method, params))
            .await
    }

    /// The log level last sent on this session.
    pub fn log_level(&self) -> Option<String> {
        self.shared
            .log_level
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the log level being sent on this session.
    pub fn set_log_level(&self, level: &str) {
        *self
            .shared
            .log_level
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(level.to_owned());
    }

    /// Reserves the id the next [`call`](Self::call) will be sent with.
    pub fn next_request_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `call` as request `id` and waits for the upstream's answer.
    pub async fn call(&self, id: u64, call: Call) -> Result<Reply, UpstreamError> {
        if let Some(direct) = &self.shared.direct {
            return self.call_direct(direct, id, call).await;
        }
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Request {
                id,
                call: Box::new(call),
                reply,
            })
            .await
            .map_err(|_| UpstreamError::Closed)?;
        // A dropped sender means the task ended (failed, closed, aborted) mid-request.
        match tokio::time::timeout(self.shared.timeout, answer).await {
            Ok(answer) => answer.map_err(|_| UpstreamError::Closed)?,
            Err(_) => Err(UpstreamError::Timeout),
        }
    }

    async fn call_direct(
        &self,
        direct: &Direct,
        id: u64,
        call: Call,
    ) -> Result<Reply, UpstreamError> {
        if !self.is_open() {
            return Err(UpstreamError::Closed);
        }
        let Call {
            method,
            params,
            headers,
            interim,
        } = call;
        let body = jsonrpc::request_body(id, &method, params.as_deref());
        let mut on_other = |m: Message| match &interim {
            Some(sink) => {
                sink.send(m);
            }
            None => tracing::debug!(
                ?m,
                "upstream message on a request stream with nobody to relay it to"
            ),
        };
        let connector = &direct.connector;
        http::request(
            connector.via(),
            &direct.endpoint,
            &headers,
            id,
            body,
            connector.request_timeout,
            &mut on_other,
        )
        .await
        .map(|a| a.reply)
    }

    /// POSTs a notification, or a response to a request the upstream sent.
    pub async fn post(&self, body: String) -> Result<(), UpstreamError> {
        if let Some(direct) = &self.shared.direct {
            if !self.is_open() {
                return Err(UpstreamError::Closed);
            }
            let connector = &direct.connector;
            return http::notify(
                connector.via(),
                &direct.endpoint,
                body,
                connector.request_timeout,
            )
            .await;
        }
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Post { body, reply })
            .await
            .map_err(|_| UpstreamError::Closed)?;
        answer.await.map_err(|_| UpstreamError::Closed)?
    }
}

impl SessionTask {
    /// Asks the task to end the session (DELETE upstream) and waits up to
    /// `grace`; a task still running then is aborted.
    pub async fn close(self, grace: Duration) -> CloseOutcome {
        self.stop.cancel();
        let mut join = self.join;
        match tokio::time::timeout(grace, &mut join).await {
            Ok(_) => CloseOutcome::Closed,
            Err(_) => {
                join.abort();
                CloseOutcome::Aborted
            }
        }
    }
}

struct Owner {
    connector: Connector,
    endpoint: Endpoint,
    info: Arc<SessionInfo>,
    commands: mpsc::Receiver<Command>,
    stop: CancellationToken,
    on_message: Option<OnMessage>,
}

enum Exit {
    Stopped,
    Failed(UpstreamError),
}

impl Owner {
    async fn run(mut self) {
        let mut inflight: JoinSet<Option<UpstreamError>> = JoinSet::new();
        // The GET stream lives as long as this task; dropping the handle set aborts it.
        let mut listener = JoinSet::new();
        if let Some(on_message) = self.on_message.take() {
            listener.spawn(listen_while_open(
                self.connector.clone(),
                self.endpoint.clone(),
                on_message,
            ));
        }
        let exit = loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break Exit::Stopped,
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    if let Ok(Some(fatal)) = done {
                        break Exit::Failed(fatal);
                    }
                }
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Request { id, call, reply }) => {
                        let call = *call;
                        let body = jsonrpc::request_body(id, &call.method, call.params.as_deref());
                        inflight.spawn(send_request(self.connector.clone(), self.endpoint.clone(), call.headers, id, body, call.interim, reply));
                    }
                    Some(Command::Post { body, reply }) => {
                        let connector = self.connector.clone();
                        let endpoint = self.endpoint.clone();
                        inflight.spawn(async move {
                            let result = http::notify(connector.via(), &endpoint, body, connector.request_timeout).await;
                            let fatal = match &result {
                                Err(e) if e.ends_session() => Some(e.clone()),
                                _ => None,
                            };
                            let _ = reply.send(result);
                            fatal
                        });
                    }
                    // Every handle is gone: nobody can use the session again.
                    None => break Exit::Stopped,
                },
            }
        };
        // Stop accepting commands first so handles see "closed" at once, then
        // drop in-flight requests: their callers get `Closed`, not a hang.
        self.commands.close();
        inflight.abort_all();
        let expired = matches!(exit, Exit::Failed(UpstreamError::SessionExpired));
        if let Exit::Failed(e) = &exit {
            tracing::info!(gateway = %self.info.gateway_id, error = %e, "upstream session failed; discarded");
        }
        if !expired && self.info.upstream_session_id.is_some() {
            let deleted = http::delete(
                &self.connector.client,
                &self.endpoint,
                self.connector.close_timeout,
            )
            .await;
            if let Err(e) = deleted {
                tracing::debug!(gateway = %self.info.gateway_id, error = %e, "upstream DELETE failed");
            }
        }
    }
}

/// Keeps the upstream's GET stream open, reconnecting with backoff, until
/// the upstream says it has none. Runs under the owner task, which aborts it.
async fn listen_while_open(connector: Connector, endpoint: Endpoint, on_message: OnMessage) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let started = std::time::Instant::now();
        match http::listen(&connector.client, &endpoint, on_message.as_ref()).await {
            http::Listened::Unavailable => return,
            http::Listened::Ended => {}
        }
        // A stream that stayed up a while earns a fast reconnect.
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(250);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Checks an `initialize` answer: its result, and a protocol version we speak.
fn accept_initialize(reply: Reply) -> Result<(Box<RawValue>, String), UpstreamError> {
    let result = reply.0.map_err(|e| UpstreamError::Initialize {
        message: e.get().to_owned(),
    })?;
    let parsed: Value =
        serde_json::from_str(result.get()).map_err(|e| UpstreamError::Protocol {
            reason: format!("initialize result: {e}"),
        })?;
    let version = parsed
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !mcp::UPSTREAM_VERSIONS.contains(&version.as_str()) {
        return Err(UpstreamError::Initialize {
            message: format!(
                "upstream chose protocol version {version:?}, which the gateway does not speak"
            ),
        });
    }
    Ok((result, version))
}

/// Opens a stdio or legacy-SSE session: start the wire, run the handshake on
/// it, then hand it to its owner task.
async fn connect_multiplexed(
    connector: &Connector,
    gateway_id: &str,
    connection: &Connection,
    init_params: &RawValue,
    on_message: Option<OnMessage>,
) -> Result<(UpstreamSession, SessionTask), UpstreamError> {
    let (mut wire, mut inbound, label) = Wire::open(connector, connection, gateway_id).await?;
    let handshake = async {
        wire.send(jsonrpc::request_body(0, "initialize", Some(init_params)))
            .await?;
        loop {
            match inbound.recv().await {
                Some(Message::Response(r)) if r.id.get() == "0" => return Ok(Reply(r.outcome)),
                Some(other) => tracing::debug!(
                    ?other,
                    "upstream message before initialize completed; ignored"
                ),
                None => {
                    return Err(UpstreamError::Transport {
                        reason: "upstream closed before answering initialize".into(),
                    })
                }
            }
        }
    };
    let reply = match tokio::time::timeout(connector.connect_timeout, handshake).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => {
            wire.close(Duration::ZERO).await;
            return Err(e);
        }
        Err(_) => {
            wire.close(Duration::ZERO).await;
            return Err(UpstreamError::Timeout);
        }
    };
    let (result, version) = match accept_initialize(reply) {
        Ok(v) => v,
        Err(e) => {
            wire.close(Duration::ZERO).await;
            return Err(e);
        }
    };
    wire.send(jsonrpc::notification_body(
        "notifications/initialized",
        None,
    ))
    .await?;
    let info = Arc::new(SessionInfo {
        gateway_id: gateway_id.to_owned(),
        upstream_session_id: label,
        protocol_version: version,
        init_result: result,
    });
    let (tx, rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let join = tokio::spawn(run_multiplexed(
        wire,
        inbound,
        rx,
        stop.clone(),
        on_message,
        Arc::clone(&info),
        connector.close_timeout,
    ));
    let session = UpstreamSession::new(Handle {
        commands: tx,
        info,
        next_id: AtomicU64::new(1),
        timeout: connector.request_timeout,
        log_level: std::sync::Mutex::default(),
        direct: None,
    });
    Ok((session, SessionTask { stop, join }))
}

/// A request waiting for its answer on a multiplexed wire.
struct Waiting {
    reply: oneshot::Sender<Result<Reply, UpstreamError>>,
    interim: Option<interim::Sender<Message>>,
    /// `params._meta.progressToken`, as JSON text, to route progress to it.
    progress_token: Option<String>,
}

/// The owner of a stdio or legacy-SSE session. Answers are matched to
/// requests by id. Other messages belong to the request they name (a
/// progress token) or, when exactly one request is waiting, to that one;
/// otherwise they go to `on_message` like anything sent out of the blue.
async fn run_multiplexed(
    mut wire: Wire,
    mut inbound: mpsc::Receiver<Message>,
    mut commands: mpsc::Receiver<Command>,
    stop: CancellationToken,
    on_message: Option<OnMessage>,
    info: Arc<SessionInfo>,
    grace: Duration,
) {
    let mut waiting: HashMap<u64, Waiting> = HashMap::new();
    let failure = loop {
        // Callers that gave up (timeout, disconnect) no longer need a slot.
        waiting.retain(|_, w| !w.reply.is_closed());
        tokio::select! {
            biased;
            _ = stop.cancelled() => break None,
            cmd = commands.recv() => match cmd {
                None => break None,
                Some(Command::Request { id, call, reply }) => {
                    let call = *call;
                    let progress_token = call
                        .params
                        .as_deref()
                        .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
                        .and_then(|p| p.pointer("/_meta/progressToken").map(Value::to_string));
                    let body = jsonrpc::request_body(id, &call.method, call.params.as_deref());
                    if let Err(e) = wire.send(body).await {
                        let _ = reply.send(Err(e.clone()));
                        break Some(e);
                    }
                    waiting.insert(id, Waiting { reply, interim: call.interim, progress_token });
                }
                Some(Command::Post { body, reply }) => {
                    let sent = wire.send(body).await;
                    let fatal = sent.as_ref().err().filter(|e| e.ends_session()).cloned();
                    let _ = reply.send(sent);
                    if let Some(e) = fatal {
                        break Some(e);
                    }
                }
            },
            msg = inbound.recv() => match msg {
                None => break Some(UpstreamError::Transport { reason: "upstream closed its stream".into() }),
                Some(Message::Response(r)) => {
                    let id = r.id.get().trim_matches('"').parse::<u64>().ok();
                    match id.and_then(|id| waiting.remove(&id)) {
                        Some(w) => {
                            let _ = w.reply.send(Ok(Reply(r.outcome)));
                        }
                        None => tracing::debug!(gateway = %info.gateway_id, "answer to no waiting request ignored"),
                    }
                }
                Some(other) => route_inbound(other, &waiting, on_message.as_ref()),
            },
        }
    };
    if let Some(e) = &failure {
        tracing::info!(gateway = %info.gateway_id, error = %e, "upstream session failed; discarded");
    }
    // Waiting callers see `Closed` at once, not after the wire is down.
    drop(waiting);
    commands.close();
    wire.close(grace).await;
}

fn route_inbound(m: Message, waiting: &HashMap<u64, Waiting>, on_message: Option<&OnMessage>) {
    let token = match &m {
        Message::Notification(n) if n.method == "notifications/progress" => n
            .params
            .as_deref()
            .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
            .and_then(|p| p.get("progressToken").map(Value::to_string)),
        _ => None,
    };
    let owner = match token {
        Some(t) => waiting
            .values()
            .find(|w| w.progress_token.as_deref() == Some(t.as_str())),
        None if waiting.len() == 1 => waiting.values().next(),
        None => None,
    };
    match (owner.and_then(|w| w.interim.as_ref()), on_message) {
        (Some(sink), _) => {
            sink.send(m);
        }
        (None, Some(deliver)) => deliver(m),
        (None, None) => tracing::debug!(?m, "upstream message with nobody to relay it to"),
    }
}

async fn send_request(
    connector: Connector,
    endpoint: Endpoint,
    headers: HeaderMap,
    id: u64,
    body: String,
    interim: Option<interim::Sender<Message>>,
    reply: oneshot::Sender<Result<Reply, UpstreamError>>,
) -> Option<UpstreamError> {
    let mut on_other = |m: Message| match &interim {
        // A caller that went away drops its receiver; nothing else to do.
        Some(sink) => {
            sink.send(m);
        }
        None => tracing::debug!(
            ?m,
            "upstream message on a request stream with nobody to relay it to"
        ),
    };
    let result = http::request(
        connector.via(),
        &endpoint,
        &headers,
        id,
        body,
        connector.request_timeout,
        &mut on_other,
    )
    .await
    .map(|a| a.reply);
    let fatal = match &result {
        Err(e) if e.ends_session() => Some(e.clone()),
        _ => None,
    };
    // The caller may have gone away; that is not the session's problem.
    let _ = reply.send(result);
    fatal
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that ignores its stop signal is aborted once the grace is over:
    /// one stuck session cannot stall a shutdown.
    #[tokio::test]
    async fn close_aborts_a_task_that_ignores_its_stop_signal() {
        let stop = CancellationToken::new();
        let join = tokio::spawn(std::future::pending::<()>());
        let task = SessionTask { stop, join };
        let started = std::time::Instant::now();
        assert_eq!(
            task.close(Duration::from_millis(100)).await,
            CloseOutcome::Aborted
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn close_waits_for_a_task_that_honours_its_stop_signal() {
        let stop = CancellationToken::new();
        let seen = stop.clone();
        let join = tokio::spawn(async move { seen.cancelled().await });
        let task = SessionTask { stop, join };
        assert_eq!(
            task.close(Duration::from_secs(5)).await,
            CloseOutcome::Closed
        );
    }
}
