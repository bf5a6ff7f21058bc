//! Ports: everything that moves bytes in and out of the switch.
//!
//! A [`Port`] receives and sends batches and owns its counters. Port types:
//! `mem` (in-memory, Open vSwitch's `dummy`: tests and benches), and the
//! real ones (`tap`, `system` over AF_PACKET, `geneve` over UDP, `internal`).
//! Every `unsafe` block of the crate lives in [`sys`].
//!
//! Ports depend only on `wire` and `packet`: a port reports its own drops
//! as a [`PortDrop`], which the datapath folds into its drop reasons.
//!
//! Around the port types: [`vnet`] (the virtio-net header <-> offload
//! metadata), [`link`] (down/up life with backoff, the device fd across
//! it, the ports' own counters), [`poll`] (how the datapath thread sleeps on port fds),
//! [`capture`] (pcap files of what a port moves), [`udp`] (the batched
//! socket a tunnel port sits on), [`persist`] (which persistent TAPs are
//! ours across a crash, where they live, and the exit policy), [`steering`]
//! (a quiet TAP's frames to the worker on the sending CPU).
//!
//! The kernel-device ports never return `Err` from `recv_batch` /
//! `send_batch`: a vanished device is `LinkState::Down` (counted, logged
//! once, retried from `housekeeping()`), a refused frame is a counted
//! drop.

pub mod afpacket;
pub mod capture;
pub mod geneve;
pub mod internal;
pub mod link;
pub mod mem;
pub mod persist;
pub mod poll;
pub mod steering;
pub mod sys;
pub mod tap;
pub mod udp;
pub mod vnet;

pub use afpacket::{AfPacketConfig, AfPacketPort};
pub use geneve::{GeneveConfig, GenevePort};
pub use internal::InternalPort;
pub use tap::{TapConfig, TapPort};

use crate::packet::{Batch, PacketBuf, PacketPool};
use std::os::fd::RawFd;

/// Ends a receive that scattered over `p.rx_area()` and then `overflow`:
/// the frame is `len` bytes, and only what did not fit the pool buffer (a
/// GSO super-packet, a jumbo datagram) pays a copy from the overflow area.
pub(crate) fn finish_rx(p: &mut PacketBuf, len: usize, overflow: &[u8]) {
    // After rx_area() the whole area is tailroom.
    let area = p.tailroom();
    if len <= area {
        p.set_len(len);
        return;
    }
    let extra = (len - area).min(overflow.len());
    p.set_len(area);
    p.extend_from_slice(overflow.get(..extra).unwrap_or_default());
}

/// Errors of port setup and I/O.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An OS call failed.
    #[error("{op} on {port}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// Port name.
        port: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A port option is missing or wrong.
    #[error("port {port}: {msg}")]
    Config {
        /// Port name.
        port: String,
        /// What is wrong.
        msg: String,
    },
}

impl Error {
    /// An OS call `op` on port `port` failed.
    pub(crate) fn io(op: &'static str, port: &str, source: std::io::Error) -> Error {
        Error::Io {
            op,
            port: port.to_string(),
            source,
        }
    }

    /// A port option of `port` is missing or wrong.
    pub(crate) fn config(port: &str, msg: impl Into<String>) -> Error {
        Error::Config {
            port: port.to_string(),
            msg: msg.into(),
        }
    }
}

/// A boolean `add-port` option, spelled as Open vSwitch accepts them.
pub(crate) fn parse_bool(port: &str, k: &str, v: &str) -> Result<bool, Error> {
    match v {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(Error::config(
            port,
            format!("{k}={v}: expected true or false"),
        )),
    }
}

/// Why a port dropped a packet on its own (before or after the datapath).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortDrop {
    /// The port is down (device gone, disabled by BPDU guard).
    PortDown,
    /// The OS refused the frame on transmit.
    TxError,
    /// The transmit queue was full.
    TxQueueFull,
    /// A received frame longer than the receive buffer.
    RxTooLong,
    /// Geneve: header truncated.
    GeneveTruncated,
    /// Geneve: version is not 0.
    GeneveBadVersion,
    /// Geneve: options run past the header.
    GeneveBadOptionLength,
    /// Geneve: an unknown option with the critical bit set (RFC 8926).
    GeneveCriticalOption,
    /// Geneve: the inner protocol is not Ethernet.
    GeneveBadProtocol,
    /// Tunnel: no route / no neighbour to the remote endpoint.
    TunnelNoRoute,
    /// Tunnel: the remote endpoint is unreachable (ICMP error on the socket).
    TunnelUnreachable,
    /// Tunnel: the packet has no tunnel destination (`remote_ip=flow` and
    /// `tun_dst` unset).
    TunnelNoDestination,
    /// Tunnel: a datagram no tunnel port accepts (from another host than
    /// a fixed `remote_ip`, or with another VNI than a fixed `key`).
    TunnelNoMatch,
    /// TAP: frames the kernel queued for us and dropped because the
    /// device's queue (`txqueuelen`) was full before we read them (the
    /// device's own `tx_dropped`, counted from when the port was opened).
    TapQueueOverflow,
    /// A frame another datapath worker sent to a port it has no queue of
    /// was refused because the port's hand-off queue to the worker that
    /// owns the port was full.
    HandoffQueueFull,
}

impl PortDrop {
    /// Every variant, in declaration order.
    pub const ALL: [PortDrop; 15] = [
        PortDrop::PortDown,
        PortDrop::TxError,
        PortDrop::TxQueueFull,
        PortDrop::RxTooLong,
        PortDrop::GeneveTruncated,
        PortDrop::GeneveBadVersion,
        PortDrop::GeneveBadOptionLength,
        PortDrop::GeneveCriticalOption,
        PortDrop::GeneveBadProtocol,
        PortDrop::TunnelNoRoute,
        PortDrop::TunnelUnreachable,
        PortDrop::TunnelNoDestination,
        PortDrop::TunnelNoMatch,
        PortDrop::TapQueueOverflow,
        PortDrop::HandoffQueueFull,
    ];

    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            PortDrop::PortDown => "port_down",
            PortDrop::TxError => "tx_error",
            PortDrop::TxQueueFull => "tx_queue_full",
            PortDrop::RxTooLong => "rx_too_long",
            PortDrop::GeneveTruncated => "geneve_truncated",
            PortDrop::GeneveBadVersion => "geneve_bad_version",
            PortDrop::GeneveBadOptionLength => "geneve_bad_option_length",
            PortDrop::GeneveCriticalOption => "geneve_critical_option",
            PortDrop::GeneveBadProtocol => "geneve_bad_protocol",
            PortDrop::TunnelNoRoute => "tunnel_no_route",
            PortDrop::TunnelUnreachable => "tunnel_unreachable",
            PortDrop::TunnelNoDestination => "tunnel_no_destination",
            PortDrop::TunnelNoMatch => "tunnel_no_match",
            PortDrop::TapQueueOverflow => "tap_queue_overflow",
            PortDrop::HandoffQueueFull => "handoff_queue_full",
        }
    }
}

/// Per-port counters (`dump-ports`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames dropped on receive (by the port or the datapath).
    pub rx_dropped: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames dropped on transmit.
    pub tx_dropped: u64,
    /// Transmit errors.
    pub tx_errors: u64,
}

/// Whether a port can move packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Working.
    Up,
    /// Device gone or administratively disabled.
    Down,
}

/// A source of packets and a sink for them.
///
/// `recv_batch` appends at most `batch.free()` packets taken from `pool`;
/// `send_batch` sends from the front of `batch`, gives sent (and dropped)
/// buffers back to `pool`, and leaves in `batch` what it could not send yet.
pub trait Port: Send {
    /// Port name.
    fn name(&self) -> &str;
    /// Port type as written in `add-port ... type=` (`dummy`, `tap`, ...).
    fn kind(&self) -> &'static str;
    /// Receives up to `batch.free()` packets. Never blocks.
    fn recv_batch(&mut self, pool: &mut PacketPool, batch: &mut Batch) -> Result<usize, Error>;
    /// Sends packets from `batch`. Never blocks; see the trait docs.
    fn send_batch(&mut self, batch: &mut Batch, pool: &mut PacketPool) -> Result<usize, Error>;
    /// Counters.
    fn stats(&self) -> PortStats;
    /// Drops the port did by itself, by reason (non-zero entries only).
    fn drops(&self) -> Vec<(PortDrop, u64)> {
        Vec::new()
    }
    /// MTU of the link (bytes after the Ethernet header).
    fn mtu(&self) -> u32 {
        1500
    }
    /// For a tunnel port: the bytes its encapsulation adds around the
    /// whole inner frame (outer IP + UDP + tunnel header + options, plus
    /// the inner Ethernet header's 14 the MTU rule otherwise leaves out).
    /// The datapath checks `inner frame + this <= mtu()`.
    fn tunnel_overhead(&self) -> Option<u32> {
        None
    }
    /// True for ports onto a wire (an Ethernet link, a veth): the datapath
    /// zero-pads frames shorter than 60 bytes sent to them. A TAP or a
    /// tunnel delivers frames to a stack that needs no padding.
    fn pads_short_frames(&self) -> bool {
        false
    }
    /// Whether the port can move packets now.
    fn link_state(&self) -> LinkState {
        LinkState::Up
    }
    /// How the device chooses the queue of each frame it sends us, for a
    /// device with several (a multi-queue TAP; see [`steering`]).
    fn steering(&self) -> Option<steering::Steered> {
        None
    }
    /// A file descriptor that becomes readable when packets wait, for the
    /// datapath thread's poll. `None` for ports polled on every loop, and
    /// for a port that is down (its fd may change when it comes back: see
    /// [`poll::Poller::set`]).
    fn poll_fd(&self) -> Option<RawFd> {
        None
    }
    /// Whether the port holds received frames that its fd no longer
    /// announces (read from the device by an earlier call, not yet handed
    /// over because the batch was full). A sleeping worker reads only the
    /// ports its poller reports readable, those without an fd, and those
    /// that say yes here.
    fn rx_pending(&self) -> bool {
        false
    }
    /// Periodic upkeep (reopen a vanished device, flush timers).
    fn housekeeping(&mut self) {}
    /// How many times the link went down since the port was opened.
    fn link_downs(&self) -> u64 {
        0
    }
    /// The descriptors an upgrade hands to the new vswitchd so the device
    /// never loses its reader (a TAP's queue, a tunnel's bound sockets),
    /// in the order the type's `adopt` takes them back. Empty for ports
    /// the new process simply opens again (in-memory, AF_PACKET).
    fn handover_fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        Vec::new()
    }
    /// The operator deleted the port (`del-port`), as opposed to the
    /// daemon closing it at exit: a device the port created goes with it,
    /// even when devices are kept at exit (`vswitchd --keep-taps`).
    fn on_delete(&mut self) {}
    /// Closes the device queue this port holds for a datapath worker other
    /// than the first, if any (see [`Port::open_queue`]); its output goes
    /// through the first worker from then on. An upgrade does this once
    /// the old process has stopped forwarding: the device then spreads its
    /// traffic over the queues still open (the new process's), where it
    /// waits, rather than into queues nobody will read again.
    fn release_queue(&mut self) {}
    /// Opens another queue of the same device, for another datapath
    /// worker: a port of its own that receives its share of the device's
    /// traffic and transmits without any lock shared with this one (a
    /// multi-queue TAP's next queue, another socket of an AF_PACKET fanout
    /// group, another `SO_REUSEPORT` socket). The device spreads a flow to
    /// one queue, so packets of a flow are not reordered (a quiet TAP's
    /// pings, ARP and DNS/DHCP/NTP follow the sending CPU instead, and any
    /// other flow keeps one queue whatever the TAP's traffic: see
    /// [`steering`]). Its counters
    /// are its own (the datapath sums them); device-wide counters stay
    /// with this, the primary queue. `Ok(None)`: the device cannot be
    /// split, and the port lives on one worker only.
    fn open_queue(&self) -> Result<Option<Box<dyn Port>>, Error> {
        Ok(None)
    }
}
