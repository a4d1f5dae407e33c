//! Connection-level data path benchmarks: reassembly under reordering and scheduler decisions.
//!
//! Run: `cargo bench --bench mptcp -- --quick`.
//!
//! - `reassembly/*`: 4 MiB in 1400-byte segments (one mapping's worth of subflow segments),
//!   inserted in order, as swapped pairs (2,1,4,3,...), and as a random permutation within a
//!   window of 32 segments; each is read out as it becomes readable. Throughput in bytes.
//! - `scheduler/{minrtt,roundrobin,redundant,backup}/{2,4,8}`: one `pick` over a snapshot of
//!   that many usable subflows with different RTTs and room.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mptcp_stack::mptcp::{Reassembly, SchedulerKind, SubflowInfo};
use mptcp_stack::seq::Dsn;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use smoltcp::time::Duration;

const SEG: usize = 1400;
const SEGS: usize = 3000;

fn orders() -> Vec<(&'static str, Vec<usize>)> {
    let in_order: Vec<usize> = (0..SEGS).collect();
    let pairs: Vec<usize> = (0..SEGS).map(|i| i ^ 1).collect();
    let mut window: Vec<usize> = (0..SEGS).collect();
    let mut rng = StdRng::seed_from_u64(7);
    for chunk in window.chunks_mut(32) {
        for i in (1..chunk.len()).rev() {
            let j = rng.random_range(0..=i);
            chunk.swap(i, j);
        }
    }
    vec![
        ("in_order", in_order),
        ("reversed_pairs", pairs),
        ("random_window_32", window),
    ]
}

fn bench_reassembly(c: &mut Criterion) {
    let data = vec![0xa5u8; SEG];
    let mut g = c.benchmark_group("reassembly");
    g.throughput(Throughput::Bytes((SEG * SEGS) as u64));
    for (name, order) in orders() {
        g.bench_function(name, |b| {
            let mut out = vec![0u8; 64 * 1024];
            // One buffer, grown once, reused: the steady state of a long transfer.
            let mut r = Reassembly::new(Dsn(1), 4 << 20);
            b.iter(|| {
                let base = r.next();
                for &i in &order {
                    let ins = r.insert(base + (i * SEG) as u64, black_box(&data));
                    debug_assert_eq!(ins.stored, SEG);
                    while r.available() > 0 {
                        r.read(&mut out);
                    }
                }
                assert_eq!(r.next(), base + (SEG * SEGS) as u64);
            })
        });
    }
    g.finish();
}

fn snapshot(n: usize) -> Vec<SubflowInfo> {
    (0..n)
        .map(|i| SubflowInfo {
            usable: true,
            stale: false,
            failed: false,
            backup: false,
            srtt: Some(Duration::from_micros(10_000 + 1_700 * ((i * 5) % n) as u64)),
            cwnd: 64 * 1448,
            mss: 1448,
            queued: (i * 13 % 7) * 1448,
            capacity: 1 << 20,
        })
        .collect()
}

fn bench_scheduler(c: &mut Criterion) {
    let mut g = c.benchmark_group("scheduler");
    for (name, kind) in [
        ("minrtt", SchedulerKind::MinRtt),
        ("roundrobin", SchedulerKind::RoundRobin),
        ("redundant", SchedulerKind::Redundant),
        ("backup", SchedulerKind::ActiveBackup),
    ] {
        for n in [2usize, 4, 8] {
            let subflows = snapshot(n);
            let mut s = kind.build();
            g.bench_with_input(BenchmarkId::new(name, n), &subflows, |b, subflows| {
                b.iter(|| s.pick(black_box(subflows)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_reassembly, bench_scheduler);
criterion_main!(benches);
