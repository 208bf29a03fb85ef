//! A gateway served in-process on `127.0.0.1:0`, stopped on drop.
//!
//! Authentication is on, as in production: the gateway mints itself an admin
//! API token, and every helper (and `http`, and the clients it hands out)
//! sends it, so every test also exercises authentication.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::{json, Value};
use switchyard::app::App;
use switchyard::config::Settings;
use switchyard::ThreadUpkeep;

use super::McpClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct TestGateway {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    /// Sends the admin token on every request.
    pub http: reqwest::Client,
    /// The admin API token the gateway minted for the tests.
    pub token: String,
    shutdown: CancellationToken,
    served: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::start_with(Settings::for_tests()).await
    }

    pub async fn start_with(settings: Settings) -> Self {
        Self::start_with_upkeep(settings, None).await
    }

    /// Served as the binary serves it, with `upkeep` on each I/O thread.
    pub async fn start_with_upkeep(settings: Settings, upkeep: Option<ThreadUpkeep>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let app = App::new(settings, shutdown.clone())
            .await
            .expect("app starts");
        let token = if app.auth.enabled() {
            app.auth
                .tokens
                .create("test admin", true, None)
                .await
                .expect("mint the test admin token")
                .token
        } else {
            String::new()
        };
        let served = tokio::spawn(switchyard::serve_with(listener, Arc::clone(&app), upkeep));
        Self {
            addr,
            app,
            http: authorized_client(&token),
            token,
            shutdown,
            served: Some(served),
        }
    }

    /// Mints another API token: another principal.
    pub async fn mint(&self, name: &str, admin: bool) -> String {
        self.app
            .auth
            .tokens
            .create(name, admin, None)
            .await
            .expect("mint a token")
            .token
    }

    /// An MCP client for `path` that sends the admin token (not connected yet).
    pub fn client(&self, path: &str) -> McpClient {
        McpClient::with_token(self.url(path), &self.token)
    }

    /// An MCP client for `path`, connected (initialize + initialized) with the admin token.
    pub async fn connect(&self, path: &str) -> McpClient {
        McpClient::connect_as(self.url(path), &self.token).await
    }

    /// GETs `path` with the test's credentials and parses the JSON answer.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let resp = self.http.get(self.url(path)).send().await.expect("GET");
        resp.json().await.expect("JSON answer")
    }

    /// The `/metrics` page, fetched with the test's credentials.
    pub async fn metrics_text(&self) -> String {
        let resp = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET");
        resp.text().await.expect("metrics text")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Registers an upstream; panics unless the gateway answers 201.
    pub async fn register(&self, name: &str, url: &str) -> Value {
        let resp = self
            .http
            .post(self.url("/gateways"))
            .json(&json!({"name": name, "url": url, "transport": "STREAMABLEHTTP"}))
            .send()
            .await
            .expect("POST /gateways");
        let status = resp.status();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(status, 201, "register {name}: {body}");
        body
    }

    /// Creates a virtual server with the given tool ids.
    pub async fn create_server(&self, name: &str, tool_ids: &[&str]) -> Value {
        let resp = self
            .http
            .post(self.url("/servers"))
            .json(&json!({"server": {"name": name, "associated_tools": tool_ids}}))
            .send()
            .await
            .expect("POST /servers");
        assert_eq!(resp.status(), 201);
        resp.json().await.expect("json")
    }

    pub async fn tool_id(&self, exposed_name: &str) -> String {
        let tools: Value = self
            .http
            .get(self.url("/tools"))
            .send()
            .await
            .expect("GET /tools")
            .json()
            .await
            .expect("json");
        tools
            .as_array()
            .and_then(|a| a.iter().find(|t| t["name"] == exposed_name))
            .and_then(|t| t["id"].as_str())
            .unwrap_or_else(|| panic!("no tool {exposed_name} in {tools}"))
            .to_owned()
    }

    /// Stops the gateway and waits for its shutdown to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(served) = self.served.take() {
            served.await.expect("serve task").expect("serve ok");
        }
    }
}

/// A client that sends `Authorization: Bearer <token>` on every request.
pub fn authorized_client(token: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.insert(AUTHORIZATION, v);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("HTTP client")
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
