//! The control protocol: typed requests and responses, one JSON document
//! per line over the unix socket.
//!
//! `vswitchctl` and the tests speak these types; a request can also be
//! typed by hand while debugging:
//!
//! ```text
//! echo '{"cmd":"dump-flows","bridge":"br0"}' | socat - UNIX-CONNECT:/run/vswitch/vswitchd.sock
//! ```
//!
//! Flows, matches and port options travel as the text the operator wrote;
//! the daemon parses them, because only it knows the port names.

use serde::{Deserialize, Serialize};

/// A request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// Daemon version and uptime.
    Version,
    /// A new vswitchd takes this one's place (`vswitchd --takeover`):
    /// the connection then carries the exchange of
    /// [`crate::ctl::handover`], not JSON lines.
    Handover,
    /// Bridges and ports (`vswitchctl show`).
    Show {
        /// Only this bridge.
        bridge: Option<String>,
    },
    /// Create a bridge.
    AddBr {
        /// Name.
        bridge: String,
    },
    /// Delete a bridge and its ports.
    DelBr {
        /// Name.
        bridge: String,
    },
    /// Change bridge settings (`forward_bpdu=true`, `ct_checksum=skip`, ...).
    SetBridge {
        /// Bridge.
        bridge: String,
        /// `key=value` settings.
        options: Vec<String>,
    },
    /// Attach a port.
    AddPort {
        /// Bridge.
        bridge: String,
        /// Port name.
        port: String,
        /// `type=...` and other `key=value` options.
        options: Vec<String>,
    },
    /// Detach a port.
    DelPort {
        /// Bridge.
        bridge: String,
        /// Port name.
        port: String,
    },
    /// Change a port's settings (`tag=100`, `enable`, ...).
    SetPort {
        /// Bridge.
        bridge: String,
        /// Port name.
        port: String,
        /// Settings.
        options: Vec<String>,
    },
    /// Add one flow.
    AddFlow {
        /// Bridge.
        bridge: String,
        /// The flow, ovs-ofctl syntax.
        flow: String,
    },
    /// Apply a flow file atomically.
    AddFlows {
        /// Bridge.
        bridge: String,
        /// File contents.
        text: String,
        /// File name (for error messages).
        source: String,
    },
    /// Modify flows.
    ModFlows {
        /// Bridge.
        bridge: String,
        /// Match and new actions.
        flow: String,
        /// Exact match and priority.
        strict: bool,
    },
    /// Delete flows (all when `matches` is empty).
    DelFlows {
        /// Bridge.
        bridge: String,
        /// Match filter.
        matches: Option<String>,
        /// Exact match and priority.
        strict: bool,
    },
    /// List flows with counters.
    DumpFlows {
        /// Bridge.
        bridge: String,
        /// Match filter.
        matches: Option<String>,
        /// Print port names instead of numbers.
        names: bool,
    },
    /// Port counters.
    DumpPorts {
        /// Bridge.
        bridge: String,
        /// Only this port.
        port: Option<String>,
    },
    /// Drop counters by reason.
    DumpDrops {
        /// Bridge.
        bridge: String,
    },
    /// The datapath's cached megaflows and cache counters.
    DumpDpFlows {
        /// Bridge.
        bridge: String,
    },
    /// Walk a packet through the tables.
    Trace {
        /// Bridge.
        bridge: String,
        /// The packet as a flow (`in_port=p1,tcp,nw_src=...`), or just the
        /// input port when `packet` is given.
        flow: String,
        /// A real frame, hex.
        packet: Option<String>,
        /// ct_state to assume after each `ct` when no packet is given
        /// (default `trk,new`).
        ct_next: Option<String>,
    },
    /// Put a frame into a port's receive side (dummy ports).
    Inject {
        /// Bridge.
        bridge: String,
        /// Port name.
        port: String,
        /// The frame, hex.
        hex: String,
    },
    /// Take the frames a dummy port sent so far (hex), for tests.
    DummySent {
        /// Bridge.
        bridge: String,
        /// Port name.
        port: String,
    },
    /// Write what a port receives and sends to a pcap file, until `count`
    /// frames or `seconds` (default 10 s when neither is given). Answers
    /// when the capture ends.
    Capture {
        /// Bridge.
        bridge: String,
        /// Port name.
        port: String,
        /// Stop after this many frames.
        count: Option<u64>,
        /// Stop after this many seconds (at most 3600).
        seconds: Option<u64>,
        /// The pcap file to write (absolute path; the daemon writes it).
        file: String,
    },
    /// Tracked connections, in the `dpctl/dump-conntrack` layout.
    DumpConntrack {
        /// Bridge.
        bridge: String,
        /// Only this zone.
        zone: Option<u16>,
    },
    /// Forget tracked connections.
    FlushConntrack {
        /// Bridge.
        bridge: String,
        /// Only this zone.
        zone: Option<u16>,
    },
    /// Conntrack counters: entries per zone and protocol, invalid verdicts
    /// by reason, policy in force.
    CtStats {
        /// Bridge.
        bridge: String,
    },
    /// Conntrack policy: `checksum=validate|skip`, `tcp_liberal=BOOL`,
    /// `tcp_seq_check=BOOL`, `max_conns=N`.
    SetCt {
        /// Bridge.
        bridge: String,
        /// Settings.
        options: Vec<String>,
    },
    /// Connection limits: `default=N`, `zone=Z,limit=N` (limit 0 or
    /// `none` removes a zone's own limit), as `dpctl/ct-set-limits`.
    CtSetLimits {
        /// Bridge.
        bridge: String,
        /// Limits.
        options: Vec<String>,
    },
    /// Timeouts in seconds: `tcp_established=600`, ... for `zone` or, when
    /// `zone` is None, for every zone without its own.
    CtSetTimeout {
        /// Bridge.
        bridge: String,
        /// Zone.
        zone: Option<u16>,
        /// `name=secs` pairs.
        options: Vec<String>,
    },
    /// Fragment reassembly status and counters.
    IpfStatus {
        /// Bridge.
        bridge: String,
    },
    /// Fragment reassembly settings: `[v4|v6] enabled=B max_frags=N
    /// min_frag_size=N`.
    IpfSet {
        /// Bridge.
        bridge: String,
        /// Settings.
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
    /// Map Geneve options to `tun_metadataN` fields (`ovs-ofctl
    /// add-tlv-map`): `{class=0xffff,type=0,len=4}->tun_metadata0`, several
    /// comma-separated. All or nothing.
    AddTlvMap {
        /// Bridge.
        bridge: String,
        /// The mappings.
        mappings: String,
    },
    /// Remove the listed TLV mappings, or all of them.
    DelTlvMap {
        /// Bridge.
        bridge: String,
        /// The mappings; `None` clears the map.
        mappings: Option<String>,
    },
    /// Connect the bridge to OpenFlow controllers (`tcp:IP:PORT`,
    /// `unix:PATH`), replacing the ones it has; none disconnects.
    SetController {
        /// Bridge.
        bridge: String,
        /// Targets.
        targets: Vec<String>,
    },
    /// `standalone` (fail open to NORMAL without a controller) or `secure`.
    SetFailMode {
        /// Bridge.
        bridge: String,
        /// The mode.
        mode: String,
    },
    /// The TLV map (`ovs-ofctl dump-tlv-map` layout).
    DumpTlvMap {
        /// Bridge.
        bridge: String,
    },
}

/// A response: human text and the same content as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded. When false nothing was changed.
    pub ok: bool,
    /// What `vswitchctl` prints.
    pub text: String,
    /// The same, structured (`--json`); for an error, `{"error": MESSAGE,
    /// "kind": KIND}`.
    pub json: serde_json::Value,
    /// The error message when `ok` is false.
    pub error: Option<String>,
    /// The error's stable name (`no_bridge`, `bad_flow`, ...) when `ok` is
    /// false.
    #[serde(default)]
    pub kind: Option<String>,
}

impl Response {
    /// A success with text and JSON.
    pub fn ok(text: impl Into<String>, json: serde_json::Value) -> Self {
        Response {
            ok: true,
            text: text.into(),
            json,
            error: None,
            kind: None,
        }
    }

    /// A refusal: the message and its stable kind.
    pub fn err(msg: impl Into<String>, kind: &str) -> Self {
        let m = msg.into();
        Response {
            ok: false,
            text: String::new(),
            json: serde_json::json!({ "error": m, "kind": kind }),
            error: Some(m),
            kind: Some(kind.to_string()),
        }
    }
}
