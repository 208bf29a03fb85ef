//! OAuth protected-resource metadata (RFC 9728) at `/.well-known/oauth-protected-resource`,
//! served without authentication and named by every 401's challenge.

use serde_json::{json, Value};
use switchyard::config::Settings;

use crate::support::TestGateway;

async fn get(url: String) -> (u16, Value) {
    let resp = reqwest::Client::new().get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn metadata_is_public_and_names_the_resource_and_its_authorization_servers() {
    let mut s = Settings::for_tests();
    s.security.auth.authorization_servers = vec![
        "https://auth.example".into(),
        "https://login.example/tenant".into(),
    ];
    let gw = TestGateway::start_with(s).await;
    let base = format!("http://{}", gw.addr);

    let (status, doc) = get(gw.url("/.well-known/oauth-protected-resource")).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["resource"], base);
    assert_eq!(
        doc["authorization_servers"],
        json!(["https://auth.example", "https://login.example/tenant"])
    );
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));

    // The MCP endpoint's own document, as the 401 on /mcp points to it.
    let refused = reqwest::Client::new()
        .post(gw.url("/mcp"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let url = challenge
        .split("resource_metadata=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no resource_metadata in {challenge}"));
    let (status, doc) = get(url.to_owned()).await;
    assert_eq!(status, 200);
    assert_eq!(doc["resource"], format!("{base}/mcp"));
    assert_eq!(doc["authorization_servers"][0], "https://auth.example");

    let (_, doc) = get(gw.url("/.well-known/oauth-protected-resource/servers/abc/mcp")).await;
    assert_eq!(doc["resource"], format!("{base}/servers/abc/mcp"));
}

#[tokio::test]
async fn a_configured_public_url_is_what_clients_are_told() {
    let mut s = Settings::for_tests();
    s.security.auth.public_url = Some("https://mcp.example.com/".parse().unwrap());
    let gw = TestGateway::start_with(s).await;
    let (_, doc) = get(gw.url("/.well-known/oauth-protected-resource/mcp")).await;
    assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
    assert_eq!(doc["authorization_servers"], json!([]));
    let refused = reqwest::Client::new()
        .get(gw.url("/tools"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource\""
    );
}
