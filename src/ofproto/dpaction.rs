//! Datapath actions: what translation hands the fast path.
//!
//! They are the OpenFlow actions with every decision already taken
//! (`normal` became a list of outputs with VLAN edits, `resubmit` vanished,
//! registers were resolved), so executing them needs no table and no lock.
//! Printed in the `ovs-appctl dpctl/dump-flows` style.

use super::xlate_error::XlateError;
use crate::flow::key::{fmt_mac, mac_from_u64};
use crate::flow::{ControllerAction, Field, FlowKey};
use core::fmt;

/// One datapath action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpAction {
    /// Send to an OpenFlow port.
    Output(u32),
    /// Rewrite a header or tunnel field (`value` under `mask`, both already
    /// in the field's bit positions). Only packet fields reach the datapath:
    /// registers and metadata are resolved by translation.
    SetField {
        /// Field.
        field: Field,
        /// New bits.
        value: u128,
        /// Which bits.
        mask: u128,
    },
    /// Push a VLAN tag with `tpid` and `tci` (CFI bit not included).
    PushVlan {
        /// 0x8100 or 0x88a8.
        tpid: u16,
        /// Priority and VID.
        tci: u16,
    },
    /// Remove the outer VLAN tag.
    PopVlan,
    /// Rewrite bits of the outer tag's TCI.
    SetVlanTci {
        /// New bits.
        tci: u16,
        /// Which bits (0x0fff VID, 0xe000 PCP).
        mask: u16,
    },
    /// Send through the connection tracker.
    Ct {
        /// Zone.
        zone: u16,
        /// Create/refresh the connection.
        commit: bool,
        /// With commit: restart a connection seen in the other direction.
        force: bool,
        /// `exec(set_field:V/M->ct_mark)`.
        mark: Option<(u32, u32)>,
    },
    /// Clear conntrack state.
    CtClear,
    /// Run the packet through the tables again with this recirculation id
    /// (on a copy when actions follow).
    Recirc(u32),
    /// Send a copy to the bridge's controllers (PACKET_IN).
    Controller(Box<ToController>),
    /// Stop here and count a drop for this reason (an action that cannot
    /// apply, e.g. `pop_vlan` on an untagged frame).
    Drop(XlateError),
}

/// What a `controller` action sends, with the translation's context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToController {
    /// The action.
    pub action: ControllerAction,
    /// The table of the flow it is in.
    pub table_id: u8,
    /// That flow's cookie.
    pub cookie: u64,
    /// The metadata at the action: registers and metadata are resolved by
    /// translation, so PACKET_IN's match comes from here, not the packet.
    /// The megaflow's mask covers every field they were computed from.
    pub key: FlowKey,
}

impl DpAction {
    /// `(DlDst | DlSrc, mac)` when this action sets a whole MAC address,
    /// the most common rewrite (datapath executes it inline).
    #[inline]
    pub fn whole_mac_rewrite(&self) -> Option<(Field, [u8; 6])> {
        match *self {
            DpAction::SetField {
                field: field @ (Field::DlDst | Field::DlSrc),
                value,
                mask: 0xffff_ffff_ffff,
            } => Some((field, mac_from_u64(value as u64))),
            _ => None,
        }
    }
}

impl fmt::Display for DpAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpAction::Output(p) => write!(f, "{p}"),
            DpAction::SetField { field, value, mask } => {
                let full = *mask == field.full_mask();
                let v = match field {
                    Field::DlSrc | Field::DlDst | Field::ArpSha | Field::ArpTha => {
                        fmt_mac(*value as u64)
                    }
                    Field::NwSrc
                    | Field::NwDst
                    | Field::ArpSpa
                    | Field::ArpTpa
                    | Field::TunSrc
                    | Field::TunDst => core::net::Ipv4Addr::from(*value as u32).to_string(),
                    Field::Ipv6Src | Field::Ipv6Dst => {
                        core::net::Ipv6Addr::from(*value).to_string()
                    }
                    _ => format!("{value:#x}"),
                };
                if full {
                    write!(f, "set({}={v})", field.name())
                } else {
                    write!(f, "set({}={v}/{mask:#x})", field.name())
                }
            }
            DpAction::PushVlan { tpid, tci } => {
                if *tpid == 0x8100 {
                    write!(f, "push_vlan(vid={},pcp={})", tci & 0xfff, tci >> 13)
                } else {
                    write!(
                        f,
                        "push_vlan(tpid={tpid:#x},vid={},pcp={})",
                        tci & 0xfff,
                        tci >> 13
                    )
                }
            }
            DpAction::PopVlan => write!(f, "pop_vlan"),
            DpAction::Controller(c) => write!(
                f,
                "userspace(controller(reason={},max_len={},table={},cookie={:#x}))",
                c.action.reason.name(),
                c.action.max_len,
                c.table_id,
                c.cookie
            ),
            DpAction::SetVlanTci { tci, mask } => {
                write!(f, "set(vlan(tci={tci:#06x}/{mask:#06x}))")
            }
            DpAction::Ct {
                zone,
                commit,
                force,
                mark,
            } => {
                let mut parts = Vec::new();
                if *commit {
                    parts.push("commit".to_string());
                }
                if *force {
                    parts.push("force_commit".to_string());
                }
                if *zone != 0 {
                    parts.push(format!("zone={zone}"));
                }
                if let Some((v, m)) = mark {
                    if *m == u32::MAX {
                        parts.push(format!("mark={v:#x}"));
                    } else {
                        parts.push(format!("mark={v:#x}/{m:#x}"));
                    }
                }
                if parts.is_empty() {
                    write!(f, "ct")
                } else {
                    write!(f, "ct({})", parts.join(","))
                }
            }
            DpAction::CtClear => write!(f, "ct_clear"),
            DpAction::Recirc(id) => write!(f, "recirc({id:#x})"),
            DpAction::Drop(r) => write!(f, "drop({r})"),
        }
    }
}

/// Formats an action list the way `dpctl/dump-flows` does (`drop` when
/// empty).
pub fn format_dp_actions(actions: &[DpAction]) -> String {
    if actions.is_empty() {
        return "drop".to_string();
    }
    actions
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
