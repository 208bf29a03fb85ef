//! Integration tests: the real gateway router on an ephemeral loopback port,
//! real upstream MCP servers (our counter fixture, in-process or as a process),
//! real HTTP in between. One test binary, one module per feature.

mod support;

mod admin_api;
mod auth;
mod bad_input;
mod binary;
mod endpoints;
mod header_hygiene;
mod isolation;
mod lifecycle;
mod limits;
mod protected_resource;
mod python_sdk;
mod session_binding;
mod ssrf;
mod upstream_failures;
