//! Segmentation offload in the sans-IO core (issue 7's TUN fast path): a sender may write a
//! TCP *super segment* that the device cuts into MSS-sized segments (Linux's TSO/GSO behind a
//! TUN with `IFF_VNET_HDR`), and a receiver may take the super segments the kernel merged
//! (GRO) whole. The device side is emulated here with `split_super_segment`, which does what
//! the kernel's `tcp_gso_segment` does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mptcp_stack::endpoint::{Endpoint, EndpointConfig, Event};
use mptcp_stack::node::{Duration, Instant, Node, Transmit};
use mptcp_stack::seq::TcpSeq;
use mptcp_stack::wire::tcp::{pseudo_header_sum, split_super_segment};
use mptcp_stack::wire::{IpSegment, MptcpRepr, TcpFlags, TcpOptions, TcpSegment, Timestamp};

const A1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const B1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
const MTU: usize = 1500;

/// RFC 1071's sum of `bytes`, folded and complemented: what a device writes over a segment
/// whose checksum field holds the partial (pseudo-header) sum.
fn finish_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn segment(src: IpAddr, dst: IpAddr, payload: &[u8]) -> IpSegment<'_> {
    IpSegment {
        src,
        dst,
        hop_limit: 64,
        tcp: TcpSegment {
            src_port: 40_000,
            dst_port: 80,
            seq: TcpSeq(0xffff_f000),
            ack: TcpSeq(7),
            flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN),
            window: 1000,
            urgent: 0,
            options: TcpOptions {
                timestamp: Some(Timestamp { tsval: 1, tsecr: 2 }),
                ..TcpOptions::default()
            },
            payload,
        },
    }
}

#[test]
fn a_partial_checksum_finished_by_the_device_is_the_full_checksum() {
    let payload: Vec<u8> = (0..3001u32).map(|i| (i * 7) as u8).collect();
    let v6 = (
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2)),
    );
    for (src, dst, ip_len) in [(A1, B1, 20), (v6.0, v6.1, 40)] {
        let seg = segment(src, dst, &payload);
        let mut full = vec![0u8; 4000];
        let n = seg.emit(&mut full).unwrap();
        let mut partial = vec![0u8; 4000];
        let headers = seg.headers_len();
        partial[headers..headers + payload.len()].copy_from_slice(&payload);
        let m = seg
            .emit_around_payload_partial(&mut partial, payload.len())
            .unwrap();
        assert_eq!(n, m);
        let field = ip_len + 16;
        let want = u16::from_be_bytes([full[field], full[field + 1]]);
        let psum = u16::from_be_bytes([partial[field], partial[field + 1]]);
        assert_eq!(psum, pseudo_header_sum(src, dst, n - ip_len));
        assert_ne!(psum, want, "the partial field is not the final checksum");
        // The device: sum from the TCP header on, with the partial sum in place.
        assert_eq!(finish_checksum(&partial[ip_len..n]), want);
        // Everything but the checksum field is the same packet.
        partial[field..field + 2].copy_from_slice(&want.to_be_bytes());
        assert_eq!(&partial[..n], &full[..n]);
    }
}

#[test]
fn a_super_segment_splits_into_valid_segments_like_linux_gso() {
    let mss = 1448;
    let payload: Vec<u8> = (0..(3 * mss + 500) as u32)
        .map(|i| (i % 251) as u8)
        .collect();
    let seg = segment(A1, B1, &payload);
    let mut big = vec![0u8; 65_535];
    let headers = seg.headers_len();
    big[headers..headers + payload.len()].copy_from_slice(&payload);
    let n = seg
        .emit_around_payload_partial(&mut big, payload.len())
        .unwrap();
    let mut scratch = vec![0u8; MTU];
    let mut pieces = Vec::new();
    let count =
        split_super_segment(&big[..n], mss, &mut scratch, |p| pieces.push(p.to_vec())).unwrap();
    assert_eq!(count, 4);
    assert_eq!(pieces.len(), 4);
    let mut joined = Vec::new();
    for (k, p) in pieces.iter().enumerate() {
        assert!(p.len() <= MTU);
        let ip = IpSegment::parse(p).expect("every piece has valid checksums");
        let last = k == 3;
        assert_eq!(
            ip.tcp.seq,
            TcpSeq(0xffff_f000) + (k * mss) as u32,
            "sequence of piece {k}"
        );
        assert_eq!(ip.tcp.payload.len(), if last { 500 } else { mss });
        assert_eq!(ip.tcp.flags.fin(), last, "FIN only on the last piece");
        assert_eq!(
            ip.tcp.flags.has(TcpFlags::PSH),
            last,
            "PSH only on the last piece"
        );
        assert!(ip.tcp.flags.ack());
        assert_eq!(
            ip.tcp.options.timestamp, seg.tcp.options.timestamp,
            "options copied"
        );
        joined.extend_from_slice(ip.tcp.payload);
    }
    assert_eq!(joined, payload);
}

/// Two endpoints back to back; A's transmissions go through `deliver` (the emulated device).
struct Pair {
    a: Endpoint,
    b: Endpoint,
    now: Instant,
    pkt: Vec<u8>,
    scratch: Vec<u8>,
    super_segments: usize,
    largest_piece: usize,
}

enum Device {
    /// The kernel cuts every super segment (TSO towards a link without it).
    Split,
    /// The super segment reaches the receiver whole, checksum vouched for (GRO).
    Whole,
}

impl Pair {
    fn new(mptcp: bool, checksum: bool) -> Pair {
        let cfg = |seed| {
            let mut c = EndpointConfig::seeded(seed);
            c.mptcp.enabled = mptcp;
            c.mptcp.checksum = checksum;
            c
        };
        let mut a = Endpoint::new(cfg(1));
        let mut b = Endpoint::new(cfg(2));
        a.add_address(A1);
        b.add_address(B1);
        b.listen(80);
        Pair {
            a,
            b,
            now: Instant::from_millis(0),
            pkt: vec![0; 65_535],
            scratch: vec![0; MTU],
            super_segments: 0,
            largest_piece: 0,
        }
    }

    /// Send `bytes` of a pattern from A to B over `device`; returns what B read.
    fn transfer(&mut self, bytes: usize, device: Device) -> Vec<u8> {
        let h = self
            .a
            .connect(SocketAddr::new(A1, 0), SocketAddr::new(B1, 80))
            .unwrap();
        let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
        let (mut sent, mut got) = (0, Vec::new());
        let mut bh = None;
        let mut rbuf = vec![0u8; 64 * 1024];
        let deadline = Instant::from_secs(120);
        while got.len() < bytes {
            assert!(
                self.now < deadline,
                "stalled at {} of {bytes} bytes",
                got.len()
            );
            if sent < bytes
                && let Ok(n) = self.a.send(h, &data[sent..])
            {
                sent += n;
            }
            while let Some(t) = self.a.poll_transmit_segments(self.now, &mut self.pkt, 44) {
                let packet = &self.pkt[..t.len];
                match (t, &device) {
                    (
                        Transmit {
                            segment_size: Some(size),
                            ..
                        },
                        Device::Split,
                    ) => {
                        self.super_segments += 1;
                        let (b, largest) = (&mut self.b, &mut self.largest_piece);
                        let now = self.now;
                        split_super_segment(packet, size, &mut self.scratch, |p| {
                            *largest = (*largest).max(p.len());
                            b.handle_packet(now, p);
                        })
                        .unwrap();
                    }
                    (
                        Transmit {
                            segment_size: Some(_),
                            ..
                        },
                        Device::Whole,
                    ) => {
                        self.super_segments += 1;
                        self.b.handle_packet_trusted(self.now, packet);
                    }
                    (
                        Transmit {
                            segment_size: None, ..
                        },
                        _,
                    ) => {
                        assert!(t.len <= MTU, "an ordinary packet within the MTU");
                        self.b.handle_packet(self.now, packet);
                    }
                }
            }
            while let Some(ev) = self.b.poll_event() {
                if let Event::Accepted(x) = ev {
                    bh = Some(x);
                }
            }
            while self.a.poll_event().is_some() {}
            if let Some(x) = bh {
                while let Ok(n) = self.b.recv(x, &mut rbuf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&rbuf[..n]);
                }
            }
            while let Some(n) = self.b.poll_transmit(self.now, &mut self.pkt) {
                assert!(n <= MTU);
                self.a.handle_packet(self.now, &self.pkt[..n]);
            }
            self.now += Duration::from_micros(50);
            for ep in [&mut self.a, &mut self.b] {
                if ep.poll_timeout().is_some_and(|t| t <= self.now) {
                    ep.handle_timeout(self.now);
                }
            }
        }
        assert_eq!(got.len(), bytes);
        assert!(got == data, "the receiver read exactly the bytes sent");
        got
    }
}

#[test]
fn a_bulk_tcp_sender_writes_super_segments_the_device_cuts_into_valid_segments() {
    let mut p = Pair::new(false, false);
    p.transfer(4 << 20, Device::Split);
    assert!(
        p.super_segments > 20,
        "only {} super segments",
        p.super_segments
    );
    assert!(p.largest_piece <= MTU && p.largest_piece > MTU - 100);
    assert_eq!(p.b.stats().malformed, 0);
}

#[test]
fn a_bulk_mptcp_sender_repeats_one_mapping_on_every_segment_of_a_super_segment() {
    for checksum in [false, true] {
        let mut p = Pair::new(true, checksum);
        p.transfer(4 << 20, Device::Split);
        assert!(
            p.super_segments > 20,
            "only {} super segments",
            p.super_segments
        );
        assert_eq!(p.b.stats().malformed, 0);
    }
    // And each piece carries a mapping that covers its own bytes.
    let mut p = Pair::new(true, false);
    let h =
        p.a.connect(SocketAddr::new(A1, 0), SocketAddr::new(B1, 80))
            .unwrap();
    let mut checked = 0;
    let mut isn = None;
    let mut scratch = vec![0u8; MTU];
    for _ in 0..2000 {
        let _ = p.a.send(h, &[7u8; 65_536]);
        while let Some(t) = p.a.poll_transmit_segments(p.now, &mut p.pkt, 44) {
            let b = &mut p.b;
            let now = p.now;
            let mut each = |piece: &[u8]| {
                let ip = IpSegment::parse(piece).unwrap();
                if ip.tcp.flags.syn() {
                    isn = Some(ip.tcp.seq);
                }
                if !ip.tcp.payload.is_empty() {
                    let map = ip.tcp.options.mptcp.iter().find_map(|o| match o {
                        MptcpRepr::Dss(d) => d.mapping,
                        _ => None,
                    });
                    if let Some(m) = map
                        && t.segment_size.is_some()
                    {
                        // The mapping (subflow sequence relative to the ISN) starts at or
                        // before the piece and ends at or after it.
                        let rel = ip.tcp.seq.distance_from(isn.expect("the SYN came first"));
                        let (start, len) = (i64::from(m.ssn.0), i64::from(m.data_len));
                        let end = i64::from(rel) + ip.tcp.payload.len() as i64;
                        assert!(
                            start <= i64::from(rel) && end <= start + len,
                            "piece outside its mapping"
                        );
                        checked += 1;
                    }
                }
                b.handle_packet(now, piece);
            };
            match t.segment_size {
                Some(size) => {
                    split_super_segment(&p.pkt[..t.len], size, &mut scratch, &mut each).unwrap();
                }
                None => each(&p.pkt[..t.len]),
            }
        }
        while p.b.poll_event().is_some() {}
        while let Some(n) = p.b.poll_transmit(p.now, &mut p.pkt) {
            p.a.handle_packet(p.now, &p.pkt[..n]);
        }
        p.now += Duration::from_micros(50);
        if checked > 200 {
            break;
        }
    }
    assert!(
        checked > 200,
        "only {checked} pieces of super segments seen"
    );
}

#[test]
fn a_receiver_takes_the_super_segments_the_kernel_merged_whole() {
    // Plain TCP, MPTCP, and MPTCP with DSS checksums (verified over whole mappings).
    for (mptcp, checksum) in [(false, false), (true, false), (true, true)] {
        let mut p = Pair::new(mptcp, checksum);
        p.transfer(4 << 20, Device::Whole);
        assert!(
            p.super_segments > 20,
            "only {} super segments",
            p.super_segments
        );
        assert_eq!(p.b.stats().malformed, 0);
    }
}

#[test]
fn a_super_segment_with_a_partial_checksum_is_dropped_unless_the_device_vouches_for_it() {
    let payload = vec![1u8; 4000];
    let seg = segment(A1, B1, &payload);
    let mut big = vec![0u8; 8000];
    let headers = seg.headers_len();
    big[headers..headers + payload.len()].copy_from_slice(&payload);
    let n = seg
        .emit_around_payload_partial(&mut big, payload.len())
        .unwrap();
    let mut b = Endpoint::new(EndpointConfig::seeded(2));
    b.add_address(B1);
    b.handle_packet(Instant::from_millis(0), &big[..n]);
    assert_eq!(b.stats().malformed, 1, "a partial checksum does not verify");
    b.handle_packet_trusted(Instant::from_millis(0), &big[..n]);
    assert_eq!(
        b.stats().malformed,
        1,
        "a vouched-for one parses (and finds no connection)"
    );
}
