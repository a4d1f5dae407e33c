//! Multipath interop with the Linux kernel's MPTCP over a TUN, in the DESIGN.md two-path
//! network-namespace topology (root only).
//!
//! `mptcp-tun` runs on a TUN in namespace R with the stack addresses 198.18.101.1 (path 1) and
//! 198.18.102.1 (path 2); the kernel peer is `tests/interop/kpeer.py` in namespace S
//! (`KPEER_PROTO=262`) at 198.18.1.2 (path 1) and 198.18.2.2 (path 2). Both paths are shaped
//! with tbf (`RATE1`/`RATE2` of topology.sh, `MP_INTEROP_RATE`, default 40mbit, on both ends:
//! below what a debug build moves on a loaded machine, about 90 Mbit/s or more, so that the
//! paths and not the CPU set the shares).
//! `topology.sh path-by stack` (the default here) makes every stack address keep its own path
//! both ways (a join from 198.18.102.1 to 198.18.1.2 crosses path 2); case (b), where the
//! kernel client in S opens the join from its own 198.18.2.2, runs with `path-by peer`.
//!
//! Cases, one at a time, each on its own port (`MP_INTEROP_BYTES`, default 20 MB; the failure
//! cases `MP_INTEROP_FAIL_BYTES`, default 30 MB):
//!
//! - (a) our client `--addr 198.18.101.1 --addr 198.18.102.1` sends -> kernel server: both
//!   subflows carry a fair share (each at least a quarter, from our JSON and from the bytes
//!   S's veths received); kernel MPJoinSynRx and MPJoinAckRx grow by 1.
//! - (b) kernel client with a subflow endpoint (`ip mptcp endpoint add 198.18.2.2 dev S2
//!   subflow`, removed afterwards) sends -> our server `--addr 198.18.101.1 --addr
//!   198.18.102.1`: our JSON lists 2 subflows, each with data; kernel MPJoinSynAckRx grows.
//! - (c) our server `--announce 198.18.102.1` to a kernel client without endpoints, which
//!   sends: kernel AddAddr grows (it verified our ADD_ADDR HMAC), our echo_add_rx >= 1, and the
//!   kernel's subflow to 198.18.102.1 carried data (our JSON, and S's path-2 veth).
//! - (e) MP_PRIO: the kernel server sends to our client `--backup 198.18.102.1 --backup-after
//!   1`; kernel MPPrioRx grows; path 2 carried data before the kernel received MP_PRIO (S's
//!   veth counters, sampled when MPPrioRx moves) and, from 0.5 s after it (what the kernel had
//!   already queued on the subflow may still leave), at most 2 % of what S sent; the kernel
//!   saw exactly one MP_JOIN SYN.
//! - (d) failures while our client sends over both paths to a kernel server, triggered once S
//!   received a third of the bytes: a silent blackhole of path 1 (`iptables -t raw -I
//!   PREROUTING -i R1/S1 -j DROP` in R and S), of path 2, and path 1's veth down in R. Each
//!   must complete verified; the path that survives must carry the rest; the time is reported
//!   against a run without failure of the same size.
//!
//! Every case checks both exit codes, the receiver's verification (exactly N bytes of the
//! pattern i % 251), our JSON `"bytes"` and `"mptcp":true`, that our JSON's subflows account
//! for the bytes, and that the kernel's DataCsumErr did not grow (`nstat -az` in S, before and
//! after). A failing case prints its figures, both sides' output and the socket dumps; the other
//! cases still run; the test fails at the end with every failure.
//!
//! Skips ("<name>: skipped: <reason>") like the other kernel interop tests, plus when S has no
//! kernel MPTCP, and for (d) when iptables is missing. Namespace prefix "mkp" + pid, removed by
//! name at the end, also on failure; every iptables rule, endpoint and link change is undone
//! by a guard.

#[path = "interop/common.rs"]
mod common;

const NAME: &str = "kernel_multipath_interop";

#[test]
fn kernel_multipath_interop() {
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
        Outcome, Role, RunOpts, Topology, Transfer, dev_bytes, env_bytes, in_ns, json_field,
        json_subflows, mib, mptcp_counter, ns_cmd,
    };
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    const DEFAULT_BYTES: u64 = 20_000_000;
    const DEFAULT_FAIL_BYTES: u64 = 30_000_000;
    /// Seconds before one transfer is given up.
    const LIMIT_SECS: u64 = 45;
    const P1: &str = "198.18.101.1";
    const P2: &str = "198.18.102.1";
    const K1: &str = "198.18.1.2";
    const K2: &str = "198.18.2.2";

    fn log(msg: impl AsRef<str>) {
        crate::common::log(NAME, msg);
    }

    /// The growth of the kernel's `MPTcpExt<key>` counter.
    fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, key: &str) -> i64 {
        crate::common::mib_delta(before, after, &format!("MPTcpExt{key}"))
    }

    fn pct(part: u64, whole: u64) -> f64 {
        if whole == 0 {
            0.0
        } else {
            part as f64 * 100.0 / whole as f64
        }
    }

    /// Undoes a change of the topology when dropped (also on panic): the commands run in order,
    /// failures are only logged.
    struct Undo(Vec<(String, Vec<String>)>);

    impl Undo {
        fn new() -> Undo {
            Undo(Vec::new())
        }

        fn push(&mut self, ns: &str, args: &[&str]) {
            self.0
                .push((ns.to_string(), args.iter().map(|s| s.to_string()).collect()));
        }
    }

    impl Drop for Undo {
        fn drop(&mut self) {
            for (ns, args) in self.0.drain(..) {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                if let Err(e) = ns_cmd(&ns, &args) {
                    log(format!("undo in {ns}: {e}"));
                }
            }
        }
    }

    /// The fields of one subflow object of our JSON.
    struct Subflow {
        local: String,
        sent: u64,
        received: u64,
        backup: bool,
        switch_received: Option<u64>,
    }

    fn subflows(json: &str) -> Vec<Subflow> {
        json_subflows(json)
            .into_iter()
            .map(|s| {
                let num = |k: &str| json_field(s, k).and_then(|v| v.parse().ok());
                Subflow {
                    local: json_field(s, "local")
                        .unwrap_or("")
                        .trim_matches('"')
                        .to_string(),
                    sent: num("bytes_sent").unwrap_or(0),
                    received: num("bytes_received").unwrap_or(0),
                    backup: json_field(s, "backup") == Some("true"),
                    switch_received: num("switch_bytes_received"),
                }
            })
            .collect()
    }

    fn counter(json: &str, key: &str) -> u64 {
        json_field(json, key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Fault {
        None,
        Blackhole(u8),
        LinkDown(u8),
        /// Path N blackholed and restored every `FLAP_PERIOD`, from a fifth of the bytes on.
        Flap(u8),
    }

    /// How long each state of a flapping path lasts.
    const FLAP_PERIOD: Duration = Duration::from_millis(1500);

    /// The iptables rules that blackhole path `p` silently, both ways, in R and S.
    fn blackhole_rules(topo: &Topology, p: u8) -> Vec<(String, Vec<String>)> {
        let (rd, sd) = (topo.r_dev(p), topo.s_dev(p));
        [(topo.ns_r(), rd), (topo.ns_s(), sd)]
            .into_iter()
            .map(|(ns, dev)| {
                let rule = [
                    "iptables",
                    "-w",
                    "-t",
                    "raw",
                    "-I",
                    "PREROUTING",
                    "-i",
                    &dev,
                ]
                .iter()
                .chain(&["-j", "DROP"])
                .map(|s| s.to_string())
                .collect();
                (ns, rule)
            })
            .collect()
    }

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Kind {
        /// (a) our client, two addresses, sends.
        TwoPaths,
        /// (b) kernel client with a subflow endpoint sends to our two-address server.
        KernelEndpoint,
        /// (c) our server announces its second address.
        Announce,
        /// (e) the kernel sends; our client makes path 2 a backup with MP_PRIO after 1 s.
        Prio,
        /// (d) our client sends over two paths; a fault at a third of the bytes.
        Failure(Fault),
    }

    struct Case {
        name: &'static str,
        kind: Kind,
        port: u16,
        bytes: u64,
    }

    struct Done {
        line: String,
        secs: f64,
        wall: f64,
    }

    /// Ok(Done) passed, Err(text) failed.
    fn run_case(topo: &Topology, case: &Case) -> Result<Done, String> {
        let (ns_r, ns_s) = (topo.ns_r(), topo.ns_s());
        let (s1, s2) = (topo.s_dev(1), topo.s_dev(2));
        let mut undo = Undo::new();
        topo.path_by(if case.kind == Kind::KernelEndpoint {
            "peer"
        } else {
            "stack"
        })?;
        if case.kind == Kind::KernelEndpoint {
            ns_cmd(
                &ns_s,
                &["ip", "mptcp", "endpoint", "add", K2, "dev", &s2, "subflow"],
            )?;
            undo.push(&ns_s, &["ip", "mptcp", "endpoint", "flush"]);
        }

        let (role, ours_sends) = match case.kind {
            Kind::TwoPaths | Kind::Failure(_) => (Role::OursClient, true),
            Kind::KernelEndpoint | Kind::Announce => (Role::OursServer, false),
            Kind::Prio => (Role::OursClient, false),
        };
        let extra: &[&str] = match case.kind {
            Kind::Announce => &["--announce", P2],
            Kind::Prio => &["--backup", P2, "--backup-after", "1"],
            _ => &[],
        };
        // S's side of the data: rx when ours sends, else tx.
        let s_bytes = |dev: &str| {
            let (rx, tx) = dev_bytes(&ns_s, dev);
            if ours_sends { rx } else { tx }
        };
        let dev0 = (s_bytes(&s1), s_bytes(&s2));
        let mib0 = mib(&ns_s);

        // The hook: (d) breaks a path once S received a third of the bytes; (e) notes S's veth
        // counters when the kernel receives MP_PRIO.
        let prio0 = mptcp_counter(&ns_s, "MPPrioRx");
        let mut at_event: Option<(Duration, u64, u64)> = None;
        // (e): the same 0.5 s later.
        let mut at_settle: Option<(Duration, u64, u64)> = None;
        let mut fault_err: Option<String> = None;
        // (d4): when the flapping path changes next, whether it is down, and how often it went.
        let mut flap: Option<(Duration, bool, u32)> = None;
        let mut tick = |t: Duration| {
            if let Kind::Failure(Fault::Flap(p)) = case.kind {
                let (a, b) = (
                    s_bytes(&s1).saturating_sub(dev0.0),
                    s_bytes(&s2).saturating_sub(dev0.1),
                );
                if flap.is_none() {
                    if a + b < case.bytes / 5 {
                        return;
                    }
                    at_event = Some((t, a, b));
                    flap = Some((t, false, 0));
                }
                let Some((next, down, n)) = flap else { return };
                if t < next {
                    return;
                }
                for (ns, rule) in blackhole_rules(topo, p) {
                    let mut rule: Vec<&str> = rule.iter().map(String::as_str).collect();
                    rule[4] = if down { "-D" } else { "-I" };
                    if let Err(e) = ns_cmd(&ns, &rule) {
                        fault_err = Some(e);
                    }
                    if !down {
                        let mut del = rule.clone();
                        del[4] = "-D";
                        // Removes the rule if the transfer ends while the path is down.
                        undo.push(&ns, &del);
                    }
                }
                flap = Some((t + FLAP_PERIOD, !down, n + u32::from(!down)));
                return;
            }
            if let Some((te, _, _)) = at_event {
                if case.kind == Kind::Prio
                    && at_settle.is_none()
                    && t >= te + Duration::from_millis(500)
                {
                    at_settle = Some((
                        t,
                        s_bytes(&s1).saturating_sub(dev0.0),
                        s_bytes(&s2).saturating_sub(dev0.1),
                    ));
                }
                return;
            }
            match case.kind {
                Kind::Failure(fault) if fault != Fault::None => {
                    let (a, b) = (
                        s_bytes(&s1).saturating_sub(dev0.0),
                        s_bytes(&s2).saturating_sub(dev0.1),
                    );
                    if a + b < case.bytes / 3 {
                        return;
                    }
                    at_event = Some((t, a, b));
                    let r = match fault {
                        Fault::Blackhole(p) => {
                            let mut r = Ok(());
                            for (ns, rule) in blackhole_rules(topo, p) {
                                let add: Vec<&str> = rule.iter().map(String::as_str).collect();
                                match ns_cmd(&ns, &add) {
                                    Ok(()) => {
                                        let mut del = add.clone();
                                        del[4] = "-D";
                                        undo.push(&ns, &del);
                                    }
                                    Err(e) => r = Err(e),
                                }
                            }
                            r
                        }
                        Fault::LinkDown(p) => {
                            let rd = topo.r_dev(p);
                            let r = ns_cmd(&ns_r, &["ip", "link", "set", &rd, "down"]);
                            undo.push(&ns_r, &["ip", "link", "set", &rd, "up"]);
                            // IPv6 addresses do not survive a link down (IPv4 ones do).
                            let v6 = format!("2001:db8:{p}::1/64");
                            undo.push(
                                &ns_r,
                                &["ip", "-6", "addr", "replace", &v6, "dev", &rd, "nodad"],
                            );
                            r
                        }
                        // Handled at the top of the hook.
                        Fault::Flap(_) | Fault::None => Ok(()),
                    };
                    if let Err(e) = r {
                        fault_err = Some(e);
                    }
                }
                Kind::Prio if mptcp_counter(&ns_s, "MPPrioRx") > prio0 => {
                    at_event = Some((
                        t,
                        s_bytes(&s1).saturating_sub(dev0.0),
                        s_bytes(&s2).saturating_sub(dev0.1),
                    ));
                }
                _ => {}
            }
        };
        let kernel_addr = K1;
        let mut out: Outcome = crate::common::run_transfer_with(
            topo,
            &Transfer {
                name: case.name,
                role,
                ours_sends,
                ours_addrs: &[P1, P2],
                kernel_addr,
                port: case.port,
                bytes: case.bytes,
                ours_extra: extra,
                kpeer_proto: "262",
            },
            RunOpts {
                limit_secs: Some(LIMIT_SECS),
                tick: Some(&mut tick),
            },
        )?;
        let mib1 = mib(&ns_s);
        let dev = (
            s_bytes(&s1).saturating_sub(dev0.0),
            s_bytes(&s2).saturating_sub(dev0.1),
        );
        // Links back up, rules and endpoints removed, before the next case.
        drop(undo);
        if let Kind::Failure(Fault::LinkDown(_)) = case.kind {
            // The link's routes went with it; put path-by's tables back.
            if let Err(e) = topo.path_by("stack") {
                log(format!("after the link came back: {e}"));
            }
        }

        let n = case.bytes;
        let json = out.json.clone();
        let subs = subflows(&json);
        let d = |k: &str| delta(&mib0, &mib1, k);
        let p = &mut out.problems;
        if let Some(e) = fault_err {
            p.push(format!("could not make the fault: {e}"));
        }
        if json_field(&json, "mptcp") != Some("true") {
            p.push(format!(
                "our JSON \"mptcp\" = {:?} (fallback_reason {:?})",
                json_field(&json, "mptcp"),
                json_field(&json, "fallback_reason")
            ));
        }
        if d("DataCsumErr") != 0 {
            p.push(format!("kernel DataCsumErr grew by {}", d("DataCsumErr")));
        }
        // Our JSON's subflows account for the stream.
        let (sum_sent, sum_received) = subs
            .iter()
            .fold((0, 0), |(s, r), x| (s + x.sent, r + x.received));
        let ours_total = if ours_sends { sum_sent } else { sum_received };
        if ours_total < n {
            p.push(format!(
                "our JSON's subflows account for {ours_total} bytes {}, less than the {n} of the \
                 stream (subflows: {})",
                if ours_sends { "sent" } else { "received" },
                subs.iter()
                    .map(|s| format!("{} sent {} received {}", s.local, s.sent, s.received))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        let on = |addr: &str| -> u64 {
            subs.iter()
                .filter(|s| s.local.starts_with(&format!("{addr}:")))
                .map(|s| if ours_sends { s.sent } else { s.received })
                .sum()
        };
        let dir = if ours_sends { "rx" } else { "tx" };
        let mut figures = format!(
            "S veths {dir}: path 1 {} B ({:.0} %), path 2 {} B ({:.0} %); ours per address: {P1} {} B, {P2} {} B",
            dev.0,
            pct(dev.0, dev.0 + dev.1),
            dev.1,
            pct(dev.1, dev.0 + dev.1),
            on(P1),
            on(P2)
        );
        let witness = match case.kind {
            Kind::TwoPaths => {
                for (path, b) in [(1, dev.0), (2, dev.1)] {
                    if b < n / 4 {
                        p.push(format!(
                            "path {path} carried {b} B ({:.0} %), less than a quarter of {n}",
                            pct(b, n)
                        ));
                    }
                }
                for a in [P1, P2] {
                    if on(a) < n / 4 {
                        p.push(format!(
                            "our subflows from {a} sent {} B, less than a quarter of {n}",
                            on(a)
                        ));
                    }
                }
                if subs.len() != 2 {
                    p.push(format!(
                        "our JSON lists {} subflows, expected 2",
                        subs.len()
                    ));
                }
                for k in ["MPJoinSynRx", "MPJoinAckRx"] {
                    if d(k) != 1 {
                        p.push(format!("kernel {k} grew by {}, expected 1", d(k)));
                    }
                }
                format!(
                    "MPCapableSYNRX +{}, MPJoinSynRx +{}, MPJoinAckRx +{}",
                    d("MPCapableSYNRX"),
                    d("MPJoinSynRx"),
                    d("MPJoinAckRx")
                )
            }
            Kind::KernelEndpoint => {
                let with_data = subs.iter().filter(|s| s.received > 0).count();
                if subs.len() != 2 || with_data != 2 {
                    p.push(format!(
                        "our JSON lists {} subflows, {with_data} with data; expected 2 and 2",
                        subs.len()
                    ));
                }
                for (path, b) in [(1, dev.0), (2, dev.1)] {
                    if b < n / 10 {
                        p.push(format!(
                            "path {path} carried {b} B ({:.0} %), less than a tenth",
                            pct(b, n)
                        ));
                    }
                }
                if d("MPJoinSynAckRx") < 1 {
                    p.push("kernel MPJoinSynAckRx did not grow".into());
                }
                if d("MPCapableSYNACKRX") < 1 {
                    p.push("kernel MPCapableSYNACKRX did not grow".into());
                }
                figures.push_str(&format!(
                    "; ours per subflow received {}",
                    subs.iter()
                        .map(|s| s.received.to_string())
                        .collect::<Vec<_>>()
                        .join(" + ")
                ));
                format!(
                    "MPCapableSYNACKRX +{}, MPJoinSynTx +{}, MPJoinSynAckRx +{}",
                    d("MPCapableSYNACKRX"),
                    d("MPJoinSynTx"),
                    d("MPJoinSynAckRx")
                )
            }
            Kind::Announce => {
                let echo = counter(&json, "echo_add_rx");
                if d("AddAddr") < 1 {
                    p.push("kernel AddAddr did not grow (our ADD_ADDR not accepted)".into());
                }
                if echo < 1 {
                    p.push(format!("our echo_add_rx = {echo}, expected >= 1"));
                }
                if d("MPJoinSynAckRx") < 1 {
                    p.push(
                        "kernel MPJoinSynAckRx did not grow (no join to the announced address)"
                            .into(),
                    );
                }
                if on(P2) < n / 10 {
                    p.push(format!(
                        "our subflows on the announced {P2} received {} B, less than a tenth of {n}",
                        on(P2)
                    ));
                }
                if dev.1 < n / 10 {
                    p.push(format!("path 2 carried {} B, less than a tenth", dev.1));
                }
                format!(
                    "AddAddr +{}, EchoAddTx +{}, MPJoinSynAckRx +{}; ours add_addr_tx {}, echo_add_rx {}",
                    d("AddAddr"),
                    d("EchoAddTx"),
                    d("MPJoinSynAckRx"),
                    counter(&json, "add_addr_tx"),
                    echo
                )
            }
            Kind::Prio => {
                if d("MPPrioRx") < 1 {
                    p.push("kernel MPPrioRx did not grow".into());
                }
                if counter(&json, "mp_prio_tx") < 1 {
                    p.push("our mp_prio_tx is 0".into());
                }
                if !subs.iter().any(|s| s.local.starts_with(P2) && s.backup) {
                    p.push(format!("no subflow from {P2} is a backup in our JSON"));
                }
                if d("MPJoinSynRx") != 1 {
                    p.push(format!(
                        "kernel MPJoinSynRx grew by {}, expected 1 (one join, from {P2})",
                        d("MPJoinSynRx")
                    ));
                }
                match at_event {
                    None => p.push("MPPrioRx never moved during the transfer".into()),
                    Some((t, a, b)) => {
                        let (after1, after2) = (dev.0 - a, dev.1 - b);
                        figures.push_str(&format!(
                            "; kernel got MP_PRIO at {:.2} s: path 2 had carried {b} B ({:.0} %), after it {after2} B = {:.2} % of the {} B S sent after it",
                            t.as_secs_f64(),
                            pct(b, a + b),
                            pct(after2, after1 + after2),
                            after1 + after2
                        ));
                        if b < n / 20 {
                            p.push(format!(
                                "path 2 carried only {b} B before the switch: it was not in use"
                            ));
                        }
                        match at_settle {
                            None => p.push("the transfer ended within 0.5 s of MP_PRIO".into()),
                            Some((ts, a2, b2)) => {
                                let (late1, late2) = (dev.0 - a2, dev.1 - b2);
                                figures.push_str(&format!(
                                    "; from {:.2} s on path 2 carried {late2} B = {:.2} % of the {} B S sent",
                                    ts.as_secs_f64(),
                                    pct(late2, late1 + late2),
                                    late1 + late2
                                ));
                                if late2 * 50 > late1 + late2 {
                                    p.push(format!(
                                        "from 0.5 s after MP_PRIO the kernel still sent {late2} B ({:.1} %) on the backup path",
                                        pct(late2, late1 + late2)
                                    ));
                                }
                            }
                        }
                    }
                }
                let sw: Vec<String> = subs
                    .iter()
                    .map(|s| {
                        format!(
                            "{} received {} (at switch {:?}) backup {}",
                            s.local, s.received, s.switch_received, s.backup
                        )
                    })
                    .collect();
                figures.push_str(&format!("; ours: {}", sw.join("; ")));
                format!(
                    "MPPrioRx +{}, MPJoinSynRx +{}, MPJoinSynBackupRx +{}, MPJoinAckRx +{}; ours mp_prio_tx {}, switch at {} s",
                    d("MPPrioRx"),
                    d("MPJoinSynRx"),
                    d("MPJoinSynBackupRx"),
                    d("MPJoinAckRx"),
                    counter(&json, "mp_prio_tx"),
                    json_field(&json, "backup_switch_secs").unwrap_or("?")
                )
            }
            Kind::Failure(fault) => {
                if d("MPJoinAckRx") < 1 {
                    p.push("kernel MPJoinAckRx did not grow (no second path)".into());
                }
                if fault == Fault::None {
                    for (path, b) in [(1, dev.0), (2, dev.1)] {
                        if b < n / 10 {
                            p.push(format!("path {path} carried only {b} B"));
                        }
                    }
                } else {
                    match at_event {
                        None => p.push("the fault was never made".into()),
                        Some((t, _, _)) if matches!(fault, Fault::Flap(_)) => {
                            let downs = flap.map_or(0, |f| f.2);
                            figures.push_str(&format!(
                                "; path 1 flapping from {:.2} s: down {downs} times for {} ms each",
                                t.as_secs_f64(),
                                FLAP_PERIOD.as_millis()
                            ));
                            if downs < 3 {
                                p.push(format!("the path went down only {downs} times"));
                            }
                        }
                        Some((t, a, b)) => {
                            let broken = match fault {
                                Fault::Blackhole(x) | Fault::LinkDown(x) | Fault::Flap(x) => x,
                                Fault::None => 0,
                            };
                            let after = if broken == 1 { dev.1 - b } else { dev.0 - a };
                            let rest = n.saturating_sub(a + b);
                            figures.push_str(&format!(
                                "; fault at {:.2} s after {} B; the surviving path carried {after} B after it (rest of the stream {rest} B)",
                                t.as_secs_f64(),
                                a + b
                            ));
                            if after * 10 < rest * 9 {
                                p.push(format!(
                                    "the surviving path carried {after} B after the fault, less than 90 % of the {rest} B left"
                                ));
                            }
                        }
                    }
                }
                format!("MPJoinAckRx +{}", d("MPJoinAckRx"))
            }
        };

        let summary = format!(
            "ours {:.1} Mbit/s ({:.2} s), kernel peer {:.1} Mbit/s, wall {:.2} s; {witness}; ours subflow_stale {}, subflow_recover {}, reinjected {} B; {figures}",
            out.ours_mbit,
            out.secs,
            out.kernel_mbit,
            out.wall.as_secs_f64(),
            counter(&json, "subflow_stale"),
            counter(&json, "subflow_recover"),
            counter(&json, "reinjected_bytes")
        );
        // A stack bug this case shows (seen with Linux 6.18): after the kernel's DATA_FIN and
        // subflow FINs, our client's path manager opens new MP_JOIN SYNs for the finished
        // connection (the kernel answers RST), and the JSON then lists those instead of the
        // path-2 subflow that carried data. Said loudly; the case still fails.
        if case.kind == Kind::Prio && (d("MPJoinSynRx") > 1 || ours_total < n) {
            out.problems.push(
                "STACK BUG (not the test): MP_JOIN SYNs after the connection finished and/or \
                 subflows missing from the JSON; see the comment in run_case"
                    .into(),
            );
        }
        if out.problems.is_empty() {
            Ok(Done {
                line: summary,
                secs: out.secs,
                wall: out.wall.as_secs_f64(),
            })
        } else {
            Err(format!("{summary}\n{}", out.failure_text()))
        }
    }

    pub fn run() {
        if !crate::common::runs("nstat", &["-V"]) {
            return crate::common::skipped(NAME, "no `nstat` command (install iproute2)");
        }
        let rate = std::env::var("MP_INTEROP_RATE").unwrap_or_else(|_| "40mbit".into());
        let Some(topo) = crate::common::setup_with(
            NAME,
            "mkp",
            &[("RATE1", &rate), ("RATE2", &rate), ("MPT_PATH_BY", "stack")],
        ) else {
            return;
        };
        let ns_s = topo.ns_s();
        if in_ns(&ns_s, &["cat", "/proc/sys/net/mptcp/enabled"]).trim() != "1" {
            return crate::common::skipped(NAME, "no kernel MPTCP (net.mptcp.enabled) in S");
        }
        let iptables = crate::common::runs("iptables", &["-V"]);
        let bytes = env_bytes("MP_INTEROP_BYTES", DEFAULT_BYTES);
        let fail_bytes = env_bytes("MP_INTEROP_FAIL_BYTES", DEFAULT_FAIL_BYTES);
        let case = |name, kind, port, bytes| Case {
            name,
            kind,
            port,
            bytes,
        };
        let cases = [
            case("a_two_paths_ours_to_kernel", Kind::TwoPaths, 5501, bytes),
            case(
                "b_kernel_endpoint_to_ours",
                Kind::KernelEndpoint,
                5502,
                bytes,
            ),
            case("c_announce_to_kernel", Kind::Announce, 5503, bytes),
            case("e_mp_prio_kernel_sends", Kind::Prio, 5504, bytes),
            case(
                "d0_no_failure",
                Kind::Failure(Fault::None),
                5510,
                fail_bytes,
            ),
            case(
                "d1_blackhole_path1",
                Kind::Failure(Fault::Blackhole(1)),
                5511,
                fail_bytes,
            ),
            case(
                "d2_blackhole_path2",
                Kind::Failure(Fault::Blackhole(2)),
                5512,
                fail_bytes,
            ),
            case(
                "d4_flapping_path1",
                Kind::Failure(Fault::Flap(1)),
                5514,
                3 * fail_bytes,
            ),
            // Last: the link's IPv6 addresses do not come back with it.
            case(
                "d3_linkdown_path1",
                Kind::Failure(Fault::LinkDown(1)),
                5513,
                fail_bytes,
            ),
        ];

        let total = Instant::now();
        let mut failures = Vec::new();
        let mut skipped = 0;
        let mut baseline: Option<(f64, f64)> = None;
        for case in &cases {
            let what = format!("{:<27} {} bytes", case.name, case.bytes);
            if matches!(
                case.kind,
                Kind::Failure(Fault::Blackhole(_) | Fault::Flap(_))
            ) && !iptables
            {
                crate::common::skipped(&format!("{NAME}: {}", case.name), "no iptables");
                skipped += 1;
                continue;
            }
            match run_case(&topo, case) {
                Ok(done) => {
                    let vs = match (case.kind, baseline) {
                        (Kind::Failure(Fault::None), _) => {
                            baseline = Some((done.secs, done.wall));
                            String::new()
                        }
                        (Kind::Failure(_), Some((b, bw))) => format!(
                            " [took {:.2} s vs {b:.2} s without failure (+{:.2} s); wall {:.2} s vs {bw:.2} s]",
                            done.secs,
                            done.secs - b,
                            done.wall
                        ),
                        _ => String::new(),
                    };
                    log(format!("{what}: ok{vs}: {}", done.line));
                }
                Err(e) => {
                    log(format!(
                        "{what}: FAILED: {e}\n{NAME}: ^^^^ {} FAILED ^^^^",
                        case.name
                    ));
                    failures.push(format!("{what}: {}", e.lines().next().unwrap_or("")));
                }
            }
        }
        log(format!(
            "{} cases ({skipped} skipped, {} failed) in {:.1} s",
            cases.len(),
            failures.len(),
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
