//! Splitting a byte stream into JSON-RPC messages.
//!
//! RFC 7047 sends JSON values back to back with no length prefix or
//! delimiter (Open vSwitch adds none either). The framer finds where each
//! top-level object ends by tracking nesting and strings, then hands the
//! complete text to serde_json. Doing the split here, instead of reading
//! with serde_json's streaming deserializer directly from the socket, is
//! what lets a message be bounded in size ([`MAX_MESSAGE`]) and lets a
//! read stop at any byte without losing a half-read value.

use super::Error;
use serde_json::Value;

/// The largest message accepted (the initial monitor reply of a busy
/// database is the largest message there is: a few MiB for thousands of
/// ports).
pub const MAX_MESSAGE: usize = 64 << 20;

/// Accumulates bytes; yields complete JSON values.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Scan position in `buf` (everything before it is inside the current
    /// value).
    pos: usize,
    depth: usize,
    in_string: bool,
    escape: bool,
    limit: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(MAX_MESSAGE)
    }
}

impl Framer {
    /// A framer refusing values longer than `limit` bytes.
    pub fn new(limit: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            pos: 0,
            depth: 0,
            in_string: false,
            escape: false,
            limit,
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete value, `None` when more bytes are needed. After an
    /// error the stream cannot be resynchronised: the caller closes it.
    pub fn next_value(&mut self) -> Option<Result<Value, Error>> {
        if self.depth == 0 {
            // Skip whitespace between values.
            let skip = self
                .buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.buf.len());
            self.buf.drain(..skip);
            self.pos = 0;
            match self.buf.first() {
                None => return None,
                Some(b'{') | Some(b'[') => {}
                Some(_) => {
                    return Some(Err(Error::malformed(
                        "stream",
                        "a JSON object or array at the top level",
                    )))
                }
            }
        }
        while self.pos < self.buf.len() {
            let b = self.buf[self.pos];
            self.pos += 1;
            if self.in_string {
                match (self.escape, b) {
                    (true, _) => self.escape = false,
                    (false, b'\\') => self.escape = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        let text: Vec<u8> = self.buf.drain(..self.pos).collect();
                        self.pos = 0;
                        return Some(serde_json::from_slice(&text).map_err(Error::Json));
                    }
                }
                _ => {}
            }
        }
        if self.buf.len() > self.limit {
            return Some(Err(Error::TooLarge { limit: self.limit }));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all(f: &mut Framer) -> Vec<Result<Value, Error>> {
        std::iter::from_fn(|| f.next_value()).collect()
    }

    #[test]
    fn back_to_back_values_split_at_any_byte() {
        let text = br#"{"id":1,"result":{"a":"}]\"{"}} {"method":"echo","params":[],"id":"echo"}
[1,[2]]"#;
        // Every split point gives the same three values.
        for cut in 0..text.len() {
            let mut f = Framer::default();
            f.push(&text[..cut]);
            let mut got = all(&mut f);
            f.push(&text[cut..]);
            got.extend(all(&mut f));
            let got: Vec<Value> = got.into_iter().map(Result::unwrap).collect();
            assert_eq!(
                got,
                vec![
                    json!({"id":1,"result":{"a":"}]\"{"}}),
                    json!({"method":"echo","params":[],"id":"echo"}),
                    json!([1, [2]]),
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn garbage_and_oversize_are_errors() {
        let mut f = Framer::default();
        f.push(b"hello");
        assert!(matches!(f.next_value(), Some(Err(Error::Malformed { .. }))));
        let mut f = Framer::default();
        f.push(b"{\"a\": tru}");
        assert!(matches!(f.next_value(), Some(Err(Error::Json(_)))));
        let mut f = Framer::new(16);
        f.push(b"{\"a\": \"0123456789abcdef\"");
        assert!(matches!(f.next_value(), Some(Err(Error::TooLarge { .. }))));
        // Unbalanced closers never underflow.
        let mut f = Framer::default();
        f.push(b"{]]]}");
        assert!(matches!(f.next_value(), Some(Err(_))));
    }
}
