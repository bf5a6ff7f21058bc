//! Test support: a vswitchd process on a private socket, driven with the
//! real vswitchctl binary. Stopped with SIGTERM (and reaped) when dropped,
//! even when the test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
}

pub fn repo_path(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

impl Daemon {
    /// Starts vswitchd with `config` (TOML) or the embedded default.
    pub fn start(config: Option<&str>) -> Daemon {
        Self::start_with(config, &[])
    }

    /// As `start`, with extra environment for the daemon.
    pub fn start_with(config: Option<&str>, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("vswitchd.sock");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vswitchd"));
        cmd.arg("--ctl").arg(&sock);
        if let Some(c) = config {
            let p = dir.path().join("vswitchd.toml");
            std::fs::write(&p, c).expect("write config");
            cmd.arg("--config").arg(&p);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        cmd.stdout(Stdio::null()).stderr(Stdio::from(
            std::fs::File::create(dir.path().join("vswitchd.log")).expect("log file"),
        ));
        let child = cmd.spawn().expect("spawn vswitchd");
        let d = Daemon {
            child: Some(child),
            dir,
            sock,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&d.sock).is_ok() {
                return d;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("vswitchd did not come up; log:\n{}", d.log());
    }

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

    /// Runs vswitchctl and returns stdout; panics with stderr on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let o = self.ctl_output(args);
        assert!(
            o.status.success(),
            "vswitchctl {args:?} failed: {}\nlog:\n{}",
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
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ctl(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad json from {args:?}: {e}: {out}"))
    }

    /// Sends SIGTERM and waits for exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
