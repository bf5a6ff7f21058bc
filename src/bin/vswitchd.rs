//! vswitchd: the switch daemon.
//!
//! With no arguments it runs the embedded default configuration (bridge
//! `br0` as a MAC-learning switch) and serves the control socket.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use vswitch::ctl::{api::Api, config, config::Config, reload, server, state};

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
    /// Where the switch's state is saved and restored from (default:
    /// /var/lib/vswitch as root, else $XDG_STATE_HOME/vswitch).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Save nothing: every change made at run time is lost at stop.
    #[arg(long, conflicts_with = "state_dir")]
    no_state: bool,
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
    // The state directory is locked before anything else is set up, so a
    // second daemon on it is refused before it touches the switch.
    let state_dir = if args.no_state {
        None
    } else {
        let dir = match &args.state_dir {
            Some(d) => d.clone(),
            None => state::default_dir().map_err(|e| e.to_string())?,
        };
        Some(state::StateDir::open(&dir).map_err(|e| e.to_string())?)
    };
    let saved = match &state_dir {
        Some(d) => d.load().map_err(|e| e.to_string())?,
        None => None,
    };
    let (cfg, base) = match &args.config {
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
    let path = args
        .ctl
        .clone()
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
    let fail = |e: String| {
        api.shutdown();
        let _ = std::fs::remove_file(&path);
        e
    };
    // Saved state wins over the configuration, which seeds a first start;
    // what changed in the file since it was last applied applies on top.
    let (seed, unrestored) = match (saved, &state_dir) {
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
            if let Err(e) = config::apply(&api, &cfg, &base) {
                return Err(fail(format!("configuration: {e}")));
            }
            (reload::seed_of(&cfg, &base).ok(), Vec::new())
        }
    };
    let persist = reload::Persist::new(api.clone(), args.config.clone(), seed, unrestored);
    let mut srv = srv.on_reload(persist.reload_hook());
    if let Some(dir) = state_dir {
        let file = dir.file();
        let saver = persist.start_saver(dir).map_err(|e| fail(e.to_string()))?;
        tracing::info!(file = %file.display(), "state is saved after every change");
        srv = srv.with_state(saver);
    }
    tracing::info!(socket = %path.display(), "vswitchd ready");
    srv.run(api, listener, path).map_err(|e| e.to_string())
}
