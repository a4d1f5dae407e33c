//! Deterministic, seeded, event-driven network simulator: N paths between two nodes, A and B.
//!
//! # Model
//!
//! A [`Network`] holds paths ([`PathConfig`]). Each path joins one address of side A to one
//! address of side B and has two independent one-way links ([`LinkConfig`]): `a_to_b` and
//! `b_to_a`. A packet handed to [`Network::send`] is routed by its IP addresses (IPv4 or IPv6;
//! only the version, the lengths and the addresses are read):
//!
//! - side A's packet takes the first path whose `a` is its source and whose `b` is its
//!   destination; failing that, if its destination is one of B's addresses, the first path
//!   whose `a` is its source (A's addresses are its interfaces: a packet leaves by the
//!   interface of its source, as a multihomed client's does), else the first path whose `b`
//!   is its destination; failing that it is dropped and counted as unroutable
//!   ([`Network::unroutable`]). Side B's packet takes the exact path, else the first path
//!   whose `a` is its destination (B answers towards A's interface), else it is unroutable.
//! - a packet whose IP header cannot be read is dropped and counted ([`Network::malformed`]).
//!
//! On its link a packet then goes through these stages, in this order, and the first that
//! drops it counts it in the link's [`LinkStats`]:
//!
//! 1. path down: dropped (`dropped_down`);
//! 2. MTU: a packet longer than `mtu` bytes is dropped (`dropped_mtu`);
//! 3. rate and queue: with `rate_bps`, the link serializes packets one after another at that
//!    rate (store and forward); a packet that would make the bytes not yet serialized
//!    (including the unsent part of the packet on the wire) exceed `queue_bytes` is dropped
//!    (`dropped_queue`); an idle link always accepts one packet;
//! 4. loss: random loss with probability `loss`; with a Gilbert-Elliott `burst` model the link
//!    first moves between its good and bad states, and a packet is lost with probability `loss`
//!    in the good state and `loss_in_bad` in the bad state (`dropped_loss`);
//! 5. delay: arrival = end of serialization (or the send time) + `delay` + a uniform jitter in
//!    `[0, jitter]` (microsecond resolution). A link is FIFO: a packet never arrives before the
//!    one sent before it on the same link, except a packet chosen for reordering (probability
//!    `reorder`, counted in `reordered`), which arrives `reorder_extra_delay` later than it
//!    would have and does not hold back the packets after it;
//! 6. duplication: with probability `duplicate` a second copy arrives just after the first
//!    (same instant, later in order; counted in `duplicated`, and both copies in `delivered`).
//!
//! A path that goes down ([`Network::fail_path`], [`Network::schedule_down`]) drops every packet
//! in flight or queued on both its links, and every packet sent while it is down, as
//! `dropped_down`; it carries packets again once up ([`Network::recover_path`],
//! [`Network::schedule_up`]). Scheduled path events at an instant take effect before deliveries
//! at the same instant.
//!
//! For every link, at any time: `sent + duplicated = delivered + dropped (all reasons) + in
//! flight`.
//!
//! # Shared bottlenecks
//!
//! [`Network::share_bottleneck`] puts one more link in front of the links of several paths in
//! one direction: their packets are serialized through its single rate and drop-tail queue, in
//! the order they are sent, whichever path they take, and go through its MTU, loss, delay and
//! jitter stages (not duplication or reordering). A packet it accepts enters its own path's
//! link when it leaves the bottleneck (end of serialization plus the bottleneck's delay) and
//! then goes through that link's stages as above; a packet it drops is counted both in
//! [`Network::bottleneck_stats`] and in its path link's `dropped_*` counters, so the equation
//! above still holds for every path link. A path going down does not give back the bottleneck
//! capacity its queued packets took.
//!
//! # Determinism
//!
//! No clock is read: time is the `now` argument, and the network's time never goes backwards (an
//! earlier `now` is taken as the network's current time). Each link draws from its own
//! [`rand::rngs::StdRng`] seeded from the network seed and the link's index, so one seed gives
//! the same trace on the same build, whatever the other links do. Events are ordered by time,
//! then path events before deliveries, then insertion order. Tests take their seed from
//! [`seed_from_env`] so that a failure can be replayed with `SIM_SEED=<n>`.
//!
//! # Driving nodes
//!
//! [`Harness`] runs two [`Node`](crate::node::Node)s over a network: it drains their transmits
//! into the network, jumps to the next event (a delivery, a path event or a node timer), delivers
//! and fires timers, until a condition holds, a deadline passes or nothing is left to happen.
//! Code that drives the network by hand should call [`Network::pop_due`] until it returns `None`
//! before calling [`Network::send`] with the same `now`, as the harness does.
//!
//! ```
//! use mptcp_stack::sim::{LinkConfig, Network, PathConfig, Side};
//! use smoltcp::time::{Duration, Instant};
//!
//! let a = "10.0.0.1".parse().unwrap();
//! let b = "10.0.0.2".parse().unwrap();
//! let link = LinkConfig::ideal(Duration::from_millis(10));
//! let mut net = Network::new(7, vec![PathConfig::new(a, b, link)]);
//!
//! // A minimal IPv4 header from 10.0.0.1 to 10.0.0.2, no payload.
//! let mut packet = [0u8; 20];
//! packet[0] = 0x45;
//! packet[3] = 20;
//! packet[12..16].copy_from_slice(&[10, 0, 0, 1]);
//! packet[16..20].copy_from_slice(&[10, 0, 0, 2]);
//! net.send(Side::A, Instant::ZERO, &packet);
//!
//! assert_eq!(net.next_event(), Some(Instant::from_millis(10)));
//! let delivery = net.pop_due(Instant::from_millis(10)).unwrap();
//! assert_eq!(delivery.to, Side::B);
//! assert_eq!(delivery.packet, packet);
//! ```

mod harness;
mod link;
mod middlebox;
mod network;
mod packet;

pub use harness::{Harness, Middlebox, Outcome};
pub use link::{DropReason, GilbertElliott, LinkConfig, LinkStats};
pub use middlebox::{corrupt_payload, refill_tcp_checksum, strip_tcp_option};
pub use network::{Delivery, Network, PathConfig, SendOutcome};
pub use packet::ip_addresses;

/// One of the two nodes of a simulated network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// Node A: the `a` end of every path.
    A,
    /// Node B: the `b` end of every path.
    B,
}

impl Side {
    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// The seed of a simulation test: `SIM_SEED` from the environment if it is set (decimal `u64`),
/// else `default`. Prints `SIM_SEED=<n>` to stderr so that a failing test can be replayed; an
/// unparsable `SIM_SEED` is reported there and the default is used.
pub fn seed_from_env(default: u64) -> u64 {
    let seed = match std::env::var("SIM_SEED") {
        Ok(value) => match value.trim().parse::<u64>() {
            Ok(seed) => seed,
            Err(_) => {
                eprintln!("SIM_SEED={value:?} is not a decimal u64; using the default seed");
                default
            }
        },
        Err(_) => default,
    };
    eprintln!("SIM_SEED={seed}");
    seed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_is_an_involution() {
        assert_eq!(Side::A.peer(), Side::B);
        assert_eq!(Side::B.peer(), Side::A);
        assert_eq!(Side::A.peer().peer(), Side::A);
    }
}
