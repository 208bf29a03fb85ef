//! `GET /openapi.json`: the OpenAPI 3.1 document of the REST API,
//! unauthenticated (public metadata, like `/.well-known/*`).
//!
//! Hand-written (`openapi.json` next to this file) so the handlers stay plain
//! axum; two checks keep it honest: the unit tests below (every documented
//! operation is routed, every REST route is documented, every `$ref`
//! resolves), and the schemathesis run in `tests/it/openapi.rs`, which
//! fuzzes every operation and checks the answers against the document.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn serve() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::DOCUMENT;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn openapi_document_is_well_formed() {
        let doc: Value = serde_json::from_str(DOCUMENT).expect("the document is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        // Every reference points into the document.
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{r} is not local"));
            assert!(doc.pointer(pointer).is_some(), "{r} resolves to nothing");
        }
        // Every operation has an id of its own, and every protected one documents 401.
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                if method == "parameters" {
                    continue;
                }
                let id = op["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_owned()), "operationId {id} twice");
                let public = op["security"].as_array().is_some_and(Vec::is_empty);
                assert!(
                    public || op["responses"].get("401").is_some(),
                    "{method} {path} needs a token but documents no 401"
                );
            }
        }
    }
}
