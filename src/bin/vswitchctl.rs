//! vswitchctl: the operator's command line, in the manner of ovs-ofctl /
//! ovs-appctl / ovs-vsctl.

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
        Cmd::FdbFlush { bridge } => Request::FdbFlush { bridge },
        Cmd::AddTlvMap { bridge, mappings } => Request::AddTlvMap { bridge, mappings },
        Cmd::DelTlvMap { bridge, mappings } => Request::DelTlvMap { bridge, mappings },
        Cmd::DumpTlvMap { bridge } => Request::DumpTlvMap { bridge },
    })
}

fn parse_zone(s: &str) -> Result<u16, String> {
    let v = s.strip_prefix("zone=").unwrap_or(s);
    v.parse()
        .map_err(|_| format!("'{s}': expected zone=N with N in 0..65535"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let path = args
        .ctl
        .clone()
        .unwrap_or_else(vswitch::ctl::default_socket_path);
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
            eprintln!(
                "vswitchctl: {}",
                resp.error.unwrap_or_else(|| "request refused".into())
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("vswitchctl: {e}");
            ExitCode::FAILURE
        }
    }
}
