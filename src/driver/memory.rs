//! An in-memory point-to-point link: two connected [`MemoryDevice`]s, for tests and demos
//! without root.
//!
//! Contract: what one end sends, the other receives, in order, unchanged, through a bounded
//! queue of `capacity` packets per direction. A send to a full queue fails with `WouldBlock`
//! (tail drop), a send over the MTU with `InvalidInput`, a send after the peer was dropped with
//! `NotConnected`; the driver counts these as lost packets. Once the peer is gone and its
//! queued packets are read, `recv` returns `None` forever and `wait` no longer wakes for it.
//! `wait` sleeps on a crossbeam `Select` over the receive queue and the waker channel, so it
//! never spins.

use std::io;
use std::time::Duration;

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, TrySendError, bounded};

use super::{PacketDevice, Waker};
use crate::node::Instant;

/// One end of an in-memory link (see the module docs). Make a pair with [`MemoryDevice::pair`].
#[derive(Debug)]
pub struct MemoryDevice {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
    mtu: usize,
    peer_gone: bool,
}

impl MemoryDevice {
    /// Two connected ends with the given MTU and a queue of `capacity` packets each way.
    pub fn pair(mtu: usize, capacity: usize) -> (MemoryDevice, MemoryDevice) {
        let (a_tx, b_rx) = bounded(capacity);
        let (b_tx, a_rx) = bounded(capacity);
        (Self::end(a_tx, a_rx, mtu), Self::end(b_tx, b_rx, mtu))
    }

    fn end(tx: Sender<Vec<u8>>, rx: Receiver<Vec<u8>>, mtu: usize) -> MemoryDevice {
        let (wake_tx, wake_rx) = bounded(1);
        MemoryDevice {
            tx,
            rx,
            wake_tx,
            wake_rx,
            mtu,
            peer_gone: false,
        }
    }

    /// Packets waiting to be received at this end.
    pub fn queued(&self) -> usize {
        self.rx.len()
    }
}

impl PacketDevice for MemoryDevice {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn send(&mut self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        if packet.len() > self.mtu {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("packet of {} bytes over the MTU {}", packet.len(), self.mtu),
            ));
        }
        match self.tx.try_send(packet.to_vec()) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(io::ErrorKind::WouldBlock.into()),
            Err(TrySendError::Disconnected(_)) => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match self.rx.try_recv() {
                Ok(packet) if packet.len() > buf.len() => continue,
                Ok(packet) => {
                    buf[..packet.len()].copy_from_slice(&packet);
                    return Ok(Some(packet.len()));
                }
                Err(TryRecvError::Empty) => return Ok(None),
                Err(TryRecvError::Disconnected) => {
                    self.peer_gone = true;
                    return Ok(None);
                }
            }
        }
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let mut select = Select::new();
        if !self.peer_gone {
            select.recv(&self.rx);
        }
        select.recv(&self.wake_rx);
        match timeout {
            Some(t) => {
                let _ = select.ready_timeout(t);
            }
            None => {
                select.ready();
            }
        }
        // Consume the wake-up (the driver then looks at its queue).
        while self.wake_rx.try_recv().is_ok() {}
        Ok(())
    }

    fn waker(&self) -> Waker {
        let wake_tx = self.wake_tx.clone();
        Waker::new(move || {
            // Full means a wake-up is already pending.
            let _ = wake_tx.try_send(());
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_cross_in_order_and_losses_are_reported() {
        let now = Instant::ZERO;
        let (mut a, mut b) = MemoryDevice::pair(100, 2);
        a.send(now, b"one").unwrap();
        a.send(now, b"two").unwrap();
        assert_eq!(
            a.send(now, b"three").unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(
            a.send(now, &[0; 101]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let mut buf = [0u8; 100];
        assert_eq!(b.recv(now, &mut buf).unwrap(), Some(3));
        assert_eq!(&buf[..3], b"one");
        assert_eq!(b.recv(now, &mut buf).unwrap(), Some(3));
        assert_eq!(&buf[..3], b"two");
        assert_eq!(b.recv(now, &mut buf).unwrap(), None);
        drop(a);
        assert_eq!(b.recv(now, &mut buf).unwrap(), None);
        assert_eq!(
            b.send(now, b"x").unwrap_err().kind(),
            io::ErrorKind::NotConnected
        );
        // A gone peer does not make wait spin; the timeout still applies.
        let t0 = std::time::Instant::now();
        b.wait(Some(Duration::from_millis(20))).unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn wait_wakes_on_packet_and_waker() {
        let (mut a, mut b) = MemoryDevice::pair(100, 8);
        let w = b.waker();
        w.wake();
        w.wake();
        let t0 = std::time::Instant::now();
        b.wait(Some(Duration::from_secs(5))).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(2));
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            a.send(Instant::ZERO, b"hi").unwrap();
            a
        });
        b.wait(None).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(b.recv(Instant::ZERO, &mut buf).unwrap(), Some(2));
        t.join().unwrap();
    }
}
