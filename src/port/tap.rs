//! `type=tap`: a TAP device whose fd we hold, as qemu or vhost would.
//!
//! The kernel side of the TAP is what a VM (or, in tests, a network
//! namespace) sees. That side may be moved into another netns right after it
//! appears, so everything per-device happens at creation, on the fd:
//! IFF_TAP|IFF_NO_PI, optionally IFF_VNET_HDR with TUNSETVNETHDRSZ and
//! TUNSETOFFLOAD (checksum, TSO4, TSO6); the name-based calls (link up, MTU)
//! run once right after and tolerate "no such device" (already moved).
//! Afterwards the fd is used for I/O, and what must be asked of the device
//! itself (is it up, how many frames did the kernel drop before we read
//! them, its queue length) goes through sockets opened in the namespace the
//! device lives in now (TUNGETDEVNETNS on the fd, see [`sys::netns`]), never
//! by name in ours: that is how `link_state` stays truthful for a TAP inside
//! a VM's namespace, where Open vSwitch's lookups by name fail.
//!
//! Receive reads frames until the batch is full or the fd runs dry. The
//! TAP interface has no batch read, so with `tap_io=uring` (the default)
//! a batch of reads, one per frame, goes to the kernel in one io_uring
//! submission ([`sys::uring`]); every read is non-blocking and completes
//! within the call, so nothing is in flight between batches and the fd
//! keeps its own readiness for the datapath's epoll. While frames come one
//! or two per call, and with `tap_io=readwrite` or without io_uring, it is
//! one `read` per frame. With vnet_hdr a frame may be a 64 KiB TSO
//! super-packet: each read scatters over the pool buffer and an overflow
//! area of its own, and only super-packets pay a copy. The virtio-net
//! header becomes `meta.csum` / `meta.gso`.
//!
//! Transmit goes the same way (a batch of writes in one submission, or
//! one `write` per frame). To a vnet_hdr TAP it writes the header from the
//! metadata, so super-packets and partial checksums pass straight through. Without
//! vnet_hdr, super-packets are segmented and partial checksums completed in
//! software first ([`crate::packet::gso`]).
//!
//! Frames the kernel queued for us and dropped because the queue
//! (`txqueuelen` frames, a port option) was full are the device's own
//! `tx_dropped`; the port reports them, counted from when it was opened, as
//! `tap_queue_overflow`.
//!
//! Life: a TAP we create is persistent (TUNSETPERSIST), so a crash of the
//! daemon leaves it, with its namespace and addresses, where it is; opening
//! the port again finds it (in our namespace, in the one its record in
//! [`super::persist`] remembers, or in any named one) and attaches a new fd
//! to it there, instead of creating a stray twin in ours. A deleted TAP
//! (`ip link del`, VM destroyed, its netns removed) shows as EBADFD on the
//! fd (and EPOLLERR); the port goes down, counted and logged once.
//! `housekeeping()` retries with backoff: a TAP we created is created
//! again; a persistent TAP someone else made is re-attached when it
//! reappears in our netns. Dropping the port removes a TAP we created
//! (clears IFF_PERSIST and closes) unless devices are kept at exit and the
//! port was not deleted; anyone else's TAP is always left.
//!
//! Queues. A TAP vswitchd creates is multi-queue, so each datapath worker
//! reads and writes its own queue ([`Port::open_queue`]; the kernel keeps
//! a flow on one queue). The port that opened the device is the primary
//! queue: it alone owns the device's life (record, recreation, removal)
//! and its device-wide counters; another queue only moves frames and
//! counts them. The extra queue fds are opened where the device lives,
//! like the primary's. When the primary loses the device the queues let
//! go of theirs too (an fd in a VM's namespace would keep that namespace
//! alive), and when it attaches a device again it opens their new queues
//! for them, handed over at their next upkeep; a device that cannot take
//! more queues leaves them down, and the datapath sends their traffic
//! through the primary's worker instead.
//!
//! Not thread-safe by itself: a port lives in one datapath thread.

use super::link::{Counters, Device, LinkLife};
use super::persist::{self, Record};
use super::steering::{self, Gate};
use super::sys::netns::{self, NetNs, NsId};
use super::sys::rtnl::{LinkInfo, Rtnl};
use super::sys::steer::Mode;
use super::sys::{self, netdev, steer, tun, uring};
use super::vnet::{self, VnetHdr};
use super::{parse_bool, Error, LinkState, Port, PortDrop, PortStats};
use crate::packet::gso::{self, Segmenter};
use crate::packet::{Batch, Gso, PacketBuf, PacketPool, MAX_BURST};
use parking_lot::Mutex;
use std::cell::RefCell;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest frame a TAP can hand us: a 64 KiB GSO super-packet, or a frame
/// at the largest MTU, plus Ethernet and VLAN headers.
pub const MAX_FRAME: usize = 65536 + 14 + 8;

/// Offloads announced on a vnet_hdr TAP.
const OFFLOADS: u32 = tun::TUN_F_CSUM | tun::TUN_F_TSO4 | tun::TUN_F_TSO6;

/// How to open a TAP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    /// Device name (at most 15 bytes).
    pub name: String,
    /// Exchange a virtio-net header with each frame, with checksum and TSO
    /// offloads (default on: that is what makes TCP fast).
    pub vnet_hdr: bool,
    /// MTU to set at creation (`mtu_request`); `None` keeps the device's.
    pub mtu_request: Option<u32>,
    /// Transmit queue length to set on the device (`txqueuelen`): how many
    /// frames the kernel holds for us before it drops; `None` keeps the
    /// device's (1000 for a new TAP).
    pub txqueuelen: Option<u32>,
    /// How frames are read and written (`tap_io`).
    pub io: TapIo,
}

/// How a TAP port moves its frames (`tap_io=uring|readwrite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TapIo {
    /// A batch of reads, or of writes, in one io_uring submission (one
    /// syscall per batch); read/write where io_uring is unavailable.
    #[default]
    Uring,
    /// One `read` or `write` syscall per frame.
    Readwrite,
}

impl TapConfig {
    /// Defaults for device `name`.
    pub fn new(name: &str) -> TapConfig {
        TapConfig {
            name: name.to_string(),
            vnet_hdr: true,
            mtu_request: None,
            txqueuelen: None,
            io: TapIo::default(),
        }
    }

    /// From `add-port ... key=value` options: `vnet_hdr=true|false`,
    /// `mtu_request=N`, `txqueuelen=N`, `tap_io=uring|readwrite`.
    pub fn from_options(name: &str, opts: &[(&str, &str)]) -> Result<TapConfig, Error> {
        sys::check_ifname(name).map_err(|e| Error::config(name, e.to_string()))?;
        let mut c = TapConfig::new(name);
        for &(k, v) in opts {
            match k {
                "vnet_hdr" => c.vnet_hdr = parse_bool(name, k, v)?,
                "mtu_request" => {
                    let m: u32 = v
                        .parse()
                        .ok()
                        .filter(|m| (68..=65535).contains(m))
                        .ok_or_else(|| {
                            Error::config(name, format!("mtu_request={v}: expected 68..65535"))
                        })?;
                    c.mtu_request = Some(m);
                }
                "txqueuelen" => {
                    let n: u32 = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=1_000_000).contains(n))
                        .ok_or_else(|| {
                            Error::config(name, format!("txqueuelen={v}: expected 1..1000000"))
                        })?;
                    c.txqueuelen = Some(n);
                }
                "tap_io" => {
                    c.io = match v {
                        "uring" => TapIo::Uring,
                        "readwrite" => TapIo::Readwrite,
                        _ => {
                            return Err(Error::config(
                                name,
                                format!("tap_io={v}: expected uring or readwrite"),
                            ))
                        }
                    }
                }
                _ => {
                    return Err(Error::config(
                        name,
                        format!("unknown option {k:?} for a tap port"),
                    ))
                }
            }
        }
        Ok(c)
    }
}

/// What happened to one packet on transmit.
enum TxFlow {
    /// Sent or dropped (counted): go on with the next packet.
    Next,
    /// The fd would block: leave this packet and the rest in the batch.
    Stop,
    /// The device is gone: the port goes down.
    Gone(io::Error),
}

/// Why a batched transmit stopped before the end of the batch.
enum UringStop {
    /// The device is gone; the packets from this index on were not sent.
    Gone(io::Error, usize),
    /// The ring was given up (see `TapPort::give_up_uring`); the packets
    /// from this index on are still to be sent.
    Refused(usize),
}

/// What the device says about itself, asked inside its namespace.
#[derive(Debug, Clone, Copy)]
struct Asked {
    ns: NsId,
    ifindex: u32,
    flags: u32,
    mtu: u32,
    /// The device's `tx_dropped` (frames the kernel meant for our fd and
    /// dropped), when asked for.
    tx_dropped: Option<u64>,
}

/// Asks the device behind `fd` about itself, inside the namespace it lives
/// in now (TUNGETDEVNETNS), and sets its queue length there when `txqlen`
/// is given. No fd into that namespace is kept afterwards: a socket there
/// would keep the namespace, and the VM's NIC in it, alive after
/// `ip netns del`.
///
/// A question alone (no `txqlen`) about a device in another namespace goes
/// by rtnetlink from ours, naming that namespace by its id: no thread, so
/// the datapath thread that asks every second never waits for one. Setting
/// the queue length, and kernels without `IFLA_TARGET_NETNSID`, enter the
/// namespace on a short-lived thread.
fn ask(fd: &tun::TapFd, stats: bool, txqlen: Option<u32>) -> io::Result<Asked> {
    let ns = netns::of_tun(fd.as_fd())?;
    let (name, _) = tun::get_iff(fd.as_fd())?;
    let id = ns.id();
    if txqlen.is_none() && !NetNs::current().is_ok_and(|c| c.id() == id) {
        match ask_from_here(&ns, &name) {
            Ok(l) => {
                return Ok(Asked {
                    ns: id,
                    ifindex: l.index,
                    flags: l.flags,
                    mtu: l
                        .mtu
                        .ok_or_else(|| io::Error::other("no MTU in the answer"))?,
                    tx_dropped: stats.then_some(l.tx_dropped),
                })
            }
            Err(e) => tracing::debug!(port = %name, "asking the tap from here: {e}"),
        }
    }
    ns.run_in(|| {
        let ctl = netdev::Ctl::new()?;
        if let Some(q) = txqlen {
            ctl.set_txqlen(&name, q)?;
        }
        let ifindex = ctl.ifindex(&name)?;
        let tx_dropped = if stats {
            Some(Rtnl::new()?.link(ifindex)?.tx_dropped)
        } else {
            None
        };
        Ok(Asked {
            ns: id,
            ifindex,
            flags: ctl.flags(&name)?,
            mtu: ctl.mtu(&name)?,
            tx_dropped,
        })
    })
}

thread_local! {
    /// This thread's rtnetlink socket in our namespace, kept between
    /// questions: a port asks its device every second, and opening a
    /// socket for each question cost three syscalls more per port.
    static RTNL: RefCell<Option<Rtnl>> = const { RefCell::new(None) };
}

/// The device called `name` in namespace `ns`, asked by rtnetlink from
/// ours (the namespace named by its id). A socket that failed is closed,
/// and the next question opens a new one.
fn ask_from_here(ns: &NetNs, name: &str) -> io::Result<LinkInfo> {
    RTNL.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| io::Error::other("this thread's rtnetlink socket is in use"))?;
        let r = match slot.as_mut() {
            Some(r) => r,
            None => slot.insert(Rtnl::new()?),
        };
        let answer = r
            .nsid(ns.as_fd())
            .and_then(|nsid| r.link_named(Some(nsid), name));
        if answer.is_err() {
            *slot = None;
        }
        answer
    })
}

/// How long an answer of the device is used before it is asked again. The
/// control plane looks at every port four times a second, on the datapath
/// thread, and asking a device in another namespace costs a few netlink
/// round trips.
const ASK_EVERY: Duration = Duration::from_secs(1);

/// What the port knows of its device's kernel side: where it was last
/// seen, its flags, and the device's drop counter at the time we attached
/// (drops are reported from then on).
#[derive(Debug, Default)]
struct Kernel {
    /// Namespace and ifindex the device was last seen at.
    at: Option<(NsId, u32)>,
    /// Its flags then (`None`: it could not be asked).
    flags: Option<u32>,
    /// When it was last asked.
    asked: Option<Instant>,
    /// `tx_dropped` when the current device was attached.
    base: u64,
    /// Its last value read.
    last: u64,
    /// Overflow drops of devices this port had before (lost, recreated).
    before: u64,
}

impl Kernel {
    /// Takes in an answer of the device.
    fn heard(&mut self, a: &Asked) {
        self.at = Some((a.ns, a.ifindex));
        self.flags = Some(a.flags);
        self.asked = Some(Instant::now());
        if let Some(n) = a.tx_dropped {
            self.last = n;
        }
    }

    /// Asks the device again (through `fd`, wherever it lives) when the
    /// last answer is older than [`ASK_EVERY`].
    fn refresh(&mut self, fd: Option<&tun::TapFd>) {
        if self.asked.is_some_and(|t| t.elapsed() < ASK_EVERY) {
            return;
        }
        self.asked = Some(Instant::now());
        match fd.map(|fd| ask(fd, true, None)) {
            Some(Ok(a)) => self.heard(&a),
            _ => self.flags = None,
        }
    }

    /// Drops at the device's queue since the port was opened (the last
    /// value read when the device cannot be asked right now).
    fn overflow(&mut self, fd: Option<&tun::TapFd>) -> u64 {
        self.refresh(fd);
        self.before + self.last.saturating_sub(self.base)
    }

    /// The device's flags where it lives.
    fn flags(&mut self, fd: Option<&tun::TapFd>) -> Option<u32> {
        self.refresh(fd);
        self.flags
    }

    /// A (new) device is attached; `a` is what it said.
    fn attached(&mut self, a: Option<&Asked>) {
        self.before += self.last.saturating_sub(self.base);
        let now = a.and_then(|a| a.tx_dropped).unwrap_or(0);
        self.base = now;
        self.last = now;
        self.at = a.map(|a| (a.ns, a.ifindex));
        self.flags = a.map(|a| a.flags);
        self.asked = Some(Instant::now());
    }
}

/// The extra queues of a primary queue's device, as the primary hands them
/// out: when it attaches a new device it opens a fresh fd for each queue
/// here and bumps `epoch`; a queue takes its fd at its next upkeep.
#[derive(Debug, Default)]
struct QueueSlots {
    epoch: AtomicU64,
    fds: Mutex<Vec<Option<tun::TapFd>>>,
    /// Whether the device's frames go to the worker on the sending CPU
    /// (see `port::steering`), fed by every queue.
    gate: Gate,
}

/// What makes a [`TapPort`] one of the extra queues of another's device.
#[derive(Debug)]
struct ExtraQueue {
    /// Its slot in the primary's [`QueueSlots`].
    index: usize,
    /// The slots' epoch its fd belongs to.
    epoch: u64,
}

/// A TAP port.
#[derive(Debug)]
pub struct TapPort {
    cfg: TapConfig,
    dev: Device<tun::TapFd>,
    /// We created the device (now or before a crash, as its record says):
    /// recreate it when lost, remove it when the port goes.
    owner: bool,
    /// The port was deleted (not just closed at exit): a device we created
    /// goes with it even when devices are kept at exit.
    deleted: bool,
    /// What the record in the run directory says now.
    recorded: Option<Record>,
    /// The namespace our fd was opened in, when it is not ours (we
    /// re-attached inside a VM's namespace), and where it was last seen
    /// held by someone else. Such an fd keeps that namespace alive: when
    /// nothing else does any more (the VM was destroyed), the port lets go,
    /// as it would of a deleted device.
    held: Option<(NsId, Option<std::path::PathBuf>)>,
    mtu: u32,
    life: LinkLife,
    c: Counters,
    kernel: Mutex<Kernel>,
    overflow: Vec<u8>,
    scratch: Vec<u8>,
    /// Batched I/O through io_uring; `None`: one read/write per frame.
    uring: Option<Box<Uring>>,
    /// The queues opened for other workers (a primary), or the primary's
    /// (an extra queue).
    slots: Arc<QueueSlots>,
    /// Set on an extra queue.
    extra: Option<ExtraQueue>,
}

/// Opens another queue of the device `fd` is a queue of, where the device
/// lives now; `Ok(None)` when the device is single-queue.
fn open_queue_fd(fd: &tun::TapFd) -> io::Result<Option<tun::TapFd>> {
    if !fd.multi_queue() {
        return Ok(None);
    }
    let ns = netns::of_tun(fd.as_fd())?;
    let ours = NetNs::current()?;
    if ns.id() == ours.id() {
        return tun::open_queue(fd, OFFLOADS).map(Some);
    }
    // The new fd must be opened in the device's namespace (TUNSETIFF
    // looks the name up where /dev/net/tun was opened).
    ns.run_in(|| tun::open_queue(fd, OFFLOADS)).map(Some)
}

/// Tolerates "no such device" from a name-based call in our namespace: the
/// kernel side may already have been moved away; the fd works regardless.
fn moved(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if netdev::is_no_device(&e) => Ok(()),
        r => r,
    }
}

/// Creates TAP `cfg.name` in our namespace, persistent, brought up, with
/// the MTU asked for; true with it when the device is new (not one of ours
/// left persistent in our namespace).
fn create(cfg: &TapConfig) -> io::Result<(tun::TapFd, bool)> {
    let mut fd = tun::open_tap(&cfg.name, cfg.vnet_hdr, OFFLOADS)?;
    let fresh = !fd.persistent();
    if fresh {
        tun::set_persist(&mut fd, true)?;
    }
    let name = fd.name().to_string();
    if let Some(m) = cfg.mtu_request {
        moved(netdev::set_mtu(&name, m))?;
    }
    moved(netdev::set_up(&name, true))?;
    Ok((fd, fresh))
}

/// Attaches to TAP `name` in namespace `ns` if it exists there (by name,
/// or by `ifindex` when it was renamed). Never creates: TUNSETIFF would
/// create a device under a name the namespace does not know, so the name
/// is checked first. `Ok(None)`: not there.
fn attach_in(ns: &NetNs, cfg: &TapConfig, ifindex: Option<u32>) -> io::Result<Option<tun::TapFd>> {
    let found = ns.run_in(|| {
        let ctl = netdev::Ctl::new()?;
        let name = match ctl.ifindex(&cfg.name) {
            Ok(_) => Some(cfg.name.clone()),
            Err(e) if netdev::is_no_device(&e) => ifindex.and_then(|i| ctl.name_of(i).ok()),
            Err(e) => return Err(e),
        };
        match name {
            Some(n) => Ok(Some((n, tun::open_dev()?))),
            None => Ok(None),
        }
    })?;
    match found {
        Some((name, file)) => tun::set_iff(file, &name, cfg.vnet_hdr, OFFLOADS).map(Some),
        None => Ok(None),
    }
}

/// Finds an existing TAP for `cfg` and attaches to it where it lives: in
/// our namespace; and for a TAP a port of ours used before a restart
/// (`rec`), in the namespace its record remembers, then in every named
/// namespace. `Ok(None)`
/// when there is none; an error when our namespace (or the remembered one)
/// has a device of that name that refused (not a TAP, held by someone).
///
/// The scan of named namespaces covers a device moved after its record was
/// last written (a crash right after the move). It is only done for a TAP
/// we know we used: a fresh port never takes a same-named device from
/// some other namespace, and a TAP another live process holds refuses a
/// second fd (EBUSY), so it is never taken from it either.
fn locate(cfg: &TapConfig, rec: Option<&Record>) -> io::Result<Option<tun::TapFd>> {
    let ours = NetNs::current()?;
    if let Some(fd) = attach_in(&ours, cfg, None)? {
        return Ok(Some(fd));
    }
    let Some(rec) = rec else {
        return Ok(None);
    };
    let remembered = rec
        .netns
        .filter(|id| *id != ours.id())
        .and_then(|id| netns::find(id, rec.netns_name.as_deref()));
    if let Some(ns) = &remembered {
        if let Some(fd) = attach_in(ns, cfg, rec.ifindex)? {
            return Ok(Some(fd));
        }
    }
    let skip = remembered.as_ref().map(|ns| ns.id());
    for (_, path) in netns::named() {
        let Ok(ns) = NetNs::open(&path) else {
            continue;
        };
        if ns.id() == ours.id() || Some(ns.id()) == skip {
            continue;
        }
        match attach_in(&ns, cfg, None) {
            Ok(Some(fd)) => return Ok(Some(fd)),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(port = %cfg.name, ns = %path.display(), "not taking a device there: {e}")
            }
        }
    }
    Ok(None)
}

/// Smallest number of reads one batched receive submits.
const RX_MIN_READS: usize = 4;

/// Most reads one submission holds: each needs an overflow area of
/// [`MAX_FRAME`] bytes for a super-packet, 512 KiB per queue for 8, and
/// a batch of 32 frames still costs 4 syscalls instead of 32.
const RX_READS_PER_CALL: usize = 8;

/// Up to this many frames per call a batched port reads and writes one
/// frame per syscall instead: the ring saves nothing there, and on this
/// kernel a frame through it took longer to arrive than one written
/// directly (p50 at 30k pps: about 100 us against 50 us, for the bare
/// forwarder as for vswitchd).
const SMALL_BATCH: usize = 2;

/// The state of a port's batched I/O ([`TapIo::Uring`]): the ring, and
/// what each read of a batch reads into besides its pool buffer.
struct Uring {
    ring: uring::Batcher,
    /// Per read of a batch: its virtio-net header.
    hdrs: Vec<[u8; vnet::LEN]>,
    /// Per read of a submission: where a frame longer than the pool
    /// buffer (a TSO super-packet) goes on, [`MAX_FRAME`] bytes each
    /// (Open vSwitch keeps such areas per queue too, one per frame of a
    /// batch).
    overflow: Vec<u8>,
    /// The pool buffers of the batch being read.
    stage: Vec<PacketBuf>,
    /// Per write of a batch: whether it is submitted (a packet whose
    /// header cannot be made is counted and skipped).
    send: Vec<bool>,
    /// The results of the last batch.
    out: uring::Results,
    /// How many reads the next receive submits: doubles while every read
    /// finds a frame, follows what was found otherwise, so an idle port
    /// costs a few reads, not a batch of them. At [`RX_MIN_READS`] (the
    /// last receive found at most [`SMALL_BATCH`] frames) the port reads
    /// one frame per syscall until a receive finds more.
    want: usize,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring").field("want", &self.want).finish()
    }
}

/// Warns once per process that TAP ports fall back to read/write.
static URING_WARNED: std::sync::Once = std::sync::Once::new();

impl Uring {
    /// The batched I/O for a port configured with `cfg`: `None` with
    /// `tap_io=readwrite`, or when io_uring cannot be set up here (warned
    /// once; the port then reads and writes one frame per syscall).
    fn for_port(cfg: &TapConfig) -> Option<Box<Uring>> {
        if cfg.io != TapIo::Uring {
            return None;
        }
        match uring::Batcher::new() {
            Ok(ring) => Some(Box::new(Uring {
                ring,
                hdrs: vec![[0; vnet::LEN]; MAX_BURST],
                // Written once here, so that its pages are resident from
                // the start: the port's memory does not grow later as
                // super-packets reach more of the areas.
                overflow: vec![0xff; RX_READS_PER_CALL * MAX_FRAME],
                stage: Vec::with_capacity(MAX_BURST),
                send: Vec::with_capacity(MAX_BURST),
                out: Vec::with_capacity(MAX_BURST),
                want: RX_MIN_READS,
            })),
            Err(e) => {
                URING_WARNED.call_once(|| {
                    tracing::warn!(
                        "io_uring unavailable ({e}): TAP ports read and write one frame per syscall"
                    )
                });
                None
            }
        }
    }
}

impl TapPort {
    /// Opens TAP `cfg.name`: attaches to it where it lives when it exists
    /// (ours from before a restart, or someone else's persistent TAP),
    /// creates it in our namespace otherwise; non-blocking, brought up.
    pub fn open(cfg: TapConfig) -> Result<TapPort, Error> {
        let rec = persist::load(&cfg.name);
        let found = locate(&cfg, rec.as_ref()).map_err(|e| Error::io("open tap", &cfg.name, e))?;
        let (fd, owner, how) = match found {
            // Persistent with no record of ours: someone else's. Without
            // IFF_PERSIST it would be in use by someone (and refused).
            Some(fd) => {
                let owner = rec.as_ref().is_some_and(|r| r.ours);
                (
                    fd,
                    owner,
                    if owner {
                        "re-attached to"
                    } else {
                        "attached to"
                    },
                )
            }
            None => {
                let (fd, fresh) =
                    create(&cfg).map_err(|e| Error::io("create tap", &cfg.name, e))?;
                (fd, true, if fresh { "created" } else { "re-attached to" })
            }
        };
        let uring = Uring::for_port(&cfg);
        let mut p = TapPort {
            life: LinkLife::new(&cfg.name),
            cfg,
            dev: Device::new(None),
            recorded: rec.clone(),
            held: None,
            owner,
            deleted: false,
            mtu: 1500,
            c: Counters::default(),
            kernel: Mutex::new(Kernel::default()),
            overflow: vec![0; MAX_FRAME],
            scratch: Vec::new(),
            uring,
            slots: Arc::default(),
            extra: None,
        };
        p.install(fd, how == "created")
            .map_err(|e| Error::io("set up tap", &p.cfg.name, e))?;
        let k = p.kernel.lock();
        let where_ = k.at.map(|(ns, _)| ns);
        drop(k);
        let elsewhere = where_.is_some() && where_ != NetNs::current().ok().map(|n| n.id());
        tracing::info!(
            port = %p.cfg.name,
            vnet_hdr = p.cfg.vnet_hdr,
            mtu = p.mtu,
            io = ?p.io(),
            "{how} tap {}{}",
            p.cfg.name,
            if elsewhere { " (in another network namespace)" } else { "" }
        );
        Ok(p)
    }

    /// Takes over the TAP queue `fd` that the previous vswitchd handed over
    /// (see [`Port::handover_fds`]): nothing is created or reconfigured,
    /// the device keeps its reader throughout, wherever it lives. The fd
    /// must be the TAP `cfg.name` with the same vnet_hdr setting; whether
    /// the device is ours comes from its record, as on a restart.
    pub fn adopt(cfg: TapConfig, fd: std::os::fd::OwnedFd) -> Result<TapPort, Error> {
        let fd = tun::adopt(fd).map_err(|e| Error::io("adopt tap", &cfg.name, e))?;
        if fd.name() != cfg.name || fd.vnet_hdr() != cfg.vnet_hdr {
            return Err(Error::config(
                &cfg.name,
                format!(
                    "handed-over fd is TAP {} (vnet_hdr {}), not {} (vnet_hdr {})",
                    fd.name(),
                    fd.vnet_hdr(),
                    cfg.name,
                    cfg.vnet_hdr
                ),
            ));
        }
        let rec = persist::load(&cfg.name);
        let uring = Uring::for_port(&cfg);
        let mut p = TapPort {
            life: LinkLife::new(&cfg.name),
            owner: rec.as_ref().is_some_and(|r| r.ours),
            recorded: rec,
            cfg,
            dev: Device::new(None),
            held: None,
            deleted: false,
            mtu: 1500,
            c: Counters::default(),
            kernel: Mutex::new(Kernel::default()),
            overflow: vec![0; MAX_FRAME],
            scratch: Vec::new(),
            uring,
            slots: Arc::default(),
            extra: None,
        };
        p.install(fd, false)
            .map_err(|e| Error::io("adopt tap", &p.cfg.name, e))?;
        tracing::info!(port = %p.cfg.name, mtu = p.mtu, "took over tap {}", p.cfg.name);
        Ok(p)
    }

    /// Takes `fd` as the port's device: finds its namespace, applies the
    /// queue length, reads the MTU, remembers where it is.
    /// `fresh`: we created the device just now, so a failure removes it.
    fn install(&mut self, mut fd: tun::TapFd, fresh: bool) -> io::Result<()> {
        let asked = match ask(&fd, true, self.cfg.txqueuelen) {
            Ok(a) => Some(a),
            Err(e) if self.cfg.txqueuelen.is_some() => {
                if fresh {
                    // Closing it without IFF_PERSIST removes it.
                    let _ = tun::set_persist(&mut fd, false);
                }
                return Err(e);
            }
            Err(e) => {
                // Kernels before 5.2 have no TUNGETDEVNETNS: the port works,
                // only what needs the device's namespace is unavailable.
                tracing::warn!(port = %self.cfg.name, "cannot ask the tap where it lives: {e}");
                None
            }
        };
        self.mtu = match &asked {
            Some(a) => Some(a.mtu),
            None => netdev::mtu(fd.name()).ok(),
        }
        .or(self.cfg.mtu_request)
        .unwrap_or(1500);
        // The fd was opened where the device is now (see `attach_in`).
        let ours = NetNs::current().ok().map(|n| n.id());
        self.held = asked
            .as_ref()
            .filter(|a| Some(a.ns) != ours)
            .map(|a| (a.ns, None));
        // A device gets the busy steering program, replacing any a process
        // that held it before left (a crash, a restart, an upgrade); without
        // steering, it loses that one and the kernel chooses (a kernel
        // without steering refuses, which changes nothing).
        match steering::installed().and_then(|s| s.prog(Mode::Busy)) {
            Some(busy) if fd.multi_queue() => self.slots.gate.reset(|_| {
                steer::set_steering(fd.as_fd(), Some(busy))?;
                tracing::debug!(port = %self.cfg.name, "tap: busy steering program");
                Ok(())
            }),
            _ => {
                if fd.multi_queue() {
                    let _ = steer::set_steering(fd.as_fd(), None);
                }
                self.slots.gate.hold();
            }
        }
        self.dev.replace(fd);
        self.kernel.lock().attached(asked.as_ref());
        self.remember();
        self.refill_queues();
        Ok(())
    }

    /// Counts `n` frames received on this queue toward its device's
    /// steering gate (one atomic add per batch), which may end steering by
    /// CPU through this queue's fd.
    fn steer_count(&self, n: usize) {
        if n == 0 {
            return;
        }
        let (Some(s), Some(fd)) = (steering::installed(), self.dev.get()) else {
            return;
        };
        self.slots.gate.received(n, |mode| {
            steer::set_steering(fd.as_fd(), s.prog(mode))?;
            tracing::debug!(port = %self.cfg.name, "tap busy: its frames go by flow hash");
            Ok(())
        });
    }

    /// The primary's look at its device's rate: a quiet multi-queue device
    /// is steered by CPU (see `port::steering`).
    fn steer_look(&self, now: Instant) {
        let (Some(s), Some(fd)) = (steering::installed(), self.dev.get()) else {
            return;
        };
        self.slots.gate.look(now, |mode| {
            steer::set_steering(fd.as_fd(), s.prog(mode))?;
            tracing::debug!(port = %self.cfg.name, "tap quiet: its pings, ARP and DNS/DHCP/NTP go to the worker on the sending CPU");
            Ok(())
        });
    }

    /// A new device is attached: opens a fresh queue of it for each extra
    /// queue handed out before (none when it is single-queue).
    fn refill_queues(&mut self) {
        let Some(fd) = self.dev.get() else {
            return;
        };
        let mut fds = self.slots.fds.lock();
        if fds.is_empty() {
            return;
        }
        for slot in fds.iter_mut() {
            *slot = match open_queue_fd(fd) {
                Ok(q) => q,
                Err(e) => {
                    tracing::warn!(port = %self.cfg.name, "cannot open another queue of the tap: {e}");
                    None
                }
            };
        }
        self.slots.epoch.fetch_add(1, Ordering::Release);
    }

    /// Another queue of this port's device, for another datapath worker
    /// (see the module docs). `Ok(None)`: this is an extra queue itself,
    /// the port is down, or the device is single-queue.
    pub fn queue(&self) -> Result<Option<TapPort>, Error> {
        if self.extra.is_some() {
            return Ok(None);
        }
        let Some(fd) = self.dev.get() else {
            return Ok(None);
        };
        let Some(q) =
            open_queue_fd(fd).map_err(|e| Error::io("open tap queue", &self.cfg.name, e))?
        else {
            return Ok(None);
        };
        let mut fds = self.slots.fds.lock();
        fds.push(None);
        let extra = ExtraQueue {
            index: fds.len() - 1,
            epoch: self.slots.epoch.load(Ordering::Acquire),
        };
        Ok(Some(TapPort {
            life: LinkLife::quiet(&self.cfg.name),
            cfg: self.cfg.clone(),
            dev: Device::new(Some(q)),
            owner: false,
            deleted: false,
            recorded: None,
            held: None,
            mtu: self.mtu,
            c: Counters::default(),
            kernel: Mutex::new(Kernel::default()),
            overflow: vec![0; MAX_FRAME],
            scratch: Vec::new(),
            uring: Uring::for_port(&self.cfg),
            slots: self.slots.clone(),
            extra: Some(extra),
        }))
    }

    /// An extra queue's upkeep: takes the fd the primary opened on a new
    /// device, lets go of the old device's, notices its own fd's device
    /// gone.
    fn queue_housekeeping(&mut self) {
        let Some(extra) = &mut self.extra else {
            return;
        };
        let epoch = self.slots.epoch.load(Ordering::Acquire);
        if epoch != extra.epoch {
            extra.epoch = epoch;
            let fd = self
                .slots
                .fds
                .lock()
                .get_mut(extra.index)
                .and_then(Option::take);
            match fd {
                Some(fd) => {
                    self.dev.replace(fd);
                    self.life.up("tap queue re-attached");
                }
                None => {
                    // Closed now, not kept: the primary already has its
                    // new device, and this fd may be all that holds the
                    // old device's namespace.
                    self.dev = Device::new(None);
                    self.life
                        .down("the tap's device was replaced by one without this queue");
                }
            }
            return;
        }
        if self.life.probe_due(Instant::now()) {
            if let Some(Err(e)) = self.dev.get().map(|d| tun::get_iff(d.as_fd())) {
                if tun::is_gone(&e) {
                    self.lose(&e);
                }
            }
        }
    }

    /// Writes the record of the port's TAP when where it lives changed.
    fn remember(&mut self) {
        let at = self.kernel.lock().at;
        let mut rec = Record {
            ours: self.owner,
            netns: at.map(|(ns, _)| ns),
            netns_name: None,
            ifindex: at.map(|(_, i)| i),
        };
        let same =
            |r: &Record| r.ours == rec.ours && r.netns == rec.netns && r.ifindex == rec.ifindex;
        if self.recorded.as_ref().is_some_and(same) {
            return;
        }
        // Only on a change: naming it scans /run/netns.
        rec.netns_name = rec.netns.and_then(netns::name_of);
        match persist::store(&self.cfg.name, &rec) {
            Ok(()) => self.recorded = Some(rec),
            Err(e) => tracing::warn!(port = %self.cfg.name, "cannot record the tap: {e}"),
        }
    }

    /// How the port moves its frames now: [`TapIo::Readwrite`] when asked
    /// for, or when io_uring could not be set up.
    pub fn io(&self) -> TapIo {
        if self.uring.is_some() {
            TapIo::Uring
        } else {
            TapIo::Readwrite
        }
    }

    /// True when we created the device (and will remove it when the port
    /// goes, unless kept at exit).
    pub fn created(&self) -> bool {
        self.owner
    }

    /// One drop counter.
    pub fn drop_count(&self, why: PortDrop) -> u64 {
        if why == PortDrop::TapQueueOverflow {
            return self.kernel.lock().overflow(self.dev.get());
        }
        self.c.drop_count(why)
    }

    fn lose(&mut self, e: &io::Error) {
        self.dev.lose();
        self.life.down(format_args!("tap device gone ({e})"));
        if self.extra.is_none() {
            // The extra queues let go of the lost device too.
            let mut fds = self.slots.fds.lock();
            if !fds.is_empty() {
                fds.iter_mut().for_each(|s| *s = None);
                self.slots.epoch.fetch_add(1, Ordering::Release);
            }
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        let (fd, fresh) = if self.owner {
            create(&self.cfg)?
        } else {
            // Someone else's persistent TAP: only attach when it exists
            // again, never create it in its place.
            netdev::ifindex(&self.cfg.name)?;
            let fd = tun::open_tap(&self.cfg.name, self.cfg.vnet_hdr, OFFLOADS)?;
            (fd, false)
        };
        self.install(fd, fresh)
    }

    /// Follows the device into another namespace when it moved since we
    /// last looked, and keeps its record up to date. Cheap when it did not
    /// move (one ioctl); asking it in its new namespace a few more calls.
    fn follow(&mut self) {
        let Some(fd) = self.dev.get() else {
            return;
        };
        let Ok(now) = netns::of_tun(fd.as_fd()) else {
            return;
        };
        if self.kernel.lock().at.map(|(ns, _)| ns) != Some(now.id()) {
            drop(now);
            match ask(fd, false, None) {
                Ok(a) => {
                    tracing::debug!(port = %self.cfg.name, "tap seen in another namespace");
                    self.kernel.lock().heard(&a);
                }
                Err(e) => tracing::debug!(port = %self.cfg.name, "cannot follow the tap: {e}"),
            }
        }
        // Also when a query (link state, counters) saw the move first.
        self.remember();
    }

    /// True when our fd is all that keeps the namespace it was opened in
    /// (not ours) alive.
    fn orphaned(&mut self) -> bool {
        let Some((id, seen)) = &mut self.held else {
            return false;
        };
        match netns::holder(*id, seen.as_deref()) {
            Some(p) => {
                *seen = Some(p);
                false
            }
            None => true,
        }
    }

    /// The link as the device's own namespace sees it: administratively
    /// up and running (carrier). `None` when it cannot be asked.
    fn device_up(&self) -> Option<bool> {
        let f = self.kernel.lock().flags(self.dev.get())?;
        let want = (libc::IFF_UP | libc::IFF_RUNNING) as u32;
        Some(f & want == want)
    }

    /// Receive with [`TapIo::Uring`]: batches of reads, one submission
    /// each, until the batch is full or a read finds the queue empty.
    fn recv_uring(&mut self, pool: &mut PacketPool, batch: &mut Batch) -> usize {
        let (Some(u), Some(dev)) = (self.uring.as_deref_mut(), self.dev.get()) else {
            return 0;
        };
        let vnet_hdr = self.cfg.vnet_hdr;
        let mut n = 0;
        let mut gone = None;
        let mut refused = false;
        while !batch.is_full() {
            let k = batch.free().min(u.want).clamp(1, RX_READS_PER_CALL);
            u.stage.extend((0..k).map(|_| pool.get()));
            let reads = u
                .stage
                .iter_mut()
                .zip(u.hdrs.iter_mut())
                .zip(u.overflow.chunks_mut(MAX_FRAME))
                .map(|((p, h), o)| {
                    let h: &mut [u8] = if vnet_hdr { h } else { &mut [] };
                    [h, p.rx_area(), o]
                });
            u.ring.read_each(dev.as_fd(), reads, &mut u.out);
            let mut got = 0;
            let mut dry = false;
            let stage = u.stage.drain(..);
            for (i, (mut p, r)) in stage.zip(u.out.drain(..)).enumerate() {
                let len = match r {
                    Ok(len) if vnet_hdr => len.checked_sub(vnet::LEN),
                    Ok(len) => Some(len),
                    Err(e) => {
                        pool.put(p);
                        match e.kind() {
                            io::ErrorKind::WouldBlock => dry = true,
                            io::ErrorKind::Interrupted => {}
                            _ if tun::is_gone(&e) => gone = Some(e),
                            _ if uring::refused(&e) => {
                                // Nothing was read: the frame waits for
                                // the read/write path.
                                refused = true;
                                dry = true;
                            }
                            _ => {
                                self.c.stats.rx_errors += 1;
                                dry = true;
                            }
                        }
                        continue;
                    }
                };
                let over = u.overflow.get(i * MAX_FRAME..(i + 1) * MAX_FRAME);
                let ok = match (len, over) {
                    (Some(len), Some(over)) => {
                        super::finish_rx(&mut p, len, over);
                        let hdr = u.hdrs.get(i).copied().unwrap_or_default();
                        !vnet_hdr || VnetHdr::parse(&hdr).apply_to(&mut p.meta).is_ok()
                    }
                    _ => false,
                };
                if !ok {
                    // A header we did not negotiate: drop the frame.
                    self.c.rx_invalid();
                    pool.put(p);
                    continue;
                }
                got += 1;
                self.c.rx(p.len());
                match batch.push(p) {
                    Ok(()) => n += 1,
                    Err(p) => pool.put(p),
                }
            }
            u.want = if got == k {
                2 * got.max(u.want / 2)
            } else {
                2 * got
            }
            .clamp(RX_MIN_READS, MAX_BURST);
            if dry || gone.is_some() || got < k {
                break;
            }
        }
        if let Some(e) = gone {
            self.lose(&e);
        }
        if refused {
            self.give_up_uring();
        }
        n
    }

    /// The kernel refused non-blocking requests through the ring on this
    /// device (a kernel whose TAP does not take `RWF_NOWAIT`): the port
    /// reads and writes one frame per syscall from now on. Nothing is in
    /// flight between batches, so the ring can go at once.
    fn give_up_uring(&mut self) {
        self.uring = None;
        tracing::warn!(
            port = %self.cfg.name,
            "the TAP refuses non-blocking io_uring requests: one read or write per frame from now on"
        );
    }

    /// Transmit with [`TapIo::Uring`]: one submission for each run of
    /// packets that go out as one write each; a super-packet that must be
    /// segmented in software (no vnet_hdr) goes through
    /// [`TapPort::send_segments`] between runs. A write the device cannot
    /// take now is dropped as `tx_queue_full` (the writes after it in the
    /// same submission may already be out, so it cannot wait in the batch
    /// without reordering); a TAP only refuses one when its socket send
    /// buffer is full, which is unlimited unless someone set one.
    fn send_uring(&mut self, batch: &mut Batch) -> Result<(), UringStop> {
        let vnet_hdr = self.cfg.vnet_hdr;
        let pkts = batch.as_mut_slice();
        let mut at = 0;
        while at < pkts.len() {
            let (Some(u), Some(dev)) = (self.uring.as_deref_mut(), self.dev.get()) else {
                return Ok(());
            };
            // Headers and checksums first (they need the packet mutably),
            // up to a packet that needs segmenting. The virtio-net header
            // goes into the packet's headroom, so each write is one
            // contiguous buffer.
            u.send.clear();
            let mut segment = false;
            let mut refused = false;
            for p in pkts[at..].iter_mut().take(MAX_BURST) {
                let ok = if vnet_hdr {
                    match vnet::header_for(p) {
                        Ok(v) => {
                            p.push_front(vnet::LEN).copy_from_slice(&v.emit());
                            true
                        }
                        Err(_) => false,
                    }
                } else if p.meta.gso != Gso::None {
                    segment = true;
                    break;
                } else {
                    gso::complete_checksum(p).is_ok()
                };
                u.send.push(ok);
            }
            let run = &pkts[at..at + u.send.len()];
            let writes = run
                .iter()
                .zip(u.send.iter())
                .filter(|(_, ok)| **ok)
                .map(|(p, _)| [p.data(), &[][..]]);
            u.ring.write_each(dev.as_fd(), writes, &mut u.out);
            let mut results = u.out.drain(..);
            for (i, (p, &ok)) in run.iter().zip(u.send.iter()).enumerate() {
                let r = if ok { results.next() } else { None };
                match r {
                    None => self.c.tx_error(1),
                    Some(Ok(_)) => {
                        self.c
                            .tx(p.len().saturating_sub(if vnet_hdr { vnet::LEN } else { 0 }))
                    }
                    Some(Err(e)) if uring::refused(&e) => {
                        self.c.tx_error(1);
                        refused = true;
                    }
                    Some(Err(e)) => match Self::write_failed(&mut self.c, e, 1) {
                        TxFlow::Next => {}
                        TxFlow::Stop => self.c.tx_drop(PortDrop::TxQueueFull, 1),
                        TxFlow::Gone(e) => return Err(UringStop::Gone(e, at + i)),
                    },
                }
            }
            drop(results);
            at += run.len();
            if refused {
                self.give_up_uring();
                return Err(UringStop::Refused(at));
            }
            if segment {
                if let Some(p) = pkts.get(at) {
                    if let TxFlow::Gone(e) = self.send_segments(p) {
                        return Err(UringStop::Gone(e, at));
                    }
                }
                at += 1;
            }
        }
        Ok(())
    }

    /// Receive with one read per frame, until the batch is full or the fd
    /// runs dry: [`TapIo::Readwrite`], and a batched port while frames
    /// come one or two at a time (a submission of several reads would
    /// find the rest empty, and the ring costs latency there; see the
    /// README's performance notes).
    fn recv_each(&mut self, pool: &mut PacketPool, batch: &mut Batch) -> usize {
        let mut n = 0;
        while !batch.is_full() && self.dev.get().is_some() {
            let mut p = pool.get();
            match self.read_frame(&mut p) {
                Ok(len) => {
                    self.c.rx(len);
                    match batch.push(p) {
                        Ok(()) => n += 1,
                        Err(p) => pool.put(p),
                    }
                }
                Err(e) => {
                    pool.put(p);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => continue,
                        io::ErrorKind::InvalidData => {
                            // A header we did not negotiate: drop the frame.
                            self.c.rx_invalid();
                            continue;
                        }
                        _ if tun::is_gone(&e) => {
                            self.lose(&e);
                            break;
                        }
                        _ => {
                            self.c.stats.rx_errors += 1;
                            break;
                        }
                    }
                }
            }
        }
        n
    }

    /// Transmit: in batches through the ring when there is one and the
    /// batch has more than a frame or two, one write per frame otherwise.
    fn send(&mut self, batch: &mut Batch, pool: &mut PacketPool) -> Result<usize, Error> {
        let total = batch.len();
        if self.dev.get().is_none() {
            self.c.tx_drop(PortDrop::PortDown, total as u64);
            batch.recycle(pool);
            return Ok(total);
        }
        let mut done = 0;
        if self.uring.is_some() && total > SMALL_BATCH {
            let rest = match self.send_uring(batch) {
                Ok(()) => None,
                Err(UringStop::Gone(e, at)) => {
                    self.lose(&e);
                    self.c
                        .tx_drop(PortDrop::PortDown, total.saturating_sub(at) as u64);
                    None
                }
                Err(UringStop::Refused(at)) => Some(at),
            };
            match rest {
                // The rest goes one write at a time, below.
                Some(at) if at < total => done = at,
                _ => {
                    batch.recycle(pool);
                    return Ok(total);
                }
            }
        }
        while done < total {
            let flow = match batch.as_mut_slice().get_mut(done) {
                Some(p) => self.send_one(p),
                None => break,
            };
            match flow {
                TxFlow::Next => done += 1,
                TxFlow::Stop => break,
                TxFlow::Gone(e) => {
                    self.lose(&e);
                    self.c.tx_drop(PortDrop::PortDown, (total - done) as u64);
                    done = total;
                }
            }
        }
        batch.consume_front(done, pool);
        Ok(done)
    }

    /// Reads one frame into `p`; returns the frame length.
    fn read_frame(&mut self, p: &mut PacketBuf) -> io::Result<usize> {
        let Some(dev) = self.dev.get() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let mut f = dev.file();
        let mut hdr = [0u8; vnet::LEN];
        let area = p.rx_area();
        let n = if self.cfg.vnet_hdr {
            let mut iov = [
                IoSliceMut::new(&mut hdr),
                IoSliceMut::new(area),
                IoSliceMut::new(&mut self.overflow),
            ];
            f.read_vectored(&mut iov)?
                .checked_sub(vnet::LEN)
                .ok_or(io::ErrorKind::InvalidData)?
        } else {
            let mut iov = [IoSliceMut::new(area), IoSliceMut::new(&mut self.overflow)];
            f.read_vectored(&mut iov)?
        };
        super::finish_rx(p, n, &self.overflow);
        if self.cfg.vnet_hdr && VnetHdr::parse(&hdr).apply_to(&mut p.meta).is_err() {
            return Err(io::ErrorKind::InvalidData.into());
        }
        Ok(n)
    }

    fn write_one(&mut self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.dev.get() {
            Some(d) => d.file().write_vectored(iov),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Maps a write error to the flow and counts it.
    fn write_failed(c: &mut Counters, e: io::Error, frames: u64) -> TxFlow {
        if e.kind() == io::ErrorKind::WouldBlock {
            return TxFlow::Stop;
        }
        if tun::is_gone(&e) {
            return TxFlow::Gone(e);
        }
        if e.raw_os_error() == Some(libc::EIO) {
            // The kernel side is administratively down (the VM or the
            // namespace has not brought its interface up).
            c.tx_drop(PortDrop::PortDown, frames);
        } else {
            c.tx_error(frames);
        }
        TxFlow::Next
    }

    fn send_one(&mut self, pkt: &mut PacketBuf) -> TxFlow {
        let r = if self.cfg.vnet_hdr {
            let Ok(h) = vnet::header_for(pkt) else {
                self.c.tx_error(1);
                return TxFlow::Next;
            };
            self.write_one(&[IoSlice::new(&h.emit()), IoSlice::new(pkt.data())])
        } else if pkt.meta.gso != Gso::None {
            return self.send_segments(pkt);
        } else if gso::complete_checksum(pkt).is_err() {
            self.c.tx_error(1);
            return TxFlow::Next;
        } else {
            self.write_one(&[IoSlice::new(pkt.data())])
        };
        match r {
            Ok(_) => {
                self.c.tx(pkt.len());
                TxFlow::Next
            }
            Err(e) => Self::write_failed(&mut self.c, e, 1),
        }
    }

    /// Software segmentation for a TAP without vnet_hdr: each segment is
    /// built in a scratch buffer and written; a packet is never left half
    /// sent in the batch (what did not go is counted as dropped).
    fn send_segments(&mut self, pkt: &PacketBuf) -> TxFlow {
        let s = match Segmenter::new(pkt.data(), pkt.meta.gso) {
            Ok(s) => s,
            Err(_) => {
                self.c.tx_error(1);
                return TxFlow::Next;
            }
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut flow = TxFlow::Next;
        for i in 0..s.count() {
            let len = s.segment_len(i);
            if scratch.len() < len {
                scratch.resize(len, 0);
            }
            let r = s
                .write(pkt.data(), i, &mut scratch)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
                .and_then(|n| self.write_one(&[IoSlice::new(&scratch[..n])]).map(|_| n));
            match r {
                Ok(n) => self.c.tx(n),
                Err(e) => {
                    let left = (s.count() - i) as u64;
                    flow = match Self::write_failed(&mut self.c, e, left) {
                        TxFlow::Stop => {
                            self.c.tx_drop(PortDrop::TxQueueFull, left);
                            TxFlow::Next
                        }
                        f => f,
                    };
                    break;
                }
            }
        }
        self.scratch = scratch;
        flow
    }
}

impl Port for TapPort {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn kind(&self) -> &'static str {
        "tap"
    }

    fn recv_batch(&mut self, pool: &mut PacketPool, batch: &mut Batch) -> Result<usize, Error> {
        if self.uring.as_ref().is_some_and(|u| u.want > RX_MIN_READS) {
            let n = self.recv_uring(pool, batch);
            self.steer_count(n);
            return Ok(n);
        }
        let n = self.recv_each(pool, batch);
        self.steer_count(n);
        if let Some(u) = self.uring.as_deref_mut() {
            // Frames came faster than one or two per call: batches from
            // the next call on.
            if n > SMALL_BATCH {
                u.want = (2 * n).clamp(RX_MIN_READS + 1, MAX_BURST);
            }
        }
        Ok(n)
    }

    fn send_batch(&mut self, batch: &mut Batch, pool: &mut PacketPool) -> Result<usize, Error> {
        self.send(batch, pool)
    }

    fn stats(&self) -> PortStats {
        let mut s = self.c.stats.clone();
        if self.extra.is_some() {
            // The device's own counters are the primary's to report.
            return s;
        }
        // Frames for us the kernel dropped before we could read them.
        s.rx_dropped += self.kernel.lock().overflow(self.dev.get());
        s
    }

    fn drops(&self) -> Vec<(PortDrop, u64)> {
        if self.extra.is_some() {
            return self.c.drops();
        }
        let n = self.kernel.lock().overflow(self.dev.get());
        self.c.drops_with([(PortDrop::TapQueueOverflow, n)])
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }

    fn steering(&self) -> Option<steering::Steered> {
        // The device's; every queue shares the gate.
        self.dev
            .get()
            .filter(|fd| fd.multi_queue())
            .map(|_| self.slots.gate.steered())
    }

    fn link_state(&self) -> LinkState {
        if !self.life.is_up() || (self.extra.is_some() && self.dev.get().is_none()) {
            return LinkState::Down;
        }
        if self.extra.is_some() {
            // Whether the device is up is the primary's to ask.
            return LinkState::Up;
        }
        // Asked of the device where it lives; when it cannot be asked (a
        // kernel without TUNGETDEVNETNS, a move not followed yet) the fd
        // still works, which is what "up" meant before.
        match self.device_up() {
            Some(false) => LinkState::Down,
            _ => LinkState::Up,
        }
    }

    fn poll_fd(&self) -> Option<RawFd> {
        self.dev.get().map(|d| d.as_fd().as_raw_fd())
    }

    fn link_downs(&self) -> u64 {
        self.life.downs()
    }

    fn handover_fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        if self.extra.is_some() {
            // The new process opens its own extra queues.
            return Vec::new();
        }
        self.dev.get().map(|d| d.as_fd()).into_iter().collect()
    }

    fn on_delete(&mut self) {
        self.deleted = true;
    }

    fn open_queue(&self) -> Result<Option<Box<dyn Port>>, Error> {
        Ok(self.queue()?.map(|q| Box::new(q) as Box<dyn Port>))
    }

    fn housekeeping(&mut self) {
        if self.extra.is_some() {
            self.queue_housekeeping();
            return;
        }
        let now = Instant::now();
        self.steer_look(now);
        if self.life.probe_due(now) {
            // No traffic may have told us: ask the fd (never the name).
            if let Some(Err(e)) = self.dev.get().map(|d| tun::get_iff(d.as_fd())) {
                if tun::is_gone(&e) {
                    self.lose(&e);
                    return;
                }
            }
            if self.orphaned() {
                let e = io::Error::other("its network namespace is gone, only our fd held it");
                self.lose(&e);
                return;
            }
            self.follow();
            return;
        }
        if !self.life.retry_due(now) {
            return;
        }
        match self.reopen() {
            Ok(()) => {
                let how = if self.created() {
                    "tap recreated"
                } else {
                    "tap re-attached"
                };
                self.life.up(how);
            }
            Err(e) => self.life.retry_failed(now, e),
        }
    }
}

impl Drop for TapPort {
    fn drop(&mut self) {
        if self.extra.is_some() {
            // The device and its record are the primary's.
            return;
        }
        if !self.owner {
            // Someone else's: closing our fd leaves it as it was.
            if self.deleted {
                persist::remove(&self.cfg.name);
            }
            return;
        }
        if persist::keep_on_exit() && !self.deleted {
            tracing::info!(port = %self.cfg.name, "keeping the tap we created");
            return;
        }
        tracing::info!(port = %self.cfg.name, "removing tap we created");
        persist::remove(&self.cfg.name);
        // Without IFF_PERSIST, closing the last fd removes the device,
        // wherever it lives now.
        if let Some(fd) = self.dev.get_mut() {
            if let Err(e) = tun::set_persist(fd, false) {
                tracing::warn!(port = %self.cfg.name, "cannot remove the tap: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txqueuelen_option() {
        let c = TapConfig::from_options("t0", &[("txqueuelen", "16")]).unwrap();
        assert_eq!(c.txqueuelen, Some(16));
        assert_eq!(TapConfig::new("t0").txqueuelen, None);
        for bad in ["0", "-1", "x", "1000001", ""] {
            assert!(
                TapConfig::from_options("t0", &[("txqueuelen", bad)]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn tap_io_option() {
        assert_eq!(TapConfig::new("t0").io, TapIo::Uring);
        let c = TapConfig::from_options("t0", &[("tap_io", "readwrite")]).unwrap();
        assert_eq!(c.io, TapIo::Readwrite);
        let c = TapConfig::from_options("t0", &[("tap_io", "uring")]).unwrap();
        assert_eq!(c.io, TapIo::Uring);
        for bad in ["", "URING", "read"] {
            assert!(TapConfig::from_options("t0", &[("tap_io", bad)]).is_err());
        }
    }

    #[test]
    fn overflow_counts_across_devices_from_when_attached() {
        let asked = |n| Asked {
            ns: NsId { dev: 1, ino: 2 },
            ifindex: 3,
            flags: 0,
            mtu: 1500,
            tx_dropped: Some(n),
        };
        let mut k = Kernel::default();
        // Drops before we attached are not ours to report.
        k.attached(Some(&asked(40)));
        assert_eq!(k.overflow(None), 0);
        k.heard(&asked(45));
        assert_eq!(k.overflow(None), 5);
        // The device was lost and a new one (counting from 0) attached.
        k.attached(Some(&asked(0)));
        k.heard(&asked(2));
        assert_eq!(k.overflow(None), 7);
        // A device that cannot be asked keeps the last count.
        k.asked = None;
        assert_eq!(k.overflow(None), 7);
        assert_eq!(k.flags(None), None);
    }
}
