//! # mptcp-stack
//!
//! A pure userspace Multipath TCP v1 ([RFC 8684]) stack: one TCP-compatible byte stream carried
//! over several paths at once (a subflow per pair of addresses), for hosts where the kernel's
//! MPTCP is missing or out of reach. The protocol core is sans-IO (time and randomness are
//! inputs, packets go in and out as bytes); a driver runs it on a TUN device, an in-memory link
//! or any smoltcp `phy::Device`; an application API gives blocking (and, with feature `tokio`,
//! async) streams that feel like `std::net`. It interoperates byte for byte with the Linux
//! kernel's MPTCP, and falls back to plain TCP when the peer or a middlebox does not speak it.
//!
//! ## Layers
//!
//! Each layer depends only on those above it in this list:
//!
//! - [`wire`]: zero-copy views and owned representations of MPTCP options and TCP segments
//!   inside IPv4/IPv6 packets; parse never panics, emit respects the 40-byte option budget.
//! - [`crypto`]: keys to tokens and IDSNs, the HMACs of MP_JOIN and ADD_ADDR, the DSS checksum.
//! - [`seq`]: sequence-number newtypes ([`seq::Dsn`], [`seq::Ssn`], [`seq::TcpSeq`]) with
//!   serial-number ordering.
//! - [`tcp`]: the subflow TCP engine (RFC 9293 with SACK, timestamps, window scaling, RTO,
//!   Reno/CUBIC and the coupled LIA/OLIA of [`tcp::coupled`]).
//! - [`mptcp`]: the connection layer: MP_CAPABLE, DSS mappings and DATA_ACK/DATA_FIN, MP_JOIN,
//!   ADD_ADDR/REMOVE_ADDR, MP_PRIO, MP_FAIL, MP_FASTCLOSE, fallback; packet schedulers
//!   ([`mptcp::sched`]: min-RTT, round-robin, redundant, active-backup) and path managers
//!   ([`mptcp::pm`]: full mesh).
//! - [`endpoint`]: one stack instance ([`endpoint::Endpoint`]) with addresses, listeners and
//!   connections, demultiplexing packets by 4-tuple and MP_JOIN token; the [`node::Node`]
//!   trait is its packet/timer interface.
//! - `driver` (feature `std`): the event loop that feeds an endpoint from a packet device (TUN
//!   with feature `tun`, an in-memory pair, smoltcp devices) with optional pcap capture.
//! - `api` (feature `std`): [`Stack`](api::Stack) runs an endpoint on a thread of its own;
//!   [`MptcpListener`](api::MptcpListener) and [`MptcpStream`](api::MptcpStream) are the
//!   application's side (`Read`/`Write`, shutdown, timeouts, per-subflow statistics, path
//!   commands); `AsyncMptcpStream` with feature `tokio`.
//! - `sim` (feature `sim`): a deterministic multi-path network simulator for tests and demos.
//!
//! The `mptcp-tun` binary (feature `cli`) is the command-line tool over a TUN device; the README
//! shows it between two namespaces, two hosts and a Linux kernel MPTCP peer.
//!
//! ## Example: two stacks, two paths, one connection
//!
//! Two stacks joined by an in-memory link (no root, no TUN): the client has two addresses, so
//! the full-mesh path manager opens a second subflow (MP_JOIN) from the second one; the
//! application only sees a stream.
//!
//! ```
//! # #[cfg(feature = "std")] {
//! use std::io::{Read, Write};
//! use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
//! use mptcp_stack::api::{ConnectOptions, MptcpListener, Stack, StackConfig};
//! use mptcp_stack::driver::MemoryDevice;
//! use mptcp_stack::mptcp::SchedulerKind;
//!
//! let wifi: IpAddr = Ipv4Addr::new(10, 0, 1, 1).into();
//! let cell: IpAddr = Ipv4Addr::new(10, 0, 2, 1).into();
//! let server_addr: IpAddr = Ipv4Addr::new(10, 0, 9, 1).into();
//!
//! let (dev_c, dev_s) = MemoryDevice::pair(1500, 1024);
//! let client = Stack::new(dev_c, StackConfig::new().address(wifi).address(cell).seed(1))?;
//! let server = Stack::new(dev_s, StackConfig::new().address(server_addr).seed(2))?;
//!
//! // The server: count the bytes until the client shuts its side, then answer with the count.
//! let listener = MptcpListener::bind(&server, 5201)?;
//! let counter = std::thread::spawn(move || -> std::io::Result<u64> {
//!     let (mut stream, _peer) = listener.accept()?;
//!     let n = std::io::copy(&mut stream, &mut std::io::sink())?;
//!     stream.write_all(&n.to_be_bytes())?;
//!     Ok(n)
//! });
//!
//! // The client: from `wifi` (the first address), min-RTT scheduling (the default).
//! let mut stream = ConnectOptions::new()
//!     .local_addr(wifi)
//!     .scheduler(SchedulerKind::MinRtt)
//!     .connect(&client, SocketAddr::new(server_addr, 5201))?;
//! let data = vec![7u8; 1_000_000];
//! stream.write_all(&data)?;
//! stream.shutdown(Shutdown::Write)?;
//! let mut answer = [0u8; 8];
//! stream.read_exact(&mut answer)?;
//! assert_eq!(u64::from_be_bytes(answer), 1_000_000);
//! assert_eq!(counter.join().unwrap()?, 1_000_000);
//!
//! // What the paths did: one line per subflow.
//! let stats = stream.stats()?;
//! for s in &stats.subflows {
//!     println!("{} -> {}: {} bytes sent, rtt {:?}", s.local, s.remote, s.bytes_sent, s.srtt);
//! }
//! # }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The codec on its own, a DSS option as Linux sends it:
//!
//! ```
//! use mptcp_stack::wire::{DsnField, DssMapping, DssRepr, MptcpRepr};
//! use mptcp_stack::seq::Ssn;
//!
//! // A DSS with a 4-byte DATA_ACK and an 8-byte mapping.
//! let dss = MptcpRepr::Dss(DssRepr {
//!     data_ack: Some(DsnField::Short(0x1234_5678)),
//!     mapping: Some(DssMapping {
//!         dsn: DsnField::Long(0x0102_0304_0506_0708),
//!         ssn: Ssn(1),
//!         data_len: 1428,
//!         checksum: None,
//!     }),
//!     data_fin: false,
//! });
//! let mut buf = [0u8; 40];
//! let n = dss.emit(&mut buf).unwrap();
//! assert_eq!(n, 22);
//! assert_eq!(MptcpRepr::parse_bytes(&buf[..n]).unwrap(), dss);
//! ```
//!
//! ## Features
//!
//! `std` (the driver and the API), `sim` (the simulator), `tun` (TUN devices through `tun-rs`),
//! `cli` (the `mptcp-tun` binary) are on by default; `tokio` adds the async adapter.
//! `DESIGN.md` (the project's shared folder) holds the architecture, `RFC-NOTES.md` maps RFC
//! 8684 section by section to the code and its tests.
//!
//! [RFC 8684]: https://www.rfc-editor.org/rfc/rfc8684

#![warn(missing_docs)]

#[cfg(feature = "std")]
pub mod api;
pub mod crypto;
pub mod deadline;
pub mod endpoint;
pub mod mptcp;
pub mod node;
pub mod seq;
pub mod tcp;
pub mod wire;

#[cfg(feature = "std")]
pub mod driver;
#[cfg(feature = "sim")]
pub mod sim;
