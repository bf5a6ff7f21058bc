//! Every unsafe OS call of the crate (filled in by the ports work).
