//! The axum layer in front of every protected route: authenticate, check the
//! route's [`Access`], and hand the [`Principal`] to the handler as a request
//! extension (`Extension<Principal>`).
//!
//! Each router states its access when it is assembled (`admin/mod.rs`,
//! `downstream/mod.rs`), so a route cannot be served without one.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::HOST;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;

use super::error::{AuthError, Flavor};
use super::principal::Principal;
use crate::app::App;

/// Who may use a group of routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Any authenticated principal.
    Any,
    /// Reads (GET, HEAD) for any principal; everything else admin only.
    AdminForWrites,
    /// Admin principals only.
    Admin,
}

#[derive(Clone)]
struct Gate {
    app: Arc<App>,
    access: Access,
    flavor: Flavor,
}

/// Puts `router`'s routes behind authentication with the given access.
pub fn protect(
    router: Router<Arc<App>>,
    app: &Arc<App>,
    access: Access,
    flavor: Flavor,
) -> Router<Arc<App>> {
    let gate = Gate {
        app: Arc::clone(app),
        access,
        flavor,
    };
    router.route_layer(axum::middleware::from_fn_with_state(gate, check))
}

async fn check(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let refuse = |e: AuthError, req: &Request| {
        let url = metadata_url(&gate.app, req.headers(), req.uri().path(), gate.flavor);
        tracing::debug!(method = %req.method(), path = %req.uri().path(), reason = %e, "request refused");
        e.respond(gate.flavor, &url)
    };
    let principal = match gate.app.auth.authenticate(req.headers()).await {
        Ok(p) => p,
        Err(e) => return refuse(e, &req),
    };
    let needs_admin = match gate.access {
        Access::Any => false,
        Access::Admin => true,
        Access::AdminForWrites => !matches!(*req.method(), Method::GET | Method::HEAD),
    };
    if needs_admin && !principal.admin {
        let e = AuthError::Forbidden {
            action: format!("{} {}", req.method(), req.uri().path()),
        };
        tracing::info!(principal = %principal.id, method = %req.method(), path = %req.uri().path(), "request forbidden: not an admin");
        return refuse(e, &req);
    }
    req.extensions_mut().insert::<Principal>(principal);
    next.run(req).await
}

/// The metadata document for the resource a refused request addressed: for
/// an MCP endpoint its path-specific document (`…/oauth-protected-resource/mcp`,
/// as the MCP authorization spec has clients look it up), for the REST API
/// the gateway's root one.
fn metadata_url(app: &App, headers: &HeaderMap, path: &str, flavor: Flavor) -> String {
    let base = super::base_url(app, headers);
    match flavor {
        Flavor::JsonRpc => format!(
            "{base}{}{}",
            super::metadata::WELL_KNOWN,
            path.trim_end_matches('/')
        ),
        Flavor::Rest => format!("{base}{}", super::metadata::WELL_KNOWN),
    }
}

/// `Host`, if it is a plain authority (no quotes or spaces that could break
/// out of a header parameter).
pub(super) fn host_authority(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(HOST)?.to_str().ok()?;
    host.parse::<axum::http::uri::Authority>()
        .ok()
        .map(|a| a.as_str().to_owned())
}
