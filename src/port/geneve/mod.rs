//! `type=geneve`: the Geneve tunnel vport (RFC 8926), in the manner of
//! Open vSwitch's userspace tunnelling, over kernel UDP sockets.
//!
//! **Why kernel UDP sockets.** The kernel routes the outer packet, resolves
//! the next hop's MAC (ARP/ND), builds the outer Ethernet and IP headers and
//! honours path MTU discovery; we have no route or neighbour table of our
//! own to go stale (the failure Open vSwitch's `tnl/neigh` cache has when a
//! peer's MAC changes). The price is that the UDP header is the kernel's:
//! the UDP payload is what we build and what we receive.
//!
//! **Encap** ([`GenevePort`]'s `send_batch`): each packet gets a Geneve header
//! (VNI from `key=` or, with `key=flow`, from `tun_id`; options from the
//! present `tun_metadataN` fields through the bridge's [`TlvMap`]) pushed
//! into its headroom, no payload copy, and is sent with sendmmsg to
//! `remote_ip:dst_port` (or `tun_dst` with `remote_ip=flow`; a packet
//! without one is dropped as `tunnel_no_destination`). TSO super-packets and
//! partial checksums from vnet_hdr TAPs are segmented / completed first
//! ([`crate::packet::gso`]): the inner frame leaves through a path without
//! offloads. A super-packet's encapsulated segments leave with one sendmsg
//! as UDP GSO (see [`vport`]): the UDP stack is paid once per super-packet,
//! not once per segment. The outer UDP source port carries entropy (RFC 8926 §3.3): a
//! hash of the inner flow picks one of [`TX_SOCKETS`] send sockets, each
//! bound to its own port in 49152..=65535, so one inner flow always uses one
//! source port and different flows spread over ECMP paths. The outer UDP
//! checksum is off unless `csum=true` (as Open vSwitch): SO_NO_CHECK.
//! `df_default=true` (the default) sets DF and lets the kernel refuse what
//! exceeds the path MTU (counted as `tx_error`, and the ICMP "fragmentation
//! needed" it learns from is counted too).
//!
//! **Decap** (`recv_batch`, [`decap`]): recvmmsg into pool
//! buffers (the UDP payload lands at the headroom mark, so decap is a
//! `pull_front`; with UDP GRO on the socket a sender's UDP GSO send
//! arrives as one datagram, cut here into its Geneve datagrams, across
//! receives when it holds more than a batch), then validation, then consecutive TCP segments of one
//! flow are made one super-frame again ([`coalesce`]), so the receiving
//! VM's TAP takes one write and its kernel one trip through TCP for what
//! the sending VM handed over as one; every bad datagram is a counted drop with
//! its [`PortDrop`](crate::port::PortDrop) reason: shorter than the fixed header or options past
//! the datagram (`geneve_truncated`), version not 0 (`geneve_bad_version`),
//! an option running past the options block or a mapped option with
//! another length than its TLV mapping (`geneve_bad_option_length`, as Open
//! vSwitch), an unknown option with the critical bit (`geneve_critical_option`,
//! RFC 8926 MUST), an inner protocol other than Transparent Ethernet
//! Bridging (`geneve_bad_protocol`), a source other than a fixed
//! `remote_ip` or a VNI other than a fixed key (`tunnel_no_match`: Open
//! vSwitch finds no tunnel port for it). Unknown non-critical options are
//! ignored. The packet's `tunnel` metadata gets `tun_id`, outer addresses,
//! UDP ports, TOS/TTL, `F_KEY` (and `F_OAM` when the O bit is set) and the
//! mapped options. OAM frames are passed on with `F_OAM` set, as Open
//! vSwitch does (`tun_flags=+oam`): the tables decide. `F_CSUM` is never
//! set on decap: the kernel checks and strips the outer UDP header, and
//! does not say whether the checksum field was zero.
//!
//! **Errors from the underlay.** ICMP errors about what we sent (peer
//! daemon gone: port unreachable; peer host gone: host unreachable) are read
//! from the sockets' error queues and counted (`tunnel_unreachable`,
//! `tunnel_no_route`); they are never fatal and the sockets stay: when the
//! peer comes back, traffic simply flows again.
//!
//! **TLV map.** One [`TlvMap`] per bridge, shared by its Geneve ports
//! through an [`ArcSwap`](arc_swap::ArcSwap): the control thread swaps in a new map, the
//! datapath thread loads it once per batch without a lock.
//!
//! **MTU.** [`Port::mtu`](crate::port::Port::mtu) is the underlay device's MTU (the route to
//! `remote_ip`, or to `local_ip` with `remote_ip=flow`, read once at
//! creation; 1500 when unknown); [`GenevePort::overhead`] is what the outer
//! headers add on the wire (Ethernet included), and
//! [`Port::tunnel_overhead`](crate::port::Port::tunnel_overhead) the part that counts against the underlay's
//! IP MTU (without the outer Ethernet header), for the datapath's egress
//! check. Both assume every mapped option is present (the largest header
//! this port can build), so a frame that passes the check always fits.
//!
//! The code is split by concern: [`tlv`] (the TLV map), [`config`] (port
//! options), [`codec`] (decap/encap on bytes), [`coalesce`] (decapsulated
//! TCP segments of one flow made one super-frame again for the VM's TAP), [`hash`] (the source-port
//! entropy), [`route`] (underlay MTU from the routing table) and [`vport`]
//! (sockets and the [`Port`](crate::port::Port) implementation).
//!
//! IPv4 underlay only (`tun_src` / `tun_dst` are IPv4 in the flow key).
//! Not thread-safe by itself: a port lives in one datapath thread.

pub mod coalesce;
pub mod codec;
pub mod config;
pub mod hash;
pub mod route;
pub mod tlv;
pub mod vport;

pub use codec::{decap, push_header, DecapPolicy};
pub use config::{GeneveConfig, Key, Remote};
pub use hash::flow_hash;
pub use route::route_device;
pub use tlv::{
    new_tlv_map, update_tlv_map, NumberError, TlvError, TlvMap, TlvMapHandle, TlvMapping,
    MAX_OPTION_LEN, MAX_TLV_LEN,
};
pub use vport::{GenevePort, SRC_PORT_MAX, SRC_PORT_MIN, TX_SOCKETS};

use crate::wire::geneve as wg;

/// Outer headers without options: Ethernet 14 + IPv4 20 + UDP 8 + Geneve 8.
pub const BASE_OVERHEAD: u32 = 14 + 20 + 8 + wg::HEADER_LEN as u32;

/// A number in decimal or `0x` hex, at most `max`; the error names the
/// option (`what=value`).
fn parse_int(what: &str, v: &str, max: u64) -> Result<u64, NumberError> {
    let v = v.trim();
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    }
    .ok()
    .filter(|n| *n <= max)
    .ok_or_else(|| NumberError {
        key: what.to_string(),
        value: v.to_string(),
        max,
    })
}
