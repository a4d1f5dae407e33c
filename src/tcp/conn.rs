//! One TCP connection (RFC 9293), sans-IO, carrying MPTCP options natively.
//!
//! Contract:
//! - Inputs are parsed segments ([`Connection::handle_segment`]), timer expiries
//!   ([`Connection::handle_timeout`]) and application calls (`send`, `recv`, `close`, `abort`);
//!   outputs are whole IP packets pulled with [`Connection::poll_transmit`] and the deadline of
//!   [`Connection::poll_timeout`]. `now` is always an argument.
//! - Mechanisms: three-way handshake both ways (and simultaneous open), window scaling and
//!   timestamps with PAWS (RFC 7323), SACK (RFC 2018) with RFC 6675 loss recovery (NewReno,
//!   RFC 6582, when the peer does not do SACK), RTO per RFC 6298 with a 200 ms floor, delayed
//!   ACK, receiver and sender silly-window avoidance, zero-window probing, keepalive, the FIN
//!   states and TIME-WAIT, RST and SYN validation per RFC 5961 (challenge ACKs), MSS clamped to
//!   the path MTU. Congestion control is a [`CongestionControl`] trait object.
//! - MPTCP hooks: [`Hooks::on_transmit`] adds options to every outgoing segment with the option
//!   space left; [`Hooks::on_receive`] sees every acceptable incoming segment;
//!   [`Hooks::deliver`] may take in-order payload straight from the packet when nothing is
//!   buffered before it (one copy fewer: the MPTCP layer places it in its own buffer);
//!   [`Connection::send_chunk`] marks boundaries that no segment crosses, and a retransmitted
//!   segment falls inside the same chunk with the same tag, so it keeps its original mapping.
//! - Invalid input never panics: unacceptable segments are dropped (with an ACK or RST where
//!   RFC 9293 says so) and counted in [`Stats`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use smoltcp::time::{Duration, Instant};

use super::cc::{AckSample, CcAlgorithm, CongestionControl};
use super::coupled::{Coupling, PathSample};
use super::ring::Ring;
use super::rtt::RttEstimator;
use crate::deadline::{Deadline, ShortDuration};
use crate::node::Transmit;
use crate::seq::TcpSeq;
use crate::wire::tcp::field as tcp_field;
use crate::wire::{IpSegment, SackBlocks, TcpFlags, TcpOptions, TcpSegment, Timestamp};

/// Configuration of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// The MSS to advertise: the link MTU less the IP and TCP headers. The endpoint derives it.
    pub mss: u16,
    /// Receive buffer limit in bytes (the largest window advertised).
    pub rx_buffer: usize,
    /// Send buffer limit in bytes.
    pub tx_buffer: usize,
    /// Offer window scaling (RFC 7323).
    pub window_scaling: bool,
    /// Offer timestamps (RFC 7323).
    pub timestamps: bool,
    /// Offer SACK (RFC 2018).
    pub sack: bool,
    /// Nagle's algorithm (off by default, as MPTCP wants).
    pub nagle: bool,
    /// Delayed-ACK timeout (Linux's minimum is 40 ms).
    pub delayed_ack: Duration,
    /// Initial RTO (RFC 6298: 1 s).
    pub initial_rto: Duration,
    /// RTO floor (Linux: 200 ms).
    pub min_rto: Duration,
    /// RTO ceiling.
    pub max_rto: Duration,
    /// SYN retransmissions before giving up.
    pub syn_retries: u32,
    /// Data retransmissions (consecutive RTO expiries) before giving up.
    pub data_retries: u32,
    /// Keepalive idle time, if keepalive is on.
    pub keepalive: Option<Duration>,
    /// TIME-WAIT duration (2 MSL; Linux uses 60 s).
    pub time_wait: Duration,
    /// Congestion control.
    pub cc: CcAlgorithm,
    /// Hop limit / TTL of emitted packets.
    pub hop_limit: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mss: 1460,
            rx_buffer: 4 << 20,
            tx_buffer: 4 << 20,
            window_scaling: true,
            timestamps: true,
            sack: true,
            nagle: false,
            delayed_ack: Duration::from_millis(40),
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(60),
            syn_retries: 6,
            data_retries: 15,
            keepalive: None,
            time_wait: Duration::from_secs(60),
            cc: CcAlgorithm::Cubic,
            hop_limit: 64,
        }
    }
}

/// RFC 9293 connection states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection (after a reset or the end of TIME-WAIT / LAST-ACK).
    Closed,
    /// SYN sent, waiting for SYN/ACK.
    SynSent,
    /// SYN received and SYN/ACK sent, waiting for the ACK.
    SynReceived,
    /// Data flows both ways.
    Established,
    /// Our FIN sent, not yet acknowledged.
    FinWait1,
    /// Our FIN acknowledged, waiting for the peer's.
    FinWait2,
    /// The peer's FIN received; the application may still send.
    CloseWait,
    /// Both FINs sent, ours not acknowledged.
    Closing,
    /// Our FIN sent after the peer's, waiting for its ACK.
    LastAck,
    /// Waiting 2 MSL before forgetting the connection.
    TimeWait,
}

impl State {
    /// Whether the handshake completed (data may be received).
    pub fn is_synchronized(self) -> bool {
        !matches!(self, State::Closed | State::SynSent | State::SynReceived)
    }
}

/// Why a connection ended abnormally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ConnError {
    /// The peer answered the SYN with RST.
    #[error("connection refused")]
    Refused,
    /// The peer reset an established connection.
    #[error("connection reset by peer")]
    Reset,
    /// Retransmissions exhausted.
    #[error("connection timed out")]
    TimedOut,
    /// The application aborted.
    #[error("connection aborted")]
    Aborted,
}

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Segments sent.
    pub segs_out: u64,
    /// Segments received.
    pub segs_in: u64,
    /// Payload bytes sent for the first time.
    pub bytes_sent: u64,
    /// Payload bytes retransmitted.
    pub bytes_retransmitted: u64,
    /// Payload bytes acknowledged.
    pub bytes_acked: u64,
    /// Payload bytes received in order.
    pub bytes_received: u64,
    /// Retransmission timeouts.
    pub rto_expiries: u64,
    /// Fast-recovery episodes.
    pub fast_recoveries: u64,
    /// Segments dropped as unacceptable (out of window, PAWS, bad ACK).
    pub dropped: u64,
    /// Challenge ACKs sent (RFC 5961).
    pub challenge_acks: u64,
    /// ACKs not sent for unacceptable segments without data, because of the rate limit.
    pub invalid_acks_suppressed: u64,
    /// Duplicate segments received.
    pub dup_segments: u64,
    /// Out-of-order segments received.
    pub ooo_segments: u64,
    /// Retransmissions of the first hole found lost (segments sent after them were SACKed)
    /// and sent again without waiting for the retransmission timer.
    pub lost_retransmits: u64,
    /// Timeouts that found the peer had reneged on its SACKs (the byte at `snd_una` was
    /// SACKed): the scoreboard was forgotten and the data went again from `snd_una`.
    pub sack_reneging: u64,
}

/// What the MPTCP layer sees of an outgoing segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingInfo {
    /// Flags of the segment.
    pub flags: TcpFlags,
    /// First sequence number of the payload (after SYN).
    pub seq: TcpSeq,
    /// Payload length.
    pub len: usize,
    /// Whether this payload was sent before.
    pub retransmission: bool,
    /// The chunk the payload belongs to, if the data was sent with [`Connection::send_chunk`]:
    /// `(first sequence number of the chunk, chunk length, tag)`.
    pub chunk: Option<(TcpSeq, usize, u64)>,
}

/// Per-segment hooks of the MPTCP layer. The defaults do nothing (plain TCP).
pub trait Hooks {
    /// Add options to an outgoing segment. `options.room()` is what is left of the 40 bytes;
    /// options that do not fit make the segment unsendable, so a hook must check.
    fn on_transmit(&mut self, _info: &OutgoingInfo, _options: &mut TcpOptions) {}
    /// An incoming segment passed the sequence and ACK checks (its options are now trusted as
    /// much as TCP trusts anything).
    fn on_receive(&mut self, _segment: &TcpSegment<'_>) {}
    /// In-order payload at `seq` (= RCV.NXT) with nothing buffered before or after it: return
    /// true to take all of it now, so that it is never stored in the receive buffer (the engine
    /// then acknowledges it as received and read). Called after [`Hooks::on_receive`] for the
    /// same segment.
    fn deliver(&mut self, _seq: TcpSeq, _payload: &[u8]) -> bool {
        false
    }
    /// Fill `out` with the payload of the outgoing segment `info` when it lies in a chunk
    /// queued with [`Connection::send_chunk_external`] (the engine holds no copy of it); false
    /// if the bytes are not available (the segment is then not sent).
    fn payload(&mut self, _info: &OutgoingInfo, _out: &mut [u8]) -> bool {
        false
    }
    /// Option bytes to keep free on every data segment (e.g. a DSS mapping), so the payload
    /// size leaves room for them.
    fn reserved_option_space(&self) -> usize {
        0
    }
}

/// Plain TCP: no hooks.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;
impl Hooks for NoHooks {}

/// The least time between two ACKs for unacceptable segments without data.
const INVALID_ACK_INTERVAL: Duration = Duration::from_millis(500);
/// RFC 6675 DupThresh.
const DUP_THRESH: u32 = 3;
/// The largest window field.
const MAX_WINDOW_FIELD: usize = u16::MAX as usize;
/// The most retransmissions remembered for lost-retransmit detection (see `rxt_marks`).
const MAX_RXT_MARKS: usize = 4096;
/// The tag bit of chunks whose bytes the engine does not hold (see `send_chunk_external`).
const EXTERNAL_CHUNK: u64 = 1 << 63;
/// Send an immediate ACK for every second full-sized segment (RFC 9293 section 3.8.6.3).
const ACK_EVERY: u32 = 2;
/// The largest IP packet (the 16-bit length fields): the bound of a super segment.
const MAX_IP_PACKET: usize = u16::MAX as usize;
/// The largest IP and TCP headers with options (IPv6, 60-byte TCP header).
const MAX_HEADERS: usize = 40 + 60;

/// State most connections never need, allocated on first use and then kept, so that it costs
/// nothing until then and no allocation per packet after.
#[derive(Debug, Default)]
struct Lazy<T>(Option<Box<T>>);

/// A value whose empty state can be borrowed for free.
trait Empty: Default + 'static {
    /// The empty value.
    const EMPTY: &'static Self;
}

impl<T: Empty> Lazy<T> {
    /// The value (the empty one before it was allocated).
    fn get(&self) -> &T {
        self.0.as_deref().unwrap_or(T::EMPTY)
    }
    /// The value, allocated now if it was not.
    fn get_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }
    /// The value if it was allocated.
    fn get_if_mut(&mut self) -> Option<&mut T> {
        self.0.as_deref_mut()
    }
}

/// The sender's loss-recovery state (RFC 6675) beyond a few sequence numbers.
#[derive(Debug, Default)]
struct LossBoard {
    /// SACKed ranges above `snd_una`, in order, merged.
    sacked: Vec<(TcpSeq, TcpSeq)>,
    /// The retransmissions of this recovery, in sequence order: where each starts and what
    /// `snd_nxt` was when it went. Data sent after one being SACKed (DupThresh segments' worth)
    /// while it still is the hole at `snd_una` means it was lost too, as Linux's
    /// lost-retransmit detection reasons; without this only the RTO would repair it, with the
    /// window collapsed to one segment. At most [`MAX_RXT_MARKS`].
    rxt_marks: VecDeque<(TcpSeq, TcpSeq)>,
    /// Retransmissions found lost, to send again first: unSACKed bytes from the first
    /// sequence number up to the second.
    rerxt: Option<(TcpSeq, TcpSeq)>,
}

impl Empty for LossBoard {
    const EMPTY: &'static Self = &LossBoard {
        sacked: Vec::new(),
        rxt_marks: VecDeque::new(),
        rerxt: None,
    };
}

impl Lazy<LossBoard> {
    /// A recovery ended: forget its retransmissions.
    fn clear_recovery(&mut self) {
        if let Some(loss) = self.get_if_mut() {
            loss.rxt_marks.clear();
            loss.rerxt = None;
        }
    }
}

/// The receiver's out-of-order ranges.
#[derive(Debug, Default)]
struct Reorder {
    /// Ranges held beyond `rcv_nxt`, in order, merged.
    ooo: Vec<(TcpSeq, TcpSeq)>,
    /// The range the latest out-of-order segment went into (the first SACK block).
    last_ooo: Option<(TcpSeq, TcpSeq)>,
}

impl Empty for Reorder {
    const EMPTY: &'static Self = &Reorder {
        ooo: Vec::new(),
        last_ooo: None,
    };
}

/// The one segment being timed for an RTT sample (Karn: never a retransmitted one): its
/// sequence number and when it was sent, or nothing while the send time is unset. 16 bytes,
/// where `Option<(TcpSeq, Instant)>` takes 24.
#[derive(Debug, Clone, Copy)]
struct RttProbe {
    seq: TcpSeq,
    sent: Deadline,
}

impl RttProbe {
    const NONE: RttProbe = RttProbe {
        seq: TcpSeq(0),
        sent: Deadline::NONE,
    };

    fn new(seq: TcpSeq, sent: Instant) -> Self {
        RttProbe {
            seq,
            sent: Deadline::at(sent),
        }
    }

    fn get(self) -> Option<(TcpSeq, Instant)> {
        self.sent.get().map(|t| (self.seq, t))
    }

    fn take(&mut self) -> Option<(TcpSeq, Instant)> {
        let p = self.get();
        *self = Self::NONE;
        p
    }

    fn is_none(self) -> bool {
        !self.sent.is_set()
    }
}

/// A TCP connection.
#[derive(Debug)]
pub struct Connection {
    /// Shared by the connections of one endpoint (it does not change).
    cfg: Arc<Config>,
    state: State,
    local: SocketAddr,
    remote: SocketAddr,
    error: Option<ConnError>,

    // Send side. `tx` holds the bytes from `snd_una` (or ISS+1 before the SYN is acked) on.
    iss: TcpSeq,
    snd_una: TcpSeq,
    snd_nxt: TcpSeq,
    snd_max: TcpSeq,
    snd_wnd: usize,
    max_snd_wnd: usize,
    snd_wl1: TcpSeq,
    snd_wl2: TcpSeq,
    snd_shift: u8,
    tx: Ring,
    /// Chunks still in `tx`: (first sequence number, end, tag).
    chunks: VecDeque<(TcpSeq, TcpSeq, u64)>,
    fin_queued: bool,
    syn_acked: bool,

    // Receive side. `rx` holds in-order bytes not yet read, then out-of-order data by offset.
    irs: TcpSeq,
    rcv_nxt: TcpSeq,
    rcv_shift: u8,
    rcv_adv: TcpSeq,
    rx: Ring,
    /// Out-of-order data held in `rx`, allocated when the first arrives.
    reorder: Lazy<Reorder>,
    peer_fin: Option<TcpSeq>,

    // Options.
    ts_ok: bool,
    ws_ok: bool,
    ts_recent: u32,
    ts_offset: u32,
    sack_ok: bool,
    peer_mss: usize,

    // Loss recovery (RFC 6675 / 6582).
    /// The SACK scoreboard and the retransmissions of this recovery, allocated when the first
    /// SACK block or retransmission needs them.
    loss: Lazy<LossBoard>,
    dupacks: u32,
    in_recovery: bool,
    recovery_point: TcpSeq,
    high_rxt: TcpSeq,
    lost_end: TcpSeq,
    rto_recovery: bool,
    /// One retransmission allowed whatever the window says: the first on entering recovery
    /// (RFC 6675 section 5 step 4.3) and one per partial ACK without SACK (RFC 6582).
    rexmit_credit: bool,
    /// Partial ACKs of this fast recovery that came without any SACK information.
    blind_partial_acks: u32,
    /// A lost retransmission was found in this recovery, and the window reduced for it.
    lost_rxt_reduced: bool,

    rtt: RttEstimator,
    rtt_probe: RttProbe,
    /// The RTT the echoed timestamp of the ACK being processed shows (1 ms resolution): a
    /// sample on every ACK for the congestion controller (HyStart), while the RTO estimator
    /// keeps its one timed segment per round trip.
    ts_rtt: ShortDuration,
    /// An upper bound on the backed-off retransmission timer (see [`Connection::set_rto_cap`]).
    rto_cap: ShortDuration,
    cc: Box<dyn CongestionControl>,

    // Timers.
    rto_at: Deadline,
    delack_at: Deadline,
    persist_at: Deadline,
    keepalive_at: Deadline,
    time_wait_at: Deadline,
    retries: u32,

    // Output flags.
    ack_now: bool,
    last_invalid_ack: Deadline,
    /// Duplicate ACKs owed: one per out-of-order segment, even when several arrive in one
    /// batch, because the peer counts them (RFC 5681 section 4.2).
    acks_owed: u8,
    segs_unacked: u32,
    send_rst: bool,
    rst_reply: Option<TcpSeq>,
    probe_now: bool,
    keepalive_now: bool,
    keepalive_probes: u32,
    syn_rexmit: bool,
    last_window_sent: usize,

    stats: Stats,
}

impl Connection {
    fn new(
        cfg: Arc<Config>,
        local: SocketAddr,
        remote: SocketAddr,
        iss: TcpSeq,
        ts_offset: u32,
    ) -> Self {
        let rcv_shift = if cfg.window_scaling {
            let mut shift = 0u8;
            while (cfg.rx_buffer >> shift) > MAX_WINDOW_FIELD && shift < tcp_field::MAX_WINDOW_SHIFT
            {
                shift += 1;
            }
            shift
        } else {
            0
        };
        let mss = usize::from(cfg.mss);
        let c = &*cfg;
        let (tx, rx) = (Ring::new(c.tx_buffer), Ring::new(c.rx_buffer));
        let rtt = RttEstimator::new(c.initial_rto, c.min_rto, c.max_rto);
        let cc = c.cc.build(mss);
        Connection {
            cfg,
            state: State::Closed,
            local,
            remote,
            error: None,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: TcpSeq(0),
            snd_wl2: iss,
            snd_shift: 0,
            tx,
            chunks: VecDeque::new(),
            fin_queued: false,
            syn_acked: false,
            irs: TcpSeq(0),
            rcv_nxt: TcpSeq(0),
            rcv_shift,
            rcv_adv: TcpSeq(0),
            rx,
            reorder: Lazy::default(),
            peer_fin: None,
            ts_ok: false,
            ws_ok: false,
            ts_recent: 0,
            ts_offset,
            sack_ok: false,
            peer_mss: 536,
            loss: Lazy::default(),
            dupacks: 0,
            in_recovery: false,
            recovery_point: iss,
            high_rxt: iss,
            lost_end: iss,
            rto_recovery: false,
            rexmit_credit: false,
            blind_partial_acks: 0,
            lost_rxt_reduced: false,
            rtt,
            rtt_probe: RttProbe::NONE,
            ts_rtt: ShortDuration::NONE,
            rto_cap: ShortDuration::NONE,
            cc,
            rto_at: Deadline::NONE,
            delack_at: Deadline::NONE,
            persist_at: Deadline::NONE,
            keepalive_at: Deadline::NONE,
            time_wait_at: Deadline::NONE,
            retries: 0,
            ack_now: false,
            last_invalid_ack: Deadline::NONE,
            acks_owed: 0,
            segs_unacked: 0,
            send_rst: false,
            rst_reply: None,
            probe_now: false,
            keepalive_now: false,
            keepalive_probes: 0,
            syn_rexmit: false,
            last_window_sent: 0,
            stats: Stats::default(),
        }
    }

    /// Active open: the SYN goes out at the next [`Connection::poll_transmit`].
    /// `iss` and `ts_offset` come from the endpoint's random generator.
    pub fn connect(
        cfg: impl Into<Arc<Config>>,
        local: SocketAddr,
        remote: SocketAddr,
        iss: TcpSeq,
        ts_offset: u32,
    ) -> Self {
        let mut c = Self::new(cfg.into(), local, remote, iss, ts_offset);
        c.state = State::SynSent;
        c.syn_rexmit = true;
        c
    }

    /// Passive open from a received SYN (the endpoint checked it is a SYN for a listener).
    pub fn accept(
        cfg: impl Into<Arc<Config>>,
        local: SocketAddr,
        remote: SocketAddr,
        iss: TcpSeq,
        ts_offset: u32,
        syn: &TcpSegment<'_>,
    ) -> Self {
        let mut c = Self::new(cfg.into(), local, remote, iss, ts_offset);
        c.state = State::SynReceived;
        c.take_syn_options(syn);
        c.irs = syn.seq;
        c.rcv_nxt = syn.seq + 1;
        c.rcv_adv = c.rcv_nxt;
        // RFC 7323 section 2.2: the window of a SYN is never scaled.
        c.snd_wnd = usize::from(syn.window);
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = syn.seq;
        c.syn_rexmit = true;
        c.stats.segs_in += 1;
        c
    }

    /// A passive open rebuilt from a SYN cookie: `syn` is the SYN as the cookie remembers it,
    /// and its SYN/ACK already went out (statelessly, with `iss` as the cookie), so the
    /// connection waits for the third ACK with nothing to retransmit. It is fed that ACK
    /// next.
    pub fn accept_cookie(
        cfg: impl Into<Arc<Config>>,
        local: SocketAddr,
        remote: SocketAddr,
        iss: TcpSeq,
        ts_offset: u32,
        syn: &TcpSegment<'_>,
    ) -> Self {
        let mut c = Self::accept(cfg, local, remote, iss, ts_offset, syn);
        c.syn_rexmit = false;
        c.snd_nxt = iss + 1;
        c.snd_max = iss + 1;
        c
    }

    /// Forget the connection without a word (no RST): an evicted half-open handshake whose
    /// peer may well be spoofed.
    pub fn forget(&mut self) {
        self.send_rst = false;
        self.rst_reply = None;
        self.enter_closed(Some(ConnError::Aborted));
    }

    fn take_syn_options(&mut self, syn: &TcpSegment<'_>) {
        let o = &syn.options;
        if let Some(mss) = o.mss {
            // RFC 9293 section 3.7.1; a peer MSS below 88 is nonsense (Linux's floor is 88).
            self.peer_mss = usize::from(mss).max(88);
        }
        if self.cfg.window_scaling {
            if let Some(shift) = o.window_scale {
                // RFC 7323 section 2.3: a shift above 14 is treated as 14.
                self.snd_shift = shift.min(tcp_field::MAX_WINDOW_SHIFT);
                self.ws_ok = true;
            } else {
                self.rcv_shift = 0;
            }
        }
        if self.cfg.timestamps
            && let Some(ts) = o.timestamp
        {
            self.ts_ok = true;
            self.ts_recent = ts.tsval;
        }
        self.sack_ok = self.cfg.sack && o.sack_permitted;
        let mss = self.effective_mss(0);
        self.cc.set_mss(mss);
    }

    // ---- accessors ---------------------------------------------------------------------------

    /// The state.
    pub fn state(&self) -> State {
        self.state
    }
    /// The local address.
    pub fn local(&self) -> SocketAddr {
        self.local
    }
    /// The remote address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }
    /// Why the connection failed, if it did.
    pub fn error(&self) -> Option<ConnError> {
        self.error
    }
    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// The smoothed RTT, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }
    /// The smallest RTT measured.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.rtt.min_rtt()
    }
    /// The current RTO.
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }
    /// The slow-start threshold in bytes.
    pub fn ssthresh(&self) -> usize {
        self.cc.ssthresh()
    }
    /// The congestion window in bytes.
    pub fn cwnd(&self) -> usize {
        self.cc.window()
    }
    /// The congestion controller's name.
    pub fn cc_name(&self) -> &'static str {
        self.cc.name()
    }
    /// A snapshot of this subflow's congestion state for [`couple`](super::coupled::couple):
    /// the controller's window and loss history, this engine's MSS and smoothed RTT.
    pub fn cc_path_sample(&self) -> PathSample {
        self.cc.path_sample(self.mss(), self.rtt.srtt())
    }
    /// Hands the controller its coupling with the sibling subflows (ignored by Reno and CUBIC).
    pub fn set_coupling(&mut self, coupling: &Coupling) {
        self.cc.set_coupling(coupling);
    }
    /// Reduces the congestion window once (halves it, for Reno, LIA and OLIA): the MPTCP layer
    /// penalises a subflow that holds back the connection-level window. Each call reduces the
    /// window again; the caller limits how often (e.g. once per RTT).
    pub fn penalize(&mut self, now: Instant) {
        self.cc.on_penalty(now);
    }
    /// The peer's receive window in bytes.
    pub fn peer_window(&self) -> usize {
        self.snd_wnd
    }
    /// The window (in bytes) on the last ACK sent.
    pub fn advertised_window(&self) -> usize {
        self.last_window_sent
    }
    /// The window the next ACK would advertise.
    pub fn receive_window(&self) -> usize {
        self.window_to_advertise()
    }
    /// Bytes sent and not yet acknowledged (cumulatively or by SACK), as RFC 6675's pipe.
    pub fn bytes_in_flight(&self) -> usize {
        self.pipe()
    }
    /// The first unacknowledged sequence number.
    pub fn snd_una(&self) -> TcpSeq {
        self.snd_una
    }
    /// The next sequence number to send.
    pub fn snd_nxt(&self) -> TcpSeq {
        self.snd_nxt
    }
    /// The next sequence number expected.
    pub fn rcv_nxt(&self) -> TcpSeq {
        self.rcv_nxt
    }
    /// The most bytes the receive buffer holds (its configured limit).
    pub fn recv_buffer_limit(&self) -> usize {
        self.rx.limit()
    }
    /// The initial send sequence number.
    pub fn iss(&self) -> TcpSeq {
        self.iss
    }
    /// The initial receive sequence number.
    pub fn irs(&self) -> TcpSeq {
        self.irs
    }
    /// Whether the peer agreed to SACK.
    pub fn sack_enabled(&self) -> bool {
        self.sack_ok
    }
    /// Whether timestamps are in use.
    pub fn timestamps_enabled(&self) -> bool {
        self.ts_ok
    }
    /// The window shifts in use: (ours, the peer's).
    pub fn window_shifts(&self) -> (u8, u8) {
        (self.rcv_shift, self.snd_shift)
    }
    /// Whether loss recovery is under way.
    pub fn in_recovery(&self) -> bool {
        self.in_recovery
    }
    /// Payload bytes per full segment with the options in use.
    pub fn mss(&self) -> usize {
        self.effective_mss(0)
    }
    /// The bytes of memory the buffers hold (allocated, not limits).
    pub fn buffer_memory(&self) -> usize {
        self.tx.allocated() + self.rx.allocated()
    }

    /// Payload per segment: the smaller MSS of the two sides, less timestamps and `reserved`
    /// option bytes.
    fn effective_mss(&self, reserved: usize) -> usize {
        let base = self.peer_mss.min(usize::from(self.cfg.mss));
        let ts = if self.ts_ok { 12 } else { 0 };
        base.saturating_sub(ts + reserved).max(64)
    }

    // ---- application side ----------------------------------------------------------------------

    /// Whether the application may still send.
    pub fn can_send(&self) -> bool {
        matches!(
            self.state,
            State::SynSent | State::SynReceived | State::Established | State::CloseWait
        ) && !self.fin_queued
    }

    /// Room in the send buffer.
    pub fn send_capacity(&self) -> usize {
        if self.can_send() { self.tx.free() } else { 0 }
    }

    /// Bytes queued and not yet acknowledged.
    pub fn send_queue(&self) -> usize {
        self.tx.len()
    }

    /// Queue data; returns how much was taken.
    pub fn send(&mut self, data: &[u8]) -> usize {
        if !self.can_send() {
            return 0;
        }
        self.tx.push(data)
    }

    /// Queue `data` as one chunk that no segment will cross, tagged `tag`; all or nothing.
    pub fn send_chunk(&mut self, data: &[u8], tag: u64) -> bool {
        self.send_chunk_parts(data, &[], tag)
    }

    /// [`send_chunk`](Connection::send_chunk) of the bytes of `first` followed by `second`
    /// (as one chunk: the two pieces of a ring, copied once).
    pub fn send_chunk_parts(&mut self, first: &[u8], second: &[u8], tag: u64) -> bool {
        let len = first.len() + second.len();
        if !self.can_send() || len == 0 || len > self.tx.free() {
            return false;
        }
        let start = self.tx_seq_at(self.tx.len());
        self.tx.push(first);
        self.tx.push(second);
        self.chunks.push_back((start, start + len as u32, tag));
        true
    }

    /// Queue `len` bytes as one chunk, like [`send_chunk`](Connection::send_chunk), whose
    /// content the engine does not copy: every segment that carries them (the first time or as
    /// a retransmission) gets them from [`Hooks::payload`]. The MPTCP layer uses it to send
    /// from its own buffer, one copy fewer per byte. `tag` must be below 2^63.
    pub fn send_chunk_external(&mut self, len: usize, tag: u64) -> bool {
        if !self.can_send() || len == 0 || len > self.tx.free() || tag & EXTERNAL_CHUNK != 0 {
            return false;
        }
        let start = self.tx_seq_at(self.tx.len());
        self.tx.push_phantom(len);
        self.chunks
            .push_back((start, start + len as u32, tag | EXTERNAL_CHUNK));
        true
    }

    /// Take a copy of the bytes of the external chunk `tag` (all of it, `first` then `second`),
    /// so that its segments no longer need [`Hooks::payload`]: the MPTCP layer does so when
    /// keeping them for this subflow would hold back its own buffer. Bytes already acknowledged
    /// are skipped. False if there is no such chunk or the length differs.
    pub fn own_chunk(&mut self, tag: u64, first: &[u8], second: &[u8]) -> bool {
        let raw = tag | EXTERNAL_CHUNK;
        let Some(k) = self.chunks.iter().position(|c| c.2 == raw) else {
            return false;
        };
        let (start, end, _) = self.chunks[k];
        if first.len() + second.len() != end.distance_from(start) as usize {
            return false;
        }
        let base = self.tx_base();
        let skip = base.distance_from(start).max(0) as usize;
        let at = start.distance_from(base).max(0) as usize;
        if skip < first.len() {
            self.tx.write_at(at, &first[skip..]);
            self.tx.write_at(at + first.len() - skip, second);
        } else {
            self.tx.write_at(at, &second[skip - first.len()..]);
        }
        self.chunks[k].2 = tag;
        true
    }

    /// The sequence number of the byte at `offset` into `tx`.
    fn tx_seq_at(&self, offset: usize) -> TcpSeq {
        self.tx_base() + offset as u32
    }

    /// The sequence number of `tx[0]`.
    fn tx_base(&self) -> TcpSeq {
        if self.syn_acked {
            self.snd_una
        } else {
            self.iss + 1
        }
    }

    /// Bytes ready to read.
    pub fn recv_available(&self) -> usize {
        self.rx.len()
    }

    /// The sequence number of the next byte [`Connection::recv`] returns.
    pub fn recv_seq(&self) -> TcpSeq {
        self.rcv_nxt - self.rx.len() as u32 - u32::from(self.fin_consumed())
    }

    fn fin_consumed(&self) -> bool {
        self.peer_fin.is_some_and(|f| f + 1 == self.rcv_nxt)
    }

    /// Read in-order data; returns the count. Opening the window may schedule an update.
    pub fn recv(&mut self, buf: &mut [u8]) -> usize {
        let n = self.recv_peek(0, buf);
        self.recv_consume(n);
        n
    }

    /// Copy in-order data from `offset` on without consuming it; returns the count.
    pub fn recv_peek(&self, offset: usize, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.rx.len().saturating_sub(offset));
        self.rx.read_at(offset, &mut buf[..n]);
        n
    }

    /// Up to `n` bytes of in-order data from `offset` on, without copying: the (at most) two
    /// contiguous pieces of the receive buffer they occupy, in order.
    pub fn recv_slices(&self, offset: usize, n: usize) -> (&[u8], &[u8]) {
        let n = n.min(self.rx.len().saturating_sub(offset));
        self.rx.slices_at(offset, n)
    }

    /// Drop `n` bytes of in-order data (after [`Connection::recv_peek`]).
    pub fn recv_consume(&mut self, n: usize) {
        let before = self.window_to_advertise();
        self.rx.consume(n);
        if n > 0 {
            // RFC 9293 section 3.8.6.2.2 (and Linux's rule): announce the window at once only
            // when it grew enough to matter to the peer: doubled, and by at least one MSS (or
            // half the buffer). A window that never constrained the peer waits for the next
            // ACK, so draining the buffer does not defeat delayed ACKs.
            let after = self.window_to_advertise();
            let mss = usize::from(self.cfg.mss);
            let last = self.last_window_sent;
            if self.state.is_synchronized()
                && before < after
                && after >= (2 * last).max(last + mss.min(self.cfg.rx_buffer / 2))
            {
                self.ack_now = true;
            }
        }
    }

    /// Send an ACK at the next transmission opportunity (the MPTCP layer uses it to carry a
    /// DATA_ACK, a DATA_FIN or a signal when the subflow has nothing else to send).
    pub fn request_ack(&mut self) {
        if self.state.is_synchronized() {
            self.ack_now = true;
        }
    }

    /// Send a window probe (a segment with an old sequence number, which the peer answers
    /// with an ACK and its current window): for MPTCP's data-level persist timer, when the
    /// connection-level window is shut and this subflow has nothing of its own to send.
    pub fn probe_window(&mut self) {
        if self.state.is_synchronized() {
            self.probe_now = true;
        }
    }

    /// The sequence number the next byte given to [`Connection::send`] will get.
    pub fn next_send_seq(&self) -> TcpSeq {
        self.tx_base() + self.tx.len() as u32
    }

    /// Whether the handshake's SYN was acknowledged by the peer.
    pub fn syn_acked(&self) -> bool {
        self.syn_acked
    }

    /// Whether the peer closed its direction and everything before its FIN was read.
    pub fn recv_finished(&self) -> bool {
        self.fin_consumed() && self.rx.is_empty()
    }

    /// Close our direction: a FIN follows the queued data.
    pub fn close(&mut self) {
        match self.state {
            // RFC 9293 section 3.10.4: CLOSE in SYN-SENT deletes the connection, or, with
            // sends queued, the FIN is queued behind them (the implementation's choice there).
            State::SynSent if self.tx.is_empty() => self.enter_closed(None),
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => {
                self.fin_queued = true
            }
            _ => {}
        }
    }

    /// Abort: send RST and forget the connection.
    pub fn abort(&mut self) {
        if self.state.is_synchronized() || self.state == State::SynReceived {
            self.send_rst = true;
        }
        self.enter_closed(Some(ConnError::Aborted));
    }

    /// Whether the connection is finished and may be forgotten.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed && !self.send_rst
    }

    fn enter_closed(&mut self, error: Option<ConnError>) {
        self.state = State::Closed;
        if error.is_some() && self.error.is_none() {
            self.error = error;
        }
        self.rto_at.clear();
        self.delack_at.clear();
        self.persist_at.clear();
        self.keepalive_at.clear();
        self.time_wait_at.clear();
    }

    // ---- receive path --------------------------------------------------------------------------

    fn window_to_advertise(&self) -> usize {
        // Out-of-order bytes already sit inside the window; the window counts from rcv_nxt.
        self.rx.free().min(MAX_WINDOW_FIELD << self.rcv_shift)
    }

    fn ts_now(&self, now: Instant) -> u32 {
        (now.total_millis() as u32).wrapping_add(self.ts_offset)
    }

    /// Process one segment addressed to this connection.
    pub fn handle_segment(&mut self, now: Instant, seg: &TcpSegment<'_>, hooks: &mut impl Hooks) {
        self.stats.segs_in += 1;
        if let Some(idle) = self.cfg.keepalive {
            self.keepalive_at.set(now + idle);
            self.keepalive_probes = 0;
        }
        match self.state {
            State::Closed => {}
            State::SynSent => self.handle_syn_sent(now, seg, hooks),
            _ => self.handle_synchronized(now, seg, hooks),
        }
    }

    fn handle_syn_sent(&mut self, now: Instant, seg: &TcpSegment<'_>, hooks: &mut impl Hooks) {
        let f = seg.flags;
        // RFC 9293 section 3.10.7.3, first check the ACK bit.
        let ack_ok = f.ack()
            && seg.ack.distance_from(self.iss) > 0
            && seg.ack.distance_from(self.snd_nxt) <= 0;
        if f.ack() && !ack_ok {
            if !f.rst() {
                self.reply_rst_to(seg);
            }
            self.stats.dropped += 1;
            return;
        }
        if f.rst() {
            // RFC 5961 section 3.2 in SYN-SENT: only an RST that acknowledges our SYN counts.
            if ack_ok {
                self.enter_closed(Some(ConnError::Refused));
            } else {
                self.stats.dropped += 1;
            }
            return;
        }
        if !f.syn() {
            self.stats.dropped += 1;
            return;
        }
        self.take_syn_options(seg);
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq + 1;
        self.rcv_adv = self.rcv_nxt;
        self.snd_wl1 = seg.seq;
        if ack_ok {
            self.syn_acked = true;
            self.snd_una = seg.ack;
            self.snd_wl2 = seg.ack;
            self.snd_wnd = usize::from(seg.window);
            self.max_snd_wnd = self.snd_wnd;
            if self.rtt.backoff_count() == 0
                && let Some((probe, sent)) = self.rtt_probe.take()
                && probe.distance_from(seg.ack) < 0
            {
                self.rtt.sample(now - sent);
            }
            self.rtt_probe = RttProbe::NONE;
            self.state = State::Established;
            self.syn_rexmit = false;
            self.retries = 0;
            self.rto_at.clear();
            self.ack_now = true;
            hooks.on_receive(seg);
            self.restart_rto_if_needed(now);
        } else {
            // Simultaneous open (RFC 9293 section 3.5, figure 8).
            self.state = State::SynReceived;
            self.syn_rexmit = true;
            self.snd_nxt = self.iss;
            hooks.on_receive(seg);
        }
    }

    /// The RFC 9293 acceptability test (section 3.10.7.4, first check).
    fn acceptable(&self, seg: &TcpSegment<'_>) -> bool {
        let len = seg.seq_len() as u32;
        let wnd = self.window_to_advertise() as u32;
        let rel = seg.seq.distance_from(self.rcv_nxt);
        let in_window = |s: TcpSeq| {
            let d = s.distance_from(self.rcv_nxt);
            d >= 0 && (d as u32) < wnd
        };
        match (len, wnd) {
            (0, 0) => rel == 0,
            (0, _) => in_window(seg.seq),
            (_, 0) => false,
            _ => in_window(seg.seq) || in_window(seg.seq + (len - 1)),
        }
    }

    /// Answer an unacceptable segment with an ACK. A retransmitted segment with data always
    /// gets one (the peer may have lost ours); segments without data get at most one per
    /// half second (RFC 5961 section 7, as Linux's `tcp_invalid_ratelimit`), so two ends
    /// that disagree cannot bounce ACKs forever.
    fn invalid_ack(&mut self, now: Instant, seg: &TcpSegment<'_>) {
        if !seg.payload.is_empty() {
            self.ack_now = true;
            return;
        }
        if self
            .last_invalid_ack
            .get()
            .is_some_and(|t| now - t < INVALID_ACK_INTERVAL)
        {
            self.stats.invalid_acks_suppressed += 1;
            return;
        }
        self.last_invalid_ack.set(now);
        self.ack_now = true;
    }

    fn challenge_ack(&mut self) {
        self.stats.challenge_acks += 1;
        self.ack_now = true;
    }

    fn handle_synchronized(&mut self, now: Instant, seg: &TcpSegment<'_>, hooks: &mut impl Hooks) {
        let f = seg.flags;
        // A retransmitted SYN while we wait for the handshake's ACK: send the SYN/ACK again.
        if self.state == State::SynReceived && f.syn() && !f.ack() && seg.seq == self.irs {
            self.syn_rexmit = true;
            return;
        }
        // RFC 7323 section 5.3: PAWS.
        if self.ts_ok
            && !f.rst()
            && let Some(ts) = seg.options.timestamp
            && TcpSeq(ts.tsval) < TcpSeq(self.ts_recent)
        {
            self.stats.dropped += 1;
            self.invalid_ack(now, seg);
            return;
        }
        if !self.acceptable(seg) {
            self.stats.dropped += 1;
            if seg.seq.distance_from(self.rcv_nxt) < 0 && seg.seq_len() > 0 {
                self.stats.dup_segments += 1;
            }
            if !f.rst() {
                self.invalid_ack(now, seg);
            }
            // A FIN retransmitted into TIME-WAIT restarts the 2 MSL timer.
            if self.state == State::TimeWait && f.fin() {
                self.time_wait_at.set(now + self.cfg.time_wait);
            }
            return;
        }
        if f.rst() {
            // RFC 5961 section 3.2: only an exact match resets; in-window gets a challenge.
            if seg.seq == self.rcv_nxt {
                // The MPTCP layer reads MP_FASTCLOSE and MP_TCPRST from a valid RST.
                hooks.on_receive(seg);
                let err = match self.state {
                    State::SynReceived => ConnError::Refused,
                    State::Closing | State::LastAck | State::TimeWait => {
                        self.enter_closed(None);
                        return;
                    }
                    _ => ConnError::Reset,
                };
                self.enter_closed(Some(err));
            } else {
                self.challenge_ack();
            }
            return;
        }
        if f.syn() {
            // RFC 5961 section 4.2: a SYN in a synchronized state gets a challenge ACK.
            self.challenge_ack();
            return;
        }
        if !f.ack() {
            self.stats.dropped += 1;
            return;
        }
        // The ACK field.
        if self.state == State::SynReceived {
            if seg.ack.distance_from(self.snd_una) > 0 && seg.ack.distance_from(self.snd_nxt) <= 0 {
                self.state = State::Established;
                self.syn_acked = true;
                self.syn_rexmit = false;
                self.snd_una = self.iss + 1;
                self.snd_wnd = usize::from(seg.window) << self.snd_shift;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = seg.ack;
                self.retries = 0;
                self.rto_at.clear();
                if self.rtt.backoff_count() == 0
                    && let Some((_, sent)) = self.rtt_probe.take()
                {
                    self.rtt.sample(now - sent);
                }
                self.rtt_probe = RttProbe::NONE;
            } else {
                self.reply_rst_to(seg);
                return;
            }
        }
        // RFC 5961 section 5.2: ACKs too old or for data never sent.
        let max_back = self.max_snd_wnd.max(1) as i64;
        if seg.ack.distance_from(self.snd_max) > 0 {
            self.stats.dropped += 1;
            self.invalid_ack(now, seg);
            return;
        }
        if i64::from(seg.ack.distance_from(self.snd_una)) < -max_back {
            self.stats.dropped += 1;
            self.invalid_ack(now, seg);
            return;
        }
        if self.ts_ok
            && let Some(ts) = seg.options.timestamp
        {
            // RFC 7323 section 4.3: remember TSval of segments that cover rcv_nxt.
            if seg.seq.distance_from(self.rcv_nxt) <= 0
                && TcpSeq(ts.tsval) >= TcpSeq(self.ts_recent)
            {
                self.ts_recent = ts.tsval;
            }
        }
        hooks.on_receive(seg);
        self.process_ack(now, seg);
        if self.state == State::Closed {
            return;
        }
        if !seg.payload.is_empty() || f.fin() {
            self.process_data(now, seg, hooks);
        }
    }

    fn process_ack(&mut self, now: Instant, seg: &TcpSegment<'_>) {
        let ack = seg.ack;
        let window = usize::from(seg.window) << self.snd_shift;
        let advanced = ack.distance_from(self.snd_una) > 0;
        // RFC 9293 section 3.10.7.4: window update rule (SND.WL1/SND.WL2).
        let window_changed = window != self.snd_wnd;
        if self.snd_wl1.distance_from(seg.seq) < 0
            || (self.snd_wl1 == seg.seq && self.snd_wl2.distance_from(ack) <= 0)
        {
            self.snd_wnd = window;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            if window > 0 {
                self.persist_at.clear();
            }
        }
        let mut newly_sacked = 0;
        if self.sack_ok && !seg.options.sack.is_empty() {
            newly_sacked = self.update_scoreboard(seg.options.sack);
            self.detect_lost_retransmissions(now, ack);
        }
        let in_flight_before = self.pipe();
        if advanced {
            // RFC 7323 section 4.1: only an ACK that advances SND.UNA gives an RTT sample.
            self.ts_rtt = seg
                .options
                .timestamp
                .filter(|ts| self.ts_ok && ts.tsecr != 0)
                .map(|ts| self.ts_now(now).wrapping_sub(ts.tsecr) as i32)
                .filter(|ms| (0..60_000).contains(ms))
                .map(|ms| Duration::from_millis(ms as u64))
                .into();
            self.ack_advanced(now, ack, in_flight_before, newly_sacked);
            self.ts_rtt = ShortDuration::NONE;
        } else if ack == self.snd_una
            && seg.payload.is_empty()
            && !seg.flags.fin()
            && self.snd_max != self.snd_una
            && (!window_changed || newly_sacked > 0)
        {
            // RFC 5681 section 2: a duplicate ACK.
            self.dupacks += 1;
            self.maybe_enter_recovery(now);
            if self.in_recovery {
                self.update_lost_end();
            }
        }
        if ack == self.snd_una {
            self.check_sack_reneging(now);
        }
    }

    /// Retransmissions are lost when the peer SACKs DupThresh segments' worth of data sent
    /// after them (on one path data overtakes only when reordered by more than that, the
    /// bound fast retransmit takes too). Looked at when the hole at `ack` (the new `snd_una`)
    /// is one we retransmitted: then it and every later retransmission that went before the
    /// SACKed evidence and is not SACKed are sent again.
    fn detect_lost_retransmissions(&mut self, now: Instant, ack: TcpSeq) {
        let mss = self.mss().max(1);
        let Some(loss) = self.loss.get_if_mut() else {
            return;
        };
        if !self.in_recovery || loss.rerxt.is_some() {
            return;
        }
        while loss
            .rxt_marks
            .front()
            .is_some_and(|&(seq, _)| seq.distance_from(ack) < 0)
        {
            loss.rxt_marks.pop_front();
        }
        if loss.rxt_marks.front().is_none_or(|&(seq, _)| seq != ack) {
            return;
        }
        // The point below which a retransmission is lost: DupThresh segments' worth of
        // SACKed bytes lie above it.
        let need = DUP_THRESH as usize * mss;
        let mut above = 0usize;
        let mut evidence = None;
        for &(s, e) in loss.sacked.iter().rev() {
            let len = e.distance_from(s) as usize;
            if above + len >= need {
                evidence = Some(e - (need - above) as u32);
                break;
            }
            above += len;
        }
        let Some(evidence) = evidence else {
            return;
        };
        let lost = loss
            .rxt_marks
            .iter()
            .take_while(|&&(_, mark)| mark.distance_from(evidence) <= 0)
            .count();
        if lost == 0 {
            return;
        }
        let end = loss
            .rxt_marks
            .get(lost)
            .map_or(self.high_rxt, |&(seq, _)| seq);
        loss.rerxt = Some((ack, end));
        self.stats.lost_retransmits += lost as u64;
        // A retransmission lost means the reduced window still overflows the path (a slow
        // start that overshot by more than the reduction): reduce once more, once per
        // recovery, so the queue drains instead of dropping each copy again.
        if !self.lost_rxt_reduced {
            self.lost_rxt_reduced = true;
            let pipe = self.pipe();
            self.cc.on_congestion_event(now, pipe);
        }
    }

    fn ack_advanced(&mut self, now: Instant, ack: TcpSeq, in_flight: usize, newly_sacked: usize) {
        let mut keep_timer = false;
        let mut acked = ack.distance_from(self.snd_una) as usize;
        // Our FIN occupies the sequence number after the data.
        let fin_seq = self.fin_seq();
        let fin_acked = fin_seq.is_some_and(|f| ack.distance_from(f) > 0);
        if fin_acked {
            acked -= 1;
        }
        let data_acked = acked.min(self.tx.len());
        self.tx.consume(data_acked);
        self.stats.bytes_acked += data_acked as u64;
        self.snd_una = ack;
        if self.snd_nxt.distance_from(ack) < 0 {
            self.snd_nxt = ack;
        }
        while let Some(&(_, end, _)) = self.chunks.front() {
            if end.distance_from(ack) <= 0 {
                self.chunks.pop_front();
            } else {
                break;
            }
        }
        if let Some(loss) = self.loss.get_if_mut() {
            loss.sacked.retain_mut(|(s, e)| {
                if e.distance_from(ack) <= 0 {
                    return false;
                }
                if s.distance_from(ack) < 0 {
                    *s = ack;
                }
                true
            });
        }
        self.dupacks = 0;
        self.retries = 0;
        // RFC 6298 (5.7)-like: a new RTT sample resets the backoff; Karn: only from a probe
        // that was not retransmitted (probes are cancelled on retransmission).
        let mut rtt_sample = None;
        if let Some((probe, sent)) = self.rtt_probe.get()
            && probe.distance_from(ack) < 0
        {
            let sample = now - sent;
            self.rtt.sample(sample);
            rtt_sample = Some(sample);
            self.rtt_probe = RttProbe::NONE;
        }
        if self.in_recovery {
            if ack.distance_from(self.recovery_point) >= 0 {
                self.in_recovery = false;
                self.loss.clear_recovery();
                if !self.rto_recovery {
                    self.cc.on_recovery_end(now);
                }
                self.rto_recovery = false;
            } else {
                // A partial ACK (RFC 6582 / 6675): more of the window is lost.
                if !self.rto_recovery && self.loss.get().sacked.is_empty() {
                    // Nothing above the hole arrived: the rest of the window may be gone
                    // too. RFC 6582 section 4's impatient variant restarts the timer on the
                    // first such partial ACK only, so a window lost whole is repaired by the
                    // RTO's slow start, not one segment per round trip.
                    self.blind_partial_acks += 1;
                    keep_timer = self.blind_partial_acks > 1;
                }
                if self.high_rxt.distance_from(self.snd_una) < 0 {
                    self.high_rxt = self.snd_una;
                }
                if !self.sack_ok {
                    self.rexmit_credit = true;
                }
                self.update_lost_end();
                if self.rto_recovery {
                    // After an RTO the window grows in slow start while holes are repaired.
                    self.cc.on_ack(
                        now,
                        &self.ack_sample(data_acked + newly_sacked, in_flight, rtt_sample),
                    );
                }
            }
        } else {
            self.cc.on_ack(
                now,
                &self.ack_sample(data_acked + newly_sacked, in_flight, rtt_sample),
            );
        }
        if fin_acked {
            match self.state {
                State::FinWait1 => self.state = State::FinWait2,
                State::Closing => self.enter_time_wait(now),
                State::LastAck => self.enter_closed(None),
                _ => {}
            }
        }
        if keep_timer {
            // The running timer stays; one is armed if none runs.
            self.restart_rto_if_needed(now);
        } else {
            self.restart_rto(now);
        }
    }

    fn ack_sample(&self, acked: usize, in_flight: usize, rtt: Option<Duration>) -> AckSample {
        AckSample {
            acked,
            in_flight,
            rtt: rtt.or(self.ts_rtt.get()),
            srtt: self.rtt.srtt().unwrap_or(self.cfg.initial_rto),
        }
    }

    /// Whether the scoreboard holds the byte at `snd_una` as SACKed. The peer would have
    /// acknowledged past it had it kept it: it reneged (RFC 2018 section 8; Linux prunes its
    /// out-of-order queue when short of memory).
    fn left_edge_sacked(&self) -> bool {
        self.loss
            .get()
            .sacked
            .first()
            .is_some_and(|&(s, _)| s == self.snd_una)
    }

    /// After an ACK: a reneged left edge would be skipped by every retransmission, the
    /// timer's included. As Linux's `tcp_check_sack_reneging` does, give the peer a moment
    /// (half an RTT, at least 10 ms) to send ACKs that set the scoreboard right, by bringing
    /// the retransmission timer forward; [`Connection::on_rto`] then forgets the scoreboard.
    fn check_sack_reneging(&mut self, now: Instant) {
        if !self.left_edge_sacked() {
            return;
        }
        let half_rtt = self.rtt.srtt().map_or(Duration::ZERO, |d| d / 2);
        let at = now + half_rtt.max(RENEGING_GRACE);
        if self.rto_at.get().is_none_or(|t| t > at) {
            self.rto_at.set(at);
        }
    }

    /// Merge SACK blocks into the scoreboard; returns bytes newly SACKed.
    fn update_scoreboard(&mut self, blocks: SackBlocks) -> usize {
        let (una, max) = (self.snd_una, self.snd_max);
        // Ignore blocks that are empty, below snd_una (D-SACK) or beyond what was sent.
        let valid = |&&(l, r): &&(u32, u32)| {
            let (l, r) = (TcpSeq(l), TcpSeq(r));
            r.distance_from(l) > 0 && r.distance_from(una) > 0 && r.distance_from(max) <= 0
        };
        if !blocks.as_slice().iter().any(|b| valid(&b)) {
            return 0;
        }
        let before = self.sacked_bytes();
        let sacked = &mut self.loss.get_mut().sacked;
        for &(l, r) in blocks.as_slice().iter().filter(valid) {
            sacked.push((TcpSeq(l).max_seq(una), TcpSeq(r)));
        }
        sacked.sort_by_key(|&(s, _)| s.distance_from(una));
        // Merge overlapping or adjacent blocks in place (no allocation per ACK).
        let mut kept = 0;
        for r in 0..sacked.len() {
            let (s, e) = sacked[r];
            if kept > 0 && s.distance_from(sacked[kept - 1].1) <= 0 {
                sacked[kept - 1].1 = sacked[kept - 1].1.max_seq(e);
            } else {
                sacked[kept] = (s, e);
                kept += 1;
            }
        }
        sacked.truncate(kept);
        self.sacked_bytes().saturating_sub(before)
    }

    fn sacked_bytes(&self) -> usize {
        self.loss
            .get()
            .sacked
            .iter()
            .map(|&(s, e)| e.distance_from(s) as usize)
            .sum()
    }

    /// Bytes of `[a, b)` that are not SACKed.
    /// The first sequence number at or after `seq` that is not SACKed.
    fn skip_sacked(&self, mut seq: TcpSeq) -> TcpSeq {
        for &(s, e) in &self.loss.get().sacked {
            if s.distance_from(seq) <= 0 && e.distance_from(seq) > 0 {
                seq = e;
            }
        }
        seq
    }

    fn unsacked(&self, a: TcpSeq, b: TcpSeq) -> usize {
        let span = b.distance_from(a);
        if span <= 0 {
            return 0;
        }
        let mut n = span as usize;
        for &(s, e) in &self.loss.get().sacked {
            let lo = s.max_seq(a);
            let hi = e.min_seq(b);
            let d = hi.distance_from(lo);
            if d > 0 {
                n -= d as usize;
            }
        }
        n
    }

    /// RFC 6675 IsLost over the scoreboard: everything unSACKed below the point above which
    /// (DupThresh - 1) * MSS bytes or DupThresh blocks are SACKed.
    fn update_lost_end(&mut self) {
        let mss = self.mss();
        let mut lost = if self.rto_recovery {
            self.lost_end
        } else {
            self.snd_una
        };
        if self.sack_ok {
            let mut bytes = 0usize;
            let sacked = &self.loss.get().sacked;
            for (i, &(s, e)) in sacked.iter().enumerate().rev() {
                bytes += e.distance_from(s) as usize;
                let blocks = sacked.len() - i;
                if bytes > (DUP_THRESH as usize - 1) * mss || blocks >= DUP_THRESH as usize {
                    lost = lost.max_seq(s);
                    break;
                }
            }
        }
        // NewReno (and SACK entering recovery on dupacks): the first segment is lost.
        if self.in_recovery {
            lost = lost.max_seq((self.snd_una + mss as u32).min_seq(self.snd_max));
        }
        self.lost_end = lost.max_seq(self.lost_end);
    }

    fn maybe_enter_recovery(&mut self, now: Instant) {
        if self.in_recovery {
            return;
        }
        let lost_by_sack = self.sack_ok && {
            self.update_lost_end();
            self.lost_end.distance_from(self.snd_una) > 0
        };
        if self.dupacks >= DUP_THRESH || lost_by_sack {
            let in_flight = self.pipe();
            self.in_recovery = true;
            self.rto_recovery = false;
            self.recovery_point = self.snd_max;
            self.high_rxt = self.snd_una;
            self.stats.fast_recoveries += 1;
            self.rexmit_credit = true;
            self.blind_partial_acks = 0;
            self.lost_rxt_reduced = false;
            self.cc.on_congestion_event(now, in_flight);
            self.update_lost_end();
            self.rtt_probe = RttProbe::NONE;
        }
    }

    /// RFC 6675 pipe: unSACKed bytes in flight, less lost bytes not yet retransmitted.
    fn pipe(&self) -> usize {
        let una = self.snd_una;
        let outstanding = self.unsacked(una, self.snd_nxt.max_seq(self.snd_una));
        if !self.in_recovery {
            return outstanding;
        }
        let rxt = self.high_rxt.max_seq(una);
        let mut lost_not_rxt = if self.lost_end.distance_from(rxt) > 0 {
            self.unsacked(rxt, self.lost_end)
        } else {
            0
        };
        // Retransmissions found lost and not yet sent again have left the network too.
        if let Some((from, to)) = self.loss.get().rerxt {
            lost_not_rxt += self.unsacked(from.max_seq(una), to.min_seq(rxt));
        }
        // Without SACK each duplicate ACK says one segment left the network (RFC 5681's window
        // inflation, seen from the pipe's side).
        let left = if self.sack_ok {
            0
        } else {
            self.dupacks as usize * self.mss()
        };
        outstanding
            .saturating_sub(lost_not_rxt)
            .saturating_sub(left)
    }

    fn process_data(&mut self, now: Instant, seg: &TcpSegment<'_>, hooks: &mut impl Hooks) {
        if !matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        ) {
            // Data after the peer's FIN (CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT) is ignored.
            if seg.flags.fin() && self.state == State::TimeWait {
                self.time_wait_at.set(now + self.cfg.time_wait);
                self.ack_now = true;
            }
            return;
        }
        let mut seq = seg.seq;
        let mut payload = seg.payload;
        // Trim what was already received.
        let behind = self.rcv_nxt.distance_from(seq);
        if behind > 0 {
            let cut = (behind as usize).min(payload.len());
            payload = &payload[cut..];
            seq = seq + cut as u32;
        }
        // Trim what is beyond the window.
        let wnd = self.window_to_advertise();
        let offset = seq.distance_from(self.rcv_nxt).max(0) as usize;
        let fits = wnd.saturating_sub(offset);
        let fin_in_window = seg.flags.fin() && payload.len() <= fits;
        if payload.len() > fits {
            payload = &payload[..fits];
        }
        if seg.flags.fin() && fin_in_window {
            self.peer_fin = Some(seg.seq + seg.payload.len() as u32);
        }
        if !payload.is_empty() {
            if offset == 0 {
                // In order: the hook takes it, or it is appended, absorbing any out-of-order
                // data it reaches.
                let direct = self.rx.is_empty()
                    && self.reorder.get().ooo.is_empty()
                    && hooks.deliver(seq, payload);
                if !direct {
                    let before = self.rx.len();
                    self.rx.write_at(before, payload);
                }
                let mut end = seq + payload.len() as u32;
                let filled_hole = !self.reorder.get().ooo.is_empty();
                if let Some(r) = self.reorder.get_if_mut() {
                    r.ooo.retain(|&(s, e)| {
                        if s.distance_from(end) <= 0 {
                            if e.distance_from(end) > 0 {
                                end = e;
                            }
                            false
                        } else {
                            true
                        }
                    });
                }
                let advance = end.distance_from(self.rcv_nxt) as usize;
                if !direct {
                    self.rx.extend_len(advance);
                }
                self.rcv_nxt = end;
                self.stats.bytes_received += advance as u64;
                // A super segment (the kernel's GRO behind a TUN) counts as the segments it
                // merged: RFC 5681 section 4.2's ACK for every second one still holds.
                let merged = payload
                    .len()
                    .div_ceil(usize::from(self.cfg.mss).max(1))
                    .max(1);
                self.segs_unacked = self
                    .segs_unacked
                    .saturating_add(u32::try_from(merged).unwrap_or(u32::MAX));
                if filled_hole
                    || self.segs_unacked >= ACK_EVERY
                    || seg.flags.has(TcpFlags::PSH) && self.segs_unacked > 1
                {
                    self.ack_now = true;
                } else if !self.delack_at.is_set() {
                    self.delack_at.set(now + self.cfg.delayed_ack);
                }
            } else {
                // Out of order: store by offset, remember the range, ACK at once (RFC 5681 4.2).
                self.stats.ooo_segments += 1;
                self.rx.write_at(self.rx.len() + offset, payload);
                let range = (seq, seq + payload.len() as u32);
                self.insert_ooo(range);
                self.acks_owed = self.acks_owed.saturating_add(1).min(16);
            }
        } else if seg.seq_len() > 0 && offset == 0 && !seg.flags.fin() {
            self.ack_now = true;
        }
        // The FIN, once everything before it has arrived.
        if let Some(fin) = self.peer_fin
            && fin == self.rcv_nxt
        {
            self.rcv_nxt = self.rcv_nxt + 1;
            self.ack_now = true;
            match self.state {
                State::Established => self.state = State::CloseWait,
                State::FinWait1 => {
                    if self
                        .fin_seq()
                        .is_some_and(|f| self.snd_una.distance_from(f) > 0)
                    {
                        self.enter_time_wait(now);
                    } else {
                        self.state = State::Closing;
                    }
                }
                State::FinWait2 => self.enter_time_wait(now),
                _ => {}
            }
        } else if seg.flags.fin() {
            self.ack_now = true;
        }
    }

    fn insert_ooo(&mut self, (s, e): (TcpSeq, TcpSeq)) {
        let mut start = s;
        let mut end = e;
        let r = self.reorder.get_mut();
        r.ooo.retain(|&(a, b)| {
            // Overlapping or adjacent ranges merge.
            if a.distance_from(end) <= 0 && b.distance_from(start) >= 0 {
                start = start.min_seq(a);
                end = end.max_seq(b);
                false
            } else {
                true
            }
        });
        let pos = r.ooo.partition_point(|&(a, _)| a.distance_from(start) < 0);
        r.ooo.insert(pos, (start, end));
        r.last_ooo = Some((start, end));
    }

    /// SACK blocks to send: the most recent first (RFC 2018 section 4), then the others.
    fn sack_blocks(&self, max: usize) -> SackBlocks {
        let mut blocks = [(0u32, 0u32); SackBlocks::CAPACITY];
        let mut n = 0;
        let r = self.reorder.get();
        if let Some((ls, le)) = r.last_ooo
            && let Some(&(s, e)) = r
                .ooo
                .iter()
                .find(|&&(s, e)| s.distance_from(ls) <= 0 && e.distance_from(le) >= 0)
        {
            blocks[0] = (s.0, e.0);
            n = 1;
        }
        for &(s, e) in r.ooo.iter().rev() {
            if n >= max {
                break;
            }
            if n > 0 && blocks[0] == (s.0, e.0) {
                continue;
            }
            blocks[n] = (s.0, e.0);
            n += 1;
        }
        SackBlocks::new(&blocks[..n.min(max)]).unwrap_or_default()
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.rto_at.clear();
        self.persist_at.clear();
        self.keepalive_at.clear();
        self.time_wait_at.set(now + self.cfg.time_wait);
    }

    fn fin_seq(&self) -> Option<TcpSeq> {
        if self.fin_queued {
            Some(self.tx_base() + self.tx.len() as u32)
        } else {
            None
        }
    }

    /// RFC 9293 section 3.10.7.3/4: answer an unacceptable ACK with <SEQ=SEG.ACK><CTL=RST>,
    /// leaving the connection as it is.
    fn reply_rst_to(&mut self, seg: &TcpSegment<'_>) {
        self.rst_reply = Some(seg.ack);
    }
}

/// Keepalive probe interval and count after the idle time (Linux: 75 s, 9 probes).
/// The least time a peer that seems to have reneged on its SACKs gets to set them right.
const RENEGING_GRACE: Duration = Duration::from_millis(10);

const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(75);
const KEEPALIVE_PROBES: u32 = 9;

impl Connection {
    // ---- timers -------------------------------------------------------------------------------

    /// The earliest timer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.rto_at,
            self.delack_at,
            self.persist_at,
            self.keepalive_at,
            self.time_wait_at,
        ]
        .into_iter()
        .min()
        .and_then(Deadline::get)
    }

    /// Whether a segment is waiting to go out now.
    pub fn wants_to_transmit(&self) -> bool {
        self.send_rst
            || self.rst_reply.is_some()
            || self.syn_rexmit
            || self.ack_now
            || self.acks_owed > 0
            || self.probe_now
            || self.keepalive_now
            || (self.state.is_synchronized() && self.has_data_to_send())
    }

    fn has_data_to_send(&self) -> bool {
        let sent = self.snd_nxt.distance_from(self.tx_base()).max(0) as usize;
        sent < self.tx.len()
            || (self.fin_queued && self.fin_seq() == Some(self.snd_nxt))
            || (self.in_recovery
                && self
                    .high_rxt
                    .max_seq(self.snd_una)
                    .distance_from(self.lost_end)
                    < 0)
    }

    /// Run the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.time_wait_at.expired(now) {
            self.enter_closed(None);
            return;
        }
        if self.delack_at.expired(now) {
            self.delack_at.clear();
            self.ack_now = true;
        }
        if self.rto_at.expired(now) {
            self.on_rto(now);
        }
        if self.persist_at.expired(now) {
            self.persist_at.clear();
            self.probe_now = true;
            self.rtt.back_off();
        }
        if self.keepalive_at.expired(now) {
            self.keepalive_probes += 1;
            if self.keepalive_probes > KEEPALIVE_PROBES {
                self.enter_closed(Some(ConnError::TimedOut));
                return;
            }
            self.keepalive_now = true;
            self.keepalive_at.set(now + KEEPALIVE_INTERVAL);
        }
    }

    fn on_rto(&mut self, now: Instant) {
        self.rto_at.clear();
        self.rtt_probe = RttProbe::NONE;
        self.retries += 1;
        self.stats.rto_expiries += 1;
        match self.state {
            State::SynSent | State::SynReceived => {
                if self.retries > self.cfg.syn_retries {
                    self.enter_closed(Some(ConnError::TimedOut));
                    return;
                }
                self.rtt.back_off();
                self.syn_rexmit = true;
            }
            State::Closed | State::TimeWait => {}
            _ => {
                if self.snd_una == self.snd_max {
                    return;
                }
                if self.left_edge_sacked() {
                    // RFC 2018 section 8: the segment at the left edge goes again after a
                    // timeout, SACKed or not; the peer reneged, so none of its SACKs stand.
                    if let Some(loss) = self.loss.get_if_mut() {
                        loss.sacked.clear();
                        loss.rxt_marks.clear();
                        loss.rerxt = None;
                    }
                    self.stats.sack_reneging += 1;
                }
                if self.retries > self.cfg.data_retries {
                    self.enter_closed(Some(ConnError::TimedOut));
                    return;
                }
                let in_flight = self.pipe();
                // RFC 5681 section 3.1: when a retransmission is itself lost, ssthresh is held;
                // only the first timeout of a run reduces it (the window is one segment since).
                if self.retries == 1 {
                    self.cc.on_rto(now, in_flight);
                }
                self.rtt.back_off();
                // RFC 6675 section 5.1 / RFC 5681 section 3.1: everything not SACKed is lost and
                // is retransmitted from snd_una, in slow start.
                self.in_recovery = true;
                self.rto_recovery = true;
                self.recovery_point = self.snd_max;
                self.high_rxt = self.snd_una;
                self.lost_end = self.snd_max;
                self.loss.clear_recovery();
                self.dupacks = 0;
                self.rexmit_credit = true;
                // The timer runs again at once (RFC 6298 (5.6)): it must not depend on the
                // retransmission actually going out.
                self.rto_at.set(now + self.timer_rto());
            }
        }
    }

    /// The retransmission timeout to arm: the backed-off RTO, within the cap if one is set.
    fn timer_rto(&self) -> Duration {
        let rto = self.rtt.rto();
        self.rto_cap.get().map_or(rto, |cap| rto.min(cap))
    }

    /// Bound the backed-off retransmission timer (`None`: no bound but `max_rto`). MPTCP caps a
    /// stale subflow's timer while other subflows carry the data: its retransmissions are
    /// then probes of the path, and a path that works again is noticed within the cap rather
    /// than after a backoff of tens of seconds. The retry limit still applies.
    pub fn set_rto_cap(&mut self, now: Instant, cap: Option<Duration>) {
        self.rto_cap = cap.into();
        if let (Some(at), Some(cap)) = (self.rto_at.get(), cap)
            && at > now + cap
        {
            self.rto_at.set(now + cap);
        }
    }

    fn restart_rto(&mut self, now: Instant) {
        if self.snd_una != self.snd_max {
            self.rto_at.set(now + self.timer_rto());
        } else {
            self.rto_at.clear();
        }
    }

    fn restart_rto_if_needed(&mut self, now: Instant) {
        if !self.rto_at.is_set() {
            self.restart_rto(now);
        }
    }

    // ---- transmit path -------------------------------------------------------------------------

    /// Write the next segment as a whole IP packet into `buf`; returns its length.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        hooks: &mut impl Hooks,
    ) -> Option<usize> {
        self.poll_transmit_segments(now, buf, 1, hooks)
            .map(|t| t.len)
    }

    /// [`poll_transmit`](Connection::poll_transmit) for a device with segmentation offload
    /// ([`Node::poll_transmit_segments`](crate::node::Node::poll_transmit_segments)): new data
    /// may go as one super segment of up to `max_segments` full segments (whole MSS each but
    /// the last of the data, and within the windows, the chunk and 64 KiB of IP packet), its
    /// TCP checksum partial. Retransmissions, and segments that would carry SACK blocks (whose
    /// room an MSS does not count), go one by one.
    pub fn poll_transmit_segments(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        max_segments: usize,
        hooks: &mut impl Hooks,
    ) -> Option<Transmit> {
        if let Some(seq) = self.rst_reply.take() {
            return self.emit(now, buf, hooks, TcpFlags::RST, seq, 0, false);
        }
        if self.send_rst {
            self.send_rst = false;
            return self.emit(
                now,
                buf,
                hooks,
                TcpFlags::RST | TcpFlags::ACK,
                self.snd_nxt,
                0,
                false,
            );
        }
        match self.state {
            State::Closed => None,
            State::SynSent if self.syn_rexmit => {
                self.syn_rexmit = false;
                self.emit(now, buf, hooks, TcpFlags::SYN, self.iss, 0, false)
            }
            State::SynReceived if self.syn_rexmit => {
                self.syn_rexmit = false;
                self.emit(
                    now,
                    buf,
                    hooks,
                    TcpFlags::SYN | TcpFlags::ACK,
                    self.iss,
                    0,
                    false,
                )
            }
            State::SynSent | State::SynReceived => None,
            _ => self.transmit_synchronized(now, buf, max_segments, hooks),
        }
    }

    fn transmit_synchronized(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        max_segments: usize,
        hooks: &mut impl Hooks,
    ) -> Option<Transmit> {
        // 0. Duplicate ACKs owed for out-of-order segments go out one by one, before data.
        if self.acks_owed > 0 {
            self.acks_owed -= 1;
            return self.emit(now, buf, hooks, TcpFlags::ACK, self.snd_nxt, 0, false);
        }
        let mss = self.effective_mss(hooks.reserved_option_space());
        let cwnd = self.cc.window();
        let pipe = self.pipe();
        let room = cwnd.saturating_sub(pipe);
        let fin_seq = self.fin_seq();

        // 1. Retransmit a lost segment (RFC 6675 NextSeg rule 1).
        // Lost retransmissions go again first (the one at `snd_una` whatever the window: it
        // holds everything up).
        let again = self.loss.get().rerxt.and_then(|(from, to)| {
            let seq = self.skip_sacked(from.max_seq(self.snd_una));
            (seq.distance_from(to) < 0).then_some(seq)
        });
        if again.is_none()
            && let Some(loss) = self.loss.get_if_mut()
        {
            loss.rerxt = None;
        }
        let head = again == Some(self.snd_una);
        if self.in_recovery && (room > 0 || self.rexmit_credit || head) {
            let seq =
                again.unwrap_or_else(|| self.skip_sacked(self.high_rxt.max_seq(self.snd_una)));
            // RFC 6675 NextSeg rule 3: with no new data to send, a hole below the highest
            // SACKed byte goes again before it is deemed lost (at a transfer's tail nothing
            // more would be SACKed above it, and only the timer would repair it).
            let unsent = self.tx.len() > self.snd_nxt.distance_from(self.tx_base()).max(0) as usize;
            let limit = match self.loss.get().sacked.last() {
                Some(&(_, e)) if !unsent => e.max_seq(self.lost_end),
                _ => self.lost_end,
            };
            if seq.distance_from(limit) < 0 && seq.distance_from(self.snd_nxt) < 0 {
                // Data bytes that may go: up to the FIN (if it was sent), the next SACKed
                // block, the chunk's end and one MSS.
                let fin_sent = fin_seq.filter(|_| self.fin_sent());
                let data_end = fin_sent.unwrap_or(self.snd_nxt);
                let mut data_len = (data_end.distance_from(seq).max(0) as usize).min(mss);
                if let Some(&(s, _)) = self
                    .loss
                    .get()
                    .sacked
                    .iter()
                    .find(|&&(s, _)| s.distance_from(seq) > 0)
                {
                    data_len = data_len.min(s.distance_from(seq) as usize);
                }
                data_len = data_len.min(self.chunk_room(seq));
                let mut flags = TcpFlags::ACK;
                // The FIN rides along when the retransmission reaches it.
                if fin_sent == Some(seq + data_len as u32) {
                    flags |= TcpFlags::FIN;
                }
                let end = seq + (data_len as u32) + u32::from(flags & TcpFlags::FIN != 0);
                let mark = (seq, self.snd_nxt);
                let loss = self.loss.get_mut();
                if again.is_some() {
                    // Sent again: its mark moves to now (in sequence order, so found by
                    // binary search).
                    if let Some((_, to)) = loss.rerxt {
                        loss.rerxt = (end.distance_from(to) < 0).then_some((end, to));
                    }
                    let i = loss
                        .rxt_marks
                        .partition_point(|&(s, _)| s.distance_from(seq) < 0);
                    let full = loss.rxt_marks.len() >= MAX_RXT_MARKS;
                    match loss.rxt_marks.get_mut(i) {
                        Some(m) if m.0 == seq => *m = mark,
                        _ if !full => loss.rxt_marks.insert(i, mark),
                        _ => {}
                    }
                } else {
                    self.high_rxt = self.high_rxt.max_seq(end);
                    if loss.rxt_marks.len() < MAX_RXT_MARKS {
                        loss.rxt_marks.push_back(mark);
                    }
                }
                if !head {
                    self.rexmit_credit = false;
                }
                self.stats.bytes_retransmitted += data_len as u64;
                let out = self.emit(now, buf, hooks, flags, seq, data_len, true);
                self.restart_rto_if_needed(now);
                return out;
            }
        }

        // 2. New data, within the peer's window and the congestion window.
        let sent = self.snd_nxt.distance_from(self.tx_base()).max(0) as usize;
        let unsent = self.tx.len().saturating_sub(sent);
        let wnd_end = self.snd_una + self.snd_wnd as u32;
        let wnd_room = wnd_end.distance_from(self.snd_nxt).max(0) as usize;
        if unsent > 0 && !self.probe_now {
            let chunk = self.chunk_room(self.snd_nxt);
            // Segmentation offload: whole segments that fit a 64 KiB IP packet in `buf`, and
            // none while SACK blocks are owed (they would ride on every segment, past the MSS).
            let most = if max_segments > 1 && self.reorder.get().ooo.is_empty() {
                let room_bytes = buf.len().min(MAX_IP_PACKET).saturating_sub(MAX_HEADERS);
                (room_bytes / mss).clamp(1, max_segments) * mss
            } else {
                mss
            };
            let mut len = unsent.min(most).min(wnd_room).min(room).min(chunk);
            if len > mss && len < most.min(unsent).min(chunk) {
                // Cut by a window: whole segments only, the rest waits for more room.
                len -= len % mss;
            }
            let full = mss.min(unsent).min(chunk);
            let in_flight = self.snd_una != self.snd_max;
            let may_send = len > 0
                && (len >= full
                    // Sender SWS avoidance (RFC 9293 section 3.8.6.2.1): a partial segment
                    // only when nothing is in flight.
                    || !in_flight)
                && !(self.cfg.nagle && in_flight && len < mss);
            if may_send {
                let mut flags = TcpFlags::ACK;
                let end = self.snd_nxt + len as u32;
                if self.fin_queued && fin_seq == Some(end) && wnd_room > len {
                    flags |= TcpFlags::FIN | TcpFlags::PSH;
                } else if len == unsent {
                    flags |= TcpFlags::PSH;
                }
                let seq = self.snd_nxt;
                let retransmission = seq.distance_from(self.snd_max) < 0;
                if retransmission {
                    self.stats.bytes_retransmitted += len as u64;
                } else {
                    self.stats.bytes_sent += len as u64;
                }
                self.advance_snd_nxt(now, seq, len, flags);
                let size = (len > mss).then_some(mss);
                return self.emit_segments(now, buf, hooks, flags, seq, len, retransmission, size);
            }
            if self.snd_wnd == 0 && !in_flight && !self.persist_at.is_set() {
                self.persist_at.set(now + self.rtt.rto());
            }
        }

        // 3. A FIN alone.
        if let Some(f) = fin_seq
            && f == self.snd_nxt
            && unsent == 0
        {
            let flags = TcpFlags::FIN | TcpFlags::ACK;
            self.advance_snd_nxt(now, f, 0, flags);
            return self.emit(now, buf, hooks, flags, f, 0, false);
        }

        // 4. Probes (zero window, keepalive): an old sequence number that elicits an ACK.
        if self.probe_now || self.keepalive_now {
            self.probe_now = false;
            self.keepalive_now = false;
            if self.snd_wnd == 0 && unsent > 0 {
                self.persist_at.set(now + self.rtt.rto());
            }
            return self.emit(now, buf, hooks, TcpFlags::ACK, self.snd_una - 1, 0, false);
        }

        // 5. A pure ACK.
        if self.ack_now {
            return self.emit(now, buf, hooks, TcpFlags::ACK, self.snd_nxt, 0, false);
        }
        None
    }

    fn fin_sent(&self) -> bool {
        self.fin_seq()
            .is_some_and(|f| self.snd_max.distance_from(f) > 0)
    }

    /// Bytes from `seq` to the end of the chunk holding it (no limit without chunks).
    fn chunk_room(&self, seq: TcpSeq) -> usize {
        match self
            .chunks
            .iter()
            .find(|&&(_, end, _)| end.distance_from(seq) > 0)
        {
            Some(&(_, end, _)) => end.distance_from(seq) as usize,
            None => usize::MAX,
        }
    }

    fn chunk_of(&self, seq: TcpSeq) -> Option<(TcpSeq, usize, u64)> {
        // Chunks are in sequence order and disjoint: the first that ends after `seq`.
        let k = self
            .chunks
            .partition_point(|&(_, end, _)| end.distance_from(seq) <= 0);
        self.chunks
            .get(k)
            .filter(|&&(start, _, _)| start.distance_from(seq) <= 0)
            .map(|&(start, end, tag)| (start, end.distance_from(start) as usize, tag))
    }

    /// [`Connection::chunk_of`] as the hooks see it (the tag without the external bit), and
    /// whether the chunk's bytes are external.
    fn chunk_info(&self, seq: TcpSeq) -> (Option<(TcpSeq, usize, u64)>, bool) {
        match self.chunk_of(seq) {
            Some((start, len, tag)) => (
                Some((start, len, tag & !EXTERNAL_CHUNK)),
                tag & EXTERNAL_CHUNK != 0,
            ),
            None => (None, false),
        }
    }

    fn advance_snd_nxt(&mut self, now: Instant, seq: TcpSeq, len: usize, flags: u8) {
        let end = seq + len as u32 + u32::from(flags & TcpFlags::FIN != 0);
        if end.distance_from(self.snd_nxt) > 0 {
            self.snd_nxt = end;
        }
        if end.distance_from(self.snd_max) > 0 {
            // Time one segment per RTT (Karn: never a retransmitted one).
            if self.rtt_probe.is_none() && !self.in_recovery {
                self.rtt_probe = RttProbe::new(seq, now);
            }
            self.snd_max = end;
        }
        if flags & TcpFlags::FIN != 0 {
            match self.state {
                State::Established => self.state = State::FinWait1,
                State::CloseWait => self.state = State::LastAck,
                _ => {}
            }
        }
        self.restart_rto_if_needed(now);
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        hooks: &mut impl Hooks,
        flags: u8,
        seq: TcpSeq,
        len: usize,
        retransmission: bool,
    ) -> Option<Transmit> {
        self.emit_segments(now, buf, hooks, flags, seq, len, retransmission, None)
    }

    /// [`emit`](Connection::emit), as a super segment of `segment_size` payload bytes per
    /// segment when that is `Some` (partial checksum, no SACK blocks).
    #[allow(clippy::too_many_arguments)]
    fn emit_segments(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        hooks: &mut impl Hooks,
        flags: u8,
        seq: TcpSeq,
        len: usize,
        retransmission: bool,
        segment_size: Option<usize>,
    ) -> Option<Transmit> {
        let syn = flags & TcpFlags::SYN != 0;
        let rst = flags & TcpFlags::RST != 0;
        let has_ack = flags & TcpFlags::ACK != 0;
        let mut options = TcpOptions::default();
        if syn {
            options.mss = Some(self.cfg.mss);
            let offer = self.state == State::SynSent;
            if self.cfg.window_scaling && (offer || self.ws_ok) {
                options.window_scale = Some(self.rcv_shift);
            }
            if self.cfg.sack && (offer || self.sack_ok) {
                options.sack_permitted = true;
            }
            if self.cfg.timestamps && (offer || self.ts_ok) {
                options.timestamp = Some(Timestamp {
                    tsval: self.ts_now(now),
                    tsecr: if offer { 0 } else { self.ts_recent },
                });
            }
        } else if self.ts_ok && !rst {
            options.timestamp = Some(Timestamp {
                tsval: self.ts_now(now),
                tsecr: self.ts_recent,
            });
        }
        let payload_seq = if syn { seq + 1 } else { seq };
        let (chunk, external) = if len > 0 {
            self.chunk_info(payload_seq)
        } else {
            (None, false)
        };
        let info = OutgoingInfo {
            flags: TcpFlags(flags),
            seq: payload_seq,
            len,
            retransmission,
            chunk,
        };
        hooks.on_transmit(&info, &mut options);
        if self.sack_ok
            && !syn
            && !rst
            && !self.reorder.get().ooo.is_empty()
            && segment_size.is_none()
        {
            // The option space left, and the packet's: the caller sized `len` (and moved
            // snd_nxt, placed the FIN) from an MSS that does not count SACK blocks, so blocks
            // must not push the payload out of `buf`.
            let ip_header = if self.local.is_ipv4() { 20 } else { 40 };
            let packet_room = buf
                .len()
                .saturating_sub(ip_header + 20 + options.buffer_len() + len);
            let room = options.room().min(packet_room);
            // NOP NOP SACK(2 + 8n): 4 + 8n bytes.
            if room >= 12 {
                let max = ((room - 4) / 8).min(SackBlocks::CAPACITY);
                options.sack = self.sack_blocks(max);
            }
        }
        let window = if syn {
            self.window_to_advertise().min(MAX_WINDOW_FIELD)
        } else {
            self.window_to_advertise()
        };
        let window_field = if syn {
            window as u16
        } else {
            (window >> self.rcv_shift).min(MAX_WINDOW_FIELD) as u16
        };
        let segment = IpSegment {
            src: self.local.ip(),
            dst: self.remote.ip(),
            hop_limit: self.cfg.hop_limit,
            tcp: TcpSegment {
                src_port: self.local.port(),
                dst_port: self.remote.port(),
                seq,
                ack: if has_ack { self.rcv_nxt } else { TcpSeq(0) },
                flags: TcpFlags(flags),
                window: if rst { 0 } else { window_field },
                urgent: 0,
                options,
                payload: &[],
            },
        };
        let headers = segment.headers_len();
        let mut len = len;
        if headers + len > buf.len() {
            // The caller's buffer is smaller than our MSS promised: send what fits.
            len = buf.len().saturating_sub(headers);
        }
        if len > 0 {
            let offset = payload_seq.distance_from(self.tx_base()).max(0) as usize;
            let len_avail = self.tx.len().saturating_sub(offset).min(len);
            let out = &mut buf[headers..headers + len_avail];
            if external {
                let info = OutgoingInfo {
                    len: len_avail,
                    ..info
                };
                if !hooks.payload(&info, out) {
                    return None;
                }
            } else {
                self.tx.read_at(offset, out);
            }
            len = len_avail;
        }
        let segment_size = segment_size.filter(|&n| n > 0 && len > n);
        let n = match segment_size {
            Some(size) => {
                self.stats.segs_out += len.div_ceil(size) as u64;
                segment.emit_around_payload_partial(buf, len).ok()?
            }
            None => {
                self.stats.segs_out += 1;
                segment.emit_around_payload(buf, len).ok()?
            }
        };
        if has_ack {
            self.ack_now = false;
            self.delack_at.clear();
            self.segs_unacked = 0;
            self.last_window_sent = window;
            let edge = self.rcv_nxt + window as u32;
            if edge.distance_from(self.rcv_adv) > 0 {
                self.rcv_adv = edge;
            }
        }
        if syn {
            let end = self.iss + 1;
            if end.distance_from(self.snd_nxt) > 0 {
                self.snd_nxt = end;
            }
            if end.distance_from(self.snd_max) > 0 {
                self.snd_max = end;
            }
            if self.rtt.backoff_count() == 0 && self.rtt_probe.is_none() {
                self.rtt_probe = RttProbe::new(self.iss, now);
            }
            self.rto_at.set(now + self.timer_rto());
        }
        Some(Transmit {
            len: n,
            segment_size,
        })
    }
}
