//! Specification of the network simulator (`mptcp_stack::sim`): what each link impairment does,
//! exactly or within statistical bounds for a seed, how packets are routed, how paths fail and
//! recover, that a seed replays the same trace, and how the harness drives two nodes.
//!
//! Randomised tests take their seed from `SIM_SEED` (printed on stderr); statistical bounds are
//! wide enough (many standard deviations) to hold for any seed.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mptcp_stack::node::Node;
use mptcp_stack::sim::{
    DropReason, GilbertElliott, Harness, LinkConfig, LinkStats, Network, Outcome, PathConfig,
    SendOutcome, Side, ip_addresses, seed_from_env,
};
use smoltcp::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Packets: IPv4 or IPv6 + UDP, carrying a 32-bit sequence number.

const UDP: u8 = 17;

/// A UDP-in-IP packet of exactly `len` bytes (at least the headers and 4 bytes of payload).
fn packet(src: IpAddr, dst: IpAddr, seq: u32, len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let len = len.max(20 + 8 + 4);
            let mut p = vec![0u8; len];
            p[0] = 0x45;
            p[2..4].copy_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
            p[8] = 64;
            p[9] = UDP;
            p[12..16].copy_from_slice(&s.octets());
            p[16..20].copy_from_slice(&d.octets());
            p[24..26].copy_from_slice(&u16::try_from(len - 20).unwrap().to_be_bytes());
            p[28..32].copy_from_slice(&seq.to_be_bytes());
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = len.max(40 + 8 + 4);
            let mut p = vec![0u8; len];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&u16::try_from(len - 40).unwrap().to_be_bytes());
            p[6] = UDP;
            p[7] = 64;
            p[8..24].copy_from_slice(&s.octets());
            p[24..40].copy_from_slice(&d.octets());
            p[44..46].copy_from_slice(&u16::try_from(len - 40).unwrap().to_be_bytes());
            p[48..52].copy_from_slice(&seq.to_be_bytes());
            p
        }
        _ => panic!("mixed address families"),
    }
}

fn seq_of(p: &[u8]) -> u32 {
    let at = if p[0] >> 4 == 4 { 28 } else { 48 };
    u32::from_be_bytes(p[at..at + 4].try_into().unwrap())
}

fn v4(s: &str) -> IpAddr {
    s.parse::<Ipv4Addr>().unwrap().into()
}

fn v6(s: &str) -> IpAddr {
    s.parse::<Ipv6Addr>().unwrap().into()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at_ms(n: i64) -> Instant {
    Instant::from_millis(n)
}

// ---------------------------------------------------------------------------------------------
// Test nodes.

/// A stream of numbered packets sent at a fixed pace: packet `k` leaves at `start + k * interval`.
#[derive(Clone, Copy)]
struct Flow {
    src: IpAddr,
    dst: IpAddr,
    start: Instant,
    interval: Duration,
    count: u32,
    size: usize,
    next_seq: u32,
}

impl Flow {
    fn new(src: IpAddr, dst: IpAddr, count: u32, interval: Duration) -> Flow {
        Flow {
            src,
            dst,
            start: Instant::ZERO,
            interval,
            count,
            size: 100,
            next_seq: 0,
        }
    }

    fn size(mut self, size: usize) -> Flow {
        self.size = size;
        self
    }

    fn starting_at(mut self, start: Instant) -> Flow {
        self.start = start;
        self
    }

    fn send_time(&self, seq: u32) -> Instant {
        self.start + self.interval * seq
    }

    fn next_due(&self) -> Option<Instant> {
        (self.next_seq < self.count).then(|| self.send_time(self.next_seq))
    }
}

/// One packet as a node received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rx {
    at: Instant,
    src: IpAddr,
    dst: IpAddr,
    seq: u32,
    len: usize,
}

/// A node that sends its flows on schedule, logs what it receives and, if `echo`, answers each
/// packet with the same packet, addresses swapped.
#[derive(Default)]
struct TestNode {
    flows: Vec<Flow>,
    echo: bool,
    replies: VecDeque<Vec<u8>>,
    received: Vec<Rx>,
}

impl TestNode {
    fn sender(flows: Vec<Flow>) -> TestNode {
        TestNode {
            flows,
            ..TestNode::default()
        }
    }

    fn sink() -> TestNode {
        TestNode::default()
    }

    fn echo() -> TestNode {
        TestNode {
            echo: true,
            ..TestNode::default()
        }
    }
}

impl Node for TestNode {
    fn handle_packet(&mut self, now: Instant, p: &[u8]) {
        let (src, dst) = ip_addresses(p).expect("the network delivers only well-formed packets");
        self.received.push(Rx {
            at: now,
            src,
            dst,
            seq: seq_of(p),
            len: p.len(),
        });
        if self.echo {
            self.replies.push_back(packet(dst, src, seq_of(p), p.len()));
        }
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if let Some(reply) = self.replies.pop_front() {
            buf[..reply.len()].copy_from_slice(&reply);
            return Some(reply.len());
        }
        let flow = self
            .flows
            .iter_mut()
            .filter(|f| f.next_due().is_some_and(|t| t <= now))
            .min_by_key(|f| f.next_due())?;
        let p = packet(flow.src, flow.dst, flow.next_seq, flow.size);
        flow.next_seq += 1;
        buf[..p.len()].copy_from_slice(&p);
        Some(p.len())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.flows.iter().filter_map(Flow::next_due).min()
    }
}

/// Sends `count` packets from A at `interval` over `net` and returns what B received.
fn run_flow(net: Network, flow: Flow) -> (Vec<Rx>, Network) {
    let mut h = Harness::new(net, TestNode::sender(vec![flow]), TestNode::sink());
    assert_eq!(
        h.run_until(|_, _, _| false, at_ms(1_000_000)),
        Outcome::Stalled
    );
    let (net, _, b) = h.into_parts();
    (b.received, net)
}

const A1: &str = "10.0.1.1";
const B1: &str = "10.0.1.2";
const A2: &str = "10.0.2.1";
const B2: &str = "10.0.2.2";

fn one_path(seed: u64, link: LinkConfig) -> Network {
    Network::new(seed, vec![PathConfig::new(v4(A1), v4(B1), link)])
}

fn flow_a1_b1(count: u32, interval: Duration) -> Flow {
    Flow::new(v4(A1), v4(B1), count, interval)
}

/// Every packet is counted once: sent + duplicated = delivered + dropped + in flight.
fn assert_conserved(net: &Network) {
    for path in 0..net.paths().len() {
        for side in [Side::A, Side::B] {
            let s = net.link_stats(path, side);
            assert!(
                s.sent + s.duplicated >= s.delivered + s.dropped(),
                "path {path} {side:?}: {s:?}"
            );
        }
    }
    let total = |side| net.total_stats(side);
    let (a, b): (LinkStats, LinkStats) = (total(Side::A), total(Side::B));
    assert_eq!(
        a.sent + a.duplicated + b.sent + b.duplicated,
        a.delivered + a.dropped() + b.delivered + b.dropped() + net.in_flight()
    );
}

// ---------------------------------------------------------------------------------------------
// Delay and jitter.

#[test]
fn a_packet_sent_at_t_arrives_at_t_plus_delay() {
    let net = one_path(seed_from_env(1), LinkConfig::ideal(ms(25)));
    let flow = flow_a1_b1(100, ms(1)).starting_at(at_ms(3));
    let (rx, net) = run_flow(net, flow);
    assert_eq!(rx.len(), 100);
    for (k, r) in rx.iter().enumerate() {
        assert_eq!(r.seq, k as u32, "in order");
        assert_eq!(r.at, flow.send_time(r.seq) + ms(25));
        assert_eq!((r.src, r.dst), (v4(A1), v4(B1)));
    }
    let s = net.link_stats(0, Side::A);
    assert_eq!((s.sent, s.delivered, s.dropped()), (100, 100, 0));
    assert_eq!(s.bytes_delivered, 100 * 100);
    assert_eq!(net.link_stats(0, Side::B), LinkStats::default());
}

#[test]
fn a_round_trip_over_asymmetric_links_takes_the_sum_of_both_delays() {
    let path = PathConfig::asymmetric(
        v4(A1),
        v4(B1),
        LinkConfig::ideal(ms(10)),
        LinkConfig::ideal(ms(30)),
    );
    let net = Network::new(seed_from_env(2), vec![path]);
    let flow = flow_a1_b1(20, ms(7));
    let mut h = Harness::new(net, TestNode::sender(vec![flow]), TestNode::echo());
    let outcome = h.run_until(|a, _, _| a.received.len() == 20, at_ms(10_000));
    assert_eq!(outcome, Outcome::Satisfied);
    for r in &h.node_a().received {
        assert_eq!(r.at, flow.send_time(r.seq) + ms(40));
        assert_eq!((r.src, r.dst), (v4(B1), v4(A1)));
    }
    assert_eq!(h.now(), flow.send_time(19) + ms(40));
}

#[test]
fn jitter_adds_a_uniform_extra_delay() {
    // Packets far enough apart (50 ms) that jitter (up to 20 ms) cannot make them collide.
    let link = LinkConfig::ideal(ms(10)).with_jitter(ms(20));
    let net = one_path(seed_from_env(3), link);
    let flow = flow_a1_b1(2000, ms(50));
    let (rx, _) = run_flow(net, flow);
    assert_eq!(rx.len(), 2000);
    let mut per_ms = [0u32; 21];
    let mut total = 0;
    for r in &rx {
        let extra = (r.at - flow.send_time(r.seq)) - ms(10);
        assert!(extra <= ms(20), "{extra}");
        per_ms[extra.total_millis() as usize] += 1;
        total += extra.total_micros();
    }
    // About 100 per millisecond bucket in [0, 20) ms, and a mean of 10 ms.
    assert!(
        per_ms[..20].iter().all(|&n| (50..=150).contains(&n)),
        "{per_ms:?}"
    );
    let mean_ms = total as f64 / 2000.0 / 1000.0;
    assert!((mean_ms - 10.0).abs() < 1.0, "{mean_ms}");
}

#[test]
fn jitter_never_reorders_packets_on_a_link() {
    // Packets 1 ms apart with up to 20 ms of jitter: each waits for the one before it.
    let link = LinkConfig::ideal(ms(10)).with_jitter(ms(20));
    let net = one_path(seed_from_env(24), link);
    let flow = flow_a1_b1(2000, ms(1));
    let (rx, net) = run_flow(net, flow);
    assert_eq!(rx.len(), 2000);
    for (k, r) in rx.iter().enumerate() {
        assert_eq!(r.seq, k as u32, "FIFO order");
        let one_way = r.at - flow.send_time(r.seq);
        assert!(one_way >= ms(10) && one_way <= ms(30), "{one_way}");
    }
    assert!(
        rx.windows(2).any(|w| w[1].at - w[0].at > ms(1)),
        "jitter did something"
    );
    assert_eq!(net.link_stats(0, Side::A).reordered, 0);
}

// ---------------------------------------------------------------------------------------------
// Rate, queue, MTU.

#[test]
fn a_rate_limit_serializes_packets_back_to_back() {
    // 1000 bytes at 8 Mbit/s take exactly 1 ms on the wire.
    let link = LinkConfig::ideal(ms(10)).with_rate(8_000_000, None);
    let mut net = one_path(seed_from_env(4), link);
    for seq in 0..100 {
        let p = packet(v4(A1), v4(B1), seq, 1000);
        assert_eq!(
            net.send(Side::A, Instant::ZERO, &p),
            SendOutcome::Accepted { path: 0 }
        );
    }
    let mut k = 0;
    while let Some(t) = net.next_event() {
        let d = net.pop_due(t).unwrap();
        assert_eq!(seq_of(&d.packet), k);
        assert_eq!(
            d.at,
            at_ms(i64::from(k) + 1) + ms(10),
            "serialization then delay"
        );
        k += 1;
    }
    assert_eq!(k, 100);
    // 100 kB in 100 ms of serialization: exactly the configured 8 Mbit/s.
    assert_eq!(net.link_stats(0, Side::A).bytes_delivered, 100_000);
}

#[test]
fn an_overloaded_link_delivers_at_its_rate_and_drops_the_excess() {
    // Offered 20 Mbit/s (1250-byte packets every 0.5 ms) to a 10 Mbit/s link with a 25 kB queue.
    let link = LinkConfig::ideal(ms(20)).with_rate(10_000_000, Some(25_000));
    let net = one_path(seed_from_env(5), link);
    let flow = flow_a1_b1(4000, Duration::from_micros(500)).size(1250);
    let (rx, net) = run_flow(net, flow);
    let s = net.link_stats(0, Side::A);
    // Over the 2 s of sending the link carries 1000 packets/s: ~2000 plus the queue's 20.
    assert!((2000..=2021).contains(&rx.len()), "{}", rx.len());
    assert_eq!(s.dropped_queue + s.delivered, 4000);
    // Goodput between the first and the last arrival is the link rate.
    let span = rx.last().unwrap().at - rx.first().unwrap().at;
    let bits = (rx.len() as u64 - 1) * 1250 * 8;
    let rate = bits as f64 / (span.total_micros() as f64 / 1e6);
    assert!((rate - 10e6).abs() < 1e3, "{rate}");
    // The queue bounds the delay: at most 20 packets (25 kB) of 1 ms each, plus the wire.
    for r in &rx {
        assert!(r.at - flow.send_time(r.seq) <= ms(20 + 21));
    }
}

#[test]
fn a_full_queue_drops_the_tail() {
    let link = LinkConfig::ideal(ms(1)).with_rate(8_000_000, Some(10_000));
    let mut net = one_path(seed_from_env(6), link);
    let outcomes: Vec<SendOutcome> = (0..100)
        .map(|seq| net.send(Side::A, Instant::ZERO, &packet(v4(A1), v4(B1), seq, 1000)))
        .collect();
    assert!(
        outcomes[..10]
            .iter()
            .all(|o| *o == SendOutcome::Accepted { path: 0 })
    );
    assert!(outcomes[10..].iter().all(|o| *o
        == SendOutcome::Dropped {
            path: Some(0),
            reason: DropReason::Queue
        }));
    let seqs: Vec<u32> = std::iter::from_fn(|| net.pop_due(at_ms(1000)))
        .map(|d| seq_of(&d.packet))
        .collect();
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    let s = net.link_stats(0, Side::A);
    assert_eq!((s.sent, s.delivered, s.dropped_queue), (100, 10, 90));
    // Once drained the queue accepts packets again.
    assert_eq!(
        net.send(Side::A, at_ms(1000), &packet(v4(A1), v4(B1), 100, 1000)),
        SendOutcome::Accepted { path: 0 }
    );
}

#[test]
fn packets_larger_than_the_mtu_are_dropped_and_counted() {
    let link = LinkConfig::ideal(ms(1)).with_mtu(1280);
    let mut net = one_path(seed_from_env(7), link);
    let fits = packet(v4(A1), v4(B1), 0, 1280);
    let too_big = packet(v4(A1), v4(B1), 1, 1281);
    assert_eq!(
        net.send(Side::A, Instant::ZERO, &fits),
        SendOutcome::Accepted { path: 0 }
    );
    assert_eq!(
        net.send(Side::A, Instant::ZERO, &too_big),
        SendOutcome::Dropped {
            path: Some(0),
            reason: DropReason::Mtu
        }
    );
    assert_eq!(net.link_stats(0, Side::A).dropped_mtu, 1);
    assert_eq!(net.pop_due(at_ms(1)).map(|d| d.packet), Some(fits));
    assert_eq!(net.pop_due(at_ms(1000)), None);
}

// ---------------------------------------------------------------------------------------------
// Loss, duplication, reordering.

#[test]
fn independent_loss_matches_its_probability() {
    let link = LinkConfig::ideal(ms(5)).with_loss(0.10);
    let net = one_path(seed_from_env(8), link);
    let (rx, net) = run_flow(net, flow_a1_b1(10_000, ms(1)));
    let s = net.link_stats(0, Side::A);
    assert!((800..=1200).contains(&s.dropped_loss), "{s:?}");
    assert_eq!(rx.len() as u64 + s.dropped_loss, 10_000);
    assert_eq!(s.delivered, rx.len() as u64);
}

/// Lengths of the runs of consecutive missing sequence numbers in `0..count`.
fn loss_bursts(rx: &[Rx], count: u32) -> Vec<u32> {
    let mut got = vec![false; count as usize];
    for r in rx {
        got[r.seq as usize] = true;
    }
    let mut bursts = Vec::new();
    let mut run = 0;
    for g in got {
        if g {
            if run > 0 {
                bursts.push(run);
            }
            run = 0;
        } else {
            run += 1;
        }
    }
    if run > 0 {
        bursts.push(run);
    }
    bursts
}

fn mean(v: &[u32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64
}

#[test]
fn gilbert_elliott_loss_comes_in_bursts() {
    // Bad state: entered 1% of packets, left after 4 packets on average, loses everything.
    let burst = GilbertElliott {
        p_good_to_bad: 0.01,
        p_bad_to_good: 0.25,
        loss_in_bad: 1.0,
    };
    let seed = seed_from_env(9);
    let bursty = one_path(seed, LinkConfig::ideal(ms(5)).with_burst(burst));
    let (rx, net) = run_flow(bursty, flow_a1_b1(20_000, ms(1)));
    let lost = net.link_stats(0, Side::A).dropped_loss;
    let bursts = loss_bursts(&rx, 20_000);
    assert_eq!(bursts.iter().map(|&b| u64::from(b)).sum::<u64>(), lost);
    // Stationary loss rate 0.01 / (0.01 + 0.25) ~ 3.8%, in bursts of 4 on average.
    assert!((400..=1200).contains(&lost), "{lost}");
    assert!(mean(&bursts) > 2.5, "mean burst {}", mean(&bursts));

    // The same average loss without the burst model: bursts of about one packet.
    let rate = lost as f64 / 20_000.0;
    let uniform = one_path(seed, LinkConfig::ideal(ms(5)).with_loss(rate));
    let (rx, _) = run_flow(uniform, flow_a1_b1(20_000, ms(1)));
    let bursts = loss_bursts(&rx, 20_000);
    assert!(mean(&bursts) < 1.2, "mean burst {}", mean(&bursts));
}

#[test]
fn duplicates_are_delivered_twice_and_counted() {
    let link = LinkConfig::ideal(ms(5)).with_duplicate(0.10);
    let net = one_path(seed_from_env(10), link);
    let (rx, net) = run_flow(net, flow_a1_b1(10_000, ms(1)));
    let s = net.link_stats(0, Side::A);
    assert!((800..=1200).contains(&s.duplicated), "{s:?}");
    assert_eq!(s.delivered, 10_000 + s.duplicated);
    assert_eq!(rx.len() as u64, s.delivered);
    let mut copies = BTreeMap::<u32, u32>::new();
    for r in &rx {
        *copies.entry(r.seq).or_default() += 1;
    }
    assert_eq!(copies.len(), 10_000, "every packet arrives");
    assert_eq!(
        copies.values().filter(|&&c| c == 2).count() as u64,
        s.duplicated
    );
    assert!(copies.values().all(|&c| c <= 2));
    // A duplicate arrives right after its original.
    for pair in rx.windows(2) {
        if pair[0].seq == pair[1].seq {
            assert_eq!(pair[0].at, pair[1].at);
        }
    }
}

#[test]
fn reordered_packets_are_overtaken_and_counted() {
    let link = LinkConfig::ideal(ms(10)).with_reorder(0.10, ms(5));
    let net = one_path(seed_from_env(11), link);
    let flow = flow_a1_b1(10_000, ms(1));
    let (rx, net) = run_flow(net, flow);
    let s = net.link_stats(0, Side::A);
    assert!((800..=1200).contains(&s.reordered), "{s:?}");
    assert_eq!(rx.len(), 10_000, "reordering loses nothing");
    let late = rx
        .iter()
        .filter(|r| r.at == flow.send_time(r.seq) + ms(15))
        .count();
    assert_eq!(late as u64, s.reordered);
    let overtaken = rx.windows(2).filter(|w| w[0].seq > w[1].seq).count();
    assert!(overtaken > 0 && overtaken as u64 <= s.reordered);
    // Everything else is exactly on time.
    assert!(
        rx.iter()
            .all(|r| r.at == flow.send_time(r.seq) + ms(10)
                || r.at == flow.send_time(r.seq) + ms(15))
    );
}

// ---------------------------------------------------------------------------------------------
// Path failure.

#[test]
fn a_scheduled_outage_drops_in_flight_and_new_packets_until_the_path_is_up() {
    let mut net = one_path(seed_from_env(12), LinkConfig::ideal(ms(10)));
    net.schedule_down(0, at_ms(50));
    net.schedule_up(0, at_ms(100));
    let (rx, net) = run_flow(net, flow_a1_b1(150, ms(1)));
    let seqs: Vec<u32> = rx.iter().map(|r| r.seq).collect();
    // Sent at 0..40 ms: arrived by 49 ms. Sent at 40..50 ms: in flight at 50 ms, lost. Sent
    // while down: lost. Sent from 100 ms on: delivered.
    let expected: Vec<u32> = (0..40).chain(100..150).collect();
    assert_eq!(seqs, expected);
    let s = net.link_stats(0, Side::A);
    assert_eq!((s.sent, s.delivered, s.dropped_down), (150, 90, 60));
    assert!(net.is_up(0));
}

#[test]
fn a_path_can_be_failed_and_recovered_in_reaction_to_progress() {
    let net = one_path(seed_from_env(13), LinkConfig::ideal(ms(10)));
    let flow = flow_a1_b1(1000, ms(1));
    let mut h = Harness::new(net, TestNode::sender(vec![flow]), TestNode::sink());
    let got = |n: usize| move |_: &mut TestNode, b: &mut TestNode, _| b.received.len() >= n;

    assert_eq!(h.run_until(got(30), at_ms(10_000)), Outcome::Satisfied);
    assert_eq!(h.now(), at_ms(29 + 10));
    h.network_mut().fail_path(0);
    assert!(!h.network().is_up(0));
    assert_eq!(h.run_for(ms(100)), Outcome::DeadlineReached);
    assert_eq!(
        h.node_b().received.len(),
        30,
        "nothing crosses a failed path"
    );
    assert_eq!(h.now(), at_ms(139));

    h.network_mut().recover_path(0);
    assert_eq!(h.run_until(got(31), at_ms(10_000)), Outcome::Satisfied);
    let first_after = h.node_b().received[30];
    // The packet of 139 ms left while the path was still down; the next one, sent at 140 ms,
    // is the first to cross again.
    assert_eq!(first_after.seq, 140);
    assert_eq!(first_after.at, at_ms(150));
    let s = h.network().link_stats(0, Side::A);
    assert_eq!(s.dropped_down, 140 - 30);
}

#[test]
fn an_outage_drops_both_directions_and_queued_packets() {
    let link = LinkConfig::ideal(ms(10)).with_rate(8_000_000, None);
    let mut net = one_path(seed_from_env(14), link);
    for seq in 0..20 {
        net.send(Side::A, Instant::ZERO, &packet(v4(A1), v4(B1), seq, 1000));
        net.send(Side::B, Instant::ZERO, &packet(v4(B1), v4(A1), seq, 1000));
    }
    // At 15 ms, packets 0..5 have arrived, 5..15 are on the wire, 15..20 still queued.
    let mut before = 0;
    while net.pop_due(at_ms(15)).is_some() {
        before += 1;
    }
    assert_eq!(before, 2 * 5);
    net.fail_path(0);
    assert_eq!(net.in_flight(), 0);
    assert_eq!(net.next_event(), None);
    for side in [Side::A, Side::B] {
        assert_eq!(net.link_stats(0, side).dropped_down, 15);
    }
    net.recover_path(0);
    // The queue was flushed: a new packet goes straight onto the wire.
    net.send(Side::A, at_ms(15), &packet(v4(A1), v4(B1), 99, 1000));
    assert_eq!(net.next_event(), Some(at_ms(15 + 1 + 10)));
    assert_conserved(&net);
}

// ---------------------------------------------------------------------------------------------
// Determinism.

type Trace = Vec<(Instant, Side, usize, u32)>;

fn impaired_trace(seed: u64) -> Trace {
    let link = LinkConfig::ideal(ms(10))
        .with_jitter(ms(3))
        .with_loss(0.05)
        .with_duplicate(0.05)
        .with_reorder(0.05, ms(4))
        .with_rate(50_000_000, Some(30_000));
    let paths = vec![
        PathConfig::new(v4(A1), v4(B1), link),
        PathConfig::new(v4(A2), v4(B2), link.with_delay(ms(30))),
    ];
    let mut net = Network::new(seed, paths);
    let mut trace = Trace::new();
    for k in 0..3000u32 {
        let now = Instant::from_micros(i64::from(k) * 200);
        while let Some(d) = net.pop_due(now) {
            trace.push((d.at, d.to, d.path, seq_of(&d.packet)));
            net.recycle(d.packet);
        }
        let (src, dst) = if k % 3 == 0 { (A2, B2) } else { (A1, B1) };
        net.send(Side::A, now, &packet(v4(src), v4(dst), k, 1200));
        net.send(Side::B, now, &packet(v4(dst), v4(src), k, 600));
    }
    while let Some(t) = net.next_event() {
        let d = net.pop_due(t).unwrap();
        trace.push((d.at, d.to, d.path, seq_of(&d.packet)));
    }
    assert_conserved(&net);
    trace
}

#[test]
fn the_same_seed_replays_the_same_trace() {
    let seed = seed_from_env(15);
    let first = impaired_trace(seed);
    assert!(first.len() > 5000);
    assert_eq!(first, impaired_trace(seed));
}

#[test]
fn different_seeds_give_different_traces() {
    let seed = seed_from_env(16);
    assert_ne!(impaired_trace(seed), impaired_trace(seed.wrapping_add(1)));
}

#[test]
fn seed_from_env_uses_sim_seed_or_the_default() {
    let expected = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(42);
    assert_eq!(seed_from_env(42), expected);
}

// ---------------------------------------------------------------------------------------------
// Routing.

fn two_paths(seed: u64) -> Network {
    Network::new(
        seed,
        vec![
            PathConfig::new(v4(A1), v4(B1), LinkConfig::ideal(ms(10))),
            PathConfig::new(v4(A2), v4(B2), LinkConfig::ideal(ms(40))),
        ],
    )
}

#[test]
fn packets_take_the_path_of_their_addresses_both_ways() {
    let flows = vec![
        Flow::new(v4(A1), v4(B1), 50, ms(2)),
        Flow::new(v4(A2), v4(B2), 50, ms(2)).starting_at(at_ms(1)),
    ];
    let mut h = Harness::new(
        two_paths(seed_from_env(17)),
        TestNode::sender(flows.clone()),
        TestNode::echo(),
    );
    assert_eq!(
        h.run_until(|a, _, _| a.received.len() == 100, at_ms(10_000)),
        Outcome::Satisfied
    );
    for r in &h.node_b().received {
        let (flow, delay) = if r.dst == v4(B1) {
            (flows[0], 10)
        } else {
            (flows[1], 40)
        };
        assert_eq!(r.src, flow.src);
        assert_eq!(r.at, flow.send_time(r.seq) + ms(delay));
    }
    for r in &h.node_a().received {
        let (flow, rtt) = if r.src == v4(B1) {
            (flows[0], 20)
        } else {
            (flows[1], 80)
        };
        assert_eq!(r.dst, flow.src, "the reply comes back on the same path");
        assert_eq!(r.at, flow.send_time(r.seq) + ms(rtt));
    }
    let net = h.network();
    for (path, side) in [(0, Side::A), (0, Side::B), (1, Side::A), (1, Side::B)] {
        assert_eq!(
            net.link_stats(path, side).delivered,
            50,
            "path {path} {side:?}"
        );
    }
}

#[test]
fn the_source_address_chooses_between_paths_to_the_same_destination() {
    // Two paths from A to the same address of B (like two local interfaces to one server).
    let mut net = Network::new(
        seed_from_env(18),
        vec![
            PathConfig::new(v4(A1), v4(B1), LinkConfig::ideal(ms(10))),
            PathConfig::new(v4(A2), v4(B1), LinkConfig::ideal(ms(40))),
        ],
    );
    let via = |net: &mut Network, from, src, dst| {
        net.send(from, Instant::ZERO, &packet(v4(src), v4(dst), 0, 100))
    };
    assert_eq!(
        via(&mut net, Side::A, A1, B1),
        SendOutcome::Accepted { path: 0 }
    );
    assert_eq!(
        via(&mut net, Side::A, A2, B1),
        SendOutcome::Accepted { path: 1 }
    );
    assert_eq!(
        via(&mut net, Side::B, B1, A1),
        SendOutcome::Accepted { path: 0 }
    );
    assert_eq!(
        via(&mut net, Side::B, B1, A2),
        SendOutcome::Accepted { path: 1 }
    );
}

#[test]
fn an_unknown_source_falls_back_to_the_destination_and_an_unknown_destination_is_unroutable() {
    let mut net = two_paths(seed_from_env(19));
    let send = |net: &mut Network, from, src, dst| {
        net.send(from, Instant::ZERO, &packet(v4(src), v4(dst), 0, 100))
    };
    assert_eq!(
        send(&mut net, Side::A, "192.0.2.1", B2),
        SendOutcome::Accepted { path: 1 }
    );
    assert_eq!(
        send(&mut net, Side::B, "192.0.2.1", A1),
        SendOutcome::Accepted { path: 0 }
    );
    // A's packet to one of A's own addresses, and to nowhere.
    let unroutable = SendOutcome::Dropped {
        path: None,
        reason: DropReason::Unroutable,
    };
    assert_eq!(send(&mut net, Side::A, A1, A2), unroutable);
    assert_eq!(send(&mut net, Side::B, B1, "192.0.2.9"), unroutable);
    assert_eq!(net.unroutable(), 2);
    let d = net.pop_due(at_ms(100)).unwrap();
    assert_eq!((d.to, d.path), (Side::A, 0));
}

#[test]
fn ipv6_paths_carry_ipv6_packets() {
    let paths = vec![
        PathConfig::new(
            v6("2001:db8:101::1"),
            v6("2001:db8:1::2"),
            LinkConfig::ideal(ms(10)),
        ),
        PathConfig::new(
            v6("2001:db8:102::1"),
            v6("2001:db8:2::2"),
            LinkConfig::ideal(ms(20)),
        ),
        PathConfig::new(v4(A1), v4(B1), LinkConfig::ideal(ms(30))),
    ];
    let flows = vec![
        Flow::new(v6("2001:db8:101::1"), v6("2001:db8:1::2"), 10, ms(1)),
        Flow::new(v6("2001:db8:102::1"), v6("2001:db8:2::2"), 10, ms(1)).size(1500),
        Flow::new(v4(A1), v4(B1), 10, ms(1)),
    ];
    let mut h = Harness::new(
        Network::new(seed_from_env(20), paths),
        TestNode::sender(flows),
        TestNode::echo(),
    );
    assert_eq!(
        h.run_until(|a, _, _| a.received.len() == 30, at_ms(1000)),
        Outcome::Satisfied
    );
    for (path, delay) in [(0, 10), (1, 20), (2, 30)] {
        assert_eq!(h.network().link_stats(path, Side::A).delivered, 10);
        assert_eq!(h.network().link_stats(path, Side::B).delivered, 10);
        let rtts: Vec<Duration> = h
            .node_a()
            .received
            .iter()
            .filter(|r| r.dst == h.network().paths()[path].a)
            .map(|r| r.at - (Instant::ZERO + ms(u64::from(r.seq))))
            .collect();
        assert_eq!(rtts, vec![ms(2 * delay); 10]);
    }
    assert!(h.node_b().received.iter().any(|r| r.len == 1500));
}

// ---------------------------------------------------------------------------------------------
// Malformed input.

#[test]
fn malformed_packets_are_dropped_and_counted_without_panicking() {
    let mut net = two_paths(seed_from_env(21));
    let good = packet(v4(A1), v4(B1), 0, 100);
    let mut bad_version = good.clone();
    bad_version[0] = 0x55;
    let mut truncated = good.clone();
    truncated.truncate(60);
    let malformed: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x45],
        good[..19].to_vec(),
        bad_version,
        truncated,
        packet(v6("2001:db8::1"), v6("2001:db8::2"), 0, 100)[..39].to_vec(),
    ];
    for p in &malformed {
        assert_eq!(
            net.send(Side::A, Instant::ZERO, p),
            SendOutcome::Dropped {
                path: None,
                reason: DropReason::Malformed
            }
        );
    }
    assert_eq!(net.malformed(), malformed.len() as u64);
    assert_eq!(net.next_event(), None);
    assert_eq!(net.total_stats(Side::A).sent, 0);
}

#[test]
fn arbitrary_bytes_never_panic() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let seed = seed_from_env(22);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut net = two_paths(seed);
    let mut buf = [0u8; 128];
    for k in 0..20_000i64 {
        let len = (rng.next_u32() % 129) as usize;
        rng.fill_bytes(&mut buf[..len]);
        // Make about half of them look like IPv4 or IPv6 to go deeper.
        if len > 0 && k % 2 == 0 {
            buf[0] = if k % 4 == 0 { 0x45 } else { 0x60 };
        }
        let side = if k % 3 == 0 { Side::B } else { Side::A };
        let _ = net.send(side, Instant::from_micros(k), &buf[..len]);
        while net.pop_due(Instant::from_micros(k)).is_some() {}
    }
    assert!(net.malformed() > 0);
    assert_conserved(&net);
}

// ---------------------------------------------------------------------------------------------
// Harness outcomes and scale.

#[test]
fn the_harness_reports_a_stall_when_nothing_is_left_to_happen() {
    let mut h = Harness::new(two_paths(1), TestNode::sink(), TestNode::sink());
    assert_eq!(h.run_until(|_, _, _| false, at_ms(1000)), Outcome::Stalled);
    assert_eq!(h.now(), Instant::ZERO);
    // Satisfied is checked before any work.
    assert!(h.run_until(|_, _, _| true, at_ms(1000)).is_satisfied());
}

#[test]
fn the_harness_stops_at_the_deadline_and_resumes_from_it() {
    let net = one_path(1, LinkConfig::ideal(ms(10)));
    let flow = flow_a1_b1(100, ms(1));
    let mut h = Harness::new(net, TestNode::sender(vec![flow]), TestNode::sink());
    assert_eq!(
        h.run_until(|_, _, _| false, at_ms(50)),
        Outcome::DeadlineReached
    );
    assert_eq!(h.now(), at_ms(50));
    // Everything due at the deadline itself has happened.
    assert_eq!(h.node_b().received.len(), 41);
    assert_eq!(
        h.run_until(|_, _, _| false, at_ms(10_000)),
        Outcome::Stalled
    );
    assert_eq!(h.node_b().received.len(), 100);
    assert_eq!(h.now(), at_ms(99 + 10));
}

/// A node whose timer is always due: a bug the harness must report, not spin on.
struct StuckTimer;

impl Node for StuckTimer {
    fn handle_packet(&mut self, _: Instant, _: &[u8]) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_transmit(&mut self, _: Instant, _: &mut [u8]) -> Option<usize> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Some(Instant::ZERO)
    }
}

#[test]
fn the_harness_reports_a_livelock() {
    let mut h = Harness::new(two_paths(1), StuckTimer, TestNode::sink());
    assert_eq!(h.run_until(|_, _, _| false, at_ms(1000)), Outcome::Livelock);
}

#[test]
fn the_harness_moves_tens_of_megabytes_over_two_paths() {
    // 2 x 12 000 packets of 1500 bytes (36 MB) at 1 Gbit/s per path, with loss.
    let link = LinkConfig::ideal(ms(5))
        .with_rate(1_000_000_000, Some(1 << 20))
        .with_loss(0.001);
    let paths = vec![
        PathConfig::new(v4(A1), v4(B1), link),
        PathConfig::new(v4(A2), v4(B2), link.with_delay(ms(15))),
    ];
    let flows = vec![
        Flow::new(v4(A1), v4(B1), 12_000, Duration::from_micros(12)).size(1500),
        Flow::new(v4(A2), v4(B2), 12_000, Duration::from_micros(12)).size(1500),
    ];
    let mut h = Harness::new(
        Network::new(seed_from_env(23), paths),
        TestNode::sender(flows),
        TestNode::sink(),
    );
    assert_eq!(
        h.run_until(|_, _, _| false, at_ms(10_000)),
        Outcome::Stalled
    );
    let s = h.network().total_stats(Side::A);
    assert_eq!(s.sent, 24_000);
    assert_eq!(s.delivered + s.dropped_loss, 24_000);
    assert_eq!(s.bytes_delivered, s.delivered * 1500);
    assert_eq!(h.node_b().received.len() as u64, s.delivered);
    assert_conserved(h.network());
}

// ---------------------------------------------------------------------------------------------
// Shared bottlenecks.

/// 10 Mbit/s with a 25 kB drop-tail queue, no delay of its own.
const BOTTLENECK_BPS: u64 = 10_000_000;

fn shared_bottleneck_link() -> LinkConfig {
    LinkConfig::ideal(Duration::ZERO).with_rate(BOTTLENECK_BPS, Some(25_000))
}

/// Two paths with their own delays (10 ms and 30 ms, no rate limit) whose A-to-B directions
/// share `bottleneck`.
fn two_paths_sharing(seed: u64, bottleneck: LinkConfig) -> Network {
    let mut net = Network::new(
        seed,
        vec![
            PathConfig::new(v4(A1), v4(B1), LinkConfig::ideal(ms(10))),
            PathConfig::new(v4(A2), v4(B2), LinkConfig::ideal(ms(30))),
        ],
    );
    assert_eq!(net.share_bottleneck(&[0, 1], Side::A, bottleneck), 0);
    net
}

/// Sends `flows` from A and returns what B received.
fn run_flows(net: Network, flows: Vec<Flow>) -> (Vec<Rx>, Network) {
    let mut h = Harness::new(net, TestNode::sender(flows), TestNode::sink());
    assert_eq!(
        h.run_until(|_, _, _| false, at_ms(1_000_000)),
        Outcome::Stalled
    );
    let (net, _, b) = h.into_parts();
    (b.received, net)
}

/// Bits per second delivered from the first arrival to the last.
fn goodput(rx: &[Rx]) -> f64 {
    let span = rx.last().unwrap().at - rx.first().unwrap().at;
    let bits: usize = rx[1..].iter().map(|r| r.len * 8).sum();
    bits as f64 / (span.total_micros() as f64 / 1e6)
}

/// 1250-byte packets every 0.5 ms for 2 s: 20 Mbit/s, twice the bottleneck.
fn overload(src: &str, dst: &str) -> Flow {
    Flow::new(v4(src), v4(dst), 4000, Duration::from_micros(500)).size(1250)
}

#[test]
fn packets_cross_the_shared_bottleneck_in_send_order_then_their_own_path() {
    // 1000 bytes at 8 Mbit/s take 1 ms; the bottleneck adds 5 ms of its own.
    let bottleneck = LinkConfig::ideal(ms(5)).with_rate(8_000_000, None);
    let mut net = two_paths_sharing(seed_from_env(30), bottleneck);
    net.send(Side::A, Instant::ZERO, &packet(v4(A1), v4(B1), 0, 1000));
    net.send(Side::A, Instant::ZERO, &packet(v4(A2), v4(B2), 1, 1000));
    net.send(Side::B, Instant::ZERO, &packet(v4(B2), v4(A2), 2, 1000));
    let arrivals: Vec<(Instant, usize, u32)> = std::iter::from_fn(|| net.pop_due(at_ms(1000)))
        .map(|d| (d.at, d.path, seq_of(&d.packet)))
        .collect();
    assert_eq!(
        arrivals,
        vec![
            // Serialized for 1 ms, 5 ms through the bottleneck, 10 ms on path 0.
            (at_ms(1 + 5 + 10), 0, 0),
            // B's packet does not cross the bottleneck: only path 1's 30 ms.
            (at_ms(30), 1, 2),
            // Waits 1 ms behind path 0's packet at the shared serializer.
            (at_ms(2 + 5 + 30), 1, 1),
        ]
    );
    let b = net.bottleneck_stats(0);
    assert_eq!((b.sent, b.delivered, b.bytes_delivered), (2, 2, 2000));
    assert_eq!(net.bottleneck_stats(7), LinkStats::default());
}

#[test]
fn two_paths_sharing_a_bottleneck_together_get_only_its_rate() {
    let net = two_paths_sharing(seed_from_env(31), shared_bottleneck_link());
    let (rx, net) = run_flows(net, vec![overload(A1, B1), overload(A2, B2)]);
    // 40 Mbit/s offered in total to 10 Mbit/s: together the paths get 10 Mbit/s.
    let rate = goodput(&rx);
    assert!((rate / BOTTLENECK_BPS as f64 - 1.0).abs() < 0.01, "{rate}");
    let on = |path: &str| rx.iter().filter(|r| r.dst == v4(path)).count();
    // How the rate splits is not specified: with two strictly periodic senders in phase, a
    // drop-tail queue has room for one packet per slot and path 0's, sent first, takes it.
    eprintln!("path 0: {} packets, path 1: {} packets", on(B1), on(B2));
    // 2 s at 1000 packets/s, plus the queue's 20.
    assert!(
        (2000..=2021).contains(&(on(B1) + on(B2))),
        "{} + {}",
        on(B1),
        on(B2)
    );
    // The excess was dropped at the shared queue and counted on both stages.
    let b = net.bottleneck_stats(0);
    let (s0, s1) = (net.link_stats(0, Side::A), net.link_stats(1, Side::A));
    assert_eq!(b.sent, 8000);
    assert_eq!(b.dropped_queue, s0.dropped_queue + s1.dropped_queue);
    assert_eq!(b.delivered + b.dropped_queue, 8000);
    assert_eq!(s0.delivered + s1.delivered, b.delivered);
    assert_conserved(&net);
}

#[test]
fn a_path_alone_on_a_shared_bottleneck_gets_all_of_it() {
    for (src, dst) in [(A1, B1), (A2, B2)] {
        let net = two_paths_sharing(seed_from_env(32), shared_bottleneck_link());
        let (rx, net) = run_flows(net, vec![overload(src, dst)]);
        let rate = goodput(&rx);
        assert!(
            (rate / BOTTLENECK_BPS as f64 - 1.0).abs() < 0.01,
            "{src}: {rate}"
        );
        assert!((2000..=2021).contains(&rx.len()), "{}", rx.len());
        assert_conserved(&net);
    }
}

#[test]
fn the_reverse_direction_and_other_paths_do_not_share_the_bottleneck() {
    let mut net = Network::new(
        seed_from_env(33),
        vec![
            PathConfig::new(v4(A1), v4(B1), LinkConfig::ideal(ms(10))),
            PathConfig::new(v4(A2), v4(B2), LinkConfig::ideal(ms(10))),
        ],
    );
    net.share_bottleneck(&[0, 9], Side::A, shared_bottleneck_link());
    // Path 1 carries its overload at its own (unlimited) speed; path 0 at the bottleneck's.
    let (rx, net) = run_flows(net, vec![overload(A1, B1), overload(A2, B2)]);
    let on_b2 = rx.iter().filter(|r| r.dst == v4(B2)).count();
    assert_eq!(on_b2, 4000);
    let on_b1 = rx.iter().filter(|r| r.dst == v4(B1)).count();
    assert!((2000..=2021).contains(&on_b1), "{on_b1}");
    assert_eq!(net.link_stats(1, Side::A).dropped(), 0);
}

fn lossy_bottleneck_trace(seed: u64) -> (Vec<(Instant, IpAddr, u32)>, LinkStats) {
    let bottleneck = shared_bottleneck_link()
        .with_loss(0.02)
        .with_jitter(Duration::from_micros(300));
    let net = two_paths_sharing(seed, bottleneck);
    let (rx, net) = run_flows(net, vec![overload(A1, B1), overload(A2, B2)]);
    assert_conserved(&net);
    let trace = rx.iter().map(|r| (r.at, r.dst, r.seq)).collect();
    (trace, net.bottleneck_stats(0))
}

#[test]
fn a_shared_bottleneck_replays_the_same_trace_for_the_same_seed() {
    let seed = seed_from_env(34);
    let (first, stats) = lossy_bottleneck_trace(seed);
    assert!(
        stats.dropped_loss > 0 && stats.dropped_queue > 0,
        "{stats:?}"
    );
    assert_eq!((first.clone(), stats), lossy_bottleneck_trace(seed));
    assert_ne!(first, lossy_bottleneck_trace(seed.wrapping_add(1)).0);
}
