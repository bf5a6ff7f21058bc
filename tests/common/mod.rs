//! Shared network-namespace harness for integration tests.
//!
//! Tests that need real kernel devices run as root in namespaces they
//! create. A [`Lab`] hands out uniquely named namespaces (`vsw-<pid>-<n>`)
//! and links (`<prefix><pid>x<n>`, at most 15 bytes), runs commands inside
//! namespaces (always under `timeout`), tracks the processes it spawned, and
//! on drop, even after a panic, kills those processes and every process
//! left in its namespaces, deletes its namespaces and the links it made in
//! ours. Nothing outside what the lab created is touched.
//!
//! Without root the tests print why they skip, unless
//! `VSWITCH_REQUIRE_NETNS=1`, which makes them fail instead (CI runs as
//! root and sets it).
//!
//! Also here: a bounded forwarding loop between two ports ([`Forwarder`]),
//! the test's stand-in for the datapath.

#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vswitch::packet::{Batch, Gso, PacketPool};
use vswitch::port::poll::Poller;
use vswitch::port::Port;

static SEQ: AtomicU32 = AtomicU32::new(0);

fn euid() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// True when the test may run. Prints why it skips otherwise; panics when
/// `VSWITCH_REQUIRE_NETNS=1` and the test cannot run.
pub fn require_root(test: &str) -> bool {
    let required = std::env::var("VSWITCH_REQUIRE_NETNS").is_ok_and(|v| v == "1");
    let why = if euid() != Some(0) {
        Some("needs root")
    } else if !std::path::Path::new("/dev/net/tun").exists() {
        Some("needs /dev/net/tun")
    } else if Command::new("ip").arg("-V").output().is_err() {
        Some("needs iproute2 (`ip`)")
    } else {
        None
    };
    match why {
        None => true,
        Some(w) if required => panic!("{test}: {w} and VSWITCH_REQUIRE_NETNS=1"),
        Some(w) => {
            eprintln!("skipping {test}: {w} (set VSWITCH_REQUIRE_NETNS=1 to fail instead)");
            false
        }
    }
}

/// True when `tool` runs (`tool --version` or `-V` exits).
pub fn have_tool(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A unique interface name: `prefix` (at most 3 bytes) + pid + `x` + n.
pub fn unique_ifname(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}x{n}", std::process::id());
    assert!(name.len() <= 15, "interface name too long: {name}");
    name
}

/// Runs `ip ARGS` in our netns; panics with stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// True when interface `name` exists in our netns.
pub fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Namespaces, links and processes a test created; all removed on drop.
#[derive(Default)]
pub struct Lab {
    netns: Vec<String>,
    links: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    /// An empty lab.
    pub fn new() -> Lab {
        Lab::default()
    }

    /// Creates a namespace with `lo` up; returns its name.
    pub fn netns(&mut self) -> String {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("vsw-{}-{n}", std::process::id());
        ip(&["netns", "add", &name]);
        self.netns.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// Deletes namespace `ns` now (killing what runs in it), as destroying
    /// a VM would.
    pub fn del_netns(&mut self, ns: &str) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        ip(&["netns", "del", ns]);
        self.netns.retain(|n| n != ns);
    }

    /// Creates a veth pair in our netns; returns (a, b).
    pub fn veth(&mut self) -> (String, String) {
        let a = unique_ifname("va");
        let b = unique_ifname("vb");
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        self.links.push(a.clone());
        self.links.push(b.clone());
        (a, b)
    }

    /// Remembers a link of ours to delete at the end (e.g. a persistent
    /// TAP the test made).
    pub fn track_link(&mut self, name: &str) {
        self.links.push(name.to_string());
    }

    /// Moves `link` from our netns into `ns`.
    pub fn move_link(&self, link: &str, ns: &str) {
        ip(&["link", "set", "dev", link, "netns", ns]);
    }

    /// Sets `link` up in `ns` with address `cidr` (e.g. `10.77.0.1/24`).
    pub fn configure(&self, ns: &str, link: &str, cidr: &str) {
        ip(&["-n", ns, "addr", "add", cidr, "dev", link]);
        ip(&["-n", ns, "link", "set", "dev", link, "up"]);
    }

    /// Moves `link` into `ns` and configures it there.
    pub fn plug(&self, link: &str, ns: &str, cidr: &str) {
        self.move_link(link, ns);
        self.configure(ns, link, cidr);
    }

    /// Runs `script` with `sh -c` inside `ns`, bounded by `secs` seconds.
    pub fn sh(&self, ns: &str, secs: u32, script: &str) -> Output {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "timeout",
                &secs.to_string(),
                "sh",
                "-c",
                script,
            ])
            .output()
            .expect("run ip netns exec")
    }

    /// As [`Lab::sh`], panicking with the output on failure; returns stdout.
    pub fn sh_ok(&self, ns: &str, secs: u32, script: &str) -> String {
        let out = self.sh(ns, secs, script);
        assert!(
            out.status.success(),
            "in {ns}: {script}\nstatus {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `script` in `ns` in the background (bounded by `secs`);
    /// returns its index for [`Lab::wait`]. Output is captured.
    pub fn spawn(&mut self, ns: &str, secs: u32, script: &str) -> usize {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "timeout",
                &secs.to_string(),
                "sh",
                "-c",
                script,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ip netns exec");
        self.children.push(child);
        self.children.len() - 1
    }

    /// Waits for a spawned command to finish; returns its output.
    pub fn wait(&mut self, idx: usize) -> Output {
        let dummy = Command::new("true").spawn().expect("spawn true");
        let child = std::mem::replace(&mut self.children[idx], dummy);
        child.wait_with_output().expect("wait for child")
    }

    /// True while a spawned command is still running.
    pub fn running(&mut self, idx: usize) -> bool {
        matches!(self.children[idx].try_wait(), Ok(None))
    }

    /// `ping -c count` from `ns` to `dst`; true when every reply came.
    pub fn ping(&self, ns: &str, dst: &str, count: u32) -> bool {
        let out = self.sh(
            ns,
            10 + 2 * count,
            &format!("ping -c {count} -i 0.2 -W 2 {dst}"),
        );
        out.status.success()
    }

    /// Waits (bounded) until `ns` can ping `dst` once; true on success.
    pub fn ping_until(&self, ns: &str, dst: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.sh(ns, 3, &format!("ping -c 1 -W 1 {dst}"))
                .status
                .success()
        })
    }

    /// A kernel counter of `link` in `ns` from sysfs (the test's own view
    /// of the far side; ports never read these).
    pub fn link_stat(&self, ns: &str, link: &str, stat: &str) -> u64 {
        self.sh_ok(
            ns,
            5,
            &format!("cat /sys/class/net/{link}/statistics/{stat}"),
        )
        .trim()
        .parse()
        .unwrap_or(0)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.netns {
            // Anything still running in a namespace we made was started by
            // this test (possibly as a grandchild of a spawned shell).
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for l in &self.links {
            if link_exists(l) {
                let _ = Command::new("ip").args(["link", "del", "dev", l]).status();
            }
        }
    }
}

/// What a [`Forwarder`] moved.
#[derive(Debug, Default, Clone, Copy)]
pub struct Forwarded {
    /// Frames moved a -> b.
    pub a_to_b: u64,
    /// Frames moved b -> a.
    pub b_to_a: u64,
    /// Of those, GSO super-packets.
    pub gso: u64,
    /// Wall time the loop ran.
    pub elapsed: Duration,
}

/// A hook called on each frame the forwarder moves: (from port 0/1, frame).
pub type Tap = Box<dyn FnMut(usize, &[u8]) + Send>;

/// The test's stand-in for the datapath: a thread forwarding everything
/// between two ports, sleeping on a [`Poller`], calling housekeeping, bounded
/// in time; [`Forwarder::stop`] gives the ports back.
pub struct Forwarder<A: Port + 'static, B: Port + 'static> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(A, B, Forwarded)>>,
}

impl<A: Port + 'static, B: Port + 'static> Forwarder<A, B> {
    /// Starts forwarding between `a` and `b` for at most `limit`.
    pub fn start(a: A, b: B, limit: Duration) -> Self {
        Self::start_with(a, b, limit, None)
    }

    /// As [`Forwarder::start`], calling `tap` on every forwarded frame.
    pub fn start_with(mut a: A, mut b: B, limit: Duration, mut tap: Option<Tap>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut poller = Poller::new().expect("poller");
            let mut pool = PacketPool::new(2048);
            let mut batch = Batch::new();
            let mut ready = Vec::new();
            let mut f = Forwarded::default();
            let t0 = Instant::now();
            let mut last_hk = t0;
            while !st.load(Ordering::Relaxed) && t0.elapsed() < limit {
                poller.set(0, a.poll_fd()).expect("poll a");
                poller.set(1, b.poll_fd()).expect("poll b");
                let _ = poller.wait(Some(Duration::from_millis(20)), &mut ready);
                for dir in 0..2 {
                    for _ in 0..8 {
                        let n = if dir == 0 {
                            a.recv_batch(&mut pool, &mut batch).expect("recv")
                        } else {
                            b.recv_batch(&mut pool, &mut batch).expect("recv")
                        };
                        if n == 0 {
                            break;
                        }
                        for p in batch.iter() {
                            if p.meta.gso != Gso::None {
                                f.gso += 1;
                            }
                            if let Some(t) = tap.as_mut() {
                                t(dir, p.data());
                            }
                        }
                        if dir == 0 {
                            f.a_to_b += n as u64;
                            b.send_batch(&mut batch, &mut pool).expect("send");
                        } else {
                            f.b_to_a += n as u64;
                            a.send_batch(&mut batch, &mut pool).expect("send");
                        }
                        // Whatever the port could not take now is dropped:
                        // this loop has no queues.
                        batch.recycle(&mut pool);
                    }
                }
                if last_hk.elapsed() > Duration::from_millis(50) {
                    a.housekeeping();
                    b.housekeeping();
                    last_hk = Instant::now();
                }
            }
            f.elapsed = t0.elapsed();
            (a, b, f)
        });
        Forwarder {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the loop and returns the ports and what moved.
    pub fn stop(mut self) -> (A, B, Forwarded) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("forwarder running")
            .join()
            .expect("forwarder thread panicked")
    }
}

impl<A: Port + 'static, B: Port + 'static> Drop for Forwarder<A, B> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Lab {
    /// Sends `bytes` random bytes over TCP (socat) from `src_ns` to
    /// `dst_ip:port` listening in `dst_ns`, checks that what arrived is
    /// identical and the connection closed cleanly; returns the transfer
    /// time.
    pub fn tcp_transfer(
        &mut self,
        src_ns: &str,
        dst_ns: &str,
        dst_ip: &str,
        bytes: usize,
    ) -> Duration {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src.bin");
        let dst = dir.path().join("dst.bin");
        let data: Vec<u8> = {
            // xorshift: reproducible, incompressible enough for a transfer.
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            (0..bytes)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        std::fs::write(&src, &data).expect("write source file");
        let port = 5001;
        let srv = self.spawn(
            dst_ns,
            120,
            &format!(
                "exec socat -u TCP-LISTEN:{port},reuseaddr OPEN:{},creat,trunc",
                dst.display()
            ),
        );
        assert!(
            wait_until(Duration::from_secs(10), || self
                .sh(
                    dst_ns,
                    5,
                    &format!("ss -ltnH 'sport = :{port}' | grep -q LISTEN")
                )
                .status
                .success()),
            "socat listens in {dst_ns}"
        );
        let t0 = Instant::now();
        self.sh_ok(
            src_ns,
            120,
            &format!("socat -u OPEN:{} TCP:{dst_ip}:{port}", src.display()),
        );
        let out = self.wait(srv);
        let elapsed = t0.elapsed();
        assert!(
            out.status.success(),
            "receiver: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = std::fs::read(&dst).expect("read received file");
        assert_eq!(got.len(), data.len(), "received length");
        assert!(got == data, "received bytes differ from sent bytes");
        elapsed
    }

    /// `Tcp: InCsumErrors` of `ns` (segments its stack dropped for a bad
    /// checksum).
    pub fn tcp_in_csum_errors(&self, ns: &str) -> u64 {
        let snmp = self.sh_ok(ns, 5, "cat /proc/net/snmp");
        let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
        let (Some(names), Some(vals)) = (tcp.next(), tcp.next()) else {
            panic!("no Tcp lines in /proc/net/snmp")
        };
        let i = names
            .split_whitespace()
            .position(|n| n == "InCsumErrors")
            .expect("InCsumErrors column");
        vals.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}
