//! TCP segments with their options, inside IPv4 or IPv6 packets.
//!
//! Contract:
//! - [`IpSegment::parse`] takes a whole IP packet (any bytes) and returns the addresses, the TCP
//!   header fields, the options and a borrowed payload, after verifying the IPv4 header checksum
//!   and the TCP checksum. It never panics. Extension headers, fragments and other protocols are
//!   typed errors: the caller drops them (or hands them to another handler).
//! - Options are parsed leniently, as Linux does (`tcp_parse_options`, `mptcp_parse_option`): an
//!   option of a known kind with a wrong length is skipped and counted in
//!   [`TcpOptions::skipped`], and so is an unknown kind; an option whose length runs past the end
//!   of the option space ends parsing. A malformed option never rejects the segment.
//! - The 40-byte option budget is explicit: [`TcpOptions::buffer_len`] gives the padded size, and
//!   emitting more than 40 bytes fails with [`Error::OptionSpaceExceeded`] rather than truncating.
//!   Each option is padded with NOPs to a 4-byte boundary (the layout Linux uses).
//! - [`IpSegment::emit`] writes the IP header, TCP header, options and payload, and fills both
//!   checksums.

use core::net::IpAddr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, TcpSeqNumber,
};

use super::Error;
use super::mptcp::{MptcpOption, MptcpRepr, field as mptcp_field};
use crate::seq::TcpSeq;

/// Byte layout of TCP options (RFC 9293 section 3.2, RFC 7323, RFC 2018).
pub mod field {
    /// End of option list.
    pub const OPT_EOL: u8 = 0;
    /// No-operation (padding).
    pub const OPT_NOP: u8 = 1;
    /// Maximum segment size, length 4.
    pub const OPT_MSS: u8 = 2;
    /// Window scale, length 3.
    pub const OPT_WS: u8 = 3;
    /// SACK permitted, length 2.
    pub const OPT_SACK_PERM: u8 = 4;
    /// SACK blocks, length 2 + 8n.
    pub const OPT_SACK: u8 = 5;
    /// Timestamps, length 10.
    pub const OPT_TS: u8 = 8;
    /// Length of MSS.
    pub const MSS_LEN: usize = 4;
    /// Length of window scale.
    pub const WS_LEN: usize = 3;
    /// Length of SACK permitted.
    pub const SACK_PERM_LEN: usize = 2;
    /// Length of the SACK option header.
    pub const SACK_BASE: usize = 2;
    /// Length of one SACK block.
    pub const SACK_BLOCK: usize = 8;
    /// Length of timestamps.
    pub const TS_LEN: usize = 10;
    /// The largest option space in a TCP header (60-byte header less 20 fixed bytes).
    pub const MAX_OPTIONS: usize = 40;
    /// The fixed TCP header.
    pub const TCP_HEADER: usize = 20;
    /// The IPv4 header the stack emits (no options).
    pub const IPV4_HEADER: usize = 20;
    /// The IPv6 header.
    pub const IPV6_HEADER: usize = 40;
    /// The window-scale shift ceiling of RFC 7323 section 2.3.
    pub const MAX_WINDOW_SHIFT: u8 = 14;
}

/// Round an option length up to the 4-byte boundary its NOP padding reaches.
#[inline]
pub const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// TCP header flags.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;

    /// Whether every bit of `bits` is set.
    #[inline]
    pub fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }
    /// SYN is set.
    pub fn syn(self) -> bool {
        self.has(Self::SYN)
    }
    /// ACK is set.
    pub fn ack(self) -> bool {
        self.has(Self::ACK)
    }
    /// FIN is set.
    pub fn fin(self) -> bool {
        self.has(Self::FIN)
    }
    /// RST is set.
    pub fn rst(self) -> bool {
        self.has(Self::RST)
    }
}

impl core::fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut first = true;
        for (i, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// RFC 7323 timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// TSval: the sender's clock.
    pub tsval: u32,
    /// TSecr: the echoed TSval.
    pub tsecr: u32,
}

/// Up to four SACK blocks (RFC 2018), inline. Each is `(left edge, right edge)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SackBlocks {
    len: u8,
    blocks: [(u32, u32); Self::CAPACITY],
}

impl SackBlocks {
    /// The most blocks that fit in 40 bytes of option space.
    pub const CAPACITY: usize = 4;

    /// Blocks from a slice.
    pub fn new(blocks: &[(u32, u32)]) -> Result<Self, Error> {
        if blocks.len() > Self::CAPACITY {
            return Err(Error::TooManySackBlocks(Self::CAPACITY));
        }
        let mut s = SackBlocks::default();
        s.blocks[..blocks.len()].copy_from_slice(blocks);
        s.len = blocks.len() as u8;
        Ok(s)
    }

    /// The blocks.
    pub fn as_slice(&self) -> &[(u32, u32)] {
        &self.blocks[..self.len as usize]
    }

    /// Whether there is no block.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the option on the wire, before padding (0 with no block).
    fn wire_len(&self) -> usize {
        if self.is_empty() {
            0
        } else {
            field::SACK_BASE + field::SACK_BLOCK * self.len as usize
        }
    }
}

impl core::fmt::Debug for SackBlocks {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The MPTCP options of one segment, inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MptcpOptions {
    len: u8,
    options: [Option<MptcpRepr>; Self::CAPACITY],
}

impl MptcpOptions {
    /// The most MPTCP options one segment carries here. Linux writes at most a DSS plus one
    /// signalling option (ADD_ADDR, REMOVE_ADDR, MP_PRIO, MP_FAIL, MP_TCPRST, MP_FASTCLOSE).
    pub const CAPACITY: usize = 4;

    /// Append an option.
    pub fn push(&mut self, option: MptcpRepr) -> Result<(), Error> {
        let slot = self
            .options
            .get_mut(self.len as usize)
            .ok_or(Error::TooManyMptcpOptions(Self::CAPACITY))?;
        *slot = Some(option);
        self.len += 1;
        Ok(())
    }

    /// Iterate over the options in order.
    pub fn iter(&self) -> impl Iterator<Item = &MptcpRepr> {
        self.options[..self.len as usize].iter().flatten()
    }

    /// The number of options.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first DSS option, if any.
    pub fn dss(&self) -> Option<&super::DssRepr> {
        self.iter().find_map(|o| match o {
            MptcpRepr::Dss(d) => Some(d),
            _ => None,
        })
    }
}

impl core::fmt::Debug for MptcpOptions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The options of one TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpOptions {
    /// Maximum segment size (SYN only).
    pub mss: Option<u16>,
    /// Window scale shift (SYN only), as received: the receiver clamps it to 14.
    pub window_scale: Option<u8>,
    /// SACK permitted (SYN only).
    pub sack_permitted: bool,
    /// SACK blocks.
    pub sack: SackBlocks,
    /// Timestamps.
    pub timestamp: Option<Timestamp>,
    /// MPTCP options, in the order received.
    pub mptcp: MptcpOptions,
    /// Options skipped on receive: unknown kinds, known kinds of a wrong length, MPTCP options
    /// that failed to parse, and MPTCP options beyond [`MptcpOptions::CAPACITY`]. Never emitted.
    pub skipped: u8,
}

impl TcpOptions {
    /// Parse an option block (the bytes between the fixed header and the payload).
    pub fn parse(mut bytes: &[u8]) -> TcpOptions {
        let mut opts = TcpOptions::default();
        while let Some(&kind) = bytes.first() {
            match kind {
                field::OPT_EOL => break,
                field::OPT_NOP => {
                    bytes = &bytes[1..];
                    continue;
                }
                _ => {}
            }
            // RFC 9293 section 3.1: every other option has a length octet, which counts kind and
            // length. One that is under 2 or runs past the option space ends parsing (as Linux).
            let len = match bytes.get(1) {
                Some(&len) if len >= 2 && len as usize <= bytes.len() => len as usize,
                _ => {
                    opts.skipped = opts.skipped.saturating_add(1);
                    break;
                }
            };
            let data = &bytes[2..len];
            match (kind, len) {
                (field::OPT_MSS, field::MSS_LEN) => {
                    opts.mss = Some(u16::from_be_bytes([data[0], data[1]]))
                }
                (field::OPT_WS, field::WS_LEN) => opts.window_scale = Some(data[0]),
                (field::OPT_SACK_PERM, field::SACK_PERM_LEN) => opts.sack_permitted = true,
                (field::OPT_SACK, _)
                    if len >= field::SACK_BASE + field::SACK_BLOCK
                        && (len - field::SACK_BASE).is_multiple_of(field::SACK_BLOCK) =>
                {
                    let mut sack = SackBlocks::default();
                    for chunk in data
                        .chunks_exact(field::SACK_BLOCK)
                        .take(SackBlocks::CAPACITY)
                    {
                        let left = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                        let right = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
                        sack.blocks[sack.len as usize] = (left, right);
                        sack.len += 1;
                    }
                    opts.sack = sack;
                }
                (field::OPT_TS, field::TS_LEN) => {
                    opts.timestamp = Some(Timestamp {
                        tsval: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
                        tsecr: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
                    })
                }
                (mptcp_field::KIND, _) => {
                    let parsed = MptcpRepr::parse(&MptcpOption::new_unchecked(&bytes[..len]));
                    match parsed.map(|o| opts.mptcp.push(o)) {
                        Ok(Ok(())) => {}
                        _ => opts.skipped = opts.skipped.saturating_add(1),
                    }
                }
                _ => opts.skipped = opts.skipped.saturating_add(1),
            }
            bytes = &bytes[len..];
        }
        opts
    }

    /// Bytes the standard options take on the wire, padding included.
    fn standard_len(&self) -> usize {
        let mut len = 0;
        if self.mss.is_some() {
            len += field::MSS_LEN;
        }
        // SACK permitted rides in the two padding bytes before the timestamps when both are there.
        len += match (self.sack_permitted, self.timestamp.is_some()) {
            (true, true) => field::SACK_PERM_LEN + field::TS_LEN,
            (false, true) => padded(field::TS_LEN),
            (true, false) => padded(field::SACK_PERM_LEN),
            (false, false) => 0,
        };
        if self.window_scale.is_some() {
            len += padded(field::WS_LEN);
        }
        len + padded(self.sack.wire_len())
    }

    /// Bytes the whole option block takes on the wire, padding included. A segment can carry
    /// it only when this is at most 40 ([`field::MAX_OPTIONS`]).
    pub fn buffer_len(&self) -> usize {
        self.standard_len()
            + self
                .mptcp
                .iter()
                .map(|o| padded(o.buffer_len()))
                .sum::<usize>()
    }

    /// The option space left for more options.
    pub fn room(&self) -> usize {
        field::MAX_OPTIONS.saturating_sub(self.buffer_len())
    }

    /// Write the option block; returns its length (a multiple of 4, at most 40).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let total = self.buffer_len();
        if total > field::MAX_OPTIONS {
            return Err(Error::OptionSpaceExceeded(total));
        }
        if buf.len() < total {
            return Err(Error::BufferTooSmall {
                needed: total,
                available: buf.len(),
            });
        }
        let buf = &mut buf[..total];
        buf.fill(field::OPT_NOP);
        let mut at = 0;
        if let Some(mss) = self.mss {
            buf[at..at + 4].copy_from_slice(&[field::OPT_MSS, 4, (mss >> 8) as u8, mss as u8]);
            at += 4;
        }
        match (self.sack_permitted, self.timestamp) {
            (true, Some(_)) => {
                buf[at..at + 2].copy_from_slice(&[field::OPT_SACK_PERM, 2]);
                at += 2;
            }
            (true, None) => {
                buf[at + 2..at + 4].copy_from_slice(&[field::OPT_SACK_PERM, 2]);
                at += 4;
            }
            (false, Some(_)) => at += 2,
            (false, None) => {}
        }
        if let Some(ts) = self.timestamp {
            buf[at] = field::OPT_TS;
            buf[at + 1] = field::TS_LEN as u8;
            buf[at + 2..at + 6].copy_from_slice(&ts.tsval.to_be_bytes());
            buf[at + 6..at + 10].copy_from_slice(&ts.tsecr.to_be_bytes());
            at += field::TS_LEN;
        }
        if let Some(shift) = self.window_scale {
            buf[at + 1..at + 4].copy_from_slice(&[field::OPT_WS, 3, shift]);
            at += 4;
        }
        if !self.sack.is_empty() {
            at += 2;
            buf[at] = field::OPT_SACK;
            buf[at + 1] = self.sack.wire_len() as u8;
            at += 2;
            for (left, right) in self.sack.as_slice() {
                buf[at..at + 4].copy_from_slice(&left.to_be_bytes());
                buf[at + 4..at + 8].copy_from_slice(&right.to_be_bytes());
                at += field::SACK_BLOCK;
            }
        }
        for option in self.mptcp.iter() {
            let n = option.emit(&mut buf[at..])?;
            at += padded(n);
        }
        debug_assert_eq!(at, total);
        Ok(total)
    }
}

/// A TCP segment: header fields, options and a borrowed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: TcpSeq,
    /// Acknowledgement number (meaningful when ACK is set).
    pub ack: TcpSeq,
    /// Flags.
    pub flags: TcpFlags,
    /// Window field, unscaled.
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Options.
    pub options: TcpOptions,
    /// Payload.
    pub payload: &'a [u8],
}

impl TcpSegment<'_> {
    /// The TCP header length with options.
    pub fn header_len(&self) -> usize {
        field::TCP_HEADER + self.options.buffer_len()
    }

    /// Sequence space the segment occupies: payload plus one each for SYN and FIN.
    pub fn seq_len(&self) -> usize {
        self.payload.len() + self.flags.syn() as usize + self.flags.fin() as usize
    }
}

/// A TCP segment inside an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpSegment<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// TTL or hop limit.
    pub hop_limit: u8,
    /// The TCP segment.
    pub tcp: TcpSegment<'a>,
}

/// Offset of the data-offset byte in the TCP header.
const TCP_OFFSET_AT: usize = 12;
/// Offset of the flags byte in the TCP header (CWR ECE URG ACK PSH RST SYN FIN).
const TCP_FLAGS_AT: usize = 13;

/// Cut a TCP super segment (as [`Node::poll_transmit_segments`](crate::node::Node) writes it:
/// one IP packet whose payload spans several segments, its TCP checksum partial or not) into
/// ordinary segments of `segment_size` payload bytes, as Linux's GSO does: each gets a copy of
/// the headers and options, its own sequence number and IP length (IPv4: the identification
/// plus its index), FIN and PSH only on the last, CWR only on the first, and full checksums.
/// Each is written into `scratch` and handed to `each`; returns how many there were. For
/// devices without offload, and for tests.
pub fn split_super_segment(
    packet: &[u8],
    segment_size: usize,
    scratch: &mut [u8],
    mut each: impl FnMut(&[u8]),
) -> Result<usize, Error> {
    const FLAG_FIN: u8 = 0x01;
    const FLAG_PSH: u8 = 0x08;
    const FLAG_CWR: u8 = 0x80;
    let version = packet.first().ok_or(Error::Truncated)? >> 4;
    let ip_len = match version {
        4 => usize::from(packet[0] & 0x0f) * 4,
        6 => field::IPV6_HEADER,
        other => return Err(Error::IpVersion(other)),
    };
    let tcp_len = packet
        .get(ip_len + TCP_OFFSET_AT)
        .map(|b| usize::from(b >> 4) * 4)
        .ok_or(Error::Truncated)?;
    let headers = ip_len + tcp_len;
    if tcp_len < field::TCP_HEADER || packet.len() < headers {
        return Err(Error::TcpHeader);
    }
    if segment_size == 0 {
        return Err(Error::BufferTooSmall {
            needed: headers + 1,
            available: scratch.len(),
        });
    }
    let payload = &packet[headers..];
    let (src, dst, ident) = if version == 4 {
        let ip = Ipv4Packet::new_unchecked(packet);
        (
            IpAddress::Ipv4(ip.src_addr()),
            IpAddress::Ipv4(ip.dst_addr()),
            ip.ident(),
        )
    } else {
        let ip = Ipv6Packet::new_unchecked(packet);
        (
            IpAddress::Ipv6(ip.src_addr()),
            IpAddress::Ipv6(ip.dst_addr()),
            0,
        )
    };
    let seq = TcpPacket::new_unchecked(&packet[ip_len..]).seq_number();
    let flags = packet[ip_len + TCP_FLAGS_AT];
    let pieces = payload.len().div_ceil(segment_size).max(1);
    for k in 0..pieces {
        let from = k * segment_size;
        let piece = &payload[from.min(payload.len())..(from + segment_size).min(payload.len())];
        let total = headers + piece.len();
        if scratch.len() < total {
            return Err(Error::BufferTooSmall {
                needed: total,
                available: scratch.len(),
            });
        }
        let out = &mut scratch[..total];
        out[..headers].copy_from_slice(&packet[..headers]);
        out[headers..].copy_from_slice(piece);
        let mut f = flags;
        if k + 1 < pieces {
            f &= !(FLAG_FIN | FLAG_PSH);
        }
        if k > 0 {
            f &= !FLAG_CWR;
        }
        out[ip_len + TCP_FLAGS_AT] = f;
        {
            let mut tcp = TcpPacket::new_unchecked(&mut out[ip_len..]);
            tcp.set_seq_number(seq + from);
            tcp.fill_checksum(&src, &dst);
        }
        if version == 4 {
            let mut ip = Ipv4Packet::new_unchecked(&mut out[..]);
            ip.set_total_len(total as u16);
            ip.set_ident(ident.wrapping_add(k as u16));
            ip.fill_checksum();
        } else {
            let mut ip = Ipv6Packet::new_unchecked(&mut out[..]);
            ip.set_payload_len((total - ip_len) as u16);
        }
        each(&scratch[..total]);
    }
    Ok(pieces)
}

/// The TCP pseudo-header's one's-complement sum (RFC 9293 section 3.1; RFC 8200 section 8.1
/// for IPv6), folded to 16 bits and not complemented: what a `CHECKSUM_PARTIAL` packet carries
/// in its checksum field before the device adds the segment's own bytes.
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, tcp_len: usize) -> u16 {
    fn add(sum: u32, bytes: &[u8]) -> u32 {
        bytes
            .chunks(2)
            .fold(sum, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])))
    }
    let mut sum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => add(add(0, &s.octets()), &d.octets()),
        (s, d) => add(add(0, &to_v6(s).octets()), &to_v6(d).octets()),
    };
    let len = tcp_len as u32;
    sum += u32::from(u8::from(IpProtocol::Tcp)) + (len >> 16) + (len & 0xffff);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn to_v6(addr: IpAddr) -> core::net::Ipv6Addr {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

fn to_smol(addr: IpAddr) -> IpAddress {
    match addr {
        IpAddr::V4(a) => IpAddress::Ipv4(a),
        IpAddr::V6(a) => IpAddress::Ipv6(a),
    }
}

impl<'a> IpSegment<'a> {
    /// Parse a whole IPv4 or IPv6 packet carrying TCP, verifying checksums.
    pub fn parse(packet: &'a [u8]) -> Result<Self, Error> {
        Self::parse_with(packet, true)
    }

    /// [`parse`](Self::parse) without verifying the TCP checksum, for a packet whose device
    /// vouches for it (see [`Node::handle_packet_trusted`](crate::node::Node)); the IPv4 header
    /// checksum is still verified.
    pub fn parse_trusted(packet: &'a [u8]) -> Result<Self, Error> {
        Self::parse_with(packet, false)
    }

    fn parse_with(packet: &'a [u8], verify_tcp: bool) -> Result<Self, Error> {
        let version = packet.first().ok_or(Error::Truncated)? >> 4;
        let (src, dst, hop_limit, payload) = match version {
            4 => {
                let ip = Ipv4Packet::new_checked(packet).map_err(|_| Error::IpHeader)?;
                if !ip.verify_checksum() {
                    return Err(Error::Ipv4Checksum);
                }
                if ip.more_frags() || ip.frag_offset() != 0 {
                    return Err(Error::IpFragment);
                }
                if ip.next_header() != IpProtocol::Tcp {
                    return Err(Error::NotTcp(ip.next_header().into()));
                }
                (
                    IpAddr::V4(ip.src_addr()),
                    IpAddr::V4(ip.dst_addr()),
                    ip.hop_limit(),
                    ip.payload(),
                )
            }
            6 => {
                let ip = Ipv6Packet::new_checked(packet).map_err(|_| Error::IpHeader)?;
                if ip.next_header() != IpProtocol::Tcp {
                    return Err(Error::NotTcp(ip.next_header().into()));
                }
                (
                    IpAddr::V6(ip.src_addr()),
                    IpAddr::V6(ip.dst_addr()),
                    ip.hop_limit(),
                    ip.payload(),
                )
            }
            other => return Err(Error::IpVersion(other)),
        };
        let tcp = TcpPacket::new_checked(payload).map_err(|_| Error::TcpHeader)?;
        if (tcp.header_len() as usize) < field::TCP_HEADER {
            return Err(Error::TcpHeader);
        }
        if verify_tcp && !tcp.verify_checksum(&to_smol(src), &to_smol(dst)) {
            return Err(Error::TcpChecksum);
        }
        let flags = TcpFlags(payload[TCP_FLAGS_AT]);
        Ok(IpSegment {
            src,
            dst,
            hop_limit,
            tcp: TcpSegment {
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                seq: TcpSeq(tcp.seq_number().0 as u32),
                ack: TcpSeq(tcp.ack_number().0 as u32),
                flags,
                window: tcp.window_len(),
                urgent: tcp.urgent_at(),
                options: TcpOptions::parse(tcp.options()),
                payload: tcp.payload(),
            },
        })
    }

    fn ip_header_len(&self) -> usize {
        match self.src {
            IpAddr::V4(_) => field::IPV4_HEADER,
            IpAddr::V6(_) => field::IPV6_HEADER,
        }
    }

    /// The bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        self.headers_len() + self.tcp.payload.len()
    }

    /// The IP and TCP headers with options: where the payload starts in an emitted packet.
    pub fn headers_len(&self) -> usize {
        self.ip_header_len() + self.tcp.header_len()
    }

    /// Write the whole packet with both checksums filled; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let headers = self.headers_len();
        let total = headers + self.tcp.payload.len();
        if buf.len() < total {
            return Err(Error::BufferTooSmall {
                needed: total,
                available: buf.len(),
            });
        }
        buf[headers..total].copy_from_slice(self.tcp.payload);
        self.emit_around_payload(buf, self.tcp.payload.len())
    }

    /// Write the headers around a payload of `payload_len` bytes that the caller has already
    /// placed at `buf[headers_len()..]` (so a sender copies its data once, straight from its
    /// buffer); `self.tcp.payload` is not read. Fills both checksums; returns the length.
    pub fn emit_around_payload(&self, buf: &mut [u8], payload_len: usize) -> Result<usize, Error> {
        self.emit_headers(buf, payload_len, false)
    }

    /// [`emit_around_payload`](Self::emit_around_payload) for segmentation offload: the TCP
    /// checksum field gets only the pseudo-header sum over the whole TCP length (folded, not
    /// complemented: Linux's `CHECKSUM_PARTIAL`), which the device completes for each segment
    /// it cuts; the payload is never read. The IPv4 header checksum is filled.
    pub fn emit_around_payload_partial(
        &self,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<usize, Error> {
        self.emit_headers(buf, payload_len, true)
    }

    fn emit_headers(
        &self,
        buf: &mut [u8],
        payload_len: usize,
        partial: bool,
    ) -> Result<usize, Error> {
        let options_len = self.tcp.options.buffer_len();
        if options_len > field::MAX_OPTIONS {
            return Err(Error::OptionSpaceExceeded(options_len));
        }
        let total = self.headers_len() + payload_len;
        if buf.len() < total {
            return Err(Error::BufferTooSmall {
                needed: total,
                available: buf.len(),
            });
        }
        let ip_len = self.ip_header_len();
        let tcp_len = total - ip_len;
        let caps = ChecksumCapabilities::default();
        match (self.src, self.dst) {
            (IpAddr::V4(src_addr), IpAddr::V4(dst_addr)) => {
                if total > usize::from(u16::MAX) {
                    return Err(Error::PacketTooLong(total));
                }
                let repr = Ipv4Repr {
                    src_addr,
                    dst_addr,
                    next_header: IpProtocol::Tcp,
                    payload_len: tcp_len,
                    hop_limit: self.hop_limit,
                };
                repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..ip_len]), &caps);
            }
            (IpAddr::V6(src_addr), IpAddr::V6(dst_addr)) => {
                if tcp_len > usize::from(u16::MAX) {
                    return Err(Error::PacketTooLong(total));
                }
                let repr = Ipv6Repr {
                    src_addr,
                    dst_addr,
                    next_header: IpProtocol::Tcp,
                    payload_len: tcp_len,
                    hop_limit: self.hop_limit,
                };
                repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..ip_len]));
            }
            _ => return Err(Error::AddressFamilyMismatch),
        }
        let seg = &mut buf[ip_len..total];
        let header_len = field::TCP_HEADER + options_len;
        self.tcp
            .options
            .emit(&mut seg[field::TCP_HEADER..header_len])?;
        // Data offset (high nibble; reserved bits zero) and the flags byte.
        seg[TCP_OFFSET_AT] = ((header_len / 4) as u8) << 4;
        seg[TCP_FLAGS_AT] = self.tcp.flags.0;
        let mut tcp = TcpPacket::new_unchecked(seg);
        tcp.set_src_port(self.tcp.src_port);
        tcp.set_dst_port(self.tcp.dst_port);
        tcp.set_seq_number(TcpSeqNumber(self.tcp.seq.0 as i32));
        tcp.set_ack_number(TcpSeqNumber(self.tcp.ack.0 as i32));
        tcp.set_window_len(self.tcp.window);
        tcp.set_urgent_at(self.tcp.urgent);
        if partial {
            tcp.set_checksum(pseudo_header_sum(self.src, self.dst, tcp_len));
        } else {
            tcp.fill_checksum(&to_smol(self.src), &to_smol(self.dst));
        }
        Ok(total)
    }
}
