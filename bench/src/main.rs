//! `switchyard-bench`: flags, signals and output for the load tool. All
//! measuring lives in the library (`switchyard_bench::Load`).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use switchyard_bench::{Load, LoadConfig, Stop};

/// Load tool for MCP Streamable HTTP servers and gateways.
///
/// Opens --sessions sessions (initialize, notifications/initialized), then
/// --concurrency workers call --tool on them round-robin until --calls calls
/// or --duration seconds, after --warmup seconds of unrecorded calls. Then
/// --cold-start fresh sessions measure initialize → first tools/call result.
/// Answers may be JSON or SSE. A JSON-RPC error or an `isError: true` result
/// counts as an error. Prints a table, or one JSON object with --json.
///
/// Hold mode (--hold SECONDS): every session first makes one call (so behind
/// a gateway each holds a live upstream session), the measured phase runs if
/// --calls or --duration is given, the report is printed, and then the
/// sessions stay open until SECONDS pass, SIGINT/SIGTERM arrives, or stdin
/// (a pipe or terminal) closes.
///
/// Side by side (--target, twice or more, instead of --url and --tool): every
/// target gets its own sessions, then the targets take turns in slices of
/// --slice seconds until each has run --duration seconds, so they are
/// measured in the same minutes of a machine whose speed drifts. One report
/// per target, tagged target=NAME.
///
/// Example: switchyard-bench --url http://127.0.0.1:4444/mcp --tool bench-echo
/// --args '{"text":"hello"}' --sessions 64 --concurrency 64 --duration 5
#[derive(Parser, Debug)]
#[command(name = "switchyard-bench", version, verbatim_doc_comment)]
struct Cli {
    /// Streamable HTTP endpoint, e.g. http://127.0.0.1:4444/mcp
    #[arg(long, required_unless_present = "targets", conflicts_with = "targets")]
    url: Option<String>,
    /// Tool to call.
    #[arg(long, required_unless_present = "targets", conflicts_with = "targets")]
    tool: Option<String>,
    /// A target measured side by side with the others,
    /// NAME,URL,TOOL[,WATCH=PID...][,header=NAME: VALUE...] (repeatable; WATCH=PID
    /// as for --watch, counted in this target's turns only; header= as for
    /// --header, sent to this target only).
    #[arg(
        long = "target",
        value_name = "NAME,URL,TOOL[,WATCH=PID][,header=H: V]",
        id = "targets",
        requires = "duration",
        conflicts_with_all = ["hold", "calls"]
    )]
    targets: Vec<String>,
    /// Seconds per turn with --target.
    #[arg(long, value_parser = seconds, default_value = "0.25")]
    slice: Duration,
    /// Tool arguments, a JSON object.
    #[arg(long, default_value = "{}")]
    args: String,
    /// Extra request header "Name: value" (repeatable), e.g. 'Authorization: Bearer TOKEN'.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Downstream sessions to open.
    #[arg(long, default_value_t = 1)]
    sessions: usize,
    /// Concurrent workers, each with one call in flight (also the connection pool size).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Sessions opened, primed and deleted at once [default: --concurrency].
    #[arg(long)]
    open_concurrency: Option<usize>,
    /// Stop after this many measured calls (bounded by --max-time).
    #[arg(long, conflicts_with = "duration")]
    calls: Option<u64>,
    /// Stop after this many seconds [default: 5 unless --calls or --hold].
    #[arg(long, value_parser = seconds)]
    duration: Option<Duration>,
    /// Seconds of unrecorded calls before measuring.
    #[arg(long, value_parser = seconds, default_value = "1")]
    warmup: Duration,
    /// One unrecorded call per session before measuring (implied by --hold).
    #[arg(long)]
    prime: bool,
    /// Fresh sessions used to measure cold start (0 skips it).
    #[arg(long, default_value_t = 5)]
    cold_start: usize,
    /// DELETE every session at the end.
    #[arg(long)]
    delete: bool,
    /// After measuring, keep the sessions open this many seconds (see above).
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    hold: Option<Duration>,
    /// Seconds one request may take before it counts as an error.
    #[arg(long, value_parser = seconds, default_value = "30")]
    timeout: Duration,
    /// Upper bound in seconds on the measured phase with --calls.
    #[arg(long, value_parser = seconds, default_value = "600")]
    max_time: Duration,
    /// Protocol version offered in initialize.
    #[arg(long, default_value = "2025-11-25")]
    protocol_version: String,
    /// Label copied into the report, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// Report the CPU time process PID used during the measured phase, NAME=PID (repeatable).
    #[arg(long = "watch", value_name = "NAME=PID")]
    watch: Vec<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Tokio worker threads [default: number of CPUs].
    #[arg(long)]
    threads: Option<usize>,
}

fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    Duration::try_from_secs_f64(v)
        .map_err(|_| format!("{s:?} is not a non-negative number of seconds"))
}

/// One target of a side-by-side run: name, URL, tool, its own watched
/// processes and headers.
struct Target {
    name: String,
    url: String,
    tool: String,
    watch: Vec<(String, u32)>,
    headers: Vec<(String, String)>,
}

fn parse_target(spec: &str) -> Result<Target, String> {
    let mut parts = spec.split(',');
    let mut next = |what: &str| {
        parts
            .next()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("--target {spec:?}: missing {what} (NAME,URL,TOOL[,WATCH=PID])"))
    };
    let (name, url, tool) = (next("NAME")?, next("URL")?, next("TOOL")?);
    let (mut watch, mut headers) = (Vec::new(), Vec::new());
    for part in parts {
        match part.trim().strip_prefix("header=") {
            Some(h) => headers.push(parse_header(h)?),
            None => watch.push(parse_watch(part)?),
        }
    }
    Ok(Target {
        name,
        url,
        tool,
        watch,
        headers,
    })
}

fn parse_header(h: &str) -> Result<(String, String), String> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| format!("header {h:?}: expected \"Name: value\""))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

fn parse_watch(w: &str) -> Result<(String, u32), String> {
    w.split_once('=')
        .and_then(|(n, p)| Some((n.trim().to_owned(), p.trim().parse::<u32>().ok()?)))
        .ok_or_else(|| format!("watch {w:?}: expected NAME=PID"))
}

fn config(cli: &Cli, url: &str, tool: &str) -> Result<LoadConfig, String> {
    let arguments: serde_json::Value =
        serde_json::from_str(&cli.args).map_err(|e| format!("--args is not JSON: {e}"))?;
    let headers = cli
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tags = BTreeMap::new();
    for t in &cli.tags {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| format!("--tag {t:?}: expected KEY=VALUE"))?;
        tags.insert(k.to_owned(), v.to_owned());
    }
    let watch = cli
        .watch
        .iter()
        .map(|w| parse_watch(w))
        .collect::<Result<Vec<_>, _>>()?;
    let stop = match (cli.calls, cli.duration) {
        (Some(n), _) => Stop::Calls(n),
        (None, Some(d)) => Stop::Duration(d),
        // Hold mode measures nothing unless asked to.
        (None, None) if cli.hold.is_some() => Stop::Calls(0),
        (None, None) => Stop::Duration(Duration::from_secs(5)),
    };
    let mut cfg = LoadConfig::new(url, tool);
    cfg.arguments = arguments;
    cfg.headers = headers;
    cfg.sessions = cli.sessions;
    cfg.concurrency = cli.concurrency;
    cfg.open_concurrency = cli.open_concurrency.unwrap_or(0);
    cfg.stop = stop;
    cfg.warmup = if stop == Stop::Calls(0) {
        Duration::ZERO
    } else {
        cli.warmup
    };
    cfg.prime = cli.prime || cli.hold.is_some();
    cfg.cold_start = cli.cold_start;
    cfg.delete = cli.delete;
    cfg.request_timeout = cli.timeout;
    cfg.max_time = cli.max_time;
    cfg.protocol_version = cli.protocol_version.clone();
    cfg.tags = tags;
    cfg.watch = watch;
    Ok(cfg)
}

/// SIGINT or SIGTERM cancels `token`. Every phase after that is bounded, so
/// the tool still exits by itself.
fn watch_signals(token: CancellationToken) {
    tokio::spawn(async move {
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
        token.cancel();
    });
}

/// Cancels `token` when stdin reaches EOF, but only for a pipe or terminal:
/// a background job's stdin is /dev/null, which is at EOF from the start.
fn watch_stdin(token: CancellationToken) {
    let stdin = std::io::stdin();
    let is_pipe = {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata("/proc/self/fd/0")
            .map(|m| m.file_type().is_fifo() || m.file_type().is_socket())
            .unwrap_or(false)
    };
    if !(is_pipe || stdin.is_terminal()) {
        return;
    }
    // A plain thread: a blocking read inside the runtime would hold up its shutdown.
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut lock = stdin.lock();
        while matches!(lock.read(&mut buf), Ok(n) if n > 0) {}
        token.cancel();
    });
}

/// Prints a report as a table, or as one line of JSON with --json.
fn print(report: &switchyard_bench::Report, json: bool) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    // The table ends with its own newline; the JSON object is one line.
    let text = if json {
        serde_json::to_string(report).map_err(|e| e.to_string())? + "\n"
    } else {
        report.to_string()
    };
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| format!("cannot write the report: {e}"))
}

/// --target mode: every target opened (and primed) first, measured in
/// turns, then closed.
async fn run_side_by_side(cli: Cli) -> Result<bool, String> {
    let targets = cli
        .targets
        .iter()
        .map(|t| parse_target(t))
        .collect::<Result<Vec<_>, _>>()?;
    if targets.len() < 2 {
        return Err("--target needs at least two targets (use --url and --tool for one)".into());
    }
    // The reports are told apart by name only.
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].iter().any(|u| u.name == t.name) {
            return Err(format!("--target name {:?} is used twice", t.name));
        }
    }
    let cancel = CancellationToken::new();
    watch_signals(cancel.clone());
    let mut loads = Vec::with_capacity(targets.len());
    for t in &targets {
        let mut cfg = config(&cli, &t.url, &t.tool)?;
        cfg.watch.extend(t.watch.iter().cloned());
        cfg.headers.extend(t.headers.iter().cloned());
        cfg.tags.insert("target".to_owned(), t.name.clone());
        cfg.cancel = cancel.clone();
        match Load::open(cfg).await {
            Ok(load) => loads.push(load),
            Err(e) => {
                for load in loads {
                    load.discard().await;
                }
                return Err(format!("target {}: {e}", t.name));
            }
        }
    }
    let mut reports = switchyard_bench::measure_interleaved(&loads, cli.slice).await;
    let mut ok = true;
    for (load, report) in loads.into_iter().zip(reports.iter_mut()) {
        load.close(report).await;
        ok &= report.errors == 0 && report.prime_errors == 0;
    }
    for report in &reports {
        if !cli.json {
            println!(
                "== {}",
                report.tags.get("target").map_or("", String::as_str)
            );
        }
        print(report, cli.json)?;
    }
    Ok(ok)
}

async fn run(cli: Cli) -> Result<bool, String> {
    if !cli.targets.is_empty() {
        return run_side_by_side(cli).await;
    }
    let (Some(url), Some(tool)) = (cli.url.as_deref(), cli.tool.as_deref()) else {
        return Err("--url and --tool are required".into());
    };
    let cfg = config(&cli, url, tool)?;
    let cancel = cfg.cancel.clone();
    watch_signals(cancel.clone());
    // Holding ends on its own token so stdin closing never cuts the measured phase short.
    let hold_end = CancellationToken::new();
    if cli.hold.is_some() {
        let hold_end = hold_end.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            hold_end.cancel();
        });
    }
    let load = Load::open(cfg).await.map_err(|e| e.to_string())?;
    let mut report = load.measure().await;
    let print = |report: &switchyard_bench::Report| print(report, cli.json);
    if let Some(max) = cli.hold {
        // The report line is the "ready" signal for scripts sampling memory.
        print(&report)?;
        eprintln!(
            "holding {} sessions for up to {:.0} s (until SIGINT/SIGTERM or stdin closes)",
            load.session_count(),
            max.as_secs_f64()
        );
        watch_stdin(hold_end.clone());
        load.hold(max, &hold_end).await;
        load.close(&mut report).await;
        if report.deleted + report.delete_errors > 0 {
            eprintln!(
                "deleted {} sessions, {} errors",
                report.deleted, report.delete_errors
            );
        }
    } else {
        load.close(&mut report).await;
        print(&report)?;
    }
    Ok(report.errors == 0 && report.prime_errors == 0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        // Errors are in the report; a distinct code lets scripts notice without parsing it.
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("switchyard-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
