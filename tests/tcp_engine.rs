//! The subflow TCP engine between two endpoints over a tiny scripted wire: handshake,
//! transfer, loss and its recovery, close, resets. Each test states one mechanism.
//!
//! The wire here is deliberately simple (fixed delay, a drop rule per packet) so that a test
//! can say exactly which packet is lost; the statistical network tests live on the simulator.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use mptcp_stack::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, Event};
use mptcp_stack::node::{Duration, Instant, Node};
use mptcp_stack::tcp::{self, State};
use mptcp_stack::wire::IpSegment;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
const PORT: u16 = 5201;

fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

/// Which packets the wire drops: called with (direction a->b?, packet index in that
/// direction, parsed packet).
type DropRule = Box<dyn FnMut(bool, usize, &IpSegment<'_>) -> bool>;

/// A rewrite of the packets the wire carries (direction a->b?, the whole IP packet); the TCP
/// checksum is refilled after it.
type Rewrite = Box<dyn FnMut(bool, &mut [u8])>;

struct Wire {
    a: Endpoint,
    b: Endpoint,
    now: Instant,
    delay: Duration,
    in_flight: VecDeque<(Instant, bool, Vec<u8>)>,
    sent: [usize; 2],
    dropped: usize,
    drop: DropRule,
    rewrite: Option<Rewrite>,
    log: Vec<String>,
}

impl Wire {
    fn new(mut cfg: EndpointConfig) -> Self {
        // These are specifications of the TCP engine: plain TCP.
        cfg.mptcp.enabled = false;
        let mut a = Endpoint::new(EndpointConfig {
            seed: 1,
            ..cfg.clone()
        });
        let mut b = Endpoint::new(EndpointConfig { seed: 2, ..cfg });
        a.add_address(A);
        b.add_address(B);
        b.listen(PORT);
        Wire {
            a,
            b,
            now: Instant::from_millis(0),
            delay: Duration::from_millis(10),
            in_flight: VecDeque::new(),
            sent: [0, 0],
            dropped: 0,
            drop: Box::new(|_, _, _| false),
            rewrite: None,
            log: Vec::new(),
        }
    }

    fn pump(&mut self) {
        let mut buf = vec![0u8; 65536];
        for a_to_b in [true, false] {
            loop {
                let node = if a_to_b { &mut self.a } else { &mut self.b };
                let Some(n) = node.poll_transmit(self.now, &mut buf) else {
                    break;
                };
                let mut pkt = buf[..n].to_vec();
                if let Some(rewrite) = self.rewrite.as_mut() {
                    rewrite(a_to_b, &mut pkt);
                    mptcp_stack::sim::refill_tcp_checksum(&mut pkt);
                }
                let i = &mut self.sent[usize::from(!a_to_b)];
                let idx = *i;
                *i += 1;
                let seg = IpSegment::parse(&pkt).expect("endpoints emit valid packets");
                let drop = (self.drop)(a_to_b, idx, &seg);
                if self.log.len() < 10_000 {
                    self.log.push(format!(
                        "{} {} {:?} seq {} ack {} len {}{}",
                        self.now,
                        if a_to_b { "A>B" } else { "B>A" },
                        seg.tcp.flags,
                        seg.tcp.seq.0,
                        seg.tcp.ack.0,
                        seg.tcp.payload.len(),
                        if drop { " DROPPED" } else { "" }
                    ));
                }
                if drop {
                    self.dropped += 1;
                    continue;
                }
                self.in_flight
                    .push_back((self.now + self.delay, a_to_b, pkt));
            }
        }
    }

    /// Run until `done` or `limit` of simulated time; returns whether `done` became true.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Wire) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            self.pump();
            let next = [
                self.in_flight.front().map(|p| p.0),
                self.a.poll_timeout(),
                self.b.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { return false };
            if next > deadline {
                return false;
            }
            self.now = self.now.max(next);
            while self.in_flight.front().is_some_and(|p| p.0 <= self.now) {
                let (_, a_to_b, pkt) = self.in_flight.pop_front().unwrap();
                let node = if a_to_b { &mut self.b } else { &mut self.a };
                node.handle_packet(self.now, &pkt);
            }
            for node in [&mut self.a, &mut self.b] {
                if node.poll_timeout().is_some_and(|t| t <= self.now) {
                    node.handle_timeout(self.now);
                }
            }
        }
    }
}

/// Open a connection A -> B and return both handles once established.
fn establish(w: &mut Wire) -> (ConnectionHandle, ConnectionHandle) {
    let ca =
        w.a.connect(SocketAddr::new(A, 0), SocketAddr::new(B, PORT))
            .unwrap();
    let mut cb = None;
    let ok = w.run_until(Duration::from_secs(10), |w| {
        while let Some(ev) = w.b.poll_event() {
            if let Event::Accepted(h) = ev {
                cb = Some(h);
            }
        }
        cb.is_some()
            && w.a
                .connection(ca)
                .is_some_and(|c| c.state() == State::Established)
    });
    assert!(ok, "handshake did not complete:\n{}", w.log.join("\n"));
    (ca, cb.unwrap())
}

/// A sends `total` bytes of the pattern and closes; B reads and verifies all of it.
fn transfer(w: &mut Wire, total: usize, limit: Duration) -> (ConnectionHandle, ConnectionHandle) {
    let (ca, cb) = establish(w);
    let mut sent = 0;
    let mut received = 0;
    let mut buf = vec![0u8; 65536];
    let mut closed = false;
    let ok = w.run_until(limit, |w| {
        while sent < total {
            let chunk = pattern(sent, (total - sent).min(16384));
            let n = w.a.send(ca, &chunk).unwrap();
            sent += n;
            if n < chunk.len() {
                break;
            }
        }
        if sent == total && !closed {
            w.a.close(ca).unwrap();
            closed = true;
        }
        loop {
            let n = w.b.recv(cb, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert_data(&buf[..n], received);
            received += n;
        }
        w.b.recv_finished(cb)
    });
    assert!(
        ok,
        "transfer stalled at {received}/{total} bytes; last packets:\n{}",
        tail(&w.log)
    );
    assert_eq!(received, total);
    (ca, cb)
}

/// Check received bytes against the pattern; report only the first difference.
fn assert_data(got: &[u8], offset: usize) {
    if let Some(i) = got
        .iter()
        .enumerate()
        .position(|(i, &b)| b != ((offset + i) % 251) as u8)
    {
        panic!(
            "corrupt data at stream offset {}: got {}, expected {}",
            offset + i,
            got[i],
            (offset + i) % 251
        );
    }
}

fn tail(log: &[String]) -> String {
    if let Ok(path) = std::env::var("TCP_LOG") {
        let _ = std::fs::write(path, log.join("\n"));
    }
    log[log.len().saturating_sub(40)..].join("\n")
}

#[test]
fn three_way_handshake_negotiates_mss_window_scale_sack_and_timestamps() {
    let mut w = Wire::new(EndpointConfig::seeded(0));
    let (ca, cb) = establish(&mut w);
    for c in [w.a.connection(ca).unwrap(), w.b.connection(cb).unwrap()] {
        assert!(c.sack_enabled());
        assert!(c.timestamps_enabled());
        // 4 MiB buffers need a shift of 7.
        assert_eq!(c.window_shifts(), (7, 7));
        // MSS 1460 less 12 bytes of timestamps.
        assert_eq!(c.mss(), 1448);
    }
    assert_eq!(w.log.len(), 3, "SYN, SYN/ACK, ACK:\n{}", w.log.join("\n"));
    // The handshake RTT is measured: 20 ms.
    assert_eq!(
        w.a.connection(ca).unwrap().srtt(),
        Some(Duration::from_millis(20))
    );
}

#[test]
fn options_the_peer_does_not_offer_are_not_used() {
    let mut cfg = EndpointConfig::seeded(0);
    cfg.tcp.sack = false;
    cfg.tcp.timestamps = false;
    cfg.tcp.window_scaling = false;
    cfg.tcp.rx_buffer = 60_000;
    let mut w = Wire::new(cfg);
    // Only B lacks them: A offers, B does not agree.
    w.a = Endpoint::new(EndpointConfig {
        seed: 1,
        ..EndpointConfig::seeded(0)
    });
    w.a.add_address(A);
    let (ca, _) = establish(&mut w);
    let c = w.a.connection(ca).unwrap();
    assert!(!c.sack_enabled() && !c.timestamps_enabled());
    assert_eq!(c.window_shifts(), (0, 0));
    assert_eq!(c.mss(), 1460);
    transfer(&mut w, 300_000, Duration::from_secs(60));
}

#[test]
fn a_bulk_transfer_arrives_intact_and_in_order() {
    let mut w = Wire::new(EndpointConfig::seeded(0));
    let (ca, _) = transfer(&mut w, 5_000_000, Duration::from_secs(60));
    let s = *w.a.connection(ca).unwrap().stats();
    assert_eq!(s.bytes_sent, 5_000_000);
    assert_eq!(s.bytes_retransmitted, 0);
    assert_eq!(w.dropped, 0);
}

#[test]
fn a_lost_segment_is_repaired_by_fast_retransmit_not_a_timeout() {
    let mut w = Wire::new(EndpointConfig::seeded(0));
    // Drop the 20th packet A sends (a data segment in the middle of the first windows).
    w.drop = Box::new(|a_to_b, i, seg| a_to_b && i == 20 && !seg.tcp.payload.is_empty());
    let (ca, _) = transfer(&mut w, 2_000_000, Duration::from_secs(60));
    let s = *w.a.connection(ca).unwrap().stats();
    assert_eq!(w.dropped, 1);
    assert_eq!(s.fast_recoveries, 1);
    assert_eq!(s.rto_expiries, 0, "{}", tail(&w.log));
    assert!(s.bytes_retransmitted > 0 && s.bytes_retransmitted <= 1448);
}

#[test]
fn several_losses_in_one_window_are_repaired_with_sack_in_one_recovery() {
    let mut w = Wire::new(EndpointConfig::seeded(0));
    w.drop = Box::new(|a_to_b, i, seg| {
        a_to_b && [30, 32, 35, 40].contains(&i) && !seg.tcp.payload.is_empty()
    });
    let (ca, _) = transfer(&mut w, 3_000_000, Duration::from_secs(60));
    let s = *w.a.connection(ca).unwrap().stats();
    assert_eq!(w.dropped, 4);
    assert_eq!(s.rto_expiries, 0, "{}", tail(&w.log));
    assert_eq!(s.fast_recoveries, 1);
    assert_eq!(s.bytes_retransmitted, 4 * 1448);
}

/// The first SACK block of a TCP segment in an IPv4 packet: the offset of its left edge.
fn first_sack_block(packet: &[u8]) -> Option<usize> {
    const KIND_END: u8 = 0;
    const KIND_NOP: u8 = 1;
    const KIND_SACK: u8 = 5;
    let ip = usize::from(packet.first()? & 0x0f) * 4;
    let header = usize::from(packet.get(ip + 12)? >> 4) * 4;
    let mut at = ip + 20;
    while at < ip + header {
        match *packet.get(at)? {
            KIND_END => return None,
            KIND_NOP => at += 1,
            kind => {
                let len = usize::from(*packet.get(at + 1)?);
                if kind == KIND_SACK && len >= 10 {
                    return Some(at + 2);
                }
                at += len.max(2);
            }
        }
    }
    None
}

#[test]
fn a_receiver_that_reneges_on_a_sack_gets_the_data_again() {
    // RFC 2018 section 8: SACK is advisory. Linux under memory pressure prunes out-of-order
    // data it SACKed. Here A's packet 30 (and, in the second case, 31 too) is lost, and B's
    // first two ACKs that SACK the data after the last lost one also claim that one (as if B
    // had held it and then dropped it); from then on B's ACKs are honest. Merged, A's
    // scoreboard holds the claimed segment and everything after it as SACKed. In the first
    // case B's cumulative ACK stays at the claimed byte; in the second it moves onto it once
    // packet 30 is repaired. Either way A must send the claimed segment again (before this,
    // it skipped it for good, its timer included).
    for lost_packets in [vec![30usize], vec![30, 31]] {
        let mut w = Wire::new(EndpointConfig::seeded(0));
        let claimed = std::rc::Rc::new(std::cell::Cell::new(None::<(u32, u32)>));
        let seen = claimed.clone();
        let lost = lost_packets.clone();
        w.drop = Box::new(move |a_to_b, i, seg| {
            let drop = a_to_b && lost.contains(&i) && !seg.tcp.payload.is_empty();
            if drop && Some(&i) == lost.last() {
                seen.set(Some((seg.tcp.seq.0, seg.tcp.payload.len() as u32)));
            }
            drop
        });
        let mut lies = 0;
        w.rewrite = Some(Box::new(move |a_to_b, pkt| {
            let (Some((seq, len)), false) = (claimed.get(), a_to_b) else {
                return;
            };
            let Some(at) = first_sack_block(pkt) else {
                return;
            };
            let left = u32::from_be_bytes(pkt[at..at + 4].try_into().unwrap());
            if lies < 2 && left == seq.wrapping_add(len) {
                pkt[at..at + 4].copy_from_slice(&seq.to_be_bytes());
                lies += 1;
            }
        }));
        let (ca, _) = transfer(&mut w, 2_000_000, Duration::from_secs(60));
        let s = *w.a.connection(ca).unwrap().stats();
        assert_eq!(w.dropped, lost_packets.len());
        assert!(s.sack_reneging >= 1, "{lost_packets:?}: {s:?}");
        assert!(
            s.bytes_retransmitted >= 1448 * lost_packets.len() as u64,
            "{s:?}"
        );
    }
}

#[test]
fn without_sack_newreno_repairs_losses_one_partial_ack_at_a_time() {
    let mut cfg = EndpointConfig::seeded(0);
    cfg.tcp.sack = false;
    let mut w = Wire::new(cfg);
    w.drop =
        Box::new(|a_to_b, i, seg| a_to_b && [30, 33].contains(&i) && !seg.tcp.payload.is_empty());
    let (ca, _) = transfer(&mut w, 2_000_000, Duration::from_secs(60));
    let s = *w.a.connection(ca).unwrap().stats();
    assert_eq!(s.rto_expiries, 0, "{}", tail(&w.log));
    assert_eq!(s.fast_recoveries, 1);
}

#[test]
fn a_lost_tail_segment_is_repaired_by_the_retransmission_timer() {
    let mut w = Wire::new(EndpointConfig::seeded(0));
    let mut data_segments = 0;
    // 10 segments of data: drop the last one (no duplicate ACKs can follow it).
    w.drop = Box::new(move |a_to_b, _, seg| {
        if a_to_b && !seg.tcp.payload.is_empty() {
            data_segments += 1;
            return data_segments == 10;
        }
        false
    });
    let (ca, _) = transfer(&mut w, 10 * 1448, Duration::from_secs(10));
    let s = *w.a.connection(ca).unwrap().stats();
    assert_eq!(s.rto_expiries, 1);
    assert_eq!(s.bytes_retransmitted, 1448);
}

#[test]
fn a_lost_syn_is_retransmitted_after_the_initial_rto() {
    let mut w = Wire::new(EndpointConfig::seeded(0));
    w.drop = Box::new(|a_to_b, i, _| a_to_b && i == 0);
    let start = w.now;
    establish(&mut w);
    // RFC 6298: the initial RTO is 1 s.
    assert!(w.now - start >= Duration::from_secs(1) && w.now - start < Duration::from_millis(1100));
}

#[test]
fn close_walks_both_sides_through_the_fin_states() {
    let mut w = Wire::new(EndpointConfig {
        tcp: tcp::Config {
            time_wait: Duration::from_secs(2),
            ..tcp::Config::default()
        },
        ..EndpointConfig::seeded(0)
    });
    let (ca, cb) = transfer(&mut w, 1000, Duration::from_secs(5));
    assert_eq!(w.b.connection(cb).unwrap().state(), State::CloseWait);
    let ok = w.run_until(Duration::from_secs(1), |w| {
        w.a.connection(ca).unwrap().state() == State::FinWait2
    });
    assert!(ok, "A's FIN is acknowledged: FIN-WAIT-2");
    w.b.close(cb).unwrap();
    let ok = w.run_until(Duration::from_secs(1), |w| {
        w.b.connection(cb).unwrap().state() == State::Closed
    });
    assert!(ok);
    assert_eq!(w.a.connection(ca).unwrap().state(), State::TimeWait);
    let ok = w.run_until(Duration::from_secs(5), |w| {
        w.a.connection(ca).unwrap().state() == State::Closed
    });
    assert!(ok, "TIME-WAIT ends after 2 MSL");
    let mut closed = Vec::new();
    while let Some(ev) = w.a.poll_event() {
        if let Event::Closed(h, e) = ev {
            closed.push((h, e));
        }
    }
    assert_eq!(closed, vec![(ca, None)]);
}

#[test]
fn a_syn_to_a_closed_port_is_refused_with_rst() {
    let mut w = Wire::new(EndpointConfig::seeded(0));
    let ca =
        w.a.connect(SocketAddr::new(A, 0), SocketAddr::new(B, 9))
            .unwrap();
    let ok = w.run_until(Duration::from_secs(5), |w| {
        w.a.connection(ca).unwrap().state() == State::Closed
    });
    assert!(ok);
    assert_eq!(
        w.a.connection(ca).unwrap().error(),
        Some(tcp::ConnError::Refused)
    );
    assert_eq!(w.b.stats().rsts_sent, 1);
}

#[test]
fn abort_resets_the_peer() {
    let mut w = Wire::new(EndpointConfig::seeded(0));
    let (ca, cb) = establish(&mut w);
    w.a.abort(ca).unwrap();
    let ok = w.run_until(Duration::from_secs(1), |w| {
        w.b.connection(cb).unwrap().state() == State::Closed
    });
    assert!(ok);
    assert_eq!(
        w.b.connection(cb).unwrap().error(),
        Some(tcp::ConnError::Reset)
    );
}

#[test]
fn a_receiver_that_does_not_read_closes_the_window_and_probes_reopen_it() {
    let mut cfg = EndpointConfig::seeded(0);
    cfg.tcp.rx_buffer = 64 * 1024;
    let mut w = Wire::new(cfg);
    let (ca, cb) = establish(&mut w);
    let data = pattern(0, 200_000);
    let mut sent = w.a.send(ca, &data).unwrap();
    // B does not read: A fills 64 KiB and stops.
    w.run_until(Duration::from_secs(3), |_| false);
    let c = w.a.connection(ca).unwrap();
    assert_eq!(c.peer_window(), 0);
    assert_eq!(w.b.connection(cb).unwrap().recv_available(), 64 * 1024);
    // Now B reads everything as it comes; the persist timer's probes find the window open.
    let mut received = 0;
    let mut buf = vec![0u8; 65536];
    let ok = w.run_until(Duration::from_secs(30), |w| {
        if sent < data.len() {
            sent += w.a.send(ca, &data[sent..]).unwrap();
        }
        loop {
            let n = w.b.recv(cb, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert_data(&buf[..n], received);
            received += n;
        }
        received == data.len()
    });
    assert!(ok, "{}", tail(&w.log));
}

#[test]
fn an_off_path_rst_with_a_wrong_sequence_number_only_draws_a_challenge_ack() {
    let mut w = Wire::new(EndpointConfig::seeded(0));
    let (ca, cb) = establish(&mut w);
    let c = w.b.connection(cb).unwrap();
    let rcv_nxt = c.rcv_nxt();
    let a_conn = w.a.connection(ca).unwrap();
    let (local, remote) = (a_conn.local(), a_conn.remote());
    // An RST inside B's window but not at rcv_nxt (RFC 5961 section 3.2).
    let forged = mptcp_stack::wire::IpSegment {
        src: local.ip(),
        dst: remote.ip(),
        hop_limit: 64,
        tcp: mptcp_stack::wire::TcpSegment {
            src_port: local.port(),
            dst_port: remote.port(),
            seq: rcv_nxt + 1000,
            ack: mptcp_stack::seq::TcpSeq(0),
            flags: mptcp_stack::wire::TcpFlags(mptcp_stack::wire::TcpFlags::RST),
            window: 0,
            urgent: 0,
            options: Default::default(),
            payload: &[],
        },
    };
    let mut buf = vec![0u8; 100];
    let n = forged.emit(&mut buf).unwrap();
    w.b.handle_packet(w.now, &buf[..n]);
    let c = w.b.connection(cb).unwrap();
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.stats().challenge_acks, 1);
    // The same RST at exactly rcv_nxt resets.
    let mut exact = forged;
    exact.tcp.seq = rcv_nxt;
    let n = exact.emit(&mut buf).unwrap();
    w.b.handle_packet(w.now, &buf[..n]);
    assert_eq!(
        w.b.connection(cb).unwrap().error(),
        Some(tcp::ConnError::Reset)
    );
}

#[test]
fn garbage_and_foreign_packets_are_counted_and_ignored() {
    let mut w = Wire::new(EndpointConfig::seeded(0));
    let (_, cb) = establish(&mut w);
    let before = *w.b.stats();
    w.b.handle_packet(w.now, &[]);
    w.b.handle_packet(w.now, &[0x45; 60]);
    w.b.handle_packet(w.now, &[0x60; 3]);
    let s = w.b.stats();
    assert_eq!(s.malformed, before.malformed + 3);
    assert_eq!(w.b.connection(cb).unwrap().state(), State::Established);
}

#[test]
fn a_single_segment_is_acknowledged_after_the_delayed_ack_timeout_and_two_at_once() {
    let mut w = Wire::new(EndpointConfig::seeded(0));
    let (ca, _) = establish(&mut w);
    let before = w.log.len();
    w.a.send(ca, &pattern(0, 100)).unwrap();
    w.run_until(Duration::from_millis(200), |_| false);
    let lines = &w.log[before..];
    assert_eq!(lines.len(), 2, "{lines:?}");
    // Sent at t, arrives at t+10 ms, acknowledged 40 ms later.
    let sent: f64 = lines[0].split('s').next().unwrap().parse().unwrap();
    let acked: f64 = lines[1].split('s').next().unwrap().parse().unwrap();
    assert!(lines[1].contains("B>A ACK"));
    assert!((acked - sent - 0.050).abs() < 1e-6, "{lines:?}");
    // Two full segments: the second is acknowledged at once.
    let before = w.log.len();
    w.a.send(ca, &pattern(100, 2 * 1448)).unwrap();
    w.run_until(Duration::from_millis(200), |_| false);
    let lines = &w.log[before..];
    assert_eq!(lines.len(), 3, "{lines:?}");
    let t: Vec<f64> = lines
        .iter()
        .map(|l| l.split('s').next().unwrap().parse().unwrap())
        .collect();
    assert!((t[2] - t[0] - 0.010).abs() < 1e-6, "{lines:?}");
}

#[test]
fn keepalive_probes_an_idle_peer_and_times_out_a_dead_one() {
    let mut cfg = EndpointConfig::seeded(0);
    cfg.tcp.keepalive = Some(Duration::from_secs(10));
    let mut w = Wire::new(cfg);
    let (ca, _) = establish(&mut w);
    let before = w.log.len();
    // 25 s idle: probes at 10 s, answered; the next idle period starts over.
    w.run_until(Duration::from_secs(25), |_| false);
    let probes = w.log[before..].iter().filter(|l| l.contains("A>B")).count();
    assert!(probes >= 2, "{:?}", &w.log[before..]);
    assert_eq!(w.a.connection(ca).unwrap().state(), State::Established);
    // The peer vanishes: 9 unanswered probes 75 s apart, then the connection is gone.
    w.drop = Box::new(|_, _, _| true);
    let ok = w.run_until(Duration::from_secs(900), |w| {
        w.a.connection(ca).unwrap().state() == State::Closed
    });
    assert!(ok);
    assert_eq!(
        w.a.connection(ca).unwrap().error(),
        Some(tcp::ConnError::TimedOut)
    );
}

#[test]
fn a_lost_retransmission_backs_off_the_timer_but_does_not_cut_ssthresh_again() {
    // RFC 5681 section 3.1: ssthresh is set from the flight at the first timeout and held while
    // the retransmission of the same segment is lost again.
    let mut w = Wire::new(EndpointConfig::seeded(0));
    let mut data_segments = 0;
    // 40 segments; the last ten are lost (no duplicate ACK can follow them), and so is the
    // first retransmission: two timeouts in a row.
    w.drop = Box::new(move |a_to_b, _, seg| {
        if a_to_b && !seg.tcp.payload.is_empty() {
            data_segments += 1;
            return (31..=41).contains(&data_segments);
        }
        false
    });
    let (ca, _) = transfer(&mut w, 40 * 1448, Duration::from_secs(30));
    let c = w.a.connection(ca).unwrap();
    let s = *c.stats();
    assert!(s.rto_expiries >= 2, "{}", tail(&w.log));
    // The flight at the first timeout was at least 10 segments: ssthresh is half of it, not
    // the 2-segment floor that cutting it at every timeout would give.
    assert!(c.ssthresh() >= 5 * 1448, "ssthresh {}", c.ssthresh());
}
