//! Parsing a field value as written after `field=` in a match or before
//! `->field` in `set_field`: integers with optional `/mask`, addresses with
//! prefixes or masks, ports, and the flag syntaxes of `ct_state` and
//! `tcp_flags` (`+trk-est`, `syn|ack`, `0x12/0x12`), following Open
//! vSwitch's `mf_parse()` and `parse_flags()`.
//!
//! Values come back in the field's own units (before the storage mapping of
//! [`super::fields::Store`]). Errors are messages naming the value.

use super::fields::{Kind, MatchField};
use super::ports::{parse_port, PortErr};
use super::value::{
    mac_u128, parse_ipv4_masked, parse_ipv6_masked, parse_mac, parse_u128, AddrErr, IntErr,
};
use crate::flow::port_names::PortNames;
use crate::packet::CtState;

/// TCP flag names by bit, as Open vSwitch prints them.
pub(crate) const TCP_FLAG_NAMES: [(u32, &str); 12] = [
    (0x001, "fin"),
    (0x002, "syn"),
    (0x004, "rst"),
    (0x008, "psh"),
    (0x010, "ack"),
    (0x020, "urg"),
    (0x040, "ece"),
    (0x080, "cwr"),
    (0x100, "ns"),
    (0x200, "[200]"),
    (0x400, "[400]"),
    (0x800, "[800]"),
];

/// `ct_state` flag names by bit.
pub(crate) fn ct_flag_names() -> impl Iterator<Item = (u32, &'static str)> {
    CtState::NAMES.iter().map(|(b, n)| (u32::from(*b), *n))
}

/// `nw_frag` names: (name, value, mask) in `FlowKey::FRAG_*` bits.
pub(crate) const FRAG_NAMES: [(&str, u8, u8); 5] = [
    ("no", 0, 1),
    ("yes", 1, 1),
    ("first", 1, 3),
    ("later", 3, 3),
    ("not_later", 0, 2),
];

fn int_mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// A field value that does not parse; the message names the field and the
/// text, and the parser puts it at the token's column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ValueError {
    /// A value or mask wider than the field.
    #[error("{what} '{text}' too big for {bits}-bit field {field}")]
    TooBig {
        /// `value` or `mask`.
        what: &'static str,
        /// The text.
        text: String,
        /// The field's width.
        bits: u32,
        /// The field.
        field: String,
    },
    /// Not a number, MAC or address of the field's kind.
    #[error("bad {what} '{text}' for {field}")]
    Bad {
        /// `value`, `mask`, `MAC address`, `IPv4 address`, ...
        what: &'static str,
        /// The text.
        text: String,
        /// The field.
        field: String,
    },
    /// An IPv4 or IPv6 mask that is not one.
    #[error("bad {family} mask in '{text}' for {field}")]
    BadMask {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The text.
        text: String,
        /// The field.
        field: String,
    },
    /// A prefix length past the address.
    #[error("bad prefix length in '{text}' for {field} (must be 0..={max})")]
    BadPrefix {
        /// The text.
        text: String,
        /// The field.
        field: String,
        /// 32 or 128.
        max: u32,
    },
    /// A port number out of range.
    #[error("port '{text}' out of range for {field}")]
    PortOutOfRange {
        /// The text.
        text: String,
        /// The field.
        field: String,
    },
    /// A port name the bridge does not have.
    #[error("unknown port '{0}'")]
    UnknownPort(String),
    /// `ip_frag` takes a name.
    #[error("bad {field} '{text}' (valid: no, yes, first, later, not_later)")]
    BadFrag {
        /// The field.
        field: String,
        /// The text.
        text: String,
    },
    /// A mask on a field that takes none.
    #[error("{field} cannot be masked ('{text}')")]
    NotMaskable {
        /// The field.
        field: String,
        /// The text.
        text: String,
    },
    /// Flags that do not parse.
    #[error("unknown {field} flag(s) in '{text}'")]
    UnknownFlags {
        /// The field.
        field: String,
        /// The text.
        text: String,
    },
    /// A flag name the field does not have.
    #[error("unknown {field} flag '{word}' in '{text}'")]
    UnknownFlag {
        /// The field.
        field: String,
        /// The flag.
        word: String,
        /// The whole text.
        text: String,
    },
    /// `+a-b` flags without their sign.
    #[error("{field} flag in '{text}' must be preceded by '+' (set) or '-' (not set)")]
    Unsigned {
        /// The field.
        field: String,
        /// The text.
        text: String,
    },
    /// A flag given twice.
    #[error("{field} flag '{word}' given more than once in '{text}'")]
    Twice {
        /// The field.
        field: String,
        /// The flag.
        word: String,
        /// The whole text.
        text: String,
    },
}

/// Parses `s` as a value of `mf`: (value, mask), mask all-ones when exact.
pub(crate) fn parse_field_value(
    mf: &MatchField,
    s: &str,
    names: &dyn PortNames,
) -> Result<(u128, u128), ValueError> {
    let name = mf.name;
    let full = int_mask(mf.bits);
    if s == "*" {
        return Ok((0, 0));
    }
    let (v, m) = match mf.kind {
        Kind::Int => {
            let (vs, ms) = match s.split_once('/') {
                Some((v, m)) => (v, Some(m)),
                None => (s, None),
            };
            let int = |t: &str, what: &'static str| -> Result<u128, ValueError> {
                match parse_u128(t) {
                    Ok(v) if v <= full => Ok(v),
                    Ok(_) | Err(IntErr::TooBig) => Err(ValueError::TooBig {
                        what,
                        text: t.to_string(),
                        bits: mf.bits,
                        field: name.to_string(),
                    }),
                    Err(IntErr::Syntax) => Err(ValueError::Bad {
                        what,
                        text: t.to_string(),
                        field: name.to_string(),
                    }),
                }
            };
            let v = int(vs, "value")?;
            let m = match ms {
                Some(ms) => int(ms, "mask")?,
                None => full,
            };
            (v, m)
        }
        Kind::Mac => {
            let (vs, ms) = match s.split_once('/') {
                Some((v, m)) => (v, Some(m)),
                None => (s, None),
            };
            let mac = |t: &str| {
                parse_mac(t).map(mac_u128).ok_or_else(|| ValueError::Bad {
                    what: "MAC address",
                    text: t.to_string(),
                    field: name.to_string(),
                })
            };
            let v = mac(vs)?;
            let m = match ms {
                Some(ms) => mac(ms)?,
                None => full,
            };
            (v, m)
        }
        Kind::Ipv4 => match parse_ipv4_masked(s) {
            Ok((v, m)) => (u128::from(v), u128::from(m)),
            Err(e) => return Err(addr_err(e, "IPv4", 32, s, name)),
        },
        Kind::Ipv6 => match parse_ipv6_masked(s) {
            Ok(vm) => vm,
            Err(e) => return Err(addr_err(e, "IPv6", 128, s, name)),
        },
        Kind::Port => match parse_port(s, names) {
            Ok(p) => (u128::from(p), full),
            Err(PortErr::OutOfRange) => {
                return Err(ValueError::PortOutOfRange {
                    text: s.to_string(),
                    field: name.to_string(),
                })
            }
            Err(PortErr::Unknown) => return Err(ValueError::UnknownPort(s.to_string())),
        },
        Kind::CtState => {
            let (v, m) = parse_flags(s, &ct_flag_names().collect::<Vec<_>>(), 0xff, name)?;
            (u128::from(v), u128::from(m))
        }
        Kind::TcpFlags => {
            let (v, m) = parse_flags(s, &TCP_FLAG_NAMES, 0x0fff, name)?;
            (u128::from(v), u128::from(m))
        }
        Kind::Frag => match FRAG_NAMES
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(s))
        {
            Some((_, v, m)) => (u128::from(*v), u128::from(*m)),
            None => {
                return Err(ValueError::BadFrag {
                    field: name.to_string(),
                    text: s.to_string(),
                })
            }
        },
    };
    if !mf.maskable && m != full {
        return Err(ValueError::NotMaskable {
            field: name.to_string(),
            text: s.to_string(),
        });
    }
    Ok((v & m, m))
}

/// An address that did not parse, as the error for `family` (whose prefix
/// is at most `max`).
fn addr_err(e: AddrErr, family: &'static str, max: u32, text: &str, field: &str) -> ValueError {
    let (text, field) = (text.to_string(), field.to_string());
    match e {
        AddrErr::Prefix => ValueError::BadPrefix { text, field, max },
        AddrErr::Mask => ValueError::BadMask {
            family,
            text,
            field,
        },
        AddrErr::Addr => ValueError::Bad {
            what: if family == "IPv4" {
                "IPv4 address"
            } else {
                "IPv6 address"
            },
            text,
            field,
        },
    }
}

/// Open vSwitch's flag syntaxes: `N/M`, `+a-b` (masked), `a|b|N` (exact).
pub(crate) fn parse_flags(
    s: &str,
    table: &[(u32, &str)],
    allowed: u32,
    field: &str,
) -> Result<(u32, u32), ValueError> {
    let unknown = || ValueError::UnknownFlags {
        field: field.to_string(),
        text: s.to_string(),
    };
    let unknown_flag = |word: &str| ValueError::UnknownFlag {
        field: field.to_string(),
        word: word.to_string(),
        text: s.to_string(),
    };
    if let Some((v, m)) = s.split_once('/') {
        let v = parse_u128(v).map_err(|_| unknown())?;
        let m = parse_u128(m).map_err(|_| unknown())?;
        if v & !u128::from(allowed) != 0 || m & !u128::from(allowed) != 0 {
            return Err(unknown());
        }
        return Ok(((v & m) as u32, m as u32));
    }
    if s.starts_with('+') || s.starts_with('-') {
        let (mut flags, mut mask) = (0u32, 0u32);
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            let set = match c {
                '+' => true,
                '-' => false,
                _ => {
                    return Err(ValueError::Unsigned {
                        field: field.to_string(),
                        text: s.to_string(),
                    })
                }
            };
            rest = rest.get(1..).unwrap_or("");
            let end = rest.find(['+', '-']).unwrap_or(rest.len());
            let (word, after) = rest.split_at_checked(end).unwrap_or((rest, ""));
            let bit = table
                .iter()
                .find(|(_, n)| *n == word)
                .map(|(b, _)| *b)
                .ok_or_else(|| unknown_flag(word))?;
            if mask & bit != 0 {
                return Err(ValueError::Twice {
                    field: field.to_string(),
                    word: word.to_string(),
                    text: s.to_string(),
                });
            }
            if set {
                flags |= bit;
            }
            mask |= bit;
            rest = after;
        }
        return Ok((flags, mask));
    }
    let mut flags = 0u32;
    for word in s.split('|') {
        let bit = match parse_u128(word) {
            Ok(v) if v <= u128::from(allowed) => v as u32,
            Ok(_) => return Err(unknown()),
            Err(_) => table
                .iter()
                .find(|(_, n)| *n == word)
                .map(|(b, _)| *b)
                .ok_or_else(|| unknown_flag(word))?,
        };
        flags |= bit;
    }
    Ok((flags & allowed, allowed))
}
