//! IP fragment reassembly ahead of the tracker, in the manner of Open
//! vSwitch's userspace `ipf` (`lib/ipf.c`).
//!
//! A fragment reaching `ct(...)` is held here until its datagram is
//! complete. The tracker then judges the *reassembled* datagram (it alone
//! has the ports and the whole L4 payload for the checksum), and the
//! original fragments, unchanged, leave with that verdict in their
//! metadata: the switch forwards fragments, never the reassembled
//! datagram, so MTU and path-MTU handling stay what they are without
//! conntrack.
//!
//! What it owns, and its bounds:
//!
//! * **A global fragment budget** (`max_frags`, default 1000, at most
//!   5000, as OVS): a fragment arriving while the budget is spent is
//!   refused, as is a new datagram when as many datagrams as the budget
//!   are pending. Memory is thus at most `max_frags` packet buffers.
//! * **A per-datagram timeout** of 15 seconds from its first fragment
//!   (OVS's `IPF_FRAG_LIST_TIMEOUT`). Expiry is sans-IO: every call takes
//!   `now` (milliseconds on the tracker's clock), and expired datagrams
//!   are handed back so the caller recycles and counts their fragments.
//! * **Refusals**, each a named reason and counter: a fragment other than
//!   the last smaller than `min_frag_size` (default 1200 bytes for IPv4,
//!   1280 for IPv6, never below 400, as OVS; small fragments are the stuff
//!   of evasion attacks); one whose data would end past 65,535 bytes of
//!   datagram; an overlapping one, which also discards the fragments of
//!   its datagram already held and every later one (RFC 5722 for IPv6;
//!   Linux does the same for IPv4). An exact duplicate is refused alone.
//!
//! A refused fragment is not dropped here: it goes on through the
//! pipeline as `+trk+inv` with its reason, like any packet conntrack
//! cannot judge, and the flows decide.
//!
//! Thread safety: one mutex around the pending datagrams (fragments are
//! rare; OVS also has one lock), atomics for settings and counters.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

use super::{CtInvalidDetail, CtInvalidReason as R};
use crate::packet::PacketBuf;
use crate::wire::{checksum, ipv4, ipv6, EtherType, IpProtocol};

/// How long a datagram may take to arrive whole, from its first fragment.
pub const FRAG_TIMEOUT_MS: u64 = 15_000;
/// Default global fragment budget.
pub const DEFAULT_MAX_FRAGS: u32 = 1000;
/// Largest budget `max_frags` accepts.
pub const MAX_FRAGS_CEILING: u32 = 5000;
/// Default smallest IPv4 fragment (other than the last), in bytes of IP
/// datagram.
pub const DEFAULT_MIN_FRAG_SIZE_V4: u32 = 1200;
/// Default smallest IPv6 fragment (other than the last): the IPv6 minimum
/// MTU.
pub const DEFAULT_MIN_FRAG_SIZE_V6: u32 = 1280;
/// Smallest `min_frag_size` accepted.
pub const MIN_FRAG_SIZE_FLOOR: u32 = 400;
/// Largest IPv4 datagram, or IPv6 payload.
const MAX_DATAGRAM: usize = 65_535;

/// An IP version, for the settings that exist per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// A refused `ipf-set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IpfError {
    /// `min_frag_size` below [`MIN_FRAG_SIZE_FLOOR`].
    #[error("min_frag_size {got} is below the smallest allowed, {floor}")]
    MinFragSizeTooSmall {
        /// The value asked for.
        got: u32,
        /// The floor.
        floor: u32,
    },
    /// `max_frags` above [`MAX_FRAGS_CEILING`].
    #[error("max_frags {got} is above the largest allowed, {ceiling}")]
    MaxFragsTooLarge {
        /// The value asked for.
        got: u32,
        /// The ceiling.
        ceiling: u32,
    },
}

/// What `ipf-set` changes; `None` leaves a setting as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct IpfSettings {
    /// The family `enabled` and `min_frag_size` apply to (`None`: both).
    pub family: Option<IpFamily>,
    /// Reassemble fragments (off: every fragment is `+inv fragment`).
    pub enabled: Option<bool>,
    /// Global fragment budget.
    pub max_frags: Option<u32>,
    /// Smallest fragment other than the last, in bytes of IP datagram.
    pub min_frag_size: Option<u32>,
}

/// Counters of one family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IpfCounters {
    /// Fragments taken in to wait for their datagram.
    pub accepted: u64,
    /// Datagrams reassembled and judged.
    pub reassembled: u64,
    /// Fragments released with their datagram's verdict.
    pub released: u64,
    /// Fragments dropped because their datagram did not arrive whole in
    /// time.
    pub expired: u64,
    /// Fragments refused for being smaller than `min_frag_size`.
    pub too_small: u64,
    /// Fragments refused for reaching past 65,535 bytes.
    pub too_big: u64,
    /// Fragments refused or discarded over an overlap or a duplicate.
    pub overlap: u64,
    /// Fragments refused because the budget was spent.
    pub no_room: u64,
    /// Fragments refused as malformed (bad lengths).
    pub malformed: u64,
}

/// `ipf-status`: settings, occupancy and counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IpfStatus {
    /// IPv4 reassembly on.
    pub enabled_v4: bool,
    /// IPv6 reassembly on.
    pub enabled_v6: bool,
    /// Smallest IPv4 fragment other than the last.
    pub min_frag_size_v4: u32,
    /// Smallest IPv6 fragment other than the last.
    pub min_frag_size_v6: u32,
    /// Global fragment budget.
    pub max_frags: u32,
    /// Fragments held now.
    pub frags_held: u32,
    /// Datagrams waiting for fragments now.
    pub datagrams_pending: u32,
    /// IPv4 counters.
    pub v4: IpfCounters,
    /// IPv6 counters.
    pub v6: IpfCounters,
}

#[derive(Debug, Clone, Copy)]
enum C {
    Accepted,
    Reassembled,
    Released,
    Expired,
    TooSmall,
    TooBig,
    Overlap,
    NoRoom,
    Malformed,
}
const N_C: usize = 9;

/// Identifies the datagram a fragment belongs to (OVS `ipf_list_key`):
/// the zone and recirculation id keep the passes of one packet through
/// several `ct` actions apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    recirc_id: u32,
    zone: u16,
    /// IPv4 protocol (0 for IPv6, whose upper layer is in the first
    /// fragment only).
    proto: u8,
    v6: bool,
}

/// One fragment, parsed.
#[derive(Debug, Clone, Copy)]
struct FragInfo {
    key: FragKey,
    /// Its data's place in the datagram: `[start, end)`.
    start: usize,
    end: usize,
    more: bool,
    /// Where its data sits in its frame.
    data_ofs: usize,
    /// Bytes of frame before the data that a reassembled datagram keeps:
    /// L2 + IPv4 header, or L2 + IPv6 header + the extension headers
    /// before the fragment header.
    keep: usize,
    /// IPv6: offset in the frame of the next-header field naming the
    /// fragment header, and the header the fragment header names.
    nh_pos: usize,
    next: u8,
}

struct Frag {
    info: FragInfo,
    pkt: PacketBuf,
}

struct FragList {
    serial: u64,
    frags: Vec<Frag>,
    /// Overlap seen: the datagram is discarded; later fragments are
    /// refused until it expires.
    failed: bool,
}

#[derive(Default)]
struct Lists {
    map: HashMap<FragKey, FragList>,
    /// (expires, serial, key) in creation order, so in expiry order: the
    /// timeout is fixed from the first fragment. Entries of lists already
    /// gone are skipped by serial.
    order: VecDeque<(u64, u64, FragKey)>,
    next_serial: u64,
}

/// What [`Ipf::handle`] did with a packet.
pub(crate) enum Handled {
    /// Not a fragment, or reassembly is off for its family.
    NotFragment(PacketBuf),
    /// Kept until its datagram is complete.
    Held,
    /// Refused for the given reason.
    Refused(PacketBuf, CtInvalidDetail),
    /// It completed its datagram: the fragments, in datagram order, and
    /// the reassembled frame (the first fragment's L2 header, the IP
    /// header made whole, all the data).
    Complete {
        frags: Vec<PacketBuf>,
        datagram: Vec<u8>,
    },
}

/// Fragments dropped by the reassembler itself (their datagram expired,
/// or was discarded over an overlap), each with the reason to count it
/// under. The caller recycles the buffers.
pub type Dropped = Vec<(PacketBuf, R)>;

/// What became of a fragment handed to
/// [`ConnTracker::process_fragment`](super::ConnTracker::process_fragment).
#[derive(Debug)]
pub enum FragVerdict {
    /// Not a fragment, or reassembly is off for its family: run it
    /// through [`ConnTracker::process`](super::ConnTracker::process) as
    /// any packet.
    NotFragment(PacketBuf),
    /// Kept until its datagram is complete: nothing to do now.
    Held,
    /// Refused: it carries `+trk+inv` and its reason, and goes on through
    /// the pipeline.
    Refused(PacketBuf),
    /// It completed its datagram: every fragment of it, in datagram
    /// order, each carrying the verdict on the reassembled datagram. They
    /// go on through the pipeline in place of the one handed in.
    Complete(Vec<PacketBuf>),
}

/// [`FragVerdict`] plus the fragments the reassembler dropped meanwhile.
#[derive(Debug)]
pub struct FragOutcome {
    /// The fragment's fate.
    pub verdict: FragVerdict,
    /// Fragments dropped (expired or discarded), to count and recycle.
    pub dropped: Dropped,
}

/// The reassembler (see the module docs).
pub(crate) struct Ipf {
    enabled: [AtomicBool; 2],
    min_size: [AtomicU32; 2],
    max_frags: AtomicU32,
    held: AtomicU32,
    counters: [[AtomicU64; N_C]; 2],
    lists: Mutex<Lists>,
}

fn refuse(reason: R, detail: &'static str) -> CtInvalidDetail {
    CtInvalidDetail::new(reason, detail)
}

fn counter_of(reason: R) -> C {
    match reason {
        R::FragTooSmall => C::TooSmall,
        R::FragTooBig => C::TooBig,
        R::FragOverlap => C::Overlap,
        R::FragNoRoom => C::NoRoom,
        R::FragTimeout => C::Expired,
        _ => C::Malformed,
    }
}

fn rd16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parses the fragment at `l3` (which starts at frame offset `l3_ofs`).
/// `Ok(None)`: not a fragment.
fn parse_v4(
    l3: &[u8],
    l3_ofs: usize,
    zone: u16,
    recirc_id: u32,
    check_ip: bool,
) -> Result<Option<FragInfo>, CtInvalidDetail> {
    let p = ipv4::Packet::new_unchecked(l3);
    p.check_len()
        .map_err(|_| refuse(R::Malformed, "IPv4 fragment: bad header or total length"))?;
    if !p.is_fragment() {
        return Ok(None);
    }
    let hlen = p.header_len();
    if check_ip {
        let hdr = l3.get(..hlen).unwrap_or(&[]);
        if checksum::fold(checksum::sum(hdr)) != 0xffff {
            return Err(refuse(R::BadIpChecksum, "IPv4 fragment header checksum"));
        }
    }
    let total = usize::from(p.total_len());
    let start = usize::from(p.frag_offset());
    let len = total.saturating_sub(hlen);
    let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
    src[..4].copy_from_slice(&p.src_addr().octets());
    dst[..4].copy_from_slice(&p.dst_addr().octets());
    Ok(Some(FragInfo {
        key: FragKey {
            src,
            dst,
            id: u32::from(p.ident()),
            recirc_id,
            zone,
            proto: p.next_header().into(),
            v6: false,
        },
        start,
        end: start + len,
        more: p.more_frags(),
        data_ofs: l3_ofs + hlen,
        keep: l3_ofs + hlen,
        nh_pos: 0,
        next: 0,
    }))
}

fn parse_v6(
    l3: &[u8],
    l3_ofs: usize,
    zone: u16,
    recirc_id: u32,
) -> Result<Option<FragInfo>, CtInvalidDetail> {
    let p = ipv6::Packet::new_unchecked(l3);
    p.check_len()
        .map_err(|_| refuse(R::Malformed, "IPv6 fragment: bad payload length"))?;
    let end_of_dgram = ipv6::HEADER_LEN + usize::from(p.payload_len());
    let truncated = || refuse(R::Malformed, "IPv6 extension headers truncated");
    // Walk to the fragment header, remembering which next-header field
    // names it (the reassembled datagram drops the fragment header).
    let mut nh_pos = 6usize;
    let mut next = u8::from(p.next_header());
    let mut off = ipv6::HEADER_LEN;
    loop {
        match IpProtocol::from(next) {
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                let n = *l3.get(off).ok_or_else(truncated)?;
                let len = (usize::from(*l3.get(off + 1).ok_or_else(truncated)?) + 1) * 8;
                nh_pos = off;
                next = n;
                off += len;
                if off > end_of_dgram {
                    return Err(truncated());
                }
            }
            IpProtocol::Ipv6Frag => break,
            _ => return Ok(None),
        }
    }
    if off + ipv6::FRAG_HEADER_LEN > end_of_dgram {
        return Err(truncated());
    }
    let fh = ipv6::FragHeader::new_unchecked(l3.get(off..).unwrap_or(&[]));
    let offlg = rd16(l3, off + 2).ok_or_else(truncated)?;
    if offlg & 0xfff9 == 0 {
        // An atomic fragment (RFC 6946): a whole datagram.
        return Ok(None);
    }
    let data = off + ipv6::FRAG_HEADER_LEN;
    let start = usize::from(fh.frag_offset());
    let len = end_of_dgram - data;
    Ok(Some(FragInfo {
        key: FragKey {
            src: p.src_addr().octets(),
            dst: p.dst_addr().octets(),
            id: fh.ident(),
            recirc_id,
            zone,
            proto: 0,
            v6: true,
        },
        start,
        end: start + len,
        more: fh.more_frags(),
        data_ofs: l3_ofs + data,
        keep: l3_ofs + off,
        nh_pos: l3_ofs + nh_pos,
        next: u8::from(fh.next_header()),
    }))
}

impl Default for Ipf {
    fn default() -> Self {
        Ipf {
            enabled: [AtomicBool::new(true), AtomicBool::new(true)],
            min_size: [
                AtomicU32::new(DEFAULT_MIN_FRAG_SIZE_V4),
                AtomicU32::new(DEFAULT_MIN_FRAG_SIZE_V6),
            ],
            max_frags: AtomicU32::new(DEFAULT_MAX_FRAGS),
            held: AtomicU32::new(0),
            counters: [[0; N_C].map(AtomicU64::new), [0; N_C].map(AtomicU64::new)],
            lists: Mutex::new(Lists::default()),
        }
    }
}

impl Ipf {
    fn count(&self, v6: bool, c: C, n: u64) {
        if let Some(a) = self
            .counters
            .get(usize::from(v6))
            .and_then(|f| f.get(c as usize))
        {
            a.fetch_add(n, Relaxed);
        }
    }

    fn family_index(f: IpFamily) -> usize {
        match f {
            IpFamily::V4 => 0,
            IpFamily::V6 => 1,
        }
    }

    /// Whether fragments of `dl_type` are reassembled.
    pub fn enabled_for(&self, dl_type: u16) -> bool {
        match EtherType::from(dl_type) {
            EtherType::Ipv4 => self.enabled[0].load(Relaxed),
            EtherType::Ipv6 => self.enabled[1].load(Relaxed),
            _ => false,
        }
    }

    /// Applies `s` (all or nothing: a bad value changes nothing).
    pub fn set(&self, s: &IpfSettings) -> Result<(), IpfError> {
        if let Some(m) = s.max_frags {
            if m > MAX_FRAGS_CEILING {
                return Err(IpfError::MaxFragsTooLarge {
                    got: m,
                    ceiling: MAX_FRAGS_CEILING,
                });
            }
        }
        if let Some(m) = s.min_frag_size {
            if m < MIN_FRAG_SIZE_FLOOR {
                return Err(IpfError::MinFragSizeTooSmall {
                    got: m,
                    floor: MIN_FRAG_SIZE_FLOOR,
                });
            }
        }
        let fams: &[usize] = match s.family {
            Some(f) => &[Self::family_index(f)][..],
            None => &[0, 1],
        };
        for &i in fams {
            if let (Some(on), Some(a)) = (s.enabled, self.enabled.get(i)) {
                a.store(on, Relaxed);
            }
            if let (Some(m), Some(a)) = (s.min_frag_size, self.min_size.get(i)) {
                a.store(m, Relaxed);
            }
        }
        if let Some(m) = s.max_frags {
            self.max_frags.store(m, Relaxed);
        }
        Ok(())
    }

    /// Settings, occupancy and counters.
    pub fn status(&self) -> IpfStatus {
        let counters = |v6: bool| {
            let g = |c: C| {
                self.counters
                    .get(usize::from(v6))
                    .and_then(|f| f.get(c as usize))
                    .map_or(0, |a| a.load(Relaxed))
            };
            IpfCounters {
                accepted: g(C::Accepted),
                reassembled: g(C::Reassembled),
                released: g(C::Released),
                expired: g(C::Expired),
                too_small: g(C::TooSmall),
                too_big: g(C::TooBig),
                overlap: g(C::Overlap),
                no_room: g(C::NoRoom),
                malformed: g(C::Malformed),
            }
        };
        let pending = self.lists.lock().map.values().filter(|l| !l.failed).count();
        IpfStatus {
            enabled_v4: self.enabled[0].load(Relaxed),
            enabled_v6: self.enabled[1].load(Relaxed),
            min_frag_size_v4: self.min_size[0].load(Relaxed),
            min_frag_size_v6: self.min_size[1].load(Relaxed),
            max_frags: self.max_frags.load(Relaxed),
            frags_held: self.held.load(Relaxed),
            datagrams_pending: pending as u32,
            v4: counters(false),
            v6: counters(true),
        }
    }

    /// Drops the datagrams whose time ran out at `now_ms`; their fragments
    /// go to `dropped`.
    fn expire_locked(&self, lists: &mut Lists, now_ms: u64, dropped: &mut Dropped) {
        while let Some(&(expires, serial, key)) = lists.order.front() {
            if expires > now_ms {
                break;
            }
            lists.order.pop_front();
            if lists.map.get(&key).is_some_and(|l| l.serial == serial) {
                if let Some(l) = lists.map.remove(&key) {
                    self.discard(l.frags, key.v6, R::FragTimeout, dropped);
                }
            }
        }
    }

    fn discard(&self, frags: Vec<Frag>, v6: bool, why: R, dropped: &mut Dropped) {
        let n = frags.len() as u64;
        self.held.fetch_sub(n as u32, Relaxed);
        self.count(v6, counter_of(why), n);
        dropped.extend(frags.into_iter().map(|f| (f.pkt, why)));
    }

    /// Expires what is due at `now_ms` (for callers with no fragment to
    /// hand in).
    pub fn expire(&self, now_ms: u64) -> Dropped {
        let mut dropped = Vec::new();
        if self.held.load(Relaxed) == 0 && self.lists.lock().order.is_empty() {
            return dropped;
        }
        let mut g = self.lists.lock();
        self.expire_locked(&mut g, now_ms, &mut dropped);
        dropped
    }

    /// Takes in `pkt` (its IP header at `meta.l3_ofs`), a fragment on
    /// its way through `ct(zone=zone)`. `check_ip`: verify the IPv4 header
    /// checksum. Expired datagrams' and discarded fragments go to
    /// `dropped`.
    pub fn handle(
        &self,
        pkt: PacketBuf,
        dl_type: u16,
        zone: u16,
        now_ms: u64,
        check_ip: bool,
        dropped: &mut Dropped,
    ) -> Handled {
        if !self.enabled_for(dl_type) {
            return Handled::NotFragment(pkt);
        }
        let v6 = EtherType::from(dl_type) == EtherType::Ipv6;
        let l3_ofs = usize::from(pkt.meta.l3_ofs);
        let l3 = pkt.data().get(l3_ofs..).unwrap_or(&[]);
        let parsed = if v6 {
            parse_v6(l3, l3_ofs, zone, pkt.meta.recirc_id)
        } else {
            parse_v4(l3, l3_ofs, zone, pkt.meta.recirc_id, check_ip)
        };
        let refused = |pkt, d: CtInvalidDetail| {
            self.count(v6, counter_of(d.reason), 1);
            Handled::Refused(pkt, d)
        };
        let info = match parsed {
            Ok(Some(i)) => i,
            Ok(None) => return Handled::NotFragment(pkt),
            Err(d) => return refused(pkt, d),
        };
        let len = info.end - info.start;
        if len == 0 || (info.more && len % 8 != 0) {
            return refused(
                pkt,
                refuse(
                    R::Malformed,
                    "fragment empty, or not the last and not a multiple of 8 bytes",
                ),
            );
        }
        let ip_size = info.data_ofs + len - l3_ofs;
        if info.more && ip_size < self.min_size[usize::from(v6)].load(Relaxed) as usize {
            return refused(
                pkt,
                refuse(R::FragTooSmall, "fragment smaller than min_frag_size"),
            );
        }
        // The reassembled IPv4 datagram, or IPv6 payload (without the
        // fragment header), must fit in 65,535 bytes.
        let head = if v6 {
            info.keep - l3_ofs - ipv6::HEADER_LEN
        } else {
            info.keep - l3_ofs
        };
        if head + info.end > MAX_DATAGRAM {
            return refused(
                pkt,
                refuse(R::FragTooBig, "fragment reaches past 65,535 bytes"),
            );
        }

        let mut g = self.lists.lock();
        self.expire_locked(&mut g, now_ms, dropped);
        let max = self.max_frags.load(Relaxed);
        let lists = &mut *g;
        let exists = lists.map.contains_key(&info.key);
        if self.held.load(Relaxed) >= max || (!exists && lists.map.len() >= max as usize) {
            drop(g);
            return refused(
                pkt,
                refuse(R::FragNoRoom, "fragment budget (max_frags) spent"),
            );
        }
        if !exists {
            let serial = lists.next_serial;
            lists.next_serial += 1;
            let expires = now_ms + FRAG_TIMEOUT_MS;
            lists.order.push_back((expires, serial, info.key));
            lists.map.insert(
                info.key,
                FragList {
                    serial,
                    frags: Vec::new(),
                    failed: false,
                },
            );
        }
        let Some(list) = lists.map.get_mut(&info.key) else {
            return Handled::NotFragment(pkt);
        };
        if list.failed {
            drop(g);
            return refused(
                pkt,
                refuse(R::FragOverlap, "datagram discarded after an overlap"),
            );
        }
        let last_end = list.frags.iter().find(|f| !f.info.more).map(|f| f.info.end);
        if list
            .frags
            .iter()
            .any(|f| f.info.start == info.start && f.info.end == info.end)
        {
            // A duplicate (the network repeated it): refused alone.
            drop(g);
            return refused(pkt, refuse(R::FragOverlap, "duplicate fragment"));
        }
        let overlaps = list
            .frags
            .iter()
            .any(|f| info.start < f.info.end && f.info.start < info.end);
        // A second, different end, or data past the end: the same harm.
        let inconsistent = match last_end {
            Some(e) => info.end > e || !info.more,
            None => !info.more && list.frags.iter().any(|f| f.info.end > info.end),
        };
        if overlaps || inconsistent {
            // RFC 5722: the whole datagram goes, and so will the rest of
            // its fragments.
            list.failed = true;
            let held = core::mem::take(&mut list.frags);
            self.discard(held, v6, R::FragOverlap, dropped);
            drop(g);
            return refused(
                pkt,
                refuse(R::FragOverlap, "overlapping fragment: datagram discarded"),
            );
        }
        list.frags.push(Frag { info, pkt });
        self.held.fetch_add(1, Relaxed);
        self.count(v6, C::Accepted, 1);

        let Some(total) = last_end.or((!info.more).then_some(info.end)) else {
            return Handled::Held;
        };
        let have: usize = list.frags.iter().map(|f| f.info.end - f.info.start).sum();
        if have != total {
            // No overlap, all within [0, total): complete exactly when the
            // lengths add up.
            return Handled::Held;
        }
        let Some(list) = lists.map.remove(&info.key) else {
            return Handled::Held;
        };
        drop(g);
        let mut frags = list.frags;
        frags.sort_by_key(|f| f.info.start);
        self.held.fetch_sub(frags.len() as u32, Relaxed);
        match reassemble(&frags, total, v6) {
            Some(datagram) => {
                self.count(v6, C::Reassembled, 1);
                self.count(v6, C::Released, frags.len() as u64);
                Handled::Complete {
                    frags: frags.into_iter().map(|f| f.pkt).collect(),
                    datagram,
                }
            }
            None => {
                // Unreachable by the checks above; counted, never a panic.
                let mut it = frags.into_iter().map(|f| f.pkt);
                let this = it.next();
                self.count(v6, C::Malformed, 1);
                dropped.extend(it.map(|p| (p, R::Malformed)));
                match this {
                    Some(p) => Handled::Refused(p, refuse(R::Malformed, "reassembly failed")),
                    None => Handled::Held,
                }
            }
        }
    }
}

/// Builds the whole datagram from `frags` (sorted, contiguous, from 0 to
/// `total`).
fn reassemble(frags: &[Frag], total: usize, v6: bool) -> Option<Vec<u8>> {
    let first = frags.first()?;
    let fi = first.info;
    let head = first.pkt.data().get(..fi.keep)?;
    let mut out = Vec::with_capacity(head.len() + total);
    out.extend_from_slice(head);
    for f in frags {
        let d = f
            .pkt
            .data()
            .get(f.info.data_ofs..f.info.data_ofs + (f.info.end - f.info.start))?;
        out.extend_from_slice(d);
    }
    // The L3 header starts where the fragment's did.
    let l3 = usize::from(first.pkt.meta.l3_ofs);
    if v6 {
        let plen = u16::try_from(fi.keep - l3 - ipv6::HEADER_LEN + total).ok()?;
        out.get_mut(l3 + 4..l3 + 6)?
            .copy_from_slice(&plen.to_be_bytes());
        *out.get_mut(fi.nh_pos)? = fi.next;
    } else {
        let hlen = fi.keep - l3;
        let tot = u16::try_from(hlen + total).ok()?;
        out.get_mut(l3 + 2..l3 + 4)?
            .copy_from_slice(&tot.to_be_bytes());
        // Clear MF and the offset; keep DF and the reserved bit.
        let w = rd16(&out, l3 + 6)? & 0xe000 & !0x2000;
        out.get_mut(l3 + 6..l3 + 8)?
            .copy_from_slice(&w.to_be_bytes());
        out.get_mut(l3 + 10..l3 + 12)?.copy_from_slice(&[0, 0]);
        let c = checksum::checksum(out.get(l3..l3 + hlen)?);
        out.get_mut(l3 + 10..l3 + 12)?
            .copy_from_slice(&c.to_be_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 fragment 10.0.0.1 -> 10.0.0.2, protocol 17,
    /// identification 7, carrying `data` at byte offset `off`.
    fn v4(off: usize, data: &[u8], more: bool) -> PacketBuf {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let tot = (20 + data.len()) as u16;
        let word = (if more { 0x2000 } else { 0 }) | (off / 8) as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&tot.to_be_bytes());
        ip.extend_from_slice(&[0, 7]);
        ip.extend_from_slice(&word.to_be_bytes());
        ip.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let c = checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(data);
        let mut p = PacketBuf::from_slice(&f);
        p.meta.l3_ofs = 14;
        p
    }

    /// An Ethernet + IPv6 fragment fd00::1 -> fd00::2 behind a
    /// destination-options header, next header 17, identification 9.
    fn v6(off: usize, data: &[u8], more: bool) -> PacketBuf {
        let mut f = vec![0u8; 14];
        f[12] = 0x86;
        f[13] = 0xdd;
        let plen = (8 + 8 + data.len()) as u16;
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&plen.to_be_bytes());
        ip.extend_from_slice(&[60, 64]);
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[15] = 1;
        ip.extend_from_slice(&a);
        a[15] = 2;
        ip.extend_from_slice(&a);
        // Destination options (8 bytes, PadN), then the fragment header.
        ip.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
        let word = (off as u16 & 0xfff8) | u16::from(more);
        ip.extend_from_slice(&[17, 0]);
        ip.extend_from_slice(&word.to_be_bytes());
        ip.extend_from_slice(&9u32.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(data);
        let mut p = PacketBuf::from_slice(&f);
        p.meta.l3_ofs = 14;
        p
    }

    fn run(ipf: &Ipf, p: PacketBuf, dl_type: u16) -> Handled {
        let mut dropped = Vec::new();
        let h = ipf.handle(p, dl_type, 0, 0, true, &mut dropped);
        assert!(dropped.is_empty());
        h
    }

    fn small_frags_ok() -> Ipf {
        let ipf = Ipf::default();
        let s = IpfSettings {
            min_frag_size: Some(MIN_FRAG_SIZE_FLOOR),
            ..IpfSettings::default()
        };
        assert_eq!(ipf.set(&s), Ok(()));
        ipf
    }

    #[test]
    fn ipv4_datagram_is_made_whole() {
        let ipf = small_frags_ok();
        let a: Vec<u8> = (0..400u16).map(|i| i as u8).collect();
        let b = [0xbb; 100];
        assert!(matches!(
            run(&ipf, v4(400, &b, false), 0x0800),
            Handled::Held
        ));
        let Handled::Complete { frags, datagram } = run(&ipf, v4(0, &a, true), 0x0800) else {
            panic!("not complete")
        };
        assert_eq!(frags.len(), 2);
        let ip = &datagram[14..];
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 520, "total length");
        assert_eq!(
            u16::from_be_bytes([ip[6], ip[7]]),
            0,
            "MF and offset cleared"
        );
        assert_eq!(checksum::fold(checksum::sum(&ip[..20])), 0xffff);
        assert_eq!(&ip[20..420], &a[..]);
        assert_eq!(&ip[420..], &b[..]);
        assert_eq!(ipf.status().frags_held, 0);
    }

    #[test]
    fn ipv6_datagram_loses_its_fragment_header() {
        let ipf = small_frags_ok();
        let a = [0xaa; 400];
        let b = [0xbb; 20];
        assert!(matches!(run(&ipf, v6(0, &a, true), 0x86dd), Handled::Held));
        let Handled::Complete { datagram, .. } = run(&ipf, v6(400, &b, false), 0x86dd) else {
            panic!("not complete")
        };
        let ip = &datagram[14..];
        assert_eq!(
            u16::from_be_bytes([ip[4], ip[5]]),
            8 + 420,
            "payload length"
        );
        assert_eq!(ip[6], 60, "the fixed header still names the options");
        assert_eq!(ip[40], 17, "the options now name UDP");
        assert_eq!(&ip[48..448], &a[..]);
        assert_eq!(&ip[448..], &b[..]);
    }

    #[test]
    fn bad_ipv4_header_checksum_is_refused() {
        let ipf = Ipf::default();
        let mut p = v4(0, &[0; 1480], true);
        p.data_mut()[24] ^= 1;
        match run(&ipf, p, 0x0800) {
            Handled::Refused(_, d) => assert_eq!(d.reason, R::BadIpChecksum),
            _ => panic!("accepted a bad header checksum"),
        }
    }
}
