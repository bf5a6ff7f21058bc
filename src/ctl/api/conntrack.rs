//! The connection tracker's policy, limits, timeouts, table and counters.

use super::{Api, Error};
use crate::conntrack::{
    ChecksumPolicy, ConnInfo, ConnTracker, CtStats, IpfSettings, IpfStatus, TimeoutKind,
};
use serde::Serialize;
use std::fmt;
use std::time::Instant;

/// Conntrack policy; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CtSettings {
    /// Checksum validation (`validate` or `skip`).
    pub checksum: Option<ChecksumPolicy>,
    /// Accept TCP segments outside the window (Linux `tcp_be_liberal`).
    pub tcp_liberal: Option<bool>,
    /// Check TCP sequence numbers at all.
    pub tcp_seq_check: Option<bool>,
    /// Global connection limit.
    pub max_conns: Option<u32>,
}

impl CtSettings {
    /// Applies the settings that are set.
    pub(super) fn apply(&self, ct: &ConnTracker) {
        if let Some(p) = self.checksum {
            ct.set_checksum_policy(p);
        }
        if let Some(on) = self.tcp_liberal {
            ct.set_tcp_liberal(on);
        }
        if let Some(on) = self.tcp_seq_check {
            ct.set_tcp_seq_check(on);
        }
        if let Some(n) = self.max_conns {
            ct.set_max_conns(n);
        }
    }
}

/// One connection limit: the default (`zone: None`) or a zone's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtLimit {
    /// The zone, or every zone without its own limit.
    pub zone: Option<u16>,
    /// The limit; `None` is unlimited (default) or "use the default" (zone).
    pub limit: Option<u32>,
}

/// Timeouts in seconds for a zone, or for every zone without its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtTimeouts {
    /// The zone.
    pub zone: Option<u16>,
    /// Which timeout, how many seconds (at least 1).
    pub set: Vec<(TimeoutKind, u32)>,
}

/// The policy in force after `set-ct`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReply {
    /// `validate` or `skip`.
    pub checksum: &'static str,
    /// Liberal TCP window checks.
    pub tcp_liberal: bool,
    /// TCP sequence checks.
    pub tcp_seq_check: bool,
    /// Global limit.
    pub max_conns: u32,
}

impl fmt::Display for PolicyReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checksum={} tcp_liberal={} tcp_seq_check={} max_conns={}",
            self.checksum, self.tcp_liberal, self.tcp_seq_check, self.max_conns
        )
    }
}

/// `dump-conntrack`, in the `ovs-appctl dpctl/dump-conntrack` layout.
#[derive(Debug, Clone, Serialize)]
pub struct ConnsReply {
    /// The connections.
    pub connections: Vec<ConnInfo>,
}

impl fmt::Display for ConnsReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.connections {
            writeln!(f, "{}", c.format_ovs())?;
        }
        Ok(())
    }
}

/// `flush-conntrack`.
#[derive(Debug, Clone, Serialize)]
pub struct FlushReply {
    /// Connections forgotten.
    pub flushed: usize,
}

impl fmt::Display for FlushReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} connections flushed", self.flushed)
    }
}

/// `ct-stats`.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct StatsReply(pub CtStats);

impl fmt::Display for StatsReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = &self.0;
        writeln!(f, "Connections: {} (max {})", st.entries, st.max_conns)?;
        writeln!(
            f,
            "Policy: checksum={} tcp_liberal={} tcp_seq_check={}",
            st.checksum, st.tcp_liberal, st.tcp_seq_check
        )?;
        for z in &st.zones {
            let lim = z.limit.map_or("none".to_string(), |l| l.to_string());
            writeln!(
                f,
                "  zone {}: total={} tcp={} udp={} icmp={} other={} limit={lim}",
                z.zone, z.total, z.tcp, z.udp, z.icmp, z.other
            )?;
        }
        writeln!(f, "Committed: {}  Expired: {}", st.committed, st.expired)?;
        writeln!(f, "Invalid verdicts:")?;
        let mut any = false;
        for (r, n) in st.invalid.iter().filter(|(_, n)| **n > 0) {
            any = true;
            writeln!(f, "  {r:<24} {n:>10}")?;
        }
        if !any {
            writeln!(f, "  (none)")?;
        }
        Ok(())
    }
}

/// `ipf-status`: fragment reassembly settings, occupancy and counters
/// (`ovs-appctl dpctl/ipf-get-status`).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct IpfReply(pub IpfStatus);

impl fmt::Display for IpfReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0;
        writeln!(f, "Fragment reassembly:")?;
        writeln!(
            f,
            "  v4: enabled={} min_frag_size={}",
            s.enabled_v4, s.min_frag_size_v4
        )?;
        writeln!(
            f,
            "  v6: enabled={} min_frag_size={}",
            s.enabled_v6, s.min_frag_size_v6
        )?;
        writeln!(
            f,
            "  max_frags={} held={} datagrams pending={}",
            s.max_frags, s.frags_held, s.datagrams_pending
        )?;
        for (name, c) in [("v4", &s.v4), ("v6", &s.v6)] {
            writeln!(
                f,
                "  {name}: accepted={} reassembled={} released={} expired={} too_small={} too_big={} overlap={} no_room={} malformed={}",
                c.accepted, c.reassembled, c.released, c.expired, c.too_small, c.too_big, c.overlap, c.no_room, c.malformed
            )?;
        }
        Ok(())
    }
}

impl Api {
    /// Fragment reassembly status.
    pub fn ipf_status(&self, bridge: &str) -> Result<IpfReply, Error> {
        self.with_bridge(bridge, |b| Ok(IpfReply(b.ct.ipf_status())))
    }

    /// Changes fragment reassembly settings, all or nothing.
    pub fn ipf_set(&self, bridge: &str, s: &IpfSettings) -> Result<IpfReply, Error> {
        self.with_bridge(bridge, |b| {
            b.ct.ipf_set(s)?;
            Ok(IpfReply(b.ct.ipf_status()))
        })
    }

    /// Tracked connections, all zones or one.
    pub fn dump_conntrack(
        &self,
        bridge: &str,
        zone: Option<u16>,
        now: Instant,
    ) -> Result<ConnsReply, Error> {
        self.with_bridge(bridge, |b| {
            Ok(ConnsReply {
                connections: b.ct.dump(zone, now),
            })
        })
    }

    /// Forgets tracked connections, all zones or one.
    pub fn flush_conntrack(&self, bridge: &str, zone: Option<u16>) -> Result<FlushReply, Error> {
        self.with_bridge(bridge, |b| {
            Ok(FlushReply {
                flushed: b.ct.flush(zone),
            })
        })
    }

    /// Conntrack counters.
    pub fn ct_stats(&self, bridge: &str) -> Result<StatsReply, Error> {
        self.with_bridge(bridge, |b| Ok(StatsReply(b.ct.stats())))
    }

    /// Changes conntrack policy.
    pub fn set_ct(&self, bridge: &str, s: &CtSettings) -> Result<PolicyReply, Error> {
        self.with_bridge(bridge, |b| {
            s.apply(&b.ct);
            let st = b.ct.stats();
            Ok(PolicyReply {
                checksum: st.checksum,
                tcp_liberal: st.tcp_liberal,
                tcp_seq_check: st.tcp_seq_check,
                max_conns: st.max_conns,
            })
        })
    }

    /// Sets connection limits.
    pub fn ct_set_limits(&self, bridge: &str, limits: &[CtLimit]) -> Result<(), Error> {
        self.with_bridge(bridge, |b| {
            for l in limits {
                b.ct.set_limit(l.zone, l.limit);
            }
            Ok(())
        })
    }

    /// Sets timeouts.
    pub fn ct_set_timeouts(&self, bridge: &str, t: &CtTimeouts) -> Result<(), Error> {
        self.with_bridge(bridge, |b| {
            for &(kind, secs) in &t.set {
                b.ct.set_timeout(t.zone, kind, secs);
            }
            Ok(())
        })
    }
}
