//! A downstream session belongs to the principal that created it: under any
//! other principal its id does not exist (404, like an id never issued).

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::gateway::authorized_client;
use crate::support::{counter, McpClient, TestGateway};

/// Sends `method` with `Mcp-Session-Id: sid` as `http`'s principal; status and body.
async fn with_session(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    sid: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = http
        .request(method.clone(), url)
        .header("mcp-session-id", sid)
        .header("accept", "application/json, text/event-stream");
    if method == Method::GET {
        req = req.header("accept", "text/event-stream");
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn another_principal_presenting_a_session_id_gets_404_and_the_owner_carries_on() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let alice = gw.mint("alice", false).await;
    let bob = gw.mint("bob", false).await;
    let mut a = McpClient::connect_as(gw.url("/mcp"), &alice).await;
    assert_eq!(a.counter("counter-increment", json!({"by": 5})).await, 5);
    let sid = a.session.clone().unwrap();
    let inits = up.stats().initializes;
    let unknown = "0123456789abcdef0123456789abcdef";

    let bob_http = authorized_client(&bob);
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "counter-increment", "arguments": {"by": 100}}});
    let url = gw.url("/mcp");
    for (method, body) in [
        (Method::POST, Some(call.clone())),
        (
            Method::POST,
            Some(json!({"jsonrpc": "2.0", "id": 8, "method": "ping"})),
        ),
        (
            Method::POST,
            Some(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
        ),
        (Method::GET, None),
        (Method::DELETE, None),
    ] {
        let theirs = with_session(&bob_http, method.clone(), &url, &sid, body.clone()).await;
        let nobodys = with_session(&bob_http, method.clone(), &url, unknown, body).await;
        assert_eq!(theirs.0, 404, "{method}: {}", theirs.1);
        assert_eq!(
            theirs, nobodys,
            "{method}: indistinguishable from an unknown id"
        );
    }
    // The admin is another principal too: the admin window, not the session id, is its tool.
    let admin = with_session(&gw.http, Method::POST, &url, &sid, Some(call.clone())).await;
    assert_eq!(admin.0, 404);
    // Without credentials the answer is 401 whether or not the id exists.
    let anon = reqwest::Client::new();
    let theirs = with_session(&anon, Method::POST, &url, &sid, Some(call.clone())).await;
    let nobodys = with_session(&anon, Method::POST, &url, unknown, Some(call)).await;
    assert_eq!(theirs.0, 401);
    assert_eq!(theirs, nobodys);

    // Alice's session is untouched: same counter, same upstream session, still open.
    assert_eq!(a.counter("counter-increment", json!({"by": 1})).await, 6);
    assert_eq!(
        up.stats().initializes,
        inits,
        "nobody else reached her upstream session"
    );
    assert_eq!(up.stats().tool_calls, 2);
    // Bob's own sessions work as usual, with their own upstream session.
    let mut b = McpClient::connect_as(gw.url("/mcp"), &bob).await;
    assert_eq!(b.counter("counter-get", json!({})).await, 0);
    assert_eq!(a.delete().await, 200);
    assert_eq!(b.counter("counter-increment", json!({})).await, 1);
}

#[tokio::test]
async fn binding_holds_on_virtual_server_endpoints_and_revoking_a_token_ends_its_sessions() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let inc = gw.tool_id("counter-increment").await;
    let server = gw.create_server("v", &[&inc]).await;
    let endpoint = gw.url(&format!("/servers/{}/mcp", server["id"].as_str().unwrap()));
    let made: Value = gw
        .http
        .post(gw.url("/tokens"))
        .json(&json!({"name": "alice"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alice = made["token"].as_str().unwrap();
    let bob = gw.mint("bob", false).await;
    let mut a = McpClient::connect_as(&endpoint, alice).await;
    assert_eq!(a.counter("counter-increment", json!({})).await, 1);
    let mut stolen = McpClient::with_token(&endpoint, &bob);
    stolen.session = a.session.clone();
    assert_eq!(stolen.request("ping", json!({})).await.status, 404);
    assert_eq!(up.stats().live_sessions, 1);

    let revoked = gw
        .http
        .delete(gw.url(&format!("/tokens/{}", made["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert!(
        gw.app.sessions.is_empty(),
        "the revoked token's session ended"
    );
    assert_eq!(
        up.stats().live_sessions,
        0,
        "and its upstream session closed"
    );
}

#[tokio::test]
async fn legacy_sse_streams_belong_to_the_principal_that_opened_them() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let alice = authorized_client(&gw.mint("alice", false).await);
    let bob = authorized_client(&gw.mint("bob", false).await);
    let mut stream = alice
        .get(gw.url("/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = stream.chunk().await.unwrap().expect("endpoint event");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("endpoint data")
        .to_owned();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let theirs = bob.post(gw.url(&path)).json(&init).send().await.unwrap();
    assert_eq!(theirs.status(), 404, "bob cannot post to alice's stream");
    let unknown = bob
        .post(gw.url("/message?session_id=0123456789abcdef0123456789abcdef"))
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(theirs.text().await.unwrap(), unknown.text().await.unwrap());
    let mine = alice.post(gw.url(&path)).json(&init).send().await.unwrap();
    assert_eq!(mine.status(), 202);
    assert_eq!(
        gw.app.sessions.len(),
        1,
        "only alice's initialize opened a session"
    );
}
