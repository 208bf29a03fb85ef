//! Interop peers nobody here wrote (the official Python SDK, ...), installed
//! by `scripts/install-peers.sh` into `target/peers/` on first use.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the installer once per test process (it is idempotent and locked,
/// so parallel test processes are fine too).
fn ensure_installed() -> &'static Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/install-peers.sh"))
            .output()
            .map_err(|e| format!("cannot run scripts/install-peers.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/install-peers.sh failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    })
}

/// The Python interpreter of the venv holding the official `mcp` SDK.
pub fn python() -> PathBuf {
    if let Err(e) = ensure_installed() {
        panic!("interop peers unavailable: {e}");
    }
    repo_root().join("target/peers/py/bin/python")
}

/// The Python interpreter of the venv holding the Python SDK 1.x (FastMCP),
/// for an upstream written with it.
pub fn python_fastmcp() -> PathBuf {
    if let Err(e) = ensure_installed() {
        panic!("interop peers unavailable: {e}");
    }
    repo_root().join("target/peers/py-fastmcp/bin/python")
}

/// Runs a Python interop script with a hard time limit; returns its stdout
/// parsed as JSON, panicking with its stderr on failure.
pub async fn run_python(script: &str, args: &[&str]) -> serde_json::Value {
    let py = python();
    let mut cmd = tokio::process::Command::new(py);
    cmd.arg(repo_root().join(script))
        .args(args)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} {args:?} timed out"))
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}\n{stderr}"))
}

/// The Node 22 binary and the path of a script inside `target/peers/node/node_modules`.
pub fn node(script: &str) -> (PathBuf, PathBuf) {
    if let Err(e) = ensure_installed() {
        panic!("interop peers unavailable: {e}");
    }
    let modules = repo_root().join("target/peers/node/node_modules");
    let node = modules.join("node/bin/node");
    let script = modules.join(script);
    assert!(
        node.exists() && script.exists(),
        "{} or {} missing after install",
        node.display(),
        script.display()
    );
    (node, script)
}

/// The schemathesis CLI in the Python venv. `None` when the peers could not
/// be installed — the caller skips — unless `SWITCHYARD_REQUIRE_PEERS=1`
/// (set by `scripts/test.sh`), which turns their absence into a failure.
pub fn schemathesis() -> Option<PathBuf> {
    let bin = repo_root().join("target/peers/py/bin/schemathesis");
    let missing = match ensure_installed() {
        Ok(()) if bin.exists() => return Some(bin),
        Ok(()) => format!("{} missing after install", bin.display()),
        Err(e) => e.clone(),
    };
    assert!(
        std::env::var("SWITCHYARD_REQUIRE_PEERS").as_deref() != Ok("1"),
        "schemathesis unavailable: {missing}"
    );
    eprintln!("skipping: schemathesis unavailable ({missing}); run scripts/install-peers.sh");
    None
}
