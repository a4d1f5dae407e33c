//! The sans-IO contract between a protocol node and whatever moves its packets and keeps its
//! time (the simulator, the TUN driver, a test).
//!
//! Contract: the owner feeds whole IP packets with [`Node::handle_packet`] and expired timers
//! with [`Node::handle_timeout`] (idempotent), then drains [`Node::poll_transmit`] until it
//! returns `None`, and sleeps until [`Node::poll_timeout`] or the next packet. The node never
//! reads a clock, never touches a socket and never draws OS randomness: `now` is always an
//! argument, and it never goes backwards between calls.

pub use smoltcp::time::{Duration, Instant};

/// One packet from [`Node::poll_transmit_segments`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// The bytes of the IP packet written at the start of the buffer.
    pub len: usize,
    /// `Some(n)`: a TCP super segment, to be cut into segments of `n` payload bytes (the
    /// last may be shorter), whose TCP checksum is partial (see the method's contract).
    pub segment_size: Option<usize>,
}

impl Transmit {
    /// An ordinary packet of `len` bytes.
    pub fn single(len: usize) -> Transmit {
        Transmit {
            len,
            segment_size: None,
        }
    }
}

/// A sans-IO protocol node: one IP stack instance (an [`Endpoint`](crate) in the full stack).
pub trait Node {
    /// Process one received IP packet (IPv4 or IPv6, any bytes: malformed input is dropped and
    /// counted, never a panic).
    fn handle_packet(&mut self, now: Instant, packet: &[u8]);

    /// Process timers that are due at `now`. Calling it early or twice is harmless.
    fn handle_timeout(&mut self, now: Instant);

    /// Write the next IP packet to send into `buf` and return its length, or `None` when there
    /// is nothing to send now. `buf` is at least as large as the link MTU the node was given.
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize>;

    /// [`poll_transmit`](Node::poll_transmit) for a device with TCP segmentation offload:
    /// the packet may be a TCP *super segment* of up to `max_segments` segments' worth of
    /// payload (at most 64 KiB of IP packet, and `buf` is that large), which the device cuts
    /// into segments of [`Transmit::segment_size`] payload bytes, each with a copy of the
    /// headers and options, as Linux's GSO does. Such a packet's TCP checksum field holds only
    /// the pseudo-header sum (Linux's `CHECKSUM_PARTIAL`): the device completes it for each
    /// segment. Packets with `segment_size: None` are ordinary, with their checksums filled.
    /// The default sends one ordinary packet at a time.
    fn poll_transmit_segments(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        max_segments: usize,
    ) -> Option<Transmit> {
        let _ = max_segments;
        self.poll_transmit(now, buf).map(Transmit::single)
    }

    /// [`handle_packet`](Node::handle_packet) for a packet whose checksums the device vouches
    /// for (the local kernel built it: Linux's `CHECKSUM_PARTIAL` or `CHECKSUM_UNNECESSARY`
    /// behind a TUN with offload), so they are not verified (a partial one would not verify),
    /// and which may be a TCP super segment larger than the MTU (the kernel's GRO). The
    /// default verifies them anyway, which drops a packet with a partial checksum.
    fn handle_packet_trusted(&mut self, now: Instant, packet: &[u8]) {
        self.handle_packet(now, packet);
    }

    /// The earliest instant at which [`Node::handle_timeout`] has work to do.
    fn poll_timeout(&self) -> Option<Instant>;
}
