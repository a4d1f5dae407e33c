//! Address signalling of one connection (RFC 8684 section 3.4): the addresses we announce with
//! ADD_ADDR until the peer echoes them, the echoes we owe, REMOVE_ADDR both ways, and the
//! addresses the peer announced.
//!
//! Contract: pure bookkeeping with explicit time. The connection puts at most one ADD_ADDR
//! (announcement or echo) on a segment and only where it fits ([`Signals::take_add_addr`]);
//! an announcement is sent again every [`ANNOUNCE_RETRY`] (doubling) until echoed, at most
//! [`MAX_ANNOUNCE_TRIES`] times. Every announcement queued at once goes out at once, one per
//! pure ACK, not one per timeout. Received addresses are capped at [`MAX_REMOTE_ADDRS`]; a
//! new one beyond the cap is counted by the caller and ignored.

use std::collections::VecDeque;
use std::net::IpAddr;

use smoltcp::time::{Duration, Instant};

use crate::crypto::add_addr_hmac;
use crate::wire::{AddAddrRepr, AddrIdList};

/// First wait for an ADD_ADDR echo before the announcement goes again (then doubling).
pub const ANNOUNCE_RETRY: Duration = Duration::from_millis(1000);
/// Announcements without an echo after this many sends are given up.
pub const MAX_ANNOUNCE_TRIES: u8 = 5;
/// The most peer addresses remembered per connection.
pub const MAX_REMOTE_ADDRS: usize = 8;
/// The most ADD_ADDR echoes waiting to be sent.
pub const MAX_PENDING_ECHOES: usize = 8;
/// The most of our addresses announced per connection.
pub const MAX_ANNOUNCED: usize = 8;

/// Where one of our announcements stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceState {
    /// To be sent on the next segment with room.
    Due,
    /// Sent; sent again at `retry_at` unless echoed.
    Sent {
        /// When to send it again.
        retry_at: Instant,
    },
    /// The peer echoed it.
    Echoed,
    /// No echo after [`MAX_ANNOUNCE_TRIES`] sends.
    GaveUp,
}

/// One address we announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    /// Its address id.
    pub id: u8,
    /// The address.
    pub addr: IpAddr,
    /// The port, when it differs from the connection's.
    pub port: Option<u16>,
    /// Progress.
    pub state: AnnounceState,
    tries: u8,
}

/// An address the peer announced (with a valid HMAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr {
    /// Its address id.
    pub id: u8,
    /// The address.
    pub addr: IpAddr,
    /// The port, if the peer gave one.
    pub port: Option<u16>,
}

/// What a received ADD_ADDR did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddAddrOutcome {
    /// An echo of one of our announcements.
    Echo,
    /// A new (or updated) peer address, recorded and to be echoed.
    Learned,
    /// A repeat of an address we know, echoed again.
    Repeat,
    /// Valid, echoed, but beyond [`MAX_REMOTE_ADDRS`]: not recorded.
    OverLimit,
    /// The HMAC did not verify: ignored (section 3.4.1).
    BadHmac,
}

/// The signalling state of a connection.
#[derive(Debug, Default)]
pub struct Signals {
    announced: Vec<Announcement>,
    echo_tx: VecDeque<AddAddrRepr>,
    remove_tx: Vec<u8>,
    remote: Vec<RemoteAddr>,
}

impl Signals {
    /// Queue an announcement of `addr` under `id`; an address already announced under the same
    /// id is not announced twice. Returns false when the table is full.
    pub fn announce(&mut self, id: u8, addr: IpAddr, port: Option<u16>) -> bool {
        if let Some(a) = self.announced.iter_mut().find(|a| a.id == id) {
            if a.addr != addr || a.port != port || a.state == AnnounceState::GaveUp {
                *a = Announcement {
                    id,
                    addr,
                    port,
                    state: AnnounceState::Due,
                    tries: 0,
                };
            }
            return true;
        }
        if self.announced.len() >= MAX_ANNOUNCED {
            return false;
        }
        self.announced.push(Announcement {
            id,
            addr,
            port,
            state: AnnounceState::Due,
            tries: 0,
        });
        self.remove_tx.retain(|&r| r != id);
        true
    }

    /// Withdraw address `id`: forget its announcement and queue a REMOVE_ADDR.
    pub fn withdraw(&mut self, id: u8) {
        self.announced.retain(|a| a.id != id);
        if !self.remove_tx.contains(&id) && self.remove_tx.len() < AddrIdList::CAPACITY {
            self.remove_tx.push(id);
        }
    }

    /// Our announcements.
    pub fn announced(&self) -> &[Announcement] {
        &self.announced
    }

    /// The addresses the peer announced.
    pub fn remote(&self) -> &[RemoteAddr] {
        &self.remote
    }

    /// Whether an ADD_ADDR or REMOVE_ADDR waits for a segment.
    pub fn pending(&self) -> bool {
        !self.echo_tx.is_empty()
            || !self.remove_tx.is_empty()
            || self.announced.iter().any(|a| a.state == AnnounceState::Due)
    }

    /// The next ADD_ADDR to send (an echo first), built with our keys; it is considered sent
    /// only after [`Signals::sent_add_addr`].
    pub fn next_add_addr(&self, local_key: u64, remote_key: u64) -> Option<AddAddrRepr> {
        if let Some(e) = self.echo_tx.front() {
            return Some(*e);
        }
        let a = self
            .announced
            .iter()
            .find(|a| a.state == AnnounceState::Due)?;
        Some(AddAddrRepr {
            addr_id: a.id,
            addr: a.addr,
            port: a.port,
            hmac: Some(add_addr_hmac(local_key, remote_key, a.id, a.addr, a.port)),
        })
    }

    /// `repr` (from [`Signals::next_add_addr`]) went out at `now`.
    pub fn sent_add_addr(&mut self, repr: &AddAddrRepr, now: Instant) {
        if repr.is_echo() {
            self.echo_tx.pop_front();
            return;
        }
        if let Some(a) = self.announced.iter_mut().find(|a| a.id == repr.addr_id) {
            a.tries += 1;
            a.state = AnnounceState::Sent {
                retry_at: now + ANNOUNCE_RETRY * (1u32 << (a.tries - 1).min(6)),
            };
        }
    }

    /// The REMOVE_ADDR to send, if any.
    pub fn next_remove(&self) -> Option<AddrIdList> {
        if self.remove_tx.is_empty() {
            return None;
        }
        AddrIdList::new(&self.remove_tx).ok()
    }

    /// The REMOVE_ADDR went out.
    pub fn sent_remove(&mut self) {
        self.remove_tx.clear();
    }

    /// A received ADD_ADDR: an echo of ours, or the peer's address, verified with the peer's
    /// key first (`remote_key`, `local_key`).
    pub fn on_add_addr(
        &mut self,
        repr: &AddAddrRepr,
        local_key: u64,
        remote_key: u64,
    ) -> AddAddrOutcome {
        if repr.is_echo() {
            if let Some(a) = self
                .announced
                .iter_mut()
                .find(|a| a.id == repr.addr_id && a.addr == repr.addr && a.port == repr.port)
            {
                a.state = AnnounceState::Echoed;
            }
            return AddAddrOutcome::Echo;
        }
        let expected = add_addr_hmac(remote_key, local_key, repr.addr_id, repr.addr, repr.port);
        if repr.hmac != Some(expected) {
            return AddAddrOutcome::BadHmac;
        }
        // Section 3.4.1: every valid ADD_ADDR is echoed, so the sender stops repeating it.
        let echo = AddAddrRepr {
            hmac: None,
            ..*repr
        };
        if !self.echo_tx.contains(&echo) && self.echo_tx.len() < MAX_PENDING_ECHOES {
            self.echo_tx.push_back(echo);
        }
        let new = RemoteAddr {
            id: repr.addr_id,
            addr: repr.addr,
            port: repr.port,
        };
        if let Some(r) = self.remote.iter_mut().find(|r| r.id == repr.addr_id) {
            if *r == new {
                return AddAddrOutcome::Repeat;
            }
            *r = new;
            return AddAddrOutcome::Learned;
        }
        if self.remote.len() >= MAX_REMOTE_ADDRS {
            return AddAddrOutcome::OverLimit;
        }
        self.remote.push(new);
        AddAddrOutcome::Learned
    }

    /// The peer withdrew address `id`.
    pub fn on_remove(&mut self, id: u8) {
        self.remote.retain(|r| r.id != id);
    }

    /// The earliest announcement retry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.announced
            .iter()
            .filter_map(|a| match a.state {
                AnnounceState::Sent { retry_at } => Some(retry_at),
                _ => None,
            })
            .min()
    }

    /// Announcements whose echo is overdue become due again (or are given up). Returns how
    /// many were given up.
    pub fn handle_timeout(&mut self, now: Instant) -> u64 {
        let mut gave_up = 0;
        for a in &mut self.announced {
            if let AnnounceState::Sent { retry_at } = a.state
                && retry_at <= now
            {
                if a.tries >= MAX_ANNOUNCE_TRIES {
                    a.state = AnnounceState::GaveUp;
                    gave_up += 1;
                } else {
                    a.state = AnnounceState::Due;
                }
            }
        }
        gave_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: u64 = 0x1111_2222_3333_4444;
    const B: u64 = 0x5555_6666_7777_8888;
    const ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2));

    #[test]
    fn an_announcement_repeats_until_echoed_then_stops() {
        let mut s = Signals::default();
        assert!(s.announce(2, ADDR, None));
        let t0 = Instant::from_millis(0);
        let add = s.next_add_addr(A, B).unwrap();
        assert_eq!(add.hmac, Some(add_addr_hmac(A, B, 2, ADDR, None)));
        s.sent_add_addr(&add, t0);
        assert!(!s.pending());
        assert_eq!(s.poll_timeout(), Some(t0 + ANNOUNCE_RETRY));
        s.handle_timeout(t0 + ANNOUNCE_RETRY);
        assert!(s.pending(), "no echo: sent again");
        s.sent_add_addr(&add, t0 + ANNOUNCE_RETRY);
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + ANNOUNCE_RETRY + ANNOUNCE_RETRY * 2)
        );
        let echo = AddAddrRepr { hmac: None, ..add };
        assert_eq!(s.on_add_addr(&echo, A, B), AddAddrOutcome::Echo);
        assert_eq!(s.announced()[0].state, AnnounceState::Echoed);
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn an_unechoed_announcement_is_given_up_after_the_last_try() {
        let mut s = Signals::default();
        s.announce(1, ADDR, Some(80));
        let mut now = Instant::from_millis(0);
        let mut gave_up = 0;
        for _ in 0..MAX_ANNOUNCE_TRIES {
            let add = s.next_add_addr(A, B).unwrap();
            s.sent_add_addr(&add, now);
            now = s.poll_timeout().unwrap();
            gave_up += s.handle_timeout(now);
        }
        assert_eq!(gave_up, 1);
        assert_eq!(s.announced()[0].state, AnnounceState::GaveUp);
        assert!(!s.pending());
    }

    #[test]
    fn a_valid_add_addr_is_recorded_and_echoed_a_forged_one_is_ignored() {
        let mut s = Signals::default();
        let good = AddAddrRepr {
            addr_id: 3,
            addr: ADDR,
            port: None,
            hmac: Some(add_addr_hmac(B, A, 3, ADDR, None)),
        };
        let forged = AddAddrRepr {
            hmac: Some(add_addr_hmac(A, B, 3, ADDR, None)),
            ..good
        };
        assert_eq!(s.on_add_addr(&forged, A, B), AddAddrOutcome::BadHmac);
        assert!(s.remote().is_empty());
        assert!(!s.pending());
        assert_eq!(s.on_add_addr(&good, A, B), AddAddrOutcome::Learned);
        assert_eq!(s.remote().len(), 1);
        let echo = s.next_add_addr(A, B).unwrap();
        assert!(echo.is_echo());
        assert_eq!(echo.addr_id, 3);
        assert_eq!(s.on_add_addr(&good, A, B), AddAddrOutcome::Repeat);
        s.on_remove(3);
        assert!(s.remote().is_empty());
    }

    #[test]
    fn peer_addresses_are_capped() {
        let mut s = Signals::default();
        for id in 0..=MAX_REMOTE_ADDRS as u8 {
            let addr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, id));
            let repr = AddAddrRepr {
                addr_id: id,
                addr,
                port: None,
                hmac: Some(add_addr_hmac(B, A, id, addr, None)),
            };
            let want = if usize::from(id) < MAX_REMOTE_ADDRS {
                AddAddrOutcome::Learned
            } else {
                AddAddrOutcome::OverLimit
            };
            assert_eq!(s.on_add_addr(&repr, A, B), want);
        }
        assert_eq!(s.remote().len(), MAX_REMOTE_ADDRS);
    }

    #[test]
    fn withdrawing_queues_one_remove_addr_with_every_id() {
        let mut s = Signals::default();
        s.announce(1, ADDR, None);
        s.withdraw(1);
        s.withdraw(4);
        s.withdraw(4);
        assert!(s.announced().is_empty());
        assert_eq!(s.next_remove().unwrap().as_slice(), &[1, 4]);
        s.sent_remove();
        assert!(!s.pending());
    }
}
