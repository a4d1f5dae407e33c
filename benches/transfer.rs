//! End-to-end goodput in memory, MTU 1500, checksums computed and verified on every packet:
//! our MPTCP (one subflow, one subflow with DSS checksums, two subflows), our plain TCP, and
//! smoltcp's own `tcp::Socket` pair as the baseline, in the same run; and, apart, one MPTCP
//! subflow with segmentation offload (super segments, no checksum work), as across a TUN with
//! offload. Both ends of each
//! transfer run on the one bench thread, so "per core" means both stacks together.
//!
//! Run: `cargo bench --bench transfer` (add `-- --quick` for a short run). Compare within a
//! run, as ratios: the machine is small and noisy.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mptcp_stack::endpoint::{Endpoint, EndpointConfig, Event};
use mptcp_stack::mptcp::pm::AddrFlags;
use mptcp_stack::node::{Duration, Instant, Node};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

/// Bytes per transfer: large enough that connection set-up and buffer growth (a few ms) are a
/// small part of it.
const BYTES: usize = 64 << 20;
/// The IP MTU of every run.
const MTU: usize = 1500;

const A1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1));
const A2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 102, 1));
const B1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));

#[derive(Clone, Copy)]
enum Ours {
    Mptcp {
        checksum: bool,
        subflows: usize,
    },
    PlainTcp,
    /// One MPTCP subflow with segmentation offload: the sender writes super segments of up
    /// to 44 segments and the receiver takes them whole, checksums left to the "device", as
    /// across a TUN with offload (not comparable with the checksummed rows).
    MptcpOffload,
}

/// One transfer of `BYTES` between two of our endpoints, packets handed over directly.
fn ours(kind: Ours) -> usize {
    let mut cfg = EndpointConfig::seeded(1);
    cfg.mtu = MTU;
    match kind {
        Ours::Mptcp { checksum, .. } => cfg.mptcp.checksum = checksum,
        Ours::PlainTcp => cfg.mptcp.enabled = false,
        Ours::MptcpOffload => {}
    }
    let offload = matches!(kind, Ours::MptcpOffload);
    let mut a = Endpoint::new(cfg.clone());
    let mut b = Endpoint::new(EndpointConfig { seed: 2, ..cfg });
    let subflows = match kind {
        Ours::Mptcp { subflows, .. } => subflows,
        Ours::PlainTcp | Ours::MptcpOffload => 1,
    };
    let flags = AddrFlags {
        signal: false,
        subflow: true,
        backup: false,
    };
    a.add_address_with(A1, flags);
    if subflows > 1 {
        a.add_address_with(A2, flags);
    }
    b.add_address(B1);
    b.listen(80);
    let mut now = Instant::from_millis(0);
    let h = a
        .connect(SocketAddr::new(A1, 0), SocketAddr::new(B1, 80))
        .expect("connect");
    let mut bh = None;
    let data = vec![0x5au8; 256 * 1024];
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut pkt = vec![0u8; 65536];
    let (mut sent, mut got) = (0usize, 0usize);
    while got < BYTES {
        if sent < BYTES
            && let Ok(n) = a.send(h, &data[..(BYTES - sent).min(data.len())])
        {
            sent += n;
        }
        if offload {
            while let Some(t) = a.poll_transmit_segments(now, &mut pkt, 44) {
                b.handle_packet_trusted(now, &pkt[..t.len]);
            }
        } else {
            while let Some(n) = a.poll_transmit(now, &mut pkt) {
                b.handle_packet(now, &pkt[..n]);
            }
        }
        while let Some(ev) = b.poll_event() {
            if let Event::Accepted(x) = ev {
                bh = Some(x);
            }
        }
        while a.poll_event().is_some() {}
        if let Some(x) = bh {
            while let Ok(n) = b.recv(x, &mut rbuf) {
                if n == 0 {
                    break;
                }
                got += n;
            }
        }
        while let Some(n) = b.poll_transmit(now, &mut pkt) {
            a.handle_packet(now, &pkt[..n]);
        }
        now += Duration::from_micros(10);
        for ep in [&mut a, &mut b] {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
        }
    }
    if let Ours::Mptcp { subflows: 2, .. } = kind {
        let n = a.mptcp(h).map_or(0, |m| m.subflows().len());
        assert_eq!(n, 2, "the second subflow must have joined");
    }
    got
}

/// An in-memory IP loopback with an MTU of 1500 and checksums on, reusing its buffers.
#[derive(Default)]
struct Wire {
    queue: VecDeque<Vec<u8>>,
    free: Rc<RefCell<Vec<Vec<u8>>>>,
}

struct Rx {
    buf: Vec<u8>,
    free: Rc<RefCell<Vec<Vec<u8>>>>,
}

struct Tx<'a> {
    queue: &'a mut VecDeque<Vec<u8>>,
    free: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.buf);
        self.free.borrow_mut().push(self.buf);
        r
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = self.free.borrow_mut().pop().unwrap_or_default();
        buf.resize(len, 0);
        let r = f(&mut buf);
        self.queue.push_back(buf);
        r
    }
}

impl Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(
        &mut self,
        _: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let buf = self.queue.pop_front()?;
        let rx = Rx {
            buf,
            free: self.free.clone(),
        };
        let tx = Tx {
            queue: &mut self.queue,
            free: self.free.clone(),
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(Tx {
            queue: &mut self.queue,
            free: self.free.clone(),
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = MTU;
        caps.checksum = ChecksumCapabilities::default();
        caps
    }
}

/// One transfer of `BYTES` between two smoltcp `tcp::Socket`s on one interface over [`Wire`]
/// (smoltcp's loopback pattern), buffers as large as ours (256 KiB each way).
fn smoltcp_pair() -> usize {
    let mut wire = Wire::default();
    let mut now = smoltcp::time::Instant::from_millis(0);
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut wire, now);
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(IpAddress::v4(198, 18, 1, 2), 24));
        let _ = addrs.push(IpCidr::new(IpAddress::v4(198, 18, 101, 1), 24));
    });
    let buf = || tcp::SocketBuffer::new(vec![0; 256 * 1024]);
    let mut sockets = SocketSet::new(vec![]);
    let server = sockets.add(tcp::Socket::new(buf(), buf()));
    let client = sockets.add(tcp::Socket::new(buf(), buf()));
    sockets
        .get_mut::<tcp::Socket>(server)
        .listen(80)
        .expect("listen");
    sockets
        .get_mut::<tcp::Socket>(client)
        .connect(
            iface.context(),
            (IpAddress::v4(198, 18, 1, 2), 80),
            (IpAddress::v4(198, 18, 101, 1), 49152),
        )
        .expect("connect");
    let data = vec![0x5au8; 256 * 1024];
    let mut rbuf = vec![0u8; 256 * 1024];
    let (mut sent, mut got) = (0usize, 0usize);
    while got < BYTES {
        iface.poll(now, &mut wire, &mut sockets);
        let c = sockets.get_mut::<tcp::Socket>(client);
        if sent < BYTES && c.can_send() {
            sent += c
                .send_slice(&data[..(BYTES - sent).min(data.len())])
                .unwrap_or(0);
        }
        let s = sockets.get_mut::<tcp::Socket>(server);
        while s.can_recv() {
            let n = s.recv_slice(&mut rbuf).unwrap_or(0);
            if n == 0 {
                break;
            }
            got += n;
        }
        now += smoltcp::time::Duration::from_micros(10);
    }
    got
}

fn in_memory(c: &mut Criterion) {
    let mut g = c.benchmark_group("in_memory_mtu1500");
    g.throughput(Throughput::Bytes(BYTES as u64));
    g.sample_size(10);
    g.bench_function("smoltcp_tcp_pair", |b| b.iter(|| black_box(smoltcp_pair())));
    g.bench_function("ours_plain_tcp", |b| {
        b.iter(|| black_box(ours(Ours::PlainTcp)))
    });
    g.bench_function("ours_mptcp_1_subflow", |b| {
        b.iter(|| {
            black_box(ours(Ours::Mptcp {
                checksum: false,
                subflows: 1,
            }))
        })
    });
    g.bench_function("ours_mptcp_1_subflow_dss_checksum", |b| {
        b.iter(|| {
            black_box(ours(Ours::Mptcp {
                checksum: true,
                subflows: 1,
            }))
        })
    });
    g.bench_function("ours_mptcp_1_subflow_offload", |b| {
        b.iter(|| black_box(ours(Ours::MptcpOffload)))
    });
    g.bench_function("ours_mptcp_2_subflows", |b| {
        b.iter(|| {
            black_box(ours(Ours::Mptcp {
                checksum: false,
                subflows: 2,
            }))
        })
    });
    g.finish();
}

criterion_group!(benches, in_memory);
criterion_main!(benches);
