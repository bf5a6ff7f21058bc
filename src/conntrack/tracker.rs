//! [`ConnTracker`]: the shards, the configuration and the per-packet path.
//!
//! Per packet: parse (bounds-checked, IP-length-delimited, checksums per
//! policy), hash the canonical key, pick one of [`SHARDS`] shards, then
//! one of two paths:
//!
//! * **Established** ([`ConnTracker::process`]'s first try): the shard's
//!   index is searched without its lock (see `table`'s module docs), the
//!   entry's own slot lock is taken, the protocol's state
//!   machine runs on a copy of its state, and the copy is written back if
//!   nothing structural follows from it: the expiry is only extended or
//!   kept (shortening moves the entry in the timer wheel), the packet is
//!   no SYN or RST (those read and write the ignored-SYN side table), no
//!   reopen, no `force`. Two workers meet only on the slot of a
//!   connection they both carry.
//! * **Everything else** under the shard lock, as before: a miss (looked
//!   up again under the lock, so a connection is never inserted twice),
//!   an expired entry, a commit, a removal, a shortened expiry, SYNs and
//!   RSTs. It takes the entry's slot lock after the shard's, never the
//!   other way round.
//!
//! Limits and counters are atomics shared by all shards; per-zone timeout
//! overrides are an `ArcSwap`ed map behind a bitmap, so zones without
//! overrides never touch it.

use core::hash::BuildHasher;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::info::{ConnInfo, CtStats, ZoneStats};
use super::ipf::{FragOutcome, FragVerdict, Handled, Ipf, IpfError, IpfSettings, IpfStatus};
use super::parse::{self, Parsed, L4};
use super::snapshot::{self, SnapshotError};
use super::table::{
    self, Conn, ConnKey, IcmpState, L4State, OtherState, Shard, View, MAX_TIMEOUT_MS,
};
use super::tcp::{self, IgnoredSyn, TcpPolicy, Update};
use super::{
    ChecksumPolicy, CtConfig, CtInvalidDetail, CtInvalidReason, CtParams, CtVerdict, TimeoutKind,
};
use crate::flow::FlowKey;
use crate::packet::{CsumStatus, CtState, PacketBuf, PacketMeta};
use crate::wire::tcp::{RST as TCP_RST, SYN as TCP_SYN};

/// Number of shards (each its own lock, table and timer wheel).
pub const SHARDS: usize = 64;
const ZONES: usize = 1 << 16;
const N_REASONS: usize = CtInvalidReason::ALL.len();
const N_TMO: usize = TimeoutKind::ALL.len();

/// One shard: the view packets read without a lock, and the lock for
/// structural changes (see `table`'s module docs); on cache lines of its
/// own.
#[repr(align(128))]
struct Padded {
    view: Arc<View>,
    lock: Mutex<Shard>,
}

/// Per-zone timeout overrides (0 = inherit the default).
type ZoneTimeouts = HashMap<u16, [u32; N_TMO]>;

/// What [`ConnTracker::import`] did with a snapshot's entries.
/// A caller's memo of the tracker's clock ([`ConnTracker::clock_ms`]) for
/// the `Instant` it last asked about. A datapath stamps a whole batch with
/// one `Instant`, so the conversion (about 45 instructions, 2% of the
/// stateful firewall's per-packet cost) is done once per batch instead of
/// per packet. Keep one per tracker: the value depends on the tracker's
/// epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct CtClock {
    at: Option<Instant>,
    ms: u64,
}

impl CtClock {
    /// `ct`'s clock at `now`, converted only when `now` changed.
    #[inline]
    pub fn ms(&mut self, ct: &ConnTracker, now: Instant) -> u64 {
        if self.at != Some(now) {
            self.ms = ct.clock_ms(now);
            self.at = Some(now);
        }
        self.ms
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Added to the table.
    pub imported: u64,
    /// Already tracked here: kept as they were.
    pub present: u64,
    /// Over `max_conns` or a zone limit here: left out.
    pub refused: u64,
}

/// The connection tracker of one bridge (see the module docs of
/// [`crate::conntrack`]).
pub struct ConnTracker {
    shards: Box<[Padded]>,
    hasher: foldhash::fast::RandomState,
    /// Milliseconds are counted from here: the first `now` seen, minus an
    /// hour of slack for callers whose clocks run slightly behind.
    epoch: OnceLock<Instant>,

    checksum: AtomicU8,
    tcp_liberal: AtomicBool,
    tcp_seq_check: AtomicBool,

    max_conns: AtomicU32,
    n_conns: AtomicU32,
    /// Per-zone limit, encoded 0 = none of its own, else limit + 1.
    zone_limit: Box<[AtomicU32]>,
    /// Default zone limit, same encoding.
    default_zone_limit: AtomicU32,
    zone_count: Box<[AtomicU32]>,

    default_tmo: [AtomicU32; N_TMO],
    /// Bit z set: zone z has an entry in `zone_tmo`.
    zone_tmo_bits: Box<[AtomicU64]>,
    zone_tmo: ArcSwap<ZoneTimeouts>,

    invalid: [AtomicU64; N_REASONS],
    committed: AtomicU64,
    expired: AtomicU64,

    /// Fragment reassembly ahead of tracking.
    ipf: Ipf,
}

/// Outcome of running a packet against an existing entry.
enum Step {
    /// Final state bits.
    Done(u8),
    Invalid(CtInvalidDetail),
    /// The entry is gone (reopen / force): treat the packet as new.
    New,
}

/// A parsed packet as the established path needs it.
struct Pkt<'a> {
    hash: u64,
    /// The canonical key, and whether the packet's is its reverse.
    ckey: &'a ConnKey,
    swapped: bool,
    parsed: &'a Parsed,
    /// The state bits of a packet already tracked in this zone.
    tracked: Option<u8>,
    now_ms: u64,
}

/// Outcome of a protocol's state machine on an entry's state.
enum L4Step {
    /// State bits, and whether the timeout is re-armed.
    Done {
        bits: u8,
        refresh: bool,
    },
    /// A new connection on the same tuple (TCP): the entry must go.
    Reopen,
    Invalid(CtInvalidDetail),
}

/// A tracker's settings as set, from [`ConnTracker::policy`]: what a
/// restart must restore (the connections themselves are not kept).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CtPolicy {
    /// Checksum validation.
    pub checksum: ChecksumPolicy,
    /// Liberal TCP window checks.
    pub tcp_liberal: bool,
    /// TCP sequence checks.
    pub tcp_seq_check: bool,
    /// Global connection limit.
    pub max_conns: u32,
    /// Limit of zones without their own (`None`: unlimited).
    pub default_limit: Option<u32>,
    /// Zones with their own limit.
    pub zone_limits: Vec<(u16, u32)>,
    /// Timeouts of zones without their own, seconds.
    pub default_timeouts: Vec<(TimeoutKind, u32)>,
    /// Zones' own timeouts, seconds.
    pub zone_timeouts: Vec<(u16, Vec<(TimeoutKind, u32)>)>,
}

impl Default for ConnTracker {
    fn default() -> Self {
        ConnTracker::new(CtConfig::default())
    }
}

impl ConnTracker {
    /// A tracker with `cfg`; timeouts start at OVS's defaults.
    pub fn new(cfg: CtConfig) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                let shard = Shard::new();
                Padded {
                    view: Arc::clone(shard.view()),
                    lock: Mutex::new(shard),
                }
            })
            .collect();
        let zeros = |n: usize| (0..n).map(|_| AtomicU32::new(0)).collect::<Box<[_]>>();
        let ct = ConnTracker {
            shards,
            hasher: foldhash::fast::RandomState::default(),
            epoch: OnceLock::new(),
            checksum: AtomicU8::new(0),
            tcp_liberal: AtomicBool::new(cfg.tcp_liberal),
            tcp_seq_check: AtomicBool::new(cfg.tcp_seq_check),
            max_conns: AtomicU32::new(cfg.max_conns),
            n_conns: AtomicU32::new(0),
            zone_limit: zeros(ZONES),
            default_zone_limit: AtomicU32::new(0),
            zone_count: zeros(ZONES),
            default_tmo: TimeoutKind::ALL.map(|k| AtomicU32::new(k.default_secs())),
            zone_tmo_bits: (0..ZONES / 64).map(|_| AtomicU64::new(0)).collect(),
            zone_tmo: ArcSwap::from_pointee(HashMap::new()),
            invalid: [0; N_REASONS].map(AtomicU64::new),
            committed: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            ipf: Ipf::default(),
        };
        ct.set_checksum_policy(cfg.checksum);
        ct
    }

    // ---- configuration -------------------------------------------------

    /// `ct_checksum=validate|skip`.
    pub fn set_checksum_policy(&self, p: ChecksumPolicy) {
        self.checksum.store(p as u8, Relaxed);
    }

    /// The checksum policy in force.
    pub fn checksum_policy(&self) -> ChecksumPolicy {
        if self.checksum.load(Relaxed) == ChecksumPolicy::Skip as u8 {
            ChecksumPolicy::Skip
        } else {
            ChecksumPolicy::Validate
        }
    }

    /// Linux-style `be_liberal`: only out-of-window RSTs are invalid.
    pub fn set_tcp_liberal(&self, on: bool) {
        self.tcp_liberal.store(on, Relaxed);
    }

    /// TCP sequence checking on/off (OVS `ct-enable-tcp-seq-chk`).
    pub fn set_tcp_seq_check(&self, on: bool) {
        self.tcp_seq_check.store(on, Relaxed);
    }

    /// Global connection limit (OVS `ct-set-maxconns`).
    pub fn set_max_conns(&self, n: u32) {
        self.max_conns.store(n, Relaxed);
    }

    /// Zone limit: `zone = Some(z)` sets zone z's own limit (`None` removes
    /// it, so the default applies again); `zone = None` sets the default
    /// for zones without their own (`None`: no default). `Some(0)` admits
    /// no new connection. Existing connections are never evicted.
    pub fn set_limit(&self, zone: Option<u16>, limit: Option<u32>) {
        let enc = limit.map_or(0, |l| l.saturating_add(1));
        match zone {
            Some(z) => {
                if let Some(a) = self.zone_limit.get(usize::from(z)) {
                    a.store(enc, Relaxed);
                }
            }
            None => self.default_zone_limit.store(enc, Relaxed),
        }
    }

    /// The limit that applies to `zone`, if any.
    pub fn zone_limit(&self, zone: u16) -> Option<u32> {
        let own = self
            .zone_limit
            .get(usize::from(zone))
            .map_or(0, |a| a.load(Relaxed));
        let enc = if own != 0 {
            own
        } else {
            self.default_zone_limit.load(Relaxed)
        };
        enc.checked_sub(1)
    }

    /// Sets one timeout, for `zone` or (None) the default of every zone
    /// without its own value; `secs = 0` for a zone drops its own value.
    /// Applies to each connection at its next packet, as in OVS. A timeout
    /// longer than 24.8 days (2^31 ms) acts as 24.8 days.
    pub fn set_timeout(&self, zone: Option<u16>, which: TimeoutKind, secs: u32) {
        match zone {
            None => self.default_tmo[which as usize].store(secs, Relaxed),
            Some(z) => {
                self.zone_tmo.rcu(|m| {
                    let mut m = ZoneTimeouts::clone(m);
                    let e = m.entry(z).or_insert([0; N_TMO]);
                    // 0 = inherit the default.
                    e[which as usize] = secs;
                    m
                });
                if let Some(w) = self.zone_tmo_bits.get(usize::from(z) / 64) {
                    w.fetch_or(1 << (z % 64), Relaxed);
                }
            }
        }
    }

    /// The limits and timeouts as set (not as inherited), so they can be
    /// saved and set again after a restart: the default limit, each zone's
    /// own limit, the default timeouts and each zone's own timeouts.
    pub fn policy(&self) -> CtPolicy {
        let default_limit = self.default_zone_limit.load(Relaxed).checked_sub(1);
        let zone_limits = self
            .zone_limit
            .iter()
            .enumerate()
            .filter_map(|(z, a)| {
                let enc = a.load(Relaxed);
                let zone = u16::try_from(z).ok()?;
                enc.checked_sub(1).map(|l| (zone, l))
            })
            .collect();
        let default_timeouts = TimeoutKind::ALL
            .iter()
            .map(|&k| (k, self.default_tmo[k as usize].load(Relaxed)))
            .collect();
        let map = self.zone_tmo.load();
        let mut zone_timeouts: Vec<(u16, Vec<(TimeoutKind, u32)>)> = map
            .iter()
            .map(|(&z, t)| {
                let set = TimeoutKind::ALL
                    .iter()
                    .filter_map(|&k| t.get(k as usize).filter(|&&v| v != 0).map(|&v| (k, v)))
                    .collect();
                (z, set)
            })
            .filter(|(_, set): &(u16, Vec<_>)| !set.is_empty())
            .collect();
        zone_timeouts.sort_by_key(|(z, _)| *z);
        CtPolicy {
            checksum: self.checksum_policy(),
            tcp_liberal: self.tcp_liberal.load(Relaxed),
            tcp_seq_check: self.tcp_seq_check.load(Relaxed),
            max_conns: self.max_conns.load(Relaxed),
            default_limit,
            zone_limits,
            default_timeouts,
            zone_timeouts,
        }
    }

    /// The timeout in force for `zone`.
    pub fn timeout(&self, zone: u16, which: TimeoutKind) -> Duration {
        Duration::from_millis(self.timeout_ms(zone, which))
    }

    /// Inline on every packet that re-arms its entry; a zone with
    /// timeouts of its own (rare) is looked up out of line.
    #[inline(always)]
    fn timeout_ms(&self, zone: u16, which: TimeoutKind) -> u64 {
        let bit = self
            .zone_tmo_bits
            .get(usize::from(zone) / 64)
            .is_some_and(|w| w.load(Relaxed) & (1 << (zone % 64)) != 0);
        if bit {
            if let Some(ms) = self.zone_timeout_ms(zone, which) {
                return ms;
            }
        }
        (u64::from(self.default_tmo[which as usize].load(Relaxed)) * 1000).min(MAX_TIMEOUT_MS)
    }

    /// The timeout zone `zone` sets for `which`, if it sets one.
    #[cold]
    #[inline(never)]
    fn zone_timeout_ms(&self, zone: u16, which: TimeoutKind) -> Option<u64> {
        let v = *self.zone_tmo.load().get(&zone)?.get(which as usize)?;
        (v != 0).then(|| (u64::from(v) * 1000).min(MAX_TIMEOUT_MS))
    }

    // ---- time ----------------------------------------------------------

    /// The tracker's clock at `now`, in milliseconds, for
    /// [`ConnTracker::process_at`]: a datapath reads it once per batch
    /// (through a [`CtClock`]) instead of once per packet.
    #[inline]
    pub fn clock_ms(&self, now: Instant) -> u64 {
        let epoch = self
            .epoch
            .get_or_init(|| now.checked_sub(Duration::from_secs(3600)).unwrap_or(now));
        // as_millis() would divide a u128: slow on the per-packet path.
        let d = now.saturating_duration_since(*epoch);
        d.as_secs() * 1000 + u64::from(d.subsec_millis())
    }

    #[inline]
    fn shard_of(&self, hash: u64) -> &Padded {
        // The index uses the low 32 bits (bucket and tag); pick the shard
        // from bits above them so they stay independent.
        let i = ((hash >> 40) as usize) % SHARDS;
        &self.shards[i]
    }

    fn hash(&self, k: &ConnKey) -> u64 {
        self.hasher.hash_one(k)
    }

    // ---- packet path ---------------------------------------------------

    /// Runs one packet through the tracker (one `ct(...)` action).
    ///
    /// `frame` is the whole Ethernet frame, `key` its flow key (only
    /// `dl_type` is read), `meta.l3_ofs` locates the IP header; lengths come
    /// from the IP header, so `meta.l2_pad_len` bytes of padding are never
    /// looked at. `meta.csum` = `Verified`/`Partial` skips L4 checksum
    /// validation (the IPv4 header checksum is still checked under
    /// `Validate`: no port offloads it on receive). Sets `meta.ct_state`,
    /// `ct_zone`, `ct_mark` and `ct_invalid`.
    ///
    /// A packet that already went through `ct` in this zone (it carries
    /// `+trk` and `ct_zone == params.zone`, i.e. it recirculated) is not run
    /// through the state machine again, like OVS's cached `md.conn`: it
    /// keeps its state bits, and `commit` / `set_mark` apply.
    pub fn process(
        &self,
        frame: &[u8],
        key: &FlowKey,
        meta: &mut PacketMeta,
        params: &CtParams,
        now: Instant,
    ) -> CtVerdict {
        self.process_at(frame, key, meta, params, self.clock_ms(now))
    }

    /// [`ConnTracker::process`] at `now_ms` on the tracker's clock (see
    /// [`ConnTracker::clock_ms`]).
    pub fn process_at(
        &self,
        frame: &[u8],
        key: &FlowKey,
        meta: &mut PacketMeta,
        params: &CtParams,
        now_ms: u64,
    ) -> CtVerdict {
        let zone = params.zone;
        let prev = meta.ct_state.0;
        let tracked_here = prev & CtState::TRK != 0 && meta.ct_zone == zone;
        meta.ct_zone = zone;
        if tracked_here && prev & CtState::INV != 0 {
            // Already judged (and counted) by an earlier ct in this zone.
            let reason = CtInvalidReason::from_meta_code(meta.ct_invalid)
                .unwrap_or(CtInvalidReason::Malformed);
            let d = CtInvalidDetail::new(reason, "judged invalid by an earlier ct in this zone");
            return write(meta, CtState::TRK | CtState::INV, 0, Some(d));
        }
        let l3 = frame.get(usize::from(meta.l3_ofs)..).unwrap_or(&[]);
        let parsed = match parse::parse(l3, key.dl_type(), zone, meta.csum, self.checksum_policy())
        {
            Ok(p) => p,
            Err(d) => return self.invalid(meta, d, 0),
        };
        let (ckey, swapped) = parsed.key.canonical();
        let hash = self.hash(&ckey);
        let cell = self.shard_of(hash);
        let tracked = tracked_here.then_some(prev);
        if !params.force {
            let pkt = Pkt {
                hash,
                ckey: &ckey,
                swapped,
                parsed: &parsed,
                tracked,
                now_ms,
            };
            if let Some(v) = self.established(cell, &pkt, params, meta) {
                return v;
            }
        }
        let mut shard = cell.lock.lock();
        // Under the shard lock the view's answer is exact: only the lock's
        // holder changes it.
        let mut found = cell.view.find(hash, &ckey);
        if found.as_ref().is_some_and(|(_, c)| c.expired(now_ms)) {
            if let Some((i, mut c)) = found.take() {
                self.remove_locked(&mut shard, hash, i, &mut c, true);
            }
        }

        if let Some((i, mut c)) = found {
            let reply = c.orig_swapped != swapped;
            let rpl = if reply { CtState::RPL } else { 0 };
            let step = if let Some(prev) = tracked {
                Step::Done(prev & (CtState::NEW | CtState::EST | CtState::REL | CtState::RPL))
            } else if parsed.related {
                Step::Done(CtState::REL | rpl)
            } else if params.force && reply {
                self.remove_locked(&mut shard, hash, i, &mut c, false);
                Step::New
            } else {
                self.update(&mut shard, hash, i, &mut c, &parsed, reply, now_ms)
            };
            match step {
                Step::Done(bits) => {
                    let mark = if params.commit || params.force {
                        apply_mark(&mut c, params.set_mark)
                    } else {
                        c.mark
                    };
                    return write(meta, CtState::TRK | bits, mark, None);
                }
                Step::Invalid(d) => {
                    let mark = c.mark;
                    drop(c);
                    drop(shard);
                    return self.invalid(meta, d, mark);
                }
                Step::New => {}
            }
        }

        // No connection: may this packet start one?
        if parsed.related {
            drop(shard);
            let d = CtInvalidDetail::new(
                CtInvalidReason::RelatedNoConn,
                "ICMP error about no tracked connection",
            );
            return self.invalid(meta, self.no_conn(zone, d), 0);
        }
        let l4 = match parsed.l4 {
            L4::Tcp(seg) => match tcp::valid_new(seg.flags) {
                Ok(()) => L4State::Tcp(tcp::new_conn(&seg)),
                Err(d) => {
                    drop(shard);
                    return self.invalid(meta, self.no_conn(zone, d), 0);
                }
            },
            L4::Icmp { valid_new: false } => {
                drop(shard);
                let d = CtInvalidDetail::new(
                    CtInvalidReason::InvalidNew,
                    "ICMP reply without a request",
                );
                return self.invalid(meta, self.no_conn(zone, d), 0);
            }
            L4::Icmp { valid_new: true } => L4State::Icmp(IcmpState::First),
            L4::Udp | L4::Other => L4State::Other(OtherState::First),
        };
        if !(params.commit || params.force) {
            return write(meta, CtState::TRK | CtState::NEW, 0, None);
        }
        if let Err(d) = self.admit(zone) {
            drop(shard);
            return self.invalid(meta, d, 0);
        }
        let mut conn = Conn::new(ckey, swapped, l4);
        let tmo = timeout_kind(&conn.l4);
        conn.tmo = tmo;
        let expires = now_ms + self.timeout_ms(zone, tmo);
        conn.set_expires(expires);
        let mark = apply_mark(&mut conn, params.set_mark);
        if shard.insert(hash, conn, expires).is_none() {
            drop(shard);
            self.release_counts(&conn);
            let d = CtInvalidDetail::new(
                CtInvalidReason::LimitReached,
                "the shard's table is out of slab positions",
            );
            return self.invalid(meta, d, 0);
        }
        self.committed.fetch_add(1, Relaxed);
        write(meta, CtState::TRK | CtState::NEW, mark, None)
    }

    /// The established path (see the module docs): the packet's entry
    /// found without the shard lock, its state machine run under the
    /// entry's own lock. `None`: nothing was changed, and the packet must
    /// take the path under the shard lock (no entry, or one whose update
    /// changes the table's structure).
    #[inline]
    fn established(
        &self,
        cell: &Padded,
        pkt: &Pkt<'_>,
        params: &CtParams,
        meta: &mut PacketMeta,
    ) -> Option<CtVerdict> {
        let parsed = pkt.parsed;
        let (_, mut c) = cell.view.find(pkt.hash, pkt.ckey)?;
        if c.expired(pkt.now_ms) {
            return None;
        }
        let reply = c.orig_swapped != pkt.swapped;
        let rpl = if reply { CtState::RPL } else { 0 };
        let bits = if let Some(prev) = pkt.tracked {
            prev & (CtState::NEW | CtState::EST | CtState::REL | CtState::RPL)
        } else if parsed.related {
            CtState::REL | rpl
        } else {
            // SYNs and RSTs read or write the ignored-SYN side table.
            if matches!(parsed.l4, L4::Tcp(seg) if seg.flags & (TCP_SYN | TCP_RST) != 0) {
                return None;
            }
            // On a copy: an outcome that needs the shard lock leaves the
            // entry as it was for the locked path to run again.
            let mut l4 = c.l4;
            let mut ign = None;
            match self.l4_step(&mut l4, &mut ign, parsed, reply) {
                L4Step::Done { bits, refresh } => {
                    if refresh {
                        let tmo = timeout_kind(&l4);
                        let exp = pkt.now_ms + self.timeout_ms(c.key.zone, tmo);
                        // Earlier than now armed: the wheel must move it.
                        if exp < c.expires_at(pkt.now_ms) {
                            return None;
                        }
                        c.set_expires(exp);
                        c.tmo = tmo;
                    }
                    c.l4 = l4;
                    bits
                }
                L4Step::Reopen => return None,
                L4Step::Invalid(d) => {
                    c.l4 = l4;
                    let mark = c.mark;
                    drop(c);
                    return Some(self.invalid(meta, d, mark));
                }
            }
        };
        let mark = if params.commit {
            apply_mark(&mut c, params.set_mark)
        } else {
            c.mark
        };
        drop(c);
        Some(write(meta, CtState::TRK | bits, mark, None))
    }

    /// Runs an IP fragment (a packet whose flow key has `nw_frag` set)
    /// through `ct(...)`: the reassembler holds it until its datagram is
    /// complete, then [`ConnTracker::process`] judges the reassembled
    /// datagram and every fragment leaves with that verdict (see
    /// [`FragVerdict`]). `key` is the fragment's flow key (only `dl_type`
    /// is read). The fragments the reassembler dropped meanwhile (expired
    /// or discarded datagrams) come back in [`FragOutcome::dropped`],
    /// already counted under their reason here.
    pub fn process_fragment(
        &self,
        pkt: PacketBuf,
        key: &FlowKey,
        params: &CtParams,
        now: Instant,
    ) -> FragOutcome {
        let now_ms = self.clock_ms(now);
        let check_ip = self.checksum_policy() == ChecksumPolicy::Validate;
        let mut dropped = Vec::new();
        let handled = self.ipf.handle(
            pkt,
            key.dl_type(),
            params.zone,
            now_ms,
            check_ip,
            &mut dropped,
        );
        for (_, r) in &dropped {
            self.count_invalid(*r);
        }
        let verdict = match handled {
            Handled::NotFragment(p) => FragVerdict::NotFragment(p),
            Handled::Held => FragVerdict::Held,
            Handled::Refused(mut p, d) => {
                p.meta.ct_zone = params.zone;
                self.invalid(&mut p.meta, d, 0);
                FragVerdict::Refused(p)
            }
            Handled::Complete {
                mut frags,
                datagram,
            } => {
                let mut meta = frags.first().map(|f| f.meta.clone()).unwrap_or_default();
                meta.l2_pad_len = 0;
                // No port verifies the L4 checksum of a fragment.
                meta.csum = CsumStatus::Unknown;
                self.process(&datagram, key, &mut meta, params, now);
                for f in &mut frags {
                    f.meta.ct_state = meta.ct_state;
                    f.meta.ct_zone = meta.ct_zone;
                    f.meta.ct_mark = meta.ct_mark;
                    f.meta.ct_invalid = meta.ct_invalid;
                }
                FragVerdict::Complete(frags)
            }
        };
        FragOutcome { verdict, dropped }
    }

    /// Whether fragments of Ethertype `dl_type` are reassembled.
    pub fn ipf_enabled_for(&self, dl_type: u16) -> bool {
        self.ipf.enabled_for(dl_type)
    }

    /// Drops the fragments of datagrams whose reassembly time ran out at
    /// `now` and hands them back (counted under `frag_timeout`), for a
    /// caller to recycle when no fragment arrives to trigger it.
    pub fn ipf_expire(&self, now: Instant) -> super::ipf::Dropped {
        let dropped = self.ipf.expire(self.clock_ms(now));
        for (_, r) in &dropped {
            self.count_invalid(*r);
        }
        dropped
    }

    /// `ipf-status`: reassembly settings, occupancy and counters.
    pub fn ipf_status(&self) -> IpfStatus {
        self.ipf.status()
    }

    /// `ipf-set`: changes reassembly settings (all or nothing).
    pub fn ipf_set(&self, s: &IpfSettings) -> Result<(), IpfError> {
        self.ipf.set(s)
    }

    fn count_invalid(&self, r: CtInvalidReason) {
        if let Some(c) = self.invalid.get(r as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// The verdict [`ConnTracker::process`] would give this packet at
    /// `now`, computed without changing anything: no entry is created,
    /// updated, expired or removed, no counter moves, no mark is written,
    /// and `meta` is only read. `vswitchctl trace --packet` uses it to show
    /// why a packet would be `+inv` (with the expected and received
    /// checksum values) without disturbing the connection it belongs to:
    /// a trace that advanced the window tracker or committed a connection
    /// would change the verdict of the real packets that follow.
    ///
    /// The state machine runs on a copy of the entry. Limits are compared
    /// with the current counts without reserving a slot, so a commit racing
    /// on another worker can make the real verdict differ.
    pub fn peek(
        &self,
        frame: &[u8],
        key: &FlowKey,
        meta: &PacketMeta,
        params: &CtParams,
        now: Instant,
    ) -> CtVerdict {
        let verdict = |state: u8, mark: u32, invalid| CtVerdict {
            state,
            mark,
            invalid,
        };
        let inv =
            |d: CtInvalidDetail, mark: u32| verdict(CtState::TRK | CtState::INV, mark, Some(d));
        // What `apply_mark` would leave on the entry.
        let marked = |old: u32| match params.set_mark {
            Some((v, m)) if params.commit || params.force => (old & !m) | (v & m),
            _ => old,
        };
        let zone = params.zone;
        let prev = meta.ct_state.0;
        let tracked_here = prev & CtState::TRK != 0 && meta.ct_zone == zone;
        if tracked_here && prev & CtState::INV != 0 {
            let reason = CtInvalidReason::from_meta_code(meta.ct_invalid)
                .unwrap_or(CtInvalidReason::Malformed);
            let d = CtInvalidDetail::new(reason, "judged invalid by an earlier ct in this zone");
            return inv(d, 0);
        }
        let l3 = frame.get(usize::from(meta.l3_ofs)..).unwrap_or(&[]);
        let parsed = match parse::parse(l3, key.dl_type(), zone, meta.csum, self.checksum_policy())
        {
            Ok(p) => p,
            Err(d) => return inv(d, 0),
        };
        let (ckey, swapped) = parsed.key.canonical();
        let hash = self.hash(&ckey);
        // Entries `process` would delete before admitting this packet (an
        // expired one, a reopened or forced one): they no longer count
        // against the limits.
        let mut freed = 0u32;
        let mut entry: Option<Conn> = None;
        let mut ign: Option<IgnoredSyn> = None;
        // Without an epoch nothing was ever committed; asking for one would
        // set it, which is a change.
        if self.epoch.get().is_some() {
            let now_ms = self.clock_ms(now);
            let shard = self.shard_of(hash).lock.lock();
            let found = shard.view().find(hash, &ckey).map(|(i, c)| (i, *c));
            if let Some((i, c)) = found {
                if c.expired(now_ms) {
                    freed += 1;
                } else {
                    entry = Some(c);
                    ign = shard.ign.get(&i).copied();
                }
            }
        }

        if let Some(c) = entry {
            let reply = c.orig_swapped != swapped;
            let rpl = if reply { CtState::RPL } else { 0 };
            let bits = if tracked_here {
                Some(prev & (CtState::NEW | CtState::EST | CtState::REL | CtState::RPL))
            } else if parsed.related {
                Some(CtState::REL | rpl)
            } else if params.force && reply {
                freed += 1;
                None
            } else {
                let pol = TcpPolicy {
                    liberal: self.tcp_liberal.load(Relaxed),
                    seq_check: self.tcp_seq_check.load(Relaxed),
                };
                match (c.l4, &parsed.l4) {
                    (L4State::Tcp(mut t), L4::Tcp(seg)) => {
                        match tcp::update(&mut t, &mut ign, seg, reply, pol) {
                            Update::Valid { .. } | Update::Ignored => Some(CtState::EST | rpl),
                            Update::ValidNew => Some(CtState::NEW),
                            Update::Reopen => {
                                freed += 1;
                                None
                            }
                            Update::Invalid(d) => return inv(d, c.mark),
                        }
                    }
                    (L4State::Other(s), _) => {
                        let bidir = s == OtherState::Bidir || reply;
                        Some(if bidir {
                            CtState::EST | rpl
                        } else {
                            CtState::NEW
                        })
                    }
                    (L4State::Icmp(s), _) => {
                        if s == IcmpState::First && !reply {
                            Some(CtState::NEW)
                        } else {
                            Some(CtState::EST | rpl)
                        }
                    }
                    _ => Some(CtState::EST | rpl),
                }
            };
            if let Some(bits) = bits {
                return verdict(CtState::TRK | bits, marked(c.mark), None);
            }
        }

        // No connection (or it would be deleted first): may this packet
        // start one?
        if parsed.related {
            let d = CtInvalidDetail::new(
                CtInvalidReason::RelatedNoConn,
                "ICMP error about no tracked connection",
            );
            return inv(self.no_conn(zone, d), 0);
        }
        match parsed.l4 {
            L4::Tcp(seg) => {
                if let Err(d) = tcp::valid_new(seg.flags) {
                    return inv(self.no_conn(zone, d), 0);
                }
            }
            L4::Icmp { valid_new: false } => {
                let d = CtInvalidDetail::new(
                    CtInvalidReason::InvalidNew,
                    "ICMP reply without a request",
                );
                return inv(self.no_conn(zone, d), 0);
            }
            L4::Icmp { valid_new: true } | L4::Udp | L4::Other => {}
        }
        if !(params.commit || params.force) {
            return verdict(CtState::TRK | CtState::NEW, 0, None);
        }
        // `admit` without reserving.
        let in_zone = self
            .zone_count
            .get(usize::from(zone))
            .map_or(0, |n| n.load(Relaxed))
            .saturating_sub(freed);
        if self.zone_limit(zone).is_some_and(|limit| in_zone >= limit) {
            return inv(
                CtInvalidDetail::new(
                    CtInvalidReason::LimitReached,
                    "zone connection limit reached",
                ),
                0,
            );
        }
        if self.n_conns.load(Relaxed).saturating_sub(freed) >= self.max_conns.load(Relaxed) {
            return inv(
                CtInvalidDetail::new(
                    CtInvalidReason::LimitReached,
                    "global connection limit reached",
                ),
                0,
            );
        }
        verdict(CtState::TRK | CtState::NEW, marked(0), None)
    }

    /// Runs the protocol state machine of entry `i` (`c`, its slot,
    /// locked; OVS `conn_update`), with the table changes it leads to.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        shard: &mut Shard,
        hash: u64,
        i: u32,
        c: &mut Conn,
        p: &Parsed,
        reply: bool,
        now_ms: u64,
    ) -> Step {
        // The side table of ignored SYNs matters to SYNs and resets only:
        // other segments never look it up.
        let syn_or_rst = matches!(p.l4, L4::Tcp(seg) if seg.flags & (TCP_SYN | TCP_RST) != 0);
        let mut ign = if syn_or_rst {
            shard.ign.get(&i).copied()
        } else {
            None
        };
        let zone = c.key.zone;
        let (bits, refresh) = match self.l4_step(&mut c.l4, &mut ign, p, reply) {
            L4Step::Done { bits, refresh } => (bits, refresh),
            L4Step::Reopen => {
                self.remove_locked(shard, hash, i, c, false);
                return Step::New;
            }
            L4Step::Invalid(d) => return Step::Invalid(d),
        };
        if refresh {
            let tmo = timeout_kind(&c.l4);
            let exp = now_ms + self.timeout_ms(zone, tmo);
            shard.set_expiry(i, c, exp, tmo);
        }
        if syn_or_rst {
            match ign {
                Some(g) => {
                    shard.ign.insert(i, g);
                }
                None if !shard.ign.is_empty() => {
                    shard.ign.remove(&i);
                }
                None => {}
            }
        }
        Step::Done(bits)
    }

    /// The protocol's state machine on an entry's state `l4`: the state
    /// bits and whether the timeout is re-armed. `ign`: the entry's
    /// ignored SYN, read and written by TCP SYNs and resets.
    #[inline]
    fn l4_step(
        &self,
        l4: &mut L4State,
        ign: &mut Option<IgnoredSyn>,
        p: &Parsed,
        reply: bool,
    ) -> L4Step {
        let pol = TcpPolicy {
            liberal: self.tcp_liberal.load(Relaxed),
            seq_check: self.tcp_seq_check.load(Relaxed),
        };
        let rpl = if reply { CtState::RPL } else { 0 };
        let (bits, refresh) = match (l4, &p.l4) {
            (L4State::Tcp(t), L4::Tcp(seg)) => match tcp::update(t, ign, seg, reply, pol) {
                Update::Valid { refresh } => (CtState::EST | rpl, refresh),
                // Untracked: the timeout is not re-armed either, so SYNs
                // on a dead 4-tuple cannot keep its entry alive.
                Update::Ignored => (CtState::EST | rpl, false),
                Update::ValidNew => (CtState::NEW, true),
                Update::Reopen => return L4Step::Reopen,
                Update::Invalid(d) => return L4Step::Invalid(d),
            },
            (L4State::Other(s), _) => {
                if reply && *s != OtherState::Bidir {
                    *s = OtherState::Bidir;
                } else if *s == OtherState::First {
                    *s = OtherState::Multiple;
                }
                let bits = if *s == OtherState::Bidir {
                    CtState::EST | rpl
                } else {
                    CtState::NEW
                };
                (bits, true)
            }
            (L4State::Icmp(s), _) => {
                let bits = if reply && *s == IcmpState::First {
                    *s = IcmpState::Reply;
                    CtState::EST | rpl
                } else if *s == IcmpState::First {
                    CtState::NEW
                } else {
                    CtState::EST | rpl
                };
                (bits, true)
            }
            // A key names one protocol, so a TCP entry only sees TCP.
            _ => (CtState::EST | rpl, false),
        };
        L4Step::Done { bits, refresh }
    }

    /// A packet that belongs to no connection and cannot start one (`d`:
    /// an answer such as a SYN+ACK or an echo reply, a FIN, an ICMP
    /// error). While the table is full, the connection it belongs to was
    /// most likely refused a commit: its first packet went on uncommitted
    /// (as in Open vSwitch, the pipeline decides), and this packet is
    /// where the refusal bites. Counted under `limit_reached` then, so the
    /// limit shows in the drop counters and in `trace`, not as a stray
    /// answer.
    fn no_conn(&self, zone: u16, d: CtInvalidDetail) -> CtInvalidDetail {
        if !matches!(
            d.reason,
            CtInvalidReason::InvalidNew | CtInvalidReason::RelatedNoConn
        ) {
            return d;
        }
        let zone_full = self.zone_limit(zone).is_some_and(|limit| {
            self.zone_count
                .get(usize::from(zone))
                .is_some_and(|n| n.load(Relaxed) >= limit)
        });
        if zone_full {
            CtInvalidDetail::new(
                CtInvalidReason::LimitReached,
                "no connection: the zone's connection limit is reached, \
                 so none could be committed for this packet",
            )
        } else if self.n_conns.load(Relaxed) >= self.max_conns.load(Relaxed) {
            CtInvalidDetail::new(
                CtInvalidReason::LimitReached,
                "no connection: the connection table is full (max_conns), \
                 so none could be committed for this packet",
            )
        } else {
            d
        }
    }

    /// Reserves room for one more connection in `zone`.
    fn admit(&self, zone: u16) -> Result<(), CtInvalidDetail> {
        let zc = self.zone_count.get(usize::from(zone));
        if let (Some(limit), Some(zc)) = (self.zone_limit(zone), zc) {
            if zc
                .fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1))
                .is_err()
            {
                return Err(CtInvalidDetail::new(
                    CtInvalidReason::LimitReached,
                    "zone connection limit reached",
                ));
            }
        } else if let Some(zc) = zc {
            zc.fetch_add(1, Relaxed);
        }
        let max = self.max_conns.load(Relaxed);
        if self
            .n_conns
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_err()
        {
            if let Some(zc) = zc {
                zc.fetch_sub(1, Relaxed);
            }
            return Err(CtInvalidDetail::new(
                CtInvalidReason::LimitReached,
                "global connection limit reached",
            ));
        }
        Ok(())
    }

    fn release_counts(&self, c: &Conn) {
        self.n_conns.fetch_sub(1, Relaxed);
        if let Some(zc) = self.zone_count.get(usize::from(c.key.zone)) {
            zc.fetch_sub(1, Relaxed);
        }
    }

    /// Removes entry `i` (`c`, its slot, locked) under the shard lock.
    fn remove_locked(&self, shard: &mut Shard, hash: u64, i: u32, c: &mut Conn, expired: bool) {
        self.release_counts(c);
        shard.remove(hash, i, c);
        if expired {
            self.expired.fetch_add(1, Relaxed);
        }
    }

    fn invalid(&self, meta: &mut PacketMeta, d: CtInvalidDetail, mark: u32) -> CtVerdict {
        if let Some(c) = self.invalid.get(d.reason as usize) {
            c.fetch_add(1, Relaxed);
        }
        write(meta, CtState::TRK | CtState::INV, mark, Some(d))
    }

    // ---- control plane -------------------------------------------------

    /// Removes every connection expired at `now`; returns how many. Only
    /// the timer-wheel slots that came due since the last call are visited.
    ///
    /// Like every walk of the control plane over the table, it takes each
    /// shard's lock for a bounded step (1,024 entries) at a
    /// time, so a packet of that shard waits at most one step, whatever
    /// the table's size.
    pub fn sweep(&self, now: Instant) -> usize {
        let now_ms = self.clock_ms(now);
        let hasher = |k: &ConnKey| self.hash(k);
        let mut total = 0;
        for s in self.shards.iter() {
            loop {
                let step = s
                    .lock
                    .lock()
                    .sweep_some(now_ms, table::STEP, &hasher, &mut |c| {
                        self.release_counts(c)
                    });
                total += step.removed;
                if !step.more {
                    break;
                }
            }
        }
        self.expired.fetch_add(total as u64, Relaxed);
        total
    }

    /// Calls `f` on every live entry, one bounded step of one shard per
    /// lock hold (see [`ConnTracker::sweep`]); `f` runs with the lock
    /// released, on a copy. Not an atomic snapshot: a connection made or
    /// removed during the walk may or may not be seen (as with Open
    /// vSwitch's dumps); one that lives throughout is seen once.
    fn walk(&self, mut f: impl FnMut(&Conn)) {
        let mut batch: Vec<Conn> = Vec::with_capacity(table::STEP);
        for s in self.shards.iter() {
            let mut pos = Some(0);
            while let Some(p) = pos {
                batch.clear();
                pos = s.lock.lock().scan(p, |_, c| batch.push(*c));
                batch.iter().for_each(&mut f);
            }
        }
    }

    /// Unexpired connections (of `zone`, or all), ordered by zone and
    /// original tuple.
    pub fn dump(&self, zone: Option<u16>, now: Instant) -> Vec<ConnInfo> {
        let now_ms = self.clock_ms(now);
        let mut out = Vec::new();
        self.walk(|c| {
            if !c.expired(now_ms) && zone.is_none_or(|z| c.key.zone == z) {
                out.push(ConnInfo::from_conn(c, now_ms));
            }
        });
        out.sort_by(|a, b| (a.zone, &a.orig, a.proto).cmp(&(b.zone, &b.orig, b.proto)));
        out
    }

    /// Every unexpired connection, in the snapshot format (see
    /// [`super::snapshot`]), for [`ConnTracker::import`] in another
    /// process. One shard is locked at a time; the caller stops the
    /// datapath first when the copy must be exact (an upgrade does).
    pub fn export(&self, now: Instant) -> Vec<u8> {
        let now_ms = self.clock_ms(now);
        let mut out = Vec::with_capacity(
            snapshot::HEADER_LEN + self.len().saturating_mul(snapshot::ENTRY_LEN),
        );
        snapshot::write_header(&mut out, 0);
        let mut n = 0u32;
        for s in self.shards.iter() {
            s.lock.lock().for_each_live(|_, c| {
                if !c.expired(now_ms) {
                    let left = c.expires_at(now_ms).saturating_sub(now_ms);
                    snapshot::write_entry(&mut out, c, left);
                    n = n.saturating_add(1);
                }
            });
        }
        snapshot::set_count(&mut out, n);
        out
    }

    /// Adds the connections of a snapshot made by [`ConnTracker::export`]
    /// (timeouts run on from what they had left). A connection already
    /// tracked here is kept as it is; one over a limit is refused and
    /// counted in the report. A malformed snapshot is an error naming the
    /// entry; the entries before it are in.
    pub fn import(&self, bytes: &[u8], now: Instant) -> Result<ImportReport, SnapshotError> {
        let body = snapshot::entries(bytes)?;
        let now_ms = self.clock_ms(now);
        let mut rep = ImportReport::default();
        for (index, raw) in body.chunks_exact(snapshot::ENTRY_LEN).enumerate() {
            let e = snapshot::read_entry(index, raw)?;
            let mut conn = e.conn;
            let hash = self.hash(&conn.key);
            let cell = self.shard_of(hash);
            let mut shard = cell.lock.lock();
            if shard.find(hash, &conn.key).is_some() {
                rep.present += 1;
                continue;
            }
            if self.admit(conn.key.zone).is_err() {
                rep.refused += 1;
                continue;
            }
            let expires = now_ms + e.remaining_ms;
            conn.set_expires(expires);
            if shard.insert(hash, conn, expires).is_none() {
                self.release_counts(&conn);
                rep.refused += 1;
                continue;
            }
            rep.imported += 1;
        }
        Ok(rep)
    }

    /// Deletes every connection (of `zone`, or all); returns how many.
    /// A step at a time, as [`ConnTracker::sweep`]: a connection made
    /// during the flush, behind the step that passed its slot, stays.
    pub fn flush(&self, zone: Option<u16>) -> usize {
        let mut total = 0;
        let mut victims: Vec<(u32, ConnKey)> = Vec::with_capacity(table::STEP);
        for s in self.shards.iter() {
            let mut pos = Some(0);
            while let Some(p) = pos {
                let mut g = s.lock.lock();
                victims.clear();
                pos = g.scan(p, |i, c| {
                    if zone.is_none_or(|z| c.key.zone == z) {
                        victims.push((i, c.key));
                    }
                });
                for &(i, k) in &victims {
                    let Some(slot) = s.view.slot(i) else { continue };
                    // Still the same: only the shard lock's holder (this
                    // step) removes or reuses a slot.
                    let mut c = slot.lock();
                    if c.live() && c.key == k {
                        self.remove_locked(&mut g, self.hash(&k), i, &mut c, false);
                        total += 1;
                    }
                }
            }
        }
        total
    }

    /// Number of entries (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.n_conns.load(Relaxed) as usize
    }

    /// True when no entry exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held by the tables (slabs, indexes, wheels) plus the
    /// fixed per-zone arrays.
    pub fn memory_usage(&self) -> usize {
        let tables: usize = self.shards.iter().map(|s| s.lock.lock().heap_bytes()).sum();
        tables
            + core::mem::size_of::<Self>()
            + SHARDS * core::mem::size_of::<Padded>()
            + 2 * ZONES * 4
            + ZONES / 8
    }

    /// Counters: entries per zone and protocol, invalid verdicts by reason.
    pub fn stats(&self) -> CtStats {
        let mut zones: BTreeMap<u16, ZoneStats> = BTreeMap::new();
        let mut entries = 0u64;
        self.walk(|c| {
            entries += 1;
            zones
                .entry(c.key.zone)
                .or_insert_with(|| ZoneStats {
                    zone: c.key.zone,
                    limit: self.zone_limit(c.key.zone),
                    ..ZoneStats::default()
                })
                .add(c);
        });
        let invalid = CtInvalidReason::ALL
            .iter()
            .map(|r| {
                let n = self.invalid.get(*r as usize).map_or(0, |c| c.load(Relaxed));
                (r.name().to_string(), n)
            })
            .collect();
        CtStats {
            entries,
            max_conns: self.max_conns.load(Relaxed),
            zones: zones.into_values().collect(),
            invalid,
            limit_reached: self.invalid_count(CtInvalidReason::LimitReached),
            committed: self.committed.load(Relaxed),
            expired: self.expired.load(Relaxed),
            checksum: self.checksum_policy().name(),
            tcp_liberal: self.tcp_liberal.load(Relaxed),
            tcp_seq_check: self.tcp_seq_check.load(Relaxed),
            ipf: self.ipf.status(),
        }
    }

    /// How many `+inv` verdicts were given for `r`.
    pub fn invalid_count(&self, r: CtInvalidReason) -> u64 {
        self.invalid.get(r as usize).map_or(0, |c| c.load(Relaxed))
    }
}

/// The timeout attribute for an entry's current state. An established
/// TCP connection, the state of nearly every packet on the fast path, is
/// answered before the general match (the same answer: see the test).
#[inline(always)]
fn timeout_kind(l4: &L4State) -> TimeoutKind {
    use super::tcp::TcpPeerState::Established;
    if let L4State::Tcp(t) = l4 {
        if t.peers[0].state == Established && t.peers[1].state == Established {
            return TimeoutKind::TcpEstablished;
        }
    }
    timeout_kind_of(l4)
}

#[inline(never)]
fn timeout_kind_of(l4: &L4State) -> TimeoutKind {
    match l4 {
        L4State::Tcp(t) => tcp::summary(t).timeout(),
        L4State::Other(OtherState::First) | L4State::Free => TimeoutKind::UdpFirst,
        L4State::Other(OtherState::Multiple) => TimeoutKind::UdpSingle,
        L4State::Other(OtherState::Bidir) => TimeoutKind::UdpMultiple,
        L4State::Icmp(IcmpState::First) => TimeoutKind::IcmpFirst,
        L4State::Icmp(IcmpState::Reply) => TimeoutKind::IcmpReply,
    }
}

fn apply_mark(c: &mut Conn, set: Option<(u32, u32)>) -> u32 {
    if let Some((v, m)) = set {
        c.mark = (c.mark & !m) | (v & m);
    }
    c.mark
}

fn write(meta: &mut PacketMeta, state: u8, mark: u32, d: Option<CtInvalidDetail>) -> CtVerdict {
    meta.ct_state = CtState(state);
    meta.ct_mark = mark;
    meta.ct_invalid = d.map_or(0, |d| d.reason.meta_code());
    CtVerdict {
        state,
        mark,
        invalid: d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP/IPv4 frame 10.0.0.1:sport -> 10.0.0.2:53 (or the answer),
    /// checksums left zero (the tracker skips them here).
    fn udp(sport: u16, answer: bool) -> [u8; 43] {
        let mut f = [0u8; 43];
        f[12] = 0x08;
        f[14] = 0x45;
        f[17] = 29;
        f[22] = 64;
        f[23] = 17;
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let (src, dst, sp, dp) = if answer {
            (b, a, 53, sport)
        } else {
            (a, b, sport, 53)
        };
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sp.to_be_bytes());
        f[36..38].copy_from_slice(&dp.to_be_bytes());
        f[38..40].copy_from_slice(&9u16.to_be_bytes());
        f
    }

    /// A tracker that skips checksums (the frames here leave them zero).
    fn without_checksums() -> ConnTracker {
        ConnTracker::new(CtConfig {
            checksum: super::super::ChecksumPolicy::Skip,
            ..CtConfig::default()
        })
    }

    fn run(ct: &ConnTracker, f: &[u8], commit: bool, now: Instant) -> u8 {
        let mut key = FlowKey::default();
        key.set_dl_type(0x0800);
        let mut meta = PacketMeta {
            l3_ofs: 14,
            ..PacketMeta::default()
        };
        let p = CtParams {
            commit,
            ..CtParams::default()
        };
        ct.process(f, &key, &mut meta, &p, now).state
    }

    /// The memo converts an `Instant` once and again only when it
    /// changes, and a packet judged through it at a later batch's time
    /// sees the time that passed (an expired entry is a new connection).
    #[test]
    fn the_batch_clock_follows_the_instant_it_is_given() {
        let ct = without_checksums();
        let t0 = Instant::now();
        let mut clock = CtClock::default();
        assert_eq!(clock.ms(&ct, t0), ct.clock_ms(t0));
        let t1 = t0 + Duration::from_millis(1500);
        assert_eq!(clock.ms(&ct, t1), ct.clock_ms(t0) + 1500);
        assert_eq!(clock.ms(&ct, t1), ct.clock_ms(t1));

        let mut key = FlowKey::default();
        key.set_dl_type(0x0800);
        let p = CtParams {
            commit: true,
            ..CtParams::default()
        };
        let judge = |clock: &mut CtClock, answer: bool, now: Instant| {
            let mut meta = PacketMeta {
                l3_ofs: 14,
                ..PacketMeta::default()
            };
            let f = udp(5000, answer);
            ct.process_at(&f, &key, &mut meta, &p, clock.ms(&ct, now))
                .state
        };
        assert_eq!(judge(&mut clock, false, t0), CtState::TRK | CtState::NEW);
        assert_eq!(
            judge(&mut clock, true, t1),
            CtState::TRK | CtState::EST | CtState::RPL
        );
        assert_eq!(judge(&mut clock, false, t1), CtState::TRK | CtState::EST);
        // Long past the UDP timeouts: a clock stuck at t1 would still say
        // +est; the entry has expired and the packet starts a new one.
        let late = t1 + Duration::from_secs(3600);
        assert_eq!(judge(&mut clock, false, late), CtState::TRK | CtState::NEW);
        assert_eq!(ct.len(), 1);
        assert_eq!(clock.ms(&ct, late), ct.clock_ms(late));
    }

    /// The established shortcut gives the general answer for every pair
    /// of TCP peer states (and leaves the other protocols to it).
    #[test]
    fn timeout_kind_shortcut_agrees_with_the_general_match() {
        use super::super::tcp::TcpPeerState as P;
        let all = [
            P::Closed,
            P::Listen,
            P::SynSent,
            P::SynRecv,
            P::Established,
            P::CloseWait,
            P::FinWait1,
            P::Closing,
            P::LastAck,
            P::FinWait2,
            P::TimeWait,
        ];
        for o in all {
            for r in all {
                let mut t = super::super::tcp::TcpConn::default();
                t.peers[0].state = o;
                t.peers[1].state = r;
                let l4 = L4State::Tcp(t);
                assert_eq!(timeout_kind(&l4), timeout_kind_of(&l4), "{o:?} {r:?}");
            }
        }
        for l4 in [
            L4State::Free,
            L4State::Other(OtherState::First),
            L4State::Other(OtherState::Bidir),
            L4State::Icmp(IcmpState::Reply),
        ] {
            assert_eq!(timeout_kind(&l4), timeout_kind_of(&l4));
        }
    }

    /// Where `sport`'s connection lives: its hash, shard and key.
    fn locate(ct: &ConnTracker, sport: u16) -> (u64, usize, ConnKey) {
        let mut k = ConnKey {
            sport,
            dport: 53,
            proto: 17,
            ..ConnKey::default()
        };
        k.src[..4].copy_from_slice(&[10, 0, 0, 1]);
        k.dst[..4].copy_from_slice(&[10, 0, 0, 2]);
        let (ck, _) = k.canonical();
        let hash = ct.hash(&ck);
        (hash, ((hash >> 40) as usize) % SHARDS, ck)
    }

    /// A reader that found an entry's position in a view, then lost the
    /// race to a flush and to a new connection that reused the slot,
    /// finds a miss, never the other connection's state; so does the
    /// packet path.
    #[test]
    fn a_position_read_before_a_flush_is_a_miss_after_it() {
        let ct = without_checksums();
        let now = Instant::now();
        assert_eq!(
            run(&ct, &udp(1000, false), true, now),
            CtState::TRK | CtState::NEW
        );
        let (hash, shard, ck) = locate(&ct, 1000);
        // The reader: a view, and the position found in it.
        let view = Arc::clone(&ct.shards[shard].view);
        let pos = view.find(hash, &ck).map(|(i, _)| i).expect("found");
        assert_eq!(ct.flush(None), 1);
        assert!(view.find(hash, &ck).is_none());
        assert!(view.slot(pos).is_some_and(|s| !s.lock().live()));
        // Another connection of the same shard takes the freed slot.
        let other = (1001..u16::MAX)
            .find(|&p| locate(&ct, p).1 == shard)
            .expect("a port hashing to the same shard");
        assert_eq!(
            run(&ct, &udp(other, false), true, now),
            CtState::TRK | CtState::NEW
        );
        let (oh, _, ok) = locate(&ct, other);
        assert_eq!(
            ct.shards[shard].view.find(oh, &ok).map(|(i, _)| i),
            Some(pos)
        );
        // The old position now holds the other key: a miss for the old one.
        assert!(view.find(hash, &ck).is_none());
        // The flushed connection's answer is no connection's, and the
        // other connection's state did not move (its answer is its
        // first, so it becomes established only now).
        assert_eq!(
            run(&ct, &udp(1000, true), false, now),
            CtState::TRK | CtState::NEW
        );
        assert_eq!(
            run(&ct, &udp(other, true), false, now),
            CtState::TRK | CtState::EST | CtState::RPL
        );
        assert_eq!(ct.len(), 1);
    }
}
