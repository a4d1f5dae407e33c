//! Wire codec benchmarks: MPTCP option parse/emit, a whole option block, and a whole segment
//! next to smoltcp's own `TcpRepr::parse` on the same bytes (the baseline, in the same run).
//!
//! Run: `cargo bench --bench wire` (add `-- --quick` for a short run).
//! Ratios to read: `ours/parse` / `smoltcp/parse` in each `segment_1400B_*` group (target
//! at most 1.5), and `mptcp_option/{parse,emit}/dss` (target at most 20 ns each).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mptcp_stack::seq::{Ssn, TcpSeq};
use mptcp_stack::wire::{
    CapableFlags, CapableKeys, CapableRepr, DsnField, DssMapping, DssRepr, IpSegment, MptcpOptions,
    MptcpRepr, TcpFlags, TcpOptions, TcpSegment, Timestamp,
};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, TcpPacket, TcpRepr};

fn dss() -> MptcpRepr {
    MptcpRepr::Dss(DssRepr {
        data_ack: Some(DsnField::Short(0x1122_3344)),
        mapping: Some(DssMapping {
            dsn: DsnField::Long(0x0102_0304_0506_0708),
            ssn: Ssn(1),
            data_len: 1428,
            checksum: None,
        }),
        data_fin: false,
    })
}

fn capable_data() -> MptcpRepr {
    MptcpRepr::Capable(CapableRepr {
        version: 1,
        flags: CapableFlags::v1(true, false),
        keys: CapableKeys::WithData {
            sender_key: 3421148325360939111,
            receiver_key: 5635572232819622505,
            data_len: 1000,
            checksum: Some(0xbeef),
        },
    })
}

fn options() -> TcpOptions {
    let mut mptcp = MptcpOptions::default();
    mptcp.push(dss()).unwrap();
    TcpOptions {
        timestamp: Some(Timestamp {
            tsval: 123456,
            tsecr: 654321,
        }),
        mptcp,
        ..TcpOptions::default()
    }
}

fn bench_options(c: &mut Criterion) {
    let mut g = c.benchmark_group("mptcp_option");
    for (name, repr) in [("dss", dss()), ("mp_capable_data", capable_data())] {
        let mut bytes = [0u8; 40];
        let n = repr.emit(&mut bytes).unwrap();
        g.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| MptcpRepr::parse_bytes(black_box(&bytes[..n])))
        });
        g.bench_function(format!("emit/{name}"), |b| {
            let mut out = [0u8; 40];
            b.iter(|| black_box(&repr).emit(black_box(&mut out)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("option_block");
    let opts = options();
    let mut block = [0u8; 40];
    let n = opts.emit(&mut block).unwrap();
    g.bench_function("parse/ts+dss", |b| {
        b.iter(|| TcpOptions::parse(black_box(&block[..n])))
    });
    g.bench_function("emit/ts+dss", |b| {
        let mut out = [0u8; 40];
        b.iter(|| black_box(&opts).emit(black_box(&mut out)))
    });
    g.finish();
}

fn segment(src: IpAddr, dst: IpAddr, payload: &[u8]) -> IpSegment<'_> {
    IpSegment {
        src,
        dst,
        hop_limit: 64,
        tcp: TcpSegment {
            src_port: 40000,
            dst_port: 5201,
            seq: TcpSeq(1),
            ack: TcpSeq(1),
            flags: TcpFlags(TcpFlags::ACK),
            window: 1000,
            urgent: 0,
            options: options(),
            payload,
        },
    }
}

/// A whole 1400-byte segment with timestamps and a DSS (mapping + DATA_ACK), IPv4 and IPv6:
/// ours parsing (IP header, TCP checksum, all options) and emitting (both checksums), next to
/// smoltcp's `TcpRepr::parse` / `TcpRepr::emit` on the same bytes (smoltcp skips the DSS,
/// which it does not know, so its emit writes 12 option bytes fewer).
fn bench_segment(c: &mut Criterion) {
    let payload = vec![0x5au8; 1400];
    let v4 = segment(
        IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1)),
        IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2)),
        &payload,
    );
    let v6 = segment(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x101, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2)),
        &payload,
    );
    let caps = ChecksumCapabilities::default();
    for (family, seg) in [("ipv4", &v4), ("ipv6", &v6)] {
        let mut packet = vec![0u8; seg.buffer_len()];
        seg.emit(&mut packet).unwrap();

        let mut g = c.benchmark_group(format!("segment_1400B_{family}"));
        g.throughput(Throughput::Bytes(packet.len() as u64));
        g.bench_function("ours/parse", |b| {
            b.iter(|| {
                IpSegment::parse(black_box(&packet))
                    .unwrap()
                    .tcp
                    .payload
                    .len()
            })
        });
        // Baseline: smoltcp parsing the same bytes (IPv4 header check, TCP checksum, its
        // options; the DSS is skipped as unknown).
        g.bench_function("smoltcp/parse", |b| {
            b.iter(|| smoltcp_parse(black_box(&packet), &caps))
        });
        g.bench_function("ours/emit", |b| {
            let mut out = vec![0u8; packet.len()];
            b.iter(|| black_box(seg).emit(black_box(&mut out)).unwrap())
        });
        g.bench_function("smoltcp/emit", |b| {
            let (src, dst, tcp_bytes) = smoltcp_tcp_bytes(&packet);
            let tcp = TcpPacket::new_checked(tcp_bytes).unwrap();
            let repr = TcpRepr::parse(&tcp, &src, &dst, &caps).unwrap();
            let mut out = vec![0u8; packet.len()];
            b.iter(|| smoltcp_emit(black_box(&repr), &src, &dst, &mut out, &caps))
        });
        g.finish();
    }
}

fn smoltcp_tcp_bytes(packet: &[u8]) -> (IpAddress, IpAddress, &[u8]) {
    if packet[0] >> 4 == 4 {
        let ip = Ipv4Packet::new_checked(packet).unwrap();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let hl = ip.header_len() as usize;
        let total = ip.total_len() as usize;
        (src.into(), dst.into(), &packet[hl..total])
    } else {
        let ip = Ipv6Packet::new_checked(packet).unwrap();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        (
            src.into(),
            dst.into(),
            &packet[40..40 + ip.payload_len() as usize],
        )
    }
}

fn smoltcp_parse(packet: &[u8], caps: &ChecksumCapabilities) -> usize {
    let (src, dst, tcp_bytes) = if packet[0] >> 4 == 4 {
        let ip = Ipv4Packet::new_checked(packet).unwrap();
        assert!(ip.verify_checksum());
        smoltcp_tcp_bytes(packet)
    } else {
        smoltcp_tcp_bytes(packet)
    };
    let tcp = TcpPacket::new_checked(tcp_bytes).unwrap();
    TcpRepr::parse(&tcp, &src, &dst, caps)
        .unwrap()
        .payload
        .len()
}

fn smoltcp_emit(
    repr: &TcpRepr<'_>,
    src: &IpAddress,
    dst: &IpAddress,
    out: &mut [u8],
    caps: &ChecksumCapabilities,
) -> usize {
    let tcp_len = repr.buffer_len();
    let hl = match (src, dst) {
        (IpAddress::Ipv4(s), IpAddress::Ipv4(d)) => {
            let ip = Ipv4Repr {
                src_addr: *s,
                dst_addr: *d,
                next_header: IpProtocol::Tcp,
                payload_len: tcp_len,
                hop_limit: 64,
            };
            let mut p = Ipv4Packet::new_unchecked(&mut out[..]);
            ip.emit(&mut p, caps);
            20
        }
        (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) => {
            let ip = smoltcp::wire::Ipv6Repr {
                src_addr: *s,
                dst_addr: *d,
                next_header: IpProtocol::Tcp,
                payload_len: tcp_len,
                hop_limit: 64,
            };
            let mut p = Ipv6Packet::new_unchecked(&mut out[..]);
            ip.emit(&mut p);
            40
        }
        _ => unreachable!(),
    };
    let mut tcp = TcpPacket::new_unchecked(&mut out[hl..hl + tcp_len]);
    repr.emit(&mut tcp, src, dst, caps);
    hl + tcp_len
}

criterion_group!(benches, bench_options, bench_segment);
criterion_main!(benches);
