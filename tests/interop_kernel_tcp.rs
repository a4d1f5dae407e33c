//! Interop with the Linux kernel's TCP over a TUN, in the DESIGN.md network-namespace topology
//! (root only).
//!
//! `mptcp-tun` (the debug build cargo made for this test) runs on a TUN in namespace R; the
//! kernel peer is `tests/interop/kpeer.py` in namespace S, a plain TCP socket (proto 6), so the
//! stack must fall back to TCP (`"mptcp": false`). Cases, each on its own port, one at a time:
//!
//! - IPv4 over path 1 (198.18.101.1 <-> 198.18.1.2), `INTEROP_BYTES` bytes (default 100 MB):
//!   (a) our client sends -> kernel server receives, (b) kernel server sends -> our client
//!   receives, (c) kernel client sends -> our server receives, (d) our server sends -> kernel
//!   client receives;
//! - IPv6 over path 2 (2001:db8:102::1 <-> 2001:db8:2::2), `INTEROP_BYTES_V6` bytes (default
//!   20 MB): (e) our client sends -> kernel server, (f) kernel client sends -> our server.
//!
//! Every case checks both exit codes, the receiver's verification (the pattern i % 251, exactly
//! N bytes), the JSON `"bytes"` == N, and that the bytes crossed the expected veth of S. Each case
//! prints its Mbit/s (ours from the JSON, and the kernel peer's) on stderr. A failing case prints
//! both sides' stdout and stderr, the sockets of both namespaces (`ss -tni`) when it hung, and the
//! other cases still run; the test fails at the end with every failure. `INTEROP_PCAP=DIR` also
//! records a capture of S's veth per case (`DIR/<case>.pcap`, headers only).
//!
//! When the machine cannot run this (not root, no `ip`, no netns, no /dev/net/tun, no python3,
//! built without the `cli` feature) the test prints "skipped: <reason>" on stderr and returns.
//! The namespaces use a per-process prefix ("mki" + pid) and are removed by name when the test
//! ends, also when it fails; so this test runs alongside the other root tests.

#[path = "interop/common.rs"]
mod common;

const NAME: &str = "kernel_tcp_interop";

#[test]
fn kernel_tcp_interop() {
    #[cfg(all(target_os = "linux", feature = "cli"))]
    interop::run();
    #[cfg(not(target_os = "linux"))]
    common::skipped(NAME, "the TUN interop test is Linux-only");
    #[cfg(all(target_os = "linux", not(feature = "cli")))]
    common::skipped(
        NAME,
        "built without the `cli` feature (no mptcp-tun binary)",
    );
}

#[cfg(all(target_os = "linux", feature = "cli"))]
mod interop {
    use super::NAME;
    use crate::common::{Proc, Role, Topology, Transfer, dev_bytes, env_bytes, json_field};
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    const DEFAULT_BYTES_V4: u64 = 100_000_000;
    const DEFAULT_BYTES_V6: u64 = 20_000_000;

    fn log(msg: impl AsRef<str>) {
        crate::common::log(NAME, msg);
    }

    struct Case {
        name: &'static str,
        role: Role,
        /// Does our side send (else it receives)?
        ours_sends: bool,
        /// Our stack address and the kernel peer's address.
        ours_addr: &'static str,
        kernel_addr: &'static str,
        port: u16,
        /// The path (veth pair) the bytes must cross.
        path: u8,
        bytes: u64,
    }

    /// What a passing case measured.
    struct Measured {
        ours_mbit: f64,
        kernel_mbit: f64,
        secs: f64,
        wall: Duration,
    }

    fn run_case(topo: &Topology, case: &Case) -> Result<Measured, String> {
        let ns_s = topo.ns_s();
        let s_dev = topo.s_dev(case.path);
        let mut capture = std::env::var_os("INTEROP_PCAP").map(|dir| {
            let file = PathBuf::from(dir).join(format!("{}.pcap", case.name));
            let args: Vec<String> = ["tcpdump", "-i", &s_dev, "-s", "160", "-U", "-n", "-w"]
                .iter()
                .map(|s| s.to_string())
                .chain([file.display().to_string()])
                .collect();
            let p = Proc::spawn("tcpdump", &ns_s, &args, &[]);
            std::thread::sleep(Duration::from_millis(500));
            p
        });
        let before = dev_bytes(&ns_s, &s_dev);
        let outcome = crate::common::run_transfer(
            topo,
            &Transfer {
                name: case.name,
                role: case.role,
                ours_sends: case.ours_sends,
                ours_addrs: &[case.ours_addr],
                kernel_addr: case.kernel_addr,
                port: case.port,
                bytes: case.bytes,
                ours_extra: &[],
                kpeer_proto: "6",
            },
        );
        let after = dev_bytes(&ns_s, &s_dev);
        if let Some(c) = capture.as_mut() {
            std::thread::sleep(Duration::from_millis(200));
            c.kill();
            c.finish();
        }
        let mut out = outcome?;

        // The kernel peer speaks plain TCP: an MPTCP connection would be a bug.
        if let Some(mp) = json_field(&out.json, "mptcp")
            && mp != "false"
        {
            out.problems.push(format!(
                "our JSON says \"mptcp\":{mp} with a plain TCP peer"
            ));
        }

        // The bytes crossed S's veth of the expected path, in the expected direction.
        let moved = if case.ours_sends {
            after.0.saturating_sub(before.0)
        } else {
            after.1.saturating_sub(before.1)
        };
        if out.problems.is_empty() && moved < case.bytes {
            out.problems.push(format!(
                "only {moved} bytes crossed {s_dev} ({}), expected at least {}",
                if case.ours_sends { "rx" } else { "tx" },
                case.bytes
            ));
        }

        if out.problems.is_empty() {
            Ok(Measured {
                ours_mbit: out.ours_mbit,
                kernel_mbit: out.kernel_mbit,
                secs: out.secs,
                wall: out.wall,
            })
        } else {
            Err(out.failure_text())
        }
    }

    pub fn run() {
        let Some(topo) = crate::common::setup(NAME, "mki") else {
            return;
        };
        let v4_bytes = env_bytes("INTEROP_BYTES", DEFAULT_BYTES_V4);
        let v6_bytes = env_bytes("INTEROP_BYTES_V6", DEFAULT_BYTES_V6);

        let v4 = |name, role, ours_sends, port| Case {
            name,
            role,
            ours_sends,
            ours_addr: "198.18.101.1",
            kernel_addr: "198.18.1.2",
            port,
            path: 1,
            bytes: v4_bytes,
        };
        let v6 = |name, role, ours_sends, port| Case {
            name,
            role,
            ours_sends,
            ours_addr: "2001:db8:102::1",
            kernel_addr: "2001:db8:2::2",
            port,
            path: 2,
            bytes: v6_bytes,
        };
        let cases = [
            v4("v4_our_client_sends", Role::OursClient, true, 5301),
            v4("v4_our_client_recvs", Role::OursClient, false, 5302),
            v4("v4_our_server_recvs", Role::OursServer, false, 5303),
            v4("v4_our_server_sends", Role::OursServer, true, 5304),
            v6("v6_our_client_sends", Role::OursClient, true, 5305),
            v6("v6_our_server_recvs", Role::OursServer, false, 5306),
        ];

        let total = Instant::now();
        let mut failures = Vec::new();
        for case in &cases {
            let what = format!(
                "{:<20} {} bytes, {} -> {}",
                case.name,
                case.bytes,
                if case.ours_sends { "ours" } else { "kernel" },
                if case.ours_sends { "kernel" } else { "ours" },
            );
            match run_case(&topo, case) {
                Ok(m) => log(format!(
                    "{what}: ours {:.1} Mbit/s ({:.2} s), kernel peer {:.1} Mbit/s, wall {:.2} s",
                    m.ours_mbit,
                    m.secs,
                    m.kernel_mbit,
                    m.wall.as_secs_f64()
                )),
                Err(e) => {
                    log(format!("{what}: FAILED: {e}"));
                    failures.push(format!("{what}: {e}"));
                }
            }
        }
        log(format!(
            "{} cases in {:.1} s",
            cases.len(),
            total.elapsed().as_secs_f64()
        ));
        drop(topo);
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }
}
