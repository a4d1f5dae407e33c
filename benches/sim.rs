//! End-to-end transfers over the deterministic simulator (`mptcp_stack::sim`): two of our
//! endpoints, one MPTCP connection, 16 MiB from client to server over
//!
//! - one path; two paths (a second subflow joined over the second one);
//! - the same with 1 % random loss on every link, both directions.
//!
//! Links are 1 Gbit/s with 5 ms one-way delay and a queue of one bandwidth-delay product, MTU
//! 1500, checksums on. Criterion's throughput is bytes per wall-clock second of the whole
//! simulation (both stacks, the links, the event queue) on one core; the simulated duration is
//! printed once per case, so a reader can check that two paths carry more than one.
//!
//! Run: `cargo bench --bench sim` (add `-- --quick` for a short run); `SIM_RATE=100000000`
//! sets another link rate in bit/s.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mptcp_stack::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, Event};
use mptcp_stack::mptcp::pm::PathManagerKind;
use mptcp_stack::node::{Duration, Instant};
use mptcp_stack::sim::{Harness, LinkConfig, Network, PathConfig};

const BYTES: usize = 16 << 20;
const A1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const A2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 102, 1));
const B1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
const B2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2));
const PORT: u16 = 5201;

fn link(loss: f64) -> LinkConfig {
    let rate: u64 = std::env::var("SIM_RATE").map_or(1_000_000_000, |v| v.parse().unwrap());
    let bdp = rate / 8 * 10 / 1000;
    LinkConfig::ideal(Duration::from_millis(5))
        .with_rate(rate, Some(bdp))
        .with_loss(loss)
}

/// One transfer of [`BYTES`]; returns the simulated seconds it took.
fn transfer(paths: usize, loss: f64) -> f64 {
    let mut configs = vec![PathConfig::new(A1, B1, link(loss))];
    if paths > 1 {
        configs.push(PathConfig::new(A2, B2, link(loss)));
    }
    let net = Network::new(7, configs);
    // The second subflow is opened by hand (the network routes A2 only to B2).
    let cfg = |seed| EndpointConfig {
        path_manager: PathManagerKind::Manual,
        ..EndpointConfig::seeded(seed)
    };
    let mut a = Endpoint::new(cfg(11));
    let mut b = Endpoint::new(cfg(22));
    a.add_address(A1);
    a.add_address(A2);
    b.add_address(B1);
    b.add_address(B2);
    b.listen(PORT);
    let mut h = Harness::new(net, a, b);
    let ca = h
        .node_a_mut()
        .connect(SocketAddr::new(A1, 0), SocketAddr::new(B1, PORT))
        .expect("connect");
    let mut cb: Option<ConnectionHandle> = None;
    let mut joined = paths == 1;
    let data = vec![0x5au8; 256 * 1024];
    let mut rbuf = vec![0u8; 256 * 1024];
    let (mut sent, mut got) = (0usize, 0usize);
    let outcome = h.run_until(
        |a, b, _| {
            while let Some(ev) = b.poll_event() {
                if let Event::Accepted(x) = ev {
                    cb = Some(x);
                }
            }
            while a.poll_event().is_some() {}
            // Join once the server has our key (its DSS said so, RFC 8684 section 3.1): a join
            // SYN that overtakes the third ACK is refused.
            if !joined && a.mptcp(ca).is_some_and(|c| c.is_fully_established()) {
                a.add_subflow(ca, SocketAddr::new(A2, 0), SocketAddr::new(B2, PORT), false)
                    .expect("join");
                joined = true;
            }
            while sent < BYTES {
                match a.send(ca, &data[..(BYTES - sent).min(data.len())]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sent += n,
                }
            }
            if let Some(cb) = cb {
                while let Ok(n) = b.recv(cb, &mut rbuf) {
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
            }
            got >= BYTES
        },
        Instant::from_secs(600),
    );
    assert!(
        outcome.is_satisfied(),
        "transfer ended with {outcome:?} after {got} of {BYTES} bytes"
    );
    let subflows = h.node_a().mptcp(ca).map_or(0, |c| c.subflows().len());
    assert_eq!(subflows, paths, "one subflow per path");
    h.now().total_micros() as f64 / 1e6
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sim");
    g.throughput(Throughput::Bytes(BYTES as u64));
    g.sample_size(10);
    for (name, paths, loss) in [
        ("one_path", 1, 0.0),
        ("two_paths", 2, 0.0),
        ("one_path_loss_1pct", 1, 0.01),
        ("two_paths_loss_1pct", 2, 0.01),
    ] {
        let secs = transfer(paths, loss);
        eprintln!(
            "sim/{name}: {BYTES} bytes in {secs:.3} simulated s ({:.0} Mbit/s simulated)",
            BYTES as f64 * 8.0 / secs / 1e6
        );
        g.bench_function(name, |bench| {
            bench.iter(|| black_box(transfer(paths, loss)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
