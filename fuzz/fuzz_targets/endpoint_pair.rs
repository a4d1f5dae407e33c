//! Two whole endpoints over an adversarial wire, driven by a sequence of operations.
//!
//! Client A (198.18.101.1, ephemeral port) connects to server B (198.18.1.2:5201) at the start.
//! The target owns the wire (every packet takes exactly 1 ms, in send order) and a deterministic
//! virtual clock. The input is a small header (MPTCP/checksum/TCP toggles and a seed) followed by
//! operations: application calls (A sends k bytes of the pattern `i % 251`, B reads, close,
//! abort, release), time advances (deliveries and timers run in order), wire actions on a packet
//! in flight (drop, duplicate, reorder, delay, flip bits with or without a checksum refill,
//! strip an option, truncate) and injections (arbitrary bytes, or a well-formed segment whose
//! fields and MPTCP options come from the input, on the live 4-tuple half the time).
//!
//! Invariants, checked as the run goes and after a final phase on a clean wire:
//! - nothing panics, and the nodes never spin (a timer due again and again at the same instant);
//! - every byte B's application reads from A's connection is the pattern byte A's application
//!   sent at that offset (B reads a prefix of A's stream), and B never reads more than A sent.
//!   This is skipped from the moment the input could have forged content: a mangled packet
//!   (under `cfg(fuzzing)` smoltcp's TCP checksum check always passes, so every mangle reaches
//!   the stack whether or not the target refilled the checksum), unless both ends speak MPTCP
//!   with DSS checksums, which must catch the first such mangle (a second one could cancel it
//!   out in the ones'-complement sum); or an injected segment on the live 4-tuple that carries
//!   payload, SYN or any MPTCP option (an attacker with the 4-tuple and in-window numbers can
//!   always inject into plain TCP). Stripping an option (kind 30 too) and truncating (with
//!   the IP length fixed) keep the payload genuine, so they do not skip the check; but a
//!   corruption that comes with the fallback to TCP that RFC 8684 section 3.7 prescribes when
//!   the first data has no mapping cannot be caught, so that case is skipped as well;
//! - A owns one connection; B's connections stay bounded by what the input could have opened;
//! - liveness: when the input only dropped, duplicated, reordered or delayed packets (no mangle,
//!   injection, abort or release) and neither connection failed, the final phase (A closes, B
//!   reads everything and closes, 400 s of virtual time) ends with B having read every byte A
//!   sent and the end of the stream.
//!
//! Checks that known, reported stack bugs fail are skipped, narrowly, until they are fixed (see
//! `skip_known_issues` and `regressions/endpoint_pair/`); `ENDPOINT_PAIR_STRICT=1` restores them.
//! A chain of pure ACKs answering each other (an ACK loop) is such a known bug too.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use mptcp_stack::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, Event};
use mptcp_stack::mptcp::Mode;
use mptcp_stack::node::{Duration, Instant, Node};
use mptcp_stack::seq::{Dsn, Ssn, TcpSeq};
use mptcp_stack::sim::{corrupt_payload, strip_tcp_option};
use mptcp_stack::wire::{
    CapableFlags, CapableKeys, CapableRepr, DsnField, DssMapping, DssRepr, IpSegment, MptcpRepr,
    SackBlocks, TcpFlags, TcpOptions, TcpRstReason, TcpRstRepr, TcpSegment, Timestamp,
};

const A_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 101, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const B_PORT: u16 = 5201;
/// Operations taken from one input.
const MAX_OPS: usize = 64;
/// Bytes A's application may send in one run.
const MAX_SENT: u64 = 48 * 1024;
/// Bytes one send call offers.
const MAX_SEND_CALL: usize = 4096;
/// Rounds of the event loop (deliveries and timer firings at distinct instants) for the
/// operations, and again for the final phase.
const MAX_ROUNDS: u32 = 10_000;
/// Pure ACKs in a row, each answering the previous one from the other side within 2 ms, that
/// count as an ACK loop (a bug: the ends keep acknowledging each other's acknowledgements).
const ACK_LOOP: u32 = 200;
/// Rounds at one instant before the run counts as a livelock (a bug).
const LIVELOCK_ROUNDS: u32 = 1_000;
/// Packets one poll_transmit drain may yield before it counts as endless (a bug).
const MAX_DRAIN: usize = 10_000;
/// Packets in flight at most (duplicates are refused beyond it).
const MAX_WIRE: usize = 2_048;
/// The wire's one-way delay.
const WIRE_DELAY: Duration = Duration::from_millis(1);
/// Virtual time of the final phase.
const FINAL_PHASE: Duration = Duration::from_secs(400);

/// `ENDPOINT_PAIR_DEBUG=1`: print a summary of each run to stderr (for replaying inputs);
/// `ENDPOINT_PAIR_DEBUG=2`: also every packet delivered and every operation.
fn debug_level() -> u8 {
    static DEBUG: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| {
        std::env::var("ENDPOINT_PAIR_DEBUG")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

fn debug() -> bool {
    debug_level() > 0
}

/// One line about a packet, for the trace.
fn describe(packet: &[u8]) -> String {
    match IpSegment::parse(packet) {
        Ok(ip) => {
            let t = &ip.tcp;
            format!(
                "{}:{} > {}:{} {:?} seq={} ack={} win={} len={} opts={:?}",
                ip.src,
                t.src_port,
                ip.dst,
                t.dst_port,
                t.flags,
                t.seq.0,
                t.ack.0,
                t.window,
                t.payload.len(),
                t.options.mptcp
            )
        }
        Err(e) => format!("unparsable ({e:?}), {} bytes", packet.len()),
    }
}

/// Whether to skip the check that the known, reported stack bug `issue` fails (see
/// `regressions/endpoint_pair/` and the README). `ENDPOINT_PAIR_STRICT=1` (or `all`) turns every
/// such check back on, `ENDPOINT_PAIR_STRICT=ack_loop,data_window_stall` only those named:
/// `close_without_data`, `fallback_mid_stream`, `ack_loop`.
fn skip_known_issues(issue: &str) -> bool {
    static STRICT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    match STRICT.get_or_init(|| std::env::var("ENDPOINT_PAIR_STRICT").ok()) {
        None => true,
        Some(v) if v == "1" || v == "all" => false,
        Some(v) => !v.split(',').any(|i| i.trim() == issue),
    }
}

/// The pattern byte at stream offset `i`.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// Reads the input; past its end every read gives zeros.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }
    fn i16(&mut self) -> i16 {
        self.u16() as i16
    }
    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

struct Packet {
    at: Instant,
    order: u64,
    to: Side,
    data: Vec<u8>,
}

/// Ones'-complement sum of `data` (odd tail padded with zero), added to `acc`.
fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Refill the IPv4 header checksum and the TCP checksum of an IPv4 packet, as a middlebox that
/// rewrites a packet does. Anything that is not a plausible IPv4 TCP packet is left alone.
fn refill_checksums(p: &mut [u8]) {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return;
    }
    p[10] = 0;
    p[11] = 0;
    let c = fold(sum16(&p[..ihl], 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    if p[9] != 6 {
        return;
    }
    let total = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
    if total < ihl + 20 {
        return;
    }
    let mut pseudo = [0u8; 12];
    pseudo[..8].copy_from_slice(&p[12..20]);
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&((total - ihl) as u16).to_be_bytes());
    let tcp = &mut p[ihl..total];
    tcp[16] = 0;
    tcp[17] = 0;
    let c = fold(sum16(tcp, sum16(&pseudo, 0)));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
}

struct Sim {
    a: Endpoint,
    b: Endpoint,
    now: Instant,
    wire: Vec<Packet>,
    order: u64,
    buf: Vec<u8>,
    ha: ConnectionHandle,
    hb: Option<ConnectionHandle>,
    a_local: SocketAddr,
    b_local: SocketAddr,
    /// B's connections other than A's (injected or mangled SYNs).
    b_others: Vec<ConnectionHandle>,
    /// Bytes A's application handed to its connection.
    sent: u64,
    /// Bytes B's application read from A's connection.
    received: u64,
    /// The input did something that can make B read bytes A never sent there.
    content_may_be_forged: bool,
    /// The one mangle the DSS checksum must catch was used.
    protected_mangle_used: bool,
    /// The input did something after which the transfer need not complete.
    adverse: bool,
    /// Packets the input injected, mangled, duplicated, delayed or reordered (each could open
    /// one connection at B).
    weird: usize,
    a_failed: bool,
    b_failed: bool,
    a_released: bool,
    b_released: bool,
    rounds: u32,
    exhausted: bool,
    /// Final phase: B's application reads everything and closes at the end of the stream.
    auto: bool,
    b_closed: bool,
    /// A's application saw `Connected`.
    a_connected: bool,
    /// A's application closed (in the final phase: once connected).
    a_closed: bool,
    /// An MPTCP option (kind 30) was stripped from a packet.
    mptcp_stripped: bool,
    /// B handled a segment with payload and was still speaking MPTCP afterwards.
    b_mptcp_data_seen: bool,
    /// The last packet the wire delivered was a pure ACK: its destination and time.
    last_pure_ack: Option<(Side, Instant)>,
    /// Pure ACKs in a row, each answering the previous one (see `ACK_LOOP`).
    ack_chain: u32,
}

impl Sim {
    fn new(cfg_byte: u8, seed: u8, tcp_byte: u8) -> Sim {
        let mut ca = EndpointConfig::seeded(0);
        let mut cb = EndpointConfig::seeded(0);
        ca.seed = 0xa000 + u64::from(seed);
        cb.seed = 0xb000 + u64::from(seed);
        ca.mptcp.enabled = cfg_byte & 0x01 == 0;
        ca.mptcp.checksum = cfg_byte & 0x02 != 0;
        cb.mptcp.enabled = cfg_byte & 0x04 == 0;
        cb.mptcp.checksum = cfg_byte & 0x08 != 0;
        ca.tcp.sack = tcp_byte & 0x01 == 0;
        ca.tcp.timestamps = tcp_byte & 0x02 == 0;
        ca.tcp.window_scaling = tcp_byte & 0x04 == 0;
        cb.tcp.sack = tcp_byte & 0x08 == 0;
        cb.tcp.timestamps = tcp_byte & 0x10 == 0;
        cb.tcp.window_scaling = tcp_byte & 0x20 == 0;
        if tcp_byte & 0x40 != 0 {
            // Small buffers: flow control, zero windows and partial sends.
            cb.tcp.rx_buffer = 4096;
            cb.mptcp.rx_buffer = 4096;
            ca.tcp.tx_buffer = 8192;
            ca.mptcp.tx_buffer = 8192;
        }
        if tcp_byte & 0x80 != 0 {
            ca.mtu = 576;
            cb.mtu = 576;
        }
        ca.max_connections = 4;
        cb.max_connections = 8;
        let mut a = Endpoint::new(ca);
        let mut b = Endpoint::new(cb);
        a.add_address(IpAddr::V4(A_IP));
        b.add_address(IpAddr::V4(B_IP));
        b.listen(B_PORT);
        let b_local = SocketAddr::new(IpAddr::V4(B_IP), B_PORT);
        let ha = a
            .connect(SocketAddr::new(IpAddr::V4(A_IP), 0), b_local)
            .expect("connect");
        let a_local = a.connection(ha).expect("A's connection").local();
        let mut sim = Sim {
            a,
            b,
            now: Instant::from_millis(1_000),
            wire: Vec::new(),
            order: 0,
            buf: vec![0; 65_536],
            ha,
            hb: None,
            a_local,
            b_local,
            b_others: Vec::new(),
            sent: 0,
            received: 0,
            content_may_be_forged: false,
            protected_mangle_used: false,
            adverse: false,
            weird: 0,
            a_failed: false,
            b_failed: false,
            a_released: false,
            b_released: false,
            rounds: 0,
            exhausted: false,
            auto: false,
            b_closed: false,
            a_connected: false,
            a_closed: false,
            mptcp_stripped: false,
            b_mptcp_data_seen: false,
            last_pure_ack: None,
            ack_chain: 0,
        };
        sim.transmit();
        sim
    }

    // ---- the wire and the clock ----------------------------------------------------------

    fn transmit(&mut self) {
        let at = self.now + WIRE_DELAY;
        for side in [Side::A, Side::B] {
            let mut n = 0;
            loop {
                let node = match side {
                    Side::A => &mut self.a,
                    Side::B => &mut self.b,
                };
                let Some(len) = node.poll_transmit(self.now, &mut self.buf) else {
                    break;
                };
                n += 1;
                assert!(n < MAX_DRAIN, "{side:?}'s poll_transmit never returns None");
                assert!(
                    len <= self.buf.len(),
                    "poll_transmit returned {len} > buffer"
                );
                let to = match side {
                    Side::A => Side::B,
                    Side::B => Side::A,
                };
                self.order += 1;
                self.wire.push(Packet {
                    at,
                    order: self.order,
                    to,
                    data: self.buf[..len].to_vec(),
                });
            }
        }
    }

    /// Index of the next packet due at or before `now`.
    fn next_due(&self) -> Option<usize> {
        self.wire
            .iter()
            .enumerate()
            .filter(|(_, p)| p.at <= self.now)
            .min_by_key(|(_, p)| (p.at, p.order))
            .map(|(i, _)| i)
    }

    fn deliver(&mut self, to: Side, data: &[u8]) {
        if debug_level() > 1 {
            eprintln!("  {} -> {to:?}: {}", self.now, describe(data));
        }
        match to {
            Side::A => self.a.handle_packet(self.now, data),
            Side::B => {
                self.b.handle_packet(self.now, data);
                // Data went through the data level in MPTCP (B's DATA_ACK moved past the
                // peer's IDSN + 1): a fallback for unmapped data after this is mid-stream. (Data
                // that only waits out of order in the subflow has not been mapped yet.)
                if !self.b_mptcp_data_seen
                    && IpSegment::parse(data).is_ok_and(|s| !s.tcp.payload.is_empty())
                    && self.hb.and_then(|h| self.b.mptcp(h)).is_some_and(|m| {
                        m.mode() == Mode::Mptcp
                            && m.remote_key().is_some_and(|k| m.data_ack() != k.idsn + 1)
                    })
                {
                    self.b_mptcp_data_seen = true;
                }
            }
        }
        self.events();
    }

    /// Run deliveries and timers in time order up to `deadline`; the clock ends there.
    fn run_until(&mut self, deadline: Instant) {
        let mut same_instant = 0u32;
        loop {
            self.transmit();
            self.events();
            if self.rounds >= MAX_ROUNDS {
                self.exhausted = true;
                return;
            }
            let next = [
                self.wire.iter().map(|p| p.at).min(),
                self.a.poll_timeout(),
                self.b.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else {
                self.now = self.now.max(deadline);
                return;
            };
            let next = next.max(self.now);
            if next > deadline {
                self.now = self.now.max(deadline);
                return;
            }
            if next == self.now {
                same_instant += 1;
                assert!(
                    same_instant < LIVELOCK_ROUNDS,
                    "livelock: timers stay due at {} (A: {:?}, B: {:?})",
                    self.now,
                    self.a.poll_timeout(),
                    self.b.poll_timeout()
                );
            } else {
                same_instant = 0;
            }
            self.rounds += 1;
            self.now = next;
            while let Some(i) = self.next_due() {
                let p = self.wire.remove(i);
                self.note_ack_loop(p.to, &p.data);
                self.deliver(p.to, &p.data);
                if self.exhausted {
                    return;
                }
            }
            if self.a.poll_timeout().is_some_and(|t| t <= self.now) {
                self.a.handle_timeout(self.now);
            }
            if self.b.poll_timeout().is_some_and(|t| t <= self.now) {
                self.b.handle_timeout(self.now);
            }
            self.events();
        }
    }

    /// Follow chains of pure ACKs that answer each other (an ACK loop: two ends whose
    /// sequence spaces disagree, each acknowledging the other's "unacceptable" ACK at once).
    fn note_ack_loop(&mut self, to: Side, packet: &[u8]) {
        let pure = IpSegment::parse(packet).is_ok_and(|s| {
            s.tcp.payload.is_empty() && s.tcp.flags.0 & (TcpFlags::SYN | TcpFlags::RST) == 0
        });
        if !pure {
            self.last_pure_ack = None;
            self.ack_chain = 0;
            return;
        }
        let answers = self.last_pure_ack.is_some_and(|(prev_to, at)| {
            prev_to != to && self.now <= at + Duration::from_millis(2)
        });
        self.ack_chain = if answers { self.ack_chain + 1 } else { 0 };
        self.last_pure_ack = Some((to, self.now));
        if self.ack_chain >= ACK_LOOP {
            // Known issue (regressions/endpoint_pair/ack_loop_*): no rate limit on the ACKs
            // sent for unacceptable segments (Linux: tcp_invalid_ratelimit), so desynchronized
            // ends ping-pong ACKs until a retransmission limit ends the connection.
            assert!(
                skip_known_issues("ack_loop"),
                "ACK loop: {} pure ACKs in a row, each answering the other side's within 2 ms \
                 (now {}, A: {:?}, B: {:?}); last: {}",
                self.ack_chain,
                self.now,
                self.a.connection(self.ha).map(|c| c.state()),
                self.hb
                    .and_then(|h| self.b.connection(h))
                    .map(|c| c.state()),
                describe(packet)
            );
            self.exhausted = true;
        }
    }

    fn advance(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    // ---- the applications ----------------------------------------------------------------

    fn events(&mut self) {
        while let Some(e) = self.a.poll_event() {
            match e {
                Event::Connected(h) if h == self.ha => self.a_connected = true,
                Event::Closed(h, err) if h == self.ha && err.is_some() => self.a_failed = true,
                _ => {}
            }
        }
        while let Some(e) = self.b.poll_event() {
            match e {
                Event::Accepted(h) => {
                    let remote = self.b.connection(h).map(|c| c.remote());
                    if self.hb.is_none() && remote == Some(self.a_local) {
                        self.hb = Some(h);
                    } else if !self.b_others.contains(&h) {
                        self.b_others.push(h);
                    }
                }
                Event::Closed(h, err) if Some(h) == self.hb && err.is_some() => {
                    self.b_failed = true;
                }
                _ => {}
            }
        }
        if self.auto {
            if self.a_connected && !self.a_closed && !self.a_released {
                self.a_closed = true;
                let _ = self.a.close(self.ha);
            }
            self.b_read(usize::MAX);
            if let Some(h) = self.hb
                && !self.b_closed
                && self.b.recv_finished(h)
            {
                self.b_closed = true;
                let _ = self.b.close(h);
            }
        }
        assert!(
            self.a.handles().count() <= 1,
            "A has {} connections",
            self.a.handles().count()
        );
        let b_conns = self.b.handles().count();
        let bound = 1 + self.b_others.len() + self.weird + 8;
        assert!(
            b_conns <= bound,
            "B has {b_conns} connections (bound {bound})"
        );
    }

    fn a_send(&mut self, len: usize) {
        if self.a_released {
            return;
        }
        let len = len.min((MAX_SENT - self.sent) as usize);
        if len == 0 {
            return;
        }
        let data: Vec<u8> = (self.sent..self.sent + len as u64).map(pattern).collect();
        if let Ok(n) = self.a.send(self.ha, &data) {
            assert!(n <= len, "send took {n} of {len} bytes");
            self.sent += n as u64;
        }
    }

    /// B reads up to `limit` bytes from A's connection (checked) and drains the others.
    fn b_read(&mut self, limit: usize) {
        let mut buf = [0u8; 4096];
        if let Some(h) = self.hb
            && !self.b_released
        {
            let mut left = limit;
            while left > 0 {
                let want = left.min(buf.len());
                let Ok(n) = self.b.recv(h, &mut buf[..want]) else {
                    break;
                };
                if n == 0 {
                    break;
                }
                assert!(n <= want, "recv returned {n} for a {want}-byte buffer");
                self.check_read(&buf[..n]);
                left -= n;
            }
        }
        for i in 0..self.b_others.len() {
            let h = self.b_others[i];
            while let Ok(n) = self.b.recv(h, &mut buf)
                && n > 0
            {}
        }
    }

    fn check_read(&mut self, data: &[u8]) {
        self.note_unverified_fallback();
        if !self.content_may_be_forged {
            let end = self.received + data.len() as u64;
            assert!(
                end <= self.sent,
                "B read bytes {}..{end} but A's application only sent {}",
                self.received,
                self.sent
            );
            for (i, &byte) in data.iter().enumerate() {
                let at = self.received + i as u64;
                assert_eq!(
                    byte,
                    pattern(at),
                    "B read a wrong byte at stream offset {at} (read {}..{end}, A sent {}; B: \
                     {:?}, fallback {:?})",
                    self.received,
                    self.sent,
                    self.hb.and_then(|h| self.b.mptcp(h)).map(|m| m.mode()),
                    self.hb
                        .and_then(|h| self.b.mptcp(h))
                        .and_then(|m| m.fallback_reason()),
                );
            }
        }
        self.received += data.len() as u64;
    }

    // ---- adversarial wire ----------------------------------------------------------------

    /// B fell back to TCP because data came without a DSS mapping: from then on nothing checks
    /// what the subflow delivers at the data level.
    fn note_unverified_fallback(&mut self) {
        if self.content_may_be_forged || !(self.protected_mangle_used || self.mptcp_stripped) {
            return;
        }
        let Some(m) = self.hb.and_then(|h| self.b.mptcp(h)) else {
            return;
        };
        if m.mode() != Mode::Fallback || m.fallback_reason() != Some("data without a DSS mapping") {
            return;
        }
        // On the first data this fallback is what RFC 8684 section 3.7 prescribes (a middlebox
        // stripped the options), and a corruption that came with it cannot be caught.
        let first_data = !self.b_mptcp_data_seen;
        // Known issue (regressions/endpoint_pair/content_*): later in the stream the fallback
        // is taken too (Linux resets the subflow once a checksum was verified, or once
        // infinite fallback is no longer allowed): it bypasses the checksum and can skip or
        // misplace bytes (unmapped bytes discarded, out-of-order data at the data level lost).
        if (first_data && self.protected_mangle_used)
            || (!first_data && skip_known_issues("fallback_mid_stream"))
        {
            self.content_may_be_forged = true;
        }
    }

    /// Both ends speak MPTCP with DSS checksums.
    fn protected(&self) -> bool {
        // Known issue (regressions/endpoint_pair/content_checksum_bypassed_after_dss_stripped_
        // mid_stream): data without a DSS mapping makes the receiver fall back to TCP even after
        // checksummed mappings were verified (Linux resets instead), so once a DSS was stripped
        // the checksum no longer protects what follows.
        if skip_known_issues("fallback_mid_stream") && self.mptcp_stripped {
            return false;
        }
        let a = self.a.mptcp(self.ha);
        let b = self.hb.and_then(|h| self.b.mptcp(h));
        match (a, b) {
            (Some(a), Some(b)) => {
                a.mode() == Mode::Mptcp && a.checksum() && b.mode() == Mode::Mptcp && b.checksum()
            }
            _ => false,
        }
    }

    /// A packet's bytes were changed in a way that could change what B's application reads.
    fn note_mangle(&mut self) {
        self.adverse = true;
        self.weird += 1;
        if self.protected() && !self.protected_mangle_used {
            self.protected_mangle_used = true;
        } else {
            self.content_may_be_forged = true;
        }
    }

    /// The index of a packet in flight: `dir` 0 towards B, 1 towards A, else either; `idx`
    /// picks among them in delivery order.
    fn pick(&self, dir: u8, idx: u8) -> Option<usize> {
        let mut cands: Vec<usize> = (0..self.wire.len())
            .filter(|&i| match dir % 3 {
                0 => self.wire[i].to == Side::B,
                1 => self.wire[i].to == Side::A,
                _ => true,
            })
            .collect();
        if cands.is_empty() {
            return None;
        }
        cands.sort_by_key(|&i| (self.wire[i].at, self.wire[i].order));
        Some(cands[usize::from(idx) % cands.len()])
    }

    fn live_tuple(&self, to: Side, seg: &IpSegment<'_>) -> bool {
        let src = SocketAddr::new(seg.src, seg.tcp.src_port);
        let dst = SocketAddr::new(seg.dst, seg.tcp.dst_port);
        match to {
            Side::B => src == self.a_local && dst == self.b_local,
            Side::A => src == self.b_local && dst == self.a_local,
        }
    }

    /// An injected packet reaches `to`.
    fn inject(&mut self, to: Side, packet: &[u8]) {
        self.adverse = true;
        self.weird += 1;
        if let Ok(seg) = IpSegment::parse(packet)
            && self.live_tuple(to, &seg)
            && (!seg.tcp.payload.is_empty()
                || seg.tcp.flags.syn()
                || !seg.tcp.options.mptcp.is_empty())
        {
            self.content_may_be_forged = true;
        }
        self.deliver(to, packet);
    }

    // ---- operations ----------------------------------------------------------------------

    fn op(&mut self, inp: &mut Input<'_>) {
        let code = inp.u8() % 20;
        if debug_level() > 1 {
            eprintln!(
                "{} op {code} (next bytes {:02x?})",
                self.now,
                &inp.data[..inp.data.len().min(12)]
            );
        }
        match code {
            0 => {
                let len = usize::from(inp.u16()) % (MAX_SEND_CALL + 1);
                self.a_send(len);
            }
            1 => {
                let len = 1 + usize::from(inp.u16()) % 4096;
                self.b_read(len);
            }
            2 => {
                if !self.a_connected {
                    // Closing in SYN-SENT just forgets the connection: nothing to deliver.
                    self.adverse = true;
                }
                self.a_closed = true;
                let _ = self.a.close(self.ha);
            }
            3 => {
                if let Some(h) = self.hb {
                    let _ = self.b.close(h);
                }
            }
            4 => {
                self.adverse = true;
                let _ = self.a.abort(self.ha);
            }
            5 => {
                self.adverse = true;
                if let Some(h) = self.hb {
                    let _ = self.b.abort(h);
                }
            }
            6 => {
                let ms = 1 + u64::from(inp.u8() % 8);
                self.advance(Duration::from_millis(ms));
            }
            7 => {
                let ms = 1 + u64::from(inp.u16());
                self.advance(Duration::from_millis(ms));
            }
            8 => {
                let (dir, idx) = (inp.u8(), inp.u8());
                if let Some(i) = self.pick(dir, idx) {
                    self.wire.remove(i);
                }
            }
            9 => {
                let (dir, idx) = (inp.u8(), inp.u8());
                if self.wire.len() < MAX_WIRE
                    && let Some(i) = self.pick(dir, idx)
                {
                    self.weird += 1;
                    self.order += 1;
                    let p = &self.wire[i];
                    let copy = Packet {
                        at: p.at,
                        order: self.order,
                        to: p.to,
                        data: p.data.clone(),
                    };
                    self.wire.push(copy);
                }
            }
            10 => {
                // Swap the delivery slot with the next packet the same way.
                let (dir, idx) = (inp.u8(), inp.u8());
                if let Some(i) = self.pick(dir, idx) {
                    self.weird += 1;
                    let (at, order, to) = (self.wire[i].at, self.wire[i].order, self.wire[i].to);
                    let next = (0..self.wire.len())
                        .filter(|&j| {
                            self.wire[j].to == to
                                && (self.wire[j].at, self.wire[j].order) > (at, order)
                        })
                        .min_by_key(|&j| (self.wire[j].at, self.wire[j].order));
                    match next {
                        Some(j) => {
                            let (at2, order2) = (self.wire[j].at, self.wire[j].order);
                            self.wire[j].at = at;
                            self.wire[j].order = order;
                            self.wire[i].at = at2;
                            self.wire[i].order = order2;
                        }
                        None => self.wire[i].at += WIRE_DELAY,
                    }
                }
            }
            11 => {
                let (dir, idx, d) = (inp.u8(), inp.u8(), inp.u8());
                if let Some(i) = self.pick(dir, idx) {
                    self.weird += 1;
                    self.wire[i].at += Duration::from_millis(1 + 8 * u64::from(d));
                }
            }
            12 => {
                // Flip bits of a payload byte and refill the TCP checksum (sim::corrupt_payload).
                let (dir, idx, off, mask) = (inp.u8(), inp.u8(), inp.u16(), inp.u8().max(1));
                if let Some(i) = self.pick(dir, idx)
                    && corrupt_payload(&mut self.wire[i].data, usize::from(off), mask)
                {
                    self.note_mangle();
                }
            }
            13 => {
                // Flip bits of any byte (headers and options too), refilling checksums or not.
                // Under cfg(fuzzing) smoltcp accepts any checksum, so both reach the stack.
                let (dir, idx, off, mask, refill) =
                    (inp.u8(), inp.u8(), inp.u16(), inp.u8().max(1), inp.bool());
                if let Some(i) = self.pick(dir, idx) {
                    let p = &mut self.wire[i].data;
                    if !p.is_empty() {
                        let at = usize::from(off) % p.len();
                        p[at] ^= mask;
                        if refill {
                            refill_checksums(p);
                        }
                        self.note_mangle();
                    }
                }
            }
            14 => {
                // Strip a TCP option kind (checksum refilled): content-preserving.
                let (dir, idx) = (inp.u8(), inp.u8());
                let kind = match inp.u8() % 8 {
                    0..=3 => 30,
                    4 => 8,
                    5 => 5,
                    6 => 4,
                    _ => 2,
                };
                if let Some(i) = self.pick(dir, idx)
                    && strip_tcp_option(&mut self.wire[i].data, kind)
                {
                    self.mptcp_stripped |= kind == 30;
                    self.adverse = true;
                    self.weird += 1;
                }
            }
            15 => {
                // Truncate; optionally fix the IPv4 total length (then the segment is a
                // shorter, still genuine, prefix of itself).
                let (dir, idx, keep, fix) = (inp.u8(), inp.u8(), inp.u16(), inp.bool());
                if let Some(i) = self.pick(dir, idx) {
                    let p = &mut self.wire[i].data;
                    if !p.is_empty() {
                        let n = usize::from(keep) % p.len();
                        p.truncate(n);
                        if fix && n >= 20 && p[0] >> 4 == 4 {
                            p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                            refill_checksums(p);
                        }
                        self.adverse = true;
                        self.weird += 1;
                    }
                }
            }
            16 => {
                let to = if inp.bool() { Side::A } else { Side::B };
                let len = usize::from(inp.u16()) % 1501;
                let bytes = inp.bytes(len).to_vec();
                self.inject(to, &bytes);
            }
            17 => self.inject_segment(inp),
            18 => {
                self.adverse = true;
                if inp.bool() {
                    self.a_released = true;
                    self.a.release(self.ha);
                } else if let Some(h) = self.hb {
                    self.b_released = true;
                    self.b.release(h);
                }
            }
            _ => {
                // One round: to the next delivery or timer, whatever it is.
                let next = [
                    self.wire.iter().map(|p| p.at).min(),
                    self.a.poll_timeout(),
                    self.b.poll_timeout(),
                ]
                .into_iter()
                .flatten()
                .min();
                if let Some(t) = next {
                    self.run_until(t.max(self.now));
                }
            }
        }
        self.transmit();
        self.events();
    }

    /// A well-formed segment from the input, to A or B.
    fn inject_segment(&mut self, inp: &mut Input<'_>) {
        let to = if inp.bool() { Side::A } else { Side::B };
        let (me, peer, h) = match to {
            Side::A => (self.a_local, self.b_local, Some(self.ha)),
            Side::B => (self.b_local, self.a_local, self.hb),
        };
        let ep = match to {
            Side::A => &self.a,
            Side::B => &self.b,
        };
        let conn = h.and_then(|h| ep.connection(h));
        let mp = h.and_then(|h| ep.mptcp(h));
        let (src, dst) = if !inp.bool() {
            (peer, me)
        } else {
            let src_ip = match inp.u8() % 4 {
                0 => peer.ip(),
                1 => IpAddr::V4(Ipv4Addr::new(198, 18, 7, 7)),
                2 => me.ip(),
                _ => IpAddr::V4(Ipv4Addr::new(10, 0, 0, inp.u8())),
            };
            let src_port = if inp.bool() { peer.port() } else { inp.u16() };
            let dst_port = match inp.u8() % 3 {
                0 => me.port(),
                1 => B_PORT,
                _ => inp.u16(),
            };
            (
                SocketAddr::new(src_ip, src_port),
                SocketAddr::new(me.ip(), dst_port),
            )
        };
        let rel = |base: Option<TcpSeq>, off: i16| {
            TcpSeq(base.unwrap_or(TcpSeq(0)).0.wrapping_add(off as i32 as u32))
        };
        let seq = match inp.u8() % 3 {
            0 => TcpSeq(inp.u32()),
            1 => rel(conn.map(|c| c.rcv_nxt()), inp.i16()),
            _ => rel(conn.map(|c| c.rcv_nxt()), 0),
        };
        let ack = match inp.u8() % 3 {
            0 => TcpSeq(inp.u32()),
            1 => rel(conn.map(|c| c.snd_nxt()), inp.i16()),
            _ => rel(conn.map(|c| c.snd_una()), 0),
        };
        let flags = TcpFlags(inp.u8());
        let window = inp.u16();
        let urgent = if inp.u8() & 0x0f == 0 { inp.u16() } else { 0 };
        let mut options = TcpOptions::default();
        let which = inp.u8();
        if which & 0x01 != 0 {
            options.mss = Some(inp.u16());
        }
        if which & 0x02 != 0 {
            options.window_scale = Some(inp.u8());
        }
        if which & 0x04 != 0 {
            options.sack_permitted = true;
        }
        if which & 0x08 != 0 {
            options.timestamp = Some(Timestamp {
                tsval: inp.u32(),
                tsecr: inp.u32(),
            });
        }
        if which & 0x10 != 0 {
            let n = 1 + usize::from(inp.u8() % 4);
            let base = conn.map_or(0, |c| c.rcv_nxt().0);
            let blocks: Vec<(u32, u32)> = (0..n)
                .map(|_| {
                    let l = base.wrapping_add(inp.u16() as u32);
                    (l, l.wrapping_add(inp.u16() as u32))
                })
                .collect();
            options.sack = SackBlocks::new(&blocks).unwrap_or_default();
        }
        let n_mptcp = (which >> 5) % 3;
        for _ in 0..n_mptcp {
            let dsn_rel = |base: Option<Dsn>, off: i16| {
                Dsn(base.unwrap_or(Dsn(0)).0.wrapping_add(off as i64 as u64))
            };
            let field = |long: bool, d: Dsn| {
                if long {
                    DsnField::Long(d.0)
                } else {
                    DsnField::Short(d.0 as u32)
                }
            };
            let my_key = mp.map(|m| m.local_key().key);
            let peer_key = mp.and_then(|m| m.remote_key()).map(|k| k.key);
            let key = |inp: &mut Input<'_>| match inp.u8() % 3 {
                0 => my_key.unwrap_or(0),
                1 => peer_key.unwrap_or(0),
                _ => inp.u64(),
            };
            let opt = match inp.u8() % 7 {
                0 => {
                    let f = inp.u8();
                    let data_ack = (f & 0x01 != 0).then(|| {
                        let off = inp.i16();
                        field(f & 0x02 != 0, dsn_rel(mp.map(|m| m.snd_una()), off))
                    });
                    let mapping = (f & 0x04 != 0).then(|| {
                        let dsn = if f & 0x08 != 0 {
                            let off = inp.i16();
                            dsn_rel(mp.map(|m| m.data_ack()), off)
                        } else {
                            Dsn(inp.u64())
                        };
                        let ssn = if f & 0x10 != 0 {
                            let base =
                                conn.map_or(0, |c| c.rcv_nxt().distance_from(c.irs()) as u32);
                            Ssn(base.wrapping_add(inp.i16() as i32 as u32))
                        } else {
                            Ssn(inp.u32())
                        };
                        DssMapping {
                            dsn: field(f & 0x02 != 0, dsn),
                            ssn,
                            data_len: inp.u16(),
                            checksum: (f & 0x20 != 0).then(|| inp.u16()),
                        }
                    });
                    Some(MptcpRepr::Dss(DssRepr {
                        data_ack,
                        mapping,
                        data_fin: f & 0x40 != 0,
                    }))
                }
                1 => {
                    let f = inp.u8();
                    let flags = if f & 0x80 != 0 {
                        CapableFlags(inp.u8())
                    } else {
                        CapableFlags::v1(f & 0x40 != 0, false)
                    };
                    let keys = match f % 4 {
                        0 => CapableKeys::None,
                        1 => CapableKeys::Sender {
                            sender_key: key(inp),
                        },
                        2 => CapableKeys::Both {
                            sender_key: key(inp),
                            receiver_key: key(inp),
                        },
                        _ => CapableKeys::WithData {
                            sender_key: key(inp),
                            receiver_key: key(inp),
                            data_len: inp.u16(),
                            checksum: (f & 0x20 != 0).then(|| inp.u16()),
                        },
                    };
                    Some(MptcpRepr::Capable(CapableRepr {
                        version: if f & 0x10 != 0 { inp.u8() % 16 } else { 1 },
                        flags,
                        keys,
                    }))
                }
                2 => Some(MptcpRepr::FastClose {
                    receiver_key: key(inp),
                }),
                3 => {
                    let off = inp.i16();
                    let base = if inp.bool() {
                        mp.map(|m| m.snd_una())
                    } else {
                        mp.map(|m| m.data_ack())
                    };
                    Some(MptcpRepr::Fail {
                        dsn: dsn_rel(base, off),
                    })
                }
                4 => Some(MptcpRepr::TcpRst(TcpRstRepr {
                    flags: inp.u8() & 0x0f,
                    reason: TcpRstReason(inp.u8()),
                })),
                _ => {
                    // Any option the parser accepts (ADD_ADDR, MP_JOIN, MP_PRIO, ...).
                    let len = usize::from(inp.u8() % 41);
                    MptcpRepr::parse_bytes(inp.bytes(len)).ok()
                }
            };
            if let Some(o) = opt {
                let _ = options.mptcp.push(o);
            }
        }
        let plen = match inp.u8() % 4 {
            0 | 1 => 0,
            2 => usize::from(inp.u8()),
            _ => usize::from(inp.u16()) % 1461,
        };
        let payload = inp.bytes(plen).to_vec();
        let mut seg = IpSegment {
            src: src.ip(),
            dst: dst.ip(),
            hop_limit: 64,
            tcp: TcpSegment {
                src_port: src.port(),
                dst_port: dst.port(),
                seq,
                ack,
                flags,
                window,
                urgent,
                options,
                payload: &payload,
            },
        };
        if seg.tcp.options.buffer_len() > 40 {
            seg.tcp.options = TcpOptions::default();
        }
        let mut buf = vec![0u8; seg.buffer_len()];
        let Ok(n) = seg.emit(&mut buf) else {
            return;
        };
        buf.truncate(n);
        self.inject(to, &buf);
    }

    /// The final phase: A closes, B reads everything and closes, time runs on a clean wire.
    fn finish(&mut self) {
        self.auto = true;
        self.transmit();
        self.events();
        self.rounds = 0;
        self.exhausted = false;
        self.run_until(self.now + FINAL_PHASE);
        self.b_read(usize::MAX);
        if debug() {
            let a = self.a.mptcp(self.ha);
            let b = self.hb.and_then(|h| self.b.mptcp(h));
            eprintln!(
                "endpoint_pair: t={} sent={} received={} b_finished={} forged={} \
                 protected_mangle={} adverse={} exhausted={} a_failed={} b_failed={} \
                 A: {:?} {:?} csum={:?} | B: {:?} {:?} csum={:?} | wire={} rounds={}",
                self.now,
                self.sent,
                self.received,
                self.hb.is_some_and(|h| self.b.recv_finished(h)),
                self.content_may_be_forged,
                self.protected_mangle_used,
                self.adverse,
                self.exhausted,
                self.a_failed,
                self.b_failed,
                self.a.connection(self.ha).map(|c| c.state()),
                a.map(|m| m.mode()),
                a.map(|m| m.checksum()),
                self.hb
                    .and_then(|h| self.b.connection(h))
                    .map(|c| c.state()),
                b.map(|m| m.mode()),
                b.map(|m| m.checksum()),
                self.wire.len(),
                self.rounds,
            );
            eprintln!(
                "endpoint_pair: A fallback={:?} counters={:?}\nendpoint_pair: B fallback={:?} counters={:?}",
                a.and_then(|m| m.fallback_reason()),
                a.map(|m| m.counters()),
                b.and_then(|m| m.fallback_reason()),
                b.map(|m| m.counters()),
            );
        }
        if self.adverse || self.exhausted || self.a_failed || self.b_failed {
            return;
        }
        let Some(hb) = self.hb else {
            panic!(
                "liveness: no connection at B after {FINAL_PHASE} of clean wire, and A did not fail"
            );
        };
        assert_eq!(
            self.received,
            self.sent,
            "liveness: B read {} of the {} bytes A sent (A: {:?}, B: {:?})",
            self.received,
            self.sent,
            self.a.connection(self.ha).map(|c| c.state()),
            self.b.connection(hb).map(|c| c.state())
        );
        // Known issue (regressions/endpoint_pair/liveness_mptcp_close_without_data_never_sends_
        // data_fin): an MPTCP client that closes before sending any byte, to a server that sends
        // nothing, never gets its DATA_FIN out: until the server's first DSS it only repeats the
        // MP_CAPABLE third ACK, and the server has nothing to send. Not asserted until fixed, so
        // that fuzzing can go past it.
        if skip_known_issues("close_without_data")
            && self.sent == 0
            && self
                .a
                .mptcp(self.ha)
                .is_some_and(|m| m.mode() == Mode::Mptcp)
        {
            return;
        }
        assert!(
            self.b.recv_finished(hb),
            "liveness: B read all {} bytes but not the end of the stream (A: {:?}, B: {:?})",
            self.sent,
            self.a.connection(self.ha).map(|c| c.state()),
            self.b.connection(hb).map(|c| c.state())
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input { data };
    let (cfg, seed, tcp) = (inp.u8(), inp.u8(), inp.u8());
    let mut sim = Sim::new(cfg, seed, tcp);
    let mut ops = 0;
    while !inp.is_empty() && ops < MAX_OPS && !sim.exhausted {
        sim.op(&mut inp);
        ops += 1;
    }
    sim.finish();
});
