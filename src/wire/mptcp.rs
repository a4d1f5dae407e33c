//! MPTCP options (TCP option kind 30): a zero-copy view and an owned representation.
//!
//! Contract:
//! - [`MptcpOption`] is a view over the bytes of one option, kind and length included. It never
//!   reads outside the slice it was checked against.
//! - [`MptcpRepr::parse`] turns any byte string into a typed value or a typed [`Error`], one
//!   variant per violation; it never panics. The accepted lengths are those of RFC 8684 as the
//!   Linux kernel checks them (`../shared/WIRE.md`).
//! - [`MptcpRepr::emit`] writes exactly [`MptcpRepr::buffer_len`] bytes (no padding; the option
//!   block in [`super::tcp`] pads). `parse(emit(x)) == x` for every representation, and
//!   `emit(parse(b)) == b` for every canonical option `b` (reserved bits zero).
//! - Semantics (whether a key belongs in this handshake step, whether a DSN is in window) are the
//!   connection layer's business; this module only guarantees the shape.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Error;
use crate::seq::{Dsn, Ssn};

/// Byte layout of MPTCP options (RFC 8684 section 3, lengths as Linux checks them).
pub mod field {
    /// TCP option kind of every MPTCP option.
    pub const KIND: u8 = 30;
    /// Offset of the option kind.
    pub const KIND_AT: usize = 0;
    /// Offset of the option length (the whole option, kind and length included).
    pub const LENGTH_AT: usize = 1;
    /// Offset of the subtype (high nibble) and its flags (low nibble).
    pub const SUBTYPE_AT: usize = 2;
    /// Offset of the first byte after the subtype byte.
    pub const BODY_AT: usize = 3;
    /// The shortest MPTCP option: kind, length, subtype.
    pub const MIN_LEN: usize = 3;
    /// The longest option a TCP header can carry.
    pub const MAX_LEN: usize = 40;

    /// MP_CAPABLE lengths: SYN (no key), SYN/ACK (sender key), ACK (both keys), ACK with data
    /// (plus data-level length), ACK with data and DSS checksum.
    pub const CAPABLE_SYN: usize = 4;
    /// MP_CAPABLE SYN/ACK (and v0 SYN): one key.
    pub const CAPABLE_SYNACK: usize = 12;
    /// MP_CAPABLE third ACK: both keys.
    pub const CAPABLE_ACK: usize = 20;
    /// MP_CAPABLE with the first data: both keys and the data-level length.
    pub const CAPABLE_DATA: usize = 22;
    /// MP_CAPABLE with the first data and a DSS checksum.
    pub const CAPABLE_DATA_CSUM: usize = 24;
    /// MP_CAPABLE version nibble for MPTCP v1.
    pub const CAPABLE_VERSION_1: u8 = 1;

    /// MP_JOIN SYN: address id, token, nonce.
    pub const JOIN_SYN: usize = 12;
    /// MP_JOIN SYN/ACK: address id, truncated HMAC, nonce.
    pub const JOIN_SYNACK: usize = 16;
    /// MP_JOIN third ACK: reserved byte, 160-bit HMAC.
    pub const JOIN_ACK: usize = 24;
    /// Length of the full HMAC in the MP_JOIN third ACK.
    pub const JOIN_ACK_HMAC_LEN: usize = 20;
    /// MP_JOIN backup flag (low nibble of the subtype byte).
    pub const JOIN_FLAG_BACKUP: u8 = 0x01;

    /// DSS flags byte offset.
    pub const DSS_FLAGS_AT: usize = 3;
    /// DSS header: kind, length, subtype, flags.
    pub const DSS_BASE: usize = 4;
    /// DSS flag: DATA_FIN.
    pub const DSS_FLAG_DATA_FIN: u8 = 0x10;
    /// DSS flag: the DSN is 8 bytes.
    pub const DSS_FLAG_DSN64: u8 = 0x08;
    /// DSS flag: a mapping is present.
    pub const DSS_FLAG_MAP: u8 = 0x04;
    /// DSS flag: the DATA_ACK is 8 bytes.
    pub const DSS_FLAG_ACK64: u8 = 0x02;
    /// DSS flag: a DATA_ACK is present.
    pub const DSS_FLAG_ACK: u8 = 0x01;
    /// DSS mapping after the DSN: subflow sequence number (4) and data-level length (2).
    pub const DSS_MAP_TAIL: usize = 6;
    /// DSS checksum field.
    pub const DSS_CHECKSUM: usize = 2;

    /// ADD_ADDR echo flag (low nibble of the subtype byte).
    pub const ADD_ADDR_FLAG_ECHO: u8 = 0x01;
    /// ADD_ADDR header: kind, length, subtype, address id.
    pub const ADD_ADDR_BASE: usize = 4;
    /// ADD_ADDR optional port.
    pub const ADD_ADDR_PORT: usize = 2;
    /// ADD_ADDR truncated HMAC (absent in an echo).
    pub const ADD_ADDR_HMAC: usize = 8;

    /// REMOVE_ADDR header before the list of address ids.
    pub const REMOVE_ADDR_BASE: usize = 3;
    /// MP_PRIO length (RFC 8684 dropped RFC 6824's address id).
    pub const PRIO: usize = 3;
    /// MP_PRIO backup flag.
    pub const PRIO_FLAG_BACKUP: u8 = 0x01;
    /// MP_FAIL length: reserved byte and a 64-bit DSN.
    pub const FAIL: usize = 12;
    /// MP_FASTCLOSE length: reserved byte and the receiver's key.
    pub const FASTCLOSE: usize = 12;
    /// MP_TCPRST length: flags in the subtype byte, reason.
    pub const TCPRST: usize = 4;
}

/// MPTCP option subtypes (RFC 8684 section 8, "MPTCP Option Subtypes" registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subtype {
    /// 0x0 MP_CAPABLE.
    Capable,
    /// 0x1 MP_JOIN.
    Join,
    /// 0x2 DSS.
    Dss,
    /// 0x3 ADD_ADDR.
    AddAddr,
    /// 0x4 REMOVE_ADDR.
    RemoveAddr,
    /// 0x5 MP_PRIO.
    Prio,
    /// 0x6 MP_FAIL.
    Fail,
    /// 0x7 MP_FASTCLOSE.
    FastClose,
    /// 0x8 MP_TCPRST.
    TcpRst,
    /// 0xf MP_EXPERIMENTAL.
    Experimental,
    /// Any other (unassigned) subtype.
    Unassigned(u8),
}

impl From<u8> for Subtype {
    fn from(nibble: u8) -> Self {
        match nibble & 0x0f {
            0x0 => Subtype::Capable,
            0x1 => Subtype::Join,
            0x2 => Subtype::Dss,
            0x3 => Subtype::AddAddr,
            0x4 => Subtype::RemoveAddr,
            0x5 => Subtype::Prio,
            0x6 => Subtype::Fail,
            0x7 => Subtype::FastClose,
            0x8 => Subtype::TcpRst,
            0xf => Subtype::Experimental,
            other => Subtype::Unassigned(other),
        }
    }
}

impl From<Subtype> for u8 {
    fn from(subtype: Subtype) -> u8 {
        match subtype {
            Subtype::Capable => 0x0,
            Subtype::Join => 0x1,
            Subtype::Dss => 0x2,
            Subtype::AddAddr => 0x3,
            Subtype::RemoveAddr => 0x4,
            Subtype::Prio => 0x5,
            Subtype::Fail => 0x6,
            Subtype::FastClose => 0x7,
            Subtype::TcpRst => 0x8,
            Subtype::Experimental => 0xf,
            Subtype::Unassigned(n) => n & 0x0f,
        }
    }
}

/// A read/write view of one MPTCP option: kind, length, subtype byte, body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MptcpOption<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MptcpOption<T> {
    /// Wrap a buffer without checking it; accessors may then panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        MptcpOption { buffer }
    }

    /// Wrap a buffer after [`check_len`](Self::check_len) and a check of the kind.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let option = Self::new_unchecked(buffer);
        option.check_len()?;
        if option.kind() != field::KIND {
            return Err(Error::NotMptcp(option.kind()));
        }
        Ok(option)
    }

    /// Check that the header is present, that the length field covers it, and that the buffer
    /// holds the whole option. The buffer may be longer than the option.
    pub fn check_len(&self) -> Result<(), Error> {
        let data = self.buffer.as_ref();
        if data.len() < field::MIN_LEN {
            return Err(Error::Truncated);
        }
        let len = data[field::LENGTH_AT] as usize;
        if len < field::MIN_LEN {
            return Err(Error::OptionLengthTooShort(len as u8));
        }
        if len > field::MAX_LEN {
            return Err(Error::OptionLengthTooLong(len as u8));
        }
        if len > data.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Option kind (30 for MPTCP).
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[field::KIND_AT]
    }

    /// Option length as written in the option.
    pub fn length(&self) -> u8 {
        self.buffer.as_ref()[field::LENGTH_AT]
    }

    /// The subtype (high nibble of the third byte).
    pub fn subtype(&self) -> Subtype {
        Subtype::from(self.buffer.as_ref()[field::SUBTYPE_AT] >> 4)
    }

    /// The low nibble of the subtype byte (version or flags, per subtype).
    pub fn subtype_nibble(&self) -> u8 {
        self.buffer.as_ref()[field::SUBTYPE_AT] & 0x0f
    }

    /// The bytes of the option after kind and length (subtype byte included).
    pub fn value(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SUBTYPE_AT..self.length() as usize]
    }

    /// The bytes of the option after the subtype byte.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[field::BODY_AT..self.length() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MptcpOption<T> {
    /// Write kind 30, the length, and the subtype byte.
    pub fn set_header(&mut self, length: u8, subtype: Subtype, nibble: u8) {
        let data = self.buffer.as_mut();
        data[field::KIND_AT] = field::KIND;
        data[field::LENGTH_AT] = length;
        data[field::SUBTYPE_AT] = (u8::from(subtype) << 4) | (nibble & 0x0f);
    }

    /// The bytes after the subtype byte, up to the end of the buffer.
    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::BODY_AT..]
    }
}

/// MP_CAPABLE flags byte (RFC 8684 section 3.1): `A B C D E F G H`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapableFlags(pub u8);

impl CapableFlags {
    /// A: checksum required.
    pub const CHECKSUM: u8 = 0x80;
    /// B: extensibility (must be 0 in v1).
    pub const EXTENSIBILITY: u8 = 0x40;
    /// C: do not send MP_JOIN to the initial address and port.
    pub const NO_JOIN_TO_INITIAL: u8 = 0x20;
    /// H: HMAC-SHA256 (must be set in v1).
    pub const HMAC_SHA256: u8 = 0x01;

    /// The flags a v1 sender writes: H, plus A and C as asked.
    pub fn v1(checksum: bool, no_join_to_initial: bool) -> Self {
        let mut bits = Self::HMAC_SHA256;
        if checksum {
            bits |= Self::CHECKSUM;
        }
        if no_join_to_initial {
            bits |= Self::NO_JOIN_TO_INITIAL;
        }
        CapableFlags(bits)
    }

    /// A: the sender requires DSS checksums.
    pub fn checksum(self) -> bool {
        self.0 & Self::CHECKSUM != 0
    }

    /// B: extensibility bit.
    pub fn extensibility(self) -> bool {
        self.0 & Self::EXTENSIBILITY != 0
    }

    /// C: the sender accepts no MP_JOIN to its initial address and port.
    pub fn no_join_to_initial(self) -> bool {
        self.0 & Self::NO_JOIN_TO_INITIAL != 0
    }

    /// H: HMAC-SHA256 is the crypto algorithm.
    pub fn hmac_sha256(self) -> bool {
        self.0 & Self::HMAC_SHA256 != 0
    }
}

/// What an MP_CAPABLE carries besides version and flags; the shape follows the handshake step
/// and is told apart by the option length alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapableKeys {
    /// SYN (length 4): no key in v1.
    None,
    /// SYN/ACK (length 12): the sender's key.
    Sender {
        /// The sender's 64-bit key.
        sender_key: u64,
    },
    /// Third ACK (length 20): both keys.
    Both {
        /// The sender's key.
        sender_key: u64,
        /// The receiver's key.
        receiver_key: u64,
    },
    /// First data (length 22, or 24 with a checksum): both keys, data-level length, checksum.
    WithData {
        /// The sender's key.
        sender_key: u64,
        /// The receiver's key.
        receiver_key: u64,
        /// The data-level length of the mapping the segment's payload starts.
        data_len: u16,
        /// The DSS checksum, present when checksums were negotiated.
        checksum: Option<u16>,
    },
}

/// MP_CAPABLE (RFC 8684 section 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CapableRepr {
    /// The version nibble (1 for MPTCP v1).
    pub version: u8,
    /// The flags byte.
    pub flags: CapableFlags,
    /// Keys and data fields.
    pub keys: CapableKeys,
}

/// MP_JOIN (RFC 8684 section 3.2), by handshake step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinRepr {
    /// SYN: the receiver's token and the sender's nonce.
    Syn {
        /// B: the sender wants this subflow as a backup.
        backup: bool,
        /// The sender's address id.
        addr_id: u8,
        /// The receiver's token (identifies the connection).
        token: u32,
        /// The sender's random number R_A.
        nonce: u32,
    },
    /// SYN/ACK: truncated HMAC and the sender's nonce.
    SynAck {
        /// B: backup.
        backup: bool,
        /// The sender's address id.
        addr_id: u8,
        /// Leftmost 64 bits of the sender's HMAC.
        hmac: u64,
        /// The sender's random number R_B.
        nonce: u32,
    },
    /// Third ACK: the full 160-bit HMAC.
    Ack {
        /// The sender's HMAC, leftmost 160 bits.
        hmac: [u8; field::JOIN_ACK_HMAC_LEN],
    },
}

/// A DSN or DATA_ACK field as sent: 4 or 8 bytes wide. A 4-byte value carries the lower half
/// and must be expanded with [`DsnField::expand`] against a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DsnField {
    /// A 4-byte field: the lower 32 bits.
    Short(u32),
    /// An 8-byte field: the whole DSN.
    Long(u64),
}

impl DsnField {
    /// Whether the field is 8 bytes on the wire.
    pub fn is_long(self) -> bool {
        matches!(self, DsnField::Long(_))
    }

    /// Bytes on the wire.
    pub fn wire_len(self) -> usize {
        if self.is_long() { 8 } else { 4 }
    }

    /// The 64-bit value: as is when 8 bytes, nearest to `reference` when 4 bytes.
    pub fn expand(self, reference: Dsn) -> Dsn {
        match self {
            DsnField::Long(v) => Dsn(v),
            DsnField::Short(v) => Dsn::expand_low32(v, reference),
        }
    }
}

/// A DSS data sequence mapping (RFC 8684 section 3.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DssMapping {
    /// The data sequence number of the first byte mapped.
    pub dsn: DsnField,
    /// The subflow sequence number of that byte, relative to the subflow's ISN.
    pub ssn: Ssn,
    /// Data-level length; 0 is an infinite mapping (fallback).
    pub data_len: u16,
    /// The DSS checksum, present when checksums were negotiated.
    pub checksum: Option<u16>,
}

/// DSS: data sequence signal (RFC 8684 section 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DssRepr {
    /// The connection-level cumulative acknowledgement.
    pub data_ack: Option<DsnField>,
    /// The data sequence mapping.
    pub mapping: Option<DssMapping>,
    /// F: DATA_FIN, which occupies the last byte of the mapping's data-level length.
    pub data_fin: bool,
}

/// ADD_ADDR (RFC 8684 section 3.4.1). An echo carries no HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddAddrRepr {
    /// The address id.
    pub addr_id: u8,
    /// The announced address; its family follows from the option length.
    pub addr: IpAddr,
    /// The optional port.
    pub port: Option<u16>,
    /// The truncated HMAC; `None` in an echo (E = 1).
    pub hmac: Option<u64>,
}

impl AddAddrRepr {
    /// E: this option echoes an ADD_ADDR received from the peer.
    pub fn is_echo(&self) -> bool {
        self.hmac.is_none()
    }
}

/// The address ids of a REMOVE_ADDR, stored inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrIdList {
    len: u8,
    ids: [u8; Self::CAPACITY],
}

impl AddrIdList {
    /// The most ids one option can carry: 40 bytes of option space less the 3-byte header.
    pub const CAPACITY: usize = field::MAX_LEN - field::REMOVE_ADDR_BASE;

    /// A list of the given ids.
    pub fn new(ids: &[u8]) -> Result<Self, Error> {
        if ids.is_empty() {
            return Err(Error::RemoveAddrEmpty);
        }
        if ids.len() > Self::CAPACITY {
            return Err(Error::RemoveAddrTooMany(ids.len()));
        }
        let mut list = AddrIdList {
            len: ids.len() as u8,
            ids: [0; Self::CAPACITY],
        };
        list.ids[..ids.len()].copy_from_slice(ids);
        Ok(list)
    }

    /// The ids.
    pub fn as_slice(&self) -> &[u8] {
        &self.ids[..self.len as usize]
    }
}

impl core::fmt::Debug for AddrIdList {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// An MP_TCPRST reason code (RFC 8684 section 3.6); codes without a name are kept as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpRstReason(pub u8);

impl TcpRstReason {
    /// 0x00 unspecified error.
    pub const UNSPECIFIED: Self = TcpRstReason(0);
    /// 0x01 MPTCP-specific error.
    pub const MPTCP_ERROR: Self = TcpRstReason(1);
    /// 0x02 lack of resources.
    pub const NO_RESOURCES: Self = TcpRstReason(2);
    /// 0x03 administratively prohibited.
    pub const PROHIBITED: Self = TcpRstReason(3);
    /// 0x04 too much outstanding data.
    pub const TOO_MUCH_OUTSTANDING: Self = TcpRstReason(4);
    /// 0x05 unacceptable performance.
    pub const BAD_PERFORMANCE: Self = TcpRstReason(5);
    /// 0x06 middlebox interference.
    pub const MIDDLEBOX: Self = TcpRstReason(6);
}

/// MP_TCPRST (RFC 8684 section 3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRstRepr {
    /// The flag nibble `U V W T`; see the associated constants.
    pub flags: u8,
    /// Why the subflow was reset.
    pub reason: TcpRstReason,
}

impl TcpRstRepr {
    /// T: the error is transient; the subflow may be re-established.
    pub const FLAG_TRANSIENT: u8 = 0x01;

    /// Whether the T flag is set.
    pub fn transient(&self) -> bool {
        self.flags & Self::FLAG_TRANSIENT != 0
    }
}

/// An option of an unassigned or experimental subtype, kept byte for byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpaqueOption {
    len: u8,
    value: [u8; Self::CAPACITY],
}

impl OpaqueOption {
    /// The most value bytes an option can have: 40 less kind and length.
    pub const CAPACITY: usize = field::MAX_LEN - field::SUBTYPE_AT;

    /// An opaque option from its value (subtype byte first).
    pub fn new(value: &[u8]) -> Result<Self, Error> {
        if value.is_empty() {
            return Err(Error::OptionLengthTooShort(field::SUBTYPE_AT as u8));
        }
        if value.len() > Self::CAPACITY {
            return Err(Error::OptionLengthTooLong(
                (value.len() + field::SUBTYPE_AT).min(255) as u8,
            ));
        }
        // Only subtypes without a layout of their own may be opaque, or emitting one would
        // produce an option that parses as something else.
        if !matches!(
            Subtype::from(value[0] >> 4),
            Subtype::Experimental | Subtype::Unassigned(_)
        ) {
            return Err(Error::OpaqueAssignedSubtype(value[0] >> 4));
        }
        let mut opaque = OpaqueOption {
            len: value.len() as u8,
            value: [0; Self::CAPACITY],
        };
        opaque.value[..value.len()].copy_from_slice(value);
        Ok(opaque)
    }

    /// The subtype nibble.
    pub fn subtype(&self) -> Subtype {
        Subtype::from(self.value[0] >> 4)
    }

    /// The value bytes (subtype byte first).
    pub fn value(&self) -> &[u8] {
        &self.value[..self.len as usize]
    }
}

impl core::fmt::Debug for OpaqueOption {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OpaqueOption")
            .field("value", &self.value())
            .finish()
    }
}

/// One MPTCP option, of any subtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MptcpRepr {
    /// MP_CAPABLE.
    Capable(CapableRepr),
    /// MP_JOIN.
    Join(JoinRepr),
    /// DSS.
    Dss(DssRepr),
    /// ADD_ADDR.
    AddAddr(AddAddrRepr),
    /// REMOVE_ADDR.
    RemoveAddr(AddrIdList),
    /// MP_PRIO.
    Prio {
        /// B: the sender asks the receiver to treat this subflow as a backup.
        backup: bool,
    },
    /// MP_FAIL, with the DSN at which the checksum failed.
    Fail {
        /// The data sequence number of the start of the failed mapping.
        dsn: Dsn,
    },
    /// MP_FASTCLOSE, carrying the receiver's key.
    FastClose {
        /// The key of the option's receiver, which proves the sender knows the connection.
        receiver_key: u64,
    },
    /// MP_TCPRST.
    TcpRst(TcpRstRepr),
    /// MP_EXPERIMENTAL or an unassigned subtype, kept opaque.
    Opaque(OpaqueOption),
}

#[inline]
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

#[inline]
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[inline]
fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// A cursor that writes big-endian fields into a slice already known to be long enough.
struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_be_bytes());
    }
    fn dsn(&mut self, v: DsnField) {
        match v {
            DsnField::Short(v) => self.u32(v),
            DsnField::Long(v) => self.u64(v),
        }
    }
}

impl DssRepr {
    /// The option length that the flags imply, without a checksum.
    fn expected_len(flags: u8) -> usize {
        let mut len = field::DSS_BASE;
        if flags & field::DSS_FLAG_ACK != 0 {
            len += if flags & field::DSS_FLAG_ACK64 != 0 {
                8
            } else {
                4
            };
        }
        if flags & field::DSS_FLAG_MAP != 0 {
            len += if flags & field::DSS_FLAG_DSN64 != 0 {
                8
            } else {
                4
            };
            len += field::DSS_MAP_TAIL;
        }
        len
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if let Some(ack) = self.data_ack {
            flags |= field::DSS_FLAG_ACK;
            if ack.is_long() {
                flags |= field::DSS_FLAG_ACK64;
            }
        }
        if let Some(map) = self.mapping {
            flags |= field::DSS_FLAG_MAP;
            if map.dsn.is_long() {
                flags |= field::DSS_FLAG_DSN64;
            }
        }
        if self.data_fin {
            flags |= field::DSS_FLAG_DATA_FIN;
        }
        flags
    }

    fn parse(len: usize, flags: u8, fields: &[u8]) -> Result<Self, Error> {
        let expected = Self::expected_len(flags);
        let has_map = flags & field::DSS_FLAG_MAP != 0;
        // Like Linux, the checksum's presence is told by the length: 2 bytes more than the flags
        // imply, and only after a mapping.
        let has_checksum = has_map && len == expected + field::DSS_CHECKSUM;
        if len != expected && !has_checksum {
            return Err(Error::DssLength {
                len: len as u8,
                expected: expected as u8,
            });
        }
        let mut at = 0;
        let data_ack = if flags & field::DSS_FLAG_ACK != 0 {
            Some(if flags & field::DSS_FLAG_ACK64 != 0 {
                at += 8;
                DsnField::Long(be64(&fields[at - 8..]))
            } else {
                at += 4;
                DsnField::Short(be32(&fields[at - 4..]))
            })
        } else {
            None
        };
        let mapping = if has_map {
            let dsn = if flags & field::DSS_FLAG_DSN64 != 0 {
                at += 8;
                DsnField::Long(be64(&fields[at - 8..]))
            } else {
                at += 4;
                DsnField::Short(be32(&fields[at - 4..]))
            };
            let ssn = Ssn(be32(&fields[at..]));
            let data_len = be16(&fields[at + 4..]);
            at += field::DSS_MAP_TAIL;
            let checksum = has_checksum.then(|| be16(&fields[at..]));
            Some(DssMapping {
                dsn,
                ssn,
                data_len,
                checksum,
            })
        } else {
            None
        };
        Ok(DssRepr {
            data_ack,
            mapping,
            data_fin: flags & field::DSS_FLAG_DATA_FIN != 0,
        })
    }
}

impl AddAddrRepr {
    fn parse(len: usize, echo: bool, body: &[u8]) -> Result<Self, Error> {
        let mut addr_len = len - field::ADD_ADDR_BASE;
        if !echo {
            addr_len = addr_len
                .checked_sub(field::ADD_ADDR_HMAC)
                .ok_or(Error::AddAddrLength {
                    len: len as u8,
                    echo,
                })?;
        }
        let (addr_len, has_port) = match addr_len {
            4 | 16 => (addr_len, false),
            6 | 18 => (addr_len - field::ADD_ADDR_PORT, true),
            _ => {
                return Err(Error::AddAddrLength {
                    len: len as u8,
                    echo,
                });
            }
        };
        let addr_id = body[0];
        let a = &body[1..];
        let addr = if addr_len == 4 {
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        } else {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            IpAddr::V6(Ipv6Addr::from(octets))
        };
        let mut at = 1 + addr_len;
        let port = has_port.then(|| {
            at += 2;
            be16(&body[at - 2..])
        });
        let hmac = (!echo).then(|| be64(&body[at..]));
        Ok(AddAddrRepr {
            addr_id,
            addr,
            port,
            hmac,
        })
    }

    fn buffer_len(&self) -> usize {
        let addr = match self.addr {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 16,
        };
        field::ADD_ADDR_BASE
            + addr
            + if self.port.is_some() {
                field::ADD_ADDR_PORT
            } else {
                0
            }
            + if self.hmac.is_some() {
                field::ADD_ADDR_HMAC
            } else {
                0
            }
    }
}

impl MptcpRepr {
    /// Parse one MPTCP option from a checked view.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(option: &MptcpOption<&T>) -> Result<Self, Error> {
        option.check_len()?;
        if option.kind() != field::KIND {
            return Err(Error::NotMptcp(option.kind()));
        }
        let len = option.length() as usize;
        let nibble = option.subtype_nibble();
        let body = option.body();
        match option.subtype() {
            Subtype::Capable => {
                let flags = CapableFlags(*body.first().ok_or(Error::CapableLength(len as u8))?);
                let keys = match len {
                    field::CAPABLE_SYN => CapableKeys::None,
                    field::CAPABLE_SYNACK => CapableKeys::Sender {
                        sender_key: be64(&body[1..]),
                    },
                    field::CAPABLE_ACK => CapableKeys::Both {
                        sender_key: be64(&body[1..]),
                        receiver_key: be64(&body[9..]),
                    },
                    field::CAPABLE_DATA | field::CAPABLE_DATA_CSUM => CapableKeys::WithData {
                        sender_key: be64(&body[1..]),
                        receiver_key: be64(&body[9..]),
                        data_len: be16(&body[17..]),
                        checksum: (len == field::CAPABLE_DATA_CSUM).then(|| be16(&body[19..])),
                    },
                    _ => return Err(Error::CapableLength(len as u8)),
                };
                Ok(MptcpRepr::Capable(CapableRepr {
                    version: nibble,
                    flags,
                    keys,
                }))
            }
            Subtype::Join => {
                let backup = nibble & field::JOIN_FLAG_BACKUP != 0;
                match len {
                    field::JOIN_SYN => Ok(MptcpRepr::Join(JoinRepr::Syn {
                        backup,
                        addr_id: body[0],
                        token: be32(&body[1..]),
                        nonce: be32(&body[5..]),
                    })),
                    field::JOIN_SYNACK => Ok(MptcpRepr::Join(JoinRepr::SynAck {
                        backup,
                        addr_id: body[0],
                        hmac: be64(&body[1..]),
                        nonce: be32(&body[9..]),
                    })),
                    field::JOIN_ACK => {
                        let mut hmac = [0u8; field::JOIN_ACK_HMAC_LEN];
                        hmac.copy_from_slice(&body[1..1 + field::JOIN_ACK_HMAC_LEN]);
                        Ok(MptcpRepr::Join(JoinRepr::Ack { hmac }))
                    }
                    _ => Err(Error::JoinLength(len as u8)),
                }
            }
            Subtype::Dss => {
                let flags = *body.first().ok_or(Error::DssLength {
                    len: len as u8,
                    expected: field::DSS_BASE as u8,
                })?;
                DssRepr::parse(len, flags, &body[1..]).map(MptcpRepr::Dss)
            }
            Subtype::AddAddr => {
                let echo = nibble & field::ADD_ADDR_FLAG_ECHO != 0;
                if len < field::ADD_ADDR_BASE {
                    return Err(Error::AddAddrLength {
                        len: len as u8,
                        echo,
                    });
                }
                AddAddrRepr::parse(len, echo, body).map(MptcpRepr::AddAddr)
            }
            Subtype::RemoveAddr => {
                if body.is_empty() {
                    return Err(Error::RemoveAddrEmpty);
                }
                AddrIdList::new(body).map(MptcpRepr::RemoveAddr)
            }
            Subtype::Prio => {
                if len != field::PRIO {
                    return Err(Error::PrioLength(len as u8));
                }
                Ok(MptcpRepr::Prio {
                    backup: nibble & field::PRIO_FLAG_BACKUP != 0,
                })
            }
            Subtype::Fail => {
                if len != field::FAIL {
                    return Err(Error::FailLength(len as u8));
                }
                Ok(MptcpRepr::Fail {
                    dsn: Dsn(be64(&body[1..])),
                })
            }
            Subtype::FastClose => {
                if len != field::FASTCLOSE {
                    return Err(Error::FastCloseLength(len as u8));
                }
                Ok(MptcpRepr::FastClose {
                    receiver_key: be64(&body[1..]),
                })
            }
            Subtype::TcpRst => {
                if len != field::TCPRST {
                    return Err(Error::TcpRstLength(len as u8));
                }
                Ok(MptcpRepr::TcpRst(TcpRstRepr {
                    flags: nibble,
                    reason: TcpRstReason(body[0]),
                }))
            }
            Subtype::Experimental | Subtype::Unassigned(_) => {
                OpaqueOption::new(option.value()).map(MptcpRepr::Opaque)
            }
        }
    }

    /// Parse one MPTCP option from the start of `bytes` (which may hold more after it).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Self::parse(&MptcpOption::new_unchecked(bytes))
    }

    /// The subtype of this option.
    pub fn subtype(&self) -> Subtype {
        match self {
            MptcpRepr::Capable(_) => Subtype::Capable,
            MptcpRepr::Join(_) => Subtype::Join,
            MptcpRepr::Dss(_) => Subtype::Dss,
            MptcpRepr::AddAddr(_) => Subtype::AddAddr,
            MptcpRepr::RemoveAddr(_) => Subtype::RemoveAddr,
            MptcpRepr::Prio { .. } => Subtype::Prio,
            MptcpRepr::Fail { .. } => Subtype::Fail,
            MptcpRepr::FastClose { .. } => Subtype::FastClose,
            MptcpRepr::TcpRst(_) => Subtype::TcpRst,
            MptcpRepr::Opaque(o) => o.subtype(),
        }
    }

    /// The exact number of bytes [`emit`](Self::emit) writes (no padding).
    pub fn buffer_len(&self) -> usize {
        match self {
            MptcpRepr::Capable(c) => match c.keys {
                CapableKeys::None => field::CAPABLE_SYN,
                CapableKeys::Sender { .. } => field::CAPABLE_SYNACK,
                CapableKeys::Both { .. } => field::CAPABLE_ACK,
                CapableKeys::WithData { checksum: None, .. } => field::CAPABLE_DATA,
                CapableKeys::WithData {
                    checksum: Some(_), ..
                } => field::CAPABLE_DATA_CSUM,
            },
            MptcpRepr::Join(JoinRepr::Syn { .. }) => field::JOIN_SYN,
            MptcpRepr::Join(JoinRepr::SynAck { .. }) => field::JOIN_SYNACK,
            MptcpRepr::Join(JoinRepr::Ack { .. }) => field::JOIN_ACK,
            MptcpRepr::Dss(d) => {
                let with_csum = d.mapping.is_some_and(|m| m.checksum.is_some());
                DssRepr::expected_len(d.flags()) + if with_csum { field::DSS_CHECKSUM } else { 0 }
            }
            MptcpRepr::AddAddr(a) => a.buffer_len(),
            MptcpRepr::RemoveAddr(ids) => field::REMOVE_ADDR_BASE + ids.as_slice().len(),
            MptcpRepr::Prio { .. } => field::PRIO,
            MptcpRepr::Fail { .. } => field::FAIL,
            MptcpRepr::FastClose { .. } => field::FASTCLOSE,
            MptcpRepr::TcpRst(_) => field::TCPRST,
            MptcpRepr::Opaque(o) => field::SUBTYPE_AT + o.value().len(),
        }
    }

    /// Write the option at the start of `buf`; returns the bytes written
    /// ([`buffer_len`](Self::buffer_len)).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.buffer_len();
        if buf.len() < len {
            return Err(Error::BufferTooSmall {
                needed: len,
                available: buf.len(),
            });
        }
        let buf = &mut buf[..len];
        if let MptcpRepr::Opaque(o) = self {
            buf[field::KIND_AT] = field::KIND;
            buf[field::LENGTH_AT] = len as u8;
            buf[field::SUBTYPE_AT..].copy_from_slice(o.value());
            return Ok(len);
        }
        let nibble = match self {
            MptcpRepr::Capable(c) => c.version & 0x0f,
            MptcpRepr::Join(JoinRepr::Syn { backup, .. } | JoinRepr::SynAck { backup, .. }) => {
                field::JOIN_FLAG_BACKUP * u8::from(*backup)
            }
            MptcpRepr::AddAddr(a) => field::ADD_ADDR_FLAG_ECHO * u8::from(a.is_echo()),
            MptcpRepr::Prio { backup } => field::PRIO_FLAG_BACKUP * u8::from(*backup),
            MptcpRepr::TcpRst(r) => r.flags & 0x0f,
            _ => 0,
        };
        MptcpOption::new_unchecked(&mut *buf).set_header(len as u8, self.subtype(), nibble);
        let mut w = Writer {
            buf,
            at: field::BODY_AT,
        };
        match self {
            MptcpRepr::Capable(c) => {
                w.u8(c.flags.0);
                match c.keys {
                    CapableKeys::None => {}
                    CapableKeys::Sender { sender_key } => w.u64(sender_key),
                    CapableKeys::Both {
                        sender_key,
                        receiver_key,
                    } => {
                        w.u64(sender_key);
                        w.u64(receiver_key);
                    }
                    CapableKeys::WithData {
                        sender_key,
                        receiver_key,
                        data_len,
                        checksum,
                    } => {
                        w.u64(sender_key);
                        w.u64(receiver_key);
                        w.u16(data_len);
                        if let Some(c) = checksum {
                            w.u16(c);
                        }
                    }
                }
            }
            MptcpRepr::Join(JoinRepr::Syn {
                addr_id,
                token,
                nonce,
                ..
            }) => {
                w.u8(*addr_id);
                w.u32(*token);
                w.u32(*nonce);
            }
            MptcpRepr::Join(JoinRepr::SynAck {
                addr_id,
                hmac,
                nonce,
                ..
            }) => {
                w.u8(*addr_id);
                w.u64(*hmac);
                w.u32(*nonce);
            }
            MptcpRepr::Join(JoinRepr::Ack { hmac }) => {
                w.u8(0);
                w.put(hmac);
            }
            MptcpRepr::Dss(d) => {
                w.u8(d.flags());
                if let Some(ack) = d.data_ack {
                    w.dsn(ack);
                }
                if let Some(m) = d.mapping {
                    w.dsn(m.dsn);
                    w.u32(m.ssn.0);
                    w.u16(m.data_len);
                    if let Some(c) = m.checksum {
                        w.u16(c);
                    }
                }
            }
            MptcpRepr::AddAddr(a) => {
                w.u8(a.addr_id);
                match a.addr {
                    IpAddr::V4(v4) => w.put(&v4.octets()),
                    IpAddr::V6(v6) => w.put(&v6.octets()),
                }
                if let Some(port) = a.port {
                    w.u16(port);
                }
                if let Some(hmac) = a.hmac {
                    w.u64(hmac);
                }
            }
            MptcpRepr::RemoveAddr(ids) => w.put(ids.as_slice()),
            MptcpRepr::Prio { .. } => {}
            MptcpRepr::Fail { dsn } => {
                w.u8(0);
                w.u64(dsn.0);
            }
            MptcpRepr::FastClose { receiver_key } => {
                w.u8(0);
                w.u64(*receiver_key);
            }
            MptcpRepr::TcpRst(r) => w.u8(r.reason.0),
            MptcpRepr::Opaque(_) => {}
        }
        debug_assert_eq!(w.at, len, "emit wrote a different length than buffer_len");
        Ok(len)
    }
}
