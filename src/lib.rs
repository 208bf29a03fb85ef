//! Switchyard: an MCP gateway.
//!
//! Many MCP clients connect to one Streamable HTTP endpoint and see the
//! federated tools of many upstream MCP servers. Each downstream session gets
//! its own upstream session per upstream server, reused for every call in that
//! session and never shared with another.
//!
//! # Layout
//! - [`config`]: settings from flags, env and a TOML file; validated once.
//! - [`auth`]: who is calling (API tokens, JWTs) and whether they may; `/.well-known/oauth-protected-resource`.
//! - [`jsonrpc`], [`mcp`], [`sse`]: wire types and framing, no I/O; [`body`]: request bodies up to a limit.
//! - [`downstream`]: the MCP endpoints clients talk to (`/mcp`, `/servers/{id}/mcp`) and their sessions.
//! - [`interim`]: the per-request queue for messages an upstream sends before its answer.
//! - [`router`]: what each MCP method does — answered locally or routed to a gateway.
//! - [`registry`]: `(downstream session, gateway)` → one live upstream session.
//! - [`upstream`]: the MCP client side: Streamable HTTP, session owner tasks, discovery.
//! - [`catalog`]: gateways, tools, virtual servers; SQLite record, in-memory snapshot.
//! - [`lifecycle`]: background upkeep (session expiry, gateway health) and reload.
//! - [`metrics`]: Prometheus metrics.
//! - [`passthrough`]: which downstream headers may reach an upstream (none unless allowed).
//! - [`admin`]: the REST API (ContextForge-compatible `/gateways`, `/tools`, `/servers`).
//! - [`app`]: shared state and the assembled HTTP service.
//! - [`server`]: accepting connections and serving them on per-core event loops.
//!
//! [`serve`] takes a bound listener and a started [`app::App`]; `main` only
//! wires flags, signals and logging to it.

pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod catalog;
pub mod config;
pub mod downstream;
pub mod fs;
pub mod interim;
pub mod jsonrpc;
pub mod lifecycle;
pub mod mcp;
pub mod metrics;
pub mod passthrough;
pub mod registry;
pub mod router;
pub mod secrets;
pub mod server;
pub mod sse;
pub mod trace;
pub mod upstream;

pub use server::{serve, serve_with, ThreadUpkeep};

/// The hasher of the maps on the per-call path (see `foldhash` in Cargo.toml).
pub(crate) type FastHash = foldhash::fast::RandomState;
