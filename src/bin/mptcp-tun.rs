//! `mptcp-tun`: the TUN demo and measurement tool (command line fixed in DESIGN.md).
//!
//! Runs one endpoint of the stack on a TUN device, serves or opens one connection, moves
//! `--send`/`--recv` bytes of the pattern `byte[i] = i % 251`, verifies them, and reports the
//! throughput (and with `--json`, one JSON object on the last line of stdout). Without `--json`
//! a progress report goes to stderr once a second: bytes, rate, and each subflow's addresses,
//! RTT, congestion window, bytes, state and backup/stale marks.
//!
//! Exit codes: 0 transfer complete and verified; 1 transfer failed (refused, reset, corrupt
//! data, short); 2 usage error (a bad flag or a flag combination that cannot work); 3 device,
//! permission or host-setup error (TUN, pcap file, an `--addr` the host's kernel owns); 4
//! timeout (no answer from the peer, no client, or the transfer took longer than `--timeout`).
//!
//! The stack speaks MPTCP v1 and falls back to TCP when the peer or a middlebox does not: the
//! JSON says `"mptcp": false` and why in `"fallback_reason"`. `--plain-tcp` turns MPTCP off,
//! for baselines. Paths are managed by the full-mesh path manager: a client opens a subflow
//! from every `--addr` to every server address (the one given and those the server announces
//! with ADD_ADDR); `--backup IP` makes the subflows from IP backups (the B bit of MP_JOIN, or
//! with `--backup-after SECS` an MP_PRIO that many seconds after the connection is
//! established); a server announces its `--announce` addresses.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Duration as StdDuration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use mptcp_stack::driver::{Driver, TunDevice, TunOffload};
use mptcp_stack::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, Event};
use mptcp_stack::mptcp::Mode as MptcpMode;
use mptcp_stack::mptcp::pm::AddrFlags;
use mptcp_stack::mptcp::{MptcpConnection, SchedulerKind};
use mptcp_stack::node::{Duration, Instant};
use mptcp_stack::tcp::cc::CcAlgorithm;
use mptcp_stack::tcp::{ConnError, State};

const AFTER_HELP: &str = "\
Exit codes: 0 transfer complete and verified; 1 transfer failed (refused, reset, corrupt or
short data); 2 usage error; 3 device, permission or host-setup error (TUN device, pcap file,
an --addr the host's kernel owns); 4 timeout (no answer from the peer, no client, or the
transfer took longer than --timeout).

The stack's addresses (--addr) belong to no kernel interface: the host routes them into the
TUN device (ip route add 198.18.101.1/32 dev mptun0) and forwards. Opening a TUN device needs
root or CAP_NET_ADMIN. See the README for the two-host and two-namespace set-ups.";

#[derive(Parser, Debug)]
#[command(
    name = "mptcp-tun",
    version,
    about = "Userspace MPTCP over a TUN device: bulk transfer with verification",
    long_about = "Userspace Multipath TCP (RFC 8684) over a TUN device: one endpoint of the stack \
                  serves or opens one connection, moves --send/--recv bytes of the pattern \
                  byte[i] = i % 251, verifies them and reports throughput and per-subflow \
                  statistics (progress on stderr once a second; with --json one JSON object as \
                  the last line of stdout).",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Listen on PORT of every --addr, serve one connection, then exit.
    #[command(after_help = AFTER_HELP)]
    Server(ServerArgs),
    /// Connect to IP:PORT from the first --addr of its family; every other --addr adds a subflow.
    #[command(after_help = AFTER_HELP)]
    Client(ClientArgs),
}

#[derive(Args, Debug)]
struct Common {
    /// The TUN device to use: opened if it exists (`ip tuntap add dev NAME mode tun`), else
    /// created (then route the --addr addresses into it yourself). At most 15 characters.
    #[arg(long, value_name = "NAME")]
    tun: String,
    /// A stack address (repeat for more paths). It must belong to no kernel interface; the host
    /// routes it into the TUN. The client's first --addr of the server's family carries the
    /// initial subflow; every other one opens one more subflow to each server address (MP_JOIN).
    #[arg(long = "addr", value_name = "IP", required = true)]
    addrs: Vec<IpAddr>,
    /// Send BYTES bytes of the pattern i % 251, then close (one of --send/--recv is required).
    #[arg(long, value_name = "BYTES", conflicts_with = "recv")]
    send: Option<u64>,
    /// Expect exactly BYTES bytes of the pattern, verify every byte, then close.
    #[arg(long, value_name = "BYTES")]
    recv: Option<u64>,
    /// Ask for DSS checksums (MPTCP only; the peer may ask for them too).
    #[arg(long, conflicts_with = "plain_tcp")]
    checksum: bool,
    /// Packet scheduler: which subflow carries the next data (MPTCP; no effect with one subflow).
    #[arg(long, value_enum, default_value_t = Scheduler::Minrtt)]
    scheduler: Scheduler,
    /// Congestion control of every subflow (lia/olia couple the subflows' windows).
    #[arg(long, value_enum, default_value_t = Cc::Cubic)]
    cc: Cc,
    /// Write every packet in and out of the stack to FILE (pcap, LINKTYPE_RAW; Wireshark and
    /// tcpdump -r read it).
    #[arg(long, value_name = "FILE")]
    pcap: Option<String>,
    /// Print one JSON object as the last line of stdout (and no progress reports):
    /// {"bytes","secs","mbit_s","mptcp","fallback_reason","subflows":[...],"reinjected_bytes",
    /// "scheduler","backup_switch_secs","offload","counters":{...},"error"}.
    #[arg(long)]
    json: bool,
    /// Speak plain TCP instead of MPTCP (the baseline for comparisons).
    #[arg(long)]
    plain_tcp: bool,
    /// TUN segmentation offload (Linux IFF_VNET_HDR): the stack writes TCP super segments of
    /// up to 64 KiB that the kernel cuts at the MSS (TSO), and reads the ones the kernel merged
    /// (GRO) whole. auto (default): where the OS supports it; off: one MTU-sized packet per
    /// system call.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = Offload::Auto)]
    offload: Offload,
    /// The TUN device's MTU (576-65535; at least 1280 with an IPv6 --addr).
    #[arg(long, value_name = "BYTES", default_value_t = 1500)]
    mtu: u16,
    /// Give up (exit 4) when the whole run, waiting for the peer included, takes longer than
    /// SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    timeout: u64,
}

#[derive(Args, Debug)]
struct ServerArgs {
    #[command(flatten)]
    common: Common,
    /// The port to listen on (on every --addr).
    #[arg(long)]
    port: u16,
    /// Announce this --addr to the client (ADD_ADDR; MPTCP), so that it opens subflows to it;
    /// repeat for more.
    #[arg(long, value_name = "IP", conflicts_with = "plain_tcp")]
    announce: Vec<IpAddr>,
}

#[derive(Args, Debug)]
struct ClientArgs {
    #[command(flatten)]
    common: Common,
    /// The server, as IP:PORT or `[IPv6]:PORT`.
    #[arg(long, value_name = "IP:PORT")]
    connect: SocketAddr,
    /// Give up (exit 4) when the server has not answered within SECS seconds (peer unreachable).
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    connect_timeout: u64,
    /// Make the subflows from this --addr backups: they carry data only when no regular subflow
    /// works (MPTCP). It must be one of the --addr addresses other than the initial subflow's.
    #[arg(long, value_name = "IP", conflicts_with = "plain_tcp")]
    backup: Option<IpAddr>,
    /// With --backup: open the subflows from the --backup address as regular ones, and mark them
    /// backups with MP_PRIO SECS seconds (fractions allowed) after the connection is
    /// established, instead of with the MP_JOIN B bit. With --json, each subflow object then
    /// also has "switch_bytes_sent" and "switch_bytes_received" (its counts at that moment),
    /// and the object "backup_switch_secs".
    #[arg(long, value_name = "SECS")]
    backup_after: Option<f64>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Scheduler {
    /// Lowest RTT first (default).
    Minrtt,
    /// Each subflow in turn.
    Roundrobin,
    /// Every packet on every subflow (lowest latency, for interactive traffic).
    Redundant,
    /// One subflow at a time; the next only when it fails (handover).
    Backup,
}

impl Scheduler {
    fn kind(self) -> SchedulerKind {
        match self {
            Scheduler::Minrtt => SchedulerKind::MinRtt,
            Scheduler::Roundrobin => SchedulerKind::RoundRobin,
            Scheduler::Redundant => SchedulerKind::Redundant,
            Scheduler::Backup => SchedulerKind::ActiveBackup,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Offload {
    /// One packet per system call.
    Off,
    /// Batches with segmentation offload; an error where the OS cannot.
    On,
    /// Offload where the OS supports it, plain elsewhere.
    Auto,
}

impl Offload {
    fn mode(self) -> TunOffload {
        match self {
            Offload::Off => TunOffload::Off,
            Offload::On => TunOffload::On,
            Offload::Auto => TunOffload::Auto,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Cc {
    /// Uncoupled CUBIC on every subflow (Linux's default).
    Cubic,
    /// Uncoupled Reno.
    Reno,
    /// Coupled: LIA (RFC 6356), fair to TCP at a shared bottleneck.
    Lia,
    /// Coupled: OLIA.
    Olia,
}

impl Cc {
    fn algorithm(self) -> CcAlgorithm {
        match self {
            Cc::Cubic => CcAlgorithm::Cubic,
            Cc::Reno => CcAlgorithm::Reno,
            Cc::Lia => CcAlgorithm::Lia,
            Cc::Olia => CcAlgorithm::Olia,
        }
    }
}

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_DEVICE: u8 = 3;
const EXIT_TIMEOUT: u8 = 4;

/// The --backup-after switch: when (seconds after the connection was established), and each
/// subflow's (local, remote, bytes sent, bytes received) at that moment.
#[derive(Debug)]
struct Switch {
    secs: f64,
    bytes: Vec<(SocketAddr, SocketAddr, u64, u64)>,
}

/// Why the run gave up waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimedOut {
    /// The client's SYN went unanswered (--connect-timeout, or its retransmissions ran out).
    Connect,
    /// No client connected to the server within --timeout.
    Accept,
    /// The connection was up, the transfer took longer than --timeout.
    Transfer,
}

/// What the transfer did, for the report.
#[derive(Debug, Default)]
struct Outcome {
    bytes: u64,
    started: Option<Instant>,
    finished: Option<Instant>,
    error: Option<String>,
    timed_out: Option<TimedOut>,
}

/// A usage error of the subcommand `mode`: clap's format (the message, the usage line, a hint
/// to --help) and exit status 2.
fn usage_error(mode: &str, msg: String) -> ExitCode {
    let mut cmd = Cli::command();
    cmd.build();
    let err = match cmd.find_subcommand_mut(mode) {
        Some(sub) => sub.error(clap::error::ErrorKind::ArgumentConflict, msg),
        None => cmd.error(clap::error::ErrorKind::ArgumentConflict, msg),
    };
    let _ = err.print();
    ExitCode::from(EXIT_USAGE)
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// The flag combinations clap cannot check; the message says which flag and what to do.
fn check_usage(cli: &Cli) -> Result<(), String> {
    let (common, server, client) = match &cli.mode {
        Mode::Server(s) => (&s.common, Some(s), None),
        Mode::Client(c) => (&c.common, None, Some(c)),
    };
    let tun = &common.tun;
    if tun.is_empty() || tun.len() > 15 {
        return Err(format!(
            "--tun {tun:?}: a network interface name has 1 to 15 characters (it has {})",
            tun.len()
        ));
    }
    if tun == "."
        || tun == ".."
        || tun.contains(['/', ':', '%'])
        || tun.contains(char::is_whitespace)
    {
        return Err(format!(
            "--tun {tun:?}: not a valid interface name (no '/', ':', '%' or spaces, not '.' or '..')"
        ));
    }
    if common.send.is_none() && common.recv.is_none() {
        return Err("one of --send BYTES or --recv BYTES is required".into());
    }
    if common.timeout == 0 {
        return Err("--timeout takes a number of seconds >= 1".into());
    }
    for (i, a) in common.addrs.iter().enumerate() {
        if common.addrs[..i].contains(a) {
            return Err(format!("--addr {a} is given twice"));
        }
        if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
            return Err(format!(
                "--addr {a}: a stack address must be a unicast address that the host routes into \
                 the TUN (not unspecified, multicast or loopback)"
            ));
        }
        if let IpAddr::V4(v4) = a
            && v4.is_broadcast()
        {
            return Err(format!(
                "--addr {a}: a broadcast address cannot be a stack address"
            ));
        }
    }
    let min_mtu = if common.addrs.iter().any(IpAddr::is_ipv6) {
        1280
    } else {
        576
    };
    if common.mtu < min_mtu {
        return Err(format!(
            "--mtu {}: at least {min_mtu}{}",
            common.mtu,
            if min_mtu == 1280 {
                " with an IPv6 --addr (RFC 8200)"
            } else {
                ""
            }
        ));
    }
    if let Some(s) = server {
        if s.port == 0 {
            return Err("--port 0: give the port to listen on (1-65535)".into());
        }
        for a in &s.announce {
            if !common.addrs.contains(a) {
                return Err(format!(
                    "--announce {a} is not one of the --addr addresses: the server announces \
                     addresses it owns; add --addr {a} (and route it into the TUN)"
                ));
            }
        }
    }
    if let Some(c) = client {
        let remote = c.connect;
        if remote.port() == 0 {
            return Err(format!("--connect {remote}: port 0 cannot be connected to"));
        }
        let ip = remote.ip();
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!("--connect {remote}: not a unicast address"));
        }
        if common.addrs.contains(&ip) {
            return Err(format!(
                "--connect {remote}: that is one of our own --addr addresses"
            ));
        }
        let Some(first) = common
            .addrs
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == ip.is_ipv4())
        else {
            return Err(format!(
                "--connect {remote} is {} but every --addr is {}: add an --addr of the {} family \
                 (the initial subflow needs one)",
                family(ip),
                family(common.addrs[0]),
                family(ip)
            ));
        };
        if c.connect_timeout == 0 {
            return Err("--connect-timeout takes a number of seconds >= 1".into());
        }
        if let Some(b) = c.backup {
            if !common.addrs.contains(&b) {
                return Err(format!(
                    "--backup {b} is not one of the --addr addresses: add --addr {b} too (a backup \
                     path is one of the stack's addresses)"
                ));
            }
            if b.is_ipv4() != c.connect.is_ipv4() {
                return Err(format!(
                    "--backup {b} is not of the family of --connect {}: no subflow from it could \
                     reach the server",
                    c.connect
                ));
            }
            if b == first && c.backup_after.is_none() {
                return Err(format!(
                    "--backup {b} is the initial subflow's address (the first --addr of the \
                     server's family), which cannot be opened as a backup: list a regular --addr \
                     first, or add --backup-after SECS to switch it with MP_PRIO"
                ));
            }
            if common.addrs.len() < 2 {
                return Err(format!(
                    "--backup {b} with a single --addr leaves no regular path: add another --addr"
                ));
            }
        }
        if c.backup_after.is_some() && c.backup.is_none() {
            return Err(
                "--backup-after needs --backup IP: it says when to switch that address's \
                 subflows to backup"
                    .into(),
            );
        }
        if let Some(secs) = c.backup_after
            && !(secs.is_finite() && secs >= 0.0)
        {
            return Err(format!(
                "--backup-after takes a number of seconds >= 0, not {secs}"
            ));
        }
    }
    Ok(())
}

/// Whether the host's kernel owns `addr` (an interface has it here): then packets to it are
/// delivered to the kernel, never to the TUN. A UDP bind succeeds only for a local address,
/// unless the host allows non-local binds (then this cannot tell, and says no).
fn kernel_owns(addr: IpAddr) -> bool {
    let sysctl = if addr.is_ipv4() {
        "/proc/sys/net/ipv4/ip_nonlocal_bind"
    } else {
        "/proc/sys/net/ipv6/ip_nonlocal_bind"
    };
    if std::fs::read_to_string(sysctl).is_ok_and(|v| v.trim() != "0") {
        return false;
    }
    std::net::UdpSocket::bind(SocketAddr::new(addr, 0)).is_ok()
}

/// A TUN open error explained: what went wrong and what to do.
fn tun_error(name: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let hint = match e.kind() {
        ErrorKind::PermissionDenied => {
            " (opening or creating a TUN device needs root or CAP_NET_ADMIN: run as root, or let \
             root create it for you with `ip tuntap add dev NAME mode tun user $USER`)"
        }
        ErrorKind::NotFound => {
            " (no /dev/net/tun: load the module with `modprobe tun`; in a container, pass the \
             device in, e.g. `docker run --device /dev/net/tun --cap-add NET_ADMIN`)"
        }
        ErrorKind::ResourceBusy => {
            " (another process holds this TUN device, another mptcp-tun perhaps: stop it or \
             pick another --tun name)"
        }
        ErrorKind::InvalidInput => " (is an interface of that name not a TUN device?)",
        _ => "",
    };
    let e = e.to_string();
    if e.starts_with("TUN device") {
        format!("cannot open {e}{hint}")
    } else {
        format!("cannot open TUN device {name:?}: {e}{hint}")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (common, server_port, connect) = match &cli.mode {
        Mode::Server(s) => (&s.common, Some(s.port), None),
        Mode::Client(c) => (&c.common, None, Some(c.connect)),
    };
    let mode_name = match &cli.mode {
        Mode::Server(_) => "server",
        Mode::Client(_) => "client",
    };
    if let Err(msg) = check_usage(&cli) {
        return usage_error(mode_name, msg);
    }
    if let Some(a) = common.addrs.iter().find(|a| kernel_owns(**a)) {
        eprintln!(
            "mptcp-tun: --addr {a} is in use: an interface of this host has it, so the kernel \
             would answer its packets instead of the stack. Use an address no interface has and \
             route it into the TUN (ip route add {a}/{} dev {}), or remove it from the \
             interface (ip addr del).",
            if a.is_ipv4() { 32 } else { 128 },
            common.tun
        );
        return ExitCode::from(EXIT_DEVICE);
    }
    // The pcap file first: a typo in its path should not cost a TUN device.
    if let Some(path) = &common.pcap
        && let Err(e) = std::fs::File::create(path)
    {
        eprintln!("mptcp-tun: --pcap {path:?}: cannot create the file: {e}");
        return ExitCode::from(EXIT_DEVICE);
    }
    let device = match TunDevice::open_with(&common.tun, common.mtu, common.offload.mode()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("mptcp-tun: {}", tun_error(&common.tun, &e));
            return ExitCode::from(EXIT_DEVICE);
        }
    };
    let mut cfg = EndpointConfig {
        mtu: usize::from(common.mtu),
        ..EndpointConfig::default()
    };
    cfg.mptcp.enabled = !common.plain_tcp;
    cfg.mptcp.checksum = common.checksum;
    cfg.mptcp.scheduler = common.scheduler.kind();
    cfg.tcp.cc = common.cc.algorithm();
    let mut endpoint = Endpoint::new(cfg);
    // The full-mesh path manager does the rest: the client opens a subflow from every --addr
    // to every server address (the one it connected to and those the server announces); the
    // server announces its --announce addresses.
    match &cli.mode {
        Mode::Client(c) => {
            for a in &common.addrs {
                let flags = AddrFlags {
                    signal: false,
                    subflow: true,
                    // With --backup-after, MP_PRIO makes it a backup later.
                    backup: c.backup == Some(*a) && c.backup_after.is_none(),
                };
                endpoint.add_address_with(*a, flags);
            }
        }
        Mode::Server(s) => {
            for a in &common.addrs {
                endpoint.add_address_with(
                    *a,
                    AddrFlags {
                        signal: s.announce.contains(a),
                        subflow: false,
                        backup: false,
                    },
                );
            }
        }
    }
    let mut driver = Driver::new(endpoint, device);
    if let Some(path) = &common.pcap {
        driver = match driver.with_pcap_file(path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("mptcp-tun: --pcap {path:?}: cannot write the file: {e}");
                return ExitCode::from(EXIT_DEVICE);
            }
        };
    }
    let json = common.json;
    let mut conn: Option<ConnectionHandle> = None;
    if let Some(port) = server_port {
        driver.node_mut().listen(port);
        if !json {
            eprintln!(
                "listening on port {port} of {} ({}, TUN {})",
                list(&common.addrs),
                if common.plain_tcp {
                    "plain TCP"
                } else {
                    "MPTCP"
                },
                common.tun
            );
        }
    } else if let Some(remote) = connect {
        let local_ip = common
            .addrs
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
            .unwrap_or(common.addrs[0]);
        match driver
            .node_mut()
            .connect(SocketAddr::new(local_ip, 0), remote)
        {
            Ok(h) => conn = Some(h),
            Err(e) => {
                eprintln!("mptcp-tun: connect from {local_ip} to {remote}: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
        if !json {
            eprintln!(
                "connecting from {local_ip} to {remote} ({}, TUN {})",
                if common.plain_tcp {
                    "plain TCP"
                } else {
                    "MPTCP"
                },
                common.tun
            );
        }
    }

    let total = common.send.or(common.recv).unwrap_or(0);
    let sending = common.send.is_some();
    let t0 = driver.now();
    let deadline = t0 + Duration::from_secs(common.timeout);
    let connect_deadline = match &cli.mode {
        Mode::Client(c) => t0 + Duration::from_secs(c.connect_timeout.min(common.timeout)),
        Mode::Server(_) => deadline,
    };
    let mut out = Outcome::default();
    let mut offset: u64 = 0;
    let mut closed = false;
    let mut buf = vec![0u8; 256 * 1024];
    let mut progress = Progress::default();
    // --backup-after: the address, when, and what each subflow had moved at the switch.
    let backup_switch = match &cli.mode {
        Mode::Client(c) => c.backup.zip(c.backup_after),
        Mode::Server(_) => None,
    };
    let mut switched: Option<Switch> = None;
    // The pattern i % 251, long enough to slice CHUNK bytes from any phase.
    const CHUNK: usize = 256 * 1024;
    let mut pattern = vec![0u8; CHUNK + 251];
    fill_pattern(&mut pattern, 0);
    let result = driver.run_with(|ep, now| {
        while let Some(ev) = ep.poll_event() {
            match ev {
                Event::Accepted(h) if conn.is_none() => {
                    conn = Some(h);
                    out.started = Some(now);
                }
                Event::Connected(_) => out.started = Some(now),
                Event::Closed(h, Some(e)) if Some(h) == conn => {
                    if out.started.is_none() && e == ConnError::TimedOut {
                        out.timed_out = Some(TimedOut::Connect);
                    } else {
                        out.error = Some(describe_conn_error(e, connect, sending, offset, total));
                    }
                }
                _ => {}
            }
        }
        if out.error.is_some() || out.timed_out.is_some() {
            return ControlFlow::Break(());
        }
        if out.started.is_none() && now > connect_deadline {
            out.timed_out = Some(if connect.is_some() {
                TimedOut::Connect
            } else {
                TimedOut::Accept
            });
            return ControlFlow::Break(());
        }
        if now > deadline {
            out.timed_out = Some(TimedOut::Transfer);
            return ControlFlow::Break(());
        }
        let Some(h) = conn else {
            return ControlFlow::Continue(());
        };
        let Some(state) = ep.connection(h).map(|c| c.state()) else {
            return ControlFlow::Break(());
        };
        if !state.is_synchronized() && state != State::Closed {
            return ControlFlow::Continue(());
        }
        if let (Some((addr, secs)), None, Some(started)) = (backup_switch, &switched, out.started)
        {
            let since = (now - started).total_micros() as f64 / 1e6;
            if since >= secs {
                let bytes = ep
                    .mptcp(h)
                    .map(|m| m.subflows())
                    .unwrap_or(&[])
                    .iter()
                    .map(|s| {
                        let st = s.tcp().stats();
                        (s.tcp().local(), s.tcp().remote(), st.bytes_sent, st.bytes_received)
                    })
                    .collect();
                ep.set_address_backup(addr, true);
                eprintln!(
                    "mptcp-tun: {since:.3} s after the connection: subflows from {addr} marked backup (MP_PRIO)"
                );
                switched = Some(Switch { secs: since, bytes });
            }
        }
        if !json
            && let (Some(started), Some(m)) = (out.started, ep.mptcp(h))
        {
            // The sender counts what the peer acknowledged at the data level.
            let done = if sending {
                offset.saturating_sub(m.send_queue() as u64)
            } else {
                offset
            };
            progress.tick(now, started, done, total, sending, m);
        }
        if sending {
            while offset < total {
                // Slice the precomputed pattern; offer only what the send buffer takes.
                let n = ((total - offset) as usize)
                    .min(CHUNK)
                    .min(ep.send_capacity(h));
                if n == 0 {
                    break;
                }
                let start = (offset % 251) as usize;
                match ep.send(h, &pattern[start..start + n]) {
                    Ok(0) => break,
                    Ok(k) => offset += k as u64,
                    Err(e) => {
                        out.error = Some(format!("sending after {offset} of {total} bytes: {e}"));
                        return ControlFlow::Break(());
                    }
                }
            }
            if offset == total && !closed {
                let _ = ep.close(h);
                closed = true;
            }
            // Done when the peer acknowledged everything, DATA_FIN (or FIN) included.
            if closed && ep.send_finished(h) {
                out.bytes = offset;
                out.finished = Some(now);
                return ControlFlow::Break(());
            }
        } else {
            loop {
                match ep.recv(h, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Some(bad) = first_mismatch(&buf[..n], offset, &pattern) {
                            out.error = Some(format!(
                                "corrupt data at byte {bad}: got {}, expected {}",
                                buf[(bad - offset) as usize],
                                bad % 251
                            ));
                            return ControlFlow::Break(());
                        }
                        offset += n as u64;
                        if offset > total {
                            out.error = Some(format!(
                                "the peer sent more than the --recv {total} bytes ({offset} so far)"
                            ));
                            return ControlFlow::Break(());
                        }
                    }
                    Err(e) => {
                        out.error =
                            Some(format!("receiving after {offset} of {total} bytes: {e}"));
                        return ControlFlow::Break(());
                    }
                }
            }
            if ep.recv_finished(h) {
                if offset != total {
                    out.error = Some(format!(
                        "the peer closed after {offset} of the --recv {total} bytes"
                    ));
                    return ControlFlow::Break(());
                }
                if !closed {
                    let _ = ep.close(h);
                    closed = true;
                    out.bytes = offset;
                    out.finished = Some(now);
                }
                // Linger until our DATA_FIN (or FIN) is acknowledged so the peer sees a clean
                // close.
                if ep.send_finished(h) {
                    return ControlFlow::Break(());
                }
                if out
                    .finished
                    .is_some_and(|f| now - f > Duration::from_secs(2))
                {
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    });
    if let Err(e) = result {
        eprintln!(
            "mptcp-tun: TUN device {:?} failed: {e} (was it deleted or set down?)",
            common.tun
        );
        return ExitCode::from(EXIT_DEVICE);
    }
    // A failed transfer resets the connection (MP_FASTCLOSE in MPTCP) so the peer does not
    // wait for a close that never comes.
    if (out.error.is_some() || out.timed_out.is_some())
        && let Some(h) = conn
    {
        let _ = driver.node_mut().abort(h);
    }
    // Give the last segments (a final ACK, or the reset) a moment to leave.
    for _ in 0..20 {
        let _ = driver.run_once(Some(StdDuration::from_millis(5)));
    }
    let failure: Option<(u8, String)> = if let Some(t) = out.timed_out {
        let msg = match (t, connect) {
            (TimedOut::Connect, Some(remote)) => format!(
                "no answer from {remote} within {} s: the peer is unreachable. Check that a \
                 server listens there, that this host routes the --addr addresses into TUN {} \
                 and forwards, and that the peer can route its answers back to them (NAT \
                 or routes; see the README)",
                (connect_deadline - t0).total_micros() / 1_000_000,
                common.tun
            ),
            (TimedOut::Accept, _) => format!(
                "no client connected within --timeout {} s (does the client connect to port {} \
                 of {}, and does the host route those addresses into TUN {}?)",
                common.timeout,
                server_port.unwrap_or(0),
                list(&common.addrs),
                common.tun
            ),
            _ => format!(
                "timed out after --timeout {} s with {} of {total} bytes {}",
                common.timeout,
                offset,
                if sending { "queued" } else { "received" }
            ),
        };
        Some((EXIT_TIMEOUT, msg))
    } else if let Some(e) = &out.error {
        let what = if out.started.is_some() {
            "transfer failed"
        } else {
            "connection failed"
        };
        Some((EXIT_FAILED, format!("{what}: {e}")))
    } else if out.bytes != total || out.finished.is_none() {
        Some((
            EXIT_FAILED,
            format!("transfer incomplete: {} of {total} bytes", out.bytes),
        ))
    } else {
        None
    };
    report(
        &driver,
        conn,
        &out,
        json,
        switched.as_ref(),
        failure.as_ref().map(|f| f.1.as_str()),
    );
    if let Some((code, msg)) = failure {
        eprintln!("mptcp-tun: {msg}");
        return ExitCode::from(code);
    }
    ExitCode::SUCCESS
}

/// A connection error in words, with what to do about it.
fn describe_conn_error(
    e: ConnError,
    connect: Option<SocketAddr>,
    sending: bool,
    offset: u64,
    total: u64,
) -> String {
    let moved = format!(
        "after {offset} of {total} bytes {}",
        if sending { "queued" } else { "received" }
    );
    match (e, connect) {
        (ConnError::Refused, Some(remote)) => format!(
            "connection refused by {remote}: nothing listens on port {} there (start the server \
             first, or check --connect)",
            remote.port()
        ),
        (ConnError::Reset, _) => format!("connection reset by the peer {moved}"),
        (ConnError::TimedOut, _) => {
            format!("connection timed out {moved}: the peer stopped answering on every path")
        }
        (e, _) => format!("{e} {moved}"),
    }
}

fn list(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The once-a-second progress report on stderr.
#[derive(Default)]
struct Progress {
    last: Option<(Instant, u64)>,
}

impl Progress {
    fn tick(
        &mut self,
        now: Instant,
        started: Instant,
        done: u64,
        total: u64,
        sending: bool,
        m: &MptcpConnection,
    ) {
        let (t_last, b_last) = *self.last.get_or_insert((started, 0));
        let interval = now - t_last;
        if interval < Duration::from_secs(1) {
            return;
        }
        self.last = Some((now, done));
        let secs = |d: Duration| d.total_micros() as f64 / 1e6;
        let rate = (done - b_last) as f64 * 8.0 / secs(interval) / 1e6;
        let avg = done as f64 * 8.0 / secs(now - started).max(1e-6) / 1e6;
        let mut text = format!(
            "[{:6.1} s] {done} of {total} bytes {} ({:.1} %), {rate:.1} Mbit/s (average {avg:.1}), {} subflow(s)\n",
            secs(now - started),
            if sending { "acknowledged" } else { "received" },
            if total == 0 {
                100.0
            } else {
                done as f64 * 100.0 / total as f64
            },
            m.subflows().len()
        );
        for s in m.subflows() {
            let c = s.tcp();
            let st = c.stats();
            let mut marks = String::new();
            if s.backup() {
                marks.push_str(" backup");
            }
            if s.peer_backup() {
                marks.push_str(" peer-backup");
            }
            if s.is_stale() {
                marks.push_str(" stale");
            }
            text.push_str(&format!(
                "    {} -> {}  rtt {}  cwnd {} B  sent {} B  received {} B  {:?}{marks}\n",
                c.local(),
                c.remote(),
                c.srtt().map_or("-".to_string(), |d| format!(
                    "{:.1} ms",
                    d.total_micros() as f64 / 1e3
                )),
                c.cwnd(),
                st.bytes_sent,
                st.bytes_received,
                c.state()
            ));
        }
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

fn report(
    driver: &Driver<Endpoint, TunDevice>,
    conn: Option<ConnectionHandle>,
    out: &Outcome,
    json: bool,
    switched: Option<&Switch>,
    failure: Option<&str>,
) {
    let secs = match (out.started, out.finished) {
        (Some(s), Some(f)) => (f - s).total_micros() as f64 / 1e6,
        _ => 0.0,
    };
    let mbit = if secs > 0.0 {
        out.bytes as f64 * 8.0 / secs / 1e6
    } else {
        0.0
    };
    let ep = driver.node();
    let mp = conn.and_then(|h| ep.mptcp(h));
    let mptcp = mp.is_some_and(|m| m.mode() == MptcpMode::Mptcp);
    let reason = match mp {
        Some(m) if m.mode() != MptcpMode::Mptcp => {
            m.fallback_reason().unwrap_or("handshake not completed")
        }
        Some(_) => "",
        None => "no connection",
    };
    if !json && out.started.is_none() {
        // Nothing to report: the error message says what happened.
        return;
    }
    if !json {
        let how = if mptcp {
            format!(
                "MPTCP{}",
                if mp.is_some_and(|m| m.checksum()) {
                    " with DSS checksums"
                } else {
                    ""
                }
            )
        } else {
            format!("plain TCP: {reason}")
        };
        println!(
            "{} bytes in {secs:.3} s: {mbit:.1} Mbit/s ({how})",
            out.bytes
        );
        for sub in mp.map(|m| m.subflows()).unwrap_or(&[]) {
            let c = sub.tcp();
            let s = c.stats();
            println!(
                "subflow {} -> {}: sent {} B, received {} B, retransmitted {} B, rtt {}, cwnd {} B, state {:?}{}{}",
                c.local(),
                c.remote(),
                s.bytes_sent,
                s.bytes_received,
                s.bytes_retransmitted,
                c.srtt().map_or("-".to_string(), |d| format!(
                    "{:.1} ms",
                    d.total_micros() as f64 / 1e3
                )),
                c.cwnd(),
                c.state(),
                if sub.backup() { ", backup" } else { "" },
                if sub.is_stale() { ", stale" } else { "" }
            );
        }
        if let Some(m) = mp {
            // The counters that moved, as "name value" pairs.
            let text = format!("{:?}", m.counters());
            let inner = text
                .split_once('{')
                .map_or("", |(_, rest)| rest.trim_end_matches(['}', ' ']));
            let moved: Vec<String> = inner
                .split(", ")
                .filter_map(|kv| kv.split_once(": "))
                .filter(|(_, v)| v.trim() != "0")
                .map(|(k, v)| format!("{} {}", k.trim(), v.trim()))
                .collect();
            println!("counters: {}", moved.join(", "));
        }
        if let Some(sw) = switched {
            println!("backup switch (MP_PRIO) at {:.3} s:", sw.secs);
            for (local, remote, sent, received) in &sw.bytes {
                println!("  subflow {local} -> {remote}: had sent {sent} B, received {received} B");
            }
        }
        return;
    }
    let subflows: Vec<String> = mp
        .map(|m| m.subflows())
        .unwrap_or(&[])
        .iter()
        .map(|sub| {
            let c = sub.tcp();
            let s = c.stats();
            // With --backup-after: what the subflow had moved at the switch (0 if it joined
            // later).
            let at_switch = switched.map_or(String::new(), |sw| {
                let (sent, received) = sw
                    .bytes
                    .iter()
                    .find(|b| b.0 == c.local() && b.1 == c.remote())
                    .map_or((0, 0), |b| (b.2, b.3));
                format!(",\"switch_bytes_sent\":{sent},\"switch_bytes_received\":{received}")
            });
            format!(
                "{{\"local\":\"{}\",\"remote\":\"{}\",\"bytes_sent\":{},\"bytes_received\":{},\"rtt_us\":{},\"backup\":{},\"peer_backup\":{},\"stale\":{},\"state\":\"{:?}\"{at_switch}}}",
                c.local(),
                c.remote(),
                s.bytes_sent,
                s.bytes_received,
                c.srtt().map_or(0, |d| d.total_micros()),
                sub.backup(),
                sub.peer_backup(),
                sub.is_stale(),
                c.state()
            )
        })
        .collect();
    let counters = mp.map(|m| *m.counters()).unwrap_or_default();
    let switch_secs = switched.map_or("null".to_string(), |sw| format!("{:.3}", sw.secs));
    let fallback = if mptcp {
        "null".to_string()
    } else {
        json_string(reason)
    };
    let error = failure.map_or("null".to_string(), json_string);
    let offload = driver.device().offload();
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "{{\"bytes\":{},\"secs\":{secs:.6},\"mbit_s\":{mbit:.3},\"mptcp\":{mptcp},\"fallback_reason\":{fallback},\"subflows\":[{}],\"reinjected_bytes\":{},\"scheduler\":\"{}\",\"backup_switch_secs\":{switch_secs},\"offload\":{offload},\"counters\":{{\"add_addr_tx\":{},\"add_addr_rx\":{},\"echo_add_rx\":{},\"rm_addr_tx\":{},\"rm_addr_rx\":{},\"mp_prio_tx\":{},\"mp_prio_rx\":{},\"mp_join_synack_rx\":{},\"mp_join_ack_rx\":{},\"subflow_stale\":{},\"subflow_recover\":{},\"data_retransmits\":{},\"data_rto_expiries\":{},\"window_probes\":{}}},\"error\":{error}}}",
        out.bytes,
        subflows.join(","),
        counters.reinjected_bytes,
        mp.map_or("minrtt", |m| m.scheduler_name()),
        counters.add_addr_tx,
        counters.add_addr_rx,
        counters.echo_add_rx,
        counters.rm_addr_tx,
        counters.rm_addr_rx,
        counters.mp_prio_tx,
        counters.mp_prio_rx,
        counters.mp_join_synack_rx,
        counters.mp_join_ack_rx,
        counters.subflow_stale,
        counters.subflow_recover,
        counters.data_retransmits,
        counters.data_rto_expiries,
        counters.window_probes,
    );
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn fill_pattern(buf: &mut [u8], offset: u64) {
    let mut v = (offset % 251) as u8;
    for b in buf {
        *b = v;
        v = if v == 250 { 0 } else { v + 1 };
    }
}

/// The first byte of `buf` (stream bytes from `offset` on) that is not the pattern, compared in
/// whole slices against `pattern` (the pattern from phase 0, at least 251 bytes longer than
/// any slice compared), which the compiler turns into `memcmp`: a byte-at-a-time loop cost a
/// quarter of the receiver's CPU at 2 Gbit/s.
fn first_mismatch(buf: &[u8], offset: u64, pattern: &[u8]) -> Option<u64> {
    let step = pattern.len() - 251;
    let mut at = 0;
    while at < buf.len() {
        let n = step.min(buf.len() - at);
        let phase = ((offset + at as u64) % 251) as usize;
        let (got, want) = (&buf[at..at + n], &pattern[phase..phase + n]);
        if got != want {
            let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            return Some(offset + (at + i) as u64);
        }
        at += n;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{fill_pattern, first_mismatch};

    #[test]
    fn verification_finds_exactly_the_first_wrong_byte_at_any_phase() {
        let mut pattern = vec![0u8; 1000 + 251];
        fill_pattern(&mut pattern, 0);
        for offset in [0u64, 1, 250, 251, 252, 123_456_789] {
            // 2,500 bytes: more than one compared slice (1,000 bytes) at a time.
            let mut buf = vec![0u8; 2500];
            fill_pattern(&mut buf, offset);
            assert_eq!(first_mismatch(&buf, offset, &pattern), None);
            for bad in [0usize, 999, 1000, 2499] {
                let mut b = buf.clone();
                b[bad] ^= 0x40;
                assert_eq!(
                    first_mismatch(&b, offset, &pattern),
                    Some(offset + bad as u64)
                );
            }
            // The right bytes at the wrong offset are wrong too.
            assert!(first_mismatch(&buf, offset + 1, &pattern).is_some());
        }
    }
}
