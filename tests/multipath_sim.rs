//! MP_JOIN and two subflows over the simulator: the join handshake with its HMACs, data
//! spread over both paths by the min-RTT scheduler, and joins that must be refused (unknown
//! token, forged HMAC) without creating a subflow.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use mptcp_stack::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, Event};
use mptcp_stack::mptcp::JoinPhase;
use mptcp_stack::mptcp::pm::PathManagerKind;
use mptcp_stack::node::{Duration, Instant, Node};
use mptcp_stack::seq::TcpSeq;
use mptcp_stack::sim::{
    Harness, LinkConfig, Network, PathConfig, Side, refill_tcp_checksum, seed_from_env,
};
use mptcp_stack::wire::{
    IpSegment, JoinRepr, MptcpOptions, MptcpRepr, TcpFlags, TcpOptions, TcpSegment,
};

const A1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const A2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 102, 1));
const B1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
const B2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2));
const PORT: u16 = 5201;

fn link(rate_mbit: u64, delay_ms: u64) -> LinkConfig {
    let rate = rate_mbit * 1_000_000;
    let bdp = rate / 8 * (2 * delay_ms) / 1000;
    LinkConfig::ideal(Duration::from_millis(delay_ms)).with_rate(rate, Some(bdp.max(64 * 1500)))
}

fn two_paths(
    p1: LinkConfig,
    p2: LinkConfig,
    seed: u64,
) -> (Harness<Endpoint, Endpoint>, ConnectionHandle) {
    two_paths_with(p1, p2, seed, |_, _| {})
}

/// [`two_paths`], with each side's configuration changed by `tweak`.
fn two_paths_with(
    p1: LinkConfig,
    p2: LinkConfig,
    seed: u64,
    mut tweak: impl FnMut(Side, &mut EndpointConfig),
) -> (Harness<Endpoint, Endpoint>, ConnectionHandle) {
    let net = Network::new(
        seed,
        vec![PathConfig::new(A1, B1, p1), PathConfig::new(A2, B2, p2)],
    );
    // These tests open subflows by hand: no path manager.
    let mut cfg_a = EndpointConfig {
        seed: 11,
        path_manager: PathManagerKind::Manual,
        ..EndpointConfig::seeded(0)
    };
    tweak(Side::A, &mut cfg_a);
    let mut a = Endpoint::new(cfg_a);
    let mut cfg_b = EndpointConfig {
        seed: 22,
        path_manager: PathManagerKind::Manual,
        ..EndpointConfig::seeded(0)
    };
    tweak(Side::B, &mut cfg_b);
    let mut b = Endpoint::new(cfg_b);
    a.add_address(A1);
    a.add_address(A2);
    b.add_address(B1);
    b.add_address(B2);
    b.listen(PORT);
    let mut h = Harness::new(net, a, b);
    let ca = h
        .node_a_mut()
        .connect(SocketAddr::new(A1, 0), SocketAddr::new(B1, PORT))
        .unwrap();
    (h, ca)
}

/// Establish the connection (keys exchanged both ways) and return B's handle.
fn establish(h: &mut Harness<Endpoint, Endpoint>, ca: ConnectionHandle) -> ConnectionHandle {
    let mut cb = None;
    let outcome = h.run_until(
        |a, b, _| {
            while let Some(ev) = b.poll_event() {
                if let Event::Accepted(x) = ev {
                    cb = Some(x);
                }
            }
            // The server knows the client's key once the third ACK arrived.
            cb.is_some_and(|cb| b.mptcp(cb).is_some_and(|c| c.can_join()))
                && a.mptcp(ca).is_some_and(|c| c.can_join())
        },
        Instant::from_secs(5),
    );
    assert!(outcome.is_satisfied());
    cb.unwrap()
}

fn pattern_fill(buf: &mut [u8], offset: usize) {
    for (i, x) in buf.iter_mut().enumerate() {
        *x = ((offset + i) % 251) as u8;
    }
}

/// A sends `total` bytes; B reads and checks them. Returns the simulated seconds it took.
fn send_all(
    h: &mut Harness<Endpoint, Endpoint>,
    ca: ConnectionHandle,
    cb: ConnectionHandle,
    total: usize,
) -> f64 {
    let start = h.now();
    let mut sent = 0;
    let mut got = 0;
    let mut buf = vec![0u8; 65536];
    let outcome = h.run_until(
        |a, b, _| {
            while sent < total {
                let n = (total - sent).min(buf.len()).min(a.send_capacity(ca));
                if n == 0 {
                    break;
                }
                pattern_fill(&mut buf[..n], sent);
                sent += a.send(ca, &buf[..n]).unwrap();
            }
            loop {
                let n = b.recv(cb, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                if let Some(i) = buf[..n]
                    .iter()
                    .enumerate()
                    .position(|(i, &x)| x != ((got + i) % 251) as u8)
                {
                    panic!("corrupt byte at offset {}", got + i);
                }
                got += n;
            }
            got == total
        },
        start + Duration::from_secs(120),
    );
    assert!(outcome.is_satisfied(), "{got} of {total} bytes");
    (h.now() - start).total_micros() as f64 / 1e6
}

#[test]
fn a_second_subflow_joins_with_verified_hmacs_and_carries_data() {
    let (mut h, ca) = two_paths(link(10, 10), link(10, 10), seed_from_env(1));
    let cb = establish(&mut h, ca);
    let i = h
        .node_a_mut()
        .add_subflow(ca, SocketAddr::new(A2, 0), SocketAddr::new(B2, PORT), false)
        .unwrap();
    assert_eq!(i, 1);
    let outcome = h.run_until(
        |a, b, _| {
            a.mptcp(ca).unwrap().join_phase(1) == Some(JoinPhase::Established)
                && b.mptcp(cb).unwrap().join_phase(1) == Some(JoinPhase::Established)
        },
        h.now() + Duration::from_secs(5),
    );
    assert!(outcome.is_satisfied());
    let a = h.node_a().mptcp(ca).unwrap();
    let b = h.node_b().mptcp(cb).unwrap();
    assert_eq!(a.counters().mp_join_synack_rx, 1);
    assert_eq!(b.counters().mp_join_syn_rx, 1);
    assert_eq!(b.counters().mp_join_ack_rx, 1);
    assert_eq!(b.subflows()[1].tcp().local().ip(), B2);

    // 4 MB over two 10 Mbit/s paths: both carry data, and together beat one path (3.2 s).
    let secs = send_all(&mut h, ca, cb, 4_000_000);
    let a = h.node_a().mptcp(ca).unwrap();
    let per_path: Vec<u64> = a
        .subflows()
        .iter()
        .map(|s| s.tcp().stats().bytes_sent)
        .collect();
    assert!(per_path.iter().all(|&b| b > 1_000_000), "{per_path:?}");
    let goodput = 4_000_000.0 * 8.0 / secs / 1e6;
    assert!(
        goodput > 14.0,
        "aggregate goodput {goodput:.1} Mbit/s over 2 x 10"
    );
}

#[test]
fn two_fast_paths_with_segment_by_segment_mappings_lose_nothing() {
    // Two 1 Gbit/s paths, 5 ms each way, a bandwidth-delay product of queue: a window holds
    // thousands of segments per subflow, each with its own mapping as the scheduler
    // interleaves the subflows. The receiver once kept at most 1024 mappings per subflow,
    // dropped the rest, found data without a mapping and reset the connection (found by
    // benches/sim.rs). Every byte must arrive, in order, over both subflows.
    let (mut h, ca) = two_paths(link(1000, 5), link(1000, 5), seed_from_env(9));
    let cb = establish(&mut h, ca);
    h.node_a_mut()
        .add_subflow(ca, SocketAddr::new(A2, 0), SocketAddr::new(B2, PORT), false)
        .unwrap();
    send_all(&mut h, ca, cb, 16 << 20);
    let a = h.node_a().mptcp(ca).unwrap();
    let b = h.node_b().mptcp(cb).unwrap();
    assert_eq!(a.error(), None);
    assert_eq!(b.counters().unmapped_data, 0);
    assert_eq!(b.counters().rx_maps_dropped, 0);
    assert_eq!(b.counters().dss_not_matching, 0);
    let per_path: Vec<u64> = a
        .subflows()
        .iter()
        .map(|s| s.tcp().stats().bytes_sent)
        .collect();
    assert!(per_path.iter().all(|&b| b > 1 << 20), "{per_path:?}");
}

#[test]
fn an_mp_join_with_an_unknown_token_is_reset_and_creates_nothing() {
    let (mut h, ca) = two_paths(link(10, 10), link(10, 10), seed_from_env(2));
    let cb = establish(&mut h, ca);
    let token = h.node_b().mptcp(cb).unwrap().local_key().token;
    let mut options = MptcpOptions::default();
    options
        .push(MptcpRepr::Join(JoinRepr::Syn {
            backup: false,
            addr_id: 1,
            token: token ^ 1,
            nonce: 7,
        }))
        .unwrap();
    let syn = IpSegment {
        src: A2,
        dst: B2,
        hop_limit: 64,
        tcp: TcpSegment {
            src_port: 40000,
            dst_port: PORT,
            seq: TcpSeq(1000),
            ack: TcpSeq(0),
            flags: TcpFlags(TcpFlags::SYN),
            window: 65535,
            urgent: 0,
            options: TcpOptions {
                mss: Some(1460),
                mptcp: options,
                ..TcpOptions::default()
            },
            payload: &[],
        },
    };
    let mut buf = [0u8; 128];
    let n = syn.emit(&mut buf).unwrap();
    let now = h.now();
    h.node_b_mut().handle_packet(now, &buf[..n]);
    let b = h.node_b();
    assert_eq!(b.stats().join_no_token, 1);
    assert_eq!(b.mptcp(cb).unwrap().subflows().len(), 1);
    // The answer is a RST.
    let mut out = [0u8; 1500];
    let n = h.node_b_mut().poll_transmit(now, &mut out).unwrap();
    assert!(IpSegment::parse(&out[..n]).unwrap().tcp.flags.rst());
}

#[test]
fn a_forged_third_ack_hmac_resets_the_subflow_and_no_data_flows_on_it() {
    let (mut h, ca) = two_paths(link(10, 10), link(10, 10), seed_from_env(3));
    let cb = establish(&mut h, ca);
    // A middlebox flips a bit of the HMAC in A's MP_JOIN third ACK and fixes the TCP checksum
    // up, so only the HMAC check can notice.
    h.set_middlebox(Box::new(|side, buf, len| {
        if side == Side::A
            && IpSegment::parse(&buf[..len]).is_ok_and(|seg| {
                seg.tcp
                    .options
                    .mptcp
                    .iter()
                    .any(|o| matches!(o, MptcpRepr::Join(JoinRepr::Ack { .. })))
            })
            && let Some(at) = buf[..len]
                .windows(3)
                .position(|w| w[0] == 30 && w[1] == 24 && w[2] >> 4 == 1)
        {
            buf[at + 10] ^= 1;
            refill_tcp_checksum(&mut buf[..len]);
        }
        Some(len)
    }));
    h.node_a_mut()
        .add_subflow(ca, SocketAddr::new(A2, 0), SocketAddr::new(B2, PORT), false)
        .unwrap();
    let outcome = h.run_until(
        |_, b, _| b.mptcp(cb).unwrap().join_phase(1) == Some(JoinPhase::Failed),
        h.now() + Duration::from_secs(5),
    );
    assert!(outcome.is_satisfied());
    assert_eq!(
        h.node_b()
            .mptcp(cb)
            .unwrap()
            .counters()
            .mp_join_ack_hmac_failure,
        1
    );
    // The data still flows, on the initial subflow only.
    send_all(&mut h, ca, cb, 1_000_000);
    let b = h.node_b().mptcp(cb).unwrap();
    assert_eq!(b.subflows()[1].tcp().stats().bytes_received, 0);
    assert!(b.subflows()[1].tcp().is_closed());
}

#[test]
fn a_backup_subflow_carries_nothing_while_the_primary_works() {
    let (mut h, ca) = two_paths(link(10, 10), link(10, 5), seed_from_env(4));
    let cb = establish(&mut h, ca);
    h.node_a_mut()
        .add_subflow(ca, SocketAddr::new(A2, 0), SocketAddr::new(B2, PORT), true)
        .unwrap();
    let outcome = h.run_until(
        |a, _, _| a.mptcp(ca).unwrap().join_phase(1) == Some(JoinPhase::Established),
        h.now() + Duration::from_secs(5),
    );
    assert!(outcome.is_satisfied());
    send_all(&mut h, ca, cb, 2_000_000);
    let a = h.node_a().mptcp(ca).unwrap();
    // Even though the backup path has the lower RTT.
    assert_eq!(a.subflows()[1].tcp().stats().bytes_sent, 0);
}

#[test]
fn a_lost_fourth_ack_is_repaired_the_third_ack_is_sent_again_and_answered() {
    let (mut h, ca) = two_paths(link(10, 10), link(10, 10), seed_from_env(5));
    let cb = establish(&mut h, ca);
    // Drop B's first answer on the new subflow after its SYN/ACK: the fourth ACK.
    let mut dropped = false;
    h.set_middlebox(Box::new(move |side, buf, len| {
        if side == Side::B
            && !dropped
            && IpSegment::parse(&buf[..len])
                .is_ok_and(|s| s.src == B2 && !s.tcp.flags.syn() && s.tcp.payload.is_empty())
        {
            dropped = true;
            return None;
        }
        Some(len)
    }));
    h.node_a_mut()
        .add_subflow(ca, SocketAddr::new(A2, 0), SocketAddr::new(B2, PORT), false)
        .unwrap();
    let outcome = h.run_until(
        |a, _, _| a.mptcp(ca).unwrap().join_phase(1) == Some(JoinPhase::Established),
        h.now() + Duration::from_secs(3),
    );
    assert!(
        outcome.is_satisfied(),
        "the client's subflow never became usable"
    );
    assert_eq!(h.node_b().mptcp(cb).unwrap().counters().mp_join_ack_rx, 1);
    send_all(&mut h, ca, cb, 1_000_000);
    assert!(
        h.node_a().mptcp(ca).unwrap().subflows()[1]
            .tcp()
            .stats()
            .bytes_sent
            > 0
    );
}

#[test]
fn a_receiver_that_drains_its_buffer_frees_the_senders() {
    // The receiver reads nothing until the sender's buffer is full of data its subflows all
    // delivered (the receiver's subflows hold it: its connection-level buffer is full), then
    // reads once. What it read is replaced by what its subflows held, so DATA_ACK moves by as
    // much, while no subflow's own window changes enough for it to send an ACK by itself. The
    // MPTCP layer must say so (section 3.3.4), or the sender waits forever: every byte
    // acknowledged by the subflows, nothing in flight and no timer left.
    let (mut h, ca) = two_paths_with(
        link(100, 5),
        link(100, 5),
        seed_from_env(31),
        |side, cfg| {
            match side {
                Side::A => cfg.mptcp.tx_buffer = 8 << 20,
                // Subflow buffers larger than the connection-level one (4 MiB).
                Side::B => cfg.tcp.rx_buffer = 16 << 20,
            }
        },
    );
    let cb = establish(&mut h, ca);
    h.node_a_mut()
        .add_subflow(ca, SocketAddr::new(A2, 0), SocketAddr::new(B2, PORT), false)
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let mut sent = 0;
    let outcome = h.run_until(
        |a, b, _| {
            while a.send_capacity(ca) > 0 {
                pattern_fill(&mut buf, sent);
                sent += a.send(ca, &buf).unwrap();
            }
            let c = a.mptcp(ca).unwrap();
            a.send_capacity(ca) == 0
                && c.subflows().iter().all(|s| s.tcp().send_queue() == 0)
                && b.mptcp(cb).unwrap().recv_available() >= 4 << 20
        },
        Instant::from_secs(30),
    );
    assert!(outcome.is_satisfied(), "{outcome:?}");
    let una = h.node_a().mptcp(ca).unwrap().snd_una();
    let mut got = 0;
    loop {
        let n = h.node_b_mut().recv(cb, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(
            buf[..n]
                .iter()
                .enumerate()
                .all(|(i, &x)| x == ((got + i) % 251) as u8),
            "corrupt data near offset {got}"
        );
        got += n;
    }
    assert!(got >= 4 << 20, "read {got}");
    // The sender has 4 MiB more to send: the time passes either way.
    let _ = h.run_for(Duration::from_millis(100));
    let freed = h.node_a().mptcp(ca).unwrap().snd_una().distance_from(una);
    assert!(
        freed >= 4 << 20,
        "the sender's DATA_ACK moved {freed} bytes after the receiver read {got}"
    );
}
