//! The network-namespace lab: the only place tests create namespaces and
//! veth pairs, and run commands inside namespaces.
//!
//! A [`Lab`] hands out uniquely named namespaces (`vsw-<pid>-<n>`) and
//! links (`<prefix><pid>x<n>`, at most 15 bytes), runs commands inside
//! namespaces (always under `timeout`), tracks the processes it spawned,
//! and on drop, even after a panic, kills those processes and every
//! process left in its namespaces, deletes its namespaces and the links it
//! made in ours. Nothing outside what the lab created is touched.
//!
//! Also here: what a test does with the kernel stacks of those namespaces
//! (ping, a checked TCP transfer, counters from sysfs and /proc).

use super::{ip, link_exists, next_seq, wait_until};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Namespaces, links and processes a test created; all removed on drop.
#[derive(Default)]
pub struct Lab {
    netns: Vec<String>,
    links: Vec<String>,
    children: Vec<Child>,
}

/// SIGKILL to every process in namespace `ns`: anything still running in a
/// namespace a lab made was started by its test (possibly as a grandchild
/// of a spawned shell, or by `ip netns exec`).
fn kill_all_in(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

/// `ip netns exec NS timeout SECS sh -c SCRIPT`.
fn in_ns(ns: &str, secs: u32, script: &str) -> Command {
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        ns,
        "timeout",
        &secs.to_string(),
        "sh",
        "-c",
        script,
    ]);
    c
}

impl Lab {
    /// An empty lab.
    pub fn new() -> Lab {
        Lab::default()
    }

    /// Creates a namespace with `lo` up; returns its name.
    pub fn netns(&mut self) -> String {
        let name = format!("vsw-{}-{}", std::process::id(), next_seq());
        ip(&["netns", "add", &name]);
        self.netns.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A namespace with IPv6 off (for interfaces created in or moved into
    /// it later too), so router solicitations and DAD add no frame the test
    /// did not send to the counters and captures it checks.
    pub fn quiet_netns(&mut self) -> String {
        let ns = self.netns();
        self.sh_ok(
            &ns,
            5,
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
        );
        ns
    }

    /// Deletes namespace `ns` now (killing what runs in it), as destroying
    /// a VM would.
    pub fn del_netns(&mut self, ns: &str) {
        kill_all_in(ns);
        ip(&["netns", "del", ns]);
        self.netns.retain(|n| n != ns);
    }

    /// Creates a veth pair in our netns; returns (a, b).
    pub fn veth(&mut self) -> (String, String) {
        let a = super::unique_ifname("va");
        let b = super::unique_ifname("vb");
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
        in_ns(ns, secs, script).output().expect("run ip netns exec")
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
        let child = in_ns(ns, secs, script)
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

    /// Sends `bytes` random bytes over TCP (socat) from `src_ns` to
    /// `dst_ip:port` listening in `dst_ns` (an IPv4 or IPv6 address),
    /// checks that what arrived is identical and the connection closed
    /// cleanly; returns the transfer time.
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
        // socat's TCP addresses are IPv4 unless told otherwise.
        let (listen, connect) = if dst_ip.contains(':') {
            ("TCP6-LISTEN", format!("TCP6:[{dst_ip}]"))
        } else {
            ("TCP-LISTEN", format!("TCP:{dst_ip}"))
        };
        let srv = self.spawn(
            dst_ns,
            120,
            &format!(
                "exec socat -u {listen}:{port},reuseaddr OPEN:{},creat,trunc",
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
            &format!("socat -u OPEN:{} {connect}:{port}", src.display()),
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

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.netns {
            kill_all_in(ns);
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for l in &self.links {
            if link_exists(l) {
                let _ = Command::new("ip").args(["link", "del", "dev", l]).status();
            }
        }
    }
}
