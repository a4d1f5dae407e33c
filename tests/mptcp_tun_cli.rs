//! `mptcp-tun`'s misuse paths: each wrong command line or machine set-up gets a message that
//! names the flag or the cause and says what to do, and the exit status of the binary's header
//! (2 usage, 3 device/permission/host set-up, 1 refused, 4 unreachable).
//!
//! The usage errors, `--help`, an unwritable `--pcap` and an `--addr` the kernel owns run
//! anywhere. The device cases need root and network namespaces (each test makes its own,
//! named `mtcli-*`, removed when it ends) and print "skipped: <reason>" elsewhere; running
//! without root is tested by dropping to `nobody` with `setpriv` when root, or directly when
//! not.

#![cfg(feature = "cli")]

use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_mptcp-tun");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run mptcp-tun")
}

/// Runs the binary, checks its exit status, and returns its stderr.
fn expect(args: &[&str], code: i32) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "mptcp-tun {args:?}: stdout {:?} stderr {stderr:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

fn usage(args: &[&str], needles: &[&str]) {
    let err = expect(args, 2);
    for n in needles {
        assert!(err.contains(n), "mptcp-tun {args:?}: {err:?} lacks {n:?}");
    }
    assert!(err.contains("try '--help'"), "no hint to --help: {err:?}");
}

const CLIENT: &[&str] = &[
    "client",
    "--tun",
    "mtcli0",
    "--addr",
    "198.18.101.1",
    "--connect",
    "198.18.1.2:5201",
];
const SERVER: &[&str] = &[
    "server",
    "--tun",
    "mtcli0",
    "--addr",
    "198.18.101.1",
    "--port",
    "5201",
];

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

#[test]
fn help_explains_every_flag_and_the_exit_codes() {
    for mode in ["client", "server"] {
        let out = run(&[mode, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout);
        let mut flags = vec![
            "--tun",
            "--addr",
            "--send",
            "--recv",
            "--checksum",
            "--scheduler",
            "--cc",
            "--pcap",
            "--json",
            "--plain-tcp",
            "--mtu",
            "--timeout",
        ];
        if mode == "client" {
            flags.extend([
                "--connect",
                "--connect-timeout",
                "--backup",
                "--backup-after",
            ]);
        } else {
            flags.extend(["--port", "--announce"]);
        }
        for f in flags {
            assert!(help.contains(f), "{mode} --help lacks {f}");
        }
        assert!(
            help.contains("Exit codes"),
            "{mode} --help lacks the exit codes"
        );
        assert!(
            help.contains("roundrobin"),
            "{mode} --help lacks the schedulers"
        );
    }
    assert_eq!(run(&["--help"]).status.code(), Some(0));
    assert_eq!(run(&[]).status.code(), Some(2));
}

#[test]
fn usage_errors_name_the_flag_and_exit_2() {
    usage(CLIENT, &["--send BYTES or --recv BYTES"]);
    usage(
        &with(CLIENT, &["--send", "1", "--recv", "1"]),
        &["--send", "--recv"],
    );
    usage(&with(CLIENT, &["--sned", "1"]), &["--sned", "--send"]);
    usage(
        &with(CLIENT, &["--send", "1", "--scheduler", "fastest"]),
        &["fastest", "minrtt"],
    );
    usage(
        &[
            "client",
            "--tun",
            "mtcli0",
            "--addr",
            "2001:db8:101::1",
            "--connect",
            "198.18.1.2:5201",
            "--send",
            "1",
        ],
        &["--connect 198.18.1.2:5201 is IPv4", "every --addr is IPv6"],
    );
    usage(
        &with(CLIENT, &["--send", "1", "--backup", "198.18.102.1"]),
        &[
            "--backup 198.18.102.1 is not one of the --addr",
            "add --addr 198.18.102.1",
        ],
    );
    usage(
        &with(
            CLIENT,
            &[
                "--addr",
                "198.18.102.1",
                "--send",
                "1",
                "--backup",
                "198.18.101.1",
            ],
        ),
        &[
            "--backup 198.18.101.1 is the initial subflow's address",
            "--backup-after",
        ],
    );
    usage(
        &with(CLIENT, &["--send", "1", "--backup-after", "1"]),
        &["--backup-after needs --backup"],
    );
    usage(
        &with(
            CLIENT,
            &[
                "--addr",
                "198.18.102.1",
                "--send",
                "1",
                "--backup",
                "198.18.102.1",
                "--backup-after",
                "inf",
            ],
        ),
        &["--backup-after takes a number of seconds"],
    );
    usage(
        &with(
            CLIENT,
            &["--send", "1", "--plain-tcp", "--backup", "198.18.101.1"],
        ),
        &["--plain-tcp", "--backup"],
    );
    usage(
        &with(CLIENT, &["--send", "1", "--plain-tcp", "--checksum"]),
        &["--plain-tcp", "--checksum"],
    );
    usage(
        &with(CLIENT, &["--send", "1", "--connect-timeout", "0"]),
        &["--connect-timeout"],
    );
    usage(
        &with(CLIENT, &["--send", "1", "--timeout", "0"]),
        &["--timeout"],
    );
    usage(
        &with(CLIENT, &["--send", "1", "--addr", "198.18.101.1"]),
        &["--addr 198.18.101.1 is given twice"],
    );
    usage(
        &[
            "client",
            "--tun",
            "mtcli0",
            "--addr",
            "0.0.0.0",
            "--connect",
            "198.18.1.2:5201",
            "--send",
            "1",
        ],
        &["--addr 0.0.0.0", "unicast"],
    );
    usage(
        &[
            "client",
            "--tun",
            "mtcli0",
            "--addr",
            "127.0.0.2",
            "--connect",
            "198.18.1.2:5201",
            "--send",
            "1",
        ],
        &["--addr 127.0.0.2", "loopback"],
    );
    usage(
        &[
            "client",
            "--tun",
            "mtcli0",
            "--addr",
            "198.18.101.1",
            "--connect",
            "198.18.1.2:0",
            "--send",
            "1",
        ],
        &["port 0"],
    );
    usage(
        &[
            "client",
            "--tun",
            "mtcli0",
            "--addr",
            "198.18.101.1",
            "--connect",
            "198.18.101.1:80",
            "--send",
            "1",
        ],
        &["one of our own --addr"],
    );
    usage(
        &[
            "client",
            "--tun",
            "mtcli0",
            "--addr",
            "198.18.101.1",
            "--connect",
            "198.18.1.2",
            "--send",
            "1",
        ],
        &["--connect"],
    );
    usage(
        &[
            "client",
            "--tun",
            "an-interface-name-too-long",
            "--addr",
            "198.18.101.1",
            "--connect",
            "198.18.1.2:5201",
            "--send",
            "1",
        ],
        &["--tun", "1 to 15 characters"],
    );
    usage(
        &[
            "client",
            "--tun",
            "a/b",
            "--addr",
            "198.18.101.1",
            "--connect",
            "198.18.1.2:5201",
            "--send",
            "1",
        ],
        &["--tun \"a/b\"", "not a valid interface name"],
    );
    usage(
        &[
            "client",
            "--tun",
            "mtcli0",
            "--addr",
            "2001:db8:101::1",
            "--connect",
            "[2001:db8:1::2]:5201",
            "--send",
            "1",
            "--mtu",
            "1000",
        ],
        &["--mtu 1000", "1280"],
    );
    usage(
        &with(SERVER, &["--recv", "1", "--announce", "198.18.102.1"]),
        &[
            "--announce 198.18.102.1 is not one of the --addr",
            "add --addr 198.18.102.1",
        ],
    );
    usage(
        &[
            "server",
            "--tun",
            "mtcli0",
            "--addr",
            "198.18.101.1",
            "--port",
            "0",
            "--recv",
            "1",
        ],
        &["--port 0"],
    );
    usage(
        &with(SERVER, &["--recv", "1", "--connect", "198.18.1.2:5201"]),
        &["--connect"],
    );
}

#[test]
fn unwritable_pcap_exits_3_before_the_tun() {
    let err = expect(
        &with(
            CLIENT,
            &["--send", "1", "--pcap", "/nonexistent-dir/mtcli/x.pcap"],
        ),
        3,
    );
    assert!(
        err.contains("--pcap") && err.contains("cannot create"),
        "{err:?}"
    );
}

/// An address of one of this host's interfaces, if the host has one besides loopback (the
/// source the kernel picks towards a documentation address; nothing is sent).
fn kernel_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn an_address_the_kernel_owns_exits_3() {
    let nonlocal = std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind")
        .is_ok_and(|v| v.trim() != "0");
    let Some(ip) = kernel_address().filter(|_| !nonlocal) else {
        eprintln!(
            "an_address_the_kernel_owns_exits_3: skipped: no non-loopback IPv4 address (no default route) or ip_nonlocal_bind=1"
        );
        return;
    };
    let ip = ip.to_string();
    let err = expect(
        &[
            "client",
            "--tun",
            "mtcli0",
            "--addr",
            &ip,
            "--connect",
            "192.0.2.1:5201",
            "--send",
            "1",
        ],
        3,
    );
    assert!(
        err.contains(&format!("--addr {ip} is in use")) && err.contains("route it into the TUN"),
        "{err:?}"
    );
}

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

#[test]
fn without_root_the_tun_error_says_what_to_do() {
    let mut cmd = if is_root() {
        if !runs("setpriv", &["--version"]) {
            eprintln!(
                "without_root_the_tun_error_says_what_to_do: skipped: root and no setpriv to drop privileges"
            );
            return;
        }
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            BIN,
        ]);
        c
    } else {
        Command::new(BIN)
    };
    let out = cmd
        .args(&with(CLIENT, &["--send", "1"])[..])
        .stdin(Stdio::null())
        .output()
        .expect("run mptcp-tun");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err:?}");
    assert!(
        err.contains("cannot open TUN device \"mtcli0\"")
            && (err.contains("CAP_NET_ADMIN") || err.contains("/dev/net/tun")),
        "{err:?}"
    );
}

/// A network namespace of this test's own, removed on drop.
struct Netns(String);

impl Netns {
    fn new(test: &str, name: &str) -> Option<Netns> {
        if !is_root() {
            eprintln!("{test}: skipped: not root");
            return None;
        }
        if !runs("ip", &["-V"]) {
            eprintln!("{test}: skipped: no 'ip' command (iproute2)");
            return None;
        }
        let _ = runs("ip", &["netns", "del", name]);
        if !runs("ip", &["netns", "add", name]) {
            eprintln!("{test}: skipped: cannot create network namespaces");
            return None;
        }
        let ns = Netns(name.to_string());
        ns.ip(&["link", "set", "lo", "up"]);
        Some(ns)
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.0];
        all.extend(args);
        assert!(runs("ip", &all), "ip {all:?} failed");
    }

    fn bin(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, BIN])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run mptcp-tun")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = runs("ip", &["netns", "del", &self.0]);
    }
}

fn code_and_err(out: &Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn device_errors_exit_3() {
    let test = "device_errors_exit_3";
    let Some(ns) = Netns::new(test, "mtcli-dev") else {
        return;
    };
    let args = |tun: &'static str| {
        vec![
            "client",
            "--tun",
            tun,
            "--addr",
            "198.18.101.1",
            "--connect",
            "198.18.1.2:5201",
            "--send",
            "1",
            "--connect-timeout",
            "1",
        ]
    };
    // Not a TUN device: a veth of the same name.
    if runs(
        "ip",
        &[
            "-n", &ns.0, "link", "add", "mtcliv0", "type", "veth", "peer", "name", "mtcliv1",
        ],
    ) {
        let (code, err) = code_and_err(&ns.bin(&args("mtcliv0")));
        assert_eq!(code, Some(3), "{err:?}");
        assert!(
            err.contains("cannot open TUN device \"mtcliv0\""),
            "{err:?}"
        );
    } else {
        eprintln!("{test}: veth case skipped: no veth support");
    }
    // A TUN device another process holds: a first server holds it, a second one is refused.
    ns.ip(&["tuntap", "add", "dev", "mtclit0", "mode", "tun"]);
    let mut first = Command::new("ip")
        .args(["netns", "exec", &ns.0, BIN])
        .args([
            "server",
            "--tun",
            "mtclit0",
            "--addr",
            "198.18.101.1",
            "--port",
            "5201",
            "--recv",
            "1",
            "--timeout",
            "20",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the first server");
    // It holds the device once it says it listens (printed after the TUN is open); the
    // carrier of the link is not a reliable sign (it raced in CI).
    let stderr = first.stderr.take().expect("the first server's stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening on port") {
                let _ = tx.send(());
            }
        }
    });
    let held = rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok();
    let second = ns.bin(&args("mtclit0"));
    let _ = first.kill();
    let _ = first.wait();
    assert!(held, "the first server never opened the TUN");
    let (code, err) = code_and_err(&second);
    assert_eq!(code, Some(3), "{err:?}");
    assert!(
        err.contains("Device or resource busy") && err.contains("another process holds"),
        "{err:?}"
    );
    // No /dev/net/tun (an empty read-only /dev/net in a mount namespace of its own).
    if runs("unshare", &["--version"]) {
        let script = format!(
            "mount -t tmpfs -o ro none /dev/net && exec {BIN} {}",
            args("mtclit1").join(" ")
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.0, "unshare", "-m", "sh", "-c", &script])
            .stdin(Stdio::null())
            .output()
            .expect("run unshare");
        let (code, err) = code_and_err(&out);
        if err.contains("mount") && code != Some(3) {
            eprintln!("{test}: missing-TUN case skipped: cannot mount here: {err}");
        } else {
            assert_eq!(code, Some(3), "{err:?}");
            assert!(
                err.contains("no /dev/net/tun") && err.contains("modprobe tun"),
                "{err:?}"
            );
        }
    } else {
        eprintln!("{test}: missing-TUN case skipped: no unshare");
    }
}

#[test]
fn refused_exits_1_and_unreachable_exits_4() {
    let test = "refused_exits_1_and_unreachable_exits_4";
    let Some(ns) = Netns::new(test, "mtcli-peer") else {
        return;
    };
    // The kernel of the namespace is the peer: 10.79.0.1 is its own (on lo), with no listener;
    // the stack's 10.79.1.1 is routed into the TUN.
    ns.ip(&["addr", "add", "10.79.0.1/32", "dev", "lo"]);
    ns.ip(&["tuntap", "add", "dev", "mtclit0", "mode", "tun"]);
    ns.ip(&["link", "set", "mtclit0", "up"]);
    ns.ip(&["route", "add", "10.79.1.1/32", "dev", "mtclit0"]);
    let _ = runs(
        "ip",
        &[
            "netns",
            "exec",
            &ns.0,
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.mtclit0.rp_filter=0",
        ],
    );
    let client = |to: &str| {
        ns.bin(&[
            "client",
            "--tun",
            "mtclit0",
            "--addr",
            "10.79.1.1",
            "--connect",
            to,
            "--send",
            "1000",
            "--connect-timeout",
            "2",
            "--json",
        ])
    };
    let out = client("10.79.0.1:5201");
    let (code, err) = code_and_err(&out);
    assert_eq!(code, Some(1), "{err:?}");
    assert!(
        err.contains("connection refused by 10.79.0.1:5201")
            && err.contains("nothing listens on port 5201"),
        "{err:?}"
    );
    // --json still ends with one object, with the error.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("{\"bytes\":0,")
            && last.contains("\"error\":\"connection failed: connection refused"),
        "{stdout:?}"
    );
    // Nobody answers for 10.79.9.9 (no route in the namespace: the kernel drops the SYNs).
    let started = std::time::Instant::now();
    let (code, err) = code_and_err(&client("10.79.9.9:5201"));
    assert_eq!(code, Some(4), "{err:?}");
    assert!(
        err.contains("no answer from 10.79.9.9:5201 within 2 s") && err.contains("unreachable"),
        "{err:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
