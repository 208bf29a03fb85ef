//! Downstream authentication: API tokens, JWTs (HS256, RS256, ES256), the
//! admin/non-admin split of the REST API, 401/403 answers, `--auth none`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use switchyard::config::{AuthMode, Secret, Settings};

use crate::support::gateway::authorized_client;
use crate::support::{counter, McpClient, TestGateway};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/jwt_keys");
const HS_SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "switchyard";

async fn send(
    http: &reqwest::Client,
    method: Method,
    url: String,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    // Every answer with a body is JSON (never a bare text or a stack trace).
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text:?}"))
    };
    (status, headers, body)
}

fn challenge(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("www-authenticate")
        .expect("WWW-Authenticate")
        .to_str()
        .unwrap()
        .to_owned()
}

fn init_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401_with_a_bearer_challenge() {
    let gw = TestGateway::start().await;
    let anon = reqwest::Client::new();
    let base = format!("http://{}", gw.addr);

    // Open: health and the protected-resource metadata.
    let (status, _, _) = send(&anon, Method::GET, gw.url("/health"), None).await;
    assert_eq!(status, 200);
    let (status, _, _) = send(
        &anon,
        Method::GET,
        gw.url("/.well-known/oauth-protected-resource"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // MCP endpoints: JSON-RPC error body, challenge naming the path-specific metadata.
    let (status, headers, body) =
        send(&anon, Method::POST, gw.url("/mcp"), Some(init_body())).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert_eq!(
        challenge(&headers),
        format!("Bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\"")
    );
    assert!(
        gw.app.sessions.is_empty(),
        "no session for a refused initialize"
    );

    // REST: {"detail": ...}, challenge naming the root metadata.
    let (status, headers, body) = send(&anon, Method::GET, gw.url("/gateways"), None).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"].as_str().unwrap().contains("Bearer"),
        "{body}"
    );
    assert_eq!(
        challenge(&headers),
        format!("Bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource\"")
    );

    for (method, path) in [
        (Method::POST, "/rpc"),
        (Method::POST, "/servers/0123/mcp"),
        (Method::GET, "/mcp"),
        (Method::DELETE, "/mcp"),
        (Method::GET, "/sse"),
        (
            Method::POST,
            "/message?session_id=0123456789abcdef0123456789abcdef",
        ),
        (Method::GET, "/servers/0123/sse"),
        (Method::GET, "/tools"),
        (Method::GET, "/v1/tools"),
        (Method::GET, "/servers"),
        (Method::GET, "/prompts"),
        (Method::GET, "/resources"),
        (Method::GET, "/version"),
        (Method::GET, "/metrics"),
        (Method::GET, "/admin/sessions"),
        (Method::GET, "/tokens"),
        (Method::POST, "/tokens"),
        (Method::POST, "/gateways"),
    ] {
        let (status, headers, _) = send(&anon, method.clone(), gw.url(path), None).await;
        assert_eq!(status, 401, "{method} {path}");
        assert!(
            challenge(&headers).starts_with("Bearer "),
            "{method} {path}"
        );
    }

    // Presented but wrong: error="invalid_token" (or invalid_request when not Bearer).
    let unknown = authorized_client(&format!("sy_{}", "0".repeat(64)));
    let (status, headers, body) = send(&unknown, Method::GET, gw.url("/tools"), None).await;
    assert_eq!(status, 401);
    assert!(challenge(&headers).contains("error=\"invalid_token\""));
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("unknown or revoked"),
        "{body}"
    );
    for bad in ["not-a-token", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
        let (status, _, _) =
            send(&authorized_client(bad), Method::GET, gw.url("/tools"), None).await;
        assert_eq!(status, 401, "{bad}");
    }
    let basic = reqwest::Client::new()
        .get(gw.url("/tools"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    assert!(challenge(basic.headers()).contains("invalid_request"));

    // The admin token the harness minted passes everywhere.
    let (status, _, _) = send(&gw.http, Method::GET, gw.url("/tokens"), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn non_admin_tokens_read_and_call_but_cannot_change_anything() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await;
    let g = gw.register("counter", &up.url()).await;
    let gid = g["id"].as_str().unwrap().to_owned();
    let inc = gw.tool_id("counter-increment").await;
    let reader_token = gw.mint("reader", false).await;
    let reader = authorized_client(&reader_token);

    for path in [
        "/gateways",
        "/v1/gateways",
        "/tools",
        "/servers",
        "/version",
    ] {
        let (status, _, body) = send(&reader, Method::GET, gw.url(path), None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
    }
    let (status, _, _) = send(
        &reader,
        Method::GET,
        gw.url(&format!("/gateways/{gid}")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    // Calling tools is what callers are for: MCP, /rpc and REST invoke.
    let mut c = McpClient::connect_as(gw.url("/mcp"), &reader_token).await;
    assert_eq!(c.counter("counter-increment", json!({"by": 2})).await, 2);
    let (status, _, body) = send(
        &reader,
        Method::POST,
        gw.url("/rpc"),
        Some(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send(
        &reader,
        Method::POST,
        gw.url(&format!("/tools/{inc}/invoke")),
        Some(json!({"by": 1})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    for (method, path, body) in [
        (
            Method::POST,
            "/gateways".to_owned(),
            Some(json!({"name": "x", "url": up.url()})),
        ),
        (
            Method::PUT,
            format!("/gateways/{gid}"),
            Some(json!({"description": "mine now"})),
        ),
        (Method::DELETE, format!("/gateways/{gid}"), None),
        (Method::POST, format!("/gateways/{gid}/tools/refresh"), None),
        (
            Method::POST,
            "/v1/gateways".to_owned(),
            Some(json!({"name": "x", "url": up.url()})),
        ),
        (
            Method::POST,
            "/servers".to_owned(),
            Some(json!({"name": "s"})),
        ),
        (Method::GET, "/admin/sessions".to_owned(), None),
        (
            Method::DELETE,
            format!("/admin/sessions/{}", c.session.clone().unwrap()),
            None,
        ),
        (Method::GET, "/metrics".to_owned(), None),
        (Method::GET, "/tokens".to_owned(), None),
        (
            Method::POST,
            "/tokens".to_owned(),
            Some(json!({"name": "escalate", "admin": true})),
        ),
    ] {
        let (status, headers, resp) = send(&reader, method.clone(), gw.url(&path), body).await;
        assert_eq!(status, 403, "{method} {path}: {resp}");
        assert!(resp["detail"].as_str().unwrap().contains("admin"), "{resp}");
        assert!(challenge(&headers).contains("insufficient_scope"));
    }
    // Nothing changed: the gateway, its description, the session.
    let (_, _, now) = send(
        &gw.http,
        Method::GET,
        gw.url(&format!("/gateways/{gid}")),
        None,
    )
    .await;
    assert_eq!(now["description"], Value::Null);
    let (_, _, all) = send(&gw.http, Method::GET, gw.url("/gateways"), None).await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    let (_, _, tokens) = send(&gw.http, Method::GET, gw.url("/tokens"), None).await;
    assert_eq!(tokens.as_array().unwrap().len(), 2, "{tokens}");
    assert_eq!(c.counter("counter-get", json!({})).await, 2);
}

#[tokio::test]
async fn tokens_are_minted_once_listed_without_secrets_and_revoked_at_once() {
    let gw = TestGateway::start().await;
    let (status, _, made) = send(
        &gw.http,
        Method::POST,
        gw.url("/tokens"),
        Some(json!({"name": "ci", "expires": "1h"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let secret = made["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sy_") && secret.len() == 67, "{secret}");
    assert_eq!(made["admin"], false);
    assert!(made["expiresAt"].is_string());
    let id = made["id"].as_str().unwrap().to_owned();

    let mut c = McpClient::connect_as(gw.url("/mcp"), &secret).await;
    assert_eq!(c.request("ping", json!({})).await.status, 200);

    let (status, _, listed) = send(&gw.http, Method::GET, gw.url("/tokens"), None).await;
    assert_eq!(status, 200);
    let text = listed.to_string();
    assert!(
        !text.contains(&secret[3..]),
        "listing leaks a secret: {text}"
    );
    assert!(
        !text.contains(&gw.token[3..]),
        "listing leaks a secret: {text}"
    );
    let ci = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap();
    assert!(ci.get("token").is_none());
    assert_eq!(ci["name"], "ci");
    assert!(ci["lastUsed"].is_string(), "use is recorded: {ci}");
    let (status, _, _) = send(
        &gw.http,
        Method::DELETE,
        gw.url(&format!("/tokens/{id}")),
        None,
    )
    .await;
    assert_eq!(status, 204);
    // Immediate effect, on the open session too.
    let refused = c.request("ping", json!({})).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    let (status, _, _) = send(
        &gw.http,
        Method::DELETE,
        gw.url(&format!("/tokens/{id}")),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, _, listed) = send(&gw.http, Method::GET, gw.url("/tokens"), None).await;
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["id"] != id.as_str()));

    for (bad, field) in [
        (json!({"admin": true}), "name"),
        (json!({"name": "  "}), "name"),
        (json!({"name": "x", "expires": "soon"}), "expires"),
        (json!({"name": "x", "expires": 0}), "expires"),
    ] {
        let (status, _, body) =
            send(&gw.http, Method::POST, gw.url("/tokens"), Some(bad.clone())).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["detail"][0]["loc"][1], field, "{bad}: {body}");
    }

    // An admin token minted through the API is an admin; an expired one is refused.
    let (_, _, admin) = send(
        &gw.http,
        Method::POST,
        gw.url("/tokens"),
        Some(json!({"name": "ops", "admin": true, "expires": 1})),
    )
    .await;
    let ops = authorized_client(admin["token"].as_str().unwrap());
    let (status, _, _) = send(&ops, Method::GET, gw.url("/admin/sessions"), None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, headers, body) = send(&ops, Method::GET, gw.url("/admin/sessions"), None).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    assert!(challenge(&headers).contains("invalid_token"));
}

fn jwt_settings() -> Settings {
    let mut s = Settings::for_tests();
    s.security.auth.jwt_secret = Some(Secret::new(HS_SECRET));
    s.security.auth.jwks_file = Some(format!("{KEYS}/jwks.json").into());
    s.security.auth.jwt_audience = vec![AUDIENCE.into()];
    s.security.auth.jwt_issuer = vec![ISSUER.into()];
    s
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 3600, "iat": now()})
}

fn sign(alg: jsonwebtoken::Algorithm, kid: Option<&str>, claims: &Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let key = match alg {
        Algorithm::HS256 | Algorithm::HS384 => EncodingKey::from_secret(HS_SECRET.as_bytes()),
        Algorithm::RS256 => {
            let pem = std::fs::read(format!("{KEYS}/rsa-private.pem")).unwrap();
            EncodingKey::from_rsa_pem(&pem).unwrap()
        }
        Algorithm::ES256 => {
            let pem = std::fs::read(format!("{KEYS}/ec-private.pem")).unwrap();
            EncodingKey::from_ec_pem(&pem).unwrap()
        }
        other => panic!("no test key for {other:?}"),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

#[tokio::test]
async fn jwts_are_verified_by_signature_expiry_audience_and_issuer() {
    use jsonwebtoken::Algorithm::{ES256, HS256, HS384, RS256};
    let up = counter("counter").await;
    let gw = TestGateway::start_with(jwt_settings()).await;
    gw.register("counter", &up.url()).await;
    let get = |token: String| {
        let url = gw.url("/tools");
        async move { send(&authorized_client(&token), Method::GET, url, None).await }
    };

    for token in [
        sign(HS256, None, &claims("alice")),
        sign(RS256, Some("rsa-1"), &claims("bob")),
        sign(RS256, None, &claims("bob")),
        sign(ES256, Some("ec-1"), &claims("carol")),
        sign(ES256, None, &claims("carol")),
    ] {
        let (status, _, body) = get(token).await;
        assert_eq!(status, 200, "{body}");
    }

    // A JWT principal drives an MCP session like any other.
    let alice = sign(HS256, None, &claims("alice"));
    let mut c = McpClient::connect_as(gw.url("/mcp"), &alice).await;
    assert_eq!(c.counter("counter-increment", json!({"by": 3})).await, 3);

    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims("mallory");
        edit(&mut c);
        c
    };
    for (label, token, reason) in [
        (
            "expired",
            sign(HS256, None, &with(&|c| c["exp"] = json!(now() - 120))),
            "expired",
        ),
        (
            "not yet valid",
            sign(HS256, None, &with(&|c| c["nbf"] = json!(now() + 3600))),
            "nbf",
        ),
        (
            "wrong audience",
            sign(HS256, None, &with(&|c| c["aud"] = json!("someone-else"))),
            "aud",
        ),
        (
            "wrong issuer",
            sign(
                HS256,
                None,
                &with(&|c| c["iss"] = json!("https://evil.example")),
            ),
            "iss",
        ),
        (
            "no exp",
            sign(
                HS256,
                None,
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            "exp",
        ),
        (
            "no sub",
            sign(
                HS256,
                None,
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("sub");
                }),
            ),
            "sub",
        ),
        (
            "unknown kid",
            sign(RS256, Some("rsa-2"), &claims("mallory")),
            "no configured key",
        ),
        (
            "other algorithm",
            sign(HS384, None, &claims("mallory")),
            "only HS256",
        ),
    ] {
        let (status, headers, body) = get(token).await;
        assert_eq!(status, 401, "{label}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(reason),
            "{label}: {body}"
        );
        assert!(challenge(&headers).contains("invalid_token"), "{label}");
    }
    // Tampered payload: the signature no longer verifies.
    let good = sign(RS256, Some("rsa-1"), &claims("bob"));
    let parts: Vec<&str> = good.split('.').collect();
    let forged_claims = sign(HS256, None, &with(&|c| c["sub"] = json!("admin")));
    let forged_payload = forged_claims.split('.').nth(1).unwrap();
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let (status, _, body) = get(forged).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"].as_str().unwrap().contains("signature"),
        "{body}"
    );

    // Admin only with the admin scope (or is_admin).
    let plain = authorized_client(&alice);
    let (status, _, _) = send(&plain, Method::GET, gw.url("/admin/sessions"), None).await;
    assert_eq!(status, 403);
    for admin_claims in [
        with(&|c| c["scope"] = json!("openid switchyard:admin")),
        with(&|c| c["is_admin"] = json!(true)),
    ] {
        let admin = authorized_client(&sign(ES256, Some("ec-1"), &admin_claims));
        let (status, _, body) = send(&admin, Method::GET, gw.url("/admin/sessions"), None).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn auth_none_serves_without_tokens_on_loopback() {
    let up = counter("counter").await;
    let mut s = Settings::for_tests();
    s.security.auth.mode = AuthMode::None;
    let gw = TestGateway::start_with(s).await;
    let anon = reqwest::Client::new();
    let (status, _, body) = send(
        &anon,
        Method::POST,
        gw.url("/gateways"),
        Some(json!({"name": "counter", "url": up.url()})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let mut c = McpClient::connect(gw.url("/mcp")).await;
    assert_eq!(c.counter("counter-increment", json!({})).await, 1);
}

/// A JWKS served over HTTP by an "identity provider": fetched at start, and
/// fetched again when a token names a key id rotated in since.
#[tokio::test]
async fn jwks_url_keys_are_fetched_and_a_rotated_in_key_is_picked_up() {
    use jsonwebtoken::Algorithm::{ES256, RS256};
    use std::sync::{Arc, Mutex};
    let full: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{KEYS}/jwks.json")).unwrap())
            .unwrap();
    // At first the provider publishes only the EC key.
    let ec_only = json!({"keys": full["keys"].as_array().unwrap().iter()
        .filter(|k| k["kid"] == "ec-1").cloned().collect::<Vec<_>>()});
    let served = Arc::new(Mutex::new(ec_only));
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let served = Arc::clone(&served);
        let fetches = Arc::clone(&fetches);
        axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let body = served.lock().unwrap().clone();
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { axum::Json(body) }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut s = Settings::for_tests();
    s.security.auth.jwks_url = Some(format!("http://{idp}/jwks.json").parse().unwrap());
    s.security.auth.jwt_audience = vec![AUDIENCE.into()];
    let gw = TestGateway::start_with(s).await;
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    let get = |token: String| {
        let url = gw.url("/tools");
        async move {
            send(&authorized_client(&token), Method::GET, url, None)
                .await
                .0
        }
    };
    assert_eq!(get(sign(ES256, Some("ec-1"), &claims("carol"))).await, 200);
    // Not published yet: refused (and a refetch was tried, once).
    assert_eq!(get(sign(RS256, Some("rsa-1"), &claims("bob"))).await, 401);
    let after_first_miss = fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert!(after_first_miss <= 2, "{after_first_miss} fetches");
    // Unknown key ids in a burst do not each cause a fetch.
    for i in 0..20 {
        let kid = format!("random-{i}");
        assert_eq!(get(sign(RS256, Some(&kid), &claims("mallory"))).await, 401);
    }
    assert!(fetches.load(std::sync::atomic::Ordering::SeqCst) <= after_first_miss + 1);

    // The provider rotates the RSA key in; after the refetch interval the
    // gateway learns it on the first token that needs it.
    *served.lock().unwrap() = full;
    tokio::time::sleep(std::time::Duration::from_millis(5200)).await;
    assert_eq!(get(sign(RS256, Some("rsa-1"), &claims("bob"))).await, 200);
    assert_eq!(get(sign(ES256, Some("ec-1"), &claims("carol"))).await, 200);
}
