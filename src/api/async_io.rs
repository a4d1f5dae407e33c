//! The tokio adapter (feature `tokio`): [`AsyncMptcpStream`] implements tokio's `AsyncRead`
//! and `AsyncWrite`, [`AsyncMptcpListener`] accepts with `.await`. Runtime-agnostic: they need
//! no tokio runtime feature and no timer (wrap them in `tokio::time::timeout` for deadlines).
//!
//! Contract: each poll makes one synchronous round trip to the stack thread over its command
//! channel (microseconds: the stack thread runs commands between packet batches and never
//! waits on the network for them). When there is nothing to do, the task's waker is registered
//! with the connection's (or listener's) signal, and the stack thread wakes it on the next
//! event of that connection: no polling, no blocking on the network.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr, SocketAddr};
//! use mptcp_stack::api::{AsyncMptcpListener, AsyncMptcpStream, Stack, StackConfig};
//! use mptcp_stack::driver::MemoryDevice;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let (a, b): (IpAddr, IpAddr) = (Ipv4Addr::new(10, 0, 0, 1).into(), Ipv4Addr::new(10, 0, 0, 2).into());
//! let (dev_a, dev_b) = MemoryDevice::pair(1500, 256);
//! let client = Stack::new(dev_a, StackConfig::new().address(a).seed(1))?;
//! let server = Stack::new(dev_b, StackConfig::new().address(b).seed(2))?;
//! let listener = AsyncMptcpListener::bind(&server, 7)?;
//! let (mut out, (mut inc, _)) = tokio::try_join!(
//!     AsyncMptcpStream::connect(&client, SocketAddr::new(b, 7)),
//!     listener.accept(),
//! )?;
//! out.write_all(b"ping").await?;
//! let mut buf = [0u8; 4];
//! inc.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"ping");
//! # Ok(())
//! # }
//! ```

use std::future::poll_fn;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stream::Step;
use super::{ConnectOptions, ConnectionStats, MptcpListener, MptcpStream, Stack};

/// An MPTCP connection for async code: tokio's `AsyncRead` + `AsyncWrite` over an
/// [`MptcpStream`] (see the module docs).
#[derive(Debug)]
pub struct AsyncMptcpStream {
    inner: MptcpStream,
}

impl AsyncMptcpStream {
    /// Open a connection to `remote` from the stack's first address of its family.
    pub async fn connect(stack: &Stack, remote: SocketAddr) -> io::Result<AsyncMptcpStream> {
        Self::connect_with(stack, remote, &ConnectOptions::new()).await
    }

    /// Open a connection with explicit options (the options' timeout is not applied here:
    /// use `tokio::time::timeout`; dropping the future abandons the attempt).
    pub async fn connect_with(
        stack: &Stack,
        remote: SocketAddr,
        options: &ConnectOptions,
    ) -> io::Result<AsyncMptcpStream> {
        let inner = options.start(stack, remote)?;
        poll_fn(|cx| {
            loop {
                match inner.poll_open()? {
                    Step::Ready(()) => return Poll::Ready(Ok::<(), io::Error>(())),
                    Step::Wait(seq) => {
                        if inner.signal.register(seq, cx.waker()) {
                            return Poll::Pending;
                        }
                    }
                }
            }
        })
        .await?;
        Ok(AsyncMptcpStream { inner })
    }

    /// Wrap a blocking stream (it must stay in blocking mode; timeouts do not apply here).
    pub fn from_std(inner: MptcpStream) -> Self {
        AsyncMptcpStream { inner }
    }

    /// The blocking stream inside (for stats, path commands, shutdown ...).
    pub fn get_ref(&self) -> &MptcpStream {
        &self.inner
    }

    /// Unwrap the blocking stream.
    pub fn into_std(self) -> MptcpStream {
        self.inner
    }

    /// The remote address of the initial subflow.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The local address of the initial subflow.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// A snapshot of the connection's and its subflows' statistics.
    pub fn stats(&self) -> io::Result<ConnectionStats> {
        self.inner.stats()
    }

    fn poll_step<T>(
        &self,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut() -> io::Result<Step<T>>,
    ) -> Poll<io::Result<T>> {
        loop {
            match attempt() {
                Err(e) => return Poll::Ready(Err(e)),
                Ok(Step::Ready(t)) => return Poll::Ready(Ok(t)),
                Ok(Step::Wait(seq)) => {
                    if self.inner.signal.register(seq, cx.waker()) {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl AsyncRead for AsyncMptcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let unfilled = buf.initialize_unfilled();
        let n = match this.poll_step(cx, || this.inner.try_read(unfilled)) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for AsyncMptcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.poll_step(cx, || this.inner.try_write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Shut down the write half (DATA_FIN after the queued data).
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.inner.shutdown(Shutdown::Write))
    }
}

/// Accepts connections to one port of a [`Stack`] with `.await` (see [`MptcpListener`]).
#[derive(Debug)]
pub struct AsyncMptcpListener {
    inner: MptcpListener,
}

impl AsyncMptcpListener {
    /// Listen on `port` of every stack address.
    pub fn bind(stack: &Stack, port: u16) -> io::Result<AsyncMptcpListener> {
        Ok(AsyncMptcpListener {
            inner: MptcpListener::bind(stack, port)?,
        })
    }

    /// The next connection and the peer's address.
    pub async fn accept(&self) -> io::Result<(AsyncMptcpStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Poll for the next connection.
    pub fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(AsyncMptcpStream, SocketAddr)>> {
        loop {
            match self.inner.try_accept() {
                Err(e) => return Poll::Ready(Err(e)),
                Ok(Step::Ready((s, peer))) => {
                    return Poll::Ready(Ok((AsyncMptcpStream::from_std(s), peer)));
                }
                Ok(Step::Wait(seq)) => {
                    if self.inner.shared().signal.register(seq, cx.waker()) {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// The port, on the unspecified address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}
