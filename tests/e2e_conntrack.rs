//! Connection tracking end to end, with real Linux stacks: two VM
//! namespaces on `type=tap` ports (MTU 1500) of a vswitchd in its own host
//! namespace, behind `flows/stateful-firewall.flows`. That firewall is
//! symmetric (a new connection is committed whichever VM starts it); here
//! vm1 plays "inside" and vm2 "outside".
//!
//! What the switch must get right, each a field failure of a tracker that
//! disagrees with Linux netfilter:
//!
//! * big pings (IPv4 and IPv6) and a 4 KB UDP reply cross in fragments,
//!   which are reassembled ahead of the tracker (`ipf-status` counters);
//! * TCP simultaneous open (both ends connect from fixed ports) completes;
//! * a stray RST, RST+ACK or FIN+ACK from inside opens no path for the
//!   outside's FIN and RST segments;
//! * a server that lost its state (its address now in a fresh namespace,
//!   as after a reboot) resets the client through the switch;
//! * a client that lost its state reconnects from the same port.
//!
//! Elapsed times are printed for the report (`--nocapture`), never
//! asserted: each wait is bounded far above what a working switch needs
//! and far below what a broken one would cost (the retransmission and
//! connection timeouts of the kernel, minutes).

mod common;

use common::daemon::new_drops;
use common::frames::mac;
use common::raw::Raw;
use common::vms::{host, move_tap, vm_mac};
use common::{require_root, require_tools, wait_until, Daemon, Lab};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// A UDP server: answers each request (up to `count`, for at most `secs`,
/// until a `bye`) with 4000 bytes, `i % 251` for byte `i`, from the
/// address it is bound to.
const UDP_SERVER_PY: &str = r#"
import socket, sys, time
addr, port, count, secs, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
fam = socket.AF_INET6 if ':' in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((addr, port))
s.settimeout(0.1)
open(ready, 'w').close()
reply = bytes(i % 251 for i in range(4000))
end, n = time.time() + secs, 0
while n < count and time.time() < end:
    try:
        d, peer = s.recvfrom(2048)
    except socket.timeout:
        continue
    if d == b'bye':
        break
    s.sendto(reply, peer)
    n += 1
"#;

/// A UDP client: sends a request, waits up to 1 s for the 4000-byte
/// reply, at most 5 tries; prints `ok` when the reply is exactly right,
/// then says `bye`.
const UDP_CLIENT_PY: &str = r#"
import socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ':' in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(1.0)
want = bytes(i % 251 for i in range(4000))
for _ in range(5):
    s.sendto(b'give me 4 KB', (addr, port))
    try:
        d = s.recv(65536)
    except socket.timeout:
        continue
    print('ok' if d == want else 'bad reply of %d bytes' % len(d))
    s.sendto(b'bye', (addr, port))
    break
else:
    print('no reply')
"#;

/// One end of a simultaneous open: binds `me:port`, connects to
/// `peer:port` (8 s at most), exchanges a line, writes what it saw to
/// `out`, holds the connection until `stop` appears (20 s at most).
const SIMOPEN_PY: &str = r#"
import socket, sys, time, os
me, peer, port, out, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((me, port))
s.settimeout(8)
try:
    s.connect((peer, port))
    s.sendall(('hello from %s\n' % me).encode())
    got = b''
    while not got.endswith(b'\n'):
        c = s.recv(100)
        if not c:
            break
        got += c
    res = 'connected %s:%d -> %s:%d: %s' % (s.getsockname() + s.getpeername() + (got.decode().strip(),))
except OSError as e:
    res = 'failed: %r' % e
with open(out + '.tmp', 'w') as f:
    f.write(res)
os.rename(out + '.tmp', out)
end = time.time() + 20
while not os.path.exists(stop) and time.time() < end:
    time.sleep(0.02)
s.close()
"#;

/// A TCP server on `addr:port`: accepts up to `conns` connections for at
/// most `secs`; answers each line `X` with `pong X` and keeps every
/// connection open (a state the client may lose).
const TCP_SERVER_PY: &str = r#"
import socket, sys, time, select
addr, port, conns, secs, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((addr, port))
ls.listen(8)
open(ready, 'w').close()
socks, accepted, end = [], 0, time.time() + secs
while time.time() < end:
    r, _, _ = select.select([ls] + socks, [], [], 0.1)
    for x in r:
        if x is ls:
            if accepted < conns:
                c, _ = ls.accept()
                socks.append(c)
                accepted += 1
            continue
        try:
            d = x.recv(100)
        except OSError:
            d = b''
        if not d:
            socks.remove(x)
            x.close()
            continue
        for line in d.decode().split('\n'):
            if line:
                x.sendall(('pong %s\n' % line).encode())
"#;

/// A TCP client: connects to `addr:port` from `sport` (0: any) within
/// `csecs`, sends `one`, reads the answer. Then, when `go` is not `-`,
/// writes `ready`, waits (30 s at most) for `go` to appear, sends `two`
/// and reads for at most 5 s. Prints one line per step: `connected MS`,
/// `answer TEXT`, then `reset MS`, `answer TEXT`, `eof` or `timeout`.
const TCP_CLIENT_PY: &str = r#"
import socket, sys, time, os
addr, port, sport, csecs, ready, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', sport))
s.settimeout(csecs)
t0 = time.time()
s.connect((addr, port))
print('connected %.0f' % ((time.time() - t0) * 1e3), flush=True)
s.settimeout(5)
s.sendall(b'one\n')
print('answer %s' % s.recv(100).decode().strip(), flush=True)
if go != '-':
    open(ready, 'w').close()
    end = time.time() + 30
    while not os.path.exists(go) and time.time() < end:
        time.sleep(0.02)
    t0 = time.time()
    s.sendall(b'two\n')
    try:
        d = s.recv(100)
        print('answer %s' % d.decode().strip() if d else 'eof', flush=True)
    except ConnectionResetError:
        print('reset %.0f' % ((time.time() - t0) * 1e3), flush=True)
    except socket.timeout:
        print('timeout', flush=True)
"#;

/// Sends hand-made TCP segments over a raw IPv4 socket (the kernel adds
/// the IP header): `src dst SPORT:DPORT:FLAGS:SEQ:ACK ...`, FLAGS from
/// `FSRPA`.
const TCP_RAW_PY: &str = r#"
import socket, struct, sys
src, dst = sys.argv[1], sys.argv[2]
def csum(b):
    if len(b) % 2:
        b += b'\0'
    n = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while n >> 16:
        n = (n & 0xffff) + (n >> 16)
    return ~n & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
for seg in sys.argv[3:]:
    sp, dp, fl, seq, ack = seg.split(':')
    bits = sum({'F': 1, 'S': 2, 'R': 4, 'P': 8, 'A': 16}[c] for c in fl)
    h = struct.pack('!HHIIBBHHH', int(sp), int(dp), int(seq), int(ack), 5 << 4, bits, 65535, 0, 0)
    ph = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, len(h))
    h = h[:16] + struct.pack('!H', csum(ph + h)) + h[18:]
    s.sendto(h, (dst, 0))
"#;

/// The python3 programs of this file, written into a temporary directory
/// that also holds the files they signal with.
struct Py {
    dir: tempfile::TempDir,
}

impl Py {
    fn new() -> Py {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in [
            ("udp_server.py", UDP_SERVER_PY),
            ("udp_client.py", UDP_CLIENT_PY),
            ("simopen.py", SIMOPEN_PY),
            ("tcp_server.py", TCP_SERVER_PY),
            ("tcp_client.py", TCP_CLIENT_PY),
            ("tcp_raw.py", TCP_RAW_PY),
        ] {
            std::fs::write(dir.path().join(name), text).expect("write python helper");
        }
        Py { dir }
    }

    /// `python3 SCRIPT ARGS` as a shell command.
    fn cmd(&self, script: &str, args: &str) -> String {
        format!(
            "exec python3 {} {args}",
            self.dir.path().join(script).display()
        )
    }

    /// A path in the directory (for ready/stop/output files).
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Spawns `script` in `ns` (bounded by `secs`) with `args` and a last
    /// argument, a ready file it creates once bound; waits (10 s at most)
    /// for it.
    fn spawn_ready(
        &self,
        lab: &mut Lab,
        ns: &str,
        secs: u32,
        script: &str,
        args: &str,
        ready: &str,
    ) -> usize {
        let ready = self.file(ready);
        let idx = lab.spawn(
            ns,
            secs,
            &self.cmd(script, &format!("{args} {}", ready.display())),
        );
        assert!(
            wait_until(Duration::from_secs(10), || ready.exists()),
            "{script} {args}: ready in {ns}"
        );
        idx
    }
}

/// The two VMs behind the firewall.
struct Vms {
    vm1: String,
    vm2: String,
    ip1: String,
    ip2: String,
    /// IPv6 addresses when the VMs have IPv6 on.
    ip6_1: String,
    ip6_2: String,
}

/// Host + daemon + two VMs on TAPs `vm1`/`vm2` (MTU 1500, MACs
/// [`vm_mac`]) with `10.{subnet}.0.N/24` and, when `v6`, also
/// `fd00:{subnet}::N/64`; `flows/stateful-firewall.flows` loaded and vm1
/// reaching vm2 (IPv4, and IPv6 when on).
fn firewalled_vms(lab: &mut Lab, subnet: u8, v6: bool) -> (Vms, Daemon) {
    let d = host(lab);
    let mut names = Vec::new();
    for n in 1..=2u8 {
        let vm = if v6 { lab.netns() } else { lab.quiet_netns() };
        let port = format!("vm{n}");
        d.ctl(&["add-port", "br0", &port, "type=tap"]);
        let cidr = format!("10.{subnet}.0.{n}/24");
        move_tap(lab, d.ns(), &port, &vm, &vm_mac(n), Some(&cidr));
        lab.sh_ok(&vm, 5, &format!("ip link set dev {port} mtu 1500"));
        if v6 {
            lab.sh_ok(
                &vm,
                5,
                &format!("ip -6 addr add fd00:{subnet}::{n}/64 dev {port} nodad"),
            );
            // MLD reports leave with a link-local source only once it is
            // usable (the firewall's MLD flows expect that).
            assert!(
                wait_until(Duration::from_secs(10), || {
                    let a = lab.sh_ok(&vm, 5, &format!("ip -6 addr show dev {port} scope link"));
                    a.contains("fe80::") && !a.contains("tentative")
                }),
                "{port}: link-local address ready in {vm}"
            );
        }
        names.push(vm);
    }
    d.load_flows("flows/stateful-firewall.flows");
    let v = Vms {
        vm1: names[0].clone(),
        vm2: names[1].clone(),
        ip1: format!("10.{subnet}.0.1"),
        ip2: format!("10.{subnet}.0.2"),
        ip6_1: format!("fd00:{subnet}::1"),
        ip6_2: format!("fd00:{subnet}::2"),
    };
    let dests = if v6 {
        vec![v.ip2.clone(), v.ip6_2.clone()]
    } else {
        vec![v.ip2.clone()]
    };
    for dst in dests {
        assert!(
            lab.ping_until(&v.vm1, &dst, Duration::from_secs(10)),
            "vm1 cannot reach {dst} through the firewall\n{}\n{}",
            d.ctl(&["dump-flows", "br0"]),
            d.ctl(&["dump-drops", "br0"])
        );
    }
    (v, d)
}

/// `dump-conntrack` lines of TCP connections between `port_a` and
/// `port_b` (either as sport or dport).
fn tcp_entries(d: &Daemon, sport: u16, dport: u16) -> Vec<String> {
    let ct = d.ctl(&["dump-conntrack", "br0"]);
    let s = format!("sport={sport},dport={dport}");
    ct.lines()
        .filter(|l| l.starts_with("tcp,") && l.contains(&s))
        .map(str::to_string)
        .collect()
}

/// `ipf-status` counter `name` of family `fam` (`v4`/`v6`).
fn ipf(st: &Value, fam: &str, name: &str) -> u64 {
    st[fam][name]
        .as_u64()
        .unwrap_or_else(|| panic!("ipf-status has {fam}.{name}: {st}"))
}

#[test]
fn big_pings_and_a_4k_udp_reply_cross_in_fragments() {
    let test = "big_pings_and_a_4k_udp_reply_cross_in_fragments";
    if !require_root(test) || !require_tools(test, &["ping", "python3"]) {
        return;
    }
    let mut lab = Lab::new();
    let (v, d) = firewalled_vms(&mut lab, 71, true);
    let py = Py::new();
    let ipf0 = d.ctl_json(&["ipf-status", "br0"]);
    let drops0 = d.drops();

    // 4000 bytes of ICMP data do not fit in 1500: each echo and each reply
    // leaves its VM as three fragments.
    for (dst, from, fam) in [
        (&v.ip2, &v.vm1, "-4"),
        (&v.ip1, &v.vm2, "-4"),
        (&v.ip6_2, &v.vm1, "-6"),
        (&v.ip6_1, &v.vm2, "-6"),
    ] {
        let out = lab.sh(
            from,
            20,
            &format!("ping {fam} -c 3 -i 0.2 -W 2 -s 4000 {dst}"),
        );
        assert!(
            out.status.success(),
            "ping {fam} -s 4000 {dst}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            d.ctl(&["ipf-status", "br0"]),
            d.ctl(&["dump-drops", "br0"])
        );
    }

    let ipf_mid = d.ctl_json(&["ipf-status", "br0"]);
    for fam in ["v4", "v6"] {
        // Each direction got at least one reply: two echoes and two
        // replies reassembled, at least (twelve when nothing is lost).
        let r = ipf(&ipf_mid, fam, "reassembled") - ipf(&ipf0, fam, "reassembled");
        assert!(r >= 4, "{fam}: pings reassembled {r}\n{ipf_mid}");
    }

    // A small UDP request answered with 4000 bytes (the DNS/EDNS shape):
    // the reply is fragmented, and the tracker must see it as a reply.
    for (srv_ip, srv, cli) in [(&v.ip2, &v.vm2, &v.vm1), (&v.ip6_2, &v.vm2, &v.vm1)] {
        let ready = format!("udp-{}.ready", srv_ip.replace(':', "_"));
        let s = py.spawn_ready(
            &mut lab,
            srv,
            20,
            "udp_server.py",
            &format!("{srv_ip} 7000 5 15"),
            &ready,
        );
        let out = lab.sh_ok(cli, 15, &py.cmd("udp_client.py", &format!("{srv_ip} 7000")));
        assert_eq!(
            out.trim(),
            "ok",
            "4 KB UDP reply from {srv_ip}\n{}\n{}",
            d.ctl(&["ipf-status", "br0"]),
            d.ctl(&["dump-drops", "br0"])
        );
        let _ = lab.wait(s);
    }

    let ipf1 = d.ctl_json(&["ipf-status", "br0"]);
    println!("e2e fragments: ipf-status before {ipf0}\nafter {ipf1}");
    for fam in ["v4", "v6"] {
        // The 4 KB reply was reassembled and judged (the request is one
        // datagram, not fragmented).
        let r = ipf(&ipf1, fam, "reassembled") - ipf(&ipf_mid, fam, "reassembled");
        assert!(r >= 1, "{fam}: UDP replies reassembled {r}\n{ipf1}");
        for bad in ["too_small", "too_big", "overlap", "no_room", "malformed"] {
            assert_eq!(ipf(&ipf1, fam, bad), 0, "{fam}.{bad}: {ipf1}");
        }
    }
    let fresh = new_drops(&drops0, &d.drops());
    assert!(
        fresh.is_empty(),
        "unexpected drops: {fresh:?}\n{}",
        d.ctl(&["dump-drops", "br0"])
    );
    // Fragments wait for their datagram only: nothing is held now.
    assert!(
        wait_until(Duration::from_secs(5), || {
            d.ctl_json(&["ipf-status", "br0"])["frags_held"].as_u64() == Some(0)
        }),
        "fragments still held: {}",
        d.ctl(&["ipf-status", "br0"])
    );
}

#[test]
fn tcp_simultaneous_open_connects() {
    let test = "tcp_simultaneous_open_connects";
    if !require_root(test) || !require_tools(test, &["python3", "nft", "ss"]) {
        return;
    }
    let mut lab = Lab::new();
    let (v, d) = firewalled_vms(&mut lab, 72, false);
    let py = Py::new();
    let port = 47000u16;

    // vm2 keeps its resets to itself: vm1's SYN, arriving before vm2 has
    // connected, would otherwise be refused and the two opens would never
    // overlap. This makes the overlap certain instead of a race.
    lab.sh_ok(
        &v.vm2,
        5,
        "nft add table inet simopen && \
         nft add chain inet simopen out '{ type filter hook output priority 0; }' && \
         nft add rule inet simopen out tcp flags '&' rst == rst drop",
    );
    let stop = py.file("simopen.stop");
    let out1 = py.file("simopen.vm1");
    let out2 = py.file("simopen.vm2");
    let a = lab.spawn(
        &v.vm1,
        40,
        &py.cmd(
            "simopen.py",
            &format!(
                "{} {} {port} {} {}",
                v.ip1,
                v.ip2,
                out1.display(),
                stop.display()
            ),
        ),
    );
    // vm1's SYN is out and unanswered: vm1 is in SYN-SENT.
    assert!(
        wait_until(Duration::from_secs(5), || lab
            .sh_ok(
                &v.vm1,
                5,
                &format!("ss -tnH state syn-sent 'sport = :{port}'")
            )
            .contains(&v.ip2)),
        "vm1 in SYN-SENT"
    );
    // Now vm2 connects too: its SYN meets vm1's open, both in SYN-SENT.
    let b = lab.spawn(
        &v.vm2,
        40,
        &py.cmd(
            "simopen.py",
            &format!(
                "{} {} {port} {} {}",
                v.ip2,
                v.ip1,
                out2.display(),
                stop.display()
            ),
        ),
    );
    assert!(
        wait_until(Duration::from_secs(15), || out1.exists() && out2.exists()),
        "both ends report\n{}\n{}",
        d.ctl(&["dump-conntrack", "br0"]),
        d.ctl(&["dump-drops", "br0"])
    );
    let r1 = std::fs::read_to_string(&out1).expect("vm1 result");
    let r2 = std::fs::read_to_string(&out2).expect("vm2 result");
    println!("e2e simultaneous open: vm1 {r1}\ne2e simultaneous open: vm2 {r2}");
    let ct = tcp_entries(&d, port, port);
    println!("e2e simultaneous open: conntrack {ct:#?}");
    std::fs::write(&stop, b"").expect("stop file");
    let _ = lab.wait(a);
    let _ = lab.wait(b);
    assert!(
        r1.starts_with("connected") && r1.contains(&format!("hello from {}", v.ip2)),
        "vm1: {r1}\n{}",
        d.ctl(&["dump-drops", "br0"])
    );
    assert!(
        r2.starts_with("connected") && r2.contains(&format!("hello from {}", v.ip1)),
        "vm2: {r2}\n{}",
        d.ctl(&["dump-drops", "br0"])
    );
    // One entry (vm1 opened first), established while both held it.
    assert_eq!(ct.len(), 1, "one connection: {ct:#?}");
    assert!(
        ct[0].contains(&format!("orig=(src={},dst={}", v.ip1, v.ip2))
            && ct[0].contains("state=ESTABLISHED"),
        "{}",
        ct[0]
    );
    let st = d.ctl_json(&["ct-stats", "br0"]);
    let inv = st["invalid"].as_object().expect("invalid counters");
    assert!(
        inv.values().all(|n| n.as_u64() == Some(0)),
        "invalid verdicts: {st}"
    );
}

/// The frames `from` (a MAC) in `frames` carrying TCP with source port
/// `sport` (IPv4, no options).
fn tcp_from(frames: &[common::raw::Frame], from: [u8; 6], sport: u16) -> usize {
    frames
        .iter()
        .filter(|f| {
            let b = &f.bytes;
            f.src() == from
                && b.len() >= 54
                && b[12..14] == [0x08, 0x00]
                && b[23] == 6
                && u16::from_be_bytes([b[34], b[35]]) == sport
        })
        .count()
}

#[test]
fn stray_rst_or_fin_from_inside_opens_no_path_for_the_outside() {
    let test = "stray_rst_or_fin_from_inside_opens_no_path_for_the_outside";
    if !require_root(test) || !require_tools(test, &["python3", "ping"]) {
        return;
    }
    let mut lab = Lab::new();
    let (v, d) = firewalled_vms(&mut lab, 73, false);
    let py = Py::new();
    let raw = Raw::new();
    let cap = raw.capture(&mut lab, &v.vm1, "vm1");
    let drops0 = d.drops();

    // Inside: a RST, a RST+ACK and a FIN+ACK, each on a 4-tuple with no
    // connection.
    let cases = [
        (41001u16, 42001u16, "R"),
        (41002, 42002, "RA"),
        (41003, 42003, "FA"),
    ];
    let inside: Vec<String> = cases
        .iter()
        .map(|(s, p, f)| format!("{s}:{p}:{f}:1000:2000"))
        .collect();
    lab.sh_ok(
        &v.vm1,
        10,
        &py.cmd(
            "tcp_raw.py",
            &format!("{} {} {}", v.ip1, v.ip2, inside.join(" ")),
        ),
    );
    // Outside, on the same 4-tuples the other way: what a connection the
    // stray segment had opened would let through as a reply. FIN and RST
    // segments, which never start a connection themselves (a plain ACK
    // would, by loose pickup, as in Linux, and this firewall commits new
    // connections from either side).
    let outside: Vec<String> = cases
        .iter()
        .flat_map(|(s, p, _)| {
            ["FA", "R", "RA", "FPA"]
                .iter()
                .map(move |f| format!("{p}:{s}:{f}:2000:1000"))
        })
        .collect();
    lab.sh_ok(
        &v.vm2,
        10,
        &py.cmd(
            "tcp_raw.py",
            &format!("{} {} {}", v.ip2, v.ip1, outside.join(" ")),
        ),
    );
    // A control the capture must see: vm2 reaches vm1.
    assert!(lab.ping(&v.vm2, &v.ip1, 1), "ping vm2 -> vm1");
    let frames = cap.finish(&mut lab);

    let vm2 = mac(&vm_mac(2));
    let icmp = frames
        .iter()
        .filter(|f| f.src() == vm2 && f.bytes.len() > 23 && f.bytes[23] == 1)
        .count();
    assert!(icmp > 0, "the capture saw vm2's ping: {frames:?}");
    for (s, p, f) in cases {
        let n = tcp_from(&frames, vm2, p);
        assert_eq!(
            n,
            0,
            "after a stray {f} from inside {s}->{p}, {n} outside segments reached vm1\n{}",
            d.ctl(&["dump-conntrack", "br0"])
        );
        let e = tcp_entries(&d, s, p);
        assert!(e.is_empty(), "no connection from a stray {f}: {e:#?}");
    }
    let fresh = new_drops(&drops0, &d.drops());
    println!("e2e stray segments: drops {fresh:?}");
    let inv: u64 = fresh
        .iter()
        .filter(|(k, _)| k.starts_with("ct_invalid"))
        .map(|(_, n)| n)
        .sum();
    // Every outside segment was judged invalid and dropped (the inside
    // ones too, or they reached vm2, whose answers are dropped as well).
    assert!(
        inv >= outside.len() as u64,
        "outside segments dropped as invalid: {fresh:?}"
    );
}

/// "Reboots" VM namespace `vm`: its TAP `port` (MAC kept) moves into a
/// fresh namespace with address `cidr`, and the old namespace, with every
/// socket in it, is deleted without a packet leaving it. Returns the new
/// namespace.
fn reboot(lab: &mut Lab, vm: &str, port: &str, cidr: &str) -> String {
    let fresh = lab.quiet_netns();
    common::ip(&["-n", vm, "link", "set", "dev", port, "netns", &fresh]);
    lab.del_netns(vm);
    lab.configure(&fresh, port, cidr);
    lab.sh_ok(&fresh, 5, &format!("ip link set dev {port} mtu 1500"));
    fresh
}

/// The lines a client printed.
fn lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_server_that_lost_its_state_resets_the_client() {
    let test = "a_server_that_lost_its_state_resets_the_client";
    if !require_root(test) || !require_tools(test, &["python3"]) {
        return;
    }
    let mut lab = Lab::new();
    let (v, d) = firewalled_vms(&mut lab, 74, false);
    let py = Py::new();
    let port = 6000u16;
    py.spawn_ready(
        &mut lab,
        &v.vm2,
        60,
        "tcp_server.py",
        &format!("{} {port} 1 55", v.ip2),
        "srv.ready",
    );
    let ready = py.file("cli.ready");
    let go = py.file("cli.go");
    let c = lab.spawn(
        &v.vm1,
        60,
        &py.cmd(
            "tcp_client.py",
            &format!("{} {port} 0 5 {} {}", v.ip2, ready.display(), go.display()),
        ),
    );
    assert!(
        wait_until(Duration::from_secs(10), || ready.exists()),
        "client connected and answered\n{}",
        d.ctl(&["dump-drops", "br0"])
    );
    let before = d.ctl(&["dump-conntrack", "br0"]);
    assert!(
        before
            .lines()
            .any(|l| l.contains(&format!("dport={port}")) && l.contains("state=ESTABLISHED")),
        "established before the reboot:\n{before}"
    );

    // The server "reboots": same address and MAC, no connection state.
    let _vm2b = reboot(&mut lab, &v.vm2, "vm2", &format!("{}/24", v.ip2));
    std::fs::write(&go, b"").expect("go file");
    let out = lab.wait(c);
    let l = lines(&out);
    let after = d.ctl(&["dump-conntrack", "br0"]);
    println!("e2e server reboot: client {l:?}\nconntrack after:\n{after}");
    assert!(
        l.last().is_some_and(|x| x.starts_with("reset ")),
        "the client sees its connection reset: {l:?} {}\n{after}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.ctl(&["dump-drops", "br0"])
    );
    // The reset closed the entry too.
    assert!(
        !after
            .lines()
            .any(|x| x.contains(&format!("dport={port}")) && x.contains("state=ESTABLISHED")),
        "entry closed by the reset:\n{after}"
    );
}

#[test]
fn a_client_that_lost_its_state_reconnects_from_the_same_port() {
    let test = "a_client_that_lost_its_state_reconnects_from_the_same_port";
    if !require_root(test) || !require_tools(test, &["python3", "ss"]) {
        return;
    }
    let mut lab = Lab::new();
    let (v, d) = firewalled_vms(&mut lab, 75, false);
    let py = Py::new();
    let port = 6001u16;
    let sport = 45000u16;
    py.spawn_ready(
        &mut lab,
        &v.vm2,
        60,
        "tcp_server.py",
        &format!("{} {port} 2 55", v.ip2),
        "srv.ready",
    );
    // The first connection, held open (its `go` never comes: the
    // client's namespace goes away with it).
    let ready = py.file("old.ready");
    lab.spawn(
        &v.vm1,
        60,
        &py.cmd(
            "tcp_client.py",
            &format!(
                "{} {port} {sport} 5 {} {}",
                v.ip2,
                ready.display(),
                py.file("old.never").display()
            ),
        ),
    );
    assert!(
        wait_until(Duration::from_secs(10), || ready.exists()),
        "first connection up\n{}",
        d.ctl(&["dump-drops", "br0"])
    );
    let e = tcp_entries(&d, sport, port);
    assert!(
        e.len() == 1 && e[0].contains("state=ESTABLISHED"),
        "first connection established: {e:#?}"
    );

    // The client "reboots" and connects again from the same port, with a
    // new initial sequence number; the server still holds the old
    // connection and answers the SYN with a challenge ACK, the client
    // resets it, and its next SYN opens the new connection.
    let vm1b = reboot(&mut lab, &v.vm1, "vm1", &format!("{}/24", v.ip1));
    // The server still holds the old connection, and so does the tracker:
    // the reconnect meets both.
    let held = lab.sh_ok(
        &v.vm2,
        5,
        &format!("ss -tnH state established 'sport = :{port}'"),
    );
    assert!(
        held.contains(&format!("{}:{sport}", v.ip1)),
        "server holds the old connection: {held:?}"
    );
    let e = tcp_entries(&d, sport, port);
    assert!(
        e.len() == 1 && e[0].contains("state=ESTABLISHED"),
        "old entry still established: {e:#?}"
    );
    let out = lab.sh(
        &vm1b,
        30,
        &py.cmd("tcp_client.py", &format!("{} {port} {sport} 10 - -", v.ip2)),
    );
    let l = lines(&out);
    let ct = tcp_entries(&d, sport, port);
    println!("e2e client reboot: new client {l:?}\nconntrack {ct:#?}");
    assert!(
        out.status.success()
            && l.first().is_some_and(|x| x.starts_with("connected "))
            && l.get(1).is_some_and(|x| x == "answer pong one"),
        "the client reconnects from port {sport}: {l:?} {}\n{ct:#?}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.ctl(&["dump-drops", "br0"])
    );
    // One entry for the 4-tuple: the new connection, which the client
    // has closed by now (it went through its close as any other).
    assert!(
        ct.len() == 1 && (ct[0].contains("state=TIME_WAIT") || ct[0].contains("state=CLOSED")),
        "the new connection replaced the old entry: {ct:#?}"
    );
}
