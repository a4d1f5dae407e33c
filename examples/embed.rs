//! Embed the stack in an application: two stacks joined by an in-memory link (no root, no
//! TUN), each with two addresses, so the connection runs on two subflows. The client sends
//! 8 MB, the server echoes it, the client checks it and prints the connection's statistics;
//! then the client makes its second path a backup and moves one more megabyte.
//!
//! Run: `cargo run --release --example embed`

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use mptcp_stack::api::{
    ConnectOptions, ConnectionStats, MptcpListener, MptcpStream, Stack, StackConfig,
};
use mptcp_stack::driver::MemoryDevice;
use mptcp_stack::mptcp::SchedulerKind;

const CLIENT_1: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const CLIENT_2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
const SERVER_1: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
const SERVER_2: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2));
const PORT: u16 = 9000;

fn main() -> io::Result<()> {
    // 1. Two stacks, each on a thread of its own, over a pair of in-memory devices (a TUN
    //    device would be `Stack::open_tun("mptcp0", config)`).
    let (dev_c, dev_s) = MemoryDevice::pair(1500, 1024);
    let client = Stack::new(
        dev_c,
        StackConfig::new().address(CLIENT_1).address(CLIENT_2),
    )?;
    let server = Stack::new(
        dev_s,
        StackConfig::new().address(SERVER_1).address(SERVER_2),
    )?;

    // 2. An echo server: one thread per connection, like with std::net.
    let listener = MptcpListener::bind(&server, PORT)?;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut s = &stream;
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });

    // 3. Connect with the round-robin scheduler; the path manager adds the second subflow.
    let stream = ConnectOptions::new()
        .scheduler(SchedulerKind::RoundRobin)
        .connect(&client, SocketAddr::new(SERVER_1, PORT))?;
    let stream = Arc::new(stream);
    println!(
        "connected {} -> {}",
        stream.local_addr()?,
        stream.peer_addr()?
    );

    let t0 = Instant::now();
    let sent = echo(&stream, 8_000_000, false)?;
    println!("{sent} bytes echoed in {:.2?}", t0.elapsed());
    print_stats(&stream.stats()?);

    // 4. Path commands: make the second address a backup path; new data avoids it.
    client.set_address_backup(CLIENT_2, true)?;
    stream.set_scheduler(SchedulerKind::MinRtt)?;
    let sent = echo(&stream, 1_000_000, true)?;
    println!("\nafter making {CLIENT_2} a backup path: {sent} more bytes echoed");
    print_stats(&stream.stats()?);
    Ok(())
}

/// Send `len` bytes of a pattern from one thread while reading the echo on this one; with
/// `last`, shut down the write side and read to the end.
fn echo(stream: &Arc<MptcpStream>, len: usize, last: bool) -> io::Result<usize> {
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let writer = {
        let (stream, data) = (stream.clone(), data.clone());
        std::thread::spawn(move || -> io::Result<()> {
            (&*stream).write_all(&data)?;
            if last {
                stream.shutdown(Shutdown::Write)?;
            }
            Ok(())
        })
    };
    let mut back = vec![0u8; len];
    (&**stream).read_exact(&mut back)?;
    writer.join().expect("writer thread")?;
    assert!(back == data, "the echo differs");
    if last {
        let mut rest = Vec::new();
        (&**stream).read_to_end(&mut rest)?;
        assert!(rest.is_empty());
    }
    Ok(len)
}

fn print_stats(s: &ConnectionStats) {
    println!(
        "mode {:?}, scheduler {}, {} B sent, {} B received, {} B reinjected",
        s.mode, s.scheduler, s.bytes_sent, s.bytes_received, s.reinjected_bytes
    );
    for f in &s.subflows {
        println!(
            "  {:>21} -> {:<21} {:>9} B out {:>9} B in  rtt {:>9.3?}  cwnd {:>7}  backup {}",
            f.local.to_string(),
            f.remote.to_string(),
            f.bytes_sent,
            f.bytes_received,
            f.srtt.unwrap_or_default(),
            f.cwnd,
            f.backup
        );
    }
}
