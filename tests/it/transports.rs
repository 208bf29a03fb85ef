//! STDIO and legacy HTTP+SSE upstreams: same registry, same isolation as
//! Streamable HTTP. STDIO runs our counter fixture as a child per upstream
//! session; SSE runs the official `server-everything` in its `sse` mode.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::peers::{node, repo_root};
use crate::support::TestGateway;

/// The fixture binary, built on demand (it belongs to another package of the
/// workspace, so cargo does not build it for this test crate by itself).
fn fixture_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let bin = dir.join("switchyard-fixture");
    if !bin.exists() {
        let built = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "switchyard-fixtures",
                "--bin",
                "switchyard-fixture",
            ])
            .current_dir(repo_root())
            .status()
            .expect("cargo build runs");
        assert!(built.success(), "building switchyard-fixture failed");
    }
    bin
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[tokio::test]
async fn stdio_upstreams_get_one_child_per_session_killed_with_it() {
    let gw = TestGateway::start().await;
    let resp = gw
        .http
        .post(gw.url("/gateways"))
        .json(&json!({
            "name": "local",
            "transport": "STDIO",
            "command": fixture_binary(),
            "args": ["--stdio", "--name", "local"],
            "env": {"FIXTURE_SECRET": "s3cret"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let g: Value = resp.json().await.unwrap();
    assert_eq!(g["transport"], "STDIO");
    assert_eq!(
        g["env"]["FIXTURE_SECRET"], "*****",
        "env values are not shown"
    );
    let mut a = gw.connect("/mcp").await;
    let mut b = gw.connect("/mcp").await;
    for _ in 0..3 {
        a.counter("local-increment", json!({})).await;
    }
    b.counter("local-increment", json!({"by": 10})).await;
    assert_eq!(a.counter("local-get", json!({})).await, 3);
    assert_eq!(b.counter("local-get", json!({})).await, 10);

    let view: Value = gw.get_json("/admin/sessions").await;
    let pids: Vec<u32> = view["upstreamSessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            e["upstream_session_id"]
                .as_str()?
                .strip_prefix("pid:")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(pids.len(), 2, "one child per downstream session: {view}");
    let a_pid = view["upstreamSessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["downstream_session_id"] == a.session.clone().unwrap().as_str())
        .and_then(|e| {
            e["upstream_session_id"]
                .as_str()?
                .strip_prefix("pid:")?
                .parse::<u32>()
                .ok()
        })
        .unwrap();
    assert!(pid_alive(a_pid));
    assert_eq!(a.delete().await, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(a_pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!pid_alive(a_pid), "the child ends with its session");
    assert_eq!(
        b.counter("local-get", json!({})).await,
        10,
        "the other session's child lives on"
    );
}

#[tokio::test]
async fn a_stdio_command_that_cannot_start_is_a_clear_502() {
    let gw = TestGateway::start().await;
    let resp = gw
        .http
        .post(gw.url("/gateways"))
        .json(&json!({"name": "nope", "transport": "STDIO", "command": "/nonexistent/mcp-server"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("cannot start"),
        "{body}"
    );
    let missing = gw
        .http
        .post(gw.url("/gateways"))
        .json(&json!({"name": "x", "transport": "STDIO"}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 422);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"][1], "command");
}

/// `server-everything` in its legacy SSE mode, on a free loopback port.
struct Everything {
    child: tokio::process::Child,
    url: String,
}

impl Everything {
    async fn start_sse() -> Everything {
        let (node, script) = node("@modelcontextprotocol/server-everything/dist/index.js");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = tokio::process::Command::new(node)
            .arg("--require")
            .arg(repo_root().join("tests/interop/bind-loopback.cjs"))
            .arg(script)
            .arg("sse")
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("running on port") {
                    return;
                }
            }
            panic!("server-everything exited before listening");
        })
        .await
        .expect("server-everything starts within 30 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Everything {
            child,
            url: format!("http://127.0.0.1:{port}/sse"),
        }
    }
}

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn legacy_sse_upstreams_work_through_the_gateway() {
    let everything = Everything::start_sse().await;
    let gw = TestGateway::start().await;
    let resp = gw
        .http
        .post(gw.url("/gateways"))
        .json(&json!({"name": "everything", "url": everything.url, "transport": "SSE"}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let g: Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{g}");
    assert!(g["toolCount"].as_u64().unwrap() > 3, "{g}");
    let mut a = gw.connect("/mcp").await;
    let mut b = gw.connect("/mcp").await;
    let (ra, rb) = tokio::join!(
        a.call("everything-echo", json!({"message": "from A"})),
        b.call("everything-echo", json!({"message": "from B"}))
    );
    assert_eq!(ra["result"]["content"][0]["text"], "Echo: from A", "{ra}");
    assert_eq!(rb["result"]["content"][0]["text"], "Echo: from B", "{rb}");
    let again = a.call("everything-echo", json!({"message": "again"})).await;
    assert_eq!(again["result"]["content"][0]["text"], "Echo: again");
    let prompts = a.request("prompts/list", json!({})).await;
    assert!(
        !prompts.body["result"]["prompts"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{}",
        prompts.body
    );
    let view: Value = gw.get_json("/admin/sessions").await;
    let entries = view["upstreamSessions"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        2,
        "one upstream SSE session per downstream session: {view}"
    );
    assert_ne!(
        entries[0]["upstream_session_id"],
        entries[1]["upstream_session_id"]
    );
}
