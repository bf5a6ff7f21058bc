//! One OpenFlow session, sans I/O: [`Session::receive`] takes bytes from
//! the peer, [`Session::take_output`] gives the bytes to send, and
//! [`Session::is_closed`] says when to hang up (as quinn-proto separates
//! protocol from sockets). The server task owns the socket.
//!
//! What it does: HELLO negotiation over the version bitmap (1.0, 1.3, 1.4,
//! 1.5), echo, an ERROR with the right type and code for everything
//! refused (echoing the start of the message), flow-mods and statistics
//! through the [`Backend`], and bundles (atomic and ordered: the messages
//! are checked as they are added and applied as one batch on commit).
//! Packet-ins go out as PACKET_IN or, once the peer asked with
//! `NXT_SET_PACKET_IN_FORMAT`, as `NXT_PACKET_IN2`; the Geneve TLV map and
//! conntrack zone flushes go to the backend.
//!
//! The versions it negotiates are the backend's ([`Backend::versions`],
//! Open vSwitch's `Bridge.protocols`), read when the session starts: our
//! HELLO's header carries the newest and its bitmap all of them, and a
//! peer with none of them gets HELLO_FAILED / OFPHFC_INCOMPATIBLE.
//!
//! A BARRIER_REPLY means "applied and saved": when the backend saves
//! ([`Backend::saves`]) and a change came before the barrier, the session
//! holds the barrier ([`Session::barrier_pending`]) and every message
//! after it until the caller reports the save ([`Session::saved`]). The
//! session keeps the flow-mods it applied since its last barrier as they
//! came ([`Unsaved`]), so the save is a small journal append, not a
//! snapshot of every table: `ovs-ofctl add-flows`, which sends a barrier
//! after every flow-mod, costs one append each, and a controller's burst
//! ended by one barrier costs one.
//!
//! Inactivity probing is sans-IO too: [`Session::next_timeout`] says when
//! to call [`Session::handle_timeout`], which sends an ECHO_REQUEST to an
//! idle peer or closes the session of a silent one; the caller passes the
//! time, so tests inject it.
//!
//! A length field under the header size makes the stream unframeable, so
//! it closes the session; a message whose length is wrong for its type
//! (a 16-byte FLOW_MOD) gets OFPBRC_BAD_LEN and the session goes on, as
//! Open vSwitch does. Only this session is affected either way.

use super::backend::{AppliedMods, Backend, Event, NotDurable, TlvModError, Unsaved};
use super::wire::bundle::{BundleCtrl, CtrlType};
use super::wire::features::{Features, Role, SwitchConfig};
use super::wire::flow_mod::MatchFormat;
use super::wire::hello::{Hello, Versions};
use super::wire::message::{self, Ctx, Message, NXFF_NXM};
use super::wire::multipart::{self, AggregateStats, FlowStats, MultipartRequest, TableStats};
use super::wire::port::emit_port_status;
use super::wire::tlv::{TlvCommand, TlvTableMod, TlvTableReply};
use super::wire::{header, ErrorMsg, Header, OfpError, Version, Wr};
use crate::flow::ofp_port;
use crate::ofproto::{FlowFilter, FlowMod};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Number of tables the endpoint reports (0..=253, as Open vSwitch: 254
/// and 255 are not addressable by OpenFlow flow-mods).
pub const N_TABLES: u8 = 254;

/// Largest multipart reply message we build before splitting (the length
/// field is 16 bits).
const MAX_REPLY: usize = 60_000;

/// Default output backlog beyond which events are dropped instead of
/// queued (see [`Session::set_event_backlog`]).
pub const MAX_EVENT_BACKLOG: usize = 1 << 20;

/// `NXT_SET_PACKET_IN_FORMAT`: standard PACKET_IN.
const NXPIF_STANDARD: u32 = 0;
/// `NXT_SET_PACKET_IN_FORMAT`: `NXT_PACKET_IN2`.
const NXPIF_NXT_PACKET_IN2: u32 = 2;

/// Bundles one session may keep open.
const MAX_BUNDLES: usize = 16;

/// Bytes of flow-mods a session keeps for its next barrier's journal
/// append; beyond, the barrier saves in full instead.
const MAX_JOURNAL: usize = 16 << 20;

/// Messages one bundle may hold.
const MAX_BUNDLE_MSGS: usize = 1_000_000;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// A length field below the header size: the stream cannot be framed.
    #[error("message length {0} below the header size")]
    BadLength(u16),
    /// No version in common.
    #[error("no common OpenFlow version")]
    Incompatible,
    /// The first message was not a HELLO.
    #[error("first message was not HELLO")]
    NoHello,
    /// Nothing came from the peer for an inactivity probe interval, nor
    /// for another one after the echo request that probed it.
    #[error("no reply to the inactivity probe")]
    ProbeTimeout,
}

/// Inactivity probing (Open vSwitch's `inactivity_probe`): an idle peer
/// is sent an ECHO_REQUEST, and one that stays silent is hung up on.
#[derive(Debug, Clone, Copy)]
struct Probe {
    interval: Duration,
    last_rx: Instant,
    sent: bool,
}

#[derive(Debug, Default)]
struct Bundle {
    flags: u16,
    closed: bool,
    failed: bool,
    // (xid, raw message, what it asks)
    mods: Vec<(u32, Vec<u8>, FlowMod)>,
}

/// An OpenFlow session.
pub struct Session {
    backend: Arc<dyn Backend>,
    version: Option<Version>,
    closed: Option<CloseReason>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    ctx: Ctx,
    nxm: bool,
    config: SwitchConfig,
    role: u32,
    bundles: HashMap<u32, Bundle>,
    packet_in2: bool,
    probe: Option<Probe>,
    events_dropped: u64,
    event_backlog: usize,
    /// The versions it may negotiate.
    versions: Versions,
    /// Flow-mods applied since the last barrier's save (when the backend
    /// saves), and their size.
    journal: Vec<AppliedMods>,
    journal_bytes: usize,
    /// A change only a full save covers was applied since.
    other_unsaved: bool,
    /// A barrier waiting for the save: its xid and bytes.
    barrier: Option<(u32, Vec<u8>)>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("version", &self.version)
            .field("closed", &self.closed)
            .finish()
    }
}

impl Session {
    /// A new session; our HELLO is already queued.
    pub fn new(backend: Arc<dyn Backend>) -> Session {
        let versions = backend.versions();
        let hello = Hello {
            bitmap: versions.bitmap(),
        };
        // The header says the newest version we speak: a 1.0 peer reads
        // only that (with no version at all, 1.0 and an empty bitmap).
        let out = Message::Hello(hello).encode(versions.highest().unwrap_or(Version::V10), 0);
        Session {
            backend,
            version: None,
            closed: None,
            inbuf: Vec::new(),
            out,
            ctx: Ctx::default(),
            nxm: false,
            config: SwitchConfig::default(),
            role: 1,
            bundles: HashMap::new(),
            packet_in2: false,
            probe: None,
            events_dropped: 0,
            event_backlog: MAX_EVENT_BACKLOG,
            versions,
            journal: Vec::new(),
            journal_bytes: 0,
            other_unsaved: false,
            barrier: None,
        }
    }

    /// True while a barrier waits for the save of the changes before it;
    /// the caller then takes them ([`Session::take_unsaved`]), calls
    /// [`Backend::save`] (off its event loop) and reports the result with
    /// [`Session::saved`].
    pub fn barrier_pending(&self) -> bool {
        self.barrier.is_some()
    }

    /// The changes since the last barrier's save (taken).
    pub fn take_unsaved(&mut self) -> Unsaved {
        self.journal_bytes = 0;
        Unsaved {
            version: self.version.unwrap_or(Version::V10),
            flow_mods: std::mem::take(&mut self.journal),
            other: std::mem::take(&mut self.other_unsaved),
        }
    }

    /// Notes flow-mods just applied, for the next barrier's save.
    fn applied(&mut self, msgs: Vec<Vec<u8>>, stamp: u64) {
        if !self.backend.saves() {
            return;
        }
        self.journal_bytes += msgs.iter().map(Vec::len).sum::<usize>();
        if self.journal_bytes > MAX_JOURNAL {
            // A peer that never sends a barrier: a full save covers it.
            self.journal.clear();
            self.journal_bytes = 0;
            self.other_unsaved = true;
            return;
        }
        self.journal.push(AppliedMods {
            stamp,
            table_id_ext: self.ctx.table_id_ext,
            msgs,
        });
    }

    fn has_unsaved(&self) -> bool {
        !self.journal.is_empty() || self.other_unsaved
    }

    /// The save a pending barrier waited for is done (or failed): answers
    /// the barrier (BARRIER_REPLY, or on failure an OFPBRC_EPERM error
    /// carrying the barrier, so the controller knows its changes are
    /// applied but not durable), then handles what came after it. `now`
    /// restarts the inactivity probe's clock: the wait was ours.
    pub fn saved(&mut self, r: Result<(), NotDurable>, now: Instant) {
        let Some((xid, raw)) = self.barrier.take() else {
            return;
        };
        match r {
            Ok(()) => self.send(Message::BarrierReply, xid),
            Err(e) => {
                tracing::error!("OpenFlow barrier: {e}");
                // What was taken is not saved: the next barrier saves in
                // full.
                self.other_unsaved = true;
                self.send_error(OfpError::std(1, 5), &raw, xid);
            }
        }
        if let Some(p) = self.probe.as_mut() {
            p.last_rx = p.last_rx.max(now);
        }
        self.receive(&[]);
    }

    /// Output bytes beyond which events are dropped (and counted) instead
    /// of queued: a controller that stops reading loses events, never the
    /// switch's memory.
    pub fn set_event_backlog(&mut self, bytes: usize) {
        self.event_backlog = bytes;
    }

    /// Probes the peer after `interval` without anything received from it
    /// (an ECHO_REQUEST), and closes the session when another `interval`
    /// passes without anything either. `now` starts the first interval.
    pub fn set_probe_interval(&mut self, interval: Duration, now: Instant) {
        self.probe = Some(Probe {
            interval,
            last_rx: now,
            sent: false,
        });
    }

    /// When [`Session::handle_timeout`] has something to do (None: no
    /// probing).
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.barrier.is_some() {
            // Waiting for our own save: the peer is not idle.
            return None;
        }
        let p = self.probe?;
        let n = if p.sent { 2 } else { 1 };
        Some(p.last_rx + p.interval * n)
    }

    /// Sends the inactivity probe, or closes the session, when `now` is
    /// past [`Session::next_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.next_timeout() else {
            return;
        };
        if now < deadline || self.closed.is_some() {
            return;
        }
        let Some(p) = self.probe.as_mut() else { return };
        match self.version {
            // A peer that never sent its HELLO in time, or never answered
            // the probe: hang up so the connection is made again.
            None => self.closed = Some(CloseReason::ProbeTimeout),
            Some(_) if p.sent => self.closed = Some(CloseReason::ProbeTimeout),
            Some(_) => {
                p.sent = true;
                self.send(Message::EchoRequest(Vec::new()), 0);
            }
        }
    }

    /// [`Session::receive`], noting that the peer is alive at `now`.
    pub fn receive_at(&mut self, bytes: &[u8], now: Instant) {
        if let Some(p) = self.probe.as_mut() {
            if !bytes.is_empty() {
                p.last_rx = now;
                p.sent = false;
            }
        }
        self.receive(bytes);
    }

    /// The negotiated version (None before HELLO).
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// The role the peer last asked for with ROLE_REQUEST (OFPCR_ROLE_*:
    /// 1 equal, 2 master, 3 slave; equal until it asks).
    pub fn role(&self) -> u32 {
        self.role
    }

    /// True while an inactivity probe is sent and nothing has come back
    /// since (Open vSwitch's IDLE).
    pub fn probe_outstanding(&self) -> bool {
        self.probe.is_some_and(|p| p.sent)
    }

    /// Why the session ended, once it has.
    pub fn is_closed(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    /// True after `NXT_SET_FLOW_FORMAT` chose NXM (1.0 sessions).
    pub fn nxm_flow_format(&self) -> bool {
        self.nxm
    }

    /// Events dropped because the peer did not read.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Bytes to send (taken).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Bytes queued for the peer.
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// Feeds bytes from the peer; handles every complete message.
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.closed.is_some() {
            return;
        }
        self.inbuf.extend_from_slice(bytes);
        let mut at = 0;
        while self.closed.is_none()
            && self.barrier.is_none()
            && self.inbuf.len() - at >= header::LEN
        {
            let len = u16::from_be_bytes([self.inbuf[at + 2], self.inbuf[at + 3]]);
            if usize::from(len) < header::LEN {
                self.closed = Some(CloseReason::BadLength(len));
                break;
            }
            let len = usize::from(len);
            if self.inbuf.len() - at < len {
                break;
            }
            let msg = self.inbuf[at..at + len].to_vec();
            at += len;
            self.handle(&msg);
        }
        self.inbuf.drain(..at);
    }

    /// Queues an event from the bridge (dropped, and counted, when the
    /// peer is not reading).
    pub fn on_event(&mut self, ev: &Event) {
        let Some(v) = self.version else { return };
        if self.out.len() > self.event_backlog {
            self.events_dropped += 1;
            return;
        }
        match ev {
            Event::PortStatus(reason, desc) => {
                let mut m = message::start();
                emit_port_status(&mut m, *reason, desc, v);
                message::finish(&mut m, v, message::PORT_STATUS, 0);
                self.out.extend_from_slice(&m);
            }
            Event::PacketIn(pi) => {
                let mut m = message::start();
                let typ = if self.packet_in2 {
                    pi.emit_nx2(&mut m, v);
                    message::EXPERIMENTER
                } else {
                    pi.emit(&mut m, v);
                    message::PACKET_IN
                };
                if m.len() > usize::from(u16::MAX) {
                    // Its length would not fit the header: a frame near
                    // 64 KiB with metadata. Not sent, and counted.
                    self.events_dropped += 1;
                    return;
                }
                message::finish(&mut m, v, typ, 0);
                self.out.extend_from_slice(&m);
            }
            Event::FlowRemoved(fr) => {
                let format = if v != Version::V10 {
                    MatchFormat::Oxm
                } else if self.nxm {
                    MatchFormat::Nxm
                } else {
                    MatchFormat::Of10
                };
                let mut m = message::start();
                let typ = fr.emit(&mut m, v, format);
                message::finish(&mut m, v, typ, 0);
                self.out.extend_from_slice(&m);
            }
        }
    }

    fn send(&mut self, m: Message, xid: u32) {
        let v = self.version.unwrap_or(Version::V10);
        let b = m.encode(v, xid);
        self.out.extend_from_slice(&b);
    }

    fn send_error(&mut self, e: OfpError, offending: &[u8], xid: u32) {
        self.send(Message::Error(ErrorMsg::about(e, offending)), xid);
    }

    fn handle(&mut self, msg: &[u8]) {
        let xid = Header::parse(msg).map(|h| h.xid).unwrap_or(0);
        let Some(v) = self.version else {
            self.handle_hello(msg, xid);
            return;
        };
        match Message::decode(msg, v, self.ctx) {
            Ok((_, m)) => self.dispatch(v, m, msg, xid),
            Err(e) => self.send_error(e.ofp_code(v), msg, xid),
        }
    }

    fn handle_hello(&mut self, msg: &[u8], xid: u32) {
        let ours = Hello {
            bitmap: self.versions.bitmap(),
        };
        match Message::decode(msg, Version::V10, self.ctx) {
            Ok((_, Message::Hello(h))) => match h.negotiate(&ours) {
                Some(v) => self.version = Some(v),
                None => {
                    let text = format!(
                        "We support versions {}; you support {}",
                        self.versions.hex(),
                        Versions::from_bitmap(h.bitmap).hex()
                    );
                    self.out.extend_from_slice(
                        &Message::Error(ErrorMsg {
                            error: OfpError::HELLO_INCOMPATIBLE,
                            data: text.into_bytes(),
                        })
                        .encode(self.versions.highest().unwrap_or(Version::V10), xid),
                    );
                    self.closed = Some(CloseReason::Incompatible);
                }
            },
            _ => self.closed = Some(CloseReason::NoHello),
        }
    }

    fn dispatch(&mut self, v: Version, m: Message, raw: &[u8], xid: u32) {
        match m {
            Message::Hello(_) | Message::Error(_) | Message::EchoReply(_) => {}
            Message::BarrierReply => {}
            Message::EchoRequest(d) => self.send(Message::EchoReply(d), xid),
            Message::FeaturesRequest => self.features(v, xid),
            Message::GetConfigRequest => {
                let mut b = message::start();
                self.config.emit(&mut b);
                message::finish(&mut b, v, message::GET_CONFIG_REPLY, xid);
                self.out.extend_from_slice(&b);
            }
            Message::SetConfig(c) => self.config = c,
            Message::FlowMod(fm) => match fm.to_ofproto(v) {
                Err(e) => self.send_error(e.ofp_code(v), raw, xid),
                Ok(_) if fm.buffer_id != u32::MAX && fm.command == 0 => {
                    // No packet buffering: OFPBRC_BUFFER_UNKNOWN.
                    self.send_error(OfpError::std(1, 8), raw, xid)
                }
                Ok(m) => match self.backend.flow_mods_stamped(&[m]) {
                    (Ok(_), stamp) => self.applied(vec![raw.to_vec()], stamp),
                    (Err(_), _) => self.send_error(OfpError::flow_mod_refused(), raw, xid),
                },
            },
            Message::GroupMod => {
                // OFPET_GROUP_MOD_FAILED / OFPGMFC_OUT_OF_GROUPS: this
                // switch has no group table yet.
                self.send_error(OfpError::std(6, 3), raw, xid)
            }
            Message::MeterMod => {
                // OFPET_METER_MOD_FAILED / OFPMMFC_OUT_OF_METERS.
                self.send_error(OfpError::std(12, 10), raw, xid)
            }
            Message::PortMod => {
                // OFPET_PORT_MOD_FAILED / OFPPMFC_BAD_PORT: port
                // configuration goes through the control API.
                let t = if v == Version::V10 { 4 } else { 7 };
                self.send_error(OfpError::std(t, 0), raw, xid)
            }
            Message::TableMod | Message::SetAsync | Message::NxIgnored(_) => {}
            Message::SetPacketInFormat(f) => match f {
                NXPIF_STANDARD => self.packet_in2 = false,
                NXPIF_NXT_PACKET_IN2 => self.packet_in2 = true,
                // The older NXT_PACKET_IN (1) is not implemented: refused
                // with OFPBRC_EPERM as Open vSwitch refuses formats it
                // does not know, so a controller falls back.
                _ => self.send_error(OfpError::std(1, 5), raw, xid),
            },
            Message::MultipartRequest(r) => self.multipart(v, r, xid, raw),
            Message::BarrierRequest => {
                if self.has_unsaved() && self.backend.saves() {
                    self.barrier = Some((xid, raw.to_vec()));
                } else {
                    self.send(Message::BarrierReply, xid);
                }
            }
            Message::RoleRequest(r) => {
                if r.role != 0 {
                    self.role = r.role;
                }
                let mut b = message::start();
                Role {
                    role: self.role,
                    generation_id: r.generation_id,
                }
                .emit(&mut b);
                message::finish(&mut b, v, message::ROLE_REPLY, xid);
                self.out.extend_from_slice(&b);
            }
            Message::CtFlushZone(zone) => {
                self.backend.ct_flush_zone(zone);
            }
            Message::TlvTableMod(m) => self.tlv_table_mod(v, &m, raw, xid),
            Message::TlvTableRequest => {
                let maps = self.backend.tlv_table();
                let mut b = message::start();
                b.u32(super::wire::NX_VENDOR);
                b.u32(super::wire::tlv::NXT_TLV_TABLE_REPLY);
                TlvTableReply {
                    max_option_space: (crate::packet::TUN_METADATA_FIELDS
                        * usize::from(crate::port::geneve::MAX_TLV_LEN))
                        as u32,
                    max_fields: crate::packet::TUN_METADATA_FIELDS as u16,
                    mappings: maps,
                }
                .emit(&mut b);
                message::finish(&mut b, v, message::EXPERIMENTER, xid);
                self.out.extend_from_slice(&b);
            }
            Message::NxRoleRequest(role) => {
                let mut b = message::start();
                b.u32(super::wire::NX_VENDOR);
                b.u32(11);
                b.u32(role);
                message::finish(&mut b, v, message::EXPERIMENTER, xid);
                self.out.extend_from_slice(&b);
            }
            Message::GetAsyncRequest => {
                let mut b = message::start();
                // packet-in, port-status, flow-removed masks (master,
                // slave): everything enabled.
                for _ in 0..6 {
                    b.u32(u32::MAX);
                }
                message::finish(&mut b, v, message::GET_ASYNC_REPLY, xid);
                self.out.extend_from_slice(&b);
            }
            Message::SetFlowFormat(f) => self.nxm = f == NXFF_NXM,
            Message::FlowModTableId(on) => self.ctx.table_id_ext = on,
            Message::BundleControl(c) => self.bundle_control(v, c, raw, xid),
            Message::BundleAdd(a) => self.bundle_add(v, a, raw, xid),
            Message::PacketOut(p) => {
                if p.buffer_id != u32::MAX {
                    self.send_error(OfpError::std(1, 8), raw, xid);
                } else if self
                    .backend
                    .packet_out(p.in_port, &p.actions, &p.data)
                    .is_err()
                {
                    // OFPBRC_BAD_PORT (1.1+); 1.0 has no such code.
                    let e = if v == Version::V10 {
                        OfpError::std(1, 5)
                    } else {
                        OfpError::std(1, 11)
                    };
                    self.send_error(e, raw, xid);
                }
            }
        }
    }

    fn tlv_table_mod(&mut self, v: Version, m: &TlvTableMod, raw: &[u8], xid: u32) {
        // NXTTMFC_* codes: (OpenFlow 1.0 vendor code, 1.2+ experimenter
        // type).
        let codes = match TlvCommand::from_wire(m.command) {
            None => Some((527, 16)),
            Some(cmd) => match self.backend.tlv_table_mod(cmd, &m.mappings) {
                Ok(()) => {
                    self.other_unsaved = self.backend.saves();
                    None
                }
                Err(TlvModError::BadOptLen(_)) => Some((528, 17)),
                Err(TlvModError::BadFieldIdx(_)) => Some((529, 18)),
                Err(TlvModError::Refused(_)) => Some((530, 19)),
                Err(TlvModError::AlreadyMapped(_)) => Some((531, 20)),
                Err(TlvModError::DupEntry { .. }) => Some((532, 21)),
                Err(TlvModError::InvalidDel(_)) => Some((537, 38)),
            },
        };
        if let Some((c10, c12)) = codes {
            self.send_error(OfpError::nx(v, c10, c12), raw, xid);
        }
    }

    fn features(&mut self, v: Version, xid: u32) {
        let f = Features {
            datapath_id: self.backend.datapath_id(),
            n_tables: N_TABLES,
            ports: if v == Version::V10 {
                self.backend.ports()
            } else {
                Vec::new()
            },
        };
        let mut b = message::start();
        f.emit(&mut b, v);
        message::finish(&mut b, v, message::FEATURES_REPLY, xid);
        self.out.extend_from_slice(&b);
    }

    /// Sends `entries` (each one already encoded) as replies of `typ`,
    /// split so that no message is too long.
    fn send_multipart(
        &mut self,
        v: Version,
        typ: u16,
        nx: Option<u32>,
        xid: u32,
        entries: &[Vec<u8>],
    ) {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut cur: Vec<u8> = Vec::new();
        for e in entries {
            if !cur.is_empty() && cur.len() + e.len() > MAX_REPLY {
                parts.push(std::mem::take(&mut cur));
            }
            cur.extend_from_slice(e);
        }
        parts.push(cur);
        let n = parts.len();
        for (i, body) in parts.into_iter().enumerate() {
            let mut b = message::start();
            multipart::emit_reply_head(&mut b, typ, i + 1 < n, v, nx);
            b.extend_from_slice(&body);
            message::finish(&mut b, v, message::mp_reply_type(v), xid);
            self.out.extend_from_slice(&b);
        }
    }

    fn multipart(&mut self, v: Version, r: MultipartRequest, xid: u32, raw: &[u8]) {
        match &r {
            MultipartRequest::Desc => {
                let mut e = Vec::new();
                self.backend.desc().emit(&mut e);
                self.send_multipart(v, multipart::DESC, None, xid, &[e]);
            }
            MultipartRequest::Flow(f) | MultipartRequest::Aggregate(f) => {
                let agg = matches!(r, MultipartRequest::Aggregate(_));
                let filter = FlowFilter {
                    table: (f.table_id != 255).then_some(f.table_id),
                    matches: f.matches,
                    cookie: f.cookie,
                    cookie_mask: f.cookie_mask,
                    out_port: (f.out_port != ofp_port::NONE).then_some(f.out_port),
                    strict_priority: None,
                };
                let flows = self.backend.dump_flows(&filter);
                let nx = multipart::nx_subtype(f.format, agg);
                if agg {
                    let mut a = AggregateStats::default();
                    for fl in &flows {
                        a.packet_count += fl.n_packets;
                        a.byte_count += fl.n_bytes;
                        a.flow_count += 1;
                    }
                    let mut e = Vec::new();
                    a.emit_for(&mut e, v);
                    self.send_multipart(v, multipart::AGGREGATE, nx, xid, &[e]);
                    return;
                }
                let format = f.format;
                let entries: Vec<Vec<u8>> = flows
                    .iter()
                    .map(|fl| {
                        let s = &fl.spec;
                        let mut flags = 0;
                        if s.flags.send_flow_rem {
                            flags |= 1;
                        }
                        if s.flags.check_overlap {
                            flags |= 2;
                        }
                        if s.flags.reset_counts {
                            flags |= 4;
                        }
                        if s.flags.no_packet_counts {
                            flags |= 8;
                        }
                        if s.flags.no_byte_counts {
                            flags |= 16;
                        }
                        let st = FlowStats {
                            table_id: s.table,
                            duration_sec: fl.duration.as_secs() as u32,
                            duration_nsec: fl.duration.subsec_nanos(),
                            priority: s.priority,
                            idle_timeout: s.idle_timeout,
                            hard_timeout: s.hard_timeout,
                            flags,
                            importance: s.importance,
                            idle_age: fl.idle_age.as_secs() as u32,
                            hard_age: fl.hard_age.as_secs() as u32,
                            cookie: s.cookie,
                            packet_count: fl.n_packets,
                            byte_count: fl.n_bytes,
                            matches: s.matches,
                            actions: s.actions.clone(),
                        };
                        let mut e = Vec::new();
                        st.emit(&mut e, format, v);
                        e
                    })
                    .collect();
                self.send_multipart(v, multipart::FLOW, nx, xid, &entries);
            }
            MultipartRequest::Table => {
                let counts = self.backend.table_counts();
                let entries: Vec<Vec<u8>> = (0..N_TABLES)
                    .map(|t| {
                        let mut e = Vec::new();
                        TableStats {
                            table_id: t,
                            active_count: counts.get(usize::from(t)).copied().unwrap_or(0),
                            ..TableStats::default()
                        }
                        .emit(&mut e, v);
                        e
                    })
                    .collect();
                self.send_multipart(v, multipart::TABLE, None, xid, &entries);
            }
            MultipartRequest::TableFeatures => {
                let entries: Vec<Vec<u8>> = (0..N_TABLES)
                    .map(|t| {
                        let mut e = Vec::new();
                        multipart::emit_table_features(&mut e, t);
                        e
                    })
                    .collect();
                self.send_multipart(v, multipart::TABLE_FEATURES, None, xid, &entries);
            }
            MultipartRequest::PortDesc => {
                let entries: Vec<Vec<u8>> = self
                    .backend
                    .ports()
                    .iter()
                    .map(|p| {
                        let mut e = Vec::new();
                        p.emit(&mut e, v);
                        e
                    })
                    .collect();
                self.send_multipart(v, multipart::PORT_DESC, None, xid, &entries);
            }
            MultipartRequest::PortStats(p) => {
                let which = (*p != ofp_port::NONE).then_some(*p);
                match self.backend.port_stats(which) {
                    Ok(stats) => {
                        let entries: Vec<Vec<u8>> = stats
                            .iter()
                            .map(|s| {
                                let mut e = Vec::new();
                                s.emit(&mut e, v);
                                e
                            })
                            .collect();
                        self.send_multipart(v, multipart::PORT_STATS, None, xid, &entries);
                    }
                    Err(_) => {
                        let e = if v == Version::V10 {
                            OfpError::std(1, 5)
                        } else {
                            OfpError::std(1, 11)
                        };
                        self.send_error(e, raw, xid);
                    }
                }
            }
        }
    }

    fn bundle_reply(&mut self, c: &BundleCtrl, xid: u32) {
        self.send(
            Message::BundleControl(BundleCtrl {
                bundle_id: c.bundle_id,
                typ: c.typ.reply(),
                flags: c.flags,
            }),
            xid,
        );
    }

    fn bundle_control(&mut self, v: Version, c: BundleCtrl, raw: &[u8], xid: u32) {
        let id = c.bundle_id;
        match c.typ {
            CtrlType::OpenRequest => {
                if self.bundles.contains_key(&id) {
                    return self.send_error(OfpError::bundle(v, 3), raw, xid);
                }
                if self.bundles.len() >= MAX_BUNDLES {
                    return self.send_error(OfpError::bundle(v, 5), raw, xid);
                }
                self.bundles.insert(
                    id,
                    Bundle {
                        flags: c.flags,
                        ..Bundle::default()
                    },
                );
                self.bundle_reply(&c, xid);
            }
            CtrlType::CloseRequest => match self.bundles.get_mut(&id) {
                None => self.send_error(OfpError::bundle(v, 2), raw, xid),
                Some(b) if b.closed => self.send_error(OfpError::bundle(v, 4), raw, xid),
                Some(b) => {
                    b.closed = true;
                    self.bundle_reply(&c, xid);
                }
            },
            CtrlType::DiscardRequest => {
                if self.bundles.remove(&id).is_none() {
                    return self.send_error(OfpError::bundle(v, 2), raw, xid);
                }
                self.bundle_reply(&c, xid);
            }
            CtrlType::CommitRequest => {
                let Some(b) = self.bundles.remove(&id) else {
                    return self.send_error(OfpError::bundle(v, 2), raw, xid);
                };
                if b.failed {
                    return self.send_error(OfpError::bundle_msg_failed(v), raw, xid);
                }
                let mods: Vec<FlowMod> = b.mods.iter().map(|(_, _, m)| m.clone()).collect();
                match self.backend.flow_mods_stamped(&mods) {
                    (Ok(_), stamp) => {
                        self.applied(b.mods.into_iter().map(|(_, raw, _)| raw).collect(), stamp);
                        self.bundle_reply(&c, xid);
                    }
                    (Err(e), _) => {
                        if let Some((mxid, mraw, _)) = b.mods.get(e.index) {
                            let (mxid, mraw) = (*mxid, mraw.clone());
                            self.send_error(OfpError::flow_mod_refused(), &mraw, mxid);
                        }
                        self.send_error(OfpError::bundle_msg_failed(v), raw, xid);
                    }
                }
            }
            _ => self.send_error(OfpError::bundle(v, 6), raw, xid),
        }
    }

    fn bundle_add(&mut self, v: Version, a: super::wire::bundle::BundleAdd, raw: &[u8], xid: u32) {
        let id = a.bundle_id;
        if !self.bundles.contains_key(&id) {
            // Adding to an unopened bundle opens it (Open vSwitch does too).
            if self.bundles.len() >= MAX_BUNDLES {
                return self.send_error(OfpError::bundle(v, 5), raw, xid);
            }
            self.bundles.insert(
                id,
                Bundle {
                    flags: a.flags,
                    ..Bundle::default()
                },
            );
        }
        let inner = a.message;
        let decoded = Message::decode(&inner, v, self.ctx);
        let Some(b) = self.bundles.get_mut(&id) else {
            return;
        };
        if b.closed {
            return self.send_error(OfpError::bundle(v, 4), raw, xid);
        }
        if b.flags != a.flags {
            // OFPBFC_BAD_FLAGS: every message must repeat the open flags.
            return self.send_error(OfpError::bundle(v, 7), raw, xid);
        }
        if b.mods.len() >= MAX_BUNDLE_MSGS {
            b.failed = true;
            return self.send_error(OfpError::bundle(v, 12), raw, xid);
        }
        let result = match decoded {
            Err(e) => Err(e.ofp_code(v)),
            Ok((h, _)) if h.xid != xid => Err(OfpError::bundle(v, 9)),
            Ok((h, Message::FlowMod(fm))) => match fm.to_ofproto(v) {
                Ok(m) => match crate::ofproto::Ofproto::validate(&m.spec) {
                    Ok(()) => Ok((h.xid, m)),
                    Err(_) if m.cmd != crate::ofproto::FlowModCmd::Add => Ok((h.xid, m)),
                    Err(_) => Err(OfpError::flow_mod_refused()),
                },
                Err(e) => Err(e.ofp_code(v)),
            },
            Ok(_) => Err(OfpError::bundle(v, 10)),
        };
        match result {
            Ok((mxid, m)) => b.mods.push((mxid, inner, m)),
            Err(e) => {
                b.failed = true;
                let ixid = Header::parse(&inner).map(|h| h.xid).unwrap_or(xid);
                self.send_error(e, &inner, ixid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Action, Field, Match};
    use crate::ofproto::Ofproto;
    use crate::openflow::backend::OfprotoBackend;
    use crate::openflow::wire::bundle::{BundleAdd, ATOMIC, ORDERED};
    use crate::openflow::wire::flow_mod::FlowModMsg;
    use std::time::Instant;

    fn session(v: Version) -> (Session, Arc<OfprotoBackend>) {
        let ofp = Arc::new(Ofproto::new("br0", Instant::now()));
        let b = Arc::new(OfprotoBackend::new(ofp, 1));
        let mut s = Session::new(b.clone());
        s.take_output();
        s.receive(&Message::Hello(Hello::for_versions(&[v])).encode(v, 1));
        assert_eq!(s.version(), Some(v));
        (s, b)
    }

    /// Splits output into messages.
    fn msgs(out: &[u8]) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        let mut at = 0;
        while at + 8 <= out.len() {
            let len = usize::from(u16::from_be_bytes([out[at + 2], out[at + 3]]));
            v.push(out[at..at + len].to_vec());
            at += len;
        }
        v
    }

    fn error_of(m: &[u8]) -> Option<OfpError> {
        (m[1] == message::ERROR).then(|| ErrorMsg::parse(&m[8..]).unwrap().error)
    }

    fn add(table: u8, prio: u16, port: u32, out_to: u32) -> FlowModMsg {
        let mut m = Match::default();
        m.set_exact(Field::InPort, u128::from(port));
        FlowModMsg {
            format: crate::openflow::wire::flow_mod::MatchFormat::Oxm,
            command: 0,
            table_id: table,
            cookie: 0,
            cookie_mask: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            priority: prio,
            buffer_id: u32::MAX,
            out_port: ofp_port::NONE,
            out_group: u32::MAX,
            flags: 0,
            importance: 0,
            matches: m,
            actions: vec![Action::Output(out_to)],
        }
    }

    #[test]
    fn hello_echo_and_incompatible_versions() {
        let (mut s, _) = session(Version::V13);
        s.receive(&Message::EchoRequest(b"abc".to_vec()).encode(Version::V13, 7));
        let out = msgs(&s.take_output());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][1], message::ECHO_REPLY);
        assert_eq!(&out[0][4..8], &7u32.to_be_bytes());
        assert_eq!(&out[0][8..], b"abc");

        let ofp = Arc::new(Ofproto::new("br0", Instant::now()));
        let mut s = Session::new(Arc::new(OfprotoBackend::new(ofp, 1)));
        s.take_output();
        // Only OpenFlow 1.1 and 1.2.
        s.receive(&[3, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 8, 0, 0, 0, 0x0c]);
        assert_eq!(s.is_closed(), Some(&CloseReason::Incompatible));
        let out = msgs(&s.take_output());
        assert_eq!(error_of(&out[0]), Some(OfpError::HELLO_INCOMPATIBLE));
    }

    #[test]
    fn lying_lengths_close_or_error_as_open_vswitch_does() {
        // A FLOW_MOD whose length is 16: OFPBRC_BAD_LEN, session goes on.
        let (mut s, _) = session(Version::V13);
        let mut m = vec![4, 14, 0, 16, 0, 0, 0, 5];
        m.extend_from_slice(&[0; 8]);
        s.receive(&m);
        let out = msgs(&s.take_output());
        assert_eq!(error_of(&out[0]), Some(OfpError::std(1, 6)));
        assert_eq!(&out[0][8 + 4..], &m[..], "the offending message is echoed");
        assert!(s.is_closed().is_none());
        // A length under the header size: closed.
        s.receive(&[4, 2, 0, 4, 0, 0, 0, 1]);
        assert_eq!(s.is_closed(), Some(&CloseReason::BadLength(4)));
    }

    #[test]
    fn group_and_meter_mods_are_refused() {
        let (mut s, _) = session(Version::V13);
        s.receive(&Message::GroupMod.encode(Version::V13, 1));
        s.receive(&Message::MeterMod.encode(Version::V13, 2));
        let out = msgs(&s.take_output());
        assert_eq!(error_of(&out[0]), Some(OfpError::std(6, 3)));
        assert_eq!(error_of(&out[1]), Some(OfpError::std(12, 10)));
    }

    #[test]
    fn flow_mod_then_barrier_installs_the_flow() {
        let (mut s, b) = session(Version::V13);
        s.receive(&Message::FlowMod(add(0, 10, 1, 2)).encode(Version::V13, 3));
        s.receive(&Message::BarrierRequest.encode(Version::V13, 4));
        let out = msgs(&s.take_output());
        assert_eq!(out.len(), 1, "only the barrier reply");
        assert_eq!(out[0][1], message::barrier_reply_type(Version::V13));
        assert_eq!(b.ofproto().n_flows(), 1);
    }

    fn bundle_add(v: Version, id: u32, xid: u32, fm: FlowModMsg) -> Vec<u8> {
        let inner = Message::FlowMod(fm).encode(v, xid);
        Message::BundleAdd(BundleAdd {
            bundle_id: id,
            flags: ATOMIC | ORDERED,
            message: inner,
        })
        .encode(v, xid)
    }

    fn ctrl(v: Version, id: u32, typ: CtrlType, xid: u32) -> Vec<u8> {
        Message::BundleControl(BundleCtrl {
            bundle_id: id,
            typ,
            flags: ATOMIC | ORDERED,
        })
        .encode(v, xid)
    }

    #[test]
    fn a_bundle_is_all_or_nothing() {
        for v in [Version::V13, Version::V14, Version::V15] {
            let (mut s, b) = session(v);
            s.receive(&ctrl(v, 9, CtrlType::OpenRequest, 1));
            s.receive(&bundle_add(v, 9, 2, add(0, 10, 1, 2)));
            // goto_table backwards: ofproto refuses it when added.
            let mut bad = add(1, 10, 1, 2);
            bad.actions = vec![Action::GotoTable(0)];
            s.receive(&bundle_add(v, 9, 3, bad));
            s.receive(&ctrl(v, 9, CtrlType::CommitRequest, 4));
            let out = msgs(&s.take_output());
            assert_eq!(
                out.len(),
                3,
                "{v:?}: open reply, the message's error, commit error"
            );
            assert_eq!(error_of(&out[1]), Some(OfpError::flow_mod_refused()));
            assert_eq!(
                &out[1][4..8],
                &3u32.to_be_bytes(),
                "error carries the message's xid"
            );
            assert_eq!(error_of(&out[2]), Some(OfpError::bundle_msg_failed(v)));
            assert_eq!(b.ofproto().n_flows(), 0, "{v:?}: table unchanged");

            // A good bundle commits every message at once.
            s.receive(&ctrl(v, 10, CtrlType::OpenRequest, 5));
            s.receive(&bundle_add(v, 10, 6, add(0, 10, 1, 2)));
            s.receive(&bundle_add(v, 10, 7, add(0, 10, 2, 1)));
            assert_eq!(b.ofproto().n_flows(), 0, "nothing before commit");
            s.receive(&ctrl(v, 10, CtrlType::CommitRequest, 8));
            let out = msgs(&s.take_output());
            assert!(out.iter().all(|m| error_of(m).is_none()), "{v:?}");
            assert_eq!(b.ofproto().n_flows(), 2);
        }
    }

    #[test]
    fn multipart_replies_are_split_under_the_length_limit() {
        let (mut s, b) = session(Version::V13);
        let mods: Vec<FlowMod> = (0..3000u32)
            .map(|i| add(0, 10, i + 1, 2).to_ofproto(Version::V13).unwrap())
            .collect();
        b.flow_mods(&mods).unwrap();
        let req = MultipartRequest::Flow(multipart::FlowStatsRequest {
            format: crate::openflow::wire::flow_mod::MatchFormat::Oxm,
            table_id: 255,
            out_port: ofp_port::NONE,
            cookie: 0,
            cookie_mask: 0,
            matches: Match::default(),
        });
        s.receive(&Message::MultipartRequest(req).encode(Version::V13, 11));
        let out = msgs(&s.take_output());
        assert!(out.len() > 1);
        let flags: Vec<u16> = out
            .iter()
            .map(|m| u16::from_be_bytes([m[10], m[11]]))
            .collect();
        assert!(flags[..flags.len() - 1].iter().all(|f| *f == 1));
        assert_eq!(*flags.last().unwrap(), 0);
    }

    #[test]
    fn role_features_and_refused_requests() {
        let (mut s, b) = session(Version::V13);
        s.receive(
            &Message::RoleRequest(Role {
                role: 2,
                generation_id: 9,
            })
            .encode(Version::V13, 1),
        );
        // A message of another version than the negotiated one.
        s.receive(&Message::BarrierRequest.encode(Version::V10, 2));
        // An unknown experimenter.
        s.receive(&[4, 4, 0, 16, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0]);
        // An unknown message type.
        s.receive(&[4, 99, 0, 8, 0, 0, 0, 4]);
        let out = msgs(&s.take_output());
        assert_eq!(out[0][1], message::ROLE_REPLY);
        assert_eq!(Role::parse(&out[0][8..]).unwrap().role, 2);
        assert_eq!(error_of(&out[1]), Some(OfpError::std(1, 0)));
        assert_eq!(error_of(&out[2]), Some(OfpError::std(1, 3)));
        assert_eq!(error_of(&out[3]), Some(OfpError::std(1, 1)));

        // OpenFlow 1.0 FEATURES_REPLY lists the ports (LOCAL here).
        let (mut s, _) = session(Version::V10);
        s.receive(&Message::FeaturesRequest.encode(Version::V10, 5));
        let out = msgs(&s.take_output());
        assert_eq!(out[0][1], message::FEATURES_REPLY);
        assert_eq!(out[0].len(), 32 + 48 * b.ports().len());
    }

    #[test]
    fn bundle_messages_must_repeat_the_open_flags() {
        let v = Version::V14;
        let (mut s, b) = session(v);
        s.receive(&ctrl(v, 1, CtrlType::OpenRequest, 1));
        let inner = Message::FlowMod(add(0, 10, 1, 2)).encode(v, 2);
        s.receive(
            &Message::BundleAdd(BundleAdd {
                bundle_id: 1,
                flags: ATOMIC,
                message: inner,
            })
            .encode(v, 2),
        );
        s.receive(&ctrl(v, 2, CtrlType::CommitRequest, 3));
        let out = msgs(&s.take_output());
        assert_eq!(error_of(&out[1]), Some(OfpError::bundle(v, 7)));
        assert_eq!(
            error_of(&out[2]),
            Some(OfpError::bundle(v, 2)),
            "no bundle 2"
        );
        assert_eq!(b.ofproto().n_flows(), 0);
    }

    #[test]
    fn events_beyond_the_backlog_are_dropped_and_counted() {
        use crate::openflow::wire::packet::PacketIn;
        let (mut s, _) = session(Version::V13);
        s.set_event_backlog(100);
        let ev = Event::PacketIn(Box::new(PacketIn {
            total_len: 200,
            in_port: 1,
            reason: 1,
            table_id: 0,
            cookie: 0,
            metadata: Match::default(),
            userdata: Vec::new(),
            data: vec![0; 200],
        }));
        for _ in 0..3 {
            s.on_event(&ev);
        }
        assert_eq!(s.events_dropped(), 2, "only the first fits");
        assert_eq!(msgs(&s.take_output()).len(), 1);
        s.on_event(&ev);
        assert_eq!(s.events_dropped(), 2, "room again once written");
    }

    #[test]
    fn packet_in2_when_asked_with_userdata_and_metadata() {
        use crate::openflow::wire::packet::PacketIn;
        let mut md = Match::default();
        md.set_exact(Field::Reg(1), 7);
        let pi = PacketIn {
            total_len: 100,
            in_port: 3,
            reason: 1,
            table_id: 5,
            cookie: 0x1122,
            metadata: md,
            userdata: vec![1, 2, 3],
            data: vec![0xab; 10],
        };
        for v in Version::ALL {
            let (mut s, _) = session(v);
            s.on_event(&Event::PacketIn(Box::new(pi.clone())));
            let std_pi = msgs(&s.take_output());
            assert_eq!(std_pi[0][1], message::PACKET_IN, "{v:?}: standard first");
            s.receive(&Message::SetPacketInFormat(2).encode(v, 7));
            assert!(s.take_output().is_empty(), "{v:?}: format 2 accepted");
            s.on_event(&Event::PacketIn(Box::new(pi.clone())));
            let m = msgs(&s.take_output()).remove(0);
            assert_eq!(m[1], message::EXPERIMENTER);
            assert_eq!(&m[8..16], &[0, 0, 0x23, 0x20, 0, 0, 0, 30]);
            // Walk the properties: type, length, padded to 8.
            let mut props = HashMap::new();
            let mut at = 16;
            while at + 4 <= m.len() {
                let t = u16::from_be_bytes([m[at], m[at + 1]]);
                let l = usize::from(u16::from_be_bytes([m[at + 2], m[at + 3]]));
                props.insert(t, m[at + 4..at + l].to_vec());
                at += l.div_ceil(8) * 8;
            }
            assert_eq!(at, m.len(), "{v:?}: properties fill the message");
            assert_eq!(props[&0], vec![0xab; 10]);
            assert_eq!(props[&1], 100u32.to_be_bytes());
            assert_eq!(props[&3], [5]);
            assert_eq!(props[&4][4..], 0x1122u64.to_be_bytes());
            assert_eq!(props[&5], [1]);
            assert_eq!(props[&7], [1, 2, 3]);
            let d = crate::openflow::wire::oxm::decode(&props[&6]).unwrap();
            assert_eq!(d.matches.get(Field::Reg(1)), (7, 0xffff_ffff));
            assert_eq!(d.matches.get(Field::InPort).0, 3);
            // Back to standard; the old NXT_PACKET_IN format is refused.
            s.receive(&Message::SetPacketInFormat(0).encode(v, 8));
            s.receive(&Message::SetPacketInFormat(1).encode(v, 9));
            let out = msgs(&s.take_output());
            assert_eq!(error_of(&out[0]), Some(OfpError::std(1, 5)));
            s.on_event(&Event::PacketIn(Box::new(pi.clone())));
            assert_eq!(msgs(&s.take_output())[0][1], message::PACKET_IN);
        }
    }

    #[test]
    fn an_idle_peer_is_probed_and_a_silent_one_hung_up_on() {
        let ofp = Arc::new(Ofproto::new("br0", Instant::now()));
        let b = Arc::new(OfprotoBackend::new(ofp, 1));
        let t0 = Instant::now();
        let sec = Duration::from_secs(1);
        let mut s = Session::new(b.clone());
        s.set_probe_interval(5 * sec, t0);
        s.take_output();
        // No HELLO within the interval: closed.
        s.handle_timeout(t0 + 4 * sec);
        assert!(s.is_closed().is_none());
        s.handle_timeout(t0 + 5 * sec);
        assert_eq!(s.is_closed(), Some(&CloseReason::ProbeTimeout));

        let v = Version::V13;
        let mut s = Session::new(b);
        s.set_probe_interval(5 * sec, t0);
        s.take_output();
        s.receive_at(
            &Message::Hello(Hello::for_versions(&[v])).encode(v, 1),
            t0 + sec,
        );
        assert_eq!(s.next_timeout(), Some(t0 + 6 * sec));
        s.handle_timeout(t0 + 5 * sec);
        assert!(s.take_output().is_empty(), "not idle long enough");
        s.handle_timeout(t0 + 6 * sec);
        let out = msgs(&s.take_output());
        assert_eq!(out.len(), 1);
        assert_eq!((out[0][0], out[0][1]), (v.wire(), message::ECHO_REQUEST));
        // The reply (anything at all) keeps the session up.
        s.receive_at(&Message::EchoReply(Vec::new()).encode(v, 0), t0 + 7 * sec);
        s.handle_timeout(t0 + 11 * sec);
        assert!(s.is_closed().is_none());
        assert!(s.take_output().is_empty());
        // Probed again, and silent for another interval: closed.
        s.handle_timeout(t0 + 12 * sec);
        assert_eq!(msgs(&s.take_output()).len(), 1);
        s.handle_timeout(t0 + 16 * sec);
        assert!(s.is_closed().is_none());
        s.handle_timeout(t0 + 17 * sec);
        assert_eq!(s.is_closed(), Some(&CloseReason::ProbeTimeout));
    }

    #[test]
    fn sessions_without_probing_have_no_timeout() {
        let (mut s, _) = session(Version::V10);
        assert_eq!(s.next_timeout(), None);
        s.handle_timeout(Instant::now() + Duration::from_secs(3600));
        assert!(s.is_closed().is_none());
        assert!(s.take_output().is_empty());
    }

    #[test]
    fn tlv_table_mod_request_and_ct_flush_zone() {
        use crate::openflow::wire::tlv::NXT_TLV_TABLE_REPLY;
        use crate::port::geneve::TlvMapping;
        let map = |index, class| TlvMapping {
            class,
            opt_type: 1,
            len: 4,
            index,
        };
        for v in Version::ALL {
            let (mut s, b) = session(v);
            let add = |maps: Vec<TlvMapping>| {
                Message::TlvTableMod(TlvTableMod {
                    command: TlvCommand::Add.wire(),
                    mappings: maps,
                })
                .encode(v, 3)
            };
            s.receive(&add(vec![map(0, 0x10), map(2, 0x11)]));
            assert!(s.take_output().is_empty(), "{v:?}: added");
            // Taken field, same option twice, bad index, bad length, bad
            // command: each its own NXTTMFC code, the map unchanged.
            let mut bad_len = map(5, 0x20);
            bad_len.len = 3;
            let cases = [
                (add(vec![map(0, 0x12)]), (531, 20)),
                (add(vec![map(4, 0x10)]), (532, 21)),
                (add(vec![map(9, 0x13)]), (529, 18)),
                (add(vec![bad_len]), (528, 17)),
                (
                    Message::TlvTableMod(TlvTableMod {
                        command: 7,
                        mappings: vec![],
                    })
                    .encode(v, 3),
                    (527, 16),
                ),
            ];
            for (msg, (c10, c12)) in cases {
                s.receive(&msg);
                let out = msgs(&s.take_output());
                assert_eq!(error_of(&out[0]), Some(OfpError::nx(v, c10, c12)), "{v:?}");
            }
            assert_eq!(b.tlv().load().mappings().count(), 2);
            s.receive(&Message::TlvTableRequest.encode(v, 4));
            let reply = msgs(&s.take_output()).remove(0);
            assert_eq!(reply[1], message::EXPERIMENTER);
            assert_eq!(&reply[12..16], &NXT_TLV_TABLE_REPLY.to_be_bytes());
            let r = crate::openflow::wire::tlv::TlvTableReply::parse(&reply[16..]).unwrap();
            assert_eq!(r.mappings, vec![map(0, 0x10), map(2, 0x11)]);
            assert_eq!((r.max_option_space, r.max_fields), (64, 8));
            s.receive(
                &Message::TlvTableMod(TlvTableMod {
                    command: TlvCommand::Clear.wire(),
                    mappings: vec![],
                })
                .encode(v, 5),
            );
            assert!(b.tlv().load().is_empty());
            s.receive(&Message::CtFlushZone(9).encode(v, 6));
            assert!(s.take_output().is_empty());
            assert_eq!(b.ct_flushes(), vec![9]);
        }
    }

    #[test]
    fn a_bridge_restricted_to_one_version_refuses_the_others() {
        let ofp = Arc::new(Ofproto::new("br0", Instant::now()));
        let b = Arc::new(OfprotoBackend::new(ofp, 1));
        b.set_versions(Versions::of(&[Version::V10]));
        // ovs-ofctl -O OpenFlow13: HELLO_FAILED, closed.
        let mut s = Session::new(b.clone());
        let hello = msgs(&s.take_output()).remove(0);
        assert_eq!(hello[0], 1, "our HELLO's header is 1.0");
        assert_eq!(Hello::parse(hello[0], &hello[8..]).unwrap().bitmap, 0x02);
        s.receive(&Message::Hello(Hello::for_versions(&[Version::V13])).encode(Version::V13, 1));
        let out = msgs(&s.take_output());
        assert_eq!(error_of(&out[0]), Some(OfpError::HELLO_INCOMPATIBLE));
        let text = String::from_utf8_lossy(&out[0][12..]).into_owned();
        assert!(text.contains("0x01") && text.contains("0x04"), "{text}");
        assert_eq!(s.is_closed(), Some(&CloseReason::Incompatible));
        // A peer offering 1.0 among others gets 1.0.
        let mut s = Session::new(b.clone());
        s.take_output();
        s.receive(&Message::Hello(Hello::for_versions(&Version::ALL)).encode(Version::V15, 1));
        assert_eq!(s.version(), Some(Version::V10));
        // Sessions started after the set changes see the new set.
        b.set_versions(Versions::of(&[Version::V13, Version::V15]));
        let mut s = Session::new(b);
        assert_eq!(msgs(&s.take_output())[0][0], 6);
        s.receive(&Message::Hello(Hello::for_versions(&Version::ALL)).encode(Version::V15, 1));
        assert_eq!(s.version(), Some(Version::V15));
    }

    #[test]
    fn a_barrier_waits_for_the_save_of_the_changes_before_it() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let v = Version::V13;
        let (mut s, b) = session(v);
        let saves = Arc::new(AtomicUsize::new(0));
        let n = saves.clone();
        let last = Arc::new(parking_lot::Mutex::new(None));
        let l = last.clone();
        b.set_save_hook(Some(crate::openflow::backend::SaveHook {
            clock: Arc::default(),
            save: Arc::new(move |bridge: &str, u: &Unsaved| {
                assert_eq!(bridge, "br0");
                n.fetch_add(1, Ordering::SeqCst);
                *l.lock() = Some(u.clone());
                Ok(())
            }),
        }));
        // No change yet: answered at once.
        s.receive(&Message::BarrierRequest.encode(v, 1));
        assert!(!s.barrier_pending());
        assert_eq!(msgs(&s.take_output())[0][1], message::barrier_reply_type(v));

        // A burst of flow-mods, one barrier, then an echo in one read.
        let mut bytes = Vec::new();
        for i in 0..500u32 {
            bytes.extend(Message::FlowMod(add(0, 10, i + 1, 2)).encode(v, 10 + i));
        }
        bytes.extend(Message::BarrierRequest.encode(v, 2));
        bytes.extend(Message::EchoRequest(b"after".to_vec()).encode(v, 3));
        s.receive(&bytes);
        assert_eq!(b.ofproto().n_flows(), 500, "applied before the barrier");
        assert!(s.barrier_pending());
        assert!(s.take_output().is_empty(), "no reply before the save");
        assert_eq!(s.next_timeout(), None);
        // What the I/O loop does: one save for the whole burst, carrying
        // the flow-mods as they came (one batch each).
        let u = s.take_unsaved();
        s.saved(b.save(&u), Instant::now());
        assert_eq!(saves.load(Ordering::SeqCst), 1);
        let u = last.lock().take().unwrap();
        assert_eq!((u.version, u.flow_mods.len(), u.other), (v, 500, false));
        let stamps: Vec<u64> = u.flow_mods.iter().map(|m| m.stamp).collect();
        assert_eq!(stamps, (1..=500).collect::<Vec<u64>>(), "stamped in order");
        assert_eq!(
            u.flow_mods[0].msgs,
            vec![Message::FlowMod(add(0, 10, 1, 2)).encode(v, 10)]
        );
        let out = msgs(&s.take_output());
        assert_eq!(out.len(), 2);
        assert_eq!(out[0][1], message::barrier_reply_type(v));
        assert_eq!(&out[0][4..8], &2u32.to_be_bytes());
        assert_eq!(out[1][1], message::ECHO_REPLY, "then what came after");
        // Saved: the next barrier has nothing to wait for.
        s.receive(&Message::BarrierRequest.encode(v, 4));
        assert!(!s.barrier_pending());
        s.take_output();

        // A failed save: the barrier gets an error carrying it.
        s.receive(&Message::FlowMod(add(0, 10, 900, 2)).encode(v, 5));
        s.receive(&Message::BarrierRequest.encode(v, 6));
        assert!(s.barrier_pending());
        assert_eq!(s.take_unsaved().flow_mods.len(), 1);
        s.saved(Err(NotDurable("disk full".into())), Instant::now());
        let out = msgs(&s.take_output());
        assert_eq!(error_of(&out[0]), Some(OfpError::std(1, 5)));
        assert_eq!(&out[0][4..8], &6u32.to_be_bytes());
        // Still unsaved: the next barrier waits again, for a full save.
        s.receive(&Message::BarrierRequest.encode(v, 7));
        assert!(s.barrier_pending());
        assert!(s.take_unsaved().other);
    }
}
