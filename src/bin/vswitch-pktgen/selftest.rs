//! `--self-test`: the generator's own ceiling.
//!
//! A private network namespace (`vswpg-<pid>`) holding one veth pair, IPv6
//! off so no router solicitation joins the count, both ends up; the sender
//! writes into one end, the receiver reads the other, with no switch in
//! between. What this run reaches is the most the generator can measure on
//! this machine: a switch figure close to it says "the generator was the
//! limit". The namespace (and the veth pair in it) is deleted on drop,
//! also when the run fails.

use crate::Error;
use std::process::Command;
use std::time::{Duration, Instant};

/// The namespace and the two ends of the veth pair.
pub struct Loopback {
    /// Namespace name.
    pub netns: String,
    /// The end frames are sent into.
    pub tx: String,
    /// The end frames are received on.
    pub rx: String,
}

fn ip(args: &[&str]) -> Result<String, Error> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| Error::io("run ip (is iproute2 installed?)", e))?;
    if !out.status.success() {
        return Err(Error::Setup {
            cmd: format!("ip {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Loopback {
    /// Creates the namespace and the veth pair, and waits (bounded) for
    /// both ends to be up.
    pub fn create() -> Result<Loopback, Error> {
        let lb = Loopback {
            netns: format!("vswpg-{}", std::process::id()),
            tx: "pg0".into(),
            rx: "pg1".into(),
        };
        ip(&["netns", "add", &lb.netns])?;
        // From here on, drop deletes what was made, whatever fails next.
        let ns = lb.netns.as_str();
        ip(&[
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ])?;
        ip(&[
            "-n", ns, "link", "add", &lb.tx, "type", "veth", "peer", "name", &lb.rx,
        ])?;
        for l in [&lb.tx, &lb.rx] {
            ip(&["-n", ns, "link", "set", "dev", l, "up"])?;
        }
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let a = ip(&["-n", ns, "-o", "link", "show", "dev", &lb.tx])?;
            let b = ip(&["-n", ns, "-o", "link", "show", "dev", &lb.rx])?;
            if a.contains("state UP") && b.contains("state UP") {
                break;
            }
            if Instant::now() >= end {
                return Err(Error::Setup {
                    cmd: format!("veth {}/{} in {ns}", lb.tx, lb.rx),
                    stderr: "did not come up within 5 s".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(lb)
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.netns]);
    }
}
