//! An optional point in time in eight bytes, and an optional short duration in four.
//!
//! Contract: [`Deadline`] holds either nothing or an [`Instant`] (microseconds), like
//! `Option<Instant>` but half its size: unset is the largest instant, so the earliest of
//! several deadlines is a plain minimum and an unset one never expires. An instant at the very
//! end of time (292,000 years) is kept one microsecond earlier. Per-subflow state has seven of
//! these. [`ShortDuration`] holds nothing or a duration in microseconds up to 71 minutes
//! (longer ones saturate there), like `Option<Duration>` at a quarter of its size: for RTTs and
//! timer caps, which never come near that bound.

use core::fmt;

use smoltcp::time::{Duration, Instant};

/// An optional point in time (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(i64);

/// The representation of "not set".
const UNSET: i64 = i64::MAX;

impl Deadline {
    /// No deadline.
    pub const NONE: Deadline = Deadline(UNSET);

    /// A deadline at `at`.
    pub fn at(at: Instant) -> Self {
        Deadline(at.total_micros().min(UNSET - 1))
    }

    /// Set it to `at`.
    pub fn set(&mut self, at: Instant) {
        *self = Self::at(at);
    }

    /// Unset it.
    pub fn clear(&mut self) {
        *self = Self::NONE;
    }

    /// The instant, if set.
    pub fn get(self) -> Option<Instant> {
        (self.0 != UNSET).then(|| Instant::from_micros(self.0))
    }

    /// Whether it is set.
    pub fn is_set(self) -> bool {
        self.0 != UNSET
    }

    /// Whether it is set and not later than `now`.
    pub fn expired(self, now: Instant) -> bool {
        self.0 != UNSET && self.0 <= now.total_micros()
    }

    /// Take the instant out, leaving it unset.
    pub fn take(&mut self) -> Option<Instant> {
        let t = self.get();
        self.clear();
        t
    }
}

impl Default for Deadline {
    fn default() -> Self {
        Self::NONE
    }
}

impl From<Option<Instant>> for Deadline {
    fn from(t: Option<Instant>) -> Self {
        t.map_or(Self::NONE, Self::at)
    }
}

impl fmt::Debug for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

/// An optional duration of at most 71 minutes, in four bytes (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortDuration(u32);

impl ShortDuration {
    /// No duration.
    pub const NONE: ShortDuration = ShortDuration(u32::MAX);

    /// `d`, saturating at `u32::MAX - 1` microseconds.
    pub fn new(d: Duration) -> Self {
        ShortDuration(
            u32::try_from(d.total_micros()).map_or(u32::MAX - 1, |us| us.min(u32::MAX - 1)),
        )
    }

    /// The duration, if set.
    pub fn get(self) -> Option<Duration> {
        (self.0 != u32::MAX).then(|| Duration::from_micros(u64::from(self.0)))
    }
}

impl Default for ShortDuration {
    fn default() -> Self {
        Self::NONE
    }
}

impl From<Option<Duration>> for ShortDuration {
    fn from(d: Option<Duration>) -> Self {
        d.map_or(Self::NONE, Self::new)
    }
}

impl fmt::Debug for ShortDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_deadline_never_expires_and_sorts_last() {
        let d = Deadline::NONE;
        assert!(!d.is_set());
        assert!(!d.expired(Instant::from_micros(i64::MAX)));
        assert_eq!(d.get(), None);
        assert!(Deadline::at(Instant::from_secs(1)) < d);
    }

    #[test]
    fn a_set_deadline_expires_at_its_instant() {
        let mut d = Deadline::default();
        d.set(Instant::from_millis(5));
        assert!(d.is_set());
        assert!(!d.expired(Instant::from_micros(4_999)));
        assert!(d.expired(Instant::from_millis(5)));
        assert_eq!(d.take(), Some(Instant::from_millis(5)));
        assert_eq!(d, Deadline::NONE);
    }

    #[test]
    fn the_end_of_time_stays_a_deadline() {
        let d = Deadline::at(Instant::from_micros(i64::MAX));
        assert!(d.is_set());
        assert_eq!(d.get(), Some(Instant::from_micros(i64::MAX - 1)));
    }

    #[test]
    fn a_short_duration_round_trips_and_saturates_below_unset() {
        assert_eq!(ShortDuration::NONE.get(), None);
        assert_eq!(ShortDuration::default(), ShortDuration::NONE);
        let d = Duration::from_micros(12_345);
        assert_eq!(ShortDuration::new(d).get(), Some(d));
        assert_eq!(
            ShortDuration::from(Some(Duration::ZERO)).get(),
            Some(Duration::ZERO)
        );
        let long = ShortDuration::new(Duration::from_secs(10_000));
        assert_eq!(
            long.get(),
            Some(Duration::from_micros(u64::from(u32::MAX - 1)))
        );
        assert_eq!(core::mem::size_of::<ShortDuration>(), 4);
    }

    #[test]
    fn it_is_half_an_option_of_instant() {
        assert_eq!(core::mem::size_of::<Deadline>(), 8);
        assert_eq!(core::mem::size_of::<Option<Instant>>(), 16);
    }
}
