//! [`PhyDevice`]: any smoltcp `phy::Device` with `Medium::Ip` as a [`PacketDevice`], so the
//! driver can run over smoltcp's devices and middleware (`Loopback`, `FaultInjector`,
//! `PcapWriter`, `Tracer`, `TunTapInterface`, ...).
//!
//! Contract: `send` takes a transmit token and copies the packet in (`WouldBlock` when the
//! device has no token); `recv` takes a receive token and copies the packet out (packets longer
//! than the buffer are dropped). smoltcp devices have no readiness signal of their own, so
//! `wait` first tries to pull one packet (kept for the next `recv`) and otherwise sleeps: on a
//! readiness descriptor if one was given ([`PhyDevice::with_readiness_fd`], Unix), else for at
//! most the poll interval (1 ms by default) — a periodic check, not a spin. A waker interrupts
//! either sleep.

use std::io;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use smoltcp::phy::{self, Medium, RxToken, TxToken};

use super::{PacketDevice, Waker};
use crate::node::Instant;

/// How [`PhyDevice::wait`](PacketDevice::wait) sleeps.
enum Sleeper {
    /// Sleep at most `interval` on the wake channel.
    Poll {
        interval: Duration,
        wake_tx: Sender<()>,
        wake_rx: Receiver<()>,
    },
    /// Sleep until the descriptor is readable or a waker fires.
    #[cfg(unix)]
    Fd {
        fd: std::os::fd::OwnedFd,
        ready: super::readiness::FdReadiness,
    },
}

/// A smoltcp `phy::Device` as a [`PacketDevice`] (see the module docs).
pub struct PhyDevice<D> {
    device: D,
    mtu: usize,
    /// A packet pulled by `wait`, handed out by the next `recv`.
    pending: Vec<u8>,
    has_pending: bool,
    /// Latest driver time seen, for the tokens `wait` takes.
    last_now: Instant,
    sleeper: Sleeper,
}

impl<D: phy::Device> PhyDevice<D> {
    /// Wrap `device`; `wait` checks it every millisecond. Fails unless the device's medium is
    /// `Medium::Ip` (frames without a link-layer header).
    pub fn new(device: D) -> io::Result<Self> {
        let (wake_tx, wake_rx) = bounded(1);
        Self::build(
            device,
            Sleeper::Poll {
                interval: Duration::from_millis(1),
                wake_tx,
                wake_rx,
            },
        )
    }

    /// Wrap `device` whose readiness is signalled by `fd` being readable (for instance a
    /// duplicate of a `TunTapInterface`'s descriptor): `wait` sleeps in `poll(2)` on it.
    #[cfg(unix)]
    pub fn with_readiness_fd(device: D, fd: std::os::fd::OwnedFd) -> io::Result<Self> {
        let ready = super::readiness::FdReadiness::new()?;
        Self::build(device, Sleeper::Fd { fd, ready })
    }

    fn build(device: D, sleeper: Sleeper) -> io::Result<Self> {
        let caps = device.capabilities();
        if !matches!(caps.medium, Medium::Ip) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "PhyDevice needs a device with Medium::Ip",
            ));
        }
        Ok(PhyDevice {
            device,
            mtu: caps.max_transmission_unit,
            pending: Vec::new(),
            has_pending: false,
            last_now: Instant::ZERO,
            sleeper,
        })
    }

    /// Set the longest sleep of a device without a readiness descriptor (default 1 ms).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        if let Sleeper::Poll { interval: i, .. } = &mut self.sleeper {
            *i = interval;
        }
        self
    }

    /// The wrapped device.
    pub fn get_ref(&self) -> &D {
        &self.device
    }

    /// The wrapped device, mutably.
    pub fn get_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Unwrap the device (a packet pulled by `wait` and not yet received is lost).
    pub fn into_inner(self) -> D {
        self.device
    }

    /// Pull one packet from the device into `pending`, if there is one.
    fn pull(&mut self) -> bool {
        if self.has_pending {
            return true;
        }
        if let Some((rx, _tx)) = self.device.receive(self.last_now) {
            let pending = &mut self.pending;
            rx.consume(|packet| {
                pending.clear();
                pending.extend_from_slice(packet);
            });
            self.has_pending = true;
        }
        self.has_pending
    }
}

impl<D: phy::Device> PacketDevice for PhyDevice<D> {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn send(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        self.last_now = self.last_now.max(now);
        if packet.len() > self.mtu {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        match self.device.transmit(now) {
            Some(tx) => {
                tx.consume(packet.len(), |buf| buf.copy_from_slice(packet));
                Ok(())
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.last_now = self.last_now.max(now);
        loop {
            if self.has_pending {
                self.has_pending = false;
                let len = self.pending.len();
                if len > buf.len() {
                    continue;
                }
                buf[..len].copy_from_slice(&self.pending);
                return Ok(Some(len));
            }
            let Some((rx, _tx)) = self.device.receive(now) else {
                return Ok(None);
            };
            let got = rx.consume(|packet| {
                if packet.len() > buf.len() {
                    None
                } else {
                    buf[..packet.len()].copy_from_slice(packet);
                    Some(packet.len())
                }
            });
            if got.is_some() {
                return Ok(got);
            }
        }
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.pull() {
            return Ok(());
        }
        match &mut self.sleeper {
            Sleeper::Poll {
                interval, wake_rx, ..
            } => {
                let t = timeout.map_or(*interval, |t| t.min(*interval));
                let _ = wake_rx.recv_timeout(t);
                while wake_rx.try_recv().is_ok() {}
                Ok(())
            }
            #[cfg(unix)]
            Sleeper::Fd { fd, ready } => {
                use std::os::fd::AsFd;
                ready.wait(fd.as_fd(), timeout)
            }
        }
    }

    fn waker(&self) -> Waker {
        match &self.sleeper {
            Sleeper::Poll { wake_tx, .. } => {
                let wake_tx = wake_tx.clone();
                Waker::new(move || {
                    let _ = wake_tx.try_send(());
                })
            }
            #[cfg(unix)]
            Sleeper::Fd { ready, .. } => ready.waker(),
        }
    }
}

impl<D> std::fmt::Debug for PhyDevice<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhyDevice")
            .field("mtu", &self.mtu)
            .field("has_pending", &self.has_pending)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::Loopback;

    #[test]
    fn loopback_round_trip_and_wait() {
        let mut dev = PhyDevice::new(Loopback::new(Medium::Ip)).unwrap();
        let now = Instant::from_millis(1);
        let mut buf = [0u8; 64];
        assert_eq!(dev.recv(now, &mut buf).unwrap(), None);
        dev.send(now, b"abc").unwrap();
        dev.send(now, b"defg").unwrap();
        // wait returns at once for a queued packet and keeps it for recv.
        let t0 = std::time::Instant::now();
        dev.wait(Some(Duration::from_secs(5))).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert_eq!(dev.recv(now, &mut buf).unwrap(), Some(3));
        assert_eq!(&buf[..3], b"abc");
        // Too long for the buffer: dropped.
        assert_eq!(dev.recv(now, &mut buf[..2]).unwrap(), None);
        // Idle: wait sleeps about the poll interval, not the whole timeout, and is wakeable.
        let dev_waker = dev.waker();
        dev_waker.wake();
        let t0 = std::time::Instant::now();
        dev.wait(Some(Duration::from_secs(5))).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
