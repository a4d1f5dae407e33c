//! Reading the addresses of an IP packet, and nothing else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The source and destination addresses of an IPv4 or IPv6 packet, or `None` if its header is
/// malformed: an unknown version, a truncated header, an IPv4 header length below 20 bytes, or a
/// total (IPv4) or payload (IPv6) length larger than the bytes given. Trailing bytes after the
/// packet are tolerated; checksums are not checked.
pub fn ip_addresses(packet: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match packet.first()? >> 4 {
        4 => {
            let header_len = usize::from(packet.first()? & 0x0f) * 4;
            if header_len < 20 || packet.len() < header_len {
                return None;
            }
            let total_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
            if total_len < header_len || total_len > packet.len() {
                return None;
            }
            let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some((Ipv4Addr::from(src).into(), Ipv4Addr::from(dst).into()))
        }
        6 => {
            if packet.len() < 40 {
                return None;
            }
            let payload_len = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
            if 40 + payload_len > packet.len() {
                return None;
            }
            let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some((Ipv6Addr::from(src).into(), Ipv6Addr::from(dst).into()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(src: [u8; 4], dst: [u8; 4], payload: usize) -> Vec<u8> {
        let mut p = vec![0u8; 20 + payload];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&u16::try_from(20 + payload).unwrap().to_be_bytes());
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p
    }

    #[test]
    fn reads_ipv4_addresses() {
        let p = v4([10, 0, 0, 1], [10, 0, 0, 2], 8);
        assert_eq!(
            ip_addresses(&p),
            Some(("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()))
        );
    }

    #[test]
    fn reads_ipv4_with_options_and_trailing_bytes() {
        let mut p = vec![0u8; 24 + 10];
        p[0] = 0x46;
        p[3] = 24;
        p[12..16].copy_from_slice(&[1, 2, 3, 4]);
        p[16..20].copy_from_slice(&[5, 6, 7, 8]);
        assert_eq!(
            ip_addresses(&p),
            Some(("1.2.3.4".parse().unwrap(), "5.6.7.8".parse().unwrap()))
        );
    }

    #[test]
    fn reads_ipv6_addresses() {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[5] = 8;
        p[8..24].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(
            ip_addresses(&p),
            Some((
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap()
            ))
        );
    }

    #[test]
    fn rejects_malformed_headers() {
        assert_eq!(ip_addresses(&[]), None);
        assert_eq!(ip_addresses(&[0x45]), None);
        assert_eq!(ip_addresses(&[0x70; 60]), None, "version 7");
        let mut short_ihl = v4([1, 1, 1, 1], [2, 2, 2, 2], 0);
        short_ihl[0] = 0x44;
        assert_eq!(ip_addresses(&short_ihl), None, "IHL below 5");
        let mut long_total = v4([1, 1, 1, 1], [2, 2, 2, 2], 0);
        long_total[3] = 21;
        assert_eq!(ip_addresses(&long_total), None, "total length past the end");
        let mut big_ihl = v4([1, 1, 1, 1], [2, 2, 2, 2], 0);
        big_ihl[0] = 0x4f;
        assert_eq!(ip_addresses(&big_ihl), None, "header past the end");
        let mut v6 = vec![0u8; 40];
        v6[0] = 0x60;
        v6[5] = 1;
        assert_eq!(ip_addresses(&v6), None, "payload length past the end");
        assert_eq!(ip_addresses(&v6[..39]), None, "truncated IPv6 header");
    }

    #[test]
    fn never_panics_on_short_inputs() {
        for len in 0..64 {
            for first in [0x40u8, 0x45, 0x4f, 0x60, 0xff] {
                let mut p = vec![0xffu8; len];
                if let Some(b) = p.first_mut() {
                    *b = first;
                }
                let _ = ip_addresses(&p);
            }
        }
    }
}
