//! Nothing of a downstream request reaches an upstream unless allowed: only
//! the trace context and the headers a gateway's `passthrough_headers` (or
//! the global `--passthrough-headers`) name, never credentials, session,
//! host or hop-by-hop headers.

use reqwest::Method;
use serde_json::{json, Value};
use switchyard::config::Settings;
use switchyard_fixtures::CounterServer;

use crate::support::{counter, TestGateway};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Calls `tool` on the session `sid` with a request full of headers an
/// upstream must not see, plus `x-tenant` and `x-request-id`.
async fn call_with_headers(gw: &TestGateway, sid: &str, tool: &str) -> Value {
    gw.http
        .post(gw.url("/mcp"))
        .header("mcp-session-id", sid)
        .header("cookie", "session=downstream-cookie")
        .header("proxy-authorization", "Basic cHJveHk6cHc=")
        .header("x-tenant", "acme")
        .header("x-request-id", "req-1")
        .header("x-secret-internal", "do-not-forward")
        .header("x-hop", "hop")
        .header("connection", "keep-alive, x-hop")
        .header("user-agent", "downstream-agent/1.0")
        .header("traceparent", TRACEPARENT)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn seen(up: &CounterServer) -> Vec<(String, String)> {
    up.last_headers()
}

fn get<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// What must never arrive, whatever the lists say.
fn assert_clean(headers: &[(String, String)], downstream_sid: &str, gw: &TestGateway) {
    for (k, v) in headers {
        assert!(
            !v.contains(&gw.token) && !v.contains(downstream_sid),
            "{k} leaks a downstream credential or session id: {headers:?}"
        );
    }
    for name in [
        "authorization",
        "cookie",
        "proxy-authorization",
        "x-secret-internal",
        "x-hop",
    ] {
        assert!(
            get(headers, name).is_empty(),
            "{name} forwarded: {headers:?}"
        );
    }
    assert_eq!(get(headers, "traceparent"), [TRACEPARENT], "{headers:?}");
    assert!(
        get(headers, "user-agent")[0].starts_with("switchyard/"),
        "{headers:?}"
    );
    assert_eq!(get(headers, "mcp-session-id").len(), 1, "{headers:?}");
}

#[tokio::test]
async fn without_allow_lists_only_the_trace_context_is_forwarded() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    gw.register("counter", &up.url()).await;
    let c = gw.connect("/mcp").await;
    let sid = c.session.clone().unwrap();
    let answer = call_with_headers(&gw, &sid, "counter-increment").await;
    assert_eq!(
        answer["result"]["structuredContent"]["value"], 1,
        "{answer}"
    );
    let headers = seen(&up);
    assert_clean(&headers, &sid, &gw);
    assert!(get(&headers, "x-tenant").is_empty() && get(&headers, "x-request-id").is_empty());
    assert_eq!(
        get(&headers, "host"),
        [up.addr().to_string().as_str()],
        "the upstream's own Host"
    );
}

#[tokio::test]
async fn the_global_default_and_per_gateway_lists_choose_what_is_forwarded() {
    let up = counter("counter").await;
    let other = counter("other").await;
    let mut s = Settings::for_tests();
    s.security.passthrough_headers = vec!["x-tenant".into()];
    let gw = TestGateway::start_with(s).await;
    let g = gw.register("counter", &up.url()).await;
    assert_eq!(g["passthroughHeaders"], Value::Null, "uses the default");
    // A gateway's own list replaces the default (it does not add to it).
    let resp = gw
        .http
        .post(gw.url("/gateways"))
        .json(
            &json!({"name": "other", "url": other.url(), "passthrough_headers": ["X-Request-Id"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let g2: Value = resp.json().await.unwrap();
    assert_eq!(g2["passthroughHeaders"], json!(["x-request-id"]));

    let c = gw.connect("/mcp").await;
    let sid = c.session.clone().unwrap();
    call_with_headers(&gw, &sid, "counter-increment").await;
    let h = seen(&up);
    assert_clean(&h, &sid, &gw);
    assert_eq!(get(&h, "x-tenant"), ["acme"]);
    assert!(get(&h, "x-request-id").is_empty());
    call_with_headers(&gw, &sid, "other-increment").await;
    let h = seen(&other);
    assert_clean(&h, &sid, &gw);
    assert_eq!(get(&h, "x-request-id"), ["req-1"]);
    assert!(get(&h, "x-tenant").is_empty());

    // Sessionless calls follow the same lists.
    let rpc: Value = gw
        .http
        .post(gw.url("/rpc"))
        .header("x-tenant", "acme")
        .header("x-secret-internal", "no")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "counter-get", "arguments": {}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(rpc["result"].is_object(), "{rpc}");
    let h = seen(&up);
    assert_eq!(get(&h, "x-tenant"), ["acme"]);
    assert!(get(&h, "x-secret-internal").is_empty() && get(&h, "authorization").is_empty());
}

#[tokio::test]
async fn changing_a_list_applies_on_the_next_call_without_closing_sessions() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    let g = gw.register("counter", &up.url()).await;
    let path = format!("/gateways/{}", g["id"].as_str().unwrap());
    let mut c = gw.connect("/mcp").await;
    let sid = c.session.clone().unwrap();
    assert_eq!(c.counter("counter-increment", json!({"by": 4})).await, 4);
    let inits = up.stats().initializes;

    let put = |body: Value| {
        let req = gw.http.request(Method::PUT, gw.url(&path)).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = put(json!({"passthroughHeaders": ["x-tenant"]})).await;
    assert_eq!(status, 200, "{body}");
    let answer = call_with_headers(&gw, &sid, "counter-get").await;
    assert_eq!(
        answer["result"]["structuredContent"]["value"], 4,
        "same upstream session"
    );
    assert_eq!(get(&seen(&up), "x-tenant"), ["acme"]);
    assert_eq!(
        up.stats().initializes,
        inits,
        "no session was closed or rebuilt"
    );

    // An explicit empty list forwards nothing; null goes back to the (empty) default.
    let (status, body) = put(json!({"passthrough_headers": []})).await;
    assert_eq!((status, &body["passthroughHeaders"]), (200, &json!([])));
    call_with_headers(&gw, &sid, "counter-get").await;
    assert!(get(&seen(&up), "x-tenant").is_empty());
    let (status, body) = put(json!({"passthrough_headers": null})).await;
    assert_eq!((status, &body["passthroughHeaders"]), (200, &Value::Null));
    let (_, body) = put(json!({"description": "unrelated edit"})).await;
    assert_eq!(
        body["passthroughHeaders"],
        Value::Null,
        "absent leaves it alone"
    );

    // Lists naming always-stripped headers are refused, naming the field; nothing changes.
    for bad in [
        json!(["Authorization"]),
        json!(["cookie"]),
        json!(["Mcp-Session-Id"]),
        json!(["bad header"]),
    ] {
        let (status, body) = put(json!({"passthrough_headers": bad})).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["detail"][0]["loc"][1], "passthrough_headers", "{body}");
    }
    let resp = gw
        .http
        .post(gw.url("/gateways"))
        .json(&json!({"name": "x", "url": up.url(), "passthrough_headers": ["host"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let all: Value = gw.get_json("/gateways").await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_eq!(c.counter("counter-get", json!({})).await, 4);
    assert_eq!(up.stats().initializes, inits);
}
