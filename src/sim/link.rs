//! One direction of one path: its configuration, its counters and its state.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use smoltcp::time::Duration;

/// The Gilbert-Elliott model of bursty loss: a two-state Markov chain stepped once per packet.
///
/// In the good state a packet is lost with the link's `loss` probability, in the bad state with
/// `loss_in_bad`. The mean length of a stay in the bad state is `1 / p_bad_to_good` packets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability of moving from the good to the bad state, per packet.
    pub p_good_to_bad: f64,
    /// Probability of moving from the bad to the good state, per packet.
    pub p_bad_to_good: f64,
    /// Probability that a packet is lost while the link is in the bad state.
    pub loss_in_bad: f64,
}

/// The behaviour of one direction of one path. Probabilities are in `[0, 1]`: a value at or
/// below 0 (or NaN) never happens, at or above 1 always does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Fixed one-way propagation delay.
    pub delay: Duration,
    /// Upper bound of a uniform extra delay in `[0, jitter]` drawn per packet. Jitter alone never
    /// reorders packets: a packet is held back until the one before it has arrived.
    pub jitter: Duration,
    /// Probability that a packet is lost (in the good state, when `burst` is set).
    pub loss: f64,
    /// Bursty loss: a Gilbert-Elliott model, or `None` for independent losses only.
    pub burst: Option<GilbertElliott>,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Probability that a packet is delayed by `reorder_extra_delay` more than its normal arrival
    /// time, letting the packets after it overtake it.
    pub reorder: f64,
    /// The extra delay of a packet chosen for reordering.
    pub reorder_extra_delay: Duration,
    /// Serialization rate in bits per second, or `None` for infinitely fast. `Some(0)` is a link
    /// that carries nothing (every packet is dropped as `dropped_queue`).
    pub rate_bps: Option<u64>,
    /// Drop-tail limit on the bytes waiting to be serialized (only with `rate_bps`), or `None`
    /// for an unbounded queue.
    pub queue_bytes: Option<u64>,
    /// Largest packet carried, in bytes; longer packets are dropped as `dropped_mtu`.
    pub mtu: usize,
}

impl Default for LinkConfig {
    /// An ideal link with no delay.
    fn default() -> Self {
        LinkConfig::ideal(Duration::ZERO)
    }
}

impl LinkConfig {
    /// The MTU of a new [`LinkConfig`]: Ethernet's 1500 bytes.
    pub const DEFAULT_MTU: usize = 1500;

    /// A link that only delays: no jitter, loss, duplication, reordering or rate limit, MTU 1500.
    pub fn ideal(delay: Duration) -> LinkConfig {
        LinkConfig {
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_extra_delay: Duration::ZERO,
            rate_bps: None,
            queue_bytes: None,
            mtu: Self::DEFAULT_MTU,
        }
    }

    /// Sets the one-way delay.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the jitter bound.
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the independent loss probability.
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    /// Sets a Gilbert-Elliott bursty loss model.
    pub fn with_burst(mut self, burst: GilbertElliott) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Sets the duplication probability.
    pub fn with_duplicate(mut self, duplicate: f64) -> Self {
        self.duplicate = duplicate;
        self
    }

    /// Sets the reordering probability and the extra delay of a reordered packet.
    pub fn with_reorder(mut self, reorder: f64, extra_delay: Duration) -> Self {
        self.reorder = reorder;
        self.reorder_extra_delay = extra_delay;
        self
    }

    /// Sets the serialization rate (bits per second) and the drop-tail queue limit (bytes).
    pub fn with_rate(mut self, rate_bps: u64, queue_bytes: Option<u64>) -> Self {
        self.rate_bps = Some(rate_bps);
        self.queue_bytes = queue_bytes;
        self
    }

    /// Sets the MTU.
    pub fn with_mtu(mut self, mtu: usize) -> Self {
        self.mtu = mtu;
        self
    }
}

/// Counters of one direction of one path. Packets are counted once in `sent` when routed to the
/// link, then once in `delivered` or in exactly one `dropped_*` counter; duplicates are counted
/// in `duplicated` and then once in `delivered` or `dropped_down`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets routed to this link.
    pub sent: u64,
    /// Bytes of the packets routed to this link.
    pub bytes_sent: u64,
    /// Packets handed to the receiver (duplicates included).
    pub delivered: u64,
    /// Bytes handed to the receiver (duplicates included).
    pub bytes_delivered: u64,
    /// Packets lost at random (independent or bursty loss).
    pub dropped_loss: u64,
    /// Packets that did not fit in the queue.
    pub dropped_queue: u64,
    /// Packets dropped because the path was down when they were sent or while in flight.
    pub dropped_down: u64,
    /// Packets longer than the MTU.
    pub dropped_mtu: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Packets chosen for reordering.
    pub reordered: u64,
}

impl LinkStats {
    /// All drops, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_queue + self.dropped_down + self.dropped_mtu
    }

    /// Adds `other`'s counters to these.
    pub fn accumulate(&mut self, other: &LinkStats) {
        self.sent += other.sent;
        self.bytes_sent += other.bytes_sent;
        self.delivered += other.delivered;
        self.bytes_delivered += other.bytes_delivered;
        self.dropped_loss += other.dropped_loss;
        self.dropped_queue += other.dropped_queue;
        self.dropped_down += other.dropped_down;
        self.dropped_mtu += other.dropped_mtu;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
    }
}

/// Why the network dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The IP header could not be read.
    Malformed,
    /// No path leads to the destination.
    Unroutable,
    /// The path was down.
    PathDown,
    /// The packet was longer than the link's MTU.
    Mtu,
    /// The link's queue was full.
    Queue,
    /// Random (independent or bursty) loss.
    Loss,
}

/// What the link decided for an accepted packet.
pub(super) enum Admit {
    /// Dropped, already counted.
    Drop(DropReason),
    /// To be delivered at `at` (microseconds), and a second copy too if `duplicate`.
    Deliver { at: i64, duplicate: bool },
}

/// The mutable state of one link.
#[derive(Debug)]
pub(super) struct LinkState {
    pub(super) cfg: LinkConfig,
    pub(super) stats: LinkStats,
    /// Bumped when the path goes down: deliveries of older generations are void.
    pub(super) generation: u32,
    /// Deliveries scheduled and not yet delivered or voided.
    pub(super) in_flight: u64,
    rng: StdRng,
    /// When the serializer is free, in nanoseconds.
    tx_free_ns: i128,
    /// Arrival time of the last non-reordered packet, in microseconds.
    last_arrival: i64,
    /// Gilbert-Elliott state.
    bad: bool,
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

fn micros(d: Duration) -> i64 {
    i64::try_from(d.total_micros()).unwrap_or(i64::MAX)
}

/// A uniform draw in `[0, 1)`.
fn unit(rng: &mut StdRng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// True with probability `p`; draws from `rng` only when `0 < p < 1`.
fn chance(rng: &mut StdRng, p: f64) -> bool {
    if p >= 1.0 {
        true
    } else if p > 0.0 {
        unit(rng) < p
    } else {
        false
    }
}

/// A draw in `[0, n)` (0 when `n == 0`).
fn below(rng: &mut StdRng, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as u64
}

impl LinkState {
    pub(super) fn new(cfg: LinkConfig, seed: u64, index: u64) -> LinkState {
        let mixed = seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        LinkState {
            cfg,
            stats: LinkStats::default(),
            generation: 0,
            in_flight: 0,
            rng: StdRng::seed_from_u64(mixed),
            tx_free_ns: i128::MIN,
            last_arrival: i64::MIN,
            bad: false,
        }
    }

    /// Decides the fate of a packet of `len` bytes sent at `now` (microseconds) on a link whose
    /// path is up. Counts drops, duplicates and reorders (not `sent`, not deliveries).
    pub(super) fn admit(&mut self, now: i64, len: usize) -> Admit {
        let cfg = self.cfg;
        if len > cfg.mtu {
            self.stats.dropped_mtu += 1;
            return Admit::Drop(DropReason::Mtu);
        }

        // Rate and queue: store and forward through one serializer.
        let mut depart = now;
        if let Some(rate) = cfg.rate_bps {
            if rate == 0 {
                self.stats.dropped_queue += 1;
                return Admit::Drop(DropReason::Queue);
            }
            let rate = u128::from(rate);
            let now_ns = i128::from(now) * 1000;
            let start = self.tx_free_ns.max(now_ns);
            let waiting_ns = start.saturating_sub(now_ns).unsigned_abs();
            let backlog = (waiting_ns.saturating_mul(rate)).div_ceil(8 * NANOS_PER_SEC);
            if let Some(limit) = cfg.queue_bytes
                && backlog > 0
                && backlog.saturating_add(len as u128) > u128::from(limit)
            {
                self.stats.dropped_queue += 1;
                return Admit::Drop(DropReason::Queue);
            }
            let serialize_ns = (len as u128 * 8 * NANOS_PER_SEC).div_ceil(rate);
            let done = start.saturating_add(i128::try_from(serialize_ns).unwrap_or(i128::MAX));
            self.tx_free_ns = done;
            let done_us = done.div_euclid(1000) + i128::from(done.rem_euclid(1000) != 0);
            depart = i64::try_from(done_us).unwrap_or(i64::MAX);
        }

        // Loss, possibly bursty.
        let loss = match cfg.burst {
            Some(ge) => {
                let flip = if self.bad {
                    ge.p_bad_to_good
                } else {
                    ge.p_good_to_bad
                };
                if chance(&mut self.rng, flip) {
                    self.bad = !self.bad;
                }
                if self.bad { ge.loss_in_bad } else { cfg.loss }
            }
            None => cfg.loss,
        };
        if chance(&mut self.rng, loss) {
            self.stats.dropped_loss += 1;
            return Admit::Drop(DropReason::Loss);
        }

        // Delay, jitter, reordering.
        let mut at = depart.saturating_add(micros(cfg.delay));
        let jitter = cfg.jitter.total_micros();
        if jitter > 0 {
            let extra = below(&mut self.rng, jitter.saturating_add(1));
            at = at.saturating_add(i64::try_from(extra).unwrap_or(i64::MAX));
        }
        if chance(&mut self.rng, cfg.reorder) {
            self.stats.reordered += 1;
            at = at.saturating_add(micros(cfg.reorder_extra_delay));
        } else {
            at = at.max(self.last_arrival);
            self.last_arrival = at;
        }

        let duplicate = chance(&mut self.rng, cfg.duplicate);
        if duplicate {
            self.stats.duplicated += 1;
        }
        Admit::Deliver { at, duplicate }
    }

    /// The path went down at `now`: everything in flight or queued is lost.
    pub(super) fn flush(&mut self, now: i64) {
        self.stats.dropped_down += self.in_flight;
        self.in_flight = 0;
        self.generation = self.generation.wrapping_add(1);
        self.tx_free_ns = i128::from(now) * 1000;
        self.last_arrival = i64::MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver_at(link: &mut LinkState, now: i64, len: usize) -> i64 {
        match link.admit(now, len) {
            Admit::Deliver { at, .. } => at,
            Admit::Drop(reason) => panic!("dropped: {reason:?}"),
        }
    }

    #[test]
    fn serialization_time_is_exact_and_back_to_back() {
        // 1000 bytes at 8 Mbit/s take exactly 1 ms.
        let cfg = LinkConfig::ideal(Duration::from_millis(5)).with_rate(8_000_000, None);
        let mut link = LinkState::new(cfg, 1, 0);
        assert_eq!(deliver_at(&mut link, 0, 1000), 6_000);
        assert_eq!(deliver_at(&mut link, 0, 1000), 7_000);
        // An idle link starts serializing at once.
        assert_eq!(deliver_at(&mut link, 100_000, 1000), 106_000);
    }

    #[test]
    fn sub_microsecond_serialization_accumulates_without_drift() {
        // 100 bytes at 1 Gbit/s take 800 ns: 1000 of them take exactly 800 us.
        let cfg = LinkConfig::ideal(Duration::ZERO).with_rate(1_000_000_000, None);
        let mut link = LinkState::new(cfg, 1, 0);
        let mut last = 0;
        for _ in 0..1000 {
            last = deliver_at(&mut link, 0, 100);
        }
        assert_eq!(last, 800);
    }

    #[test]
    fn queue_limit_counts_bytes_not_yet_serialized() {
        let cfg = LinkConfig::ideal(Duration::ZERO).with_rate(8_000_000, Some(3000));
        let mut link = LinkState::new(cfg, 1, 0);
        for _ in 0..3 {
            deliver_at(&mut link, 0, 1000);
        }
        assert!(matches!(
            link.admit(0, 1000),
            Admit::Drop(DropReason::Queue)
        ));
        // Half a millisecond later 500 bytes have left: 500 bytes of room.
        assert!(matches!(
            link.admit(500, 600),
            Admit::Drop(DropReason::Queue)
        ));
        assert_eq!(deliver_at(&mut link, 500, 500), 3_500);
        assert_eq!(link.stats.dropped_queue, 2);
    }

    #[test]
    fn an_idle_link_accepts_a_packet_larger_than_its_queue() {
        let cfg = LinkConfig::ideal(Duration::ZERO).with_rate(8_000_000, Some(100));
        let mut link = LinkState::new(cfg, 1, 0);
        assert_eq!(deliver_at(&mut link, 0, 1000), 1_000);
    }

    #[test]
    fn zero_rate_carries_nothing() {
        let cfg = LinkConfig::ideal(Duration::ZERO).with_rate(0, None);
        let mut link = LinkState::new(cfg, 1, 0);
        assert!(matches!(link.admit(0, 1), Admit::Drop(DropReason::Queue)));
    }

    #[test]
    fn odd_probabilities_do_not_panic() {
        for p in [f64::NAN, -1.0, 0.0, 1.0, 2.0, f64::INFINITY] {
            let cfg = LinkConfig::ideal(Duration::MAX)
                .with_jitter(Duration::MAX)
                .with_loss(p)
                .with_duplicate(p)
                .with_reorder(p, Duration::MAX)
                .with_burst(GilbertElliott {
                    p_good_to_bad: p,
                    p_bad_to_good: p,
                    loss_in_bad: p,
                });
            let mut link = LinkState::new(cfg, 1, 0);
            for now in [i64::MIN, -1, 0, i64::MAX] {
                let _ = link.admit(now, 1500);
            }
        }
    }

    #[test]
    fn extreme_rates_and_times_do_not_panic() {
        for rate in [1, 7, u64::MAX] {
            let cfg = LinkConfig::ideal(Duration::MAX)
                .with_rate(rate, Some(u64::MAX))
                .with_mtu(usize::MAX);
            let mut link = LinkState::new(cfg, 1, 0);
            for now in [i64::MIN, 0, i64::MAX] {
                let _ = link.admit(now, 65535);
                let _ = link.admit(now, usize::MAX);
            }
            link.flush(i64::MAX);
            link.flush(i64::MIN);
        }
    }
}
