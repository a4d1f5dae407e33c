//! Known-answer tests from packets sent by the Linux kernel's MPTCP (`tests/data/*.hex`, captured
//! by `tools/capture_linux_mptcp.py` between two network namespaces joined by a TUN relay; the
//! kernel release is in each file's header).
//!
//! In every scenario a client sends 3000 bytes of `i % 251`, the server answers 100 bytes of the
//! same pattern, the client closes, then the server. Scenarios: IPv4, IPv6, IPv4 with DSS
//! checksums, IPv4 with the server announcing a second address (ADD_ADDR, then an MP_JOIN
//! subflow).
//!
//! What is checked, for every packet of every file:
//! - `IpSegment::parse` accepts it (IPv4 header and TCP checksums verified) and skips no option;
//! - re-emitting the parsed segment gives the captured TCP segment byte for byte (header,
//!   options in Linux's order and padding, payload, checksum), and the captured IP header except
//!   for the fields `IpSegment` does not carry: the IPv4 identification (and so the IPv4 header
//!   checksum) and the IPv6 flow label, which Linux fills and our emitter writes as zero.
//!
//! And per connection: the MP_CAPABLE handshake (v1, H flag, no key in the SYN, the server's key
//! in the SYN/ACK, both keys in the third ACK and the first data), every payload byte's data
//! sequence number (through its mapping, relative to the sender's IDSN), DATA_FIN and DATA_ACK
//! values, DSS checksums, the ADD_ADDR HMAC, and the MP_JOIN token and HMACs.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use mptcp_stack::crypto::{
    KeyMaterial, add_addr_hmac, dss_checksum, join_ack_hmac, join_synack_hmac,
};
use mptcp_stack::seq::{Dsn, Ssn};
use mptcp_stack::wire::{
    AddAddrRepr, CapableFlags, CapableKeys, CapableRepr, DsnField, IpSegment, JoinRepr, MptcpRepr,
};

/// The client's bytes and the server's answer.
const DATA_LEN: usize = 3000;
const ECHO_LEN: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Dir {
    C2s,
    S2c,
}

struct Scenario {
    name: &'static str,
    text: &'static str,
    ipv6: bool,
    checksum: bool,
    /// The address the server announces with ADD_ADDR (id 1), if any.
    announced: Option<IpAddr>,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "v4",
        text: include_str!("data/linux_mptcp_v4.hex"),
        ipv6: false,
        checksum: false,
        announced: None,
    },
    Scenario {
        name: "v6",
        text: include_str!("data/linux_mptcp_v6.hex"),
        ipv6: true,
        checksum: false,
        announced: None,
    },
    Scenario {
        name: "v4_csum",
        text: include_str!("data/linux_mptcp_v4_csum.hex"),
        ipv6: false,
        checksum: true,
        announced: None,
    },
    Scenario {
        name: "v4_addaddr",
        text: include_str!("data/linux_mptcp_v4_addaddr.hex"),
        ipv6: false,
        checksum: false,
        announced: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 202, 2))),
    },
];

fn scenario(name: &str) -> &'static Scenario {
    SCENARIOS.iter().find(|s| s.name == name).expect("scenario")
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// The packets of a capture, in order, with their direction.
fn packets(s: &Scenario) -> Vec<(Dir, Vec<u8>)> {
    let out: Vec<_> = s
        .text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (dir, hex) = l.split_once(' ').expect("`dir hex` line");
            let dir = match dir {
                "c2s" => Dir::C2s,
                "s2c" => Dir::S2c,
                other => panic!("direction {other}"),
            };
            (dir, unhex(hex))
        })
        .collect();
    assert!(out.len() >= 15, "{}: only {} packets", s.name, out.len());
    out
}

fn parse<'a>(s: &Scenario, i: usize, bytes: &'a [u8]) -> IpSegment<'a> {
    IpSegment::parse(bytes).unwrap_or_else(|e| panic!("{} packet {i}: {e}", s.name))
}

fn pattern(offset: usize) -> u8 {
    (offset % 251) as u8
}

fn capable(seg: &IpSegment) -> Option<CapableRepr> {
    seg.tcp.options.mptcp.iter().find_map(|o| match o {
        MptcpRepr::Capable(c) => Some(*c),
        _ => None,
    })
}

fn join(seg: &IpSegment) -> Option<JoinRepr> {
    seg.tcp.options.mptcp.iter().find_map(|o| match o {
        MptcpRepr::Join(j) => Some(*j),
        _ => None,
    })
}

fn add_addr(seg: &IpSegment) -> Option<AddAddrRepr> {
    seg.tcp.options.mptcp.iter().find_map(|o| match o {
        MptcpRepr::AddAddr(a) => Some(*a),
        _ => None,
    })
}

#[test]
fn every_packet_parses_with_checksums_verified_and_no_option_skipped() {
    for s in &SCENARIOS {
        for (i, (dir, bytes)) in packets(s).iter().enumerate() {
            let seg = parse(s, i, bytes);
            assert_eq!(seg.tcp.options.skipped, 0, "{} packet {i}", s.name);
            assert_eq!(seg.src.is_ipv6(), s.ipv6, "{} packet {i}", s.name);
            assert_eq!(seg.hop_limit, 64, "{} packet {i}", s.name);
            // Linux puts an MPTCP option on every segment of an MPTCP subflow (a RST may have none).
            if !seg.tcp.flags.rst() {
                assert!(
                    !seg.tcp.options.mptcp.is_empty(),
                    "{} packet {i} ({dir:?}) carries no MPTCP option",
                    s.name
                );
            }
            // Corrupting one payload or option byte must fail the TCP checksum.
            let mut bad = bytes.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x01;
            assert!(IpSegment::parse(&bad).is_err(), "{} packet {i}", s.name);
        }
    }
}

/// Bytes of the IP header whose value `IpSegment` does not carry: the IPv4 identification and
/// header checksum, the IPv6 flow label.
fn ip_field_not_modelled(ipv6: bool, at: usize) -> bool {
    if ipv6 {
        // Version (4 bits), traffic class (8), flow label (20): the flow label is the low nibble
        // of byte 1 and bytes 2 and 3.
        matches!(at, 1..=3)
    } else {
        matches!(at, 4 | 5 | 10 | 11)
    }
}

#[test]
fn every_packet_is_re_emitted_as_linux_wrote_it() {
    let mut differing_ip_headers = 0;
    for s in &SCENARIOS {
        for (i, (_, bytes)) in packets(s).iter().enumerate() {
            let seg = parse(s, i, bytes);
            assert_eq!(seg.buffer_len(), bytes.len(), "{} packet {i}", s.name);
            let mut out = vec![0u8; seg.buffer_len()];
            let n = seg.emit(&mut out).expect("emit");
            assert_eq!(n, bytes.len(), "{} packet {i}", s.name);
            let ip_len = if s.ipv6 { 40 } else { 20 };
            // The TCP segment: byte for byte, checksum included.
            assert_eq!(
                &out[ip_len..],
                &bytes[ip_len..],
                "{} packet {i}: TCP bytes differ",
                s.name
            );
            // The IP header: byte for byte but for the fields not modelled.
            for at in 0..ip_len {
                if ip_field_not_modelled(s.ipv6, at) {
                    continue;
                }
                assert_eq!(
                    out[at], bytes[at],
                    "{} packet {i}: IP header byte {at} differs",
                    s.name
                );
            }
            if s.ipv6 {
                // Our flow label is zero; the traffic-class half of byte 1 matches.
                assert_eq!(out[1] & 0xf0, bytes[1] & 0xf0);
                assert_eq!(out[1] & 0x0f, 0);
                assert_eq!(&out[2..4], &[0, 0]);
            } else {
                assert_eq!(&out[4..6], &[0, 0], "our IPv4 identification is zero");
            }
            if out[..ip_len] != bytes[..ip_len] {
                differing_ip_headers += 1;
            }
        }
    }
    // Linux fills the IPv4 identification (except on a listener's SYN/ACK, RST) and the IPv6
    // flow label: most captured headers differ in those fields only.
    assert!(differing_ip_headers > 0);
}

/// The MP_CAPABLE exchange of the capture's first subflow.
struct Keys {
    client: u64,
    server: u64,
}

fn handshake(s: &Scenario, pkts: &[(Dir, Vec<u8>)]) -> Keys {
    let h = CapableFlags::HMAC_SHA256
        | if s.checksum {
            CapableFlags::CHECKSUM
        } else {
            0
        };

    // SYN: MP_CAPABLE v1 of length 4, no key, flags H (and A when checksums are enabled).
    let (dir, syn_bytes) = &pkts[0];
    let syn = parse(s, 0, syn_bytes);
    assert_eq!(*dir, Dir::C2s);
    assert!(syn.tcp.flags.syn() && !syn.tcp.flags.ack());
    assert_eq!(syn.tcp.options.mptcp.len(), 1);
    let mpc = capable(&syn).expect("MP_CAPABLE in SYN");
    assert_eq!(mpc.version, 1);
    assert_eq!(mpc.flags, CapableFlags(h));
    assert!(mpc.flags.hmac_sha256());
    assert_eq!(mpc.keys, CapableKeys::None);
    assert_eq!(MptcpRepr::Capable(mpc).buffer_len(), 4);
    // The raw option: kind 30, length 4, subtype 0 version 1, flags.
    let opts = &syn_bytes[syn_bytes.len() - 4..];
    assert_eq!(opts, &[30, 4, 0x01, h]);
    // The standard SYN options Linux sends alongside.
    assert!(syn.tcp.options.mss.is_some());
    assert_eq!(syn.tcp.options.window_scale, Some(10));
    assert!(syn.tcp.options.sack_permitted);
    assert_eq!(syn.tcp.options.timestamp.map(|t| t.tsecr), Some(0));

    // SYN/ACK: the server's key.
    let (dir, bytes) = &pkts[1];
    let synack = parse(s, 1, bytes);
    assert_eq!(*dir, Dir::S2c);
    assert!(synack.tcp.flags.syn() && synack.tcp.flags.ack());
    assert_eq!(synack.tcp.ack, syn.tcp.seq + 1);
    let mpc = capable(&synack).expect("MP_CAPABLE in SYN/ACK");
    assert_eq!((mpc.version, mpc.flags), (1, CapableFlags(h)));
    let CapableKeys::Sender { sender_key: server } = mpc.keys else {
        panic!("{}: SYN/ACK keys {:?}", s.name, mpc.keys)
    };

    // Third ACK: the client's key then the server's, which matches the SYN/ACK's.
    let (dir, bytes) = &pkts[2];
    let ack = parse(s, 2, bytes);
    assert_eq!(*dir, Dir::C2s);
    assert!(!ack.tcp.flags.syn() && ack.tcp.flags.ack() && ack.tcp.payload.is_empty());
    let mpc = capable(&ack).expect("MP_CAPABLE in the third ACK");
    assert_eq!((mpc.version, mpc.flags), (1, CapableFlags(h)));
    let CapableKeys::Both {
        sender_key: client,
        receiver_key,
    } = mpc.keys
    else {
        panic!("{}: third ACK keys {:?}", s.name, mpc.keys)
    };
    assert_eq!(
        receiver_key, server,
        "{}: third ACK echoes the server key",
        s.name
    );
    assert_ne!(client, server);

    // Any MP_CAPABLE after the handshake (the first data) carries the same two keys.
    for (i, (_, bytes)) in pkts.iter().enumerate().skip(3) {
        let seg = parse(s, i, bytes);
        if let Some(CapableRepr {
            keys:
                CapableKeys::WithData {
                    sender_key,
                    receiver_key,
                    ..
                },
            version,
            flags,
        }) = capable(&seg)
        {
            assert_eq!((version, flags), (1, CapableFlags(h)));
            assert_eq!((sender_key, receiver_key), (client, server), "packet {i}");
        }
    }
    Keys { client, server }
}

#[test]
fn mp_capable_handshake_carries_the_keys_as_rfc_8684_says() {
    for s in &SCENARIOS {
        handshake(s, &packets(s));
    }
}

/// A data sequence mapping as the sender announced it, the DSN expanded to 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Mapping {
    dsn: Dsn,
    ssn: Ssn,
    data_len: u16,
    checksum: Option<u16>,
}

/// A subflow: its client-side and server-side (address, port).
type Subflow = ((IpAddr, u16), (IpAddr, u16));

fn subflow(dir: Dir, seg: &IpSegment) -> Subflow {
    let a = (seg.src, seg.tcp.src_port);
    let b = (seg.dst, seg.tcp.dst_port);
    match dir {
        Dir::C2s => (a, b),
        Dir::S2c => (b, a),
    }
}

/// What [`walk`] found in one capture.
#[derive(Default)]
struct Walk {
    /// Payload bytes delivered per direction, by stream offset (DSN less IDSN + 1).
    delivered: HashMap<Dir, Vec<Option<u8>>>,
    /// Mappings per direction and subflow, with the data collected for each.
    mappings: HashMap<(Dir, Subflow, Mapping), Vec<Option<u8>>>,
    /// DATA_FIN DSNs per direction.
    data_fin: HashMap<Dir, Vec<Dsn>>,
    /// DATA_ACKs per sending direction, in order, expanded.
    data_acks: HashMap<Dir, Vec<Dsn>>,
    /// The DSN of the first payload byte each direction sent.
    first_dsn: HashMap<Dir, Dsn>,
}

/// Follow every segment through its mapping: check that each payload byte's DSN names the byte
/// of the pattern at that stream offset, and collect mappings, DATA_FINs and DATA_ACKs.
fn walk(s: &Scenario, pkts: &[(Dir, Vec<u8>)], keys: &Keys) -> Walk {
    let idsn = |dir: Dir| {
        KeyMaterial::from_key(match dir {
            Dir::C2s => keys.client,
            Dir::S2c => keys.server,
        })
        .idsn
    };
    let mut isn: HashMap<(Dir, Subflow), u32> = HashMap::new();
    let mut current: HashMap<(Dir, Subflow), Mapping> = HashMap::new();
    let mut w = Walk::default();
    w.delivered.insert(Dir::C2s, vec![None; DATA_LEN]);
    w.delivered.insert(Dir::S2c, vec![None; ECHO_LEN]);

    for (i, (dir, bytes)) in pkts.iter().enumerate() {
        let dir = *dir;
        let seg = parse(s, i, bytes);
        let sf = subflow(dir, &seg);
        let peer = match dir {
            Dir::C2s => Dir::S2c,
            Dir::S2c => Dir::C2s,
        };
        if seg.tcp.flags.syn() {
            isn.insert((dir, sf), seg.tcp.seq.0);
        }
        for o in seg.tcp.options.mptcp.iter() {
            match o {
                MptcpRepr::Capable(CapableRepr {
                    keys:
                        CapableKeys::WithData {
                            data_len, checksum, ..
                        },
                    ..
                }) => {
                    // RFC 8684 section 3.1: the first data's mapping is implicit, DSN = IDSN + 1
                    // (the sender's) and relative subflow sequence number 1.
                    current.insert(
                        (dir, sf),
                        Mapping {
                            dsn: idsn(dir) + 1,
                            ssn: Ssn(1),
                            data_len: *data_len,
                            checksum: *checksum,
                        },
                    );
                }
                MptcpRepr::Dss(dss) => {
                    if let Some(ack) = dss.data_ack {
                        let ack = ack.expand(idsn(peer) + 1);
                        w.data_acks.entry(dir).or_default().push(ack);
                    }
                    if let Some(m) = dss.mapping {
                        let m = Mapping {
                            dsn: m.dsn.expand(idsn(dir) + 1),
                            ssn: m.ssn,
                            data_len: m.data_len,
                            checksum: m.checksum,
                        };
                        assert_eq!(
                            m.checksum.is_some(),
                            s.checksum,
                            "{} packet {i}: DSS checksum presence",
                            s.name
                        );
                        if dss.data_fin {
                            // The DATA_FIN takes the mapping's last data-level byte.
                            let fin = m.dsn + u64::from(m.data_len) - 1;
                            w.data_fin.entry(dir).or_default().push(fin);
                        }
                        if m.data_len > 0 {
                            w.mappings.entry((dir, sf, m)).or_insert_with(|| {
                                let data_bytes = m.data_len - u16::from(dss.data_fin);
                                vec![None; data_bytes.into()]
                            });
                        }
                        current.insert((dir, sf), m);
                    }
                }
                _ => {}
            }
        }
        if seg.tcp.payload.is_empty() {
            continue;
        }
        let m = *current
            .get(&(dir, sf))
            .unwrap_or_else(|| panic!("{} packet {i}: payload without a mapping", s.name));
        let isn = isn[&(dir, sf)];
        let rel = Ssn(seg.tcp.seq.0.wrapping_sub(isn));
        let off = rel.distance_from(m.ssn);
        assert!(
            off >= 0,
            "{} packet {i}: payload before its mapping",
            s.name
        );
        let off = off as usize;
        assert!(
            off + seg.tcp.payload.len() <= usize::from(m.data_len),
            "{} packet {i}: payload past its mapping",
            s.name
        );
        let dsn = m.dsn + off as u64;
        w.first_dsn.entry(dir).or_insert(dsn);
        let stream_at = dsn.distance_from(idsn(dir) + 1);
        assert!(stream_at >= 0, "{} packet {i}: DSN below IDSN + 1", s.name);
        let stream_at = stream_at as usize;
        let delivered = w.delivered.get_mut(&dir).expect("direction");
        for (j, &b) in seg.tcp.payload.iter().enumerate() {
            assert_eq!(
                b,
                pattern(stream_at + j),
                "{} packet {i}: payload byte {j} at stream offset {}",
                s.name,
                stream_at + j
            );
            delivered[stream_at + j] = Some(b);
        }
        let collected = w
            .mappings
            .entry((dir, sf, m))
            .or_insert_with(|| vec![None; m.data_len.into()]);
        for (j, &b) in seg.tcp.payload.iter().enumerate() {
            collected[off + j] = Some(b);
        }
    }
    w
}

#[test]
fn every_payload_byte_sits_at_the_dsn_its_mapping_gives_from_the_senders_idsn() {
    for s in &SCENARIOS {
        let pkts = packets(s);
        let keys = handshake(s, &pkts);
        let w = walk(s, &pkts, &keys);
        let client = KeyMaterial::from_key(keys.client).idsn;
        let server = KeyMaterial::from_key(keys.server).idsn;
        // The first data byte of each direction has DSN = the sender's IDSN + 1.
        assert_eq!(w.first_dsn[&Dir::C2s], client + 1, "{}", s.name);
        assert_eq!(w.first_dsn[&Dir::S2c], server + 1, "{}", s.name);
        // Every byte of both streams was seen, at the offset its DSN gives.
        for (dir, len) in [(Dir::C2s, DATA_LEN), (Dir::S2c, ECHO_LEN)] {
            let d = &w.delivered[&dir];
            assert_eq!(d.len(), len);
            assert!(d.iter().all(Option::is_some), "{} {dir:?}: a gap", s.name);
        }
        // DATA_FIN: right after the last byte, IDSN + 1 + length, in both directions (a
        // retransmitted DATA_FIN carries the same DSN).
        let fins = &w.data_fin[&Dir::C2s];
        assert!(fins.iter().all(|&f| f == client + 1 + DATA_LEN as u64));
        let fins = &w.data_fin[&Dir::S2c];
        assert!(fins.iter().all(|&f| f == server + 1 + ECHO_LEN as u64));
        // DATA_ACKs never go back and end past the peer's DATA_FIN.
        for (dir, peer_idsn, peer_len) in
            [(Dir::C2s, server, ECHO_LEN), (Dir::S2c, client, DATA_LEN)]
        {
            let acks = &w.data_acks[&dir];
            assert!(acks.windows(2).all(|p| p[0] <= p[1]), "{} {dir:?}", s.name);
            assert!(
                acks[0] > peer_idsn,
                "{} {dir:?}: DATA_ACK below IDSN + 1",
                s.name
            );
            assert_eq!(*acks.last().unwrap(), peer_idsn + 1 + peer_len as u64 + 1);
        }
    }
}

#[test]
fn the_first_explicit_dss_mappings_start_at_the_senders_idsn_plus_one() {
    // Server to client in every scenario, and client to server when the join made Linux send
    // the client's first data with a DSS rather than MP_CAPABLE.
    for s in &SCENARIOS {
        let pkts = packets(s);
        let keys = handshake(s, &pkts);
        let w = walk(s, &pkts, &keys);
        let server_idsn = KeyMaterial::from_key(keys.server).idsn;
        let first = w
            .mappings
            .keys()
            .filter(|(dir, _, m)| *dir == Dir::S2c && m.data_len as usize == ECHO_LEN)
            .map(|(_, _, m)| *m)
            .next()
            .expect("the server's data mapping");
        assert_eq!(first.dsn, server_idsn + 1, "{}", s.name);
        assert_eq!(first.ssn, Ssn(1), "{}", s.name);
    }
    let s = scenario("v4_addaddr");
    let pkts = packets(s);
    let keys = handshake(s, &pkts);
    let client_idsn = KeyMaterial::from_key(keys.client).idsn;
    let dss = pkts
        .iter()
        .enumerate()
        .map(|(i, (_, b))| parse(s, i, b))
        .find(|seg| !seg.tcp.payload.is_empty())
        .and_then(|seg| seg.tcp.options.mptcp.dss().copied())
        .expect("a DSS on the client's first data");
    let m = dss.mapping.expect("mapping");
    assert_eq!(m.dsn, DsnField::Long((client_idsn + 1).0));
    assert_eq!((m.ssn, m.data_len), (Ssn(1), DATA_LEN as u16));
}

#[test]
fn dss_checksums_verify_over_the_whole_mapping() {
    let mut verified = 0;
    for s in &SCENARIOS {
        let pkts = packets(s);
        let keys = handshake(s, &pkts);
        let w = walk(s, &pkts, &keys);
        for ((dir, _, m), data) in &w.mappings {
            let Some(checksum) = m.checksum else {
                assert!(!s.checksum);
                continue;
            };
            let data: Vec<u8> = data
                .iter()
                .map(|b| b.expect("the whole mapping was captured"))
                .collect();
            assert_eq!(
                dss_checksum(m.dsn, m.ssn, m.data_len, &data),
                checksum,
                "{} {dir:?} mapping {m:?}",
                s.name
            );
            verified += 1;
        }
    }
    // v4_csum: the client's MP_CAPABLE mapping (3000 bytes over three segments), the server's
    // 100-byte DSS mapping, and the two DATA_FIN mappings (data-level length 1, no data).
    assert_eq!(verified, 4);
}

#[test]
fn add_addr_hmac_and_echo_are_as_linux_computes_them() {
    let s = scenario("v4_addaddr");
    let pkts = packets(s);
    let keys = handshake(s, &pkts);
    let announced = s.announced.expect("announced address");
    let mut seen = (0, 0);
    for (i, (dir, bytes)) in pkts.iter().enumerate() {
        let seg = parse(s, i, bytes);
        let Some(a) = add_addr(&seg) else { continue };
        assert_eq!((a.addr_id, a.addr, a.port), (1, announced, None));
        match dir {
            Dir::S2c => {
                // HMAC(key_server || key_client, id || address || 0 port), rightmost 64 bits.
                assert!(!a.is_echo());
                assert_eq!(
                    a.hmac,
                    Some(add_addr_hmac(keys.server, keys.client, 1, announced, None)),
                    "packet {i}"
                );
                assert_eq!(MptcpRepr::AddAddr(a).buffer_len(), 16);
                seen.0 += 1;
            }
            Dir::C2s => {
                assert!(a.is_echo());
                assert_eq!(MptcpRepr::AddAddr(a).buffer_len(), 8);
                seen.1 += 1;
            }
        }
    }
    assert_eq!(seen, (1, 1), "one ADD_ADDR and one echo");
}

#[test]
fn mp_join_token_and_hmacs_are_as_linux_computes_them() {
    let s = scenario("v4_addaddr");
    let pkts = packets(s);
    let keys = handshake(s, &pkts);
    let announced = s.announced.expect("announced address");
    let segs: Vec<_> = pkts
        .iter()
        .enumerate()
        .map(|(i, (d, b))| (*d, parse(s, i, b)))
        .collect();
    let find = |want: fn(&JoinRepr) -> bool| {
        segs.iter()
            .find_map(|(d, seg)| join(seg).filter(want).map(|j| (*d, *seg, j)))
            .expect("MP_JOIN")
    };

    let (
        dir,
        syn,
        JoinRepr::Syn {
            backup,
            addr_id,
            token,
            nonce: client_nonce,
        },
    ) = find(|j| matches!(j, JoinRepr::Syn { .. }))
    else {
        unreachable!()
    };
    assert_eq!(dir, Dir::C2s);
    assert!(syn.tcp.flags.syn() && !syn.tcp.flags.ack());
    assert_eq!(syn.dst, announced);
    assert!(!backup);
    assert_eq!(addr_id, 0, "the client joins from its initial address");
    assert_eq!(token, KeyMaterial::from_key(keys.server).token);

    let (
        dir,
        synack,
        JoinRepr::SynAck {
            backup,
            addr_id,
            hmac,
            nonce: server_nonce,
        },
    ) = find(|j| matches!(j, JoinRepr::SynAck { .. }))
    else {
        unreachable!()
    };
    assert_eq!(dir, Dir::S2c);
    assert!(synack.tcp.flags.syn() && synack.tcp.flags.ack());
    assert_eq!(synack.tcp.ack, syn.tcp.seq + 1);
    assert!(!backup);
    assert_eq!(
        addr_id, 1,
        "the server answers from the address it announced"
    );
    assert_eq!(
        hmac,
        join_synack_hmac(keys.server, keys.client, server_nonce, client_nonce)
    );

    let (dir, ack, JoinRepr::Ack { hmac }) = find(|j| matches!(j, JoinRepr::Ack { .. })) else {
        unreachable!()
    };
    assert_eq!(dir, Dir::C2s);
    assert!(!ack.tcp.flags.syn() && ack.tcp.flags.ack());
    assert_eq!(ack.tcp.ack, synack.tcp.seq + 1);
    assert_eq!(
        hmac,
        join_ack_hmac(keys.client, keys.server, client_nonce, server_nonce)
    );
}
