//! Request bodies, read up to a limit.
//!
//! A body over the limit is refused (413), but only after the rest of it has
//! been read and thrown away, within bounds. A server that answers and closes
//! while the client is still sending makes the kernel reset the connection
//! (unread data in the receive buffer), and the client then sees a broken
//! pipe instead of the 413 and its reason. Web servers do the same (nginx's
//! "lingering close"). Nothing discarded is kept in memory.

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, EXPECT};
use http::HeaderMap;
use http_body_util::BodyExt;

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit (declared or sent).
    TooLarge,
    /// The client stopped sending, or sent a broken chunked encoding.
    Unreadable(String),
}

/// Past this many bytes, or this long, an oversized body is not waited for:
/// the connection closes, as it would without the courtesy.
const DISCARD_BYTES: u64 = 64 << 20;
const DISCARD_TIME: Duration = Duration::from_secs(5);

/// The whole body, if it is at most `limit` bytes.
pub async fn read_limited(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        // A client waiting for `100 Continue` has sent nothing yet; reading
        // would invite the body we are about to refuse.
        if n <= DISCARD_BYTES && !headers.contains_key(EXPECT) {
            discard(body, 0).await;
        }
        return Err(BodyError::TooLarge);
    }
    // One chunk, the usual case, is returned without a copy.
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Unreadable(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen += data.len();
        if seen > limit {
            discard(body, seen as u64).await;
            return Err(BodyError::TooLarge);
        }
        match (&mut first, &mut joined) {
            (None, None) => first = Some(data),
            (Some(_), None) => {
                let mut all = BytesMut::with_capacity(declared.map_or(seen, |n| n as usize));
                all.extend_from_slice(first.take().as_deref().unwrap_or_default());
                all.extend_from_slice(&data);
                joined = Some(all);
            }
            (_, Some(all)) => all.extend_from_slice(&data),
        }
    }
    Ok(match joined {
        Some(all) => all.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// Reads what is left of `body` and drops it, within the bounds above.
async fn discard(mut body: Body, mut seen: u64) {
    let drain = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen > DISCARD_BYTES {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(chunks: &[&'static str]) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn chunks_are_joined_up_to_the_limit_and_refused_past_it() {
        let none = HeaderMap::new();
        let one = read_limited(&none, chunked(&["hello"]), 5).await.unwrap();
        assert_eq!(one, "hello");
        let three = read_limited(&none, chunked(&["he", "ll", "o"]), 5)
            .await
            .unwrap();
        assert_eq!(three, "hello");
        assert!(matches!(
            read_limited(&none, chunked(&["hel", "lo!"]), 5).await,
            Err(BodyError::TooLarge)
        ));
        let empty = read_limited(&none, Body::empty(), 5).await.unwrap();
        assert!(empty.is_empty());
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, "6".parse().unwrap());
        assert!(matches!(
            read_limited(&headers, Body::from("hello!"), 5).await,
            Err(BodyError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn a_broken_body_is_unreadable_not_too_large() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"he")),
            Err(std::io::Error::other("client went away")),
        ];
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        match read_limited(&HeaderMap::new(), body, 5).await {
            Err(BodyError::Unreadable(reason)) => assert!(reason.contains("went away"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
