//! The MCP project's reference server (`@modelcontextprotocol/server-everything`,
//! a real Node process) behind the gateway, driven by the official Python SDK
//! (`tests/interop/py_everything_client.py`): two client sessions at once, each
//! answering the server's own requests (sampling, elicitation) with
//! session-specific content and following a long-running tool's progress.
//! Every answer and every progress notification must reach the session it
//! belongs to, and only that one. A second test does the same with roots:
//! server-everything asks for them on its own (on its GET stream, not in
//! answer to a call), so they cross the gateway's GET-stream relay.

use serde_json::{json, Value};

use crate::support::peers::run_python;
use crate::support::processes::ServerEverything;
use crate::support::TestGateway;

const SCRIPT: &str = "tests/interop/py_everything_client.py";

/// Tools server-everything lists to a client that declared sampling,
/// elicitation and roots (as the gateway's registration does); the
/// trigger-* ones exist only for such clients.
const EXPECTED_TOOLS: [&str; 6] = [
    "echo",
    "get-sum",
    "trigger-long-running-operation",
    "trigger-sampling-request",
    "trigger-elicitation-request",
    "get-roots-list",
];

fn other(label: &str) -> &'static str {
    if label == "A" {
        "B"
    } else {
        "A"
    }
}

/// What one session of the script saw, judged against what it alone should see.
fn check_session(out: &Value, label: &str, prefix: &str, roots: bool) {
    let me = &out["sessions"][label];
    let them = other(label);
    let ctx = || format!("session {label}:\n{me:#}");

    for tool in ["trigger-sampling-request", "trigger-elicitation-request"] {
        assert!(
            me["tools"]
                .as_array()
                .is_some_and(|t| t.contains(&json!(format!("{prefix}{tool}")))),
            "{prefix}{tool} not listed; {}",
            ctx()
        );
    }

    // Sampling: this session got exactly its own server request, and the
    // tool result carries exactly its own answer.
    let sampling = &me["sampling"];
    assert_eq!(sampling["error"], Value::Null, "{}", ctx());
    assert_eq!(sampling["is_error"], json!(false), "{}", ctx());
    let requests = sampling["requests"].as_array().expect("sampling requests");
    assert_eq!(
        requests.len(),
        1,
        "one sampling/createMessage per call; {}",
        ctx()
    );
    let asked = requests[0]["texts"].to_string();
    assert!(asked.contains(&format!("prompt-from-{label}")), "{}", ctx());
    assert!(!asked.contains(&format!("prompt-from-{them}")), "{}", ctx());
    let result = sampling["result"].as_str().expect("sampling result text");
    assert!(
        result.contains(&format!("answer-from-{label}"))
            && result.contains(&format!("model-{label}")),
        "the sampling answer of this session must come back in its result; {}",
        ctx()
    );

    // Elicitation: same.
    let elicitation = &me["elicitation"];
    assert_eq!(elicitation["error"], Value::Null, "{}", ctx());
    assert_eq!(elicitation["is_error"], json!(false), "{}", ctx());
    assert_eq!(
        elicitation["requests"].as_array().map(Vec::len),
        Some(1),
        "one elicitation/create per call; {}",
        ctx()
    );
    let result = elicitation["result"]
        .as_str()
        .expect("elicitation result text");
    assert!(
        result.contains(&format!("- Name: name-from-{label}")),
        "the elicitation answer of this session must come back in its result; {}",
        ctx()
    );

    // Progress: every step of this session's operation (its `total` names
    // it: the two sessions use different step counts), increasing.
    let lro = &me["long_running"];
    assert_eq!(lro["error"], Value::Null, "{}", ctx());
    assert_eq!(lro["is_error"], json!(false), "{}", ctx());
    let steps = lro["steps"].as_f64().expect("steps");
    assert!(
        lro["result"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("Steps: {steps}"))),
        "{}",
        ctx()
    );
    let progress: Vec<(f64, Option<f64>)> = lro["progress"]
        .as_array()
        .expect("progress list")
        .iter()
        .map(|p| (p[0].as_f64().expect("progress"), p[1].as_f64()))
        .collect();
    assert!(
        progress.len() >= 2,
        "at least two progress notifications; {}",
        ctx()
    );
    assert!(
        progress.windows(2).all(|w| w[0].0 < w[1].0),
        "progress must increase; {}",
        ctx()
    );
    assert!(
        progress.iter().all(|&(_, total)| total == Some(steps)),
        "every progress notification must be this session's (total {steps}); {}",
        ctx()
    );
    assert_eq!(
        progress.iter().map(|p| p.0).collect::<Vec<_>>(),
        (1..=steps as i64).map(|i| i as f64).collect::<Vec<_>>(),
        "every step's progress arrives, in order, before the result; {}",
        ctx()
    );

    if roots {
        // Roots: asked for by the server itself; this session's root, only.
        let rec = &me["roots"];
        assert_eq!(rec["error"], Value::Null, "{}", ctx());
        assert_eq!(rec["is_error"], json!(false), "{}", ctx());
        assert!(
            rec["requests"].as_array().is_some_and(|r| !r.is_empty()),
            "the server's roots/list must reach this session; {}",
            ctx()
        );
        let result = rec["result"].as_str().expect("get-roots-list result text");
        assert!(
            result.contains("(1 total)")
                && result.contains(&format!("root-from-{label}"))
                && result.contains(&format!("file:///roots/{label}")),
            "get-roots-list must report this session's root; {}",
            ctx()
        );
    }

    // Nothing of the other session anywhere in this one's record.
    let all = me.to_string();
    for foreign in [
        format!("root-from-{them}"),
        format!("file:///roots/{them}"),
        format!("prompt-from-{them}"),
        format!("answer-from-{them}"),
        format!("model-{them}"),
        format!("name-from-{them}"),
    ] {
        assert!(
            !all.contains(&foreign),
            "{foreign} crossed into session {label}; {}",
            ctx()
        );
    }
}

fn check(out: &Value, prefix: &str, roots: bool) {
    assert_eq!(out["protocol_version"], json!("2025-11-25"), "{out}");
    check_session(out, "A", prefix, roots);
    check_session(out, "B", prefix, roots);
}

/// The script against server-everything directly: the peer and the script
/// agree without a gateway in between, so a failure through the gateway is
/// the gateway's.
async fn check_direct(everything: &ServerEverything, roots: bool) {
    let url = everything.url();
    let mut args = vec!["--url", &url, "--tool-prefix", "", "--mode", "legacy"];
    if roots {
        args.push("--roots");
    }
    let out = run_python(SCRIPT, &args).await;
    check(&out, "", roots);
}

/// Registers server-everything as gateway "everything" and checks that
/// `GET /tools` lists its tools under their exposed names.
async fn register(gw: &TestGateway, everything: &ServerEverything) {
    let registered = gw.register("everything", &everything.url()).await;
    let tools: Value = gw
        .http
        .get(gw.url("/tools"))
        .send()
        .await
        .expect("GET /tools")
        .json()
        .await
        .expect("json");
    let names: Vec<String> = tools
        .as_array()
        .expect("tool list")
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    for tool in EXPECTED_TOOLS {
        let exposed = format!("everything-{tool}");
        assert!(
            names.contains(&exposed),
            "{exposed} missing from GET /tools: {names:?}\nregistration: {registered}\nserver-everything output (tail):\n{}",
            everything.process.output_tail(4000)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_sampling_elicitation_and_progress_stay_in_their_session() {
    let everything = ServerEverything::start().await;
    check_direct(&everything, false).await;

    let gw = TestGateway::start().await;
    register(&gw, &everything).await;
    let url = gw.url("/mcp");
    let auth = format!("Authorization: Bearer {}", gw.token);
    for mode in ["legacy", "auto"] {
        let out = run_python(
            SCRIPT,
            &[
                "--url",
                &url,
                "--tool-prefix",
                "everything-",
                "--mode",
                mode,
                "--header",
                &auth,
            ],
        )
        .await;
        check(&out, "everything-", false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_roots_requests_reach_their_own_session() {
    let everything = ServerEverything::start().await;
    check_direct(&everything, true).await;

    let gw = TestGateway::start().await;
    register(&gw, &everything).await;
    let auth = format!("Authorization: Bearer {}", gw.token);
    let out = run_python(
        SCRIPT,
        &[
            "--url",
            &gw.url("/mcp"),
            "--tool-prefix",
            "everything-",
            "--mode",
            "legacy",
            "--roots",
            "--header",
            &auth,
        ],
    )
    .await;
    check(&out, "everything-", true);
}
