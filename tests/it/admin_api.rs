//! The REST API, on ContextForge's contract: `/gateways`, `/tools`, `/servers`.

use serde_json::{json, Value};

use crate::support::{counter, TestGateway};

async fn send(
    gw: &TestGateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = gw.http.request(method, gw.url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn registering_a_gateway_discovers_its_tools() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    let (status, g) = send(
        &gw,
        reqwest::Method::POST,
        "/gateways",
        Some(json!({"name": "My Counter", "url": up.url(), "transport": "STREAMABLEHTTP", "description": "d", "tags": ["a"]})),
    )
    .await;
    assert_eq!(status, 201, "{g}");
    for field in [
        "id",
        "name",
        "slug",
        "url",
        "transport",
        "enabled",
        "reachable",
        "createdAt",
    ] {
        assert!(!g[field].is_null(), "missing {field}: {g}");
    }
    assert_eq!(g["slug"], "my-counter");
    assert_eq!(g["reachable"], true);
    assert_eq!(g["toolCount"], 5);
    assert_eq!(up.stats().live_sessions, 0, "discovery closes its session");

    let (_, tools) = send(&gw, reqwest::Method::GET, "/tools", None).await;
    let inc = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["originalName"] == "increment")
        .unwrap();
    assert_eq!(inc["name"], "my-counter-increment");
    assert_eq!(inc["gatewayId"], g["id"]);
    assert_eq!(inc["gatewaySlug"], "my-counter");
    assert_eq!(inc["inputSchema"]["type"], "object");
    let (status, one) = send(
        &gw,
        reqwest::Method::GET,
        &format!("/tools/{}", inc["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(
        (status, &one["name"]),
        (200, &json!("my-counter-increment"))
    );

    // Same API under /v1.
    let (status, list) = send(&gw, reqwest::Method::GET, "/v1/gateways", None).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["id"], g["id"]);
}

#[tokio::test]
async fn registration_errors_409_502_422_store_nothing() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let (status, body) = send(
        &gw,
        reqwest::Method::POST,
        "/gateways",
        Some(json!({"name": "counter", "url": up.url()})),
    )
    .await;
    assert_eq!(status, 409, "{body}");

    let (status, body) = send(
        &gw,
        reqwest::Method::POST,
        "/gateways",
        Some(json!({"name": "dead", "url": "http://127.0.0.1:9/mcp"})),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );

    for (bad, field) in [
        (json!({"url": up.url()}), "name"),
        (json!({"name": "x"}), "url"),
        (json!({"name": "x", "url": "not a url"}), "url"),
        (json!({"name": "x", "url": "ftp://127.0.0.1/"}), "url"),
        (json!({"name": "", "url": up.url()}), "name"),
        (
            json!({"name": "x", "url": up.url(), "transport": "CARRIER_PIGEON"}),
            "transport",
        ),
        (json!({"name": 5, "url": up.url()}), "name"),
    ] {
        let (status, body) = send(&gw, reqwest::Method::POST, "/gateways", Some(bad.clone())).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["detail"][0]["loc"][1], field, "{bad}: {body}");
    }
    // Credentials in the URL would be shown by the API and logged: refused,
    // pointing at the encrypted fields, and not echoed back.
    let with_password = up.url().replacen("http://", "http://user:s3cret-pw@", 1);
    let (status, body) = send(
        &gw,
        reqwest::Method::POST,
        "/gateways",
        Some(json!({"name": "x", "url": with_password})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"][1], "url", "{body}");
    assert!(
        body["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("auth_password"),
        "{body}"
    );
    assert!(!body.to_string().contains("s3cret-pw"), "{body}");
    // serde would read an array into the body's fields by position.
    for path in ["/gateways", "/servers"] {
        let array = json!(["x", up.url()]);
        let (status, body) = send(&gw, reqwest::Method::POST, path, Some(array)).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(
            body["detail"][0]["msg"], "the body must be a JSON object",
            "{path}: {body}"
        );
    }
    let (_, list) = send(&gw, reqwest::Method::GET, "/gateways", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, tools) = send(&gw, reqwest::Method::GET, "/tools", None).await;
    assert_eq!(tools.as_array().unwrap().len(), 5);
    let (_, servers) = send(&gw, reqwest::Method::GET, "/servers", None).await;
    assert_eq!(servers, json!([]), "nothing stored");
}

#[tokio::test]
async fn update_refresh_and_delete() {
    let up = counter("counter").await;
    let other = counter("other").await;
    let gw = TestGateway::start().await;
    let g = gw.register("counter", &up.url()).await;
    let id = g["id"].as_str().unwrap();
    let mut c = gw.connect("/mcp").await;
    c.counter("counter-increment", json!({"by": 3})).await;

    // Cosmetic edit: nothing closes, counter survives.
    let (status, body) = send(
        &gw,
        reqwest::Method::PUT,
        &format!("/gateways/{id}"),
        Some(json!({"description": "new words", "tags": ["x"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["description"], "new words");
    assert_eq!(body["url"], up.url(), "partial update keeps other fields");
    assert_eq!(c.counter("counter-get", json!({})).await, 3);
    assert_eq!(up.stats().live_sessions, 1);

    // Connection edit: the old upstream session closes; calls go to the new URL.
    let (status, body) = send(
        &gw,
        reqwest::Method::PUT,
        &format!("/gateways/{id}"),
        Some(json!({"url": other.url()})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.stats().live_sessions, 0);
    assert_eq!(c.counter("counter-get", json!({})).await, 0);
    assert_eq!(other.stats().live_sessions, 1);

    // A connection edit to an unreachable URL is refused and changes nothing.
    let (status, _) = send(
        &gw,
        reqwest::Method::PUT,
        &format!("/gateways/{id}"),
        Some(json!({"url": "http://127.0.0.1:9/mcp"})),
    )
    .await;
    assert_eq!(status, 502);
    let (_, now) = send(&gw, reqwest::Method::GET, &format!("/gateways/{id}"), None).await;
    assert_eq!(now["url"], other.url());

    let (status, body) = send(
        &gw,
        reqwest::Method::POST,
        &format!("/gateways/{id}/tools/refresh"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["toolCount"], 5);

    let (status, _) = send(
        &gw,
        reqwest::Method::DELETE,
        &format!("/gateways/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = send(&gw, reqwest::Method::GET, &format!("/gateways/{id}"), None).await;
    assert_eq!(status, 404);
    let (_, tools) = send(&gw, reqwest::Method::GET, "/tools", None).await;
    assert_eq!(tools, json!([]), "its tools go with it");
    let (status, _) = send(
        &gw,
        reqwest::Method::DELETE,
        &format!("/gateways/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn virtual_server_crud_accepts_both_body_shapes() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let inc = gw.tool_id("counter-increment").await;
    let get = gw.tool_id("counter-get").await;

    let (status, s) = send(
        &gw,
        reqwest::Method::POST,
        "/servers",
        Some(json!({"name": "bare", "associated_tools": [inc]})),
    )
    .await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["associatedTools"], json!([inc]));
    let (status, s2) = send(
        &gw,
        reqwest::Method::POST,
        "/servers",
        Some(json!({"server": {"name": "wrapped", "associatedTools": [inc, get]}})),
    )
    .await;
    assert_eq!(status, 201, "{s2}");
    let (status, _) = send(
        &gw,
        reqwest::Method::POST,
        "/servers",
        Some(json!({"name": "bare"})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, body) = send(
        &gw,
        reqwest::Method::POST,
        "/servers",
        Some(json!({"name": "x", "associated_tools": ["nope"]})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"][1], "associated_tools");

    let id = s["id"].as_str().unwrap();
    let (status, upd) = send(
        &gw,
        reqwest::Method::PUT,
        &format!("/servers/{id}"),
        Some(json!({"associated_tools": [get, inc]})),
    )
    .await;
    assert_eq!(status, 200, "{upd}");
    assert_eq!(upd["associatedTools"], json!([get, inc]));
    assert_eq!(upd["name"], "bare");
    let (_, all) = send(&gw, reqwest::Method::GET, "/servers", None).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (status, _) = send(
        &gw,
        reqwest::Method::DELETE,
        &format!("/servers/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = send(&gw, reqwest::Method::GET, &format!("/servers/{id}"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn prompts_and_resources_are_listed_like_tools_and_can_join_virtual_servers() {
    let upstream =
        switchyard_fixtures::conformance::ConformanceServer::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let gw = TestGateway::start().await;
    let g = gw.register("conf", &upstream.url()).await;
    let (status, prompts) = send(&gw, reqwest::Method::GET, "/prompts", None).await;
    assert_eq!(status, 200);
    let simple = prompts
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["originalName"] == "test_simple_prompt")
        .expect("listed");
    assert_eq!(simple["name"], "conf-test_simple_prompt");
    assert_eq!(simple["gatewayId"], g["id"]);
    let (_, resources) = send(&gw, reqwest::Method::GET, "/resources", None).await;
    let text = resources
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["originalUri"] == "test://static-text")
        .expect("listed");
    assert_eq!(text["uri"], "switchyard://conf/test://static-text");
    assert!(resources
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["isTemplate"] == true));
    let (status, one) = send(
        &gw,
        reqwest::Method::GET,
        &format!("/prompts/{}", simple["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((status, &one["id"]), (200, &simple["id"]));
    let (status, _) = send(
        &gw,
        reqwest::Method::GET,
        &format!("/resources/{}", simple["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 404, "a prompt id is not a resource id");

    // A virtual server with one prompt and one resource exposes just those.
    let (status, server) = send(
        &gw,
        reqwest::Method::POST,
        "/servers",
        Some(json!({"name": "pr", "associated_prompts": [simple["id"]], "associated_resources": [text["id"]]})),
    )
    .await;
    assert_eq!(status, 201, "{server}");
    assert_eq!(server["associatedPrompts"], json!([simple["id"]]));
    let mut c = gw
        .connect(&format!("/servers/{}/mcp", server["id"].as_str().unwrap()))
        .await;
    let listed = c.request("prompts/list", json!({})).await;
    assert_eq!(
        listed.body["result"]["prompts"].as_array().unwrap().len(),
        1,
        "{}",
        listed.body
    );
    let read = c
        .request(
            "resources/read",
            json!({"uri": "switchyard://conf/test://static-text"}),
        )
        .await;
    assert!(
        read.body["result"]["contents"][0]["text"].is_string(),
        "{}",
        read.body
    );
    assert_eq!(
        c.request("tools/list", json!({})).await.body["result"]["tools"],
        json!([])
    );
}

/// Unknown routes and methods answer like ContextForge's: JSON with `detail`.
#[tokio::test]
async fn unknown_routes_and_methods_answer_with_a_detail() {
    let gw = TestGateway::start().await;
    let missing = gw.http.get(gw.url("/no/such/route")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body, json!({"detail": "Not Found"}));
    let wrong = gw.http.patch(gw.url("/gateways")).send().await.unwrap();
    assert_eq!(wrong.status(), 405);
    let allow = wrong.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body, json!({"detail": "Method Not Allowed"}));
    // What axum's extractors refuse answers the same way.
    let bad_id = gw.http.get(gw.url("/gateways/%ff")).send().await.unwrap();
    assert_eq!(bad_id.status(), 400);
    let body: Value = bad_id.json().await.unwrap();
    assert!(body["detail"].is_string(), "{body}");
    let huge = format!(
        r#"{{"name":"x","url":"http://127.0.0.1:9/mcp","description":"{}"}}"#,
        "x".repeat(5 << 20)
    );
    let too_large = gw
        .http
        .post(gw.url("/gateways"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    let body: Value = too_large.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("limit"), "{body}");
}
