//! Path managers: which subflows a connection should have, and which addresses it announces.
//!
//! Contract: a [`PathManager`] belongs to one connection and is a pure planner over a snapshot
//! ([`PmView`]): the endpoint's local addresses with their flags, the peer's addresses (the
//! initial one and those it announced with a valid ADD_ADDR), and the connection's subflows.
//! It answers with [`PmAction`]s, which the endpoint carries out (opening subflows with
//! MP_JOIN, sending ADD_ADDR), and with the time it wants to be asked again
//! ([`PathManager::poll_timeout`]). The endpoint asks when the connection is fully established,
//! when a peer address comes or goes, when a subflow closes, when the application changes its
//! addresses, and when the manager's timer is due.
//!
//! [`FullMesh`] is the default: the client opens one subflow from every local address flagged
//! `subflow` to every peer address of the same family; the server announces every local
//! address flagged `signal`. A pair whose subflow failed is tried again with exponential
//! backoff ([`RETRY_BASE`] doubling up to [`RETRY_MAX`]) so it comes back when its path works
//! again; a pair that works again starts from the base, and an address the application removes
//! and adds back is tried at once.

use core::fmt::Debug;
use std::net::{IpAddr, SocketAddr};

use smoltcp::time::{Duration, Instant};

use super::Role;
use super::addr::RemoteAddr;

/// How a local address may be used (like the flags of Linux's `ip mptcp endpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrFlags {
    /// Announce it to peers (ADD_ADDR) when we are the server.
    pub signal: bool,
    /// Open subflows from it when we are the client.
    pub subflow: bool,
    /// Subflows from it are backups (MP_JOIN's B bit, MP_PRIO).
    pub backup: bool,
}

impl Default for AddrFlags {
    fn default() -> Self {
        AddrFlags {
            signal: true,
            subflow: true,
            backup: false,
        }
    }
}

/// One of the endpoint's addresses, as a path manager sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr {
    /// Its address id (RFC 8684 section 3.4.1; 0 is always the initial subflow's address).
    pub id: u8,
    /// The address.
    pub addr: IpAddr,
    /// How it may be used.
    pub flags: AddrFlags,
}

/// One subflow, as a path manager sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmSubflow {
    /// Local end.
    pub local: SocketAddr,
    /// Remote end.
    pub remote: SocketAddr,
    /// Not closed (handshaking, established or closing).
    pub alive: bool,
    /// Established and joined: it works.
    pub active: bool,
}

/// What a path manager sees of a connection.
#[derive(Debug, Clone, Copy)]
pub struct PmView<'a> {
    /// Which side opened the connection.
    pub role: Role,
    /// The endpoint's addresses.
    pub local_addrs: &'a [LocalAddr],
    /// The initial subflow's local address (id 0 of our side).
    pub initial_local: SocketAddr,
    /// The initial subflow's remote address (id 0 of the peer).
    pub initial_remote: SocketAddr,
    /// The addresses the peer announced.
    pub remote_addrs: &'a [RemoteAddr],
    /// The subflows, closed ones included.
    pub subflows: &'a [PmSubflow],
    /// The most subflows alive at once.
    pub max_subflows: usize,
    /// The peer accepts joins to its initial address and port (it did not set the C flag,
    /// RFC 8684 section 3.1).
    pub join_initial: bool,
}

/// Something a path manager wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmAction {
    /// Open a subflow with MP_JOIN from `local` (ephemeral port) to `remote`.
    Connect {
        /// Local address.
        local: IpAddr,
        /// Peer address and port.
        remote: SocketAddr,
        /// Ask for a backup subflow.
        backup: bool,
    },
    /// Announce a local address with ADD_ADDR.
    Announce {
        /// Its address id.
        id: u8,
        /// The address.
        addr: IpAddr,
    },
}

/// A path manager (see the module docs).
pub trait PathManager: Debug + Send {
    /// A short name.
    fn name(&self) -> &'static str;
    /// Look at the connection and say what to do; `actions` is empty on entry.
    fn plan(&mut self, now: Instant, view: &PmView<'_>, actions: &mut Vec<PmAction>);
    /// When to be asked again even if nothing changed.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// The path managers this crate provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathManagerKind {
    /// [`FullMesh`].
    #[default]
    FullMesh,
    /// No automatic subflows or announcements: the application calls
    /// `Endpoint::add_subflow` and `Endpoint::announce` itself.
    Manual,
}

impl PathManagerKind {
    /// A path manager of this kind.
    pub fn build(self) -> Box<dyn PathManager> {
        match self {
            PathManagerKind::FullMesh => Box::new(FullMesh::default()),
            PathManagerKind::Manual => Box::new(Manual),
        }
    }
}

/// Does nothing: the application manages paths.
#[derive(Debug, Clone, Copy, Default)]
pub struct Manual;

impl PathManager for Manual {
    fn name(&self) -> &'static str {
        "manual"
    }
    fn plan(&mut self, _now: Instant, _view: &PmView<'_>, _actions: &mut Vec<PmAction>) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

/// First wait before a failed pair is tried again.
pub const RETRY_BASE: Duration = Duration::from_millis(1000);
/// Longest wait between tries of a failed pair.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// The most (local, remote) pairs a full-mesh manager remembers.
pub const MAX_PAIRS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Pair {
    local: IpAddr,
    remote: SocketAddr,
    /// Subflows opened for this pair since it last worked.
    attempts: u32,
    /// Not before this time again.
    next_try: Instant,
}

/// Full mesh (see the module docs).
#[derive(Debug, Default)]
pub struct FullMesh {
    pairs: Vec<Pair>,
    announced: Vec<(u8, IpAddr)>,
    wake: Option<Instant>,
}

impl FullMesh {
    fn backoff(attempts: u32) -> Duration {
        let factor = 1u64 << attempts.saturating_sub(1).min(5);
        (RETRY_BASE * factor as u32).min(RETRY_MAX)
    }
}

impl PathManager for FullMesh {
    fn name(&self) -> &'static str {
        "fullmesh"
    }

    fn plan(&mut self, now: Instant, view: &PmView<'_>, actions: &mut Vec<PmAction>) {
        self.wake = None;
        // Addresses the application removed are forgotten, so they start afresh if they come
        // back.
        self.pairs
            .retain(|p| view.local_addrs.iter().any(|l| l.addr == p.local));
        self.announced
            .retain(|(_, a)| view.local_addrs.iter().any(|l| l.addr == *a));
        match view.role {
            Role::Server => {
                for l in view.local_addrs {
                    if !l.flags.signal
                        || l.addr == view.initial_local.ip()
                        || self.announced.contains(&(l.id, l.addr))
                    {
                        continue;
                    }
                    self.announced.push((l.id, l.addr));
                    actions.push(PmAction::Announce {
                        id: l.id,
                        addr: l.addr,
                    });
                }
            }
            Role::Client => {
                let mut alive = view.subflows.iter().filter(|s| s.alive).count();
                let remotes =
                    core::iter::once(view.initial_remote).chain(view.remote_addrs.iter().map(
                        |r| SocketAddr::new(r.addr, r.port.unwrap_or(view.initial_remote.port())),
                    ));
                for remote in remotes {
                    if remote == view.initial_remote && !view.join_initial {
                        continue;
                    }
                    for l in view.local_addrs {
                        if !l.flags.subflow || l.addr.is_ipv4() != remote.is_ipv4() {
                            continue;
                        }
                        let on_pair = |s: &&PmSubflow| s.local.ip() == l.addr && s.remote == remote;
                        let working = view.subflows.iter().filter(on_pair).any(|s| s.active);
                        let pending = view.subflows.iter().filter(on_pair).any(|s| s.alive);
                        let idx = self
                            .pairs
                            .iter()
                            .position(|p| p.local == l.addr && p.remote == remote);
                        if working {
                            if let Some(i) = idx {
                                self.pairs[i].attempts = 0;
                            }
                            continue;
                        }
                        if pending {
                            continue;
                        }
                        let due = idx.is_none_or(|i| self.pairs[i].next_try <= now);
                        if !due {
                            let t = self.pairs[idx.unwrap_or(0)].next_try;
                            self.wake = Some(self.wake.map_or(t, |w| w.min(t)));
                            continue;
                        }
                        if alive >= view.max_subflows {
                            continue;
                        }
                        let i = match idx {
                            Some(i) => i,
                            None if self.pairs.len() < MAX_PAIRS => {
                                // One pair per extra subflow, mostly: no room held for more
                                // (a connection of two subflows would hold four pairs).
                                self.pairs.reserve_exact(1);
                                self.pairs.push(Pair {
                                    local: l.addr,
                                    remote,
                                    attempts: 0,
                                    next_try: now,
                                });
                                self.pairs.len() - 1
                            }
                            None => continue,
                        };
                        let p = &mut self.pairs[i];
                        p.attempts += 1;
                        p.next_try = now + Self::backoff(p.attempts);
                        alive += 1;
                        actions.push(PmAction::Connect {
                            local: l.addr,
                            remote,
                            backup: l.flags.backup,
                        });
                    }
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.wake
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1));
    const A2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1));
    const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    const B1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2));
    const B2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2));

    fn local(id: u8, addr: IpAddr) -> LocalAddr {
        LocalAddr {
            id,
            addr,
            flags: AddrFlags::default(),
        }
    }

    fn sub(local: IpAddr, remote: SocketAddr, alive: bool, active: bool) -> PmSubflow {
        PmSubflow {
            local: SocketAddr::new(local, 40000),
            remote,
            alive,
            active,
        }
    }

    fn view<'a>(
        role: Role,
        locals: &'a [LocalAddr],
        remotes: &'a [RemoteAddr],
        subflows: &'a [PmSubflow],
    ) -> PmView<'a> {
        PmView {
            role,
            local_addrs: locals,
            initial_local: SocketAddr::new(A1, 40000),
            initial_remote: SocketAddr::new(B1, 80),
            remote_addrs: remotes,
            subflows,
            max_subflows: 8,
            join_initial: true,
        }
    }

    #[test]
    fn the_client_meshes_every_local_address_with_every_peer_address_of_its_family() {
        let locals = [local(1, A1), local(2, A2), local(3, A6)];
        let remotes = [RemoteAddr {
            id: 5,
            addr: B2,
            port: None,
        }];
        let b1 = SocketAddr::new(B1, 80);
        let subs = [sub(A1, b1, true, true)];
        let mut pm = FullMesh::default();
        let mut out = Vec::new();
        pm.plan(
            Instant::from_millis(0),
            &view(Role::Client, &locals, &remotes, &subs),
            &mut out,
        );
        let b2 = SocketAddr::new(B2, 80);
        let connect = |l, r| PmAction::Connect {
            local: l,
            remote: r,
            backup: false,
        };
        assert_eq!(
            out,
            [connect(A2, b1), connect(A1, b2), connect(A2, b2)],
            "no IPv6 subflow to IPv4 addresses, none for the working initial pair"
        );
    }

    #[test]
    fn a_failed_pair_is_retried_with_backoff_and_afresh_once_it_worked() {
        let locals = [local(0, A1), local(2, A2)];
        let b1 = SocketAddr::new(B1, 80);
        let mut pm = FullMesh::default();
        let mut out = Vec::new();
        let t0 = Instant::from_millis(0);
        let up = [sub(A1, b1, true, true)];
        pm.plan(t0, &view(Role::Client, &locals, &[], &up), &mut out);
        assert_eq!(out.len(), 1);
        // The join failed (closed): not again before the backoff.
        let failed = [sub(A1, b1, true, true), sub(A2, b1, false, false)];
        out.clear();
        pm.plan(t0, &view(Role::Client, &locals, &[], &failed), &mut out);
        assert!(out.is_empty());
        assert_eq!(pm.poll_timeout(), Some(t0 + RETRY_BASE));
        pm.plan(
            t0 + RETRY_BASE,
            &view(Role::Client, &locals, &[], &failed),
            &mut out,
        );
        assert_eq!(out.len(), 1, "retried when due");
        out.clear();
        pm.plan(
            t0 + RETRY_BASE,
            &view(Role::Client, &locals, &[], &failed),
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(
            pm.poll_timeout(),
            Some(t0 + RETRY_BASE + RETRY_BASE * 2),
            "the second wait is twice the first"
        );
        // It worked for a while, then failed again: the wait starts from the base again.
        let working = [sub(A1, b1, true, true), sub(A2, b1, true, true)];
        let t1 = t0 + Duration::from_secs(10);
        pm.plan(t1, &view(Role::Client, &locals, &[], &working), &mut out);
        pm.plan(t1, &view(Role::Client, &locals, &[], &failed), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn no_join_to_the_initial_address_when_the_server_set_the_c_flag() {
        let locals = [local(0, A1), local(2, A2)];
        let remotes = [RemoteAddr {
            id: 5,
            addr: B2,
            port: None,
        }];
        let subs = [sub(A1, SocketAddr::new(B1, 80), true, true)];
        let mut v = view(Role::Client, &locals, &remotes, &subs);
        v.join_initial = false;
        let mut pm = FullMesh::default();
        let mut out = Vec::new();
        pm.plan(Instant::from_millis(0), &v, &mut out);
        assert!(
            out.iter()
                .all(|a| matches!(a, PmAction::Connect { remote, .. } if remote.ip() == B2)),
            "{out:?}"
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn the_server_announces_its_other_signal_addresses_once() {
        let mut no_signal = local(3, B2);
        no_signal.flags.signal = false;
        let locals = [local(1, A1), local(2, A2), no_signal];
        let mut pm = FullMesh::default();
        let mut out = Vec::new();
        let v = view(Role::Server, &locals, &[], &[]);
        pm.plan(Instant::from_millis(0), &v, &mut out);
        assert_eq!(out, [PmAction::Announce { id: 2, addr: A2 }]);
        out.clear();
        pm.plan(Instant::from_millis(5), &v, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn the_subflow_limit_is_kept_and_an_announced_port_is_used() {
        let locals = [local(0, A1), local(2, A2)];
        let remotes = [RemoteAddr {
            id: 5,
            addr: B2,
            port: Some(8080),
        }];
        let initial = [sub(A1, SocketAddr::new(B1, 80), true, true)];
        let mut v = view(Role::Client, &locals, &remotes, &initial);
        v.max_subflows = 2;
        let mut pm = FullMesh::default();
        let mut out = Vec::new();
        pm.plan(Instant::from_millis(0), &v, &mut out);
        assert_eq!(
            out.len(),
            1,
            "one alive plus one new reaches the limit of 2"
        );
        v.max_subflows = 8;
        out.clear();
        pm.plan(Instant::from_millis(0), &v, &mut out);
        assert!(out.contains(&PmAction::Connect {
            local: A1,
            remote: SocketAddr::new(B2, 8080),
            backup: false
        }));
    }
}
