//! Soak over the simulator: many MPTCP connections at once between two endpoints with two
//! addresses each (full mesh), both directions, over two lossy paths (random loss and loss
//! bursts) that fail and come back at random, silently. Every byte is verified; every
//! connection must finish cleanly.
//!
//! `SOAK_CONNS` (default 12) and `SOAK_MB` (default 8: megabytes per direction, all
//! connections together) scale it; `SIM_SEED` picks the seed; `SOAK_STALE_RTOS` sets
//! `MptcpConfig::stale_after_rtos`. The figures are printed
//! (`--nocapture`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use mptcp_stack::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, Event};
use mptcp_stack::node::{Duration, Instant};
use mptcp_stack::sim::{GilbertElliott, Harness, LinkConfig, Network, PathConfig, seed_from_env};

const A1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const A2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 102, 1));
const B1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
const B2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2));
const PORT: u16 = 5201;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The byte at `offset` of connection `id`'s stream in direction `dir` (0: A to B).
fn byte(id: usize, dir: usize, offset: usize) -> u8 {
    ((offset * 7 + id * 13 + dir * 101) % 251) as u8
}

/// One direction of one connection.
#[derive(Default)]
struct Flow {
    total: usize,
    sent: usize,
    got: usize,
    closed: bool,
}

struct Conn {
    id: usize,
    a: ConnectionHandle,
    b: Option<ConnectionHandle>,
    flows: [Flow; 2],
}

/// Feed what `ep` may send on `h` and read what arrived, checking every byte.
fn pump(
    ep: &mut Endpoint,
    h: ConnectionHandle,
    id: usize,
    out: &mut Flow,
    inp: &mut Flow,
    dir: usize,
    buf: &mut [u8],
) {
    while out.sent < out.total {
        let n = (out.total - out.sent)
            .min(buf.len())
            .min(ep.send_capacity(h));
        if n == 0 {
            break;
        }
        for (i, x) in buf[..n].iter_mut().enumerate() {
            *x = byte(id, dir, out.sent + i);
        }
        match ep.send(h, &buf[..n]) {
            Ok(k) => out.sent += k,
            Err(e) => panic!("connection {id}: send failed: {e}"),
        }
    }
    if out.sent == out.total && !out.closed {
        ep.close(h).unwrap();
        out.closed = true;
    }
    loop {
        match ep.recv(h, buf) {
            Ok(0) => break,
            Ok(n) => {
                for (i, &x) in buf[..n].iter().enumerate() {
                    assert_eq!(
                        x,
                        byte(id, 1 - dir, inp.got + i),
                        "connection {id}, direction {}, byte {}",
                        1 - dir,
                        inp.got + i
                    );
                }
                inp.got += n;
                assert!(inp.got <= inp.total, "connection {id}: more than was sent");
            }
            Err(e) => panic!("connection {id}: recv failed: {e}"),
        }
    }
}

#[test]
fn many_connections_over_failing_lossy_paths_deliver_every_byte() {
    let seed = seed_from_env(1);
    let conns = env("SOAK_CONNS", 12) as usize;
    let mb = env("SOAK_MB", 8) as usize;
    // The test's own deterministic choices (sizes, failure times).
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let bursty = |rate: u64, ms: u64| {
        LinkConfig::ideal(Duration::from_millis(ms))
            .with_rate(rate, Some(rate / 8 / 20))
            .with_loss(0.005)
            .with_burst(GilbertElliott {
                p_good_to_bad: 0.002,
                p_bad_to_good: 0.2,
                loss_in_bad: 0.5,
            })
    };
    let net = Network::new(
        seed,
        vec![
            PathConfig::new(A1, B1, bursty(20_000_000, 10)),
            PathConfig::new(A2, B2, bursty(10_000_000, 25)),
        ],
    );
    // `SOAK_STALE_RTOS`: timeouts in a row before a subflow's data is sent again elsewhere.
    let mut cfg = EndpointConfig::seeded(0);
    cfg.mptcp.stale_after_rtos = env("SOAK_STALE_RTOS", 1) as u8;
    let mut a = Endpoint::new(EndpointConfig {
        seed: seed + 1,
        ..cfg.clone()
    });
    let mut b = Endpoint::new(EndpointConfig {
        seed: seed + 2,
        ..cfg
    });
    for addr in [A1, A2] {
        a.add_address(addr);
    }
    for addr in [B1, B2] {
        b.add_address(addr);
    }
    b.listen(PORT);
    let mut h = Harness::new(net, a, b);
    // Each connection's share of the bytes, 0.2x to 1.8x the mean, per direction.
    let mean = mb * 1_000_000 / conns;
    let mut all: Vec<Conn> = Vec::new();
    let mut by_port: HashMap<u16, usize> = HashMap::new();
    for id in 0..conns {
        let local = if id % 2 == 0 { A1 } else { A2 };
        let remote = if id % 3 == 0 { B2 } else { B1 };
        let ah = h
            .node_a_mut()
            .connect(SocketAddr::new(local, 0), SocketAddr::new(remote, PORT))
            .unwrap();
        by_port.insert(h.node_a().connection(ah).unwrap().local().port(), id);
        let mut flows: [Flow; 2] = Default::default();
        for f in &mut flows {
            f.total = mean / 5 + rng.random_range(0..mean * 8 / 5);
        }
        all.push(Conn {
            id,
            a: ah,
            b: None,
            flows,
        });
    }
    // Silent path failures: every 1-4 s one path goes down for 0.3-2.5 s.
    let mut t = Instant::from_millis(500);
    let mut failures = 0;
    while t < Instant::from_secs(120) {
        t += Duration::from_millis(1000 + rng.random_range(0..3000u64));
        let path = rng.random_range(0..2usize);
        let down_for = Duration::from_millis(300 + rng.random_range(0..2200u64));
        h.network_mut().schedule_down(path, t);
        h.network_mut().schedule_up(path, t + down_for);
        failures += 1;
        t += down_for;
    }
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::from_secs(600);
    let outcome = h.run_until(
        |a, b, _| {
            while let Some(ev) = b.poll_event() {
                match ev {
                    Event::Accepted(x) => {
                        let port = b.connection(x).unwrap().remote().port();
                        let id = by_port[&port];
                        all[id].b = Some(x);
                    }
                    Event::Closed(x, Some(e)) => panic!("B's connection {x:?} failed: {e}"),
                    _ => {}
                }
            }
            while let Some(ev) = a.poll_event() {
                if let Event::Closed(x, Some(e)) = ev {
                    panic!("A's connection {x:?} failed: {e}");
                }
            }
            let mut done = true;
            for c in &mut all {
                let [to_b, to_a] = &mut c.flows;
                pump(a, c.a, c.id, to_b, to_a, 0, &mut buf);
                if let Some(bh) = c.b {
                    pump(b, bh, c.id, to_a, to_b, 1, &mut buf);
                }
                done &= c.flows.iter().all(|f| f.got == f.total)
                    && a.recv_finished(c.a)
                    && c.b.is_some_and(|bh| b.recv_finished(bh));
            }
            done
        },
        deadline,
    );
    let secs = h.now().total_millis() as f64 / 1000.0;
    let bytes: usize = all.iter().flat_map(|c| c.flows.iter()).map(|f| f.got).sum();
    let stale: u64 = all
        .iter()
        .map(|c| h.node_a().mptcp(c.a).unwrap().counters().subflow_stale)
        .sum();
    let reinjected: u64 = all
        .iter()
        .map(|c| h.node_a().mptcp(c.a).unwrap().counters().reinjected_bytes)
        .sum();
    eprintln!(
        "soak: {conns} connections, {bytes} bytes verified both ways in {secs:.1} s simulated, \
         {failures} path failures scheduled, {stale} stale subflows at A, {reinjected} bytes \
         reinjected by A (SIM_SEED={seed})"
    );
    assert!(
        outcome.is_satisfied(),
        "not finished by {deadline:?}: {outcome:?}"
    );
}

#[test]
fn data_written_and_closed_before_the_handshake_completes_is_still_delivered() {
    for mptcp in [true, false] {
        written_and_closed_before_the_handshake(mptcp);
    }
}

fn written_and_closed_before_the_handshake(mptcp: bool) {
    let link = LinkConfig::ideal(Duration::from_millis(10));
    let mut cfg = EndpointConfig::seeded(1);
    cfg.mptcp.enabled = mptcp;
    let mut h = Harness::new(
        Network::new(1, vec![PathConfig::new(A1, B1, link)]),
        Endpoint::new(cfg.clone()),
        Endpoint::new(EndpointConfig { seed: 2, ..cfg }),
    );
    h.node_a_mut().add_address(A1);
    h.node_b_mut().add_address(B1);
    h.node_b_mut().listen(PORT);
    let ca = h
        .node_a_mut()
        .connect(SocketAddr::new(A1, 0), SocketAddr::new(B1, PORT))
        .unwrap();
    // Before any packet left: write, then close at once.
    let data: Vec<u8> = (0..100_000).map(|i| byte(0, 0, i)).collect();
    assert_eq!(h.node_a_mut().send(ca, &data).unwrap(), data.len());
    h.node_a_mut().close(ca).unwrap();
    let mut cb = None;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let outcome = h.run_until(
        |_, b, _| {
            while let Some(ev) = b.poll_event() {
                if let Event::Accepted(x) = ev {
                    cb = Some(x);
                }
            }
            let Some(cb) = cb else { return false };
            while let Ok(n) = b.recv(cb, &mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            b.recv_finished(cb)
        },
        Instant::from_secs(10),
    );
    assert!(
        outcome.is_satisfied(),
        "{} of {} bytes",
        got.len(),
        data.len()
    );
    assert_eq!(got, data);
}
