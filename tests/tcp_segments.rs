//! TCP segment codec: IPv4 and IPv6 packets with standard and MPTCP options.
//!
//! - A segment emitted with options parses back to the same segment, checksums verified.
//! - The 40-byte option budget is enforced on emit, and reported by `buffer_len`/`room`.
//! - Corrupted bytes are caught by the IPv4 header or TCP checksum; other protocols, fragments
//!   and truncated packets are typed errors.
//! - Malformed options never reject a segment: they are skipped and counted, as Linux does.
//! - Any byte string is parsed or refused without a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mptcp_stack::seq::{Ssn, TcpSeq};
use mptcp_stack::wire::tcp::field;
use mptcp_stack::wire::{
    AddAddrRepr, CapableFlags, CapableKeys, CapableRepr, DsnField, DssMapping, DssRepr, Error,
    IpSegment, MptcpOptions, MptcpRepr, SackBlocks, TcpFlags, TcpOptions, TcpSegment, Timestamp,
};
use proptest::prelude::*;

const V4_A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const V4_B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

fn mptcp(options: &[MptcpRepr]) -> MptcpOptions {
    let mut list = MptcpOptions::default();
    for o in options {
        list.push(*o).unwrap();
    }
    list
}

fn capable_syn() -> MptcpRepr {
    MptcpRepr::Capable(CapableRepr {
        version: 1,
        flags: CapableFlags::v1(false, false),
        keys: CapableKeys::None,
    })
}

fn data_dss(len: u16, checksum: Option<u16>) -> MptcpRepr {
    MptcpRepr::Dss(DssRepr {
        data_ack: Some(DsnField::Short(0xabcd_0001)),
        mapping: Some(DssMapping {
            dsn: DsnField::Long(0x0000_0001_0000_0000),
            ssn: Ssn(1),
            data_len: len,
            checksum,
        }),
        data_fin: false,
    })
}

fn syn(src: IpAddr, dst: IpAddr) -> IpSegment<'static> {
    IpSegment {
        src,
        dst,
        hop_limit: 64,
        tcp: TcpSegment {
            src_port: 40000,
            dst_port: 5201,
            seq: TcpSeq(0xfffffff0),
            ack: TcpSeq(0),
            flags: TcpFlags(TcpFlags::SYN),
            window: 64240,
            urgent: 0,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamp: Some(Timestamp { tsval: 1, tsecr: 0 }),
                mptcp: mptcp(&[capable_syn()]),
                ..TcpOptions::default()
            },
            payload: &[],
        },
    }
}

fn round_trip(seg: &IpSegment<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; seg.buffer_len()];
    let n = seg.emit(&mut buf).expect("emit");
    assert_eq!(n, buf.len());
    let parsed = IpSegment::parse(&buf).expect("parse");
    assert_eq!(&parsed, seg);
    buf
}

#[test]
fn an_mptcp_syn_round_trips_over_ipv4_and_ipv6() {
    let bytes = round_trip(&syn(V4_A, V4_B));
    // 20 IPv4 + 20 TCP + MSS 4 + SACK_PERM/TS 12 + NOP/WS 4 + MP_CAPABLE 4 = 64.
    assert_eq!(bytes.len(), 64);
    assert_eq!(bytes[32] >> 4, 11, "data offset in words");
    // The MP_CAPABLE SYN sits last, as Linux's `1e 04 01 01`.
    assert_eq!(&bytes[60..64], &[30, 4, 0x01, 0x01]);
    let bytes = round_trip(&syn(v6("2001:db8:101::1"), v6("2001:db8:1::2")));
    assert_eq!(bytes.len(), 84);
}

#[test]
fn a_data_segment_with_dss_and_payload_round_trips() {
    let payload: Vec<u8> = (0..1400u32).map(|i| (i % 251) as u8).collect();
    for (src, dst) in [(V4_A, V4_B), (v6("2001:db8:102::1"), v6("2001:db8:2::2"))] {
        let seg = IpSegment {
            src,
            dst,
            hop_limit: 63,
            tcp: TcpSegment {
                src_port: 1,
                dst_port: 65535,
                seq: TcpSeq(1),
                ack: TcpSeq(u32::MAX),
                flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH),
                window: 512,
                urgent: 0,
                options: TcpOptions {
                    timestamp: Some(Timestamp { tsval: 7, tsecr: 8 }),
                    mptcp: mptcp(&[data_dss(1400, Some(0x55aa))]),
                    ..TcpOptions::default()
                },
                payload: &payload,
            },
        };
        // 12 for timestamps + 24 for the DSS with checksum = 36 of 40 bytes.
        assert_eq!(seg.tcp.options.buffer_len(), 36);
        assert_eq!(seg.tcp.options.room(), 4);
        round_trip(&seg);
    }
}

#[test]
fn sack_blocks_and_several_mptcp_options_round_trip() {
    let mut seg = syn(V4_A, V4_B);
    seg.tcp.flags = TcpFlags(TcpFlags::ACK);
    seg.tcp.options = TcpOptions {
        sack: SackBlocks::new(&[(100, 200), (300, 400)]).unwrap(),
        mptcp: mptcp(&[
            MptcpRepr::Dss(DssRepr {
                data_ack: Some(DsnField::Short(5)),
                ..DssRepr::default()
            }),
            MptcpRepr::Prio { backup: true },
        ]),
        ..TcpOptions::default()
    };
    // NOP NOP SACK(18) = 20, DSS ack 8, MP_PRIO 3 + 1 NOP = 4: 32 bytes.
    assert_eq!(seg.tcp.options.buffer_len(), 32);
    round_trip(&seg);
    // Four SACK blocks fill 36 bytes alone.
    seg.tcp.options = TcpOptions {
        sack: SackBlocks::new(&[(1, 2), (3, 4), (5, 6), (7, 8)]).unwrap(),
        ..TcpOptions::default()
    };
    assert_eq!(seg.tcp.options.buffer_len(), 36);
    round_trip(&seg);
    assert_eq!(
        SackBlocks::new(&[(0, 0); 5]),
        Err(Error::TooManySackBlocks(4))
    );
}

#[test]
fn options_past_forty_bytes_are_refused_not_truncated() {
    // Timestamps (12) + DSS with 8-byte ack, 8-byte DSN and checksum (28) = 40: fits exactly.
    let full_dss = MptcpRepr::Dss(DssRepr {
        data_ack: Some(DsnField::Long(1)),
        mapping: Some(DssMapping {
            dsn: DsnField::Long(2),
            ssn: Ssn(3),
            data_len: 4,
            checksum: Some(5),
        }),
        data_fin: true,
    });
    assert_eq!(full_dss.buffer_len(), 28);
    let mut seg = syn(V4_A, V4_B);
    seg.tcp.flags = TcpFlags(TcpFlags::ACK);
    seg.tcp.options = TcpOptions {
        timestamp: Some(Timestamp { tsval: 1, tsecr: 2 }),
        mptcp: mptcp(&[full_dss]),
        ..TcpOptions::default()
    };
    assert_eq!(seg.tcp.options.buffer_len(), 40);
    round_trip(&seg);

    // An IPv6 ADD_ADDR with port and HMAC (30 bytes, 32 padded) does not fit beside timestamps.
    seg.tcp.options.mptcp = mptcp(&[MptcpRepr::AddAddr(AddAddrRepr {
        addr_id: 2,
        addr: v6("2001:db8:2::2"),
        port: Some(80),
        hmac: Some(7),
    })]);
    assert_eq!(seg.tcp.options.buffer_len(), 44);
    let mut buf = vec![0u8; 200];
    assert_eq!(seg.emit(&mut buf), Err(Error::OptionSpaceExceeded(44)));
    assert_eq!(
        seg.tcp.options.emit(&mut buf),
        Err(Error::OptionSpaceExceeded(44))
    );
    assert_eq!(seg.tcp.options.room(), 0);
    // On a pure ACK without timestamps it does.
    seg.tcp.options.timestamp = None;
    round_trip(&seg);
}

#[test]
fn a_flipped_bit_anywhere_is_caught_by_a_checksum() {
    let payload = [0x42u8; 333];
    let mut seg = syn(V4_A, V4_B);
    seg.tcp.payload = &payload;
    seg.tcp.flags = TcpFlags(TcpFlags::ACK);
    let bytes = round_trip(&seg);
    for i in 0..bytes.len() {
        let mut corrupt = bytes.clone();
        corrupt[i] ^= 0x04;
        let result = IpSegment::parse(&corrupt);
        // Flipping a bit may also make the packet something else (another version, protocol or
        // length): any error will do, but never a silent acceptance.
        assert!(result.is_err(), "bit flip at byte {i} accepted: {result:?}");
    }
    let mut v6seg = syn(v6("2001:db8:101::1"), v6("2001:db8:1::2"));
    v6seg.tcp.payload = &payload;
    let bytes = round_trip(&v6seg);
    // IPv6 has no header checksum; the TCP checksum covers addresses through the pseudo-header.
    for i in [8, 30, 40, 45, 60, bytes.len() - 1] {
        let mut corrupt = bytes.clone();
        corrupt[i] ^= 0x80;
        assert_eq!(
            IpSegment::parse(&corrupt),
            Err(Error::TcpChecksum),
            "byte {i}"
        );
    }
}

#[test]
fn non_tcp_fragments_and_truncations_are_typed_errors() {
    let bytes = round_trip(&syn(V4_A, V4_B));
    assert_eq!(IpSegment::parse(&[]), Err(Error::Truncated));
    assert_eq!(IpSegment::parse(&[0x50]), Err(Error::IpVersion(5)));
    assert_eq!(IpSegment::parse(&bytes[..30]), Err(Error::IpHeader));

    // UDP instead of TCP (header checksum refilled).
    let mut udp = bytes.clone();
    udp[9] = 17;
    refill_ipv4_checksum(&mut udp);
    assert_eq!(IpSegment::parse(&udp), Err(Error::NotTcp(17)));

    // A fragment.
    let mut frag = bytes.clone();
    frag[6] |= 0x20;
    refill_ipv4_checksum(&mut frag);
    assert_eq!(IpSegment::parse(&frag), Err(Error::IpFragment));

    // A data offset below 5 words.
    let mut offset = bytes.clone();
    offset[32] = 0x40;
    assert_eq!(IpSegment::parse(&offset), Err(Error::TcpHeader));

    // An IPv6 packet with a hop-by-hop header (as in MLD): not TCP for us.
    let mut v6bytes = round_trip(&syn(v6("2001:db8:101::1"), v6("2001:db8:1::2")));
    v6bytes[6] = 0;
    assert_eq!(IpSegment::parse(&v6bytes), Err(Error::NotTcp(0)));

    // Mixed families cannot be emitted.
    let mut mixed = syn(V4_A, v6("2001:db8:1::2"));
    mixed.tcp.options = TcpOptions::default();
    let mut buf = [0u8; 128];
    assert_eq!(mixed.emit(&mut buf), Err(Error::AddressFamilyMismatch));
    let small = syn(V4_A, V4_B);
    assert_eq!(
        small.emit(&mut buf[..63]),
        Err(Error::BufferTooSmall {
            needed: 64,
            available: 63
        })
    );
}

fn refill_ipv4_checksum(packet: &mut [u8]) {
    packet[10] = 0;
    packet[11] = 0;
    let mut sum: u32 = 0;
    for w in packet[..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    packet[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

#[test]
fn malformed_options_are_skipped_and_counted_not_fatal() {
    // MSS of length 3 (wrong), an unknown kind 99, a broken MPTCP option (MP_PRIO of length 4),
    // then a valid MP_PRIO and timestamps, then an option whose length runs off the end.
    let block = [
        2, 3, 0, // bad MSS
        99, 2, // unknown kind
        30, 4, 0x51, 0, // MP_PRIO must be 3 bytes
        30, 3, 0x51, // good MP_PRIO
        8, 10, 0, 0, 0, 1, 0, 0, 0, 2, // timestamps
        1, // NOP
        5, 30, // SACK running past the end
    ];
    let opts = TcpOptions::parse(&block);
    assert_eq!(opts.skipped, 4);
    assert_eq!(opts.mss, None);
    assert_eq!(opts.timestamp, Some(Timestamp { tsval: 1, tsecr: 2 }));
    assert_eq!(
        opts.mptcp.iter().copied().collect::<Vec<_>>(),
        vec![MptcpRepr::Prio { backup: true }]
    );
    // A zero length option ends parsing instead of looping.
    let opts = TcpOptions::parse(&[2, 0, 2, 4, 5, 0xb4]);
    assert_eq!((opts.mss, opts.skipped), (None, 1));
    // End of list stops parsing; what follows is ignored.
    let opts = TcpOptions::parse(&[0, 2, 4, 5, 0xb4]);
    assert_eq!((opts.mss, opts.skipped), (None, 0));
}

#[test]
fn more_mptcp_options_than_the_list_holds_are_counted_as_skipped() {
    let block: Vec<u8> = std::iter::repeat_n([30u8, 3, 0x50, 1], 10)
        .flatten()
        .collect();
    let opts = TcpOptions::parse(&block);
    assert_eq!(opts.mptcp.len(), MptcpOptions::CAPACITY);
    assert_eq!(opts.skipped as usize, 10 - MptcpOptions::CAPACITY);
}

#[test]
fn sack_with_four_blocks_keeps_all_four() {
    let mut block = vec![5u8, 34];
    for v in 1u32..=8 {
        block.extend_from_slice(&v.to_be_bytes());
    }
    let opts = TcpOptions::parse(&block);
    assert_eq!(opts.sack.as_slice(), &[(1, 2), (3, 4), (5, 6), (7, 8)]);
    assert_eq!(opts.skipped, 0);
}

#[test]
fn flags_print_readably() {
    assert_eq!(
        format!("{:?}", TcpFlags(TcpFlags::SYN | TcpFlags::ACK)),
        "SYN|ACK"
    );
    assert_eq!(format!("{:?}", TcpFlags(0)), "-");
    assert_eq!(field::MAX_OPTIONS, 40);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_as_a_packet_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = IpSegment::parse(&bytes);
    }

    #[test]
    fn any_option_block_parses_and_what_fits_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        let mut opts = TcpOptions::parse(&bytes);
        opts.skipped = 0;
        if opts.buffer_len() <= field::MAX_OPTIONS {
            let mut out = [0u8; 40];
            let n = opts.emit(&mut out).unwrap();
            prop_assert_eq!(n % 4, 0);
            prop_assert_eq!(TcpOptions::parse(&out[..n]), opts);
        }
    }

    #[test]
    fn a_packet_with_random_header_fields_and_payload_round_trips(
        sport in any::<u16>(), dport in any::<u16>(), seq in any::<u32>(), ack in any::<u32>(),
        flags in any::<u8>(), window in any::<u16>(), ts in any::<Option<(u32, u32)>>(),
        payload in proptest::collection::vec(any::<u8>(), 0..1500), v6 in any::<bool>(),
        len in any::<u16>(), csum in any::<Option<u16>>(),
    ) {
        let (src, dst) = if v6 { (self::v6("2001:db8::1"), self::v6("2001:db8::2")) } else { (V4_A, V4_B) };
        let seg = IpSegment {
            src, dst, hop_limit: 1,
            tcp: TcpSegment {
                src_port: sport, dst_port: dport, seq: TcpSeq(seq), ack: TcpSeq(ack),
                flags: TcpFlags(flags), window, urgent: 0,
                options: TcpOptions {
                    timestamp: ts.map(|(tsval, tsecr)| Timestamp { tsval, tsecr }),
                    mptcp: mptcp(&[data_dss(len, csum)]),
                    ..TcpOptions::default()
                },
                payload: &payload,
            },
        };
        round_trip(&seg);
    }
}
