//! Wire formats: zero-copy views and owned representations of everything the stack sends and
//! receives, on top of `smoltcp::wire`.
//!
//! Contract: every parser here accepts any byte string and returns either a value or one
//! [`Error`] variant naming the violation; none of them panics. Every emitter writes exactly the
//! `buffer_len()` it announces, or returns [`Error::BufferTooSmall`] and writes nothing useful.
//! Nothing here knows about connection state: the layers above decide what a well-formed option
//! means.

pub mod mptcp;
pub mod tcp;

pub use mptcp::{
    AddAddrRepr, AddrIdList, CapableFlags, CapableKeys, CapableRepr, DsnField, DssMapping, DssRepr,
    JoinRepr, MptcpOption, MptcpRepr, OpaqueOption, Subtype, TcpRstReason, TcpRstRepr,
};
pub use tcp::{IpSegment, MptcpOptions, SackBlocks, TcpFlags, TcpOptions, TcpSegment, Timestamp};

/// Why bytes could not be parsed or emitted. One variant per violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the structure it must hold.
    #[error("truncated: the buffer ends inside the option or header")]
    Truncated,
    /// An option given to the MPTCP parser is not kind 30.
    #[error("option kind {0} is not MPTCP (30)")]
    NotMptcp(u8),
    /// An option length below the option's fixed header.
    #[error("option length {0} is shorter than the option header")]
    OptionLengthTooShort(u8),
    /// An option length that no TCP header could carry (over 40 bytes).
    #[error("option length {0} exceeds the 40 bytes of TCP option space")]
    OptionLengthTooLong(u8),
    /// MP_CAPABLE of a length other than 4, 12, 20, 22 or 24.
    #[error("MP_CAPABLE length {0} is none of 4, 12, 20, 22, 24")]
    CapableLength(u8),
    /// MP_JOIN of a length other than 12, 16 or 24.
    #[error("MP_JOIN length {0} is none of 12, 16, 24")]
    JoinLength(u8),
    /// DSS whose length disagrees with its flags.
    #[error(
        "DSS length {len} does not match its flags (expected {expected}, or +2 with a checksum)"
    )]
    DssLength {
        /// Length found.
        len: u8,
        /// Length the flags imply, without checksum.
        expected: u8,
    },
    /// ADD_ADDR whose length fits no address family, port and HMAC combination.
    #[error("ADD_ADDR length {len} fits no address layout (echo: {echo})")]
    AddAddrLength {
        /// Length found.
        len: u8,
        /// The E flag.
        echo: bool,
    },
    /// REMOVE_ADDR with no address id.
    #[error("REMOVE_ADDR lists no address id")]
    RemoveAddrEmpty,
    /// REMOVE_ADDR with more ids than option space allows.
    #[error("REMOVE_ADDR with {0} ids does not fit in one option")]
    RemoveAddrTooMany(usize),
    /// MP_PRIO of a length other than 3.
    #[error("MP_PRIO length {0} is not 3")]
    PrioLength(u8),
    /// MP_FAIL of a length other than 12.
    #[error("MP_FAIL length {0} is not 12")]
    FailLength(u8),
    /// MP_FASTCLOSE of a length other than 12.
    #[error("MP_FASTCLOSE length {0} is not 12")]
    FastCloseLength(u8),
    /// MP_TCPRST of a length other than 4.
    #[error("MP_TCPRST length {0} is not 4")]
    TcpRstLength(u8),
    /// An opaque option was given an assigned subtype, which has a layout of its own.
    #[error("subtype {0:#x} has a layout of its own and cannot be opaque")]
    OpaqueAssignedSubtype(u8),
    /// The options to emit need more than the 40 bytes a TCP header has.
    #[error("options need {0} bytes; a TCP header has room for 40")]
    OptionSpaceExceeded(usize),
    /// More MPTCP options than one segment's list holds.
    #[error("more than {0} MPTCP options in one segment")]
    TooManyMptcpOptions(usize),
    /// More SACK blocks than one option holds.
    #[error("more than {0} SACK blocks")]
    TooManySackBlocks(usize),
    /// The output buffer is too small.
    #[error("buffer too small: {needed} bytes needed, {available} available")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The IP version nibble is neither 4 nor 6.
    #[error("IP version {0} is neither 4 nor 6")]
    IpVersion(u8),
    /// The IP header is malformed (lengths inconsistent with the buffer).
    #[error("malformed IP header")]
    IpHeader,
    /// The IPv4 header checksum is wrong.
    #[error("IPv4 header checksum mismatch")]
    Ipv4Checksum,
    /// An IPv4 fragment: the stack does not reassemble IP fragments.
    #[error("IPv4 fragment (not reassembled)")]
    IpFragment,
    /// The IP packet does not carry TCP directly (another protocol, or IPv6 extension headers).
    #[error("IP payload is protocol {0}, not TCP")]
    NotTcp(u8),
    /// The TCP header is malformed (data offset out of range).
    #[error("malformed TCP header")]
    TcpHeader,
    /// The TCP checksum is wrong.
    #[error("TCP checksum mismatch")]
    TcpChecksum,
    /// The source and destination addresses are of different families.
    #[error("source and destination addresses are of different families")]
    AddressFamilyMismatch,
    /// The packet would be longer than an IP length field can say.
    #[error("packet of {0} bytes is longer than IP allows")]
    PacketTooLong(usize),
}
