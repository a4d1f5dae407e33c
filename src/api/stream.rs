//! [`MptcpStream`]: one MPTCP connection, as a blocking `Read + Write` stream, and
//! [`ConnectOptions`] to open one.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::core::{Accepted, Core, OpenStatus};
use super::signal::Signal;
use super::{ConnectionStats, Stack, endpoint_error, stopped};
use crate::driver::DriverHandle;
use crate::endpoint::ConnectionHandle;
use crate::mptcp::SchedulerKind;

/// The most bytes one read or write moves to or from the stack thread in one round trip.
const MAX_CHUNK: usize = 256 * 1024;

/// The outcome of one attempt: done, or nothing to do until the signal moves past a number.
#[derive(Debug)]
pub(crate) enum Step<T> {
    Ready(T),
    Wait(u64),
}

/// What a read found on the stack thread.
enum ReadStep {
    Data(Vec<u8>),
    Eof,
    Wait(u64),
}

/// How to open a connection: source address and port, scheduler, timeout. The defaults: the
/// stack's first address of the remote's family, an ephemeral port, the endpoint's default
/// scheduler, no timeout beyond the stack's SYN retries.
///
/// Subflows over the stack's other addresses are opened by the path manager once the
/// connection is up (every address with [`AddrFlags::subflow`](crate::mptcp::pm::AddrFlags));
/// more can be added later with [`MptcpStream::add_subflow`].
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    local_addr: Option<IpAddr>,
    local_port: u16,
    scheduler: Option<SchedulerKind>,
    timeout: Option<Duration>,
}

impl ConnectOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Open the initial subflow from this stack address.
    pub fn local_addr(mut self, addr: IpAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }

    /// Open the initial subflow from this port (0: an ephemeral port).
    pub fn local_port(mut self, port: u16) -> Self {
        self.local_port = port;
        self
    }

    /// Use this packet scheduler from the start.
    pub fn scheduler(mut self, scheduler: SchedulerKind) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Give up with `TimedOut` if the handshake has not completed after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Open a connection to `remote` and wait until it is established.
    pub fn connect(&self, stack: &Stack, remote: SocketAddr) -> io::Result<MptcpStream> {
        let stream = self.start(stack, remote)?;
        // A timeout too large for the clock means no deadline.
        let deadline = self.timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            match stream.poll_open()? {
                Step::Ready(()) => return Ok(stream),
                Step::Wait(seq) => {
                    if !stream.signal.wait_past(seq, deadline) {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("connection to {remote} timed out"),
                        ));
                    }
                }
            }
        }
    }

    /// Send the SYN; the stream is not yet established.
    pub(crate) fn start(&self, stack: &Stack, remote: SocketAddr) -> io::Result<MptcpStream> {
        let (local_addr, port, scheduler) = (self.local_addr, self.local_port, self.scheduler);
        let handle = stack.handle();
        let (conn, signal, local) = handle
            .call(move |core, _| -> io::Result<_> {
                let ip = match local_addr {
                    Some(ip) => ip,
                    None => *core
                        .endpoint()
                        .addresses()
                        .iter()
                        .find(|a| a.is_ipv4() == remote.is_ipv4())
                        .ok_or_else(|| {
                            io::Error::new(
                                io::ErrorKind::AddrNotAvailable,
                                format!("the stack has no address of {remote}'s family"),
                            )
                        })?,
                };
                let ep = core.endpoint_mut();
                let h = ep
                    .connect(SocketAddr::new(ip, port), remote)
                    .map_err(endpoint_error)?;
                if let Some(s) = scheduler {
                    ep.set_scheduler(h, s).map_err(endpoint_error)?;
                }
                let local = ep
                    .connection(h)
                    .map_or(SocketAddr::new(ip, port), |c| c.local());
                Ok((h, core.track(h), local))
            })
            .map_err(stopped)??;
        Ok(MptcpStream::new(handle, conn, signal, local, remote))
    }
}

/// One MPTCP connection: a blocking byte stream like [`std::net::TcpStream`] (see the
/// [module docs](super)). `Read` and `Write` are implemented for `&MptcpStream` too, so one
/// thread may read while another writes. Dropping it closes the connection cleanly.
pub struct MptcpStream {
    handle: DriverHandle<Core>,
    conn: ConnectionHandle,
    pub(crate) signal: Arc<Signal>,
    local: SocketAddr,
    peer: SocketAddr,
    read_timeout: Mutex<Option<Duration>>,
    write_timeout: Mutex<Option<Duration>>,
    nonblocking: AtomicBool,
    read_shutdown: AtomicBool,
}

impl fmt::Debug for MptcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MptcpStream")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl MptcpStream {
    fn new(
        handle: DriverHandle<Core>,
        conn: ConnectionHandle,
        signal: Arc<Signal>,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Self {
        MptcpStream {
            handle,
            conn,
            signal,
            local,
            peer,
            read_timeout: Mutex::new(None),
            write_timeout: Mutex::new(None),
            nonblocking: AtomicBool::new(false),
            read_shutdown: AtomicBool::new(false),
        }
    }

    pub(crate) fn accepted(handle: DriverHandle<Core>, a: Accepted) -> Self {
        Self::new(handle, a.handle, a.signal, a.local, a.remote)
    }

    /// Open a connection to `remote` from the stack's first address of its family and wait
    /// until it is established (the stack's other addresses join as more subflows).
    pub fn connect(stack: &Stack, remote: SocketAddr) -> io::Result<MptcpStream> {
        ConnectOptions::new().connect(stack, remote)
    }

    /// [`MptcpStream::connect`] that gives up with `TimedOut` after `timeout`.
    pub fn connect_timeout(
        stack: &Stack,
        remote: SocketAddr,
        timeout: Duration,
    ) -> io::Result<MptcpStream> {
        ConnectOptions::new()
            .timeout(timeout)
            .connect(stack, remote)
    }

    /// The remote address of the initial subflow.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }

    /// The local address of the initial subflow.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Shut down the write half (a DATA_FIN after the queued data), the read half (reads
    /// return 0 from now on; data still arriving is kept until the stream is dropped), or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.read_shutdown.store(true, Ordering::Release);
            // A reader blocked on another thread returns now (0 bytes), as with std's sockets.
            self.signal.notify();
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            let h = self.conn;
            self.call(move |core, _| core.endpoint_mut().close(h).map_err(endpoint_error))??;
        }
        Ok(())
    }

    /// Reset the connection at once (MP_FASTCLOSE with MPTCP, RST with TCP); queued data is
    /// lost and the peer sees `ConnectionReset`.
    pub fn abort(&self) -> io::Result<()> {
        let h = self.conn;
        self.call(move |core, _| core.endpoint_mut().abort(h).map_err(endpoint_error))?
    }

    /// A snapshot of the connection's and its subflows' statistics.
    pub fn stats(&self) -> io::Result<ConnectionStats> {
        let h = self.conn;
        self.call(move |core, _| {
            core.endpoint()
                .mptcp(h)
                .map(ConnectionStats::of)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
        })?
    }

    /// Use another packet scheduler from now on.
    pub fn set_scheduler(&self, scheduler: SchedulerKind) -> io::Result<()> {
        let h = self.conn;
        self.call(move |core, _| {
            core.endpoint_mut()
                .set_scheduler(h, scheduler)
                .map_err(endpoint_error)
        })?
    }

    /// Open one more subflow from the stack address `local` to `remote` (default: the peer
    /// address of the initial subflow) with MP_JOIN; `backup` asks the peer to use it only when
    /// the others fail. Returns once the SYN is queued.
    pub fn add_subflow(
        &self,
        local: IpAddr,
        remote: Option<SocketAddr>,
        backup: bool,
    ) -> io::Result<()> {
        let (h, remote) = (self.conn, remote.unwrap_or(self.peer));
        self.call(move |core, _| {
            core.endpoint_mut()
                .add_subflow(h, SocketAddr::new(local, 0), remote, backup)
                .map(|_| ())
                .map_err(endpoint_error)
        })?
    }

    /// Make this connection's subflows from the stack address `local` backups, or not
    /// (MP_PRIO to the peer). `AddrNotAvailable` when no subflow starts there.
    pub fn set_path_backup(&self, local: IpAddr, backup: bool) -> io::Result<()> {
        let h = self.conn;
        self.call(move |core, _| {
            let ep = core.endpoint_mut();
            let subs: Vec<usize> = ep
                .mptcp(h)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?
                .subflows()
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.is_retired() && s.tcp().local().ip() == local)
                .map(|(i, _)| i)
                .collect();
            if subs.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("no subflow of this connection starts at {local}"),
                ));
            }
            for i in subs {
                ep.set_backup(h, i, backup).map_err(endpoint_error)?;
            }
            Ok(())
        })?
    }

    /// Make reads give up after `timeout` with `WouldBlock` (as on Unix); `None`: block
    /// forever. A zero duration is `InvalidInput`, as in `std`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        set_timeout(&self.read_timeout, timeout)
    }

    /// Make writes give up after `timeout` with `WouldBlock`; `None`: block forever.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        set_timeout(&self.write_timeout, timeout)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(*self
            .read_timeout
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(*self
            .write_timeout
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// In non-blocking mode, reads and writes that would wait fail with `WouldBlock`.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.nonblocking.store(nonblocking, Ordering::Release);
        Ok(())
    }

    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core, crate::node::Instant) -> R + Send + 'static,
    ) -> io::Result<R> {
        self.handle.call(f).map_err(stopped)
    }

    /// Whether the handshake completed (`Ready`), or the number to wait past.
    pub(crate) fn poll_open(&self) -> io::Result<Step<()>> {
        let h = self.conn;
        match self.call(move |core, _| core.open_status(h))? {
            OpenStatus::Connected => Ok(Step::Ready(())),
            OpenStatus::Failed(e) => Err(e),
            OpenStatus::Pending(seq) => Ok(Step::Wait(seq)),
        }
    }

    /// One read attempt: data (0 at the end of the stream), or the number to wait past.
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<Step<usize>> {
        if buf.is_empty() || self.read_shutdown.load(Ordering::Acquire) {
            return Ok(Step::Ready(0));
        }
        let (h, len) = (self.conn, buf.len().min(MAX_CHUNK));
        let step = self.call(move |core, _| -> io::Result<ReadStep> {
            let seq = core.signal(h).map_or(0, |s| s.seq());
            let ep = core.endpoint_mut();
            let avail = ep
                .mptcp(h)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?
                .recv_available();
            let mut data = vec![0; len.min(avail).max(1)];
            let n = ep.recv(h, &mut data).map_err(endpoint_error)?;
            if n > 0 {
                data.truncate(n);
                return Ok(ReadStep::Data(data));
            }
            if ep.recv_finished(h) || ep.mptcp(h).is_some_and(|m| m.is_closed()) {
                return Ok(ReadStep::Eof);
            }
            Ok(ReadStep::Wait(seq))
        })??;
        Ok(match step {
            ReadStep::Data(data) => {
                buf[..data.len()].copy_from_slice(&data);
                Step::Ready(data.len())
            }
            ReadStep::Eof => Step::Ready(0),
            ReadStep::Wait(seq) => Step::Wait(seq),
        })
    }

    /// One write attempt: bytes taken (at least one), or the number to wait past.
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<Step<usize>> {
        if buf.is_empty() {
            return Ok(Step::Ready(0));
        }
        let h = self.conn;
        let data = buf[..buf.len().min(MAX_CHUNK)].to_vec();
        self.call(move |core, _| -> io::Result<Step<usize>> {
            let seq = core.signal(h).map_or(0, |s| s.seq());
            match core.endpoint_mut().send(h, &data).map_err(endpoint_error)? {
                0 => Ok(Step::Wait(seq)),
                n => Ok(Step::Ready(n)),
            }
        })?
    }

    /// Repeat `attempt` until it is ready, waiting on the connection's signal in between.
    fn block<T>(
        &self,
        timeout: &Mutex<Option<Duration>>,
        mut attempt: impl FnMut() -> io::Result<Step<T>>,
    ) -> io::Result<T> {
        let timeout = *timeout.lock().unwrap_or_else(PoisonError::into_inner);
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            // The stack is going away (or gone): the same answer however the wake-up raced
            // with the resets it sent on its way out.
            if self.signal.is_stopped() {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the MPTCP stack has stopped",
                ));
            }
            match attempt()? {
                Step::Ready(t) => return Ok(t),
                Step::Wait(seq) => {
                    if self.nonblocking.load(Ordering::Acquire)
                        || !self.signal.wait_past(seq, deadline)
                    {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                }
            }
        }
    }
}

fn set_timeout(slot: &Mutex<Option<Duration>>, timeout: Option<Duration>) -> io::Result<()> {
    if timeout == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        ));
    }
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = timeout;
    Ok(())
}

impl Read for &MptcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.block(&self.read_timeout, || self.try_read(buf))
    }
}

impl Write for &MptcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.block(&self.write_timeout, || self.try_write(buf))
    }

    /// Data is handed to the stack as it is written: nothing to flush (like `TcpStream`).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for MptcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for MptcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for MptcpStream {
    fn drop(&mut self) {
        let h = self.conn;
        // A stack already gone has nothing left to close.
        let _ = self.handle.execute(move |core, now| core.orphan(h, now));
    }
}
