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
use vswitch::ctl::{api::Api, config, config::Config, server};

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
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{}", vswitch::ctl::config::DEFAULT_CONFIG);
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
    let (mut cfg, base) = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let cfg = Config::parse(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            let base = p.parent().map(|d| d.to_path_buf()).unwrap_or_default();
            (cfg, base)
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
        .or_else(|| cfg.ctl.socket.clone())
        .unwrap_or_else(vswitch::ctl::default_socket_path);
    // Signals first: once the socket answers, SIGTERM is a clean stop.
    let srv = server::Server::new().map_err(|e| e.to_string())?;
    let listener = server::bind(&path).map_err(|e| e.to_string())?;
    let api = Arc::new(Api::new());
    // OpenFlow beside the control socket: DIR/BR.mgmt for each bridge, as
    // Open vSwitch puts $OVS_RUNDIR/BR.mgmt.
    let rundir = path
        .parent()
        .map(|d| d.to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."));
    api.serve_openflow(&rundir, srv.handle())
        .map_err(|e| e.to_string())?;
    if let Err(e) = config::apply(&api, &cfg, &base) {
        api.shutdown();
        let _ = std::fs::remove_file(&path);
        return Err(format!("configuration: {e}"));
    }
    let _ovsdb = match remote {
        Some(r) => Some(vswitch::ctl::ovsdb::start(api.clone(), r).map_err(|e| e.to_string())?),
        None => None,
    };
    tracing::info!(socket = %path.display(), "vswitchd ready");
    srv.run(api, listener, path).map_err(|e| e.to_string())
}
