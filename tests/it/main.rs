//! Integration tests: the real gateway router on an ephemeral loopback port,
//! real upstream MCP servers (our counter fixture, in-process or as a process),
//! real HTTP in between. One test binary, one module per feature.

mod support;

mod admin_api;
mod auth;
mod bad_input;
mod bench_smoke;
mod binary;
mod cancellation;
mod conformance;
mod endpoints;
mod everything;
mod header_hygiene;
mod inspector;
mod isolation;
mod legacy_sse;
mod lifecycle;
mod limits;
mod openapi;
mod protected_resource;
mod python_sdk;
mod python_upstream;
mod resumption;
mod server_messages;
mod session_binding;
mod ssrf;
mod transports;
mod upstream_credentials;
mod upstream_failures;
