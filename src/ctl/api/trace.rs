//! `trace`: a packet's walk through the tables, as `ovs-appctl
//! ofproto/trace` shows it, following recirculations, with conntrack's
//! verdict (for a real frame) and what happens at each egress.

use super::{Api, Error};
use crate::conntrack::{CtInvalidReason, CtParams};
use crate::ctl::hex::hex_decode;
use crate::datapath::egress::{self, Egress, Fit};
use crate::datapath::{execute, DropReason};
use crate::flow::parse::parse_trace_flow;
use crate::flow::FlowKey;
use crate::ofproto::{trace::format_key, DpAction, Ports, Trace};
use crate::packet::{CtState, PacketBuf, PacketMeta};
use serde::Serialize;
use std::fmt::{self, Write};
use std::time::Instant;

/// What to trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceRequest {
    /// The packet as a flow (`in_port=p1,tcp,nw_src=...`), or only the
    /// input port when `packet` is given.
    pub flow: String,
    /// A real frame, hex.
    pub packet: Option<String>,
    /// ct_state to assume after each `ct` without a real frame (default
    /// `trk,new`).
    pub ct_next: Option<String>,
}

/// Conntrack's verdict on an invalid packet.
#[derive(Debug, Clone, Serialize)]
pub struct CtInvalid {
    /// Reason name.
    pub reason: &'static str,
    /// Details.
    pub detail: String,
    /// For checksum reasons: the checksum that would verify.
    pub expected: Option<u16>,
    /// For checksum reasons: the checksum in the packet.
    pub received: Option<u16>,
}

/// One pass through the tables.
#[derive(Debug, Clone, Serialize)]
pub struct TracePass {
    /// The flow key of this pass.
    pub flow: String,
    /// The datapath actions it produced.
    pub datapath_actions: String,
    /// Why the packet is dropped, if it is.
    pub drop_reason: Option<String>,
    /// Conntrack's ct_state, for a real frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct_state: Option<String>,
    /// Conntrack's reason when invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct_invalid: Option<CtInvalid>,
}

/// `trace`'s reply.
#[derive(Debug, Clone, Serialize)]
pub struct TraceReply {
    /// The passes, first to last recirculation.
    pub passes: Vec<TracePass>,
    /// The `ofproto/trace`-style text.
    #[serde(skip)]
    text: String,
}

impl fmt::Display for TraceReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn ct_state_names(bits: u8) -> String {
    let v: Vec<&str> = CtState::NAMES
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join("|")
}

fn parse_ct_next(s: Option<&str>) -> Result<u8, Error> {
    let Some(s) = s else {
        return Ok(CtState::TRK | CtState::NEW);
    };
    let mut bits = 0;
    for w in s.split([',', '|', '+']).filter(|w| !w.is_empty()) {
        bits |= CtState::NAMES
            .iter()
            .find(|(_, n)| *n == w)
            .map(|(b, _)| *b)
            .ok_or_else(|| Error::CtFlag(w.to_string()))?;
    }
    Ok(bits | CtState::TRK)
}

/// With a real packet, what the datapath would do at each egress: the
/// actions are applied to a copy, and each output is checked against the
/// port's MTU (the `mtu_exceeded` rule), so `trace --packet` shows the
/// drops that happen after the tables too.
fn egress_report(
    frame: &[u8],
    meta: &PacketMeta,
    key: &FlowKey,
    actions: &[DpAction],
    ports: &Ports,
    out: &mut String,
) {
    let mut p = PacketBuf::from_slice(frame);
    p.meta = meta.clone();
    for a in actions {
        match a {
            DpAction::SetField { field, value, mask } => {
                execute::set_field(&mut p, key, *field, *value, *mask);
            }
            DpAction::PushVlan { tpid, tci } => {
                execute::push_vlan(&mut p, *tpid, *tci);
            }
            DpAction::PopVlan if !execute::pop_vlan(&mut p) => {
                let _ = writeln!(
                    out,
                    "Egress: pop_vlan on an untagged frame: dropped (pop_vlan_untagged)"
                );
                return;
            }
            DpAction::SetVlanTci { tci, mask } => {
                execute::set_vlan_tci(&mut p, *tci, *mask);
            }
            DpAction::Output(no) => {
                let Some(info) = ports.get(*no) else { continue };
                // The datapath's own sizing, on a copy (each output is one).
                let mut copy = p.clone();
                match egress::prepare(&mut copy, &Egress::of_info(info)) {
                    Fit::TooBig {
                        counted,
                        report_mtu,
                    } => {
                        let _ = writeln!(
                            out,
                            "Egress port {} ({}): {counted} bytes count against MTU {}: dropped (mtu_exceeded); the sender is told the path MTU is {report_mtu}",
                            no, info.name, info.mtu
                        );
                    }
                    Fit::Fits { len } => {
                        let _ = writeln!(
                            out,
                            "Egress port {} ({}): {len} bytes on the wire, fits MTU {}",
                            no, info.name, info.mtu
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

/// A real frame to trace, with the metadata it arrives with.
struct Frame {
    bytes: Vec<u8>,
    meta: PacketMeta,
}

impl Api {
    /// Walks a packet through bridge `bridge`'s tables.
    pub fn trace(
        &self,
        bridge: &str,
        req: &TraceRequest,
        now: Instant,
    ) -> Result<TraceReply, Error> {
        self.with_bridge(bridge, |b| {
            let ports = b.of.ports();
            // With a real packet, conntrack is consulted (without changing
            // its state) at each ct, so the trace shows the verdict the
            // packet would really get. Without one, --ct-next says what to
            // assume.
            let (frame, key) = match &req.packet {
                Some(hex) => {
                    let bytes = hex_decode(hex)?;
                    let base = parse_trace_flow(&req.flow, &ports)?;
                    let mut meta = PacketMeta {
                        in_port: base.in_port(),
                        ..Default::default()
                    };
                    let mut k = FlowKey::default();
                    crate::flow::extract::extract(&bytes, &mut meta, &mut k).map_err(|e| {
                        Error::Unparsable {
                            error: e,
                            drop: DropReason::from_wire(e).name(),
                        }
                    })?;
                    (Some(Frame { bytes, meta }), k)
                }
                None => (None, parse_trace_flow(&req.flow, &ports)?),
            };
            let ct_bits = parse_ct_next(req.ct_next.as_deref())?;
            let w = Walk {
                bridge,
                b,
                ports: &ports,
                frame: frame.as_ref(),
                ct_bits,
                now,
            };
            Ok(w.run(key))
        })
    }
}

/// One trace in progress.
struct Walk<'a> {
    bridge: &'a str,
    b: &'a super::Bridge,
    ports: &'a Ports,
    frame: Option<&'a Frame>,
    ct_bits: u8,
    now: Instant,
}

impl Walk<'_> {
    /// A `ct` action: with a real frame, conntrack's verdict (its state
    /// untouched); without one, the assumed state. Returns the state, zone
    /// and mark the next pass starts with.
    fn conntrack(
        &self,
        key: &FlowKey,
        params: &CtParams,
        assumed: (u8, u16, u32),
        ct_invalid: &mut Option<CtInvalidReason>,
        pass: &mut TracePass,
        out: &mut String,
    ) -> (u8, u16, u32) {
        let z = params.zone;
        let Some(f) = self.frame else {
            return (assumed.0, z, assumed.2);
        };
        let mut m = f.meta.clone();
        m.ct_state = CtState(key.ct_state());
        m.ct_zone = key.ct_zone();
        let v = self.b.ct.peek(&f.bytes, key, &m, params, self.now);
        *ct_invalid = v.invalid.as_ref().map(|d| d.reason);
        let _ = write!(
            out,
            "Conntrack (zone {z}): ct_state={}",
            ct_state_names(v.state)
        );
        if let Some(d) = &v.invalid {
            let _ = write!(out, ", invalid: {d}");
            pass.ct_invalid = Some(CtInvalid {
                reason: d.reason.name(),
                detail: d.detail.to_string(),
                expected: d.expected,
                received: d.received,
            });
        }
        out.push('\n');
        pass.ct_state = Some(ct_state_names(v.state));
        (v.state, z, v.mark)
    }

    fn run(&self, mut key: FlowKey) -> TraceReply {
        let mut out = String::new();
        let mut passes = Vec::new();
        let mut ct_invalid: Option<CtInvalidReason> = None;
        for pass in 0..crate::datapath::MAX_PASSES {
            let (p, next) = self.pass(pass, &key, &mut ct_invalid, &mut out);
            passes.push(p);
            match next {
                Some((id, state, zone, mark)) => {
                    key.set_recirc_id(id);
                    key.set_ct_state(state);
                    key.set_ct_zone(zone);
                    key.set_ct_mark(mark);
                }
                None => break,
            }
        }
        TraceReply { passes, text: out }
    }

    /// One pass; returns it and, when it recirculates, the next pass's
    /// recirc id and conntrack fields.
    fn pass(
        &self,
        n: usize,
        key: &FlowKey,
        ct_invalid: &mut Option<CtInvalidReason>,
        out: &mut String,
    ) -> (TracePass, Option<(u32, u8, u16, u32)>) {
        let mut tr = Trace::default();
        let t = self.b.of.translate_traced(key, self.now, &mut tr);
        if n > 0 {
            let rule = "=".repeat(79);
            let _ = writeln!(
                out,
                "\n{rule}\nrecirc({:#x}) - resume conntrack with ct_state={}\n{rule}\n",
                key.recirc_id(),
                ct_state_names(key.ct_state())
            );
        }
        let flow = format_key(key, Some(self.ports));
        let _ = writeln!(out, "Flow: {flow}\n");
        let title = format!("bridge(\"{}\")", self.bridge);
        let _ = writeln!(out, "{title}\n{}", "-".repeat(title.len()));
        out.push_str(&tr.render_body(Some(self.ports)));
        out.push('\n');
        // A pipeline drop of a packet conntrack judged invalid is counted
        // under conntrack's reason, as the datapath does. An action that
        // stops the translation (double_vlan_push, ttl_exceeded...) leaves
        // its reason in the final Drop action rather than in `t.drop`: the
        // trace names it all the same.
        let stopped = match t.actions.last() {
            Some(DpAction::Drop(r)) => Some(*r),
            _ => None,
        };
        let drop = t
            .drop
            .or(stopped)
            .map(|x| DropReason::after_pipeline(x, *ct_invalid));
        tr.drop = drop.map(Into::into);
        out.push_str(&tr.render_result(Some(self.ports)));
        if let Some(f) = self.frame {
            egress_report(&f.bytes, &f.meta, key, &t.actions, self.ports, out);
        }
        let mut pass = TracePass {
            flow,
            datapath_actions: crate::ofproto::format_dp_actions(&t.actions),
            drop_reason: drop.map(|d| d.name()),
            ct_state: None,
            ct_invalid: None,
        };
        // Follow a recirculation like ofproto/trace does.
        let mut next = None;
        let mut ct = (self.ct_bits, 0, 0);
        for a in &t.actions {
            if let Some(params) = execute::ct_params(a) {
                ct = self.conntrack(key, &params, ct, ct_invalid, &mut pass, out);
            } else if let DpAction::Recirc(id) = a {
                next = Some(*id);
            }
        }
        let (state, zone, mark) = ct;
        (pass, next.map(|id| (id, state, zone, mark)))
    }
}
