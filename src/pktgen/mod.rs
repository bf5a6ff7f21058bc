//! The traffic generator's sans-IO core: frames, stamps, accounting.
//!
//! `vswitch-pktgen` (src/bin/vswitch-pktgen) sends frames into one interface
//! and counts them on another; everything here is what it needs that makes
//! no syscall, so it can be tested byte for byte and with simulated time:
//!
//! * [`frame`]: the frame ring. Frames are built once per slot (Ethernet,
//!   IPv4 or IPv6, UDP or TCP, a fixed size or IMIX); per packet only the
//!   flow's source address and port, the [`frame::Stamp`] (sequence
//!   number, send time, flow id) and the checksums are written in place,
//!   the checksums from partial sums kept per slot. The receiver finds the
//!   stamp behind whatever headers the frame has (VLAN tags included) and
//!   ignores frames without one ([`frame::parse_stamp`]).
//! * [`hist`]: a log-bucket latency histogram (fixed array, no allocation
//!   per packet) with percentiles.
//! * [`account`]: the receiver's counters: per-flow highest sequence number
//!   (reordering), loss against what was sent, latency.
//! * [`rate`]: a token bucket that hands out batches.
//! * [`report`]: the end-of-run figures, serialised for `--json`.
//!
//! Depends only on [`crate::wire`] (checksums) and [`crate::packet`] (the
//! batch size).

pub mod account;
pub mod frame;
pub mod hist;
pub mod rate;
pub mod report;

/// Frames per send or receive call (the datapath's batch size).
pub const BATCH: usize = crate::packet::MAX_BURST;
