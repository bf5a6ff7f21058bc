//! What the tables know about each port: number, name, type and the
//! policy attached to it (VLAN mode, flooding, BPDU handling, MAC limit),
//! and how its egress sizes frames (MTU, tunnel overhead, padding), which
//! the datapath keeps in step with the port object.
//!
//! The datapath owns the port objects that move bytes; this is the
//! control-plane view translation needs.

use super::mac_learning::DEFAULT_PORT_LIMIT;
use serde::{Deserialize, Serialize};

/// VLAN mode of a port, as Open vSwitch's `vlan_mode` column, used by the
/// `normal` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VlanMode {
    /// Untagged frames belong to `tag`; tagged frames are refused; frames
    /// leave untagged.
    Access,
    /// Tagged frames for the VLANs in `trunks` (all when empty); untagged
    /// frames are VLAN 0.
    #[default]
    Trunk,
    /// Like trunk, but untagged frames belong to `tag`, and frames of `tag`
    /// leave tagged.
    NativeTagged,
    /// Like trunk, but untagged frames belong to `tag`, and frames of `tag`
    /// leave untagged.
    NativeUntagged,
}

impl VlanMode {
    /// The name as written in `set-port ... vlan_mode=`.
    pub fn name(self) -> &'static str {
        match self {
            VlanMode::Access => "access",
            VlanMode::Trunk => "trunk",
            VlanMode::NativeTagged => "native-tagged",
            VlanMode::NativeUntagged => "native-untagged",
        }
    }

    /// Parses the `vlan_mode=` value.
    pub fn parse(s: &str) -> Option<VlanMode> {
        Some(match s {
            "access" => VlanMode::Access,
            "trunk" => VlanMode::Trunk,
            "native-tagged" | "native_tagged" => VlanMode::NativeTagged,
            "native-untagged" | "native_untagged" => VlanMode::NativeUntagged,
            _ => return None,
        })
    }
}

/// The kind of a port: what moves its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortKind {
    /// In-memory port (tests, demos): frames injected and collected by the
    /// control socket.
    Dummy,
    /// A TAP vswitchd creates and owns (`/dev/net/tun`).
    Tap,
    /// A TAP left for the host's own stack.
    Internal,
    /// An existing interface (a hypervisor's tap, a NIC), by AF_PACKET.
    System,
    /// A Geneve tunnel endpoint over UDP.
    Geneve,
}

impl PortKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [PortKind; 5] = [
        PortKind::Dummy,
        PortKind::Tap,
        PortKind::Internal,
        PortKind::System,
        PortKind::Geneve,
    ];

    /// The name used in `type=` and printed by `show`.
    pub fn name(self) -> &'static str {
        match self {
            PortKind::Dummy => "dummy",
            PortKind::Tap => "tap",
            PortKind::Internal => "internal",
            PortKind::System => "system",
            PortKind::Geneve => "geneve",
        }
    }

    /// Parses a `type=` value. Open vSwitch's empty type means a system
    /// interface.
    pub fn parse(s: &str) -> Option<PortKind> {
        match s {
            "" => Some(PortKind::System),
            _ => PortKind::ALL.into_iter().find(|k| k.name() == s),
        }
    }
}

impl core::fmt::Display for PortKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The control-plane view of a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// OpenFlow port number.
    pub no: u32,
    /// Name.
    pub name: String,
    /// Type.
    pub kind: PortKind,
    /// VLAN mode (derived from `tag`/`trunks` when not set explicitly).
    pub vlan_mode: Option<VlanMode>,
    /// Access / native VLAN.
    pub tag: Option<u16>,
    /// Trunked VLANs (empty = all).
    pub trunks: Vec<u16>,
    /// False for `no-flood` ports.
    pub flood: bool,
    /// False when disabled (by BPDU guard or by the operator).
    pub enabled: bool,
    /// Disable the port when a BPDU arrives on it.
    pub bpdu_guard: bool,
    /// Addresses the `normal` action may learn on this port.
    pub mac_limit: u32,
    /// MTU (bytes after the Ethernet header): the one the datapath
    /// enforces, kept in step by it.
    pub mtu: u32,
    /// For a tunnel port, the bytes its encapsulation adds around the whole
    /// inner frame, configured options included (the port's own figure,
    /// kept in step by the datapath); `None` for other ports.
    #[serde(default)]
    pub tunnel_overhead: Option<u32>,
    /// The port zero-pads frames shorter than 60 bytes (a port onto a
    /// wire; set from the port by the datapath).
    #[serde(default)]
    pub pads_short_frames: bool,
    /// Whether the port's link is up, as the datapath last saw it (kept in
    /// step by its upkeep, so `show` answers without asking a busy
    /// worker); `None` until a datapath attached the port. Not saved: the
    /// device says.
    #[serde(skip)]
    pub link_up: Option<bool>,
    /// How the port's device spreads what it sends over its queues
    /// (`by-cpu`, `by-hash`, `kernel`; `None`: one queue), kept in step as
    /// `link_up` is. Not saved.
    #[serde(skip)]
    pub steering: Option<&'static str>,
}

impl PortInfo {
    /// A port with default policy.
    pub fn new(no: u32, name: &str, kind: PortKind) -> Self {
        PortInfo {
            no,
            name: name.to_string(),
            kind,
            vlan_mode: None,
            tag: None,
            trunks: Vec::new(),
            flood: true,
            enabled: true,
            bpdu_guard: false,
            mac_limit: DEFAULT_PORT_LIMIT,
            mtu: 1500,
            tunnel_overhead: None,
            pads_short_frames: false,
            link_up: None,
            steering: None,
        }
    }

    /// The effective VLAN mode (Open vSwitch's defaulting: a `tag` without
    /// trunks means access, otherwise trunk).
    pub fn effective_vlan_mode(&self) -> VlanMode {
        match self.vlan_mode {
            Some(m) => m,
            None if self.tag.is_some() && self.trunks.is_empty() => VlanMode::Access,
            None => VlanMode::Trunk,
        }
    }

    /// True for ports that face a VM or a wire (where link-local control
    /// frames must not come from): tap, system, and the in-memory test ports.
    pub fn is_edge(&self) -> bool {
        matches!(
            self.kind,
            PortKind::Tap | PortKind::System | PortKind::Dummy
        )
    }

    /// True for tunnel ports.
    pub fn is_tunnel(&self) -> bool {
        self.kind == PortKind::Geneve
    }

    /// True when the port carries `vlan`.
    pub fn carries_vlan(&self, vlan: u16) -> bool {
        match self.effective_vlan_mode() {
            VlanMode::Access => self.tag.unwrap_or(0) == vlan,
            VlanMode::Trunk => self.trunks.is_empty() || self.trunks.contains(&vlan),
            VlanMode::NativeTagged | VlanMode::NativeUntagged => {
                self.tag == Some(vlan) || self.trunks.is_empty() || self.trunks.contains(&vlan)
            }
        }
    }

    /// The VLAN of a frame received on this port with outer VID `vid`
    /// (`None` = untagged), or `None` when the port refuses it.
    pub fn input_vlan(&self, vid: Option<u16>) -> Option<u16> {
        match (self.effective_vlan_mode(), vid) {
            // A priority-tagged frame (VID 0) counts as untagged.
            (VlanMode::Access, None | Some(0)) => Some(self.tag.unwrap_or(0)),
            (VlanMode::Access, Some(_)) => None,
            (VlanMode::Trunk, None) => self.carries_vlan(0).then_some(0),
            (VlanMode::NativeTagged | VlanMode::NativeUntagged, None | Some(0)) => {
                Some(self.tag.unwrap_or(0))
            }
            (_, Some(v)) => self.carries_vlan(v).then_some(v),
        }
    }

    /// Whether a frame of `vlan` leaves this port tagged.
    pub fn output_tagged(&self, vlan: u16) -> bool {
        match self.effective_vlan_mode() {
            VlanMode::Access => false,
            VlanMode::Trunk => vlan != 0,
            VlanMode::NativeTagged => true,
            VlanMode::NativeUntagged => self.tag != Some(vlan) && vlan != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_trunk_native() {
        let mut a = PortInfo::new(1, "a", PortKind::Tap);
        a.tag = Some(100);
        assert_eq!(a.effective_vlan_mode(), VlanMode::Access);
        assert_eq!(a.input_vlan(None), Some(100));
        assert_eq!(a.input_vlan(Some(0)), Some(100));
        assert_eq!(
            a.input_vlan(Some(100)),
            None,
            "tagged frames refused on access"
        );
        assert!(!a.output_tagged(100));

        let mut t = PortInfo::new(2, "t", PortKind::System);
        t.trunks = vec![100, 200];
        assert_eq!(t.input_vlan(Some(200)), Some(200));
        assert_eq!(t.input_vlan(Some(300)), None);
        assert_eq!(t.input_vlan(None), None, "VLAN 0 not trunked");
        assert!(t.output_tagged(100));

        let mut n = PortInfo::new(3, "n", PortKind::System);
        n.vlan_mode = Some(VlanMode::NativeUntagged);
        n.tag = Some(10);
        assert_eq!(n.input_vlan(None), Some(10));
        assert!(!n.output_tagged(10));
        assert!(n.output_tagged(20));
    }
}
