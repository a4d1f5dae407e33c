//! # mptcp-stack
//!
//! A pure userspace Multipath TCP v1 ([RFC 8684]) stack: a sans-IO protocol core that never
//! touches the OS (time and randomness are inputs), driven by packets from a TUN device or any
//! smoltcp `phy::Device`, built to interoperate with the Linux kernel's MPTCP.
//!
//! Layers, each depending only on those below it:
//!
//! - [`wire`]: zero-copy views and owned representations of MPTCP options and TCP segments inside
//!   IPv4/IPv6 packets, on `smoltcp::wire`; parse never panics, emit respects the 40-byte option
//!   budget.
//! - [`crypto`]: keys to tokens and IDSNs, the HMACs of MP_JOIN and ADD_ADDR, the DSS checksum.
//! - [`seq`]: sequence-number newtypes ([`seq::Dsn`], [`seq::Ssn`], [`seq::TcpSeq`]) with
//!   serial-number ordering.
//!
//! The subflow TCP engine, the MPTCP connection layer, schedulers, path managers, the simulator,
//! the driver and the application API are built on these (see `DESIGN.md` and `RFC-NOTES.md`).
//!
//! ```
//! use mptcp_stack::wire::{DsnField, DssMapping, DssRepr, MptcpRepr};
//! use mptcp_stack::seq::Ssn;
//!
//! // A DSS with a 4-byte DATA_ACK and an 8-byte mapping, as Linux sends it.
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
//! [RFC 8684]: https://www.rfc-editor.org/rfc/rfc8684

#![warn(missing_docs)]

#[cfg(feature = "std")]
pub mod api;
pub mod crypto;
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
