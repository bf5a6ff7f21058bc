//! Raw frames on real interfaces, from outside the switch, and what an
//! interface saw: the one way tests send hand-made frames into a
//! namespace's interface and capture what arrives.
//!
//! * [`Raw`]: python3 AF_PACKET snippets, written once per test into a
//!   temporary directory. [`Raw::send`] writes frames as they are (tags
//!   included: this kernel has no 8021q module, so no VLAN devices);
//!   [`Raw::capture`] records every frame of an interface, both
//!   directions, asking the kernel for PACKET_AUXDATA (a tag the kernel
//!   strips on receive is put back, as libpcap does) and PACKET_VNET_HDR
//!   (a TSO super-packet crossing a veth is not on any wire: what would be
//!   is its segments, headers + gso_size; a plain `tcpdump -w` would show
//!   it as one huge frame). Also a UDP receiver that prints payloads and a
//!   UDP sink that never reads.
//! * [`Tcpdump`]: a `tcpdump -w` capture in a namespace, for files judged
//!   by tcpdump/tshark themselves ([`read_pcap`], [`tshark`]).
//!
//! Every process runs under the lab's `timeout` and is reaped by it.

use super::frames::{hex, unhex};
use super::{wait_until, Lab};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Sends a frame (hex) `count` times, `gap` seconds apart, from an
/// interface, with a raw AF_PACKET socket.
const SEND_PY: &str = r#"
import socket, sys, time
ifname, frames, count, gap = sys.argv[1], sys.argv[2].split(','), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((ifname, 0))
for _ in range(count):
    for f in frames:
        s.send(bytes.fromhex(f))
    if gap > 0:
        time.sleep(gap)
"#;

/// Captures every frame on an interface (both directions) until a stop
/// file appears, then writes one JSON object per frame. PACKET_AUXDATA: a
/// tag the kernel stripped on receive is put back where it was (TPID from
/// tp_vlan_tpid). PACKET_VNET_HDR: `gso` is the segment size of a TSO
/// super-packet, and `wire` the largest frame it stands for (headers +
/// gso_size), which is what a NIC would put on the wire.
const CAP_PY: &str = r#"
import socket, struct, sys, os, json
ifname, out, stop, ready = sys.argv[1:5]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.setsockopt(263, 8, 1)    # PACKET_AUXDATA
s.setsockopt(263, 15, 1)   # PACKET_VNET_HDR
try:
    s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE
except OSError:
    pass
s.bind((ifname, 3))        # ETH_P_ALL
s.settimeout(0.05)
open(ready, 'w').close()
frames, truncated = [], 0
while not os.path.exists(stop):
    try:
        data, anc, flags, addr = s.recvmsg(1 << 17, 256)
    except socket.timeout:
        continue
    if flags & socket.MSG_TRUNC:
        truncated += 1
    _, gso_type, _, gso_size, _, _ = struct.unpack('<BBHHHH', data[:10])
    f = data[10:]
    for lvl, typ, d in anc:
        if lvl == 263 and typ == 8:
            st, _, _, _, _, tci, tpid = struct.unpack('IIIHHHH', d[:20])
            if st & 0x10:                      # TP_STATUS_VLAN_VALID
                if not st & 0x40:              # TP_STATUS_VLAN_TPID_VALID
                    tpid = 0x8100
                f = f[:12] + struct.pack('!HH', tpid, tci) + f[12:]
    off, tags = 12, []
    while len(f) >= off + 4 and f[off:off+2] in (b'\x81\x00', b'\x88\xa8') and len(tags) < 4:
        tags.append([int.from_bytes(f[off:off+2], 'big'), int.from_bytes(f[off+2:off+4], 'big')])
        off += 4
    et = f[off:off+2]
    off += 2
    wire = len(f)
    if gso_size and et == b'\x08\x00' and len(f) > off + 20:
        ihl = (f[off] & 15) * 4
        l4 = off + ihl
        hl = l4 + ((f[l4 + 12] >> 4) * 4 if len(f) > l4 + 12 else 20)
        wire = min(len(f), hl + gso_size)
    elif gso_size and et == b'\x86\xdd' and len(f) > off + 40 + 12:
        l4 = off + 40
        wire = min(len(f), l4 + (f[l4 + 12] >> 4) * 4 + gso_size)
    frames.append({'out': addr[2] == 4, 'len': len(f), 'gso': gso_size, 'wire': wire,
                   'tags': tags, 'hex': f.hex() if len(f) <= 256 else f[:96].hex()})
with open(out + '.tmp', 'w') as o:
    o.write(json.dumps({'truncated': truncated}) + '\n')
    for fr in frames:
        o.write(json.dumps(fr) + '\n')
os.rename(out + '.tmp', out)
"#;

/// Receives UDP datagrams on a port until `count` arrived or `secs` pass;
/// prints each payload in hex, one per line.
const UDP_RECV_PY: &str = r#"
import socket, sys, time
port, count, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', port))
s.settimeout(0.1)
open(sys.argv[4], 'w').close()
end, got = time.time() + secs, 0
while got < count and time.time() < end:
    try:
        d = s.recv(65536)
    except socket.timeout:
        continue
    print(d.hex(), flush=True)
    got += 1
"#;

/// Binds a UDP socket and never reads it until `secs` pass: frames sent to
/// it are delivered, not answered with ICMP port unreachable.
const UDP_SINK_PY: &str = r#"
import socket, sys, time
addr, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
open(sys.argv[4], 'w').close()
time.sleep(secs)
"#;

/// The python3 helper scripts, written once per test into a temporary
/// directory (which also holds the captures).
pub struct Raw {
    pub dir: tempfile::TempDir,
}

impl Raw {
    pub fn new() -> Raw {
        let dir = tempfile::tempdir().expect("tempdir");
        for (n, s) in [
            ("send.py", SEND_PY),
            ("cap.py", CAP_PY),
            ("udp_recv.py", UDP_RECV_PY),
            ("udp_sink.py", UDP_SINK_PY),
        ] {
            std::fs::write(dir.path().join(n), s).expect("write script");
        }
        Raw { dir }
    }

    fn script(&self, n: &str) -> String {
        self.dir.path().join(n).display().to_string()
    }

    fn send_cmd(&self, ifname: &str, frames: &[&[u8]], count: usize, gap: f64) -> String {
        let list: Vec<String> = frames.iter().map(|f| hex(f)).collect();
        format!(
            "python3 {} {ifname} {} {count} {gap}",
            self.script("send.py"),
            list.join(",")
        )
    }

    /// Sends `frames` `count` times, `gap` seconds apart, from `ifname` in
    /// `ns`; returns when done.
    pub fn send(
        &self,
        lab: &Lab,
        ns: &str,
        ifname: &str,
        frames: &[&[u8]],
        count: usize,
        gap: f64,
    ) {
        lab.sh_ok(ns, 60, &self.send_cmd(ifname, frames, count, gap));
    }

    /// As [`Raw::send`], in the background; returns the lab index.
    pub fn spawn_send(
        &self,
        lab: &mut Lab,
        ns: &str,
        ifname: &str,
        frames: &[&[u8]],
        count: usize,
        gap: f64,
    ) -> usize {
        lab.spawn(ns, 60, &self.send_cmd(ifname, frames, count, gap))
    }

    /// As [`Raw::send`], from `ifname` in the test's own namespace.
    pub fn send_here(&self, ifname: &str, frames: &[&[u8]], count: usize, gap: f64) {
        let o = Command::new("timeout")
            .args(["10", "sh", "-c", &self.send_cmd(ifname, frames, count, gap)])
            .output()
            .expect("run python3");
        assert!(
            o.status.success(),
            "raw send from {ifname}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Starts a capture on `ifname` in `ns`; returns once it is bound.
    pub fn capture(&self, lab: &mut Lab, ns: &str, ifname: &str) -> RawCapture {
        let n = self.dir.path().read_dir().map_or(0, |r| r.count());
        let base = self.dir.path().join(format!("cap{n}-{ifname}"));
        let out = base.with_extension("json");
        let stop = base.with_extension("stop");
        let args = format!("{ifname} {} {}", out.display(), stop.display());
        let idx = self.spawn_ready(
            lab,
            ns,
            300,
            "cap.py",
            &args,
            &base.with_extension("ready"),
            &format!("capture started on {ifname} in {ns}"),
        );
        RawCapture {
            idx,
            out,
            stop,
            what: format!("{ns}/{ifname}"),
        }
    }

    /// Starts a UDP receiver on `port` in `ns` that prints the payload (hex)
    /// of up to `count` datagrams, for at most `secs`; returns the lab index
    /// (its stdout is the list) once it is bound.
    pub fn udp_recv(&self, lab: &mut Lab, ns: &str, port: u16, count: usize, secs: u32) -> usize {
        self.spawn_ready(
            lab,
            ns,
            secs + 10,
            "udp_recv.py",
            &format!("{port} {count} {secs}"),
            &self.dir.path().join(format!("udp{port}.ready")),
            &format!("UDP receiver bound to {port} in {ns}"),
        )
    }

    /// Starts a UDP sink on `addr:port` in `ns` for `secs`; returns the lab
    /// index once it is bound.
    pub fn udp_sink(&self, lab: &mut Lab, ns: &str, addr: &str, port: u16, secs: u32) -> usize {
        self.spawn_ready(
            lab,
            ns,
            secs + 5,
            "udp_sink.py",
            &format!("{addr} {port} {secs}"),
            &self.dir.path().join(format!("sink{port}.ready")),
            &format!("UDP sink bound to {addr}:{port} in {ns}"),
        )
    }

    /// Spawns `python3 SCRIPT ARGS READY` in `ns` for at most `secs` and
    /// waits (10 s at most, else fails with `what`) until the script has
    /// created `ready`, which it does once bound; returns the lab index.
    #[allow(clippy::too_many_arguments)]
    fn spawn_ready(
        &self,
        lab: &mut Lab,
        ns: &str,
        secs: u32,
        script: &str,
        args: &str,
        ready: &Path,
        what: &str,
    ) -> usize {
        let idx = lab.spawn(
            ns,
            secs,
            &format!(
                "exec python3 {} {args} {}",
                self.script(script),
                ready.display()
            ),
        );
        assert!(
            wait_until(Duration::from_secs(10), || ready.exists()),
            "{what}"
        );
        idx
    }
}

/// A running capture ([`Raw::capture`]).
pub struct RawCapture {
    idx: usize,
    out: PathBuf,
    stop: PathBuf,
    what: String,
}

/// One captured frame (see [`CAP_PY`]).
#[derive(Debug, Clone)]
pub struct Frame {
    /// Sent by the interface's own side (PACKET_OUTGOING).
    pub out: bool,
    /// Bytes as received, tags put back.
    pub len: usize,
    /// gso_size of a super-packet, 0 for a plain frame.
    pub gso: usize,
    /// Length of the largest frame this stands for on a wire.
    pub wire: usize,
    /// (TPID, TCI) of each tag, outermost first.
    pub tags: Vec<(u16, u16)>,
    /// The whole frame (<= 256 bytes) or its first 96 bytes.
    pub bytes: Vec<u8>,
}

impl Frame {
    pub fn src(&self) -> &[u8] {
        &self.bytes[6..12]
    }
    pub fn dst(&self) -> &[u8] {
        &self.bytes[0..6]
    }
    /// What counts against an MTU (the Linux rule): what follows the
    /// Ethernet header, minus 4 when the outer tag is 802.1Q (the kernel
    /// refuses to send the extra 4 bytes of an 802.1ad outer tag).
    pub fn counted(&self) -> usize {
        let free = match self.tags.first() {
            Some((0x8100, _)) => 4,
            _ => 0,
        };
        self.wire - 14 - free
    }
}

/// The captured frames whose source MAC is `src`.
pub fn frames_from(frames: &[Frame], src: [u8; 6]) -> Vec<&Frame> {
    frames.iter().filter(|f| f.src() == src).collect()
}

impl RawCapture {
    /// Stops the capture and returns what it saw.
    pub fn finish(self, lab: &mut Lab) -> Vec<Frame> {
        // Let frames in flight arrive.
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(&self.stop, b"").expect("stop file");
        let o = lab.wait(self.idx);
        let text = std::fs::read_to_string(&self.out).unwrap_or_else(|e| {
            panic!(
                "capture {}: no output ({e}); stderr: {}",
                self.what,
                String::from_utf8_lossy(&o.stderr)
            )
        });
        let mut lines = text.lines();
        let head: Value = serde_json::from_str(lines.next().unwrap_or("{}")).expect("head");
        assert_eq!(
            head["truncated"], 0,
            "capture {}: truncated frames",
            self.what
        );
        lines
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("frame json");
                let n = |k: &str| v[k].as_u64().unwrap_or(0) as usize;
                Frame {
                    out: v["out"].as_bool().unwrap_or(false),
                    len: n("len"),
                    gso: n("gso"),
                    wire: n("wire"),
                    tags: v["tags"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|t| {
                                    (
                                        t[0].as_u64().unwrap_or(0) as u16,
                                        t[1].as_u64().unwrap_or(0) as u16,
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    bytes: unhex(v["hex"].as_str().unwrap_or("")),
                }
            })
            .collect()
    }
}

/// A `tcpdump -w FILE` capture running in a namespace.
pub struct Tcpdump {
    idx: usize,
    pidfile: PathBuf,
    errfile: PathBuf,
    counted: bool,
}

impl Tcpdump {
    /// Starts `tcpdump -w file FILTER` on `dev` in `ns` (snap length 256,
    /// each packet written at once; with `count`, tcpdump exits after that
    /// many) and waits until it captures.
    pub fn start(
        lab: &mut Lab,
        ns: &str,
        dev: &str,
        file: impl AsRef<Path>,
        filter: &str,
        count: Option<usize>,
    ) -> Tcpdump {
        let file = file.as_ref();
        let pidfile = file.with_extension("pid");
        let errfile = file.with_extension("err");
        let c = count.map(|n| format!("-c {n}")).unwrap_or_default();
        let idx = lab.spawn(
            ns,
            if count.is_some() { 20 } else { 120 },
            &format!(
                "tcpdump -i {dev} -s 256 -U --immediate-mode -n {c} -w {} '{filter}' 2>{} & echo $! > {}; wait",
                file.display(),
                errfile.display(),
                pidfile.display()
            ),
        );
        let listening = wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&errfile).is_ok_and(|s| s.contains("listening on"))
        });
        assert!(listening, "tcpdump starts on {dev} in {ns}");
        Tcpdump {
            idx,
            pidfile,
            errfile,
            counted: count.is_some(),
        }
    }

    /// Ends the capture: with a count, waits (bounded) for tcpdump to have
    /// seen them; otherwise lets frames in flight arrive and stops the
    /// tcpdump we started (SIGTERM, by its pid). Returns tcpdump's closing
    /// statistics ("N packets dropped by kernel").
    pub fn finish(self, lab: &mut Lab) -> String {
        if !self.counted {
            std::thread::sleep(Duration::from_millis(200));
            if let Ok(pid) = std::fs::read_to_string(&self.pidfile) {
                let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
            }
        }
        let _ = lab.wait(self.idx);
        std::fs::read_to_string(&self.errfile).unwrap_or_default()
    }
}

/// The frames of a pcap file.
pub fn read_pcap(path: impl AsRef<Path>) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).expect("open pcap");
    let mut r = pcap_file::pcap::PcapReader::new(f).expect("pcap header");
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.expect("pcap record").data.into_owned());
    }
    out
}

/// `tshark -r FILE ARGS...` (bounded), stdout; panics on failure.
pub fn tshark(file: impl AsRef<Path>, args: &[&str]) -> String {
    let o = Command::new("timeout")
        .args(["60", "tshark", "-r"])
        .arg(file.as_ref())
        .args(args)
        .output()
        .expect("run tshark");
    assert!(
        o.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
