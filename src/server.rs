//! Accepting client connections and serving them on per-core event loops.
//!
//! One task accepts; each accepted connection is handed, round-robin, to one
//! of `io_threads` threads, each running its own single-threaded tokio
//! runtime, and lives there until it closes: its requests, the upstream
//! POSTs they make (on that thread's own keep-alive pool, see
//! `upstream/plain.rs`) and the answers all run on one thread.
//!
//! Why not tokio's work-stealing runtime for this: on it, a request wakes
//! the task driving its pooled upstream connection, which may sit on the
//! other worker, and every request body wakes an idle worker to look for
//! work (hyper's body channel wakes the connection's own task, and tokio
//! treats that as a yield). Those cross-thread wake-ups cost a system call
//! and a cache refill each. Side by side on the 2-core bench machine, the
//! gateway on this shape made 13-16 % more calls per second at 64 concurrent
//! than on the work-stealing runtime, and answered a sequential call 23 µs
//! sooner (bench/RESULTS.md). What is given up is stealing: a thread busy with a
//! heavy request delays the other connections it carries. Nothing on a
//! request's path blocks a thread (the catalog is read from memory; SQLite
//! runs on its own threads), so that costs little.
//!
//! Everything else (background upkeep, signals, the catalog's writes) stays
//! on the runtime `serve` is called from. Tasks a request spawns (an upstream
//! session's owner task, an event stream) run on that request's thread, and
//! the threads outlive every connection: they stop only after the upstream
//! sessions are closed, so no session task is dropped mid-close.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::lifecycle;

thread_local! {
    /// Which I/O thread this is; `None` on every other thread.
    static IO_THREAD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the I/O thread the caller runs on, if it runs on one.
pub fn io_thread() -> Option<usize> {
    IO_THREAD.with(Cell::get)
}

/// Work each I/O thread does on itself every so often, also while idle: for
/// what only the thread itself can do, such as the binary's allocator
/// collecting the thread's heap (`src/main.rs`).
#[derive(Clone, Copy, Debug)]
pub struct ThreadUpkeep {
    pub every: Duration,
    pub run: fn(),
}

/// Serves until `app.shutdown` is cancelled, then shuts down within bounds:
/// in-flight requests get the shutdown grace period to finish, then every
/// upstream session is closed in parallel (each bounded by the same grace).
pub async fn serve(listener: TcpListener, app: Arc<App>) -> std::io::Result<()> {
    serve_with(listener, app, None).await
}

/// [`serve`], with `upkeep` run on each I/O thread.
pub async fn serve_with(
    listener: TcpListener,
    app: Arc<App>,
    upkeep: Option<ThreadUpkeep>,
) -> std::io::Result<()> {
    let grace = app.settings.timeouts.shutdown;
    let background = TaskTracker::new();
    lifecycle::spawn(&app, &background);
    let connections = TaskTracker::new();
    let threads = IoThreads::start(&app, &connections, upkeep)?;
    accept(&listener, &threads, &app.shutdown).await;
    // Stop accepting at once: a closed listener refuses new connections
    // instead of queueing them for a server that will not answer.
    drop(listener);
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "requests still in flight after the grace period; dropped"
        );
    }
    let closed = app.registry.close_all().await;
    tracing::info!(
        upstream_sessions_closed = closed,
        "upstream sessions closed"
    );
    app.catalog.close().await;
    threads.stop().await;
    Ok(())
}

/// Accepts until `stop` is cancelled.
async fn accept(listener: &TcpListener, threads: &IoThreads, stop: &CancellationToken) {
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, _)) => {
                // No Nagle delay: an SSE answer is a series of small writes
                // (progress, log lines, then the response), each of which a
                // client should see at once.
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
                }
                threads.hand_over(next, tcp);
                next = next.wrapping_add(1);
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of file descriptors, most likely: accepting again at
                // once would spin; give closing connections a moment.
                tracing::error!(error = %e, "accept failed; pausing for a second");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Errors that concern one connection, not the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// The I/O threads and the way to hand each a connection.
struct IoThreads {
    inboxes: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl IoThreads {
    fn start(
        app: &Arc<App>,
        connections: &TaskTracker,
        upkeep: Option<ThreadUpkeep>,
    ) -> std::io::Result<IoThreads> {
        let count = app.settings.io_threads.max(1);
        let mut inboxes = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (inbox, arrivals) = mpsc::unbounded_channel();
            let work = run_io_thread(arrivals, Arc::clone(app), connections.clone(), upkeep);
            let thread = std::thread::Builder::new()
                .name(format!("switchyard-io-{index}"))
                .spawn(move || {
                    IO_THREAD.with(|c| c.set(Some(index)));
                    runtime.block_on(work);
                    // Not a plain drop, which would wait for every blocking
                    // task (a name lookup stuck on a dead DNS server, say)
                    // and so unbound the shutdown.
                    runtime.shutdown_background();
                })?;
            inboxes.push(inbox);
            threads.push(thread);
        }
        Ok(IoThreads { inboxes, threads })
    }

    fn hand_over(&self, turn: usize, tcp: TcpStream) {
        // A tokio socket belongs to the runtime that registered it; the
        // receiving thread registers it with its own.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::debug!(error = %e, "cannot hand over an accepted connection");
                return;
            }
        };
        let inbox = &self.inboxes[turn % self.inboxes.len()];
        if inbox.send(tcp).is_err() {
            tracing::warn!("an I/O thread has stopped; connection dropped");
        }
    }

    /// Ends the threads (after their connections and sessions are done with)
    /// and waits for them, so nothing they own outlives `serve`.
    async fn stop(self) {
        drop(self.inboxes);
        let threads = self.threads;
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("an I/O thread panicked");
                }
            }
        });
        if joined.await.is_err() {
            tracing::error!("cannot wait for the I/O threads");
        }
    }
}

/// One I/O thread: serves each connection it is handed until its inbox closes.
async fn run_io_thread(
    mut arrivals: mpsc::UnboundedReceiver<std::net::TcpStream>,
    app: Arc<App>,
    connections: TaskTracker,
    upkeep: Option<ThreadUpkeep>,
) {
    if let Some(upkeep) = upkeep {
        // Ends with the thread's runtime; not tracked with the connections,
        // which shutdown waits for.
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(upkeep.every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                (upkeep.run)();
            }
        });
    }
    // Built once per thread; each connection then costs an `Arc` clone of it.
    let router = app.router();
    while let Some(tcp) = arrivals.recv().await {
        let tcp = match TcpStream::from_std(tcp) {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::debug!(error = %e, "cannot take over an accepted connection");
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        connections.spawn(serve_connection(tcp, service, app.shutdown.clone()));
    }
}

/// Serves one connection (HTTP/1.1, or HTTP/2 when the client opens with
/// its preface) until it closes; on shutdown, finishes the requests in
/// flight and closes, as a graceful HTTP server does.
async fn serve_connection(
    tcp: TcpStream,
    service: TowerToHyperService<axum::Router>,
    stop: CancellationToken,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(e) = served {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            return;
        }
        _ = stop.cancelled() => connection.as_mut().graceful_shutdown(),
    }
    if let Err(e) = connection.await {
        tracing::trace!(error = %e, "connection ended with an error during shutdown");
    }
}
