//! The MPTCP connection layer (RFC 8684): one data stream carried by TCP subflows.
//!
//! Contract:
//! - An [`MptcpConnection`] owns its subflows (the initial one and those joined with MP_JOIN)
//!   and the connection-level state: keys, tokens and IDSNs, the send
//!   buffer indexed by data sequence number, reassembly by DSN, DATA_ACK and DATA_FIN.
//! - The handshake is MP_CAPABLE v1 in both roles (section 3.1): no key on the SYN, the
//!   server's key on the SYN/ACK, both keys on the third ACK, and on the first data as
//!   MP_CAPABLE with data; the client repeats the keys until the server answers with a DSS
//!   (the reliable third ACK). Either side's A flag turns DSS checksums on.
//! - Data is cut into mappings (at most 64 KiB) that the subflow engine never splits across
//!   segments of another mapping; a retransmitted segment carries its original mapping. Every
//!   segment carries a DATA_ACK (8 bytes); received 4-byte DSNs and DATA_ACKs are expanded.
//! - With checksums, a mapping is delivered only after its checksum verified. A bad checksum
//!   on the only subflow (section 3.7) is counted (`DataCsumErr`), the mapping and everything
//!   after it are discarded, and MP_FAIL names its DSN; the sender echoes MP_FAIL, sends an
//!   infinite mapping at that DSN and resends the data from there as plain TCP, so the stream
//!   continues intact. Where that is impossible (data reassembled out of order), the
//!   connection is reset with MP_FAIL and MP_TCPRST rather than deliver corrupt data.
//! - Fallback to TCP (section 3.7) when the SYN or SYN/ACK has no MP_CAPABLE, when the third
//!   ACK has none, or when data arrives without any mapping on the only subflow: the stream
//!   continues as plain TCP and nothing is lost. [`MptcpConnection::fallback_reason`] says why.
//! - MP_FASTCLOSE is sent on abort and honoured when it carries our key; MP_TCPRST is counted.

mod addr;
pub mod pm;
mod reassembly;
pub mod sched;

use std::collections::VecDeque;
use std::net::SocketAddr;

use smoltcp::time::Instant;

pub use addr::{
    ANNOUNCE_RETRY, AddAddrOutcome, AnnounceState, Announcement, MAX_ANNOUNCE_TRIES,
    MAX_REMOTE_ADDRS, RemoteAddr, Signals,
};
pub use reassembly::{Inserted, Reassembly};
pub use sched::{
    ActiveBackup, MinRtt, Pick, Redundant, RoundRobin, Scheduler, SchedulerKind, SubflowInfo,
};

use crate::crypto::{DssChecksum, KeyMaterial, dss_checksum, join_ack_hmac, join_synack_hmac};
use crate::deadline::Deadline;
use crate::node::Transmit;
use crate::seq::{Dsn, Ssn, TcpSeq};
use crate::tcp::coupled::{Coupling, PathSample, couple};
use crate::tcp::ring::Ring;
use crate::tcp::{self, Connection, Hooks, OutgoingInfo, State};
use crate::wire::{
    CapableFlags, CapableKeys, CapableRepr, DsnField, DssMapping, DssRepr, JoinRepr, MptcpRepr,
    TcpOptions, TcpRstReason, TcpRstRepr, TcpSegment,
};

/// MPTCP settings of an endpoint.
#[derive(Debug, Clone, Copy)]
pub struct MptcpConfig {
    /// Speak MPTCP (offer it as a client, accept it as a server). Off: plain TCP.
    pub enabled: bool,
    /// Ask for DSS checksums (the A flag).
    pub checksum: bool,
    /// Connection-level receive buffer (the data-level window).
    pub rx_buffer: usize,
    /// Connection-level send buffer.
    pub tx_buffer: usize,
    /// The largest mapping, in bytes (at most 65534, to leave room for a DATA_FIN).
    pub max_mapping: usize,
    /// The packet scheduler of new connections.
    pub scheduler: SchedulerKind,
    /// Retransmission timeouts in a row after which a subflow is stale and its data is sent
    /// again on the others (1: fastest failover; Linux waits for 4 losses). Under heavy
    /// bursty loss a larger value reinjects less.
    pub stale_after_rtos: u8,
}

impl Default for MptcpConfig {
    fn default() -> Self {
        MptcpConfig {
            enabled: true,
            checksum: false,
            rx_buffer: 4 << 20,
            tx_buffer: 4 << 20,
            max_mapping: 65_534,
            scheduler: SchedulerKind::MinRtt,
            stale_after_rtos: 1,
        }
    }
}

/// Option bytes of the infinite mapping (a DSS with a 4-byte DSN, no DATA_ACK, and a
/// checksum field), reserved on data segments while plain TCP resumes after an MP_FAIL.
pub const INFINITE_DSS_SPACE: usize = 16;

/// Option bytes a data segment needs beyond timestamps: a DSS with an 8-byte DATA_ACK, an
/// 8-byte DSN mapping and a checksum (28), which also covers MP_CAPABLE with data (24).
pub const DSS_SPACE: usize = 28;

/// Which side opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sent the SYN.
    Client,
    /// Accepted the SYN.
    Server,
}

/// Where the connection stands with MPTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Handshake under way (client: SYN sent, no answer yet).
    Pending,
    /// MPTCP in use.
    Mptcp,
    /// Plain TCP: MPTCP was not offered, not accepted, or fell back.
    Fallback,
}

/// Counters named after Linux's `MPTcpExt*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// MP_CAPABLE SYNs sent (client).
    pub mp_capable_syn_tx: u64,
    /// MP_CAPABLE SYNs received (server): `MPCapableSYNRX`.
    pub mp_capable_syn_rx: u64,
    /// MP_CAPABLE SYN/ACKs received (client): `MPCapableSYNACKRX`.
    pub mp_capable_synack_rx: u64,
    /// Third ACKs (or first data) with both keys received (server): `MPCapableACKRX`.
    pub mp_capable_ack_rx: u64,
    /// Fallbacks: `MPCapableFallbackACK`/`MPCapableFallbackSYNACK` and later ones.
    pub fallbacks: u64,
    /// DSS options received.
    pub dss_rx: u64,
    /// Mappings received that disagree with one already known for the same bytes:
    /// `DSSNotMatching`.
    pub dss_not_matching: u64,
    /// Mappings whose checksum failed: `DataCsumErr`.
    pub data_csum_err: u64,
    /// Data bytes received twice at the data level (already delivered).
    pub duplicate_data: u64,
    /// Data bytes beyond the data-level window, dropped.
    pub beyond_window: u64,
    /// MP_FAIL sent / received.
    pub mp_fail_tx: u64,
    /// MP_FAIL received: `MPFailRx`.
    pub mp_fail_rx: u64,
    /// MP_FASTCLOSE sent: `MPFastcloseTx`.
    pub mp_fastclose_tx: u64,
    /// MP_FASTCLOSE received with our key: `MPFastcloseRx`.
    pub mp_fastclose_rx: u64,
    /// MP_FASTCLOSE received with a wrong key, ignored.
    pub mp_fastclose_bad_key: u64,
    /// MP_TCPRST received: `MPRstRx`.
    pub mp_rst_rx: u64,
    /// Third ACKs whose echoed key was not ours (a forged or confused peer).
    pub bad_key_echo: u64,
    /// Subflow data that no mapping covered after data-level delivery began (the connection
    /// is reset rather than skip or guess).
    pub unmapped_data: u64,
    /// Mappings without a checksum although checksums were negotiated (reset).
    pub missing_checksum: u64,
    /// MP_JOIN SYNs accepted: `MPJoinSynRx`.
    pub mp_join_syn_rx: u64,
    /// MP_JOIN SYN/ACKs whose HMAC verified: `MPJoinSynAckRx`.
    pub mp_join_synack_rx: u64,
    /// MP_JOIN third ACKs whose HMAC verified: `MPJoinAckRx`.
    pub mp_join_ack_rx: u64,
    /// MP_JOIN SYN/ACKs with a wrong HMAC (or none): `MPJoinSynAckHMacFailure`.
    pub mp_join_synack_hmac_failure: u64,
    /// MP_JOIN third ACKs with a wrong HMAC (or none): `MPJoinAckHMacFailure`.
    pub mp_join_ack_hmac_failure: u64,
    /// ADD_ADDR sent (first sends and retransmissions): `AddAddrTx`.
    pub add_addr_tx: u64,
    /// ADD_ADDR received with a valid HMAC: `AddAddr`.
    pub add_addr_rx: u64,
    /// ADD_ADDR received with a wrong HMAC, ignored.
    pub add_addr_bad_hmac: u64,
    /// Valid ADD_ADDR not recorded because the peer-address table is full: `AddAddrDrop`.
    pub add_addr_drop: u64,
    /// ADD_ADDR echoes sent: `EchoAddTx`.
    pub echo_add_tx: u64,
    /// ADD_ADDR echoes received: `EchoAdd`.
    pub echo_add_rx: u64,
    /// Announcements given up without an echo.
    pub add_addr_given_up: u64,
    /// REMOVE_ADDR sent: `RmAddrTx`.
    pub rm_addr_tx: u64,
    /// REMOVE_ADDR received: `RmAddr`.
    pub rm_addr_rx: u64,
    /// Subflows closed because their address was removed: `RmSubflow`.
    pub rm_subflow: u64,
    /// MP_PRIO sent: `MPPrioTx`.
    pub mp_prio_tx: u64,
    /// MP_PRIO received: `MPPrioRx`.
    pub mp_prio_rx: u64,
    /// Subflows marked stale (retransmission timeout with data outstanding).
    pub subflow_stale: u64,
    /// Stale subflows that acknowledged data again: `SubflowRecover`.
    pub subflow_recover: u64,
    /// Bytes mapped again on another subflow (reinjection).
    pub reinjected_bytes: u64,
    /// Reinjections of the oldest unacknowledged mapping because it blocked the
    /// connection-level window (opportunistic retransmission).
    pub opportunistic: u64,
    /// Subflows penalised (window halved) for blocking the connection-level window.
    pub penalties: u64,
    /// Data-level retransmissions: the oldest data not DATA_ACKed was acknowledged by every
    /// subflow that carried it (the peer dropped it at the connection level, as Linux does
    /// under memory pressure), so it was mapped again: on the data-level retransmission
    /// timer, or at once on a partial DATA_ACK during such a recovery.
    pub data_retransmits: u64,
    /// Data-level retransmission timer expiries that sent data again.
    pub data_rto_expiries: u64,
    /// Data-level zero-window probes: the peer's connection-level window was shut with data
    /// waiting and nothing in flight on any subflow, so no ACK would have come to reopen it
    /// (Linux's `MPTcpExtWinProbe` on its side).
    pub window_probes: u64,
    /// Received mappings not remembered because a subflow already held the most allowed.
    pub rx_maps_dropped: u64,
    /// Times a subflow took its own copy of data it was sending from the connection's buffer
    /// (it was stale, or held back too much of the buffer).
    pub tx_copies_taken: u64,
}

/// A mapping this side sent on a subflow: the chunk tagged `tag`.
#[derive(Debug, Clone, Copy)]
struct TxMap {
    tag: u64,
    dsn: Dsn,
    len: u16,
    checksum: Option<u16>,
    /// Sent as MP_CAPABLE with data (the client's first data, before the server confirmed).
    capable: bool,
    /// The subflow holds no copy: its segments read the connection's buffer.
    external: bool,
}

/// A mapping the peer announced on a subflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RxMap {
    /// Absolute subflow sequence number of the first byte.
    ssn: TcpSeq,
    dsn: Dsn,
    /// Data bytes (the DATA_FIN is not one).
    len: u32,
    checksum: Option<u16>,
    /// The data-level length as sent (data plus one for a DATA_FIN), for the checksum.
    wire_len: u16,
    /// An infinite mapping (data-level length 0): from `ssn` on, the subflow is the stream.
    infinite: bool,
}

impl RxMap {
    /// Whether it may be merged with a neighbour: no checksum (each checksummed mapping is
    /// verified whole) and not infinite.
    fn mergeable(&self) -> bool {
        self.checksum.is_none() && !self.infinite
    }

    /// Extend it to cover `len` bytes from `offset` on (never shrinking it); `false`, and
    /// unchanged, when the length would not fit.
    fn cover(&mut self, offset: u64, len: u32) -> bool {
        match u32::try_from((offset + u64::from(len)).max(u64::from(self.len))) {
            Ok(n) => {
                self.len = n;
                true
            }
            Err(_) => false,
        }
    }
}

/// The MPTCP side of one subflow.
#[derive(Debug)]
struct SubflowState {
    iss: TcpSeq,
    irs: TcpSeq,
    next_tag: u64,
    tx_maps: VecDeque<TxMap>,
    /// The bytes `tx_maps` cover (kept as they change, so that pruning is O(1) per packet).
    tx_mapped: usize,
    rx_maps: VecDeque<RxMap>,
    /// The most entries of `rx_maps` (see [`rx_map_cap`]).
    rx_map_cap: u32,
    /// MP_JOIN state of an additional subflow (`None` for the initial subflow).
    join: Option<JoinState>,
    /// Address ids of the local and remote ends (0 for the initial subflow's addresses).
    local_id: u8,
    remote_id: u8,
    /// We asked for this subflow to be a backup (MP_JOIN's B bit, or MP_PRIO).
    backup: bool,
    /// The peer asked for this subflow to be a backup.
    peer_backup: bool,
    /// An MP_PRIO to send on this subflow (section 3.3.8: it applies to the subflow it is on).
    prio_tx: Option<bool>,
    /// The retransmission timer fired with data outstanding and nothing was acknowledged
    /// since: the scheduler leaves it alone and its data went to the other subflows.
    stale: bool,
    /// Retransmission timeouts in a row without an acknowledgement.
    rto_streak: u8,
    /// The streak at which the subflow counts as failed and backups take over: one timeout
    /// more than makes it stale.
    fail_streak: u8,
    /// The subflow's RTO count and acknowledged bytes when last looked at.
    rto_seen: u64,
    acked_seen: u64,
    /// When the subflow was last penalised for blocking the connection-level window.
    last_penalty: Deadline,
    /// The subflow is closed and what it held was handed to the others.
    retired: bool,
    /// This subflow failed a checksum at this DSN: its RST carries MP_FAIL.
    fail_rst: Option<Dsn>,
    /// Server: a copy of the MP_JOIN third ACK arrived after the join completed (our fourth
    /// ACK was lost): answer it again.
    join_ack_again: bool,
    /// Client: when to send the MP_JOIN third ACK again if the server has not answered (unset:
    /// no timer), and how many times it went again (at most [`JOIN_ACK_RETRIES`]).
    join_ack_timer: Deadline,
    join_acks_resent: u8,
    /// A signal took the DSS's place on the last pure ACK: send another with the DATA_ACK.
    resend_ack: bool,
    /// Server: the order in which joins were accepted (the oldest pending one is evicted
    /// first; compared by age, so the count may wrap).
    join_order: u32,
}

impl SubflowState {
    fn new(iss: TcpSeq, join: Option<JoinState>, rx_map_cap: u32) -> Self {
        SubflowState {
            rx_map_cap,
            iss,
            irs: TcpSeq(0),
            next_tag: 0,
            tx_maps: VecDeque::new(),
            tx_mapped: 0,
            rx_maps: VecDeque::new(),
            join,
            local_id: 0,
            remote_id: 0,
            backup: false,
            peer_backup: false,
            prio_tx: None,
            stale: false,
            rto_streak: 0,
            fail_streak: 2,
            rto_seen: 0,
            acked_seen: 0,
            last_penalty: Deadline::NONE,
            retired: false,
            fail_rst: None,
            join_ack_again: false,
            join_ack_timer: Deadline::NONE,
            join_acks_resent: 0,
            resend_ack: false,
            join_order: 0,
        }
    }
}

/// The MP_JOIN handshake of one additional subflow (RFC 8684 section 3.2).
#[derive(Debug, Clone, Copy)]
struct JoinState {
    local_nonce: u32,
    remote_nonce: u32,
    phase: JoinPhase,
}

/// Where an MP_JOIN handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinPhase {
    /// Client: SYN sent. Server: SYN/ACK sent.
    Handshake,
    /// Client: third ACK (with the full HMAC) sent, waiting for the server's ACK.
    AckSent,
    /// Both sides verified each other: the subflow may carry data.
    Established,
    /// An HMAC did not verify or the peer did not join: the subflow is reset.
    Failed,
}

/// One subflow: the TCP connection and its MPTCP state.
#[derive(Debug)]
pub struct Subflow {
    tcp: Connection,
    st: SubflowState,
}

impl Subflow {
    /// The subflow's TCP connection (state, RTT, cwnd, counters).
    pub fn tcp(&self) -> &Connection {
        &self.tcp
    }
    /// The address id of the local end (0: the initial subflow's address).
    pub fn local_id(&self) -> u8 {
        self.st.local_id
    }
    /// The address id of the remote end.
    pub fn remote_id(&self) -> u8 {
        self.st.remote_id
    }
    /// Whether we asked the peer to treat this subflow as a backup.
    pub fn backup(&self) -> bool {
        self.st.backup
    }
    /// Whether the peer asked us to treat this subflow as a backup.
    pub fn peer_backup(&self) -> bool {
        self.st.peer_backup
    }
    /// Whether the subflow is stale (its retransmission timer fired and nothing was
    /// acknowledged since).
    pub fn is_stale(&self) -> bool {
        self.st.stale
    }
    /// Whether it may carry data: established, joined, and not stale.
    pub fn is_active(&self) -> bool {
        usable(self) && !self.st.stale
    }
    /// Closed and handed over: its slot may be reused.
    pub fn is_retired(&self) -> bool {
        self.st.retired
    }
}

/// Why a connection fell back to TCP.
pub type FallbackReason = &'static str;

/// Connection-level state shared by the subflows' hooks.
#[derive(Debug)]
struct Shared {
    role: Role,
    mode: Mode,
    fallback_reason: Option<FallbackReason>,
    checksum: bool,
    local: KeyMaterial,
    remote: Option<KeyMaterial>,
    /// Client: the server answered with a DSS, so it has our key. Server: the third ACK (or
    /// first data) with both keys arrived.
    confirmed: bool,
    // Receive side.
    rx: Reassembly,
    peer_data_fin: Option<Dsn>,
    data_fin_received: bool,
    // Send side: `tx` holds the bytes from `tx_start` on: from `snd_una` (DATA_ACK), or from
    // further back while a subflow still needs bytes it was given without a copy.
    tx: Ring,
    tx_start: Dsn,
    snd_una: Dsn,
    snd_nxt: Dsn,
    fin_queued: bool,
    data_fin_acked: bool,
    fastclose_tx: bool,
    fastclose_rx: bool,
    /// The DATA_ACK of the segment being processed, to which its window is relative.
    window_base: Option<Dsn>,
    /// The right edge of the peer's data-level receive window (DATA_ACK + window), never
    /// moved left; `None` until the first DATA_ACK.
    wnd_end: Option<Dsn>,
    /// Receiver: the DATA_ACK on the segment being transmitted (its window is relative to it).
    data_ack_tx: Option<Dsn>,
    /// Receiver: the highest DATA_ACK sent, and the right edge of the data-level window we
    /// advertised (DATA_ACK + window), the most the peer may send up to; `None` until the
    /// first DATA_ACK went out.
    rcv_adv: Option<(Dsn, Dsn)>,
    /// The DATA_FIN was put on an ACK once; further copies come from the FIN timer.
    data_fin_signalled: bool,
    /// Client, before the server's first DSS: the last pure ACK carried the keys (the next
    /// one may carry a pending DATA_FIN).
    keys_sent: bool,
    mp_fail_tx: Option<Dsn>,
    /// Receiver: MP_FAIL sent for this DSN; subflow data is discarded until the infinite
    /// mapping arrives.
    awaiting_infinite: Option<Dsn>,
    /// Sender: the peer's MP_FAIL asked for an infinite mapping at this DSN.
    fail_requested: Option<Dsn>,
    /// Sender: the infinite mapping (DSN) rides on the segment that starts at this subflow
    /// sequence number, until the subflow acknowledges it.
    infinite_tx: Option<(TcpSeq, Dsn)>,
    reset: bool,
    counters: Counters,
    /// ADD_ADDR / REMOVE_ADDR state.
    signals: Signals,
    /// Address ids the peer removed, for the connection to act on after the segment.
    removed_rx: Vec<u8>,
    /// Something a path manager should look at changed (peer address learned or removed,
    /// subflow closed).
    pm_changed: bool,
    /// DSN ranges to map again on another subflow (reinjection), oldest first.
    reinject: VecDeque<(Dsn, u64)>,
    /// The peer's latest ACK carried a DATA_ACK: it acknowledges at the data level (one that
    /// fell back, or whose options a middlebox strips, does not, and its silence there is
    /// no sign of loss).
    peer_data_acks: bool,
    /// The latest time the connection was given.
    now: Instant,
    /// The server set C on its SYN/ACK: no join to its initial address and port.
    no_join_initial: bool,
    /// Subflow bytes after an infinite mapping that the application already has: discarded
    /// before plain-TCP reading starts.
    fallback_skip: u64,
}

impl Shared {
    fn data_fin_dsn(&self) -> Option<Dsn> {
        (self.fin_queued && self.snd_nxt == self.tx_end()).then_some(self.snd_nxt)
    }

    /// One past the last byte the application queued.
    fn tx_end(&self) -> Dsn {
        self.tx_start + self.tx.len() as u64
    }

    /// Bytes queued and not DATA_ACKed.
    fn queued(&self) -> usize {
        self.tx_end().distance_from(self.snd_una).max(0) as usize
    }

    /// Bytes queued and not yet mapped.
    fn unmapped(&self) -> usize {
        self.tx_end().distance_from(self.snd_nxt).max(0) as usize
    }

    fn fall_back(&mut self, reason: FallbackReason) {
        if self.mode != Mode::Fallback {
            self.mode = Mode::Fallback;
            self.fallback_reason = Some(reason);
            self.counters.fallbacks += 1;
        }
    }

    fn process_data_ack(&mut self, ack: Dsn) {
        let fin = self.data_fin_dsn();
        let limit = self.snd_nxt + u64::from(fin.is_some());
        if ack.distance_from(self.snd_una) <= 0 || ack.distance_from(limit) > 0 {
            return;
        }
        let mut n = ack.distance_from(self.snd_una) as u64;
        if fin.is_some_and(|f| ack == f + 1) {
            self.data_fin_acked = true;
            n -= 1;
        }
        // The bytes stay in `tx` until `release_tx`: a subflow may still need them.
        self.snd_una = self.snd_una + n;
    }
}

/// The per-segment hooks of one subflow.
struct SubflowHooks<'a> {
    sh: &'a mut Shared,
    st: &'a mut SubflowState,
}

impl Hooks for SubflowHooks<'_> {
    fn reserved_option_space(&self) -> usize {
        match self.sh.mode {
            // The segment where plain TCP resumes must carry the infinite mapping, data or not.
            Mode::Fallback if self.sh.infinite_tx.is_some() => INFINITE_DSS_SPACE,
            Mode::Fallback => 0,
            _ => DSS_SPACE,
        }
    }

    fn on_transmit(&mut self, info: &OutgoingInfo, options: &mut TcpOptions) {
        let sh = &mut *self.sh;
        let f = info.flags;
        if f.rst() {
            if sh.fastclose_tx
                && let Some(remote) = sh.remote
            {
                let _ = options.mptcp.push(MptcpRepr::FastClose {
                    receiver_key: remote.key,
                });
                sh.counters.mp_fastclose_tx += 1;
            }
            if let Some(dsn) = self.st.fail_rst.take() {
                // This subflow failed a checksum; the connection goes on over the others. The
                // reason is a middlebox (RFC 8684 section 3.6), as Linux gives it.
                let _ = options.mptcp.push(MptcpRepr::Fail { dsn });
                let _ = options.mptcp.push(MptcpRepr::TcpRst(TcpRstRepr {
                    flags: 0,
                    reason: TcpRstReason::MIDDLEBOX,
                }));
            }
            if let Some(dsn) = sh.mp_fail_tx.take() {
                // A failed checksum ends the connection: say where (MP_FAIL) and why
                // (MP_TCPRST, MPTCP-specific error) on the reset.
                let _ = options.mptcp.push(MptcpRepr::Fail { dsn });
                let _ = options.mptcp.push(MptcpRepr::TcpRst(TcpRstRepr {
                    flags: 0,
                    reason: TcpRstReason::MPTCP_ERROR,
                }));
                sh.counters.mp_fail_tx += 1;
            }
            return;
        }
        let flags = CapableFlags::v1(sh.checksum, false);
        match sh.mode {
            Mode::Fallback => {
                // Section 3.7: the infinite mapping goes on every copy of the segment that starts
                // where the plain-TCP stream resumes (data or pure ACK), so the receiver never
                // sees data there without it; the MP_FAIL echo rides along where it fits. The
                // DSS is as small as it gets (4-byte DSN, no DATA_ACK): the room is reserved.
                if let Some((at, dsn)) = sh.infinite_tx
                    && info.seq == at
                {
                    let checksum = sh.checksum.then_some(0);
                    let dss = MptcpRepr::Dss(DssRepr {
                        data_ack: None,
                        mapping: Some(DssMapping {
                            dsn: DsnField::Short(dsn.0 as u32),
                            ssn: Ssn(0),
                            data_len: 0,
                            checksum,
                        }),
                        data_fin: false,
                    });
                    let need = |r: &MptcpRepr| crate::wire::tcp::padded(r.buffer_len());
                    if options.room() >= need(&dss) {
                        let _ = options.mptcp.push(dss);
                    }
                    if let Some(d) = sh.mp_fail_tx {
                        let fail = MptcpRepr::Fail { dsn: d };
                        if options.room() >= need(&fail) && options.mptcp.push(fail).is_ok() {
                            sh.mp_fail_tx = None;
                        }
                    }
                }
                return;
            }
            Mode::Pending => {
                if f.syn() && !f.ack() {
                    let _ = options.mptcp.push(MptcpRepr::Capable(CapableRepr {
                        version: 1,
                        flags,
                        keys: CapableKeys::None,
                    }));
                    sh.counters.mp_capable_syn_tx += 1;
                }
                return;
            }
            Mode::Mptcp => {}
        }
        if let Some(j) = self.st.join.as_mut() {
            let Some(remote) = sh.remote else { return };
            match (j.phase, f.syn(), f.ack()) {
                (JoinPhase::Handshake, true, false) => {
                    let _ = options.mptcp.push(MptcpRepr::Join(JoinRepr::Syn {
                        backup: self.st.backup,
                        addr_id: self.st.local_id,
                        token: remote.token,
                        nonce: j.local_nonce,
                    }));
                    return;
                }
                (JoinPhase::Handshake, true, true) => {
                    let hmac =
                        join_synack_hmac(sh.local.key, remote.key, j.local_nonce, j.remote_nonce);
                    let _ = options.mptcp.push(MptcpRepr::Join(JoinRepr::SynAck {
                        backup: self.st.backup,
                        addr_id: self.st.local_id,
                        hmac,
                        nonce: j.local_nonce,
                    }));
                    return;
                }
                (JoinPhase::AckSent, false, _) => {
                    // The third ACK is reliable: repeated until the server's ACK arrives.
                    let hmac =
                        join_ack_hmac(sh.local.key, remote.key, j.local_nonce, j.remote_nonce);
                    let _ = options.mptcp.push(MptcpRepr::Join(JoinRepr::Ack { hmac }));
                    return;
                }
                (JoinPhase::Established, false, _) => {}
                _ => return,
            }
        }
        if f.syn() {
            // The server's SYN/ACK carries its key.
            let keys = CapableKeys::Sender {
                sender_key: sh.local.key,
            };
            let _ = options.mptcp.push(MptcpRepr::Capable(CapableRepr {
                version: 1,
                flags,
                keys,
            }));
            return;
        }
        let Some(remote) = sh.remote else { return };
        // Tags grow with every mapping pushed: the queue is sorted by tag.
        let map = info.chunk.and_then(|(_, _, tag)| {
            let maps = &self.st.tx_maps;
            maps.binary_search_by_key(&tag, |m| m.tag)
                .ok()
                .map(|k| maps[k])
        });
        // RFC 8684 section 3.1: until the server shows it has our key, the client repeats both
        // keys; its first data goes as MP_CAPABLE with data.
        if sh.role == Role::Client && !sh.confirmed {
            if let Some(m) = map.filter(|m| m.capable) {
                let keys = CapableKeys::WithData {
                    sender_key: sh.local.key,
                    receiver_key: remote.key,
                    data_len: m.len,
                    checksum: m.checksum,
                };
                let _ = options.mptcp.push(MptcpRepr::Capable(CapableRepr {
                    version: 1,
                    flags,
                    keys,
                }));
                return;
            }
            // A DATA_FIN of a connection that never sent data goes in a DSS instead (the keys
            // went on the third ACK already); otherwise the close would wait for a server that
            // may have nothing to send.
            // Until the server confirms, DATA_FIN copies alternate with copies of the keys: a
            // lost third ACK must not leave the server unable to read our DATA_FIN.
            let data_fin_due = sh.keys_sent
                && !sh.data_fin_acked
                && sh.data_fin_dsn().is_some()
                && sh.data_fin_signalled;
            if info.len == 0 && data_fin_due {
                sh.keys_sent = false;
            } else if info.len == 0 {
                sh.keys_sent = true;
                let keys = CapableKeys::Both {
                    sender_key: sh.local.key,
                    receiver_key: remote.key,
                };
                let _ = options.mptcp.push(MptcpRepr::Capable(CapableRepr {
                    version: 1,
                    flags,
                    keys,
                }));
                return;
            }
        }
        let mut dss = DssRepr {
            data_ack: Some(DsnField::Long(sh.rx.next().0)),
            mapping: None,
            data_fin: false,
        };
        if let (Some(m), Some((start, _, _))) = (map, info.chunk) {
            dss.mapping = Some(DssMapping {
                dsn: DsnField::Long(m.dsn.0),
                ssn: Ssn(start.distance_from(self.st.iss) as u32),
                data_len: m.len,
                checksum: m.checksum,
            });
        } else if info.len == 0
            && !sh.data_fin_acked
            && let Some(fin) = sh.data_fin_dsn()
        {
            // A DATA_FIN on its own: subflow sequence 0, data-level length 1 (section 3.3.3).
            let checksum = sh.checksum.then(|| dss_checksum(fin, Ssn(0), 1, &[]));
            dss.mapping = Some(DssMapping {
                dsn: DsnField::Long(fin.0),
                ssn: Ssn(0),
                data_len: 1,
                checksum,
            });
            dss.data_fin = true;
        }
        // While waiting for the infinite mapping, every segment repeats the MP_FAIL.
        if let Some(dsn) = sh.awaiting_infinite {
            let _ = options.mptcp.push(MptcpRepr::Fail { dsn });
        }
        let pure_ack = info.len == 0 && !f.fin() && !dss.data_fin && sh.confirmed;
        write_signals(sh, self.st, options, MptcpRepr::Dss(dss), pure_ack);
    }

    /// In-order subflow data whose mapping is known, without a checksum, and that fits the
    /// data-level window as new data goes straight from the packet into the connection-level
    /// reassembly: one copy instead of two (into the subflow's buffer, then out of it in
    /// `pull_data`). Anything else (a checksummed mapping, which is verified whole; data
    /// without a mapping; duplicates; data beyond the window; fallback) takes the general path.
    fn deliver(&mut self, seq: TcpSeq, payload: &[u8]) -> bool {
        let sh = &mut *self.sh;
        if sh.mode != Mode::Mptcp
            || sh.awaiting_infinite.is_some()
            || self
                .st
                .join
                .is_some_and(|j| j.phase != JoinPhase::Established)
        {
            return false;
        }
        drop_delivered_maps(&mut self.st.rx_maps, seq);
        let Some(m) = self.st.rx_maps.front().copied() else {
            return false;
        };
        let offset = seq.distance_from(m.ssn);
        if m.infinite
            || m.checksum.is_some()
            || offset < 0
            || offset as u64 + payload.len() as u64 > u64::from(m.len)
        {
            return false;
        }
        let dsn = m.dsn + offset as u64;
        let ahead = dsn.distance_from(sh.rx.next());
        if ahead < 0 || ahead as u64 + payload.len() as u64 > sh.rx.window() as u64 {
            return false;
        }
        let res = sh.rx.insert(dsn, payload);
        debug_assert_eq!(res.stored, payload.len());
        true
    }

    fn payload(&mut self, info: &OutgoingInfo, out: &mut [u8]) -> bool {
        let Some((start, _, tag)) = info.chunk else {
            return false;
        };
        let maps = &self.st.tx_maps;
        let Ok(k) = maps.binary_search_by_key(&tag, |m| m.tag) else {
            return false;
        };
        let m = maps[k];
        let into = info.seq.distance_from(start);
        if !m.external || into < 0 || into as usize + out.len() > usize::from(m.len) {
            return false;
        }
        let offset = (m.dsn + into as u64).distance_from(self.sh.tx_start);
        if offset < 0 || offset as usize + out.len() > self.sh.tx.len() {
            return false;
        }
        self.sh.tx.read_at(offset as usize, out);
        true
    }

    fn on_receive(&mut self, seg: &TcpSegment<'_>) {
        let sh = &mut *self.sh;
        let f = seg.flags;
        if let Some(j) = self.st.join.as_mut()
            && j.phase != JoinPhase::Established
        {
            let Some(remote) = sh.remote else { return };
            let join = seg.options.mptcp.iter().find_map(|o| match o {
                MptcpRepr::Join(j) => Some(*j),
                _ => None,
            });
            match (j.phase, f.syn()) {
                (JoinPhase::Handshake, true) => {
                    // Client: the SYN/ACK must prove the server knows both keys (section 3.2).
                    self.st.irs = seg.seq;
                    match join {
                        Some(JoinRepr::SynAck {
                            backup,
                            addr_id,
                            hmac,
                            nonce,
                        }) if hmac
                            == join_synack_hmac(remote.key, sh.local.key, nonce, j.local_nonce) =>
                        {
                            j.remote_nonce = nonce;
                            self.st.remote_id = addr_id;
                            self.st.peer_backup = backup;
                            j.phase = JoinPhase::AckSent;
                            sh.counters.mp_join_synack_rx += 1;
                        }
                        _ => {
                            sh.counters.mp_join_synack_hmac_failure += 1;
                            j.phase = JoinPhase::Failed;
                        }
                    }
                }
                (JoinPhase::Handshake, false) if f.ack() => {
                    // Server: the third ACK carries the client's full HMAC.
                    match join {
                        Some(JoinRepr::Ack { hmac })
                            if hmac
                                == join_ack_hmac(
                                    remote.key,
                                    sh.local.key,
                                    j.remote_nonce,
                                    j.local_nonce,
                                ) =>
                        {
                            j.phase = JoinPhase::Established;
                            sh.counters.mp_join_ack_rx += 1;
                        }
                        _ => {
                            sh.counters.mp_join_ack_hmac_failure += 1;
                            j.phase = JoinPhase::Failed;
                        }
                    }
                }
                // Client: any segment with a DSS (the server's ACK of our third ACK) ends the
                // handshake.
                (JoinPhase::AckSent, false) if seg.options.mptcp.dss().is_some() => {
                    j.phase = JoinPhase::Established;
                }
                _ => {}
            }
            if j.phase != JoinPhase::Established {
                return;
            }
        }
        if f.syn() && self.st.join.is_some() {
            return;
        }
        if sh.role == Role::Server
            && self.st.join.is_some()
            && seg
                .options
                .mptcp
                .iter()
                .any(|o| matches!(o, MptcpRepr::Join(JoinRepr::Ack { .. })))
        {
            // Section 3.2: the third ACK is reliable; a copy means our answer was lost.
            self.st.join_ack_again = true;
        }
        if f.syn() {
            self.st.irs = seg.seq;
            if sh.role == Role::Client && sh.mode == Mode::Pending {
                let capable = seg.options.mptcp.iter().find_map(|o| match o {
                    MptcpRepr::Capable(c) => Some(*c),
                    _ => None,
                });
                match capable {
                    Some(CapableRepr {
                        version: 1,
                        flags,
                        keys: CapableKeys::Sender { sender_key },
                    }) if flags.hmac_sha256() => {
                        sh.counters.mp_capable_synack_rx += 1;
                        // RFC 8684 section 3.1: C set, the server accepts no join to the
                        // address and port of this SYN/ACK.
                        sh.no_join_initial = flags.no_join_to_initial();
                        let remote = KeyMaterial::from_key(sender_key);
                        sh.remote = Some(remote);
                        sh.checksum |= flags.checksum();
                        sh.rx = Reassembly::new(remote.idsn + 1, sh.rx.window());
                        sh.mode = Mode::Mptcp;
                    }
                    _ => sh.fall_back("SYN/ACK without MP_CAPABLE"),
                }
            }
            return;
        }
        if sh.mode == Mode::Fallback {
            return;
        }
        let mut any_mptcp = false;
        let mut data_acked = false;
        for option in seg.options.mptcp.iter() {
            any_mptcp = true;
            match *option {
                MptcpRepr::Capable(CapableRepr { keys, .. }) if sh.role == Role::Server => {
                    let (sender_key, receiver_key, data) = match keys {
                        CapableKeys::Both {
                            sender_key,
                            receiver_key,
                        } => (sender_key, receiver_key, None),
                        CapableKeys::WithData {
                            sender_key,
                            receiver_key,
                            data_len,
                            checksum,
                        } => (sender_key, receiver_key, Some((data_len, checksum))),
                        _ => continue,
                    };
                    if receiver_key != sh.local.key {
                        sh.counters.bad_key_echo += 1;
                        continue;
                    }
                    if !sh.confirmed {
                        let remote = KeyMaterial::from_key(sender_key);
                        sh.remote = Some(remote);
                        sh.rx = Reassembly::new(remote.idsn + 1, sh.rx.window());
                        sh.confirmed = true;
                        sh.counters.mp_capable_ack_rx += 1;
                    }
                    if let (Some((data_len, checksum)), Some(remote)) = (data, sh.remote)
                        && !seg.payload.is_empty()
                        && data_len > 0
                    {
                        // The client's first data: DSN = IDSN + 1 at subflow sequence 1.
                        let map = RxMap {
                            ssn: self.st.irs + 1,
                            dsn: remote.idsn + 1,
                            len: u32::from(data_len),
                            checksum,
                            wire_len: data_len,
                            infinite: false,
                        };
                        record_rx_map(
                            &mut self.st.rx_maps,
                            map,
                            &mut sh.counters,
                            self.st.rx_map_cap as usize,
                        );
                    }
                }
                MptcpRepr::Dss(d) => {
                    sh.counters.dss_rx += 1;
                    if sh.role == Role::Client {
                        sh.confirmed = true;
                    }
                    if let Some(ack) = d.data_ack {
                        data_acked = true;
                        let ack = ack.expand(sh.snd_una);
                        sh.process_data_ack(ack);
                        // The window of this segment is relative to this DATA_ACK (section
                        // 3.3.4); the subflow scales it once TCP has processed the segment.
                        sh.window_base = Some(ack);
                    }
                    if let Some(m) = d.mapping {
                        if m.data_len == 0 {
                            // An infinite mapping (section 3.7): from this segment on the
                            // subflow is the stream. Linux writes subflow sequence 0 in it, so
                            // its start is the segment that carries it.
                            let map = RxMap {
                                ssn: seg.seq,
                                dsn: m.dsn.expand(sh.rx.next()),
                                len: 0,
                                checksum: None,
                                wire_len: 0,
                                infinite: true,
                            };
                            self.st.rx_maps.retain(|r| r.ssn.distance_from(seg.seq) < 0);
                            self.st.rx_maps.push_back(map);
                            continue;
                        }
                        let dsn = m.dsn.expand(sh.rx.next());
                        let data_len = u32::from(m.data_len) - u32::from(d.data_fin);
                        if d.data_fin {
                            sh.peer_data_fin = Some(dsn + u64::from(data_len));
                        }
                        if data_len > 0 && sh.checksum && m.checksum.is_none() {
                            // Section 3.3.1: with checksums negotiated every mapping carries
                            // one; an unverifiable mapping is never delivered.
                            sh.counters.missing_checksum += 1;
                            sh.reset = true;
                        } else if data_len > 0 {
                            let map = RxMap {
                                ssn: self.st.irs + m.ssn.0,
                                dsn,
                                len: data_len,
                                checksum: m.checksum,
                                wire_len: m.data_len,
                                infinite: false,
                            };
                            record_rx_map(
                                &mut self.st.rx_maps,
                                map,
                                &mut sh.counters,
                                self.st.rx_map_cap as usize,
                            );
                        }
                    }
                }
                MptcpRepr::FastClose { receiver_key } => {
                    if receiver_key == sh.local.key {
                        sh.counters.mp_fastclose_rx += 1;
                        sh.fastclose_rx = true;
                    } else {
                        sh.counters.mp_fastclose_bad_key += 1;
                    }
                }
                MptcpRepr::TcpRst(_) => sh.counters.mp_rst_rx += 1,
                MptcpRepr::AddAddr(a) => {
                    let Some(remote) = sh.remote else { continue };
                    let outcome = sh.signals.on_add_addr(&a, sh.local.key, remote.key);
                    if sh.role == Role::Client
                        && !matches!(outcome, AddAddrOutcome::Echo | AddAddrOutcome::BadHmac)
                    {
                        // A valid HMAC is keyed with both keys: the server has ours, as a DSS
                        // would have shown (an IPv6 ADD_ADDR leaves no room for the DSS).
                        sh.confirmed = true;
                    }
                    let c = &mut sh.counters;
                    match outcome {
                        AddAddrOutcome::Echo => c.echo_add_rx += 1,
                        AddAddrOutcome::Learned => {
                            c.add_addr_rx += 1;
                            sh.pm_changed = true;
                        }
                        AddAddrOutcome::Repeat => c.add_addr_rx += 1,
                        AddAddrOutcome::OverLimit => {
                            c.add_addr_rx += 1;
                            c.add_addr_drop += 1;
                        }
                        AddAddrOutcome::BadHmac => c.add_addr_bad_hmac += 1,
                    }
                }
                MptcpRepr::RemoveAddr(list) => {
                    sh.counters.rm_addr_rx += 1;
                    for &id in list.as_slice() {
                        sh.signals.on_remove(id);
                        if !sh.removed_rx.contains(&id) && sh.removed_rx.len() < MAX_REMOVED_RX {
                            sh.removed_rx.push(id);
                        }
                    }
                    sh.pm_changed = true;
                }
                MptcpRepr::Prio { backup } => {
                    // Section 3.3.8: MP_PRIO changes the priority of the subflow it arrives on.
                    sh.counters.mp_prio_rx += 1;
                    self.st.peer_backup = backup;
                }
                MptcpRepr::Fail { dsn } => {
                    sh.counters.mp_fail_rx += 1;
                    // Our own MP_FAIL echoed back needs nothing; otherwise the peer asks us to
                    // fall back at `dsn`.
                    // On a RST it ends only that subflow, whose data is sent again on the
                    // others (section 3.7).
                    if !f.rst()
                        && sh.awaiting_infinite.is_none()
                        && sh.mode == Mode::Mptcp
                        && sh.fail_requested.is_none()
                        && sh.infinite_tx.is_none()
                    {
                        sh.fail_requested = Some(dsn);
                    }
                }
                _ => {}
            }
        }
        if f.ack()
            && self
                .st
                .join
                .is_none_or(|j| j.phase == JoinPhase::Established)
        {
            sh.peer_data_acks = data_acked;
        }
        // RFC 8684 section 3.1: a third ACK without MP_CAPABLE means a middlebox stripped it.
        if sh.role == Role::Server && !sh.confirmed && !any_mptcp && f.ack() {
            sh.fall_back("third ACK without MP_CAPABLE");
        }
        // The client's side of the same: a server that answers after the handshake with no
        // MPTCP option at all never got (or never accepted) our keys and speaks TCP now.
        if sh.role == Role::Client
            && !sh.confirmed
            && !any_mptcp
            && f.ack()
            && self.st.join.is_none()
        {
            sh.fall_back("server answered without MPTCP options");
        }
    }
}

/// The fewest mappings remembered per subflow ahead of its data; more with a larger receive
/// buffer (see [`rx_map_cap`]).
const MIN_RX_MAPS: usize = 1024;

/// The most mappings a subflow remembers: one per 512 bytes its receive buffer can hold (a
/// sender mapping segment by segment between subflows needs one per segment in flight), at
/// least [`MIN_RX_MAPS`].
fn rx_map_cap(rx_buffer: usize) -> u32 {
    u32::try_from((rx_buffer / 512).max(MIN_RX_MAPS)).unwrap_or(u32::MAX)
}

/// The most REMOVE_ADDR ids waiting to be acted on.
const MAX_REMOVED_RX: usize = 16;

/// Put the DSS and any pending signal (ADD_ADDR or its echo, REMOVE_ADDR, this subflow's
/// MP_PRIO) on an outgoing segment, as far as they fit in the 40 bytes of option space.
/// Signals go only on pure ACKs (`pure_ack`): a data segment's mapping always has priority.
fn write_signals(
    sh: &mut Shared,
    st: &mut SubflowState,
    options: &mut TcpOptions,
    dss: MptcpRepr,
    pure_ack: bool,
) {
    let need = |r: &MptcpRepr| crate::wire::tcp::padded(r.buffer_len());
    let dss_len = need(&dss);
    let mut keep_dss = true;
    if pure_ack && let Some(remote) = sh.remote {
        if let Some(add) = sh.signals.next_add_addr(sh.local.key, remote.key) {
            let r = MptcpRepr::AddAddr(add);
            let n = need(&r);
            if options.room() < n + dss_len {
                // It does not fit beside the DATA_ACK: it goes alone on this pure ACK, and
                // another ACK follows with the DATA_ACK. An IPv6 ADD_ADDR with a port and HMAC
                // (30 bytes) does not fit beside timestamps either: this one ACK goes without
                // them. (RFC 7323 section 3.2 wants them on every segment once negotiated;
                // Linux accepts a segment without, and RFC 8684 leaves no other room.)
                keep_dss = false;
                st.resend_ack = true;
                if options.room() < n {
                    options.timestamp = None;
                }
            }
            if options.room() >= n && options.mptcp.push(r).is_ok() {
                sh.signals.sent_add_addr(&add, sh.now);
                if add.is_echo() {
                    sh.counters.echo_add_tx += 1;
                } else {
                    sh.counters.add_addr_tx += 1;
                }
            }
        }
        let reserve = if keep_dss { dss_len } else { 0 };
        if let Some(list) = sh.signals.next_remove() {
            let r = MptcpRepr::RemoveAddr(list);
            if options.room() >= need(&r) + reserve && options.mptcp.push(r).is_ok() {
                sh.signals.sent_remove();
                sh.counters.rm_addr_tx += 1;
            }
        }
    }
    if let Some(backup) = st.prio_tx {
        let r = MptcpRepr::Prio { backup };
        let reserve = if keep_dss { dss_len } else { 0 };
        if options.room() >= need(&r) + reserve && options.mptcp.push(r).is_ok() {
            st.prio_tx = None;
            sh.counters.mp_prio_tx += 1;
        }
    }
    if keep_dss
        && options.room() >= dss_len
        && options.mptcp.push(dss).is_ok()
        && let MptcpRepr::Dss(DssRepr {
            data_ack: Some(DsnField::Long(ack)),
            ..
        }) = dss
    {
        // The window of this segment is relative to it (see `Shared::rcv_adv`).
        sh.data_ack_tx = Some(Dsn(ack));
    }
}

/// Forget the received mappings that end at or before subflow sequence `seq` (everything
/// before it has been delivered); an infinite mapping stays.
fn drop_delivered_maps(maps: &mut VecDeque<RxMap>, seq: TcpSeq) {
    while maps
        .front()
        .is_some_and(|m| !m.infinite && (m.ssn + m.len).distance_from(seq) <= 0)
    {
        maps.pop_front();
    }
}

/// Remember a mapping received on a subflow, in subflow-sequence order. Mappings without a
/// checksum that continue one another in both sequence spaces are kept as one (a sender that
/// maps segment by segment, as ours and Linux's do between two busy subflows, would otherwise
/// fill the list with a window's worth), and one that repeats part of a known mapping
/// (a retransmission) adds nothing. Bounded by `cap`: beyond it a new mapping is dropped and
/// counted.
fn record_rx_map(maps: &mut VecDeque<RxMap>, map: RxMap, counters: &mut Counters, cap: usize) {
    // The first mapping that starts after this one.
    let pos = maps.partition_point(|m| m.ssn.distance_from(map.ssn) <= 0);
    if pos > 0 {
        let prev = &mut maps[pos - 1];
        let mergeable = prev.mergeable() && map.mergeable();
        if prev.ssn == map.ssn && !mergeable {
            if prev.dsn != map.dsn || prev.len != map.len {
                counters.dss_not_matching += 1;
            }
            return;
        }
        let into = map.ssn.distance_from(prev.ssn) as u64;
        let continues = prev.dsn + into == map.dsn;
        if mergeable && into < u64::from(prev.len) && !continues {
            // The same subflow bytes at another DSN: keep what was announced first.
            counters.dss_not_matching += 1;
            return;
        }
        if mergeable && into <= u64::from(prev.len) && continues {
            if prev.cover(into, map.len) {
                merge_next(maps, pos - 1);
            } else {
                counters.rx_maps_dropped += 1;
            }
            return;
        }
    }
    if maps.len() >= cap {
        // Bounded: a peer announcing mappings far ahead of its data, or many tiny ones, gets
        // them dropped (a mapping ahead of its data comes again on the data's own segment).
        counters.rx_maps_dropped += 1;
        return;
    }
    maps.insert(pos, map);
    merge_next(maps, pos);
}

/// Fold the mapping after `i` into it when `i` now reaches it and both continue one another.
fn merge_next(maps: &mut VecDeque<RxMap>, i: usize) {
    while i + 1 < maps.len() {
        let (cur, next) = (maps[i], maps[i + 1]);
        let reach = next.ssn.distance_from(cur.ssn) as u64;
        if !(cur.mergeable() && next.mergeable())
            || reach > u64::from(cur.len)
            || cur.dsn + reach != next.dsn
            || !maps[i].cover(reach, next.len)
        {
            return;
        }
        maps.remove(i + 1);
    }
}

/// Whether a subflow may carry data: TCP established and, for a join, both HMACs verified.
fn usable(sub: &Subflow) -> bool {
    matches!(sub.tcp.state(), State::Established | State::CloseWait)
        && sub
            .st
            .join
            .is_none_or(|j| j.phase == JoinPhase::Established)
}

/// Whether either side asked for subflow `sub` to be a backup.
fn is_backup(sub: &Subflow) -> bool {
    sub.st.backup || sub.st.peer_backup
}

/// What the scheduler sees of subflow `sub`.
fn sched_info(sub: &Subflow) -> SubflowInfo {
    let tcp = &sub.tcp;
    SubflowInfo {
        usable: usable(sub),
        stale: sub.st.stale,
        failed: sub.st.stale && sub.st.rto_streak >= sub.st.fail_streak,
        backup: is_backup(sub),
        srtt: tcp.srtt(),
        cwnd: tcp.cwnd(),
        mss: data_mss(tcp),
        queued: tcp.send_queue(),
        capacity: tcp.send_capacity(),
    }
}

/// Map `len` bytes of the send buffer from `dsn` onto subflow `sub` as one mapping (a chunk the
/// subflow engine never merges with another). Returns false when the subflow took nothing.
///
/// A `fresh` mapping (new data, in DSN order on its subflow) without a DSS checksum is not
/// copied: the subflow's segments read it from the connection's buffer (`Hooks::payload`),
/// which keeps it until the subflow has it acknowledged too (see `release_tx`). Copies
/// (reinjection, opportunistic and redundant sends) and checksummed mappings are copied into the
/// subflow's buffer once.
fn map_range(
    sh: &mut Shared,
    sub: &mut Subflow,
    dsn: Dsn,
    len: usize,
    capable: bool,
    fresh: bool,
) -> bool {
    let offset = dsn.distance_from(sh.tx_start);
    if len == 0
        || dsn.distance_from(sh.snd_una) < 0
        || offset < 0
        || offset as usize + len > sh.tx.len()
    {
        return false;
    }
    let external = fresh && !capable && !sh.checksum && sh.mode == Mode::Mptcp;
    let tag = sub.st.next_tag;
    let checksum = if external {
        if !sub.tcp.send_chunk_external(len, tag) {
            return false;
        }
        None
    } else {
        // The mapping's bytes as they lie in the connection's ring: copied once, straight
        // into the subflow's buffer.
        let (first, second) = sh.tx.slices_at(offset as usize, len);
        let ssn_rel = Ssn(sub.tcp.next_send_seq().distance_from(sub.st.iss) as u32);
        let checksum = sh.checksum.then(|| {
            let mut c = DssChecksum::new(dsn, ssn_rel, len as u16);
            c.update(first);
            c.update(second);
            c.finish()
        });
        if !sub.tcp.send_chunk_parts(first, second, tag) {
            return false;
        }
        checksum
    };
    sub.st.next_tag += 1;
    sub.st.tx_mapped += len;
    sub.st.tx_maps.push_back(TxMap {
        tag,
        dsn,
        len: len as u16,
        checksum,
        capable,
        external,
    });
    true
}

/// Queue the data of `maps` that the peer has not DATA_ACKed for reinjection.
fn queue_reinjection(sh: &mut Shared, maps: &VecDeque<TxMap>) {
    for m in maps {
        let end = m.dsn + u64::from(m.len);
        if end.distance_from(sh.snd_una) <= 0 {
            continue;
        }
        if sh.reinject.len() >= MAX_REINJECT_RANGES {
            // Bounded: the oldest ranges are the ones that block the window; newer data is
            // still with its subflow's own retransmissions.
            break;
        }
        sh.reinject.push_back((m.dsn, u64::from(m.len)));
    }
}

/// The longest wait between copies of a DATA_FIN that rides on pure ACKs.
pub const MAX_DATA_FIN_WAIT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(5);

/// The longest wait of the data-level retransmission timer (RFC 6298's 60 s ceiling).
pub const MAX_DATA_RTO: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(60);

/// Doublings of the data-level retransmission timer (2^6 times the subflow RTO at most).
const MAX_DATA_RTO_BACKOFF: u8 = 6;

/// Copies of the MP_JOIN third ACK sent without an answer before the join is given up.
pub const JOIN_ACK_RETRIES: u32 = 6;

/// The longest a stale subflow waits between retransmissions (probes of its path).
pub const STALE_PROBE_INTERVAL: smoltcp::time::Duration =
    smoltcp::time::Duration::from_millis(1000);

/// The most DSN ranges waiting for reinjection.
const MAX_REINJECT_RANGES: usize = 1024;

/// The active subflow with the lowest RTT, for signals and DATA_FINs.
fn best_active(subflows: &mut [Subflow]) -> Option<&mut Subflow> {
    subflows
        .iter_mut()
        .filter(|s| usable(s) && !s.st.stale)
        .min_by_key(|s| s.tcp.srtt().map_or(u64::MAX, |d| d.total_micros()))
}

/// Payload bytes of a full data segment: the subflow's MSS less the DSS room.
fn data_mss(tcp: &Connection) -> usize {
    tcp.mss().saturating_sub(DSS_SPACE).max(64)
}

/// The most subflows a connection holds (the scheduler's snapshot lives on the stack).
pub const MAX_SUBFLOWS: usize = 16;

/// A passive join in its handshake: SYN/ACK sent, third ACK not yet verified.
fn is_pending_join(s: &Subflow) -> bool {
    s.tcp.state() == State::SynReceived
        && s.st.join.is_some_and(|j| j.phase == JoinPhase::Handshake)
}

/// An MPTCP connection (see the module docs).
#[derive(Debug)]
pub struct MptcpConnection {
    sh: Shared,
    subflows: Vec<Subflow>,
    max_mapping: usize,
    stale_after_rtos: u8,
    scratch: Vec<u8>,
    /// Retransmission of a DATA_FIN that no data segment carries (it rides on pure ACKs).
    fin_timer: Option<Instant>,
    fin_backoff: u8,
    /// `snd_una` when the DATA_FIN backoff last started.
    fin_una: Option<Dsn>,
    /// The data-level retransmission timer: runs while data is mapped but not DATA_ACKed,
    /// restarted whenever the DATA_ACK moves.
    data_rto: Deadline,
    data_rto_backoff: u8,
    /// `snd_una` when the data-level timer last started.
    data_rto_una: Dsn,
    /// Data-level recovery: the timer fired with `snd_nxt` here; until the DATA_ACK passes
    /// it, each partial DATA_ACK sends the next hole at once.
    data_recover: Option<Dsn>,
    /// The end of the latest range the data-level timer sent again.
    data_rtx_end: Dsn,
    /// The data-level persist timer (see [`MptcpConnection::arm_window_probe`]).
    window_probe: Deadline,
    window_probe_backoff: u8,
    scheduler: Box<dyn Scheduler>,
    /// Opportunistic retransmission has sent everything below this DSN again already.
    opportunistic_upto: Option<Dsn>,
    /// Joins accepted so far (numbers [`SubflowState::join_order`]).
    joins_accepted: u32,
}

impl MptcpConnection {
    fn new(role: Role, mode: Mode, cfg: &MptcpConfig, key: u64, tcp: Connection) -> Self {
        let iss = tcp.iss();
        let mut c = MptcpConnection {
            sh: Shared {
                role,
                mode,
                fallback_reason: None,
                checksum: cfg.checksum,
                local: KeyMaterial::from_key(key),
                remote: None,
                confirmed: false,
                rx: Reassembly::new(Dsn(0), cfg.rx_buffer.max(2 * 65_536)),
                peer_data_fin: None,
                data_fin_received: false,
                tx: Ring::new(cfg.tx_buffer),
                tx_start: Dsn(0),
                snd_una: Dsn(0),
                snd_nxt: Dsn(0),
                fin_queued: false,
                data_fin_acked: false,
                fastclose_tx: false,
                fastclose_rx: false,
                window_base: None,
                wnd_end: None,
                data_ack_tx: None,
                rcv_adv: None,
                data_fin_signalled: false,
                keys_sent: false,
                mp_fail_tx: None,
                awaiting_infinite: None,
                fail_requested: None,
                infinite_tx: None,
                reset: false,
                counters: Counters::default(),
                signals: Signals::default(),
                removed_rx: Vec::new(),
                pm_changed: false,
                reinject: VecDeque::new(),
                peer_data_acks: false,
                now: Instant::from_millis(0),
                no_join_initial: false,
                fallback_skip: 0,
            },
            subflows: vec![Subflow {
                st: SubflowState::new(iss, None, rx_map_cap(tcp.recv_buffer_limit())),
                tcp,
            }],
            max_mapping: cfg.max_mapping.clamp(1, 65_534),
            stale_after_rtos: cfg.stale_after_rtos.max(1),
            scratch: Vec::new(),
            fin_timer: None,
            fin_backoff: 0,
            fin_una: None,
            data_rto: Deadline::default(),
            data_rto_backoff: 0,
            data_rto_una: Dsn(0),
            data_recover: None,
            data_rtx_end: Dsn(0),
            window_probe: Deadline::default(),
            window_probe_backoff: 0,
            scheduler: cfg.scheduler.build(),
            opportunistic_upto: None,
            joins_accepted: 0,
        };
        c.subflows[0].st.fail_streak = c.stale_after_rtos.saturating_add(1);
        c
    }

    /// Active open. With MPTCP off the connection is plain TCP from the start.
    pub fn connect(cfg: &MptcpConfig, key: u64, tcp: Connection) -> Self {
        let mode = if cfg.enabled {
            Mode::Pending
        } else {
            Mode::Fallback
        };
        let mut c = Self::new(Role::Client, mode, cfg, key, tcp);
        if !cfg.enabled {
            c.sh.fallback_reason = Some("MPTCP disabled");
        }
        c.init_send_side();
        c
    }

    /// Passive open from a SYN: MPTCP if the SYN offered MP_CAPABLE v1 and MPTCP is on.
    pub fn accept(cfg: &MptcpConfig, key: u64, tcp: Connection, syn: &TcpSegment<'_>) -> Self {
        let offered = syn.options.mptcp.iter().find_map(|o| match o {
            MptcpRepr::Capable(c) => Some(*c),
            _ => None,
        });
        let (mode, reason, peer_checksum) = match offered {
            _ if !cfg.enabled => (Mode::Fallback, Some("MPTCP disabled"), false),
            Some(CapableRepr {
                version: 1,
                flags,
                keys: CapableKeys::None,
            }) if flags.hmac_sha256() => (Mode::Mptcp, None, flags.checksum()),
            Some(_) => (
                Mode::Fallback,
                Some("unsupported MP_CAPABLE version or flags"),
                false,
            ),
            None => (Mode::Fallback, Some("SYN without MP_CAPABLE"), false),
        };
        let mut c = Self::new(Role::Server, mode, cfg, key, tcp);
        c.sh.fallback_reason = reason;
        c.sh.checksum |= peer_checksum;
        if offered.is_some() {
            c.sh.counters.mp_capable_syn_rx += 1;
        }
        c.subflows[0].st.irs = syn.seq;
        c.init_send_side();
        c
    }

    /// Whether a new subflow may join: MPTCP in use and both keys known (the server learns
    /// the client's key from the third ACK).
    pub fn can_join(&self) -> bool {
        let sh = &self.sh;
        let finished = sh.data_fin_acked && sh.data_fin_received;
        let dead = sh.reset || sh.fastclose_rx || sh.fastclose_tx || finished;
        sh.mode == Mode::Mptcp && sh.remote.is_some() && !dead && !self.is_closed()
    }

    /// Client side: start an additional subflow over `tcp` (a fresh active open) with MP_JOIN
    /// (section 3.2). `local_id` is the address id of its local address, `nonce` fresh
    /// randomness. Returns the subflow's index.
    pub fn add_subflow(
        &mut self,
        tcp: Connection,
        local_id: u8,
        nonce: u32,
        backup: bool,
    ) -> Option<usize> {
        if !self.can_join() {
            return None;
        }
        let join = JoinState {
            local_nonce: nonce,
            remote_nonce: 0,
            phase: JoinPhase::Handshake,
        };
        let i = self.push_subflow(tcp, join)?;
        let st = &mut self.subflows[i].st;
        st.local_id = local_id;
        st.backup = backup;
        Some(i)
    }

    /// Server side: a SYN with MP_JOIN carrying this connection's token arrived; `tcp` is the
    /// passive open from it. Returns the subflow's index.
    pub fn accept_join(
        &mut self,
        tcp: Connection,
        syn: &TcpSegment<'_>,
        local_id: u8,
        nonce: u32,
        local_backup: bool,
    ) -> Option<usize> {
        let Some(JoinRepr::Syn {
            backup,
            addr_id,
            nonce: remote_nonce,
            ..
        }) = syn.options.mptcp.iter().find_map(|o| match o {
            MptcpRepr::Join(j) => Some(*j),
            _ => None,
        })
        else {
            return None;
        };
        if !self.can_join() {
            return None;
        }
        self.sh.counters.mp_join_syn_rx += 1;
        let join = JoinState {
            local_nonce: nonce,
            remote_nonce,
            phase: JoinPhase::Handshake,
        };
        let irs = syn.seq;
        let i = self.push_subflow(tcp, join)?;
        let st = &mut self.subflows[i].st;
        st.join_order = self.joins_accepted;
        self.joins_accepted = self.joins_accepted.wrapping_add(1);
        st.irs = irs;
        st.local_id = local_id;
        st.remote_id = addr_id;
        st.peer_backup = backup;
        st.backup = local_backup;
        Some(i)
    }

    /// Add a joining subflow, in the slot of a retired one when there is one (so the subflow
    /// count stays bounded as paths fail and come back). Returns its index.
    fn push_subflow(&mut self, tcp: Connection, join: JoinState) -> Option<usize> {
        let mut st = SubflowState::new(tcp.iss(), Some(join), rx_map_cap(tcp.recv_buffer_limit()));
        st.fail_streak = self.stale_after_rtos.saturating_add(1);
        let sub = Subflow { tcp, st };
        match self.reusable_slot() {
            Some(i) => {
                self.subflows[i] = sub;
                Some(i)
            }
            None if self.subflows.len() < MAX_SUBFLOWS => {
                // One more slot, not the doubling `push` would do: a subflow is a kilobyte and
                // most connections have one or two (a Vec of them starts at four).
                self.subflows.reserve_exact(1);
                self.subflows.push(sub);
                Some(self.subflows.len() - 1)
            }
            None => None,
        }
    }

    /// A slot whose subflow is closed and retired (never the initial subflow's: index 0 stays
    /// the connection's first subflow).
    pub fn reusable_slot(&self) -> Option<usize> {
        (1..self.subflows.len()).find(|&i| {
            let s = &self.subflows[i];
            s.st.retired && s.tcp.is_closed()
        })
    }

    /// Server: joins accepted and still in their handshake (SYN/ACK sent, no verified third
    /// ACK yet). They count toward the subflow limit until they complete or go.
    pub fn pending_joins(&self) -> usize {
        self.subflows.iter().filter(|s| is_pending_join(s)).count()
    }

    /// Server: forget the oldest join still in its handshake, without a word (no RST: its SYN
    /// may well have been spoofed by someone who saw the token), so that its slot can take a
    /// newer join at once. Returns its index.
    pub fn evict_pending_join(&mut self) -> Option<usize> {
        let i = (0..self.subflows.len())
            .filter(|&i| is_pending_join(&self.subflows[i]))
            .max_by_key(|&i| {
                self.joins_accepted
                    .wrapping_sub(self.subflows[i].st.join_order)
            })?;
        let s = &mut self.subflows[i];
        if let Some(j) = s.st.join.as_mut() {
            j.phase = JoinPhase::Failed;
        }
        s.tcp.forget();
        self.retire_closed_subflows();
        Some(i)
    }

    /// Subflows that are not closed.
    pub fn live_subflows(&self) -> usize {
        self.subflows.iter().filter(|s| !s.tcp.is_closed()).count()
    }

    /// The MP_JOIN phase of subflow `i` (`None` for the initial subflow).
    pub fn join_phase(&self, i: usize) -> Option<JoinPhase> {
        self.subflows.get(i)?.st.join.map(|j| j.phase)
    }

    // ---- path management -----------------------------------------------------------------------

    /// Use `scheduler` from now on.
    pub fn set_scheduler(&mut self, scheduler: Box<dyn Scheduler>) {
        self.scheduler = scheduler;
    }

    /// The scheduler's name.
    pub fn scheduler_name(&self) -> &'static str {
        self.scheduler.name()
    }

    /// Announce one of our addresses to the peer with ADD_ADDR (section 3.4.1), sent with its
    /// HMAC and repeated until echoed. Returns false if MPTCP is not in use or too many
    /// addresses are announced already.
    pub fn announce(&mut self, id: u8, addr: std::net::IpAddr, port: Option<u16>) -> bool {
        if self.sh.mode != Mode::Mptcp {
            return false;
        }
        let ok = self.sh.signals.announce(id, addr, port);
        self.kick_signals();
        ok
    }

    /// Withdraw our address `id` (section 3.4.2): REMOVE_ADDR to the peer, and every subflow
    /// using it is reset, its data handed to the others at once.
    pub fn withdraw(&mut self, id: u8) {
        if self.sh.mode != Mode::Mptcp {
            return;
        }
        self.sh.signals.withdraw(id);
        for s in &mut self.subflows {
            if s.st.local_id == id && s.tcp.state() != State::Closed {
                s.tcp.abort();
            }
        }
        self.push_data();
        self.kick_signals();
    }

    /// Reset subflow `i` (its path is gone, or the application asked): what it held goes to
    /// the other subflows at once.
    pub fn close_subflow(&mut self, i: usize) {
        if self.sh.mode != Mode::Mptcp {
            return;
        }
        if let Some(s) = self.subflows.get_mut(i)
            && s.tcp.state() != State::Closed
        {
            s.tcp.abort();
            self.push_data();
        }
    }

    /// Ask the peer to use subflow `i` only as a backup, or not (MP_PRIO, section 3.3.8); our
    /// own scheduler follows the same choice.
    pub fn set_backup(&mut self, i: usize, backup: bool) {
        if self.sh.mode != Mode::Mptcp {
            return;
        }
        if let Some(s) = self.subflows.get_mut(i)
            && s.st.backup != backup
        {
            s.st.backup = backup;
            s.st.prio_tx = Some(backup);
        }
        self.push_data();
        self.kick_signals();
    }

    /// The addresses the peer announced (with a valid HMAC) and has not removed.
    pub fn remote_addresses(&self) -> &[RemoteAddr] {
        self.sh.signals.remote()
    }

    /// Our announcements and where they stand.
    pub fn announcements(&self) -> &[Announcement] {
        self.sh.signals.announced()
    }

    /// Whether something a path manager acts on changed since the last call (a peer address
    /// learned or removed, a subflow closed); clears the flag.
    pub fn take_path_changes(&mut self) -> bool {
        std::mem::take(&mut self.sh.pm_changed)
    }

    /// MPTCP in use, both keys known and the peer confirmed it has ours: subflows may join
    /// and addresses may be announced.
    pub fn is_fully_established(&self) -> bool {
        // Once both directions are closed (DATA_FIN sent and acknowledged, and received) the
        // subflows are closing: no path manager may open new ones (`can_join` says so).
        self.can_join() && self.sh.confirmed
    }

    /// Whether the peer accepts joins to the address and port of the initial subflow (a
    /// server that set the C flag does not, RFC 8684 section 3.1).
    pub fn peer_accepts_initial_joins(&self) -> bool {
        !self.sh.no_join_initial
    }

    /// Which side opened the connection.
    pub fn role(&self) -> Role {
        self.sh.role
    }

    fn init_send_side(&mut self) {
        // Our data starts at IDSN + 1 (section 3.3); in plain TCP the numbers are only ours.
        let start = self.sh.local.idsn + 1;
        self.sh.tx_start = start;
        self.sh.snd_una = start;
        self.sh.snd_nxt = start;
    }

    // ---- accessors ----------------------------------------------------------------------------

    /// Whether MPTCP is in use, pending, or the connection is plain TCP.
    pub fn mode(&self) -> Mode {
        self.sh.mode
    }
    /// Why the connection is plain TCP, if it is.
    pub fn fallback_reason(&self) -> Option<FallbackReason> {
        self.sh.fallback_reason
    }
    /// Whether DSS checksums are in use.
    pub fn checksum(&self) -> bool {
        self.sh.checksum
    }
    /// Our key material.
    pub fn local_key(&self) -> KeyMaterial {
        self.sh.local
    }
    /// The peer's key material, once known.
    pub fn remote_key(&self) -> Option<KeyMaterial> {
        self.sh.remote
    }
    /// Counters.
    pub fn counters(&self) -> &Counters {
        &self.sh.counters
    }
    /// The subflows.
    pub fn subflows(&self) -> &[Subflow] {
        &self.subflows
    }
    /// The initial subflow's TCP connection.
    pub fn primary(&self) -> &Connection {
        &self.subflows[0].tcp
    }
    /// The data-level DATA_ACK we send (next DSN expected).
    pub fn data_ack(&self) -> Dsn {
        self.sh.rx.next()
    }
    /// The next DSN to map (one past the highest data handed to a subflow).
    pub fn snd_nxt(&self) -> Dsn {
        self.sh.snd_nxt
    }
    /// The right edge of the peer's data-level receive window (its DATA_ACK plus the window of
    /// the segment that carried it), `None` before the first DATA_ACK: no data is mapped at or
    /// beyond it.
    pub fn send_window_end(&self) -> Option<Dsn> {
        self.sh.wnd_end
    }
    /// The first DSN not yet acknowledged by the peer.
    pub fn snd_una(&self) -> Dsn {
        self.sh.snd_una
    }

    /// Whether the handshake completed.
    pub fn is_established(&self) -> bool {
        self.subflows[0].tcp.state().is_synchronized()
    }

    /// Whether every subflow is closed.
    pub fn is_closed(&self) -> bool {
        self.subflows.iter().all(|s| s.tcp.is_closed())
    }

    /// Why the connection failed, if it did. With MPTCP, the connection lives while any
    /// subflow does: the loss of one path is not the connection's failure.
    pub fn error(&self) -> Option<tcp::ConnError> {
        if self.sh.fastclose_rx || self.sh.reset {
            return Some(tcp::ConnError::Reset);
        }
        if self.sh.mode != Mode::Mptcp {
            return self.subflows[0].tcp.error();
        }
        let finished = self.sh.data_fin_acked && self.sh.data_fin_received;
        if finished || self.subflows.iter().any(|s| s.tcp.state() != State::Closed) {
            return None;
        }
        self.subflows
            .iter()
            .find_map(|s| s.tcp.error())
            .or(Some(tcp::ConnError::Reset))
    }

    // ---- application side ----------------------------------------------------------------------

    /// Whether the application may still send.
    pub fn can_send(&self) -> bool {
        if self.sh.fin_queued || self.sh.fastclose_tx || self.sh.reset {
            return false;
        }
        match self.sh.mode {
            Mode::Mptcp => self.subflows.iter().any(|s| s.tcp.can_send()),
            _ => self.subflows[0].tcp.can_send(),
        }
    }

    /// Room in the connection-level send buffer.
    pub fn send_capacity(&self) -> usize {
        if self.can_send() {
            self.sh.tx.free()
        } else {
            0
        }
    }

    /// Bytes queued and not yet acknowledged at the data level.
    pub fn send_queue(&self) -> usize {
        self.sh.queued()
    }

    /// Queue data; returns how much was taken.
    pub fn send(&mut self, data: &[u8]) -> usize {
        if !self.can_send() {
            return 0;
        }
        let n = self.sh.tx.push(data);
        self.push_data();
        n
    }

    /// The bytes of memory the buffers hold, connection level and every subflow's (what is
    /// allocated, which grows with use up to the configured limits; not the limits).
    pub fn buffer_memory(&self) -> usize {
        self.sh.tx.allocated()
            + self.sh.rx.allocated()
            + self
                .subflows
                .iter()
                .map(|s| s.tcp.buffer_memory())
                .sum::<usize>()
    }

    /// Bytes ready to read.
    pub fn recv_available(&self) -> usize {
        let direct = if self.sh.mode == Mode::Fallback {
            let skip = usize::try_from(self.sh.fallback_skip).unwrap_or(usize::MAX);
            self.subflows[0].tcp.recv_available().saturating_sub(skip)
        } else {
            0
        };
        self.sh.rx.available() + direct
    }

    /// Read in-order data.
    pub fn recv(&mut self, buf: &mut [u8]) -> usize {
        if self.sh.mode == Mode::Fallback && self.sh.fallback_skip > 0 {
            let sub = &mut self.subflows[0].tcp;
            let k = (sub.recv_available() as u64).min(self.sh.fallback_skip);
            sub.recv_consume(k as usize);
            self.sh.fallback_skip -= k;
        }
        let mut n = self.sh.rx.read(buf);
        if self.sh.mode == Mode::Fallback && self.sh.fallback_skip == 0 {
            // Plain TCP reads straight from the subflow (after anything reassembled before the
            // fallback), so its window is the application's.
            n += self.subflows[0].tcp.recv(&mut buf[n..]);
        } else if n > 0 {
            // Room opened in the data-level buffer: pull what the subflows hold.
            self.pull_data();
            self.update_data_window();
        }
        n
    }

    /// After the application read: tell the peer what changed at the data level. Pulling into
    /// the connection-level buffer what the subflows held moves DATA_ACK, and the peer's window
    /// is DATA_ACK + the TCP window of the segment that carried it (section 3.3.4), while no
    /// subflow's own window need change enough for it to send an ACK by itself: a sender whose
    /// buffer or data-level window is used up would wait forever (every byte acknowledged by
    /// the subflows, no timer running). So an ACK goes once DATA_ACK moved two full segments
    /// past the last one sent (TCP's every-second-segment rule, RFC 9293 section 3.8.6.3,
    /// applied to data delivered at this level), or when the window on offer is at least twice
    /// what the peer has left and one MSS more (the window-update rule of section 3.8.6.2.2,
    /// as Linux applies it).
    fn update_data_window(&mut self) {
        let Some((acked, edge)) = self.sh.rcv_adv else {
            return;
        };
        let next = self.sh.rx.next();
        let Some(sub) = best_active(&mut self.subflows) else {
            return;
        };
        let mss = sub.tcp.mss();
        let moved = next.distance_from(acked).max(0) as usize;
        let left = edge.distance_from(next).max(0) as usize;
        let offer = sub.tcp.receive_window();
        if moved >= 2 * mss || (offer >= 2 * left && offer >= left + mss) {
            sub.tcp.request_ack();
        }
    }

    /// Whether the peer closed the stream (DATA_FIN, or FIN in plain TCP) and all was read.
    pub fn recv_finished(&self) -> bool {
        let fin = match self.sh.mode {
            Mode::Fallback => self.sh.data_fin_received || self.subflows[0].tcp.recv_finished(),
            _ => self.sh.data_fin_received,
        };
        fin && self.recv_available() == 0
    }

    /// Close our direction: a DATA_FIN follows the queued data.
    pub fn close(&mut self) {
        self.sh.fin_queued = true;
        // Closed before the handshake completed: with nothing queued the connection simply
        // goes (RFC 9293 section 3.10.4, CLOSE in SYN-SENT); data the application queued is
        // still delivered, and the close follows it once the connection is up.
        if self.sh.mode == Mode::Pending
            && !self.subflows[0].tcp.state().is_synchronized()
            && self.sh.queued() == 0
        {
            self.subflows[0].tcp.close();
        }
        self.push_data();
    }

    /// Abort: MP_FASTCLOSE (in MPTCP) on an RST, and the connection is gone.
    pub fn abort(&mut self) {
        if self.sh.mode == Mode::Mptcp && self.sh.remote.is_some() {
            self.sh.fastclose_tx = true;
        }
        for s in &mut self.subflows {
            s.tcp.abort();
        }
    }

    // ---- packet side ---------------------------------------------------------------------------

    /// A segment for subflow `i`.
    pub fn handle_segment(&mut self, i: usize, now: Instant, seg: &TcpSegment<'_>) {
        let Some(sub) = self.subflows.get_mut(i) else {
            return;
        };
        let joining = sub.st.join.is_some_and(|j| j.phase == JoinPhase::Handshake);
        self.sh.window_base = None;
        self.sh.now = now;
        sub.tcp.handle_segment(
            now,
            seg,
            &mut SubflowHooks {
                sh: &mut self.sh,
                st: &mut sub.st,
            },
        );
        if let Some(base) = self.sh.window_base.take() {
            let edge = base + sub.tcp.peer_window() as u64;
            if self.sh.wnd_end.is_none_or(|e| edge.distance_from(e) > 0) {
                self.sh.wnd_end = Some(edge);
            }
        }
        if (joining || std::mem::take(&mut sub.st.join_ack_again))
            && self.sh.role == Role::Server
            && sub
                .st
                .join
                .is_some_and(|j| j.phase == JoinPhase::Established)
        {
            // The fourth ACK (section 3.2): tells the client its third ACK arrived.
            sub.tcp.request_ack();
        }
        // Client: the third ACK went out with the handshake's ACK; until the server answers it
        // is sent again on a timer (section 3.2: it is reliable).
        match sub.st.join.map(|j| j.phase) {
            Some(JoinPhase::AckSent) if !sub.st.join_ack_timer.is_set() => {
                sub.st.join_ack_timer.set(now + sub.tcp.rto());
                sub.st.join_acks_resent = 0;
            }
            Some(JoinPhase::AckSent) => {}
            _ => sub.st.join_ack_timer.clear(),
        }
        if sub.st.join.is_some_and(|j| j.phase == JoinPhase::Failed)
            && sub.tcp.state() != State::Closed
        {
            // Section 3.2: an MP_JOIN whose HMAC does not verify is closed with a RST.
            sub.tcp.abort();
            return;
        }
        if self.sh.fastclose_rx {
            // RFC 8684 section 3.5: the receiver of a valid MP_FASTCLOSE resets every subflow.
            for s in &mut self.subflows {
                s.tcp.abort();
            }
            return;
        }
        // A stale subflow that acknowledges new data is back (its path works again).
        let acked = sub.tcp.stats().bytes_acked;
        if acked > sub.st.acked_seen {
            sub.st.rto_streak = 0;
            if sub.st.stale {
                sub.st.stale = false;
                sub.tcp.set_rto_cap(now, None);
                self.sh.counters.subflow_recover += 1;
            }
        }
        sub.st.acked_seen = acked;
        self.recouple();
        self.remove_peer_addresses();
        self.pull_data();
        self.data_ack_progress();
        self.push_data();
        self.maybe_close_subflows();
        self.arm_fin_timer(now);
        self.arm_data_rto(now);
        self.arm_window_probe(now);
        self.kick_signals();
    }

    /// Coupled congestion control (LIA, OLIA): give every usable subflow's controller the
    /// coupling terms computed over all of them. Uncoupled controllers skip this.
    fn recouple(&mut self) {
        if !matches!(self.subflows[0].tcp.cc_name(), "lia" | "olia") {
            return;
        }
        let mut samples = [PathSample::default(); MAX_SUBFLOWS];
        let mut which = [0usize; MAX_SUBFLOWS];
        let mut n = 0;
        for (i, s) in self.subflows.iter().enumerate().take(MAX_SUBFLOWS) {
            if usable(s) && !s.st.stale {
                samples[n] = s.tcp.cc_path_sample();
                which[n] = i;
                n += 1;
            }
        }
        let mut out = [Coupling::UNCOUPLED; MAX_SUBFLOWS];
        couple(&samples[..n], &mut out[..n]);
        for k in 0..n {
            self.subflows[which[k]].tcp.set_coupling(&out[k]);
        }
    }

    /// Section 3.4.2: subflows to an address the peer removed are closed (reset: the address
    /// is gone), and what they held goes to the other subflows.
    fn remove_peer_addresses(&mut self) {
        while let Some(id) = self.sh.removed_rx.pop() {
            for s in &mut self.subflows {
                if s.st.remote_id == id && s.tcp.state() != State::Closed {
                    s.tcp.abort();
                    self.sh.counters.rm_subflow += 1;
                }
            }
        }
    }

    /// Make sure a pending signal (ADD_ADDR, echo, REMOVE_ADDR, MP_PRIO) gets a pure ACK.
    fn kick_signals(&mut self) {
        if self.sh.mode != Mode::Mptcp || !self.sh.confirmed || self.sh.remote.is_none() {
            return;
        }
        for s in &mut self.subflows {
            if s.st.prio_tx.is_some() && usable(s) {
                s.tcp.request_ack();
            }
        }
        if self.sh.signals.pending()
            && let Some(s) = best_active(&mut self.subflows)
        {
            s.tcp.request_ack();
        }
    }

    /// Subflows whose retransmission timer fired with data outstanding become stale while
    /// another subflow is active: the scheduler leaves them alone and their unacknowledged
    /// data is reinjected at once (the data level does not wait for their backoff).
    fn detect_stale(&mut self) {
        if self.sh.mode != Mode::Mptcp {
            return;
        }
        for i in 0..self.subflows.len() {
            let rtos = self.subflows[i].tcp.stats().rto_expiries;
            let sub = &self.subflows[i];
            if rtos == sub.st.rto_seen {
                continue;
            }
            let outstanding = sub.tcp.send_queue() > 0 && !sub.st.tx_maps.is_empty();
            let others = self
                .subflows
                .iter()
                .enumerate()
                .any(|(j, s)| j != i && usable(s) && !s.st.stale);
            let sub = &mut self.subflows[i];
            sub.st.rto_streak = sub
                .st
                .rto_streak
                .saturating_add((rtos - sub.st.rto_seen).min(255) as u8);
            sub.st.rto_seen = rtos;
            if sub.st.stale
                || !outstanding
                || !others
                || !usable(sub)
                || sub.st.rto_streak < self.stale_after_rtos
            {
                continue;
            }
            sub.st.stale = true;
            sub.st.acked_seen = sub.tcp.stats().bytes_acked;
            // Its retransmissions now probe the path: keep them coming (section 3.3.8's
            // backup logic needs to know when the path works again).
            sub.tcp.set_rto_cap(self.sh.now, Some(STALE_PROBE_INTERVAL));
            self.sh.counters.subflow_stale += 1;
            queue_reinjection(&mut self.sh, &sub.st.tx_maps);
        }
    }

    /// Run timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sh.now = now;
        for s in &mut self.subflows {
            if s.tcp.poll_timeout().is_some_and(|t| t <= now) {
                s.tcp.handle_timeout(now);
            }
        }
        self.detect_stale();
        for s in &mut self.subflows {
            if s.st.join_ack_timer.expired(now) {
                let sent = u32::from(s.st.join_acks_resent);
                if sent >= JOIN_ACK_RETRIES {
                    // No answer: the join failed (section 3.2 allows a reset).
                    s.st.join_ack_timer.clear();
                    if let Some(j) = s.st.join.as_mut() {
                        j.phase = JoinPhase::Failed;
                    }
                    s.tcp.abort();
                } else {
                    s.tcp.request_ack();
                    let wait = s.tcp.rto() * (2u32 << sent.min(5));
                    s.st.join_ack_timer.set(now + wait);
                    s.st.join_acks_resent += 1;
                }
            }
        }
        if self.sh.signals.poll_timeout().is_some_and(|t| t <= now) {
            self.sh.counters.add_addr_given_up += self.sh.signals.handle_timeout(now);
        }
        if self.data_rto.expired(now) {
            self.data_rto.clear();
            // Backing off whether or not it sent anything: an expiry that finds the data held
            // by a subflow, or the peer not acknowledging at the data level, waits longer next
            // time instead of waking the connection every RTO.
            self.data_rto_backoff = (self.data_rto_backoff + 1).min(MAX_DATA_RTO_BACKOFF);
            if self.data_outstanding() && self.queue_data_retransmission() {
                self.data_recover = Some(self.sh.snd_nxt);
                self.sh.counters.data_rto_expiries += 1;
            }
        }
        if self.window_probe.expired(now) {
            self.window_probe.clear();
            if let Some(s) = best_active(&mut self.subflows) {
                s.tcp.probe_window();
                self.sh.counters.window_probes += 1;
                self.window_probe_backoff =
                    (self.window_probe_backoff + 1).min(MAX_DATA_RTO_BACKOFF);
            }
        }
        if self.fin_timer.is_some_and(|t| t <= now) {
            // Send the DATA_FIN again on an ACK, backing off like an RTO.
            self.fin_timer = None;
            self.fin_backoff = (self.fin_backoff + 1).min(6);
            for s in &mut self.subflows {
                s.tcp.request_ack();
            }
        }
        self.push_data();
        self.maybe_close_subflows();
        self.arm_fin_timer(now);
        self.arm_data_rto(now);
        self.arm_window_probe(now);
        self.kick_signals();
    }

    /// Data mapped on subflows and not yet DATA_ACKed (MPTCP mode only: in fallback the
    /// subflow's ACK is the data ACK).
    fn data_outstanding(&self) -> bool {
        self.sh.mode == Mode::Mptcp && self.sh.snd_nxt.distance_from(self.sh.snd_una) > 0
    }

    /// The DATA_ACK moved: the data-level timer starts afresh, and during a data-level
    /// recovery the next hole goes at once (like a partial ACK in TCP's NewReno): the peer may
    /// have dropped much more than the first mapping.
    fn data_ack_progress(&mut self) {
        if !self.restart_data_rto_on_progress() {
            return;
        }
        if let Some(point) = self.data_recover {
            if self.sh.snd_una.distance_from(point) >= 0 {
                self.data_recover = None;
            } else if self.sh.snd_una.distance_from(self.data_rtx_end) >= 0 {
                // Past the last range sent again (partial DATA_ACKs inside it say nothing new,
                // and the check scans every subflow's mappings).
                self.queue_data_retransmission();
            }
        }
    }

    /// The DATA_ACK moved since the data-level timer last started: start it afresh.
    fn restart_data_rto_on_progress(&mut self) -> bool {
        if self.sh.snd_una == self.data_rto_una {
            return false;
        }
        self.data_rto_una = self.sh.snd_una;
        self.data_rto_backoff = 0;
        self.data_rto.clear();
        true
    }

    /// The wait of a data-level timer after `backoff` doublings: the RTO of the best subflow
    /// that works (the initial one may be dead), at most `cap`.
    fn backed_off_rto(&self, backoff: u8, cap: smoltcp::time::Duration) -> smoltcp::time::Duration {
        let rto = self
            .subflows
            .iter()
            .filter(|s| usable(s) && !s.st.stale)
            .map(|s| s.tcp.rto())
            .min()
            .or_else(|| self.subflows.first().map(|s| s.tcp.rto()))
            .unwrap_or(cap);
        (rto * (1u32 << backoff.min(16))).min(cap)
    }

    /// Section 3.3.6: the sender keeps data until it is DATA_ACKed, and the receiver may drop
    /// data it acknowledged on a subflow (Linux does, when the connection's receive memory is
    /// short), so a subflow's ACK does not mean the data arrived. When no live subflow still
    /// holds the oldest data not DATA_ACKed (every subflow that carried it had it
    /// acknowledged) and no reinjection of it is pending, map it again, one mapping's worth.
    /// A subflow still holding it is in charge (its own RTO, and stale detection, act).
    fn queue_data_retransmission(&mut self) -> bool {
        self.prune_tx_maps();
        let sh = &mut self.sh;
        let failing = sh.awaiting_infinite.is_some()
            || sh.fail_requested.is_some()
            || sh.mp_fail_tx.is_some()
            || sh.infinite_tx.is_some();
        if !sh.peer_data_acks || failing {
            return false;
        }
        let una = sh.snd_una;
        let covers =
            |dsn: Dsn, len: u64| una.distance_from(dsn) >= 0 && (dsn + len).distance_from(una) > 0;
        // A peer whose subflow windows are all shut holds what it acknowledged and has not
        // passed on yet (its application is not reading): nothing is lost, and the window
        // probe, not a retransmission, is what reopens the transfer.
        let open = self
            .subflows
            .iter()
            .any(|s| usable(s) && !s.st.stale && s.tcp.peer_window() > 0);
        if !open {
            return false;
        }
        let held = self.subflows.iter().any(|s| {
            !s.st.stale
                && s.tcp.state() != State::Closed
                && s.st.tx_maps.iter().any(|m| covers(m.dsn, u64::from(m.len)))
        }) || sh.reinject.iter().any(|&(d, l)| covers(d, l));
        // One mapping's worth (a 64 KiB chunk would be cut into a mapping and a 2-byte runt).
        let len = sh
            .snd_nxt
            .distance_from(una)
            .clamp(0, self.max_mapping as i64) as u64;
        if held || len == 0 {
            return false;
        }
        sh.reinject.push_front((una, len));
        sh.counters.data_retransmits += 1;
        self.data_rtx_end = una + len;
        true
    }

    /// Run the data-level retransmission timer while data is outstanding and some subflow
    /// is open: the RTO of the best working subflow, doubled on each expiry, at most
    /// [`MAX_DATA_RTO`].
    fn arm_data_rto(&mut self, now: Instant) {
        let live =
            || !self.sh.reset && self.subflows.iter().any(|s| s.tcp.state() != State::Closed);
        if !self.data_outstanding() || !live() {
            self.data_rto.clear();
            self.data_recover = None;
            self.data_rto_backoff = 0;
            self.data_rto_una = self.sh.snd_una;
            return;
        }
        // Progress may be seen here first (a send path, not a segment).
        self.restart_data_rto_on_progress();
        if !self.data_rto.is_set() {
            let wait = self.backed_off_rto(self.data_rto_backoff, MAX_DATA_RTO);
            self.data_rto.set(now + wait);
        }
    }

    /// RFC 9293 section 3.8.6.1 at the data level: a sender must keep probing a shut window,
    /// as the window update that reopens it may be lost (or, from a receiver short of memory,
    /// never come). While data waits for the peer's connection-level window and no subflow
    /// has anything in flight (so no ACK is coming), the best subflow sends a window probe
    /// after the RTO, backing off like it, at most [`MAX_DATA_RTO`].
    fn arm_window_probe(&mut self, now: Instant) {
        let sh = &self.sh;
        // Waiting for the window: data to map and the data-level window used up, or data
        // outstanding behind subflow windows that are all shut (the peer may have dropped it
        // and shut its window: the retransmission waits for the window, and this probes it).
        let working = || self.subflows.iter().filter(|s| usable(s) && !s.st.stale);
        let waiting = (sh.unmapped() > 0
            && sh.wnd_end.is_some_and(|e| e.distance_from(sh.snd_nxt) <= 0))
            || (self.data_outstanding() && working().all(|s| s.tcp.peer_window() == 0));
        let shut = sh.mode == Mode::Mptcp
            && !sh.reset
            && waiting
            && working().next().is_some()
            && working().all(|s| s.tcp.send_queue() == 0);
        if !shut {
            self.window_probe.clear();
            self.window_probe_backoff = 0;
            return;
        }
        if !self.window_probe.is_set() {
            let wait = self.backed_off_rto(self.window_probe_backoff, MAX_DATA_RTO);
            self.window_probe.set(now + wait);
        }
    }

    fn arm_fin_timer(&mut self, now: Instant) {
        let pending = self.sh.mode == Mode::Mptcp
            && self.sh.data_fin_dsn().is_some()
            && !self.sh.data_fin_acked;
        if !pending {
            self.fin_timer = None;
        } else {
            // Progress at the data level (reinjected data acknowledged, say) starts the
            // backoff afresh: the DATA_FIN follows at once, not after a long-grown wait.
            if self.fin_una != Some(self.sh.snd_una) {
                self.fin_una = Some(self.sh.snd_una);
                self.fin_backoff = 0;
                self.fin_timer = None;
            }
            if self.fin_timer.is_none() {
                let wait = self.backed_off_rto(self.fin_backoff, MAX_DATA_FIN_WAIT);
                self.fin_timer = Some(now + wait);
            }
        }
    }

    /// The earliest timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.subflows
            .iter()
            .filter_map(|s| s.tcp.poll_timeout())
            .chain(self.fin_timer)
            .chain(self.data_rto.get())
            .chain(self.window_probe.get())
            .chain(self.sh.signals.poll_timeout())
            .chain(
                self.subflows
                    .iter()
                    .filter_map(|s| s.st.join_ack_timer.get()),
            )
            .min()
    }

    /// Whether our direction is closed and acknowledged (DATA_FIN acked; in plain TCP, FIN).
    pub fn send_finished(&self) -> bool {
        if !self.sh.fin_queued {
            return false;
        }
        match self.sh.mode {
            Mode::Mptcp => self.sh.data_fin_acked && self.sh.queued() == 0,
            _ => {
                let c = &self.subflows[0].tcp;
                c.send_queue() == 0
                    && matches!(c.state(), State::FinWait2 | State::TimeWait | State::Closed)
                    && c.error().is_none()
            }
        }
    }

    /// Whether a subflow has something to send now.
    pub fn wants_to_transmit(&self) -> bool {
        self.subflows.iter().any(|s| s.tcp.wants_to_transmit())
    }

    /// The next packet of any subflow.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.poll_transmit_segments(now, buf, 1).map(|t| t.len)
    }

    /// [`poll_transmit`](MptcpConnection::poll_transmit) with segmentation offload (see
    /// [`Connection::poll_transmit_segments`]): each segment of a super segment carries the
    /// same options, so one DSS mapping covers them all, as with Linux's TSO.
    pub fn poll_transmit_segments(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        max_segments: usize,
    ) -> Option<Transmit> {
        self.sh.now = now;
        self.arm_fin_timer(now);
        self.arm_data_rto(now);
        self.arm_window_probe(now);
        for sub in &mut self.subflows {
            if !sub.tcp.wants_to_transmit() {
                continue;
            }
            if let Some(n) = sub.tcp.poll_transmit_segments(
                now,
                buf,
                max_segments,
                &mut SubflowHooks {
                    sh: &mut self.sh,
                    st: &mut sub.st,
                },
            ) {
                if std::mem::take(&mut sub.st.resend_ack) {
                    sub.tcp.request_ack();
                }
                if let Some(ack) = self.sh.data_ack_tx.take() {
                    let edge = ack + sub.tcp.advertised_window() as u64;
                    self.sh.rcv_adv = Some(match self.sh.rcv_adv {
                        Some((a, e)) => (ack.max_seq(a), edge.max_seq(e)),
                        None => (ack, edge),
                    });
                }
                return Some(n);
            }
        }
        None
    }

    /// Move data from the connection-level send buffer into subflows, as mappings.
    fn push_data(&mut self) {
        self.prune_tx_maps();
        self.retire_closed_subflows();
        self.release_tx();
        let sh = &mut self.sh;
        if sh.mode == Mode::Pending {
            return;
        }
        let single = self.subflows.len() == 1;
        if let Some(dsn) = sh.fail_requested.take() {
            // Section 3.7, sender side: resume as plain TCP at the failed DSN. The data from
            // there is still in our buffer (not DATA_ACKed); it goes out again as new subflow
            // data, behind an infinite mapping, and the MP_FAIL is echoed.
            let sub = &mut self.subflows[0];
            if single && dsn.distance_from(sh.snd_una) >= 0 && dsn.distance_from(sh.snd_nxt) <= 0 {
                sh.snd_nxt = dsn;
                sh.infinite_tx = Some((sub.tcp.next_send_seq(), dsn));
                sh.mp_fail_tx = Some(dsn);
                sh.fall_back("MP_FAIL: checksum failure, infinite mapping");
                sub.tcp.request_ack();
            } else {
                sh.reset = true;
            }
        }
        if sh.mode == Mode::Fallback {
            let sub = &mut self.subflows[0];
            if let Some((at, _)) = sh.infinite_tx
                && sub.tcp.snd_una().distance_from(at) > 0
            {
                sh.infinite_tx = None;
            }
            // In plain TCP the subflow's ACKs are the data ACKs: bytes handed to it are done at
            // this level, including any mapped before the fallback (the subflow delivers them;
            // those it holds no copy of stay in `tx` until it has them acknowledged).
            sh.snd_una = sh.snd_nxt;
            loop {
                let offset = sh.snd_nxt.distance_from(sh.tx_start).max(0) as usize;
                let len = sh
                    .tx
                    .len()
                    .saturating_sub(offset)
                    .min(sub.tcp.send_capacity())
                    .min(64 * 1024);
                if len == 0 {
                    break;
                }
                if self.scratch.len() < len {
                    self.scratch.resize(len, 0);
                }
                let data = &mut self.scratch[..len];
                sh.tx.read_at(offset, data);
                let n = sub.tcp.send(data);
                sh.snd_nxt = sh.snd_nxt + n as u64;
                sh.snd_una = sh.snd_nxt;
                if n < len {
                    break;
                }
            }
            let done = sh.unmapped() == 0;
            self.release_tx();
            if self.sh.fin_queued && done {
                self.subflows[0].tcp.close();
            }
            return;
        }
        let n = self.subflows.len().min(MAX_SUBFLOWS);
        let unconfirmed_client = sh.role == Role::Client && !sh.confirmed;
        let mut infos = [SubflowInfo::default(); MAX_SUBFLOWS];
        for (i, sub) in self.subflows.iter().take(n).enumerate() {
            infos[i] = sched_info(sub);
            // Before the server confirmed our key, only the initial subflow carries data.
            if unconfirmed_client && i != 0 {
                infos[i].usable = false;
            }
        }
        let infos = &mut infos[..n];
        self.reinject_pending(infos);
        let sh = &mut self.sh;
        let mut window_blocked = false;
        loop {
            let unmapped = sh.unmapped();
            if unmapped == 0 {
                break;
            }
            // The peer's data-level receive window is shared by all subflows (section 3.3.4):
            // no mapping beyond DATA_ACK + window.
            let window = sh
                .wnd_end
                .map_or(usize::MAX, |e| e.distance_from(sh.snd_nxt).max(0) as usize);
            if window == 0 {
                window_blocked = true;
                break;
            }
            let Some(pick) = self.scheduler.pick(infos) else {
                break;
            };
            let i = pick.subflow;
            let sub = &mut self.subflows[i];
            // MP_CAPABLE with data describes the client's first mapping, one segment's worth;
            // further data waits for the server's DSS.
            let capable = unconfirmed_client && i == 0 && sub.st.next_tag == 0;
            if unconfirmed_client && !capable {
                break;
            }
            let mut len = unmapped
                .min(pick.max_bytes)
                .min(self.max_mapping)
                .min(window);
            if capable {
                len = len.min(sub.tcp.mss());
            } else if len < unmapped && len > data_mss(&sub.tcp) {
                // Whole segments: a mapping's last segment is never merged with the next
                // mapping's, so a ragged end would be a runt segment.
                len -= len % data_mss(&sub.tcp);
            }
            let dsn = sh.snd_nxt;
            if !map_range(sh, sub, dsn, len, capable, true) {
                break;
            }
            infos[i] = sched_info(sub);
            sh.snd_nxt = sh.snd_nxt + len as u64;
            if self.scheduler.redundant() {
                // Redundant scheduling: the same mapping on every other candidate with room.
                let in_use = sched::candidates(infos).count();
                for j in 0..infos.len() {
                    let eligible = sched::candidates(infos).any(|(k, _)| k == j);
                    if j == i || !eligible || sched::room(&infos[j], in_use) < len {
                        continue;
                    }
                    if map_range(sh, &mut self.subflows[j], dsn, len, false, false) {
                        infos[j] = sched_info(&self.subflows[j]);
                    }
                }
            }
        }
        let all_mapped = self.sh.unmapped() == 0;
        if window_blocked || all_mapped {
            self.opportunistic_retransmit(infos, window_blocked);
        }
        let sh = &mut self.sh;
        // A DATA_FIN rides on an ACK once every byte is mapped.
        if sh.fin_queued
            && sh.data_fin_dsn().is_some()
            && !sh.data_fin_acked
            && !sh.data_fin_signalled
        {
            sh.data_fin_signalled = true;
            if let Some(sub) = best_active(&mut self.subflows) {
                sub.tcp.request_ack();
            }
        }
    }

    /// Drop from the send buffer what the peer DATA_ACKed and no subflow still needs: a
    /// subflow given data without a copy reads it from here until its own peer acknowledged it
    /// (a DATA_ACK may come first, over another subflow), so the buffer keeps everything from
    /// the oldest such mapping on. Those are in DSN order on each subflow: the first one found
    /// is its oldest.
    ///
    /// A subflow that would hold back more than a quarter of the buffer this way, or one that is
    /// stale (its path may be dead, and it keeps retransmitting into it), takes its own copy of
    /// those mappings instead: one path must not stall the others.
    fn release_tx(&mut self) {
        let sh = &mut self.sh;
        let mut keep = sh.snd_una;
        let most = sh.tx.limit() / 4;
        for sub in &mut self.subflows {
            let Some(m) = sub.st.tx_maps.iter().find(|m| m.external) else {
                continue;
            };
            let held = sh.snd_una.distance_from(m.dsn);
            if held <= 0 {
                continue;
            }
            if sub.st.stale || held as usize > most {
                let mut copied = false;
                for m in sub.st.tx_maps.iter_mut().filter(|m| m.external) {
                    let offset = m.dsn.distance_from(sh.tx_start);
                    let len = usize::from(m.len);
                    if offset < 0 || offset as usize + len > sh.tx.len() {
                        continue;
                    }
                    let (first, second) = sh.tx.slices_at(offset as usize, len);
                    if sub.tcp.own_chunk(m.tag, first, second) {
                        m.external = false;
                        copied = true;
                    }
                }
                sh.counters.tx_copies_taken += u64::from(copied);
                match sub.st.tx_maps.iter().find(|m| m.external) {
                    Some(m) if m.dsn.distance_from(keep) < 0 => keep = m.dsn,
                    _ => {}
                }
            } else if m.dsn.distance_from(keep) < 0 {
                keep = m.dsn;
            }
        }
        let n = keep.distance_from(sh.tx_start);
        if n > 0 {
            sh.tx.consume(n as usize);
            sh.tx_start = keep;
        }
    }

    /// Forget mappings the subflows have fully delivered: the chunks still in a subflow's send
    /// buffer are its last ones, so pop from the front while the rest cover them.
    fn prune_tx_maps(&mut self) {
        for sub in &mut self.subflows {
            if sub.tcp.state() == State::Closed {
                // What a closed subflow held is handed over in `retire_closed_subflows`.
                continue;
            }
            let pending = sub.tcp.send_queue();
            while let Some(front) = sub.st.tx_maps.front() {
                let len = usize::from(front.len);
                if sub.st.tx_mapped - len < pending {
                    break;
                }
                sub.st.tx_mapped -= len;
                sub.st.tx_maps.pop_front();
            }
        }
    }

    /// A subflow that closed (reset, timed out, removed) hands what the peer has not DATA_ACKed
    /// to the others at once, and its slot may be reused.
    fn retire_closed_subflows(&mut self) {
        for sub in &mut self.subflows {
            if sub.st.retired || sub.tcp.state() != State::Closed {
                continue;
            }
            sub.st.retired = true;
            sub.st.join_ack_timer.clear();
            self.sh.pm_changed = true;
            if self.sh.mode == Mode::Mptcp {
                queue_reinjection(&mut self.sh, &sub.st.tx_maps);
            }
            sub.st.tx_maps.clear();
            sub.st.tx_mapped = 0;
        }
    }

    /// Map the queued reinjection ranges on the scheduler's choice of subflow (stale and closed
    /// subflows are not candidates, so the data leaves the subflow that held it).
    fn reinject_pending(&mut self, infos: &mut [SubflowInfo]) {
        let sh = &mut self.sh;
        while let Some(&(dsn, len)) = sh.reinject.front() {
            let end = dsn + len;
            if end.distance_from(sh.snd_una) <= 0 {
                sh.reinject.pop_front();
                continue;
            }
            let start = if dsn.distance_from(sh.snd_una) < 0 {
                sh.snd_una
            } else {
                dsn
            };
            let remaining = end.distance_from(start) as usize;
            let Some(pick) = self.scheduler.pick(infos) else {
                break;
            };
            let i = pick.subflow;
            let n = remaining.min(pick.max_bytes).min(self.max_mapping);
            if !map_range(sh, &mut self.subflows[i], start, n, false, false) {
                break;
            }
            infos[i] = sched_info(&self.subflows[i]);
            sh.counters.reinjected_bytes += n as u64;
            if n == remaining {
                sh.reinject.pop_front();
            } else if let Some(front) = sh.reinject.front_mut() {
                *front = (start + n as u64, (remaining - n) as u64);
            }
        }
    }

    /// Opportunistic retransmission. When the connection-level window is full (`blocked`) and
    /// the oldest unacknowledged data sits on a slower subflow while a faster one has room,
    /// send that mapping again on the faster subflow and penalise the slow one (at most once
    /// per its RTT) so it holds less of the window. When everything is mapped (the tail of a
    /// transfer, or an application that sends less than the paths carry), a faster subflow
    /// with room also takes copies of what slower ones hold, oldest first, so the last bytes
    /// do not wait for the slowest path.
    fn opportunistic_retransmit(&mut self, infos: &mut [SubflowInfo], blocked: bool) {
        let sh = &mut self.sh;
        let una = sh.snd_una;
        let cursor = match self.opportunistic_upto {
            Some(u) if u.distance_from(una) > 0 => {
                if blocked {
                    // The mapping at the left edge went again already.
                    return;
                }
                u
            }
            _ => una,
        };
        let in_use = sched::usable_count(infos).max(2);
        let Some((fast, mut room)) = sched::candidates(infos)
            .map(|(i, s)| (i, sched::room(s, in_use)))
            .filter(|&(_, r)| r > 0)
            .min_by_key(|&(i, _)| (infos[i].srtt.map_or(u64::MAX, |d| d.total_micros()), i))
        else {
            return;
        };
        let fast_rtt = infos[fast].srtt.map_or(u64::MAX, |d| d.total_micros());
        // Outside a blocked window, only the tail: when the fast subflow could carry all that
        // is left unacknowledged about as soon as the slowest holder delivers what it has
        // (what is left is within four fast windows times the ratio of the RTTs, and at least
        // eight). Four: windows and RTTs move while the tail drains (10 Mbit/s beside
        // 1 Mbit/s at 10x the RTT: 0.975 of the fast path with one, 1.08 with four). Without
        // the bound, a transfer that fits in the send buffer is "all mapped" from its first
        // write and would be copied whole.
        if !blocked {
            let slow_rtt = self
                .subflows
                .iter()
                .enumerate()
                .filter(|&(i, s)| i != fast && !s.st.tx_maps.is_empty())
                .filter_map(|(i, _)| infos.get(i)?.srtt)
                .map(|d| d.total_micros())
                .max()
                .unwrap_or(0);
            let ratio = (slow_rtt / fast_rtt.max(1)).max(2) as usize;
            if sh.queued() > infos[fast].cwnd.saturating_mul(ratio * 4) {
                return;
            }
        }
        let mut cursor = cursor;
        let mut penalise = None;
        while room > 0 {
            // The oldest mapping at or after the cursor held by a slower subflow.
            let next = self
                .subflows
                .iter()
                .enumerate()
                .filter(|&(i, _)| {
                    i != fast && infos[i].srtt.is_none_or(|d| d.total_micros() > fast_rtt)
                })
                .flat_map(|(i, s)| s.st.tx_maps.iter().map(move |m| (i, *m)))
                .filter(|(_, m)| (m.dsn + u64::from(m.len)).distance_from(cursor) > 0)
                .min_by_key(|(_, m)| m.dsn.distance_from(cursor));
            let Some((holder, map)) = next else { break };
            let from = if map.dsn.distance_from(cursor) < 0 {
                cursor
            } else {
                map.dsn
            };
            if blocked && from != una {
                break;
            }
            let end = map.dsn + u64::from(map.len);
            let len = (end.distance_from(from) as usize).min(room);
            if !map_range(sh, &mut self.subflows[fast], from, len, false, false) {
                break;
            }
            infos[fast] = sched_info(&self.subflows[fast]);
            room -= len;
            cursor = from + len as u64;
            sh.counters.opportunistic += 1;
            sh.counters.reinjected_bytes += len as u64;
            if blocked {
                penalise = Some(holder);
                break;
            }
        }
        self.opportunistic_upto = Some(cursor);
        if let Some(holder) = penalise {
            let now = sh.now;
            let slow = &mut self.subflows[holder];
            let due = match (slow.st.last_penalty.get(), slow.tcp.srtt()) {
                (Some(t), Some(rtt)) => now >= t + rtt,
                _ => true,
            };
            if due {
                slow.st.last_penalty.set(now);
                slow.tcp.penalize(now);
                sh.counters.penalties += 1;
            }
        }
    }

    /// Move data from subflows into the connection-level reassembly, through their mappings.
    fn pull_data(&mut self) {
        let sh = &mut self.sh;
        let subflows = self.subflows.len();
        let usable_subflows = self.subflows.iter().filter(|s| usable(s)).count();
        for sub in &mut self.subflows {
            if sub
                .st
                .join
                .is_some_and(|j| j.phase != JoinPhase::Established)
            {
                continue;
            }
            loop {
                let avail = sub.tcp.recv_available();
                if avail == 0 {
                    break;
                }
                let seq = sub.tcp.recv_seq();
                if sh.mode != Mode::Mptcp {
                    // Plain TCP: the application reads the subflow directly.
                    break;
                }
                drop_delivered_maps(&mut sub.st.rx_maps, seq);
                if let Some(inf) = sub.st.rx_maps.iter().find(|m| m.infinite).copied() {
                    let before = inf.ssn.distance_from(seq);
                    let next_is_infinite = sub.st.rx_maps.front().is_some_and(|m| m.infinite);
                    if before < 0 && sh.awaiting_infinite.is_some() {
                        // The infinite mapping starts at bytes we already discarded as the
                        // failed data's tail (a middlebox stripped it from the first segment
                        // there): they were acknowledged and cannot come again. Reset rather
                        // than deliver a stream with a hole.
                        sh.counters.unmapped_data += 1;
                        sh.reset = true;
                        break;
                    }
                    if before <= 0 && (sh.awaiting_infinite.is_some() || next_is_infinite) {
                        // The stream goes on as plain TCP from here, at the infinite mapping's
                        // DSN (section 3.7). Bytes we delivered already (an MP_FAIL we never
                        // sent, forged or corrupted, made the peer resend from an earlier DSN)
                        // are skipped; a resume point past what we have would leave a hole in
                        // the stream: reset rather than deliver it.
                        let behind = sh.rx.next().distance_from(inf.dsn);
                        if behind < 0 {
                            sh.counters.unmapped_data += 1;
                            sh.reset = true;
                            break;
                        }
                        let mut ends = sub
                            .st
                            .tx_maps
                            .iter()
                            .map(|m| (m.dsn, m.dsn + u64::from(m.len)));
                        let in_order = ends.next().is_none_or(|first| {
                            ends.try_fold(first.1, |end, (dsn, next)| (dsn == end).then_some(next))
                                .is_some()
                        });
                        if !in_order || !sh.reinject.is_empty() {
                            // Our direction goes on as plain TCP with what this subflow holds:
                            // a data-level retransmission still in it (or still waiting to be
                            // mapped) would reach the peer as stream bytes out of place, or
                            // leave a hole. Reset rather than corrupt.
                            sh.counters.unmapped_data += 1;
                            sh.reset = true;
                            break;
                        }
                        sh.fallback_skip = behind as u64;
                        sh.awaiting_infinite = None;
                        sh.fall_back("infinite mapping received");
                        break;
                    }
                    if sh.awaiting_infinite.is_some() {
                        // Bytes before the infinite mapping follow the failed data: drop them.
                        sub.tcp.recv_consume((before as usize).min(avail));
                        continue;
                    }
                } else if sh.awaiting_infinite.is_some() {
                    sub.tcp.recv_consume(avail);
                    break;
                }
                let Some(map) = sub
                    .st
                    .rx_maps
                    .front()
                    .copied()
                    .filter(|m| m.ssn.distance_from(seq) <= 0)
                else {
                    // Data with no mapping. On the only subflow, before the peer delivered
                    // anything at the data level, this is a middlebox that strips options from
                    // the start: fall back (RFC 8684 section 3.7) and carry on with the stream.
                    // Later, falling back could skip or let through unverified bytes (the
                    // subflow already acknowledged them), so the connection is reset instead.
                    let nothing_delivered = sh.remote.is_some_and(|r| sh.rx.next() == r.idsn + 1);
                    if subflows == 1
                        && sub.st.rx_maps.is_empty()
                        && nothing_delivered
                        && !sh.rx.has_gaps()
                    {
                        sh.fall_back("data without a DSS mapping");
                        continue;
                    }
                    sh.counters.unmapped_data += 1;
                    sh.reset = true;
                    break;
                };
                let offset = seq.distance_from(map.ssn) as usize;
                let remaining = map.len as usize - offset;
                let n = if map.checksum.is_some() {
                    // The whole mapping must be here, and fit in the data-level buffer, to be
                    // verified and delivered at once; a part can never be verified.
                    if offset != 0 {
                        sh.counters.dss_not_matching += 1;
                        sh.reset = true;
                        break;
                    }
                    if avail < remaining || sh.rx.window() < remaining {
                        break;
                    }
                    remaining
                } else {
                    remaining.min(avail)
                };
                // The bytes as they lie in the subflow's ring: checksummed and copied once,
                // straight into the data-level reassembly.
                let (first, second) = sub.tcp.recv_slices(0, n);
                let got = first.len() + second.len();
                if let Some(csum) = map.checksum {
                    let ssn_rel = Ssn(map.ssn.distance_from(sub.st.irs) as u32);
                    let mut c = DssChecksum::new(map.dsn, ssn_rel, map.wire_len);
                    c.update(first);
                    c.update(second);
                    if !c.verify(csum) {
                        // RFC 8684 section 3.7: never deliver it. On the only subflow, with
                        // nothing reassembled out of order, MP_FAIL asks the sender for an
                        // infinite mapping at this DSN; otherwise reset.
                        sh.counters.data_csum_err += 1;
                        sh.counters.mp_fail_tx += 1;
                        sub.tcp.recv_consume(got);
                        sub.tcp.request_ack();
                        sub.st.rx_maps.pop_front();
                        if subflows == 1 && !sh.rx.has_gaps() && map.dsn == sh.rx.next() {
                            sh.awaiting_infinite = Some(map.dsn);
                        } else if usable_subflows > 1 {
                            // With other subflows (section 3.7): this subflow is reset with
                            // MP_FAIL, nothing of it beyond what verified is delivered, and the
                            // sender sends the data again on the others.
                            sub.st.fail_rst = Some(map.dsn);
                            sub.tcp.abort();
                            break;
                        } else {
                            sh.mp_fail_tx = Some(map.dsn);
                            sh.reset = true;
                        }
                        continue;
                    }
                }
                let dsn = map.dsn + offset as u64;
                let res = sh.rx.insert_parts(dsn, first, second);
                sh.counters.duplicate_data += res.duplicate as u64;
                let taken = res.stored + res.duplicate;
                sub.tcp.recv_consume(taken);
                if res.beyond_window > 0 {
                    // The data-level buffer is full: leave the rest in the subflow.
                    break;
                }
            }
        }
        if !sh.data_fin_received && sh.peer_data_fin.is_some_and(|f| f == sh.rx.next()) {
            sh.rx.advance_for_fin();
            sh.data_fin_received = true;
            for s in &mut self.subflows {
                s.tcp.request_ack();
            }
        }
    }

    /// After both DATA_FINs, subflows close with TCP FINs (section 3.3.3).
    fn maybe_close_subflows(&mut self) {
        if self.sh.mode == Mode::Fallback || self.sh.reset {
            if self.sh.reset {
                for s in &mut self.subflows {
                    if !s.tcp.is_closed() && s.tcp.state() != State::Closed {
                        s.tcp.abort();
                    }
                }
            }
            return;
        }
        if self.sh.data_fin_acked && self.sh.data_fin_received {
            for s in &mut self.subflows {
                if matches!(s.tcp.state(), State::Established | State::CloseWait) {
                    s.tcp.close();
                }
            }
        }
        // The peer closed the subflow after its DATA_FIN: answer with ours once our data is
        // acknowledged.
        for s in &mut self.subflows {
            if s.tcp.state() == State::CloseWait && self.sh.data_fin_acked {
                s.tcp.close();
            }
        }
    }

    /// The 4-tuple of subflow `i`.
    pub fn subflow_addrs(&self, i: usize) -> Option<(SocketAddr, SocketAddr)> {
        self.subflows
            .get(i)
            .map(|s| (s.tcp.local(), s.tcp.remote()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(ssn: u32, dsn: u64, len: u32) -> RxMap {
        RxMap {
            ssn: TcpSeq(ssn),
            dsn: Dsn(dsn),
            len,
            checksum: None,
            wire_len: len as u16,
            infinite: false,
        }
    }

    fn record(maps: &mut VecDeque<RxMap>, m: RxMap, c: &mut Counters) {
        record_rx_map(maps, m, c, MIN_RX_MAPS);
    }

    fn spans(maps: &VecDeque<RxMap>) -> Vec<(u32, u64, u32)> {
        maps.iter().map(|m| (m.ssn.0, m.dsn.0, m.len)).collect()
    }

    #[test]
    fn mappings_that_continue_each_other_are_kept_as_one_in_either_order() {
        let (mut maps, mut c) = (VecDeque::new(), Counters::default());
        record(&mut maps, map(100, 5000, 10), &mut c);
        record(&mut maps, map(120, 5020, 10), &mut c);
        assert_eq!(spans(&maps), [(100, 5000, 10), (120, 5020, 10)]);
        // The segment between them arrives last and joins both.
        record(&mut maps, map(110, 5010, 10), &mut c);
        assert_eq!(spans(&maps), [(100, 5000, 30)]);
        assert_eq!(c.dss_not_matching, 0);
    }

    #[test]
    fn a_mapping_contiguous_in_subflow_space_only_stays_apart() {
        // Segment-by-segment scheduling: the next subflow bytes carry a later DSN.
        let (mut maps, mut c) = (VecDeque::new(), Counters::default());
        record(&mut maps, map(100, 5000, 10), &mut c);
        record(&mut maps, map(110, 9000, 10), &mut c);
        assert_eq!(spans(&maps), [(100, 5000, 10), (110, 9000, 10)]);
        assert_eq!(c.dss_not_matching, 0);
    }

    #[test]
    fn a_retransmitted_part_of_a_known_mapping_adds_nothing_and_a_conflicting_one_is_counted() {
        let (mut maps, mut c) = (VecDeque::new(), Counters::default());
        record(&mut maps, map(100, 5000, 30), &mut c);
        record(&mut maps, map(110, 5010, 10), &mut c);
        assert_eq!(spans(&maps), [(100, 5000, 30)]);
        assert_eq!(c.dss_not_matching, 0);
        // A retransmission re-segmented past the end extends it.
        record(&mut maps, map(120, 5020, 20), &mut c);
        assert_eq!(spans(&maps), [(100, 5000, 40)]);
        // The same subflow bytes at another DSN: the first announcement stands.
        record(&mut maps, map(110, 7000, 10), &mut c);
        assert_eq!(spans(&maps), [(100, 5000, 40)]);
        assert_eq!(c.dss_not_matching, 1);
    }

    #[test]
    fn checksummed_mappings_are_never_merged() {
        // Each is verified whole against its own checksum (RFC 8684 section 3.3.1).
        let (mut maps, mut c) = (VecDeque::new(), Counters::default());
        let with_sum = |ssn, dsn, len| RxMap {
            checksum: Some(0x1234),
            ..map(ssn, dsn, len)
        };
        record(&mut maps, with_sum(100, 5000, 10), &mut c);
        record(&mut maps, with_sum(110, 5010, 10), &mut c);
        record(&mut maps, with_sum(110, 5010, 10), &mut c);
        assert_eq!(spans(&maps), [(100, 5000, 10), (110, 5010, 10)]);
        assert_eq!(c.dss_not_matching, 0);
    }

    #[test]
    fn mappings_are_capped_and_the_cap_grows_with_the_receive_buffer() {
        let (mut maps, mut c) = (VecDeque::new(), Counters::default());
        for i in 0..5u32 {
            record_rx_map(
                &mut maps,
                map(100 + 20 * i, 20_000 * u64::from(i), 10),
                &mut c,
                3,
            );
        }
        assert_eq!(maps.len(), 3);
        assert_eq!(c.rx_maps_dropped, 2);
        assert_eq!(rx_map_cap(64 * 1024) as usize, MIN_RX_MAPS);
        assert_eq!(rx_map_cap(4 << 20), 8192);
    }
}
