//! Congestion control behind a trait: Reno (RFC 5681), CUBIC (RFC 9438), and the coupled LIA
//! (RFC 6356) and OLIA of [`super::coupled`].
//!
//! Contract: a controller owns the congestion window and slow-start threshold of one subflow,
//! in bytes. The TCP engine reports acknowledged bytes, congestion events (fast retransmit,
//! ECN later) and retransmission timeouts, and reads `window()` before sending. Controllers are
//! pure: time comes in as `now`, nothing else is read. Coupled controllers (LIA, OLIA) plug in
//! through the same trait with no shared state: they describe themselves in a
//! [`PathSample`] ([`CongestionControl::path_sample`]) and take a [`Coupling`] computed from
//! the samples of all subflows ([`CongestionControl::set_coupling`]); see [`super::coupled`].

use smoltcp::time::{Duration, Instant};

use crate::deadline::{Deadline, ShortDuration};

use super::coupled::{Coupling, Lia, Olia, PathSample};

/// What the engine tells a controller about an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckSample {
    /// Bytes newly acknowledged (cumulatively or selectively).
    pub acked: usize,
    /// Bytes in flight before this acknowledgement.
    pub in_flight: usize,
    /// The latest RTT sample, if this ACK produced one.
    pub rtt: Option<Duration>,
    /// The smoothed RTT.
    pub srtt: Duration,
}

/// A per-subflow congestion controller.
pub trait CongestionControl: core::fmt::Debug + Send {
    /// The congestion window in bytes.
    fn window(&self) -> usize;
    /// The slow-start threshold in bytes.
    fn ssthresh(&self) -> usize;
    /// New data was acknowledged outside loss recovery.
    fn on_ack(&mut self, now: Instant, sample: &AckSample);
    /// Loss detected by duplicate ACKs or SACK: enter recovery (called once per episode).
    fn on_congestion_event(&mut self, now: Instant, in_flight: usize);
    /// Loss recovery ended (the recovery point was acknowledged).
    fn on_recovery_end(&mut self, now: Instant);
    /// The retransmission timer expired.
    fn on_rto(&mut self, now: Instant, in_flight: usize);
    /// The sender's MSS changed.
    fn set_mss(&mut self, mss: usize);
    /// A short name for statistics.
    fn name(&self) -> &'static str;

    /// A snapshot for [`super::coupled::couple`]; the engine supplies its MSS and smoothed RTT.
    /// The default reports the window and no loss history.
    fn path_sample(&self, mss: usize, srtt: Option<Duration>) -> PathSample {
        PathSample::new(self.window(), mss, srtt)
    }
    /// Takes this subflow's coupling with its siblings. Uncoupled controllers ignore it.
    fn set_coupling(&mut self, _coupling: &Coupling) {}
    /// The MPTCP layer penalises this subflow (it holds back the connection-level window):
    /// reduce the window once. The default treats it as a congestion event with a full window,
    /// which for Reno is `ssthresh = max(cwnd / 2, 2 * MSS)`, `cwnd = ssthresh`.
    fn on_penalty(&mut self, now: Instant) {
        let cwnd = self.window();
        self.on_congestion_event(now, cwnd);
    }
}

/// Which controller a subflow uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CcAlgorithm {
    /// Reno (RFC 5681).
    Reno,
    /// CUBIC (RFC 9438), Linux's default.
    #[default]
    Cubic,
    /// LIA, the Linked Increases Algorithm (RFC 6356), coupled across MPTCP subflows.
    Lia,
    /// OLIA, the Opportunistic Linked Increases Algorithm, coupled across MPTCP subflows.
    Olia,
}

impl CcAlgorithm {
    /// A controller of this kind for the given MSS.
    pub fn build(self, mss: usize) -> Box<dyn CongestionControl> {
        match self {
            CcAlgorithm::Reno => Box::new(Reno::new(mss)),
            CcAlgorithm::Cubic => Box::new(Cubic::new(mss)),
            CcAlgorithm::Lia => Box::new(Lia::new(mss)),
            CcAlgorithm::Olia => Box::new(Olia::new(mss)),
        }
    }
}

/// HyStart (the delay-based exit from slow start of RFC 9406, HyStart++): when the smallest
/// RTT seen in a round of slow start exceeds the previous round's by more than
/// max(4 ms, min(16 ms, that RTT / 8)), the queue is filling and slow start ends there
/// (ssthresh = cwnd), before it overshoots the path by a whole window. As Linux's HyStart,
/// it ends slow start at once rather than through RFC 9406's conservative slow start, and only
/// from 16 segments on. A round is a window's worth of acknowledged bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HyStart {
    /// Bytes left in the round (saturating at 4 GiB: a round is a window).
    round_left: u32,
    last_round_min: ShortDuration,
    round_min: ShortDuration,
    samples: u32,
}

/// RFC 9406: RTT samples a round needs before it is compared.
pub const HYSTART_MIN_SAMPLES: u32 = 8;
/// RFC 9406: the smallest and largest RTT increase that ends slow start.
pub const HYSTART_MIN_THRESH: Duration = Duration::from_millis(4);
/// See [`HYSTART_MIN_THRESH`].
pub const HYSTART_MAX_THRESH: Duration = Duration::from_millis(16);
/// Linux's `hystart_low_window`: below this many segments slow start runs on.
pub const HYSTART_LOW_WINDOW: usize = 16;

impl HyStart {
    /// An acknowledgement in slow start with the window at `cwnd`: whether slow start should
    /// end now.
    pub fn on_ack(&mut self, s: &AckSample, cwnd: usize, mss: usize) -> bool {
        if s.acked >= self.round_left as usize {
            if self.round_min.get().is_some() {
                self.last_round_min = self.round_min;
            }
            self.round_min = ShortDuration::NONE;
            self.samples = 0;
            self.round_left = u32::try_from(cwnd).unwrap_or(u32::MAX);
        } else {
            self.round_left -= s.acked as u32;
        }
        let Some(rtt) = s.rtt else { return false };
        self.round_min = ShortDuration::new(self.round_min.get().map_or(rtt, |m| m.min(rtt)));
        self.samples += 1;
        if cwnd < HYSTART_LOW_WINDOW * mss || self.samples < HYSTART_MIN_SAMPLES {
            return false;
        }
        let (Some(now), Some(last)) = (self.round_min.get(), self.last_round_min.get()) else {
            return false;
        };
        let thresh = (last / 8).clamp(HYSTART_MIN_THRESH, HYSTART_MAX_THRESH);
        now >= last + thresh
    }

    /// Start afresh (after a timeout, slow start begins again).
    pub fn reset(&mut self) {
        *self = HyStart::default();
    }
}

/// RFC 5681 initial window (RFC 6928's IW10, as Linux uses).
pub fn initial_window(mss: usize) -> usize {
    10 * mss
}

/// Reno: slow start, congestion avoidance by appropriate byte counting (RFC 3465), halving on
/// loss.
#[derive(Debug, Clone)]
pub struct Reno {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acknowledged since the window last grew in congestion avoidance.
    acked_accum: usize,
    hystart: HyStart,
}

impl Reno {
    /// A Reno controller at the initial window.
    pub fn new(mss: usize) -> Self {
        Reno {
            mss,
            cwnd: initial_window(mss),
            ssthresh: usize::MAX,
            acked_accum: 0,
            hystart: HyStart::default(),
        }
    }
}

impl CongestionControl for Reno {
    fn window(&self) -> usize {
        self.cwnd
    }
    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
    fn on_ack(&mut self, _now: Instant, s: &AckSample) {
        // Do not grow a window the sender is not using (RFC 7661 spirit, as Linux's
        // tcp_is_cwnd_limited).
        if s.in_flight + 2 * self.mss < self.cwnd && self.cwnd >= self.ssthresh {
            return;
        }
        if self.cwnd < self.ssthresh {
            // RFC 3465: grow by at most 2 MSS per ACK in slow start.
            self.cwnd += s.acked.min(2 * self.mss);
            if self.hystart.on_ack(s, self.cwnd, self.mss) {
                self.ssthresh = self.cwnd;
            }
        } else {
            self.acked_accum += s.acked;
            if self.acked_accum >= self.cwnd {
                self.acked_accum -= self.cwnd;
                self.cwnd += self.mss;
            }
        }
    }
    fn on_congestion_event(&mut self, _now: Instant, in_flight: usize) {
        // RFC 5681 equation (4).
        self.ssthresh = (in_flight / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh;
        self.acked_accum = 0;
    }
    fn on_recovery_end(&mut self, _now: Instant) {
        self.cwnd = self.ssthresh;
    }
    fn on_rto(&mut self, _now: Instant, in_flight: usize) {
        self.ssthresh = (in_flight / 2).max(2 * self.mss);
        self.cwnd = self.mss;
        self.acked_accum = 0;
        self.hystart.reset();
    }
    fn set_mss(&mut self, mss: usize) {
        if self.cwnd == initial_window(self.mss) {
            self.cwnd = initial_window(mss);
        }
        self.mss = mss;
    }
    fn name(&self) -> &'static str {
        "reno"
    }
}

/// CUBIC (RFC 9438) with fast convergence and the Reno-friendly region.
#[derive(Debug, Clone)]
pub struct Cubic {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// W_max in segments.
    w_max: f64,
    /// W_max before the last reduction, for fast convergence.
    w_last_max: f64,
    /// Start of the current congestion-avoidance epoch.
    epoch_start: Deadline,
    /// K in seconds.
    k: f64,
    /// W_est (Reno-friendly estimate) in segments.
    w_est: f64,
    /// Bytes acknowledged, carried between ACKs in congestion avoidance.
    acked_accum: usize,
    hystart: HyStart,
}

/// RFC 9438 section 4.6: multiplicative decrease factor.
const CUBIC_BETA: f64 = 0.7;
/// RFC 9438 section 5: C = 0.4.
const CUBIC_C: f64 = 0.4;

impl Cubic {
    /// A CUBIC controller at the initial window.
    pub fn new(mss: usize) -> Self {
        Cubic {
            mss,
            cwnd: initial_window(mss),
            ssthresh: usize::MAX,
            w_max: 0.0,
            w_last_max: 0.0,
            epoch_start: Deadline::NONE,
            k: 0.0,
            w_est: 0.0,
            acked_accum: 0,
            hystart: HyStart::default(),
        }
    }

    fn segments(&self) -> f64 {
        self.cwnd as f64 / self.mss as f64
    }

    fn reduce(&mut self) {
        let cwnd = self.segments();
        // RFC 9438 section 4.7: fast convergence.
        self.w_max = if cwnd < self.w_last_max {
            cwnd * (1.0 + CUBIC_BETA) / 2.0
        } else {
            cwnd
        };
        self.w_last_max = cwnd;
        let reduced = ((cwnd * CUBIC_BETA) * self.mss as f64) as usize;
        self.ssthresh = reduced.max(2 * self.mss);
        self.epoch_start.clear();
        self.acked_accum = 0;
    }
}

impl CongestionControl for Cubic {
    fn window(&self) -> usize {
        self.cwnd
    }
    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
    fn on_ack(&mut self, now: Instant, s: &AckSample) {
        if s.in_flight + 2 * self.mss < self.cwnd && self.cwnd >= self.ssthresh {
            return;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd += s.acked.min(2 * self.mss);
            if self.hystart.on_ack(s, self.cwnd, self.mss) {
                // Slow start ends here (RFC 9406); the CUBIC epoch starts from this window at
                // the next ACK, in congestion avoidance.
                self.ssthresh = self.cwnd;
            }
            return;
        }
        let epoch = match self.epoch_start.get() {
            Some(t) => t,
            None => {
                self.epoch_start.set(now);
                let cwnd = self.segments();
                if self.w_max <= cwnd {
                    self.k = 0.0;
                    self.w_max = cwnd;
                } else {
                    // RFC 9438 equation (2).
                    self.k = ((self.w_max - cwnd) / CUBIC_C).cbrt();
                }
                self.w_est = cwnd;
                now
            }
        };
        let rtt = s.srtt.total_micros() as f64 / 1e6;
        let t = (now - epoch).total_micros() as f64 / 1e6;
        // RFC 9438 equation (1), evaluated one RTT ahead.
        let target = CUBIC_C * (t + rtt - self.k).powi(3) + self.w_max;
        let cwnd = self.segments();
        // RFC 9438 section 4.3: the Reno-friendly estimate.
        let alpha = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);
        self.w_est += alpha * (s.acked as f64 / self.mss as f64) / cwnd;
        let goal = if self.w_est > target {
            self.w_est
        } else {
            target.clamp(cwnd, 1.5 * cwnd)
        };
        if goal > cwnd {
            // Grow by (goal - cwnd) / cwnd segments per acknowledged segment.
            self.acked_accum += s.acked;
            let per_mss = cwnd / (goal - cwnd);
            let needed = (per_mss * self.mss as f64).max(1.0) as usize;
            while self.acked_accum >= needed
                && self.cwnd < (goal * self.mss as f64) as usize + self.mss
            {
                self.acked_accum -= needed;
                self.cwnd += self.mss;
            }
        }
    }
    fn on_congestion_event(&mut self, _now: Instant, _in_flight: usize) {
        self.reduce();
        self.cwnd = self.ssthresh;
    }
    fn on_recovery_end(&mut self, _now: Instant) {
        self.cwnd = self.ssthresh;
    }
    fn on_rto(&mut self, _now: Instant, _in_flight: usize) {
        self.reduce();
        self.cwnd = self.mss;
        self.hystart.reset();
    }
    fn set_mss(&mut self, mss: usize) {
        if self.cwnd == initial_window(self.mss) {
            self.cwnd = initial_window(mss);
        }
        self.mss = mss;
    }
    fn name(&self) -> &'static str {
        "cubic"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(acked: usize, in_flight: usize) -> AckSample {
        AckSample {
            acked,
            in_flight,
            rtt: None,
            srtt: Duration::from_millis(100),
        }
    }

    /// Slow start over rounds of one window each, every ACK covering one MSS and showing
    /// `rtt_of(round)`; returns the round in which slow start ended, if it did.
    fn slow_start_rounds(
        cc: &mut dyn CongestionControl,
        rtt_of: impl Fn(u32) -> u64,
    ) -> Option<u32> {
        let mss = 1000;
        for round in 0..12 {
            let acks = cc.window() / mss;
            for _ in 0..acks {
                let s = AckSample {
                    acked: mss,
                    in_flight: cc.window(),
                    rtt: Some(Duration::from_millis(rtt_of(round))),
                    srtt: Duration::from_millis(rtt_of(round)),
                };
                cc.on_ack(Instant::from_millis(0), &s);
                if cc.ssthresh() != usize::MAX {
                    return Some(round);
                }
            }
        }
        None
    }

    #[test]
    fn hystart_ends_slow_start_when_the_round_trip_time_grows_and_not_before() {
        for make in [CcAlgorithm::Reno, CcAlgorithm::Cubic] {
            // The RTT stays at 20 ms: slow start runs on (up to the 12 rounds tried).
            let mut cc = make.build(1000);
            assert_eq!(slow_start_rounds(cc.as_mut(), |_| 20), None, "{make:?}");
            // From round 5 on the queue builds: 20 ms, then +5 ms (over max(4 ms, 20/8)).
            let mut cc = make.build(1000);
            let ended = slow_start_rounds(cc.as_mut(), |r| if r < 5 { 20 } else { 25 });
            assert_eq!(ended, Some(5), "{make:?}");
            assert_eq!(cc.ssthresh(), cc.window(), "slow start ends where it stood");
            // +3 ms is below the 4 ms floor: no exit.
            let mut cc = make.build(1000);
            assert_eq!(
                slow_start_rounds(cc.as_mut(), |r| if r < 5 { 20 } else { 23 }),
                None
            );
        }
    }

    #[test]
    fn reno_slow_start_doubles_then_halves_on_loss_and_falls_to_one_mss_on_rto() {
        let mss = 1000;
        let mut r = Reno::new(mss);
        let t = Instant::from_millis(0);
        assert_eq!(r.window(), 10 * mss);
        // One window of ACKs in slow start doubles the window.
        for _ in 0..10 {
            r.on_ack(t, &ack(mss, r.window()));
        }
        assert_eq!(r.window(), 20 * mss);
        r.on_congestion_event(t, 20 * mss);
        assert_eq!((r.window(), r.ssthresh()), (10 * mss, 10 * mss));
        // Congestion avoidance: one MSS per window acknowledged.
        for _ in 0..10 {
            r.on_ack(t, &ack(mss, r.window()));
        }
        assert_eq!(r.window(), 11 * mss);
        r.on_rto(t, 11 * mss);
        assert_eq!((r.window(), r.ssthresh()), (mss, 5500));
    }

    #[test]
    fn a_sender_that_does_not_fill_its_window_does_not_grow_it() {
        let mut r = Reno::new(1000);
        r.on_congestion_event(Instant::from_millis(0), 20_000);
        let w = r.window();
        for _ in 0..100 {
            r.on_ack(Instant::from_millis(0), &ack(1000, 1000));
        }
        assert_eq!(r.window(), w);
    }

    #[test]
    fn cubic_reduces_by_beta_and_regrows_to_w_max_around_k() {
        let mss = 1000;
        let mut c = Cubic::new(mss);
        let mut now = Instant::from_millis(0);
        // Leave slow start at 100 segments.
        while c.window() < 100 * mss {
            c.on_ack(now, &ack(mss, c.window()));
        }
        c.on_congestion_event(now, c.window());
        assert_eq!(c.window(), 70 * mss);
        // K = cbrt(30 / 0.4) = 4.2 s: after ~4.2 s of ACKs at 100 ms RTT the window is near
        // W_max again, and not far above it. (At a short RTT the Reno-friendly estimate would
        // dominate, as RFC 9438 section 4.3 intends.)
        let start = now;
        while now - start < Duration::from_millis(4200) {
            now += Duration::from_millis(100);
            let w = c.window();
            for _ in 0..(w / mss) {
                c.on_ack(now, &ack(mss, w));
            }
            if now - start < Duration::from_millis(3000) {
                assert!(c.window() < 100 * mss, "concave region stays below W_max");
            }
        }
        let w = c.window() / mss;
        assert!((95..=106).contains(&w), "window {w} segments at t = K");
        c.on_rto(now, c.window());
        assert_eq!(c.window(), mss);
    }
}
