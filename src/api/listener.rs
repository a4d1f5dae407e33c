//! [`MptcpListener`]: accepts MPTCP (and plain TCP) connections to one port of a [`Stack`].

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::core::{Accepted, Core, ListenShared};
use super::stream::Step;
use super::{MptcpStream, Stack, stopped};
use crate::driver::DriverHandle;

/// Accepts connections to one port on every address of a [`Stack`], like
/// [`std::net::TcpListener`]. Peers that do not speak MPTCP are accepted too (the stream then
/// runs as plain TCP: see [`ConnectionStats::mode`](super::ConnectionStats::mode)). Dropping it
/// stops accepting: a SYN to the port is then refused, and connections accepted by the stack
/// but not yet by the application are reset. At most `EndpointConfig::accept_backlog`
/// connections wait for [`MptcpListener::accept`]; beyond that, new SYNs get no answer until
/// the application takes one (the client sends its SYN again, as with a full Linux listen
/// queue).
pub struct MptcpListener {
    handle: DriverHandle<Core>,
    port: u16,
    shared: Arc<ListenShared>,
    nonblocking: AtomicBool,
}

impl fmt::Debug for MptcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MptcpListener")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl MptcpListener {
    /// Listen on `port` of every stack address. `AddrInUse` when another listener of this
    /// stack has the port; `InvalidInput` for port 0.
    pub fn bind(stack: &Stack, port: u16) -> io::Result<MptcpListener> {
        if port == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an MPTCP listener needs a port number",
            ));
        }
        let handle = stack.handle();
        let shared = handle
            .call(move |core, _| core.listen(port))
            .map_err(stopped)??;
        Ok(MptcpListener {
            handle,
            port,
            shared,
            nonblocking: AtomicBool::new(false),
        })
    }

    /// Wait for the next connection (handshake complete) and return its stream and the
    /// peer's address.
    pub fn accept(&self) -> io::Result<(MptcpStream, SocketAddr)> {
        loop {
            match self.try_accept()? {
                Step::Ready(a) => return Ok(a),
                Step::Wait(seq) => {
                    if self.nonblocking.load(Ordering::Acquire) {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    self.shared.signal.wait_past(seq, None);
                }
            }
        }
    }

    /// An endless iterator over [`MptcpListener::accept`]'s streams.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The port, on the unspecified address (the listener takes every stack address).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            self.port,
        ))
    }

    /// In non-blocking mode, `accept` fails with `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.nonblocking.store(nonblocking, Ordering::Release);
        Ok(())
    }

    /// One attempt: a connection, or the number to wait past.
    pub(crate) fn try_accept(&self) -> io::Result<Step<(MptcpStream, SocketAddr)>> {
        // Read the number before looking at the queue: a connection queued in between moves it.
        let seq = self.shared.signal.seq();
        if let Some(a) = self.shared.pop() {
            return Ok(Step::Ready(self.stream(a)));
        }
        if self.shared.signal.is_stopped() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the MPTCP stack has stopped",
            ));
        }
        Ok(Step::Wait(seq))
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn shared(&self) -> &ListenShared {
        &self.shared
    }

    fn stream(&self, a: Accepted) -> (MptcpStream, SocketAddr) {
        let peer = a.remote;
        // The application has the connection now: it leaves the port's accept backlog
        // (`EndpointConfig::accept_backlog`), making room for the next handshake.
        let h = a.handle;
        let _ = self.handle.execute(move |core, _| {
            let _ = core.endpoint_mut().accept(h);
        });
        (MptcpStream::accepted(self.handle.clone(), a), peer)
    }
}

impl Drop for MptcpListener {
    fn drop(&mut self) {
        let port = self.port;
        let _ = self.handle.execute(move |core, _| core.unlisten(port));
    }
}

/// The iterator of [`MptcpListener::incoming`]: never returns `None`.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a MptcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<MptcpStream>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}
