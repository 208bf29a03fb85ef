//! Upstream credentials and TLS per gateway (ContextForge's field names):
//! each kind reaches an upstream that refuses requests without it, secrets
//! never come back from the API, a masked read sent back keeps them, and a
//! change of credentials closes the gateway's upstream sessions.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use switchyard_fixtures::tls::rustls;
use switchyard_fixtures::{CounterServer, Options, RequiredAuth};

use crate::support::{counter, TestGateway};

async fn guarded(name: &str, auth: RequiredAuth) -> CounterServer {
    CounterServer::start(Options {
        name: name.to_owned(),
        auth,
        ..Options::default()
    })
    .await
    .expect("fixture starts")
}

async fn post_gateway(gw: &TestGateway, body: Value) -> (u16, Value) {
    let resp = gw
        .http
        .post(gw.url("/gateways"))
        .json(&body)
        .send()
        .await
        .expect("POST /gateways");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json body"))
}

async fn put_gateway(gw: &TestGateway, id: &str, body: &Value) -> (u16, Value) {
    let resp = gw
        .http
        .put(gw.url(&format!("/gateways/{id}")))
        .json(body)
        .send()
        .await
        .expect("PUT /gateways/{id}");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json body"))
}

/// Every way the API shows gateways, as one string to search for leaks.
async fn everything_shown(gw: &TestGateway, id: &str) -> String {
    format!(
        "{}{}",
        gw.get_json("/gateways").await,
        gw.get_json(&format!("/gateways/{id}")).await
    )
}

#[tokio::test]
async fn bearer_basic_and_header_credentials_reach_the_upstream_and_never_come_back() {
    let gw = TestGateway::start().await;
    let basic = base64::engine::general_purpose::STANDARD.encode("svc:basic-pw-2");
    let cases = [
        (
            "bearer-up",
            RequiredAuth::Header {
                name: "authorization".into(),
                value: "Bearer bearer-secret-1".into(),
            },
            json!({"auth_type": "bearer", "auth_token": "bearer-secret-1"}),
            "bearer-secret-1",
        ),
        (
            "basic-up",
            RequiredAuth::Header {
                name: "authorization".into(),
                value: format!("Basic {basic}"),
            },
            json!({"auth_type": "basic", "auth_username": "svc", "auth_password": "basic-pw-2"}),
            "basic-pw-2",
        ),
        (
            "header-up",
            RequiredAuth::Header {
                name: "x-api-key".into(),
                value: "header-secret-3".into(),
            },
            json!({"auth_type": "authheaders", "auth_headers": [{"key": "X-API-Key", "value": "header-secret-3"}]}),
            "header-secret-3",
        ),
    ];
    let mut client = gw.connect("/mcp").await;
    for (name, required, auth, secret) in cases {
        let up = guarded(name, required).await;
        // Without credentials the upstream refuses, and so does registration.
        let (status, body) = post_gateway(&gw, json!({"name": name, "url": up.url()})).await;
        assert_eq!(status, 502, "{body}");
        assert!(body.to_string().contains("401"), "{body}");

        let mut req = json!({"name": name, "url": up.url()});
        req.as_object_mut()
            .unwrap()
            .extend(auth.as_object().unwrap().clone());
        let (status, created) = post_gateway(&gw, req).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["authType"], auth["auth_type"], "{created}");
        let shown = everything_shown(&gw, &id).await + &created.to_string();
        assert!(!shown.contains(secret), "secret shown: {shown}");
        assert!(shown.contains("*****"), "{shown}");

        // Calls through the gateway carry the credentials on the reused session.
        client = gw.connect("/mcp").await;
        assert_eq!(
            client
                .counter(&format!("{name}-increment"), json!({}))
                .await,
            1
        );
        assert_eq!(
            client
                .counter(&format!("{name}-increment"), json!({}))
                .await,
            2
        );

        // A read sent back as is (masked secrets) keeps the secret and the session.
        let read = gw.get_json(&format!("/gateways/{id}")).await;
        let (status, body) = put_gateway(&gw, &id, &read).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            client
                .counter(&format!("{name}-increment"), json!({}))
                .await,
            3
        );
        assert_eq!(
            up.stats().unauthorized,
            1,
            "only the credential-less registration"
        );
    }
    client.delete().await;
}

#[tokio::test]
async fn wrong_new_credentials_are_refused_and_the_old_ones_kept() {
    let gw = TestGateway::start().await;
    let up = guarded(
        "strict",
        RequiredAuth::Header {
            name: "authorization".into(),
            value: "Bearer right".into(),
        },
    )
    .await;
    let (_, created) = post_gateway(
        &gw,
        json!({"name": "strict", "url": up.url(), "auth_type": "bearer", "auth_token": "right"}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let (status, body) = put_gateway(&gw, id, &json!({"auth_token": "wrong"})).await;
    assert_eq!(status, 502, "{body}");
    let mut client = gw.connect("/mcp").await;
    assert_eq!(client.counter("strict-increment", json!({})).await, 1);

    // Fields are validated before any connection, naming the field.
    for (bad, field) in [
        (json!({"auth_type": "bearer"}), "auth_token"),
        (json!({"auth_type": "kerberos"}), "auth_type"),
        (
            json!({"auth_type": "basic", "auth_username": "u", "auth_password": "*****"}),
            "auth_password",
        ),
        (
            json!({"auth_type": "authheaders", "auth_headers": [{"key": "Mcp-Session-Id", "value": "x"}]}),
            "auth_headers",
        ),
        (
            json!({"auth_type": "oauth", "oauth_config": {"grant_type": "authorization_code"}}),
            "oauth_config",
        ),
        (
            json!({"ca_certificate": "not a certificate"}),
            "ca_certificate",
        ),
        (
            json!({"client_cert": "-----BEGIN CERTIFICATE-----"}),
            "client_key",
        ),
    ] {
        let (status, body) = put_gateway(&gw, id, &bad).await;
        assert_eq!(status, 422, "{bad} → {body}");
        assert!(body.to_string().contains(field), "{bad} → {body}");
    }
    assert_eq!(client.counter("strict-increment", json!({})).await, 2);
}

#[tokio::test]
async fn query_param_credentials_stay_out_of_urls_reads_and_errors() {
    let gw = TestGateway::start().await;
    let up = guarded(
        "q",
        RequiredAuth::Query {
            key: "api_key".into(),
            value: "query-secret-4 &=".into(),
        },
    )
    .await;
    let (status, created) = post_gateway(
        &gw,
        json!({"name": "q", "url": up.url(), "auth_type": "query_param",
               "auth_query_param_key": "api_key", "auth_query_param_value": "query-secret-4 &="}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["url"], up.url());
    let shown = everything_shown(&gw, id).await;
    assert!(!shown.contains("query-secret-4"), "{shown}");
    assert_eq!(created["authQueryParamKey"], "api_key");
    let mut client = gw.connect("/mcp").await;
    assert_eq!(client.counter("q-increment", json!({})).await, 1);

    // An unreachable upstream's error names the URL's host, never the secret.
    let dead = format!(
        "http://127.0.0.1:{}/mcp",
        crate::support::processes::free_port()
    );
    let (status, body) = post_gateway(
        &gw,
        json!({"name": "dead", "url": dead, "auth_type": "query_param",
               "auth_query_param_key": "api_key", "auth_query_param_value": "query-secret-5"}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.to_string().contains("query-secret-5"), "{body}");

    // And so does a call whose upstream went away.
    up.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let body = client
        .request(
            "tools/call",
            json!({"name": "q-increment", "arguments": {}}),
        )
        .await
        .body;
    assert!(body["error"].is_object(), "{body}");
    assert!(!body.to_string().contains("query-secret"), "{body}");
}

#[tokio::test]
async fn oauth_client_credentials_token_is_shared_cached_refreshed_and_replaced_when_revoked() {
    let gw = TestGateway::start().await;
    let up = guarded(
        "oa",
        RequiredAuth::OAuth {
            client_id: "switchyard".into(),
            client_secret: "client-secret-6".into(),
            expires_in: Duration::from_secs(2),
        },
    )
    .await;
    let oauth = |secret: &str| {
        json!({"name": "oa", "url": up.url(), "auth_type": "oauth",
               "oauth_config": {"grant_type": "client_credentials", "token_url": up.token_url(),
                                "client_id": "switchyard", "client_secret": secret, "scopes": ["mcp"]}})
    };
    let (status, body) = post_gateway(&gw, oauth("wrong")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.to_string().contains("invalid_client"), "{body}");

    let (status, created) = post_gateway(&gw, oauth("client-secret-6")).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["oauthConfig"]["client_secret"], "*****");
    assert_eq!(created["oauthConfig"]["client_id"], "switchyard");
    assert!(!everything_shown(&gw, created["id"].as_str().unwrap())
        .await
        .contains("client-secret-6"));
    let issued_at_registration = up.stats().tokens_issued;
    assert_eq!(issued_at_registration, 1);

    // Three sessions, one token: the cache is per gateway, not per session.
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = gw.connect("/mcp").await;
        assert_eq!(c.counter("oa-increment", json!({})).await, 1);
        clients.push(c);
    }
    assert_eq!(up.stats().tokens_issued, 1);

    // Refreshed ahead of expiry: no request is ever refused.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(clients[0].counter("oa-increment", json!({})).await, 2);
    assert_eq!(up.stats().tokens_issued, 2);
    assert_eq!(up.stats().unauthorized, 0);

    // Revoked early: the 401 retires the token and the call is retried once.
    up.revoke_tokens();
    assert_eq!(clients[1].counter("oa-increment", json!({})).await, 2);
    assert_eq!(up.stats().tokens_issued, 3);
    assert_eq!(up.stats().unauthorized, 1);
}

#[tokio::test]
async fn changing_credentials_closes_the_gateways_upstream_sessions_and_nothing_else() {
    let gw = TestGateway::start().await;
    let up = counter("cred").await;
    let other = counter("other").await;
    let (_, created) = post_gateway(
        &gw,
        json!({"name": "cred", "url": up.url(), "auth_type": "bearer", "auth_token": "t1"}),
    )
    .await;
    gw.register("other", &other.url()).await;
    let id = created["id"].as_str().unwrap();
    let mut client = gw.connect("/mcp").await;
    assert_eq!(client.counter("cred-increment", json!({})).await, 1);
    assert_eq!(client.counter("other-increment", json!({})).await, 1);
    let auth = up
        .last_headers()
        .into_iter()
        .find(|(k, _)| k == "authorization");
    assert_eq!(auth.map(|(_, v)| v), Some("Bearer t1".to_owned()));

    let (status, body) = put_gateway(&gw, id, &json!({"auth_token": "t2"})).await;
    assert_eq!(status, 200, "{body}");
    // A new upstream session (counter restarts) with the new token.
    assert_eq!(client.counter("cred-increment", json!({})).await, 1);
    let auth = up
        .last_headers()
        .into_iter()
        .find(|(k, _)| k == "authorization");
    assert_eq!(auth.map(|(_, v)| v), Some("Bearer t2".to_owned()));
    assert_eq!(client.counter("other-increment", json!({})).await, 2);

    // Removing the credentials is a change too.
    let (status, body) = put_gateway(&gw, id, &json!({"auth_type": null})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["authType"], Value::Null, "{body}");
    assert_eq!(client.counter("cred-increment", json!({})).await, 1);
    assert!(!up.last_headers().iter().any(|(k, _)| k == "authorization"));
}

/// A CA, a server certificate for `localhost` and a client certificate, all
/// generated per test run.
struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
    client_cert: String,
    client_key: String,
}

fn new_pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "switchyard test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "switchyard gateway");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &ca).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let server = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(server_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server: Arc::new(server),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    }
}

#[tokio::test]
async fn mtls_upstream_needs_its_pinned_ca_and_our_client_certificate() {
    let pki = new_pki();
    let other = new_pki();
    let up = CounterServer::start_tls(
        Options {
            name: "tls".into(),
            ..Options::default()
        },
        Arc::clone(&pki.server),
    )
    .await
    .unwrap();
    let gw = TestGateway::start().await;
    let attempts = [
        // The system roots do not know the test CA.
        (json!({}), "no CA"),
        // Another CA's certificate: pinned trust, so refused.
        (json!({"ca_certificate": other.ca_pem}), "another CA"),
        // The right CA, but the upstream demands a client certificate.
        (
            json!({"ca_certificate": pki.ca_pem}),
            "no client certificate",
        ),
        // A client certificate the upstream's CA did not sign.
        (
            json!({"ca_certificate": pki.ca_pem, "client_cert": other.client_cert, "client_key": other.client_key}),
            "foreign client certificate",
        ),
    ];
    for (tls, why) in attempts {
        let mut body = json!({"name": "tls", "url": up.https_url()});
        body.as_object_mut()
            .unwrap()
            .extend(tls.as_object().unwrap().clone());
        let (status, answer) = post_gateway(&gw, body).await;
        assert_eq!(status, 502, "{why}: {answer}");
    }
    let (status, created) = post_gateway(
        &gw,
        json!({"name": "tls", "url": up.https_url(), "ca_certificate": pki.ca_pem,
               "client_cert": pki.client_cert, "client_key": pki.client_key}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["clientKey"], "*****");
    assert_eq!(created["caCertificate"], pki.ca_pem.as_str());
    let id = created["id"].as_str().unwrap();
    let key_body = pki
        .client_key
        .lines()
        .nth(1)
        .expect("a PEM body line")
        .to_owned();
    assert!(!everything_shown(&gw, id).await.contains(&key_body));

    let mut client = gw.connect("/mcp").await;
    assert_eq!(client.counter("tls-increment", json!({})).await, 1);
    assert_eq!(client.counter("tls-increment", json!({})).await, 2);
    assert_eq!(up.stats().initializes, 2, "registration + this session");
}
