//! The MCP Inspector's CLI (`@modelcontextprotocol/inspector`, a real Node
//! client nobody here wrote) against Switchyard's `/mcp`, with the counter
//! fixture registered behind it: it lists the federated tools, calls them
//! with arguments, sends custom headers, and is refused a foreign `Origin`.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::peers::node;
use crate::support::processes::{run_to_completion, RunOutput};
use crate::support::{counter, TestGateway};

const LAUNCHER: &str = "@modelcontextprotocol/inspector/clients/launcher/build/index.js";

/// Runs `inspector --cli URL --transport http --header 'Authorization: Bearer
/// TOKEN' ARGS...` with Node 22 first on `PATH` and the Inspector's catalog in
/// `scratch`.
async fn inspector(scratch: &Path, url: &str, token: &str, args: &[&str]) -> RunOutput {
    let (node, launcher) = node(LAUNCHER);
    let auth = format!("Authorization: Bearer {token}");
    let mut argv: Vec<&str> = vec![
        launcher.to_str().expect("utf-8 path"),
        "--cli",
        url,
        "--transport",
        "http",
        "--header",
        &auth,
    ];
    argv.extend_from_slice(args);
    run_to_completion(
        "inspector",
        &node,
        &argv,
        &[("MCP_CATALOG_PATH", scratch.join("catalog.json"))],
        node.parent(),
        Duration::from_secs(60),
    )
    .await
}

/// The JSON the CLI printed on stdout; panics (with both streams) unless it
/// exited 0 with JSON.
fn json_out(what: &str, out: &RunOutput) -> Value {
    assert!(
        out.status.success(),
        "inspector {what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "inspector {what} printed no JSON ({e}):\n--- stdout\n{}\n--- stderr\n{}",
            out.stdout, out.stderr
        )
    })
}

/// The text of a `tools/call` result's single text block.
fn text_of(what: &str, result: &Value) -> String {
    assert_eq!(
        result.get("isError").cloned().unwrap_or(json!(false)),
        json!(false),
        "{what}: {result}"
    );
    let content = result["content"].as_array().expect("content");
    assert_eq!(content.len(), 1, "{what}: {result}");
    assert_eq!(content[0]["type"], json!("text"), "{what}: {result}");
    content[0]["text"].as_str().expect("text").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspector_cli_lists_and_calls_tools_through_the_gateway() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let url = gw.url("/mcp");
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = scratch.path();

    // tools/list, with a custom header on every request.
    let listed = json_out(
        "tools/list",
        &inspector(
            dir,
            &url,
            &gw.token,
            &["--header", "X-Test: value", "--method", "tools/list"],
        )
        .await,
    );
    let tools = listed["tools"].as_array().expect("tools array");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for name in ["counter-increment", "counter-get", "counter-echo"] {
        assert!(names.contains(&name), "{name} not listed: {listed:#}");
    }
    let increment = tools
        .iter()
        .find(|t| t["name"] == "counter-increment")
        .expect("counter-increment");
    assert_eq!(
        increment["inputSchema"]["properties"]["by"]["type"],
        json!("integer"),
        "the upstream's schema comes through unchanged: {increment}"
    );

    // tools/call with a string argument (spaces and non-ASCII included) and the header.
    let text = "hello from the inspector – ✓";
    let echoed = json_out(
        "tools/call counter-echo",
        &inspector(
            dir,
            &url,
            &gw.token,
            &[
                "--header",
                "X-Test: value",
                "--method",
                "tools/call",
                "--tool-name",
                "counter-echo",
                "--tool-arg",
                &format!("text={text}"),
            ],
        )
        .await,
    );
    assert_eq!(text_of("counter-echo", &echoed), text, "{echoed:#}");

    // Each CLI run is a session of its own, so each starts from zero: two
    // runs of increment by 2 both answer 2 (never 4), in text and in
    // structuredContent alike.
    for run in 1..=2 {
        let what = format!("tools/call counter-increment (run {run})");
        let incremented = json_out(
            &what,
            &inspector(
                dir,
                &url,
                &gw.token,
                &[
                    "--method",
                    "tools/call",
                    "--tool-name",
                    "counter-increment",
                    "--tool-arg",
                    "by=2",
                ],
            )
            .await,
        );
        assert_eq!(text_of(&what, &incremented), "2", "{incremented:#}");
        assert_eq!(
            incremented["structuredContent"],
            json!({"value": 2}),
            "{incremented:#}"
        );
    }
    let got = json_out(
        "tools/call counter-get",
        &inspector(
            dir,
            &url,
            &gw.token,
            &["--method", "tools/call", "--tool-name", "counter-get"],
        )
        .await,
    );
    assert_eq!(text_of("counter-get", &got), "0", "{got:#}");

    // A tool nobody offers: the CLI fails and says which.
    let unknown = inspector(
        dir,
        &url,
        &gw.token,
        &["--method", "tools/call", "--tool-name", "counter-nope"],
    )
    .await;
    assert!(
        !unknown.status.success() && unknown.stderr.contains("counter-nope"),
        "unknown tool must fail ({}):\n--- stdout\n{}\n--- stderr\n{}",
        unknown.status,
        unknown.stdout,
        unknown.stderr
    );

    // The CLI's headers really reach the gateway: a foreign Origin is refused
    // (DNS-rebinding protection) with 403, a loopback one is fine.
    let foreign = inspector(
        dir,
        &url,
        &gw.token,
        &[
            "--header",
            "Origin: http://evil.example",
            "--method",
            "tools/list",
        ],
    )
    .await;
    assert!(
        !foreign.status.success()
            && foreign.stderr.contains("403")
            && foreign.stderr.contains("evil.example"),
        "a foreign Origin must get 403 ({}):\n--- stdout\n{}\n--- stderr\n{}",
        foreign.status,
        foreign.stdout,
        foreign.stderr
    );
    let local = json_out(
        "tools/list with a loopback Origin",
        &inspector(
            dir,
            &url,
            &gw.token,
            &[
                "--header",
                "Origin: http://127.0.0.1:9",
                "--method",
                "tools/list",
            ],
        )
        .await,
    );
    assert!(
        local["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "counter-echo")),
        "{local:#}"
    );
}
