//! Flow tables: flow-mods, dumps, and the datapath's view (megaflows,
//! drops).

use super::{Api, Error};
use crate::datapath::{DpFlowInfo, DpStats, DropReason};
use crate::flow::format::{format_actions, format_flow_stats, format_match, FlowStats};
use crate::flow::PortNames;
use crate::ofproto::{FlowDump, FlowFilter, FlowMod, FlowModSummary, Ports};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// One flow of `dump-flows`.
#[derive(Debug, Clone, Serialize)]
pub struct FlowEntry {
    /// Cookie, hex.
    pub cookie: String,
    /// Seconds since added.
    pub duration: f64,
    /// Table.
    pub table: u8,
    /// Packets matched.
    pub n_packets: u64,
    /// Bytes matched.
    pub n_bytes: u64,
    /// Idle timeout, seconds (0: none).
    pub idle_timeout: u16,
    /// Hard timeout, seconds (0: none).
    pub hard_timeout: u16,
    /// Seconds since last used.
    pub idle_age: u64,
    /// Seconds since added or modified.
    pub hard_age: u64,
    /// Priority.
    pub priority: u16,
    /// The match, ovs-ofctl syntax.
    #[serde(rename = "match")]
    pub matches: String,
    /// The actions, ovs-ofctl syntax.
    pub actions: String,
    /// The whole line as `ovs-ofctl dump-flows` prints it.
    #[serde(skip)]
    line: String,
}

/// `dump-flows`.
#[derive(Debug, Clone, Serialize)]
pub struct FlowsReply {
    /// The flows, in table then priority order.
    pub flows: Vec<FlowEntry>,
}

impl fmt::Display for FlowsReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.flows {
            writeln!(f, "{}", e.line)?;
        }
        Ok(())
    }
}

impl FlowsReply {
    /// The reply for `flows`, with port names when `names` is given.
    pub fn new(flows: &[FlowDump], names: Option<&dyn PortNames>) -> FlowsReply {
        // ovs-ofctl prints milliseconds.
        let ms = |d: Duration| Duration::from_millis(d.as_millis() as u64);
        let flows = flows
            .iter()
            .map(|f| {
                let st = FlowStats {
                    duration: ms(f.duration),
                    n_packets: f.n_packets,
                    n_bytes: f.n_bytes,
                    idle_age: ms(f.idle_age),
                    hard_age: Some(ms(f.hard_age)),
                };
                FlowEntry {
                    cookie: format!("{:#x}", f.spec.cookie),
                    duration: f.duration.as_secs_f64(),
                    table: f.spec.table,
                    n_packets: f.n_packets,
                    n_bytes: f.n_bytes,
                    idle_timeout: f.spec.idle_timeout,
                    hard_timeout: f.spec.hard_timeout,
                    idle_age: f.idle_age.as_secs(),
                    hard_age: f.hard_age.as_secs(),
                    priority: f.spec.priority,
                    matches: format_match(&f.spec.matches, crate::flow::DEFAULT_PRIORITY, names),
                    actions: format_actions(&f.spec.actions, names),
                    line: format_flow_stats(&f.spec, &st, names),
                }
            })
            .collect();
        FlowsReply { flows }
    }
}

/// What a batch of flow-mods changed.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(transparent)]
pub struct ModReply(pub FlowModSummary);

impl fmt::Display for ModReply {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

/// `dump-drops`: every drop reason with a count, with what it means.
#[derive(Debug, Clone, Serialize)]
pub struct DropsReply {
    /// Bridge.
    pub bridge: String,
    /// All drops.
    pub total: u64,
    /// By reason name.
    pub drops: BTreeMap<String, u64>,
    /// What each reason means.
    #[serde(skip)]
    why: BTreeMap<String, &'static str>,
}

impl fmt::Display for DropsReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "drops on {}:", self.bridge)?;
        let mut any = false;
        for (name, n) in self.drops.iter().filter(|(_, n)| **n > 0) {
            any = true;
            let why = self.why.get(name).copied().unwrap_or("");
            writeln!(f, "  {name:<34} {n:>10}  {why}")?;
        }
        if !any {
            writeln!(f, "  (none)")?;
        }
        Ok(())
    }
}

/// `dump-dp-flows`: the datapath's caches.
#[derive(Debug, Clone, Serialize)]
pub struct DpFlowsReply {
    /// Bridge.
    #[serde(skip)]
    pub bridge: String,
    /// Fast-path counters, summed over the datapath workers.
    pub stats: DpStats,
    /// Each datapath worker's counters, by worker index (Open vSwitch's
    /// `dpif-netdev/pmd-stats-show`).
    pub workers: Vec<DpStats>,
    /// The CPU each worker is pinned to, by worker index (`None`: not
    /// pinned; see `port::steering`).
    pub worker_cpus: Vec<Option<usize>>,
    /// Cached megaflows (every worker's cache).
    pub flows: Vec<DpFlowInfo>,
}

impl fmt::Display for DpFlowsReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "{}: packets:{} emc_hits:{} megaflow_hits:{} upcalls:{} revalidations:{} recirculations:{} megaflows:{}",
            self.bridge, s.packets, s.emc_hits, s.megaflow_hits, s.upcalls, s.revalidations, s.recirculations, s.megaflows
        )?;
        if self.workers.len() > 1 {
            for (i, s) in self.workers.iter().enumerate() {
                // Where Open vSwitch's pmd-stats-show says `core_id N`.
                let core = match self.worker_cpus.get(i).copied().flatten() {
                    Some(c) => format!(" (core {c})"),
                    None => String::new(),
                };
                writeln!(
                    f,
                    "  worker {i}{core}: packets:{} emc_hits:{} megaflow_hits:{} upcalls:{} megaflows:{}",
                    s.packets, s.emc_hits, s.megaflow_hits, s.upcalls, s.megaflows
                )?;
            }
        }
        for fl in &self.flows {
            let used = fl
                .used_secs
                .map_or("never".to_string(), |s| format!("{s:.3}s"));
            writeln!(
                f,
                "{}, packets:{}, bytes:{}, used:{used}, actions:{}",
                fl.matches, fl.packets, fl.bytes, fl.actions
            )?;
        }
        Ok(())
    }
}

impl Api {
    /// The bridge's ports as the tables know them (names for the flow
    /// syntax).
    pub fn ports(&self, bridge: &str) -> Result<Ports, Error> {
        self.with_bridge(bridge, |b| Ok(b.of.ports()))
    }

    /// Applies flow-mods as one atomic batch: all apply, or none does and
    /// the error names the first that could not. `source` names the file
    /// they came from, for the message.
    pub fn flow_mods(
        &self,
        bridge: &str,
        mods: &[FlowMod],
        source: Option<&str>,
        now: Instant,
    ) -> Result<ModReply, Error> {
        self.with_bridge(bridge, |b| {
            b.of.flow_mods(mods, now)
                .map(ModReply)
                .map_err(|err| Error::FlowMod {
                    source_name: source.map(str::to_string),
                    err,
                })
        })
    }

    /// The flows `filter` selects, with counters.
    pub fn dump_flows(
        &self,
        bridge: &str,
        filter: &FlowFilter,
        now: Instant,
    ) -> Result<Vec<FlowDump>, Error> {
        self.with_bridge(bridge, |b| Ok(b.of.dump_flows(filter, now)))
    }

    /// Drop counters by reason: the datapath's and the ports' own.
    pub fn dump_drops(&self, bridge: &str) -> Result<DropsReply, Error> {
        self.with_bridge(bridge, |b| {
            let (_, port_drops) = b.workers.stats();
            let mut drops = BTreeMap::new();
            let mut why = BTreeMap::new();
            let mut add = |r: DropReason, n: u64| {
                *drops.entry(r.name()).or_insert(0) += n;
                why.insert(r.name(), r.describe());
            };
            for (r, n) in b.drops.snapshot() {
                add(r, n);
            }
            for (p, n) in port_drops {
                add(DropReason::Port(p), n);
            }
            Ok(DropsReply {
                bridge: bridge.to_string(),
                total: drops.values().sum(),
                drops,
                why,
            })
        })
    }

    /// The datapath's cached megaflows and cache counters.
    pub fn dump_dp_flows(&self, bridge: &str) -> Result<DpFlowsReply, Error> {
        self.with_bridge(bridge, |b| {
            let flows = b.workers.dp_flows();
            let workers: Vec<DpStats> = b
                .workers
                .worker_stats()
                .into_iter()
                .map(|(s, _)| s)
                .collect();
            let steering = crate::port::steering::installed();
            let worker_cpus = (0..workers.len())
                .map(|i| steering.and_then(|s| s.cpu_of_worker(i)))
                .collect();
            Ok(DpFlowsReply {
                bridge: bridge.to_string(),
                stats: crate::datapath::workers::sum_stats(&workers),
                workers,
                worker_cpus,
                flows,
            })
        })
    }
}
