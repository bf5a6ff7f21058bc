//! vswitch-pktgen: sends stamped frames into one interface and counts them
//! on another.
//!
//! The frames come from the library's `pktgen` ring (prebuilt, stamped in
//! place); they go out by AF_PACKET with sendmmsg batches into a TAP's
//! kernel side or a veth, or as Geneve over UDP (`--geneve`), each side
//! possibly inside a network namespace (`--tx-netns`, `--rx-netns`: the
//! sending and receiving threads enter it, the rest of the process stays).
//! The receiver reads batches with recvmmsg and accounts loss,
//! reordering and latency from the stamps. `--self-test` measures the
//! generator itself through a veth pair in a private namespace.
//!
//! * [`tx`]: the sending thread (token bucket, batches, socket full).
//! * [`rx`]: the receiving thread (batches, drain at the end).
//! * [`selftest`]: the private namespace and veth pair of `--self-test`.
//! * [`cpu`]: per-thread CPU time, so every figure says how busy the
//!   generator itself was.
//! * [`bare`]: `vswitch-pktgen bare-forward`, a bench helper rather than a
//!   generator: two TAPs and nothing between them but read/write or
//!   io_uring, the yardstick for the switch's TAP-to-TAP figure.

mod bare;
mod cpu;
mod rx;
mod selftest;
mod tx;

use clap::Parser;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vswitch::pktgen::frame::{FrameSpec, Ring, Sizes, SpecError, L4};
use vswitch::pktgen::report::{Machine, Received, Report, Side};

/// Longest run `--duration` accepts, seconds.
const MAX_DURATION_S: f64 = 3600.0;

#[derive(Parser, Debug)]
#[command(
    name = "vswitch-pktgen",
    about = "Send stamped Ethernet/IP frames into an interface and count them on another: pps, Gbit/s, loss, reordering, latency",
    after_help = "Frame sizes count the 4-byte FCS (64..1518). Runs are always bounded: --duration (default 10 s, at most 3600) and --count.\n\
Examples:\n  vswitch-pktgen bare-forward --help                           # the bench helper: two TAPs, a bare read/write or io_uring forwarder\n  vswitch-pktgen --self-test                                   # the generator's own ceiling (veth pair, private namespace)\n  vswitch-pktgen --tx vm1 --tx-netns vmA --rx vm2 --rx-netns vmB --flows 10000 --duration 5 --json"
)]
struct Args {
    /// Interface to send into (AF_PACKET), e.g. a TAP's kernel side or a veth.
    #[arg(long, required_unless_present_any = ["self_test", "geneve"])]
    tx: Option<String>,
    /// Network namespace (`ip netns` name or a path) of the sending side.
    #[arg(long)]
    tx_netns: Option<String>,
    /// Interface to receive on (AF_PACKET); without it only sending is measured.
    #[arg(long)]
    rx: Option<String>,
    /// Network namespace of the receiving side.
    #[arg(long)]
    rx_netns: Option<String>,
    /// Send Geneve-encapsulated frames over UDP to REMOTE:PORT instead of AF_PACKET.
    #[arg(long, value_name = "REMOTE:PORT")]
    geneve: Option<SocketAddr>,
    /// Geneve VNI.
    #[arg(long, default_value_t = 0)]
    vni: u32,
    /// Local address for the Geneve socket (default: any, ephemeral port).
    #[arg(long, value_name = "ADDR:PORT")]
    geneve_local: Option<SocketAddr>,
    /// IPv6 frames (default IPv4).
    #[arg(long)]
    ipv6: bool,
    /// TCP segments (default UDP).
    #[arg(long)]
    tcp: bool,
    /// Frame size with FCS, 64..1518 (raised to fit headers and stamp).
    #[arg(long, default_value_t = 64)]
    size: u16,
    /// IMIX: 64, 570 and 1518-byte frames, 7:4:1 (overrides --size).
    #[arg(long)]
    imix: bool,
    /// Distinct flows (source address and port vary), 1..1000000.
    #[arg(long, default_value_t = 1)]
    flows: u32,
    /// Packets per second; 0: as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Stop after this many packets.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds (at most 3600).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Ethernet source.
    #[arg(long, default_value = "52:54:00:00:00:01", value_parser = parse_mac)]
    src_mac: [u8; 6],
    /// Ethernet destination.
    #[arg(long, default_value = "52:54:00:00:00:02", value_parser = parse_mac)]
    dst_mac: [u8; 6],
    /// First source address (default 10.0.0.1 or fd00::1).
    #[arg(long)]
    src_ip: Option<IpAddr>,
    /// Destination address (default 10.0.0.2 or fd00::2).
    #[arg(long)]
    dst_ip: Option<IpAddr>,
    /// First source port.
    #[arg(long, default_value_t = 1024)]
    sport: u16,
    /// Destination port.
    #[arg(long, default_value_t = 9)]
    dport: u16,
    /// After sending, wait this long for frames still on their way (ms).
    #[arg(long, default_value_t = 500)]
    drain_ms: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    quiet: bool,
    /// Measure the generator itself: a veth pair in a private namespace, no switch.
    #[arg(long)]
    self_test: bool,
}

/// What can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An OS call failed: what was being done, and why.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// The frames cannot be built as asked.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A command-line value is out of range.
    #[error("{0}")]
    Usage(String),
    /// A setup command (`ip`) failed.
    #[error("{cmd}: {stderr}")]
    Setup {
        /// The command line.
        cmd: String,
        /// What it printed.
        stderr: String,
    },
    /// A worker thread panicked.
    #[error("the {0} thread panicked")]
    Thread(&'static str),
}

impl Error {
    /// An `Io` error with context.
    pub fn io(what: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    }
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?}: bad byte {p:?}"))?;
    }
    Ok(m)
}

/// State the threads share with the progress line.
#[derive(Debug, Default)]
pub struct Shared {
    /// Frames the kernel took so far.
    pub sent: AtomicU64,
    /// Our frames received so far.
    pub received: AtomicU64,
    /// Set by the sender when it is done (`sent` is final then).
    pub tx_done: AtomicBool,
    /// Set on a fatal error: every thread stops.
    pub abort: AtomicBool,
}

fn spec_of(a: &Args) -> Result<FrameSpec, Error> {
    let (src, dst): (IpAddr, IpAddr) = if a.ipv6 {
        (
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
        )
    } else {
        (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]))
    };
    let spec = FrameSpec {
        src_mac: a.src_mac,
        dst_mac: a.dst_mac,
        src_ip: a.src_ip.unwrap_or(src),
        dst_ip: a.dst_ip.unwrap_or(dst),
        src_port: a.sport,
        dst_port: a.dport,
        l4: if a.tcp { L4::Tcp } else { L4::Udp },
        flows: a.flows,
        sizes: if a.imix {
            Sizes::Imix
        } else {
            Sizes::Fixed(a.size)
        },
    };
    if spec.is_ipv6() != a.ipv6 && (a.src_ip.is_some() || a.dst_ip.is_some()) {
        return Err(Error::Usage(
            "--src-ip/--dst-ip must be IPv6 addresses with --ipv6 and IPv4 without".into(),
        ));
    }
    spec.validate()?;
    Ok(spec)
}

fn run(mut a: Args) -> Result<Report, Error> {
    if !(a.duration > 0.0 && a.duration <= MAX_DURATION_S) {
        return Err(Error::Usage(format!(
            "--duration must be in (0, {MAX_DURATION_S}] seconds"
        )));
    }
    if a.vni > 0x00ff_ffff {
        return Err(Error::Usage(format!(
            "--vni must fit 24 bits (0..=16777215), got {}",
            a.vni
        )));
    }
    let spec = spec_of(&a)?;
    let ring = Ring::new(&spec)?;
    // Kept alive until the end: its drop deletes the namespace.
    let _lab = if a.self_test {
        let lab = selftest::Loopback::create()?;
        a.tx = Some(lab.tx.clone());
        a.rx = Some(lab.rx.clone());
        a.tx_netns = Some(lab.netns.clone());
        a.rx_netns = Some(lab.netns.clone());
        Some(lab)
    } else {
        None
    };
    let shared = Arc::new(Shared::default());
    let machine = cpu::MachineCpu::start();
    let epoch = Instant::now();
    let deadline = Duration::from_secs_f64(a.duration);

    let rx_handle = match &a.rx {
        Some(ifname) => Some(rx::start(
            rx::Config {
                ifname: ifname.clone(),
                netns: a.rx_netns.clone(),
                flows: spec.flows,
                drain: Duration::from_millis(a.drain_ms),
                hard_stop: deadline
                    + Duration::from_millis(a.drain_ms.saturating_mul(5))
                    + Duration::from_secs(1),
            },
            epoch,
            shared.clone(),
        )?),
        None => None,
    };
    let target = match (a.geneve, &a.tx) {
        (Some(remote), _) => tx::Target::Geneve {
            remote,
            local: a.geneve_local,
            vni: a.vni,
        },
        (None, Some(ifname)) => tx::Target::Interface(ifname.clone()),
        (None, None) => return Err(Error::Usage("--tx or --geneve is required".into())),
    };
    let tx_name = match &target {
        tx::Target::Geneve { remote, .. } => format!("geneve:{remote}"),
        tx::Target::Interface(i) => i.clone(),
    };
    let tx_handle = tx::start(
        tx::Config {
            target,
            netns: a.tx_netns.clone(),
            rate: (a.rate > 0).then_some(a.rate),
            count: a.count,
            duration: deadline,
        },
        ring,
        epoch,
        shared.clone(),
    )?;

    // The progress line, once a second, until both sides are done.
    let mut last = (0u64, 0u64);
    let mut next = Duration::from_secs(1);
    while !tx_handle.is_finished() || rx_handle.as_ref().is_some_and(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        let t = epoch.elapsed();
        if t >= next && !a.quiet {
            let s = shared.sent.load(Ordering::Relaxed);
            let r = shared.received.load(Ordering::Relaxed);
            eprintln!(
                "[{:>4.0}s] tx {:>11} pkts {:>9.1} kpps | rx {:>11} pkts {:>9.1} kpps",
                t.as_secs_f64(),
                s,
                (s - last.0) as f64 / 1e3,
                r,
                r.saturating_sub(last.1) as f64 / 1e3
            );
            last = (s, r);
            next += Duration::from_secs(1);
        }
    }
    let txr = tx_handle.join().map_err(|_| Error::Thread("sending"))??;
    let rxr = match rx_handle {
        Some(h) => Some(h.join().map_err(|_| Error::Thread("receiving"))??),
        None => None,
    };
    let secs = txr.elapsed.as_secs_f64();
    let m = machine.end();
    Ok(Report {
        mode: if a.self_test {
            "self-test"
        } else if a.geneve.is_some() {
            "geneve"
        } else {
            "afpacket"
        }
        .to_string(),
        tx: tx_name,
        rx: a.rx.clone(),
        ip_version: if spec.is_ipv6() { 6 } else { 4 },
        l4: spec.l4,
        flows: spec.flows,
        frame_sizes: spec.frame_sizes(),
        rate_pps: (a.rate > 0).then_some(a.rate),
        duration_s: secs,
        sent: Side::new(txr.packets, txr.bytes, secs),
        tx_full: txr.full,
        received: rxr
            .as_ref()
            .map(|r| Received::new(&r.account, txr.packets, secs)),
        tx_cpu: txr.cpu,
        rx_cpu: rxr.as_ref().map(|r| r.cpu),
        machine: Machine {
            cpus: m.cpus,
            busy: m.busy,
            softirq: m.softirq,
        },
    })
}

fn main() {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "bare-forward")
    {
        if let Err(e) = bare::main(std::env::args_os().skip(1)) {
            eprintln!("vswitch-pktgen bare-forward: {e}");
            std::process::exit(1);
        }
        return;
    }
    let a = Args::parse();
    let json = a.json;
    match run(a) {
        Ok(r) => {
            if json {
                match serde_json::to_string_pretty(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("vswitch-pktgen: {e}");
                        std::process::exit(1);
                    }
                }
            } else {
                print!("{}", r.text());
            }
        }
        Err(e) => {
            eprintln!("vswitch-pktgen: {e}");
            std::process::exit(1);
        }
    }
}
