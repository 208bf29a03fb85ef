//! The authenticated caller of a request, as handlers and sessions see it.

use std::sync::Arc;

/// Who is calling. Two principals are the same caller exactly when their
/// `id`s are equal; sessions are bound to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Stable identity: `token:<token id>`, `jwt:<iss>#<sub>`, or `anonymous`.
    pub id: Arc<str>,
    /// For people: the token's name or the JWT subject.
    pub name: Arc<str>,
    /// May change the catalog, mint tokens and use the admin endpoints.
    pub admin: bool,
}

impl Principal {
    pub fn api_token(token_id: &str, name: &str, admin: bool) -> Self {
        Self {
            id: Self::api_token_id(token_id),
            name: name.into(),
            admin,
        }
    }

    /// The principal id of the API token `token_id`.
    pub fn api_token_id(token_id: &str) -> Arc<str> {
        format!("token:{token_id}").into()
    }

    pub fn jwt(issuer: Option<&str>, subject: &str, admin: bool) -> Self {
        Self {
            id: format!("jwt:{}#{subject}", issuer.unwrap_or("")).into(),
            name: subject.into(),
            admin,
        }
    }

    /// Everyone, with `--auth none` (loopback only). Built per request on
    /// purpose: clones of one shared principal would have every request on
    /// every thread write the same reference counts (measured: contention
    /// costs more than the two small allocations).
    pub fn anonymous() -> Self {
        Self {
            id: "anonymous".into(),
            name: "anonymous".into(),
            admin: true,
        }
    }
}
