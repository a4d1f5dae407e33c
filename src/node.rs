//! The sans-IO contract between a protocol node and whatever moves its packets and keeps its
//! time (the simulator, the TUN driver, a test).
//!
//! Contract: the owner feeds whole IP packets with [`Node::handle_packet`] and expired timers
//! with [`Node::handle_timeout`] (idempotent), then drains [`Node::poll_transmit`] until it
//! returns `None`, and sleeps until [`Node::poll_timeout`] or the next packet. The node never
//! reads a clock, never touches a socket and never draws OS randomness: `now` is always an
//! argument, and it never goes backwards between calls.

pub use smoltcp::time::{Duration, Instant};

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

    /// The earliest instant at which [`Node::handle_timeout`] has work to do.
    fn poll_timeout(&self) -> Option<Instant>;
}
