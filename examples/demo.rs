//! The root-free demo: two endpoints of the stack, each with two addresses, move data over two
//! simulated paths with MPTCP. One path fails silently mid-transfer and comes back later. The
//! demo prints the throughput of each path and of the connection every half second (in
//! simulated time), the failover gap, and how fast the simulation ran on this machine's CPU.
//!
//! Run: `cargo run --release --example demo` (`DEMO_MB=n` sets the size, `SIM_SEED=n` the seed).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant as WallClock;

use mptcp_stack::endpoint::{Endpoint, EndpointConfig, Event};
use mptcp_stack::node::{Duration, Instant};
use mptcp_stack::sim::{Harness, LinkConfig, Network, PathConfig, seed_from_env};

const A1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const A2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 102, 1));
const B1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
const B2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2));

/// A link of `mbit` Mbit/s, `ms` one way, with a drop-tail queue of one bandwidth-delay product.
fn link(mbit: u64, ms: u64) -> LinkConfig {
    let rate = mbit * 1_000_000;
    LinkConfig::ideal(Duration::from_millis(ms)).with_rate(rate, Some(rate / 8 * 2 * ms / 1000))
}

fn main() {
    let mb: usize = std::env::var("DEMO_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let total = mb * 1_000_000;
    let seed = seed_from_env(42);
    let net = Network::new(
        seed,
        vec![
            PathConfig::new(A1, B1, link(100, 10)),
            PathConfig::new(A2, B2, link(50, 20)),
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
    // The full-mesh path manager: A opens subflows from both of its addresses to B's address
    // and to the one B announces with ADD_ADDR.
    a.add_address(A1);
    a.add_address(A2);
    b.add_address(B1);
    b.add_address(B2);
    b.listen(5201);
    let mut h = Harness::new(net, a, b);
    let ca = h
        .node_a_mut()
        .connect(SocketAddr::new(A1, 0), SocketAddr::new(B1, 5201))
        .expect("connect");
    let fail_at = Instant::from_secs(3);
    let back_at = Instant::from_secs(6);
    h.network_mut().schedule_down(0, fail_at);
    h.network_mut().schedule_up(0, back_at);

    println!(
        "path 1: 100 Mbit/s, 10 ms each way; path 2: 50 Mbit/s, 20 ms each way; drop-tail \
         queues of one BDP"
    );
    println!("moving {mb} MB A -> B; path 1 fails silently at 3 s and comes back at 6 s\n");
    println!(
        "{:>6}  {:>10}  {:>10}  {:>12}  subflows (active/total)",
        "time", "path 1", "path 2", "delivered"
    );
    let mut cb = None;
    let mut sent = 0usize;
    let mut received = 0usize;
    let mut closed = false;
    let mut buf = vec![0u8; 256 * 1024];
    let step = Duration::from_millis(500);
    let mut next_report = Instant::ZERO + step;
    let mut last = (0u64, 0u64, 0usize);
    let mut last_delivery = Instant::ZERO;
    let mut longest_gap = Duration::ZERO;
    let wall = WallClock::now();
    let start = h.now();
    let outcome = h.run_until(
        |a, b, now| {
            while let Some(ev) = b.poll_event() {
                if let Event::Accepted(c) = ev {
                    cb = Some(c);
                }
            }
            while a.poll_event().is_some() {}
            while sent < total {
                let n = (total - sent).min(buf.len()).min(a.send_capacity(ca));
                if n == 0 {
                    break;
                }
                for (i, x) in buf[..n].iter_mut().enumerate() {
                    *x = ((sent + i) % 251) as u8;
                }
                sent += a.send(ca, &buf[..n]).expect("send");
            }
            if sent == total && !closed {
                a.close(ca).expect("close");
                closed = true;
            }
            let Some(cb) = cb else { return false };
            loop {
                let n = b.recv(cb, &mut buf).expect("recv");
                if n == 0 {
                    break;
                }
                if let Some(i) = buf[..n]
                    .iter()
                    .enumerate()
                    .position(|(i, &x)| x != ((received + i) % 251) as u8)
                {
                    panic!("corrupt byte at offset {}", received + i);
                }
                received += n;
                if now > fail_at && now < back_at {
                    longest_gap = longest_gap.max(now - last_delivery);
                }
                last_delivery = now;
            }
            while now >= next_report {
                // Per path: bytes A's subflows from that address had acknowledged.
                let m = a.mptcp(ca).expect("connection");
                let acked = |ip| -> u64 {
                    m.subflows()
                        .iter()
                        .filter(|s| s.tcp().local().ip() == ip)
                        .map(|s| s.tcp().stats().bytes_acked)
                        .sum()
                };
                let (p1, p2) = (acked(A1), acked(A2));
                let secs = step.total_micros() as f64 / 1e6;
                let rate = |x: u64| x as f64 * 8.0 / secs / 1e6;
                let active = m.subflows().iter().filter(|s| s.is_active()).count();
                println!(
                    "{:>5.1}s  {:>5.1} Mb/s  {:>5.1} Mb/s  {:>5.1} Mb/s  {active}/{}{}",
                    (next_report - start).total_millis() as f64 / 1000.0,
                    rate(p1.saturating_sub(last.0)),
                    rate(p2.saturating_sub(last.1)),
                    rate((received - last.2) as u64),
                    m.subflows().len(),
                    if next_report > fail_at && next_report <= fail_at + step {
                        "   <- path 1 fails"
                    } else if next_report > back_at && next_report <= back_at + step {
                        "   <- path 1 is back"
                    } else {
                        ""
                    }
                );
                last = (p1, p2, received);
                next_report += step;
            }
            b.recv_finished(cb)
        },
        Instant::from_secs(600),
    );
    let cpu = wall.elapsed().as_secs_f64();
    assert!(
        outcome.is_satisfied(),
        "the transfer did not finish: {outcome:?} (SIM_SEED={seed})"
    );
    let secs = (h.now() - start).total_micros() as f64 / 1e6;
    let m = h.node_a().mptcp(ca).expect("connection");
    let c = m.counters();
    println!();
    println!(
        "{received} bytes delivered and verified in {secs:.2} s of simulated time: {:.1} Mbit/s",
        received as f64 * 8.0 / secs / 1e6
    );
    println!(
        "failover: longest pause in delivery after the failure {} ms; {} stale subflow events, \
         {} bytes reinjected, {} recovered",
        longest_gap.total_millis(),
        c.subflow_stale,
        c.reinjected_bytes,
        c.subflow_recover
    );
    println!(
        "simulation: {cpu:.2} s of CPU for both stacks and the network: {:.0} MB of goodput per \
         CPU second",
        received as f64 / cpu / 1e6
    );
}
