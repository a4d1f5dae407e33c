//! Round-trip time estimation and the retransmission timeout (RFC 6298).
//!
//! Contract: samples come from timestamps (RFC 7323, any segment) or from timing one segment
//! that was never retransmitted (Karn's algorithm: the engine does not offer other samples).
//! The RTO is clamped to `[min_rto, max_rto]`; Linux's 200 ms floor replaces RFC 6298's 1 s
//! (a documented deviation shared with every major stack). Backoff doubles per expiry.

use smoltcp::time::Duration;

/// RFC 6298 estimator. Times are kept in microseconds in 32 bits (up to 71 minutes, far
/// beyond any RTO ceiling; longer samples saturate), so that it costs 32 bytes per subflow.
#[derive(Debug, Clone, Copy)]
pub struct RttEstimator {
    /// SRTT; 0 before the first sample (samples are at least 1 us).
    srtt: u32,
    rttvar: u32,
    /// The latest sample; 0 before the first.
    latest: u32,
    /// The smallest sample; 0 before the first.
    min_rtt: u32,
    /// The RTO without backoff.
    rto: u32,
    backoff: u32,
    min_rto: u32,
    max_rto: u32,
}

/// Clock granularity G of RFC 6298 section 2 (microsecond clock: 1 ms is conservative).
const GRANULARITY_US: u32 = 1_000;

/// `d` in microseconds, saturating at `u32::MAX` (71 minutes).
fn micros(d: Duration) -> u32 {
    u32::try_from(d.total_micros()).unwrap_or(u32::MAX)
}

/// A sample field: `None` while 0.
fn sampled(us: u32) -> Option<Duration> {
    (us != 0).then(|| Duration::from_micros(u64::from(us)))
}

impl RttEstimator {
    /// A fresh estimator: RTO starts at `initial` (RFC 6298 section 2.1: 1 s).
    pub fn new(initial: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        RttEstimator {
            srtt: 0,
            rttvar: 0,
            latest: 0,
            min_rtt: 0,
            rto: micros(initial),
            backoff: 0,
            min_rto: micros(min_rto),
            max_rto: micros(max_rto),
        }
    }

    /// Feed one RTT sample.
    pub fn sample(&mut self, rtt: Duration) {
        let rtt = micros(rtt).max(1);
        self.latest = rtt;
        self.min_rtt = if self.min_rtt == 0 {
            rtt
        } else {
            self.min_rtt.min(rtt)
        };
        if self.srtt == 0 {
            // RFC 6298 (2.2).
            self.srtt = rtt;
            self.rttvar = rtt / 2;
        } else {
            // RFC 6298 (2.3), alpha = 1/8, beta = 1/4 (in 64 bits: no overflow).
            let (srtt, var, rtt) = (u64::from(self.srtt), u64::from(self.rttvar), u64::from(rtt));
            let narrow = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
            self.rttvar = narrow((var * 3 + srtt.abs_diff(rtt)) / 4);
            self.srtt = narrow((srtt * 7 + rtt) / 8).max(1);
        }
        let rto =
            u64::from(self.srtt) + u64::from(self.rttvar.saturating_mul(4).max(GRANULARITY_US));
        self.rto = u32::try_from(rto)
            .unwrap_or(u32::MAX)
            .max(self.min_rto)
            .min(self.max_rto);
        self.backoff = 0;
    }

    /// The current RTO including backoff.
    pub fn rto(&self) -> Duration {
        let factor = 1u64 << self.backoff.min(16);
        Duration::from_micros(
            u64::from(self.rto)
                .saturating_mul(factor)
                .min(u64::from(self.max_rto)),
        )
    }

    /// Double the RTO after an expiry (RFC 6298 section 5.5).
    pub fn back_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// Expiries since the last sample.
    pub fn backoff_count(&self) -> u32 {
        self.backoff
    }

    /// The smoothed RTT, or the initial RTO's guess before any sample.
    pub fn srtt(&self) -> Option<Duration> {
        sampled(self.srtt)
    }

    /// The latest sample.
    pub fn latest(&self) -> Option<Duration> {
        sampled(self.latest)
    }

    /// The smallest sample seen.
    pub fn min_rtt(&self) -> Option<Duration> {
        sampled(self.min_rtt)
    }

    /// RTTVAR.
    pub fn rttvar(&self) -> Duration {
        Duration::from_micros(u64::from(self.rttvar))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est() -> RttEstimator {
        RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn first_sample_sets_srtt_and_half_rttvar_then_smooths() {
        let mut e = est();
        assert_eq!(e.rto(), Duration::from_secs(1));
        e.sample(Duration::from_millis(100));
        assert_eq!(e.srtt(), Some(Duration::from_millis(100)));
        assert_eq!(e.rttvar(), Duration::from_millis(50));
        // RTO = 100 + 4 * 50 = 300 ms.
        assert_eq!(e.rto(), Duration::from_millis(300));
        e.sample(Duration::from_millis(200));
        // SRTT = 7/8 * 100 + 1/8 * 200 = 112.5 ms; RTTVAR = 3/4 * 50 + 1/4 * 100 = 62.5 ms.
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(e.rttvar(), Duration::from_micros(62_500));
    }

    #[test]
    fn rto_has_a_200_ms_floor_and_doubles_on_backoff_up_to_the_ceiling() {
        let mut e = est();
        e.sample(Duration::from_millis(1));
        assert_eq!(e.rto(), Duration::from_millis(200));
        e.back_off();
        e.back_off();
        assert_eq!(e.rto(), Duration::from_millis(800));
        for _ in 0..20 {
            e.back_off();
        }
        assert_eq!(e.rto(), Duration::from_secs(60));
        e.sample(Duration::from_millis(1));
        assert_eq!(
            e.rto(),
            Duration::from_millis(200),
            "a new sample clears the backoff"
        );
    }

    #[test]
    fn samples_beyond_71_minutes_saturate_instead_of_wrapping() {
        let mut e = est();
        e.sample(Duration::from_secs(10_000));
        assert_eq!(e.srtt(), Some(Duration::from_micros(u64::from(u32::MAX))));
        assert_eq!(e.rto(), Duration::from_secs(60), "the ceiling holds");
        e.sample(Duration::from_secs(10_000));
        assert_eq!(e.srtt(), Some(Duration::from_micros(u64::from(u32::MAX))));
        assert_eq!(core::mem::size_of::<RttEstimator>(), 32);
    }
}
