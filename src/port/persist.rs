//! Persistent devices across a crash: which TAPs are ours, where they
//! live, and whether we remove them when we exit.
//!
//! TAP and internal devices are created persistent (as Open vSwitch does),
//! so a `kill -9` of the daemon never takes a VM's NIC away. That makes
//! "ours" something the kernel no longer tells us (every TAP is persistent
//! now, ours and libvirt's alike), and it makes "where it is" something we
//! must remember: the kernel side is usually moved into a VM's namespace.
//! So every TAP a port uses has a small record, `<dir>/<port>.tap`, in the
//! record directory (vswitchd puts it beside the control socket, in the run
//! directory, which lives exactly as long as the devices: until reboot). It
//! says where the device was last seen (the namespace's identity and its
//! `/run/netns` name, the ifindex there) and is rewritten when that changes.
//! The record says whether we created the device: a persistent TAP without
//! a record saying so is someone else's and is never removed by us (its
//! record only helps find it again after a move).
//!
//! The exit policy: a TAP we created is removed when its port is deleted,
//! and when the daemon exits unless [`set_keep_on_exit`] said to keep them
//! (`vswitchd --keep-taps`; with a configuration database, what exists is
//! the database's business).
//!
//! Both settings are process-wide (one daemon, one run directory), set once
//! at start; without a record directory (the library used on its own) no
//! record is written and a TAP we created is ours for this process only.

use super::sys::netns::NsId;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

static RECORD_DIR: parking_lot::RwLock<Option<PathBuf>> = parking_lot::RwLock::new(None);
static KEEP_ON_EXIT: AtomicBool = AtomicBool::new(false);

/// Where the records of the TAPs we create go (`None`: nowhere).
pub fn set_record_dir(dir: Option<PathBuf>) {
    *RECORD_DIR.write() = dir;
}

/// The record directory, if any.
pub fn record_dir() -> Option<PathBuf> {
    RECORD_DIR.read().clone()
}

/// Whether the TAPs we created stay when the daemon exits (they always go
/// with a `del-port`).
pub fn set_keep_on_exit(keep: bool) {
    KEEP_ON_EXIT.store(keep, Ordering::Relaxed);
}

/// See [`set_keep_on_exit`].
pub fn keep_on_exit() -> bool {
    KEEP_ON_EXIT.load(Ordering::Relaxed)
}

/// What we remember of a TAP a port was attached to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// We created it (else it is someone else's persistent TAP, recorded
    /// only so that it is found again where it was moved).
    pub ours: bool,
    /// The namespace the kernel side was last seen in.
    pub netns: Option<NsId>,
    /// Its `/run/netns` name, when it has one.
    pub netns_name: Option<String>,
    /// The device's ifindex there (it survives a rename inside the VM).
    pub ifindex: Option<u32>,
}

impl Record {
    /// The record as `key=value` lines.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# a TAP a vswitchd port uses\n");
        s += &format!("ours={}\n", self.ours);
        if let Some(id) = self.netns {
            s += &format!("netns_dev={}\nnetns_ino={}\n", id.dev, id.ino);
        }
        if let Some(n) = &self.netns_name {
            s += &format!("netns_name={n}\n");
        }
        if let Some(i) = self.ifindex {
            s += &format!("ifindex={i}\n");
        }
        s
    }

    /// Parses [`Record::to_text`]'s output; unknown keys are ignored, a
    /// value that does not parse leaves its field empty (the device is then
    /// looked for by name; a damaged `ours` reads as someone else's, the
    /// side that never deletes).
    pub fn parse(text: &str) -> Record {
        let mut dev = None;
        let mut ino = None;
        let mut r = Record::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim();
            match k.trim() {
                "netns_dev" => dev = v.parse().ok(),
                "netns_ino" => ino = v.parse().ok(),
                "netns_name" if !v.is_empty() && !v.contains('/') => {
                    r.netns_name = Some(v.to_string())
                }
                "ifindex" => r.ifindex = v.parse().ok(),
                "ours" => r.ours = v == "true",
                _ => {}
            }
        }
        if let (Some(dev), Some(ino)) = (dev, ino) {
            r.netns = Some(NsId { dev, ino });
        }
        r
    }
}

fn path_in(dir: &Path, port: &str) -> PathBuf {
    dir.join(format!("{port}.tap"))
}

/// The record of TAP `port`, when we created it (in this run or before a
/// crash).
pub fn load(port: &str) -> Option<Record> {
    let dir = record_dir()?;
    std::fs::read_to_string(path_in(&dir, port))
        .ok()
        .map(|t| Record::parse(&t))
}

/// Writes the record of TAP `port` atomically (temporary file, fsync,
/// rename): a crash leaves the old record or the new one, never half of
/// one. Nothing to do without a record directory.
pub fn store(port: &str, r: &Record) -> io::Result<()> {
    let Some(dir) = record_dir() else {
        return Ok(());
    };
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{port}.tap.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(r.to_text().as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path_in(&dir, port))
}

/// Forgets TAP `port` (it was removed).
pub fn remove(port: &str) {
    if let Some(dir) = record_dir() {
        let _ = std::fs::remove_file(path_in(&dir, port));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_bad_values() {
        let r = Record {
            ours: true,
            netns: Some(NsId {
                dev: 4,
                ino: 4_026_532_000,
            }),
            netns_name: Some("vm1".into()),
            ifindex: Some(7),
        };
        assert_eq!(Record::parse(&r.to_text()), r);
        assert_eq!(Record::parse(""), Record::default());
        let odd = Record::parse("netns_dev=x\nnetns_ino=5\nifindex=-1\nnetns_name=../etc\nzz");
        assert_eq!(odd, Record::default());
    }
}
