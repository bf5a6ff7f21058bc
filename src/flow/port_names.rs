//! Port names in the flow syntax: how `in_port=vm1` and `output:tun0`
//! become OpenFlow port numbers when a flow is parsed, and numbers become
//! names again when it is printed.
//!
//! The switch owns the port table; the syntax only sees it through
//! [`PortNames`], so both the parser and the formatter (and their shared
//! building blocks in `syntax`) depend on this small module and never on
//! each other.

use std::collections::HashMap;

/// Resolves switch port names (`vm1`, `tun0`) to OpenFlow port numbers and
/// back. Reserved names (`LOCAL`, `IN_PORT`, `NORMAL`...) never reach it.
pub trait PortNames {
    /// The port number of `name`, if the switch has such a port.
    fn port_no(&self, name: &str) -> Option<u32>;
    /// The name of port `no`, if it has one.
    fn port_name(&self, no: u32) -> Option<String>;
}

/// No port names: only numbers and reserved names parse.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPortNames;

impl PortNames for NoPortNames {
    fn port_no(&self, _name: &str) -> Option<u32> {
        None
    }
    fn port_name(&self, _no: u32) -> Option<String> {
        None
    }
}

/// A simple two-way port name table.
#[derive(Debug, Clone, Default)]
pub struct PortMap {
    by_name: HashMap<String, u32>,
    by_no: HashMap<u32, String>,
}

impl PortMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) `name` <-> `no`.
    pub fn insert(&mut self, name: impl Into<String>, no: u32) {
        let name = name.into();
        if let Some(old) = self.by_no.insert(no, name.clone()) {
            self.by_name.remove(&old);
        }
        self.by_name.insert(name, no);
    }
}

impl<S: Into<String>> FromIterator<(S, u32)> for PortMap {
    fn from_iter<I: IntoIterator<Item = (S, u32)>>(iter: I) -> Self {
        let mut m = PortMap::new();
        for (n, p) in iter {
            m.insert(n, p);
        }
        m
    }
}

impl PortNames for PortMap {
    fn port_no(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }
    fn port_name(&self, no: u32) -> Option<String> {
        self.by_no.get(&no).cloned()
    }
}
