//! Statistics of one connection and its subflows, as [`MptcpStream::stats`](super::MptcpStream::stats)
//! returns them: a snapshot taken on the stack thread.

use std::net::SocketAddr;
use std::time::Duration;

use crate::mptcp::{Counters, FallbackReason, Mode, MptcpConnection, Subflow};
use crate::tcp::State;

/// A snapshot of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionStats {
    /// The initial subflow's local address.
    pub local: SocketAddr,
    /// The initial subflow's remote address.
    pub remote: SocketAddr,
    /// Whether MPTCP is in use, still being negotiated, or the connection fell back to TCP.
    pub mode: Mode,
    /// Why the connection is plain TCP, if it is.
    pub fallback_reason: Option<FallbackReason>,
    /// Whether DSS checksums are in use.
    pub checksum: bool,
    /// The packet scheduler's name.
    pub scheduler: &'static str,
    /// Payload bytes sent for the first time, summed over the subflows (reinjections count
    /// once per subflow that carried them).
    pub bytes_sent: u64,
    /// Payload bytes received in order, summed over the subflows.
    pub bytes_received: u64,
    /// Bytes sent again on another subflow than the first one that carried them.
    pub reinjected_bytes: u64,
    /// Bytes queued by the application and not yet acknowledged at the data level.
    pub send_queue: usize,
    /// Bytes received and not yet read by the application.
    pub recv_queue: usize,
    /// The connection's MPTCP counters (named after Linux's `MPTcpExt*`).
    pub counters: Counters,
    /// Every subflow, the closed ones included, in the order they were opened (a closed
    /// subflow's slot may be reused by a later one).
    pub subflows: Vec<SubflowStats>,
}

impl ConnectionStats {
    /// The subflows that may carry data now.
    pub fn active_subflows(&self) -> impl Iterator<Item = &SubflowStats> {
        self.subflows.iter().filter(|s| s.active)
    }

    pub(crate) fn of(m: &MptcpConnection) -> Self {
        let subflows: Vec<SubflowStats> = m.subflows().iter().map(SubflowStats::of).collect();
        ConnectionStats {
            local: m.primary().local(),
            remote: m.primary().remote(),
            mode: m.mode(),
            fallback_reason: m.fallback_reason(),
            checksum: m.checksum(),
            scheduler: m.scheduler_name(),
            bytes_sent: subflows.iter().map(|s| s.bytes_sent).sum(),
            bytes_received: subflows.iter().map(|s| s.bytes_received).sum(),
            reinjected_bytes: m.counters().reinjected_bytes,
            send_queue: m.send_queue(),
            recv_queue: m.recv_available(),
            counters: *m.counters(),
            subflows,
        }
    }
}

/// A snapshot of one subflow.
#[derive(Debug, Clone)]
pub struct SubflowStats {
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// The local address id (0: the initial subflow's address).
    pub local_id: u8,
    /// The remote address id.
    pub remote_id: u8,
    /// The TCP state.
    pub state: State,
    /// Whether it may carry data now (established, joined, not stale).
    pub active: bool,
    /// Whether we asked the peer to use it only as a backup.
    pub backup: bool,
    /// Whether the peer asked us to use it only as a backup.
    pub peer_backup: bool,
    /// Whether its retransmission timer fired and nothing was acknowledged since.
    pub stale: bool,
    /// Payload bytes sent for the first time.
    pub bytes_sent: u64,
    /// Payload bytes retransmitted.
    pub bytes_retransmitted: u64,
    /// Payload bytes acknowledged by the peer.
    pub bytes_acked: u64,
    /// Payload bytes received in order.
    pub bytes_received: u64,
    /// The smoothed round-trip time, once measured.
    pub srtt: Option<Duration>,
    /// The congestion window in bytes.
    pub cwnd: usize,
    /// Bytes sent and not yet acknowledged.
    pub bytes_in_flight: usize,
    /// Retransmission timeouts.
    pub rto_expiries: u64,
}

impl SubflowStats {
    fn of(s: &Subflow) -> Self {
        let tcp = s.tcp();
        let st = tcp.stats();
        SubflowStats {
            local: tcp.local(),
            remote: tcp.remote(),
            local_id: s.local_id(),
            remote_id: s.remote_id(),
            state: tcp.state(),
            active: s.is_active(),
            backup: s.backup(),
            peer_backup: s.peer_backup(),
            stale: s.is_stale(),
            bytes_sent: st.bytes_sent,
            bytes_retransmitted: st.bytes_retransmitted,
            bytes_acked: st.bytes_acked,
            bytes_received: st.bytes_received,
            srtt: tcp.srtt().map(|d| Duration::from_micros(d.total_micros())),
            cwnd: tcp.cwnd(),
            bytes_in_flight: tcp.bytes_in_flight(),
            rto_expiries: st.rto_expiries,
        }
    }
}
