//! vswitchd: the switch daemon.
//!
//! With no arguments it runs the embedded default configuration (bridge
//! `br0` as a MAC-learning switch) and serves the control socket. With
//! `--ovsdb REMOTE` its bridges and ports come from an `ovsdb-server`
//! instead, as ovs-vswitchd's do.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use vswitch::ctl::{api::Api, config::Config, handover, reload, seed, server, state};

/// Waits (bounded) until process `pid` has exited.
fn wait_gone(pid: u32, limit: std::time::Duration) {
    let t0 = std::time::Instant::now();
    // A zombie (exited, not yet reaped by its parent) counts as gone.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
            .is_some_and(|r| !r.starts_with('Z'))
    };
    while alive() && t0.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The vswitch daemon.
#[derive(Parser, Debug)]
#[command(name = "vswitchd", version, about = "userspace virtual switch daemon")]
struct Args {
    /// Configuration file (TOML). Without it, the embedded default runs.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Control socket path (default: /run/vswitch/vswitchd.sock as root;
    /// also settable with VSWITCH_CTL).
    #[arg(long)]
    ctl: Option<PathBuf>,
    /// Take bridges and ports from the Open vSwitch database at this
    /// remote (`unix:PATH` or `tcp:HOST:PORT`), as ovs-vswitchd does; the
    /// embedded default and the configuration file's bridges are not used.
    #[arg(long, value_name = "REMOTE")]
    ovsdb: Option<String>,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Take over from the vswitchd running on the control socket: its
    /// TAP and tunnel fds and its connection tables come over, it exits,
    /// and forwarding pauses only for the tables' copy (an upgrade).
    #[arg(long)]
    takeover: bool,
    /// Leave the TAP and internal devices vswitchd created in place when it
    /// exits (they are persistent: a restart attaches to them again, where
    /// they live). `del-port` still removes them.
    #[arg(long)]
    keep_taps: bool,
    /// Where the switch's state is saved and restored from (default:
    /// /var/lib/vswitch as root, else $XDG_STATE_HOME/vswitch).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Save nothing: every change made at run time is lost at stop.
    #[arg(long, conflicts_with = "state_dir")]
    no_state: bool,
    /// Datapath worker threads per bridge (default: one per core, as
    /// many as the machine reports; the control plane shares them). Each
    /// has its own caches and its own queue of every TAP, system and
    /// tunnel port.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
    /// Workers never sleep waiting for packets (Open vSwitch's PMD
    /// threads): lower latency, one core kept busy per worker.
    #[arg(long)]
    busy_poll: bool,
    /// The workers' nice value, -20 to 19 (the control plane keeps the
    /// daemon's). Unset, they keep the daemon's own. Open vSwitch's start
    /// script runs its whole daemon at -10: a worker that waits for a CPU
    /// while it has packets delays every VM behind it, but on a host whose
    /// CPUs the guests share a raised worker takes their CPU time too (see
    /// README, "Datapath threads"). Needs root or CAP_SYS_NICE to lower
    /// it; without, the workers keep the daemon's priority (one warning).
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-20..=19))]
    datapath_nice: Option<i32>,
    /// Do not pin the workers one per CPU (by default they are, when
    /// there is one worker per CPU; see README, "Datapath threads").
    /// Implies --no-cpu-steering.
    #[arg(long)]
    no_pin: bool,
    /// Leave the choice of a TAP's queue to the kernel. By default, with
    /// the workers pinned, a quiet TAP's pings, ARP and DNS/DHCP/NTP go to
    /// the worker on the sending CPU (a ping through a sleeping worker:
    /// 0.03-0.05 ms instead of 0.04-0.08 on a 2-vCPU guest) and everything
    /// else by a flow hash that keeps each TCP connection on one worker
    /// (see README, "Datapath threads").
    #[arg(long)]
    no_cpu_steering: bool,
    /// Steering is the default now; the flag that turned it on while it
    /// was opt-in is still accepted (and changes nothing), so a start
    /// script written then keeps working.
    #[arg(long, hide = true, conflicts_with = "no_cpu_steering")]
    cpu_steering: bool,
}

/// Pins worker `i` to the `i`-th CPU this process may use, and with
/// `steer` gives every multi-queue TAP the steering programs, when there
/// is one worker per such CPU and more than one (`port::steering`).
/// Whether the workers are pinned, and whether TAPs are steered.
fn pin_workers(workers: usize, steer: bool) -> (bool, bool) {
    let cpus = match vswitch::port::sys::sched::allowed_cpus() {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "workers not pinned: the allowed CPUs are unknown");
            return (false, false);
        }
    };
    if workers < 2 || workers != cpus.len() {
        tracing::debug!(
            workers,
            cpus = cpus.len(),
            "workers neither pinned nor steered to: that needs one worker per CPU"
        );
        return (false, false);
    }
    match vswitch::port::steering::install(cpus, steer) {
        (s, None) => (true, s.steers()),
        (_, Some(e)) => {
            tracing::warn!(error = %e, "TAPs not steered (needs CAP_BPF and a kernel with TUNSETSTEERINGEBPF; --no-cpu-steering asks for none): a quiet VM's frames may wake a worker on another CPU; the workers are pinned all the same");
            (true, false)
        }
    }
}

/// The nice value the workers will set, if this process may set it: tried
/// once on a thread of its own, so a daemon without the privilege warns
/// once instead of once per worker.
fn worker_nice(want: i32) -> Option<i32> {
    let tried = std::thread::spawn(move || vswitch::port::sys::sched::set_nice(want)).join();
    match tried {
        Ok(Ok(true)) => Some(want),
        Ok(Ok(false)) => None,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "workers at nice {want} (--datapath-nice) not allowed without root or CAP_SYS_NICE: they keep the daemon's priority");
            None
        }
        Err(_) => None,
    }
}

/// The control plane's scheduler time slice (see `port::sys::sched`).
const CONTROL_SLICE: std::time::Duration = std::time::Duration::from_micros(100);

/// The C allocator's arenas: the threads vswitchd starts with get them;
/// threads the control plane starts later share them instead of leaving a
/// new one behind at each new peak of threads alive at once.
const MALLOC_ARENAS: usize = 4;

/// Blocks from this size up (a TAP queue's receive overflow areas) are
/// mapped on their own and given back when their port goes: glibc's
/// starting value, kept (see `port::sys::malloc`).
const MALLOC_MMAP_THRESHOLD: usize = 128 * 1024;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{}", vswitch::ctl::config::DEFAULT_CONFIG);
        return ExitCode::SUCCESS;
    }
    // Before any thread exists: every thread after this shares the
    // capped arenas (see `port::sys::malloc`).
    let malloc_tuned = vswitch::port::sys::malloc::limit_arenas(MALLOC_ARENAS)
        && vswitch::port::sys::malloc::fix_mmap_threshold(MALLOC_MMAP_THRESHOLD);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if !malloc_tuned {
        tracing::debug!("the C allocator's arenas and mmap threshold are not set");
    }
    // The control plane mostly waits and then must answer at once, on a
    // host whose datapath workers keep every core busy: a short time
    // slice, inherited by every thread spawned from here (workers restore
    // the default). No more CPU share, an earlier turn on it.
    if let Err(e) = vswitch::port::sys::sched::set_slice(Some(CONTROL_SLICE)) {
        tracing::debug!(error = %e, "short time slice for the control plane not set");
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let remote = args
        .ovsdb
        .as_deref()
        .map(str::parse::<vswitch::ovsdb::Remote>)
        .transpose()
        .map_err(|e| e.to_string())?;
    // The state directory is locked before anything else is set up, so a
    // second daemon on it is refused before it touches the switch. Taking
    // over, the running daemon holds the lock until it has gone: the new
    // one reads the state now and locks it then.
    let mut state_dir = if args.no_state {
        None
    } else {
        let dir = match &args.state_dir {
            Some(d) => d.clone(),
            None => state::default_dir().map_err(|e| e.to_string())?,
        };
        let open = if args.takeover {
            state::StateDir::open_unlocked
        } else {
            state::StateDir::open
        };
        Some(open(&dir).map_err(|e| e.to_string())?)
    };
    // Taking over, a state that does not load is reported once the
    // running daemon is in the exchange, so it goes on as before.
    let (saved, unloadable) = match state_dir.as_ref().map(|d| d.load()) {
        None => (None, None),
        Some(Ok(s)) => (s, None),
        Some(Err(e)) if args.takeover => (None, Some(e.to_string())),
        Some(Err(e)) => return Err(e.to_string()),
    };
    let (mut cfg, base) = match &args.config {
        Some(p) => {
            let parsed = std::fs::read_to_string(p)
                .map_err(|e| format!("{}: {e}", p.display()))
                .and_then(|text| Config::parse(&text).map_err(|e| format!("{}: {e}", p.display())));
            let base = p.parent().map(|d| d.to_path_buf()).unwrap_or_default();
            match parsed {
                Ok(cfg) => (cfg, base),
                // With saved state the file only adds its changes, and a
                // bad file changes nothing, as on SIGHUP.
                Err(e) if saved.is_some() => {
                    tracing::error!(
                        "configuration not applied, starting from the saved state: {e}"
                    );
                    (Config::default(), base)
                }
                Err(e) => return Err(e),
            }
        }
        None => (
            Config::embedded_default(),
            std::env::current_dir().unwrap_or_default(),
        ),
    };
    if remote.is_some() {
        // The database is the one source of bridges.
        if args.config.is_some() && !cfg.bridges.is_empty() {
            tracing::warn!("--ovsdb: the configuration file's bridges are ignored");
        }
        cfg.bridges.clear();
    }
    let path = args
        .ctl
        .clone()
        .or_else(|| cfg.ctl.socket.clone())
        .unwrap_or_else(vswitch::ctl::default_socket_path);
    // Signals first: once the socket answers, SIGTERM is a clean stop.
    let srv = server::Server::new().map_err(|e| e.to_string())?;
    let api = Arc::new(Api::new());
    let workers = args.workers.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let nice = args.datapath_nice.and_then(worker_nice);
    api.set_datapath(vswitch::ctl::api::DatapathSettings {
        workers,
        busy_poll: args.busy_poll,
        nice,
    });
    let (pinned, steering) = if args.no_pin {
        (false, false)
    } else {
        pin_workers(workers, !args.no_cpu_steering)
    };
    tracing::info!(
        workers,
        busy_poll = args.busy_poll,
        nice,
        pinned,
        cpu_steering = steering,
        "datapath workers per bridge"
    );
    // An upgrade: the running daemon's fds first (it forwards meanwhile);
    // its control socket is ours once it has gone.
    let incoming = if args.takeover {
        let (inc, fds) = handover::connect(&path).map_err(|e| e.to_string())?;
        tracing::info!(old_pid = inc.old_pid, ports = inc.ports, "taking over");
        api.adopt_fds(fds);
        if let Some(e) = unloadable {
            return Err(e);
        }
        Some(inc)
    } else {
        None
    };
    let mut listener = match incoming {
        None => Some(server::bind(&path).map_err(|e| e.to_string())?),
        Some(_) => None,
    };
    // OpenFlow beside the control socket: DIR/BR.mgmt for each bridge, as
    // Open vSwitch puts $OVS_RUNDIR/BR.mgmt.
    let rundir = path
        .parent()
        .map(|d| d.to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."));
    // The TAPs we create outlive a crash; their records (which are ours,
    // where they live) sit beside the socket, in the run directory.
    vswitch::port::persist::set_record_dir(Some(rundir.join("taps")));
    // With the database, it says what exists: a stop leaves the devices.
    // Taking over, the devices are the running daemon's until it has
    // gone: a failed attempt must not remove them either.
    let keep = args.keep_taps || remote.is_some();
    vswitch::port::persist::set_keep_on_exit(keep || incoming.is_some());
    api.serve_openflow(&rundir, srv.handle())
        .map_err(|e| e.to_string())?;
    let ours = listener.is_some();
    let fail = |e: String| {
        api.shutdown();
        if ours {
            let _ = std::fs::remove_file(&path);
        }
        e
    };
    // Saved state wins over the configuration, which seeds a first start;
    // what changed in the file since it was last applied applies on top.
    // Under --ovsdb the database says which bridges and ports exist: only
    // the saved tables come back, as the database adds their bridges.
    let (seed, unrestored) = match (saved, &state_dir) {
        (Some(st), Some(_)) if remote.is_some() => {
            tracing::info!(
                bridges = st.bridges.len(),
                "saved flows wait for the database's bridges"
            );
            api.restore_tables_on_add(st.bridges);
            (st.seed, Vec::new())
        }
        (Some(st), Some(dir)) => {
            tracing::info!(file = %dir.file().display(), bridges = st.bridges.len(), "restoring saved state");
            let kept = reload::restore(&api, &st, &dir.file()).map_err(|e| fail(e.to_string()))?;
            let seed = match &args.config {
                Some(p) => reload::apply_file(&api, st.seed.as_ref(), p),
                None => st.seed,
            };
            (seed, kept)
        }
        _ => {
            if let Err(e) = seed::apply(&api, &cfg, &base) {
                return Err(fail(format!("configuration: {e}")));
            }
            (reload::seed_of(&cfg, &base).ok(), Vec::new())
        }
    };
    let ovsdb = match remote {
        Some(r) => Some(
            vswitch::ctl::ovsdb::start(api.clone(), r, incoming.is_some())
                .map_err(|e| fail(e.to_string()))?,
        ),
        None => None,
    };
    if let Some(inc) = incoming {
        // The database's ports must exist (on the handed-over fds) before
        // the old process pauses.
        if let Some(h) = &ovsdb {
            if !h.wait_configured(handover::STEP_TIMEOUT) {
                return Err(fail(
                    "takeover: the database was not applied in time".into(),
                ));
            }
        }
        let old = inc.old_pid;
        let gap = inc.finish(&api).map_err(|e| fail(e.to_string()))?;
        tracing::info!(
            gap_ms = gap.as_secs_f64() * 1e3,
            "took over: forwarding (connection tables imported)"
        );
        wait_gone(old, std::time::Duration::from_secs(10));
        vswitch::port::persist::set_keep_on_exit(keep);
        if let Some(d) = state_dir.as_mut() {
            d.lock().map_err(|e| e.to_string())?;
        }
        listener = Some(server::bind(&path).map_err(|e| e.to_string())?);
    }
    let Some(listener) = listener else {
        return Err("internal: no control socket".into());
    };
    let persist = reload::Persist::new(api.clone(), args.config.clone(), seed, unrestored);
    let mut srv = srv.on_reload(persist.reload_hook());
    if let Some(dir) = state_dir {
        let file = dir.file();
        let saver = persist.start_saver(dir).map_err(|e| e.to_string())?;
        tracing::info!(file = %file.display(), "state is saved after every change");
        srv = srv.with_state(saver);
    }
    tracing::info!(socket = %path.display(), "vswitchd ready");
    let r = srv.run(api, listener, path).map_err(|e| e.to_string());
    drop(ovsdb);
    r
}
