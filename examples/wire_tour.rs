//! A tour of the wire codec: an MPTCP v1 connection set up and joined packet by packet with the
//! crate's codec and crypto, the way a capture tool would show it.
//!
//! Host A (198.18.101.1) opens a connection to host B (198.18.1.2), sends data with a DSS
//! mapping, B announces a second address with an HMAC'd ADD_ADDR, and A joins from
//! 198.18.102.1. Every packet is emitted, parsed back from its bytes, and every HMAC is checked
//! the way the receiver would. The keys are the known-answer keys of `DESIGN.md`.
//!
//! Run: `cargo run --example wire_tour`.

use std::net::{IpAddr, Ipv4Addr};

use mptcp_stack::crypto::{
    KeyMaterial, add_addr_hmac, dss_checksum, join_ack_hmac, join_synack_hmac,
};
use mptcp_stack::seq::{Ssn, TcpSeq};
use mptcp_stack::wire::{
    AddAddrRepr, CapableFlags, CapableKeys, CapableRepr, DsnField, DssMapping, DssRepr, IpSegment,
    JoinRepr, MptcpOptions, MptcpRepr, TcpFlags, TcpOptions, TcpSegment, Timestamp,
};

const A1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const A2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 102, 1));
const B1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
const B2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2));

struct Wire {
    packets: usize,
    bytes: usize,
}

impl Wire {
    /// Emit a packet, parse it back from its bytes, print it, and return what the peer sees.
    fn send<'p>(&mut self, seg: &IpSegment<'_>, buf: &'p mut Vec<u8>) -> IpSegment<'p> {
        buf.resize(seg.buffer_len(), 0);
        let n = seg.emit(buf).expect("the demo's options fit in 40 bytes");
        let seen = IpSegment::parse(&buf[..n]).expect("our own packet parses");
        assert_eq!(&seen, seg, "a packet changed on the way through the codec");
        self.packets += 1;
        self.bytes += n;
        let t = &seen.tcp;
        print!(
            "{:>2}. {}:{} > {}:{} [{:?}] seq {} ack {} len {}",
            self.packets,
            seen.src,
            t.src_port,
            seen.dst,
            t.dst_port,
            t.flags,
            t.seq.0,
            t.ack.0,
            t.payload.len()
        );
        println!("  ({n} bytes on the wire)");
        for option in t.options.mptcp.iter() {
            println!("      {option:?}");
        }
        seen
    }
}

fn segment<'a>(
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    mptcp: &[MptcpRepr],
    payload: &'a [u8],
) -> IpSegment<'a> {
    let mut list = MptcpOptions::default();
    for o in mptcp {
        list.push(*o).expect("at most four MPTCP options");
    }
    let syn = flags & TcpFlags::SYN != 0;
    IpSegment {
        src: src.0,
        dst: dst.0,
        hop_limit: 64,
        tcp: TcpSegment {
            src_port: src.1,
            dst_port: dst.1,
            seq: TcpSeq(seq),
            ack: TcpSeq(ack),
            flags: TcpFlags(flags),
            window: 502,
            urgent: 0,
            options: TcpOptions {
                mss: syn.then_some(1460),
                window_scale: syn.then_some(7),
                sack_permitted: syn,
                timestamp: Some(Timestamp {
                    tsval: 1000 + seq % 97,
                    tsecr: ack % 89,
                }),
                mptcp: list,
                ..TcpOptions::default()
            },
            payload,
        },
    }
}

fn main() {
    let a = KeyMaterial::from_key(3421148325360939111);
    let b = KeyMaterial::from_key(5635572232819622505);
    println!(
        "key A {:#018x}: token {:#010x}, IDSN {}",
        a.key, a.token, a.idsn
    );
    println!(
        "key B {:#018x}: token {:#010x}, IDSN {}\n",
        b.key, b.token, b.idsn
    );

    let mut wire = Wire {
        packets: 0,
        bytes: 0,
    };
    let mut buf = Vec::new();
    // A asks for DSS checksums (flag A), so every mapping carries one.
    let flags = CapableFlags::v1(true, false);
    let (pa, pb) = ((A1, 40000), (B1, 5201));
    let (isn_a, isn_b) = (1_000_000u32, 7_000_000u32);
    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;

    println!("-- initial subflow: MP_CAPABLE v1 --");
    let cap = |keys| {
        MptcpRepr::Capable(CapableRepr {
            version: 1,
            flags,
            keys,
        })
    };
    wire.send(
        &segment(pa, pb, SYN, isn_a, 0, &[cap(CapableKeys::None)], &[]),
        &mut buf,
    );
    let seen = wire.send(
        &segment(
            pb,
            pa,
            SYN | ACK,
            isn_b,
            isn_a + 1,
            &[cap(CapableKeys::Sender { sender_key: b.key })],
            &[],
        ),
        &mut buf,
    );
    let Some(MptcpRepr::Capable(CapableRepr {
        keys: CapableKeys::Sender { sender_key },
        ..
    })) = seen.tcp.options.mptcp.iter().next().copied()
    else {
        panic!("SYN/ACK without the server key")
    };
    assert_eq!(sender_key, b.key);

    // The first data carries both keys and the data-level length (RFC 8684 section 3.1).
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let first = cap(CapableKeys::WithData {
        sender_key: a.key,
        receiver_key: b.key,
        data_len: data.len() as u16,
        checksum: Some(dss_checksum(a.idsn + 1, Ssn(1), data.len() as u16, &data)),
    });
    wire.send(
        &segment(pa, pb, ACK, isn_a + 1, isn_b + 1, &[first], &data),
        &mut buf,
    );

    // B acknowledges at the data level: DATA_ACK = IDSN_A + 1 + 1000.
    let data_ack = a.idsn + 1 + data.len() as u64;
    let dss_ack = MptcpRepr::Dss(DssRepr {
        data_ack: Some(DsnField::Short(data_ack.low32())),
        ..DssRepr::default()
    });
    let acked = isn_a + 1 + data.len() as u32;
    wire.send(
        &segment(pb, pa, ACK, isn_b + 1, acked, &[dss_ack], &[]),
        &mut buf,
    );

    println!("\n-- B announces 198.18.2.2 (ADD_ADDR, HMAC keyed B||A) --");
    let hmac = add_addr_hmac(b.key, a.key, 1, B2, None);
    let announce = MptcpRepr::AddAddr(AddAddrRepr {
        addr_id: 1,
        addr: B2,
        port: None,
        hmac: Some(hmac),
    });
    let seen = wire.send(
        &segment(pb, pa, ACK, isn_b + 1, acked, &[announce], &[]),
        &mut buf,
    );
    if let Some(MptcpRepr::AddAddr(ad)) = seen.tcp.options.mptcp.iter().next() {
        assert_eq!(
            ad.hmac,
            Some(add_addr_hmac(b.key, a.key, ad.addr_id, ad.addr, ad.port))
        );
        println!("      A verifies the ADD_ADDR HMAC: ok");
    }

    println!("\n-- second subflow: MP_JOIN from 198.18.102.1 to 198.18.2.2 --");
    let (ja, jb) = ((A2, 40001), (B2, 5201));
    let (r_a, r_b) = (3707908260u32, 2797959415u32);
    let join_syn = MptcpRepr::Join(JoinRepr::Syn {
        backup: false,
        addr_id: 2,
        token: b.token,
        nonce: r_a,
    });
    wire.send(&segment(ja, jb, SYN, 42, 0, &[join_syn], &[]), &mut buf);
    let thmac = join_synack_hmac(b.key, a.key, r_b, r_a);
    let join_synack = MptcpRepr::Join(JoinRepr::SynAck {
        backup: false,
        addr_id: 1,
        hmac: thmac,
        nonce: r_b,
    });
    let seen = wire.send(
        &segment(jb, ja, SYN | ACK, 99, 43, &[join_synack], &[]),
        &mut buf,
    );
    let Some(MptcpRepr::Join(JoinRepr::SynAck { hmac, nonce, .. })) =
        seen.tcp.options.mptcp.iter().next().copied()
    else {
        panic!("MP_JOIN SYN/ACK expected")
    };
    assert_eq!(
        hmac,
        join_synack_hmac(b.key, a.key, nonce, r_a),
        "forged SYN/ACK HMAC"
    );
    println!("      A verifies B's truncated HMAC: ok");
    let join_ack = MptcpRepr::Join(JoinRepr::Ack {
        hmac: join_ack_hmac(a.key, b.key, r_a, r_b),
    });
    let seen = wire.send(&segment(ja, jb, ACK, 43, 100, &[join_ack], &[]), &mut buf);
    let Some(MptcpRepr::Join(JoinRepr::Ack { hmac })) =
        seen.tcp.options.mptcp.iter().next().copied()
    else {
        panic!("MP_JOIN ACK expected")
    };
    assert_eq!(
        hmac,
        join_ack_hmac(a.key, b.key, r_a, r_b),
        "forged ACK HMAC"
    );
    println!("      B verifies A's HMAC: ok");

    println!("\n-- data on the joined subflow, with a DSS checksum --");
    let more = &data[..500];
    let dsn = a.idsn + 1 + data.len() as u64;
    let csum = dss_checksum(dsn, Ssn(1), more.len() as u16, more);
    let map = MptcpRepr::Dss(DssRepr {
        data_ack: Some(DsnField::Short((b.idsn + 1).low32())),
        mapping: Some(DssMapping {
            dsn: DsnField::Long(dsn.0),
            ssn: Ssn(1),
            data_len: more.len() as u16,
            checksum: Some(csum),
        }),
        data_fin: false,
    });
    wire.send(&segment(ja, jb, ACK, 43, 100, &[map], more), &mut buf);

    println!(
        "\n{} packets, {} bytes, each emitted, re-parsed and compared; all HMACs verified.",
        wire.packets, wire.bytes
    );
}
