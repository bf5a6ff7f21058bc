//! The ovs-ofctl flow syntax parser (placeholder until the syntax work lands).

/// Resolves port names in flows.
pub trait PortNames {
    /// Number of the port called `name`.
    fn port_no(&self, name: &str) -> Option<u32>;
    /// Name of port `no`.
    fn port_name(&self, no: u32) -> Option<String>;
}

/// Numbers only.
pub struct NoPortNames;

impl PortNames for NoPortNames {
    fn port_no(&self, _name: &str) -> Option<u32> {
        None
    }
    fn port_name(&self, _no: u32) -> Option<String> {
        None
    }
}
