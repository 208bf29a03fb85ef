//! The downstream Streamable HTTP contract: sessions, framing, errors, and
//! virtual-server endpoints.

use serde_json::{json, Value};

use crate::support::{counter, McpClient, TestGateway};

#[tokio::test]
async fn initialize_negotiates_versions_and_issues_unguessable_ids() {
    let gw = TestGateway::start().await;
    let mut ids = Vec::new();
    for (asked, got) in [
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("1999-01-01", "2025-11-25"),
    ] {
        let mut c = gw.client("/mcp");
        let a = c
            .request("initialize", json!({"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}))
            .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body["result"]["protocolVersion"], got);
        assert!(a.body["result"]["capabilities"]["tools"].is_object());
        let sid = c.session.clone().expect("Mcp-Session-Id header");
        assert_eq!(sid.len(), 32, "128 random bits as hex");
        assert!(sid.bytes().all(|b| b.is_ascii_hexdigit()));
        ids.push(sid);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}

#[tokio::test]
async fn session_rules_400_without_id_404_for_unknown_202_for_notifications() {
    let gw = TestGateway::start().await;
    let mut none = gw.client("/mcp");
    let a = none.request("tools/list", json!({})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["code"], -32600);

    let mut bogus = gw.client("/mcp");
    bogus.session = Some("0123456789abcdef0123456789abcdef".into());
    assert_eq!(bogus.request("ping", json!({})).await.status, 404);
    bogus.session = Some("not-even-the-right-shape".into());
    assert_eq!(bogus.request("ping", json!({})).await.status, 404);

    let mut c = gw.connect("/mcp").await;
    assert_eq!(c.notify("notifications/initialized").await, 202);
    let ping = c.request("ping", json!({})).await;
    assert_eq!(ping.status, 200);
    assert_eq!(ping.body["result"], json!({}));
}

#[tokio::test]
async fn unknown_methods_and_tools_get_json_rpc_errors() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    // A 2026-07-28 client probes without a session; it must get -32601 to fall back.
    let mut probe = gw.client("/mcp");
    let d = probe.request("server/discover", json!({})).await;
    assert_eq!(d.body["error"]["code"], -32601, "{}", d.body);

    let mut c = gw.connect("/mcp").await;
    let m = c.request("no/such/method", json!({})).await;
    assert_eq!(m.body["error"]["code"], -32601);
    let t = c
        .request(
            "tools/call",
            json!({"name": "counter-nope", "arguments": {}}),
        )
        .await;
    assert_eq!(t.body["error"]["code"], -32602);
    assert!(
        t.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("counter-nope"),
        "{}",
        t.body
    );
    let p = c.request("tools/call", json!({"arguments": {}})).await;
    assert_eq!(p.body["error"]["code"], -32602);
}

#[tokio::test]
async fn tools_list_merges_gateways_in_a_stable_order_and_calls_relay_results_unchanged() {
    let up1 = counter("one").await;
    let up2 = counter("two").await;
    let gw = TestGateway::start().await;
    gw.register("two", &up2.url()).await;
    gw.register("one", &up1.url()).await;
    let mut c = gw.connect("/mcp").await;
    let list = c.request("tools/list", json!({})).await;
    let names: Vec<&str> = list.body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 10);
    assert!(names.contains(&"one-increment") && names.contains(&"two-increment"));
    let again = c.request("tools/list", json!({})).await;
    assert_eq!(again.body["result"], list.body["result"]);
    // Schemas and other fields pass through.
    let inc = list.body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "one-increment")
        .unwrap();
    assert_eq!(inc["inputSchema"]["properties"]["by"]["type"], "integer");
    assert!(inc["outputSchema"].is_object());
    // isError results are relayed, not turned into protocol errors.
    let fail = c.call("one-fail", json!({})).await;
    assert_eq!(fail["result"]["isError"], true);
    assert_eq!(
        fail["result"]["content"][0]["text"],
        "this tool always fails"
    );
    let echo = c
        .call("two-echo", json!({"text": "héllo \"quoted\"\nnewline"}))
        .await;
    assert_eq!(
        echo["result"]["content"][0]["text"],
        "héllo \"quoted\"\nnewline"
    );
}

#[tokio::test]
async fn sse_only_clients_get_event_streams_and_get_opens_the_session_stream() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let c = gw.connect("/mcp").await;
    let sid = c.session.clone().unwrap();
    let http = gw.http.clone();
    let resp = http
        .post(gw.url("/mcp"))
        .header("mcp-session-id", &sid)
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .body(json!({"jsonrpc": "2.0", "id": "s1", "method": "tools/call", "params": {"name": "counter-increment", "arguments": {"by": 3}}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let data: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    let msg: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(msg["id"], "s1");
    assert_eq!(msg["result"]["structuredContent"]["value"], 3);

    // GET opens a stream that ends when the session is deleted.
    let mut stream = http
        .get(gw.url("/mcp"))
        .header("mcp-session-id", &sid)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.chunk().await.unwrap().is_some());
    let del = http
        .delete(gw.url("/mcp"))
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), stream.chunk()).await;
    assert!(
        matches!(end, Ok(Ok(None))),
        "GET stream must end with its session: {end:?}"
    );
    let no_accept = http
        .get(gw.url("/mcp"))
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(no_accept.status(), 406);
}

#[tokio::test]
async fn unsupported_protocol_version_header_is_rejected() {
    let gw = TestGateway::start().await;
    let c = gw.connect("/mcp").await;
    let resp = gw
        .http
        .post(gw.url("/mcp"))
        .header("mcp-session-id", c.session.as_ref().unwrap())
        .header("mcp-protocol-version", "1999-01-01")
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn virtual_servers_expose_only_their_tools_and_sessions_stay_on_their_endpoint() {
    let up1 = counter("one").await;
    let up2 = counter("two").await;
    let gw = TestGateway::start().await;
    gw.register("one", &up1.url()).await;
    gw.register("two", &up2.url()).await;
    let inc = gw.tool_id("one-increment").await;
    let get = gw.tool_id("one-get").await;
    let server = gw.create_server("only-one", &[&inc, &get]).await;
    let sid = server["id"].as_str().unwrap();
    let endpoint = gw.url(&format!("/servers/{sid}/mcp"));
    let mut v = McpClient::connect_as(&endpoint, &gw.token).await;
    let list = v.request("tools/list", json!({})).await;
    let names: Vec<&str> = list.body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["one-get", "one-increment"]);
    assert_eq!(v.counter("one-increment", json!({"by": 2})).await, 2);
    let hidden = v
        .request(
            "tools/call",
            json!({"name": "two-increment", "arguments": {}}),
        )
        .await;
    assert_eq!(hidden.body["error"]["code"], -32602);

    // The same counter through /mcp is another downstream session: its own upstream session.
    let mut all = gw.connect("/mcp").await;
    assert_eq!(all.counter("one-get", json!({})).await, 0);
    // A session id belongs to the endpoint that created it.
    let mut cross = gw.client("/mcp");
    cross.session = v.session.clone();
    assert_eq!(cross.request("ping", json!({})).await.status, 404);

    let mut missing = gw.client("/servers/0000/mcp");
    let a = missing
        .request("initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}))
        .await;
    assert_eq!(a.status, 404);

    // Deleting the server ends its sessions.
    let del = gw
        .http
        .delete(gw.url(&format!("/servers/{sid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(v.request("ping", json!({})).await.status, 404);
}

#[tokio::test]
async fn batches_are_answered_on_2025_03_26_sessions_and_refused_on_later_ones() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let mut old = gw.client("/mcp");
    let init = old
        .request("initialize", json!({"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}))
        .await;
    assert_eq!(init.body["result"]["protocolVersion"], "2025-03-26");
    let batch = json!([
        {"jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": {"name": "counter-increment", "arguments": {"by": 2}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": "b", "method": "ping"},
        {"jsonrpc": "2.0", "id": "c", "method": "initialize", "params": {}},
    ]);
    let (status, _, text) = old.post_raw(batch.to_string()).await;
    assert_eq!(status, 200, "{text}");
    let answers: Value = serde_json::from_str(&text).unwrap();
    let answers = answers.as_array().unwrap();
    assert_eq!(
        answers.len(),
        3,
        "one answer per request, none for the notification: {text}"
    );
    assert_eq!(answers[0]["id"], "a");
    assert_eq!(answers[0]["result"]["structuredContent"]["value"], 2);
    assert_eq!(answers[1]["result"], json!({}));
    assert_eq!(answers[2]["error"]["code"], -32600);
    let (status, _, _) = old
        .post_raw(json!([{"jsonrpc": "2.0", "method": "notifications/initialized"}]).to_string())
        .await;
    assert_eq!(status, 202);

    let mut new = gw.connect("/mcp").await;
    let (status, _, text) = new
        .post_raw(json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]).to_string())
        .await;
    assert_eq!(status, 400, "{text}");
}

#[tokio::test]
async fn dns_rebinding_protection_checks_origin_and_host() {
    let gw = TestGateway::start().await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let post = |origin: Option<&str>, host: Option<&str>| {
        let mut req = gw.http.post(gw.url("/mcp")).json(&init);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(h) = host {
            req = req.header("host", h);
        }
        req.send()
    };
    assert_eq!(post(None, None).await.unwrap().status(), 200);
    assert_eq!(
        post(Some("http://localhost:6274"), None)
            .await
            .unwrap()
            .status(),
        200
    );
    let evil = post(Some("https://evil.example"), None).await.unwrap();
    assert_eq!(evil.status(), 403);
    let body: Value = evil.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600);
    assert_eq!(
        post(None, Some("evil.example")).await.unwrap().status(),
        403,
        "a rebound DNS name is refused"
    );
    assert_eq!(
        post(None, Some("localhost:4444")).await.unwrap().status(),
        200
    );

    let mut s = switchyard::config::Settings::for_tests();
    s.security.allowed_origins = vec!["https://app.example".into()];
    s.security.allowed_hosts = vec!["gateway.internal".into()];
    let gw2 = TestGateway::start_with(s).await;
    let send = |origin: &str, host: &str| {
        gw2.http
            .post(gw2.url("/mcp"))
            .header("origin", origin)
            .header("host", host)
            .json(&init)
            .send()
    };
    assert_eq!(
        send("https://app.example", "gateway.internal")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send("http://localhost:1", "gateway.internal")
            .await
            .unwrap()
            .status(),
        403,
        "an explicit list replaces the loopback default"
    );
}
