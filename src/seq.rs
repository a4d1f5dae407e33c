//! Sequence-number newtypes.
//!
//! Contract: every sequence space of the stack has its own type, so that a data sequence number
//! can never be added to a subflow sequence number by mistake. All arithmetic wraps, and ordering
//! is the serial-number ordering of RFC 1982 (`a < b` when `b - a`, taken modulo 2^n, is below
//! 2^(n-1)), which is how TCP and MPTCP compare sequence numbers.

use core::fmt;
use core::ops::{Add, Sub};

/// A connection-level data sequence number (RFC 8684 section 3.3): 64 bits, wrapping.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Dsn(pub u64);

/// A subflow-level sequence number relative to the subflow's initial sequence number, as carried
/// in a DSS mapping (RFC 8684 section 3.3.1): 32 bits, wrapping.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ssn(pub u32);

/// An absolute TCP sequence or acknowledgement number (RFC 9293): 32 bits, wrapping.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpSeq(pub u32);

macro_rules! serial_number {
    ($ty:ident, $int:ty, $signed:ty) => {
        impl $ty {
            /// The signed distance from `other` to `self` (positive when `self` is ahead).
            #[inline]
            pub fn distance_from(self, other: Self) -> $signed {
                self.0.wrapping_sub(other.0) as $signed
            }

            /// The larger of two sequence numbers in serial-number order.
            #[inline]
            pub fn max_seq(self, other: Self) -> Self {
                if self.distance_from(other) >= 0 {
                    self
                } else {
                    other
                }
            }

            /// The smaller of two sequence numbers in serial-number order.
            #[inline]
            pub fn min_seq(self, other: Self) -> Self {
                if self.distance_from(other) <= 0 {
                    self
                } else {
                    other
                }
            }
        }

        impl Add<$int> for $ty {
            type Output = Self;
            #[inline]
            fn add(self, rhs: $int) -> Self {
                Self(self.0.wrapping_add(rhs))
            }
        }

        impl Sub<$int> for $ty {
            type Output = Self;
            #[inline]
            fn sub(self, rhs: $int) -> Self {
                Self(self.0.wrapping_sub(rhs))
            }
        }

        impl PartialOrd for $ty {
            /// Serial-number order: numbers exactly half the space apart are unordered.
            fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
                let d = self.distance_from(*other);
                if d == <$signed>::MIN {
                    None
                } else {
                    Some(d.cmp(&0))
                }
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "({})"), self.0)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

serial_number!(Dsn, u64, i64);
serial_number!(Ssn, u32, i32);
serial_number!(TcpSeq, u32, i32);

impl Dsn {
    /// The lower 32 bits, as sent in a 4-byte DSN or DATA_ACK field.
    #[inline]
    pub fn low32(self) -> u32 {
        self.0 as u32
    }

    /// Expand a 32-bit DSN or DATA_ACK to the 64-bit value nearest to `reference`.
    ///
    /// RFC 8684 section 3.3: an implementation that receives 4-byte sequence numbers "MUST
    /// infer" the upper 32 bits. The candidate chosen is the one within 2^31 of the reference
    /// (typically the next expected DSN, or the highest DATA_ACK sent), so wrap-around of the
    /// lower half in either direction is handled.
    pub fn expand_low32(low: u32, reference: Dsn) -> Dsn {
        let delta = low.wrapping_sub(reference.low32()) as i32;
        Dsn(reference.0.wrapping_add(delta as i64 as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_wraps_around_the_sequence_space() {
        assert!(Ssn(u32::MAX) < Ssn(0));
        assert!(Ssn(5) > Ssn(u32::MAX - 5));
        assert!(Dsn(u64::MAX - 1) < Dsn(3));
        assert_eq!(Ssn(0).partial_cmp(&Ssn(1 << 31)), None);
        assert_eq!(Ssn(u32::MAX) + 2, Ssn(1));
        assert_eq!(Ssn(1).distance_from(Ssn(u32::MAX)), 2);
        assert_eq!(Dsn(10).max_seq(Dsn(u64::MAX)), Dsn(10));
        assert_eq!(Dsn(10).min_seq(Dsn(u64::MAX)), Dsn(u64::MAX));
    }

    #[test]
    fn a_32_bit_dsn_expands_to_the_value_nearest_the_reference() {
        let reference = Dsn(0x0000_0005_ffff_fff0);
        // Just past the 32-bit wrap: the upper half is incremented.
        assert_eq!(
            Dsn::expand_low32(0x10, reference),
            Dsn(0x0000_0006_0000_0010)
        );
        // Slightly behind the reference: same upper half.
        assert_eq!(
            Dsn::expand_low32(0xffff_ff00, reference),
            Dsn(0x0000_0005_ffff_ff00)
        );
        // Behind the reference across a wrap: the upper half is decremented.
        let reference = Dsn(0x0000_0006_0000_0010);
        assert_eq!(
            Dsn::expand_low32(0xffff_fff0, reference),
            Dsn(0x0000_0005_ffff_fff0)
        );
        // At the bottom of the whole space the expansion wraps too.
        assert_eq!(Dsn::expand_low32(0xffff_ffff, Dsn(1)), Dsn(u64::MAX));
    }
}
