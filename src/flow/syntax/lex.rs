//! The key/value tokenizer shared by matches, actions and nested action
//! arguments, with the same delimiters as Open vSwitch's
//! `ofputil_parse_key_value()`: pairs are separated by commas or white
//! space; a key ends at `:`, `=`, `(` or a separator; after `:`/`=` the value
//! runs to the next separator, after `(` to the matching `)`. Parentheses
//! nest inside values (`ct(commit,exec(set_field:1->ct_mark))`).
//!
//! Unlike Open vSwitch, an unbalanced `(` is an error instead of silently
//! running to the end of the line. Every token carries its byte offset in
//! the whole input line so errors can point at it.

use super::PErr;

/// One `key`, `key=value`, `key:value` or `key(value)` pair.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tok<'a> {
    /// The key text.
    pub key: &'a str,
    /// Byte offset of the key in the whole line.
    pub key_off: usize,
    /// The delimiter after the key: `=`, `:` or `(`; `None` for a bare key.
    pub delim: Option<char>,
    /// The value text (empty for a bare key).
    pub value: &'a str,
    /// Byte offset of the value in the whole line.
    pub value_off: usize,
    /// Byte offset just past the token (past the closing `)`).
    pub end_off: usize,
}

impl<'a> Tok<'a> {
    /// The whole token as written, for error messages.
    pub fn text(&self, line: &'a str) -> &'a str {
        line.get(self.key_off..self.end_off).unwrap_or(self.key)
    }
}

const SEPARATORS: &[u8] = b", \t\r\n";

/// Iterates over the pairs of `s`, which starts at byte `base` of the line.
pub(crate) struct Lexer<'a> {
    s: &'a str,
    pos: usize,
    base: usize,
    actions_rest: bool,
}

impl<'a> Lexer<'a> {
    /// A lexer over `s`, located at byte offset `base` of the whole line.
    pub fn new(s: &'a str, base: usize) -> Self {
        Lexer {
            s,
            pos: 0,
            base,
            actions_rest: false,
        }
    }

    /// A lexer for a whole flow: the value of `actions=` (or `action=`) is
    /// the rest of the line, unscanned, for the action parser to split.
    pub fn for_flow(s: &'a str, base: usize) -> Self {
        Lexer {
            actions_rest: true,
            ..Lexer::new(s, base)
        }
    }

    /// Stops the iteration (the caller consumed the rest).
    pub fn finish(&mut self) {
        self.pos = self.s.len();
    }

    /// The next pair, `None` at the end of the input.
    pub fn next_tok(&mut self) -> Option<Result<Tok<'a>, PErr>> {
        let b = self.s.as_bytes();
        while self.pos < b.len() && SEPARATORS.contains(&b[self.pos]) {
            self.pos += 1;
        }
        if self.pos >= b.len() {
            return None;
        }
        let key_start = self.pos;
        let mut i = key_start;
        while i < b.len() && !b":=(, \t\r\n".contains(&b[i]) {
            i += 1;
        }
        let key = self.s.get(key_start..i).unwrap_or("");
        let key_off = self.base + key_start;
        let delim = b.get(i).copied();
        if self.actions_rest && delim == Some(b'=') && (key == "actions" || key == "action") {
            let vstart = i + 1;
            self.pos = b.len();
            return Some(Ok(Tok {
                key,
                key_off,
                delim: Some('='),
                value: self.s.get(vstart..).unwrap_or(""),
                value_off: self.base + vstart,
                end_off: self.base + b.len(),
            }));
        }
        match delim {
            Some(d @ (b':' | b'=')) => {
                let vstart = i + 1;
                match scan_value(b, vstart, SEPARATORS) {
                    Ok(vend) => {
                        self.pos = vend;
                        Some(Ok(Tok {
                            key,
                            key_off,
                            delim: Some(char::from(d)),
                            value: self.s.get(vstart..vend).unwrap_or(""),
                            value_off: self.base + vstart,
                            end_off: self.base + vend,
                        }))
                    }
                    Err(open) => Some(Err(self.unbalanced(key_start, open))),
                }
            }
            Some(b'(') => {
                let vstart = i + 1;
                match scan_value(b, vstart, b")") {
                    Ok(vend) if vend < b.len() => {
                        self.pos = vend + 1;
                        Some(Ok(Tok {
                            key,
                            key_off,
                            delim: Some('('),
                            value: self.s.get(vstart..vend).unwrap_or(""),
                            value_off: self.base + vstart,
                            end_off: self.base + vend + 1,
                        }))
                    }
                    Ok(_) => Some(Err(self.unbalanced(key_start, i))),
                    Err(open) => Some(Err(self.unbalanced(key_start, open))),
                }
            }
            _ => {
                // A bare key, ended by a separator or the end of the input.
                self.pos = i;
                Some(Ok(Tok {
                    key,
                    key_off,
                    delim: None,
                    value: "",
                    value_off: self.base + i,
                    end_off: self.base + i,
                }))
            }
        }
    }

    fn unbalanced(&mut self, key_start: usize, _open: usize) -> PErr {
        let token = self.s.get(key_start..).unwrap_or("").to_string();
        self.pos = self.s.len();
        PErr::new(
            self.base + key_start,
            token.clone(),
            format!("unbalanced parentheses in '{token}'"),
        )
    }
}

/// Scans a value starting at `start` up to the first byte in `delims` that
/// is not inside parentheses. Returns the end offset, or `Err(offset of the
/// unclosed '(')`.
fn scan_value(b: &[u8], start: usize, delims: &[u8]) -> Result<usize, usize> {
    let mut n = start;
    while n < b.len() && !delims.contains(&b[n]) {
        if b[n] == b'(' {
            let open = n;
            let mut level = 0usize;
            loop {
                match b.get(n) {
                    None => return Err(open),
                    Some(b'(') => level += 1,
                    Some(b')') => level = level.saturating_sub(1),
                    Some(_) => {}
                }
                n += 1;
                if level == 0 {
                    break;
                }
            }
        } else {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<(String, Option<char>, String)> {
        let mut l = Lexer::new(s, 0);
        let mut v = Vec::new();
        while let Some(t) = l.next_tok() {
            let t = t.unwrap();
            v.push((t.key.to_string(), t.delim, t.value.to_string()));
        }
        v
    }

    #[test]
    fn splits_like_ovs() {
        assert_eq!(
            toks("priority=10, in_port:1 tcp,ct(commit,exec(set_field:1->ct_mark)),resubmit(,1)"),
            vec![
                ("priority".into(), Some('='), "10".into()),
                ("in_port".into(), Some(':'), "1".into()),
                ("tcp".into(), None, "".into()),
                (
                    "ct".into(),
                    Some('('),
                    "commit,exec(set_field:1->ct_mark)".into()
                ),
                ("resubmit".into(), Some('('), ",1".into()),
            ]
        );
    }

    #[test]
    fn unbalanced_is_an_error() {
        let mut l = Lexer::new("ip,ct(commit", 0);
        assert!(l.next_tok().unwrap().is_ok());
        let e = l.next_tok().unwrap().unwrap_err();
        assert_eq!(e.off, 3);
        let mut l = Lexer::new("a=exec(x", 0);
        assert!(l.next_tok().unwrap().is_err());
    }
}
