//! Port facts for front ends that report them back to their own
//! database (the OVSDB `Interface` columns `ofport`, `mtu`, `link_state`,
//! `admin_state`, `mac_in_use`, `ifindex`, `statistics`).

use super::{Api, Error};
use crate::ofproto::PortKind;
use crate::port::{LinkState, PortStats};

/// What the switch knows about one port right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortFacts {
    /// Name.
    pub port: String,
    /// OpenFlow number.
    pub ofport: u32,
    /// Type.
    pub kind: PortKind,
    /// Whether the port can move packets.
    pub link: LinkState,
    /// Enabled (forwarding) or administratively disabled.
    pub enabled: bool,
    /// MTU in force.
    pub mtu: u32,
    /// Counters.
    pub stats: PortStats,
    /// The device's MAC address, when the device is visible in our network
    /// namespace (a TAP whose kernel side was moved into a VM's namespace
    /// is not).
    pub mac: Option<String>,
    /// The device's interface index, under the same condition.
    pub ifindex: Option<u32>,
}

/// MAC and ifindex of device `name` from sysfs: no ioctl, and a missing
/// device (moved away, or none: Geneve and in-memory ports) is simply
/// unknown.
fn device_facts(name: &str) -> (Option<String>, Option<u32>) {
    let read = |what: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{name}/{what}"))
            .ok()
            .map(|s| s.trim().to_string())
    };
    (
        read("address").filter(|m| m.len() == 17),
        read("ifindex").and_then(|s| s.parse().ok()),
    )
}

impl Api {
    /// Facts about every port of `bridge`, by OpenFlow number.
    pub fn port_facts(&self, bridge: &str) -> Result<Vec<PortFacts>, Error> {
        self.with_bridge(bridge, |b| {
            let mut st = b.port_status();
            st.sort_by_key(|s| s.no);
            Ok(st
                .into_iter()
                .filter_map(|s| {
                    let e = b.ports.get(&s.name)?;
                    let enabled =
                        b.of.with_ports(|p| p.get(s.no).map(|i| i.enabled))
                            .unwrap_or(true);
                    let (mac, ifindex) = match e.kind {
                        PortKind::Tap | PortKind::Internal | PortKind::System => {
                            device_facts(&s.name)
                        }
                        PortKind::Geneve | PortKind::Dummy => (None, None),
                    };
                    Some(PortFacts {
                        ofport: s.no,
                        kind: e.kind,
                        link: s.link,
                        enabled,
                        mtu: s.mtu,
                        stats: s.stats,
                        mac,
                        ifindex,
                        port: s.name,
                    })
                })
                .collect())
        })
    }
}
