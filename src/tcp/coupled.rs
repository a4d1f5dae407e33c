//! Coupled congestion control for the subflows of one MPTCP connection: LIA (RFC 6356) and
//! OLIA (Khalili et al., draft-khalili-mptcp-congestion-control-05).
//!
//! # Contract
//!
//! Coupling works on snapshots, through a pure function; no controller ever points at another:
//!
//! 1. each subflow's controller describes itself in a [`PathSample`]
//!    ([`Connection::cc_path_sample`](super::Connection::cc_path_sample): window and MSS in
//!    bytes, smoothed RTT, and for OLIA the bytes acknowledged between and since its last
//!    losses, which the controller counts);
//! 2. [`couple`] turns the samples of all subflows into one [`Coupling`] per subflow, written
//!    into the caller's slice (no allocation);
//! 3. each controller takes its [`Coupling`]
//!    ([`Connection::set_coupling`](super::Connection::set_coupling)) and uses it for the
//!    congestion-avoidance increase until the next one arrives.
//!
//! The MPTCP layer refreshes the couplings after every ACK on any subflow (or less often: a
//! stale coupling is still a valid one, only less precise). A [`Coupling`] carries both the LIA
//! and the OLIA terms, so the caller need not know which algorithm its subflows run; each
//! controller reads its own. [`Coupling::UNCOUPLED`] (also the default, and what [`couple`]
//! gives for a single path or degenerate input) makes [`Lia`] and [`Olia`] behave exactly like
//! [`Reno`](super::cc::Reno).
//!
//! With subflows holding a `tcp: Connection`, after an ACK on any of them (buffers kept by the
//! caller, so nothing is allocated per ACK):
//!
//! ```
//! use mptcp_stack::tcp::cc::{CcAlgorithm, CongestionControl};
//! use mptcp_stack::tcp::coupled::{couple, Coupling, PathSample};
//!
//! // Stand-ins for `subflow.tcp`; with a `Connection` call `cc_path_sample()` and
//! // `set_coupling(c)` the same way.
//! let mut subflows: Vec<Box<dyn CongestionControl>> =
//!     (0..3).map(|_| CcAlgorithm::Lia.build(1448)).collect();
//! let mut samples = [PathSample::default(); 8];
//! let mut couplings = [Coupling::UNCOUPLED; 8];
//!
//! // Size the buffers for the most subflows a connection may have (8 here).
//! let n = subflows.len().min(samples.len());
//! for (sample, cc) in samples.iter_mut().zip(&subflows) {
//!     *sample = cc.path_sample(1448, None);
//! }
//! couple(&samples[..n], &mut couplings[..n]);
//! for (cc, c) in subflows.iter_mut().zip(&couplings) {
//!     cc.set_coupling(c);
//! }
//! // Three equal paths (equal RTTs): alpha = cwnd_max / cwnd_total = 1/3, and together they
//! // grow by alpha MSS per RTT, a third of what one Reno flow would.
//! let alpha = couplings[0].lia.unwrap().alpha;
//! assert!((alpha - 1.0 / 3.0).abs() < 1e-12);
//! ```
//!
//! Everything but the congestion-avoidance increase is Reno's (RFC 6356 section 3: "the slow
//! start, fast retransmit, and fast recovery algorithms, as well as the multiplicative decrease
//! of the congestion avoidance state are the same as in standard TCP"): slow start, halving on
//! loss, one MSS after an RTO.
//!
//! # Units
//!
//! Windows are bytes and RTTs seconds (`f64`). LIA's alpha is dimensionless (bytes and seconds
//! cancel in RFC 6356 equation (2)), so it does not depend on that choice; the increase is
//! applied as "one MSS per so many acknowledged bytes", counted in an integer accumulator so
//! that no fraction of a byte is lost between ACKs.

use smoltcp::time::{Duration, Instant};

use super::cc::{AckSample, CongestionControl, HyStart, initial_window};

/// The smallest RTT [`couple`] uses, in seconds: a zero sample is taken as this.
const MIN_RTT_SECS: f64 = 1e-6;
/// The RTT [`couple`] gives every path when none has been measured yet. Any common value would
/// do: with equal RTTs the RTT cancels out of both algorithms.
const UNMEASURED_RTT_SECS: f64 = 1.0;
/// The window never shrinks below this many segments outside an RTO (RFC 5681 equation (4)).
const MIN_WINDOW_SEGMENTS: usize = 2;
/// RFC 3465: slow start grows by at most this many segments per ACK.
const SLOW_START_MAX_SEGMENTS_PER_ACK: usize = 2;

/// What one subflow tells [`couple`] about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathSample {
    /// The congestion window in bytes.
    pub cwnd: usize,
    /// The subflow's MSS in bytes.
    pub mss: usize,
    /// The smoothed RTT, if one has been measured. A path without one is given the largest RTT
    /// of the other paths.
    pub srtt: Option<Duration>,
    /// OLIA's `l1r`: bytes acknowledged between the last two losses (0 before the second).
    pub acked_between_losses: u64,
    /// OLIA's `l2r`: bytes acknowledged since the last loss (or since the start).
    pub acked_since_loss: u64,
}

impl PathSample {
    /// A sample with no loss history (what uncoupled controllers report).
    pub fn new(cwnd: usize, mss: usize, srtt: Option<Duration>) -> PathSample {
        PathSample {
            cwnd,
            mss,
            srtt,
            acked_between_losses: 0,
            acked_since_loss: 0,
        }
    }

    /// The measured RTT in seconds, at least [`MIN_RTT_SECS`].
    fn rtt_secs(&self) -> Option<f64> {
        self.srtt
            .map(|d| (d.total_micros() as f64 / 1e6).max(MIN_RTT_SECS))
    }

    /// OLIA's `l_r = max(l1r, l2r)`.
    fn inter_loss_bytes(&self) -> f64 {
        self.acked_between_losses.max(self.acked_since_loss) as f64
    }
}

/// LIA's coupling of one path (RFC 6356 section 3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiaCoupling {
    /// RFC 6356 equation (2): `cwnd_total * max_i(cwnd_i / rtt_i^2) / (sum_i cwnd_i / rtt_i)^2`.
    pub alpha: f64,
    /// `cwnd_total`: the sum of the windows of all paths, in bytes.
    pub total_cwnd: usize,
}

impl LiaCoupling {
    /// Bytes to acknowledge on a path with window `cwnd` for its window to grow by one MSS.
    ///
    /// RFC 6356 section 3: per ACK, increase `cwnd_i` by
    /// `min(alpha * bytes_acked * MSS_i / cwnd_total, bytes_acked * MSS_i / cwnd_i)`, that is
    /// by `bytes_acked * MSS_i / max(cwnd_total / alpha, cwnd_i)`: one MSS per
    /// `max(cwnd_total / alpha, cwnd_i)` bytes. Never less than `cwnd` (goal 2: no path grows
    /// faster than a Reno flow on it would). An invalid alpha gives `cwnd` (Reno).
    pub fn bytes_per_mss(&self, cwnd: usize) -> usize {
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return cwnd;
        }
        // `as` saturates (and a NaN cannot occur: both operands are finite, alpha positive).
        let coupled = (self.total_cwnd as f64 / self.alpha).round() as usize;
        coupled.max(cwnd)
    }
}

/// OLIA's coupling of one path (draft-khalili-mptcp-congestion-control-05 section 3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OliaCoupling {
    /// `(w_r / rtt_r^2) / (sum_p w_p / rtt_p)^2`, per byte (windows in bytes).
    pub window_term: f64,
    /// `alpha_r`: positive on a best path that does not have the largest window, negative on
    /// the largest-window paths when such a best path exists, zero otherwise.
    pub alpha: f64,
}

impl OliaCoupling {
    /// The window change per acknowledged byte, in MSS, on a path with window `cwnd`:
    /// `window_term + alpha / cwnd`. It is negative when the path should give way.
    pub fn increase_per_byte(&self, cwnd: usize) -> f64 {
        self.window_term + self.alpha / cwnd.max(1) as f64
    }
}

/// The coupling of one path: what its controller needs to know of the others.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Coupling {
    /// For [`Lia`]; `None`: grow like Reno.
    pub lia: Option<LiaCoupling>,
    /// For [`Olia`]; `None`: grow like Reno.
    pub olia: Option<OliaCoupling>,
}

impl Coupling {
    /// No coupling: LIA and OLIA grow like Reno.
    pub const UNCOUPLED: Coupling = Coupling {
        lia: None,
        olia: None,
    };
}

/// Computes the coupling of every path from the samples of all paths of one connection, and
/// writes `out[i]` for `paths[i]`. Pure, `O(paths.len())`, no allocation.
///
/// All paths take part in the computation; if `out` is shorter than `paths` only its entries
/// are written, and entries of `out` beyond `paths.len()` are set to [`Coupling::UNCOUPLED`].
/// Fewer than two paths, or no window anywhere, give [`Coupling::UNCOUPLED`] everywhere. The
/// results are always finite.
pub fn couple(paths: &[PathSample], out: &mut [Coupling]) {
    out.fill(Coupling::UNCOUPLED);
    if paths.len() < 2 {
        return;
    }
    // A path with no RTT yet is taken to be as slow as the slowest measured path.
    let rtt_fallback = paths
        .iter()
        .filter_map(PathSample::rtt_secs)
        .reduce(f64::max)
        .unwrap_or(UNMEASURED_RTT_SECS);
    let rtt_of = |p: &PathSample| p.rtt_secs().unwrap_or(rtt_fallback);
    // OLIA ranks paths by l_r / rtt_r^2 (its estimate of a path's quality).
    let quality = |p: &PathSample| {
        let rtt = rtt_of(p);
        p.inter_loss_bytes() / (rtt * rtt)
    };

    let mut total_cwnd = 0usize;
    let mut sum_rate = 0.0f64;
    let mut max_lia_term = 0.0f64;
    let mut max_cwnd = 0usize;
    let mut best_quality = f64::NEG_INFINITY;
    for p in paths {
        let (w, rtt) = (p.cwnd as f64, rtt_of(p));
        total_cwnd = total_cwnd.saturating_add(p.cwnd);
        sum_rate += w / rtt;
        max_lia_term = max_lia_term.max(w / (rtt * rtt));
        max_cwnd = max_cwnd.max(p.cwnd);
        best_quality = best_quality.max(quality(p));
    }
    let sum_rate_sq = sum_rate * sum_rate;
    // RFC 6356 equation (2).
    let alpha = total_cwnd as f64 * max_lia_term / sum_rate_sq;
    if !(sum_rate_sq.is_finite() && sum_rate_sq > 0.0 && alpha.is_finite() && alpha > 0.0) {
        return;
    }

    // OLIA: B = best paths (largest l_r / rtt_r^2), M = paths with the largest window.
    let is_best = |p: &PathSample| quality(p) == best_quality;
    let is_max = |p: &PathSample| p.cwnd == max_cwnd;
    let best_not_max = paths.iter().filter(|p| is_best(p) && !is_max(p)).count();
    let max_paths = paths.iter().filter(|p| is_max(p)).count();
    let n = paths.len() as f64;

    for (p, c) in paths.iter().zip(out.iter_mut()) {
        let rtt = rtt_of(p);
        // The draft's alpha_r: 1/(|R| |B\M|) on B\M, -1/(|R| |M|) on M if B\M is not empty.
        let olia_alpha = if best_not_max == 0 {
            0.0
        } else if is_best(p) && !is_max(p) {
            1.0 / (n * best_not_max as f64)
        } else if is_max(p) {
            -1.0 / (n * max_paths as f64)
        } else {
            0.0
        };
        *c = Coupling {
            lia: Some(LiaCoupling { alpha, total_cwnd }),
            olia: Some(OliaCoupling {
                window_term: p.cwnd as f64 / (rtt * rtt) / sum_rate_sq,
                alpha: olia_alpha,
            }),
        };
    }
}

/// How a congestion-avoidance ACK moves the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// One MSS more per this many acknowledged bytes.
    Grow(usize),
    /// One MSS less per this many acknowledged bytes (OLIA on a path that should give way).
    Shrink(usize),
    /// No change.
    Hold,
}

/// The Reno machinery shared by LIA and OLIA, with the congestion-avoidance step left open.
#[derive(Debug, Clone)]
struct RenoCore {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acknowledged since the window last moved in congestion avoidance.
    acked_accum: usize,
    hystart: HyStart,
}

impl RenoCore {
    fn new(mss: usize) -> RenoCore {
        RenoCore {
            mss,
            cwnd: initial_window(mss),
            ssthresh: usize::MAX,
            acked_accum: 0,
            hystart: HyStart::default(),
        }
    }

    fn floor(&self) -> usize {
        MIN_WINDOW_SEGMENTS * self.mss
    }

    fn on_ack(&mut self, s: &AckSample, step: impl FnOnce(usize) -> Step) {
        // As Reno: a sender that does not fill its window does not grow it.
        if s.in_flight + 2 * self.mss < self.cwnd && self.cwnd >= self.ssthresh {
            return;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd += s.acked.min(SLOW_START_MAX_SEGMENTS_PER_ACK * self.mss);
            if self.hystart.on_ack(s, self.cwnd, self.mss) {
                self.ssthresh = self.cwnd;
            }
            return;
        }
        match step(self.cwnd) {
            Step::Grow(per_mss) => {
                self.acked_accum = self.acked_accum.saturating_add(s.acked);
                if self.acked_accum >= per_mss {
                    self.acked_accum -= per_mss;
                    self.cwnd = self.cwnd.saturating_add(self.mss);
                }
            }
            Step::Shrink(per_mss) => {
                self.acked_accum = self.acked_accum.saturating_add(s.acked);
                if self.acked_accum >= per_mss {
                    self.acked_accum -= per_mss;
                    self.cwnd = self.cwnd.saturating_sub(self.mss).max(self.floor());
                    // A decrease in congestion avoidance stays in congestion avoidance.
                    self.ssthresh = self.ssthresh.min(self.cwnd);
                }
            }
            Step::Hold => {}
        }
    }

    fn on_congestion_event(&mut self, in_flight: usize) {
        // RFC 5681 equation (4).
        self.ssthresh = (in_flight / 2).max(self.floor());
        self.cwnd = self.ssthresh;
        self.acked_accum = 0;
    }

    fn on_recovery_end(&mut self) {
        self.cwnd = self.ssthresh;
    }

    fn on_rto(&mut self, in_flight: usize) {
        self.ssthresh = (in_flight / 2).max(self.floor());
        self.cwnd = self.mss;
        self.acked_accum = 0;
        self.hystart.reset();
    }

    fn on_penalty(&mut self) {
        self.ssthresh = (self.cwnd / 2).max(self.floor());
        self.cwnd = self.ssthresh;
        self.acked_accum = 0;
    }

    fn set_mss(&mut self, mss: usize) {
        if self.cwnd == initial_window(self.mss) {
            self.cwnd = initial_window(mss);
        }
        self.mss = mss;
    }
}

/// LIA, the Linked Increases Algorithm (RFC 6356): Reno whose congestion-avoidance increase is
/// coupled across subflows by [`LiaCoupling`].
#[derive(Debug, Clone)]
pub struct Lia {
    core: RenoCore,
    coupling: Option<LiaCoupling>,
}

impl Lia {
    /// A LIA controller at the initial window, uncoupled until [`CongestionControl::set_coupling`].
    pub fn new(mss: usize) -> Lia {
        Lia {
            core: RenoCore::new(mss),
            coupling: None,
        }
    }
}

impl CongestionControl for Lia {
    fn window(&self) -> usize {
        self.core.cwnd
    }
    fn ssthresh(&self) -> usize {
        self.core.ssthresh
    }
    fn on_ack(&mut self, _now: Instant, s: &AckSample) {
        let coupling = self.coupling;
        self.core.on_ack(s, |cwnd| {
            Step::Grow(coupling.map_or(cwnd, |c| c.bytes_per_mss(cwnd)))
        });
    }
    fn on_congestion_event(&mut self, _now: Instant, in_flight: usize) {
        self.core.on_congestion_event(in_flight);
    }
    fn on_recovery_end(&mut self, _now: Instant) {
        self.core.on_recovery_end();
    }
    fn on_rto(&mut self, _now: Instant, in_flight: usize) {
        self.core.on_rto(in_flight);
    }
    fn set_mss(&mut self, mss: usize) {
        self.core.set_mss(mss);
    }
    fn name(&self) -> &'static str {
        "lia"
    }
    fn set_coupling(&mut self, c: &Coupling) {
        self.coupling = c.lia;
    }
    fn on_penalty(&mut self, _now: Instant) {
        self.core.on_penalty();
    }
}

/// OLIA, the Opportunistic Linked Increases Algorithm: Reno whose congestion-avoidance increase
/// is coupled across subflows by [`OliaCoupling`], and which counts the bytes acknowledged
/// between losses for [`couple`] to rank the paths.
#[derive(Debug, Clone)]
pub struct Olia {
    core: RenoCore,
    coupling: Option<OliaCoupling>,
    /// `l1r`: bytes acknowledged between the last two losses.
    acked_between_losses: u64,
    /// `l2r`: bytes acknowledged since the last loss.
    acked_since_loss: u64,
}

impl Olia {
    /// An OLIA controller at the initial window, uncoupled until
    /// [`CongestionControl::set_coupling`].
    pub fn new(mss: usize) -> Olia {
        Olia {
            core: RenoCore::new(mss),
            coupling: None,
            acked_between_losses: 0,
            acked_since_loss: 0,
        }
    }

    fn on_loss(&mut self) {
        self.acked_between_losses = self.acked_since_loss;
        self.acked_since_loss = 0;
    }
}

/// The OLIA step for an increase of `per_byte` MSS per acknowledged byte.
fn olia_step(per_byte: f64) -> Step {
    if !per_byte.is_finite() || per_byte == 0.0 {
        return Step::Hold;
    }
    // `as` saturates; at least one byte per MSS.
    let bytes = ((1.0 / per_byte.abs()).round() as usize).max(1);
    if per_byte > 0.0 {
        Step::Grow(bytes)
    } else {
        Step::Shrink(bytes)
    }
}

impl CongestionControl for Olia {
    fn window(&self) -> usize {
        self.core.cwnd
    }
    fn ssthresh(&self) -> usize {
        self.core.ssthresh
    }
    fn on_ack(&mut self, _now: Instant, s: &AckSample) {
        self.acked_since_loss = self.acked_since_loss.saturating_add(s.acked as u64);
        let coupling = self.coupling;
        self.core.on_ack(s, |cwnd| match coupling {
            None => Step::Grow(cwnd),
            // Draft section 3: per ACK on path r, increase w_r by
            // (w_r/rtt_r^2) / (sum_p w_p/rtt_p)^2 + alpha_r / w_r (per MSS acknowledged).
            Some(c) => olia_step(c.increase_per_byte(cwnd)),
        });
    }
    fn on_congestion_event(&mut self, _now: Instant, in_flight: usize) {
        self.on_loss();
        self.core.on_congestion_event(in_flight);
    }
    fn on_recovery_end(&mut self, _now: Instant) {
        self.core.on_recovery_end();
    }
    fn on_rto(&mut self, _now: Instant, in_flight: usize) {
        self.on_loss();
        self.core.on_rto(in_flight);
    }
    fn set_mss(&mut self, mss: usize) {
        self.core.set_mss(mss);
    }
    fn name(&self) -> &'static str {
        "olia"
    }
    fn path_sample(&self, mss: usize, srtt: Option<Duration>) -> PathSample {
        PathSample {
            acked_between_losses: self.acked_between_losses,
            acked_since_loss: self.acked_since_loss,
            ..PathSample::new(self.core.cwnd, mss, srtt)
        }
    }
    fn set_coupling(&mut self, c: &Coupling) {
        self.coupling = c.olia;
    }
    fn on_penalty(&mut self, _now: Instant) {
        // A penalty is not a loss: the loss history is left alone.
        self.core.on_penalty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn olia_step_turns_a_rate_into_bytes_per_mss() {
        assert_eq!(olia_step(1.0 / 20_000.0), Step::Grow(20_000));
        assert_eq!(olia_step(-1.0 / 50_000.0), Step::Shrink(50_000));
        assert_eq!(olia_step(0.0), Step::Hold);
        assert_eq!(olia_step(f64::NAN), Step::Hold);
        assert_eq!(olia_step(f64::INFINITY), Step::Hold);
        assert_eq!(olia_step(1e300), Step::Grow(1));
        assert_eq!(olia_step(1e-300), Step::Grow(usize::MAX));
    }

    #[test]
    fn an_olia_shrink_never_goes_below_two_segments_nor_leaves_congestion_avoidance() {
        let mut core = RenoCore::new(1000);
        core.on_congestion_event(3000);
        assert_eq!((core.cwnd, core.ssthresh), (2000, 2000));
        let ack = AckSample {
            acked: 1000,
            in_flight: 2000,
            rtt: None,
            srtt: Duration::from_millis(10),
        };
        for _ in 0..10 {
            core.on_ack(&ack, |_| Step::Shrink(1000));
        }
        assert_eq!((core.cwnd, core.ssthresh), (2000, 2000));
        core.cwnd = 5000;
        let full = AckSample {
            in_flight: 5000,
            ..ack
        };
        core.on_ack(&full, |_| Step::Shrink(1000));
        assert_eq!((core.cwnd, core.ssthresh), (4000, 2000));
    }
}
