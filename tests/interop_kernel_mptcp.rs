//! Interop with the Linux kernel's MPTCP over a TUN, in the DESIGN.md network-namespace
//! topology (root only).
//!
//! `mptcp-tun` runs on a TUN in namespace R; the kernel peer is `tests/interop/kpeer.py` in
//! namespace S with `KPEER_PROTO=262` (IPPROTO_MPTCP). Cases, each on its own port, one at a
//! time (IPv4 over path 1, 198.18.101.1 <-> 198.18.1.2, `INTEROP_BYTES` bytes, default 50 MB;
//! IPv6 `INTEROP_BYTES_V6`, default 20 MB):
//!
//! - (a) our client sends -> kernel MPTCP server; (b) kernel MPTCP client sends -> our server;
//! - (c) (a) and (b) with DSS checksums (`net.mptcp.checksum_enabled=1` in S, `--checksum` on
//!   ours; the sysctl is set back to 0 afterwards, also on failure);
//! - (d) IPv6 over path 2: our client 2001:db8:102::1 -> [2001:db8:2::2];
//! - (e) two subflows: our client `--addr 198.18.101.1 --addr 198.18.102.1`; the JSON must list
//!   2 subflows and the kernel's MPJoinAckRx must grow by exactly 1;
//! - (f) fallback: an iptables TCPOPTSTRIP rule in S strips option 30 (MPTCP) from SYNs to the
//!   port; 20 MB must arrive verified with `"mptcp":false` (the rule is removed by its exact
//!   spec afterwards, also on failure; "skipped: <reason>" for this case only when iptables or
//!   the target is unavailable).
//!
//! Every case checks both exit codes, the receiver's verification, the JSON `"bytes"` and
//! `"mptcp"`, that the bytes crossed S's veth(s) of the path(s), and the kernel's MIB counters
//! (`nstat -az` in S, before and after): MPCapableSYNRX (our client) or MPCapableSYNACKRX
//! (kernel client) grew — for (f) MPCapableSYNRX must *not* grow, the option was stripped —
//! and DataCsumErr did not grow. Each case prints its Mbit/s on stderr; a failing case prints
//! both sides' output, and the test fails at the end with every failure.
//!
//! Skips like `interop_kernel_tcp.rs` ("skipped: <reason>"), plus when S has no kernel MPTCP.
//! Namespace prefix "mkm" + pid, removed by name at the end.

#[path = "interop/common.rs"]
mod common;

const NAME: &str = "kernel_mptcp_interop";

#[test]
fn kernel_mptcp_interop() {
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
    use crate::common::{
        Role, Topology, Transfer, dev_bytes, env_bytes, in_ns, json_field, ns_cmd,
    };
    use std::collections::HashMap;
    use std::time::Instant;

    const DEFAULT_BYTES_V4: u64 = 50_000_000;
    const DEFAULT_BYTES_V6: u64 = 20_000_000;
    const FALLBACK_BYTES: u64 = 20_000_000;

    fn log(msg: impl AsRef<str>) {
        crate::common::log(NAME, msg);
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Special {
        None,
        Checksum,
        TwoSubflows,
        Fallback,
        /// GSO/TSO/GRO on for the case's veths (topology.sh turns them off): the kernel hands
        /// our TUN the super segments it merged, and passes ours on without cutting them.
        VethOffload,
    }

    struct Case {
        name: &'static str,
        role: Role,
        ours_sends: bool,
        ours_addrs: &'static [&'static str],
        kernel_addr: &'static str,
        port: u16,
        /// The paths (veth pairs) the bytes cross, in total.
        paths: &'static [u8],
        /// Our TUN in offload mode (`--offload on`: IFF_VNET_HDR, our super segments cut by
        /// the kernel, its merged ones read whole).
        offload: bool,
        bytes: u64,
        special: Special,
    }

    /// The kernel's MIB counters in a namespace (`nstat -az`).
    fn counters(ns: &str) -> HashMap<String, u64> {
        in_ns(ns, &["nstat", "-az"])
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let name = it.next()?;
                let value = it.next()?.parse().ok()?;
                Some((name.to_string(), value))
            })
            .collect()
    }

    /// `net.mptcp.checksum_enabled=1` in S while alive; back to 0 when dropped.
    struct ChecksumOn<'a>(&'a str);

    impl Drop for ChecksumOn<'_> {
        fn drop(&mut self) {
            if let Err(e) = ns_cmd(self.0, &["sysctl", "-w", "net.mptcp.checksum_enabled=0"]) {
                log(format!("could not restore checksum_enabled=0: {e}"));
            }
        }
    }

    /// The TCPOPTSTRIP rule in S while alive; deleted by its exact spec when dropped.
    struct StripRule {
        ns: String,
        spec: Vec<String>,
    }

    impl StripRule {
        fn add(ns: &str, port: u16) -> Result<StripRule, String> {
            let spec: Vec<String> = [
                "INPUT",
                "-p",
                "tcp",
                "--dport",
                &port.to_string(),
                "--tcp-flags",
                "SYN",
                "SYN",
                "-j",
                "TCPOPTSTRIP",
                "--strip-options",
                "30",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut args = vec!["iptables", "-w", "-t", "mangle", "-A"];
            args.extend(spec.iter().map(String::as_str));
            ns_cmd(ns, &args)?;
            Ok(StripRule {
                ns: ns.to_string(),
                spec,
            })
        }
    }

    impl Drop for StripRule {
        fn drop(&mut self) {
            let mut args = vec!["iptables", "-w", "-t", "mangle", "-D"];
            args.extend(self.spec.iter().map(String::as_str));
            if let Err(e) = ns_cmd(&self.ns, &args) {
                log(format!("could not remove the TCPOPTSTRIP rule: {e}"));
            }
        }
    }

    /// Offloads on for these (namespace, device) pairs while alive; off again when dropped.
    struct VethOffloads(Vec<(String, String)>);

    impl VethOffloads {
        fn on(devs: Vec<(String, String)>) -> Result<VethOffloads, String> {
            let guard = VethOffloads(devs);
            for (ns, dev) in &guard.0 {
                ns_cmd(
                    ns,
                    &["ethtool", "-K", dev, "gso", "on", "tso", "on", "gro", "on"],
                )?;
            }
            Ok(guard)
        }
    }

    impl Drop for VethOffloads {
        fn drop(&mut self) {
            for (ns, dev) in &self.0 {
                let off = [
                    "ethtool", "-K", dev, "gso", "off", "tso", "off", "gro", "off",
                ];
                if let Err(e) = ns_cmd(ns, &off) {
                    log(format!("could not turn offloads off on {dev}: {e}"));
                }
            }
        }
    }

    /// Why the fallback case cannot run here, if it cannot.
    fn iptables_unavailable() -> Option<String> {
        if !crate::common::runs("iptables", &["-V"]) {
            return Some("no iptables command".into());
        }
        None
    }

    /// Ok(Some(line)) passed, Ok(None) skipped (printed), Err(text) failed.
    fn run_case(topo: &Topology, case: &Case) -> Result<Option<String>, String> {
        let ns_s = topo.ns_s();
        let mut _checksum = None;
        let mut _strip = None;
        let mut _offloads = None;
        match case.special {
            Special::VethOffload => {
                if !crate::common::runs("ethtool", &["--version"]) {
                    crate::common::skipped(&format!("{NAME}: {}", case.name), "no ethtool command");
                    return Ok(None);
                }
                let mut devs = Vec::new();
                for &p in case.paths {
                    devs.push((topo.ns_r(), topo.r_dev(p)));
                    devs.push((ns_s.clone(), topo.s_dev(p)));
                }
                _offloads = Some(VethOffloads::on(devs)?);
            }
            Special::Checksum => {
                ns_cmd(&ns_s, &["sysctl", "-w", "net.mptcp.checksum_enabled=1"])?;
                _checksum = Some(ChecksumOn(&ns_s));
            }
            Special::Fallback => {
                if let Some(why) = iptables_unavailable() {
                    crate::common::skipped(&format!("{NAME}: {}", case.name), &why);
                    return Ok(None);
                }
                match StripRule::add(&ns_s, case.port) {
                    Ok(r) => _strip = Some(r),
                    Err(e) => {
                        crate::common::skipped(
                            &format!("{NAME}: {}", case.name),
                            &format!("cannot add the iptables TCPOPTSTRIP rule: {e}"),
                        );
                        return Ok(None);
                    }
                }
            }
            _ => {}
        }

        let mut extra: Vec<&str> = Vec::new();
        if case.special == Special::Checksum {
            extra.push("--checksum");
        }
        // Both modes explicitly: mptcp-tun's default is auto (on where Linux allows).
        extra.extend(["--offload", if case.offload { "on" } else { "off" }]);
        let devs: Vec<String> = case.paths.iter().map(|&p| topo.s_dev(p)).collect();
        let moved = |before: &[(u64, u64)]| -> u64 {
            devs.iter()
                .zip(before)
                .map(|(d, b)| {
                    let a = dev_bytes(&ns_s, d);
                    if case.ours_sends {
                        a.0.saturating_sub(b.0)
                    } else {
                        a.1.saturating_sub(b.1)
                    }
                })
                .sum()
        };
        let dev_before: Vec<(u64, u64)> = devs.iter().map(|d| dev_bytes(&ns_s, d)).collect();
        let mib_before = counters(&ns_s);
        let mut out = crate::common::run_transfer(
            topo,
            &Transfer {
                name: case.name,
                role: case.role,
                ours_sends: case.ours_sends,
                ours_addrs: case.ours_addrs,
                kernel_addr: case.kernel_addr,
                port: case.port,
                bytes: case.bytes,
                ours_extra: &extra,
                kpeer_proto: "262",
            },
        )?;
        let mib_after = counters(&ns_s);
        let moved = moved(&dev_before);
        // The rule and the sysctl go now, before the next case.
        drop(_strip.take());
        drop(_checksum.take());

        let p = &mut out.problems;
        // "mptcp" as MPTCP, or false in the fallback case.
        let want_mp = if case.special == Special::Fallback {
            "false"
        } else {
            "true"
        };
        match json_field(&out.json, "mptcp") {
            Some(mp) if mp == want_mp => {}
            other => p.push(format!(
                "our JSON \"mptcp\" = {other:?}, expected {want_mp} (fallback_reason {:?})",
                json_field(&out.json, "fallback_reason")
            )),
        }
        let want_offload = if case.offload { "true" } else { "false" };
        match json_field(&out.json, "offload") {
            Some(o) if o == want_offload => {}
            other => p.push(format!(
                "our JSON \"offload\" = {other:?}, expected {want_offload}"
            )),
        }
        let subflows = out.json.matches("\"local\":").count();
        if case.special == Special::TwoSubflows && subflows != 2 {
            p.push(format!("our JSON lists {subflows} subflows, expected 2"));
        }
        if moved < case.bytes {
            p.push(format!(
                "only {moved} bytes crossed {devs:?} ({}), expected at least {}",
                if case.ours_sends { "rx" } else { "tx" },
                case.bytes
            ));
        }

        // The kernel's witness.
        let d = |k: &str| crate::common::mib_delta(&mib_before, &mib_after, k);
        let syn_key = match case.role {
            Role::OursClient => "MPTcpExtMPCapableSYNRX",
            Role::OursServer => "MPTcpExtMPCapableSYNACKRX",
        };
        if case.special == Special::Fallback {
            if d(syn_key) != 0 {
                p.push(format!(
                    "{syn_key} grew by {} although the rule strips MP_CAPABLE",
                    d(syn_key)
                ));
            }
        } else if d(syn_key) < 1 {
            p.push(format!("kernel counter {syn_key} did not increase"));
        }
        if d("MPTcpExtDataCsumErr") != 0 {
            p.push(format!(
                "kernel counter MPTcpExtDataCsumErr grew by {}",
                d("MPTcpExtDataCsumErr")
            ));
        }
        if case.special == Special::TwoSubflows && d("MPTcpExtMPJoinAckRx") != 1 {
            p.push(format!(
                "kernel counter MPTcpExtMPJoinAckRx grew by {}, expected 1",
                d("MPTcpExtMPJoinAckRx")
            ));
        }

        let witness = format!(
            "{syn_key} +{}, MPJoinAckRx +{}, DataCsumErr +{}, subflows {subflows}",
            d(syn_key),
            d("MPTcpExtMPJoinAckRx"),
            d("MPTcpExtDataCsumErr")
        );
        if out.problems.is_empty() {
            Ok(Some(format!(
                "ours {:.1} Mbit/s ({:.2} s), kernel peer {:.1} Mbit/s, wall {:.2} s; {witness}",
                out.ours_mbit,
                out.secs,
                out.kernel_mbit,
                out.wall.as_secs_f64()
            )))
        } else {
            Err(format!("{witness}\n{}", out.failure_text()))
        }
    }

    pub fn run() {
        if !crate::common::runs("nstat", &["-V"]) {
            return crate::common::skipped(NAME, "no `nstat` command (install iproute2)");
        }
        let Some(topo) = crate::common::setup(NAME, "mkm") else {
            return;
        };
        let ns_s = topo.ns_s();
        if in_ns(&ns_s, &["cat", "/proc/sys/net/mptcp/enabled"]).trim() != "1" {
            return crate::common::skipped(NAME, "no kernel MPTCP (net.mptcp.enabled) in S");
        }
        let v4_bytes = env_bytes("INTEROP_BYTES", DEFAULT_BYTES_V4);
        let v6_bytes = env_bytes("INTEROP_BYTES_V6", DEFAULT_BYTES_V6);

        const P1: &[&str] = &["198.18.101.1"];
        let v4 = |name, role, ours_sends, port, special| Case {
            name,
            role,
            ours_sends,
            ours_addrs: P1,
            kernel_addr: "198.18.1.2",
            port,
            paths: &[1],
            bytes: v4_bytes,
            special,
            offload: false,
        };
        let cases = [
            v4(
                "a_our_client_sends",
                Role::OursClient,
                true,
                5401,
                Special::None,
            ),
            v4(
                "b_kernel_client_sends",
                Role::OursServer,
                false,
                5402,
                Special::None,
            ),
            v4(
                "c_csum_our_client_sends",
                Role::OursClient,
                true,
                5403,
                Special::Checksum,
            ),
            v4(
                "c_csum_kernel_client_sends",
                Role::OursServer,
                false,
                5404,
                Special::Checksum,
            ),
            Case {
                name: "d_v6_our_client_sends",
                role: Role::OursClient,
                ours_sends: true,
                ours_addrs: &["2001:db8:102::1"],
                kernel_addr: "2001:db8:2::2",
                port: 5405,
                paths: &[2],
                bytes: v6_bytes,
                special: Special::None,
                offload: false,
            },
            Case {
                name: "g_v6_offload_our_client_sends",
                role: Role::OursClient,
                ours_sends: true,
                ours_addrs: &["2001:db8:102::1"],
                kernel_addr: "2001:db8:2::2",
                port: 5410,
                paths: &[2],
                bytes: v6_bytes,
                special: Special::None,
                offload: true,
            },
            Case {
                ours_addrs: &["198.18.101.1", "198.18.102.1"],
                paths: &[1, 2],
                ..v4(
                    "e_two_subflows",
                    Role::OursClient,
                    true,
                    5406,
                    Special::TwoSubflows,
                )
            },
            Case {
                ours_addrs: &["198.18.101.1", "198.18.102.1"],
                paths: &[1, 2],
                offload: true,
                ..v4(
                    "g_offload_two_subflows",
                    Role::OursClient,
                    true,
                    5414,
                    Special::TwoSubflows,
                )
            },
            Case {
                offload: true,
                ..v4(
                    "g_offload_our_client_sends",
                    Role::OursClient,
                    true,
                    5408,
                    Special::None,
                )
            },
            Case {
                offload: true,
                ..v4(
                    "g_offload_kernel_client_sends",
                    Role::OursServer,
                    false,
                    5409,
                    Special::None,
                )
            },
            Case {
                offload: true,
                ..v4(
                    "g_offload_csum_our_client_sends",
                    Role::OursClient,
                    true,
                    5411,
                    Special::Checksum,
                )
            },
            Case {
                offload: true,
                ..v4(
                    "g_gro_kernel_client_sends",
                    Role::OursServer,
                    false,
                    5412,
                    Special::VethOffload,
                )
            },
            Case {
                offload: true,
                ..v4(
                    "g_tso_our_client_sends",
                    Role::OursClient,
                    true,
                    5413,
                    Special::VethOffload,
                )
            },
            Case {
                bytes: FALLBACK_BYTES,
                ..v4(
                    "f_fallback",
                    Role::OursClient,
                    true,
                    5407,
                    Special::Fallback,
                )
            },
        ];

        let total = Instant::now();
        let mut failures = Vec::new();
        let mut skipped = 0;
        for case in &cases {
            let what = format!(
                "{:<27} {} bytes, {} -> {}",
                case.name,
                case.bytes,
                if case.ours_sends { "ours" } else { "kernel" },
                if case.ours_sends { "kernel" } else { "ours" },
            );
            match run_case(&topo, case) {
                Ok(Some(line)) => log(format!("{what}: {line}")),
                Ok(None) => skipped += 1,
                Err(e) => {
                    log(format!("{what}: FAILED: {e}"));
                    failures.push(format!("{what}: {e}"));
                }
            }
        }
        log(format!(
            "{} cases ({skipped} skipped) in {:.1} s",
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
