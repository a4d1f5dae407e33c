//! An async echo server and client on tokio, over an in-memory link between two stacks (no
//! root, no TUN). The client has two addresses, so its connection runs on two subflows.
//!
//! Run: `cargo run --example tokio_echo --features tokio`

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use mptcp_stack::api::{AsyncMptcpListener, AsyncMptcpStream, Stack, StackConfig};
use mptcp_stack::driver::MemoryDevice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT_1: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const CLIENT_2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
const PORT: u16 = 7;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let (dev_c, dev_s) = MemoryDevice::pair(1500, 512);
    let client = Stack::new(
        dev_c,
        StackConfig::new().address(CLIENT_1).address(CLIENT_2),
    )?;
    let server = Stack::new(dev_s, StackConfig::new().address(SERVER))?;

    // The server: echo every connection until the client shuts its side down.
    let listener = AsyncMptcpListener::bind(&server, PORT)?;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, peer)) = listener.accept().await else {
                return;
            };
            println!("server: connection from {peer}");
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });

    // The client: send 1 MB, read it back, check it.
    let stream = AsyncMptcpStream::connect(&client, SocketAddr::new(SERVER, PORT)).await?;
    let data: Vec<u8> = (0..1_000_000).map(|i| (i % 251) as u8).collect();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let send = async {
        wr.write_all(&data).await?;
        wr.shutdown().await
    };
    let mut back = Vec::new();
    let (sent, received) = tokio::join!(send, rd.read_to_end(&mut back));
    sent?;
    received?;
    assert!(back == data, "the echo differs");
    let stream = rd.unsplit(wr);
    let stats = stream.stats()?;
    println!(
        "client: {} bytes echoed; MPTCP mode {:?}; {} subflows:",
        back.len(),
        stats.mode,
        stats.subflows.len()
    );
    for s in &stats.subflows {
        println!(
            "  {} -> {}  sent {:>8} B  received {:>8} B  rtt {:?}",
            s.local, s.remote, s.bytes_sent, s.bytes_received, s.srtt
        );
    }
    Ok(())
}
