//! ofproto (in progress).
