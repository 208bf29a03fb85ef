//! Server-Sent Events framing (WHATWG HTML, "Server-sent events"), both ways.
//!
//! Decoding is incremental over arbitrary chunk boundaries and bounded: an
//! event larger than the limit is an error, not an unbounded buffer. Written
//! here rather than taken from a crate because both directions need the same
//! small codec and the bound matters more than generality.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("SSE event exceeds {limit} bytes")]
pub struct TooLarge {
    pub limit: usize,
}

pub struct Decoder {
    buf: Vec<u8>,
    data: String,
    event: Option<String>,
    id: Option<String>,
    /// The last `retry:` the stream sent, in milliseconds.
    retry: Option<u64>,
    has_data: bool,
    limit: usize,
}

impl Decoder {
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            data: String::new(),
            event: None,
            id: None,
            retry: None,
            has_data: false,
            limit,
        }
    }

    /// The stream's last event id so far, events without data included
    /// (an SSE priming event may carry nothing else): what a client resumes
    /// from with `Last-Event-ID`.
    pub fn last_event_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// How long the stream asked a client to wait before reconnecting.
    pub fn retry(&self) -> Option<std::time::Duration> {
        self.retry.map(std::time::Duration::from_millis)
    }

    /// Feeds bytes; returns the events completed by them.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, TooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            if let Some(ev) = self.line(&line) {
                out.push(ev);
            }
        }
        self.buf.drain(..start);
        if self.buf.len() + self.data.len() > self.limit {
            return Err(TooLarge { limit: self.limit });
        }
        Ok(out)
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            if !self.has_data {
                self.event = None;
                return None;
            }
            self.has_data = false;
            return Some(Event {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
                id: self.id.clone(),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            // Only ASCII digits, as the SSE spec says; anything else is ignored.
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
        None
    }
}

/// One `message` event carrying a JSON-RPC message. JSON never contains a raw
/// newline when serialized compactly, but a pass-through body might, so every
/// line gets its own `data:` field.
pub fn message_event(json: &str, id: Option<&str>) -> String {
    let mut s = String::with_capacity(json.len() + 32);
    if let Some(id) = id {
        s.push_str("id: ");
        s.push_str(id);
        s.push('\n');
    }
    s.push_str("event: message\n");
    for line in json.split('\n') {
        s.push_str("data: ");
        s.push_str(line.strip_suffix('\r').unwrap_or(line));
        s.push('\n');
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_across_chunk_boundaries() {
        let mut d = Decoder::new(1 << 20);
        let text = "id: 0\ndata: \n\n: comment\nevent: message\r\ndata: {\"a\":\ndata: 1}\r\n\r\n";
        let mut events = Vec::new();
        for b in text.as_bytes() {
            events.extend(d.feed(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data, "");
        assert_eq!(events[1].event.as_deref(), Some("message"));
        assert_eq!(events[1].data, "{\"a\":\n1}");
        assert_eq!(events[1].id.as_deref(), Some("0"));
    }

    #[test]
    fn remembers_the_last_id_and_retry_even_without_data() {
        let mut d = Decoder::new(1024);
        assert!(d.feed(b"id: 4-0\nretry: 250\n\n").unwrap().is_empty());
        assert_eq!(d.last_event_id(), Some("4-0"));
        assert_eq!(d.retry(), Some(std::time::Duration::from_millis(250)));
        d.feed(b"retry: soon\nid: 4-1\ndata: x\n\n").unwrap();
        assert_eq!(d.last_event_id(), Some("4-1"));
        assert_eq!(d.retry(), Some(std::time::Duration::from_millis(250)));
    }

    #[test]
    fn bounds_event_size() {
        let mut d = Decoder::new(16);
        assert!(d.feed(b"data: 0123456789abcdefghij").is_err());
    }

    #[test]
    fn encodes_round_trip() {
        let enc = message_event("{\"x\":\"y\"}", Some("7"));
        let evs = Decoder::new(1024).feed(enc.as_bytes()).unwrap();
        assert_eq!(
            evs,
            vec![Event {
                event: Some("message".into()),
                data: "{\"x\":\"y\"}".into(),
                id: Some("7".into())
            }]
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Arbitrary bytes in arbitrary chunks: no panic, and the buffer stays bounded.
        #[test]
        fn decoder_survives_anything(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut d = Decoder::new(1024);
            for c in &chunks {
                if d.feed(c).is_err() {
                    break;
                }
                prop_assert!(d.buf.len() + d.data.len() <= 1024);
            }
        }

        /// However a stream of our events is cut, the same messages come out.
        #[test]
        fn chunking_does_not_change_events(
            messages in prop::collection::vec("[ -~]{0,40}", 1..6),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let text: String = messages.iter().map(|m| message_event(m, None)).collect();
            let bytes = text.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut d = Decoder::new(1 << 20);
            let mut got = Vec::new();
            let mut start = 0;
            for p in points.into_iter().chain(std::iter::once(bytes.len())) {
                got.extend(d.feed(&bytes[start..p]).map_err(|e| TestCaseError::fail(e.to_string()))?);
                start = p;
            }
            let datas: Vec<String> = got.into_iter().map(|e| e.data).collect();
            prop_assert_eq!(datas, messages);
        }
    }
}
