//! MPTCP's cryptography (RFC 8684 sections 3.1, 3.2, 3.3.1, 3.4.1), pure functions.
//!
//! Contract: keys, nonces, addresses and ports enter every hash big-endian, as they are on the
//! wire; outputs are as the option fields carry them. HMAC is HMAC-SHA256 (the only algorithm of
//! MPTCP v1, flag H). The DSS checksum is the ones'-complement sum of RFC 1071 over a
//! pseudo-header and the mapped data, computable incrementally across segments.

use core::net::IpAddr;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use smoltcp::wire::checksum;

use crate::seq::{Dsn, Ssn};

type HmacSha256 = Hmac<Sha256>;

/// Length of the MP_JOIN third-ACK HMAC: the leftmost 160 bits (RFC 8684 section 3.2).
pub const JOIN_ACK_HMAC_LEN: usize = 20;

/// A 64-bit MPTCP key with the token and IDSN derived from it (RFC 8684 section 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyMaterial {
    /// The key, as sent in MP_CAPABLE.
    pub key: u64,
    /// The token: the most significant 32 bits of SHA-256(key).
    pub token: u32,
    /// The initial data sequence number: the least significant 64 bits of SHA-256(key).
    pub idsn: Dsn,
}

impl KeyMaterial {
    /// Derive token and IDSN from a key.
    pub fn from_key(key: u64) -> Self {
        let digest = Sha256::digest(key.to_be_bytes());
        let mut token = [0u8; 4];
        token.copy_from_slice(&digest[..4]);
        let mut idsn = [0u8; 8];
        idsn.copy_from_slice(&digest[24..32]);
        KeyMaterial {
            key,
            token: u32::from_be_bytes(token),
            idsn: Dsn(u64::from_be_bytes(idsn)),
        }
    }
}

/// HMAC-SHA256 keyed by `key_1 || key_2` (each 64-bit key big-endian) over `message`.
fn hmac_two_keys(key_1: u64, key_2: u64, message: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&key_1.to_be_bytes());
    key[8..].copy_from_slice(&key_2.to_be_bytes());
    hmac_sha256(&key, message)
}

/// HMAC-SHA256 (RFC 2104 over SHA-256).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length: new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(message);
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// The MP_JOIN HMAC that `sender` computes: HMAC(key_sender || key_receiver,
/// R_sender || R_receiver) (RFC 8684 section 3.2).
pub fn join_hmac(
    sender_key: u64,
    receiver_key: u64,
    sender_nonce: u32,
    receiver_nonce: u32,
) -> [u8; 32] {
    let mut message = [0u8; 8];
    message[..4].copy_from_slice(&sender_nonce.to_be_bytes());
    message[4..].copy_from_slice(&receiver_nonce.to_be_bytes());
    hmac_two_keys(sender_key, receiver_key, &message)
}

/// The truncated HMAC of an MP_JOIN SYN/ACK: the leftmost 64 bits of [`join_hmac`] computed by
/// the responder (B) with key_B || key_A over R_B || R_A.
pub fn join_synack_hmac(
    sender_key: u64,
    receiver_key: u64,
    sender_nonce: u32,
    receiver_nonce: u32,
) -> u64 {
    let full = join_hmac(sender_key, receiver_key, sender_nonce, receiver_nonce);
    let mut left = [0u8; 8];
    left.copy_from_slice(&full[..8]);
    u64::from_be_bytes(left)
}

/// The HMAC of an MP_JOIN third ACK: the leftmost 160 bits of [`join_hmac`] computed by the
/// initiator (A) with key_A || key_B over R_A || R_B.
pub fn join_ack_hmac(
    sender_key: u64,
    receiver_key: u64,
    sender_nonce: u32,
    receiver_nonce: u32,
) -> [u8; JOIN_ACK_HMAC_LEN] {
    let full = join_hmac(sender_key, receiver_key, sender_nonce, receiver_nonce);
    let mut left = [0u8; JOIN_ACK_HMAC_LEN];
    left.copy_from_slice(&full[..JOIN_ACK_HMAC_LEN]);
    left
}

/// The truncated HMAC of an ADD_ADDR (RFC 8684 section 3.4.1): the rightmost 64 bits of
/// HMAC(key_sender || key_receiver, address id || address || port). As Linux does, a missing
/// port enters the message as two zero bytes.
pub fn add_addr_hmac(
    sender_key: u64,
    receiver_key: u64,
    addr_id: u8,
    addr: IpAddr,
    port: Option<u16>,
) -> u64 {
    let mut message = [0u8; 1 + 16 + 2];
    message[0] = addr_id;
    let addr_len = match addr {
        IpAddr::V4(a) => {
            message[1..5].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            message[1..17].copy_from_slice(&a.octets());
            16
        }
    };
    let end = 1 + addr_len;
    message[end..end + 2].copy_from_slice(&port.unwrap_or(0).to_be_bytes());
    let full = hmac_two_keys(sender_key, receiver_key, &message[..end + 2]);
    let mut right = [0u8; 8];
    right.copy_from_slice(&full[24..]);
    u64::from_be_bytes(right)
}

/// An incremental DSS checksum (RFC 8684 section 3.3.1) over one mapping.
///
/// The sum covers a pseudo-header — the 64-bit DSN, the 32-bit relative subflow sequence
/// number, the 16-bit data-level length and a 16-bit zero — followed by the mapping's data,
/// which may arrive in several segments of any length (odd lengths included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DssChecksum {
    sum: u32,
    odd: bool,
}

impl DssChecksum {
    /// Start a checksum for the mapping `dsn`, `ssn`, `data_len`.
    pub fn new(dsn: Dsn, ssn: Ssn, data_len: u16) -> Self {
        let mut header = [0u8; 16];
        header[..8].copy_from_slice(&dsn.0.to_be_bytes());
        header[8..12].copy_from_slice(&ssn.0.to_be_bytes());
        header[12..14].copy_from_slice(&data_len.to_be_bytes());
        // header[14..16] is the checksum field, zero for the computation.
        let mut csum = DssChecksum { sum: 0, odd: false };
        csum.update(&header);
        csum
    }

    /// Add the next bytes of the mapping's data.
    pub fn update(&mut self, data: &[u8]) {
        let mut partial = checksum::data(data);
        // After an odd number of bytes, this chunk's words are offset by one byte: RFC 1071
        // section 2(B), the sum of byte-swapped words is the byte-swapped sum.
        if self.odd {
            partial = partial.swap_bytes();
        }
        self.sum += u32::from(partial);
        self.sum = (self.sum & 0xffff) + (self.sum >> 16);
        self.odd ^= data.len() % 2 == 1;
    }

    /// The folded sum so far, not complemented.
    fn folded(&self) -> u16 {
        let s = (self.sum & 0xffff) + (self.sum >> 16);
        ((s & 0xffff) + (s >> 16)) as u16
    }

    /// The value for the DSS checksum field.
    pub fn finish(&self) -> u16 {
        !self.folded()
    }

    /// Whether `received` is the right checksum for the data added.
    pub fn verify(&self, received: u16) -> bool {
        checksum::combine(&[self.folded(), received]) == 0xffff
    }
}

/// The DSS checksum of a whole mapping in one call.
pub fn dss_checksum(dsn: Dsn, ssn: Ssn, data_len: u16, data: &[u8]) -> u16 {
    let mut csum = DssChecksum::new(dsn, ssn, data_len);
    csum.update(data);
    csum.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    // Known-answer vectors from a Linux 6.18 capture (DESIGN.md).
    const KEY_A: u64 = 3421148325360939111;
    const KEY_B: u64 = 5635572232819622505;
    const R_A: u32 = 3707908260;
    const R_B: u32 = 2797959415;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn token_and_idsn_are_the_halves_of_sha256_of_the_key() {
        let b = KeyMaterial::from_key(KEY_B);
        assert_eq!(b.token, 3930164145);
        assert_eq!(b.idsn, Dsn(16149194546286481195));
        let a = KeyMaterial::from_key(KEY_A);
        assert_eq!(a.token, 102899348);
        assert_eq!(a.idsn, Dsn(1035187708960620701));
    }

    #[test]
    fn mp_join_synack_carries_the_leftmost_64_bits_of_the_responders_hmac() {
        assert_eq!(
            join_synack_hmac(KEY_B, KEY_A, R_B, R_A),
            1539013516496958394
        );
    }

    #[test]
    fn mp_join_ack_carries_the_leftmost_160_bits_of_the_initiators_hmac() {
        assert_eq!(
            hex(&join_ack_hmac(KEY_A, KEY_B, R_A, R_B)),
            "1b4b45d27a173e686b34296214168e490add799b"
        );
    }

    #[test]
    fn add_addr_hmac_is_the_rightmost_64_bits_with_a_zero_port_when_none() {
        let addr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2));
        assert_eq!(
            add_addr_hmac(KEY_B, KEY_A, 1, addr, None),
            41622275684094792
        );
        // Linux hashes a missing port as two zero bytes, so port 0 gives the same HMAC.
        assert_eq!(
            add_addr_hmac(KEY_B, KEY_A, 1, addr, Some(0)),
            41622275684094792
        );
        assert_ne!(
            add_addr_hmac(KEY_B, KEY_A, 1, addr, Some(80)),
            41622275684094792
        );
        assert_ne!(
            add_addr_hmac(KEY_A, KEY_B, 1, addr, None),
            41622275684094792
        );
    }

    #[test]
    fn join_hmac_matches_the_kernel_kunit_vector() {
        // Linux's net/mptcp/crypto_test.c reads its key and message strings as raw ASCII bytes:
        // key1 || key2 = "0b0b0b0b" "0b0b0b0b", nonce1 || nonce2 = "4869" "2054" (not hex).
        let key = u64::from_be_bytes(*b"0b0b0b0b");
        let nonce_1 = u32::from_be_bytes(*b"4869");
        let nonce_2 = u32::from_be_bytes(*b"2054");
        let expected = "8385e24fb4235ac37556b6b886db106284a1da671699f46db1f235ec622dcafa";
        assert_eq!(hex(&join_hmac(key, key, nonce_1, nonce_2)), expected);
        assert_eq!(
            hex(&hmac_sha256(b"0b0b0b0b0b0b0b0b", b"48692054")),
            expected
        );
    }

    /// A deliberately naive RFC 1071 sum, to check the incremental one against.
    fn naive_dss_checksum(dsn: u64, ssn: u32, len: u16, data: &[u8]) -> u16 {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&dsn.to_be_bytes());
        bytes.extend_from_slice(&ssn.to_be_bytes());
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(data);
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        let mut sum: u64 = 0;
        for w in bytes.chunks(2) {
            sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn dss_checksum_matches_a_naive_rfc1071_sum_and_verifies() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i % 251) as u8).collect();
        let dsn = Dsn(0xfedc_ba98_7654_3210);
        let csum = dss_checksum(dsn, Ssn(1), 1001, &data);
        assert_eq!(csum, naive_dss_checksum(dsn.0, 1, 1001, &data));
        let mut check = DssChecksum::new(dsn, Ssn(1), 1001);
        check.update(&data);
        assert!(check.verify(csum));
        assert!(!check.verify(csum ^ 1));
    }

    #[test]
    fn dss_checksum_is_the_same_whatever_the_segment_boundaries() {
        let data: Vec<u8> = (0..777u32).map(|i| (i * 7 % 256) as u8).collect();
        let whole = dss_checksum(Dsn(42), Ssn(9), 777, &data);
        for cuts in [[1, 2], [3, 400], [333, 334], [0, 777], [5, 6]] {
            let mut c = DssChecksum::new(Dsn(42), Ssn(9), 777);
            c.update(&data[..cuts[0]]);
            c.update(&data[cuts[0]..cuts[1]]);
            c.update(&data[cuts[1]..]);
            assert_eq!(c.finish(), whole, "cut at {cuts:?}");
        }
    }

    #[test]
    fn a_corrupted_byte_fails_the_dss_checksum() {
        let mut data = vec![0x5au8; 1400];
        let csum = dss_checksum(Dsn(1), Ssn(1), 1400, &data);
        data[700] ^= 0x10;
        let mut c = DssChecksum::new(Dsn(1), Ssn(1), 1400);
        c.update(&data);
        assert!(!c.verify(csum));
    }
}
