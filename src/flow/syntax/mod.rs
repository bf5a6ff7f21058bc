//! Building blocks of the ovs-ofctl text syntax, shared by
//! [`crate::flow::parse`] and [`crate::flow::format`]:
//!
//! * [`lex`]: the key/value tokenizer (Open vSwitch's
//!   `ofputil_parse_key_value()` rules, plus balanced-parenthesis checking).
//! * [`value`]: integers, MAC and IP addresses, their canonical spellings.
//! * [`fields`]: field names, aliases, NXM names, storage, prerequisites.
//! * [`ports`]: OpenFlow port numbers, reserved names and port names.
//! * [`actions`]: action parsing and formatting.
//!
//! Errors inside the syntax carry a byte offset into the whole line
//! ([`PErr`]); the public API turns that into a 1-based character column.

pub(crate) mod actions;
pub(crate) mod fields;
pub(crate) mod lex;
pub(crate) mod mval;
pub(crate) mod ports;
pub(crate) mod value;

/// A syntax error at byte offset `off` of the line being parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PErr {
    /// Byte offset of the offending token in the whole line.
    pub off: usize,
    /// The offending token as written.
    pub token: String,
    /// What is wrong, naming the token.
    pub message: String,
}

impl PErr {
    /// An error at `off` about `token`.
    pub fn new(off: usize, token: impl Into<String>, message: impl Into<String>) -> Self {
        PErr {
            off,
            token: token.into(),
            message: message.into(),
        }
    }
}

/// `%#x` as C prints it: `0` for zero, `0x...` otherwise.
pub(crate) fn hex0(v: u128) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}
