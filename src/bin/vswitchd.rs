//! vswitchd: the switch daemon.
fn main() {}
