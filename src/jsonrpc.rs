//! JSON-RPC 2.0 wire types, with no I/O.
//!
//! Payloads (`params`, `result`, `error`) stay as raw JSON text: the gateway
//! only looks inside the few messages it acts on, and everything else crosses
//! byte for byte, unknown fields included. Ids are echoed exactly as received.

use serde::Deserialize;
use serde_json::value::RawValue;

/// Standard JSON-RPC error codes (and the MCP ones we use).
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Implementation-defined server error: the upstream could not be reached
    /// or failed at the transport level.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32000;
    /// The upstream forgot its session (it answered 404); the next call builds a new one.
    pub const UPSTREAM_SESSION_EXPIRED: i64 = -32001;
    /// The upstream did not answer in time.
    pub const UPSTREAM_TIMEOUT: i64 = -32003;
    /// Spec (server/resources, "Error Handling"): the resource does not exist.
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// The client cancelled the request (as LSP numbers it; MCP names no code).
    pub const REQUEST_CANCELLED: i64 = -32800;
    /// Too many requests in flight for the session or principal (HTTP 429).
    pub const TOO_BUSY: i64 = -32004;
}

/// One JSON-RPC message as it arrived, classified.
#[derive(Debug)]
pub enum Message {
    Request(Request),
    Notification(Notification),
    /// A response (result or error) sent by the peer to a request of ours.
    Response(Response),
}

#[derive(Debug)]
pub struct Request {
    pub id: Box<RawValue>,
    pub method: String,
    pub params: Option<Box<RawValue>>,
}

#[derive(Debug)]
pub struct Notification {
    pub method: String,
    pub params: Option<Box<RawValue>>,
}

#[derive(Debug)]
pub struct Response {
    pub id: Box<RawValue>,
    pub outcome: Result<Box<RawValue>, Box<RawValue>>,
}

/// Why a body is not a JSON-RPC message. Maps to -32700 or -32600.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("parse error: {0}")]
    Parse(#[source] serde_json::Error),
    #[error("invalid request: {reason}")]
    Invalid {
        reason: &'static str,
        id: Option<Box<RawValue>>,
    },
}

impl EnvelopeError {
    pub fn code(&self) -> i64 {
        match self {
            EnvelopeError::Parse(_) => code::PARSE_ERROR,
            EnvelopeError::Invalid { .. } => code::INVALID_REQUEST,
        }
    }

    /// The id to answer with, when the message had a usable one.
    pub fn id(&self) -> Option<&RawValue> {
        match self {
            EnvelopeError::Parse(_) => None,
            EnvelopeError::Invalid { id, .. } => id.as_deref(),
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    jsonrpc: Option<Box<RawValue>>,
    // Present-but-null must be told apart from absent, hence `present`.
    #[serde(default, deserialize_with = "present")]
    id: Option<Box<RawValue>>,
    method: Option<String>,
    #[serde(default, deserialize_with = "present")]
    params: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Box<RawValue>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// MCP ids are strings or integers, never null (spec: basic/index, "Requests").
fn valid_id(id: &RawValue) -> bool {
    let s = id.get();
    match s.as_bytes().first() {
        Some(b'"') => true,
        Some(b'-' | b'0'..=b'9') => s.parse::<i64>().is_ok(),
        _ => false,
    }
}

/// Whether `body` nests arrays and objects deeper than `max` levels (the
/// outermost value is level 1). A linear scan that skips over strings, run
/// before parsing: a hostile body costs no recursion and no allocation.
pub fn nested_deeper_than(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses one message. A JSON array (a 2025-03-26 batch) is reported as
/// [`Parsed::Batch`] so the caller can decide what to do with it.
pub fn parse(body: &[u8]) -> Result<Parsed, EnvelopeError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let items: Vec<Box<RawValue>> =
            serde_json::from_slice(body).map_err(EnvelopeError::Parse)?;
        return Ok(Parsed::Batch(items));
    }
    parse_one(body).map(Parsed::Single)
}

#[derive(Debug)]
pub enum Parsed {
    Single(Message),
    Batch(Vec<Box<RawValue>>),
}

pub fn parse_one(body: &[u8]) -> Result<Message, EnvelopeError> {
    // One pass for the usual well-formed object. Deserializing the envelope
    // reads (and validates) the whole document, so what it accepts is what
    // the two-step path below accepts; only its errors cannot tell a syntax
    // error (-32700) from a malformed envelope (-32600), so any failure
    // takes the two-step path to be classified exactly as before.
    // (UTF-8 is checked first: skipped members are not checked by serde_json.)
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let fast = match std::str::from_utf8(body) {
        Ok(text) if first == Some(&b'{') => serde_json::from_str::<Envelope>(text).ok(),
        _ => None,
    };
    let env = match fast {
        Some(env) => env,
        None => envelope_slow(body)?,
    };
    classify(env)
}

/// Parse (-32700), then the envelope (-32600): every error named precisely.
fn envelope_slow(body: &[u8]) -> Result<Envelope, EnvelopeError> {
    let value: Box<RawValue> = serde_json::from_slice(body).map_err(EnvelopeError::Parse)?;
    if !value.get().starts_with('{') {
        return Err(EnvelopeError::Invalid {
            reason: "a JSON-RPC message must be an object",
            id: None,
        });
    }
    serde_json::from_str(value.get()).map_err(|_| EnvelopeError::Invalid {
        reason: "malformed JSON-RPC envelope",
        id: readable_id(value.get()),
    })
}

/// The id of an object whose other members are malformed (a method that is
/// not a string, say): JSON-RPC answers with null only when the id itself
/// cannot be read.
fn readable_id(object: &str) -> Option<Box<RawValue>> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<Box<RawValue>>,
    }
    serde_json::from_str::<IdOnly>(object)
        .ok()?
        .id
        .filter(|i| valid_id(i))
}

fn classify(env: Envelope) -> Result<Message, EnvelopeError> {
    let id_ok = env.id.as_deref().is_none_or(valid_id);
    let invalid = |reason| EnvelopeError::Invalid {
        reason,
        id: env.id.clone().filter(|i| valid_id(i)),
    };
    if env.jsonrpc.as_deref().map(RawValue::get) != Some("\"2.0\"") {
        return Err(invalid("\"jsonrpc\" must be \"2.0\""));
    }
    if !id_ok {
        return Err(invalid("\"id\" must be a string or an integer"));
    }
    if let Some(p) = &env.params {
        if !matches!(p.get().as_bytes().first(), Some(b'{' | b'[')) {
            return Err(invalid("\"params\" must be an object or an array"));
        }
    }
    match (env.method, env.id, env.result, env.error) {
        (Some(method), Some(id), None, None) => Ok(Message::Request(Request {
            id,
            method,
            params: env.params,
        })),
        (Some(method), None, None, None) => Ok(Message::Notification(Notification {
            method,
            params: env.params,
        })),
        (None, Some(id), Some(result), None) => Ok(Message::Response(Response {
            id,
            outcome: Ok(result),
        })),
        (None, Some(id), None, Some(error)) => Ok(Message::Response(Response {
            id,
            outcome: Err(error),
        })),
        (Some(_), id, _, _) => Err(EnvelopeError::Invalid {
            reason: "a request must not carry \"result\" or \"error\"",
            id,
        }),
        (None, id, _, _) => Err(EnvelopeError::Invalid {
            reason:
                "a message needs \"method\", or \"id\" with exactly one of \"result\" and \"error\"",
            id,
        }),
    }
}

/// `{"jsonrpc":"2.0","id":ID,"result":RESULT}` without re-serializing RESULT.
pub fn result_body(id: &RawValue, result: &RawValue) -> String {
    let mut s = String::with_capacity(40 + id.get().len() + result.get().len());
    s.push_str(r#"{"jsonrpc":"2.0","id":"#);
    s.push_str(id.get());
    s.push_str(r#","result":"#);
    s.push_str(result.get());
    s.push('}');
    s
}

/// An error response; `id` None becomes `null` (the JSON-RPC rule when the id is unknown).
pub fn error_body(
    id: Option<&RawValue>,
    code: i64,
    message: &str,
    data: Option<&RawValue>,
) -> String {
    let error = error_object(code, message, data);
    error_body_raw(id, &error)
}

/// An error response carrying an error object exactly as an upstream sent it.
pub fn error_body_raw(id: Option<&RawValue>, error: &str) -> String {
    let id = id.map_or("null", RawValue::get);
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#)
}

pub fn error_object(code: i64, message: &str, data: Option<&RawValue>) -> String {
    let message = serde_json::Value::String(message.to_owned());
    match data {
        Some(d) => format!(
            r#"{{"code":{code},"message":{message},"data":{}}}"#,
            d.get()
        ),
        None => format!(r#"{{"code":{code},"message":{message}}}"#),
    }
}

// The bodies below are assembled by hand rather than with `format!`: one
// of them is built for every relayed call.

/// A request we originate (to an upstream), with our own numeric id.
pub fn request_body(id: u64, method: &str, params: Option<&RawValue>) -> String {
    let params_len = params.map_or(0, |p| p.get().len());
    let mut out = String::with_capacity(64 + method.len() + params_len);
    out.push_str(r#"{"jsonrpc":"2.0","id":"#);
    out.push_str(itoa::Buffer::new().format(id));
    out.push_str(r#","method":"#);
    push_json_string(&mut out, method);
    push_params(&mut out, params);
    out
}

pub fn notification_body(method: &str, params: Option<&RawValue>) -> String {
    let params_len = params.map_or(0, |p| p.get().len());
    let mut out = String::with_capacity(48 + method.len() + params_len);
    out.push_str(r#"{"jsonrpc":"2.0","method":"#);
    push_json_string(&mut out, method);
    push_params(&mut out, params);
    out
}

fn push_params(out: &mut String, params: Option<&RawValue>) {
    if let Some(p) = params {
        out.push_str(r#","params":"#);
        out.push_str(p.get());
    }
    out.push('}');
}

/// Appends `s` as a JSON string literal. Names and methods rarely need
/// escaping; those that do go through serde_json.
pub fn push_json_string(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
    }
}

/// Wraps already-serialized JSON as a raw value. Only for text we produced
/// ourselves with serde_json, so it is valid JSON by construction.
pub fn raw(json: String) -> Box<RawValue> {
    RawValue::from_string(json).unwrap_or_else(|_| {
        // Unreachable for serde_json output; fall back to null rather than panic.
        RawValue::from_string("null".to_owned()).unwrap_or_default()
    })
}

pub fn to_raw<T: serde::Serialize>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Result<Message, EnvelopeError> {
        parse_one(s.as_bytes())
    }

    #[test]
    fn classifies_messages() {
        assert!(matches!(
            one(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(Message::Request(_))
        ));
        assert!(matches!(
            one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification(_))
        ));
        assert!(matches!(
            one(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Ok(Message::Response(_))
        ));
        assert!(matches!(
            one(r#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"x"}}"#),
            Ok(Message::Response(_))
        ));
    }

    #[test]
    fn rejects_bad_envelopes_with_the_right_code() {
        assert_eq!(one("{nope").unwrap_err().code(), code::PARSE_ERROR);
        for bad in [
            r#"[1,2]"#,
            r#"{"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":3}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","method":7}"#,
            r#""just a string""#,
        ] {
            assert_eq!(one(bad).unwrap_err().code(), code::INVALID_REQUEST, "{bad}");
        }
    }

    #[test]
    fn the_one_pass_path_classifies_like_the_two_step_one() {
        let cases: [&[u8]; 9] = [
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","extra":{"a":[1,2]}}"#,
            br#"  {"jsonrpc":"2.0","id":1,"method":"ping"}  "#,
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"} x"#,
            br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","x":"#,
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\xff\"}",
            br#"["2.0",1,"ping"]"#,
            br#"{"jsonrpc":"2.0","method":5,"#,
            br#"{"jsonrpc":"2.0","id":"a","result":{"content":[]}}"#,
        ];
        for body in cases {
            let two_step = envelope_slow(body).and_then(classify);
            let got = parse_one(body);
            let code =
                |r: &Result<Message, EnvelopeError>| r.as_ref().err().map(EnvelopeError::code);
            assert_eq!(
                code(&got),
                code(&two_step),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn invalid_request_keeps_a_usable_id() {
        let err = one(r#"{"jsonrpc":"1.0","id":"x","method":"ping"}"#).unwrap_err();
        assert_eq!(err.id().map(RawValue::get), Some(r#""x""#));
        // Malformed elsewhere, or of no known shape: the id is still readable.
        for (body, id) in [
            (r#"{"jsonrpc":"2.0","id":14,"method":5}"#, Some("14")),
            (
                r#"{"jsonrpc":"2.0","id":"a","params":{},"method":[]}"#,
                Some(r#""a""#),
            ),
            (r#"{"jsonrpc":"2.0","id":15}"#, Some("15")),
            (
                r#"{"jsonrpc":"2.0","id":16,"method":"m","result":{}}"#,
                Some("16"),
            ),
            // Not readable as an id: null it stays.
            (r#"{"jsonrpc":"2.0","id":{"x":1},"method":5}"#, None),
            (r#"{"jsonrpc":"2.0","id":1,"id":2,"method":5}"#, None),
        ] {
            let err = one(body).unwrap_err();
            assert_eq!(err.code(), code::INVALID_REQUEST, "{body}");
            assert_eq!(err.id().map(RawValue::get), id, "{body}");
        }
    }

    #[test]
    fn bodies_are_valid_json() {
        let id = to_raw(&serde_json::json!("a\"b"));
        let res = to_raw(&serde_json::json!({"x": [1, 2]}));
        let v: serde_json::Value = serde_json::from_str(&result_body(&id, &res)).unwrap();
        assert_eq!(v["id"], "a\"b");
        assert_eq!(v["result"]["x"][1], 2);
        let e: serde_json::Value =
            serde_json::from_str(&error_body(None, -32601, "no \"such\"", None)).unwrap();
        assert_eq!(e["id"], serde_json::Value::Null);
        assert_eq!(e["error"]["message"], "no \"such\"");
        let r: serde_json::Value =
            serde_json::from_str(&request_body(7, "tools/call", Some(&res))).unwrap();
        assert_eq!(r["params"]["x"][0], 1);
        assert_eq!(r["id"], 7);
        // Names that need escaping take serde_json's path.
        for method in ["a\"b", "back\\slash", "tab\there", "ünï/cödé", ""] {
            let r: serde_json::Value =
                serde_json::from_str(&request_body(u64::MAX, method, None)).unwrap();
            assert_eq!(r["method"], method);
            assert_eq!(r["id"], u64::MAX);
            let n: serde_json::Value =
                serde_json::from_str(&notification_body(method, Some(&res))).unwrap();
            assert_eq!(n["method"], method);
            assert_eq!(n["params"]["x"][1], 2);
        }
    }

    #[test]
    fn nesting_depth_is_measured_outside_strings() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(!nested_deeper_than(nested(64).as_bytes(), 64));
        assert!(nested_deeper_than(nested(65).as_bytes(), 64));
        assert!(!nested_deeper_than(br#"{"a":"[[[[[[\"[[[[[["}"#, 2));
        assert!(nested_deeper_than(br#"{"a":{"b":[1]}}"#, 2));
        assert!(!nested_deeper_than(br#"{"a":{"b":1},"c":[2]}"#, 2));
    }

    #[test]
    fn batches_are_recognised() {
        match parse(br#" [{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).unwrap() {
            Parsed::Batch(items) => assert_eq!(items.len(), 1),
            Parsed::Single(_) => panic!("expected a batch"),
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Arbitrary JSON, a few levels deep.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::json!(f)),
            ".{0,12}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::hash_map(
                    "(jsonrpc|id|method|params|result|error|[a-z]{1,4})",
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any bytes at all: an answer, never a panic.
        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }

        /// Any JSON: whatever the parser accepts is well formed, and the error
        /// code of what it rejects is one of the two JSON-RPC envelope codes.
        #[test]
        fn parse_classifies_consistently(v in json()) {
            let text = v.to_string();
            match parse_one(text.as_bytes()) {
                Ok(Message::Request(r)) => {
                    prop_assert!(valid_id(&r.id));
                    prop_assert_eq!(v["jsonrpc"].as_str(), Some("2.0"));
                    prop_assert_eq!(v["method"].as_str(), Some(r.method.as_str()));
                }
                Ok(Message::Notification(n)) => {
                    prop_assert!(v.get("id").is_none());
                    prop_assert_eq!(v["method"].as_str(), Some(n.method.as_str()));
                }
                Ok(Message::Response(r)) => {
                    prop_assert!(valid_id(&r.id));
                    prop_assert!(v.get("method").is_none());
                }
                Err(e) => prop_assert!(matches!(e.code(), code::PARSE_ERROR | code::INVALID_REQUEST)),
            }
        }

        /// Error bodies are valid JSON whatever the message says.
        #[test]
        fn error_bodies_are_json(message in ".{0,64}", code in any::<i64>()) {
            let body = error_body(None, code, &message, None);
            let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(v["error"]["message"].as_str(), Some(message.as_str()));
        }
    }
}
