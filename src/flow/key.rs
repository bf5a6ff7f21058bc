//! [`FlowKey`]: every field a flow can match, packed into 64-bit words.
//!
//! The key is a flat array of words so that the three operations the fast
//! path does per packet are loops over `u64`s: masking (`key & mask`),
//! hashing and comparing. A [`FlowMask`] has the same layout; a set bit means
//! "this bit of the key matters".
//!
//! Field placement follows Open vSwitch's `struct flow` conventions where
//! they overlap: ARP opcode lives in `nw_proto`, ARP sender/target IPv4 in
//! `nw_src`/`nw_dst`, ICMP type/code in `tp_src`/`tp_dst`. `vlan_tci` has the
//! CFI bit (0x1000) set when a tag is present, so "no tag" and "tag with
//! VID 0" differ.

/// Number of 64-bit words in a key.
pub const WORDS: usize = 29;

/// Words a packet key can have non-zero: everything but `metadata` and the
/// registers, which exist only during translation. They come last so the
/// exact-match cache hashes and compares only this prefix.
pub const DP_WORDS: usize = 24;
/// First `tun_metadataN` word.
pub const TUN_MD_WORD: usize = 16;
/// The `metadata` word.
pub const META_WORD: usize = 24;
/// First register word (two registers per word).
pub const REG_WORD: usize = 25;
// `hash_words` and `hash_dp_words` are unrolled for exactly these sizes.
const _: () = assert!(WORDS == 29 && DP_WORDS == 24);

/// The packet's flow key (see the module docs for the layout).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
#[repr(C, align(64))]
pub struct FlowKey {
    /// The raw words. Prefer the typed accessors.
    pub w: [u64; WORDS],
}

/// Which bits of a [`FlowKey`] a match or a megaflow depends on.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
#[repr(C, align(64))]
pub struct FlowMask {
    /// The raw words. Prefer the typed accessors.
    pub w: [u64; WORDS],
}

// Hash maps keyed by keys and masks (classifier subtables, megaflow
// subtables) get the fast word hash; the map's hasher only mixes it once
// more.
impl core::hash::Hash for FlowKey {
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(hash_words(&self.w));
    }
}

impl core::hash::Hash for FlowMask {
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(hash_words(&self.w));
    }
}

#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The per-packet key hash (exact-match cache index and megaflow probes).
///
/// The same folded-multiply mixing foldhash uses, specialised to a fixed
/// 29-word input: fifteen independent word-pair products over four lanes
/// (no dependency chain), then one final mix. Fixed keys: the value
/// must be the same in every worker. Like foldhash's fast variant it is not
/// meant to resist chosen collisions; a collision costs a cache miss, never
/// a wrong answer (entries compare the whole key).
#[inline]
pub fn hash_words(w: &[u64; WORDS]) -> u64 {
    const K: [u64; 5] = [
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
        0x4528_21e6_38d0_1377,
    ];
    // Four accumulators in registers; the products are independent, so
    // the multiplier pipelines them.
    let (mut a0, mut a1, mut a2, mut a3) = (K[4], K[3], K[2], K[1]);
    let mut i = 0;
    while i + 8 <= 24 {
        a0 ^= folded_multiply(w[i] ^ K[0], w[i + 1] ^ K[1]);
        a1 ^= folded_multiply(w[i + 2] ^ K[1], w[i + 3] ^ K[2]);
        a2 ^= folded_multiply(w[i + 4] ^ K[2], w[i + 5] ^ K[3]);
        a3 ^= folded_multiply(w[i + 6] ^ K[3], w[i + 7] ^ K[0]);
        i += 8;
    }
    a0 ^= folded_multiply(w[24] ^ K[0], w[25] ^ K[1]);
    a1 ^= folded_multiply(w[26] ^ K[1], w[27] ^ K[2]);
    a2 ^= folded_multiply(w[28] ^ K[2], K[4]);
    folded_multiply(a0 ^ a2, a1 ^ a3 ^ K[3])
}

/// Generates a getter and a setter for a field stored in bits
/// `[shift, shift + bits)` of word `word`.
macro_rules! word_fields {
    ($ty:ident; $( $(#[$doc:meta])* $get:ident, $set:ident: $t:ty = $word:expr, $shift:expr, $bits:expr; )*) => {
        impl $ty {
            $(
                $(#[$doc])*
                #[inline]
                pub fn $get(&self) -> $t {
                    ((self.w[$word] >> $shift) & (u64::MAX >> (64 - $bits))) as $t
                }
                /// Sets the field (extra high bits are ignored).
                #[inline]
                pub fn $set(&mut self, v: $t) {
                    let m: u64 = (u64::MAX >> (64 - $bits)) << $shift;
                    self.w[$word] = (self.w[$word] & !m) | (((v as u64) << $shift) & m);
                }
            )*
        }
    };
}

macro_rules! all_fields {
    ($ty:ident) => {
        word_fields! { $ty;
            /// OpenFlow input port.
            in_port, set_in_port: u32 = 0, 32, 32;
            /// Recirculation id (0 on the first pass).
            recirc_id, set_recirc_id: u32 = 0, 0, 32;
            /// Ethernet destination as a 48-bit integer.
            dl_dst_u64, set_dl_dst_u64: u64 = 1, 16, 48;
            /// Ethertype after all VLAN tags.
            dl_type, set_dl_type: u16 = 1, 0, 16;
            /// Ethernet source as a 48-bit integer.
            dl_src_u64, set_dl_src_u64: u64 = 2, 16, 48;
            /// Outer VLAN TCI, CFI bit (0x1000) set when a tag is present.
            vlan_tci, set_vlan_tci: u16 = 2, 0, 16;
            /// Inner VLAN TCI (second tag), CFI bit set when present.
            vlan_tci1, set_vlan_tci1: u16 = 3, 48, 16;
            /// IP protocol, or ARP opcode (low 8 bits).
            nw_proto, set_nw_proto: u8 = 3, 40, 8;
            /// IP TOS / IPv6 traffic class byte (DSCP and ECN).
            nw_tos, set_nw_tos: u8 = 3, 32, 8;
            /// IP TTL / hop limit.
            nw_ttl, set_nw_ttl: u8 = 3, 24, 8;
            /// Fragment bits: see [`FlowKey::FRAG_ANY`] and [`FlowKey::FRAG_LATER`].
            nw_frag, set_nw_frag: u8 = 3, 16, 8;
            /// TCP flags (12 bits).
            tcp_flags, set_tcp_flags: u16 = 3, 0, 16;
            /// IPv4 source, or ARP sender protocol address.
            nw_src, set_nw_src: u32 = 4, 32, 32;
            /// IPv4 destination, or ARP target protocol address.
            nw_dst, set_nw_dst: u32 = 4, 0, 32;
            /// L4 source port, or ICMP type.
            tp_src, set_tp_src: u16 = 5, 48, 16;
            /// L4 destination port, or ICMP code.
            tp_dst, set_tp_dst: u16 = 5, 32, 16;
            /// Conntrack zone.
            ct_zone, set_ct_zone: u16 = 5, 16, 16;
            /// Conntrack state bits ([`crate::packet::CtState`]).
            ct_state, set_ct_state: u8 = 5, 8, 8;
            /// VLAN TPID bits: [`FlowKey::TPID_OUTER_AD`], [`FlowKey::TPID_INNER_AD`].
            vlan_tpid, set_vlan_tpid: u8 = 5, 0, 8;
            /// Conntrack mark.
            ct_mark, set_ct_mark: u32 = 6, 32, 32;
            /// IPv6 flow label (20 bits).
            ipv6_label, set_ipv6_label: u32 = 6, 0, 32;
            /// ARP sender hardware address as a 48-bit integer.
            arp_sha_u64, set_arp_sha_u64: u64 = 11, 16, 48;
            /// ARP target hardware address as a 48-bit integer.
            arp_tha_u64, set_arp_tha_u64: u64 = 12, 16, 48;
            /// Tunnel id (VNI).
            tun_id, set_tun_id: u64 = 13, 0, 64;
            /// Tunnel outer IPv4 source.
            tun_src, set_tun_src: u32 = 14, 32, 32;
            /// Tunnel outer IPv4 destination.
            tun_dst, set_tun_dst: u32 = 14, 0, 32;
            /// Tunnel flags ([`crate::packet::TunnelMeta`] `F_*`).
            tun_flags, set_tun_flags: u16 = 15, 48, 16;
            /// Tunnel outer TOS.
            tun_tos, set_tun_tos: u8 = 15, 40, 8;
            /// Tunnel outer TTL.
            tun_ttl, set_tun_ttl: u8 = 15, 32, 8;
            /// Which `tun_metadataN` are present (bit N).
            tun_metadata_present, set_tun_metadata_present: u8 = 15, 24, 8;
            /// OpenFlow metadata register.
            metadata, set_metadata: u64 = META_WORD, 0, 64;
        }

        impl $ty {
            /// The IPv6 source address as a 128-bit integer.
            #[inline]
            pub fn ipv6_src(&self) -> u128 {
                (u128::from(self.w[7]) << 64) | u128::from(self.w[8])
            }
            /// Sets the IPv6 source.
            #[inline]
            pub fn set_ipv6_src(&mut self, v: u128) {
                self.w[7] = (v >> 64) as u64;
                self.w[8] = v as u64;
            }
            /// The IPv6 destination address as a 128-bit integer.
            #[inline]
            pub fn ipv6_dst(&self) -> u128 {
                (u128::from(self.w[9]) << 64) | u128::from(self.w[10])
            }
            /// Sets the IPv6 destination.
            #[inline]
            pub fn set_ipv6_dst(&mut self, v: u128) {
                self.w[9] = (v >> 64) as u64;
                self.w[10] = v as u64;
            }
            /// Register `regN` (N in 0..8; other N read as 0).
            #[inline]
            pub fn reg(&self, n: usize) -> u32 {
                if n >= 8 {
                    return 0;
                }
                let w = self.w[REG_WORD + n / 2];
                if n % 2 == 0 {
                    (w >> 32) as u32
                } else {
                    w as u32
                }
            }
            /// Sets register `regN` (N >= 8 is ignored).
            #[inline]
            pub fn set_reg(&mut self, n: usize, v: u32) {
                if n >= 8 {
                    return;
                }
                let w = &mut self.w[REG_WORD + n / 2];
                if n % 2 == 0 {
                    *w = (*w & 0xffff_ffff) | (u64::from(v) << 32);
                } else {
                    *w = (*w & !0xffff_ffff) | u64::from(v);
                }
            }
            /// `tun_metadataN` (N in 0..8; other N read as 0).
            #[inline]
            pub fn tun_metadata(&self, n: usize) -> u64 {
                if n >= 8 {
                    return 0;
                }
                self.w[TUN_MD_WORD + n]
            }
            /// Sets `tun_metadataN` (N >= 8 is ignored).
            #[inline]
            pub fn set_tun_metadata(&mut self, n: usize, v: u64) {
                if n < 8 {
                    self.w[TUN_MD_WORD + n] = v;
                }
            }
            /// Ethernet source.
            #[inline]
            pub fn dl_src(&self) -> [u8; 6] {
                mac_from_u64(self.dl_src_u64())
            }
            /// Sets the Ethernet source.
            #[inline]
            pub fn set_dl_src(&mut self, m: [u8; 6]) {
                self.set_dl_src_u64(mac_to_u64(m))
            }
            /// Ethernet destination.
            #[inline]
            pub fn dl_dst(&self) -> [u8; 6] {
                mac_from_u64(self.dl_dst_u64())
            }
            /// Sets the Ethernet destination.
            #[inline]
            pub fn set_dl_dst(&mut self, m: [u8; 6]) {
                self.set_dl_dst_u64(mac_to_u64(m))
            }
        }
    };
}

all_fields!(FlowKey);
all_fields!(FlowMask);

/// A MAC address from its 48-bit integer form.
#[inline]
pub fn mac_from_u64(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// `aa:bb:cc:dd:ee:ff`, as ovs-ofctl prints a MAC, from the 48-bit
/// integer form.
pub fn fmt_mac(v: u64) -> String {
    let m = mac_from_u64(v);
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// The 48-bit integer form of a MAC address.
#[inline]
pub fn mac_to_u64(m: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

/// First `tun_metadataN` word: extraction fills these words only for the
/// options present (bits in `tun_metadata_present`, word 15).
pub const DP_CORE_WORDS: usize = TUN_MD_WORD;

// Words 7..13 hold the IPv6 addresses (7..11) and the ARP / ND hardware
// addresses (11..13): extraction fills them only for IPv6, ARP and RARP
// frames, which `dl_type` (word 1, always compared) says.
const L3_WIDE: core::ops::Range<usize> = 7..13;

/// Which optional word ranges a packet key may have non-zero.
#[inline]
fn dp_shape(w: &[u64; WORDS]) -> (bool, bool) {
    let dl_type = w[1] as u16;
    let wide = matches!(dl_type, 0x86dd | 0x0806 | 0x8035);
    // `tun_metadata_present` is bits 24..32 of word 15.
    let opts = (w[15] >> 24) & 0xff != 0;
    (wide, opts)
}

/// The exact-match cache's hash of a packet key. Only words an extracted
/// key can have non-zero are mixed: always words 0..7 and 13..16; the IPv6
/// and ARP words for those frames; the option words when options are
/// present. Keys that hash differently can never be equal; keys that
/// collide are told apart by [`FlowKey::dp_eq`].
#[inline]
pub fn hash_dp_words(w: &[u64; WORDS]) -> u64 {
    let (wide, opts) = dp_shape(w);
    let core = [w[0], w[1], w[2], w[3], w[4], w[5], w[6]];
    let [mut a0, mut a1, mut a2, mut a3] = dp_core_lanes(&core, w[13], w[14], w[15]);
    if wide {
        a1 ^= folded_multiply(w[7] ^ DPK[0], w[8] ^ DPK[2]);
        a2 ^= folded_multiply(w[9] ^ DPK[1], w[10] ^ DPK[3]);
        a3 ^= folded_multiply(w[11] ^ DPK[2], w[12] ^ DPK[4]);
    }
    if opts {
        let mut i = DP_CORE_WORDS;
        while i + 8 <= DP_WORDS {
            a0 ^= folded_multiply(w[i] ^ DPK[0], w[i + 1] ^ DPK[1]);
            a1 ^= folded_multiply(w[i + 2] ^ DPK[1], w[i + 3] ^ DPK[2]);
            a2 ^= folded_multiply(w[i + 4] ^ DPK[2], w[i + 5] ^ DPK[3]);
            a3 ^= folded_multiply(w[i + 6] ^ DPK[3], w[i + 7] ^ DPK[0]);
            i += 8;
        }
    }
    folded_multiply(a0 ^ a2, a1 ^ a3 ^ DPK[3])
}

/// [`hash_dp_words`] of a key whose words 0..7 are `core` and all others
/// zero (neither IPv6 nor ARP, no tunnel): extraction's common case, from
/// the words it still has in registers.
#[inline(always)]
pub fn hash_dp_narrow(core: &[u64; 7]) -> u64 {
    debug_assert!(!matches!(core[1] as u16, 0x86dd | 0x0806 | 0x8035));
    let [a0, a1, a2, a3] = dp_core_lanes(core, 0, 0, 0);
    folded_multiply(a0 ^ a2, a1 ^ a3 ^ DPK[3])
}

const DPK: [u64; 5] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
    0x4528_21e6_38d0_1377,
];

/// The four lanes of [`hash_dp_words`] over the words every packet key
/// has: 0..7 (`core`) and 13..16.
#[inline(always)]
fn dp_core_lanes(core: &[u64; 7], w13: u64, w14: u64, w15: u64) -> [u64; 4] {
    let a0 = DPK[4]
        ^ folded_multiply(core[0] ^ DPK[0], core[1] ^ DPK[1])
        ^ folded_multiply(w14 ^ DPK[1], w15 ^ DPK[4]);
    let a1 = DPK[3] ^ folded_multiply(core[2] ^ DPK[1], core[3] ^ DPK[2]);
    let a2 = DPK[2] ^ folded_multiply(core[4] ^ DPK[2], core[5] ^ DPK[3]);
    let a3 = DPK[1] ^ folded_multiply(core[6] ^ DPK[3], w13 ^ DPK[0]);
    [a0, a1, a2, a3]
}

/// The OR of `a[i] ^ b[i]` over `r` (zero when the words are equal there).
/// Inlined with constant ranges it unrolls into plain word compares.
#[inline(always)]
fn words_differ(a: &[u64; WORDS], b: &[u64; WORDS], r: core::ops::Range<usize>) -> u64 {
    let mut d = 0;
    for i in r {
        d |= a[i] ^ b[i];
    }
    d
}

impl FlowKey {
    /// `nw_frag`: the packet is a fragment.
    pub const FRAG_ANY: u8 = 1;
    /// `nw_frag`: the packet is a fragment other than the first.
    pub const FRAG_LATER: u8 = 2;
    /// `vlan_tci` bit meaning "a tag is present" (the CFI/DEI position).
    pub const VLAN_CFI: u16 = 0x1000;
    /// `vlan_tpid`: the outer tag is 802.1ad (0x88a8).
    pub const TPID_OUTER_AD: u8 = 1;
    /// `vlan_tpid`: the inner tag is 802.1ad (0x88a8).
    pub const TPID_INNER_AD: u8 = 2;

    /// The key with the bits outside `mask` cleared.
    #[inline]
    pub fn masked(&self, mask: &FlowMask) -> FlowKey {
        let mut out = FlowKey::default();
        for i in 0..WORDS {
            out.w[i] = self.w[i] & mask.w[i];
        }
        out
    }

    /// Fast hash of a packet key (exact-match cache): see
    /// [`hash_dp_words`].
    #[inline]
    pub fn hash64(&self) -> u64 {
        hash_dp_words(&self.w)
    }

    /// Equality of two packet keys (the words translation-only fields
    /// never touch are skipped).
    #[inline]
    pub fn dp_eq(&self, other: &FlowKey) -> bool {
        // Words 0..7 and 13..16 always; equal there means equal `dl_type`
        // and option bits, hence the same shape for both keys, and the
        // words outside the shape are zero in both (see `hash_dp_words`).
        // Word ranges by constant index, not slice compares: slices of
        // these lengths compile to a `memcmp` call on the EMC hit path.
        let (a, b) = (&self.w, &other.w);
        if words_differ(a, b, 0..L3_WIDE.start) | words_differ(a, b, L3_WIDE.end..DP_CORE_WORDS)
            != 0
        {
            return false;
        }
        let (wide, opts) = dp_shape(a);
        (!wide || words_differ(a, b, L3_WIDE) == 0)
            && (!opts || words_differ(a, b, DP_CORE_WORDS..DP_WORDS) == 0)
    }

    /// True when this key, restricted to `mask`, equals `other` (which is
    /// already masked).
    #[inline]
    pub fn matches(&self, mask: &FlowMask, masked_other: &FlowKey) -> bool {
        let mut diff = 0u64;
        for i in 0..WORDS {
            diff |= (self.w[i] & mask.w[i]) ^ masked_other.w[i];
        }
        diff == 0
    }

    /// True when the key carries an IPv4 packet.
    #[inline]
    pub fn is_ipv4(&self) -> bool {
        self.dl_type() == 0x0800
    }

    /// True when the key carries an IPv6 packet.
    #[inline]
    pub fn is_ipv6(&self) -> bool {
        self.dl_type() == 0x86dd
    }

    /// True when the key carries IPv4 or IPv6.
    #[inline]
    pub fn is_ip(&self) -> bool {
        self.is_ipv4() || self.is_ipv6()
    }
}

impl FlowMask {
    /// A mask with every bit set (exact match).
    pub fn exact() -> FlowMask {
        FlowMask { w: [!0; WORDS] }
    }

    /// Bitwise union: the mask of a translation that looked at both.
    #[inline]
    pub fn union_with(&mut self, other: &FlowMask) {
        for i in 0..WORDS {
            self.w[i] |= other.w[i];
        }
    }

    /// True when no bit is set (matches everything).
    pub fn is_empty(&self) -> bool {
        self.w.iter().all(|w| *w == 0)
    }

    /// Fast hash (megaflow subtables are keyed by mask).
    #[inline]
    pub fn hash64(&self) -> u64 {
        hash_words(&self.w)
    }
}

impl core::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "FlowKey[")?;
        for (i, w) in self.w.iter().enumerate() {
            if *w != 0 {
                write!(f, " {i}:{w:#x}")?;
            }
        }
        write!(f, " ]")
    }
}

impl core::fmt::Debug for FlowMask {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "FlowMask[")?;
        for (i, w) in self.w.iter().enumerate() {
            if *w != 0 {
                write!(f, " {i}:{w:#x}")?;
            }
        }
        write!(f, " ]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_do_not_overlap() {
        let mut k = FlowKey::default();
        k.set_in_port(0xdead_beef);
        k.set_recirc_id(7);
        k.set_dl_dst([1, 2, 3, 4, 5, 6]);
        k.set_dl_type(0x0800);
        k.set_dl_src([7, 8, 9, 10, 11, 12]);
        k.set_vlan_tci(0x1064);
        k.set_vlan_tci1(0x1001);
        k.set_nw_proto(6);
        k.set_nw_tos(0xb8);
        k.set_nw_ttl(64);
        k.set_nw_frag(0);
        k.set_tcp_flags(0x012);
        k.set_nw_src(0x0a00_0001);
        k.set_nw_dst(0x0a00_0002);
        k.set_tp_src(40000);
        k.set_tp_dst(80);
        k.set_ct_zone(5);
        k.set_ct_state(0x22);
        k.set_ct_mark(9);
        k.set_reg(0, 1);
        k.set_reg(1, 2);
        k.set_reg(7, 8);
        k.set_tun_metadata(3, 0x33);
        k.set_ipv6_src(1 << 100 | 5);
        assert_eq!(k.in_port(), 0xdead_beef);
        assert_eq!(k.recirc_id(), 7);
        assert_eq!(k.dl_dst(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(k.dl_type(), 0x0800);
        assert_eq!(k.dl_src(), [7, 8, 9, 10, 11, 12]);
        assert_eq!(k.vlan_tci(), 0x1064);
        assert_eq!(k.vlan_tci1(), 0x1001);
        assert_eq!(k.nw_proto(), 6);
        assert_eq!(k.nw_tos(), 0xb8);
        assert_eq!(k.nw_ttl(), 64);
        assert_eq!(k.tcp_flags(), 0x012);
        assert_eq!(k.nw_src(), 0x0a00_0001);
        assert_eq!(k.nw_dst(), 0x0a00_0002);
        assert_eq!(k.tp_src(), 40000);
        assert_eq!(k.tp_dst(), 80);
        assert_eq!(k.ct_zone(), 5);
        assert_eq!(k.ct_state(), 0x22);
        assert_eq!(k.ct_mark(), 9);
        assert_eq!((k.reg(0), k.reg(1), k.reg(7)), (1, 2, 8));
        assert_eq!(k.tun_metadata(3), 0x33);
        assert_eq!(k.ipv6_src(), 1 << 100 | 5);
    }

    #[test]
    fn translation_only_fields_live_after_the_datapath_prefix() {
        let mut k = FlowKey::default();
        k.set_metadata(u64::MAX);
        for n in 0..8 {
            k.set_reg(n, u32::MAX);
        }
        assert!(k.w[..DP_WORDS].iter().all(|w| *w == 0));
        let mut k = FlowKey::default();
        for n in 0..8 {
            k.set_tun_metadata(n, u64::MAX);
        }
        assert!(k.w[DP_WORDS..].iter().all(|w| *w == 0));
    }

    #[test]
    fn extracted_keys_are_zero_outside_their_shape() {
        // The invariant dp_eq and hash_dp_words rely on, checked on real
        // frames of each kind.
        use crate::packet::PacketMeta;
        let frames: Vec<Vec<u8>> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
                .unwrap()
                .filter_map(|e| {
                    let p = e.unwrap().path();
                    (p.extension()? == "hex").then_some(p)
                })
                .filter_map(|p| {
                    let t = std::fs::read_to_string(p).unwrap();
                    let hex: String = t
                        .lines()
                        .filter(|l| !l.starts_with('#'))
                        .collect::<Vec<_>>()
                        .join("")
                        .split_whitespace()
                        .collect();
                    (0..hex.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                        .collect()
                })
                .collect();
        assert!(frames.len() > 10);
        for f in frames {
            let mut k = FlowKey::default();
            let mut m = PacketMeta::default();
            if crate::flow::extract::extract(&f, &mut m, &mut k).is_err() {
                continue;
            }
            let (wide, opts) = dp_shape(&k.w);
            if !wide {
                assert!(k.w[L3_WIDE].iter().all(|w| *w == 0), "{k:?}");
            }
            if !opts {
                assert!(k.w[DP_CORE_WORDS..].iter().all(|w| *w == 0), "{k:?}");
            }
        }
    }

    #[test]
    fn dp_eq_and_hash_see_option_words_only_with_options() {
        let mut a = FlowKey::default();
        a.set_nw_src(1);
        let mut b = a;
        assert!(a.dp_eq(&b));
        a.set_tun_metadata_present(1);
        a.set_tun_metadata(0, 7);
        b.set_tun_metadata_present(1);
        b.set_tun_metadata(0, 8);
        assert!(!a.dp_eq(&b), "options compared when present");
        assert_ne!(a.hash64(), b.hash64());
        b.set_tun_metadata(0, 7);
        assert!(a.dp_eq(&b));
        assert_eq!(a.hash64(), b.hash64());
    }

    #[test]
    fn dp_eq_compares_every_word_of_the_shape_and_nothing_else() {
        // IPv6 with options: every datapath word is in the shape.
        let mut full = FlowKey::default();
        full.set_dl_type(0x86dd);
        full.set_tun_metadata_present(1);
        // IPv4 without options: the wide and option words are not.
        let mut narrow = FlowKey::default();
        narrow.set_dl_type(0x0800);
        for i in 0..WORDS {
            for bit in [0, 17, 63] {
                let mut b = full;
                b.w[i] ^= 1 << bit;
                assert_eq!(full.dp_eq(&b), i >= DP_WORDS, "word {i} bit {bit}");
                assert_eq!(b.dp_eq(&full), i >= DP_WORDS, "word {i} bit {bit}");
                let mut b = narrow;
                b.w[i] ^= 1 << bit;
                let in_shape = i < L3_WIDE.start || (L3_WIDE.end..DP_CORE_WORDS).contains(&i);
                assert_eq!(narrow.dp_eq(&b), !in_shape, "word {i} bit {bit}");
            }
        }
    }

    #[test]
    fn narrow_hash_is_the_hash_of_a_narrow_key() {
        let mut st = 0x1234_5678_9abc_def1u64;
        for _ in 0..1000 {
            let mut core = [0u64; 7];
            for w in core.iter_mut() {
                st ^= st << 13;
                st ^= st >> 7;
                st ^= st << 17;
                *w = st;
            }
            core[1] = (core[1] & !0xffff) | 0x0800;
            let mut k = FlowKey::default();
            k.w[..7].copy_from_slice(&core);
            assert_eq!(hash_dp_narrow(&core), k.hash64());
        }
    }

    #[test]
    fn mask_and_match() {
        let mut k = FlowKey::default();
        k.set_nw_src(0x0a01_0203);
        let mut m = FlowMask::default();
        m.set_nw_src(0xffff_ff00);
        let masked = k.masked(&m);
        assert_eq!(masked.nw_src(), 0x0a01_0200);
        let mut k2 = k;
        k2.set_nw_src(0x0a01_02ff);
        k2.set_tp_dst(99);
        assert!(k2.matches(&m, &masked));
        k2.set_nw_src(0x0a01_0300);
        assert!(!k2.matches(&m, &masked));
    }
}
