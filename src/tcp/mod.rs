//! The subflow TCP engine: one TCP connection (RFC 9293) that carries MPTCP options natively.
//!
//! Contract: sans-IO ([`Connection`] takes parsed segments, timer expiries and application
//! calls, and produces whole IP packets); no allocation per packet on the hot path once buffers
//! have grown; congestion control behind [`cc::CongestionControl`]; the MPTCP layer plugs in
//! through [`Hooks`] and [`Connection::send_chunk`] (see `conn`'s module docs).

pub mod cc;
mod conn;
pub mod coupled;
pub mod ring;
pub mod rtt;

pub use conn::{Config, ConnError, Connection, Hooks, NoHooks, OutgoingInfo, State, Stats};
