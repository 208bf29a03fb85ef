//! The official MCP Python SDK (mcp 2.3.0, a peer nobody here wrote) as the
//! client: two sessions through the gateway must see independent counters.

use serde_json::json;

use crate::support::peers::run_python;
use crate::support::{counter, TestGateway};

const SCRIPT: &str = "tests/interop/py_counter_client.py";

async fn check(url: &str, token: &str, mode: &str) {
    let auth = format!("Authorization: Bearer {token}");
    let out = run_python(
        SCRIPT,
        &[
            "--url",
            url,
            "--tool-prefix",
            "counter-",
            "--mode",
            mode,
            "--header",
            &auth,
        ],
    )
    .await;
    assert_eq!(out["a"], json!(5), "{out}");
    assert_eq!(out["b"], json!(3), "{out}");
    assert!(
        out["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("counter-increment")),
        "{out}"
    );
}

#[tokio::test]
async fn python_sdk_sessions_are_isolated_on_mcp_and_virtual_server_endpoints() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let inc = gw.tool_id("counter-increment").await;
    let get = gw.tool_id("counter-get").await;
    let server = gw.create_server("py", &[&inc, &get]).await;
    let virtual_url = gw.url(&format!("/servers/{}/mcp", server["id"].as_str().unwrap()));
    let before = up.stats().initializes;
    for mode in ["legacy", "auto"] {
        check(&gw.url("/mcp"), &gw.token, mode).await;
        check(&virtual_url, &gw.token, mode).await;
    }
    // Four runs of two sessions each, one upstream session per downstream session.
    let initializes = up.stats().initializes - before;
    if initializes != 8 {
        // Seen once in a full suite run and not reproduced: say where the
        // extra upstream sessions came from (acquires, evictions, probes).
        let metrics = gw.metrics_text().await;
        let upstream: Vec<&str> = metrics
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains("upstream"))
            .collect();
        panic!("{initializes} upstream initializes, expected 8; gateway metrics:\n{upstream:#?}");
    }
    assert_eq!(
        up.stats().live_sessions,
        0,
        "the SDK's DELETEs closed every upstream session"
    );
}
