//! Scale and memory of one server stack, over an in-memory link (no device, no root):
//!
//! - connection set-up rate and heap bytes per idle connection, client and server side, with
//!   one subflow and with two (the extra subflow's cost is the difference);
//! - the cost of a packet of one bulk transfer while 0 to N other connections sit idle on the
//!   same two stacks (it should not grow with N), and heap allocations per packet once the
//!   transfer runs (steady state).
//!
//! Run: `cargo run --release --example scale -- [connections]` (10000 by default). Both
//! stacks run on this one thread; the figures are wall time, so compare within a run.
//! Bytes are counted by a global allocator that adds up what is live: what a connection costs
//! includes its share of the endpoint's tables (a `Vec` of slots and hash maps, which grow by
//! doubling, so the figure moves a little with N).

use std::alloc::System;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant as WallClock;

use mptcp_stack::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, Event};
use mptcp_stack::mptcp::pm::AddrFlags;
use mptcp_stack::node::{Duration, Instant, Node};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes live now.
fn live() -> usize {
    let s = GLOBAL.stats();
    // A reallocation is counted in both (the new size allocated, the old one deallocated).
    s.bytes_allocated - s.bytes_deallocated
}

/// Allocation calls so far (reallocations included).
fn allocs() -> u64 {
    let s = GLOBAL.stats();
    (s.allocations + s.reallocations) as u64
}

const A1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const A2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 102, 1));
const B1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
const PORT: u16 = 80;

/// A client and a server endpoint wired back to back.
struct Pair {
    a: Endpoint,
    b: Endpoint,
    now: Instant,
    pkt: Vec<u8>,
    accepted: Vec<ConnectionHandle>,
    connected: usize,
}

impl Pair {
    fn new(subflows: usize) -> Pair {
        let cfg = EndpointConfig::seeded(1);
        let mut a = Endpoint::new(cfg.clone());
        let mut b = Endpoint::new(EndpointConfig { seed: 2, ..cfg });
        let flags = AddrFlags {
            signal: false,
            subflow: true,
            backup: false,
        };
        a.add_address_with(A1, flags);
        if subflows > 1 {
            a.add_address_with(A2, flags);
        }
        b.add_address(B1);
        b.listen(PORT);
        Pair {
            a,
            b,
            now: Instant::from_millis(0),
            pkt: vec![0u8; 65_536],
            accepted: Vec::new(),
            connected: 0,
        }
    }

    /// Move packets both ways and take events until neither side has anything to send; returns
    /// the packets moved.
    fn pump(&mut self) -> u64 {
        let mut moved = 0;
        loop {
            let mut round = 0;
            while let Some(n) = self.a.poll_transmit(self.now, &mut self.pkt) {
                self.b.handle_packet(self.now, &self.pkt[..n]);
                round += 1;
            }
            while let Some(n) = self.b.poll_transmit(self.now, &mut self.pkt) {
                self.a.handle_packet(self.now, &self.pkt[..n]);
                round += 1;
            }
            self.events();
            moved += round;
            if round == 0 {
                return moved;
            }
        }
    }

    fn events(&mut self) {
        while let Some(ev) = self.b.poll_event() {
            if let Event::Accepted(h) = ev {
                let _ = self.b.accept(h);
                self.accepted.push(h);
            }
        }
        while let Some(ev) = self.a.poll_event() {
            if let Event::Connected(_) = ev {
                self.connected += 1;
            }
        }
    }

    /// Let `d` pass and run the timers due.
    fn tick(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        for ep in [&mut self.a, &mut self.b] {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
        }
    }

    /// Open `n` connections, 100 at a time, and wait until every one is established (and its
    /// path manager done); returns the client handles.
    fn open(&mut self, n: usize) -> Vec<ConnectionHandle> {
        let mut hs = Vec::with_capacity(n);
        let target = self.connected + n;
        while hs.len() < n {
            for _ in 0..100.min(n - hs.len()) {
                let h = self
                    .a
                    .connect(SocketAddr::new(A1, 0), SocketAddr::new(B1, PORT))
                    .expect("connect");
                hs.push(h);
            }
            self.pump();
        }
        // The joins (two subflows) and the last acknowledgements need a few rounds of timers.
        for _ in 0..200 {
            self.tick(Duration::from_millis(1));
            self.pump();
        }
        assert_eq!(
            self.connected, target,
            "every connection must be established"
        );
        hs
    }
}

/// Heap bytes per connection, client and server side, for `n` connections of `subflows`
/// subflows, without the buffers (what their rings have allocated, counted apart); and the
/// set-up rate in connections per second. With `exchange`, each connection carries one byte
/// from client to server first: a client learns that the server has its key only from the
/// server's DSS (RFC 8684 section 3.1), and joins wait for that.
struct Memory {
    client: f64,
    server: f64,
    buffers: f64,
    rate: f64,
}

fn memory(n: usize, subflows: usize, exchange: bool) -> Memory {
    let before = live();
    let mut pair = Pair::new(subflows);
    let t = WallClock::now();
    let hs = pair.open(n);
    let rate = n as f64 / t.elapsed().as_secs_f64();
    if exchange {
        for &h in &hs {
            pair.a.send(h, b"x").expect("send");
        }
        pair.pump();
        let mut one = [0u8; 1];
        for &h in &pair.accepted.clone() {
            assert_eq!(pair.b.recv(h, &mut one), Ok(1));
        }
        for _ in 0..200 {
            pair.tick(Duration::from_millis(1));
            pair.pump();
        }
    }
    let joined = hs
        .iter()
        .filter(|&&h| {
            pair.a
                .mptcp(h)
                .is_some_and(|m| m.subflows().len() == subflows)
        })
        .count();
    assert_eq!(joined, n, "every connection must have {subflows} subflows");
    let buffers = |ep: &Endpoint| -> usize {
        ep.handles()
            .filter_map(|h| ep.mptcp(h))
            .map(|m| m.buffer_memory())
            .sum()
    };
    let (buf_a, buf_b) = (buffers(&pair.a), buffers(&pair.b));
    let total = live() - before;
    let Pair { a, b, .. } = pair;
    let with_client = live();
    drop(a);
    let client = with_client - live();
    let server = total - client;
    drop(b);
    let per = |x: usize| x as f64 / n as f64;
    Memory {
        client: per(client - buf_a),
        server: per(server - buf_b),
        buffers: per(buf_a + buf_b),
        rate,
    }
}

/// One bulk transfer of `bytes` on a fresh connection while `idle` others are open on the same
/// stacks: nanoseconds per packet (both directions counted) and heap allocations per packet
/// over the second half of the transfer.
fn per_packet(idle: usize, bytes: usize) -> (f64, f64) {
    let mut pair = Pair::new(1);
    pair.open(idle);
    let h = pair.open(1)[0];
    let server = *pair.accepted.last().expect("accepted");
    let data = vec![0x5au8; 256 * 1024];
    let mut rbuf = vec![0u8; 256 * 1024];
    let (mut sent, mut got) = (0usize, 0usize);
    let packets = |p: &Pair| p.a.stats().packets_out + p.b.stats().packets_out;
    let (p0, t0) = (packets(&pair), WallClock::now());
    let mut steady: Option<(u64, u64)> = None;
    while got < bytes {
        if steady.is_none() && got >= bytes / 2 {
            steady = Some((packets(&pair), allocs()));
        }
        if sent < bytes
            && let Ok(n) = pair.a.send(h, &data[..(bytes - sent).min(data.len())])
        {
            sent += n;
        }
        pair.pump();
        while let Ok(n) = pair.b.recv(server, &mut rbuf) {
            if n == 0 {
                break;
            }
            got += n;
        }
        pair.tick(Duration::from_micros(10));
    }
    let ns = t0.elapsed().as_nanos() as f64 / (packets(&pair) - p0) as f64;
    let (sp, sa) = steady.expect("the transfer passed its half");
    let per = (allocs() - sa) as f64 / (packets(&pair) - sp) as f64;
    (ns, per)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("connections: a number"))
        .unwrap_or(10_000);
    println!("scale: {n} connections, MTU 1500, in memory, one thread for both stacks");
    let idle = memory(n, 1, false);
    println!(
        "  idle, 1 subflow:        client {:.0} B/conn, server {:.0} B/conn, buffers {:.0} B; \
         set-up {:.0} conn/s",
        idle.client, idle.server, idle.buffers, idle.rate
    );
    let one = memory(n, 1, true);
    let two = memory(n, 2, true);
    for (name, m) in [("1 byte, 1 subflow: ", &one), ("1 byte, 2 subflows:", &two)] {
        println!(
            "  {name}    client {:.0} B/conn, server {:.0} B/conn without buffers \
             (buffers {:.0} B/conn, both sides)",
            m.client, m.server, m.buffers
        );
    }
    println!(
        "  the extra subflow: client {:.0} B, server {:.0} B",
        two.client - one.client,
        two.server - one.server
    );
    let bytes = 32 << 20;
    let mut base = None;
    for idle in [0, n / 100, n / 10, n] {
        let (ns, per) = per_packet(idle, bytes);
        let ratio = ns / *base.get_or_insert(ns);
        println!(
            "  bulk transfer with {idle:>6} idle connections: {ns:.0} ns/packet ({ratio:.2} of \
             none), {per:.3} allocations/packet"
        );
    }
}
