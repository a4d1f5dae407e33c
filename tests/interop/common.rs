//! Helpers shared by the root-only kernel interop tests (`interop_kernel_tcp.rs`,
//! `interop_kernel_mptcp.rs`), included by each with `#[path = "interop/common.rs"] mod common;`.
//!
//! The netns topology of `tests/netns/topology.sh` (removed by name when dropped), the machine
//! checks that turn into "skipped: <reason>", a child-process runner that collects output and
//! never leaks a process, the run of one transfer between `mptcp-tun` in R and
//! `tests/interop/kpeer.py` in S, and flat-JSON field extraction.

// Each test uses a different subset.
#![allow(dead_code)]

use std::io::Write;

/// Prints "TEST: skipped: REASON" on stderr.
pub fn skipped(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {reason}");
}

#[cfg(all(target_os = "linux", feature = "cli"))]
pub use imp::*;

#[cfg(all(target_os = "linux", feature = "cli"))]
mod imp {
    use super::skipped;
    use std::fmt::Write as _;
    use std::io::{Read, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    pub const MPTCP_TUN: &str = env!("CARGO_BIN_EXE_mptcp-tun");
    pub const TOPOLOGY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/netns/topology.sh");
    pub const KPEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/kpeer.py");

    pub fn log(test: &str, msg: impl AsRef<str>) {
        let _ = writeln!(std::io::stderr(), "{test}: {}", msg.as_ref());
    }

    // -----------------------------------------------------------------------------------------
    // Machine checks.
    // -----------------------------------------------------------------------------------------

    pub fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
            })
            .unwrap_or(false)
    }

    pub fn runs(cmd: &str, args: &[&str]) -> bool {
        Command::new(cmd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn env_bytes(var: &str, default: u64) -> u64 {
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

    pub struct Topology {
        pub test: &'static str,
        pub prefix: String,
        pub tun: String,
        /// A scratch directory (ready files), removed with the topology.
        pub work: PathBuf,
        /// Environment of every topology.sh call (RATE1, MPT_PATH_BY, ...).
        pub env: Vec<(String, String)>,
    }

    impl Topology {
        pub fn script(&self, cmd: &str) -> std::process::Output {
            Command::new("bash")
                .arg(TOPOLOGY)
                .arg(cmd)
                .env("MPT_PREFIX", &self.prefix)
                .env("MPT_TUN", &self.tun)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .output()
                .expect("run topology.sh")
        }

        /// `topology.sh path-by peer|stack` (which path a crossed address pair takes);
        /// Err(output) when it fails.
        pub fn path_by(&self, mode: &str) -> Result<(), String> {
            let out = Command::new("bash")
                .arg(TOPOLOGY)
                .args(["path-by", mode])
                .env("MPT_PREFIX", &self.prefix)
                .env("MPT_TUN", &self.tun)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("run topology.sh path-by {mode}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "topology.sh path-by {mode} failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        }

        /// R's veth of path 1 or 2.
        pub fn r_dev(&self, path: u8) -> String {
            format!("{}-r{path}", self.prefix)
        }

        pub fn ns_r(&self) -> String {
            format!("{}-r", self.prefix)
        }

        pub fn ns_s(&self) -> String {
            format!("{}-s", self.prefix)
        }

        /// S's veth of path 1 or 2.
        pub fn s_dev(&self, path: u8) -> String {
            format!("{}-s{path}", self.prefix)
        }
    }

    impl Drop for Topology {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.work);
            let out = self.script("down");
            if !out.status.success() {
                log(
                    self.test,
                    format!(
                        "topology down failed: {}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                );
            }
        }
    }

    /// The machine checks, then the topology with prefix `PREFIX_BASE` + pid; `None` (after
    /// printing "skipped: <reason>") when the machine cannot run the test.
    pub fn setup(test: &'static str, prefix_base: &str) -> Option<Topology> {
        setup_with(test, prefix_base, &[])
    }

    /// [`setup`] with environment for topology.sh (e.g. `RATE1`, `RATE2`, `MPT_PATH_BY`).
    pub fn setup_with(
        test: &'static str,
        prefix_base: &str,
        env: &[(&str, &str)],
    ) -> Option<Topology> {
        let skip = |reason: &str| {
            skipped(test, reason);
            None
        };
        if !is_root() {
            return skip("not root");
        }
        if !runs("ip", &["-V"]) {
            return skip("no `ip` command (install iproute2)");
        }
        if !Path::new("/dev/net/tun").exists() {
            return skip("no /dev/net/tun");
        }
        if !runs("python3", &["-c", "import socket"]) {
            return skip("no python3");
        }
        let prefix = format!("{prefix_base}{}", std::process::id() % 1_000_000);
        let topo = Topology {
            test,
            tun: format!("{prefix}t"),
            work: std::env::temp_dir().join(format!("{prefix}-work")),
            prefix,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let out = topo.script("up");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(line) = stdout.lines().find(|l| l.starts_with("skipped:")) {
            return skip(line.trim_start_matches("skipped:").trim());
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
        std::fs::create_dir_all(&topo.work).expect("a scratch directory");
        Some(topo)
    }

    /// `ip netns exec NS ARGS...` that must succeed; Err(its output) when it fails.
    pub fn ns_cmd(ns: &str, args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {args:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{}` failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// How much MIB counter `key` grew between two `mib` snapshots.
    pub fn mib_delta(
        before: &std::collections::HashMap<String, u64>,
        after: &std::collections::HashMap<String, u64>,
        key: &str,
    ) -> i64 {
        let get =
            |m: &std::collections::HashMap<String, u64>| m.get(key).copied().unwrap_or(0) as i64;
        get(after) - get(before)
    }

    /// `ip netns exec NS ARGS...`: stdout and stderr together, whatever the exit status.
    pub fn in_ns(ns: &str, args: &[&str]) -> String {
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
    pub fn dev_bytes(ns: &str, dev: &str) -> (u64, u64) {
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

    pub struct Proc {
        pub label: String,
        cmdline: String,
        child: Child,
        stdout: Arc<Mutex<String>>,
        stderr: Arc<Mutex<String>>,
        readers: Vec<JoinHandle<()>>,
        pub status: Option<ExitStatus>,
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
        pub fn spawn(label: &str, ns: &str, args: &[String], env: &[(&str, &str)]) -> Proc {
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

        pub fn poll(&mut self) -> Option<ExitStatus> {
            if self.status.is_none() {
                self.status = self.child.try_wait().ok().flatten();
            }
            self.status
        }

        pub fn kill(&mut self) {
            if self.poll().is_none() {
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
            }
        }

        /// Waits for the output readers (the process has exited).
        pub fn finish(&mut self) {
            for r in self.readers.drain(..) {
                let _ = r.join();
            }
        }

        pub fn stdout(&self) -> String {
            self.stdout.lock().unwrap().clone()
        }

        pub fn stderr(&self) -> String {
            self.stderr.lock().unwrap().clone()
        }

        pub fn report(&self) -> String {
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
    // One transfer: mptcp-tun in R against kpeer.py in S.
    // -----------------------------------------------------------------------------------------

    #[derive(Clone, Copy, PartialEq, Debug)]
    pub enum Role {
        /// Our client connects to the kernel server.
        OursClient,
        /// The kernel client connects to our server.
        OursServer,
    }

    /// What to run.
    pub struct Transfer<'a> {
        pub name: &'a str,
        pub role: Role,
        /// Does our side send (else it receives)?
        pub ours_sends: bool,
        /// Our stack addresses (the first carries the connection) and the kernel peer's.
        pub ours_addrs: &'a [&'a str],
        pub kernel_addr: &'a str,
        pub port: u16,
        pub bytes: u64,
        /// Further arguments of mptcp-tun (e.g. `--checksum`).
        pub ours_extra: &'a [&'a str],
        /// KPEER_PROTO (6 = TCP, 262 = MPTCP).
        pub kpeer_proto: &'a str,
    }

    /// What a transfer left: both processes (exited or killed), the problems found by the
    /// checks every case shares, and what was measured.
    pub struct Outcome {
        pub ours: Proc,
        pub kernel: Proc,
        /// Socket dumps when a side was stopped, else empty.
        pub hung: String,
        pub wall: Duration,
        pub limit_secs: u64,
        /// Our JSON line ("" when none).
        pub json: String,
        pub ours_mbit: f64,
        pub secs: f64,
        pub kernel_mbit: f64,
        pub problems: Vec<String>,
    }

    impl Outcome {
        /// The problems, both sides' output and the socket dumps.
        pub fn failure_text(&self) -> String {
            let mut text = format!("{}\n", self.problems.join("; "));
            text.push_str(&self.ours.report());
            text.push_str(&self.kernel.report());
            text.push_str(&self.hung);
            text
        }
    }

    pub fn sock(addr: &str, port: u16) -> String {
        if addr.contains(':') {
            format!("[{addr}]:{port}")
        } else {
            format!("{addr}:{port}")
        }
    }

    /// The value of `"key":` in a flat JSON line, as raw text (numbers, true/false/null); the
    /// first occurrence.
    pub fn json_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
        let pat = format!("\"{key}\":");
        let start = json.find(&pat)? + pat.len();
        let rest = &json[start..];
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim())
    }

    /// The subflow objects of our JSON line (`"subflows":[{...},{...}]`), each as its text.
    pub fn json_subflows(json: &str) -> Vec<&str> {
        let Some(start) = json.find("\"subflows\":[") else {
            return Vec::new();
        };
        let rest = &json[start + "\"subflows\":[".len()..];
        let end = rest.find(']').unwrap_or(rest.len());
        rest[..end]
            .split("},{")
            .map(|s| s.trim_matches(['{', '}']))
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The kernel's MIB counters in a namespace (`nstat -az`: absolute values).
    pub fn mib(ns: &str) -> std::collections::HashMap<String, u64> {
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

    /// One `MPTcpExt` counter of a namespace from /proc/net/netstat (cheaper than nstat, for
    /// polling); 0 when absent.
    pub fn mptcp_counter(ns: &str, name: &str) -> u64 {
        let text = in_ns(ns, &["cat", "/proc/net/netstat"]);
        let mut lines = text.lines().filter(|l| l.starts_with("MPTcpExt:"));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            return 0;
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the TUN has a reader (our process opened it), at most `limit`.
    pub fn wait_tun_open(ns_r: &str, tun: &str, ours: &mut Proc, limit: Duration) -> bool {
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

    pub fn wait_file(path: &Path, peer: &mut Proc, limit: Duration) -> bool {
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

    /// Options of [`run_transfer_with`].
    #[derive(Default)]
    pub struct RunOpts<'a> {
        /// Seconds before the transfer is given up (default: 60 + 1 s per MB).
        pub limit_secs: Option<u64>,
        /// Called about every 20 ms while both sides run, with the time since the start.
        pub tick: Option<&'a mut dyn FnMut(Duration)>,
    }

    /// Runs one transfer and checks what every case checks: both exit codes, the kernel
    /// peer's verification line, our JSON line and its `"bytes"`. `Err` when a side did not
    /// even start (with its output).
    pub fn run_transfer(topo: &Topology, t: &Transfer) -> Result<Outcome, String> {
        run_transfer_with(topo, t, RunOpts::default())
    }

    /// [`run_transfer`] with a time limit and a hook called while the transfer runs.
    pub fn run_transfer_with(
        topo: &Topology,
        t: &Transfer,
        mut opts: RunOpts,
    ) -> Result<Outcome, String> {
        let (ns_r, ns_s) = (topo.ns_r(), topo.ns_s());
        let n = t.bytes.to_string();
        // A floor of 8 Mbit/s plus a minute: generous for a debug build, finite for a hang.
        let limit_secs = opts.limit_secs.unwrap_or(60 + t.bytes / 1_000_000);
        let ours_dir = if t.ours_sends { "--send" } else { "--recv" };
        let kernel_dir = if t.ours_sends { "recv" } else { "send" };
        let ready = topo.work.join(format!("{}.ready", t.name));
        let _ = std::fs::remove_file(&ready);

        let mut ours_args: Vec<String> = vec![MPTCP_TUN.into()];
        let mut kernel_args: Vec<String> = vec!["python3".into(), KPEER.into()];
        match t.role {
            Role::OursClient => {
                ours_args.extend(["client".into(), "--connect".into()]);
                ours_args.push(sock(t.kernel_addr, t.port));
                kernel_args.extend(["server".into(), t.kernel_addr.into()]);
                kernel_args.extend([t.port.to_string(), kernel_dir.into(), n.clone()]);
                kernel_args.extend(["--ready-file".into(), ready.display().to_string()]);
            }
            Role::OursServer => {
                ours_args.extend(["server".into(), "--port".into(), t.port.to_string()]);
                kernel_args.extend(["client".into(), t.ours_addrs[0].into()]);
                kernel_args.extend([t.port.to_string(), kernel_dir.into(), n.clone()]);
                kernel_args.extend(["--bind".into(), t.kernel_addr.into()]);
            }
        }
        ours_args.extend(["--tun".into(), topo.tun.clone()]);
        for a in t.ours_addrs {
            ours_args.extend(["--addr".into(), a.to_string()]);
        }
        ours_args.extend([
            ours_dir.into(),
            n.clone(),
            "--json".into(),
            "--timeout".into(),
            limit_secs.to_string(),
        ]);
        ours_args.extend(t.ours_extra.iter().map(|s| s.to_string()));
        kernel_args.extend([
            "--timeout".into(),
            "60".into(),
            "--deadline".into(),
            limit_secs.to_string(),
        ]);
        let kpeer_env = [("KPEER_PROTO", t.kpeer_proto), ("PYTHONUNBUFFERED", "1")];

        let started = Instant::now();
        let (mut ours, mut kernel);
        match t.role {
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
            if let Some(tick) = opts.tick.as_mut()
                && grace.is_none()
            {
                tick(started.elapsed());
            }
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
        }

        // The kernel peer's result line.
        let kernel_out = kernel.stdout();
        let want = if t.ours_sends {
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

        Ok(Outcome {
            ours,
            kernel,
            hung,
            wall,
            limit_secs,
            json,
            ours_mbit,
            secs,
            kernel_mbit,
            problems,
        })
    }
}
