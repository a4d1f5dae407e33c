//! The MPTCP connection layer between two endpoints of the stack over the simulator: the
//! MP_CAPABLE handshake, DSS mappings and DATA_ACKs under loss and reordering, DATA_FIN, DSS
//! checksums catching corruption that TCP accepts, fallback to TCP in each way the RFC lists,
//! and MP_FASTCLOSE. Every byte the application receives is checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mptcp_stack::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, Event};
use mptcp_stack::mptcp::Mode;
use mptcp_stack::node::{Duration, Instant};
use mptcp_stack::sim::{
    Harness, LinkConfig, Middlebox, Network, PathConfig, Side, corrupt_payload,
    refill_tcp_checksum, seed_from_env, strip_tcp_option,
};
use mptcp_stack::wire::IpSegment;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
const PORT: u16 = 5201;

fn link(rate_mbit: u64, delay_ms: u64) -> LinkConfig {
    let rate = rate_mbit * 1_000_000;
    let bdp = rate / 8 * (2 * delay_ms) / 1000;
    LinkConfig::ideal(Duration::from_millis(delay_ms)).with_rate(rate, Some(bdp.max(64 * 1500)))
}

struct Run {
    h: Harness<Endpoint, Endpoint>,
    ca: ConnectionHandle,
    cb: Option<ConnectionHandle>,
}

fn start(
    cfg_a: EndpointConfig,
    cfg_b: EndpointConfig,
    addrs: (IpAddr, IpAddr),
    fwd: LinkConfig,
    rev: LinkConfig,
    seed: u64,
) -> Run {
    let (a_addr, b_addr) = addrs;
    let net = Network::new(seed, vec![PathConfig::asymmetric(a_addr, b_addr, fwd, rev)]);
    let mut a = Endpoint::new(EndpointConfig { seed: 11, ..cfg_a });
    let mut b = Endpoint::new(EndpointConfig { seed: 22, ..cfg_b });
    a.add_address(a_addr);
    b.add_address(b_addr);
    b.listen(PORT);
    let mut h = Harness::new(net, a, b);
    let ca = h
        .node_a_mut()
        .connect(SocketAddr::new(a_addr, 0), SocketAddr::new(b_addr, PORT))
        .unwrap();
    Run { h, ca, cb: None }
}

/// Move `total` bytes A -> B (and B -> A if `both_ways`), checking each byte; both sides close.
fn transfer(run: &mut Run, total: usize, both_ways: bool, limit: Duration) {
    transfer_ticking(run, total, both_ways, limit, |_| {});
}

/// [`transfer`], telling `tick` the simulated time on every round (for a middlebox that acts
/// by time).
fn transfer_ticking(
    run: &mut Run,
    total: usize,
    both_ways: bool,
    limit: Duration,
    mut tick: impl FnMut(Instant),
) {
    let ca = run.ca;
    let mut cb = run.cb;
    let mut sent = [0usize; 2];
    let mut recvd = [0usize; 2];
    let mut closed = [false; 2];
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = run.h.now() + limit;
    let outcome = run.h.run_until(
        |a, b, now| {
            tick(now);
            while let Some(ev) = b.poll_event() {
                if let Event::Accepted(h) = ev {
                    cb = Some(h);
                }
            }
            while a.poll_event().is_some() {}
            let Some(cb) = cb else { return false };
            for dir in 0..2 {
                let (tx, txh, rx, rxh) = if dir == 0 {
                    (&mut *a, ca, &mut *b, cb)
                } else {
                    (&mut *b, cb, &mut *a, ca)
                };
                let want = if dir == 0 || both_ways { total } else { 0 };
                while sent[dir] < want {
                    let n = (want - sent[dir]).min(buf.len()).min(tx.send_capacity(txh));
                    if n == 0 {
                        break;
                    }
                    for (i, x) in buf[..n].iter_mut().enumerate() {
                        *x = ((sent[dir] + i) % 251) as u8;
                    }
                    sent[dir] += tx.send(txh, &buf[..n]).unwrap();
                }
                if sent[dir] == want
                    && !closed[dir]
                    && tx
                        .connection(txh)
                        .is_some_and(|c| c.state().is_synchronized())
                {
                    tx.close(txh).unwrap();
                    closed[dir] = true;
                }
                loop {
                    let n = rx.recv(rxh, &mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    if let Some(i) = buf[..n]
                        .iter()
                        .enumerate()
                        .position(|(i, &x)| x != ((recvd[dir] + i) % 251) as u8)
                    {
                        panic!("direction {dir}: corrupt byte at offset {}", recvd[dir] + i);
                    }
                    recvd[dir] += n;
                }
            }
            b.recv_finished(cb) && a.recv_finished(ca) && a.send_finished(ca) && b.send_finished(cb)
        },
        deadline,
    );
    run.cb = cb;
    if !outcome.is_satisfied() {
        for (name, node, h) in [("A", run.h.node_a(), Some(ca)), ("B", run.h.node_b(), cb)] {
            if let Some(c) = h.and_then(|h| node.mptcp(h)) {
                let t = c.primary();
                eprintln!(
                    "{name}: mode {:?} snd_una {:?} data_ack {:?} queue {} counters {:?}\n   tcp {:?} una {:?} nxt {:?} cwnd {} wnd {} stats {:?}",
                    c.mode(),
                    c.snd_una(),
                    c.data_ack(),
                    c.send_queue(),
                    c.counters(),
                    t.state(),
                    t.snd_una(),
                    t.snd_nxt(),
                    t.cwnd(),
                    t.peer_window(),
                    t.stats()
                );
            }
        }
    }
    assert!(
        outcome.is_satisfied(),
        "transfer did not finish ({outcome:?}): {recvd:?} of {total}"
    );
    assert_eq!(recvd[0], total);
    assert_eq!(recvd[1], if both_ways { total } else { 0 });
}

fn mode(run: &Run, side: Side) -> (Mode, Option<&'static str>) {
    let (node, h) = match side {
        Side::A => (run.h.node_a(), run.ca),
        Side::B => (run.h.node_b(), run.cb.expect("accepted")),
    };
    let c = node.mptcp(h).unwrap();
    (c.mode(), c.fallback_reason())
}

#[test]
fn mp_capable_handshake_exchanges_keys_and_both_sides_speak_mptcp() {
    let mut run = start(
        EndpointConfig::seeded(0),
        EndpointConfig::seeded(0),
        (A, B),
        link(50, 10),
        link(50, 10),
        seed_from_env(1),
    );
    transfer(&mut run, 100_000, true, Duration::from_secs(10));
    let a = run.h.node_a().mptcp(run.ca).unwrap();
    let b = run.h.node_b().mptcp(run.cb.unwrap()).unwrap();
    assert_eq!((a.mode(), b.mode()), (Mode::Mptcp, Mode::Mptcp));
    assert_eq!(a.remote_key().unwrap().key, b.local_key().key);
    assert_eq!(b.remote_key().unwrap().key, a.local_key().key);
    assert_eq!(a.counters().mp_capable_synack_rx, 1);
    assert_eq!(b.counters().mp_capable_syn_rx, 1);
    assert_eq!(b.counters().mp_capable_ack_rx, 1);
    // Both directions ended with DATA_FIN: the data-level ACKs cover IDSN + 1 + data + 1.
    assert_eq!(a.data_ack(), b.local_key().idsn + 1 + 100_000 + 1);
    assert_eq!(b.data_ack(), a.local_key().idsn + 1 + 100_000 + 1);
    assert!(!a.checksum());
}

#[test]
fn data_survives_loss_reordering_and_duplication_at_the_data_level() {
    for (i, checksum) in [false, true].into_iter().enumerate() {
        let mut cfg = EndpointConfig::seeded(0);
        cfg.mptcp.checksum = checksum;
        let fwd = link(50, 10)
            .with_loss(0.02)
            .with_reorder(0.02, Duration::from_millis(2))
            .with_duplicate(0.01);
        let rev = link(50, 10).with_loss(0.02).with_duplicate(0.01);
        let mut run = start(
            cfg,
            EndpointConfig::seeded(0),
            (A, B),
            fwd,
            rev,
            seed_from_env(10 + i as u64),
        );
        transfer(&mut run, 3_000_000, true, Duration::from_secs(300));
        let b = run.h.node_b().mptcp(run.cb.unwrap()).unwrap();
        assert_eq!(b.mode(), Mode::Mptcp);
        // The client asked for checksums: the server uses them too (either A flag turns them on).
        assert_eq!(b.checksum(), checksum);
        assert_eq!(b.counters().data_csum_err, 0);
        assert!(b.counters().dss_rx > 0);
    }
}

#[test]
fn ipv6_mptcp_transfer() {
    let a6 = IpAddr::V6("2001:db8:101::1".parse::<Ipv6Addr>().unwrap());
    let b6 = IpAddr::V6("2001:db8:1::2".parse::<Ipv6Addr>().unwrap());
    let mut run = start(
        EndpointConfig::seeded(0),
        EndpointConfig::seeded(0),
        (a6, b6),
        link(50, 10).with_loss(0.01),
        link(50, 10),
        seed_from_env(3),
    );
    transfer(&mut run, 2_000_000, false, Duration::from_secs(120));
    assert_eq!(mode(&run, Side::A).0, Mode::Mptcp);
}

#[test]
fn a_server_without_mptcp_makes_the_client_fall_back_and_the_stream_goes_on() {
    let mut plain = EndpointConfig::seeded(0);
    plain.mptcp.enabled = false;
    let mut run = start(
        EndpointConfig::seeded(0),
        plain,
        (A, B),
        link(20, 10).with_loss(0.01),
        link(20, 10),
        seed_from_env(4),
    );
    transfer(&mut run, 1_000_000, true, Duration::from_secs(120));
    assert_eq!(
        mode(&run, Side::A),
        (Mode::Fallback, Some("SYN/ACK without MP_CAPABLE"))
    );
    assert_eq!(
        mode(&run, Side::B),
        (Mode::Fallback, Some("MPTCP disabled"))
    );
}

fn strip_mptcp_when(mut cond: impl FnMut(Side, &IpSegment<'_>) -> bool + 'static) -> Middlebox {
    Box::new(move |side, buf, len| {
        let strip = IpSegment::parse(&buf[..len]).is_ok_and(|seg| cond(side, &seg));
        if strip {
            strip_tcp_option(&mut buf[..len], 30);
        }
        Some(len)
    })
}

#[test]
fn option_30_stripped_from_the_syn_means_plain_tcp_for_both() {
    let mut run = start(
        EndpointConfig::seeded(0),
        EndpointConfig::seeded(0),
        (A, B),
        link(20, 10),
        link(20, 10),
        seed_from_env(5),
    );
    run.h.set_middlebox(strip_mptcp_when(|_, seg| {
        seg.tcp.flags.syn() && !seg.tcp.flags.ack()
    }));
    transfer(&mut run, 500_000, true, Duration::from_secs(60));
    assert_eq!(
        mode(&run, Side::B),
        (Mode::Fallback, Some("SYN without MP_CAPABLE"))
    );
    assert_eq!(
        mode(&run, Side::A),
        (Mode::Fallback, Some("SYN/ACK without MP_CAPABLE"))
    );
}

#[test]
fn option_30_stripped_from_the_third_ack_makes_the_server_fall_back() {
    let mut run = start(
        EndpointConfig::seeded(0),
        EndpointConfig::seeded(0),
        (A, B),
        link(20, 10),
        link(20, 10),
        seed_from_env(6),
    );
    // Strip MPTCP from every segment A sends after its SYN: the server never sees the keys.
    run.h.set_middlebox(strip_mptcp_when(|side, seg| {
        side == Side::A && !seg.tcp.flags.syn()
    }));
    transfer(&mut run, 500_000, true, Duration::from_secs(60));
    assert_eq!(
        mode(&run, Side::B),
        (Mode::Fallback, Some("third ACK without MP_CAPABLE"))
    );
    // The client sees data without mappings from the server and follows.
    assert_eq!(mode(&run, Side::A).0, Mode::Fallback);
}

#[test]
fn a_corrupted_payload_that_tcp_accepts_is_caught_by_the_dss_checksum_and_nothing_is_lost() {
    // RFC 8684 section 3.7 on the only subflow: the receiver drops the mapping and sends
    // MP_FAIL; the sender echoes it, sends an infinite mapping at that DSN and resends from
    // there as plain TCP. The application sees every byte once, uncorrupted.
    for (i, corrupt_at) in [30usize, 3, 200].into_iter().enumerate() {
        let mut cfg = EndpointConfig::seeded(0);
        cfg.mptcp.checksum = true;
        let mut run = start(
            cfg,
            EndpointConfig::seeded(0),
            (A, B),
            link(20, 10),
            link(20, 10),
            seed_from_env(80 + i as u64),
        );
        let mut data_segments = 0;
        run.h.set_middlebox(Box::new(move |side, buf, len| {
            if side == Side::A
                && IpSegment::parse(&buf[..len]).is_ok_and(|s| s.tcp.payload.len() > 100)
            {
                data_segments += 1;
                if data_segments == corrupt_at {
                    corrupt_payload(&mut buf[..len], 100, 0x20);
                }
            }
            Some(len)
        }));
        transfer(&mut run, 2_000_000, true, Duration::from_secs(120));
        let a = run.h.node_a().mptcp(run.ca).unwrap();
        let b = run.h.node_b().mptcp(run.cb.unwrap()).unwrap();
        assert_eq!(
            b.counters().data_csum_err,
            1,
            "corruption at data segment {corrupt_at}"
        );
        assert_eq!(b.counters().mp_fail_tx, 1);
        assert!(a.counters().mp_fail_rx >= 1);
        assert_eq!(
            a.fallback_reason(),
            Some("MP_FAIL: checksum failure, infinite mapping")
        );
        assert_eq!(b.fallback_reason(), Some("infinite mapping received"));
    }
}

#[test]
fn abort_sends_mp_fastclose_and_the_peer_resets() {
    let mut run = start(
        EndpointConfig::seeded(0),
        EndpointConfig::seeded(0),
        (A, B),
        link(20, 10),
        link(20, 10),
        seed_from_env(9),
    );
    transfer_some(&mut run);
    let ca = run.ca;
    run.h.node_a_mut().abort(ca).unwrap();
    let cb = run.cb.unwrap();
    let outcome = run.h.run_until(
        |_, b, _| b.mptcp(cb).is_some_and(|c| c.is_closed()),
        Instant::from_secs(30),
    );
    assert!(outcome.is_satisfied());
    let b = run.h.node_b().mptcp(cb).unwrap();
    assert_eq!(b.counters().mp_fastclose_rx, 1);
    assert_eq!(b.error(), Some(mptcp_stack::tcp::ConnError::Reset));
    assert_eq!(
        run.h.node_a().mptcp(ca).unwrap().counters().mp_fastclose_tx,
        1
    );
}

/// Establish and move a little data without closing.
fn transfer_some(run: &mut Run) {
    let ca = run.ca;
    let mut cb = None;
    let mut got = 0;
    let mut buf = [0u8; 4096];
    let mut sent = false;
    let outcome = run.h.run_until(
        |a, b, _| {
            while let Some(ev) = b.poll_event() {
                if let Event::Accepted(h) = ev {
                    cb = Some(h);
                }
            }
            if !sent
                && a.connection(ca)
                    .is_some_and(|c| c.state().is_synchronized())
            {
                a.send(ca, &[1u8; 10_000]).unwrap();
                sent = true;
            }
            if let Some(cb) = cb {
                while let Ok(n) = b.recv(cb, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
            }
            got == 10_000
        },
        Instant::from_secs(10),
    );
    assert!(outcome.is_satisfied());
    run.cb = cb;
}

#[test]
fn a_client_that_sends_nothing_and_closes_reaches_a_silent_server() {
    // The server never sends (so never confirms the client's keys with a DSS): the client's
    // DATA_FIN must still go out and arrive.
    let mut run = start(
        EndpointConfig::seeded(0),
        EndpointConfig::seeded(0),
        (A, B),
        link(20, 10),
        link(20, 10),
        seed_from_env(12),
    );
    let ca = run.ca;
    let mut cb = None;
    let mut closed = false;
    let outcome = run.h.run_until(
        |a, b, _| {
            while let Some(ev) = b.poll_event() {
                if let Event::Accepted(x) = ev {
                    cb = Some(x);
                }
            }
            if !closed
                && a.connection(ca)
                    .is_some_and(|c| c.state().is_synchronized())
            {
                a.close(ca).unwrap();
                closed = true;
            }
            cb.is_some_and(|cb| b.recv_finished(cb)) && a.send_finished(ca)
        },
        Instant::from_secs(30),
    );
    assert!(outcome.is_satisfied(), "{outcome:?}");
}

const KIND_WSCALE: u8 = 3;
const KIND_MPTCP: u8 = 30;
const SUBTYPE_DSS: u8 = 2;
const DSS_FLAG_ACK: u8 = 0x01;
const DSS_FLAG_ACK8: u8 = 0x02;
const DSS_FLAG_MAP: u8 = 0x04;
const DSS_FLAG_DSN8: u8 = 0x08;

/// The TCP options of an IPv4 packet: each one's offset in the packet and its bytes (kind,
/// length, value); stops at the end-of-list option or at a malformed one.
fn tcp_options(packet: &[u8]) -> Vec<(usize, &[u8])> {
    const KIND_END: u8 = 0;
    const KIND_NOP: u8 = 1;
    let mut out = Vec::new();
    let Some(ip) = packet.first().map(|b| usize::from(b & 0x0f) * 4) else {
        return out;
    };
    let Some(header) = packet.get(ip + 12).map(|b| usize::from(b >> 4) * 4) else {
        return out;
    };
    let mut at = ip + 20;
    while at < ip + header {
        match packet.get(at) {
            None | Some(&KIND_END) => break,
            Some(&KIND_NOP) => at += 1,
            Some(_) => {
                let len = packet.get(at + 1).map_or(0, |&l| usize::from(l));
                let Some(opt) = packet.get(at..at + len).filter(|_| len >= 2) else {
                    break;
                };
                out.push((at, opt));
                at += len;
            }
        }
    }
    out
}

/// The DSS option of a DSS with a DATA_ACK: the range of the DATA_ACK's low 32 bits.
fn data_ack_low(opt: &[u8]) -> Option<std::ops::Range<usize>> {
    (opt.len() >= 4
        && opt[0] == KIND_MPTCP
        && opt[2] >> 4 == SUBTYPE_DSS
        && opt[3] & DSS_FLAG_ACK != 0)
        .then(|| {
            if opt[3] & DSS_FLAG_ACK8 != 0 {
                8..12
            } else {
                4..8
            }
        })
}

/// The DSS mapping of a segment (A -> B, IPv4): the offset of its 8-byte DSN within the packet,
/// the DSN, the TCP sequence number and the payload length; `None` without a mapping.
fn dss_mapping(packet: &[u8]) -> Option<(usize, u64, u32, usize)> {
    let ip = usize::from(packet.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    let tcp = packet.get(ip..total)?;
    let header = usize::from(tcp.get(12)? >> 4) * 4;
    let seq = u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?);
    let payload = tcp.len().checked_sub(header)?;
    let (at, opt) = tcp_options(packet)
        .into_iter()
        .find(|(_, o)| o.len() >= 4 && o[0] == KIND_MPTCP && o[2] >> 4 == SUBTYPE_DSS)?;
    let flags = opt[3];
    if flags & DSS_FLAG_MAP == 0 || flags & DSS_FLAG_DSN8 == 0 {
        return None;
    }
    let dsn_at = data_ack_low(opt).map_or(4, |low| low.end);
    let dsn = u64::from_be_bytes(opt.get(dsn_at..dsn_at + 8)?.try_into().ok()?);
    Some((at + dsn_at, dsn, seq, payload))
}

#[test]
fn data_the_receiver_drops_after_the_subflow_acknowledged_it_is_sent_again_at_the_data_level() {
    // Section 3.3.6: a subflow's ACK does not mean the data reached the connection; Linux
    // drops data it acknowledged on a subflow when its receive memory is short. Here a
    // middlebox moves the DSN of two whole mappings (the first sending of each) back into data
    // already delivered, so the receiver acknowledges them on the subflow and discards them as
    // duplicates: two holes in the data stream that only the sender can fill. The data-level
    // timer sends the first hole again; the partial DATA_ACK that follows sends the second at
    // once, and the stream completes intact.
    let mut run = start(
        EndpointConfig::seeded(0),
        EndpointConfig::seeded(0),
        (A, B),
        link(50, 10),
        link(50, 10),
        seed_from_env(90),
    );
    const BACK: u64 = 2 << 20;
    const FIRST_HOLE: u64 = 3 << 20;
    // (original DSN, first TCP sequence number, bytes) of each mapping that is made to vanish.
    let mut targets: Vec<(u64, u32, usize)> = Vec::new();
    let mut first_dsn = None;
    let rewritten = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let counted = rewritten.clone();
    run.h.set_middlebox(Box::new(move |side, buf, len| {
        if side != Side::A {
            return Some(len);
        }
        let Some((at, dsn, seq, payload)) = dss_mapping(&buf[..len]) else {
            return Some(len);
        };
        if payload == 0 {
            return Some(len);
        }
        let base = *first_dsn.get_or_insert(dsn);
        let offset = dsn.wrapping_sub(base);
        let known = targets.iter().any(|&(d, _, _)| d == dsn);
        if !known && targets.len() < 2 && offset >= FIRST_HOLE {
            // The first mapping at or after 3 MiB, and the second one after it.
            let after_previous = targets.last().is_none_or(|&(d, _, _)| dsn > d + 64 * 1024);
            if after_previous {
                targets.push((dsn, seq, 64 * 1024));
            }
        }
        // The first sending (and TCP retransmissions) of a target mapping: the same subflow
        // sequence range. The data-level retransmission is a new subflow range: left alone.
        let hit = targets
            .iter()
            .any(|&(d, s, n)| d == dsn && seq.wrapping_sub(s) < n as u32);
        if hit {
            buf[at..at + 8].copy_from_slice(&(dsn - BACK).to_be_bytes());
            refill_tcp_checksum(&mut buf[..len]);
            counted.set(counted.get() + 1);
        }
        Some(len)
    }));
    transfer(&mut run, 6_000_000, false, Duration::from_secs(120));
    assert!(rewritten.get() > 0, "the middlebox hid no mapping");
    let a = run.h.node_a().mptcp(run.ca).unwrap();
    let b = run.h.node_b().mptcp(run.cb.unwrap()).unwrap();
    // The receiver saw the two mappings' bytes as duplicates (whole mappings of 64 KiB or
    // less each, all acknowledged on the subflow).
    assert!(b.counters().duplicate_data > 0);
    assert!(b.counters().duplicate_data <= 2 * 64 * 1024);
    assert_eq!(b.mode(), Mode::Mptcp);
    // One timer expiry, two data-level retransmissions: the second hole went at once on the
    // partial DATA_ACK.
    assert_eq!(a.counters().data_rto_expiries, 1);
    assert_eq!(a.counters().data_retransmits, 2);
    assert!(a.counters().reinjected_bytes >= b.counters().duplicate_data);
}

/// What B's segment says for the window probe test: (offset of the TCP header, window scale
/// offered on a SYN, the low 32 bits of its DATA_ACK).
fn window_fields(packet: &[u8]) -> Option<(usize, Option<u8>, Option<u32>)> {
    let ip = usize::from(packet.first()? & 0x0f) * 4;
    let (mut shift, mut ack) = (None, None);
    for (_, opt) in tcp_options(packet) {
        if opt[0] == KIND_WSCALE && opt.len() == 3 {
            shift = Some(opt[2]);
        }
        if let Some(low) = data_ack_low(opt) {
            ack = Some(u32::from_be_bytes(opt.get(low)?.try_into().ok()?));
        }
    }
    Some((ip, shift, ack))
}

#[test]
fn a_shut_data_level_window_is_probed_until_it_opens() {
    // RFC 9293 section 3.8.6.1 at the data level. From 1 s to 2 s a middlebox makes B look
    // like a kernel receiver whose buffer filled: its window closes on the right edge it had
    // then (its DATA_ACK and window of then), so A fills it exactly and waits with everything
    // acknowledged, nothing in flight, no subflow with data to probe with. After 2 s B's
    // segments pass untouched, but B has nothing to say: only A's data-level window probe
    // gets an ACK that shows the window open again.
    const TOTAL: usize = 20_000_000;
    let mut run = start(
        EndpointConfig::seeded(0),
        EndpointConfig::seeded(0),
        (A, B),
        link(50, 10),
        link(50, 10),
        seed_from_env(91),
    );
    let shut_from = Instant::from_secs(1);
    let shut_until = Instant::from_secs(2);
    let clock = std::rc::Rc::new(std::cell::Cell::new(Instant::from_millis(0)));
    let seen = clock.clone();
    let rewritten = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let counted = rewritten.clone();
    let mut shift = 0u8;
    let mut edge: Option<u32> = None;
    run.h.set_middlebox(Box::new(move |side, buf, len| {
        if side != Side::B {
            return Some(len);
        }
        let Some((ip, offered, ack)) = window_fields(&buf[..len]) else {
            return Some(len);
        };
        if let Some(k) = offered {
            shift = k;
        }
        let now = seen.get();
        if let (Some(ack), true) = (ack, now >= shut_from && now < shut_until) {
            // The right edge freezes where B's window of then puts it (a window never
            // shrinks), and the room left closes as the DATA_ACK reaches it.
            let field = u16::from_be_bytes([buf[ip + 14], buf[ip + 15]]);
            let e = *edge.get_or_insert(ack.wrapping_add(u32::from(field) << shift));
            let room = e.wrapping_sub(ack);
            let room = if room > (1 << 30) { 0 } else { room };
            let field = u16::try_from(room >> shift).unwrap_or(u16::MAX);
            buf[ip + 14..ip + 16].copy_from_slice(&field.to_be_bytes());
            refill_tcp_checksum(&mut buf[..len]);
            counted.set(counted.get() + 1);
        }
        Some(len)
    }));
    transfer_ticking(&mut run, TOTAL, false, Duration::from_secs(60), |now| {
        clock.set(now)
    });
    // `transfer_ticking` asserts that every byte arrived, in order, and both sides closed.
    assert!(rewritten.get() > 0, "the middlebox shut no window");
    let a = run.h.node_a().mptcp(run.ca).unwrap();
    assert!(a.counters().window_probes >= 1, "{:?}", a.counters());
}
