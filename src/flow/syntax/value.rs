//! Spelling of values: integers (decimal, `0x` hex, leading-`0` octal as
//! `strtoull(.., 0)` reads them), Ethernet addresses, IPv4/IPv6 addresses
//! with prefixes or masks, and their canonical printed forms (the ones
//! Open vSwitch's `match_format()` produces).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why an integer did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntErr {
    /// Not a number.
    Syntax,
    /// More than 128 bits.
    TooBig,
}

/// Parses an unsigned integer the way Open vSwitch does: `0x` hex (any
/// number of digits, leading zeros ignored), a leading `0` means octal,
/// otherwise decimal.
pub(crate) fn parse_u128(s: &str) -> Result<u128, IntErr> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if let Some(o) = s.strip_prefix('0').filter(|o| !o.is_empty()) {
        (o, 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() {
        return Err(IntErr::Syntax);
    }
    let mut v: u128 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix).ok_or(IntErr::Syntax)?;
        v = v
            .checked_mul(u128::from(radix))
            .and_then(|v| v.checked_add(u128::from(d)))
            .ok_or(IntErr::TooBig)?;
    }
    Ok(v)
}

/// Parses `aa:bb:cc:dd:ee:ff` (one or two hex digits per byte).
pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut n = 0;
    for part in s.split(':') {
        if n >= 6 || part.is_empty() || part.len() > 2 {
            return None;
        }
        out[n] = u8::from_str_radix(part, 16).ok()?;
        n += 1;
    }
    (n == 6).then_some(out)
}

/// A MAC as the 48-bit integer the key stores.
pub(crate) fn mac_u128(m: [u8; 6]) -> u128 {
    u128::from(crate::flow::key::mac_to_u64(m))
}

/// `aa:bb:cc:dd:ee:ff` from the 48-bit integer form.
pub(crate) fn fmt_mac(v: u128) -> String {
    crate::flow::key::fmt_mac(v as u64)
}

/// Why an address did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AddrErr {
    /// The address part is malformed.
    Addr,
    /// The prefix length is out of range.
    Prefix,
    /// The mask part is malformed.
    Mask,
}

/// Parses `a.b.c.d`, `a.b.c.d/len` or `a.b.c.d/m.m.m.m` into (value, mask).
pub(crate) fn parse_ipv4_masked(s: &str) -> Result<(u32, u32), AddrErr> {
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let ip = a.parse::<Ipv4Addr>().map_err(|_| AddrErr::Addr)?;
    let mask = match m {
        None => u32::MAX,
        Some(m) if m.contains('.') => u32::from(m.parse::<Ipv4Addr>().map_err(|_| AddrErr::Mask)?),
        Some(m) => {
            let len: u32 = if !m.is_empty() && m.bytes().all(|c| c.is_ascii_digit()) {
                m.parse().map_err(|_| AddrErr::Prefix)?
            } else {
                return Err(AddrErr::Mask);
            };
            if len > 32 {
                return Err(AddrErr::Prefix);
            }
            prefix_mask32(len)
        }
    };
    Ok((u32::from(ip), mask))
}

/// Parses an IPv6 address, optionally with `/len` or `/mask`.
pub(crate) fn parse_ipv6_masked(s: &str) -> Result<(u128, u128), AddrErr> {
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let ip = a.parse::<Ipv6Addr>().map_err(|_| AddrErr::Addr)?;
    let mask = match m {
        None => u128::MAX,
        Some(m) if m.contains(':') => u128::from(m.parse::<Ipv6Addr>().map_err(|_| AddrErr::Mask)?),
        Some(m) => {
            let len: u32 = if !m.is_empty() && m.bytes().all(|c| c.is_ascii_digit()) {
                m.parse().map_err(|_| AddrErr::Prefix)?
            } else {
                return Err(AddrErr::Mask);
            };
            if len > 128 {
                return Err(AddrErr::Prefix);
            }
            prefix_mask128(len)
        }
    };
    Ok((u128::from(ip), mask))
}

/// The mask with the top `len` of 32 bits set.
pub(crate) fn prefix_mask32(len: u32) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32))
    }
}

/// The mask with the top `len` of 128 bits set.
pub(crate) fn prefix_mask128(len: u32) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len.min(128))
    }
}

/// `a.b.c.d`, `a.b.c.d/len` or `a.b.c.d/m.m.m.m` (Open vSwitch's
/// `ip_format_masked()`).
pub(crate) fn fmt_ipv4_masked(v: u32, m: u32) -> String {
    let mut s = Ipv4Addr::from(v).to_string();
    if m != u32::MAX {
        if m.leading_ones() + m.trailing_zeros() == 32 {
            let _ = write!(s, "/{}", m.leading_ones());
        } else {
            let _ = write!(s, "/{}", Ipv4Addr::from(m));
        }
    }
    s
}

/// IPv6 with `/len` or `/mask` (`ipv6_format_masked()`).
pub(crate) fn fmt_ipv6_masked(v: u128, m: u128) -> String {
    let mut s = fmt_ipv6(v);
    if m != u128::MAX {
        if m.leading_ones() + m.trailing_zeros() == 128 {
            let _ = write!(s, "/{}", m.leading_ones());
        } else {
            s.push('/');
            s.push_str(&fmt_ipv6(m));
        }
    }
    s
}

/// An IPv6 address the way glibc's `inet_ntop()` prints it (RFC 5952
/// compression, and the IPv4-compatible/mapped forms glibc still uses).
pub(crate) fn fmt_ipv6(v: u128) -> String {
    let words: [u16; 8] = core::array::from_fn(|i| (v >> (112 - 16 * i)) as u16);
    // Longest run of zero words (at least two), first one on ties.
    let (mut best_base, mut best_len) = (usize::MAX, 0usize);
    let mut i = 0;
    while i < 8 {
        if words[i] == 0 {
            let start = i;
            while i < 8 && words[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                best_base = start;
                best_len = i - start;
            }
        } else {
            i += 1;
        }
    }
    if best_len < 2 {
        best_base = usize::MAX;
    }
    let mut s = String::new();
    let mut i = 0;
    while i < 8 {
        if i == best_base {
            s.push(':');
            i += best_len;
            if i == 8 {
                s.push(':');
            }
            continue;
        }
        if i != 0 {
            s.push(':');
        }
        if i == 6 && best_base == 0 && (best_len == 6 || (best_len == 5 && words[5] == 0xffff)) {
            let _ = write!(s, "{}", Ipv4Addr::from(v as u32));
            break;
        }
        let _ = write!(s, "{:x}", words[i]);
        i += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_like_strtoull() {
        assert_eq!(parse_u128("10"), Ok(10));
        assert_eq!(parse_u128("0x10"), Ok(16));
        assert_eq!(parse_u128("010"), Ok(8));
        assert_eq!(parse_u128("0"), Ok(0));
        assert_eq!(parse_u128("0x"), Err(IntErr::Syntax));
        assert_eq!(parse_u128("09"), Err(IntErr::Syntax));
        assert_eq!(parse_u128("-1"), Err(IntErr::Syntax));
        assert_eq!(
            parse_u128(&format!("0x1{}", "0".repeat(32))),
            Err(IntErr::TooBig)
        );
    }

    #[test]
    fn ipv6_prints_like_glibc() {
        let p = |s: &str| fmt_ipv6(u128::from(s.parse::<Ipv6Addr>().unwrap()));
        assert_eq!(p("::"), "::");
        assert_eq!(p("::1"), "::1");
        assert_eq!(p("2001:db8::1"), "2001:db8::1");
        assert_eq!(p("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
        assert_eq!(p("::ffff:1.2.3.4"), "::ffff:1.2.3.4");
        assert_eq!(p("::1.2.3.4"), "::1.2.3.4");
        assert_eq!(p("fe80::"), "fe80::");
        assert_eq!(p("1:0:2:3:4:5:6:7"), "1:0:2:3:4:5:6:7");
        assert_eq!(p("ffff::"), "ffff::");
    }

    #[test]
    fn masks() {
        assert_eq!(
            parse_ipv4_masked("10.1.2.3/8"),
            Ok((0x0a01_0203, 0xff00_0000))
        );
        assert_eq!(parse_ipv4_masked("10.1.2.3/33"), Err(AddrErr::Prefix));
        assert_eq!(fmt_ipv4_masked(0x0a00_0000, 0xff00_0000), "10.0.0.0/8");
        assert_eq!(
            fmt_ipv4_masked(0x0100_0300, 0xff00_ff00),
            "1.0.3.0/255.0.255.0"
        );
        assert_eq!(fmt_ipv4_masked(0, 0), "0.0.0.0/0");
        assert_eq!(
            parse_mac("0:1:22:33:44:55"),
            Some([0, 1, 0x22, 0x33, 0x44, 0x55])
        );
        assert_eq!(parse_mac("00:11:22:33:44"), None);
    }
}
