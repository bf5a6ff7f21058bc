//! The fast path (in progress).

pub mod drop;

pub use drop::{DropCounters, DropReason};
