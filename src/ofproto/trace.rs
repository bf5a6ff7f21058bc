//! `vswitchctl trace`: a readable account of one translation, in the
//! layout of `ovs-appctl ofproto/trace`: each table and the rule that
//! matched (or "No match"), its actions, notes on what they did, then the
//! final flow, the megaflow and the datapath actions or drop reason.
//!
//! Events are recorded as data while translating and rendered afterwards,
//! so recording costs nothing when no trace is asked for.

use super::dpaction::{format_dp_actions, DpAction};
use super::rule::Rule;
use super::xlate_error::XlateError;
use crate::flow::format::{format_actions, format_match};
use crate::flow::{Action, Field, FlowKey, FlowMask, Match, PortNames};
use std::fmt::Write;

/// One step of a translation.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // built only when tracing
pub enum TraceEvent {
    /// A rule matched in `table`.
    Rule {
        /// Resubmit depth.
        depth: u32,
        /// Table.
        table: u8,
        /// The rule's match.
        matches: Match,
        /// Its priority.
        priority: u16,
        /// Its cookie.
        cookie: u64,
        /// Its actions.
        actions: Vec<Action>,
    },
    /// No rule matched in `table`.
    Miss {
        /// Resubmit depth.
        depth: u32,
        /// Table.
        table: u8,
    },
    /// What an action did.
    Note {
        /// Resubmit depth.
        depth: u32,
        /// Text.
        text: String,
    },
}

/// A recorded translation.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Steps, in order.
    pub events: Vec<TraceEvent>,
    /// The key after all actions.
    pub final_key: Option<FlowKey>,
    /// The megaflow the datapath would cache.
    pub megaflow: Option<Match>,
    /// The datapath actions.
    pub dp_actions: Vec<DpAction>,
    /// The drop reason when the packet goes nowhere.
    pub drop: Option<TraceDrop>,
}

/// The drop reason a trace prints: its stable name and a one-line
/// explanation. Translation fills it from its [`XlateError`]; a caller that
/// knows more (the datapath counts a pipeline drop of a packet conntrack
/// judged invalid under conntrack's reason) replaces it, so the trace names
/// the counter the packet really lands in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceDrop {
    /// Stable snake_case name, as `dump-drops` prints it.
    pub name: String,
    /// One-line explanation.
    pub describe: &'static str,
}

impl From<XlateError> for TraceDrop {
    fn from(e: XlateError) -> Self {
        TraceDrop {
            name: e.name().to_string(),
            describe: e.describe(),
        }
    }
}

impl Trace {
    pub(crate) fn note(&mut self, depth: u32, text: String) {
        self.events.push(TraceEvent::Note { depth, text });
    }

    pub(crate) fn table_miss(&mut self, depth: u32, table: u8) {
        self.events.push(TraceEvent::Miss { depth, table });
    }

    pub(crate) fn rule(&mut self, depth: u32, table: u8, r: &Rule) {
        self.events.push(TraceEvent::Rule {
            depth,
            table,
            matches: r.spec.matches,
            priority: r.spec.priority,
            cookie: r.spec.cookie,
            actions: r.spec.actions.clone(),
        });
    }

    pub(crate) fn finish(
        &mut self,
        initial: &FlowKey,
        key: &FlowKey,
        wc: &FlowMask,
        actions: &[DpAction],
        drop: Option<XlateError>,
    ) {
        self.final_key = Some(*key);
        self.megaflow = Some(Match {
            key: initial.masked(wc),
            mask: *wc,
        });
        self.dp_actions = actions.to_vec();
        self.drop = drop.map(TraceDrop::from);
    }

    /// Renders the tables part (without the "Flow:" header), indented like
    /// `ofproto/trace`.
    pub fn render_body(&self, names: Option<&dyn PortNames>) -> String {
        let mut s = String::new();
        for e in &self.events {
            match e {
                TraceEvent::Rule {
                    depth,
                    table,
                    matches,
                    priority,
                    cookie,
                    actions,
                } => {
                    let ind = "    ".repeat(*depth as usize);
                    let m = format_match(matches, crate::flow::DEFAULT_PRIORITY, names);
                    let m = if m.is_empty() {
                        String::new()
                    } else {
                        format!("{m}, ")
                    };
                    let _ = write!(s, "{ind}{table:2}. {m}priority {priority}");
                    if *cookie != 0 {
                        let _ = write!(s, ", cookie {cookie:#x}");
                    }
                    s.push('\n');
                    let acts = format_actions(actions, names);
                    for a in split_top_level(&acts) {
                        let _ = writeln!(s, "{ind}    {a}");
                    }
                }
                TraceEvent::Miss { depth, table } => {
                    let ind = "    ".repeat(*depth as usize);
                    let _ = writeln!(s, "{ind}{table:2}. No match.");
                    let _ = writeln!(s, "{ind}    drop");
                }
                TraceEvent::Note { depth, text } => {
                    let ind = "    ".repeat(*depth as usize);
                    let _ = writeln!(s, "{ind}     -> {text}");
                }
            }
        }
        s
    }

    /// Renders the final part: final flow, megaflow, datapath actions.
    pub fn render_result(&self, names: Option<&dyn PortNames>) -> String {
        let mut s = String::new();
        if let Some(k) = &self.final_key {
            let _ = writeln!(s, "Final flow: {}", format_key(k, names));
        }
        if let Some(m) = &self.megaflow {
            let mut txt = format!("recirc_id={:#x},", m.key.recirc_id());
            txt.push_str(&format_match(m, crate::flow::DEFAULT_PRIORITY, names));
            let _ = writeln!(s, "Megaflow: {}", txt.trim_end_matches(','));
        }
        let _ = writeln!(
            s,
            "Datapath actions: {}",
            format_dp_actions(&self.dp_actions)
        );
        if let Some(d) = &self.drop {
            let _ = writeln!(s, "Drop reason: {} ({})", d.name, d.describe);
        }
        s
    }
}

/// Splits an action list at top-level commas (not inside parentheses).
fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(core::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The fields of a packet key that describe it, as an exact match.
pub fn key_to_match(k: &FlowKey) -> Match {
    let mut m = Match::default();
    let mut exact = |f: Field| {
        let v = f.get(k);
        m.set_exact(f, v);
    };
    exact(Field::InPort);
    exact(Field::VlanTci);
    exact(Field::DlSrc);
    exact(Field::DlDst);
    exact(Field::DlType);
    if k.tun_src() != 0 || k.tun_dst() != 0 || k.tun_id() != 0 {
        exact(Field::TunId);
        exact(Field::TunSrc);
        exact(Field::TunDst);
    }
    for n in 0..8u8 {
        if k.tun_metadata_present() & (1 << n) != 0 {
            exact(Field::TunMetadata(n));
        }
    }
    if k.metadata() != 0 {
        exact(Field::Metadata);
    }
    for n in 0..8u8 {
        if k.reg(usize::from(n)) != 0 {
            exact(Field::Reg(n));
        }
    }
    if k.ct_state() != 0 {
        exact(Field::CtState);
        exact(Field::CtZone);
        exact(Field::CtMark);
    }
    match k.dl_type() {
        0x0800 | 0x86dd => {
            if k.is_ipv4() {
                exact(Field::NwSrc);
                exact(Field::NwDst);
            } else {
                exact(Field::Ipv6Src);
                exact(Field::Ipv6Dst);
            }
            exact(Field::NwProto);
            exact(Field::NwTos);
            exact(Field::NwTtl);
            match k.nw_proto() {
                6 | 17 | 132 => {
                    exact(Field::TpSrc);
                    exact(Field::TpDst);
                    if k.nw_proto() == 6 {
                        exact(Field::TcpFlags);
                    }
                }
                1 | 58 => {
                    exact(Field::IcmpType);
                    exact(Field::IcmpCode);
                }
                _ => {}
            }
        }
        0x0806 => {
            exact(Field::ArpOp);
            exact(Field::ArpSpa);
            exact(Field::ArpTpa);
            exact(Field::ArpSha);
            exact(Field::ArpTha);
        }
        _ => {}
    }
    m
}

/// A packet key as text, for "Flow:" / "Final flow:" lines.
pub fn format_key(k: &FlowKey, names: Option<&dyn PortNames>) -> String {
    let mut s = String::new();
    if k.recirc_id() != 0 {
        let _ = write!(s, "recirc_id={:#x},", k.recirc_id());
    }
    s.push_str(&format_match(
        &key_to_match(k),
        crate::flow::DEFAULT_PRIORITY,
        names,
    ));
    s
}
