//! Test harness: a gateway on port 0, an MCP client, counter helpers.

pub mod gateway;
pub mod mcp_client;
pub mod peers;
pub mod processes;

pub use gateway::TestGateway;
pub use mcp_client::McpClient;

use switchyard_fixtures::{CounterServer, Options};

pub async fn counter(name: &str) -> CounterServer {
    CounterServer::start(Options {
        name: name.to_owned(),
        ..Options::default()
    })
    .await
    .expect("fixture starts")
}
