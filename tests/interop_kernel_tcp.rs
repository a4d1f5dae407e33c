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

use std::io::Write;

fn skipped(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {reason}");
}

const NAME: &str = "kernel_tcp_interop";

#[test]
fn kernel_tcp_interop() {
    #[cfg(all(target_os = "linux", feature = "cli"))]
    interop::run();
    #[cfg(not(target_os = "linux"))]
    skipped(NAME, "the TUN interop test is Linux-only");
    #[cfg(all(target_os = "linux", not(feature = "cli")))]
    skipped(
        NAME,
        "built without the `cli` feature (no mptcp-tun binary)",
    );
}

#[cfg(all(target_os = "linux", feature = "cli"))]
mod interop {
    use super::{NAME, skipped};
    use std::fmt::Write as _;
    use std::io::{Read, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    const MPTCP_TUN: &str = env!("CARGO_BIN_EXE_mptcp-tun");
    const TOPOLOGY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/netns/topology.sh");
    const KPEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/kpeer.py");

    const DEFAULT_BYTES_V4: u64 = 100_000_000;
    const DEFAULT_BYTES_V6: u64 = 20_000_000;

    fn log(msg: impl AsRef<str>) {
        let _ = writeln!(std::io::stderr(), "{NAME}: {}", msg.as_ref());
    }

    // -----------------------------------------------------------------------------------------
    // Machine checks.
    // -----------------------------------------------------------------------------------------

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
            })
            .unwrap_or(false)
    }

    fn runs(cmd: &str, args: &[&str]) -> bool {
        Command::new(cmd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn env_bytes(var: &str, default: u64) -> u64 {
        match std::env::var(var) {
            Ok(v) => v
                .trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{var}={v:?} is not a byte count")),
            Err(_) => default,
        }
    }

    // -----------------------------------------------------------------------------------------
    // The topology, removed by name when dropped (also on panic).
    // -----------------------------------------------------------------------------------------

    struct Topology {
        prefix: String,
        tun: String,
    }

    impl Topology {
        fn script(&self, cmd: &str) -> std::process::Output {
            Command::new("bash")
                .arg(TOPOLOGY)
                .arg(cmd)
                .env("MPT_PREFIX", &self.prefix)
                .env("MPT_TUN", &self.tun)
                .stdin(Stdio::null())
                .output()
                .expect("run topology.sh")
        }

        fn ns_r(&self) -> String {
            format!("{}-r", self.prefix)
        }

        fn ns_s(&self) -> String {
            format!("{}-s", self.prefix)
        }

        /// S's veth of path 1 or 2.
        fn s_dev(&self, path: u8) -> String {
            format!("{}-s{path}", self.prefix)
        }
    }

    impl Drop for Topology {
        fn drop(&mut self) {
            let out = self.script("down");
            if !out.status.success() {
                log(format!(
                    "topology down failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }

    /// `ip netns exec NS ARGS...`: stdout and stderr together, whatever the exit status.
    fn in_ns(ns: &str, args: &[&str]) -> String {
        match Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("(cannot run {args:?} in {ns}: {e})"),
        }
    }

    /// (rx_bytes, tx_bytes) of a device in a namespace.
    fn dev_bytes(ns: &str, dev: &str) -> (u64, u64) {
        let read = |what: &str| {
            in_ns(
                ns,
                &["cat", &format!("/sys/class/net/{dev}/statistics/{what}")],
            )
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
        };
        (read("rx_bytes"), read("tx_bytes"))
    }

    // -----------------------------------------------------------------------------------------
    // A child process with its output collected, killed and reaped when dropped.
    // -----------------------------------------------------------------------------------------

    struct Proc {
        label: String,
        cmdline: String,
        child: Child,
        stdout: Arc<Mutex<String>>,
        stderr: Arc<Mutex<String>>,
        readers: Vec<JoinHandle<()>>,
        status: Option<ExitStatus>,
    }

    fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => into
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        })
    }

    impl Proc {
        /// Starts `ip netns exec NS ARGS...` (the command replaces `ip`, so the pid is its own).
        fn spawn(label: &str, ns: &str, args: &[String], env: &[(&str, &str)]) -> Proc {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let cmdline = format!("ip netns exec {ns} {}", args.join(" "));
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("start `{cmdline}`: {e}"));
            let stdout = Arc::new(Mutex::new(String::new()));
            let stderr = Arc::new(Mutex::new(String::new()));
            let readers = vec![
                collect(child.stdout.take().unwrap(), stdout.clone()),
                collect(child.stderr.take().unwrap(), stderr.clone()),
            ];
            Proc {
                label: label.to_string(),
                cmdline,
                child,
                stdout,
                stderr,
                readers,
                status: None,
            }
        }

        fn poll(&mut self) -> Option<ExitStatus> {
            if self.status.is_none() {
                self.status = self.child.try_wait().ok().flatten();
            }
            self.status
        }

        fn kill(&mut self) {
            if self.poll().is_none() {
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
            }
        }

        /// Waits for the output readers (the process has exited).
        fn finish(&mut self) {
            for r in self.readers.drain(..) {
                let _ = r.join();
            }
        }

        fn stdout(&self) -> String {
            self.stdout.lock().unwrap().clone()
        }

        fn report(&self) -> String {
            let status = match self.status {
                Some(s) => s.to_string(),
                None => "still running".to_string(),
            };
            let indent = |s: String| {
                if s.trim().is_empty() {
                    "    (empty)\n".to_string()
                } else {
                    s.lines().map(|l| format!("    {l}\n")).collect()
                }
            };
            format!(
                "  [{}] `{}`: {status}\n  stdout:\n{}  stderr:\n{}",
                self.label,
                self.cmdline,
                indent(self.stdout()),
                indent(self.stderr.lock().unwrap().clone())
            )
        }
    }

    impl Drop for Proc {
        fn drop(&mut self) {
            self.kill();
            self.finish();
        }
    }

    // -----------------------------------------------------------------------------------------
    // The cases.
    // -----------------------------------------------------------------------------------------

    #[derive(Clone, Copy, PartialEq)]
    enum Role {
        /// Our client connects to the kernel server.
        OursClient,
        /// The kernel client connects to our server.
        OursServer,
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

    fn sock(addr: &str, port: u16) -> String {
        if addr.contains(':') {
            format!("[{addr}]:{port}")
        } else {
            format!("{addr}:{port}")
        }
    }

    /// The value of `"key":` in a flat JSON line, as raw text (numbers, true/false/null).
    fn json_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
        let pat = format!("\"{key}\":");
        let start = json.find(&pat)? + pat.len();
        let rest = &json[start..];
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim())
    }

    /// Waits until the TUN has a reader (our process opened it), at most `limit`.
    fn wait_tun_open(ns_r: &str, tun: &str, ours: &mut Proc, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let carrier = format!("/sys/class/net/{tun}/carrier");
        while Instant::now() < deadline {
            if ours.poll().is_some() {
                return false;
            }
            if in_ns(ns_r, &["cat", &carrier]).trim() == "1" {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn wait_file(path: &Path, peer: &mut Proc, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if path.exists() {
                return true;
            }
            if peer.poll().is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn run_case(topo: &Topology, case: &Case, work: &Path) -> Result<Measured, String> {
        let (ns_r, ns_s) = (topo.ns_r(), topo.ns_s());
        let n = case.bytes.to_string();
        // A floor of 8 Mbit/s plus a minute: generous for a debug build, finite for a hang.
        let limit_secs = 60 + case.bytes / 1_000_000;
        let ours_dir = if case.ours_sends { "--send" } else { "--recv" };
        let kernel_dir = if case.ours_sends { "recv" } else { "send" };
        let ready = work.join(format!("{}.ready", case.name));
        let _ = std::fs::remove_file(&ready);

        let mut ours_args: Vec<String> = vec![MPTCP_TUN.into()];
        let mut kernel_args: Vec<String> = vec!["python3".into(), KPEER.into()];
        match case.role {
            Role::OursClient => {
                ours_args.extend(["client".into(), "--connect".into()]);
                ours_args.push(sock(case.kernel_addr, case.port));
                kernel_args.extend(["server".into(), case.kernel_addr.into()]);
                kernel_args.extend([case.port.to_string(), kernel_dir.into(), n.clone()]);
                kernel_args.extend(["--ready-file".into(), ready.display().to_string()]);
            }
            Role::OursServer => {
                ours_args.extend(["server".into(), "--port".into(), case.port.to_string()]);
                kernel_args.extend(["client".into(), case.ours_addr.into()]);
                kernel_args.extend([case.port.to_string(), kernel_dir.into(), n.clone()]);
                kernel_args.extend(["--bind".into(), case.kernel_addr.into()]);
            }
        }
        ours_args.extend([
            "--tun".into(),
            topo.tun.clone(),
            "--addr".into(),
            case.ours_addr.into(),
            ours_dir.into(),
            n.clone(),
            "--json".into(),
            "--timeout".into(),
            limit_secs.to_string(),
        ]);
        kernel_args.extend([
            "--timeout".into(),
            "60".into(),
            "--deadline".into(),
            limit_secs.to_string(),
        ]);
        let kpeer_env = [("KPEER_PROTO", "6"), ("PYTHONUNBUFFERED", "1")];

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

        let started = Instant::now();
        let (mut ours, mut kernel);
        match case.role {
            Role::OursClient => {
                kernel = Proc::spawn("kernel server (S)", &ns_s, &kernel_args, &kpeer_env);
                if !wait_file(&ready, &mut kernel, Duration::from_secs(30)) {
                    kernel.kill();
                    kernel.finish();
                    return Err(format!(
                        "the kernel server did not start listening\n{}",
                        kernel.report()
                    ));
                }
                ours = Proc::spawn("our client (R)", &ns_r, &ours_args, &[]);
            }
            Role::OursServer => {
                ours = Proc::spawn("our server (R)", &ns_r, &ours_args, &[]);
                if !wait_tun_open(&ns_r, &topo.tun, &mut ours, Duration::from_secs(30)) {
                    ours.kill();
                    ours.finish();
                    return Err(format!(
                        "our server did not open the TUN\n{}",
                        ours.report()
                    ));
                }
                kernel = Proc::spawn("kernel client (S)", &ns_s, &kernel_args, &kpeer_env);
            }
        }

        // Wait for both; once one side fails, give the other a few seconds, then stop it.
        let deadline = started + Duration::from_secs(limit_secs + 15);
        let mut grace: Option<Instant> = None;
        let mut hung = String::new();
        loop {
            let (o, k) = (ours.poll(), kernel.poll());
            if o.is_some() && k.is_some() {
                break;
            }
            let failed = o.is_some_and(|s| !s.success()) || k.is_some_and(|s| !s.success());
            if failed && grace.is_none() {
                grace = Some(Instant::now() + Duration::from_secs(5));
            }
            let now = Instant::now();
            if now > deadline || grace.is_some_and(|g| now > g) {
                let _ = write!(
                    hung,
                    "  sockets when stopped (ss -tni):\n  -- {ns_s}:\n{}  -- {ns_r}:\n{}",
                    in_ns(&ns_s, &["ss", "-tnia"]),
                    in_ns(&ns_r, &["ss", "-tnia"])
                );
                ours.kill();
                kernel.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let wall = started.elapsed();
        ours.finish();
        kernel.finish();
        let after = dev_bytes(&ns_s, &s_dev);
        if let Some(c) = capture.as_mut() {
            std::thread::sleep(Duration::from_millis(200));
            c.kill();
            c.finish();
        }

        let mut problems = Vec::new();
        if !hung.is_empty() {
            problems.push(format!(
                "timed out or stopped after {:.1} s (limit {limit_secs} s)",
                wall.as_secs_f64()
            ));
        }
        for p in [&ours, &kernel] {
            match p.status {
                Some(s) if s.success() => {}
                Some(s) => problems.push(format!("{} exited with {s}", p.label)),
                None => problems.push(format!("{} did not exit", p.label)),
            }
        }

        // Our JSON: the last line of stdout.
        let ours_out = ours.stdout();
        let json = ours_out
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        let mut ours_mbit = 0.0;
        let mut secs = 0.0;
        if !json.starts_with('{') {
            problems.push("our side printed no JSON line".into());
        } else {
            match json_field(&json, "bytes") {
                Some(b) if b == n => {}
                other => problems.push(format!("our JSON bytes = {other:?}, expected {n}")),
            }
            ours_mbit = json_field(&json, "mbit_s")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            secs = json_field(&json, "secs")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            // The kernel peer speaks plain TCP: an MPTCP connection would be a bug.
            if let Some(mp) = json_field(&json, "mptcp")
                && mp != "false"
            {
                problems.push(format!(
                    "our JSON says \"mptcp\":{mp} with a plain TCP peer"
                ));
            }
        }

        // The kernel peer's result line.
        let kernel_out = kernel.stdout();
        let want = if case.ours_sends {
            format!("kpeer: verified {n} bytes ")
        } else {
            format!("kpeer: sent {n} bytes ")
        };
        let kernel_line = kernel_out.lines().find(|l| l.starts_with(&want));
        let kernel_mbit = kernel_line
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if kernel_line.is_none() {
            problems.push(format!("the kernel peer did not print {:?}", want.trim()));
        }

        // The bytes crossed S's veth of the expected path, in the expected direction.
        let moved = if case.ours_sends {
            after.0.saturating_sub(before.0)
        } else {
            after.1.saturating_sub(before.1)
        };
        if problems.is_empty() && moved < case.bytes {
            problems.push(format!(
                "only {moved} bytes crossed {s_dev} ({}), expected at least {}",
                if case.ours_sends { "rx" } else { "tx" },
                case.bytes
            ));
        }

        if problems.is_empty() {
            Ok(Measured {
                ours_mbit,
                kernel_mbit,
                secs,
                wall,
            })
        } else {
            let mut text = format!("{}\n", problems.join("; "));
            text.push_str(&ours.report());
            text.push_str(&kernel.report());
            text.push_str(&hung);
            Err(text)
        }
    }

    pub fn run() {
        if !is_root() {
            return skipped(NAME, "not root");
        }
        if !runs("ip", &["-V"]) {
            return skipped(NAME, "no `ip` command (install iproute2)");
        }
        if !Path::new("/dev/net/tun").exists() {
            return skipped(NAME, "no /dev/net/tun");
        }
        if !runs("python3", &["-c", "import socket"]) {
            return skipped(NAME, "no python3");
        }
        let v4_bytes = env_bytes("INTEROP_BYTES", DEFAULT_BYTES_V4);
        let v6_bytes = env_bytes("INTEROP_BYTES_V6", DEFAULT_BYTES_V6);

        let prefix = format!("mki{}", std::process::id() % 1_000_000);
        let topo = Topology {
            tun: format!("{prefix}t"),
            prefix,
        };
        let out = topo.script("up");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(line) = stdout.lines().find(|l| l.starts_with("skipped:")) {
            return skipped(NAME, line.trim_start_matches("skipped:").trim());
        }
        assert!(
            out.status.success(),
            "topology up failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // topology.sh only notes a sysctl it could not set; without forwarding in R nothing
        // reaches the TUN and every case would just time out.
        for key in ["ipv4/ip_forward", "ipv6/conf/all/forwarding"] {
            let value = in_ns(&topo.ns_r(), &["cat", &format!("/proc/sys/net/{key}")]);
            assert_eq!(
                value.trim(),
                "1",
                "{key} is not enabled in {}; topology up said:\n{stdout}{}",
                topo.ns_r(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let work = std::env::temp_dir().join(format!("{}-work", topo.prefix));
        std::fs::create_dir_all(&work).expect("a scratch directory");

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
            match run_case(&topo, case, &work) {
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
        let _ = std::fs::remove_dir_all(&work);
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
