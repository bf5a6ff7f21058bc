//! Bridge and port names: what makes one valid, and unique.
//!
//! A port name is usually a Linux interface name (a TAP vswitchd creates,
//! an existing interface it attaches to), and a bridge's name becomes its
//! datapath thread's name and its OpenFlow socket `BR.mgmt`: so both follow
//! the kernel's interface-name rules (IFNAMSIZ: at most 15 bytes; no NUL,
//! `/`, `:` or whitespace), and the flow syntax's (no `,`, `=`, `(` or `)`,
//! which would split a `in_port=NAME` token). Names are unique across the
//! whole switch, ports and bridges together, as Open vSwitch requires.

use super::{Bridge, Error};
use std::collections::BTreeMap;

/// The kernel's IFNAMSIZ less the terminating NUL.
pub const MAX_NAME: usize = 15;

/// Checks a bridge or port name's syntax.
pub fn check(what: &'static str, name: &str) -> Result<(), Error> {
    let bad = |why| {
        Err(Error::BadName {
            what,
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME {
        return bad("at most 15 bytes (the kernel's interface name limit)");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not interface names");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("no spaces or control characters (NUL included)");
    }
    if name.contains(['/', ':', ',', '=', '(', ')', '"', '\'']) {
        return bad("none of / : , = ( ) or quotes");
    }
    Ok(())
}

/// Who already uses `name`, if anyone.
pub(super) fn owner(map: &BTreeMap<String, Bridge>, name: &str) -> Option<String> {
    if map.contains_key(name) {
        return Some("a bridge".to_string());
    }
    map.iter()
        .find(|(_, b)| b.ports.contains_key(name))
        .map(|(br, _)| format!("a port on {br}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check("port", "vm1").is_ok());
        assert!(check("port", "tap-0.1_x").is_ok());
        for bad in [
            "",
            "a\0b",
            "a/b",
            "a b",
            "a,b",
            "in_port=1",
            "0123456789abcdef",
            "..",
        ] {
            assert!(check("port", bad).is_err(), "{bad:?}");
        }
    }
}
