//! vswitchd: the switch daemon.
//!
//! With no arguments it runs the embedded default configuration (bridge
//! `br0` as a MAC-learning switch) and serves the control socket.

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
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Leave the TAP and internal devices vswitchd created in place when it
    /// exits (they are persistent: a restart attaches to them again, where
    /// they live). `del-port` still removes them.
    #[arg(long)]
    keep_taps: bool,
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
    let (cfg, base) = match &args.config {
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
    // The TAPs we create outlive a crash; their records (which are ours,
    // where they live) sit beside the socket, in the run directory.
    vswitch::port::persist::set_record_dir(Some(rundir.join("taps")));
    vswitch::port::persist::set_keep_on_exit(args.keep_taps);
    api.serve_openflow(&rundir, srv.handle())
        .map_err(|e| e.to_string())?;
    if let Err(e) = config::apply(&api, &cfg, &base) {
        api.shutdown();
        let _ = std::fs::remove_file(&path);
        return Err(format!("configuration: {e}"));
    }
    tracing::info!(socket = %path.display(), "vswitchd ready");
    srv.run(api, listener, path).map_err(|e| e.to_string())
}
