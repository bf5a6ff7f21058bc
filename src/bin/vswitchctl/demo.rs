//! `vswitchctl demo BR`: a one-minute tour of a running switch.
//!
//! It does what an operator would do by hand on a compute host, through the
//! same control socket, and shows the commands as it goes: two network
//! namespaces stand in for VMs; each gets a `type=tap` port that vswitchd
//! creates, whose kernel side is moved into the namespace and given an
//! address; a flow file is loaded (flows/l2-learning.flows, built in, or
//! `--flows FILE`); the VMs ping each other both ways; `dump-flows` shows
//! the counters that moved, `dump-ports` the ports' own counters.
//!
//! It leaves nothing behind: every namespace and port it made is recorded
//! as it is made and removed at the end, also after a failure, a panic or
//! Ctrl-C (SIGINT/SIGTERM/SIGHUP are caught for the duration of the demo;
//! every child command is bounded in time and stopped when interrupted).
//! The bridge's own flows are set aside while the demo's flows run and put
//! back afterwards (cookie, table, priority, timeouts, match, actions; the
//! counters start again from zero). Because swapping the flow table would
//! disturb other traffic, the demo refuses a bridge that already has ports
//! unless `--force` is given.
//!
//! The TAPs appear in vswitchd's network namespace and are moved from
//! ours, so the demo must run in the same namespace as the daemon; it says
//! so plainly when it does not. Root only (namespaces, TAP devices).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vswitch::ctl::client;
use vswitch::ctl::proto::{Request, Response};

/// The flow file the demo loads unless told otherwise.
pub const DEFAULT_FLOWS: &str = include_str!("../../../flows/l2-learning.flows");
/// How the built-in flow file is named in messages.
pub const DEFAULT_FLOWS_NAME: &str = "flows/l2-learning.flows";

/// Addresses of the two VMs: TEST-NET-1 (RFC 5737), inside namespaces of
/// their own, so they cannot clash with anything on the host.
const VM_ADDRS: [&str; 2] = ["192.0.2.1", "192.0.2.2"];
const PREFIX: &str = "/24";

/// Time limit of any one command the demo runs.
const CMD_LIMIT: Duration = Duration::from_secs(20);
/// How long the VMs get to reach each other before the counted pings.
const REACH_LIMIT: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The bridge the VMs are plugged into.
    pub bridge: String,
    /// Flow file; `None` is the built-in flows/l2-learning.flows.
    pub flows: Option<PathBuf>,
    /// Names of the two TAP ports (default `dvm1-PID`, `dvm2-PID`), for
    /// flow files that name their ports (flows/two-vms.flows: vm1,vm2).
    pub ports: Option<[String; 2]>,
    /// Pings each way.
    pub pings: u32,
    /// Keep the VMs up this long (Ctrl-C ends it) before cleaning up.
    pub keep: Duration,
    /// Run even though the bridge already has ports.
    pub force: bool,
}

impl DemoOptions {
    /// Defaults for `bridge`.
    pub fn new(bridge: &str) -> DemoOptions {
        DemoOptions {
            bridge: bridge.to_string(),
            flows: None,
            ports: None,
            pings: 3,
            keep: Duration::ZERO,
            force: false,
        }
    }
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Namespaces and TAPs need root.
    #[error("the demo creates network namespaces and TAP devices: run it as root (sudo vswitchctl demo BRIDGE)")]
    NotRoot,
    /// A program the demo runs is missing.
    #[error("the demo needs `{0}` (iproute2 / iputils-ping) on PATH")]
    MissingTool(&'static str),
    /// The daemon could not be reached.
    #[error(transparent)]
    Ctl(#[from] vswitch::ctl::Error),
    /// The daemon refused a request.
    #[error("vswitchctl {what}: {msg}")]
    Refused {
        /// The command, as the operator would type it.
        what: String,
        /// The daemon's reason.
        msg: String,
    },
    /// A command failed.
    #[error("`{cmd}` failed: {msg}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its error output, or why it did not run.
        msg: String,
    },
    /// The bridge carries other ports whose traffic the demo's flows would
    /// disturb.
    #[error("bridge {bridge} already has ports ({ports}): the demo replaces its flows while it runs; use an empty bridge (vswitchctl add-br demo0; vswitchctl demo demo0) or pass --force")]
    Busy {
        /// Bridge.
        bridge: String,
        /// Its ports.
        ports: String,
    },
    /// The TAP did not appear in our namespace.
    #[error("vswitchd created TAP {port}, but it is not in this network namespace: run the demo in the namespace where vswitchd runs (e.g. ip netns exec NS vswitchctl demo ...)")]
    ElsewhereNetns {
        /// The port.
        port: String,
    },
    /// The flow file could not be read.
    #[error("{path}: {source}")]
    Flows {
        /// File.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The VMs could not reach each other.
    #[error("{from} cannot reach {to} through bridge {bridge} (the flows, dump-ports and dump-drops above say why)")]
    Unreachable {
        /// Source VM.
        from: String,
        /// Destination address.
        to: String,
        /// Bridge.
        bridge: String,
    },
    /// Ctrl-C (or SIGTERM/SIGHUP).
    #[error("interrupted")]
    Interrupted,
    /// Writing the report failed (closed stdout).
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs the demo against the daemon at `ctl`, printing to `out`. Whatever
/// it created is removed before it returns, success or not.
pub fn run(ctl: &Path, opts: &DemoOptions, out: &mut dyn Write) -> Result<(), DemoError> {
    if vswitch::ctl::current_uid() != 0 {
        return Err(DemoError::NotRoot);
    }
    for tool in ["ip", "ping"] {
        if !on_path(tool) {
            return Err(DemoError::MissingTool(tool));
        }
    }
    let (flow_text, flow_name) = match &opts.flows {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|source| DemoError::Flows {
                path: p.display().to_string(),
                source,
            })?,
            p.display().to_string(),
        ),
        None => (DEFAULT_FLOWS.to_string(), DEFAULT_FLOWS_NAME.to_string()),
    };
    let mut demo = Demo {
        ctl: ctl.to_path_buf(),
        bridge: opts.bridge.clone(),
        stop: watch_signals(),
        netns: Vec::new(),
        ports: Vec::new(),
        saved_flows: None,
        cleaned: false,
    };
    let r = demo.tour(opts, &flow_text, &flow_name, out);
    let interrupted = demo.interrupted();
    if interrupted {
        let _ = writeln!(out, "\ninterrupted: cleaning up");
    }
    let c = demo.cleanup(out);
    match (r, c) {
        (Err(e), _) => Err(e),
        (Ok(()), _) if interrupted => Err(DemoError::Interrupted),
        (Ok(()), c) => c,
    }
}

/// True when `tool` is an executable file in a PATH directory.
fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            std::fs::metadata(d.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Catches SIGINT, SIGTERM and SIGHUP for the rest of the process and
/// raises the returned flag, so the demo can clean up instead of dying
/// with namespaces and ports left behind.
fn watch_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("demo-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut i), Ok(mut t), Ok(mut h)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                    signal(SignalKind::hangup()),
                ) else {
                    return;
                };
                let _ = tx.send(());
                tokio::select! {
                    _ = i.recv() => {}
                    _ = t.recv() => {}
                    _ = h.recv() => {}
                }
                f.store(true, Ordering::SeqCst);
            });
        });
    if spawned.is_ok() {
        // Handlers are in place once the thread says so (or gave up).
        let _ = rx.recv_timeout(Duration::from_secs(5));
    }
    flag
}

/// The demo's state: what it made, so that it can unmake it.
struct Demo {
    ctl: PathBuf,
    bridge: String,
    stop: Arc<AtomicBool>,
    netns: Vec<String>,
    ports: Vec<String>,
    /// The bridge's flows as flow text, once they were replaced.
    saved_flows: Option<Vec<String>>,
    cleaned: bool,
}

/// What a finished command left.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Demo {
    fn interrupted(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), DemoError> {
        if self.interrupted() {
            Err(DemoError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Runs `args` bounded by `limit`; stopped early when interrupted
    /// (unless `during_cleanup`).
    fn cmd(&self, args: &[&str], limit: Duration, during_cleanup: bool) -> Result<Ran, DemoError> {
        let line = args.join(" ");
        let (prog, rest) = args.split_first().ok_or_else(|| DemoError::Command {
            cmd: line.clone(),
            msg: "empty command".into(),
        })?;
        let mut child = Command::new(prog)
            .args(rest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| DemoError::Command {
                cmd: line.clone(),
                msg: e.to_string(),
            })?;
        let end = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) => {}
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(DemoError::Command {
                        cmd: line,
                        msg: e.to_string(),
                    });
                }
            }
            let stop = !during_cleanup && self.interrupted();
            if stop || Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                if stop {
                    return Err(DemoError::Interrupted);
                }
                return Err(DemoError::Command {
                    cmd: line,
                    msg: format!("no answer within {} s", limit.as_secs()),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let o = child.wait_with_output().map_err(|e| DemoError::Command {
            cmd: line.clone(),
            msg: e.to_string(),
        })?;
        Ok(Ran {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        })
    }

    /// Runs `args`, failing on a non-zero exit.
    fn must(&self, args: &[&str]) -> Result<String, DemoError> {
        let r = self.cmd(args, CMD_LIMIT, false)?;
        if r.ok {
            Ok(r.stdout)
        } else {
            Err(DemoError::Command {
                cmd: args.join(" "),
                msg: r.stderr,
            })
        }
    }

    /// One request; a refusal is an error naming the command.
    fn req(&self, what: &str, r: &Request) -> Result<Response, DemoError> {
        let resp = client::call(&self.ctl, r)?;
        if resp.ok {
            Ok(resp)
        } else {
            Err(DemoError::Refused {
                what: what.to_string(),
                msg: resp.error.unwrap_or_default(),
            })
        }
    }

    fn tour(
        &mut self,
        opts: &DemoOptions,
        flow_text: &str,
        flow_name: &str,
        out: &mut dyn Write,
    ) -> Result<(), DemoError> {
        let br = self.bridge.clone();
        let pid = std::process::id();
        self.req("version", &Request::Version)?;
        let show = self.req(
            &format!("show {br}"),
            &Request::Show {
                bridge: Some(br.clone()),
            },
        )?;
        let existing: Vec<String> = show.json["bridges"][0]["ports"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["port"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if !existing.is_empty() && !opts.force {
            return Err(DemoError::Busy {
                bridge: br,
                ports: existing.join(", "),
            });
        }
        writeln!(
            out,
            "vswitch demo on bridge {br} (vswitchd at {})\n",
            self.ctl.display()
        )?;

        // 1. The "VMs".
        let vms = [1, 2].map(|i| format!("vswitch-demo-{pid}-vm{i}"));
        for ns in &vms {
            self.check()?;
            self.must(&["ip", "netns", "add", ns])?;
            self.netns.push(ns.clone());
            self.must(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            // No IPv6 chatter (router solicitations, DAD) in the counters:
            // what the reader sees is the ARP and the pings. Cosmetic, so a
            // failure is ignored.
            let _ = self.cmd(
                &[
                    "ip", "netns", "exec", ns, "sh", "-c",
                    "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
                ],
                CMD_LIMIT,
                false,
            );
        }
        writeln!(
            out,
            "1. Two \"VMs\": network namespaces {} and {}",
            vms[0], vms[1]
        )?;

        // 2. Their TAP ports.
        let names = opts
            .ports
            .clone()
            .unwrap_or_else(|| [1, 2].map(|i| format!("dvm{i}-{pid}")));
        writeln!(
            out,
            "2. A TAP port for each, created by vswitchd; its kernel side moves into the VM:"
        )?;
        for (i, (port, ns)) in names.iter().zip(&vms).enumerate() {
            self.check()?;
            let add = format!("add-port {br} {port} type=tap");
            self.req(
                &add,
                &Request::AddPort {
                    bridge: br.clone(),
                    port: port.clone(),
                    options: vec!["type=tap".into()],
                },
            )?;
            self.ports.push(port.clone());
            let mv = self.cmd(
                &["ip", "link", "set", "dev", port, "netns", ns],
                CMD_LIMIT,
                false,
            )?;
            if !mv.ok {
                if mv.stderr.contains("Cannot find device") {
                    return Err(DemoError::ElsewhereNetns { port: port.clone() });
                }
                return Err(DemoError::Command {
                    cmd: format!("ip link set dev {port} netns {ns}"),
                    msg: mv.stderr,
                });
            }
            let mac = format!("52:54:00:de:00:{:02x}", i + 1);
            let addr = format!("{}{PREFIX}", VM_ADDRS[i]);
            self.must(&["ip", "-n", ns, "link", "set", "dev", port, "address", &mac])?;
            self.must(&["ip", "-n", ns, "addr", "add", &addr, "dev", port])?;
            self.must(&["ip", "-n", ns, "link", "set", "dev", port, "up"])?;
            writeln!(
                out,
                "     $ vswitchctl {add}\n       vm{}: {port} {addr} {mac}",
                i + 1
            )?;
        }

        // 3. The flows (the bridge's own are set aside).
        self.check()?;
        let dump = self.req(
            &format!("dump-flows {br}"),
            &Request::DumpFlows {
                bridge: br.clone(),
                matches: None,
                names: false,
            },
        )?;
        let saved = saved_flow_lines(&dump.json);
        self.req(
            &format!("del-flows {br}"),
            &Request::DelFlows {
                bridge: br.clone(),
                matches: None,
                strict: false,
            },
        )?;
        self.saved_flows = Some(saved);
        self.req(
            &format!("add-flows {br} {flow_name}"),
            &Request::AddFlows {
                bridge: br.clone(),
                text: flow_text.to_string(),
                source: flow_name.to_string(),
            },
        )?;
        let n_saved = self.saved_flows.as_ref().map_or(0, Vec::len);
        writeln!(
            out,
            "3. Flows: $ vswitchctl add-flows {br} {flow_name}\n     ({}; {br}'s own {} set aside until the end)",
            flows_n(count_flows(flow_text)),
            flows_n(n_saved)
        )?;

        // 4. Ping.
        writeln!(out, "4. Ping, each way:")?;
        let mut reached = true;
        for (from, (ns, to)) in [(0usize, 1usize), (1, 0)]
            .iter()
            .map(|&(a, b)| (a, (&vms[a], VM_ADDRS[b])))
        {
            self.check()?;
            let ok = self.reach(ns, to)?
                && self
                    .cmd(
                        &[
                            "ip",
                            "netns",
                            "exec",
                            ns,
                            "ping",
                            "-c",
                            &opts.pings.to_string(),
                            "-i",
                            "0.2",
                            "-W",
                            "1",
                            to,
                        ],
                        CMD_LIMIT + Duration::from_secs(u64::from(opts.pings)),
                        false,
                    )
                    .map(|r| {
                        let summary = r
                            .stdout
                            .lines()
                            .find(|l| l.contains("transmitted"))
                            .unwrap_or("no reply")
                            .to_string();
                        let _ = writeln!(
                            out,
                            "     vm{} -> vm{} ({to}): {summary}",
                            from + 1,
                            2 - from
                        );
                        r.ok
                    })?;
            if !ok {
                reached = false;
                writeln!(out, "     vm{} -> {to}: FAILED", from + 1)?;
                break;
            }
        }

        // 5-7. What the switch saw.
        self.check()?;
        let flows = self.req(
            &format!("dump-flows {br}"),
            &Request::DumpFlows {
                bridge: br.clone(),
                matches: None,
                names: false,
            },
        )?;
        writeln!(out, "5. $ vswitchctl dump-flows {br}")?;
        write!(out, "{}", flows.text)?;
        let moved = moved_flows(&flows.json);
        writeln!(out, "   Counters that moved:")?;
        if moved.is_empty() {
            writeln!(out, "     (none)")?;
        }
        for m in &moved {
            writeln!(out, "     {m}")?;
        }
        for (i, port) in names.iter().enumerate() {
            let p = self.req(
                &format!("dump-ports {br} {port}"),
                &Request::DumpPorts {
                    bridge: br.clone(),
                    port: Some(port.clone()),
                },
            )?;
            // The reply's first line only repeats the bridge name.
            let body = p.text.lines().skip(1).collect::<Vec<_>>().join("\n");
            let step = if i == 0 { "6." } else { "  " };
            writeln!(out, "{step} $ vswitchctl dump-ports {br} {port}\n{body}")?;
        }
        let drops = self.req(
            &format!("dump-drops {br}"),
            &Request::DumpDrops { bridge: br.clone() },
        )?;
        writeln!(out, "7. $ vswitchctl dump-drops {br}")?;
        write!(out, "{}", drops.text)?;

        if !reached {
            return Err(DemoError::Unreachable {
                from: vms[0].clone(),
                to: VM_ADDRS[1].to_string(),
                bridge: br,
            });
        }
        if !opts.keep.is_zero() {
            writeln!(
                out,
                "\nThe VMs stay up for {} s (Ctrl-C to end now). Try:\n  ip netns exec {} ping {}\n  vswitchctl dump-flows {br}\n  vswitchctl fdb-show {br}",
                opts.keep.as_secs(),
                vms[0],
                VM_ADDRS[1]
            )?;
            out.flush()?;
            let end = Instant::now() + opts.keep;
            while Instant::now() < end && !self.interrupted() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Waits (bounded) until `ns` gets one reply from `to`.
    fn reach(&self, ns: &str, to: &str) -> Result<bool, DemoError> {
        let end = Instant::now() + REACH_LIMIT;
        while Instant::now() < end {
            self.check()?;
            let r = self.cmd(
                &["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", to],
                CMD_LIMIT,
                false,
            )?;
            if r.ok {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes what the demo made: ports first (closing the TAP fd removes
    /// the device, wherever it is), then whatever still runs in the
    /// namespaces and the namespaces, then the bridge's flows come back.
    /// Keeps going past errors; reports the first.
    fn cleanup(&mut self, out: &mut dyn Write) -> Result<(), DemoError> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        let mut first: Option<DemoError> = None;
        let mut note = |e: DemoError| {
            if first.is_none() {
                first = Some(e);
            }
        };
        let br = self.bridge.clone();
        let made_something = !self.netns.is_empty() || self.saved_flows.is_some();
        for port in std::mem::take(&mut self.ports) {
            if let Err(e) = self.req(
                &format!("del-port {br} {port}"),
                &Request::DelPort {
                    bridge: br.clone(),
                    port,
                },
            ) {
                note(e);
            }
        }
        for ns in std::mem::take(&mut self.netns) {
            if let Ok(r) = self.cmd(&["ip", "netns", "pids", &ns], CMD_LIMIT, true) {
                for pid in r.stdout.split_whitespace() {
                    let _ = self.cmd(&["kill", "-9", pid], CMD_LIMIT, true);
                }
            }
            match self.cmd(&["ip", "netns", "del", &ns], CMD_LIMIT, true) {
                Ok(r) if r.ok => {}
                Ok(r) => note(DemoError::Command {
                    cmd: format!("ip netns del {ns}"),
                    msg: r.stderr,
                }),
                Err(e) => note(e),
            }
        }
        let mut restored = None;
        if let Some(saved) = self.saved_flows.take() {
            let del = self.req(
                &format!("del-flows {br}"),
                &Request::DelFlows {
                    bridge: br.clone(),
                    matches: None,
                    strict: false,
                },
            );
            let add = del.and_then(|_| {
                self.req(
                    &format!("add-flows {br} (its saved flows)"),
                    &Request::AddFlows {
                        bridge: br.clone(),
                        text: saved.join("\n"),
                        source: "saved flows".into(),
                    },
                )
            });
            match add {
                Ok(_) => restored = Some(saved.len()),
                Err(e) => {
                    // Never lose the operator's flows silently.
                    let _ = writeln!(
                        out,
                        "could not restore {br}'s flows ({e}); they were:\n{}",
                        saved.join("\n")
                    );
                    note(e);
                }
            }
        }
        if made_something {
            let _ = writeln!(
                out,
                "\nCleaned up: demo ports deleted, namespaces removed{}.",
                restored.map_or(String::new(), |n| format!(
                    ", {br}'s {} restored",
                    flows_n(n)
                ))
            );
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // A panic mid-tour still cleans up.
        if !self.cleaned {
            let _ = self.cleanup(&mut std::io::stderr());
        }
    }
}

/// The flows of a `dump-flows` JSON reply as flow text that `add-flows`
/// takes back (numbers for ports, so no name is needed).
fn saved_flow_lines(dump: &serde_json::Value) -> Vec<String> {
    let Some(flows) = dump["flows"].as_array() else {
        return Vec::new();
    };
    flows
        .iter()
        .map(|f| {
            let mut s = format!(
                "cookie={},table={},priority={}",
                f["cookie"].as_str().unwrap_or("0x0"),
                f["table"].as_u64().unwrap_or(0),
                f["priority"].as_u64().unwrap_or(0x8000)
            );
            for t in ["idle_timeout", "hard_timeout"] {
                if let Some(n) = f[t].as_u64().filter(|n| *n > 0) {
                    s.push_str(&format!(",{t}={n}"));
                }
            }
            if let Some(m) = f["match"].as_str().filter(|m| !m.is_empty()) {
                s.push(',');
                s.push_str(m);
            }
            s.push_str(",actions=");
            s.push_str(f["actions"].as_str().unwrap_or("drop"));
            s
        })
        .collect()
}

/// Flows with packets, one line each: where, what, how many.
fn moved_flows(dump: &serde_json::Value) -> Vec<String> {
    let Some(flows) = dump["flows"].as_array() else {
        return Vec::new();
    };
    flows
        .iter()
        .filter(|f| f["n_packets"].as_u64().unwrap_or(0) > 0)
        .map(|f| {
            let m = f["match"].as_str().unwrap_or("");
            format!(
                "table={} priority={}{}{} actions={}: n_packets={}, n_bytes={}",
                f["table"],
                f["priority"],
                if m.is_empty() { "" } else { "," },
                m,
                f["actions"].as_str().unwrap_or(""),
                f["n_packets"],
                f["n_bytes"]
            )
        })
        .collect()
}

/// "1 flow", "3 flows".
fn flows_n(n: usize) -> String {
    format!("{n} flow{}", if n == 1 { "" } else { "s" })
}

/// Flow lines in a flow file (not comments, not blank).
fn count_flows(text: &str) -> usize {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn saved_flows_become_flow_text() {
        let dump = json!({"flows": [
            {"cookie": "0x0", "table": 0, "priority": 0, "match": "", "actions": "NORMAL",
             "idle_timeout": 0, "hard_timeout": 0, "n_packets": 5},
            {"cookie": "0x2a", "table": 1, "priority": 100, "match": "ct_state=+est+trk,ip",
             "actions": "ct(commit),NORMAL", "idle_timeout": 30, "hard_timeout": 0, "n_packets": 0},
        ]});
        assert_eq!(
            saved_flow_lines(&dump),
            vec![
                "cookie=0x0,table=0,priority=0,actions=NORMAL".to_string(),
                "cookie=0x2a,table=1,priority=100,idle_timeout=30,ct_state=+est+trk,ip,actions=ct(commit),NORMAL".to_string(),
            ]
        );
        let moved = moved_flows(&dump);
        assert_eq!(moved.len(), 1);
        assert!(
            moved[0].contains("actions=NORMAL: n_packets=5"),
            "{moved:?}"
        );
    }

    #[test]
    fn the_builtin_flow_file_has_three_flows() {
        assert_eq!(count_flows(DEFAULT_FLOWS), 3);
        assert_eq!(count_flows("# c\n\n a=1 # x\n"), 1);
    }
}
