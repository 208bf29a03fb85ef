//! Transports with one inbound message stream: a stdio child process, or a
//! legacy HTTP+SSE server (spec 2024-11-05, basic/transports). Unlike
//! Streamable HTTP, answers do not come back on the request that asked; the
//! session owner matches them by id (see `session::run_multiplexed`).
//!
//! A [`Wire`] is owned by exactly one session task. Its inbound side is a
//! reader task feeding a channel, so the owner's `recv` is cancel-safe.

use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::http::{self, Endpoint};
use super::{Connector, UpstreamError};
use crate::catalog::credentials::UpstreamAuth;
use crate::catalog::{Connection, Transport};
use crate::jsonrpc::{self, Message};
use crate::sse;

/// Bound on one inbound message (a JSON line or an SSE event).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Messages buffered between the reader task and the owner.
const INBOUND_CAPACITY: usize = 256;

/// A reader task that ends with its wire, even when the owner is aborted
/// rather than closed (a detached SSE reader would hold the stream open).
pub struct Reader(JoinHandle<()>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub enum Wire {
    Stdio {
        /// Killed on drop (`kill_on_drop`), so an aborted owner leaves no process.
        child: Child,
        stdin: Option<ChildStdin>,
        readers: Vec<Reader>,
    },
    Sse {
        client: reqwest::Client,
        /// Where messages are POSTed, as announced by the server's `endpoint`
        /// event, with the gateway's credentials.
        post: Endpoint,
        timeout: Duration,
        reader: Reader,
    },
}

impl Wire {
    /// Starts the transport; returns it, the inbound messages, and a label
    /// for the session (child pid, or the server's session id).
    pub async fn open(
        connector: &Connector,
        connection: &Connection,
        gateway_id: &str,
    ) -> Result<(Wire, mpsc::Receiver<Message>, Option<String>), UpstreamError> {
        match connection.transport {
            Transport::Stdio => open_stdio(connection, gateway_id),
            Transport::Sse => open_sse(connector, connection).await,
            Transport::StreamableHttp => Err(UpstreamError::Protocol {
                reason: "Streamable HTTP does not use a multiplexed wire".into(),
            }),
        }
    }

    /// Sends one JSON-RPC message.
    pub async fn send(&mut self, body: String) -> Result<(), UpstreamError> {
        match self {
            Wire::Stdio { stdin, .. } => {
                let Some(stdin) = stdin.as_mut() else {
                    return Err(UpstreamError::Closed);
                };
                // stdio framing: one message per line; compact JSON has no raw newlines.
                let mut line = body.replace('\n', " ");
                line.push('\n');
                stdin
                    .write_all(line.as_bytes())
                    .await
                    .map_err(|e| UpstreamError::Transport {
                        reason: format!("writing to the child: {e}"),
                    })?;
                stdin.flush().await.map_err(|e| UpstreamError::Transport {
                    reason: format!("writing to the child: {e}"),
                })
            }
            Wire::Sse {
                client,
                post,
                timeout,
                ..
            } => {
                let token = http::oauth_token(post).await?;
                let resp = http::with_credentials(client.post(post.url.clone()), post, &token)
                    .header(CONTENT_TYPE, "application/json")
                    .timeout(*timeout)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| UpstreamError::Transport {
                        reason: http::describe(e),
                    })?;
                let status = resp.status();
                if status == reqwest::StatusCode::NOT_FOUND {
                    return Err(UpstreamError::SessionExpired);
                }
                if !status.is_success() {
                    let text = resp.text().await.unwrap_or_default();
                    return Err(UpstreamError::Status {
                        status: status.as_u16(),
                        body: text.chars().take(512).collect(),
                    });
                }
                let _ = resp.bytes().await;
                Ok(())
            }
        }
    }

    /// Ends the transport: a child gets EOF on stdin and `grace` to exit
    /// before it is killed; an SSE stream is dropped.
    pub async fn close(self, grace: Duration) {
        match self {
            Wire::Stdio {
                mut child,
                stdin,
                readers,
            } => {
                drop(stdin);
                if tokio::time::timeout(grace, child.wait()).await.is_err() {
                    if let Err(e) = child.kill().await {
                        tracing::debug!(error = %e, "could not kill a stdio upstream");
                    }
                }
                drop(readers);
            }
            Wire::Sse { reader, .. } => drop(reader),
        }
    }
}

fn open_stdio(
    connection: &Connection,
    gateway_id: &str,
) -> Result<(Wire, mpsc::Receiver<Message>, Option<String>), UpstreamError> {
    let Some(cmd) = &connection.stdio else {
        return Err(UpstreamError::Protocol {
            reason: "STDIO gateway without a command".into(),
        });
    };
    let mut child = tokio::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .envs(&cmd.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| UpstreamError::Transport {
            reason: format!("cannot start {:?}: {e}", cmd.program),
        })?;
    let pid = child.id().map(|p| format!("pid:{p}"));
    let (tx, rx) = mpsc::channel(INBOUND_CAPACITY);
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(Reader(tokio::spawn(read_lines(stdout, tx))));
    }
    if let Some(stderr) = child.stderr.take() {
        let gateway = gateway_id.to_owned();
        let pid_label = pid.clone().unwrap_or_default();
        // The child's stderr is its log: keep it, attributed, in ours.
        readers.push(Reader(tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(gateway = %gateway, child = %pid_label, "upstream stderr: {line}");
            }
        })));
    }
    let stdin = child.stdin.take();
    Ok((
        Wire::Stdio {
            child,
            stdin,
            readers,
        },
        rx,
        pid,
    ))
}

async fn read_lines(stdout: tokio::process::ChildStdout, tx: mpsc::Sender<Message>) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if line.len() > MAX_MESSAGE_BYTES => {
                tracing::warn!("stdio upstream sent an oversized line; ignored");
            }
            Ok(_) => {
                let text = line.trim_ascii();
                if text.is_empty() {
                    continue;
                }
                match jsonrpc::parse_one(text) {
                    Ok(m) => {
                        if tx.send(m).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "ignoring a non-JSON-RPC line from a stdio upstream")
                    }
                }
            }
        }
    }
}

async fn open_sse(
    connector: &Connector,
    connection: &Connection,
) -> Result<(Wire, mpsc::Receiver<Message>, Option<String>), UpstreamError> {
    let (connector, base) = connector.link(connection)?;
    let token = http::oauth_token(&base).await?;
    let resp = http::with_credentials(connector.client.get(base.url.clone()), &base, &token)
        .header(ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| UpstreamError::Transport {
            reason: http::describe(e),
        })?;
    if !resp.status().is_success() {
        return Err(UpstreamError::Status {
            status: resp.status().as_u16(),
            body: String::new(),
        });
    }
    let mut stream = resp.bytes_stream();
    let mut decoder = sse::Decoder::new(MAX_MESSAGE_BYTES);
    let mut queued: Vec<sse::Event> = Vec::new();
    // The first `endpoint` event names the URL to POST messages to.
    let endpoint = tokio::time::timeout(connector.connect_timeout, async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| UpstreamError::Transport {
                reason: http::describe(e),
            })?;
            let events = decoder.feed(&chunk).map_err(|e| UpstreamError::Protocol {
                reason: e.to_string(),
            })?;
            let mut found = None;
            for ev in events {
                if found.is_none() && ev.event.as_deref() == Some("endpoint") {
                    found = Some(ev.data.trim().to_owned());
                } else {
                    queued.push(ev);
                }
            }
            if let Some(e) = found {
                return Ok(e);
            }
        }
        Err(UpstreamError::Protocol {
            reason: "SSE stream ended before announcing its endpoint".into(),
        })
    })
    .await
    .map_err(|_| UpstreamError::Timeout)??;
    let mut post_url = connection
        .url
        .join(&endpoint)
        .map_err(|e| UpstreamError::Protocol {
            reason: format!("bad endpoint {endpoint:?}: {e}"),
        })?;
    // The endpoint must not send our messages to another host.
    if post_url.origin() != connection.url.origin() {
        return Err(UpstreamError::Protocol {
            reason: format!("endpoint {post_url} is on another origin"),
        });
    }
    let label = post_url
        .query_pairs()
        .find(|(k, _)| k == "sessionId" || k == "session_id")
        .map(|(_, v)| v.into_owned());
    if let UpstreamAuth::QueryParam { key, value } = &connection.auth {
        post_url.query_pairs_mut().append_pair(key, value.expose());
    }
    let (tx, rx) = mpsc::channel(INBOUND_CAPACITY);
    let reader = Reader(tokio::spawn(async move {
        let mut pending = queued;
        loop {
            for ev in pending.drain(..) {
                if ev.event.as_deref().is_some_and(|e| e != "message") || ev.data.trim().is_empty()
                {
                    continue;
                }
                match jsonrpc::parse_one(ev.data.as_bytes()) {
                    Ok(m) => {
                        if tx.send(m).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "ignoring an unreadable SSE event"),
                }
            }
            let Some(Ok(chunk)) = stream.next().await else {
                return;
            };
            match decoder.feed(&chunk) {
                Ok(events) => pending = events,
                Err(_) => return,
            }
        }
    }));
    let wire = Wire::Sse {
        client: connector.client.clone(),
        post: Endpoint::new(post_url, base.headers().clone(), base.oauth),
        timeout: connector.request_timeout,
        reader,
    };
    Ok((wire, rx, label))
}
