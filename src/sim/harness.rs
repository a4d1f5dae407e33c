//! Running two nodes over a simulated network.

use smoltcp::time::{Duration, Instant};

use super::Network;
use super::Side;
use crate::node::Node;

/// How [`Harness::run_until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Outcome {
    /// The condition held (at [`Harness::now`]).
    Satisfied,
    /// The next event was after the deadline; the harness's time is now the deadline.
    DeadlineReached,
    /// Nothing was scheduled any more (no packet in flight, no path event, no node timer) and
    /// the condition did not hold. The harness's time is that of the last event.
    Stalled,
    /// The nodes kept asking to run at the same instant without time advancing (a node whose
    /// timer stays due after `handle_timeout`, or an endless exchange over zero-delay links).
    Livelock,
}

impl Outcome {
    /// Whether the condition held.
    pub fn is_satisfied(self) -> bool {
        self == Outcome::Satisfied
    }
}

/// Rounds at the same instant after which [`Outcome::Livelock`] is reported.
const LIVELOCK_ROUNDS: u32 = 1_000_000;

/// The transmit buffer size: the largest IP packet.
const TRANSMIT_BUFFER: usize = 65536;

/// Two [`Node`]s, A and B, joined by a [`Network`], on a simulated clock.
///
/// Each round: check the condition; drain [`Node::poll_transmit`] of A then B into the network
/// (at the current time); jump to the earliest of the network's next event and the nodes'
/// [`Node::poll_timeout`] (never backwards); deliver every packet due with
/// [`Node::handle_packet`]; call [`Node::handle_timeout`] on each node whose timer is due.
pub struct Harness<A: Node, B: Node> {
    network: Network,
    a: A,
    b: B,
    now: Instant,
    buf: Vec<u8>,
    middlebox: Option<Middlebox>,
}

/// A middlebox on the way from a node into the network: it sees every packet a node sends and
/// may rewrite it in place (returning its new length) or drop it (returning `None`), like a
/// firewall that strips TCP options or a NAT.
pub type Middlebox = Box<dyn FnMut(Side, &mut [u8], usize) -> Option<usize>>;

impl<A: Node, B: Node> Harness<A, B> {
    /// A harness starting at the network's time.
    pub fn new(network: Network, node_a: A, node_b: B) -> Self {
        Harness {
            now: network.now(),
            network,
            a: node_a,
            b: node_b,
            buf: vec![0; TRANSMIT_BUFFER],
            middlebox: None,
        }
    }

    /// Put a middlebox between the nodes and the network (see [`Middlebox`]).
    pub fn set_middlebox(&mut self, middlebox: Middlebox) {
        self.middlebox = Some(middlebox);
    }

    fn filter(&mut self, from: Side, len: usize) -> Option<usize> {
        match self.middlebox.as_mut() {
            Some(m) => m(from, &mut self.buf, len).map(|n| n.min(self.buf.len())),
            None => Some(len),
        }
    }

    /// The current simulated time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Node A.
    pub fn node_a(&self) -> &A {
        &self.a
    }

    /// Node A, mutably (to issue commands between runs).
    pub fn node_a_mut(&mut self) -> &mut A {
        &mut self.a
    }

    /// Node B.
    pub fn node_b(&self) -> &B {
        &self.b
    }

    /// Node B, mutably.
    pub fn node_b_mut(&mut self) -> &mut B {
        &mut self.b
    }

    /// The network (its counters: [`Network::link_stats`], [`Network::total_stats`], ...).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The network, mutably (to fail or recover a path, change a link, ...).
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.network
    }

    /// The network and both nodes, taken apart.
    pub fn into_parts(self) -> (Network, A, B) {
        (self.network, self.a, self.b)
    }

    /// Runs until `condition(a, b, now)` holds (checked before each round, so also before any
    /// work), or the next event is later than `deadline`, or nothing is left to happen. The
    /// condition may issue commands to the nodes: their transmits are drained right after.
    pub fn run_until<F>(&mut self, mut condition: F, deadline: Instant) -> Outcome
    where
        F: FnMut(&mut A, &mut B, Instant) -> bool,
    {
        let mut rounds_at_now = 0u32;
        loop {
            if condition(&mut self.a, &mut self.b, self.now) {
                return Outcome::Satisfied;
            }
            self.transmit();
            let next = [
                self.network.next_event(),
                self.a.poll_timeout(),
                self.b.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else {
                return Outcome::Stalled;
            };
            let next = next.max(self.now);
            if next > deadline {
                self.now = self.now.max(deadline);
                return Outcome::DeadlineReached;
            }
            if next == self.now {
                rounds_at_now += 1;
                if rounds_at_now > LIVELOCK_ROUNDS {
                    return Outcome::Livelock;
                }
            } else {
                rounds_at_now = 0;
            }
            self.now = next;
            self.deliver_and_fire();
        }
    }

    /// Lets `duration` of simulated time pass, running everything that happens meanwhile; the
    /// harness's time is then `now + duration` (unless the nodes livelock).
    pub fn run_for(&mut self, duration: Duration) -> Outcome {
        let micros = i64::try_from(duration.total_micros()).unwrap_or(i64::MAX);
        let deadline = Instant::from_micros(self.now.total_micros().saturating_add(micros));
        let outcome = self.run_until(|_, _, _| false, deadline);
        if outcome != Outcome::Livelock {
            self.now = self.now.max(deadline);
        }
        outcome
    }

    /// Drains both nodes' transmissions into the network at the current time.
    fn transmit(&mut self) {
        let now = self.now;
        while let Some(n) = self.a.poll_transmit(now, &mut self.buf) {
            let n = n.min(self.buf.len());
            let Some(n) = self.filter(Side::A, n) else {
                continue;
            };
            self.network.send(Side::A, now, &self.buf[..n]);
        }
        while let Some(n) = self.b.poll_transmit(now, &mut self.buf) {
            let n = n.min(self.buf.len());
            let Some(n) = self.filter(Side::B, n) else {
                continue;
            };
            self.network.send(Side::B, now, &self.buf[..n]);
        }
    }

    /// Delivers every packet due now, then fires the timers due now.
    fn deliver_and_fire(&mut self) {
        let now = self.now;
        while let Some(delivery) = self.network.pop_due(now) {
            match delivery.to {
                Side::A => self.a.handle_packet(now, &delivery.packet),
                Side::B => self.b.handle_packet(now, &delivery.packet),
            }
            self.network.recycle(delivery.packet);
        }
        if self.a.poll_timeout().is_some_and(|t| t <= now) {
            self.a.handle_timeout(now);
        }
        if self.b.poll_timeout().is_some_and(|t| t <= now) {
            self.b.handle_timeout(now);
        }
    }
}
