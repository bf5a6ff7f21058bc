//! `type=internal`: a port for the host's own network stack, as Open
//! vSwitch's internal ports are.
//!
//! It is a TAP that stays in our netns: the host configures addresses on
//! its kernel side and its traffic enters the bridge through our fd. Same
//! machinery as [`TapPort`] (vnet_hdr offloads, down/up recovery, removal
//! on drop); only the port type differs, so `show` says what it is for.

use super::tap::{TapConfig, TapPort};
use super::{Error, LinkState, Port, PortDrop, PortStats};
use crate::packet::{Batch, PacketPool};
use std::os::fd::RawFd;

/// An internal port.
#[derive(Debug)]
pub struct InternalPort {
    tap: TapPort,
}

impl InternalPort {
    /// Creates the internal port's device (a TAP named `cfg.name`).
    pub fn open(cfg: TapConfig) -> Result<InternalPort, Error> {
        Ok(InternalPort {
            tap: TapPort::open(cfg)?,
        })
    }

    /// Takes over the device's fd from the previous vswitchd (see
    /// [`TapPort::adopt`]).
    pub fn adopt(cfg: TapConfig, fd: std::os::fd::OwnedFd) -> Result<InternalPort, Error> {
        Ok(InternalPort {
            tap: TapPort::adopt(cfg, fd)?,
        })
    }
}

impl Port for InternalPort {
    fn name(&self) -> &str {
        self.tap.name()
    }

    fn kind(&self) -> &'static str {
        "internal"
    }

    fn recv_batch(&mut self, pool: &mut PacketPool, batch: &mut Batch) -> Result<usize, Error> {
        self.tap.recv_batch(pool, batch)
    }

    fn send_batch(&mut self, batch: &mut Batch, pool: &mut PacketPool) -> Result<usize, Error> {
        self.tap.send_batch(batch, pool)
    }

    fn stats(&self) -> PortStats {
        self.tap.stats()
    }

    fn drops(&self) -> Vec<(PortDrop, u64)> {
        self.tap.drops()
    }

    fn mtu(&self) -> u32 {
        self.tap.mtu()
    }

    fn link_state(&self) -> LinkState {
        self.tap.link_state()
    }

    fn steering(&self) -> Option<super::steering::Steered> {
        self.tap.steering()
    }

    fn poll_fd(&self) -> Option<RawFd> {
        self.tap.poll_fd()
    }

    fn rx_pending(&self) -> bool {
        self.tap.rx_pending()
    }

    fn housekeeping(&mut self) {
        self.tap.housekeeping()
    }

    fn link_downs(&self) -> u64 {
        self.tap.link_downs()
    }

    fn handover_fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        self.tap.handover_fds()
    }

    fn open_queue(&self) -> Result<Option<Box<dyn Port>>, Error> {
        Ok(self
            .tap
            .queue()?
            .map(|tap| Box::new(InternalPort { tap }) as Box<dyn Port>))
    }

    fn on_delete(&mut self) {
        self.tap.on_delete()
    }
}
