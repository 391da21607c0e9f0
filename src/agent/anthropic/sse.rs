//! Server-sent events framing for the Messages API stream (contracts §1.5).
//!
//! Owns turning raw bytes into `event:`/`data:` records. It knows nothing about HTTP, retries
//! or the meaning of the JSON payloads; `anthropic` interprets the records.

/// One SSE record: the `event:` name (if any) and the joined `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseRecord {
    /// The value of the `event:` field; records without one are dropped by the client, as the
    /// official SDKs do.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// An incremental SSE parser: feed it chunks as they arrive, in any split, and it yields each
/// complete record once its terminating blank line has been seen.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
    has_field: bool,
}

impl SseParser {
    /// A parser with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk of bytes and returns the records it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseRecord> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        // Lines end in \n, \r\n or a lone \r; a lone \r at the very end of the buffer may be
        // the first half of \r\n, so it waits for the next chunk.
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let skip = if self.buf[pos] == b'\r' {
                match self.buf.get(pos + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    None => break,
                }
            } else {
                1
            };
            let line: Vec<u8> = self.buf.drain(..pos + skip).take(pos).collect();
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(rec) = self.line(&line) {
                out.push(rec);
            }
        }
        out
    }

    /// Ends the input: returns a record that was complete except for its blank line.
    pub fn finish(&mut self) -> Option<SseRecord> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let line = String::from_utf8_lossy(&rest).into_owned();
            if let Some(rec) = self.line(&line) {
                return Some(rec);
            }
        }
        self.line("")
    }

    fn line(&mut self, line: &str) -> Option<SseRecord> {
        if line.is_empty() {
            if !self.has_field {
                return None;
            }
            self.has_field = false;
            return Some(SseRecord {
                event: self.event.take(),
                data: std::mem::take(&mut self.data).join("\n"),
            });
        }
        if line.starts_with(':') {
            return None; // comment
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => {
                self.event = Some(value.to_string());
                self.has_field = true;
            }
            "data" => {
                self.data.push(value.to_string());
                self.has_field = true;
            }
            _ => {} // id, retry and unknown fields carry nothing the client uses
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(event: &str, data: &str) -> SseRecord {
        SseRecord {
            event: Some(event.to_string()),
            data: data.to_string(),
        }
    }

    #[test]
    fn parses_records_split_anywhere() {
        let input = "event: ping\ndata: {\"type\":\"ping\"}\n\n: comment\nevent: message_stop\r\ndata: {}\r\n\r\n";
        for split in 0..input.len() {
            let mut p = SseParser::new();
            let mut got = p.push(&input.as_bytes()[..split]);
            got.extend(p.push(&input.as_bytes()[split..]));
            got.extend(p.finish());
            assert_eq!(
                got,
                vec![
                    rec("ping", "{\"type\":\"ping\"}"),
                    rec("message_stop", "{}")
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn joins_multi_line_data_and_keeps_records_without_event() {
        let mut p = SseParser::new();
        let got = p.push(b"data: a\ndata: b\n\n");
        assert_eq!(
            got,
            vec![SseRecord {
                event: None,
                data: "a\nb".into()
            }]
        );
    }

    #[test]
    fn finish_flushes_an_unterminated_record() {
        let mut p = SseParser::new();
        assert!(p.push(b"event: x\ndata: 1").is_empty());
        assert_eq!(p.finish(), Some(rec("x", "1")));
        assert_eq!(p.finish(), None);
    }
}
