//! Round-trip time estimation and the retransmission timeout (RFC 6298).
//!
//! Contract: samples come from timestamps (RFC 7323, any segment) or from timing one segment
//! that was never retransmitted (Karn's algorithm: the engine does not offer other samples).
//! The RTO is clamped to `[min_rto, max_rto]`; Linux's 200 ms floor replaces RFC 6298's 1 s
//! (a documented deviation shared with every major stack). Backoff doubles per expiry.

use smoltcp::time::Duration;

/// RFC 6298 estimator.
#[derive(Debug, Clone, Copy)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    latest: Option<Duration>,
    min_rtt: Option<Duration>,
    rto: Duration,
    backoff: u32,
    min_rto: Duration,
    max_rto: Duration,
}

/// Clock granularity G of RFC 6298 section 2 (microsecond clock: 1 ms is conservative).
const GRANULARITY: Duration = Duration::from_millis(1);

impl RttEstimator {
    /// A fresh estimator: RTO starts at `initial` (RFC 6298 section 2.1: 1 s).
    pub fn new(initial: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            latest: None,
            min_rtt: None,
            rto: initial,
            backoff: 0,
            min_rto,
            max_rto,
        }
    }

    /// Feed one RTT sample.
    pub fn sample(&mut self, rtt: Duration) {
        let rtt = rtt.max(Duration::from_micros(1));
        self.latest = Some(rtt);
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        match self.srtt {
            None => {
                // RFC 6298 (2.2).
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                // RFC 6298 (2.3), alpha = 1/8, beta = 1/4.
                let diff = if srtt > rtt { srtt - rtt } else { rtt - srtt };
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        self.rto = (srtt + (self.rttvar * 4).max(GRANULARITY))
            .max(self.min_rto)
            .min(self.max_rto);
        self.backoff = 0;
    }

    /// The current RTO including backoff.
    pub fn rto(&self) -> Duration {
        let factor = 1u64 << self.backoff.min(16);
        Duration::from_micros(self.rto.total_micros().saturating_mul(factor)).min(self.max_rto)
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
        self.srtt
    }

    /// The latest sample.
    pub fn latest(&self) -> Option<Duration> {
        self.latest
    }

    /// The smallest sample seen.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// RTTVAR.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
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
}
