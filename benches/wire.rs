//! Wire codec benchmarks: MPTCP option parse/emit, a whole option block, and a whole segment
//! next to smoltcp's own `TcpRepr::parse` on the same bytes (the baseline, in the same run).
//!
//! Run: `cargo bench --bench wire` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mptcp_stack::seq::{Ssn, TcpSeq};
use mptcp_stack::wire::{
    CapableFlags, CapableKeys, CapableRepr, DsnField, DssMapping, DssRepr, IpSegment, MptcpOptions,
    MptcpRepr, TcpFlags, TcpOptions, TcpSegment, Timestamp,
};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket, TcpRepr};

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

fn bench_segment(c: &mut Criterion) {
    let payload = vec![0x5au8; 1400];
    let seg = IpSegment {
        src: IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1)),
        dst: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2)),
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
            payload: &payload,
        },
    };
    let mut packet = vec![0u8; seg.buffer_len()];
    seg.emit(&mut packet).unwrap();

    let mut g = c.benchmark_group("segment_1400B");
    g.throughput(Throughput::Bytes(packet.len() as u64));
    g.bench_function("ours/parse_ipv4_tcp_mptcp", |b| {
        b.iter(|| {
            IpSegment::parse(black_box(&packet))
                .unwrap()
                .tcp
                .payload
                .len()
        })
    });
    // Baseline: smoltcp parsing the same bytes (IPv4 header check, TCP checksum, its options).
    g.bench_function("smoltcp/parse_ipv4_tcp", |b| {
        let caps = ChecksumCapabilities::default();
        b.iter(|| {
            let ip = Ipv4Packet::new_checked(black_box(&packet[..])).unwrap();
            assert!(ip.verify_checksum());
            let (src, dst) = (
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
            );
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            TcpRepr::parse(&tcp, &src, &dst, &caps)
                .unwrap()
                .payload
                .len()
        })
    });
    g.bench_function("ours/emit_ipv4_tcp_mptcp", |b| {
        let mut out = vec![0u8; packet.len()];
        b.iter(|| black_box(&seg).emit(black_box(&mut out)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_options, bench_segment);
criterion_main!(benches);
