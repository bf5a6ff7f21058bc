//! The OpenFlow front end: each bridge served to OpenFlow peers
//! (`ovs-ofctl`, controllers) through the [`Backend`] the session speaks
//! to, over the same tables, ports and datapath `vswitchctl` drives.
//!
//! * [`BridgeBackend`]: a bridge as OpenFlow sees it. Flow-mods and dumps
//!   go to the bridge's tables (so `vswitchctl dump-flows` and `ovs-ofctl
//!   dump-flows` agree, counters and durations included); port
//!   descriptions and counters come from the datapath; packet-outs run in
//!   the datapath thread; conntrack zone flushes and the Geneve TLV map
//!   go to the bridge's tracker and map (the ones `vswitchctl` uses).
//! * Events: PORT_STATUS when a port is added, deleted or changes link;
//!   PACKET_IN from the datapath's packet-in queue, drained by a small
//!   thread per bridge ([`spawn_packet_in_pump`]), with the action's
//!   userdata and the pipeline's metadata.
//! * Controller connections reconnect with backoff and are probed for
//!   inactivity ([`PROBE_INTERVAL`]); each keeps the standing Open vSwitch
//!   reports in `Controller.status` ([`ControllerState::status`]: its
//!   rconn state, last error, seconds since it connected and
//!   disconnected, role).
//! * Fail-open: a `standalone` bridge with no controller for
//!   [`fail_open_delay`] (three times the largest inactivity probe)
//!   forwards as a learning switch until one connects.

use crate::conntrack::ConnTracker;
use crate::datapath::packet_in::{PacketIn as DpPacketIn, Refused};
use crate::datapath::worker::PortStatus;
use crate::datapath::workers::WorkersSender;
use crate::datapath::{DropCounters, DropReason};
use crate::flow::{ofp_port, Action};
use crate::ofproto::{FlowDump, FlowFilter, FlowMod, FlowModError, FlowModSummary, Ofproto};
use crate::openflow::backend::{
    mac_of, tlv_table_mod_handle, Backend, BackendError, Event, NotDurable, SaveHook, TlvModError,
    Unsaved, EVENT_QUEUE,
};
use crate::openflow::server::{strerror, ControllerLink, ControllerSession};
use crate::openflow::wire::features::Desc;
use crate::openflow::wire::hello::Versions;
use crate::openflow::wire::packet::PacketIn;
use crate::openflow::wire::port::{PortDesc, PortReason, PortStats};
use crate::openflow::wire::tlv::TlvCommand;
use crate::port::geneve::{TlvMapHandle, TlvMapping};
use crate::port::LinkState;
use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::broadcast;

/// OFPPC_PORT_DOWN.
const PORT_DOWN: u32 = 1;
/// OFPPS_LINK_DOWN.
const LINK_DOWN: u32 = 1;
/// OFPPS_LIVE (1.3+; Open vSwitch sets it on every working port).
const LIVE: u32 = 4;

/// The datapath id of a bridge: a locally administered MAC made from its
/// name, stable across restarts (Open vSwitch derives it from the bridge's
/// MAC the same way).
pub fn datapath_id(bridge: &str) -> u64 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let h = bridge.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h & 0x0000_feff_ffff_ffff) | 0x0000_0200_0000_0000
}

/// A bridge as its OpenFlow sessions see it.
pub struct BridgeBackend {
    of: Arc<Ofproto>,
    worker: WorkersSender,
    ct: Arc<ConnTracker>,
    tlv: TlvMapHandle,
    /// The datapath id: derived from the name, or Open vSwitch's
    /// `other_config:datapath-id`.
    dpid: AtomicU64,
    /// The versions its sessions may negotiate (`Bridge.protocols`).
    versions: Mutex<Versions>,
    /// What a barrier waits for (the state directory's save), when the
    /// daemon saves.
    save_hook: Mutex<Option<SaveHook>>,
    events: broadcast::Sender<Event>,
}

impl std::fmt::Debug for BridgeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeBackend")
            .field("bridge", &self.of.name())
            .field("dpid", &self.datapath_id())
            .finish()
    }
}

impl BridgeBackend {
    /// The backend of the bridge whose tables are `of`, whose datapath
    /// thread `worker` reaches, whose connections `ct` tracks and whose
    /// Geneve ports read the TLV map `tlv`.
    pub fn new(
        of: Arc<Ofproto>,
        worker: WorkersSender,
        ct: Arc<ConnTracker>,
        tlv: TlvMapHandle,
    ) -> BridgeBackend {
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        BridgeBackend {
            dpid: AtomicU64::new(datapath_id(of.name())),
            versions: Mutex::new(Versions::default()),
            save_hook: Mutex::new(None),
            of,
            worker,
            ct,
            tlv,
            events,
        }
    }

    /// Sets the datapath id FEATURES_REPLY reports (sessions already up
    /// see it in their next FEATURES_REPLY).
    pub fn set_datapath_id(&self, dpid: u64) {
        self.dpid.store(dpid, Ordering::Relaxed);
    }

    /// The datapath id FEATURES_REPLY reports.
    pub fn datapath_id_in_force(&self) -> u64 {
        self.dpid.load(Ordering::Relaxed)
    }

    /// The versions new sessions may negotiate.
    pub fn versions_in_force(&self) -> Versions {
        *self.versions.lock()
    }

    /// Limits the versions new sessions may negotiate.
    pub fn set_versions(&self, v: Versions) {
        *self.versions.lock() = v;
    }

    /// Makes barriers wait for `hook` (None: answered at once).
    pub fn set_save_hook(&self, hook: Option<SaveHook>) {
        *self.save_hook.lock() = hook;
    }

    /// Tells every session about a port change.
    pub fn port_status(&self, reason: PortReason, desc: PortDesc) {
        // No subscriber is not an error.
        let _ = self.events.send(Event::PortStatus(reason, desc));
    }

    /// The description of port `s`, as PORT_DESC and PORT_STATUS give it.
    pub fn describe(&self, s: &PortStatus) -> PortDesc {
        let enabled = self
            .of
            .with_ports(|p| p.get(s.no).is_none_or(|i| i.enabled));
        PortDesc {
            port_no: s.no,
            hw_addr: port_mac(self.datapath_id(), s.no),
            name: s.name.clone(),
            config: if enabled { 0 } else { PORT_DOWN },
            state: match s.link {
                LinkState::Up => LIVE,
                LinkState::Down => LINK_DOWN,
            },
            curr_speed: 0,
        }
    }

    fn statuses(&self) -> Vec<PortStatus> {
        let mut v = self.worker.ports();
        v.sort_by_key(|s| s.no);
        v
    }

    fn local(&self) -> PortDesc {
        PortDesc {
            port_no: ofp_port::LOCAL,
            hw_addr: mac_of(self.datapath_id()),
            name: self.of.name().to_string(),
            config: 0,
            state: LIVE,
            curr_speed: 0,
        }
    }
}

/// A port's MAC as OpenFlow reports it: the bridge's, with the port number
/// in the low bytes (the datapath keeps no MAC for in-memory ports).
fn port_mac(dpid: u64, no: u32) -> [u8; 6] {
    let mut m = mac_of(dpid);
    m[4] ^= (no >> 8) as u8;
    m[5] ^= no as u8;
    m
}

impl Backend for BridgeBackend {
    fn datapath_id(&self) -> u64 {
        self.dpid.load(Ordering::Relaxed)
    }

    fn desc(&self) -> Desc {
        Desc {
            mfr: "vswitch".to_string(),
            hw: "vswitch userspace datapath".to_string(),
            sw: env!("CARGO_PKG_VERSION").to_string(),
            serial: "None".to_string(),
            dp: self.of.name().to_string(),
        }
    }

    fn flow_mods(&self, mods: &[FlowMod]) -> Result<FlowModSummary, FlowModError> {
        self.of.flow_mods(mods, Instant::now())
    }

    fn dump_flows(&self, filter: &FlowFilter) -> Vec<FlowDump> {
        self.of.dump_flows(filter, Instant::now())
    }

    fn table_counts(&self) -> Vec<u32> {
        self.of.table_counts()
    }

    fn ports(&self) -> Vec<PortDesc> {
        let mut v: Vec<PortDesc> = self.statuses().iter().map(|s| self.describe(s)).collect();
        v.push(self.local());
        v
    }

    fn port_stats(&self, port: Option<u32>) -> Result<Vec<PortStats>, BackendError> {
        let v: Vec<PortStats> = self
            .statuses()
            .into_iter()
            .filter(|s| port.is_none_or(|n| n == s.no || n == ofp_port::NONE))
            .map(|s| PortStats {
                port_no: s.no,
                rx_packets: s.stats.rx_packets,
                tx_packets: s.stats.tx_packets,
                rx_bytes: s.stats.rx_bytes,
                tx_bytes: s.stats.tx_bytes,
                rx_dropped: s.stats.rx_dropped,
                tx_dropped: s.stats.tx_dropped,
                rx_errors: s.stats.rx_errors,
                tx_errors: s.stats.tx_errors,
                ..PortStats::default()
            })
            .collect();
        match port {
            Some(n) if v.is_empty() && n != ofp_port::NONE => Err(BackendError::NoSuchPort(n)),
            _ => Ok(v),
        }
    }

    fn packet_out(
        &self,
        in_port: u32,
        actions: &[Action],
        data: &[u8],
    ) -> Result<(), BackendError> {
        let r = self
            .worker
            .packet_out(in_port, actions.to_vec(), data.to_vec());
        match r {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err(BackendError::Unsupported("a frame that does not parse")),
            None => Err(BackendError::Unsupported(
                "packet-out while the bridge stops",
            )),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn ct_flush_zone(&self, zone: u16) -> usize {
        self.ct.flush(Some(zone))
    }

    fn tlv_table_mod(&self, cmd: TlvCommand, maps: &[TlvMapping]) -> Result<(), TlvModError> {
        tlv_table_mod_handle(&self.tlv, cmd, maps)
    }

    fn tlv_table(&self) -> Vec<TlvMapping> {
        self.tlv.load().mappings().copied().collect()
    }

    fn versions(&self) -> Versions {
        *self.versions.lock()
    }

    fn saves(&self) -> bool {
        self.save_hook.lock().is_some()
    }

    fn save(&self, changes: &Unsaved) -> Result<(), NotDurable> {
        let hook = self.save_hook.lock().clone();
        hook.map_or(Ok(()), |h| (h.save)(self.of.name(), changes))
    }

    fn flow_mods_stamped(&self, mods: &[FlowMod]) -> (Result<FlowModSummary, FlowModError>, u64) {
        let hook = self.save_hook.lock().clone();
        match hook {
            Some(h) => h.stamped(|| self.flow_mods(mods)),
            None => (self.flow_mods(mods), 0),
        }
    }
}

/// Drains the datapath's packet-ins into PACKET_IN events for `backend`'s
/// sessions, until the datapath goes away (its sender is dropped).
/// A packet-in no session was there to take is counted in `drops`.
pub fn spawn_packet_in_pump(
    bridge: &str,
    rx: Receiver<DpPacketIn>,
    backend: Arc<BridgeBackend>,
    drops: Arc<DropCounters>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("pktin-{bridge}"))
        .spawn(move || {
            for pi in rx.iter() {
                let ev = PacketIn {
                    total_len: pi.total_len.min(usize::from(u16::MAX)) as u16,
                    in_port: pi.key.in_port(),
                    reason: pi.reason.wire(),
                    table_id: pi.table_id,
                    cookie: pi.cookie,
                    metadata: crate::openflow::wire::packet::metadata_of(&pi.key),
                    userdata: pi.userdata,
                    data: pi.data,
                };
                if backend.events.send(Event::PacketIn(Box::new(ev))).is_err() {
                    drops.add(DropReason::PacketIn(Refused::NoController), 1);
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datapath_ids_are_stable_local_macs() {
        let a = datapath_id("br0");
        assert_eq!(a, datapath_id("br0"));
        assert_ne!(a, datapath_id("br1"));
        assert_eq!(a >> 48, 0);
        assert_eq!((a >> 40) & 0x03, 0x02, "locally administered, unicast");
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_restarts_after_a_lasting_session() {
        let s = std::time::Duration::from_secs;
        let mut b = Backoff::new(MAX_BACKOFF);
        let waits: Vec<u64> = (0..6).map(|_| b.next(None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
        // Up for less than the current wait (accepted, then hung up at
        // once): no reset, still capped.
        assert_eq!(b.next(Some(s(2))), s(8));
        // Up long enough: from 1 s again.
        assert_eq!(b.next(Some(s(60))), s(1));
        assert_eq!(b.next(None), s(2));
        // A 2 s cap (max_backoff=2000).
        let mut b = Backoff::new(s(2));
        let waits: Vec<u64> = (0..4).map(|_| b.next(None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 2, 2]);
        // A cap of 1 s.
        let mut b = Backoff::new(s(1));
        assert_eq!((b.next(None), b.next(None)), (s(1), s(1)));
    }

    #[test]
    fn controller_columns_read_as_open_vswitch_reads_them() {
        let s = std::time::Duration::from_secs;
        let tcp: Target = "tcp:127.0.0.1:6653".parse().unwrap();
        let unix: Target = "unix:/run/c.sock".parse().unwrap();
        let c = |t: &Target, p, b| {
            ControllerConfig::from_columns(t.clone(), p, b, ConnectionMode::OutOfBand)
        };
        let d = ControllerConfig::new(tcp.clone());
        assert_eq!((d.inactivity_probe, d.max_backoff), (Some(s(5)), s(8)));
        assert_eq!(d.configured_probe, s(5));
        assert_eq!(c(&tcp, Some(0), None).inactivity_probe, None, "0 disables");
        assert_eq!(c(&tcp, Some(0), None).configured_probe, s(0));
        // Open vSwitch 3.1: only 0 turns probing off; under a second is
        // 1 s, raised to the 5 s floor for the probe itself.
        let short = c(&tcp, Some(999), None);
        assert_eq!(
            (short.inactivity_probe, short.configured_probe),
            (Some(s(5)), s(1))
        );
        assert_eq!(
            c(&tcp, Some(1000), None).inactivity_probe,
            Some(s(5)),
            "floor 5 s"
        );
        assert_eq!(c(&tcp, Some(30_500), None).inactivity_probe, Some(s(30)));
        assert_eq!(c(&tcp, Some(30_500), None).configured_probe, s(30));
        assert_eq!(c(&tcp, Some(-5), None).inactivity_probe, Some(s(5)));
        assert_eq!(c(&tcp, Some(-5), None).configured_probe, s(1));
        assert_eq!(c(&tcp, None, Some(2000)).max_backoff, s(2));
        assert_eq!(c(&tcp, None, Some(500)).max_backoff, s(1), "floor 1 s");
        assert_eq!(c(&tcp, None, Some(-1)).max_backoff, s(1));
        assert_eq!(ControllerConfig::new(unix.clone()).inactivity_probe, None);
        assert_eq!(c(&unix, Some(30_000), None).inactivity_probe, None);
        assert_eq!(
            c(&unix, Some(30_000), None).configured_probe,
            s(30),
            "counted for fail-open although never probed"
        );
        assert_eq!(ConnectionMode::parse(""), Some(ConnectionMode::OutOfBand));
        assert_eq!(
            ConnectionMode::parse("in-band"),
            Some(ConnectionMode::InBand)
        );
        assert_eq!(ConnectionMode::parse("sideways"), None);
    }

    #[test]
    fn fail_open_waits_three_largest_probes_and_at_least_a_second() {
        let s = std::time::Duration::from_secs;
        let c = |t: &str, probe: Option<i64>| {
            ControllerConfig::from_columns(
                t.parse().unwrap(),
                probe,
                None,
                ConnectionMode::OutOfBand,
            )
        };
        let tcp = "tcp:127.0.0.1:6653";
        assert_eq!(fail_open_delay(&[c(tcp, None)]), s(15), "default 5 s probe");
        assert_eq!(
            fail_open_delay(&[c(tcp, Some(5000)), c("tcp:127.0.0.2", Some(30_000))]),
            s(90),
            "the largest"
        );
        assert_eq!(fail_open_delay(&[c(tcp, Some(0))]), s(1), "probing off");
        assert_eq!(fail_open_delay(&[]), s(1));
        assert_eq!(fail_open_delay(&[c(tcp, Some(500))]), s(3), "1 s, unraised");
        assert_eq!(
            fail_open_delay(&[c(tcp, Some(7999))]),
            s(21),
            "whole seconds"
        );
        assert_eq!(
            fail_open_delay(&[c("unix:/run/c.sock", None)]),
            s(15),
            "unix: counted as configured"
        );
        assert_eq!(
            fail_open_delay(&[c(tcp, Some(0)), c("ptcp:6653", Some(10_000))]),
            s(30),
            "a passive target's probe counts"
        );
    }

    #[test]
    fn fail_open_needs_every_controller_failed_for_the_delay() {
        let s = std::time::Duration::from_secs;
        assert!(failed_for([s(15)].into_iter(), s(15)));
        assert!(!failed_for([s(14)].into_iter(), s(15)));
        assert!(
            !failed_for([s(20), s(0)].into_iter(), s(15)),
            "one connected"
        );
        assert!(
            failed_for([s(20), s(16)].into_iter(), s(15)),
            "the shortest"
        );
        assert!(!failed_for(std::iter::empty(), s(1)), "no controller");
    }

    #[test]
    fn a_controller_connection_keeps_open_vswitch_standing() {
        let s = std::time::Duration::from_secs;
        let t0 = std::time::Instant::now();
        let st = ControllerState::new(ControllerConfig::new("tcp:127.0.0.1:1".parse().unwrap()));
        let fresh = st.status(t0);
        assert_eq!(
            (fresh.state, fresh.is_connected),
            (ConnState::Connecting, false)
        );
        assert_eq!(
            (
                fresh.role,
                fresh.last_error,
                fresh.sec_since_connect,
                fresh.sec_since_disconnect
            ),
            (None, None, None, None)
        );

        // Refused: backing off with the error; no disconnection counted.
        st.attempt_failed(strerror(&std::io::Error::from_raw_os_error(
            libc::ECONNREFUSED,
        )));
        let b = st.status(t0 + s(1));
        assert_eq!(b.state, ConnState::Backoff);
        assert_eq!(b.last_error.as_deref(), Some("Connection refused"));
        assert_eq!((b.sec_since_connect, b.sec_since_disconnect), (None, None));

        // Connected (HELLOs done) at t0+2: ACTIVE, role other, the old
        // error kept.
        st.connecting();
        assert_eq!(st.status(t0 + s(2)).state, ConnState::Connecting);
        st.standing_at(false, 1, t0 + s(2));
        let a = st.status(t0 + s(9));
        assert_eq!(
            (a.state, a.is_connected, a.role),
            (ConnState::Active, true, Some("other"))
        );
        assert_eq!(a.sec_since_connect, Some(7));
        assert_eq!(a.sec_since_disconnect, None);
        assert_eq!(a.last_error.as_deref(), Some("Connection refused"));
        assert!(st.is_connected());

        // Probed and silent: IDLE; the connection time stays; a reply and
        // a role request: ACTIVE, master.
        st.standing_at(true, 1, t0 + s(10));
        let i = st.status(t0 + s(10));
        assert_eq!((i.state, i.is_connected), (ConnState::Idle, true));
        assert_eq!(i.sec_since_connect, Some(8));
        st.standing_at(false, 2, t0 + s(11));
        let m = st.status(t0 + s(11));
        assert_eq!((m.state, m.role), (ConnState::Active, Some("master")));

        // Heard from at t0+11.5, then it hangs up at t0+12: its failure
        // counts from the last thing it said.
        assert_eq!(st.failure_duration(t0 + s(11)), s(0), "connected");
        st.heard_at(t0 + s(11) + s(1) / 2);
        st.ended_at(
            crate::openflow::server::SessionEnd::PeerClosed.last_error(),
            t0 + s(12),
        );
        let e = st.status(t0 + s(15));
        assert_eq!(
            (e.state, e.is_connected, e.role),
            (ConnState::Backoff, false, None)
        );
        assert_eq!(e.last_error.as_deref(), Some("End of file"));
        assert_eq!(
            (e.sec_since_connect, e.sec_since_disconnect),
            (Some(13), Some(3))
        );
        assert!(!st.is_connected());
        assert_eq!(st.failure_duration(t0 + s(15)), s(3) + s(1) / 2);

        // Back: the disconnection time stays, as Open vSwitch keeps it.
        st.standing_at(false, 1, t0 + s(20));
        let again = st.status(t0 + s(21));
        assert_eq!(again.role, Some("other"), "a new session starts equal");
        assert_eq!(
            (again.sec_since_connect, again.sec_since_disconnect),
            (Some(1), Some(9))
        );
    }

    #[test]
    fn a_loopback_refusal_is_at_once_and_a_listener_connects() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nobody = closed.local_addr().unwrap();
        drop(closed);
        let limit = std::time::Duration::from_secs(10);
        rt.block_on(async {
            let s = connect_tcp(open, limit).await.expect("connects");
            assert_eq!(s.peer_addr().unwrap(), open);
            // As ovs-vswitchd sees it on loopback: refused by the time
            // connect() returns, so no disconnection is counted (unless
            // the kernel deferred the refusal, under load: then it came
            // while connecting, as from a remote host).
            match connect_tcp(nobody, limit).await {
                Err(ConnectFailed::AtOnce(e) | ConnectFailed::WhileConnecting(e)) => {
                    assert_eq!(strerror(&e), "Connection refused")
                }
                other => panic!("{other:?}"),
            }
        });
    }

    /// A peer that never completes the connection (a listener whose
    /// accept queue is full drops the SYN, as a black hole would): the
    /// attempt ends after its limit, as Open vSwitch's CONNECTING does.
    #[test]
    fn a_connection_that_does_not_complete_times_out() {
        use socket2::{Domain, Socket, Type};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        l.bind(&any.into()).unwrap();
        l.listen(0).unwrap();
        let a = l.local_addr().unwrap().as_socket().unwrap();
        // Fill the accept queue (never accepted).
        let short = std::time::Duration::from_millis(300);
        let fill: Vec<_> = (0..3)
            .filter_map(|_| std::net::TcpStream::connect_timeout(&a, short).ok())
            .collect();
        assert!(!fill.is_empty());
        rt.block_on(async {
            match connect_tcp(a, std::time::Duration::from_secs(1)).await {
                Err(ConnectFailed::WhileConnecting(e)) => {
                    assert_eq!(strerror(&e), "Connection timed out")
                }
                other => panic!("{other:?}"),
            }
        });
    }

    #[test]
    fn session_ends_read_as_open_vswitch_words_them() {
        use crate::openflow::conn::CloseReason;
        use crate::openflow::server::SessionEnd;
        let os = std::io::Error::from_raw_os_error;
        assert_eq!(SessionEnd::PeerClosed.last_error(), "End of file");
        assert_eq!(
            SessionEnd::Io(os(libc::ECONNRESET)).last_error(),
            "Connection reset by peer"
        );
        assert_eq!(
            SessionEnd::Closed(CloseReason::ProbeTimeout).last_error(),
            "Connection timed out"
        );
        assert_eq!(
            SessionEnd::WriteTimeout.last_error(),
            "Connection timed out"
        );
        assert_eq!(
            SessionEnd::Closed(CloseReason::Incompatible).last_error(),
            "Protocol error"
        );
        assert_eq!(strerror(&os(libc::ECONNREFUSED)), "Connection refused");
        let custom = std::io::Error::other("something else");
        assert_eq!(strerror(&custom), "something else");
    }
}

/// What a bridge does while no controller is connected (Open vSwitch's
/// `fail_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// After [`fail_open_delay`] without a controller, forward as a
    /// MAC-learning switch (fail-open) until one connects again.
    #[default]
    Standalone,
    /// Keep forwarding with the flows there are; never take over.
    Secure,
}

impl FailMode {
    /// Parses `standalone` or `secure`.
    pub fn parse(s: &str) -> Option<FailMode> {
        match s {
            "standalone" => Some(FailMode::Standalone),
            "secure" => Some(FailMode::Secure),
            _ => None,
        }
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            FailMode::Standalone => "standalone",
            FailMode::Secure => "secure",
        }
    }
}

/// How long a `standalone` bridge waits without any controller before it
/// fails open, as Open vSwitch's fail-open reckons it: three times the
/// largest inactivity probe interval among its controllers (passive
/// `ptcp:` ones included), taken as configured
/// ([`ControllerConfig::configured_probe`]: before the 5 s floor, and for
/// a `unix:` controller although it is never probed), so that every
/// controller can go idle, be probed and be reconnected first. With
/// probing off everywhere that is 0, and Open vSwitch, counting the
/// disconnection in whole seconds and only once it lasted one, fails open
/// after 1 s: the least this returns. The delay runs from the last time a
/// controller was heard from ([`ControllerState::failure_duration`]), once
/// none is connected. Open vSwitch's admission guess is not kept: it also
/// counts a connected controller as failed until it sends something beyond
/// the handshake (a flow-mod, a packet-out...) or has been connected for
/// 30 s; here a controller is back once its HELLOs are exchanged.
pub fn fail_open_delay(controllers: &[ControllerConfig]) -> std::time::Duration {
    let max = controllers
        .iter()
        .map(|c| c.configured_probe)
        .max()
        .unwrap_or_default();
    (max * 3).max(std::time::Duration::from_secs(1))
}
/// The longest wait between two connection attempts.
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(8);
/// Silence from a controller after which it is probed with an echo
/// request; as long again without a reply and the connection is made
/// again (Open vSwitch's default `inactivity_probe`).
pub const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Bytes of events queued for a controller before they are dropped.
const MAX_OUTPUT: usize = 16 << 20;
/// A controller that does not read for this long is disconnected.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A controller to connect to (`tcp:IP:PORT`, `unix:PATH`), or a passive
/// listener controllers connect to (`ptcp:PORT[:IP]`, loopback unless an
/// address is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// TCP.
    Tcp(std::net::SocketAddr),
    /// A unix socket.
    Unix(std::path::PathBuf),
    /// Listen on TCP.
    Passive(std::net::SocketAddr),
}

/// A controller target that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad controller target '{0}': expected tcp:IP[:PORT], unix:PATH or ptcp:PORT[:IP]")]
pub struct TargetError(pub String);

impl std::str::FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Target, TargetError> {
        let bad = || TargetError(s.to_string());
        if s.starts_with("ptcp:") {
            return crate::openflow::server::parse_ptcp(s)
                .map(Target::Passive)
                .map_err(|_| bad());
        }
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(bad());
            }
            return Ok(Target::Unix(p.into()));
        }
        let rest = s.strip_prefix("tcp:").ok_or_else(bad)?;
        // tcp:IP:PORT, with [v6]:PORT allowed; Open vSwitch's default port
        // is 6653.
        let (ip, port) = match rest.rsplit_once(':') {
            Some((ip, port)) if !ip.is_empty() && !ip.ends_with(':') => {
                (ip, port.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (rest, 6653),
        };
        let ip: std::net::IpAddr = ip
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| bad())?;
        Ok(Target::Tcp(std::net::SocketAddr::new(ip, port)))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "tcp:{a}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
            Target::Passive(a) => write!(f, "ptcp:{}:{}", a.port(), a.ip()),
        }
    }
}

/// How the switch reaches a controller (Open vSwitch's
/// `Controller.connection_mode`).
///
/// Only out-of-band is implemented: the connection goes through the host's
/// own network stack, never through the bridge. In-band control would need
/// Open vSwitch's hidden flows (ARP and the controller's TCP/6653 allowed
/// through the bridge's LOCAL port before any OpenFlow flow) and a LOCAL
/// port that is a real host interface; vswitch's LOCAL port has no device.
/// An `in-band` row is accepted and connects out of band, with a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionMode {
    /// Through the host's network stack.
    #[default]
    OutOfBand,
    /// Asked for in-band; connected out of band all the same.
    InBand,
}

impl ConnectionMode {
    /// `in-band` or `out-of-band`; empty (Open vSwitch's in-band default)
    /// reads as out-of-band, the only mode there is, without a warning.
    pub fn parse(s: &str) -> Option<ConnectionMode> {
        match s {
            "" | "out-of-band" => Some(ConnectionMode::OutOfBand),
            "in-band" => Some(ConnectionMode::InBand),
            _ => None,
        }
    }
}

/// The shortest inactivity probe interval: Open vSwitch raises a shorter
/// (non-zero) `inactivity_probe` to it.
pub const MIN_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// One controller and how its connection is kept (Open vSwitch's
/// Controller row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Where to connect.
    pub target: Target,
    /// Silence after which the controller is probed with an echo request,
    /// and after which, once more, it is hung up on and connected again;
    /// `None` never probes.
    pub inactivity_probe: Option<std::time::Duration>,
    /// The probe interval as the row asks for it, in whole seconds as
    /// ovs-vswitchd keeps it before the 5 s floor and the `unix:`
    /// exemption (zero: off; a non-zero value under a second is 1 s); what
    /// [`fail_open_delay`] counts.
    pub configured_probe: std::time::Duration,
    /// The longest wait between two connection attempts.
    pub max_backoff: std::time::Duration,
    /// What was asked for (connections are out of band either way).
    pub connection_mode: ConnectionMode,
}

impl ControllerConfig {
    /// `target` with Open vSwitch's defaults: probed after 5 s of silence
    /// (a `unix:` controller is local and never probed, as Open vSwitch
    /// does), reconnecting with a backoff of up to 8 s.
    pub fn new(target: Target) -> ControllerConfig {
        ControllerConfig::from_columns(target, None, None, ConnectionMode::OutOfBand)
    }

    /// From a Controller row's `inactivity_probe` and `max_backoff`
    /// (milliseconds), read as ovs-vswitchd 3.1 reads them: in whole
    /// seconds, where only 0 disables probing (any other value under
    /// 1000 ms, negative ones too, counts as 1 s), a probe of at least
    /// [`MIN_PROBE_INTERVAL`], a backoff of at least 1 s; unset, 5 s and
    /// 8 s. A `unix:` target is never probed.
    pub fn from_columns(
        target: Target,
        inactivity_probe_ms: Option<i64>,
        max_backoff_ms: Option<i64>,
        connection_mode: ConnectionMode,
    ) -> ControllerConfig {
        let secs = |ms: i64| std::time::Duration::from_secs(u64::try_from(ms / 1000).unwrap_or(0));
        let configured_probe = match inactivity_probe_ms {
            None => PROBE_INTERVAL,
            Some(0) => std::time::Duration::ZERO,
            Some(ms) if ms < 1000 => std::time::Duration::from_secs(1),
            Some(ms) => secs(ms),
        };
        let probe = Some(configured_probe)
            .filter(|d| !d.is_zero())
            .map(|d| d.max(MIN_PROBE_INTERVAL))
            .filter(|_| !matches!(target, Target::Unix(_)));
        let max_backoff = max_backoff_ms
            .map(secs)
            .map_or(MAX_BACKOFF, |d| d.max(std::time::Duration::from_secs(1)));
        ControllerConfig {
            target,
            inactivity_probe: probe,
            configured_probe,
            max_backoff,
            connection_mode,
        }
    }
}

/// The wait between connection attempts, kept as Open vSwitch's `rconn`
/// keeps it: 1 s after the first failure, doubling while under half the
/// maximum, then the maximum; a session that stayed up at least as long as
/// the current wait starts again from 1 s, so a controller that accepts
/// and at once hangs up is not hammered every second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    wait: std::time::Duration,
    max: std::time::Duration,
}

impl Backoff {
    /// No wait yet, at most `max`.
    pub fn new(max: std::time::Duration) -> Backoff {
        Backoff {
            wait: std::time::Duration::ZERO,
            max,
        }
    }

    /// The wait chosen last (zero before the first).
    pub fn current(&self) -> std::time::Duration {
        self.wait
    }

    /// The wait before the next attempt, after an attempt that failed
    /// (`session` None) or a session that was up for `session`.
    pub fn next(&mut self, session: Option<std::time::Duration>) -> std::time::Duration {
        let sec = std::time::Duration::from_secs(1);
        self.wait = if session.is_some_and(|up| up >= self.wait) {
            sec
        } else if self.wait < self.max / 2 {
            (self.wait * 2).max(sec)
        } else {
            self.max
        };
        self.wait
    }
}

/// Where a controller connection stands: Open vSwitch's rconn states, as
/// `Controller.status:state` names them (VOID, a connection that is
/// disabled, does not occur: a bridge keeps no disabled controller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ConnState {
    /// Waiting before the next attempt.
    Backoff,
    /// Connecting, or waiting for the controller's HELLO.
    Connecting,
    /// Connected (HELLOs exchanged) and heard from.
    Active,
    /// Connected, and an inactivity probe is unanswered.
    Idle,
}

impl ConnState {
    /// The name Open vSwitch writes.
    pub fn name(self) -> &'static str {
        match self {
            ConnState::Backoff => "BACKOFF",
            ConnState::Connecting => "CONNECTING",
            ConnState::Active => "ACTIVE",
            ConnState::Idle => "IDLE",
        }
    }

    /// Whether a session is up.
    pub fn is_connected(self) -> bool {
        matches!(self, ConnState::Active | ConnState::Idle)
    }
}

/// A controller connection's standing at one moment: what Open vSwitch
/// writes in the Controller row's `is_connected`, `role` and `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ControllerStatus {
    /// Its state.
    pub state: ConnState,
    /// Whether a session is up (ACTIVE or IDLE).
    pub is_connected: bool,
    /// While connected, the role the controller holds: `other` unless it
    /// asked for `master` or `slave`.
    pub role: Option<&'static str>,
    /// The error that ended the last session or failed the last attempt
    /// (`strerror` text: "Connection refused", "End of file"...); kept
    /// after a later success, as Open vSwitch keeps it.
    pub last_error: Option<String>,
    /// Whole seconds since the last time it connected, once it has.
    pub sec_since_connect: Option<u64>,
    /// Whole seconds since the last session ended, once one has (an
    /// attempt refused at once is no disconnection, as in Open vSwitch).
    pub sec_since_disconnect: Option<u64>,
}

/// What a connection has been through (guarded: the connection's task
/// writes, `show` and the OVSDB writer read, a few times a second at most).
#[derive(Debug, Clone)]
struct Link {
    state: ConnState,
    role: u32,
    last_error: Option<String>,
    last_connected: Option<std::time::Instant>,
    last_disconnected: Option<std::time::Instant>,
    /// The last time the controller was heard from (the end of a HELLO
    /// exchange, then anything it sent), or when the connection was set
    /// up: what fail-open counts from.
    last_heard: std::time::Instant,
}

/// One controller connection's state, as `show` and the database report
/// it.
#[derive(Debug)]
pub struct ControllerState {
    /// The target.
    pub target: Target,
    /// How the connection is kept.
    pub config: ControllerConfig,
    link: parking_lot::Mutex<Link>,
}

/// OFPCR_ROLE_* as Open vSwitch writes it in `Controller.role`.
fn role_name(role: u32) -> Option<&'static str> {
    match role {
        1 => Some("other"),
        2 => Some("master"),
        3 => Some("slave"),
        _ => None,
    }
}

impl ControllerState {
    /// A connection to `config`'s target, about to make its first attempt
    /// (CONNECTING, as Open vSwitch starts one).
    pub fn new(config: ControllerConfig) -> ControllerState {
        ControllerState {
            target: config.target.clone(),
            config,
            link: parking_lot::Mutex::new(Link {
                state: ConnState::Connecting,
                role: 1,
                last_error: None,
                last_connected: None,
                last_disconnected: None,
                last_heard: std::time::Instant::now(),
            }),
        }
    }

    /// How long it has failed at `now`: zero while connected, else the
    /// time since it was last heard from (Open vSwitch's
    /// `rconn_failure_duration`, which counts from the controller's last
    /// message, so a silently dead controller counts from its silence, not
    /// from the probe's verdict).
    pub fn failure_duration(&self, now: std::time::Instant) -> std::time::Duration {
        let l = self.link.lock();
        if l.state.is_connected() {
            std::time::Duration::ZERO
        } else {
            now.saturating_duration_since(l.last_heard)
        }
    }

    /// The controller sent something at `now`.
    fn heard_at(&self, now: std::time::Instant) {
        self.link.lock().last_heard = now;
    }

    /// Whether a session with it is up (its HELLO exchange done).
    pub fn is_connected(&self) -> bool {
        self.link.lock().state.is_connected()
    }

    /// Its standing at `now`.
    pub fn status(&self, now: std::time::Instant) -> ControllerStatus {
        let l = self.link.lock().clone();
        let since =
            |t: Option<std::time::Instant>| t.map(|t| now.saturating_duration_since(t).as_secs());
        ControllerStatus {
            state: l.state,
            is_connected: l.state.is_connected(),
            role: role_name(l.role).filter(|_| l.state.is_connected()),
            last_error: l.last_error,
            sec_since_connect: since(l.last_connected),
            sec_since_disconnect: since(l.last_disconnected),
        }
    }

    /// An attempt starts.
    fn connecting(&self) {
        self.link.lock().state = ConnState::Connecting;
    }

    /// The attempt failed before any connection was made: backing off,
    /// with `error`; no disconnection is counted.
    fn attempt_failed(&self, error: String) {
        let mut l = self.link.lock();
        l.state = ConnState::Backoff;
        l.last_error = Some(error);
    }

    /// The session reports its standing at `now` (see
    /// [`ControllerLink::standing`]).
    fn standing_at(&self, idle: bool, role: u32, now: std::time::Instant) {
        let mut l = self.link.lock();
        if !l.state.is_connected() {
            l.last_connected = Some(now);
            l.last_heard = now;
        }
        l.state = if idle {
            ConnState::Idle
        } else {
            ConnState::Active
        };
        l.role = role;
    }

    /// The session (or the connection before its HELLO) ended at `now`,
    /// with `error`: backing off, a disconnection counted.
    fn ended_at(&self, error: String, now: std::time::Instant) {
        let mut l = self.link.lock();
        l.state = ConnState::Backoff;
        l.last_error = Some(error);
        l.last_disconnected = Some(now);
        l.role = 1;
    }
}

impl ControllerLink for ControllerState {
    fn standing(&self, idle: bool, role: u32) {
        self.standing_at(idle, role, std::time::Instant::now());
    }

    fn heard(&self) {
        self.heard_at(std::time::Instant::now());
    }
}

/// A bridge's controllers: a reconnecting connection per target and, in
/// standalone mode, the fail-open watchdog. Dropping it disconnects.
#[derive(Debug)]
pub struct Controllers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Each target's state.
    pub states: Vec<Arc<ControllerState>>,
    /// The fail mode in force.
    pub fail_mode: FailMode,
    /// In standalone mode, how long without a controller before it fails
    /// open ([`fail_open_delay`]).
    pub fail_open_after: Option<std::time::Duration>,
    of: Arc<Ofproto>,
}

impl Drop for Controllers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.of.set_fail_open(false);
    }
}

impl Controllers {
    /// Connects to `controllers` on runtime `rt` and keeps reconnecting
    /// (each with its own backoff and inactivity probe) for as long as it
    /// lives.
    pub fn start(
        rt: &tokio::runtime::Handle,
        controllers: &[ControllerConfig],
        fail_mode: FailMode,
        backend: Arc<BridgeBackend>,
    ) -> Controllers {
        let of = backend.of.clone();
        let mut tasks = Vec::new();
        let mut states = Vec::new();
        for c in controllers
            .iter()
            .filter(|c| !matches!(c.target, Target::Passive(_)))
        {
            if c.connection_mode == ConnectionMode::InBand {
                tracing::warn!(controller = %c.target, "connection_mode=in-band: in-band control is not implemented (no hidden in-band flows); connecting out of band");
            }
            let st = Arc::new(ControllerState::new(c.clone()));
            states.push(st.clone());
            tasks.push(rt.spawn(connect_loop(st, backend.clone())));
        }
        // Only connections can fail; passive targets still count in the
        // delay, as Open vSwitch counts every primary controller's probe.
        let fail_open_after = (fail_mode == FailMode::Standalone && !states.is_empty())
            .then(|| fail_open_delay(controllers));
        if let Some(after) = fail_open_after {
            tasks.push(rt.spawn(watchdog(states.clone(), of.clone(), after)));
        }
        Controllers {
            tasks,
            states,
            fail_mode,
            fail_open_after,
            of,
        }
    }

    /// The configurations it was started with.
    pub fn configs(&self) -> Vec<ControllerConfig> {
        self.states.iter().map(|s| s.config.clone()).collect()
    }
}

async fn connect_loop(st: Arc<ControllerState>, backend: Arc<BridgeBackend>) {
    let mut backoff = Backoff::new(st.config.max_backoff);
    let mut warned = false;
    loop {
        st.connecting();
        let b: Arc<dyn Backend> = backend.clone();
        // Open vSwitch gives a connection attempt, its HELLO exchange
        // included, the current backoff, at least 1 s.
        let limit = backoff.current().max(std::time::Duration::from_secs(1));
        let hello_by = std::time::Instant::now() + limit;
        let lasted = match &st.target {
            Target::Tcp(a) => match connect_tcp(*a, limit).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    Some(serve(&st, s, b, hello_by).await)
                }
                Err(ConnectFailed::AtOnce(e)) => attempt_failed(&st, &e, &mut warned),
                Err(ConnectFailed::WhileConnecting(e)) => {
                    // Open vSwitch counts the end of a connection in
                    // progress as a disconnection.
                    st.ended_at(strerror(&e), std::time::Instant::now());
                    attempt_failed_log(&st, &e, &mut warned)
                }
            },
            Target::Unix(p) => match tokio::net::UnixStream::connect(p).await {
                Ok(s) => Some(serve(&st, s, b, hello_by).await),
                Err(e) => attempt_failed(&st, &e, &mut warned),
            },
            // Passive targets are listeners, not connections.
            Target::Passive(_) => return,
        };
        let wait = backoff.next(lasted);
        if lasted.is_some() {
            tracing::warn!(controller = %st.target, "disconnected; reconnecting in {wait:?}");
            warned = false;
        }
        tokio::time::sleep(wait).await;
    }
}

/// Runs a session with a connected controller, whose HELLO exchange must
/// be done by `hello_by`; how long it was up.
async fn serve<S>(
    st: &Arc<ControllerState>,
    stream: S,
    backend: Arc<dyn Backend>,
    hello_by: std::time::Instant,
) -> std::time::Duration
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let since = std::time::Instant::now();
    tracing::info!(controller = %st.target, probe = ?st.config.inactivity_probe, "connected");
    let end = crate::openflow::server::run_controller(
        stream,
        backend,
        ControllerSession {
            max_output: MAX_OUTPUT,
            write_timeout: WRITE_TIMEOUT,
            probe: st.config.inactivity_probe,
            hello_by: Some(hello_by),
            link: st.clone(),
        },
    )
    .await;
    let error = end.last_error();
    tracing::debug!(controller = %st.target, "session ended: {error}");
    st.ended_at(error, std::time::Instant::now());
    since.elapsed()
}

/// How a TCP connection attempt failed.
#[derive(Debug)]
enum ConnectFailed {
    /// At once: in `connect` itself (no route...) or already when it
    /// returned (a loopback refusal).
    AtOnce(std::io::Error),
    /// After the connection was in progress: refused or reset by the far
    /// end, or not done within its time.
    WhileConnecting(std::io::Error),
}

/// Connects to `a` as Open vSwitch does, telling an attempt that failed at
/// once (no connection was ever in progress: rconn's BACKOFF straight
/// away) from one that failed in progress (CONNECTING, then a
/// disconnection), which may last at most `limit`.
async fn connect_tcp(
    a: std::net::SocketAddr,
    limit: std::time::Duration,
) -> Result<tokio::net::TcpStream, ConnectFailed> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(a), Type::STREAM, Some(Protocol::TCP))
        .map_err(ConnectFailed::AtOnce)?;
    sock.set_nonblocking(true).map_err(ConnectFailed::AtOnce)?;
    match sock.connect(&a.into()) {
        Ok(()) => {}
        // Open vSwitch looks at the socket once more right after
        // connect(): a refusal already there (loopback answers within
        // connect()) counts as at once.
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            if let Some(e) = sock.take_error().map_err(ConnectFailed::AtOnce)? {
                return Err(ConnectFailed::AtOnce(e));
            }
        }
        Err(e) => return Err(ConnectFailed::AtOnce(e)),
    }
    let s = tokio::net::TcpStream::from_std(std::net::TcpStream::from(sock))
        .map_err(ConnectFailed::AtOnce)?;
    let timed_out = || std::io::Error::from_raw_os_error(libc::ETIMEDOUT);
    tokio::time::timeout(limit, s.writable())
        .await
        .map_err(|_| ConnectFailed::WhileConnecting(timed_out()))?
        .map_err(ConnectFailed::WhileConnecting)?;
    if let Some(e) = s.take_error().map_err(ConnectFailed::WhileConnecting)? {
        return Err(ConnectFailed::WhileConnecting(e));
    }
    Ok(s)
}

/// Records a failed attempt, and logs the first of a run of them; None
/// (no session).
fn attempt_failed(
    st: &ControllerState,
    e: &std::io::Error,
    warned: &mut bool,
) -> Option<std::time::Duration> {
    st.attempt_failed(strerror(e));
    attempt_failed_log(st, e, warned)
}

/// Logs the first failed attempt of a run; None (no session).
fn attempt_failed_log(
    st: &ControllerState,
    e: &std::io::Error,
    warned: &mut bool,
) -> Option<std::time::Duration> {
    if !*warned {
        tracing::warn!(controller = %st.target, "cannot connect: {e}; retrying with backoff");
        *warned = true;
    }
    None
}

/// Whether a standalone bridge whose controllers have failed for
/// `failures` should be failed open after `after`: when every one of them
/// has (Open vSwitch takes the shortest failure), for at least `after`.
fn failed_for(
    failures: impl Iterator<Item = std::time::Duration>,
    after: std::time::Duration,
) -> bool {
    failures.min().is_some_and(|d| d >= after)
}

/// Standalone mode: fail open once every controller has failed (not
/// connected, not heard from) for `after` ([`fail_open_delay`]), and close
/// again as soon as one is connected.
async fn watchdog(states: Vec<Arc<ControllerState>>, of: Arc<Ofproto>, after: std::time::Duration) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tick.tick().await;
        let now = std::time::Instant::now();
        if states.iter().any(|s| s.is_connected()) {
            if of.fail_open() {
                tracing::info!(bridge = %of.name(), "controller back: leaving fail-open");
            }
            of.set_fail_open(false);
        } else if !of.fail_open()
            && failed_for(states.iter().map(|s| s.failure_duration(now)), after)
        {
            tracing::warn!(bridge = %of.name(), "no controller for {after:?} (3 x the largest inactivity_probe, at least 1 s): fail-open (NORMAL forwarding)");
            of.set_fail_open(true);
        }
    }
}
