//! OpenFlow port spellings: numbers, the reserved names (`LOCAL`,
//! `IN_PORT`, `NORMAL`...), and switch port names resolved through
//! [`PortNames`]. Follows Open vSwitch's `ofputil_port_from_string()` and
//! `ofputil_format_port()`: reserved names win over port names, names that
//! are not a letter followed by letters and digits are printed in JSON
//! quotes, OpenFlow 1.1 numbers (0xffffff00 and up) are accepted.

use crate::flow::action::ofp_port;
use crate::flow::port_names::PortNames;

/// `OFPP_UNSET`: "no port" in some Open vSwitch internals.
const UNSET: u32 = 0xfff7;

const RESERVED: &[(&str, u32)] = &[
    ("IN_PORT", ofp_port::IN_PORT),
    ("TABLE", ofp_port::TABLE),
    ("NORMAL", ofp_port::NORMAL),
    ("FLOOD", ofp_port::FLOOD),
    ("ALL", ofp_port::ALL),
    ("CONTROLLER", ofp_port::CONTROLLER),
    ("LOCAL", ofp_port::LOCAL),
    ("ANY", ofp_port::NONE),
    ("UNSET", UNSET),
];

/// Why a port did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PortErr {
    /// A number outside the OpenFlow port ranges.
    OutOfRange,
    /// A name that is neither reserved nor a known port.
    Unknown,
}

/// Parses a port number or name.
pub(crate) fn parse_port(s: &str, names: &dyn PortNames) -> Result<u32, PortErr> {
    if s.is_empty() {
        return Err(PortErr::Unknown);
    }
    if s.bytes().all(|c| c.is_ascii_digit()) {
        let n: u64 = s.parse().map_err(|_| PortErr::OutOfRange)?;
        return if n <= 0xffff {
            Ok(n as u32)
        } else if (0xffff_ff00..=0xffff_ffff).contains(&n) {
            // OpenFlow 1.1+ reserved numbers map onto the 1.0 ones.
            Ok((n - 0xffff_0000) as u32)
        } else {
            Err(PortErr::OutOfRange)
        };
    }
    if let Some((_, n)) = RESERVED.iter().find(|(r, _)| r.eq_ignore_ascii_case(s)) {
        return Ok(*n);
    }
    if s.eq_ignore_ascii_case("NONE") {
        return Ok(ofp_port::NONE);
    }
    let name = match s.strip_prefix('"') {
        Some(q) => unquote(q).ok_or(PortErr::Unknown)?,
        None => s.to_string(),
    };
    names.port_no(&name).ok_or(PortErr::Unknown)
}

/// The body of a JSON string after the opening quote, up to the closing one.
fn unquote(q: &str) -> Option<String> {
    let body = q.strip_suffix('"')?;
    let mut out = String::new();
    let mut it = body.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = it.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            }
        } else if c == '"' {
            return None;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The reserved name of `p`, if it has one.
pub(crate) fn reserved_name(p: u32) -> Option<&'static str> {
    RESERVED.iter().find(|(_, n)| *n == p).map(|(r, _)| *r)
}

/// Prints a port: reserved name, else switch port name, else the number.
pub(crate) fn fmt_port(p: u32, names: Option<&dyn PortNames>) -> String {
    if let Some(r) = reserved_name(p) {
        return r.to_string();
    }
    if let Some(name) = names.and_then(|n| n.port_name(p)) {
        return quote_if_needed(&name);
    }
    p.to_string()
}

/// A name as Open vSwitch's `namemap_put_name()` prints it: bare when it
/// is a letter followed by letters and digits, else in JSON quotes. Unlike
/// Open vSwitch, a name spelled like a reserved port (`local`) is quoted
/// too, so that it reads back as the port and not the keyword.
fn quote_if_needed(name: &str) -> String {
    let mut chars = name.chars();
    let plain = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric())
        && !name.eq_ignore_ascii_case("NONE")
        && !RESERVED.iter().any(|(r, _)| r.eq_ignore_ascii_case(name));
    if plain {
        return name.to_string();
    }
    let mut s = String::from('"');
    for c in name.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::port_names::NoPortNames;

    struct Names;
    impl PortNames for Names {
        fn port_no(&self, name: &str) -> Option<u32> {
            match name {
                "vm1" => Some(1),
                "tap-a" => Some(7),
                _ => None,
            }
        }
        fn port_name(&self, no: u32) -> Option<String> {
            match no {
                1 => Some("vm1".into()),
                7 => Some("tap-a".into()),
                _ => None,
            }
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("3", &NoPortNames), Ok(3));
        assert_eq!(parse_port("local", &NoPortNames), Ok(ofp_port::LOCAL));
        assert_eq!(parse_port("4294967294", &NoPortNames), Ok(ofp_port::LOCAL));
        assert_eq!(parse_port("70000", &NoPortNames), Err(PortErr::OutOfRange));
        assert_eq!(parse_port("vm1", &Names), Ok(1));
        assert_eq!(parse_port("\"tap-a\"", &Names), Ok(7));
        assert_eq!(parse_port("vm1", &NoPortNames), Err(PortErr::Unknown));
        assert_eq!(fmt_port(7, Some(&Names)), "\"tap-a\"");
        assert_eq!(fmt_port(1, Some(&Names)), "vm1");
        assert_eq!(fmt_port(1, None), "1");
        assert_eq!(fmt_port(ofp_port::IN_PORT, Some(&Names)), "IN_PORT");
        assert_eq!(quote_if_needed("local"), "\"local\"");
        assert_eq!(quote_if_needed("a\"b"), "\"a\\\"b\"");
        assert_eq!(unquote("a\\\"b\""), Some("a\"b".into()));
    }
}
