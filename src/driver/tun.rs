//! [`TunDevice`]: a TUN interface (layer 3, no packet-information header) through `tun-rs`,
//! as a [`PacketDevice`]. Linux first; other Unix systems as `tun-rs` supports them.
//!
//! Contract: [`TunDevice::open`] attaches to the TUN device of that name in the calling
//! thread's network namespace, or creates it, sets its MTU and brings the link up; it assigns no
//! address and adds no route (routing into the TUN is the host's business, see
//! `tests/netns/topology.sh`). The descriptor is non-blocking: `recv` returns `None` when no
//! packet is queued, and `wait` sleeps in `poll(2)` on it. Offload (virtio-net headers, GSO) is
//! off, so every read is exactly one IP packet of at most the MTU. A device created here is
//! removed by the kernel when it is dropped; one made persistent beforehand
//! (`ip tuntap add dev NAME mode tun`) stays.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use tun_rs::{DeviceBuilder, SyncDevice};

use super::readiness::FdReadiness;
use super::{PacketDevice, Waker};
use crate::node::Instant;

/// A TUN interface as a [`PacketDevice`] (see the module docs).
pub struct TunDevice {
    device: SyncDevice,
    name: String,
    mtu: usize,
    ready: FdReadiness,
}

impl TunDevice {
    /// Open the TUN device `name` (or create it), set its MTU to `mtu` and bring it up.
    pub fn open(name: &str, mtu: u16) -> io::Result<Self> {
        let device = DeviceBuilder::new()
            .name(name)
            .mtu(mtu)
            .enable(true)
            .build_sync()
            .map_err(|e| io::Error::new(e.kind(), format!("TUN device {name:?}: {e}")))?;
        Self::from_sync_device(device)
    }

    /// Use a TUN device already opened with `tun-rs` (layer 3, without packet information or
    /// offload); makes it non-blocking.
    pub fn from_sync_device(device: SyncDevice) -> io::Result<Self> {
        device.set_nonblocking(true)?;
        let name = device.name()?;
        let mtu = usize::from(device.mtu()?);
        Ok(TunDevice {
            device,
            name,
            mtu,
            ready: FdReadiness::new()?,
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying `tun-rs` device.
    pub fn get_ref(&self) -> &SyncDevice {
        &self.device
    }
}

impl std::fmt::Debug for TunDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunDevice")
            .field("name", &self.name)
            .field("mtu", &self.mtu)
            .finish_non_exhaustive()
    }
}

impl PacketDevice for TunDevice {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn send(&mut self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        let n = self.device.send(packet)?;
        if n == packet.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to the TUN device",
            ))
        }
    }

    fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.device.recv(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.ready.wait(self.device.as_fd(), timeout)
    }

    fn waker(&self) -> Waker {
        self.ready.waker()
    }
}
