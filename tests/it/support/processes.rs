//! Peer processes for interop tests: a long-running server (killed with its
//! whole process group on drop) and one-shot CLI runs with a hard time limit.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::peers::{node, repo_root};

/// A free loopback port, as the OS hands them out. Another process may take
/// it before the caller binds it: callers retry on a failed start.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Sends `signal` (`TERM`, `HUP`, `KILL`) to `target`: a pid, or `-pgid`
/// for a whole process group. Through the shell's built-in `kill`, not the
/// `kill` binary: that comes with procps, which minimal Debian images lack,
/// and no libc (or `unsafe`) is needed. True when the signal was delivered.
pub fn signal(signal: &str, target: &str) -> bool {
    std::process::Command::new("/bin/sh")
        .args(["-c", r#"kill -s "$0" -- "$1""#, signal, target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Kills a process group (the child started with `process_group(0)`, so its
/// pgid is its pid).
fn kill_group(pid: u32) {
    signal("KILL", &format!("-{pid}"));
}

/// A server process in a process group of its own, output in a temp file,
/// killed (group and all) when dropped — also when a test panics.
pub struct ServerProcess {
    pub name: String,
    child: Child,
    pid: u32,
    log: tempfile::NamedTempFile,
}

impl ServerProcess {
    /// Spawns `program args` with `envs`, stdout and stderr into one temp file.
    pub fn spawn<I, S>(name: &str, program: &Path, args: I, envs: &[(&str, String)]) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let log = tempfile::Builder::new()
            .prefix(&format!("switchyard-{name}-"))
            .suffix(".log")
            .tempfile()
            .expect("temp log file");
        let out = log.reopen().expect("log file");
        let err = log.reopen().expect("log file");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        let pid = child.id().expect("a running child has a pid");
        Self {
            name: name.to_owned(),
            child,
            pid,
            log,
        }
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The last `max` bytes of its output, for failure messages.
    pub fn output_tail(&self, max: usize) -> String {
        let all = self.output();
        let start = all.len().saturating_sub(max);
        let start = (start..=all.len())
            .find(|&i| all.is_char_boundary(i))
            .unwrap_or(all.len());
        all[start..].to_owned()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until `127.0.0.1:port` accepts connections. `Err` (with the
    /// process output) when the process exits first or `limit` passes.
    pub async fn wait_for_port(&mut self, port: u16, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{} exited ({status}) before listening on port {port}:\n{}",
                    self.name,
                    self.output_tail(4000)
                ));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(format!(
                    "{} not listening on port {port} after {limit:?}:\n{}",
                    self.name,
                    self.output_tail(4000)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            kill_group(self.pid);
            let _ = self.child.start_kill();
        }
    }
}

/// `@modelcontextprotocol/server-everything` (the reference server of the
/// MCP project) over Streamable HTTP on a loopback port.
pub struct ServerEverything {
    pub process: ServerProcess,
    pub port: u16,
}

impl ServerEverything {
    /// Starts it on a free port (retrying if another process took the port
    /// first) and waits until it listens. `bind-loopback.cjs` keeps it off
    /// every interface but 127.0.0.1 (it would listen on all of them).
    pub async fn start() -> Self {
        let (node, script) = node("@modelcontextprotocol/server-everything/dist/index.js");
        let preload = repo_root().join("tests/interop/bind-loopback.cjs");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut process = ServerProcess::spawn(
                "server-everything",
                &node,
                [
                    OsStr::new("--require"),
                    preload.as_os_str(),
                    script.as_os_str(),
                    OsStr::new("streamableHttp"),
                ],
                &[("PORT", port.to_string())],
            );
            match process.wait_for_port(port, Duration::from_secs(30)).await {
                Ok(()) => return Self { process, port },
                Err(e) => last = e,
            }
        }
        panic!("server-everything did not start: {last}");
    }

    /// Its MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

/// What a one-shot process run produced.
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args` to completion in a process group of its own, with
/// `envs` added and `PATH` starting with `path_first` (if given); the whole
/// group is killed if it is still running after `limit` (then this panics).
pub async fn run_to_completion<I, S>(
    name: &str,
    program: &Path,
    args: I,
    envs: &[(&str, PathBuf)],
    path_first: Option<&Path>,
    limit: Duration,
) -> RunOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = path_first {
        let old = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&old)),
        )
        .expect("PATH");
        cmd.env("PATH", path);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
    let pid = child.id().expect("a running child has a pid");
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.unwrap_or_else(|e| panic!("{name}: {e}"));
            // Anything it left behind in its group goes too.
            kill_group(pid);
            RunOutput {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            kill_group(pid);
            panic!("{name} still running after {limit:?}; killed");
        }
    }
}
