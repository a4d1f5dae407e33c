//! Middlebox behaviours for the simulator: packet rewrites that real networks do, with the
//! checksums fixed up so that only the end-to-end protocols can notice.
//!
//! Contract: each function takes a whole IP packet, changes it in place, refills the TCP
//! checksum (and the IPv4 header checksum where the header changed) and says whether it did
//! anything. Malformed packets are left untouched.

use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket};

/// The TCP segment's offset in the packet and its (source, destination) addresses.
fn tcp_part(packet: &[u8]) -> Option<(usize, IpAddress, IpAddress)> {
    match packet.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            (ip.next_header() == IpProtocol::Tcp).then(|| {
                (
                    usize::from(ip.header_len()),
                    IpAddress::Ipv4(ip.src_addr()),
                    IpAddress::Ipv4(ip.dst_addr()),
                )
            })
        }
        6 => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            (ip.next_header() == IpProtocol::Tcp).then(|| {
                (
                    40,
                    IpAddress::Ipv6(ip.src_addr()),
                    IpAddress::Ipv6(ip.dst_addr()),
                )
            })
        }
        _ => None,
    }
}

fn tcp_end(packet: &[u8]) -> usize {
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            Ipv4Packet::new_checked(packet).map_or(packet.len(), |ip| usize::from(ip.total_len()))
        }
        Some(6) => Ipv6Packet::new_checked(packet).map_or(packet.len(), |ip| ip.total_len()),
        _ => packet.len(),
    }
}

/// Replace every TCP option of `kind` with NOPs, as `iptables ... -j TCPOPTSTRIP` does.
pub fn strip_tcp_option(packet: &mut [u8], kind: u8) -> bool {
    let Some((at, src, dst)) = tcp_part(packet) else {
        return false;
    };
    let end = tcp_end(packet);
    let Some(seg) = packet.get_mut(at..end) else {
        return false;
    };
    let Ok(tcp) = TcpPacket::new_checked(&mut *seg) else {
        return false;
    };
    let header = usize::from(tcp.header_len());
    let mut changed = false;
    let mut i = 20;
    while i < header {
        match seg[i] {
            0 => break,
            1 => i += 1,
            k => {
                let len = usize::from(*seg.get(i + 1).unwrap_or(&0));
                if len < 2 || i + len > header {
                    break;
                }
                if k == kind {
                    seg[i..i + len].fill(1);
                    changed = true;
                }
                i += len;
            }
        }
    }
    if changed {
        TcpPacket::new_unchecked(&mut *seg).fill_checksum(&src, &dst);
    }
    changed
}

/// Recompute the TCP checksum after an edit of the segment's bytes (a middlebox that rewrites
/// options or data fixes the checksum up, so only end-to-end checks can notice).
pub fn refill_tcp_checksum(packet: &mut [u8]) -> bool {
    let Some((at, src, dst)) = tcp_part(packet) else {
        return false;
    };
    let end = tcp_end(packet);
    let Some(seg) = packet.get_mut(at..end) else {
        return false;
    };
    if TcpPacket::new_checked(&mut *seg).is_err() {
        return false;
    }
    TcpPacket::new_unchecked(&mut *seg).fill_checksum(&src, &dst);
    true
}

/// Flip the bits of `mask` in the payload byte at `offset` and refill the TCP checksum, so
/// that TCP accepts the corruption and only an end-to-end check (the DSS checksum) can see it.
pub fn corrupt_payload(packet: &mut [u8], offset: usize, mask: u8) -> bool {
    let Some((at, src, dst)) = tcp_part(packet) else {
        return false;
    };
    let end = tcp_end(packet);
    let Some(seg) = packet.get_mut(at..end) else {
        return false;
    };
    let Ok(tcp) = TcpPacket::new_checked(&mut *seg) else {
        return false;
    };
    let pos = usize::from(tcp.header_len()) + offset;
    let Some(byte) = seg.get_mut(pos) else {
        return false;
    };
    *byte ^= mask;
    TcpPacket::new_unchecked(&mut *seg).fill_checksum(&src, &dst);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seq::TcpSeq;
    use crate::wire::{
        CapableFlags, CapableKeys, CapableRepr, IpSegment, MptcpOptions, MptcpRepr, TcpFlags,
        TcpOptions, TcpSegment,
    };

    fn packet(payload: &[u8]) -> Vec<u8> {
        let mut mptcp = MptcpOptions::default();
        mptcp
            .push(MptcpRepr::Capable(CapableRepr {
                version: 1,
                flags: CapableFlags(1),
                keys: CapableKeys::None,
            }))
            .unwrap();
        let seg = IpSegment {
            src: "198.18.0.1".parse().unwrap(),
            dst: "198.18.0.2".parse().unwrap(),
            hop_limit: 64,
            tcp: TcpSegment {
                src_port: 1,
                dst_port: 2,
                seq: TcpSeq(1),
                ack: TcpSeq(0),
                flags: TcpFlags(TcpFlags::SYN),
                window: 100,
                urgent: 0,
                options: TcpOptions {
                    mss: Some(1460),
                    mptcp,
                    ..TcpOptions::default()
                },
                payload,
            },
        };
        let mut buf = vec![0u8; seg.buffer_len()];
        seg.emit(&mut buf).unwrap();
        buf
    }

    #[test]
    fn stripping_option_30_leaves_a_valid_segment_without_it() {
        let mut p = packet(b"data");
        assert!(strip_tcp_option(&mut p, 30));
        let seg = IpSegment::parse(&p).expect("checksum refilled");
        assert!(seg.tcp.options.mptcp.is_empty());
        assert_eq!(seg.tcp.options.mss, Some(1460));
        assert!(!strip_tcp_option(&mut p, 30), "nothing left to strip");
    }

    #[test]
    fn a_corrupted_payload_still_passes_tcp() {
        let mut p = packet(b"data");
        assert!(corrupt_payload(&mut p, 1, 0xff));
        let seg = IpSegment::parse(&p).expect("checksum refilled");
        assert_eq!(seg.tcp.payload, &[b'd', !b'a', b't', b'a']);
        assert!(!corrupt_payload(&mut p, 99, 1));
    }
}
