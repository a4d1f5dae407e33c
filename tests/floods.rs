//! Floods over the simulator: a SYN flood from spoofed addresses against a listener while a
//! real client connects, and an RST flood with guessed sequence numbers against an established
//! connection, and an MP_FASTCLOSE with a wrong key. The listener's memory stays bounded
//! (`max_half_open`), the real client gets through, the connection survives, and every byte
//! arrives intact.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use mptcp_stack::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, Event};
use mptcp_stack::node::{Duration, Instant, Node};
use mptcp_stack::seq::TcpSeq;
use mptcp_stack::sim::{Harness, LinkConfig, Network, PathConfig, seed_from_env};
use mptcp_stack::wire::{IpSegment, TcpFlags, TcpOptions, TcpSegment};

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
const PORT: u16 = 5201;

fn segment(src: SocketAddr, dst: SocketAddr, seq: u32, flags: u8) -> Vec<u8> {
    let ip = IpSegment {
        src: src.ip(),
        dst: dst.ip(),
        hop_limit: 64,
        tcp: TcpSegment {
            src_port: src.port(),
            dst_port: dst.port(),
            seq: TcpSeq(seq),
            ack: TcpSeq(0),
            flags: TcpFlags(flags),
            window: 65535,
            urgent: 0,
            options: TcpOptions {
                mss: (flags & TcpFlags::SYN != 0).then_some(1460),
                ..TcpOptions::default()
            },
            payload: &[],
        },
    };
    let mut buf = vec![0u8; 128];
    let n = ip.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn pair(seed: u64, max_half_open: usize) -> Harness<Endpoint, Endpoint> {
    let link = LinkConfig::ideal(Duration::from_millis(10)).with_rate(10_000_000, Some(100_000));
    let net = Network::new(seed, vec![PathConfig::new(A, B, link)]);
    let mut a = Endpoint::new(EndpointConfig {
        seed: seed + 1,
        ..EndpointConfig::seeded(0)
    });
    let mut b = Endpoint::new(EndpointConfig {
        seed: seed + 2,
        max_half_open,
        ..EndpointConfig::seeded(0)
    });
    a.add_address(A);
    b.add_address(B);
    b.listen(PORT);
    Harness::new(net, a, b)
}

/// Move `total` verified bytes A -> B on (ca, cb), `inject` running before every round.
fn transfer(
    h: &mut Harness<Endpoint, Endpoint>,
    ca: ConnectionHandle,
    cb: ConnectionHandle,
    total: usize,
    mut inject: impl FnMut(&mut Endpoint, Instant),
) {
    let (mut sent, mut got) = (0usize, 0usize);
    let mut buf = vec![0u8; 65536];
    let outcome = h.run_until(
        |a, b, now| {
            inject(b, now);
            while sent < total {
                let n = (total - sent).min(buf.len()).min(a.send_capacity(ca));
                if n == 0 {
                    break;
                }
                for (i, x) in buf[..n].iter_mut().enumerate() {
                    *x = ((sent + i) % 251) as u8;
                }
                sent += a.send(ca, &buf[..n]).unwrap();
            }
            while let Ok(n) = b.recv(cb, &mut buf) {
                if n == 0 {
                    break;
                }
                for (i, &x) in buf[..n].iter().enumerate() {
                    assert_eq!(x, ((got + i) % 251) as u8, "byte {}", got + i);
                }
                got += n;
            }
            got == total
        },
        h.now() + Duration::from_secs(60),
    );
    assert!(outcome.is_satisfied(), "{got} of {total} bytes");
}

#[test]
fn a_syn_flood_fills_only_the_half_open_table_and_a_real_client_gets_through() {
    let seed = seed_from_env(1);
    // 20,000 SYNs a second and a 20 ms handshake: a table of 1024 keeps a half-open
    // connection about 50 ms, long enough for the real client's third ACK. (Without SYN
    // cookies the defence holds while flood rate x RTT stays below the table size.)
    let max_half_open = 1024;
    let mut h = pair(seed, max_half_open);
    // The attacker's own deterministic choices.
    let mut atk = StdRng::seed_from_u64(seed | 1);
    let flood = |b: &mut Endpoint, now: Instant, atk: &mut StdRng| {
        // 20 spoofed SYNs per round, from 10.x.y.z, random ports.
        for _ in 0..20 {
            let r: u64 = atk.random();
            let src = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, (r >> 8) as u8, (r >> 16) as u8, r as u8)),
                (r >> 24) as u16 | 1024,
            );
            b.handle_packet(
                now,
                &segment(
                    src,
                    SocketAddr::new(B, PORT),
                    (r >> 32) as u32,
                    TcpFlags::SYN,
                ),
            );
        }
    };
    // The flood runs for 200 ms (4,000 SYNs) before the client comes, and goes on, one burst
    // per millisecond, until the client is accepted.
    for _ in 0..200 {
        let now = h.now();
        flood(h.node_b_mut(), now, &mut atk);
        let _ = h.run_for(Duration::from_millis(1));
    }
    let ca = h
        .node_a_mut()
        .connect(SocketAddr::new(A, 0), SocketAddr::new(B, PORT))
        .unwrap();
    let mut cb = None;
    for _ in 0..10_000 {
        let now = h.now();
        flood(h.node_b_mut(), now, &mut atk);
        let _ = h.run_for(Duration::from_millis(1));
        while let Some(ev) = h.node_b_mut().poll_event() {
            if let Event::Accepted(x) = ev {
                cb = Some(x);
            }
        }
        if cb.is_some() {
            break;
        }
    }
    assert!(cb.is_some(), "the real client never got through");
    let b = h.node_b();
    assert!(b.stats().syns_evicted > 1000, "{:?}", b.stats());
    let slots = b.handles().count();
    assert!(
        slots <= max_half_open + 1,
        "{slots} connections held for a table of {max_half_open}"
    );
    // And the connection works, flood or not.
    transfer(&mut h, ca, cb.unwrap(), 1_000_000, |b, now| {
        flood(b, now, &mut atk)
    });
    eprintln!("SYN flood: {:?}", h.node_b().stats());
}

#[test]
fn an_rst_flood_with_guessed_sequence_numbers_does_not_reset_the_connection() {
    let seed = seed_from_env(2);
    let mut h = pair(seed, 256);
    let ca = h
        .node_a_mut()
        .connect(SocketAddr::new(A, 0), SocketAddr::new(B, PORT))
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
    let cb = cb.unwrap();
    let a_addr = h.node_a().connection(ca).unwrap().local();
    let mut atk = StdRng::seed_from_u64(seed | 3);
    let mut injected = 0u64;
    // An off-path attacker who knows the 4-tuple but not the sequence numbers: 50 RSTs a
    // round at random sequence numbers (RFC 5961 section 3: only an exact match resets).
    transfer(&mut h, ca, cb, 2_000_000, |b, now| {
        for _ in 0..50 {
            let seq: u32 = atk.random();
            b.handle_packet(
                now,
                &segment(a_addr, SocketAddr::new(B, PORT), seq, TcpFlags::RST),
            );
            injected += 1;
        }
    });
    let b = h.node_b().connection(cb).unwrap();
    assert!(b.error().is_none());
    let s = b.stats();
    eprintln!(
        "RST flood: {injected} RSTs, {} challenge ACKs, {} suppressed",
        s.challenge_acks, s.invalid_acks_suppressed
    );
    assert!(injected > 10_000);
    // Challenge ACKs are rate-limited, not one per forged RST.
    assert!(
        s.challenge_acks < injected / 10,
        "{} challenge ACKs",
        s.challenge_acks
    );
}

#[test]
fn an_mp_fastclose_with_a_wrong_key_is_ignored_even_in_sequence() {
    // Even an attacker who sees the sequence numbers (on the path) cannot close the
    // connection without the receiver's key (RFC 8684 section 3.5).
    let seed = seed_from_env(3);
    let mut h = pair(seed, 256);
    let ca = h
        .node_a_mut()
        .connect(SocketAddr::new(A, 0), SocketAddr::new(B, PORT))
        .unwrap();
    let mut cb = None;
    let _ = h.run_until(
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
    let cb = cb.expect("accepted");
    transfer(&mut h, ca, cb, 200_000, |_, _| {});
    let a = h.node_a().connection(ca).unwrap();
    let (src, seq, ack) = (a.local(), a.snd_nxt(), a.rcv_nxt());
    let real_key = h.node_b().mptcp(cb).unwrap().local_key().key;
    let mut options = mptcp_stack::wire::MptcpOptions::default();
    options
        .push(mptcp_stack::wire::MptcpRepr::FastClose {
            receiver_key: real_key ^ 0x8000_0000_0000_0000,
        })
        .unwrap();
    let forged = IpSegment {
        src: src.ip(),
        dst: B,
        hop_limit: 64,
        tcp: TcpSegment {
            src_port: src.port(),
            dst_port: PORT,
            seq,
            ack,
            flags: TcpFlags(TcpFlags::ACK),
            window: 65535,
            urgent: 0,
            options: TcpOptions {
                mptcp: options,
                ..TcpOptions::default()
            },
            payload: &[],
        },
    };
    let mut buf = [0u8; 128];
    let n = forged.emit(&mut buf).unwrap();
    let now = h.now();
    h.node_b_mut().handle_packet(now, &buf[..n]);
    let b = h.node_b().mptcp(cb).unwrap();
    assert_eq!(b.counters().mp_fastclose_bad_key, 1);
    assert_eq!(b.counters().mp_fastclose_rx, 0);
    assert!(b.error().is_none());
    // The connection goes on.
    transfer(&mut h, ca, cb, 200_000, |_, _| {});
}
