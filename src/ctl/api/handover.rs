//! The API's side of an upgrade (see [`crate::ctl::handover`] for the
//! exchange between the two processes): the old process hands out copies
//! of its devices' fds, pauses its datapaths and exports its connection
//! tables; the new one adopts the fds as its ports open, imports the
//! tables and only then starts moving packets.

use super::{Api, Error};
use crate::conntrack::ImportReport;
use crate::datapath::worker::HandoverPort;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

impl Api {
    /// Copies of every port's handover fds, by bridge.
    pub fn handover_fds(&self) -> Vec<(String, HandoverPort)> {
        let bridges = self.bridges.lock();
        let mut out = Vec::new();
        for (name, b) in bridges.iter() {
            let got = b.workers.handover_fds().unwrap_or_default();
            out.extend(got.into_iter().map(|p| (name.clone(), p)));
        }
        out
    }

    /// Closes every bridge's OpenFlow listener (removing its `BR.mgmt`),
    /// so the new process can listen there; returns where they were, for
    /// [`Api::serve_openflow`] should the handover fail. Connections to
    /// controllers stay until this process exits.
    pub fn release_openflow(&self) -> Option<(std::path::PathBuf, tokio::runtime::Handle)> {
        let site = self.openflow.lock().take()?;
        for b in self.bridges.lock().values_mut() {
            b.endpoint = None;
        }
        Some((site.dir, site.rt))
    }

    /// Stops (or resumes) every bridge's packet movement; returns once
    /// each datapath thread is in that state. While paused, commands are
    /// still served and packets wait in the devices' queues.
    pub fn pause(&self, on: bool) {
        let bridges = self.bridges.lock();
        for b in bridges.values() {
            b.workers.pause(on);
        }
        self.start_paused.store(on, Relaxed);
    }

    /// Closes the device queues of every bridge's workers but the first
    /// (an upgrade's old process, paused: the new one's queues take the
    /// traffic they would have held until this process exits).
    pub fn release_extra_queues(&self) {
        let bridges = self.bridges.lock();
        for b in bridges.values() {
            b.workers.release_extra_queues();
        }
    }

    /// Every bridge's connection table in the snapshot format.
    pub fn export_conntrack(&self, now: Instant) -> Vec<(String, Vec<u8>)> {
        let bridges = self.bridges.lock();
        bridges
            .iter()
            .map(|(name, b)| (name.clone(), b.ct.export(now)))
            .collect()
    }

    /// Adds a connection table exported by the previous process to
    /// bridge `bridge`.
    pub fn import_conntrack(
        &self,
        bridge: &str,
        bytes: &[u8],
        now: Instant,
    ) -> Result<ImportReport, Error> {
        let ct = self.with_bridge(bridge, |b| Ok(b.ct.clone()))?;
        Ok(ct.import(bytes, now)?)
    }

    /// The fds the previous process handed over, by port name: a port of
    /// that name opened from now on takes them over instead of opening
    /// its device, and new bridges start paused until [`Api::pause`]
    /// (false).
    pub fn adopt_fds(&self, fds: HashMap<String, Vec<OwnedFd>>) {
        *self.adopted.lock() = fds;
        self.start_paused.store(true, Relaxed);
    }

    /// Names of handed-over ports no port took (the new configuration no
    /// longer has them); their fds are closed now.
    pub fn drop_unadopted(&self) -> Vec<String> {
        let mut left: Vec<String> = self.adopted.lock().drain().map(|(k, _)| k).collect();
        left.sort();
        left
    }

    /// Takes the handed-over fds of port `name`, if any.
    pub(super) fn take_adopted(&self, name: &str) -> Option<Vec<OwnedFd>> {
        self.adopted.lock().remove(name)
    }
}
