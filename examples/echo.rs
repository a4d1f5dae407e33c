//! An echo server and client over a TUN interface, with the blocking API.
//!
//! ```text
//! cargo run --example echo -- server --tun NAME --addr IP [--addr IP ...] --port PORT
//! cargo run --example echo -- client --tun NAME --addr IP [--addr IP ...] --connect IP:PORT
//!                                    [--message TEXT] [--bytes N]
//! ```
//!
//! Each `--addr` is an address of this stack (owned by no kernel); the host routes them into
//! the TUN device (`ip route add IP dev NAME`). The client's first address carries the initial
//! subflow, every further one opens another subflow. The server echoes every connection until
//! the client shuts down its side; the client sends `--message` (or `--bytes N` of a pattern),
//! checks the echo and prints per-subflow statistics. Opening a TUN device needs root
//! (`CAP_NET_ADMIN`); `cargo run --example embed` runs without it.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mptcp_stack::api::{ConnectionStats, MptcpListener, MptcpStream, Stack, StackConfig};

const USAGE: &str = "usage:
  echo server --tun NAME --addr IP [--addr IP ...] --port PORT
  echo client --tun NAME --addr IP [--addr IP ...] --connect IP:PORT [--message TEXT] [--bytes N]";

#[derive(Debug, Default)]
struct Args {
    mode: String,
    tun: Option<String>,
    addrs: Vec<IpAddr>,
    port: Option<u16>,
    connect: Option<SocketAddr>,
    message: Option<String>,
    bytes: Option<usize>,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        mode: it.next().ok_or("missing mode (server or client)")?,
        ..Args::default()
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--tun" => args.tun = Some(value()?),
            "--addr" => args
                .addrs
                .push(value()?.parse().map_err(|e| format!("--addr: {e}"))?),
            "--port" => args.port = Some(value()?.parse().map_err(|e| format!("--port: {e}"))?),
            "--connect" => {
                args.connect = Some(value()?.parse().map_err(|e| format!("--connect: {e}"))?)
            }
            "--message" => args.message = Some(value()?),
            "--bytes" => args.bytes = Some(value()?.parse().map_err(|e| format!("--bytes: {e}"))?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.tun.is_none() || args.addrs.is_empty() {
        return Err("--tun and at least one --addr are required".into());
    }
    Ok(args)
}

fn open_stack(args: &Args) -> Result<Stack, String> {
    let mut config = StackConfig::new();
    for &a in &args.addrs {
        config = config.address(a);
    }
    let tun = args.tun.as_deref().unwrap_or_default();
    Stack::open_tun(tun, config).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            format!(
                "cannot open TUN device {tun:?}: {e}\nopening a TUN device needs root \
                 (CAP_NET_ADMIN): run it with sudo, or try `cargo run --example embed`, which \
                 needs no privileges"
            )
        } else {
            format!("cannot open TUN device {tun:?}: {e}")
        }
    })
}

fn print_stats(who: &str, s: &ConnectionStats) {
    println!(
        "{who}: {} -> {}, mode {:?}{}, scheduler {}, reinjected {} B",
        s.local,
        s.remote,
        s.mode,
        s.fallback_reason
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        s.scheduler,
        s.reinjected_bytes
    );
    for f in &s.subflows {
        println!(
            "  subflow {} -> {}  {:?}  sent {} B  received {} B  rtt {:?}  cwnd {}  backup {}  stale {}",
            f.local,
            f.remote,
            f.state,
            f.bytes_sent,
            f.bytes_received,
            f.srtt,
            f.cwnd,
            f.backup,
            f.stale
        );
    }
}

fn server(args: &Args) -> Result<(), String> {
    let port = args.port.ok_or("server needs --port")?;
    let stack = open_stack(args)?;
    let listener = MptcpListener::bind(&stack, port).map_err(|e| e.to_string())?;
    println!("echo server on port {port} of {:?}", args.addrs);
    for stream in listener.incoming() {
        let stream = stream.map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            let peer = stream.peer_addr().ok();
            let mut s = &stream;
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0usize;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Err(e) = s.write_all(&buf[..n]) {
                            eprintln!("{peer:?}: write: {e}");
                            return;
                        }
                        total += n;
                    }
                    Err(e) => {
                        eprintln!("{peer:?}: read: {e}");
                        return;
                    }
                }
            }
            let _ = stream.shutdown(Shutdown::Write);
            println!("echoed {total} bytes to {peer:?}");
            if let Ok(st) = stream.stats() {
                print_stats("server", &st);
            }
        });
    }
    Ok(())
}

fn client(args: &Args) -> Result<(), String> {
    let remote = args.connect.ok_or("client needs --connect IP:PORT")?;
    let data: Vec<u8> = match (args.bytes, &args.message) {
        (Some(n), _) => (0..n).map(|i| (i % 251) as u8).collect(),
        (None, Some(m)) => m.as_bytes().to_vec(),
        (None, None) => b"hello over MPTCP\n".to_vec(),
    };
    let stack = open_stack(args)?;
    let t0 = Instant::now();
    let stream = MptcpStream::connect_timeout(&stack, remote, Duration::from_secs(10))
        .map_err(|e| format!("connect to {remote}: {e}"))?;
    let stream = Arc::new(stream);
    let writer = {
        let (stream, data) = (stream.clone(), data.clone());
        std::thread::spawn(move || -> std::io::Result<()> {
            (&*stream).write_all(&data)?;
            stream.shutdown(Shutdown::Write)
        })
    };
    let mut back = Vec::new();
    (&*stream)
        .read_to_end(&mut back)
        .map_err(|e| format!("read: {e}"))?;
    writer
        .join()
        .map_err(|_| "writer panicked")?
        .map_err(|e| format!("write: {e}"))?;
    if back != data {
        return Err(format!(
            "the echo differs: sent {} bytes, got {}",
            data.len(),
            back.len()
        ));
    }
    if args.bytes.is_none() {
        print!("{}", String::from_utf8_lossy(&back));
    }
    println!("{} bytes echoed in {:.3?}", back.len(), t0.elapsed());
    print_stats("client", &stream.stats().map_err(|e| e.to_string())?);
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) if args.mode == "server" || args.mode == "client" => args,
        Ok(args) => {
            eprintln!("error: unknown mode {:?}\n\n{USAGE}", args.mode);
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let result = if args.mode == "server" {
        server(&args)
    } else {
        client(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
