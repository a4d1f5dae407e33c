//! The event loop: [`Driver`] owns a [`Node`] and a [`PacketDevice`] and moves packets and time
//! between them; [`DriverHandle`] reaches it from other threads; [`DriverThread`] runs it on a
//! thread of its own.
//!
//! Contract of one iteration ([`Driver::run_once`]):
//!
//! 1. run the queued [commands](Command) (at most one batch), each with the current time;
//! 2. receive up to one batch of packets, each into [`Node::handle_packet`], or
//!    [`Node::handle_packet_trusted`] when the device vouches for its checksums (and the
//!    capture);
//! 3. call [`Node::handle_timeout`] if [`Node::poll_timeout`] is due;
//! 4. drain [`Node::poll_transmit`] into the device (at most a few batches): a packet the device
//!    refuses is counted in [`DriverStats::send_errors`] and lost, like on a congested link. A
//!    device with segmentation offload ([`PacketDevice::max_segments`] above 1) is drained
//!    with [`Node::poll_transmit_segments`] instead and takes super segments through
//!    [`PacketDevice::send_segments`]; one counts as one packet in the stats (and is one
//!    record, with its partial checksum, in a capture, as `tcpdump` shows Linux's TSO);
//! 5. unless a batch limit was hit (more work is waiting), sleep in [`PacketDevice::wait`] until
//!    the node's timer, the next packet, a command or a stop, whichever is first.
//!
//! [`Driver::run`] repeats this until a [`DriverHandle::stop`], or an I/O error, which it returns:
//! a receive error (the device is gone) or a capture write error. Commands still queued when the loop ends are dropped, so their
//! callers see [`DriverStopped`].

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};

use super::{Clock, PacketDevice, PcapWriter, Waker};
use crate::node::{Instant, Node, Transmit};

/// A closure run on the loop thread against the node, with the current time: how an
/// application thread acts on a node it does not own.
pub type Command<N> = Box<dyn FnOnce(&mut N, Instant) + Send>;

/// The driver has stopped (or stopped before running the command).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the driver has stopped")]
pub struct DriverStopped;

/// What the loop did, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Packets received from the device and given to the node.
    pub packets_in: u64,
    /// Packets the node produced and the device accepted.
    pub packets_out: u64,
    /// Bytes of `packets_in`.
    pub bytes_in: u64,
    /// Bytes of `packets_out`.
    pub bytes_out: u64,
    /// Packets the node produced that the device refused (queue full, link down, over MTU).
    pub send_errors: u64,
    /// Calls of [`Node::handle_timeout`].
    pub timeouts: u64,
    /// Commands run.
    pub commands: u64,
    /// Loop iterations.
    pub iterations: u64,
}

/// State shared between the loop and its handles.
#[derive(Debug, Default)]
struct Shared {
    /// A handle asked the loop to stop.
    stop: AtomicBool,
    /// The loop has ended and dropped its queued commands.
    finished: AtomicBool,
}

/// Packets (or commands) handled per batch before the loop looks at the other inputs again.
const DEFAULT_BATCH: usize = 64;
/// Receive buffer size: the largest IP packet, whatever the MTU claims.
const RX_BUF: usize = 65535;

/// The single-threaded event loop around one node and one device (see the module docs).
pub struct Driver<N, D> {
    node: N,
    device: D,
    clock: Clock,
    pcap: Option<PcapWriter<Box<dyn Write + Send>>>,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    /// The device's [`PacketDevice::max_segments`], read once.
    max_segments: usize,
    commands_tx: Sender<Command<N>>,
    commands_rx: Receiver<Command<N>>,
    shared: Arc<Shared>,
    waker: Waker,
    batch: usize,
    stats: DriverStats,
}

impl<N: Node, D: PacketDevice> Driver<N, D> {
    /// A driver for `node` over `device`; its clock starts now.
    pub fn new(node: N, device: D) -> Self {
        let (commands_tx, commands_rx) = unbounded();
        let waker = device.waker();
        let mtu = device.mtu();
        let max_segments = device.max_segments().max(1);
        // A device with segmentation offload takes super segments up to the IP length limit.
        let tx_len = if max_segments > 1 {
            RX_BUF.max(mtu)
        } else {
            mtu
        };
        Driver {
            node,
            device,
            clock: Clock::new(),
            pcap: None,
            rx_buf: vec![0; RX_BUF.max(mtu)],
            tx_buf: vec![0; tx_len],
            max_segments,
            commands_tx,
            commands_rx,
            shared: Arc::default(),
            waker,
            batch: DEFAULT_BATCH,
            stats: DriverStats::default(),
        }
    }

    /// Use `clock` instead of a fresh one (to share a time base between drivers).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Record every packet in and out to `sink` as pcap (the header is written now).
    pub fn with_pcap(mut self, sink: impl Write + Send + 'static) -> io::Result<Self> {
        self.pcap = Some(PcapWriter::new(Box::new(sink) as Box<dyn Write + Send>)?);
        Ok(self)
    }

    /// Record every packet in and out to a new pcap file at `path` (buffered; flushed when the
    /// loop ends and when the driver is dropped).
    pub fn with_pcap_file(self, path: impl AsRef<Path>) -> io::Result<Self> {
        let file = std::fs::File::create(path)?;
        self.with_pcap(BufWriter::new(file))
    }

    /// Handle at most `batch` packets (and commands) per step before looking at the other
    /// inputs (default 64; at least 1).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// A handle for other threads: commands and stop.
    pub fn handle(&self) -> DriverHandle<N> {
        DriverHandle {
            commands: self.commands_tx.clone(),
            shared: self.shared.clone(),
            waker: self.waker.clone(),
        }
    }

    /// The node.
    pub fn node(&self) -> &N {
        &self.node
    }

    /// The node, mutably (between iterations).
    pub fn node_mut(&mut self) -> &mut N {
        &mut self.node
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Node time now.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// What the loop has done so far.
    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// Take the node and the device back (the capture is flushed and closed).
    pub fn into_parts(mut self) -> (N, D) {
        if let Some(pcap) = self.pcap.as_mut() {
            let _ = pcap.flush();
        }
        (self.node, self.device)
    }

    /// One iteration (see the module docs); the sleep lasts at most `max_wait` (`None`: until
    /// the node's timer or an event).
    pub fn run_once(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        self.stats.iterations += 1;
        let more = self.step()?;
        if more || !self.commands_rx.is_empty() || self.shared.stop.load(Ordering::Acquire) {
            return Ok(());
        }
        let now = self.clock.now();
        let until_timer = self.node.poll_timeout().map(|t| Clock::until(now, t));
        let timeout = match (until_timer, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if timeout == Some(Duration::ZERO) {
            return Ok(());
        }
        self.device.wait(timeout)
    }

    /// Run until a [`DriverHandle::stop`] or an I/O error (device receive, capture write).
    pub fn run(&mut self) -> io::Result<()> {
        self.run_with(|_, _| ControlFlow::Continue(()))
    }

    /// Like [`Driver::run`], calling `hook` with the node and the time after every iteration;
    /// the loop ends when it returns `ControlFlow::Break`. For a loop owned by the
    /// application's own thread (commands from other threads need [`DriverHandle`]).
    pub fn run_with<F>(&mut self, mut hook: F) -> io::Result<()>
    where
        F: FnMut(&mut N, Instant) -> ControlFlow<()>,
    {
        self.shared.finished.store(false, Ordering::Release);
        let result = loop {
            if self.shared.stop.load(Ordering::Acquire) {
                break Ok(());
            }
            // `run_once` does not sleep after a step that received packets, so the hook sees
            // data that arrived with the last packet of a burst before the loop sleeps.
            if let Err(e) = self.run_once(None) {
                break Err(e);
            }
            if hook(&mut self.node, self.clock.now()).is_break() {
                break Ok(());
            }
        };
        self.shared.finished.store(true, Ordering::Release);
        // Queued commands will not run: drop them so that callers waiting on them return.
        while self.commands_rx.try_recv().is_ok() {}
        let flushed = match self.pcap.as_mut() {
            Some(pcap) => pcap.flush(),
            None => Ok(()),
        };
        result.and(flushed)
    }

    /// Run the loop on a new thread named `name`.
    pub fn spawn(self, name: &str) -> io::Result<DriverThread<N, D>>
    where
        N: Send + 'static,
        D: Send + 'static,
    {
        let handle = self.handle();
        let mut driver = self;
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let result = driver.run();
                (driver, result)
            })?;
        Ok(DriverThread {
            handle,
            thread: Some(thread),
        })
    }

    /// Steps 1 to 4 of an iteration; `true` when a batch limit left work waiting.
    fn step(&mut self) -> io::Result<bool> {
        let mut more = false;

        // 1. Commands.
        let now = self.clock.now();
        for _ in 0..self.batch {
            let Ok(command) = self.commands_rx.try_recv() else {
                break;
            };
            command(&mut self.node, now);
            self.stats.commands += 1;
        }

        // 2. Received packets.
        let mut received = 0;
        while received < self.batch {
            let now = self.clock.now();
            let Some(rx) = self.device.recv_packet(now, &mut self.rx_buf)? else {
                break;
            };
            let packet = &self.rx_buf[..rx.len.min(self.rx_buf.len())];
            if let Some(pcap) = self.pcap.as_mut() {
                pcap.write_packet(since_epoch(self.clock.wall_time(now)), packet)?;
            }
            if rx.checksum_trusted {
                self.node.handle_packet_trusted(now, packet);
            } else {
                self.node.handle_packet(now, packet);
            }
            self.stats.packets_in += 1;
            self.stats.bytes_in += packet.len() as u64;
            received += 1;
        }
        // A batch limit, or packets the owner has not yet seen: do not sleep before the owner
        // (a `run_with` hook, or the caller of `run_once`) had a look.
        more |= received > 0;

        // 3. Timers.
        let now = self.clock.now();
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
            self.stats.timeouts += 1;
        }

        // 4. Transmissions.
        let limit = self.batch.saturating_mul(4);
        let mut sent = 0;
        while sent < limit {
            let out = if self.max_segments > 1 {
                self.node
                    .poll_transmit_segments(now, &mut self.tx_buf, self.max_segments)
            } else {
                self.node
                    .poll_transmit(now, &mut self.tx_buf)
                    .map(Transmit::single)
            };
            let Some(out) = out else {
                break;
            };
            sent += 1;
            let packet = &self.tx_buf[..out.len.min(self.tx_buf.len())];
            if let Some(pcap) = self.pcap.as_mut() {
                pcap.write_packet(since_epoch(self.clock.wall_time(now)), packet)?;
            }
            let result = match out.segment_size {
                Some(size) => self.device.send_segments(now, packet, size),
                None => self.device.send(now, packet),
            };
            match result {
                Ok(()) => {
                    self.stats.packets_out += 1;
                    self.stats.bytes_out += packet.len() as u64;
                }
                Err(_) => self.stats.send_errors += 1,
            }
        }
        if sent > 0 && self.device.flush(now).is_err() {
            self.stats.send_errors += 1;
        }
        more |= sent == limit;
        Ok(more)
    }
}

impl<N, D> fmt::Debug for Driver<N, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("clock", &self.clock)
            .field("pcap", &self.pcap.is_some())
            .field("batch", &self.batch)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

/// Reaches a [`Driver`] from any thread: queue commands, stop it. Cheap to clone.
pub struct DriverHandle<N> {
    commands: Sender<Command<N>>,
    shared: Arc<Shared>,
    waker: Waker,
}

impl<N> Clone for DriverHandle<N> {
    fn clone(&self) -> Self {
        DriverHandle {
            commands: self.commands.clone(),
            shared: self.shared.clone(),
            waker: self.waker.clone(),
        }
    }
}

impl<N> fmt::Debug for DriverHandle<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverHandle")
            .field("stop_requested", &self.shared.stop.load(Ordering::Relaxed))
            .field("finished", &self.shared.finished.load(Ordering::Relaxed))
            .finish()
    }
}

impl<N: 'static> DriverHandle<N> {
    /// Queue `f` to run on the loop thread against the node, and wake the loop. Returns at
    /// once; `f` runs at the start of the next iteration, unless the loop ends first.
    pub fn execute(
        &self,
        f: impl FnOnce(&mut N, Instant) + Send + 'static,
    ) -> Result<(), DriverStopped> {
        if self.is_finished() {
            return Err(DriverStopped);
        }
        self.commands.send(Box::new(f)).map_err(|_| DriverStopped)?;
        self.waker.wake();
        Ok(())
    }

    /// Run `f` on the loop thread against the node and wait for its result.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut N, Instant) -> R + Send + 'static,
    ) -> Result<R, DriverStopped> {
        let (tx, rx) = bounded(1);
        self.execute(move |node, now| {
            let _ = tx.send(f(node, now));
        })?;
        loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(r) => return Ok(r),
                Err(RecvTimeoutError::Disconnected) => return Err(DriverStopped),
                Err(RecvTimeoutError::Timeout) => {
                    if self.is_finished() {
                        // The loop ended; it may have answered just before.
                        return rx.try_recv().map_err(|_| DriverStopped);
                    }
                }
            }
        }
    }

    /// Ask the loop to stop (it finishes its current iteration first).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether a stop was asked for.
    pub fn is_stop_requested(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    /// Whether the loop has ended.
    pub fn is_finished(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire)
    }
}

/// A [`Driver`] running on its own thread ([`Driver::spawn`]). Dropping it stops the loop and
/// joins the thread.
pub struct DriverThread<N, D> {
    handle: DriverHandle<N>,
    thread: Option<JoinHandle<Finished<N, D>>>,
}

/// What the loop thread returns: the driver and how its loop ended.
type Finished<N, D> = (Driver<N, D>, io::Result<()>);

impl<N, D> fmt::Debug for DriverThread<N, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverThread")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl<N: 'static, D> DriverThread<N, D> {
    /// The loop's handle.
    pub fn handle(&self) -> &DriverHandle<N> {
        &self.handle
    }

    /// Whether the loop thread has ended (stopped, or failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stop the loop, join the thread and give the driver back, or the error that ended the
    /// loop. A panic on the loop thread (a node bug) is resumed here.
    pub fn stop(self) -> io::Result<Driver<N, D>> {
        self.handle.stop();
        self.join()
    }

    /// Wait for the loop to end by itself (error or a stop from another handle), then as
    /// [`DriverThread::stop`].
    pub fn join(mut self) -> io::Result<Driver<N, D>> {
        let thread = self.thread.take().expect("joined once");
        match thread.join() {
            Ok((driver, Ok(()))) => Ok(driver),
            Ok((_, Err(e))) => Err(e),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl<N, D> Drop for DriverThread<N, D> {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shared.stop.store(true, Ordering::Release);
            self.handle.waker.wake();
            let _ = thread.join();
        }
    }
}
