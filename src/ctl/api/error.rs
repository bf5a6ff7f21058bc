//! Why a switch operation was refused. A refused operation changed
//! nothing.

pub use crate::ctl::hex::HexError;
use crate::flow::parse::{FileParseError, ParseError};
use crate::ofproto::FlowModError;

/// A `key=value` token that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// The token does not have the shape the command takes.
    #[error("'{token}': expected {expected}")]
    Syntax {
        /// The token as written.
        token: String,
        /// What was expected there.
        expected: &'static str,
    },
    /// The key is not one this command knows.
    #[error("unknown {what} '{token}'{hint}")]
    Unknown {
        /// Port option, bridge setting, ...
        what: &'static str,
        /// The token as written.
        token: String,
        /// The keys that are known, for the message.
        hint: String,
    },
    /// The key is known but its value is not acceptable.
    #[error("{key}={value}: {expected}")]
    Value {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What the value must be.
        expected: String,
    },
}

impl OptionError {
    /// The offending token, for callers that point at it.
    pub fn token(&self) -> String {
        match self {
            OptionError::Syntax { token, .. } | OptionError::Unknown { token, .. } => token.clone(),
            OptionError::Value { key, value, .. } => format!("{key}={value}"),
        }
    }
}

/// A refused operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No bridge has this name.
    #[error("no bridge named {0}")]
    NoBridge(String),
    /// A bridge with this name exists already.
    #[error("bridge {0} already exists")]
    BridgeExists(String),
    /// No port of this bridge has this name.
    #[error("no port named {port} on {bridge}")]
    NoPort {
        /// Bridge.
        bridge: String,
        /// Port.
        port: String,
    },
    /// The bridge has a port of this name already.
    #[error("port {port} already exists on {bridge}")]
    PortExists {
        /// Bridge.
        bridge: String,
        /// Port.
        port: String,
    },
    /// The name is taken by a port (of this or another bridge) or by a
    /// bridge: names are unique across the switch, as in Open vSwitch,
    /// because ports and bridges share the interface namespace.
    #[error("{name} is already {owner}")]
    NameInUse {
        /// The name asked for.
        name: String,
        /// What has it (`a port on br0`, `a bridge`).
        owner: String,
    },
    /// The name cannot be an interface, bridge or port name.
    #[error("{name:?} is not a valid {what} name: {why}")]
    BadName {
        /// `bridge` or `port`.
        what: &'static str,
        /// The name as given.
        name: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// The OpenFlow port number asked for is taken.
    #[error("ofport {ofport} is already used on {bridge}")]
    OfportInUse {
        /// Bridge.
        bridge: String,
        /// The number.
        ofport: u32,
    },
    /// An option or setting token is wrong.
    #[error(transparent)]
    Option(#[from] OptionError),
    /// The port could not be opened or configured.
    #[error(transparent)]
    Port(#[from] crate::port::Error),
    /// This device cannot be attached as a system port.
    #[error("{device} cannot be a system port: {why}")]
    RefusedDevice {
        /// The interface.
        device: String,
        /// Why (loopback, a device of our own...).
        why: String,
    },
    /// A flow does not parse.
    #[error(transparent)]
    Flow(#[from] ParseError),
    /// A line of a flow file does not parse.
    #[error(transparent)]
    FlowFile(#[from] FileParseError),
    /// A flow-mod cannot apply (in a batch, the first that cannot).
    #[error("{}{}", source_name.as_deref().map(|s| format!("{s}: flow {}: ", err.index + 1)).unwrap_or_default(), err.error)]
    FlowMod {
        /// The flow file, when the batch came from one.
        source_name: Option<String>,
        /// The refusal.
        err: FlowModError,
    },
    /// The datapath thread could not start.
    #[error("cannot start the datapath thread: {0}")]
    Datapath(#[source] std::io::Error),
    /// The operation needs an in-memory (`type=dummy`) port.
    #[error("{op} needs a dummy port; {port} is type={kind}")]
    NotDummy {
        /// The operation.
        op: &'static str,
        /// The port.
        port: String,
        /// Its type.
        kind: crate::ofproto::PortKind,
    },
    /// An in-memory port's receive queue is full.
    #[error("receive queue of {0} is full")]
    QueueFull(String),
    /// A frame given in hex is not hex.
    #[error("{0}")]
    Hex(#[from] HexError),
    /// A frame given to trace does not parse; the datapath would drop it.
    #[error("the packet does not parse: {error} (the datapath drops it as {drop})")]
    Unparsable {
        /// The parse error.
        error: crate::wire::Error,
        /// The drop reason's name.
        drop: String,
    },
    /// `--ct-next` names an unknown ct_state flag.
    #[error("--ct-next: unknown ct_state flag '{0}'")]
    CtFlag(String),
    /// A capture argument is out of range.
    #[error("{0}")]
    CaptureArg(String),
    /// The capture file could not be written.
    #[error("{path}: {source}")]
    Capture {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A capture is already running on this port.
    #[error("a capture is already running on {port} (one capture a port at a time)")]
    CaptureBusy {
        /// The port.
        port: String,
    },
    /// The client went away or the daemon is stopping: the operation was
    /// abandoned.
    #[error("cancelled")]
    Cancelled,
    /// The bridge's OpenFlow listener could not start.
    #[error("OpenFlow listener: {0}")]
    OpenFlow(#[from] crate::openflow::server::ServerError),
    /// Controllers need the daemon's OpenFlow runtime, which this switch
    /// was started without.
    #[error("this switch does not serve OpenFlow (no controllers possible)")]
    NoOpenFlow,
    /// A controller target does not parse.
    #[error(transparent)]
    Target(#[from] crate::ctl::openflow::TargetError),
    /// A fragment reassembly setting is out of range.
    #[error(transparent)]
    Ipf(#[from] crate::conntrack::IpfError),
    /// A defect of vswitchd itself, reported instead of a panic.
    #[error("internal error: {0}")]
    Internal(String),
    /// A Geneve TLV mapping is wrong or conflicts with the map.
    #[error(transparent)]
    TlvMap(#[from] crate::port::geneve::TlvError),
    /// A connection table handed over by an upgrade could not be read.
    #[error(transparent)]
    Snapshot(#[from] crate::conntrack::SnapshotError),
}

impl Error {
    /// A short stable name for scripts (`--json` errors carry it).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoBridge(_) => "no_bridge",
            Error::BridgeExists(_) => "bridge_exists",
            Error::NoPort { .. } => "no_port",
            Error::PortExists { .. } => "port_exists",
            Error::NameInUse { .. } => "name_in_use",
            Error::BadName { .. } => "bad_name",
            Error::OfportInUse { .. } => "ofport_in_use",
            Error::Option(_) => "bad_option",
            Error::Port(_) => "port",
            Error::RefusedDevice { .. } => "refused_device",
            Error::Flow(_) | Error::FlowFile(_) => "bad_flow",
            Error::FlowMod { .. } => "flow_mod",
            Error::Datapath(_) => "datapath",
            Error::NotDummy { .. } => "not_dummy",
            Error::QueueFull(_) => "queue_full",
            Error::Hex(_) => "bad_hex",
            Error::Unparsable { .. } => "unparsable_packet",
            Error::CtFlag(_) => "bad_ct_flag",
            Error::CaptureArg(_) => "bad_capture",
            Error::Capture { .. } => "capture",
            Error::CaptureBusy { .. } => "capture_busy",
            Error::Cancelled => "cancelled",
            Error::TlvMap(_) => "tlv_map",
            Error::Internal(_) => "internal",
            Error::OpenFlow(_) => "openflow",
            Error::NoOpenFlow => "no_openflow",
            Error::Ipf(_) => "bad_ipf_setting",
            Error::Target(_) => "bad_target",
            Error::Snapshot(_) => "bad_snapshot",
        }
    }
}
