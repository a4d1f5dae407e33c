//! The stack thread's node: the [`Endpoint`] plus what the application side waits on.
//!
//! Contract: [`Core`] is a [`Node`] that forwards everything to its endpoint and, after every
//! input and every transmission, turns the endpoint's events into [`Signal`] notifications:
//! `Connected`, `Readable`, `Writable` and `Closed` wake the connection's waiters; `Accepted`
//! queues the connection on its port's listener (or resets it when nobody listens any more).
//! Connections whose stream was dropped ("orphans") are closed, their incoming data is
//! discarded, and they are released once closed or when their orphan deadline passes (an
//! extra timer folded into [`Node::poll_timeout`]).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use super::signal::Signal;
use crate::endpoint::{ConnectionHandle, Endpoint, Event};
use crate::node::{Duration, Instant, Node, Transmit};

/// A connection the application side knows.
#[derive(Debug)]
struct Conn {
    signal: Arc<Signal>,
    /// The stream was dropped: abort when this passes.
    orphan_deadline: Option<Instant>,
    closed: bool,
}

/// An accepted connection waiting for [`MptcpListener::accept`](super::MptcpListener::accept).
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) handle: ConnectionHandle,
    pub(crate) signal: Arc<Signal>,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
}

/// What a listener shares with the stack thread.
#[derive(Debug, Default)]
pub(crate) struct ListenShared {
    pub(crate) signal: Signal,
    pub(crate) queue: Mutex<VecDeque<Accepted>>,
}

impl ListenShared {
    pub(crate) fn pop(&self) -> Option<Accepted> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }
}

/// Where an active open stands.
#[derive(Debug)]
pub(crate) enum OpenStatus {
    Connected,
    Failed(io::Error),
    /// Still in progress; wait past this sequence number.
    Pending(u64),
}

/// The node the stack thread drives (see the module docs).
#[derive(Debug)]
pub(crate) struct Core {
    ep: Endpoint,
    conns: HashMap<ConnectionHandle, Conn>,
    listeners: HashMap<u16, Arc<ListenShared>>,
    orphan_timeout: Duration,
    scratch: Vec<u8>,
}

/// The longest `orphan_timeout` honoured (100 years): longer means "never", without overflow.
const MAX_ORPHAN_MICROS: i64 = 100 * 365 * 24 * 3600 * 1_000_000;

impl Drop for Core {
    /// Also on a panic of the stack thread: no application thread may keep waiting.
    fn drop(&mut self) {
        self.stop_signals();
    }
}

impl Core {
    pub(crate) fn new(ep: Endpoint, orphan_timeout: std::time::Duration) -> Self {
        // At most 100 years: the deadline is `now + orphan_timeout` in i64 microseconds.
        let micros = i64::try_from(orphan_timeout.as_micros())
            .unwrap_or(i64::MAX)
            .min(MAX_ORPHAN_MICROS);
        Core {
            ep,
            conns: HashMap::new(),
            listeners: HashMap::new(),
            orphan_timeout: Duration::from_micros(micros.max(0).unsigned_abs()),
            scratch: vec![0; 64 * 1024],
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    pub(crate) fn endpoint_mut(&mut self) -> &mut Endpoint {
        &mut self.ep
    }

    /// The signal of a connection the application side knows.
    pub(crate) fn signal(&self, h: ConnectionHandle) -> Option<&Arc<Signal>> {
        self.conns.get(&h).map(|c| &c.signal)
    }

    /// Start tracking a connection the application opened.
    pub(crate) fn track(&mut self, h: ConnectionHandle) -> Arc<Signal> {
        let signal = Arc::new(Signal::default());
        self.conns.insert(
            h,
            Conn {
                signal: signal.clone(),
                orphan_deadline: None,
                closed: false,
            },
        );
        signal
    }

    /// Where the active open of `h` stands.
    pub(crate) fn open_status(&self, h: ConnectionHandle) -> OpenStatus {
        let (Some(conn), Some(m)) = (self.conns.get(&h), self.ep.mptcp(h)) else {
            return OpenStatus::Failed(io::ErrorKind::NotConnected.into());
        };
        if let Some(e) = m.error() {
            return OpenStatus::Failed(super::conn_error(e));
        }
        if m.is_established() {
            return OpenStatus::Connected;
        }
        if m.is_closed() {
            return OpenStatus::Failed(io::ErrorKind::ConnectionAborted.into());
        }
        OpenStatus::Pending(conn.signal.seq())
    }

    /// Accept connections to `port`.
    pub(crate) fn listen(&mut self, port: u16) -> io::Result<Arc<ListenShared>> {
        if self.listeners.contains_key(&port) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("port {port} is already bound on this stack"),
            ));
        }
        let shared = Arc::new(ListenShared::default());
        self.listeners.insert(port, shared.clone());
        self.ep.listen(port);
        Ok(shared)
    }

    /// Stop accepting on `port`; connections accepted and not yet taken are reset.
    pub(crate) fn unlisten(&mut self, port: u16) {
        let Some(shared) = self.listeners.remove(&port) else {
            return;
        };
        self.ep.unlisten(port);
        shared.signal.stop();
        while let Some(a) = shared.pop() {
            self.forget(a.handle);
        }
    }

    /// The application dropped the stream of `h`: close it cleanly, and forget it once closed.
    pub(crate) fn orphan(&mut self, h: ConnectionHandle, now: Instant) {
        let deadline = now + self.orphan_timeout;
        let Some(conn) = self.conns.get_mut(&h) else {
            return;
        };
        if conn.closed || self.ep.mptcp(h).is_none_or(|m| m.is_closed()) {
            self.forget(h);
            return;
        }
        conn.orphan_deadline = Some(deadline);
        let _ = self.ep.close(h);
        if self.ep.mptcp(h).is_none_or(|m| m.is_closed()) {
            // A handshake still under way ends at once.
            self.forget(h);
            return;
        }
        self.discard_input(h);
    }

    /// Release `h` (a reset if it is still open) and stop tracking it.
    fn forget(&mut self, h: ConnectionHandle) {
        self.conns.remove(&h);
        self.ep.release(h);
    }

    /// Read and drop whatever an orphan received, so the peer's close can complete.
    fn discard_input(&mut self, h: ConnectionHandle) {
        while let Ok(n) = self.ep.recv(h, &mut self.scratch) {
            if n == 0 {
                break;
            }
        }
    }

    /// Reset every connection (the stack is going away).
    pub(crate) fn abort_all(&mut self) {
        // Streams learn that the stack is stopping before the resets wake them, so a blocked
        // reader or writer always sees `NotConnected`, never a race with `ConnectionAborted`.
        for c in self.conns.values() {
            c.signal.stop();
        }
        let handles: Vec<_> = self.conns.keys().copied().collect();
        for h in handles {
            let _ = self.ep.abort(h);
        }
        let ports: Vec<_> = self.listeners.keys().copied().collect();
        for p in ports {
            self.unlisten(p);
        }
    }

    /// The loop has ended: wake everyone for good.
    pub(crate) fn stopped(&mut self) {
        self.stop_signals();
    }

    fn stop_signals(&self) {
        for c in self.conns.values() {
            c.signal.stop();
        }
        for l in self.listeners.values() {
            l.signal.stop();
        }
    }

    /// Turn the endpoint's events into wake-ups (see the module docs).
    pub(crate) fn dispatch(&mut self) {
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                Event::Accepted(h) => self.on_accepted(h),
                Event::Connected(h) | Event::Writable(h) => self.notify(h),
                Event::Readable(h) => {
                    if self
                        .conns
                        .get(&h)
                        .is_some_and(|c| c.orphan_deadline.is_some())
                    {
                        self.discard_input(h);
                    } else {
                        self.notify(h);
                    }
                }
                Event::Closed(h, _) => {
                    let Some(conn) = self.conns.get_mut(&h) else {
                        continue;
                    };
                    conn.closed = true;
                    if conn.orphan_deadline.is_some() {
                        self.forget(h);
                    } else {
                        conn.signal.notify();
                    }
                }
            }
        }
    }

    fn notify(&self, h: ConnectionHandle) {
        if let Some(c) = self.conns.get(&h) {
            c.signal.notify();
        }
    }

    fn on_accepted(&mut self, h: ConnectionHandle) {
        let Some(tcp) = self.ep.connection(h) else {
            return;
        };
        let (local, remote) = (tcp.local(), tcp.remote());
        let Some(listener) = self.listeners.get(&local.port()).cloned() else {
            // Nobody listens on this port any more.
            self.ep.release(h);
            return;
        };
        let signal = self.track(h);
        listener
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(Accepted {
                handle: h,
                signal,
                local,
                remote,
            });
        listener.signal.notify();
    }

    fn orphan_deadline(&self) -> Option<Instant> {
        self.conns.values().filter_map(|c| c.orphan_deadline).min()
    }
}

impl Node for Core {
    fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.ep.handle_packet(now, packet);
        self.dispatch();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        if self.orphan_deadline().is_some_and(|t| t <= now) {
            let late: Vec<_> = self
                .conns
                .iter()
                .filter(|(_, c)| c.orphan_deadline.is_some_and(|t| t <= now))
                .map(|(h, _)| *h)
                .collect();
            for h in late {
                self.forget(h);
            }
        }
        self.dispatch();
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let out = self.ep.poll_transmit(now, buf);
        self.dispatch();
        out
    }

    fn poll_transmit_segments(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        max_segments: usize,
    ) -> Option<Transmit> {
        let out = self.ep.poll_transmit_segments(now, buf, max_segments);
        self.dispatch();
        out
    }

    fn handle_packet_trusted(&mut self, now: Instant, packet: &[u8]) {
        self.ep.handle_packet_trusted(now, packet);
        self.dispatch();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.ep.poll_timeout(), self.orphan_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
