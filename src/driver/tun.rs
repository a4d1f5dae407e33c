//! [`TunDevice`]: a TUN interface (layer 3, no packet-information header) through `tun-rs`,
//! as a [`PacketDevice`]. Linux first; other Unix systems as `tun-rs` supports them.
//!
//! Contract: [`TunDevice::open`] attaches to the TUN device of that name in the calling
//! thread's network namespace, or creates it, sets its MTU and brings the link up; it assigns no
//! address and adds no route (routing into the TUN is the host's business, see
//! `tests/netns/topology.sh`). The descriptor is non-blocking: `recv` returns `None` when no
//! packet is queued, and `wait` sleeps in `poll(2)` on it. A device created here is removed by
//! the kernel when it is dropped; one made persistent beforehand (`ip tuntap add dev NAME mode
//! tun`) stays.
//!
//! Two modes, chosen at open ([`TunOffload`]):
//!
//! - **Plain**: every read and every write is exactly one IP packet of at most the MTU: one
//!   system call per packet each way.
//! - **Offload** (Linux, `IFF_VNET_HDR` with TCP segmentation offload): packets cross the TUN
//!   boundary in batches. On the way out, `send` only queues the packet; [`PacketDevice::flush`]
//!   (the driver calls it after each burst, and `send` when [`IDEAL_BATCH_SIZE`] are queued)
//!   hands the batch to `tun-rs`, which coalesces consecutive segments of one TCP flow whose
//!   headers match (same options: an MPTCP mapping repeated on each of its segments, the same
//!   timestamps) into one large segment the kernel splits again (GSO), so a 64 KiB burst is
//!   one `write`. On the way in, one `read` may return a large segment the kernel built (GRO
//!   or a local sender's TSO); `tun-rs` cuts it back into MTU-sized packets with their own
//!   checksums, and `recv` hands them out one by one. The stack above sees ordinary MTU-sized
//!   packets in both directions: offload changes the number of system calls, not the
//!   protocol. Each segment still carries its own complete options, as Linux's own TSO does.
//!
//! Memory: offload keeps one 64 KiB read buffer, [`IDEAL_BATCH_SIZE`] receive buffers of the
//! MTU, and [`IDEAL_BATCH_SIZE`] send buffers of 64 KiB each (reserved on first use: `tun-rs`
//! coalesces only into a buffer with room for the whole segment), about 8.5 MiB of address
//! space of which only the pages written are resident; all are reused. `tun-rs` itself copies
//! each outgoing packet once while coalescing.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use tun_rs::{DeviceBuilder, SyncDevice};

use super::readiness::FdReadiness;
use super::{PacketDevice, Waker};
use crate::node::Instant;

/// Packets queued (or handed out) per batch in offload mode: `tun-rs`'s recommended size.
#[cfg(target_os = "linux")]
pub const IDEAL_BATCH_SIZE: usize = tun_rs::IDEAL_BATCH_SIZE;
/// Packets queued (or handed out) per batch in offload mode (unused off Linux).
#[cfg(not(target_os = "linux"))]
pub const IDEAL_BATCH_SIZE: usize = 128;

/// The largest read from an offloading TUN: a virtio-net header and a 64 KiB IP packet.
#[cfg(target_os = "linux")]
const OFFLOAD_READ_LEN: usize = tun_rs::VIRTIO_NET_HDR_LEN + 65_535;

/// The capacity of each offload send buffer: what `tun-rs` needs to coalesce a 64 KiB segment
/// into it (room for two virtio-net headers and the segment).
#[cfg(target_os = "linux")]
const OFFLOAD_TX_CAPACITY: usize = 2 * tun_rs::VIRTIO_NET_HDR_LEN + 65_535;

/// Whether a [`TunDevice`] uses TCP segmentation offload (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TunOffload {
    /// One packet per system call.
    #[default]
    Off,
    /// Batches through `IFF_VNET_HDR` with TSO/GSO/GRO; an error where the OS cannot.
    On,
    /// Offload where the OS supports it (Linux), plain elsewhere or when turning it on fails.
    Auto,
}

/// A TUN interface as a [`PacketDevice`] (see the module docs).
pub struct TunDevice {
    device: SyncDevice,
    name: String,
    mtu: usize,
    ready: FdReadiness,
    #[cfg(target_os = "linux")]
    batch: Option<Box<Batch>>,
}

/// The buffers of offload mode (boxed: only offloading devices pay for them).
#[cfg(target_os = "linux")]
struct Batch {
    /// Outgoing packets, each behind room for its virtio-net header; `tx_len` are queued.
    tx: Vec<Vec<u8>>,
    tx_len: usize,
    gro: tun_rs::GROTable,
    /// The last read as the kernel gave it (virtio-net header + up to 64 KiB).
    rx_raw: Vec<u8>,
    /// That read cut into packets: `rx_sizes[i]` bytes of `rx[i]`, handed out from `rx_next`.
    rx: Vec<Vec<u8>>,
    rx_sizes: Vec<usize>,
    rx_count: usize,
    rx_next: usize,
}

impl TunDevice {
    /// Open the TUN device `name` (or create it), set its MTU to `mtu` and bring it up, one
    /// packet per system call.
    pub fn open(name: &str, mtu: u16) -> io::Result<Self> {
        Self::open_with(name, mtu, TunOffload::Off)
    }

    /// [`open`](TunDevice::open) with the offload mode of the caller's choice (module docs).
    pub fn open_with(name: &str, mtu: u16, offload: TunOffload) -> io::Result<Self> {
        let build = |offload: bool| {
            let builder = DeviceBuilder::new().name(name).mtu(mtu).enable(true);
            #[cfg(target_os = "linux")]
            let builder = builder.offload(offload);
            #[cfg(not(target_os = "linux"))]
            let _ = offload;
            builder
                .build_sync()
                .map_err(|e| io::Error::new(e.kind(), format!("TUN device {name:?}: {e}")))
        };
        let want = match offload {
            TunOffload::Off => false,
            TunOffload::On => {
                if !cfg!(target_os = "linux") {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "TUN offload needs Linux (IFF_VNET_HDR)",
                    ));
                }
                true
            }
            TunOffload::Auto => cfg!(target_os = "linux"),
        };
        let device = match build(want) {
            Ok(device) => device,
            Err(_) if want && offload == TunOffload::Auto => build(false)?,
            Err(e) => return Err(e),
        };
        Self::from_sync_device(device)
    }

    /// Use a TUN device already opened with `tun-rs` (layer 3, without packet information);
    /// makes it non-blocking. A device opened with offload (`tcp_gso()`) runs in offload mode.
    pub fn from_sync_device(device: SyncDevice) -> io::Result<Self> {
        device.set_nonblocking(true)?;
        let name = device.name()?;
        let mtu = usize::from(device.mtu()?);
        #[cfg(target_os = "linux")]
        let batch = device.tcp_gso().then(|| {
            Box::new(Batch {
                tx: (0..IDEAL_BATCH_SIZE).map(|_| Vec::new()).collect(),
                tx_len: 0,
                gro: tun_rs::GROTable::default(),
                rx_raw: vec![0; OFFLOAD_READ_LEN],
                rx: (0..IDEAL_BATCH_SIZE).map(|_| vec![0; mtu]).collect(),
                rx_sizes: vec![0; IDEAL_BATCH_SIZE],
                rx_count: 0,
                rx_next: 0,
            })
        });
        Ok(TunDevice {
            device,
            name,
            mtu,
            ready: FdReadiness::new()?,
            #[cfg(target_os = "linux")]
            batch,
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the device runs in offload mode (batches through `IFF_VNET_HDR`).
    pub fn offload(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            self.batch.is_some()
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
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
            .field("offload", &self.offload())
            .finish_non_exhaustive()
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl PacketDevice for TunDevice {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn send(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(batch) = self.batch.as_mut() {
            if packet.len() > self.mtu {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "packet over the TUN MTU",
                ));
            }
            let buf = &mut batch.tx[batch.tx_len];
            if buf.capacity() < OFFLOAD_TX_CAPACITY {
                // Once per buffer: tun-rs coalesces only into a buffer that already has room
                // for the whole 64 KiB segment (it never reallocates).
                buf.reserve_exact(OFFLOAD_TX_CAPACITY);
            }
            buf.clear();
            buf.resize(tun_rs::VIRTIO_NET_HDR_LEN, 0);
            buf.extend_from_slice(packet);
            batch.tx_len += 1;
            if batch.tx_len == batch.tx.len() {
                return self.flush(now);
            }
            return Ok(());
        }
        let _ = now;
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

    fn flush(&mut self, _now: Instant) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(batch) = self.batch.as_mut() {
            if batch.tx_len == 0 {
                return Ok(());
            }
            let queued = batch.tx_len;
            batch.tx_len = 0;
            let result = self.device.send_multiple(
                &mut batch.gro,
                &mut batch.tx[..queued],
                tun_rs::VIRTIO_NET_HDR_LEN,
            );
            return result.map(|_| ());
        }
        Ok(())
    }

    fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        #[cfg(target_os = "linux")]
        if let Some(batch) = self.batch.as_mut() {
            if batch.rx_next == batch.rx_count {
                batch.rx_next = 0;
                batch.rx_count = 0;
                match self.device.recv_multiple(
                    &mut batch.rx_raw,
                    &mut batch.rx,
                    &mut batch.rx_sizes,
                    0,
                ) {
                    Ok(n) => batch.rx_count = n,
                    Err(e) if would_block(&e) => return Ok(None),
                    // A read the offload layer could not cut up (a malformed virtio header, a
                    // GSO type it does not know): that packet is lost, the device lives on.
                    Err(e) if e.kind() == io::ErrorKind::Other => return Ok(None),
                    Err(e) => return Err(e),
                }
                if batch.rx_count == 0 {
                    return Ok(None);
                }
            }
            let i = batch.rx_next;
            batch.rx_next += 1;
            let len = batch.rx_sizes[i].min(buf.len());
            buf[..len].copy_from_slice(&batch.rx[i][..len]);
            return Ok(Some(len));
        }
        match self.device.recv(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if would_block(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if self.batch.as_ref().is_some_and(|b| b.rx_next < b.rx_count) {
            // Packets of the last read are still waiting: do not sleep on the descriptor.
            return Ok(());
        }
        self.ready.wait(self.device.as_fd(), timeout)
    }

    fn waker(&self) -> Waker {
        self.ready.waker()
    }
}
