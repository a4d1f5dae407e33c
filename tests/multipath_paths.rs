//! Multipath behaviour over the simulator: the full-mesh path manager with ADD_ADDR, REMOVE_ADDR
//! and MP_PRIO; aggregation of equal and unequal paths; failover after a silent path failure and
//! after a link-down notice, and the return of the path; backups; the redundant scheduler's
//! latency under loss; mixed IPv4/IPv6 paths; forged ADD_ADDR.
//!
//! Every transfer is verified byte for byte. The measured figures (goodput, time back to 90 % of
//! the surviving path's rate, longest delivery gap) are printed; run with `--nocapture` to see
//! them, and `SIM_SEED=n` to replay another seed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mptcp_stack::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, Event};
use mptcp_stack::mptcp::SchedulerKind;
use mptcp_stack::mptcp::pm::{AddrFlags, PathManagerKind};
use mptcp_stack::node::{Duration, Instant};
use mptcp_stack::sim::{
    Harness, LinkConfig, Network, PathConfig, Side, refill_tcp_checksum, seed_from_env,
};
use mptcp_stack::wire::{IpSegment, MptcpRepr};

const A1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const A2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 102, 1));
const B1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
const B2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2));
const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x102, 0, 0, 0, 0, 1));
const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2));
const PORT: u16 = 5201;

/// A rate-limited link with `delay_ms` one way and a queue of one bandwidth-delay product.
fn link(rate_mbit: u64, delay_ms: u64) -> LinkConfig {
    let rate = rate_mbit * 1_000_000;
    let bdp = rate / 8 * (2 * delay_ms) / 1000;
    LinkConfig::ideal(Duration::from_millis(delay_ms)).with_rate(rate, Some(bdp.max(64 * 1500)))
}

struct Setup {
    h: Harness<Endpoint, Endpoint>,
    ca: ConnectionHandle,
    cb: ConnectionHandle,
}

/// Client A (addresses `a_addrs`) connects from the first to server B's first address; B owns
/// `b_addrs` and announces the others (full mesh on both sides). Returns once the connection
/// is established and both paths' subflows had time to join.
fn setup(
    paths: Vec<PathConfig>,
    a_addrs: &[(IpAddr, AddrFlags)],
    b_addrs: &[IpAddr],
    seed: u64,
    tweak: impl Fn(&mut EndpointConfig),
) -> Setup {
    let net = Network::new(seed, paths);
    let mut cfg_a = EndpointConfig {
        seed: seed.wrapping_mul(31).wrapping_add(11),
        ..EndpointConfig::seeded(0)
    };
    let mut cfg_b = EndpointConfig {
        seed: seed.wrapping_mul(31).wrapping_add(22),
        ..EndpointConfig::seeded(0)
    };
    tweak(&mut cfg_a);
    tweak(&mut cfg_b);
    let mut a = Endpoint::new(cfg_a);
    let mut b = Endpoint::new(cfg_b);
    for &(addr, flags) in a_addrs {
        a.add_address_with(addr, flags);
    }
    for &addr in b_addrs {
        b.add_address(addr);
    }
    b.listen(PORT);
    let mut h = Harness::new(net, a, b);
    let ca = h
        .node_a_mut()
        .connect(
            SocketAddr::new(a_addrs[0].0, 0),
            SocketAddr::new(b_addrs[0], PORT),
        )
        .unwrap();
    let mut cb = None;
    let outcome = h.run_until(
        |_, b, _| {
            while let Some(ev) = b.poll_event() {
                if let Event::Accepted(x) = ev {
                    cb = Some(x);
                }
            }
            cb.is_some()
        },
        Instant::from_secs(5),
    );
    assert!(outcome.is_satisfied());
    let _ = h.run_for(Duration::from_millis(300));
    Setup {
        h,
        ca,
        cb: cb.unwrap(),
    }
}

fn two_path_setup(p1: LinkConfig, p2: LinkConfig, seed: u64) -> Setup {
    setup(
        vec![PathConfig::new(A1, B1, p1), PathConfig::new(A2, B2, p2)],
        &[(A1, AddrFlags::default()), (A2, AddrFlags::default())],
        &[B1, B2],
        seed,
        |_| {},
    )
}

/// Subflows of a connection that are established, joined and not stale.
fn active_subflows(e: &Endpoint, h: ConnectionHandle) -> Vec<(IpAddr, IpAddr)> {
    e.mptcp(h)
        .unwrap()
        .subflows()
        .iter()
        .filter(|s| s.is_active())
        .map(|s| (s.tcp().local().ip(), s.tcp().remote().ip()))
        .collect()
}

/// One bulk transfer A -> B of the pattern `i % 251`, verified as it arrives, with the
/// delivery timeline kept for the failover figures.
struct Bulk {
    total: usize,
    sent: usize,
    got: usize,
    buf: Vec<u8>,
    /// (time, bytes delivered so far) at every change.
    timeline: Vec<(Instant, usize)>,
}

impl Bulk {
    fn new(total: usize) -> Self {
        Bulk {
            total,
            sent: 0,
            got: 0,
            buf: vec![0; 65536],
            timeline: Vec::new(),
        }
    }

    /// Feed A, drain B; true once every byte arrived.
    fn pump(
        &mut self,
        a: &mut Endpoint,
        b: &mut Endpoint,
        ca: ConnectionHandle,
        cb: ConnectionHandle,
        now: Instant,
    ) -> bool {
        while self.sent < self.total {
            let n = (self.total - self.sent)
                .min(self.buf.len())
                .min(a.send_capacity(ca));
            if n == 0 {
                break;
            }
            for (i, x) in self.buf[..n].iter_mut().enumerate() {
                *x = ((self.sent + i) % 251) as u8;
            }
            self.sent += a.send(ca, &self.buf[..n]).unwrap();
        }
        loop {
            let n = b.recv(cb, &mut self.buf).unwrap();
            if n == 0 {
                break;
            }
            if let Some(i) = self.buf[..n]
                .iter()
                .enumerate()
                .position(|(i, &x)| x != ((self.got + i) % 251) as u8)
            {
                panic!("corrupt byte at offset {}", self.got + i);
            }
            self.got += n;
            self.timeline.push((now, self.got));
        }
        self.got == self.total
    }

    /// Run until done (or `limit` of simulated time), asserting completion.
    fn run(&mut self, s: &mut Setup, limit: Duration) -> Duration {
        let start = s.h.now();
        let (ca, cb) = (s.ca, s.cb);
        let outcome =
            s.h.run_until(|a, b, now| self.pump(a, b, ca, cb, now), start + limit);
        assert!(
            outcome.is_satisfied(),
            "{} of {} bytes ({outcome:?})",
            self.got,
            self.total
        );
        s.h.now() - start
    }

    /// Run for `d` (the transfer may finish earlier).
    fn run_for(&mut self, s: &mut Setup, d: Duration) {
        let end = s.h.now() + d;
        let (ca, cb) = (s.ca, s.cb);
        let _ =
            s.h.run_until(|a, b, now| self.pump(a, b, ca, cb, now) || now >= end, end);
    }

    /// Delivered bytes at time `t` (from the timeline).
    fn at(&self, t: Instant) -> usize {
        match self.timeline.partition_point(|&(x, _)| x <= t) {
            0 => 0,
            k => self.timeline[k - 1].1,
        }
    }

    /// After `event`: the time until delivery runs at `fraction` of `rate_bps` or more over
    /// `window` (sustained), and the longest stretch with nothing delivered.
    fn recovery(
        &self,
        event: Instant,
        rate_bps: f64,
        fraction: f64,
        window: Duration,
    ) -> (Duration, Duration) {
        let step = Duration::from_millis(5);
        let need = rate_bps * fraction / 8.0 * (window.total_micros() as f64 / 1e6);
        let end = self.timeline.last().map_or(event, |&(t, _)| t);
        let mut t = event;
        let mut back = None;
        while t + window <= end {
            if (self.at(t + window) - self.at(t)) as f64 >= need {
                back = Some(t - event);
                break;
            }
            t += step;
        }
        let mut gap = Duration::ZERO;
        let mut last = event;
        for &(x, _) in self.timeline.iter().filter(|&&(x, _)| x > event) {
            gap = gap.max(x - last);
            last = x;
        }
        (back.expect("never back to the target rate"), gap)
    }
}

fn mbit(bytes: usize, d: Duration) -> f64 {
    bytes as f64 * 8.0 / (d.total_micros() as f64 / 1e6) / 1e6
}

#[test]
fn full_mesh_joins_the_address_the_server_announces_and_uses_both_paths() {
    let mut s = two_path_setup(link(10, 10), link(10, 10), seed_from_env(1));
    let a = s.h.node_a().mptcp(s.ca).unwrap();
    let b = s.h.node_b().mptcp(s.cb).unwrap();
    // B announced B2 with a valid HMAC, A echoed it; A opened A2 -> B2 (and tried the cross
    // pairs, which have no route here).
    assert_eq!(b.counters().add_addr_tx, 1);
    assert_eq!(a.counters().add_addr_rx, 1);
    assert_eq!(b.counters().echo_add_rx, 1);
    assert_eq!(a.remote_addresses().len(), 1);
    assert_eq!(a.remote_addresses()[0].addr, B2);
    assert!(b.counters().mp_join_ack_rx >= 1);
    // The full mesh: from each of A's addresses to each of B's. Each of A's addresses is an
    // interface of its own path here, so the cross pairs share the paths.
    assert_eq!(
        active_subflows(s.h.node_a(), s.ca),
        [(A1, B1), (A2, B1), (A1, B2), (A2, B2)],
    );
    let total = 6_000_000;
    let d = Bulk::new(total).run(&mut s, Duration::from_secs(30));
    let goodput = mbit(total, d);
    eprintln!("2 x 10 Mbit/s: {goodput:.2} Mbit/s");
    let a = s.h.node_a().mptcp(s.ca).unwrap();
    for path in [A1, A2] {
        let sent: u64 = a
            .subflows()
            .iter()
            .filter(|x| x.tcp().local().ip() == path)
            .map(|x| x.tcp().stats().bytes_sent)
            .sum();
        assert!(sent > 2_000_000, "{sent} bytes over the path of {path}");
    }
}

/// The share of a link's rate that can be payload: the simulator counts whole IP packets,
/// and a full data segment of 1500 bytes carries 1420 bytes of data after the IP and TCP
/// headers (40), timestamps (12) and the DSS (28). Path rates below are payload rates, this
/// share of the link rate.
const PAYLOAD_SHARE: f64 = 1420.0 / 1500.0;

/// Goodput of `total` bytes over two paths, in Mbit/s.
fn aggregate(p1: (u64, u64), p2: (u64, u64), total: usize, seed: u64) -> f64 {
    let mut s = two_path_setup(link(p1.0, p1.1), link(p2.0, p2.1), seed);
    let d = Bulk::new(total).run(&mut s, Duration::from_secs(60));
    mbit(total, d)
}

/// Goodput of `total` bytes over one path, in Mbit/s.
fn single(rate: u64, delay: u64, total: usize, seed: u64) -> f64 {
    let mut s = setup(
        vec![PathConfig::new(A1, B1, link(rate, delay))],
        &[(A1, AddrFlags::default())],
        &[B1],
        seed,
        |_| {},
    );
    let d = Bulk::new(total).run(&mut s, Duration::from_secs(60));
    mbit(total, d)
}

#[test]
fn two_equal_paths_aggregate_to_at_least_95_percent_of_their_sum() {
    let sum = 20.0 * PAYLOAD_SHARE;
    let g = aggregate((10, 10), (10, 10), 20_000_000, seed_from_env(2));
    let one = single(10, 10, 10_000_000, seed_from_env(2));
    eprintln!(
        "10+10 Mbit/s, RTT 20 ms: {g:.2} Mbit/s = {:.3} of the payload sum {sum:.2} \
         ({:.3} of the link rates); one path alone: {one:.2}",
        g / sum,
        g / 20.0
    );
    assert!(g >= 0.95 * sum, "{g:.2} Mbit/s");
}

#[test]
fn unequal_paths_aggregate_to_at_least_85_percent_and_beat_the_best_path() {
    let sum = 13.0 * PAYLOAD_SHARE;
    let g = aggregate((10, 10), (3, 10), 10_000_000, seed_from_env(3));
    eprintln!(
        "10+3 Mbit/s: {g:.2} Mbit/s = {:.3} of the payload sum {sum:.2}",
        g / sum
    );
    assert!(g >= 0.85 * sum, "{g:.2} Mbit/s");
    // A slow, long path beside a fast one must not drag the connection below the fast path.
    let best = 10.0 * PAYLOAD_SHARE;
    let g = aggregate((10, 10), (1, 100), 10_000_000, seed_from_env(4));
    eprintln!(
        "10 Mbit/s 20 ms + 1 Mbit/s 200 ms: {g:.2} Mbit/s = {:.3} of the best path",
        g / best
    );
    assert!(g >= 0.98 * best, "{g:.2} Mbit/s");
}

/// Fail path 1 (A1 <-> B1) in the middle of a transfer over 2 x 10 Mbit/s (RTT 20 ms), with
/// or without telling A (a link-down event removes A1). Returns the time back to 90 % of the
/// surviving path's rate, the longest delivery gap, and the failed subflow's RTO before the
/// failure.
fn failover(notice: bool, seed: u64) -> (Duration, Duration, Duration, Setup) {
    let mut s = two_path_setup(link(10, 10), link(10, 10), seed);
    let mut bulk = Bulk::new(12_000_000);
    bulk.run_for(&mut s, Duration::from_millis(1500));
    let rto = s.h.node_a().mptcp(s.ca).unwrap().subflows()[0].tcp().rto();
    let t_fail = s.h.now();
    s.h.network_mut().fail_path(0);
    if notice {
        s.h.node_a_mut().remove_address(A1);
    }
    bulk.run(&mut s, Duration::from_secs(30));
    let (back, gap) = bulk.recovery(t_fail, 10e6, 0.9, Duration::from_millis(100));
    (back, gap, rto, s)
}

#[test]
fn after_a_silent_path_failure_goodput_is_back_within_one_rto_and_ten_rtts() {
    let (back, gap, rto, s) = failover(false, seed_from_env(5));
    let rtt = Duration::from_millis(20);
    eprintln!(
        "silent failure: back to 90% of 10 Mbit/s after {} ms (RTO was {} ms), longest gap {} ms",
        back.total_millis(),
        rto.total_millis(),
        gap.total_millis()
    );
    let a = s.h.node_a().mptcp(s.ca).unwrap();
    assert!(a.counters().subflow_stale >= 2, "both subflows from A1");
    assert!(a.counters().reinjected_bytes > 0);
    assert!(back <= rto + rtt * 10, "{} ms", back.total_millis());
}

#[test]
fn after_a_link_down_notice_goodput_is_back_within_100_ms() {
    let (back, gap, _, s) = failover(true, seed_from_env(6));
    eprintln!(
        "link down: back to 90% of 10 Mbit/s after {} ms, longest gap {} ms",
        back.total_millis(),
        gap.total_millis()
    );
    let a = s.h.node_a().mptcp(s.ca).unwrap();
    let b = s.h.node_b().mptcp(s.cb).unwrap();
    assert!(a.counters().reinjected_bytes > 0);
    // The peer heard of it: REMOVE_ADDR for A1's id (0, the initial subflow's address).
    assert_eq!(a.counters().rm_addr_tx, 1);
    assert_eq!(b.counters().rm_addr_rx, 1);
    assert!(
        back <= Duration::from_millis(100),
        "{} ms",
        back.total_millis()
    );
}

#[test]
fn a_path_that_comes_back_is_used_again() {
    // Silently failed, then back: the stale subflow recovers by itself.
    let mut s = two_path_setup(link(10, 10), link(10, 10), seed_from_env(7));
    let mut bulk = Bulk::new(40_000_000);
    bulk.run_for(&mut s, Duration::from_secs(1));
    s.h.network_mut().fail_path(0);
    bulk.run_for(&mut s, Duration::from_secs(2));
    assert!(!active_subflows(s.h.node_a(), s.ca).contains(&(A1, B1)));
    s.h.network_mut().recover_path(0);
    let from_a1 = |s: &Setup| -> u64 {
        s.h.node_a()
            .mptcp(s.ca)
            .unwrap()
            .subflows()
            .iter()
            .filter(|x| x.tcp().local().ip() == A1)
            .map(|x| x.tcp().stats().bytes_acked)
            .sum()
    };
    let before = from_a1(&s);
    // A stale subflow probes its path at least every second (`STALE_PROBE_INTERVAL`), and a
    // repeated timeout did not cut its ssthresh again: within 2 s it carries data at speed
    // (10 Mbit/s is 1.25 MB/s).
    bulk.run_for(&mut s, Duration::from_secs(2));
    let a = s.h.node_a().mptcp(s.ca).unwrap();
    assert!(a.counters().subflow_recover >= 1);
    let moved = from_a1(&s) - before;
    eprintln!("path back: {moved} bytes over it in the first 2 s");
    assert!(moved > 1_000_000, "{moved}");

    // Removed with notice, then added back: the path manager joins from it again at once.
    let mut s = two_path_setup(link(10, 10), link(10, 10), seed_from_env(8));
    let mut bulk = Bulk::new(40_000_000);
    bulk.run_for(&mut s, Duration::from_secs(1));
    s.h.network_mut().fail_path(0);
    s.h.node_a_mut().remove_address(A1);
    bulk.run_for(&mut s, Duration::from_secs(1));
    s.h.network_mut().recover_path(0);
    s.h.node_a_mut().add_address(A1);
    bulk.run_for(&mut s, Duration::from_millis(500));
    assert!(active_subflows(s.h.node_a(), s.ca).contains(&(A1, B1)));
    bulk.run(&mut s, Duration::from_secs(60));
}

#[test]
fn a_backup_path_stays_idle_until_the_primary_fails_then_takes_over() {
    let backup = AddrFlags {
        backup: true,
        ..AddrFlags::default()
    };
    let mut s = setup(
        vec![
            PathConfig::new(A1, B1, link(10, 10)),
            PathConfig::new(A2, B2, link(10, 5)),
        ],
        &[(A1, AddrFlags::default()), (A2, backup)],
        &[B1, B2],
        seed_from_env(9),
        |_| {},
    );
    let mut bulk = Bulk::new(6_000_000);
    bulk.run_for(&mut s, Duration::from_secs(2));
    let a = s.h.node_a().mptcp(s.ca).unwrap();
    let bk = a
        .subflows()
        .iter()
        .position(|x| x.backup() && x.is_active())
        .expect("a backup subflow");
    // Even though the backup path has the lower RTT.
    assert_eq!(a.subflows()[bk].tcp().stats().bytes_sent, 0);
    s.h.network_mut().fail_path(0);
    let t_fail = s.h.now();
    bulk.run(&mut s, Duration::from_secs(30));
    let a = s.h.node_a().mptcp(s.ca).unwrap();
    assert!(a.subflows()[bk].tcp().stats().bytes_sent > 1_000_000);
    let (back, gap) = bulk.recovery(t_fail, 10e6, 0.9, Duration::from_millis(100));
    eprintln!(
        "backup takeover: back to 90% after {} ms, longest gap {} ms",
        back.total_millis(),
        gap.total_millis()
    );
}

#[test]
fn mp_prio_from_the_receiver_moves_the_senders_traffic_off_a_subflow() {
    let mut s = two_path_setup(link(10, 10), link(10, 10), seed_from_env(10));
    // B sends to A this time.
    std::mem::swap(&mut s.ca, &mut s.cb);
    let mut bulk = Bulk::new(8_000_000);
    let (ca, cb) = (s.ca, s.cb);
    let end = s.h.now() + Duration::from_secs(1);
    let _ = s.h.run_until(
        |a, b, now| {
            bulk.pump(b, a, ca, cb, now);
            now >= end
        },
        end,
    );
    // A (the receiver) asks for its subflows from A2 to be backups: MP_PRIO on each.
    s.h.node_a_mut().set_address_backup(A2, true);
    let _ = s.h.run_until(
        |a, b, now| {
            bulk.pump(b, a, ca, cb, now);
            false
        },
        s.h.now() + Duration::from_millis(200),
    );
    let b = s.h.node_b().mptcp(ca).unwrap();
    assert_eq!(b.counters().mp_prio_rx, 2, "one per subflow from A2");
    let to_a2 = |e: &Endpoint| -> u64 {
        e.mptcp(ca)
            .unwrap()
            .subflows()
            .iter()
            .filter(|x| x.tcp().remote().ip() == A2)
            .map(|x| x.tcp().stats().bytes_sent)
            .sum()
    };
    let before = to_a2(s.h.node_b());
    let end = s.h.now() + Duration::from_secs(2);
    let _ = s.h.run_until(
        |a, b, now| {
            bulk.pump(b, a, ca, cb, now);
            now >= end
        },
        end,
    );
    assert_eq!(to_a2(s.h.node_b()), before, "nothing new towards A2");
    assert!(bulk.got > 3_000_000, "the transfer went on over A1");
}

#[test]
fn the_redundant_scheduler_keeps_latency_low_under_loss_on_one_path() {
    fn p99_latency(kind: SchedulerKind, seed: u64) -> Duration {
        let lossy = link(10, 10).with_loss(0.05);
        let mut s = two_path_setup(lossy, link(10, 15), seed);
        s.h.node_a_mut().set_scheduler(s.ca, kind).unwrap();
        // 400 messages of 1000 bytes, one every 20 ms; latency = send to full receipt.
        let mut latencies = Vec::new();
        let (ca, cb) = (s.ca, s.cb);
        let mut buf = vec![0u8; 4096];
        let mut got = 0usize;
        let start = s.h.now();
        let msg = 1000usize;
        let count = 400usize;
        let mut sent = 0usize;
        let _ = s.h.run_until(
            |a, b, now| {
                while sent < count && now >= start + Duration::from_millis(20 * sent as u64) {
                    let m = vec![(sent % 251) as u8; msg];
                    assert_eq!(a.send(ca, &m).unwrap(), msg);
                    sent += 1;
                }
                loop {
                    let n = b.recv(cb, &mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    for &x in &buf[..n] {
                        assert_eq!(x, ((got / msg) % 251) as u8);
                        got += 1;
                        if got.is_multiple_of(msg) {
                            let k = got / msg - 1;
                            latencies.push(now - (start + Duration::from_millis(20 * k as u64)));
                        }
                    }
                }
                latencies.len() == count
            },
            start + Duration::from_secs(60),
        );
        assert_eq!(latencies.len(), count);
        latencies.sort();
        latencies[count * 99 / 100]
    }
    let seed = seed_from_env(11);
    let minrtt = p99_latency(SchedulerKind::MinRtt, seed);
    let redundant = p99_latency(SchedulerKind::Redundant, seed);
    eprintln!(
        "p99 message latency, 5% loss on the faster path: min-RTT {} ms, redundant {} ms",
        minrtt.total_millis(),
        redundant.total_millis()
    );
    assert!(redundant * 3 < minrtt);
    assert!(redundant <= Duration::from_millis(60));
}

#[test]
fn the_round_robin_and_active_backup_schedulers_deliver_everything() {
    for (kind, seed) in [
        (SchedulerKind::RoundRobin, 12),
        (SchedulerKind::ActiveBackup, 13),
    ] {
        let mut s = two_path_setup(link(10, 10), link(10, 10), seed_from_env(seed));
        s.h.node_a_mut().set_scheduler(s.ca, kind).unwrap();
        Bulk::new(4_000_000).run(&mut s, Duration::from_secs(30));
        let a = s.h.node_a().mptcp(s.ca).unwrap();
        let used = a
            .subflows()
            .iter()
            .filter(|x| x.tcp().stats().bytes_sent > 100_000)
            .count();
        let active = a.subflows().iter().filter(|x| x.is_active()).count();
        if kind == SchedulerKind::RoundRobin {
            assert_eq!(used, active, "round-robin uses every subflow");
        } else {
            // One subflow at a time: another takes over only when the current one goes stale.
            let handovers = a.counters().subflow_stale as usize;
            assert!(used <= 1 + handovers, "{used} used, {handovers} handovers");
            eprintln!("active-backup: {used} subflows used, {handovers} stale events");
        }
    }
}

#[test]
fn an_ipv4_and_an_ipv6_path_in_one_connection() {
    let mut s = setup(
        vec![
            PathConfig::new(A1, B1, link(10, 10)),
            PathConfig::new(A6, B6, link(10, 10)),
        ],
        &[(A1, AddrFlags::default()), (A6, AddrFlags::default())],
        &[B1, B6],
        seed_from_env(14),
        |_| {},
    );
    // B announced its IPv6 address (a 28-byte ADD_ADDR with HMAC).
    assert_eq!(active_subflows(s.h.node_a(), s.ca), [(A1, B1), (A6, B6)]);
    Bulk::new(4_000_000).run(&mut s, Duration::from_secs(30));
    let a = s.h.node_a().mptcp(s.ca).unwrap();
    for sub in a.subflows().iter().filter(|x| x.is_active()) {
        assert!(sub.tcp().stats().bytes_sent > 500_000);
    }
}

#[test]
fn an_add_addr_with_a_forged_hmac_is_ignored() {
    let seed = seed_from_env(15);
    let net = Network::new(
        seed,
        vec![
            PathConfig::new(A1, B1, link(10, 10)),
            PathConfig::new(A2, B2, link(10, 10)),
        ],
    );
    let mut a = Endpoint::new(EndpointConfig {
        seed: 1,
        ..EndpointConfig::seeded(0)
    });
    let mut b = Endpoint::new(EndpointConfig {
        seed: 2,
        ..EndpointConfig::seeded(0)
    });
    a.add_address(A1);
    a.add_address(A2);
    b.add_address(B1);
    b.add_address(B2);
    b.listen(PORT);
    let mut h = Harness::new(net, a, b);
    // A middlebox flips one bit of the HMAC of every ADD_ADDR B sends.
    h.set_middlebox(Box::new(|side, buf, len| {
        if side == Side::B
            && IpSegment::parse(&buf[..len]).is_ok_and(|seg| {
                seg.tcp
                    .options
                    .mptcp
                    .iter()
                    .any(|o| matches!(o, MptcpRepr::AddAddr(a) if !a.is_echo()))
            })
            && let Some(at) = buf[..len]
                .windows(3)
                .position(|w| w[0] == 30 && w[1] == 16 && w[2] >> 4 == 3)
        {
            buf[at + 15] ^= 1;
            refill_tcp_checksum(&mut buf[..len]);
        }
        Some(len)
    }));
    let ca = h
        .node_a_mut()
        .connect(SocketAddr::new(A1, 0), SocketAddr::new(B1, PORT))
        .unwrap();
    let _ = h.run_for(Duration::from_secs(3));
    let a = h.node_a().mptcp(ca).unwrap();
    assert!(
        a.counters().add_addr_bad_hmac >= 2,
        "repeated, never accepted"
    );
    assert_eq!(a.counters().add_addr_rx, 0);
    assert!(a.remote_addresses().is_empty());
    assert!(
        a.subflows().iter().all(|x| x.tcp().remote().ip() != B2),
        "no subflow to the forged address"
    );
}

#[test]
fn path_manager_off_means_no_automatic_subflows() {
    let mut s = setup(
        vec![
            PathConfig::new(A1, B1, link(10, 10)),
            PathConfig::new(A2, B2, link(10, 10)),
        ],
        &[(A1, AddrFlags::default()), (A2, AddrFlags::default())],
        &[B1, B2],
        seed_from_env(16),
        |c| c.path_manager = PathManagerKind::Manual,
    );
    let _ = s.h.run_for(Duration::from_secs(1));
    assert_eq!(s.h.node_a().mptcp(s.ca).unwrap().subflows().len(), 1);
    assert_eq!(s.h.node_b().mptcp(s.cb).unwrap().counters().add_addr_tx, 0);
}

#[test]
fn a_checksum_failure_on_one_of_several_subflows_resets_only_that_subflow() {
    let mut s = setup(
        vec![
            PathConfig::new(A1, B1, link(10, 10)),
            PathConfig::new(A2, B2, link(10, 10)),
        ],
        &[(A1, AddrFlags::default()), (A2, AddrFlags::default())],
        &[B1, B2],
        seed_from_env(17),
        |c| c.mptcp.checksum = true,
    );
    // A middlebox corrupts one byte of the 50th data segment A sends from A2 (and fixes the
    // TCP checksum up, so only the DSS checksum can tell).
    let mut seen = 0;
    s.h.set_middlebox(Box::new(move |side, buf, len| {
        if side == Side::A
            && IpSegment::parse(&buf[..len]).is_ok_and(|x| x.src == A2 && x.tcp.payload.len() > 100)
        {
            seen += 1;
            if seen == 50 {
                mptcp_stack::sim::corrupt_payload(&mut buf[..len], 100, 0x20);
            }
        }
        Some(len)
    }));
    Bulk::new(4_000_000).run(&mut s, Duration::from_secs(60));
    let a = s.h.node_a().mptcp(s.ca).unwrap();
    let b = s.h.node_b().mptcp(s.cb).unwrap();
    assert_eq!(b.counters().data_csum_err, 1);
    assert_eq!(b.counters().mp_fail_tx, 1);
    assert!(
        a.counters().mp_fail_rx >= 1,
        "the MP_FAIL rode on the subflow's RST"
    );
    assert_eq!(
        a.mode(),
        mptcp_stack::mptcp::Mode::Mptcp,
        "no fallback, no reset"
    );
    assert!(a.counters().reinjected_bytes > 0);
    // The subflow that carried the corrupt mapping was reset; the path manager joined again
    // from A2 a second later (three joins at first, then one more).
    assert!(b.counters().mp_join_ack_rx >= 4, "{:?}", b.counters());
}

#[test]
fn an_ipv6_add_addr_with_a_port_goes_alone_on_an_ack_without_timestamps() {
    // IPv6 + port + HMAC is 30 bytes: beside 12 bytes of timestamps it does not fit in 40.
    let mut s = setup(
        vec![
            PathConfig::new(A1, B1, link(10, 10)),
            PathConfig::new(A6, B6, link(10, 10)),
        ],
        &[(A1, AddrFlags::default())],
        &[B1],
        seed_from_env(18),
        |c| c.path_manager = PathManagerKind::Manual,
    );
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = seen.clone();
    s.h.set_middlebox(Box::new(move |side, buf, len| {
        if side == Side::B
            && let Ok(x) = IpSegment::parse(&buf[..len])
            && let Some(MptcpRepr::AddAddr(a)) = x
                .tcp
                .options
                .mptcp
                .iter()
                .find(|o| matches!(o, MptcpRepr::AddAddr(_)))
        {
            log.borrow_mut()
                .push((*a, x.tcp.options.timestamp.is_some(), x.tcp.payload.len()));
        }
        Some(len)
    }));
    s.h.node_b_mut().add_address(B6);
    s.h.node_b_mut()
        .announce_with_port(s.cb, B6, Some(8443))
        .unwrap();
    let _ = s.h.run_for(Duration::from_millis(500));
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1, "sent once, echoed: {seen:?}");
    let (add, with_ts, payload) = seen[0];
    assert_eq!((add.addr, add.port), (B6, Some(8443)));
    assert!(!with_ts && payload == 0, "a pure ACK without timestamps");
    let a = s.h.node_a().mptcp(s.ca).unwrap();
    assert_eq!(a.counters().add_addr_rx, 1, "the HMAC verified");
    assert_eq!(a.remote_addresses()[0].port, Some(8443));
    assert_eq!(s.h.node_b().mptcp(s.cb).unwrap().counters().echo_add_rx, 1);
}

#[test]
fn no_subflow_is_opened_once_both_directions_are_closed() {
    // B (the server) sends and closes first; A reads to the end and closes: A's subflows
    // close passively, at once, which must not look to its path manager like failed paths.
    let mut s = two_path_setup(link(10, 10), link(10, 10), seed_from_env(19));
    let (ca, cb) = (s.ca, s.cb);
    let mut bulk = Bulk::new(2_000_000);
    let mut a_closed = false;
    let _ = s.h.run_until(
        |a, b, now| {
            if bulk.pump(b, a, cb, ca, now) && b.send_capacity(cb) > 0 {
                let _ = b.close(cb);
            }
            if a.recv_finished(ca) && !a_closed {
                a.close(ca).unwrap();
                a_closed = true;
            }
            false
        },
        s.h.now() + Duration::from_secs(10),
    );
    assert_eq!(bulk.got, 2_000_000);
    assert!(a_closed);
    let a = s.h.node_a().mptcp(ca).unwrap();
    assert!(a.send_finished());
    assert_eq!(
        s.h.node_b().mptcp(cb).unwrap().counters().mp_join_syn_rx,
        3,
        "the three joins of the full mesh, none after the close"
    );
    let states: Vec<_> = a.subflows().iter().map(|x| x.tcp().state()).collect();
    assert!(
        states.iter().all(|s| matches!(
            s,
            mptcp_stack::tcp::State::Closed | mptcp_stack::tcp::State::TimeWait
        )),
        "every subflow of A closed: {states:?}"
    );
    // The subflows that carried the data are still listed with their counts.
    let got: u64 = a
        .subflows()
        .iter()
        .map(|x| x.tcp().stats().bytes_received)
        .sum();
    assert!(got >= 2_000_000, "{got}");
}

#[test]
fn a_segment_for_a_closed_subflow_is_answered_with_rst() {
    // B resets the subflow that carried a corrupt mapping; its RST is lost. A goes on
    // sending on that subflow: B no longer has it and answers with RST (RFC 9293 section
    // 3.10.7.1), so A learns at once instead of after its retransmissions run out.
    let mut s = setup(
        vec![
            PathConfig::new(A1, B1, link(10, 10)),
            PathConfig::new(A2, B2, link(10, 10)),
        ],
        &[(A1, AddrFlags::default()), (A2, AddrFlags::default())],
        &[B1, B2],
        seed_from_env(20),
        |c| {
            c.mptcp.checksum = true;
            c.path_manager = PathManagerKind::Manual;
        },
    );
    let (ca, cb) = (s.ca, s.cb);
    s.h.node_a_mut()
        .add_subflow(ca, SocketAddr::new(A2, 0), SocketAddr::new(B2, PORT), false)
        .unwrap();
    let _ = s.h.run_for(Duration::from_millis(300));
    let mut seen = 0;
    let mut rst_dropped = false;
    s.h.set_middlebox(Box::new(move |side, buf, len| {
        let Ok((src, data, rst)) = IpSegment::parse(&buf[..len])
            .map(|x| (x.src, x.tcp.payload.len() > 100, x.tcp.flags.rst()))
        else {
            return Some(len);
        };
        if side == Side::A && src == A2 && data {
            seen += 1;
            if seen == 30 {
                mptcp_stack::sim::corrupt_payload(&mut buf[..len], 100, 0x20);
            }
        }
        if side == Side::B && src == B2 && rst && !rst_dropped {
            rst_dropped = true;
            return None;
        }
        Some(len)
    }));
    let mut bulk = Bulk::new(3_000_000);
    bulk.run_for(&mut s, Duration::from_millis(1500));
    let b = s.h.node_b().mptcp(cb).unwrap();
    assert_eq!(b.counters().data_csum_err, 1);
    let a = s.h.node_a().mptcp(ca).unwrap();
    assert_eq!(
        a.subflows()[1].tcp().state(),
        mptcp_stack::tcp::State::Closed,
        "A's subflow learnt of the reset from B's answer to its next segment"
    );
    assert!(s.h.node_b().stats().rsts_sent >= 1);
    bulk.run(&mut s, Duration::from_secs(30));
}
