//! vswitchd under test, driven with the real vswitchctl binary: one type,
//! [`Daemon`], for both ways the tests run it.
//!
//! * [`Daemon::start`]: on a private socket in the test's own network
//!   namespace (dummy ports, loopback tunnels; no root needed).
//! * [`Daemon::start_in`]: inside a "host" namespace the test created. The
//!   TAPs vswitchd creates, the veths its system ports attach to and its
//!   Geneve sockets then live in a namespace the [`Lab`](super::Lab)
//!   deletes, so fixed port names (`vm1`, `wire0`) never clash with
//!   anything outside and "SIGTERM removes what vswitchd created and
//!   nothing else" is checked against a namespace whose whole content the
//!   test knows. `ip netns exec` execs the daemon in place, so the child's
//!   pid is the daemon's and signals reach it directly. The control socket
//!   is a file, so vswitchctl reaches the daemon from any namespace.
//!
//! The socket, the config and the log live in a temporary directory. The
//! daemon is stopped with SIGTERM (bounded, then SIGKILL) and reaped on
//! drop, even when the test fails. Also here: the queries tests make of
//! bridge `br0` (drops, ports, flows, trace, dummy ports), so every test
//! reads vswitchctl's JSON the same way.

use super::{frames::hex, repo_path, wait_for, wait_until};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running vswitchd; SIGTERM on drop.
pub struct Daemon {
    child: Option<Child>,
    /// Holds the socket, the config and the log.
    pub dir: tempfile::TempDir,
    /// The control socket.
    pub sock: PathBuf,
    ns: Option<String>,
    args: Vec<String>,
}

impl Daemon {
    /// Starts vswitchd in our namespace with `config` (TOML) or the
    /// embedded default (bridge br0, `priority=0,actions=NORMAL`).
    pub fn start(config: Option<&str>) -> Daemon {
        Self::launch(None, config, &[])
    }

    /// Starts vswitchd inside namespace `ns`, as [`Daemon::start`].
    pub fn start_in(ns: &str, config: Option<&str>) -> Daemon {
        Self::launch(Some(ns), config, &[])
    }

    /// As [`Daemon::start_in`], with extra vswitchd arguments (kept for
    /// [`Daemon::restart`]).
    pub fn start_in_with(ns: &str, config: Option<&str>, args: &[&str]) -> Daemon {
        Self::launch(Some(ns), config, args)
    }

    fn launch(ns: Option<&str>, config: Option<&str>, args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("vswitchd.sock");
        if let Some(c) = config {
            std::fs::write(dir.path().join("vswitchd.toml"), c).expect("write config");
        }
        let mut d = Daemon {
            child: None,
            dir,
            sock,
            ns: ns.map(str::to_string),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        d.spawn(false);
        d
    }

    /// Starts vswitchd again after [`Daemon::kill9`] or [`Daemon::stop`]:
    /// same namespace, socket directory, configuration and arguments (the
    /// log goes on in the same file).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running daemon");
        self.spawn(true);
    }

    /// The daemon's state directory (private to this daemon).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Sends SIGHUP (re-read the configuration file).
    pub fn sighup(&self) {
        let _ = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status();
    }

    fn spawn(&mut self, append: bool) {
        self.child = Some(self.command(append, &[]).spawn().expect("spawn vswitchd"));
        self.wait_up();
    }

    /// The daemon's command line (`extra` after its own arguments), its
    /// log going to (or, with `append`, going on in) `dir/vswitchd.log`.
    fn command(&self, append: bool, extra: &[&str]) -> Command {
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_vswitchd")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_vswitchd")),
        };
        cmd.arg("--ctl").arg(&self.sock);
        // Each daemon saves its state privately, never in /var/lib/vswitch.
        cmd.arg("--state-dir").arg(self.state_dir());
        let cfg = self.dir.path().join("vswitchd.toml");
        if cfg.exists() {
            cmd.arg("--config").arg(&cfg);
        }
        cmd.args(&self.args);
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(self.dir.path().join("vswitchd.log"))
            .expect("log file");
        cmd.args(extra);
        cmd.stdout(Stdio::null()).stderr(Stdio::from(log));
        cmd
    }

    /// Waits (bounded) until the control socket answers; panics with the
    /// log when the daemon died instead.
    fn wait_up(&mut self) {
        let up = wait_until(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&self.sock).is_ok() || !self.alive()
        });
        assert!(
            up && self.alive(),
            "vswitchd did not come up{}; log:\n{}",
            self.ns
                .as_deref()
                .map(|n| format!(" in {n}"))
                .unwrap_or_default(),
            self.log()
        );
    }

    /// The host namespace the daemon runs in.
    pub fn ns(&self) -> &str {
        self.ns
            .as_deref()
            .expect("a daemon started with Daemon::start_in")
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// True while the daemon process runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vswitchd.log")).unwrap_or_default()
    }

    /// Runs vswitchctl with `args`.
    pub fn ctl_output(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .arg("--ctl")
            .arg(&self.sock)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run vswitchctl")
    }

    /// Runs vswitchctl and returns stdout; panics with stderr and the
    /// daemon's log on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let o = self.ctl_output(args);
        assert!(
            o.status.success(),
            "vswitchctl {args:?}{} failed: {}\nlog:\n{}",
            self.ns
                .as_deref()
                .map(|n| format!(" (daemon in {n})"))
                .unwrap_or_default(),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs vswitchctl expecting failure; returns stderr.
    pub fn ctl_err(&self, args: &[&str]) -> String {
        let o = self.ctl_output(args);
        assert!(
            !o.status.success(),
            "vswitchctl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// Runs vswitchctl --json and parses the output.
    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ctl(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad json from {args:?}: {e}: {out}"))
    }

    /// Sends SIGTERM and waits (bounded) for exit; true on a clean exit.
    /// SIGKILL if it does not stop.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// An upgrade: starts a new vswitchd with the same socket,
    /// configuration and arguments plus `--takeover`, waits (bounded) for
    /// the old one to exit and the new one to answer. Returns the old
    /// one's exit status (`None`: it had to be killed).
    pub fn takeover(&mut self) -> Option<std::process::ExitStatus> {
        let new = self
            .command(true, &["--takeover"])
            .spawn()
            .expect("spawn vswitchd --takeover");
        let mut old = self.child.replace(new)?;
        let status = wait_exit(&mut old, Duration::from_secs(30));
        self.wait_up();
        status
    }

    /// A `--takeover` that is expected to fail: runs the new vswitchd
    /// until it exits (bounded) and returns its status (`None`: it did not
    /// exit and was killed). The running daemon stays this `Daemon`.
    pub fn failed_takeover(&mut self) -> Option<std::process::ExitStatus> {
        let mut new = self
            .command(true, &["--takeover"])
            .spawn()
            .expect("spawn vswitchd --takeover");
        wait_exit(&mut new, Duration::from_secs(30))
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// CPU time (user + system) the daemon used so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // utime and stime are fields 14 and 15; `rest` starts at field 3.
        n(11) + n(12)
    }

    // ---- bridge br0 -------------------------------------------------------

    /// Non-zero drop counters of br0, by reason (`dump-drops --json`).
    pub fn drops(&self) -> BTreeMap<String, u64> {
        let j = self.ctl_json(&["dump-drops", "br0"]);
        j["drops"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_u64().filter(|n| *n > 0).map(|n| (k.clone(), n)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drop counter `reason` of br0.
    pub fn drop_count(&self, reason: &str) -> u64 {
        self.drops().get(reason).copied().unwrap_or(0)
    }

    /// Waits (bounded) until drop counter `reason` reaches `want`, then a
    /// little longer to see that it does not pass it; returns the count.
    pub fn settle_drops(&self, reason: &str, want: u64) -> u64 {
        wait_until(Duration::from_secs(10), || self.drop_count(reason) >= want);
        std::thread::sleep(Duration::from_millis(300));
        self.drop_count(reason)
    }

    /// `dump-ports br0 PORT --json` entry of `port`.
    pub fn port(&self, port: &str) -> Value {
        self.ctl_json(&["dump-ports", "br0", port])["ports"][0].clone()
    }

    /// A counter (`rx_packets`, `tx_bytes`, ...) of `port`.
    pub fn port_counter(&self, port: &str, name: &str) -> u64 {
        self.port(port)[name].as_u64().unwrap_or(0)
    }

    /// `show br0 --json` entries of br0's ports.
    pub fn show_ports(&self) -> Vec<Value> {
        let j = self.ctl_json(&["show", "br0"]);
        j["bridges"][0]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `show --json` entry of `port` (its `link`, `mtu`, `policy`...), or
    /// null.
    pub fn show_port(&self, port: &str) -> Value {
        self.show_ports()
            .into_iter()
            .find(|p| p["port"] == port)
            .unwrap_or(Value::Null)
    }

    /// The link state `show --json` reports for `port` ("up"/"down"), or
    /// "missing".
    pub fn show_link(&self, port: &str) -> String {
        self.show_port(port)["link"]
            .as_str()
            .unwrap_or("missing")
            .to_string()
    }

    /// The names of br0's ports.
    pub fn port_names(&self) -> Vec<String> {
        self.show_ports()
            .iter()
            .filter_map(|p| p["port"].as_str().map(str::to_string))
            .collect()
    }

    /// `dump-flows br0 --json` entries.
    pub fn flows(&self) -> Vec<Value> {
        self.ctl_json(&["dump-flows", "br0"])["flows"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `(n_packets, flow text)` of every flow of br0.
    pub fn flow_counters(&self) -> Vec<(u64, String)> {
        self.flows()
            .iter()
            .map(|f| {
                (
                    f["n_packets"].as_u64().unwrap_or(0),
                    format!(
                        "table={},priority={},{} actions={}",
                        f["table"],
                        f["priority"],
                        f["match"].as_str().unwrap_or(""),
                        f["actions"].as_str().unwrap_or("")
                    ),
                )
            })
            .collect()
    }

    /// Replaces br0's flows with the repository file `file`.
    pub fn load_flows(&self, file: &str) {
        self.ctl(&["del-flows", "br0"]);
        let p = repo_path(file);
        self.ctl(&["add-flows", "br0", &p.display().to_string()]);
    }

    /// `trace` text and JSON for `flow` (optionally with a real frame).
    pub fn trace(&self, flow: &str, packet: Option<&[u8]>) -> (String, Value) {
        let mut args = vec!["trace", "br0", flow];
        let h;
        if let Some(p) = packet {
            h = hex(p);
            args.extend(["--packet", h.as_str()]);
        }
        let text = self.ctl(&args);
        let mut jargs = vec!["--json"];
        jargs.extend_from_slice(&args);
        let j: Value = serde_json::from_str(&self.ctl(&jargs)).expect("trace json");
        (text, j)
    }

    /// Adds `type=dummy` ports `names` to br0.
    pub fn add_dummies(&self, names: &[&str]) {
        for n in names {
            self.ctl(&["add-port", "br0", n, "type=dummy"]);
        }
    }

    /// Injects `frame` into dummy port `port` of br0.
    pub fn inject(&self, port: &str, frame: &[u8]) {
        self.ctl(&["inject", "br0", port, &hex(frame)]);
    }

    /// The frames (hex) dummy port `port` sent since the last call.
    pub fn sent(&self, port: &str) -> Vec<String> {
        self.ctl(&["dummy-sent", "br0", port])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Collects what dummy port `port` sends until there are `n` frames or
    /// `timeout` passes (the datapath thread runs asynchronously from the
    /// control socket).
    pub fn wait_sent(&self, port: &str, n: usize, timeout: Duration) -> Vec<String> {
        let mut got = Vec::new();
        wait_for(timeout, || {
            got.extend(self.sent(port));
            (got.len() >= n).then_some(())
        });
        got
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The drops that appeared between two [`Daemon::drops`] snapshots.
pub fn new_drops(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, n)| {
            let d = n - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// Waits (bounded) for `c` to exit; kills it at the limit (then `None`).
pub fn wait_exit(c: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        if Instant::now() > end {
            let _ = c.kill();
            let _ = c.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
