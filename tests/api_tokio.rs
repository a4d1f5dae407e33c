//! The tokio adapter over an in-memory link: an async echo server and several async clients
//! at once on one current-thread runtime, with verified data.
#![cfg(feature = "tokio")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use mptcp_stack::api::{AsyncMptcpListener, AsyncMptcpStream, Stack, StackConfig};
use mptcp_stack::driver::MemoryDevice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const A1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1));
const A2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 2, 0, 1));
const B1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2));

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + seed * 13) % 251) as u8)
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn async_echo_with_concurrent_clients() {
    const CONNS: usize = 3;
    const LEN: usize = 200_000;
    let (dev_a, dev_b) = MemoryDevice::pair(1500, 512);
    let a = Stack::new(dev_a, StackConfig::new().address(A1).address(A2).seed(5)).unwrap();
    let b = Stack::new(dev_b, StackConfig::new().address(B1).seed(6)).unwrap();
    let listener = AsyncMptcpListener::bind(&b, 6000).unwrap();

    let server = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..CONNS {
            let (mut s, _) = listener.accept().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).await.unwrap();
                }
                s.shutdown().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });

    let clients = (0..CONNS).map(|i| {
        let a = &a;
        async move {
            let s = AsyncMptcpStream::connect(a, SocketAddr::new(B1, 6000))
                .await
                .unwrap();
            let data = pattern(i, LEN);
            let (mut rd, mut wr) = tokio::io::split(s);
            let send = async {
                wr.write_all(&data).await.unwrap();
                wr.shutdown().await.unwrap();
            };
            let recv = async {
                let mut back = Vec::new();
                rd.read_to_end(&mut back).await.unwrap();
                back
            };
            let ((), back) = tokio::join!(send, recv);
            assert!(back == data, "connection {i}: {} bytes back", back.len());
        }
    });
    futures_join_all(clients).await;
    server.await.unwrap();
}

/// Await every future of `futs` concurrently (without a futures crate).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futs: impl Iterator<Item = F>) {
    let mut futs: Vec<_> = futs.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        futs.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futs.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}
