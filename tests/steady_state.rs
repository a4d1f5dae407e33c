//! No heap allocation per packet once a transfer runs, even while it recovers from loss
//! (issue 7's memory target): two endpoints back to back in memory, one MPTCP connection, and
//! one full-sized segment in 97 from the client dropped; once the buffers and the recovery
//! state have grown, the second half of the transfer (its losses, SACKs and retransmissions
//! included) allocates nothing at all. Counted by a global allocator, so this file holds this
//! one test (other tests' threads would allocate meanwhile).

use std::alloc::System;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use mptcp_stack::endpoint::{Endpoint, EndpointConfig, Event};
use mptcp_stack::node::{Duration, Instant, Node};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const A1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const B1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
const BYTES: usize = 8 << 20;

fn allocations() -> usize {
    let s = GLOBAL.stats();
    s.allocations + s.reallocations
}

#[test]
fn a_running_transfer_allocates_nothing_per_packet_even_through_loss_recovery() {
    let mut a = Endpoint::new(EndpointConfig::seeded(1));
    let mut b = Endpoint::new(EndpointConfig::seeded(2));
    a.add_address(A1);
    b.add_address(B1);
    b.listen(80);
    let h = a
        .connect(SocketAddr::new(A1, 0), SocketAddr::new(B1, 80))
        .unwrap();
    let mut bh = None;
    let data = vec![0x5au8; 64 * 1024];
    let mut rbuf = vec![0u8; 64 * 1024];
    let mut pkt = vec![0u8; 65_536];
    let mut now = Instant::from_millis(0);
    let (mut sent, mut got) = (0usize, 0usize);
    let (mut full_sized, mut dropped) = (0u64, 0u64);
    let mut steady: Option<(usize, u64)> = None;
    while got < BYTES {
        if steady.is_none() && got >= BYTES / 2 {
            steady = Some((allocations(), a.stats().packets_out + b.stats().packets_out));
        }
        if sent < BYTES
            && let Ok(n) = a.send(h, &data[..(BYTES - sent).min(data.len())])
        {
            sent += n;
        }
        while let Some(n) = a.poll_transmit(now, &mut pkt) {
            if n >= 1400 {
                full_sized += 1;
                if full_sized % 97 == 0 {
                    dropped += 1;
                    continue;
                }
            }
            b.handle_packet(now, &pkt[..n]);
        }
        while let Some(ev) = b.poll_event() {
            if let Event::Accepted(x) = ev {
                bh = Some(x);
            }
        }
        while a.poll_event().is_some() {}
        if let Some(x) = bh {
            while let Ok(n) = b.recv(x, &mut rbuf) {
                if n == 0 {
                    break;
                }
                assert!(rbuf[..n].iter().all(|&x| x == 0x5a));
                got += n;
            }
        }
        while let Some(n) = b.poll_transmit(now, &mut pkt) {
            a.handle_packet(now, &pkt[..n]);
        }
        now += Duration::from_micros(10);
        for ep in [&mut a, &mut b] {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
        }
    }
    let (before, packets_before) = steady.unwrap();
    assert!(dropped > 20, "only {dropped} segments dropped");
    let tcp = a.mptcp(h).unwrap().subflows()[0].tcp().stats();
    assert!(tcp.fast_recoveries > 20, "{tcp:?}");
    let packets = a.stats().packets_out + b.stats().packets_out - packets_before;
    assert!(packets > 2000, "the second half moved {packets} packets");
    assert_eq!(
        allocations() - before,
        0,
        "heap allocations over the last {packets} packets"
    );
}
