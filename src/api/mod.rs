//! The application API: blocking streams that feel like `std::net`, over a stack that runs on a
//! thread of its own (feature `std`), and a tokio adapter (feature `tokio`).
//!
//! - A [`Stack`] owns an [`Endpoint`] and a [`PacketDevice`] (a TUN interface, an in-memory
//!   [`MemoryDevice`](crate::driver::MemoryDevice) link, any smoltcp device) and runs the
//!   [`Driver`] event loop on its own thread. Its addresses are the paths: every address with
//!   [`AddrFlags::subflow`] opens one more subflow of each client connection (MP_JOIN), every
//!   address with [`AddrFlags::signal`] is announced by servers (ADD_ADDR).
//! - [`MptcpListener::bind`] accepts connections to a port on every stack address;
//!   [`MptcpStream::connect`] (or [`ConnectOptions`] for the source address, scheduler and
//!   timeout) opens one. Streams implement [`std::io::Read`] and [`std::io::Write`] (for
//!   `&MptcpStream` too, so one thread may read while another writes), with
//!   [`shutdown`](MptcpStream::shutdown), timeouts, non-blocking mode, per-connection and
//!   per-subflow [`stats`](MptcpStream::stats), and path commands.
//! - Errors are [`io::Error`]s of the usual kinds: `ConnectionRefused`, `ConnectionReset`,
//!   `TimedOut`, `NotConnected`, `AddrInUse`, `AddrNotAvailable`, `BrokenPipe` (write after
//!   shutdown), `WouldBlock` (non-blocking mode or a read/write timeout, as on Unix).
//!
//! How it works: the application talks to the stack thread over the driver's crossbeam
//! command channel (each call is one round trip, which wakes the loop through the device's
//! [`Waker`](crate::driver::Waker)); the stack thread turns endpoint [events](crate::endpoint::Event)
//! into wake-ups of the threads (condition variable) or tasks (`std::task::Waker`) waiting on
//! that connection or listener. Nobody polls in a loop. Dropping a stream closes it cleanly (a
//! FIN after the queued data; data that arrives afterwards is discarded, and the connection is
//! forgotten once closed, or aborted after [`StackConfig::orphan_timeout`]); dropping a
//! listener stops accepting on its port; dropping the stack resets the connections still open
//! and stops its thread.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{IpAddr, Ipv4Addr, SocketAddr};
//! use mptcp_stack::api::{MptcpListener, MptcpStream, Stack, StackConfig};
//! use mptcp_stack::driver::MemoryDevice;
//!
//! let a: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
//! let b: IpAddr = Ipv4Addr::new(10, 0, 0, 2).into();
//! // Two stacks joined by an in-memory link: no root, no TUN.
//! let (dev_a, dev_b) = MemoryDevice::pair(1500, 256);
//! let client = Stack::new(dev_a, StackConfig::new().address(a).seed(1))?;
//! let server = Stack::new(dev_b, StackConfig::new().address(b).seed(2))?;
//!
//! let listener = MptcpListener::bind(&server, 7)?;
//! let echo = std::thread::spawn(move || -> std::io::Result<()> {
//!     let (mut stream, _peer) = listener.accept()?;
//!     let mut buf = Vec::new();
//!     stream.read_to_end(&mut buf)?; // until the client's shutdown
//!     stream.write_all(&buf)
//! });
//!
//! let mut stream = MptcpStream::connect(&client, SocketAddr::new(b, 7))?;
//! stream.write_all(b"hello, multipath")?;
//! stream.shutdown(std::net::Shutdown::Write)?;
//! let mut reply = String::new();
//! stream.read_to_string(&mut reply)?;
//! assert_eq!(reply, "hello, multipath");
//! echo.join().unwrap()?;
//! # Ok::<(), std::io::Error>(())
//! ```

#[cfg(feature = "tokio")]
mod async_io;
mod core;
mod listener;
mod signal;
mod stats;
mod stream;

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::driver::{Driver, DriverHandle, DriverStopped, PacketDevice};
use crate::endpoint::{Endpoint, EndpointConfig, EndpointError, EndpointStats};
use crate::mptcp::pm::AddrFlags;
use crate::tcp::ConnError;

use self::core::Core;

#[cfg(feature = "tokio")]
pub use async_io::{AsyncMptcpListener, AsyncMptcpStream};
pub use listener::{Incoming, MptcpListener};
pub use stats::{ConnectionStats, SubflowStats};
pub use stream::{ConnectOptions, MptcpStream};

/// Configuration of a [`Stack`].
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// The endpoint's settings (TCP, MPTCP, MTU, seed, limits, path manager). The MTU is
    /// lowered to the device's if that is smaller.
    pub endpoint: EndpointConfig,
    /// The stack's addresses with their flags, in order: the first of a family is the default
    /// source of connections to that family.
    pub addresses: Vec<(IpAddr, AddrFlags)>,
    /// Record every packet in and out to this pcap file.
    pub pcap: Option<PathBuf>,
    /// The name of the stack thread.
    pub thread_name: String,
    /// How long a dropped stream may take to finish its close before it is aborted (a peer
    /// that never closes its side would otherwise keep it forever).
    pub orphan_timeout: Duration,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            // Seeded from the operating system (EndpointConfig::default).
            endpoint: EndpointConfig::default(),
            addresses: Vec::new(),
            pcap: None,
            thread_name: "mptcp-stack".to_owned(),
            orphan_timeout: Duration::from_secs(60),
        }
    }
}

impl StackConfig {
    /// Default settings, no address, and a random seed (ISNs and keys must not be guessable
    /// on a real network; tests set their own with [`StackConfig::seed`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an address with the default flags (announced, used for subflows, not a backup).
    pub fn address(self, addr: IpAddr) -> Self {
        self.address_with(addr, AddrFlags::default())
    }

    /// Add an address with explicit flags.
    pub fn address_with(mut self, addr: IpAddr, flags: AddrFlags) -> Self {
        self.addresses.push((addr, flags));
        self
    }

    /// Use this endpoint configuration (its seed included).
    pub fn endpoint(mut self, endpoint: EndpointConfig) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// Seed the endpoint's random generator (deterministic keys, ISNs and ports).
    pub fn seed(mut self, seed: u64) -> Self {
        self.endpoint.seed = seed;
        self
    }

    /// Record every packet to a pcap file.
    pub fn pcap(mut self, path: impl Into<PathBuf>) -> Self {
        self.pcap = Some(path.into());
        self
    }
}

/// A running MPTCP stack: an endpoint and a device on a thread of its own (see the module
/// docs). Streams and listeners borrow it to be made and then live on their own; once the
/// stack is dropped they fail with `NotConnected`.
pub struct Stack {
    handle: DriverHandle<Core>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("running", &self.is_running())
            .finish()
    }
}

impl Stack {
    /// Start a stack over `device` with the addresses and settings of `config`.
    pub fn new(
        device: impl PacketDevice + Send + 'static,
        config: StackConfig,
    ) -> io::Result<Self> {
        let mut ep_cfg = config.endpoint;
        ep_cfg.mtu = ep_cfg.mtu.min(device.mtu());
        let mut endpoint = Endpoint::new(ep_cfg);
        for (addr, flags) in &config.addresses {
            endpoint.add_address_with(*addr, *flags);
        }
        let core = Core::new(endpoint, config.orphan_timeout);
        let device: Box<dyn PacketDevice + Send> = Box::new(device);
        let mut driver = Driver::new(core, device);
        if let Some(path) = &config.pcap {
            driver = driver.with_pcap_file(path)?;
        }
        let handle = driver.handle();
        let thread = std::thread::Builder::new()
            .name(config.thread_name.clone())
            .spawn(move || {
                let result = driver.run();
                // Whatever ended the loop, nobody may keep waiting on it.
                driver.node_mut().stopped();
                result
            })?;
        Ok(Stack {
            handle,
            thread: Some(thread),
        })
    }

    /// Start a stack over the TUN interface `name` (opened, or created, with the MTU of
    /// `config.endpoint`). Needs `CAP_NET_ADMIN` (root) to create or attach the interface;
    /// routing into it is the host's business.
    #[cfg(all(feature = "tun", unix))]
    pub fn open_tun(name: &str, config: StackConfig) -> io::Result<Self> {
        let mtu = u16::try_from(config.endpoint.mtu).unwrap_or(u16::MAX);
        let device = crate::driver::TunDevice::open(name, mtu)?;
        Self::new(device, config)
    }

    /// Whether the stack thread still runs.
    pub fn is_running(&self) -> bool {
        !self.handle.is_finished() && self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// The stack's addresses with their flags.
    pub fn addresses(&self) -> io::Result<Vec<(IpAddr, AddrFlags)>> {
        self.call(|core, _| {
            core.endpoint()
                .local_addresses()
                .iter()
                .map(|l| (l.addr, l.flags))
                .collect()
        })
    }

    /// Add a path: own one more address (or change the flags of one already owned). Live
    /// connections use it at once as its flags say (subflows from it, ADD_ADDR of it).
    pub fn add_address(&self, addr: IpAddr, flags: AddrFlags) -> io::Result<()> {
        self.call(move |core, _| core.endpoint_mut().add_address_with(addr, flags))
    }

    /// Remove a path: every connection resets its subflows from `addr`, moves their data to
    /// its other subflows at once and tells the peer (REMOVE_ADDR).
    pub fn remove_address(&self, addr: IpAddr) -> io::Result<()> {
        self.call(move |core, _| {
            if core.endpoint().addresses().contains(&addr) {
                core.endpoint_mut().remove_address(addr);
                Ok(())
            } else {
                Err(io::Error::from(io::ErrorKind::AddrNotAvailable))
            }
        })?
    }

    /// Make the subflows from `addr` backups, or not, in every connection (MP_PRIO), and
    /// future ones too.
    pub fn set_address_backup(&self, addr: IpAddr, backup: bool) -> io::Result<()> {
        self.call(move |core, _| {
            if core.endpoint().addresses().contains(&addr) {
                core.endpoint_mut().set_address_backup(addr, backup);
                Ok(())
            } else {
                Err(io::Error::from(io::ErrorKind::AddrNotAvailable))
            }
        })?
    }

    /// The endpoint's counters (packets, RSTs, refused SYNs and joins ...).
    pub fn endpoint_stats(&self) -> io::Result<EndpointStats> {
        self.call(|core, _| *core.endpoint().stats())
    }

    /// Reset every connection still open, stop the thread and return how its loop ended (an
    /// error when the device failed). Dropping the stack does the same and ignores the error.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        // The resets go out in the same loop iteration, before the loop sees the stop.
        let _ = self.handle.call(|core, _| core.abort_all());
        self.handle.stop();
        match thread.join() {
            Ok(result) => result,
            // A panic of the stack thread is a bug of the stack: report it as an error rather
            // than unwind into the application (its waiters were woken by `Core`'s drop).
            Err(_) => Err(io::Error::other("the MPTCP stack thread panicked")),
        }
    }

    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core, crate::node::Instant) -> R + Send + 'static,
    ) -> io::Result<R> {
        self.handle.call(f).map_err(stopped)
    }

    fn handle(&self) -> DriverHandle<Core> {
        self.handle.clone()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.stop();
        } else if self.thread.is_some() {
            self.handle.stop();
        }
    }
}

/// The error of a call on a stack whose thread has ended.
fn stopped(_: DriverStopped) -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the MPTCP stack has stopped")
}

/// An endpoint error as an `io::Error` of the matching kind.
fn endpoint_error(e: EndpointError) -> io::Error {
    use io::ErrorKind as K;
    let kind = match e {
        EndpointError::UnknownConnection => K::NotConnected,
        EndpointError::AddressNotAvailable => K::AddrNotAvailable,
        EndpointError::AddressInUse => K::AddrInUse,
        EndpointError::TooManyConnections | EndpointError::TooManySubflows => K::Other,
        EndpointError::FamilyMismatch => K::InvalidInput,
        EndpointError::NotWritable => K::BrokenPipe,
        EndpointError::Failed(c) => return conn_error(c),
        EndpointError::NotJoinable => K::Unsupported,
    };
    io::Error::new(kind, e)
}

/// A connection failure as an `io::Error` of the matching kind.
fn conn_error(e: ConnError) -> io::Error {
    let kind = match e {
        ConnError::Refused => io::ErrorKind::ConnectionRefused,
        ConnError::Reset => io::ErrorKind::ConnectionReset,
        ConnError::TimedOut => io::ErrorKind::TimedOut,
        ConnError::Aborted => io::ErrorKind::ConnectionAborted,
    };
    io::Error::new(kind, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_io_kinds() {
        use io::ErrorKind as K;
        let cases = [
            (
                EndpointError::Failed(ConnError::Refused),
                K::ConnectionRefused,
            ),
            (EndpointError::Failed(ConnError::Reset), K::ConnectionReset),
            (EndpointError::Failed(ConnError::TimedOut), K::TimedOut),
            (EndpointError::AddressInUse, K::AddrInUse),
            (EndpointError::AddressNotAvailable, K::AddrNotAvailable),
            (EndpointError::UnknownConnection, K::NotConnected),
            (EndpointError::NotWritable, K::BrokenPipe),
        ];
        for (e, kind) in cases {
            assert_eq!(endpoint_error(e).kind(), kind, "{e:?}");
        }
    }
}
