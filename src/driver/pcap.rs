//! A minimal pcap (libpcap "classic" format) writer for raw IP packets.
//!
//! Contract: [`PcapWriter::new`] writes the 24-byte global header (little-endian magic
//! `0xa1b2c3d4`, version 2.4, snaplen 65535, link type `LINKTYPE_RAW` = 101: each record is an
//! IPv4 or IPv6 packet with no link-layer header); [`PcapWriter::write_packet`] appends one
//! 16-byte record header (microsecond timestamp since the Unix epoch, captured length, original
//! length) and the packet, cut to the snaplen. Wireshark and tshark read the result. Nothing is
//! flushed until [`PcapWriter::flush`] or drop of the sink.

use std::io::{self, Write};
use std::time::Duration;

/// Writes raw IP packets to a pcap stream (see the module docs).
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    sink: W,
    records: u64,
}

impl<W: Write> PcapWriter<W> {
    /// `LINKTYPE_RAW`: records are IPv4 or IPv6 packets, told apart by the version nibble.
    pub const LINKTYPE_RAW: u32 = 101;
    /// Largest number of bytes recorded per packet.
    pub const SNAPLEN: u32 = 65535;

    /// Start a capture: write the global header to `sink`.
    pub fn new(mut sink: W) -> io::Result<Self> {
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes());
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone (8..12) and sigfigs (12..16) stay zero.
        header[16..20].copy_from_slice(&Self::SNAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&Self::LINKTYPE_RAW.to_le_bytes());
        sink.write_all(&header)?;
        Ok(PcapWriter { sink, records: 0 })
    }

    /// Append one packet seen at `since_epoch` (time since 1970-01-01 UTC).
    pub fn write_packet(&mut self, since_epoch: Duration, packet: &[u8]) -> io::Result<()> {
        let orig_len = u32::try_from(packet.len()).unwrap_or(u32::MAX);
        let incl_len = orig_len.min(Self::SNAPLEN);
        let secs = u32::try_from(since_epoch.as_secs()).unwrap_or(u32::MAX);
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&secs.to_le_bytes());
        header[4..8].copy_from_slice(&since_epoch.subsec_micros().to_le_bytes());
        header[8..12].copy_from_slice(&incl_len.to_le_bytes());
        header[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.sink.write_all(&header)?;
        self.sink.write_all(&packet[..incl_len as usize])?;
        self.records += 1;
        Ok(())
    }

    /// Number of packets written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flush the sink.
    pub fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }

    /// The sink.
    pub fn get_ref(&self) -> &W {
        &self.sink
    }

    /// Give the sink back (not flushed).
    pub fn into_inner(self) -> W {
        self.sink
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_records() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let pkt = [
            0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 198, 18, 1, 2, 198, 18, 101, 1,
        ];
        w.write_packet(Duration::new(1_700_000_000, 123_456_789), &pkt)
            .unwrap();
        assert_eq!(w.records(), 1);
        let out = w.into_inner();
        assert_eq!(out.len(), 24 + 16 + pkt.len());
        assert_eq!(&out[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(out[20..24].try_into().unwrap()), 101);
        assert_eq!(
            u32::from_le_bytes(out[24..28].try_into().unwrap()),
            1_700_000_000
        );
        assert_eq!(u32::from_le_bytes(out[28..32].try_into().unwrap()), 123_456);
        assert_eq!(u32::from_le_bytes(out[32..36].try_into().unwrap()), 20);
        assert_eq!(u32::from_le_bytes(out[36..40].try_into().unwrap()), 20);
        assert_eq!(&out[40..], &pkt);
    }

    #[test]
    fn long_packets_are_cut_to_snaplen() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_packet(Duration::ZERO, &vec![0x60; 70_000]).unwrap();
        let out = w.into_inner();
        assert_eq!(u32::from_le_bytes(out[32..36].try_into().unwrap()), 65535);
        assert_eq!(u32::from_le_bytes(out[36..40].try_into().unwrap()), 70_000);
        assert_eq!(out.len(), 24 + 16 + 65535);
    }
}
