//! vswitch: a userspace virtual switch datapath.
//!
//! The crate is laid out the way a packet travels (see `DESIGN.md` in the
//! shared folder for the picture):
//!
//! ```text
//! port::{tap, afpacket, geneve, mem} ─► datapath: extract key ─► exact-match cache
//!     ─► megaflow cache ─► (miss) ofproto::translate ─► execute actions ─► port tx batch
//! ```
//!
//! * [`wire`]: zero-copy views and plain `Repr` structs for each header, and
//!   checksums. Depends on nothing in the crate.
//! * [`packet`]: owned packet buffers with headroom, per-packet metadata and
//!   batches of up to [`packet::MAX_BURST`] packets.
//! * [`flow`]: the flow key, matches and masks, actions, and the ovs-ofctl
//!   compatible text syntax.
//! * [`ofproto`]: the OpenFlow-style tables and the translation of a packet
//!   through them into datapath actions plus the mask it depended on.
//! * [`conntrack`]: the connection tracker.
//! * [`datapath`]: the fast path: caches, upcalls, action execution, drops.
//! * [`port`]: everything that moves bytes; `port::sys` holds every `unsafe`.
//! * [`ctl`]: the control protocol, the daemon's server and the client side.
//! * [`openflow`]: the OpenFlow endpoint (codec, sans-IO sessions,
//!   listeners) that `ovs-ofctl` and controllers talk to; it reaches a
//!   bridge only through its `Backend` trait, so it depends on `flow` and
//!   `ofproto` and nothing depends on it but the daemon.
//! * [`ovsdb`]: an OVSDB (RFC 7047) client and in-memory replica of the
//!   monitored tables; it depends on nothing in the crate, and `ctl`'s
//!   OVSDB front end turns its rows into switch operations.
//! * [`pktgen`]: the traffic generator's sans-IO core (prebuilt frames,
//!   stamps, receive accounting, latency histogram) used by the
//!   `vswitch-pktgen` binary; depends on `wire` and `packet` only.
//!
//! Dependencies point one way: wire ← packet ← flow ← {ofproto, conntrack} ←
//! datapath ← ctl ← bin, and port depends only on wire and packet. `flow`,
//! `ofproto`, `conntrack` and `datapath` take `now` as a parameter and make
//! no syscalls, which is what lets tests drive timeouts with simulated time.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod conntrack;
pub mod ctl;
pub mod datapath;
pub mod flow;
pub mod ofproto;
pub mod openflow;
pub mod ovsdb;
pub mod packet;
pub mod pktgen;
pub mod port;
pub mod wire;
