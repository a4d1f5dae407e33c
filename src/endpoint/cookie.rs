//! SYN cookies: a listener's stateless answer to SYNs once its half-open table is full
//! (RFC 4987 section 3.6; Linux's `tcp_syncookies=1`), made to carry MPTCP v1 too.
//!
//! Contract:
//! - Nothing is stored per SYN. The SYN/ACK's initial sequence number is the cookie; the third
//!   ACK brings it back as `ack - 1`, and the client's ISN as `seq - 1`. [`CookieSecret::check`]
//!   recomputes everything the SYN told us from those two numbers and the 4-tuple, or fails.
//! - ISN layout (bit 0 the least significant), see the constants below: bits 0-2 the index of
//!   the SYN's MSS in [`MSS_TABLE`] (rounded down); bit 3 the SYN/ACK carried MP_CAPABLE; bit 4
//!   the SYN asked for DSS checksums (MP_CAPABLE's A flag); bits 5-7 the low bits of the time
//!   counter (`now / COOKIE_PERIOD_MS`); bits 8-31 a 24-bit MAC, the first bytes of
//!   HMAC-SHA256(secret, label || local address and port || remote address and port || client
//!   ISN || whole counter || the ISN's low byte).
//! - The same HMAC's following bytes give the connection's timestamp offset and the server's
//!   MPTCP key, so both are reproducible from the third ACK alone: RFC 8684 section 3.1 makes
//!   the client echo the server's key on the third ACK, and the endpoint checks that echo
//!   against the derived key before it creates anything.
//! - With timestamps (the SYN had them and the endpoint uses them) the SYN/ACK's TSval carries
//!   the SYN's window scale (4 bits, [`WSCALE_NONE`] for none) and SACK-permitted (1 bit) in
//!   its low [`TS_BITS_MASK`] bits, and the third ACK's TSecr brings them back, as Linux does.
//!   The TSval is moved down, never up, to make room, so later TSvals of the connection never
//!   go backwards. Without timestamps a cookie SYN/ACK offers neither window scaling nor SACK.
//! - A cookie verifies in the period it was made in and the next one: 64 to 128 s.
//!   A blind forgery succeeds with probability 2^-24 per third ACK.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::crypto::hmac_sha256;
use crate::node::Instant;
use crate::seq::TcpSeq;

/// Length of one period of the cookies' time counter, in milliseconds.
pub const COOKIE_PERIOD_MS: i64 = 64_000;

/// How many periods a cookie verifies in: the one it was made in and the next.
pub const COOKIE_PERIODS: u32 = 2;

/// The MSS values a cookie can carry: the SYN's MSS is rounded down to one of them (536, the
/// default of RFC 9293 section 3.7.1, when it is smaller or absent).
pub const MSS_TABLE: [u16; 8] = [536, 1200, 1220, 1280, 1360, 1400, 1440, 1460];

/// ISN bits 0-2: index into [`MSS_TABLE`].
const MSS_MASK: u32 = 0x07;
/// ISN bit 3: the SYN/ACK carried MP_CAPABLE (MPTCP was offered and accepted).
const MPTCP_BIT: u32 = 1 << 3;
/// ISN bit 4: the SYN asked for DSS checksums.
const CHECKSUM_BIT: u32 = 1 << 4;
/// ISN bits 5-7: the low bits of the time counter.
const COUNTER_SHIFT: u32 = 5;
const COUNTER_MASK: u32 = 0x07;
/// ISN bits 8-31: the MAC.
const MAC_SHIFT: u32 = 8;
/// Bytes of the HMAC output used as the MAC (24 bits).
const MAC_LEN: usize = 3;
/// HMAC output bytes 3..7: the timestamp offset.
const TS_OFFSET_AT: usize = MAC_LEN;
/// HMAC output bytes 7..15: the server's MPTCP key.
const KEY_AT: usize = TS_OFFSET_AT + 4;

/// The low TSval bits a cookie SYN/ACK gives to options.
pub const TS_BITS_MASK: u32 = 0x1f;
/// TSval bits 0-3: the SYN's window scale (at most 14), or [`WSCALE_NONE`].
const TS_WSCALE_MASK: u32 = 0x0f;
/// The window-scale value that means "the SYN offered none".
pub const WSCALE_NONE: u32 = 0x0f;
/// TSval bit 4: the SYN offered SACK.
const TS_SACK_BIT: u32 = 0x10;

/// Domain separation of the cookie HMAC.
const LABEL: &[u8] = b"mptcp-stack SYN cookie v1";
/// The longest HMAC message: label, two IPv6 endpoints (family byte, 16, 2), ISN, counter,
/// low byte.
const MAX_MESSAGE: usize = LABEL.len() + 2 * (1 + 16 + 2) + 4 + 4 + 1;

/// What a cookie remembers of its SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynParams {
    /// Index of the SYN's MSS, rounded down, in [`MSS_TABLE`].
    pub mss_index: u8,
    /// The SYN/ACK carried MP_CAPABLE.
    pub mptcp: bool,
    /// The SYN's MP_CAPABLE asked for DSS checksums.
    pub checksum: bool,
}

impl SynParams {
    /// The MSS the cookie carries.
    pub fn mss(&self) -> u16 {
        MSS_TABLE[usize::from(self.mss_index) & MSS_MASK as usize]
    }
}

/// What the cookie's HMAC gives besides the MAC: the same for the SYN/ACK and the third ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Derived {
    /// The connection's timestamp offset.
    pub ts_offset: u32,
    /// The server's MPTCP key.
    pub key: u64,
}

/// The endpoint's cookie secret (32 bytes from its random generator). Cookies are
/// time-sliced: the counter enters the HMAC, so one period's cookies are useless two
/// periods later.
#[derive(Clone)]
pub struct CookieSecret([u8; 32]);

impl fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieSecret(..)")
    }
}

/// The time counter at `now`.
pub fn counter_at(now: Instant) -> u32 {
    (now.total_millis().max(0) / COOKIE_PERIOD_MS) as u32
}

/// The index of the largest [`MSS_TABLE`] entry not above `mss` (0 when all are).
pub fn mss_index(mss: Option<u16>) -> u8 {
    let mss = mss.unwrap_or(MSS_TABLE[0]);
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u8
}

/// The TSval bits for a SYN's window scale and SACK-permitted.
pub fn ts_bits(window_scale: Option<u8>, sack: bool) -> u32 {
    // RFC 7323 section 2.3: a shift above 14 is taken as 14, so 15 is free to mean "none".
    let ws = window_scale.map_or(WSCALE_NONE, |s| u32::from(s.min(14)));
    ws | if sack { TS_SACK_BIT } else { 0 }
}

/// The window scale and SACK-permitted of the SYN, from the third ACK's TSecr.
pub fn decode_ts_bits(tsecr: u32) -> (Option<u8>, bool) {
    let ws = tsecr & TS_WSCALE_MASK;
    let ws = (ws != WSCALE_NONE).then_some(ws as u8);
    (ws, tsecr & TS_SACK_BIT != 0)
}

/// The timestamp offset for the cookie SYN/ACK sent at `now_ms` (milliseconds, as the TCP
/// engine's clock): the connection's own offset moved down by less than 32 so that the TSval
/// ends in `bits`. The connection's later TSvals (with the unmoved offset) are never smaller.
pub fn synack_ts_offset(offset: u32, now_ms: u32, bits: u32) -> u32 {
    let tsval = now_ms.wrapping_add(offset);
    let down = tsval.wrapping_sub(bits) & TS_BITS_MASK;
    offset.wrapping_sub(down)
}

fn put_endpoint(msg: &mut [u8; MAX_MESSAGE], at: &mut usize, a: SocketAddr) {
    let mut put = |bytes: &[u8]| {
        msg[*at..*at + bytes.len()].copy_from_slice(bytes);
        *at += bytes.len();
    };
    match a.ip() {
        IpAddr::V4(v4) => {
            put(&[4]);
            put(&v4.octets());
        }
        IpAddr::V6(v6) => {
            put(&[6]);
            put(&v6.octets());
        }
    }
    put(&a.port().to_be_bytes());
}

impl CookieSecret {
    /// A secret from 32 random bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        CookieSecret(bytes)
    }

    fn hmac(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        client_isn: TcpSeq,
        counter: u32,
        low: u8,
    ) -> [u8; 32] {
        let mut msg = [0u8; MAX_MESSAGE];
        msg[..LABEL.len()].copy_from_slice(LABEL);
        let mut at = LABEL.len();
        put_endpoint(&mut msg, &mut at, local);
        put_endpoint(&mut msg, &mut at, remote);
        for bytes in [client_isn.0.to_be_bytes(), counter.to_be_bytes()] {
            msg[at..at + 4].copy_from_slice(&bytes);
            at += 4;
        }
        msg[at] = low;
        at += 1;
        hmac_sha256(&self.0, &msg[..at])
    }

    fn derived(h: &[u8; 32]) -> Derived {
        let mut ts = [0u8; 4];
        ts.copy_from_slice(&h[TS_OFFSET_AT..TS_OFFSET_AT + 4]);
        let mut key = [0u8; 8];
        key.copy_from_slice(&h[KEY_AT..KEY_AT + 8]);
        Derived {
            ts_offset: u32::from_be_bytes(ts),
            key: u64::from_be_bytes(key),
        }
    }

    fn mac(h: &[u8; 32]) -> u32 {
        h[..MAC_LEN]
            .iter()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
    }

    /// The cookie (the SYN/ACK's ISN) for a SYN from `remote` to `local` with sequence number
    /// `client_isn`, at time counter `counter`, and what it derives.
    pub fn make(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        client_isn: TcpSeq,
        counter: u32,
        params: SynParams,
    ) -> (TcpSeq, Derived) {
        let mut low = u32::from(params.mss_index) & MSS_MASK;
        if params.mptcp {
            low |= MPTCP_BIT;
        }
        if params.checksum {
            low |= CHECKSUM_BIT;
        }
        low |= (counter & COUNTER_MASK) << COUNTER_SHIFT;
        let h = self.hmac(local, remote, client_isn, counter, low as u8);
        let isn = (Self::mac(&h) << MAC_SHIFT) | low;
        (TcpSeq(isn), Self::derived(&h))
    }

    /// Verify the cookie `isn` (the third ACK's `ack - 1`) for `client_isn` (its `seq - 1`) at
    /// time counter `counter_now`: what the SYN told, or `None` for a forged, corrupted or
    /// expired cookie.
    pub fn check(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        client_isn: TcpSeq,
        isn: TcpSeq,
        counter_now: u32,
    ) -> Option<(SynParams, Derived)> {
        let low = isn.0 & 0xff;
        let made = (low >> COUNTER_SHIFT) & COUNTER_MASK;
        let counter = (0..COOKIE_PERIODS)
            .map(|age| counter_now.wrapping_sub(age))
            .find(|c| c & COUNTER_MASK == made)?;
        let h = self.hmac(local, remote, client_isn, counter, low as u8);
        // Compare without an early exit (the MAC is short, but there is no reason to leak).
        if (Self::mac(&h) ^ (isn.0 >> MAC_SHIFT)) != 0 {
            return None;
        }
        let params = SynParams {
            mss_index: (low & MSS_MASK) as u8,
            mptcp: low & MPTCP_BIT != 0,
            checksum: low & CHECKSUM_BIT != 0,
        };
        Some((params, Self::derived(&h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn tuple() -> (SocketAddr, SocketAddr) {
        (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2)), 5201),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 101, 1)), 40000),
        )
    }

    #[test]
    fn a_cookie_verifies_for_its_tuple_and_isn_in_its_period_and_the_next_only() {
        let s = CookieSecret::new([7; 32]);
        let (l, r) = tuple();
        let p = SynParams {
            mss_index: 6,
            mptcp: true,
            checksum: true,
        };
        let (isn, d) = s.make(l, r, TcpSeq(1234), 10, p);
        assert_eq!(s.check(l, r, TcpSeq(1234), isn, 10), Some((p, d)));
        assert_eq!(s.check(l, r, TcpSeq(1234), isn, 11), Some((p, d)));
        assert_eq!(s.check(l, r, TcpSeq(1234), isn, 12), None, "expired");
        assert_eq!(s.check(l, r, TcpSeq(1235), isn, 10), None, "other ISN");
        assert_eq!(s.check(r, l, TcpSeq(1234), isn, 10), None, "other tuple");
        assert_eq!(
            CookieSecret::new([8; 32]).check(l, r, TcpSeq(1234), isn, 10),
            None,
            "other secret"
        );
        // Every single flipped bit is caught: the low byte is under the MAC too.
        for bit in 0..32 {
            let forged = TcpSeq(isn.0 ^ (1 << bit));
            assert_eq!(s.check(l, r, TcpSeq(1234), forged, 10), None, "bit {bit}");
        }
    }

    #[test]
    fn the_key_and_timestamp_offset_are_reproducible_and_differ_per_connection() {
        let s = CookieSecret::new([1; 32]);
        let (l, r) = tuple();
        let p = SynParams {
            mss_index: 0,
            mptcp: true,
            checksum: false,
        };
        let (_, a) = s.make(l, r, TcpSeq(1), 3, p);
        let (_, b) = s.make(l, r, TcpSeq(2), 3, p);
        assert_eq!(a, s.make(l, r, TcpSeq(1), 3, p).1);
        assert_ne!(a.key, b.key);
        assert_ne!(a.ts_offset, b.ts_offset);
    }

    #[test]
    fn mss_rounds_down_to_the_table_and_timestamp_bits_round_trip() {
        assert_eq!(MSS_TABLE[usize::from(mss_index(Some(1460)))], 1460);
        assert_eq!(MSS_TABLE[usize::from(mss_index(Some(1459)))], 1440);
        assert_eq!(MSS_TABLE[usize::from(mss_index(Some(9000)))], 1460);
        assert_eq!(mss_index(Some(100)), 0);
        assert_eq!(mss_index(None), 0);
        for ws in [None, Some(0), Some(7), Some(14), Some(15), Some(255)] {
            for sack in [false, true] {
                let (w, s) = decode_ts_bits(ts_bits(ws, sack) | 0xabc0_0000);
                assert_eq!(w, ws.map(|x| x.min(14)));
                assert_eq!(s, sack);
            }
        }
    }

    #[test]
    fn the_synack_tsval_carries_the_bits_and_never_runs_ahead_of_the_connection() {
        for now in [0u32, 1, 31, 32, 1000, u32::MAX] {
            for offset in [0u32, 5, 0xffff_fff0] {
                for bits in [0, 0x0f, 0x1f, 0x17] {
                    let o = synack_ts_offset(offset, now, bits);
                    let tsval = now.wrapping_add(o);
                    assert_eq!(tsval & TS_BITS_MASK, bits);
                    let later = now.wrapping_add(offset);
                    let ahead = tsval.wrapping_sub(later) as i32;
                    assert!((-31..=0).contains(&ahead), "{now} {offset} {bits}");
                }
            }
        }
    }
}
