//! vswitchctl: the operator's command line, in the manner of ovs-ofctl /
//! ovs-appctl / ovs-vsctl.

mod demo;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use vswitch::ctl::client;
use vswitch::ctl::proto::Request;

/// Drive a running vswitchd.
#[derive(Parser, Debug)]
#[command(name = "vswitchctl", version, about = "control a running vswitchd")]
struct Args {
    /// Control socket of the daemon (default as vswitchd; or VSWITCH_CTL).
    #[arg(long, global = true)]
    ctl: Option<PathBuf>,
    /// Print the reply as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Daemon version.
    Version,
    /// Bridges and ports.
    Show {
        /// Only this bridge.
        bridge: Option<String>,
    },
    /// Create a bridge.
    AddBr {
        /// Bridge.
        bridge: String,
    },
    /// Delete a bridge.
    DelBr {
        /// Bridge.
        bridge: String,
    },
    /// Change bridge settings: forward_bpdu=true|false, mac_aging=SECS.
    SetBridge {
        /// Bridge.
        bridge: String,
        /// key=value settings.
        #[arg(required = true)]
        options: Vec<String>,
    },
    /// Attach a port: type=dummy|tap|system|internal|geneve, ofport=N, tag=N, ...
    AddPort {
        /// Bridge.
        bridge: String,
        /// Port name.
        port: String,
        /// Options.
        options: Vec<String>,
    },
    /// Detach a port.
    DelPort {
        /// Bridge.
        bridge: String,
        /// Port name.
        port: String,
    },
    /// Change a port: tag=N, trunks=A,B, vlan_mode=M, bpdu_guard=B, enable, disable, mac_limit=N.
    SetPort {
        /// Bridge.
        bridge: String,
        /// Port name.
        port: String,
        /// Settings.
        #[arg(required = true)]
        options: Vec<String>,
    },
    /// Add a flow (ovs-ofctl syntax).
    AddFlow {
        /// Bridge.
        bridge: String,
        /// The flow.
        flow: String,
    },
    /// Add the flows of a file, all or nothing ('-' reads stdin).
    AddFlows {
        /// Bridge.
        bridge: String,
        /// File.
        file: PathBuf,
    },
    /// Modify the actions of matching flows.
    ModFlows {
        /// Bridge.
        bridge: String,
        /// Match and actions.
        flow: String,
        /// Match and priority must be identical.
        #[arg(long)]
        strict: bool,
    },
    /// Delete matching flows (all with no match).
    DelFlows {
        /// Bridge.
        bridge: String,
        /// Match.
        flow: Option<String>,
        /// Match and priority must be identical.
        #[arg(long)]
        strict: bool,
    },
    /// List flows with counters.
    DumpFlows {
        /// Bridge.
        bridge: String,
        /// Match filter.
        flow: Option<String>,
        /// Show port names instead of numbers.
        #[arg(long)]
        names: bool,
    },
    /// Port counters.
    DumpPorts {
        /// Bridge.
        bridge: String,
        /// Only this port.
        port: Option<String>,
    },
    /// Drop counters, by reason.
    DumpDrops {
        /// Bridge.
        bridge: String,
    },
    /// The datapath's cached megaflows.
    DumpDpFlows {
        /// Bridge.
        bridge: String,
    },
    /// Walk a packet through the tables (like ovs-appctl ofproto/trace).
    Trace {
        /// Bridge.
        bridge: String,
        /// The packet as a flow: in_port=p1,tcp,nw_src=10.0.0.1,...
        flow: String,
        /// A real frame in hex (then FLOW gives only in_port).
        #[arg(long)]
        packet: Option<String>,
        /// ct_state assumed after ct (default trk,new).
        #[arg(long)]
        ct_next: Option<String>,
    },
    /// Put a frame (hex) into a dummy port's receive side.
    Inject {
        /// Bridge.
        bridge: String,
        /// Port.
        port: String,
        /// Frame, hex.
        hex: String,
    },
    /// Take the frames a dummy port sent so far (hex, one per line).
    DummySent {
        /// Bridge.
        bridge: String,
        /// Port.
        port: String,
    },
    /// Write what PORT receives and sends to a pcap file (tcpdump/tshark).
    Capture {
        /// Bridge.
        bridge: String,
        /// Port.
        port: String,
        /// Stop after N frames.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after S seconds (default 10 when no --count).
        #[arg(long)]
        seconds: Option<u64>,
        /// The pcap file.
        #[arg(short = 'w', long = "write")]
        file: PathBuf,
    },
    /// Tracked connections (dpctl/dump-conntrack layout).
    DumpConntrack {
        /// Bridge.
        bridge: String,
        /// zone=N.
        zone: Option<String>,
    },
    /// Forget tracked connections.
    FlushConntrack {
        /// Bridge.
        bridge: String,
        /// zone=N.
        zone: Option<String>,
    },
    /// Conntrack counters and invalid verdicts by reason.
    CtStats {
        /// Bridge.
        bridge: String,
    },
    /// Conntrack policy: checksum=validate|skip tcp_liberal=B tcp_seq_check=B max_conns=N.
    SetCt {
        /// Bridge.
        bridge: String,
        /// Settings.
        #[arg(required = true)]
        options: Vec<String>,
    },
    /// Connection limits: default=N, zone=Z,limit=N.
    CtSetLimits {
        /// Bridge.
        bridge: String,
        /// Limits.
        #[arg(required = true)]
        options: Vec<String>,
    },
    /// Conntrack timeouts: [zone=Z] tcp_established=SECS udp_first=SECS ...
    CtSetTimeout {
        /// Bridge.
        bridge: String,
        /// Timeouts, optionally with zone=Z.
        #[arg(required = true)]
        options: Vec<String>,
    },
    /// Fragment reassembly settings and counters (dpctl/ipf-get-status).
    IpfStatus {
        /// Bridge.
        bridge: String,
    },
    /// Fragment reassembly settings: [v4|v6] enabled=B max_frags=N min_frag_size=N.
    IpfSet {
        /// Bridge.
        bridge: String,
        /// Settings.
        #[arg(required = true)]
        options: Vec<String>,
    },
    /// The MAC learning table.
    FdbShow {
        /// Bridge.
        bridge: String,
    },
    /// Forget learned MACs.
    FdbFlush {
        /// Bridge.
        bridge: String,
    },
    /// A one-minute tour (root): two VM namespaces on TAP ports of BRIDGE,
    /// a flow file, pings both ways, the counters that moved; then cleans up.
    Demo {
        /// Bridge.
        bridge: String,
        /// Flow file to load (default: the built-in flows/l2-learning.flows).
        #[arg(long)]
        flows: Option<PathBuf>,
        /// Names of the two TAP ports, NAME1,NAME2 (default dvm1-PID,dvm2-PID).
        #[arg(long, value_delimiter = ',', value_name = "NAME1,NAME2")]
        ports: Option<Vec<String>>,
        /// Pings each way.
        #[arg(long, default_value_t = 3)]
        count: u32,
        /// Keep the VMs up for SECS seconds to explore (Ctrl-C ends early).
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        keep: u64,
        /// Run even though the bridge already has ports (its flows are
        /// replaced while the demo runs).
        #[arg(long)]
        force: bool,
    },
    /// Map Geneve options to tun_metadataN: "{class=0xffff,type=0,len=4}->tun_metadata0[,...]".
    AddTlvMap {
        /// Bridge.
        bridge: String,
        /// Mappings, comma-separated.
        mappings: String,
    },
    /// Remove TLV mappings (all with none given).
    DelTlvMap {
        /// Bridge.
        bridge: String,
        /// Mappings, comma-separated.
        mappings: Option<String>,
    },
    /// Connect BRIDGE to OpenFlow controllers (tcp:IP:PORT, unix:PATH),
    /// replacing its controllers; with none, disconnect.
    SetController {
        /// Bridge.
        bridge: String,
        /// Targets.
        targets: Vec<String>,
    },
    /// Disconnect BRIDGE from its controllers.
    DelController {
        /// Bridge.
        bridge: String,
    },
    /// What BRIDGE does without a controller: standalone (NORMAL after 3
    /// inactivity probes, 15 s by default) or secure (keep the flows).
    SetFailMode {
        /// Bridge.
        bridge: String,
        /// standalone or secure.
        mode: String,
    },
    /// The Geneve TLV map.
    DumpTlvMap {
        /// Bridge.
        bridge: String,
    },
}

fn to_request(cmd: Cmd) -> Result<Request, String> {
    Ok(match cmd {
        Cmd::Version => Request::Version,
        Cmd::Show { bridge } => Request::Show { bridge },
        Cmd::AddBr { bridge } => Request::AddBr { bridge },
        Cmd::DelBr { bridge } => Request::DelBr { bridge },
        Cmd::SetBridge { bridge, options } => Request::SetBridge { bridge, options },
        Cmd::AddPort {
            bridge,
            port,
            options,
        } => Request::AddPort {
            bridge,
            port,
            options,
        },
        Cmd::DelPort { bridge, port } => Request::DelPort { bridge, port },
        Cmd::SetPort {
            bridge,
            port,
            options,
        } => Request::SetPort {
            bridge,
            port,
            options,
        },
        Cmd::AddFlow { bridge, flow } => Request::AddFlow { bridge, flow },
        Cmd::AddFlows { bridge, file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).map_err(|e| format!("stdin: {e}"))?
            } else {
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?
            };
            Request::AddFlows {
                bridge,
                text,
                source: file.display().to_string(),
            }
        }
        Cmd::ModFlows {
            bridge,
            flow,
            strict,
        } => Request::ModFlows {
            bridge,
            flow,
            strict,
        },
        Cmd::DelFlows {
            bridge,
            flow,
            strict,
        } => Request::DelFlows {
            bridge,
            matches: flow,
            strict,
        },
        Cmd::DumpFlows {
            bridge,
            flow,
            names,
        } => Request::DumpFlows {
            bridge,
            matches: flow,
            names,
        },
        Cmd::DumpPorts { bridge, port } => Request::DumpPorts { bridge, port },
        Cmd::DumpDrops { bridge } => Request::DumpDrops { bridge },
        Cmd::DumpDpFlows { bridge } => Request::DumpDpFlows { bridge },
        Cmd::Trace {
            bridge,
            flow,
            packet,
            ct_next,
        } => Request::Trace {
            bridge,
            flow,
            packet,
            ct_next,
        },
        Cmd::Inject { bridge, port, hex } => Request::Inject { bridge, port, hex },
        Cmd::DummySent { bridge, port } => Request::DummySent { bridge, port },
        Cmd::DumpConntrack { bridge, zone } => Request::DumpConntrack {
            bridge,
            zone: zone.map(|z| parse_zone(&z)).transpose()?,
        },
        Cmd::FlushConntrack { bridge, zone } => Request::FlushConntrack {
            bridge,
            zone: zone.map(|z| parse_zone(&z)).transpose()?,
        },
        Cmd::CtStats { bridge } => Request::CtStats { bridge },
        Cmd::Capture {
            bridge,
            port,
            count,
            seconds,
            file,
        } => {
            // The daemon writes the file: give it an absolute path.
            let file = if file.is_absolute() {
                file
            } else {
                std::env::current_dir()
                    .map_err(|e| format!("current directory: {e}"))?
                    .join(file)
            };
            Request::Capture {
                bridge,
                port,
                count,
                seconds,
                file: file.display().to_string(),
            }
        }
        Cmd::SetCt { bridge, options } => Request::SetCt { bridge, options },
        Cmd::CtSetLimits { bridge, options } => Request::CtSetLimits { bridge, options },
        Cmd::CtSetTimeout { bridge, options } => {
            let mut zone = None;
            let mut rest = Vec::new();
            for o in options {
                if o.starts_with("zone=") {
                    zone = Some(parse_zone(&o)?);
                } else {
                    rest.push(o);
                }
            }
            Request::CtSetTimeout {
                bridge,
                zone,
                options: rest,
            }
        }
        Cmd::FdbShow { bridge } => Request::FdbShow { bridge },
        Cmd::IpfStatus { bridge } => Request::IpfStatus { bridge },
        Cmd::IpfSet { bridge, options } => Request::IpfSet { bridge, options },
        Cmd::FdbFlush { bridge } => Request::FdbFlush { bridge },
        Cmd::Demo { .. } => return Err("demo runs several requests, not one".into()),
        Cmd::AddTlvMap { bridge, mappings } => Request::AddTlvMap { bridge, mappings },
        Cmd::DelTlvMap { bridge, mappings } => Request::DelTlvMap { bridge, mappings },
        Cmd::DumpTlvMap { bridge } => Request::DumpTlvMap { bridge },
        Cmd::SetController { bridge, targets } => Request::SetController { bridge, targets },
        Cmd::DelController { bridge } => Request::SetController {
            bridge,
            targets: Vec::new(),
        },
        Cmd::SetFailMode { bridge, mode } => Request::SetFailMode { bridge, mode },
    })
}

fn parse_zone(s: &str) -> Result<u16, String> {
    let v = s.strip_prefix("zone=").unwrap_or(s);
    v.parse()
        .map_err(|_| format!("'{s}': expected zone=N with N in 0..65535"))
}

fn main() -> ExitCode {
    // A request is a few wakeups of a process that then waits: with a
    // short time slice each comes promptly on a host whose switch keeps
    // the cores busy (see `port::sys::sched`). Best effort.
    let _ = vswitch::port::sys::sched::set_slice(Some(std::time::Duration::from_micros(100)));
    let args = Args::parse();
    let path = args
        .ctl
        .clone()
        .unwrap_or_else(vswitch::ctl::default_socket_path);
    if let Cmd::Demo {
        bridge,
        flows,
        ports,
        count,
        keep,
        force,
    } = args.cmd
    {
        return demo(&path, bridge, flows, ports, count, keep, force);
    }
    let req = match to_request(args.cmd) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vswitchctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client::call(&path, &req) {
        Ok(resp) if resp.ok => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&resp.json).unwrap_or_default()
                );
            } else {
                print!("{}", resp.text);
            }
            ExitCode::SUCCESS
        }
        Ok(resp) => {
            let msg = resp.error.unwrap_or_else(|| "request refused".into());
            if args.json {
                // Scripts read errors as JSON too, on stdout, with the
                // message on stderr for people.
                println!(
                    "{}",
                    serde_json::to_string_pretty(&resp.json).unwrap_or_default()
                );
            }
            eprintln!("vswitchctl: {msg}");
            ExitCode::FAILURE
        }
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "error": e.to_string(), "kind": "unreachable" })
                );
            }
            eprintln!("vswitchctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `vswitchctl demo`: see [`demo`].
fn demo(
    path: &std::path::Path,
    bridge: String,
    flows: Option<PathBuf>,
    ports: Option<Vec<String>>,
    count: u32,
    keep: u64,
    force: bool,
) -> ExitCode {
    use demo::{DemoError, DemoOptions};
    let mut o = DemoOptions::new(&bridge);
    o.flows = flows;
    if let Some(p) = ports {
        match <[String; 2]>::try_from(p) {
            Ok(p) => o.ports = Some(p),
            Err(_) => {
                eprintln!("vswitchctl demo: --ports takes two names: NAME1,NAME2");
                return ExitCode::FAILURE;
            }
        }
    }
    o.pings = count.max(1);
    o.keep = std::time::Duration::from_secs(keep);
    o.force = force;
    let mut out = std::io::stdout();
    match demo::run(path, &o, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(DemoError::Interrupted) => {
            eprintln!("vswitchctl demo: interrupted (cleaned up)");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("vswitchctl demo: {e}");
            ExitCode::FAILURE
        }
    }
}
