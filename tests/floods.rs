//! Floods over the simulator: a SYN flood from spoofed addresses against a listener while a
//! real client connects (through a SYN cookie, or, with cookies off, through the evicting
//! half-open table), forged cookie ACKs, a flood of MP_JOIN SYNs with a valid token, a listener
//! whose application does not accept, an RST flood with guessed sequence numbers against an
//! established connection, and an MP_FASTCLOSE with a wrong key. The listener's memory stays
//! bounded (`max_half_open`, `max_pending_joins`, `accept_backlog`), the real client gets
//! through, the connection survives, and every byte arrives intact.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use mptcp_stack::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, Event};
use mptcp_stack::mptcp::{JoinPhase, Mode};
use mptcp_stack::node::{Duration, Instant, Node};
use mptcp_stack::seq::TcpSeq;
use mptcp_stack::sim::{Harness, LinkConfig, Network, PathConfig, seed_from_env};
use mptcp_stack::tcp::State;
use mptcp_stack::wire::{
    CapableFlags, CapableKeys, CapableRepr, IpSegment, JoinRepr, MptcpOptions, MptcpRepr, TcpFlags,
    TcpOptions, TcpSegment, Timestamp,
};

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
    pair_with(seed, |c| c.max_half_open = max_half_open)
}

/// A client at A and a server listening at B:PORT, the server's configuration as `server`
/// makes it.
fn pair_with(seed: u64, server: impl FnOnce(&mut EndpointConfig)) -> Harness<Endpoint, Endpoint> {
    let link = LinkConfig::ideal(Duration::from_millis(10)).with_rate(10_000_000, Some(100_000));
    let net = Network::new(seed, vec![PathConfig::new(A, B, link)]);
    let mut a = Endpoint::new(EndpointConfig {
        seed: seed + 1,
        ..EndpointConfig::seeded(0)
    });
    let mut cfg = EndpointConfig {
        seed: seed + 2,
        ..EndpointConfig::seeded(0)
    };
    server(&mut cfg);
    let mut b = Endpoint::new(cfg);
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
fn with_cookies_off_a_syn_flood_fills_only_the_half_open_table_and_a_real_client_gets_through() {
    let seed = seed_from_env(1);
    // 20,000 SYNs a second and a 20 ms handshake: a table of 1024 keeps a half-open
    // connection about 50 ms, long enough for the real client's third ACK. (Without SYN
    // cookies the defence holds while flood rate x RTT stays below the table size.)
    let max_half_open = 1024;
    let mut h = pair_with(seed, |c| {
        c.max_half_open = max_half_open;
        c.syn_cookies = false;
    });
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

// ---- SYN cookies, the join cap and the accept backlog ---------------------------------------

fn emit(ip: &IpSegment<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    let n = ip.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn packet(
    src: SocketAddr,
    dst: SocketAddr,
    (seq, ack): (u32, u32),
    flags: u8,
    options: TcpOptions,
) -> Vec<u8> {
    emit(&IpSegment {
        src: src.ip(),
        dst: dst.ip(),
        hop_limit: 64,
        tcp: TcpSegment {
            src_port: src.port(),
            dst_port: dst.port(),
            seq: TcpSeq(seq),
            ack: TcpSeq(ack),
            flags: TcpFlags(flags),
            window: 65535,
            urgent: 0,
            options,
            payload: &[],
        },
    })
}

/// A spoofed source address in 10.0.0.0/8 with a port above 1023.
fn spoofed(r: u64) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, (r >> 8) as u8, (r >> 16) as u8, r as u8)),
        (r >> 24) as u16 | 1024,
    )
}

fn mptcp_option(repr: MptcpRepr) -> MptcpOptions {
    let mut o = MptcpOptions::default();
    o.push(repr).unwrap();
    o
}

/// The options of an MPTCP v1 client's SYN: MSS, window scale 7, SACK, timestamps,
/// MP_CAPABLE without a key.
fn mp_capable_syn_options(tsval: u32) -> TcpOptions {
    TcpOptions {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamp: Some(Timestamp { tsval, tsecr: 0 }),
        mptcp: mptcp_option(MptcpRepr::Capable(CapableRepr {
            version: 1,
            flags: CapableFlags::v1(false, false),
            keys: CapableKeys::None,
        })),
        ..TcpOptions::default()
    }
}

/// `n` spoofed MPTCP SYNs to B:PORT at `now`.
fn syn_flood(b: &mut Endpoint, now: Instant, atk: &mut StdRng, n: usize) -> u64 {
    for _ in 0..n {
        let r: u64 = atk.random();
        let syn = packet(
            spoofed(r),
            SocketAddr::new(B, PORT),
            ((r >> 32) as u32, 0),
            TcpFlags::SYN,
            mp_capable_syn_options(r as u32),
        );
        b.handle_packet(now, &syn);
    }
    n as u64
}

#[test]
fn a_syn_flood_far_beyond_the_half_open_table_gets_cookies_and_a_real_client_connects_through_one()
{
    let seed = seed_from_env(4);
    let max_half_open = 1024;
    let mut h = pair(seed, max_half_open);
    let mut atk = StdRng::seed_from_u64(seed | 5);
    let mut flooded = 0u64;
    // 50 spoofed SYNs a millisecond: 30 ms fill the table (1,500 SYNs), then the client comes
    // while the flood goes on to 50,000 SYNs and through the whole transfer.
    for _ in 0..30 {
        let now = h.now();
        flooded += syn_flood(h.node_b_mut(), now, &mut atk, 50);
        let _ = h.run_for(Duration::from_millis(1));
    }
    assert_eq!(
        h.node_b().stats().syncookies_sent,
        flooded - max_half_open as u64
    );
    let ca = h
        .node_a_mut()
        .connect(SocketAddr::new(A, 0), SocketAddr::new(B, PORT))
        .unwrap();
    let mut cb = None;
    while cb.is_none() || flooded < 50_000 {
        let now = h.now();
        flooded += syn_flood(h.node_b_mut(), now, &mut atk, 50);
        let _ = h.run_for(Duration::from_millis(1));
        while let Some(ev) = h.node_b_mut().poll_event() {
            if let Event::Accepted(x) = ev {
                cb = Some(x);
            }
        }
        assert!(flooded < 500_000, "the real client never got through");
    }
    let cb = cb.unwrap();
    let b = h.node_b();
    let s = *b.stats();
    // Stateless: the table stayed at its size, nothing was evicted, and the client's
    // connection was built from its third ACK's cookie.
    assert_eq!(s.syns_evicted, 0);
    assert!(s.syncookies_sent > 45_000, "{s:?}");
    assert_eq!(s.syncookies_recv, 1, "{s:?}");
    assert_eq!(s.syncookies_failed, 0, "{s:?}");
    let slots = b.handles().count();
    assert!(slots <= max_half_open + 1, "{slots} connections held");
    // MPTCP through the cookie: the key the client learned from the cookie SYN/ACK is the
    // server's, and the options the cookie carried in the timestamp bits are in use.
    let (server, client) = (b.mptcp(cb).unwrap(), h.node_a().mptcp(ca).unwrap());
    assert_eq!(server.mode(), Mode::Mptcp);
    assert_eq!(client.mode(), Mode::Mptcp);
    assert_eq!(client.remote_key(), Some(server.local_key()));
    assert_eq!(server.remote_key(), Some(client.local_key()));
    let (st, ct) = (server.primary(), client.primary());
    assert!(st.sack_enabled() && st.timestamps_enabled());
    let (ours, theirs) = st.window_shifts();
    assert_eq!((theirs, ours), ct.window_shifts());
    assert!(theirs > 0);
    transfer(&mut h, ca, cb, 1_000_000, |b, now| {
        flooded += syn_flood(b, now, &mut atk, 20);
    });
    eprintln!(
        "SYN flood, cookies: {flooded} SYNs, {:?}",
        h.node_b().stats()
    );
}

/// A listener at B:PORT whose half-open table (8) is full of spoofed SYNs, so that the next
/// SYN is answered with a cookie.
fn cookie_listener(seed: u64) -> Endpoint {
    let mut b = Endpoint::new(EndpointConfig {
        max_half_open: 8,
        ..EndpointConfig::seeded(seed)
    });
    b.add_address(B);
    b.listen(PORT);
    let mut atk = StdRng::seed_from_u64(seed);
    syn_flood(&mut b, Instant::from_millis(0), &mut atk, 8);
    let mut buf = [0u8; 1500];
    while b.poll_transmit(Instant::from_millis(0), &mut buf).is_some() {}
    assert_eq!(b.stats().syncookies_sent, 0);
    b
}

/// The cookie SYN/ACK for a SYN from `client` with ISN `isn`: its sequence number (the
/// cookie), TSval and MPTCP key.
fn cookie_synack(b: &mut Endpoint, now: Instant, client: SocketAddr, isn: u32) -> (u32, u32, u64) {
    let syn = packet(
        client,
        SocketAddr::new(B, PORT),
        (isn, 0),
        TcpFlags::SYN,
        mp_capable_syn_options(777),
    );
    b.handle_packet(now, &syn);
    assert_eq!(b.stats().syncookies_sent, 1);
    let mut buf = [0u8; 1500];
    let n = b.poll_transmit(now, &mut buf).expect("a SYN/ACK");
    let ip = IpSegment::parse(&buf[..n]).unwrap();
    assert_eq!(ip.dst, client.ip());
    assert!(ip.tcp.flags.syn() && ip.tcp.flags.ack());
    assert_eq!(ip.tcp.ack, TcpSeq(isn.wrapping_add(1)));
    let key = ip
        .tcp
        .options
        .mptcp
        .iter()
        .find_map(|o| match o {
            MptcpRepr::Capable(CapableRepr {
                keys: CapableKeys::Sender { sender_key },
                ..
            }) => Some(*sender_key),
            _ => None,
        })
        .expect("MP_CAPABLE with the server's key");
    let tsval = ip.tcp.options.timestamp.expect("timestamps").tsval;
    let cookie = ip.tcp.seq.0;
    assert!(b.poll_transmit(now, &mut buf).is_none());
    (cookie, tsval, key)
}

/// A third ACK for the cookie SYN/ACK: both keys, the echoed TSval.
fn third_ack(client: SocketAddr, (seq, ack): (u32, u32), tsecr: u32, server_key: u64) -> Vec<u8> {
    packet(
        client,
        SocketAddr::new(B, PORT),
        (seq, ack),
        TcpFlags::ACK,
        TcpOptions {
            timestamp: Some(Timestamp { tsval: 778, tsecr }),
            mptcp: mptcp_option(MptcpRepr::Capable(CapableRepr {
                version: 1,
                flags: CapableFlags::v1(false, false),
                keys: CapableKeys::Both {
                    sender_key: 0x0123_4567_89ab_cdef,
                    receiver_key: server_key,
                },
            })),
            ..TcpOptions::default()
        },
    )
}

/// Whether the next packet out is an RST to `to`.
fn rst_to(b: &mut Endpoint, now: Instant, to: SocketAddr) -> bool {
    let mut buf = [0u8; 1500];
    let Some(n) = b.poll_transmit(now, &mut buf) else {
        return false;
    };
    let ip = IpSegment::parse(&buf[..n]).unwrap();
    ip.dst == to.ip() && ip.tcp.dst_port == to.port() && ip.tcp.flags.rst()
}

#[test]
fn a_forged_third_ack_with_a_wrong_cookie_creates_nothing_and_is_counted() {
    let mut b = cookie_listener(seed_from_env(6));
    let now = Instant::from_millis(10);
    let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1)), 40_000);
    let isn = 0x1000_0000u32;
    let (cookie, tsval, key) = cookie_synack(&mut b, now, client, isn);
    let held = b.handles().count();
    // A blind attacker who did not see the SYN/ACK guesses the cookie: one bit off the MAC,
    // one off the MSS index, or the right cookie with another client ISN.
    let forgeries = [
        (isn + 1, (cookie ^ 0x0100_0000).wrapping_add(1)),
        (isn + 1, (cookie ^ 0x0000_0001).wrapping_add(1)),
        (isn + 2, cookie.wrapping_add(1)),
    ];
    for (k, &(seq, ack)) in forgeries.iter().enumerate() {
        b.handle_packet(now, &third_ack(client, (seq, ack), tsval, key));
        assert_eq!(b.stats().syncookies_failed, k as u64 + 1);
        // Answered as any ACK for no connection (RFC 9293 section 3.10.7.1).
        assert!(rst_to(&mut b, now, client));
    }
    assert_eq!(b.stats().syncookies_recv, 0);
    assert_eq!(
        b.handles().count(),
        held,
        "a forged cookie created a connection"
    );
    assert_eq!(b.poll_event(), None);
    // The genuine third ACK still works afterwards: the forgeries changed nothing.
    b.handle_packet(
        now,
        &third_ack(client, (isn + 1, cookie.wrapping_add(1)), tsval, key),
    );
    assert_eq!(b.stats().syncookies_recv, 1);
    let Some(Event::Accepted(h)) = b.poll_event() else {
        panic!("the valid cookie built no connection: {:?}", b.stats());
    };
    let m = b.mptcp(h).unwrap();
    assert_eq!(m.mode(), Mode::Mptcp);
    assert_eq!(m.local_key().key, key);
    assert_eq!(m.remote_key().unwrap().key, 0x0123_4567_89ab_cdef);
    // Window scale 7 and SACK came back through the TSval the client echoed.
    let tcp = m.primary();
    assert_eq!(tcp.window_shifts().1, 7);
    assert!(tcp.sack_enabled() && tcp.timestamps_enabled());
    assert_eq!(tcp.state(), State::Established);
}

#[test]
fn a_cookie_third_ack_that_echoes_another_server_key_is_refused() {
    let mut b = cookie_listener(seed_from_env(7));
    let now = Instant::from_millis(10);
    let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1)), 40_001);
    let isn = 0xffff_fff0u32;
    let (cookie, tsval, key) = cookie_synack(&mut b, now, client, isn);
    let held = b.handles().count();
    // RFC 8684 section 3.1: the third ACK carries the key of the server's SYN/ACK. The cookie
    // is right, the key is not: the sender never saw our SYN/ACK whole.
    let ack = (isn.wrapping_add(1), cookie.wrapping_add(1));
    b.handle_packet(now, &third_ack(client, ack, tsval, key ^ 1));
    let s = *b.stats();
    assert_eq!(s.syncookies_recv, 1, "{s:?}");
    assert_eq!(s.cookie_key_mismatch, 1, "{s:?}");
    assert_eq!(b.handles().count(), held);
    assert_eq!(b.poll_event(), None);
    assert!(rst_to(&mut b, now, client));
    // An MP_CAPABLE without the keys is no echo either.
    let no_keys = packet(
        client,
        SocketAddr::new(B, PORT),
        ack,
        TcpFlags::ACK,
        TcpOptions {
            timestamp: Some(Timestamp {
                tsval: 778,
                tsecr: tsval,
            }),
            mptcp: mptcp_option(MptcpRepr::Capable(CapableRepr {
                version: 1,
                flags: CapableFlags::v1(false, false),
                keys: CapableKeys::Sender { sender_key: key },
            })),
            ..TcpOptions::default()
        },
    );
    b.handle_packet(now, &no_keys);
    assert_eq!(b.stats().cookie_key_mismatch, 2);
    assert_eq!(b.handles().count(), held);
    // A third ACK with no MPTCP option at all (a middlebox stripped it) is a plain TCP
    // connection, as without cookies (RFC 8684 section 3.7).
    let stripped = packet(
        client,
        SocketAddr::new(B, PORT),
        ack,
        TcpFlags::ACK,
        TcpOptions {
            timestamp: Some(Timestamp {
                tsval: 778,
                tsecr: tsval,
            }),
            ..TcpOptions::default()
        },
    );
    b.handle_packet(now, &stripped);
    let Some(Event::Accepted(h)) = b.poll_event() else {
        panic!("no connection: {:?}", b.stats());
    };
    assert_eq!(b.mptcp(h).unwrap().mode(), Mode::Fallback);
}

/// Run until the server accepts, and return both handles.
fn connect(h: &mut Harness<Endpoint, Endpoint>) -> (ConnectionHandle, ConnectionHandle) {
    let ca = h
        .node_a_mut()
        .connect(SocketAddr::new(A, 0), SocketAddr::new(B, PORT))
        .unwrap();
    let mut cb = None;
    let deadline = h.now() + Duration::from_secs(5);
    let _ = h.run_until(
        |_, b, _| {
            while let Some(ev) = b.poll_event() {
                if let Event::Accepted(x) = ev {
                    cb = Some(x);
                }
            }
            cb.is_some()
        },
        deadline,
    );
    (ca, cb.expect("accepted"))
}

#[test]
fn a_flood_of_join_syns_with_a_valid_token_cannot_keep_a_real_join_out() {
    let seed = seed_from_env(8);
    let mut h = pair(seed, 1024);
    let (ca, cb) = connect(&mut h);
    transfer(&mut h, ca, cb, 100_000, |_, _| {});
    // An attacker who saw the token (it travels in the clear in every MP_JOIN SYN) floods
    // join SYNs from spoofed addresses; none completes.
    let token = h.node_b().mptcp(cb).unwrap().local_key().token;
    let mut atk = StdRng::seed_from_u64(seed | 9);
    let join_flood = |b: &mut Endpoint, now: Instant, atk: &mut StdRng, n: usize| {
        for _ in 0..n {
            let r: u64 = atk.random();
            let options = TcpOptions {
                mss: Some(1460),
                mptcp: mptcp_option(MptcpRepr::Join(JoinRepr::Syn {
                    backup: false,
                    addr_id: 1,
                    token,
                    nonce: r as u32,
                })),
                ..TcpOptions::default()
            };
            let syn = packet(
                spoofed(r),
                SocketAddr::new(B, PORT),
                ((r >> 32) as u32, 0),
                TcpFlags::SYN,
                options,
            );
            b.handle_packet(now, &syn);
        }
    };
    let now = h.now();
    join_flood(h.node_b_mut(), now, &mut atk, 1_000);
    let b = h.node_b();
    let m = b.mptcp(cb).unwrap();
    // Without the cap, 7 of these would hold every free subflow slot (`max_subflows` 8) for
    // as long as their SYN/ACKs are retried, and a real join would be refused.
    assert_eq!(m.pending_joins(), 4);
    assert_eq!(b.stats().joins_evicted, 996);
    assert_eq!(m.live_subflows(), 5);
    // The real join, while one spoofed join SYN comes every 10 ms (fewer than
    // `max_pending_joins` during its 20 ms handshake).
    let i = h
        .node_a_mut()
        .add_subflow(ca, SocketAddr::new(A, 0), SocketAddr::new(B, PORT), false)
        .unwrap();
    let mut joined = false;
    for round in 0..2_000 {
        if round % 10 == 0 {
            let now = h.now();
            join_flood(h.node_b_mut(), now, &mut atk, 1);
        }
        let _ = h.run_for(Duration::from_millis(1));
        assert!(h.node_b().mptcp(cb).unwrap().pending_joins() <= 4);
        if h.node_a().mptcp(ca).unwrap().join_phase(i) == Some(JoinPhase::Established) {
            joined = true;
            break;
        }
    }
    assert!(
        joined,
        "the real join never completed: {:?}",
        h.node_b().stats()
    );
    assert_eq!(
        h.node_b().mptcp(cb).unwrap().counters().mp_join_ack_rx,
        1,
        "the server verified the real join's third ACK"
    );
    transfer(&mut h, ca, cb, 200_000, |_, _| {});
    eprintln!("join flood: {:?}", h.node_b().stats());
}

#[test]
fn the_accept_backlog_caps_unclaimed_connections_and_further_syns_get_no_answer() {
    let seed = seed_from_env(10);
    let mut h = pair_with(seed, |c| c.accept_backlog = 2);
    let mut accepted = Vec::new();
    let connect_one = |h: &mut Harness<Endpoint, Endpoint>| {
        h.node_a_mut()
            .connect(SocketAddr::new(A, 0), SocketAddr::new(B, PORT))
            .unwrap()
    };
    let c1 = connect_one(&mut h);
    let c2 = connect_one(&mut h);
    let deadline = h.now() + Duration::from_secs(5);
    let _ = h.run_until(
        |_, b, _| {
            while let Some(ev) = b.poll_event() {
                if let Event::Accepted(x) = ev {
                    accepted.push(x);
                }
            }
            accepted.len() == 2
        },
        deadline,
    );
    assert_eq!(accepted.len(), 2);
    assert_eq!(h.node_b().backlog(PORT), 2);
    // The application has taken neither: a third client's SYN gets no answer (no RST: it
    // will try again), and it is counted.
    let c3 = connect_one(&mut h);
    let _ = h.run_for(Duration::from_millis(500));
    assert_eq!(h.node_b_mut().poll_event(), None);
    let client = h.node_a().connection(c3).unwrap();
    assert_eq!(client.state(), State::SynSent);
    assert!(client.error().is_none());
    assert!(h.node_b().stats().listen_overflows >= 1);
    assert_eq!(h.node_b().stats().rsts_sent, 0);
    assert_eq!(h.node_b().backlog(PORT), 2);
    // The application accepts one: the client's next SYN (its retransmission after 1 s) gets
    // through, and the backlog is full again.
    h.node_b_mut().accept(accepted[0]).unwrap();
    assert_eq!(h.node_b().backlog(PORT), 1);
    let mut third = None;
    let deadline = h.now() + Duration::from_secs(5);
    let _ = h.run_until(
        |_, b, _| {
            while let Some(ev) = b.poll_event() {
                if let Event::Accepted(x) = ev {
                    third = Some(x);
                }
            }
            third.is_some()
        },
        deadline,
    );
    let c3b = third.expect("the third client got in once there was room");
    assert_eq!(h.node_b().backlog(PORT), 2);
    for c in [c1, c2, c3] {
        assert_eq!(
            h.node_a().connection(c).unwrap().state(),
            State::Established
        );
    }
    // Using a connection claims it too.
    transfer(&mut h, c3, c3b, 10_000, |_, _| {});
    assert_eq!(h.node_b().backlog(PORT), 1);
}
