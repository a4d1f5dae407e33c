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
//! - **Offload** (Linux, `IFF_VNET_HDR` with TCP segmentation offload): every read and write
//!   carries a 10-byte virtio-net header, and TCP segments may be *super segments* of up to
//!   64 KiB. On the way out, the stack writes one super segment per `write`
//!   ([`PacketDevice::send_segments`]: the header asks the kernel to cut it at the MSS and to
//!   complete each segment's checksum, as for its own TSO); each segment carries the same
//!   headers and options, so one MPTCP mapping covers them all, as with Linux's own TSO. On
//!   the way in, one `read` may return a super segment the kernel merged (GRO) or a packet
//!   with a partial checksum, whose checksums the kernel vouches for: it goes to the stack
//!   whole ([`PacketDevice::recv_packet`]), unverified. The header travels in its own
//!   buffer (`writev`/`readv`), so no packet is copied in this layer.
//!
//! Memory: nothing beyond the device in either mode.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use tun_rs::{DeviceBuilder, SyncDevice};

use super::readiness::FdReadiness;
use super::{PacketDevice, RxPacket, Waker};
use crate::node::Instant;

/// The virtio-net header before every packet of an offloading TUN (`struct virtio_net_hdr`,
/// without the `num_buffers` of the mergeable variant), in the host's byte order (Linux's
/// legacy virtio layout, which a TUN uses unless `TUNSETVNETLE`/`BE` say otherwise).
#[cfg(target_os = "linux")]
mod vnet {
    /// Its length.
    pub const LEN: usize = 10;
    /// `flags`: `csum_start` and `csum_offset` say where to complete a partial checksum.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// `flags`: the checksum was verified (`CHECKSUM_UNNECESSARY`).
    pub const F_DATA_VALID: u8 = 2;
    /// `gso_type`: a TCP over IPv4 super segment.
    pub const GSO_TCPV4: u8 = 1;
    /// `gso_type`: a TCP over IPv6 super segment.
    pub const GSO_TCPV6: u8 = 4;
    /// Offsets of the fields.
    pub const FLAGS_AT: usize = 0;
    pub const GSO_TYPE_AT: usize = 1;
    pub const HDR_LEN_AT: usize = 2;
    pub const GSO_SIZE_AT: usize = 4;
    pub const CSUM_START_AT: usize = 6;
    pub const CSUM_OFFSET_AT: usize = 8;
    /// Where the checksum field is in a TCP header.
    pub const TCP_CHECKSUM_OFFSET: u16 = 16;
}

/// The most segments one super segment may hold (the kernel's `GSO_MAX_SEGS` is 65535; the
/// 64 KiB IP length bounds it first).
#[cfg(target_os = "linux")]
const MAX_SEGMENTS: usize = 64;

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
    /// Offload mode: a virtio-net header on every packet.
    vnet: bool,
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
        let vnet = device.tcp_gso();
        #[cfg(not(target_os = "linux"))]
        let vnet = false;
        Ok(TunDevice {
            device,
            name,
            mtu,
            ready: FdReadiness::new()?,
            vnet,
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the device runs in offload mode (`IFF_VNET_HDR`: super segments both ways).
    pub fn offload(&self) -> bool {
        self.vnet
    }

    /// Write one packet behind `header` (offload mode).
    #[cfg(target_os = "linux")]
    fn write_vnet(&mut self, header: &[u8; vnet::LEN], packet: &[u8]) -> io::Result<()> {
        let bufs = [io::IoSlice::new(header), io::IoSlice::new(packet)];
        let n = self.device.send_vectored(&bufs)?;
        if n == vnet::LEN + packet.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to the TUN device",
            ))
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
        let _ = now;
        if packet.len() > self.mtu {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "packet over the TUN MTU",
            ));
        }
        #[cfg(target_os = "linux")]
        if self.vnet {
            // An ordinary packet: no segmentation, its checksums complete.
            return self.write_vnet(&[0; vnet::LEN], packet);
        }
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

    fn max_segments(&self) -> usize {
        #[cfg(target_os = "linux")]
        if self.vnet {
            return MAX_SEGMENTS;
        }
        1
    }

    fn send_segments(
        &mut self,
        now: Instant,
        packet: &[u8],
        segment_size: usize,
    ) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if self.vnet {
            let _ = now;
            let header = super_segment_header(packet, segment_size, self.mtu)?;
            return self.write_vnet(&header, packet);
        }
        let _ = (now, packet, segment_size);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "TUN without offload: no super segments",
        ))
    }

    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(self.recv_packet(now, buf)?.map(|p| p.len))
    }

    fn recv_packet(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<RxPacket>> {
        #[cfg(target_os = "linux")]
        if self.vnet {
            let mut header = [0u8; vnet::LEN];
            let n = {
                let mut bufs = [io::IoSliceMut::new(&mut header), io::IoSliceMut::new(buf)];
                match self.device.recv_vectored(&mut bufs) {
                    Ok(n) => n,
                    Err(e) if would_block(&e) => return Ok(None),
                    Err(e) => return Err(e),
                }
            };
            let Some(len) = n.checked_sub(vnet::LEN) else {
                // Shorter than its header: nothing to hand on.
                return Ok(None);
            };
            // The kernel built the packet (a partial checksum) or verified it: either way its
            // checksums hold, and a super segment's is no checksum of its own bytes.
            let flags = header[vnet::FLAGS_AT];
            let trusted = flags & (vnet::F_NEEDS_CSUM | vnet::F_DATA_VALID) != 0;
            return Ok(Some(RxPacket {
                len,
                checksum_trusted: trusted,
            }));
        }
        match self.device.recv(buf) {
            Ok(n) => Ok(Some(RxPacket {
                len: n,
                checksum_trusted: false,
            })),
            Err(e) if would_block(&e) => Ok(None),
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

/// The virtio-net header that has the kernel cut `packet` (an IPv4 or IPv6 TCP super segment
/// with a partial checksum) into segments of `segment_size` payload bytes, each within `mtu`.
#[cfg(target_os = "linux")]
fn super_segment_header(
    packet: &[u8],
    segment_size: usize,
    mtu: usize,
) -> io::Result<[u8; vnet::LEN]> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    let (ip_len, gso_type) = match packet.first().map(|b| b >> 4) {
        Some(4) => (usize::from(packet[0] & 0x0f) * 4, vnet::GSO_TCPV4),
        Some(6) => (40, vnet::GSO_TCPV6),
        _ => return Err(invalid("super segment: not IPv4 or IPv6")),
    };
    let tcp_len = packet
        .get(ip_len + 12)
        .map(|b| usize::from(b >> 4) * 4)
        .ok_or_else(|| invalid("super segment: truncated TCP header"))?;
    let headers = ip_len + tcp_len;
    if segment_size == 0 || headers + segment_size > mtu || packet.len() <= headers {
        return Err(invalid("super segment: segment size and MTU do not agree"));
    }
    let field = |v: usize| u16::try_from(v).map_err(|_| invalid("super segment: too long"));
    let mut h = [0u8; vnet::LEN];
    h[vnet::FLAGS_AT] = vnet::F_NEEDS_CSUM;
    h[vnet::GSO_TYPE_AT] = gso_type;
    h[vnet::HDR_LEN_AT..vnet::HDR_LEN_AT + 2].copy_from_slice(&field(headers)?.to_ne_bytes());
    h[vnet::GSO_SIZE_AT..vnet::GSO_SIZE_AT + 2]
        .copy_from_slice(&field(segment_size)?.to_ne_bytes());
    h[vnet::CSUM_START_AT..vnet::CSUM_START_AT + 2].copy_from_slice(&field(ip_len)?.to_ne_bytes());
    h[vnet::CSUM_OFFSET_AT..vnet::CSUM_OFFSET_AT + 2]
        .copy_from_slice(&vnet::TCP_CHECKSUM_OFFSET.to_ne_bytes());
    Ok(h)
}
