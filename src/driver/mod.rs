//! The driver: the only layer that touches the OS. It owns a packet device and the clock, and
//! runs a single-threaded event loop around a sans-IO [`Node`](crate::node::Node).
//!
//! Contract:
//!
//! - A [`PacketDevice`] moves whole IP packets (IPv4 or IPv6, no link-layer header): `send` one,
//!   `recv` one without blocking, and `wait` until a packet may be ready, its [`Waker`] fires, or a
//!   timeout passes. Spurious wake-ups are allowed; missed ones are not. Devices: [`TunDevice`]
//!   (feature `tun`, Unix), the in-memory [`MemoryDevice`] pair for tests, and [`PhyDevice`] over
//!   any smoltcp `phy::Device` with `Medium::Ip`.
//! - [`Driver`] owns one node and one device. Each iteration runs queued [commands](Command),
//!   receives a batch of packets into `handle_packet`, calls `handle_timeout` when the node's
//!   timer is due, drains `poll_transmit` into the device, then sleeps until the node's next
//!   timer, the next packet, or a wake-up from a [`DriverHandle`]. It never busy-waits and never
//!   lets time go backwards: node time is [`Clock::now`], microseconds since the driver started.
//! - Other threads reach the node only through a [`DriverHandle`]: closures queued over a
//!   crossbeam channel and run on the loop thread between iterations, and `stop`.
//! - With a [`PcapWriter`] attached, every packet in and out is recorded (LINKTYPE_RAW).
//!
//! Readiness waiting uses `poll(2)` from the `nix` crate: it is already a dependency of `tun-rs`
//! on Unix (so it adds no crate to the tree), its `poll` is a safe wrapper over borrowed file
//! descriptors (this crate forbids `unsafe`), and level-triggered `poll` suits a loop that reads
//! packets in bounded batches (an edge-triggered reactor such as `mio` would require draining
//! the device to `WouldBlock` each time). Cross-thread wake-ups go through a self-pipe
//! (`std::io::pipe`) polled beside the device.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::node::Instant;

mod event_loop;
mod memory;
mod pcap;
mod phy;
#[cfg(unix)]
mod readiness;
#[cfg(all(feature = "tun", unix))]
mod tun;

pub use event_loop::{Command, Driver, DriverHandle, DriverStats, DriverStopped, DriverThread};
pub use memory::MemoryDevice;
pub use pcap::PcapWriter;
pub use phy::PhyDevice;
#[cfg(all(feature = "tun", unix))]
pub use tun::{TunDevice, TunOffload};

/// One packet from [`PacketDevice::recv_packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxPacket {
    /// Its length at the start of the buffer.
    pub len: usize,
    /// The device vouches for its checksums (they need not be, and may not be, verified).
    pub checksum_trusted: bool,
}

/// A device that moves whole IP packets: a TUN interface, an in-memory link, a smoltcp device.
///
/// The driver calls it from one thread only. `now` is the driver's clock, for devices that
/// timestamp or shape traffic; most ignore it.
pub trait PacketDevice {
    /// The largest packet this device sends or receives, in bytes (the IP MTU).
    fn mtu(&self) -> usize;

    /// Send one IP packet. An error means this packet was not sent (full queue, link down,
    /// packet over the MTU); the driver counts it and carries on, as a lossy link would.
    fn send(&mut self, now: Instant, packet: &[u8]) -> io::Result<()>;

    /// Push out packets that `send` queued (a batching device, such as a [`TunDevice`] with
    /// offload). The driver calls it after each burst of sends; devices that send at once need
    /// not implement it. An error means the queued packets were lost, as on a lossy link.
    fn flush(&mut self, now: Instant) -> io::Result<()> {
        let _ = now;
        Ok(())
    }

    /// Receive one IP packet into `buf` without blocking: `Ok(Some(len))` for a packet,
    /// `Ok(None)` when none is ready. An error means the device is unusable and stops the driver.
    /// A packet longer than `buf` is dropped, or truncated where the OS does so.
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>>;

    /// The most TCP segments the device takes as one super segment in
    /// [`send_segments`](PacketDevice::send_segments) (segmentation offload); 1, the default,
    /// when it takes none.
    fn max_segments(&self) -> usize {
        1
    }

    /// Send a TCP super segment as [`Node::poll_transmit_segments`](crate::node::Node) made
    /// it: cut its payload into segments of `segment_size` bytes, each behind a copy of the
    /// headers, and complete each one's partial TCP checksum. Called only when
    /// [`max_segments`](PacketDevice::max_segments) is above 1; the default refuses.
    fn send_segments(
        &mut self,
        now: Instant,
        packet: &[u8],
        segment_size: usize,
    ) -> io::Result<()> {
        let _ = (now, packet, segment_size);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this device has no segmentation offload",
        ))
    }

    /// [`recv`](PacketDevice::recv), also telling whether the device vouches for the packet's
    /// checksums (a packet the local kernel built, which may be a super segment larger than the
    /// MTU: see [`Node::handle_packet_trusted`](crate::node::Node)). The default trusts none.
    fn recv_packet(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<RxPacket>> {
        Ok(self.recv(now, buf)?.map(|len| RxPacket {
            len,
            checksum_trusted: false,
        }))
    }

    /// Block until a packet may be ready to [`recv`](PacketDevice::recv), the device's
    /// [`Waker`] fires, or `timeout` passes (`None`: no timeout). May return early; must not
    /// sleep through a packet or a wake-up that arrived before or during the call.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// A handle that makes a current or future [`wait`](PacketDevice::wait) return, from any
    /// thread.
    fn waker(&self) -> Waker;
}

impl<T: PacketDevice + ?Sized> PacketDevice for Box<T> {
    fn mtu(&self) -> usize {
        (**self).mtu()
    }
    fn send(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        (**self).send(now, packet)
    }
    fn flush(&mut self, now: Instant) -> io::Result<()> {
        (**self).flush(now)
    }
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        (**self).recv(now, buf)
    }
    fn max_segments(&self) -> usize {
        (**self).max_segments()
    }
    fn send_segments(
        &mut self,
        now: Instant,
        packet: &[u8],
        segment_size: usize,
    ) -> io::Result<()> {
        (**self).send_segments(now, packet, segment_size)
    }
    fn recv_packet(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<RxPacket>> {
        (**self).recv_packet(now, buf)
    }
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).wait(timeout)
    }
    fn waker(&self) -> Waker {
        (**self).waker()
    }
}

/// Interrupts a device's [`PacketDevice::wait`] from another thread. Cheap to clone; waking
/// twice before the waiter runs is the same as waking once.
#[derive(Clone)]
pub struct Waker(Arc<dyn Fn() + Send + Sync>);

impl Waker {
    /// A waker that calls `wake` each time it is woken.
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Waker(Arc::new(wake))
    }

    /// Make the device's current or next `wait` return.
    pub fn wake(&self) {
        (self.0)()
    }
}

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Waker")
    }
}

/// The driver's clock: node time is the monotonic time elapsed since the clock was made, as a
/// `smoltcp::time::Instant` (microseconds). It also maps node time to wall-clock time for pcap.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: std::time::Instant,
    wall_start: SystemTime,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Clock {
            start: std::time::Instant::now(),
            wall_start: SystemTime::now(),
        }
    }

    /// Node time now. Never goes backwards.
    pub fn now(&self) -> Instant {
        self.node_time(std::time::Instant::now())
    }

    /// The node time of a `std` instant (zero for instants before the clock's start).
    pub fn node_time(&self, t: std::time::Instant) -> Instant {
        let micros = t.saturating_duration_since(self.start).as_micros();
        Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// The `std` instant of a node time.
    pub fn std_time(&self, t: Instant) -> std::time::Instant {
        self.start + Duration::from_micros(t.total_micros().max(0).unsigned_abs())
    }

    /// The wall-clock time of a node time (for capture timestamps).
    pub fn wall_time(&self, t: Instant) -> SystemTime {
        self.wall_start + Duration::from_micros(t.total_micros().max(0).unsigned_abs())
    }

    /// How long from `now` until `deadline` (zero if it has passed).
    pub fn until(now: Instant, deadline: Instant) -> Duration {
        let micros = deadline.total_micros().saturating_sub(now.total_micros());
        Duration::from_micros(micros.max(0).unsigned_abs())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_round_trips() {
        let clock = Clock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        let t = Instant::from_millis(1500);
        assert_eq!(clock.node_time(clock.std_time(t)), t);
        assert_eq!(
            Clock::until(Instant::from_millis(10), Instant::from_millis(4)),
            Duration::ZERO
        );
        assert_eq!(
            Clock::until(Instant::from_millis(4), Instant::from_millis(10)),
            Duration::from_millis(6)
        );
    }

    #[test]
    fn waker_calls_its_closure() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        let w = Waker::new(move || {
            m.fetch_add(1, Ordering::SeqCst);
        });
        w.clone().wake();
        w.wake();
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }
}
