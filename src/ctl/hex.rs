//! Bytes written as hex text: frames as the operator types them
//! (`vswitchctl inject`, `trace`) and a controller's flow-mod messages as
//! the state journal keeps them. One codec below both the control API and
//! the state file, so neither imports the other for it.

/// A hex frame that is not hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// Hex digits come in pairs.
    #[error("hex frame has an odd number of digits")]
    Odd,
    /// Not a hex digit.
    #[error("bad hex digits '{digits}' at offset {offset}")]
    Digit {
        /// The pair.
        digits: String,
        /// Where.
        offset: usize,
    },
}

/// Decodes a frame written in hex (spaces, colons and a `0x` allowed).
pub fn hex_decode(s: &str) -> Result<Vec<u8>, HexError> {
    let clean: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    let clean = clean.strip_prefix("0x").unwrap_or(&clean);
    if !clean.len().is_multiple_of(2) {
        return Err(HexError::Odd);
    }
    let b = clean.as_bytes();
    (0..b.len())
        .step_by(2)
        .map(|i| {
            let pair = &b[i..i + 2];
            core::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| HexError::Digit {
                    digits: String::from_utf8_lossy(pair).into_owned(),
                    offset: i,
                })
        })
        .collect()
}

/// Encodes a frame as lowercase hex.
pub fn hex_encode(b: &[u8]) -> String {
    use core::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        assert_eq!(hex_decode("0x0a:0B ff").unwrap(), vec![0x0a, 0x0b, 0xff]);
        assert_eq!(hex_encode(&[0, 0xab]), "00ab");
        assert_eq!(hex_decode("abc"), Err(HexError::Odd));
        assert!(matches!(
            hex_decode("zz"),
            Err(HexError::Digit { offset: 0, .. })
        ));
        // A multi-byte character never panics on a slice boundary.
        assert!(hex_decode("aé0").is_err());
    }
}
