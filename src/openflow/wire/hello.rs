//! HELLO and its version bitmap element (OpenFlow 1.3.1+), which is how two
//! peers agree on the highest version both speak.

use super::{Rd, Result, Version, Wr};

/// HELLO element type: version bitmap.
const ELEM_VERSIONBITMAP: u16 = 1;

/// A HELLO: the versions the sender supports (from the bitmap when there is
/// one, else every version up to the header's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Bit N set = wire version N supported (versions 0..=31).
    pub bitmap: u32,
}

impl Hello {
    /// A HELLO advertising `versions`.
    pub fn for_versions(versions: &[Version]) -> Hello {
        Hello {
            bitmap: versions.iter().fold(0, |b, v| b | (1 << v.wire())),
        }
    }

    /// Parses the body of a HELLO whose header says `header_version`.
    /// Elements other than the bitmap are skipped, as the spec requires.
    pub fn parse(header_version: u8, body: &[u8]) -> Result<Hello> {
        let mut r = Rd::new(body);
        let mut bitmap = None;
        while r.len() >= 4 {
            let t = r.u16()?;
            let len = usize::from(r.u16()?);
            if len < 4 {
                return Err(super::Error::BadLen);
            }
            let mut e = r.sub(len - 4)?;
            if t == ELEM_VERSIONBITMAP && bitmap.is_none() {
                // Only the first 32 bits matter for versions we know.
                bitmap = Some(if e.len() >= 4 { e.u32()? } else { 0 });
            }
            // Elements are padded to 8 bytes.
            let pad = super::round8(len) - len;
            r.skip(pad.min(r.len()))?;
        }
        let bitmap = bitmap.unwrap_or_else(|| {
            // No bitmap: every version up to the header's.
            let v = u32::from(header_version.min(31));
            ((1u64 << (v + 1)) - 1) as u32 & !1
        });
        Ok(Hello { bitmap })
    }

    /// Appends the body (one version bitmap element).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.u16(ELEM_VERSIONBITMAP);
        out.u16(8);
        out.u32(self.bitmap);
    }

    /// The highest version in both bitmaps that this codec speaks.
    pub fn negotiate(&self, ours: &Hello) -> Option<Version> {
        let common = self.bitmap & ours.bitmap;
        Version::ALL
            .iter()
            .rev()
            .copied()
            .find(|v| common & (1 << v.wire()) != 0)
    }
}

/// A set of OpenFlow versions, as a HELLO bitmap holds them (bit N = wire
/// version N): what a bridge's connections may negotiate (Open vSwitch's
/// `Bridge.protocols`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Versions(u32);

impl Default for Versions {
    /// Every version this codec speaks (Open vSwitch's default when
    /// `protocols` is empty is 1.0 to 1.5; 1.1 and 1.2 are not spoken here).
    fn default() -> Versions {
        Versions::of(&Version::ALL)
    }
}

impl Versions {
    /// No version at all: every connection fails its HELLO.
    pub const NONE: Versions = Versions(0);

    /// The set of `versions`.
    pub fn of(versions: &[Version]) -> Versions {
        Versions(Hello::for_versions(versions).bitmap)
    }

    /// The set a HELLO bitmap names, limited to versions this codec speaks.
    pub fn from_bitmap(bitmap: u32) -> Versions {
        Versions(bitmap & Versions::default().0)
    }

    /// The bitmap.
    pub fn bitmap(self) -> u32 {
        self.0
    }

    /// Whether `v` is in the set.
    pub fn contains(self, v: Version) -> bool {
        self.0 & (1 << v.wire()) != 0
    }

    /// The versions in the set, oldest first.
    pub fn list(self) -> Vec<Version> {
        Version::ALL
            .into_iter()
            .filter(|v| self.contains(*v))
            .collect()
    }

    /// The newest version in the set (the version of our HELLO's header).
    pub fn highest(self) -> Option<Version> {
        self.list().pop()
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set as HELLO_FAILED's text lists it: `0x01, 0x04`.
    pub fn hex(self) -> String {
        let v: Vec<String> = self
            .list()
            .iter()
            .map(|v| format!("{:#04x}", v.wire()))
            .collect();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_the_highest_common_version() {
        let ours = Hello::for_versions(&Version::ALL);
        // ovs-ofctl -O OpenFlow10: header version 1, bitmap 0x02.
        let peer = Hello::parse(1, &[0, 1, 0, 8, 0, 0, 0, 2]).unwrap();
        assert_eq!(peer.negotiate(&ours), Some(Version::V10));
        // No bitmap, header 1.3: versions 1..=4.
        let peer = Hello::parse(4, &[]).unwrap();
        assert_eq!(peer.negotiate(&ours), Some(Version::V13));
        // Only 1.1 and 1.2: nothing in common.
        let peer = Hello::parse(3, &[0, 1, 0, 8, 0, 0, 0, 0x0c]).unwrap();
        assert_eq!(peer.negotiate(&ours), None);
    }

    #[test]
    fn a_restricted_set_negotiates_only_its_versions() {
        let only10 = Versions::of(&[Version::V10]);
        let ours = Hello {
            bitmap: only10.bitmap(),
        };
        // ovs-ofctl -O OpenFlow13: bitmap with only 0x04.
        let peer = Hello::parse(4, &[0, 1, 0, 8, 0, 0, 0, 0x10]).unwrap();
        assert_eq!(peer.negotiate(&ours), None);
        // A 1.3 peer without a bitmap speaks 1.0 too.
        let peer = Hello::parse(4, &[]).unwrap();
        assert_eq!(peer.negotiate(&ours), Some(Version::V10));
        assert_eq!(only10.highest(), Some(Version::V10));
        assert_eq!(only10.hex(), "0x01");
        assert_eq!(Versions::default().hex(), "0x01, 0x04, 0x05, 0x06");
        // 1.1 and 1.2 are not spoken: dropped from a bitmap.
        assert_eq!(Versions::from_bitmap(0x0c), Versions::NONE);
        assert!(Versions::NONE.highest().is_none());
    }
}
