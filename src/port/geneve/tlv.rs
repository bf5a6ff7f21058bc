//! The TLV map: which Geneve options (class, type, length) a bridge
//! carries in which `tun_metadataN` field, in `ovs-ofctl add-tlv-map`
//! syntax, with the refusals Open vSwitch makes. One map per bridge, shared
//! by its Geneve ports through an [`ArcSwap`]: the control thread swaps in
//! a new map, the datapath thread loads it once per batch without a lock.

use super::parse_int;
use crate::packet::TUN_METADATA_FIELDS;
use crate::wire::geneve as wg;
use arc_swap::ArcSwap;
use std::fmt::Write as _;
use std::sync::Arc;

/// Largest option a `tun_metadataN` field holds in our flow key.
pub const MAX_TLV_LEN: u8 = 8;
/// Largest option length Geneve allows (5-bit length in 4-byte words).
pub const MAX_OPTION_LEN: u8 = 124;

/// One mapping of the TLV map: Geneve option (class, type, length) <->
/// `tun_metadataN`, as `ovs-ofctl add-tlv-map` writes it:
/// `{class=0xffff,type=0,len=4}->tun_metadata0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TlvMapping {
    /// Option class.
    pub class: u16,
    /// Option type (bit 0x80 is the critical bit).
    #[serde(rename = "type")]
    pub opt_type: u8,
    /// Option data length in bytes (0, 4 or 8 here).
    pub len: u8,
    /// N of `tun_metadataN`.
    pub index: u8,
}

/// Why a TLV mapping is refused: its text, or a conflict with the map.
/// The variants are Open vSwitch's TLV table errors, so the OpenFlow
/// endpoint maps each to its code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    /// The text is not a mapping.
    #[error("'{text}': expected {expected}")]
    Syntax {
        /// The offending text.
        text: String,
        /// What was expected there.
        expected: &'static str,
    },
    /// A number that does not parse or is too big.
    #[error(transparent)]
    Number(#[from] NumberError),
    /// An option length that cannot be mapped: not a multiple of 4, or
    /// longer than a `tun_metadataN` field holds here.
    #[error("len={0}: not a valid option size (a multiple of 4, at most {MAX_OPTION_LEN}); tun_metadataN holds at most {MAX_TLV_LEN} bytes in this switch")]
    BadLen(u8),
    /// No `tun_metadataN` field with this index.
    #[error("tun_metadata{0}: only tun_metadata0..{max} exist in this switch", max = TUN_METADATA_FIELDS - 1)]
    NoSuchField(u8),
    /// The field maps an option already.
    #[error("tun_metadata{index} is already mapped ({old}); del-tlv-map it first")]
    AlreadyMapped {
        /// The field.
        index: u8,
        /// What it maps.
        old: TlvMapping,
    },
    /// The option would be mapped twice.
    #[error("option class={:#x},type={:#x} is mapped twice ({old} and {new})", new.class, new.opt_type)]
    MappedTwice {
        /// The mapping it has.
        old: TlvMapping,
        /// The mapping asked for.
        new: TlvMapping,
    },
    /// A delete names a field that maps another option.
    #[error("tun_metadata{} maps {old}, not {asked}; nothing deleted", old.index)]
    MapsOther {
        /// What the field maps.
        old: TlvMapping,
        /// What the delete named.
        asked: TlvMapping,
    },
}

/// A number in an option that does not parse or is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}={value}: expected a number of at most {max:#x}")]
pub struct NumberError {
    /// The option.
    pub key: String,
    /// The value as written.
    pub value: String,
    /// The largest value allowed.
    pub max: u64,
}

impl TlvMapping {
    /// Parses one mapping, `{class=C,type=T,len=L}->tun_metadataN`.
    pub fn parse(s: &str) -> Result<TlvMapping, TlvError> {
        let syntax = |text: &str, expected| TlvError::Syntax {
            text: text.to_string(),
            expected,
        };
        let s = s.trim();
        let (opt, field) = s
            .split_once("->")
            .ok_or_else(|| syntax(s, "{class=C,type=T,len=L}->tun_metadataN"))?;
        let body = opt
            .trim()
            .strip_prefix('{')
            .and_then(|b| b.strip_suffix('}'))
            .ok_or_else(|| syntax(opt, "{class=C,type=T,len=L}"))?;
        let (mut class, mut ty, mut len) = (None, None, None);
        for kv in body.split(',') {
            let (k, v) = kv.split_once('=').ok_or_else(|| syntax(kv, "key=value"))?;
            match k.trim() {
                "class" => class = Some(parse_int("class", v, 0xffff)? as u16),
                "type" => ty = Some(parse_int("type", v, 0xff)? as u8),
                "len" => len = Some(parse_int("len", v, 0xff)? as u8),
                other => return Err(syntax(other, "class, type and len")),
            }
        }
        let (Some(class), Some(opt_type), Some(len)) = (class, ty, len) else {
            return Err(syntax(opt, "class, type and len, all required"));
        };
        if len % 4 != 0 || len > MAX_TLV_LEN {
            return Err(TlvError::BadLen(len));
        }
        let field = field.trim();
        let index = field
            .strip_prefix("tun_metadata")
            .and_then(|n| n.parse::<u8>().ok())
            .ok_or_else(|| syntax(field, "tun_metadataN"))?;
        if usize::from(index) >= TUN_METADATA_FIELDS {
            return Err(TlvError::NoSuchField(index));
        }
        Ok(TlvMapping {
            class,
            opt_type,
            len,
            index,
        })
    }

    /// Parses a comma-separated list of mappings (commas inside braces
    /// belong to a mapping).
    pub fn parse_list(s: &str) -> Result<Vec<TlvMapping>, TlvError> {
        let mut out = Vec::new();
        let mut depth = 0i32;
        let mut start = 0;
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(TlvMapping::parse(&s[start..i])?);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if !s[start..].trim().is_empty() || out.is_empty() {
            out.push(TlvMapping::parse(&s[start..])?);
        }
        Ok(out)
    }
}

impl core::fmt::Display for TlvMapping {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{{class={:#x},type={:#x},len={}}}->tun_metadata{}",
            self.class, self.opt_type, self.len, self.index
        )
    }
}

/// A bridge's TLV map: which Geneve options become which `tun_metadataN`.
/// At most one mapping per field and per (class, type).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlvMap {
    by_index: [Option<TlvMapping>; TUN_METADATA_FIELDS],
}

/// The shared, swappable TLV map of a bridge.
pub type TlvMapHandle = Arc<ArcSwap<TlvMap>>;

/// An empty TLV map handle.
pub fn new_tlv_map() -> TlvMapHandle {
    Arc::new(ArcSwap::from_pointee(TlvMap::default()))
}

/// Changes the map by `f`, atomically with respect to every other change
/// (the vswitchctl protocol and OpenFlow change the same map from
/// different threads): `f` runs again on the newer map when another change
/// landed in between, so none is lost. The ports' readers never wait.
pub fn update_tlv_map<E>(
    handle: &TlvMapHandle,
    f: impl Fn(&TlvMap) -> Result<TlvMap, E>,
) -> Result<(), E> {
    loop {
        let cur = handle.load_full();
        let new = Arc::new(f(&cur)?);
        let prev = handle.compare_and_swap(&cur, new);
        if Arc::ptr_eq(&prev, &cur) {
            return Ok(());
        }
    }
}

/// C's `%#x`: `0` for zero, `0x..` otherwise (ovs-ofctl's spelling).
fn c_hex(v: u32) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}

impl TlvMap {
    /// The mappings, by field index.
    pub fn mappings(&self) -> impl Iterator<Item = &TlvMapping> {
        self.by_index.iter().flatten()
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.mappings().next().is_none()
    }

    /// The mapping of option (class, type).
    #[inline]
    pub fn lookup(&self, class: u16, opt_type: u8) -> Option<TlvMapping> {
        self.mappings()
            .find(|m| m.class == class && m.opt_type == opt_type)
            .copied()
    }

    /// The mapping of `tun_metadata{index}`.
    #[inline]
    pub fn get(&self, index: usize) -> Option<TlvMapping> {
        self.by_index.get(index).copied().flatten()
    }

    /// A copy with `add` mapped too. Refuses (changing nothing) a field
    /// already mapped and an option mapped twice, as Open vSwitch
    /// (NXTTMFC_ALREADY_MAPPED, NXTTMFC_DUP_ENTRY).
    pub fn with_added(&self, add: &[TlvMapping]) -> Result<TlvMap, TlvError> {
        let mut m = self.clone();
        for a in add {
            let slot = m
                .by_index
                .get_mut(usize::from(a.index))
                .ok_or(TlvError::NoSuchField(a.index))?;
            if let Some(old) = slot {
                return Err(TlvError::AlreadyMapped {
                    index: a.index,
                    old: *old,
                });
            }
            if let Some(old) = self
                .mappings()
                .chain(add.iter().take_while(|x| !core::ptr::eq(*x, a)))
                .find(|x| x.class == a.class && x.opt_type == a.opt_type)
            {
                return Err(TlvError::MappedTwice { old: *old, new: *a });
            }
            *slot = Some(*a);
        }
        Ok(m)
    }

    /// A copy without `del`. A field that maps nothing is fine (as Open
    /// vSwitch); a field that maps another option is refused.
    pub fn with_deleted(&self, del: &[TlvMapping]) -> Result<TlvMap, TlvError> {
        let mut m = self.clone();
        for d in del {
            let slot = m
                .by_index
                .get_mut(usize::from(d.index))
                .ok_or(TlvError::NoSuchField(d.index))?;
            match slot {
                Some(old) if (old.class, old.opt_type, old.len) != (d.class, d.opt_type, d.len) => {
                    return Err(TlvError::MapsOther {
                        old: *old,
                        asked: *d,
                    })
                }
                _ => *slot = None,
            }
        }
        Ok(m)
    }

    /// Option bytes the mappings take (ovs-ofctl's "allocated option space").
    pub fn allocated_space(&self) -> u32 {
        self.mappings().map(|m| u32::from(m.len)).sum()
    }

    /// Longest options block an encap can produce with this map.
    pub fn max_options_len(&self) -> u32 {
        self.mappings()
            .map(|m| wg::OPTION_HEADER_LEN as u32 + u32::from(m.len))
            .sum()
    }

    /// The `ovs-ofctl dump-tlv-map` text.
    pub fn format_ovs(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            " max option space={} max fields={}",
            TUN_METADATA_FIELDS * usize::from(MAX_TLV_LEN),
            TUN_METADATA_FIELDS
        );
        let _ = writeln!(out, " allocated option space={}", self.allocated_space());
        out.push('\n');
        out.push_str(" mapping table:\n");
        out.push_str("  class  type  length  match field\n");
        out.push_str(" ------  ----  ------  --------------\n");
        for m in self.mappings() {
            let _ = writeln!(
                out,
                " {:>6}  {:>4}  {:>6}  tun_metadata{}",
                c_hex(u32::from(m.class)),
                c_hex(u32::from(m.opt_type)),
                m.len,
                m.index
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_updates_are_never_lost() {
        let h = new_tlv_map();
        let threads: Vec<_> = (0..8u8)
            .map(|i| {
                let h = h.clone();
                std::thread::spawn(move || {
                    let m = TlvMapping::parse(&format!(
                        "{{class=0xffff,type={i},len=4}}->tun_metadata{i}"
                    ))
                    .unwrap();
                    update_tlv_map(&h, |cur| cur.with_added(&[m])).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.load().mappings().count(), 8);
        // A refused change leaves the map as it was.
        let dup = TlvMapping::parse("{class=0xffff,type=0,len=4}->tun_metadata0").unwrap();
        assert!(update_tlv_map(&h, |cur| cur.with_added(&[dup])).is_err());
        assert_eq!(h.load().mappings().count(), 8);
    }

    #[test]
    fn mapping_syntax_and_limits() {
        let m = TlvMapping::parse("{class=0xffff,type=0,len=4}->tun_metadata0").unwrap();
        assert_eq!(
            m,
            TlvMapping {
                class: 0xffff,
                opt_type: 0,
                len: 4,
                index: 0
            }
        );
        assert_eq!(
            m.to_string(),
            "{class=0xffff,type=0x0,len=4}->tun_metadata0"
        );
        let l = TlvMapping::parse_list(
            " {class=0x102,type=0x80,len=8}->tun_metadata3 , {class=1,type=2,len=0}->tun_metadata7",
        )
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].class, l[0].opt_type, l[0].index), (0x102, 0x80, 3));
        for (bad, why) in [
            ("{class=1,type=0,len=6}->tun_metadata0", "valid option size"),
            ("{class=1,type=0,len=12}->tun_metadata0", "at most 8 bytes"),
            ("{class=1,type=0,len=4}->tun_metadata8", "tun_metadata0..7"),
            ("{class=0x10000,type=0,len=4}->tun_metadata0", "class"),
            ("{class=1,len=4}->tun_metadata0", "required"),
            ("{class=1,type=0,len=4}", "expected"),
            ("{class=1,type=0,len=4}->reg0", "tun_metadataN"),
        ] {
            let e = TlvMapping::parse_list(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn map_add_del_and_dump_text() {
        let m = TlvMap::default()
            .with_added(&TlvMapping::parse_list(
                "{class=0xffff,type=0,len=4}->tun_metadata0,{class=0x0102,type=0x80,len=8}->tun_metadata3",
            )
            .unwrap())
            .unwrap();
        // The layout ovs-ofctl 3.1 prints for the same two mappings (its
        // header line excluded), checked against a running OVS.
        assert_eq!(
            m.format_ovs(),
            " max option space=64 max fields=8\n allocated option space=12\n\n mapping table:\n  class  type  length  match field\n ------  ----  ------  --------------\n 0xffff     0       4  tun_metadata0\n  0x102  0x80       8  tun_metadata3\n"
        );
        let e = m
            .with_added(&TlvMapping::parse_list("{class=1,type=1,len=4}->tun_metadata0").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("already mapped"), "{e}");
        let e = m
            .with_added(
                &TlvMapping::parse_list("{class=0xffff,type=0,len=4}->tun_metadata1").unwrap(),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("mapped twice"), "{e}");
        let e = TlvMap::default()
            .with_added(
                &TlvMapping::parse_list(
                    "{class=5,type=5,len=4}->tun_metadata1,{class=5,type=5,len=4}->tun_metadata2",
                )
                .unwrap(),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("mapped twice"), "{e}");
        assert_eq!(m.lookup(0x102, 0x80).map(|x| x.index), Some(3));
        assert_eq!(m.max_options_len(), 8 + 12);
        let d = m
            .with_deleted(
                &TlvMapping::parse_list("{class=0xffff,type=0,len=4}->tun_metadata0").unwrap(),
            )
            .unwrap();
        assert_eq!(d.mappings().count(), 1);
        assert!(m
            .with_deleted(&TlvMapping::parse_list("{class=1,type=0,len=4}->tun_metadata3").unwrap())
            .is_err());
        assert_eq!(
            m.with_deleted(
                &TlvMapping::parse_list("{class=1,type=0,len=4}->tun_metadata5").unwrap()
            ),
            Ok(m.clone()),
            "deleting an unmapped field is a no-op, as Open vSwitch"
        );
    }
}
