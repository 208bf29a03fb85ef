//! The axum layer in front of every protected route: authenticate, check the
//! route's [`Access`], and hand the [`Principal`] to the handler as a request
//! extension (`Extension<Principal>`).
//!
//! Each router states its access when it is assembled (`admin/mod.rs`,
//! `downstream/mod.rs`), so a route cannot be served without one.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::header::HOST;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::Router;
use futures_util::future::Either;

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
    router.route_layer(gate(app, access, flavor))
}

/// The layer [`protect`] applies, for stacking with another one: every
/// `route_layer` boxes each request's future once more (axum's `Route`),
/// so routes with two checks take them as one layer.
pub fn gate(app: &Arc<App>, access: Access, flavor: Flavor) -> GateLayer {
    GateLayer {
        gate: Arc::new(Gate {
            app: Arc::clone(app),
            access,
            flavor,
        }),
    }
}

/// A layer of its own rather than `axum::middleware::from_fn`: most requests
/// are decided from memory (`--auth none`, known API tokens), and those pass
/// straight to the route with neither a boxed future nor a clone of the
/// inner service. Only JWTs and unseen API tokens take the async path.
#[derive(Clone)]
pub struct GateLayer {
    gate: Arc<Gate>,
}

impl<S> tower_layer::Layer<S> for GateLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> GateService<S> {
        GateService {
            gate: Arc::clone(&self.gate),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct GateService<S> {
    gate: Arc<Gate>,
    inner: S,
}

type Refused = Ready<Result<Response, Infallible>>;
type Later = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> tower_service::Service<Request> for GateService<S>
where
    S: tower_service::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Either<Refused, S::Future>, Later>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if let Some(verdict) = self.gate.app.auth.authenticate_now(req.headers()) {
            return Either::Left(match self.gate.refusal(verdict, &mut req) {
                None => Either::Right(self.inner.call(req)),
                Some(refused) => Either::Left(ready(Ok(refused))),
            });
        }
        // The service polled ready goes with the future; the clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = Arc::clone(&self.gate);
        Either::Right(Box::pin(async move {
            let verdict = gate.app.auth.authenticate(req.headers()).await;
            match gate.refusal(verdict, &mut req) {
                None => inner.call(req).await,
                Some(refused) => Ok(refused),
            }
        }))
    }
}

impl Gate {
    /// Checks the route's access for an authenticated caller and hands the
    /// principal to the handler (`None`); the refusal to send otherwise.
    fn refusal(
        &self,
        verdict: Result<Principal, AuthError>,
        req: &mut Request,
    ) -> Option<Response> {
        let principal = match verdict {
            Ok(p) => p,
            Err(e) => return Some(self.refuse(e, req)),
        };
        let needs_admin = match self.access {
            Access::Any => false,
            Access::Admin => true,
            Access::AdminForWrites => !matches!(*req.method(), Method::GET | Method::HEAD),
        };
        if needs_admin && !principal.admin {
            let e = AuthError::Forbidden {
                action: format!("{} {}", req.method(), req.uri().path()),
            };
            tracing::info!(principal = %principal.id, method = %req.method(), path = %req.uri().path(), "request forbidden: not an admin");
            return Some(self.refuse(e, req));
        }
        req.extensions_mut().insert::<Principal>(principal);
        None
    }

    fn refuse(&self, e: AuthError, req: &Request) -> Response {
        let url = metadata_url(&self.app, req.headers(), req.uri().path(), self.flavor);
        tracing::debug!(method = %req.method(), path = %req.uri().path(), reason = %e, "request refused");
        e.respond(self.flavor, &url)
    }
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
