//! The OpenFlow endpoint: what lets `ovs-ofctl` and controllers drive a
//! bridge.
//!
//! * [`wire`]: the codec, one file per message family, for OpenFlow 1.0,
//!   1.3, 1.4 and 1.5 with the Nicira and ONF extensions.
//! * [`conn`]: one session, sans I/O (bytes in, bytes out, as quinn-proto
//!   does): version negotiation, echo, errors, bundles, and the calls into
//!   a [`Backend`].
//! * [`backend`]: the [`Backend`] trait a bridge implements, and
//!   [`backend::OfprotoBackend`], an implementation over a plain
//!   `ofproto::Ofproto` with an in-memory port list.
//! * [`server`]: tokio listeners (unix socket, optional `ptcp:`) that run
//!   sessions over a shared backend.
//!
//! This tree depends on `flow` and `ofproto` only; nothing below it depends
//! on the control API, so the daemon plugs it in by implementing
//! [`Backend`].

pub mod backend;
pub mod conn;
pub mod server;
pub mod wire;

pub use backend::Backend;
