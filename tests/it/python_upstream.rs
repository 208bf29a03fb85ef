//! An upstream written with the official Python SDK (mcp 1.x, FastMCP:
//! stateful Streamable HTTP on uvicorn, every answer an event stream,
//! `tests/interop/py_fastmcp_server.py`) behind the gateway. What a Python
//! server does differently from ours (SSE answers, its own session ids, its
//! DNS-rebinding check, its naming of results) must not show through: each
//! client session gets its own upstream session, reused, and tools, prompts,
//! resources and progress all cross.

use std::ffi::OsStr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::peers::{python_fastmcp, repo_root};
use crate::support::processes::{free_port, ServerProcess};
use crate::support::{McpClient, TestGateway};

struct FastMcp {
    _process: ServerProcess,
    port: u16,
}

impl FastMcp {
    /// Starts it on a free port (retrying if another process took the port
    /// first) and waits until it listens.
    async fn start() -> Self {
        let python = python_fastmcp();
        let script = repo_root().join("tests/interop/py_fastmcp_server.py");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let port_arg = port.to_string();
            let mut process = ServerProcess::spawn(
                "py-fastmcp",
                &python,
                [
                    script.as_os_str(),
                    OsStr::new("--port"),
                    OsStr::new(&port_arg),
                ],
                &[],
            );
            match process.wait_for_port(port, Duration::from_secs(30)).await {
                Ok(()) => {
                    return Self {
                        _process: process,
                        port,
                    }
                }
                Err(e) => last = e,
            }
        }
        panic!("the FastMCP server did not start: {last}");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

/// The text of a tool result's first content item.
fn text(body: &Value) -> &str {
    body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content: {body}"))
}

async fn increment(c: &mut McpClient, by: i64) -> String {
    let body = c.call("py-increment", json!({"by": by})).await;
    assert_eq!(body["result"]["isError"], json!(false), "{body}");
    text(&body).to_owned()
}

/// What the Python server counts: the MCP sessions that called it.
async fn sessions_seen(c: &mut McpClient) -> String {
    text(&c.call("py-sessions", json!({})).await).to_owned()
}

#[tokio::test]
async fn a_python_sdk_server_gets_one_upstream_session_per_client_session_reused() {
    let up = FastMcp::start().await;
    let gw = TestGateway::start().await;
    let g = gw.register("py", &up.url()).await;
    assert_eq!(g["toolCount"], json!(3), "{g}");

    let mut a = gw.connect("/mcp").await;
    let mut b = gw.connect("/mcp").await;
    assert_eq!(increment(&mut a, 2).await, "2");
    assert_eq!(increment(&mut b, 3).await, "3");
    for _ in 0..5 {
        increment(&mut a, 1).await;
    }
    assert_eq!(increment(&mut a, 1).await, "8");
    assert_eq!(increment(&mut b, 1).await, "4");
    // Registration and health checks use sessions of their own, which call
    // no tool: the two client sessions are all the server has seen calling.
    assert_eq!(sessions_seen(&mut a).await, "2");

    let view = gw.get_json("/admin/sessions").await;
    let entries = view["upstreamSessions"]
        .as_array()
        .expect("upstream sessions");
    assert_eq!(entries.len(), 2, "{view}");
    assert_ne!(
        entries[0]["upstream_session_id"], entries[1]["upstream_session_id"],
        "{view}"
    );

    // Ending one client session ends its upstream session only.
    assert_eq!(a.delete().await, 200);
    assert_eq!(increment(&mut b, 1).await, "5");
    let mut c = gw.connect("/mcp").await;
    assert_eq!(increment(&mut c, 1).await, "1");
    assert_eq!(sessions_seen(&mut c).await, "3");
}

#[tokio::test]
async fn a_python_sdk_servers_prompts_resources_and_progress_cross_the_gateway() {
    let up = FastMcp::start().await;
    let gw = TestGateway::start().await;
    gw.register("py", &up.url()).await;
    let mut c = gw.connect("/mcp").await;

    let prompts = c.request("prompts/list", json!({})).await;
    let names: Vec<&str> = prompts.body["result"]["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["py-greet"], "{}", prompts.body);
    let greeting = c
        .request(
            "prompts/get",
            json!({"name": "py-greet", "arguments": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(
        greeting.body["result"]["messages"][0]["content"]["text"],
        json!("Say hello to Ada."),
        "{}",
        greeting.body
    );

    let listed = c.request("resources/list", json!({})).await;
    let uri = listed.body["result"]["resources"][0]["uri"]
        .as_str()
        .unwrap_or_else(|| panic!("no resource: {}", listed.body))
        .to_owned();
    assert_eq!(uri, "switchyard://py/note://welcome");
    let read = c.request("resources/read", json!({"uri": uri})).await;
    assert_eq!(
        read.body["result"]["contents"][0],
        json!({"uri": "switchyard://py/note://welcome", "mimeType": "text/plain", "text": "welcome aboard"}),
        "{}",
        read.body
    );
    let templates = c.request("resources/templates/list", json!({})).await;
    let template = templates.body["result"]["resourceTemplates"][0]["uriTemplate"].clone();
    assert_eq!(
        template,
        json!("switchyard://py/note://{name}"),
        "{}",
        templates.body
    );
    let by_name = c
        .request(
            "resources/read",
            json!({"uri": "switchyard://py/note://ada"}),
        )
        .await;
    assert_eq!(
        by_name.body["result"]["contents"][0]["text"],
        json!("note ada"),
        "{}",
        by_name.body
    );

    // Progress the Python server reports while it works reaches the client,
    // under the client's own token, before the answer.
    let (status, _, stream) = c
        .post_raw(
            json!({"jsonrpc": "2.0", "id": "countdown", "method": "tools/call", "params": {
                "name": "py-countdown", "arguments": {"steps": 3}, "_meta": {"progressToken": "mine"}
            }})
            .to_string(),
        )
        .await;
    assert_eq!(status, 200, "{stream}");
    let messages: Vec<Value> = stream
        .split("\n\n")
        .filter_map(|event| {
            let data: String = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            serde_json::from_str(&data).ok()
        })
        .collect();
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{stream}");
    assert!(
        progress
            .iter()
            .all(|m| m["params"]["progressToken"] == json!("mine")),
        "{stream}"
    );
    assert_eq!(progress[2]["params"]["progress"], json!(3.0), "{stream}");
    let answer = messages.last().expect("an answer");
    assert_eq!(answer["id"], json!("countdown"), "{stream}");
    assert_eq!(text(answer), "liftoff", "{stream}");
}
