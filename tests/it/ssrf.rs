//! The SSRF guard: gateway URLs that reach link-local or cloud-metadata
//! addresses are always refused; private and loopback ones unless
//! `--allow-private-upstreams`. Refused at registration (422 naming `url`)
//! and again on every connection.

use reqwest::Method;
use serde_json::{json, Value};
use switchyard::catalog::{Connection, GatewaySpec, Transport};
use switchyard::config::Settings;

use crate::support::{counter, TestGateway};

async fn send(gw: &TestGateway, method: Method, path: &str, body: Value) -> (u16, Value) {
    let resp = gw
        .http
        .request(method, gw.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn http_connection(url: &str) -> Connection {
    Connection::build(
        Some(url),
        Transport::StreamableHttp,
        None,
        vec![],
        Default::default(),
    )
    .unwrap()
}

fn strict() -> Settings {
    let mut s = Settings::for_tests();
    s.security.allow_private_upstreams = false;
    s
}

fn refusal(body: &Value) -> (&str, &str) {
    (
        body["detail"][0]["loc"][1].as_str().unwrap_or(""),
        body["detail"][0]["msg"].as_str().unwrap_or(""),
    )
}

#[tokio::test]
async fn metadata_link_local_and_private_upstreams_are_refused_at_registration() {
    let up = counter("counter").await;
    let gw = TestGateway::start_with(strict()).await;
    let port = up.addr().port();
    for (url, why) in [
        (
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "link-local",
        ),
        ("http://169.254.10.1:8080/mcp".to_owned(), "link-local"),
        ("http://[fe80::1]/mcp".to_owned(), "link-local"),
        ("http://[fd00:ec2::254]/mcp".to_owned(), "metadata"),
        (
            "http://metadata.google.internal/computeMetadata/v1".to_owned(),
            "metadata",
        ),
        ("http://[::ffff:169.254.169.254]/".to_owned(), "link-local"),
        (up.url(), "loopback"),
        (format!("http://localhost:{port}/mcp"), "loopback"),
        ("http://10.0.0.1/mcp".to_owned(), "private"),
        ("http://192.168.1.10/mcp".to_owned(), "private"),
        ("http://[fd12:3456::1]/mcp".to_owned(), "unique-local"),
        ("http://0.0.0.0:80/mcp".to_owned(), "unspecified"),
    ] {
        let (status, body) = send(
            &gw,
            Method::POST,
            "/gateways",
            json!({"name": "x", "url": url}),
        )
        .await;
        assert_eq!(status, 422, "{url}: {body}");
        let (field, msg) = refusal(&body);
        assert_eq!(field, "url", "{url}: {body}");
        assert!(msg.contains(why), "{url}: {msg}");
    }
    let (_, body) = send(
        &gw,
        Method::POST,
        "/gateways",
        json!({"name": "x", "url": up.url()}),
    )
    .await;
    assert!(
        refusal(&body).1.contains("--allow-private-upstreams"),
        "{body}"
    );
    let (_, all) = send(&gw, Method::GET, "/gateways", Value::Null).await;
    assert_eq!(all, json!([]), "nothing stored");
    assert_eq!(up.stats().requests, 0, "no connection was attempted");
}

#[tokio::test]
async fn allowing_private_upstreams_never_allows_link_local_or_metadata() {
    let up = counter("counter").await;
    let gw = TestGateway::start().await; // tests run with --allow-private-upstreams
    gw.register("counter", &up.url()).await;
    for url in [
        "http://169.254.169.254/",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/",
    ] {
        let (status, body) = send(
            &gw,
            Method::POST,
            "/gateways",
            json!({"name": "m", "url": url}),
        )
        .await;
        assert_eq!(status, 422, "{url}: {body}");
    }
    // Updating a URL is checked like registering one; the gateway is left as it was.
    let (_, all) = send(&gw, Method::GET, "/gateways", Value::Null).await;
    let id = all[0]["id"].as_str().unwrap().to_owned();
    let (status, body) = send(
        &gw,
        Method::PUT,
        &format!("/gateways/{id}"),
        json!({"url": "http://169.254.169.254/latest"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(refusal(&body).0, "url");
    let (_, now) = send(&gw, Method::GET, &format!("/gateways/{id}"), Value::Null).await;
    assert_eq!(now["url"], up.url());
}

#[tokio::test]
async fn connections_are_guarded_too_not_only_registrations() {
    // A gateway that got into the catalog pointing at loopback (e.g. declared
    // in the config file, or a name re-pointed after registration): the
    // gateway still refuses to connect there.
    let up = counter("counter").await;
    let gw = TestGateway::start_with(strict()).await;
    let port = up.addr().port();
    for (name, url) in [
        ("literal", up.url()),
        ("by-name", format!("http://localhost:{port}/mcp")),
    ] {
        let spec = GatewaySpec::new(name.into(), http_connection(&url), None, vec![]).unwrap();
        let g = gw
            .app
            .catalog
            .create_gateway(spec, Err("not checked".into()))
            .await
            .unwrap();
        let (status, body) = send(
            &gw,
            Method::POST,
            &format!("/gateways/{}/tools/refresh", g.id),
            Value::Null,
        )
        .await;
        assert_eq!(status, 502, "{name}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("loopback"),
            "{name}: {body}"
        );
    }
    assert_eq!(up.stats().requests, 0, "the upstream never saw a request");
}
