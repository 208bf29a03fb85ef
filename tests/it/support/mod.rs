//! Test harness: a gateway on port 0, an MCP client, counter helpers.
//!
//! `jwt_keys/` holds a key pair made for these tests only (RSA 2048 and
//! P-256, private keys in PEM, public keys as `jwks.json`); nothing trusts them.

pub mod gateway;
pub mod mcp_client;
pub mod peers;
pub mod processes;

pub use gateway::TestGateway;
pub use mcp_client::McpClient;

use switchyard_fixtures::conformance::ConformanceServer;
use switchyard_fixtures::{CounterServer, Options};

pub async fn counter(name: &str) -> CounterServer {
    CounterServer::start(Options {
        name: name.to_owned(),
        ..Options::default()
    })
    .await
    .expect("fixture starts")
}

/// The conformance fixture registered as gateway "conf" (its tools are
/// `conf-test_…`), and a client with an initialized session on `/mcp`.
pub async fn conformance_upstream() -> (ConformanceServer, TestGateway, McpClient) {
    let upstream = ConformanceServer::start("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("fixture starts");
    let gw = TestGateway::start().await;
    gw.register("conf", &upstream.url()).await;
    let client = gw.connect("/mcp").await;
    (upstream, gw, client)
}
