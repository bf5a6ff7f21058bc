//! [`PacketMeta`]: everything that travels with a packet but is not in its
//! bytes.

/// Number of `tun_metadataN` fields (Geneve options mapped by the TLV map).
pub const TUN_METADATA_FIELDS: usize = 8;

/// Conntrack state bits, with Open vSwitch's values (`CS_*` in
/// `lib/packets.h`), so `ct_state=0x21/0x21` means the same in both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CtState(pub u8);

impl CtState {
    /// Start of a new connection.
    pub const NEW: u8 = 0x01;
    /// Part of an existing connection.
    pub const EST: u8 = 0x02;
    /// Related to an existing connection (an ICMP error about it).
    pub const REL: u8 = 0x04;
    /// Flowing in the reply direction.
    pub const RPL: u8 = 0x08;
    /// Could not be tracked: see the invalid reason.
    pub const INV: u8 = 0x10;
    /// Went through conntrack.
    pub const TRK: u8 = 0x20;
    /// Source NATed.
    pub const SNAT: u8 = 0x40;
    /// Destination NATed.
    pub const DNAT: u8 = 0x80;

    /// Flag names in ovs-ofctl order and spelling.
    pub const NAMES: [(u8, &'static str); 8] = [
        (Self::NEW, "new"),
        (Self::EST, "est"),
        (Self::REL, "rel"),
        (Self::RPL, "rpl"),
        (Self::INV, "inv"),
        (Self::TRK, "trk"),
        (Self::SNAT, "snat"),
        (Self::DNAT, "dnat"),
    ];

    /// True when every bit of `flags` is set.
    pub fn has(self, flags: u8) -> bool {
        self.0 & flags == flags
    }
}

/// What a port told us about the L4 checksum of a received packet (TAP
/// checksum offload through the virtio-net header).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CsumStatus {
    /// Nothing known: validate if policy says so.
    #[default]
    Unknown,
    /// The sender or the port verified it (`VIRTIO_NET_HDR_F_DATA_VALID`).
    Verified,
    /// Not computed yet; the field holds only the pseudo-header sum
    /// (`VIRTIO_NET_HDR_F_NEEDS_CSUM`). Starts at `csum_start`, stored at
    /// `csum_start + csum_offset`.
    Partial {
        /// Offset from the start of the frame where summing starts.
        csum_start: u16,
        /// Offset of the checksum field from `csum_start`.
        csum_offset: u16,
    },
}

/// Generic segmentation offload: a TAP with vnet_hdr may hand us (and take)
/// one TCP "super-packet" standing for many MSS-sized segments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Gso {
    /// An ordinary packet.
    #[default]
    None,
    /// TCP over IPv4, to be cut into segments of `size` payload bytes.
    TcpV4 {
        /// Payload bytes per segment (the MSS).
        size: u16,
    },
    /// TCP over IPv6, to be cut into segments of `size` payload bytes.
    TcpV6 {
        /// Payload bytes per segment (the MSS).
        size: u16,
    },
}

/// Tunnel metadata: filled by a tunnel port on decap, consumed by a tunnel
/// port on encap, matched and set by flows (`tun_id`, `tun_src`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TunnelMeta {
    /// VNI (`tun_id`); Geneve carries 24 bits.
    pub tun_id: u64,
    /// Outer IPv4 source (`tun_src`), 0 when not tunnelled.
    pub ip_src: u32,
    /// Outer IPv4 destination (`tun_dst`); set by flows for `remote_ip=flow`.
    pub ip_dst: u32,
    /// Outer TOS.
    pub ip_tos: u8,
    /// Outer TTL.
    pub ip_ttl: u8,
    /// Outer UDP source port.
    pub tp_src: u16,
    /// Outer UDP destination port.
    pub tp_dst: u16,
    /// `FLOW_TNL_F_*` style flags: see the constants below.
    pub flags: u16,
    /// Which `tun_metadataN` fields are present (bit N).
    pub metadata_present: u8,
    /// `tun_metadataN` values (at most 8 bytes each, right-aligned).
    pub metadata: [u64; TUN_METADATA_FIELDS],
}

impl TunnelMeta {
    /// Geneve OAM bit was set.
    pub const F_OAM: u16 = 0x1;
    /// The outer UDP checksum was present / should be computed.
    pub const F_CSUM: u16 = 0x2;
    /// A key (VNI) is present.
    pub const F_KEY: u16 = 0x4;

    /// True when this packet came from (or is going into) a tunnel.
    pub fn is_set(&self) -> bool {
        self.ip_dst != 0 || self.ip_src != 0
    }
}

/// Per-packet metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketMeta {
    /// OpenFlow number of the port the packet arrived on.
    pub in_port: u32,
    /// Recirculation id: 0 on first pass, the frozen-state id after
    /// `ct(table=...)`.
    pub recirc_id: u32,
    /// Tunnel metadata (all zero when not tunnelled).
    pub tunnel: TunnelMeta,
    /// Conntrack state from the last `ct` action.
    pub ct_state: CtState,
    /// Conntrack zone of the last `ct` action.
    pub ct_zone: u16,
    /// Conntrack mark of the connection.
    pub ct_mark: u32,
    /// L4 checksum status reported by the receiving port.
    pub csum: CsumStatus,
    /// Segmentation offload state reported by the receiving port.
    pub gso: Gso,
    /// Why conntrack judged this packet invalid: 0 when it did not, else
    /// 1 + the `conntrack::CtInvalidReason` discriminant (kept as a number
    /// because `packet` sits below `conntrack`).
    pub ct_invalid: u8,
    /// Offset of the L3 header (after all VLAN tags), set by key extraction.
    pub l3_ofs: u16,
    /// Offset of the L4 header, set by key extraction (0 if none).
    pub l4_ofs: u16,
    /// Bytes after the end of the IP datagram (Ethernet padding), set by key
    /// extraction. Never part of a checksum or of the TCP segment length.
    pub l2_pad_len: u16,
}
