//! `mptcp-tun`: the TUN demo and measurement tool (command line fixed in DESIGN.md).
//!
//! Runs one endpoint of the stack on a TUN device, serves or opens one connection, moves
//! `--send`/`--recv` bytes of the pattern `byte[i] = i % 251`, verifies them, and reports the
//! throughput (and with `--json`, one JSON object on the last line of stdout).
//!
//! Exit codes: 0 transfer complete and verified; 1 transfer failed (reset, corrupt data,
//! short); 2 usage error; 3 device or permission error; 4 timeout.
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

use clap::{Args, Parser, Subcommand, ValueEnum};
use mptcp_stack::driver::{Driver, TunDevice};
use mptcp_stack::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, Event};
use mptcp_stack::mptcp::Mode as MptcpMode;
use mptcp_stack::mptcp::SchedulerKind;
use mptcp_stack::mptcp::pm::AddrFlags;
use mptcp_stack::node::Instant;
use mptcp_stack::tcp::State;
use mptcp_stack::tcp::cc::CcAlgorithm;

#[derive(Parser, Debug)]
#[command(
    name = "mptcp-tun",
    version,
    about = "Userspace MPTCP over a TUN device: bulk transfer with verification"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Listen on PORT of every --addr, serve one connection, then exit.
    Server(ServerArgs),
    /// Connect to IP:PORT from the first --addr.
    Client(ClientArgs),
}

#[derive(Args, Debug)]
struct Common {
    /// The TUN device to open (created if it does not exist; the host routes into it).
    #[arg(long, value_name = "NAME")]
    tun: String,
    /// A stack address (owned by no kernel). The client's first of the server's family carries
    /// the initial subflow; the others open more subflows (MP_JOIN).
    #[arg(long = "addr", value_name = "IP", required = true)]
    addrs: Vec<IpAddr>,
    /// Send N bytes of the pattern i % 251, then close.
    #[arg(long, value_name = "BYTES", conflicts_with = "recv")]
    send: Option<u64>,
    /// Expect exactly N bytes of the pattern and verify them.
    #[arg(long, value_name = "BYTES")]
    recv: Option<u64>,
    /// Ask for DSS checksums (MPTCP; no effect in plain TCP).
    #[arg(long)]
    checksum: bool,
    /// Packet scheduler (MPTCP; no effect with one subflow).
    #[arg(long, value_enum, default_value_t = Scheduler::Minrtt)]
    scheduler: Scheduler,
    /// Congestion control of every subflow.
    #[arg(long, value_enum, default_value_t = Cc::Cubic)]
    cc: Cc,
    /// Write every packet to FILE (pcap, LINKTYPE_RAW).
    #[arg(long, value_name = "FILE")]
    pcap: Option<String>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
    /// Speak plain TCP (the baseline for comparisons).
    #[arg(long)]
    plain_tcp: bool,
    /// The TUN MTU.
    #[arg(long, default_value_t = 1500)]
    mtu: u16,
    /// Give up after SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    timeout: u64,
}

#[derive(Args, Debug)]
struct ServerArgs {
    #[command(flatten)]
    common: Common,
    /// The port to listen on.
    #[arg(long)]
    port: u16,
    /// Announce these addresses to the peer (ADD_ADDR; MPTCP).
    #[arg(long, value_name = "IP")]
    announce: Vec<IpAddr>,
}

#[derive(Args, Debug)]
struct ClientArgs {
    #[command(flatten)]
    common: Common,
    /// The server, as IP:PORT or `[IPv6]:PORT`.
    #[arg(long, value_name = "IP:PORT")]
    connect: SocketAddr,
    /// Use this local address as a backup path (MPTCP).
    #[arg(long, value_name = "IP")]
    backup: Option<IpAddr>,
    /// With --backup: open the subflows from the --backup address as regular ones, and mark them
    /// backups with MP_PRIO SECS seconds (fractions allowed) after the connection is
    /// established, instead of with the MP_JOIN B bit. With --json, each subflow object then
    /// also has "switch_bytes_sent" and "switch_bytes_received" (its counts at that moment),
    /// and the object "backup_switch_secs".
    #[arg(long, value_name = "SECS", requires = "backup")]
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
const EXIT_DEVICE: u8 = 3;
const EXIT_TIMEOUT: u8 = 4;

/// The --backup-after switch: when (seconds after the connection was established), and each
/// subflow's (local, remote, bytes sent, bytes received) at that moment.
#[derive(Debug)]
struct Switch {
    secs: f64,
    bytes: Vec<(SocketAddr, SocketAddr, u64, u64)>,
}

/// What the transfer did, for the report.
#[derive(Debug, Default)]
struct Outcome {
    bytes: u64,
    started: Option<Instant>,
    finished: Option<Instant>,
    error: Option<String>,
    timed_out: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (common, server_port, connect) = match &cli.mode {
        Mode::Server(s) => (&s.common, Some(s.port), None),
        Mode::Client(c) => (&c.common, None, Some(c.connect)),
    };
    if common.send.is_none() && common.recv.is_none() {
        eprintln!("mptcp-tun: one of --send BYTES or --recv BYTES is required");
        return ExitCode::from(2);
    }
    let backup_after = match &cli.mode {
        Mode::Client(c) => c.backup_after,
        Mode::Server(_) => None,
    };
    if let Some(secs) = backup_after
        && !(secs.is_finite() && secs >= 0.0)
    {
        eprintln!("mptcp-tun: --backup-after takes a number of seconds >= 0, not {secs}");
        return ExitCode::from(2);
    }
    if let Some(remote) = connect
        && !common.addrs.iter().any(|a| a.is_ipv4() == remote.is_ipv4())
    {
        eprintln!("mptcp-tun: no --addr of the same family as {remote}");
        return ExitCode::from(2);
    }
    let device = match TunDevice::open(&common.tun, common.mtu) {
        Ok(d) => d,
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                " (opening a TUN device needs CAP_NET_ADMIN: run as root, or create it with `ip tuntap add dev NAME mode tun user $USER`)"
            } else {
                ""
            };
            eprintln!(
                "mptcp-tun: cannot open TUN device {:?}: {e}{hint}",
                common.tun
            );
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
    cfg.seed = seed_from_os();
    let mut endpoint = Endpoint::new(cfg);
    // The full-mesh path manager does the rest: the client opens a subflow from every --addr
    // to every server address (the one it connected to and those the server announces); the
    // server announces its --announce addresses.
    match &cli.mode {
        Mode::Client(c) => {
            for a in common.addrs.iter().chain(&c.backup) {
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
            for a in s.announce.iter().filter(|a| !common.addrs.contains(a)) {
                endpoint.add_address_with(
                    *a,
                    AddrFlags {
                        signal: true,
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
                eprintln!("mptcp-tun: cannot write pcap {path:?}: {e}");
                return ExitCode::from(EXIT_DEVICE);
            }
        };
    }
    let mut conn: Option<ConnectionHandle> = None;
    if let Some(port) = server_port {
        driver.node_mut().listen(port);
        if !common.json {
            eprintln!(
                "listening on port {port} of {:?} ({})",
                common.addrs,
                if common.plain_tcp {
                    "plain TCP"
                } else {
                    "MPTCP"
                }
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
                eprintln!("mptcp-tun: connect to {remote}: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
    }

    let total = common.send.or(common.recv).unwrap_or(0);
    let sending = common.send.is_some();
    let deadline = driver.now() + mptcp_stack::node::Duration::from_secs(common.timeout);
    let mut out = Outcome::default();
    let mut offset: u64 = 0;
    let mut closed = false;
    let mut buf = vec![0u8; 256 * 1024];
    let mut last_progress = driver.now();
    let json = common.json;
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
                Event::Closed(h, Some(e)) if Some(h) == conn => out.error = Some(e.to_string()),
                _ => {}
            }
        }
        if now > deadline {
            out.timed_out = true;
            return ControlFlow::Break(());
        }
        if out.error.is_some() {
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
        if !json && now - last_progress >= mptcp_stack::node::Duration::from_secs(1) {
            last_progress = now;
            let secs = out
                .started
                .map_or(0.0, |s| (now - s).total_micros() as f64 / 1e6)
                .max(1e-6);
            let rtts: Vec<String> = ep
                .mptcp(h)
                .map(|m| m.subflows())
                .unwrap_or(&[])
                .iter()
                .map(|s| {
                    format!(
                        "{}: {:?}",
                        s.tcp().local(),
                        s.tcp().srtt().map(|d| d.total_micros())
                    )
                })
                .collect();
            eprintln!(
                "{:>12} bytes  {:>9.1} Mbit/s  rtt us [{}]",
                offset,
                offset as f64 * 8.0 / secs / 1e6,
                rtts.join(", ")
            );
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
                        out.error = Some(e.to_string());
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
                        if let Some(bad) = first_mismatch(&buf[..n], offset) {
                            out.error = Some(format!("corrupt data at byte {bad}"));
                            return ControlFlow::Break(());
                        }
                        offset += n as u64;
                        if offset > total {
                            out.error = Some(format!("received more than {total} bytes"));
                            return ControlFlow::Break(());
                        }
                    }
                    Err(e) => {
                        out.error = Some(e.to_string());
                        return ControlFlow::Break(());
                    }
                }
            }
            if ep.recv_finished(h) {
                if offset != total {
                    out.error = Some(format!("peer closed after {offset} of {total} bytes"));
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
                    .is_some_and(|f| now - f > mptcp_stack::node::Duration::from_secs(2))
                {
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    });
    if let Err(e) = result {
        eprintln!("mptcp-tun: device error: {e}");
        return ExitCode::from(EXIT_DEVICE);
    }
    // A failed transfer resets the connection (MP_FASTCLOSE in MPTCP) so the peer does not
    // wait for a close that never comes.
    if (out.error.is_some() || out.timed_out)
        && let Some(h) = conn
    {
        let _ = driver.node_mut().abort(h);
    }
    // Give the last segments (a final ACK, or the reset) a moment to leave.
    for _ in 0..20 {
        let _ = driver.run_once(Some(StdDuration::from_millis(5)));
    }
    report(&driver, conn, &out, json, switched.as_ref());
    if out.timed_out {
        eprintln!("mptcp-tun: timed out after {} s", common.timeout);
        return ExitCode::from(EXIT_TIMEOUT);
    }
    if let Some(e) = &out.error {
        eprintln!("mptcp-tun: transfer failed: {e}");
        return ExitCode::from(EXIT_FAILED);
    }
    if out.bytes != total || out.finished.is_none() {
        eprintln!(
            "mptcp-tun: transfer incomplete: {} of {total} bytes",
            out.bytes
        );
        return ExitCode::from(EXIT_FAILED);
    }
    ExitCode::SUCCESS
}

fn report(
    driver: &Driver<Endpoint, TunDevice>,
    conn: Option<ConnectionHandle>,
    out: &Outcome,
    json: bool,
    switched: Option<&Switch>,
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
                "subflow {} -> {}: sent {} B, received {} B, retransmitted {} B, rtt {:?}, cwnd {} B, state {:?}",
                c.local(),
                c.remote(),
                s.bytes_sent,
                s.bytes_received,
                s.bytes_retransmitted,
                c.srtt(),
                c.cwnd(),
                c.state()
            );
        }
        if let Some(m) = mp {
            println!("counters: {:?}", m.counters());
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
        format!("\"{}\"", reason.replace('"', "'"))
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "{{\"bytes\":{},\"secs\":{secs:.6},\"mbit_s\":{mbit:.3},\"mptcp\":{mptcp},\"fallback_reason\":{fallback},\"subflows\":[{}],\"reinjected_bytes\":{},\"scheduler\":\"{}\",\"backup_switch_secs\":{switch_secs},\"counters\":{{\"add_addr_tx\":{},\"add_addr_rx\":{},\"echo_add_rx\":{},\"rm_addr_tx\":{},\"rm_addr_rx\":{},\"mp_prio_tx\":{},\"mp_prio_rx\":{},\"mp_join_synack_rx\":{},\"mp_join_ack_rx\":{},\"subflow_stale\":{},\"subflow_recover\":{}}}}}",
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
    );
}

fn fill_pattern(buf: &mut [u8], offset: u64) {
    let mut v = (offset % 251) as u8;
    for b in buf {
        *b = v;
        v = if v == 250 { 0 } else { v + 1 };
    }
}

fn first_mismatch(buf: &[u8], offset: u64) -> Option<u64> {
    let mut v = (offset % 251) as u8;
    for (i, &b) in buf.iter().enumerate() {
        if b != v {
            return Some(offset + i as u64);
        }
        v = if v == 250 { 0 } else { v + 1 };
    }
    None
}

/// A seed for ISNs and keys from the OS (RFC 9293 section 3.4.1 wants unpredictable ISNs).
fn seed_from_os() -> u64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ u64::from(std::process::id());
    }
    u64::from_le_bytes(bytes)
}
