//! The official MCP conformance suite (`@modelcontextprotocol/conformance`,
//! every server scenario) run against Switchyard: our conformance fixture is
//! registered as a gateway and exposed through a passthrough virtual server,
//! so every scenario crosses the gateway — names, resources, sampling,
//! elicitation, progress, logging, subscriptions, DNS-rebinding checks.
//! The baseline is `tests/conformance-expected-failures.yml` (kept empty).

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use switchyard::config::{AuthMode, Settings};
use switchyard_fixtures::conformance::ConformanceServer;

use crate::support::peers::{node, repo_root};
use crate::support::TestGateway;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_conformance_suite_passes_through_the_gateway() {
    let (node, suite) = node("@modelcontextprotocol/conformance/dist/index.js");
    let upstream = ConformanceServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // The suite's scenarios send no credentials (authorization is not what
    // they test), so this gateway runs with `--auth none`, as the loopback
    // bind permits; everything else, DNS-rebinding checks included, is as usual.
    let mut settings = Settings::for_tests();
    settings.security.auth.mode = AuthMode::None;
    let gw = TestGateway::start_with(settings).await;
    let g = gw.register("conformance", &upstream.url()).await;
    let server: Value = gw
        .http
        .post(gw.url("/servers"))
        .json(&json!({"name": "conformance", "passthrough": true, "gateway_id": g["id"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = gw.url(&format!("/servers/{}/mcp", server["id"].as_str().unwrap()));
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let out_dir = std::env::temp_dir().join(format!("switchyard-gw-conformance-{stamp}"));
    let child = tokio::process::Command::new(&node)
        .arg(&suite)
        .args([
            "server",
            "--url",
            &url,
            "--suite",
            "all",
            "--expected-failures",
        ])
        .arg(repo_root().join("tests/conformance-expected-failures.yml"))
        .arg("-o")
        .arg(&out_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the suite finishes in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "conformance through the gateway failed ({}); checks.json per scenario under {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status,
        out_dir.display()
    );
    // The suite's summary, for the test log.
    eprintln!("{stdout}");
    let _ = std::fs::remove_dir_all(&out_dir);
}
