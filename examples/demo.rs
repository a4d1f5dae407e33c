//! The root-free demo: two endpoints of the stack move a few hundred megabytes over the
//! deterministic network simulator, and the demo prints the throughput second by second (in
//! simulated time), the loss repair, and how fast the simulation ran on this machine's CPU.
//!
//! Today the connection is one TCP subflow over one path; the demo grows
//! into two MPTCP paths with a failover as the multipath layers land.
//!
//! Run: `cargo run --release --example demo` (`DEMO_MB=n` sets the size, `SIM_SEED=n` the seed).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant as WallClock;

use mptcp_stack::endpoint::{Endpoint, EndpointConfig, Event};
use mptcp_stack::node::{Duration, Instant};
use mptcp_stack::sim::{Harness, LinkConfig, Network, PathConfig, Side, seed_from_env};

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));

fn main() {
    let mb: usize = std::env::var("DEMO_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let total = mb * 1_000_000;
    let seed = seed_from_env(42);
    let rate = 1_000_000_000u64;
    let delay = Duration::from_millis(10);
    // A drop-tail queue of one bandwidth-delay product.
    let link = LinkConfig::ideal(delay).with_rate(rate, Some(rate / 8 / 50));
    let net = Network::new(seed, vec![PathConfig::new(A, B, link)]);

    let mut a = Endpoint::new(EndpointConfig {
        seed: 1,
        ..EndpointConfig::default()
    });
    let mut b = Endpoint::new(EndpointConfig {
        seed: 2,
        ..EndpointConfig::default()
    });
    a.add_address(A);
    b.add_address(B);
    b.listen(5201);
    let mut h = Harness::new(net, a, b);
    let ca = h
        .node_a_mut()
        .connect(SocketAddr::new(A, 0), SocketAddr::new(B, 5201))
        .expect("connect");

    println!("path: 1 Gbit/s, 10 ms each way, drop-tail queue of one BDP; moving {mb} MB A -> B");
    println!("{:>6}  {:>12}  {:>10}", "time", "delivered", "Mbit/s");
    let mut cb = None;
    let mut sent = 0usize;
    let mut received = 0usize;
    let mut closed = false;
    let mut buf = vec![0u8; 256 * 1024];
    let mut next_report = Instant::from_secs(1);
    let mut at_last_report = 0usize;
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
                // Fill only what the send buffer can take now.
                let room = a.connection(ca).map_or(0, |c| c.send_capacity());
                let n = (total - sent).min(buf.len()).min(room);
                if n == 0 {
                    break;
                }
                for (i, x) in buf[..n].iter_mut().enumerate() {
                    *x = ((sent + i) % 251) as u8;
                }
                let k = a.send(ca, &buf[..n]).expect("send");
                sent += k;
                if k < n {
                    break;
                }
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
            }
            while now >= next_report {
                let mbit = (received - at_last_report) as f64 * 8.0 / 1e6;
                println!(
                    "{:>5}s  {:>12}  {:>10.1}",
                    (next_report - start).total_millis() / 1000,
                    received,
                    mbit
                );
                at_last_report = received;
                next_report += Duration::from_secs(1);
            }
            b.recv_finished(cb)
        },
        Instant::from_secs(3600),
    );
    let cpu = wall.elapsed().as_secs_f64();
    assert!(
        outcome.is_satisfied(),
        "the transfer did not finish: {outcome:?} (SIM_SEED={seed})"
    );
    let secs = (h.now() - start).total_micros() as f64 / 1e6;
    let c = h.node_a().connection(ca).expect("connection");
    let s = c.stats();
    let link = h.network().link_stats(0, Side::A);
    println!();
    println!(
        "{received} bytes delivered and verified in {secs:.2} s of simulated time: {:.1} Mbit/s",
        received as f64 * 8.0 / secs / 1e6
    );
    println!(
        "loss repair: {} packets lost on the path, {} bytes retransmitted, {} fast recoveries, {} timeouts",
        link.dropped_loss + link.dropped_queue,
        s.bytes_retransmitted,
        s.fast_recoveries,
        s.rto_expiries
    );
    println!(
        "simulation: {cpu:.2} s of CPU for both stacks and the network: {:.0} MB of goodput per CPU second",
        received as f64 / cpu / 1e6
    );
}
