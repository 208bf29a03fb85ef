//! The real `switchyard` binary: flags, config file, persistence, signals.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{counter, McpClient};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Starts `switchyard serve` with JSON logs and returns it with its bound address.
async fn start(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(["--port", "0", "--log-format", "json"])
        .args(args)
        .env("SWITCHYARD_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn switchyard");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read log") {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Some(a) = v["address"].as_str() {
                return a.to_owned();
            }
        }
        panic!("switchyard exited before listening");
    })
    .await
    .expect("switchyard starts within 30 s");
    // Keep draining the logs so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

async fn terminate(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits within 15 s of SIGTERM")
        .expect("wait")
}

#[tokio::test]
async fn serve_registers_declared_gateways_persists_and_stops_on_sigterm() {
    let up = counter("counter").await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("catalog.db").display());
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!("[[gateways]]\nname = \"counter\"\nurl = \"{}\"\n", up.url()),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let (child, addr) = start(&["--database-url", &db, "--config", config]).await;
    let http = reqwest::Client::new();
    let gws: Value = http
        .get(format!("http://{addr}/gateways"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(gws[0]["name"], "counter");
    let mut c = McpClient::connect(format!("http://{addr}/mcp")).await;
    assert_eq!(c.counter("counter-increment", json!({"by": 2})).await, 2);
    assert_eq!(up.stats().live_sessions, 1);
    let status = terminate(child).await;
    assert!(status.success(), "{status}");
    assert_eq!(
        up.stats().live_sessions,
        0,
        "shutdown closed the upstream session"
    );

    // The catalog survives a restart; a declared gateway is not registered twice.
    let (child, addr) = start(&["--database-url", &db, "--config", config]).await;
    let gws: Value = http
        .get(format!("http://{addr}/gateways"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(gws.as_array().unwrap().len(), 1);
    let tools: Value = http
        .get(format!("http://{addr}/tools"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tools.as_array().unwrap().len(), 5);
    assert!(terminate(child).await.success());
}

#[tokio::test]
async fn env_vars_configure_and_bad_config_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("env.db").display());
    let mut child = Command::new(BIN)
        .args(["serve", "--log-format", "json"])
        .env("SWITCHYARD_PORT", "0")
        .env("SWITCHYARD_DATABASE_URL", &db)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(line.contains("listening"), "{line}");
    assert!(
        dir.path().join("env.db").exists(),
        "SQLite file created from SWITCHYARD_DATABASE_URL"
    );
    child.kill().await.unwrap();

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "prot = 4444\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", bad.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown field") && err.contains("prot"),
        "{err}"
    );

    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--host",
        "--port",
        "--database-url",
        "--config",
        "--log-format",
        "SWITCHYARD_PORT",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[tokio::test]
async fn sighup_applies_a_changed_config_file_and_keeps_serving() {
    let a = counter("a").await;
    let b = counter("b").await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("catalog.db").display());
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!("[[gateways]]\nname = \"a\"\nurl = \"{}\"\n", a.url()),
    )
    .unwrap();
    let (child, addr) = start(&["--database-url", &db, "--config", config.to_str().unwrap()]).await;
    let http = reqwest::Client::new();
    // One API-registered gateway, which reload must leave alone.
    let api = http
        .post(format!("http://{addr}/gateways"))
        .json(&json!({"name": "api", "url": b.url()}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 201);
    let mut c = McpClient::connect(format!("http://{addr}/mcp")).await;
    c.counter("a-increment", json!({})).await;
    c.counter("api-increment", json!({})).await;
    assert_eq!(a.stats().live_sessions, 1);

    std::fs::write(
        &config,
        format!("[[gateways]]\nname = \"b\"\nurl = \"{}\"\n", b.url()),
    )
    .unwrap();
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await
        .unwrap()
        .success());
    let names = || async {
        let gws: Value = http
            .get(format!("http://{addr}/gateways"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut n: Vec<String> = gws
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while names().await != ["api", "b"] && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(names().await, ["api", "b"]);
    assert_eq!(
        a.stats().live_sessions,
        0,
        "the removed gateway's session closed"
    );
    // Reload closed every upstream session; the downstream session lives on.
    assert_eq!(
        c.counter("api-get", json!({})).await,
        0,
        "rebuilt lazily after reload"
    );
    assert_eq!(c.counter("b-increment", json!({})).await, 1);
    assert!(terminate(child).await.success());
}
