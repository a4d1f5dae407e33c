//! The network: paths, routing and the event queue.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::net::IpAddr;

use smoltcp::time::Instant;

use super::Side;
use super::link::{Admit, DropReason, LinkConfig, LinkState, LinkStats};
use super::packet::ip_addresses;

/// One path between an address of A and an address of B, with its two one-way links.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathConfig {
    /// A's address on this path.
    pub a: IpAddr,
    /// B's address on this path.
    pub b: IpAddr,
    /// The link carrying A's packets to B.
    pub a_to_b: LinkConfig,
    /// The link carrying B's packets to A.
    pub b_to_a: LinkConfig,
}

impl PathConfig {
    /// A path with the same link configuration in both directions.
    pub fn new(a: IpAddr, b: IpAddr, link: LinkConfig) -> PathConfig {
        PathConfig {
            a,
            b,
            a_to_b: link,
            b_to_a: link,
        }
    }

    /// A path with a different link configuration in each direction.
    pub fn asymmetric(a: IpAddr, b: IpAddr, a_to_b: LinkConfig, b_to_a: LinkConfig) -> PathConfig {
        PathConfig {
            a,
            b,
            a_to_b,
            b_to_a,
        }
    }
}

/// A packet handed to its receiver by [`Network::pop_due`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The receiving side.
    pub to: Side,
    /// The index of the path that carried it.
    pub path: usize,
    /// Its arrival time.
    pub at: Instant,
    /// The whole IP packet. Give the buffer back with [`Network::recycle`] to spare allocations.
    pub packet: Vec<u8>,
}

/// What [`Network::send`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// The packet is on its way (it may still be dropped later if its path goes down).
    Accepted {
        /// The path it took.
        path: usize,
    },
    /// The packet was dropped (and counted).
    Dropped {
        /// The path it was routed to, if it was routed.
        path: Option<usize>,
        /// Why.
        reason: DropReason,
    },
}

#[derive(Debug)]
enum EventKind {
    Down(usize),
    Up(usize),
    Deliver {
        link: usize,
        generation: u32,
        packet: Vec<u8>,
    },
}

#[derive(Debug)]
struct Event {
    /// Microseconds.
    at: i64,
    /// 0 for path events, 1 for deliveries: path events go first at the same instant.
    class: u8,
    seq: u64,
    kind: EventKind,
}

impl Event {
    fn key(&self) -> (i64, u8, u64) {
        (self.at, self.class, self.seq)
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// Buffers kept for reuse at most.
const POOL_MAX: usize = 4096;
/// Buffers larger than this are not kept for reuse.
const POOL_MAX_CAPACITY: usize = 1 << 17;

/// A deterministic simulated network of paths between two nodes, A and B (see the
/// [module documentation](super) for the model).
#[derive(Debug)]
pub struct Network {
    paths: Vec<PathConfig>,
    up: Vec<bool>,
    /// Two per path: `2 * path` carries A's packets, `2 * path + 1` B's.
    links: Vec<LinkState>,
    /// (A's address, B's address) -> path, for A's packets (src, dst) and B's (dst, src).
    exact: BTreeMap<(IpAddr, IpAddr), usize>,
    /// B's address -> first path, for A's packets whose source matches no path.
    to_b: BTreeMap<IpAddr, usize>,
    /// A's address -> first path, for B's packets whose source matches no path.
    to_a: BTreeMap<IpAddr, usize>,
    /// Min-heap of events. Invariant: its top is never a void delivery.
    events: BinaryHeap<Reverse<Event>>,
    seq: u64,
    /// Microseconds.
    now: i64,
    pool: Vec<Vec<u8>>,
    unroutable: u64,
    malformed: u64,
    /// The seed, for links made after construction (shared bottlenecks).
    seed: u64,
    /// Shared bottlenecks, in the order [`Network::share_bottleneck`] made them.
    bottlenecks: Vec<LinkState>,
    /// Per link (same index as `links`): the bottleneck its packets cross first, if any.
    bottleneck_of: Vec<Option<usize>>,
}

fn link_index(path: usize, from: Side) -> usize {
    2 * path + usize::from(from == Side::B)
}

/// Counts on a path's link a drop decided elsewhere (at a shared bottleneck).
fn count_drop(stats: &mut LinkStats, reason: DropReason) {
    match reason {
        DropReason::Mtu => stats.dropped_mtu += 1,
        DropReason::Queue => stats.dropped_queue += 1,
        DropReason::Loss => stats.dropped_loss += 1,
        DropReason::PathDown => stats.dropped_down += 1,
        // Not decided by links; counted by the network.
        DropReason::Malformed | DropReason::Unroutable => {}
    }
}

impl Network {
    /// A network with these paths (indexed from 0 in this order), all up, at time zero. `seed`
    /// determines every random draw.
    pub fn new(seed: u64, paths: Vec<PathConfig>) -> Network {
        let mut links = Vec::with_capacity(2 * paths.len());
        let mut exact = BTreeMap::new();
        let mut to_b = BTreeMap::new();
        let mut to_a = BTreeMap::new();
        for (i, p) in paths.iter().enumerate() {
            links.push(LinkState::new(p.a_to_b, seed, 2 * i as u64));
            links.push(LinkState::new(p.b_to_a, seed, 2 * i as u64 + 1));
            exact.entry((p.a, p.b)).or_insert(i);
            to_b.entry(p.b).or_insert(i);
            to_a.entry(p.a).or_insert(i);
        }
        Network {
            up: vec![true; paths.len()],
            bottleneck_of: vec![None; links.len()],
            paths,
            links,
            exact,
            to_b,
            to_a,
            events: BinaryHeap::new(),
            seq: 0,
            now: 0,
            pool: Vec::new(),
            unroutable: 0,
            malformed: 0,
            seed,
            bottlenecks: Vec::new(),
        }
    }

    /// Makes the packets that `from` sends on each of `paths` cross one shared link, `link`,
    /// before their own path's link, and returns the bottleneck's index (for
    /// [`Network::bottleneck_stats`]). See the module documentation for the model.
    ///
    /// Unknown paths are ignored; a path whose `from` direction already crosses a bottleneck
    /// moves to this one. The bottleneck's `duplicate` and `reorder` settings are not used
    /// (put those on the paths' own links). Its random draws (loss, jitter) come from its own
    /// generator, seeded from the network seed and the bottleneck's index.
    pub fn share_bottleneck(&mut self, paths: &[usize], from: Side, link: LinkConfig) -> usize {
        let id = self.bottlenecks.len();
        let cfg = LinkConfig {
            duplicate: 0.0,
            reorder: 0.0,
            ..link
        };
        // Stream indices past the paths' links, so that no generator is shared.
        let stream = 2 * self.paths.len() as u64 + id as u64;
        self.bottlenecks
            .push(LinkState::new(cfg, self.seed, stream));
        for &path in paths {
            if path < self.paths.len() {
                self.bottleneck_of[link_index(path, from)] = Some(id);
            }
        }
        id
    }

    /// The counters of a shared bottleneck (zero for an unknown one): `sent` counts the packets
    /// that reached it, `delivered` those it passed on to their path's link, and the `dropped_*`
    /// counters those it dropped (which also count as drops of their path's link).
    pub fn bottleneck_stats(&self, bottleneck: usize) -> LinkStats {
        self.bottlenecks
            .get(bottleneck)
            .map(|b| b.stats)
            .unwrap_or_default()
    }

    /// The network's time: the latest `now` it was given.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.now)
    }

    /// The paths, in index order.
    pub fn paths(&self) -> &[PathConfig] {
        &self.paths
    }

    /// The configuration of the link that carries `from`'s packets on `path`.
    pub fn link_config(&self, path: usize, from: Side) -> Option<&LinkConfig> {
        self.links.get(link_index(path, from)).map(|l| &l.cfg)
    }

    /// Changes the link that carries `from`'s packets on `path`, for packets sent from now on
    /// (packets in flight keep their arrival times). An unknown path is ignored.
    pub fn set_link_config(&mut self, path: usize, from: Side, cfg: LinkConfig) {
        if let Some(link) = self.links.get_mut(link_index(path, from)) {
            link.cfg = cfg;
        }
    }

    /// Whether `path` is up (false for an unknown path).
    pub fn is_up(&self, path: usize) -> bool {
        self.up.get(path).copied().unwrap_or(false)
    }

    /// Takes `path` down now: packets in flight or queued on it, both ways, are dropped, and so
    /// are packets sent on it until it is up again. An unknown path is ignored.
    pub fn fail_path(&mut self, path: usize) {
        self.set_down(path, self.now);
    }

    /// Brings `path` up now. An unknown path is ignored.
    pub fn recover_path(&mut self, path: usize) {
        if let Some(up) = self.up.get_mut(path) {
            *up = true;
        }
    }

    /// Schedules `path` to go down at `at` (as [`Network::fail_path`]); an instant in the past
    /// takes effect at the next call to [`Network::send`] or [`Network::pop_due`].
    pub fn schedule_down(&mut self, path: usize, at: Instant) {
        if path < self.paths.len() {
            self.push(at.total_micros(), 0, EventKind::Down(path));
        }
    }

    /// Schedules `path` to come up at `at` (as [`Network::recover_path`]).
    pub fn schedule_up(&mut self, path: usize, at: Instant) {
        if path < self.paths.len() {
            self.push(at.total_micros(), 0, EventKind::Up(path));
        }
    }

    /// Sends a whole IP packet from side `from` at `now` (taken as the network's time if
    /// earlier). Routes it, then runs it through its link; see the module documentation.
    pub fn send(&mut self, from: Side, now: Instant, packet: &[u8]) -> SendOutcome {
        let now = self.advance(now);
        self.apply_due_path_events(now);

        let Some((src, dst)) = ip_addresses(packet) else {
            self.malformed += 1;
            return SendOutcome::Dropped {
                path: None,
                reason: DropReason::Malformed,
            };
        };
        let route = match from {
            Side::A => self.exact.get(&(src, dst)).or_else(|| {
                // Out of the interface of its source, if it is for one of B's addresses.
                let dst_path = self.to_b.get(&dst)?;
                Some(self.to_a.get(&src).unwrap_or(dst_path))
            }),
            Side::B => self.exact.get(&(dst, src)).or_else(|| self.to_a.get(&dst)),
        };
        let Some(&path) = route else {
            self.unroutable += 1;
            return SendOutcome::Dropped {
                path: None,
                reason: DropReason::Unroutable,
            };
        };

        let index = link_index(path, from);
        let up = self.is_up(path);
        let Some(link) = self.links.get_mut(index) else {
            // Unreachable: every routed path has its two links.
            self.unroutable += 1;
            return SendOutcome::Dropped {
                path: None,
                reason: DropReason::Unroutable,
            };
        };
        link.stats.sent += 1;
        link.stats.bytes_sent += packet.len() as u64;
        if !up {
            link.stats.dropped_down += 1;
            return SendOutcome::Dropped {
                path: Some(path),
                reason: DropReason::PathDown,
            };
        }
        // A shared bottleneck first: the packet enters its path's own link when it leaves.
        let mut enters = now;
        if let Some(b) = self.bottleneck_of.get(index).copied().flatten()
            && let Some(bottleneck) = self.bottlenecks.get_mut(b)
        {
            bottleneck.stats.sent += 1;
            bottleneck.stats.bytes_sent += packet.len() as u64;
            match bottleneck.admit(now, packet.len()) {
                Admit::Drop(reason) => {
                    count_drop(&mut link.stats, reason);
                    return SendOutcome::Dropped {
                        path: Some(path),
                        reason,
                    };
                }
                // Duplication is off on bottlenecks (see `share_bottleneck`).
                Admit::Deliver { at, .. } => {
                    bottleneck.stats.delivered += 1;
                    bottleneck.stats.bytes_delivered += packet.len() as u64;
                    enters = at;
                }
            }
        }
        let (at, duplicate) = match link.admit(enters, packet.len()) {
            Admit::Drop(reason) => {
                return SendOutcome::Dropped {
                    path: Some(path),
                    reason,
                };
            }
            Admit::Deliver { at, duplicate } => (at, duplicate),
        };
        let generation = link.generation;
        link.in_flight += 1 + u64::from(duplicate);

        let copies = 1 + usize::from(duplicate);
        for _ in 0..copies {
            let buf = self.buffer_from(packet);
            self.push(
                at,
                1,
                EventKind::Deliver {
                    link: index,
                    generation,
                    packet: buf,
                },
            );
        }
        SendOutcome::Accepted { path }
    }

    /// The time of the next event (a delivery or a scheduled path event), if any.
    pub fn next_event(&self) -> Option<Instant> {
        self.events
            .peek()
            .map(|Reverse(e)| Instant::from_micros(e.at))
    }

    /// Advances the network's time to `now` (if later), applies path events due by then, and
    /// returns the next packet due by then, in event order; `None` when none is due.
    pub fn pop_due(&mut self, now: Instant) -> Option<Delivery> {
        let now = self.advance(now);
        loop {
            if self.events.peek()?.0.at > now {
                return None;
            }
            let Reverse(event) = self.events.pop()?;
            match event.kind {
                EventKind::Down(path) => self.set_down(path, event.at),
                EventKind::Up(path) => self.recover_path(path),
                EventKind::Deliver {
                    link,
                    generation,
                    packet,
                } => {
                    let Some(state) = self.links.get_mut(link) else {
                        continue;
                    };
                    if state.generation != generation {
                        self.recycle(packet);
                        continue;
                    }
                    state.in_flight = state.in_flight.saturating_sub(1);
                    state.stats.delivered += 1;
                    state.stats.bytes_delivered += packet.len() as u64;
                    self.drop_void_top();
                    return Some(Delivery {
                        to: if link % 2 == 0 { Side::B } else { Side::A },
                        path: link / 2,
                        at: Instant::from_micros(event.at),
                        packet,
                    });
                }
            }
        }
    }

    /// Gives a delivered packet's buffer back for reuse.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < POOL_MAX && buf.capacity() <= POOL_MAX_CAPACITY {
            buf.clear();
            self.pool.push(buf);
        }
    }

    /// The counters of the link that carries `from`'s packets on `path` (zero for an unknown
    /// path).
    pub fn link_stats(&self, path: usize, from: Side) -> LinkStats {
        self.links
            .get(link_index(path, from))
            .map(|l| l.stats)
            .unwrap_or_default()
    }

    /// The counters of all links carrying `from`'s packets, summed.
    pub fn total_stats(&self, from: Side) -> LinkStats {
        let mut total = LinkStats::default();
        for path in 0..self.paths.len() {
            total.accumulate(&self.link_stats(path, from));
        }
        total
    }

    /// Packets scheduled for delivery and not yet delivered or dropped, on all links.
    pub fn in_flight(&self) -> u64 {
        self.links.iter().map(|l| l.in_flight).sum()
    }

    /// Packets dropped because no path led to their destination.
    pub fn unroutable(&self) -> u64 {
        self.unroutable
    }

    /// Packets dropped because their IP header could not be read.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    fn advance(&mut self, now: Instant) -> i64 {
        self.now = self.now.max(now.total_micros());
        self.now
    }

    fn push(&mut self, at: i64, class: u8, kind: EventKind) {
        let seq = self.seq;
        self.seq += 1;
        self.events.push(Reverse(Event {
            at,
            class,
            seq,
            kind,
        }));
    }

    fn buffer_from(&mut self, packet: &[u8]) -> Vec<u8> {
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.extend_from_slice(packet);
        buf
    }

    /// Applies the path events at the top of the queue due by `now`, stopping at the first
    /// delivery (those are for [`Network::pop_due`]).
    fn apply_due_path_events(&mut self, now: i64) {
        while let Some(Reverse(top)) = self.events.peek() {
            if top.at > now || top.class != 0 {
                return;
            }
            let Some(Reverse(event)) = self.events.pop() else {
                return;
            };
            match event.kind {
                EventKind::Down(path) => self.set_down(path, event.at),
                EventKind::Up(path) => self.recover_path(path),
                EventKind::Deliver { .. } => {}
            }
        }
    }

    fn set_down(&mut self, path: usize, at: i64) {
        let Some(up) = self.up.get_mut(path) else {
            return;
        };
        if !*up {
            return;
        }
        *up = false;
        for from in [Side::A, Side::B] {
            if let Some(link) = self.links.get_mut(link_index(path, from)) {
                link.flush(at);
            }
        }
        self.drop_void_top();
    }

    /// Restores the invariant that the top of the queue is not a void delivery.
    fn drop_void_top(&mut self) {
        while let Some(Reverse(top)) = self.events.peek() {
            let void = match &top.kind {
                EventKind::Deliver {
                    link, generation, ..
                } => self
                    .links
                    .get(*link)
                    .is_none_or(|l| l.generation != *generation),
                _ => false,
            };
            if !void {
                return;
            }
            if let Some(Reverse(Event {
                kind: EventKind::Deliver { packet, .. },
                ..
            })) = self.events.pop()
            {
                self.recycle(packet);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::time::Duration;

    fn v4(src: [u8; 4], dst: [u8; 4], tag: u8) -> Vec<u8> {
        let mut p = vec![0u8; 21];
        p[0] = 0x45;
        p[3] = 21;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20] = tag;
        p
    }

    fn one_path(link: LinkConfig) -> Network {
        Network::new(
            1,
            vec![PathConfig::new(
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                link,
            )],
        )
    }

    #[test]
    fn same_instant_deliveries_keep_send_order() {
        let mut net = one_path(LinkConfig::ideal(Duration::from_millis(1)));
        for tag in 0..10 {
            net.send(
                Side::A,
                Instant::ZERO,
                &v4([10, 0, 0, 1], [10, 0, 0, 2], tag),
            );
        }
        let tags: Vec<u8> = std::iter::from_fn(|| net.pop_due(Instant::from_millis(1)))
            .map(|d| d.packet[20])
            .collect();
        assert_eq!(tags, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_path_event_goes_before_a_delivery_at_the_same_instant() {
        let mut net = one_path(LinkConfig::ideal(Duration::from_millis(10)));
        net.send(Side::A, Instant::ZERO, &v4([10, 0, 0, 1], [10, 0, 0, 2], 0));
        // Scheduled after the send, still applied first.
        net.schedule_down(0, Instant::from_millis(10));
        assert_eq!(net.pop_due(Instant::from_millis(10)), None);
        assert_eq!(net.link_stats(0, Side::A).dropped_down, 1);
        assert_eq!(net.next_event(), None);
    }

    #[test]
    fn void_deliveries_do_not_show_as_next_events() {
        let mut net = one_path(LinkConfig::ideal(Duration::from_millis(10)));
        net.send(Side::A, Instant::ZERO, &v4([10, 0, 0, 1], [10, 0, 0, 2], 0));
        net.send(Side::B, Instant::ZERO, &v4([10, 0, 0, 2], [10, 0, 0, 1], 0));
        net.fail_path(0);
        assert_eq!(net.next_event(), None);
        assert_eq!(net.in_flight(), 0);
        assert_eq!(net.link_stats(0, Side::A).dropped_down, 1);
        assert_eq!(net.link_stats(0, Side::B).dropped_down, 1);
    }

    #[test]
    fn time_never_goes_backwards() {
        let mut net = one_path(LinkConfig::ideal(Duration::from_millis(10)));
        assert_eq!(net.pop_due(Instant::from_millis(50)), None);
        net.send(Side::A, Instant::ZERO, &v4([10, 0, 0, 1], [10, 0, 0, 2], 0));
        assert_eq!(net.now(), Instant::from_millis(50));
        assert_eq!(net.next_event(), Some(Instant::from_millis(60)));
    }

    #[test]
    fn buffers_are_reused() {
        let mut net = one_path(LinkConfig::ideal(Duration::ZERO));
        net.send(Side::A, Instant::ZERO, &v4([10, 0, 0, 1], [10, 0, 0, 2], 0));
        let d = net.pop_due(Instant::ZERO).unwrap();
        let ptr = d.packet.as_ptr();
        net.recycle(d.packet);
        net.send(Side::A, Instant::ZERO, &v4([10, 0, 0, 1], [10, 0, 0, 2], 1));
        let d = net.pop_due(Instant::ZERO).unwrap();
        assert_eq!(d.packet.as_ptr(), ptr);
        assert_eq!(d.packet[20], 1);
    }

    #[test]
    fn unknown_paths_are_ignored() {
        let mut net = one_path(LinkConfig::ideal(Duration::ZERO));
        net.fail_path(9);
        net.recover_path(9);
        net.schedule_down(9, Instant::ZERO);
        net.schedule_up(9, Instant::ZERO);
        net.set_link_config(9, Side::A, LinkConfig::default());
        assert!(!net.is_up(9));
        assert!(net.link_config(9, Side::B).is_none());
        assert_eq!(net.link_stats(9, Side::A), LinkStats::default());
        assert_eq!(net.next_event(), None);
    }
}
