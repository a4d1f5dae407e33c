//! Packet schedulers: which subflow carries the next mapping.
//!
//! Contract: a [`Scheduler`] is a pure decision over a snapshot of the subflows
//! ([`SubflowInfo`], one per subflow in index order, unusable ones included so indices are
//! stable). It returns the subflow for the next mapping and the most bytes that subflow may take
//! now ([`Pick`]); the connection cuts the mapping, and asks again until the scheduler returns
//! `None` or the send buffer is empty. A redundant scheduler also asks the connection to copy
//! every mapping onto every other subflow that has room ([`Scheduler::redundant`]).
//!
//! Rules every provided scheduler keeps:
//! - Only usable subflows carry data: established, joined (both HMACs verified) and not stale
//!   (a subflow whose retransmission timer fired is stale until it acknowledges new data).
//! - RFC 8684 section 3.3.8: a backup subflow carries data only when no non-backup subflow is
//!   usable.
//! - With several subflows in use, a subflow gets at most about one congestion window queued
//!   ([`room`]), so the choice is made again as windows open rather than once for the whole
//!   buffer.

use core::fmt::Debug;

use smoltcp::time::Duration;

/// What a scheduler sees of one subflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubflowInfo {
    /// Established, joined, and not closing: it may carry data.
    pub usable: bool,
    /// Its retransmission timer fired and it has not acknowledged anything since.
    pub stale: bool,
    /// Stale through two retransmission timeouts in a row: its path is taken for failed, and
    /// backups may carry data in its place.
    pub failed: bool,
    /// Backup: either side asked (MP_JOIN backup bit or MP_PRIO).
    pub backup: bool,
    /// Smoothed RTT, once measured.
    pub srtt: Option<Duration>,
    /// Congestion window in bytes.
    pub cwnd: usize,
    /// Payload bytes per segment.
    pub mss: usize,
    /// Bytes in the subflow's send buffer (queued or in flight, not yet acknowledged).
    pub queued: usize,
    /// Free room in the subflow's send buffer.
    pub capacity: usize,
}

impl SubflowInfo {
    /// Usable and not stale.
    pub fn active(&self) -> bool {
        self.usable && !self.stale
    }
}

/// A scheduler's answer: subflow `subflow` takes the next mapping, at most `max_bytes` long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Index of the subflow.
    pub subflow: usize,
    /// The most bytes it may take now (at least 1).
    pub max_bytes: usize,
}

/// Chooses the subflow for each mapping (see the module docs).
pub trait Scheduler: Debug + Send {
    /// A short name for statistics and logs.
    fn name(&self) -> &'static str;
    /// The subflow for the next mapping, or `None` when no subflow may take data now.
    fn pick(&mut self, subflows: &[SubflowInfo]) -> Option<Pick>;
    /// Whether every mapping is also copied onto every other active subflow of the same class
    /// (non-backup, or backup when only backups are left).
    fn redundant(&self) -> bool {
        false
    }
}

/// The schedulers this crate provides, for configuration and the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulerKind {
    /// Lowest smoothed RTT first ([`MinRtt`]).
    #[default]
    MinRtt,
    /// Each subflow in turn ([`RoundRobin`]).
    RoundRobin,
    /// Every mapping on every subflow ([`Redundant`]).
    Redundant,
    /// One subflow at a time, the next one only when it fails ([`ActiveBackup`]).
    ActiveBackup,
}

impl SchedulerKind {
    /// A scheduler of this kind.
    pub fn build(self) -> Box<dyn Scheduler> {
        match self {
            SchedulerKind::MinRtt => Box::new(MinRtt),
            SchedulerKind::RoundRobin => Box::new(RoundRobin::default()),
            SchedulerKind::Redundant => Box::new(Redundant),
            SchedulerKind::ActiveBackup => Box::new(ActiveBackup::default()),
        }
    }
}

/// Whether backups are the class in use: every non-backup subflow is unusable or failed.
/// (One that is merely stale holds the backups back: a single timeout is often a burst of
/// losses, not a dead path.)
pub fn backups_in_use(subflows: &[SubflowInfo]) -> bool {
    !subflows.iter().any(|s| s.usable && !s.failed && !s.backup)
}

/// The subflows that may carry data now: active, and of the class in use (section 3.3.8).
pub fn candidates(subflows: &[SubflowInfo]) -> impl Iterator<Item = (usize, &SubflowInfo)> {
    let backups = backups_in_use(subflows);
    subflows
        .iter()
        .enumerate()
        .filter(move |(_, s)| s.active() && s.backup == backups)
}

/// The bytes subflow `s` may take now: its free send buffer, and with several subflows usable
/// (backups and stale ones included) at most one congestion window plus two segments queued:
/// no subflow holds much more than it can send, so little is stranded if it fails and
/// reinjected data does not queue behind a backlog. (The connection maps again after every
/// ACK, so the window is refilled as it opens.)
pub fn room(s: &SubflowInfo, in_use: usize) -> usize {
    if in_use <= 1 {
        return s.capacity;
    }
    let budget = s.cwnd + 2 * s.mss;
    let r = s.capacity.min(budget.saturating_sub(s.queued));
    // Less than a segment: wait for the window to open rather than send a runt.
    if r < s.mss { 0 } else { r }
}

/// Usable subflows of any class, stale or not: more than one, and each is held to about two
/// congestion windows (see [`room`]).
pub fn usable_count(subflows: &[SubflowInfo]) -> usize {
    subflows.iter().filter(|s| s.usable).count()
}

fn rtt_key(s: &SubflowInfo) -> u64 {
    s.srtt.map_or(u64::MAX, |d| d.total_micros())
}

/// Min-RTT (the default, as Linux's): among the candidates with room, the lowest smoothed RTT
/// (ties to the lower index).
#[derive(Debug, Clone, Copy, Default)]
pub struct MinRtt;

impl Scheduler for MinRtt {
    fn name(&self) -> &'static str {
        "minrtt"
    }

    fn pick(&mut self, subflows: &[SubflowInfo]) -> Option<Pick> {
        let in_use = usable_count(subflows);
        candidates(subflows)
            .map(|(i, s)| (i, s, room(s, in_use)))
            .filter(|&(_, _, r)| r > 0)
            .min_by_key(|&(i, s, _)| (rtt_key(s), i))
            .map(|(i, _, r)| Pick {
                subflow: i,
                max_bytes: r,
            })
    }
}

/// The most bytes round-robin gives one subflow before moving on, in segments.
pub const ROUND_ROBIN_QUANTUM_SEGMENTS: usize = 4;

/// Round-robin: the candidates in turn, a few segments each, skipping any without room.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobin {
    last: Option<usize>,
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        "roundrobin"
    }

    fn pick(&mut self, subflows: &[SubflowInfo]) -> Option<Pick> {
        let in_use = usable_count(subflows);
        let n = subflows.len();
        let start = self.last.map_or(0, |l| l + 1);
        let (i, r) = (0..n)
            .map(|k| (start + k) % n)
            .filter_map(|i| {
                let s = &subflows[i];
                let eligible = candidates(subflows).any(|(j, _)| j == i);
                let r = room(s, in_use).min(ROUND_ROBIN_QUANTUM_SEGMENTS * s.mss.max(1));
                (eligible && r > 0).then_some((i, r))
            })
            .next()?;
        self.last = Some(i);
        Some(Pick {
            subflow: i,
            max_bytes: r,
        })
    }
}

/// Redundant: each mapping goes on the lowest-RTT candidate with room and is copied onto every
/// other candidate that has room, so the fastest path always delivers it first. For
/// interactive traffic: it trades capacity for latency and loss resilience.
#[derive(Debug, Clone, Copy, Default)]
pub struct Redundant;

impl Scheduler for Redundant {
    fn name(&self) -> &'static str {
        "redundant"
    }

    fn pick(&mut self, subflows: &[SubflowInfo]) -> Option<Pick> {
        MinRtt.pick(subflows)
    }

    fn redundant(&self) -> bool {
        true
    }
}

/// Active-backup (handover): all data on one subflow, the first active one in index order of
/// the class in use; the next takes over only when it fails or goes stale, and the connection
/// stays there while it works.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActiveBackup {
    current: Option<usize>,
}

impl Scheduler for ActiveBackup {
    fn name(&self) -> &'static str {
        "backup"
    }

    fn pick(&mut self, subflows: &[SubflowInfo]) -> Option<Pick> {
        // A candidate is of the class in use: a backup gives way as soon as a non-backup
        // subflow works again.
        let keep = self
            .current
            .filter(|&c| candidates(subflows).any(|(i, _)| i == c));
        let current = keep.or_else(|| candidates(subflows).map(|(i, _)| i).next())?;
        self.current = Some(current);
        let r = room(&subflows[current], usable_count(subflows));
        (r > 0).then_some(Pick {
            subflow: current,
            max_bytes: r,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(rtt_ms: u64) -> SubflowInfo {
        SubflowInfo {
            usable: true,
            stale: false,
            failed: false,
            backup: false,
            srtt: Some(Duration::from_millis(rtt_ms)),
            cwnd: 10 * 1400,
            mss: 1400,
            queued: 0,
            capacity: 1 << 20,
        }
    }

    #[test]
    fn min_rtt_prefers_the_fastest_subflow_until_its_budget_is_queued() {
        let mut subs = [sub(40), sub(10)];
        let p = MinRtt.pick(&subs).unwrap();
        assert_eq!(p.subflow, 1);
        assert_eq!(p.max_bytes, 14_000 + 2 * 1400);
        subs[1].queued = 14_000 + 2 * 1400;
        assert_eq!(MinRtt.pick(&subs).unwrap().subflow, 0);
    }

    #[test]
    fn a_single_subflow_takes_its_whole_buffer() {
        let p = MinRtt.pick(&[sub(10)]).unwrap();
        assert_eq!(p.max_bytes, 1 << 20);
        // Beside a backup it does not: it must not hold more than it can send if it fails.
        let mut backup = sub(10);
        backup.backup = true;
        let p = MinRtt.pick(&[sub(10), backup]).unwrap();
        assert_eq!(p.max_bytes, 14_000 + 2 * 1400);
    }

    #[test]
    fn backups_carry_data_only_when_no_other_subflow_is_active() {
        let mut subs = [sub(40), sub(10)];
        subs[1].backup = true;
        assert_eq!(MinRtt.pick(&subs).unwrap().subflow, 0);
        // The primary has no room: still not the backup (section 3.3.8).
        subs[0].queued = 1 << 20;
        subs[0].capacity = 0;
        assert_eq!(MinRtt.pick(&subs), None);
        // Stale after one timeout: the backup still waits.
        subs[0].stale = true;
        assert_eq!(MinRtt.pick(&subs), None);
        // Failed (a second timeout): the backup takes over.
        subs[0].failed = true;
        assert_eq!(MinRtt.pick(&subs).unwrap().subflow, 1);
    }

    #[test]
    fn stale_and_unusable_subflows_are_never_picked() {
        let mut subs = [sub(10), sub(20), sub(30)];
        subs[0].stale = true;
        subs[1].usable = false;
        for mut s in [
            SchedulerKind::MinRtt.build(),
            SchedulerKind::RoundRobin.build(),
            SchedulerKind::Redundant.build(),
            SchedulerKind::ActiveBackup.build(),
        ] {
            for _ in 0..5 {
                assert_eq!(s.pick(&subs).unwrap().subflow, 2, "{}", s.name());
            }
        }
    }

    #[test]
    fn round_robin_visits_each_candidate_in_turn() {
        let subs = [sub(10), sub(50), sub(20)];
        let mut rr = RoundRobin::default();
        let order: Vec<_> = (0..6).map(|_| rr.pick(&subs).unwrap().subflow).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
        assert_eq!(
            rr.pick(&subs).unwrap().max_bytes,
            ROUND_ROBIN_QUANTUM_SEGMENTS * 1400
        );
    }

    #[test]
    fn active_backup_sticks_to_one_subflow_and_hands_over_on_failure() {
        let mut subs = [sub(50), sub(10)];
        let mut ab = ActiveBackup::default();
        assert_eq!(ab.pick(&subs).unwrap().subflow, 0);
        assert_eq!(ab.pick(&subs).unwrap().subflow, 0);
        subs[0].stale = true;
        assert_eq!(ab.pick(&subs).unwrap().subflow, 1);
        // Subflow 0 recovers: the connection stays where it is.
        subs[0].stale = false;
        assert_eq!(ab.pick(&subs).unwrap().subflow, 1);
    }

    #[test]
    fn redundant_asks_for_copies() {
        assert!(Redundant.redundant());
        assert!(!MinRtt.redundant());
        assert_eq!(Redundant.pick(&[sub(30), sub(10)]).unwrap().subflow, 1);
    }

    #[test]
    fn no_candidate_no_pick() {
        let mut s = sub(10);
        s.usable = false;
        for mut sch in [
            SchedulerKind::MinRtt.build(),
            SchedulerKind::RoundRobin.build(),
            SchedulerKind::Redundant.build(),
            SchedulerKind::ActiveBackup.build(),
        ] {
            assert_eq!(sch.pick(&[]), None);
            assert_eq!(sch.pick(&[s]), None);
        }
    }
}
