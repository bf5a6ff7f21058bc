//! The end-of-run figures: one struct, printed as text or as JSON.
//!
//! Rates are over the sending period (first to last send call) for both
//! sides, so "received pps" is what got through while the sender offered
//! "sent pps". Bit rates count each frame with its 4-byte FCS (`l2`), and
//! on the wire (`wire`) also the 8-byte preamble and 12-byte inter-frame
//! gap an Ethernet link spends on it. `tx_cpu` and `rx_cpu` are the share
//! of one core the sending and receiving threads used: near 1.0 the
//! generator itself was the limit, not the thing measured. `machine` is
//! the CPU use of the whole machine over the run (softirq work, which
//! carries frames across veths and TAPs, is charged to no thread): near
//! 1.0 everything, switch and generator alike, was short of CPU.

use super::account::Account;
use super::frame::L4;
use serde::Serialize;

/// Preamble, start delimiter and inter-frame gap, per frame on the wire.
pub const WIRE_OVERHEAD: u64 = 20;

/// Counts and rates of one direction.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Side {
    /// Frames.
    pub packets: u64,
    /// Bytes, with FCS.
    pub bytes: u64,
    /// Frames per second over the sending period.
    pub pps: f64,
    /// Gbit/s of frames with FCS.
    pub gbps_l2: f64,
    /// Gbit/s on an Ethernet wire (frames + 20 bytes each).
    pub gbps_wire: f64,
}

impl Side {
    /// Rates of `packets`/`bytes` over `secs`.
    pub fn new(packets: u64, bytes: u64, secs: f64) -> Side {
        let s = secs.max(1e-9);
        Side {
            packets,
            bytes,
            pps: packets as f64 / s,
            gbps_l2: bytes as f64 * 8.0 / s / 1e9,
            gbps_wire: (bytes + WIRE_OVERHEAD * packets) as f64 * 8.0 / s / 1e9,
        }
    }
}

/// One-way latency percentiles, nanoseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Smallest.
    pub min: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// What was received and what it says.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Received {
    /// Our frames that arrived.
    #[serde(flatten)]
    pub side: Side,
    /// Sent minus received.
    pub lost: u64,
    /// `lost / sent`.
    pub loss_ratio: f64,
    /// Frames that arrived after a later frame of their flow.
    pub reordered: u64,
    /// Frames on the receiving interface that were not ours.
    pub foreign: u64,
    /// Latency of our frames (None when none arrived).
    pub latency_ns: Option<Latency>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// `afpacket`, `geneve` or `self-test`.
    pub mode: String,
    /// Where frames were sent (an interface, or the Geneve remote).
    pub tx: String,
    /// Where frames were received.
    pub rx: Option<String>,
    /// 4 or 6.
    pub ip_version: u8,
    /// udp or tcp.
    pub l4: L4,
    /// Distinct flows.
    pub flows: u32,
    /// Frame sizes with FCS (one, or the IMIX pattern).
    pub frame_sizes: Vec<u16>,
    /// Offered rate (None: as fast as possible).
    pub rate_pps: Option<u64>,
    /// Sending period, seconds.
    pub duration_s: f64,
    /// What the kernel took from us.
    pub sent: Side,
    /// Send calls that found the socket full (the sender waited).
    pub tx_full: u64,
    /// What arrived (None without a receiver).
    pub received: Option<Received>,
    /// Share of a core the sending thread used.
    pub tx_cpu: f64,
    /// Share of a core the receiving thread used.
    pub rx_cpu: Option<f64>,
    /// The whole machine during the run (all processes, all CPUs).
    pub machine: Machine,
}

/// The whole machine's CPU use during a run: frames crossing veths and
/// TAPs are delivered in softirq context, which no thread is charged for,
/// and on a small machine the switch and the generator share the cores.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Machine {
    /// CPUs.
    pub cpus: usize,
    /// Busy share of all CPUs together (1.0: all busy all the time).
    pub busy: f64,
    /// Softirq share of all CPUs together.
    pub softirq: f64,
}

impl Received {
    /// The figures of `acc` against `sent` frames over `secs`.
    pub fn new(acc: &Account, sent: u64, secs: f64) -> Received {
        let lost = acc.lost(sent);
        let h = &acc.latency;
        let latency_ns = match (h.min(), h.max(), h.mean()) {
            (Some(min), Some(max), Some(mean)) => Some(Latency {
                p50: h.quantile(0.50).unwrap_or(0),
                p99: h.quantile(0.99).unwrap_or(0),
                p999: h.quantile(0.999).unwrap_or(0),
                min,
                max,
                mean,
            }),
            _ => None,
        };
        Received {
            side: Side::new(acc.packets, acc.bytes, secs),
            lost,
            loss_ratio: if sent == 0 {
                0.0
            } else {
                lost as f64 / sent as f64
            },
            reordered: acc.reordered,
            foreign: acc.foreign,
            latency_ns,
        }
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl Report {
    /// The report for people.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} {} -> {}: IPv{} {} {} flow(s), frames {:?} B (with FCS), rate {}, {:.2} s\n",
            self.mode,
            self.tx,
            self.rx.as_deref().unwrap_or("(no receiver)"),
            self.ip_version,
            match self.l4 {
                L4::Udp => "UDP",
                L4::Tcp => "TCP",
            },
            self.flows,
            self.frame_sizes,
            self.rate_pps
                .map_or("as fast as possible".to_string(), |r| format!("{r} pps")),
            self.duration_s,
        );
        s += &format!(
            "  sent     {:>12} pkts {:>12.0} pps {:>7.3} Gbit/s L2 {:>7.3} Gbit/s wire (socket full {} times; tx thread {:.0}% of a core)\n",
            self.sent.packets,
            self.sent.pps,
            self.sent.gbps_l2,
            self.sent.gbps_wire,
            self.tx_full,
            self.tx_cpu * 100.0
        );
        if let Some(r) = &self.received {
            s += &format!(
                "  received {:>12} pkts {:>12.0} pps {:>7.3} Gbit/s L2 {:>7.3} Gbit/s wire (rx thread {:.0}% of a core)\n",
                r.side.packets,
                r.side.pps,
                r.side.gbps_l2,
                r.side.gbps_wire,
                self.rx_cpu.unwrap_or(0.0) * 100.0
            );
            s += &format!(
                "  lost {} ({:.4}%), reordered {}, foreign {}\n",
                r.lost,
                r.loss_ratio * 100.0,
                r.reordered,
                r.foreign
            );
            if let Some(l) = &r.latency_ns {
                s += &format!(
                    "  latency us: p50 {:.1} p99 {:.1} p99.9 {:.1} min {:.1} max {:.1} mean {:.1}\n",
                    us(l.p50),
                    us(l.p99),
                    us(l.p999),
                    us(l.min),
                    us(l.max),
                    l.mean / 1000.0
                );
            }
        }
        s += &format!(
            "  machine  {} CPUs {:.0}% busy ({:.0}% softirq)\n",
            self.machine.cpus,
            self.machine.busy * 100.0,
            self.machine.softirq * 100.0
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pktgen::frame::Stamp;

    fn sample() -> Report {
        let mut acc = Account::new(4);
        for i in 0..90u32 {
            acc.stamped(
                Stamp {
                    seq: i,
                    time_ns: 0,
                    flow: i % 4,
                },
                60,
                u64::from(10_000 + i),
            );
        }
        Report {
            mode: "afpacket".into(),
            tx: "veth0".into(),
            rx: Some("veth1".into()),
            ip_version: 4,
            l4: L4::Udp,
            flows: 4,
            frame_sizes: vec![64],
            rate_pps: Some(100),
            duration_s: 1.0,
            sent: Side::new(100, 6400, 1.0),
            tx_full: 0,
            received: Some(Received::new(&acc, 100, 1.0)),
            tx_cpu: 0.1,
            rx_cpu: Some(0.05),
            machine: Machine {
                cpus: 2,
                busy: 0.5,
                softirq: 0.1,
            },
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let v = serde_json::to_value(sample()).unwrap();
        for k in [
            "mode",
            "tx",
            "rx",
            "ip_version",
            "l4",
            "flows",
            "frame_sizes",
            "rate_pps",
            "duration_s",
            "sent",
            "tx_full",
            "received",
            "tx_cpu",
            "rx_cpu",
            "machine",
        ] {
            assert!(v.get(k).is_some(), "missing {k} in {v}");
        }
        assert_eq!(v["l4"], "udp");
        assert_eq!(v["sent"]["packets"], 100);
        assert_eq!(v["sent"]["pps"], 100.0);
        // 6400 bytes: 51.2 kbit/s of frames; plus 20 B each on the wire.
        assert_eq!(v["sent"]["gbps_l2"], 6400.0 * 8.0 / 1e9);
        assert_eq!(v["sent"]["gbps_wire"], 8400.0 * 8.0 / 1e9);
        let r = &v["received"];
        assert_eq!(r["packets"], 90);
        assert_eq!(r["bytes"], 90 * 64);
        assert_eq!(r["lost"], 10);
        assert_eq!(r["loss_ratio"], 0.1);
        assert_eq!(r["reordered"], 0);
        assert_eq!(r["foreign"], 0);
        let l = &r["latency_ns"];
        assert_eq!(l["min"], 10_000);
        assert_eq!(l["max"], 10_089);
        for k in ["p50", "p99", "p999", "mean"] {
            assert!(l[k].is_number(), "{k}");
        }
        assert!(l["p50"].as_u64() <= l["p99"].as_u64());
        assert_eq!(v["machine"]["cpus"], 2);
        assert_eq!(v["machine"]["busy"], 0.5);
    }

    #[test]
    fn text_names_every_figure() {
        let t = sample().text();
        for w in [
            "sent",
            "received",
            "lost 10",
            "p99",
            "Gbit/s wire",
            "2 CPUs 50% busy",
        ] {
            assert!(t.contains(w), "{w} in {t}");
        }
        let mut no_rx = sample();
        no_rx.received = None;
        no_rx.rx = None;
        assert!(no_rx.text().contains("(no receiver)"));
    }
}
