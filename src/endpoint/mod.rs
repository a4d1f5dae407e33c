//! The endpoint: one stack instance that owns connections and listeners and demultiplexes
//! packets to them. Pure: no I/O, no clock, randomness from a seeded generator.
//!
//! Contract:
//! - Packets enter with [`Node::handle_packet`]: anything that is not a valid TCP segment for
//!   one of the endpoint's addresses is dropped and counted ([`EndpointStats`]). A segment for
//!   a known 4-tuple goes to its connection; a SYN to a listening port creates one (up to
//!   `max_connections`); anything else is answered with RST as RFC 9293 section 3.10.7.1 says
//!   (never an RST to an RST), from a bounded queue.
//! - Application calls take a [`ConnectionHandle`]; state changes come out as [`Event`]s from
//!   [`Endpoint::poll_event`].
//! - A connection's slot lives until the application calls [`Endpoint::release`] after it
//!   closed, so unread data and final statistics stay available.
//! - Every connection is an MPTCP connection (a plain TCP one when MPTCP is off or the peer
//!   falls back); MP_JOIN SYNs find theirs by token, and the path manager's actions (joins,
//!   ADD_ADDR, REMOVE_ADDR, MP_PRIO) run here on the endpoint's addresses.
//! - SYN floods (RFC 4987): a listener holds at most `max_half_open` handshakes. Beyond that,
//!   with `syn_cookies` on (the default), SYNs are answered statelessly with a SYN cookie
//!   (see `cookie.rs` for the layout and what a cookie loses) and a valid third ACK builds the
//!   connection, MPTCP included (RFC 8684 section 3.1: the third ACK echoes the server's key,
//!   which is derived from the cookie and checked); with it off, the oldest handshake is
//!   forgotten. MP_JOIN SYNs stay stateful: at most `max_pending_joins` per connection, the
//!   oldest forgotten beyond (a join's third ACK does not repeat the client's nonce, so it
//!   cannot be checked without state).
//! - Accept backlog: a listener's connection counts in its port's backlog from its
//!   [`Event::Accepted`] until the application claims it ([`Endpoint::accept`], or any of
//!   `send`, `recv`, `close`, `abort`, `release` on it). While `accept_backlog` are unclaimed,
//!   SYNs and handshake-completing ACKs to the port are dropped without an answer (Linux's
//!   listen-queue overflow: the client retries), and counted (`listen_overflows`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

mod cookie;
mod tuples;

use crate::crypto::KeyMaterial;
use crate::mptcp::pm::{
    AddrFlags, LocalAddr, PathManager, PathManagerKind, PmAction, PmSubflow, PmView,
};
use crate::mptcp::{MAX_SUBFLOWS, MptcpConfig, MptcpConnection, Scheduler, SchedulerKind};
use crate::node::{Duration, Instant, Node, Transmit};
use crate::seq::TcpSeq;
use crate::tcp::{self, Connection};
use crate::wire::{
    CapableFlags, CapableKeys, CapableRepr, IpSegment, MptcpOptions, MptcpRepr, TcpFlags,
    TcpOptions, TcpSegment, Timestamp,
};
use cookie::{CookieSecret, SynParams};
use tuples::TupleMap;

/// Endpoint configuration.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// TCP settings for every subflow (the MSS is derived from `mtu`).
    pub tcp: tcp::Config,
    /// MPTCP settings.
    pub mptcp: MptcpConfig,
    /// The link MTU: IP packets are at most this long.
    pub mtu: usize,
    /// Seed of the random generator (keys, ISNs, nonces, timestamp offsets, ephemeral ports).
    /// [`EndpointConfig::default`] draws it from the operating system, so keys and sequence
    /// numbers cannot be guessed (RFC 8684 section 5); simulations and tests that must replay
    /// use [`EndpointConfig::seeded`].
    pub seed: u64,
    /// The most connections at once (a SYN beyond it is answered with RST).
    pub max_connections: usize,
    /// The most RSTs waiting to be sent; more are dropped and counted.
    pub max_pending_rsts: usize,
    /// The most subflows alive per connection (the initial one included; at most
    /// [`MAX_SUBFLOWS`]).
    pub max_subflows: usize,
    /// The path manager of each new connection.
    pub path_manager: PathManagerKind,
    /// The most connections a listener holds in the middle of their handshake. A SYN beyond
    /// it is answered with a SYN cookie when `syn_cookies` is on; otherwise it makes the
    /// oldest one forgotten (then a real client gets through only while the flood's SYN rate
    /// times its handshake time stays below this).
    pub max_half_open: usize,
    /// Answer SYNs statelessly with SYN cookies once `max_half_open` handshakes are held
    /// (Linux's `tcp_syncookies=1`). Default on.
    pub syn_cookies: bool,
    /// The most MP_JOIN handshakes a connection holds at once (server side); a join SYN beyond
    /// it makes the oldest pending join forgotten (`joins_evicted`), so a flood of join SYNs
    /// with a valid token cannot keep real joins out.
    pub max_pending_joins: usize,
    /// The most connections per listening port that completed their handshake and that the
    /// application has not claimed yet (the listen backlog; 128 as Rust's `TcpListener`).
    /// Beyond it SYNs get no answer (`listen_overflows`).
    pub accept_backlog: usize,
}

impl Default for EndpointConfig {
    /// Default settings with a seed from the operating system's random source.
    fn default() -> Self {
        Self::seeded(os_seed())
    }
}

/// 64 bits from the operating system's random source (the only place the endpoint's
/// configuration reads the OS; the endpoint itself never does, and no packet reaches this).
///
/// # Panics
///
/// If the operating system cannot provide randomness: keys must not be guessable, so there is
/// no weaker fallback (as `rand::make_rng`).
pub fn os_seed() -> u64 {
    use rand::TryRng;
    rand::rngs::SysRng
        .try_next_u64()
        .expect("the operating system's random source failed")
}

impl EndpointConfig {
    /// Default settings with a fixed seed: deterministic, for simulations, tests and replays.
    /// Never on a real network (keys and sequence numbers would be guessable).
    pub fn seeded(seed: u64) -> Self {
        EndpointConfig {
            tcp: tcp::Config::default(),
            mptcp: MptcpConfig::default(),
            mtu: 1500,
            seed,
            max_connections: 65_536,
            max_pending_rsts: 64,
            max_subflows: 8,
            path_manager: PathManagerKind::FullMesh,
            max_half_open: 1024,
            syn_cookies: true,
            max_pending_joins: 4,
            accept_backlog: 128,
        }
    }
}

/// The most addresses an endpoint owns (address ids 1..=254).
pub const MAX_ADDRESSES: usize = 254;

/// The smallest subflow receive buffer with MPTCP on: two of the largest mappings.
pub const MIN_MPTCP_BUFFER: usize = 2 * 65_536;
/// The IPv4 and TCP headers without options, less than the MTU the MSS is.
const IP_HEADERS_V4: usize = 20 + 20;
/// The IPv6 and TCP headers without options.
const IP_HEADERS_V6: usize = 40 + 20;

/// A connection's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionHandle(pub usize);

/// Something the application should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An active open completed.
    Connected(ConnectionHandle),
    /// A listener accepted a connection (handshake complete).
    Accepted(ConnectionHandle),
    /// Data (or the peer's FIN) is ready to read.
    Readable(ConnectionHandle),
    /// Send buffer space opened.
    Writable(ConnectionHandle),
    /// The connection is closed (cleanly when the error is `None`).
    Closed(ConnectionHandle, Option<tcp::ConnError>),
}

/// Errors of application calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// No such connection.
    #[error("no such connection")]
    UnknownConnection,
    /// The local address is not one of the endpoint's.
    #[error("address not owned by this endpoint")]
    AddressNotAvailable,
    /// The 4-tuple is in use.
    #[error("address in use")]
    AddressInUse,
    /// Connection limit reached.
    #[error("too many connections")]
    TooManyConnections,
    /// Local and remote addresses are of different families.
    #[error("address family mismatch")]
    FamilyMismatch,
    /// The connection cannot send any more (closed or closing).
    #[error("connection not open for sending")]
    NotWritable,
    /// The connection failed.
    #[error("connection failed: {0}")]
    Failed(tcp::ConnError),
    /// Subflow limit reached.
    #[error("too many subflows")]
    TooManySubflows,
    /// The connection does not (or not yet) speak MPTCP with known keys.
    #[error("connection cannot take another subflow (not MPTCP, or keys not yet exchanged)")]
    NotJoinable,
}

/// Endpoint counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Packets that failed to parse (bad checksum, truncated, not IP).
    pub malformed: u64,
    /// Valid packets that are not TCP (ICMP, UDP, IPv6 with extension headers ...).
    pub not_tcp: u64,
    /// TCP segments for an address the endpoint does not own.
    pub not_for_us: u64,
    /// Segments for no connection and no listener.
    pub no_connection: u64,
    /// RSTs sent for segments with no connection.
    pub rsts_sent: u64,
    /// RSTs not sent because the queue was full.
    pub rsts_dropped: u64,
    /// SYNs refused because of the connection limit.
    pub syns_refused: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// MP_JOIN SYNs whose token matched no connection (answered with RST):
    /// `MPJoinNoTokenFound`.
    pub join_no_token: u64,
    /// MP_JOIN SYNs refused by a connection (not joinable, subflow limit).
    pub join_refused: u64,
    /// Subflows a path manager asked for that could not be opened (limits, ports).
    pub pm_connect_failed: u64,
    /// Half-open connections forgotten to make room for a new SYN (`max_half_open`, with
    /// `syn_cookies` off).
    pub syns_evicted: u64,
    /// SYN/ACKs sent with a SYN cookie (the half-open table was full): `SyncookiesSent`.
    pub syncookies_sent: u64,
    /// ACKs with a valid SYN cookie: `SyncookiesRecv`.
    pub syncookies_recv: u64,
    /// ACKs for no connection on a listening port, while cookies were in use, whose cookie did
    /// not verify (answered with RST as any such ACK): `SyncookiesFailed`.
    pub syncookies_failed: u64,
    /// Cookie SYN/ACKs not sent because their queue was full (the SYN is dropped; the client
    /// sends it again).
    pub syncookies_dropped: u64,
    /// Cookie SYNs answered without MP_CAPABLE because the key derived for them has the token
    /// of a live connection (a cookie cannot draw another): `MPTcpExtTokenFallbackInit`.
    pub token_fallback_init: u64,
    /// Valid cookie ACKs whose MP_CAPABLE did not echo the key derived for the cookie
    /// (refused with RST, nothing created).
    pub cookie_key_mismatch: u64,
    /// Valid cookie ACKs whose key's token a live connection took in the meantime (refused
    /// with RST, nothing created).
    pub cookie_token_in_use: u64,
    /// Pending MP_JOIN handshakes forgotten to make room for a newer join SYN
    /// (`max_pending_joins`).
    pub joins_evicted: u64,
    /// SYNs and handshake-completing ACKs dropped because the listener's accept backlog was
    /// full: `ListenOverflows`.
    pub listen_overflows: u64,
}

/// The most cookie SYN/ACKs waiting to be sent.
const MAX_PENDING_COOKIES: usize = 256;

/// A cookie SYN/ACK waiting to be sent: the SYN as the cookie will remember it, and what the
/// cookie derived. Nothing of it outlives the transmission.
#[derive(Debug)]
struct PendingCookie {
    local: SocketAddr,
    remote: SocketAddr,
    syn: TcpSegment<'static>,
    isn: TcpSeq,
    /// The timestamp offset that puts the option bits in the SYN/ACK's TSval at `at`.
    ts_offset: u32,
    key: u64,
    at: Instant,
}

#[derive(Debug)]
struct Slot {
    conn: MptcpConnection,
    pm: Box<dyn PathManager>,
    /// The path manager should look at this connection (addresses or subflows changed).
    pm_dirty: bool,
    /// The connection was fully established when the path manager last ran.
    pm_started: bool,
    listener: bool,
    announced_open: bool,
    announced_closed: bool,
    readable_announced: bool,
    writable_wanted: bool,
    released: bool,
    /// Announced as accepted and not yet claimed by the application: counts in its port's
    /// accept backlog.
    in_backlog: bool,
    /// The deadline this slot has in the endpoint's timer heap (entries for other instants
    /// are stale and skipped).
    timer: Option<Instant>,
    /// Changed since its deadline was last computed: in `Endpoint::stale`.
    stale: bool,
    /// In `Endpoint::ready`: offered the next transmit opportunity.
    queued: bool,
}

/// A stack instance: connections, listeners, addresses.
#[derive(Debug)]
pub struct Endpoint {
    cfg: EndpointConfig,
    /// The TCP configuration of IPv4 and of IPv6 subflows, shared by all of them (it differs
    /// only in the MSS).
    tcp_cfg: [Arc<tcp::Config>; 2],
    rng: StdRng,
    addrs: Vec<IpAddr>,
    /// The same addresses with their ids and flags, in the same order.
    local_addrs: Vec<LocalAddr>,
    next_addr_id: u8,
    pm_actions: Vec<PmAction>,
    listeners: Vec<u16>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// 4-tuple (local, remote) -> (slot, subflow).
    by_tuple: TupleMap,
    /// Local tokens of live connections (RFC 8684 section 3.1: a key whose token is in use is
    /// drawn again).
    tokens: HashMap<u32, usize>,
    live: usize,
    /// Listener connections in their handshake, oldest first (slot indices; stale entries
    /// are dropped when looked at).
    half_open: VecDeque<usize>,
    syns_since_compaction: usize,
    /// The SYN-cookie secret, drawn from `rng` when the first cookie is made.
    cookie_secret: Option<CookieSecret>,
    /// When the last cookie was sent: ACKs are checked for cookies only within a cookie's
    /// lifetime of it.
    cookies_sent_at: Option<Instant>,
    cookie_synacks: VecDeque<PendingCookie>,
    /// Per listening port: connections in the accept backlog.
    backlog: HashMap<u16, usize>,
    events: VecDeque<Event>,
    rsts: VecDeque<IpSegment<'static>>,
    /// Every slot's next deadline, earliest first: `(deadline, slot)`, stale entries
    /// (the slot's `timer` moved) skipped when they come up and purged when they pile up.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Slots changed since their deadline was computed (see [`Endpoint::touch`]).
    stale: Vec<usize>,
    /// Slots that may have a packet to send, in the order they were touched: a connection
    /// that sent goes to the back (round-robin), one with nothing to send leaves until it is
    /// touched again. Nothing else can give a connection something to send.
    ready: VecDeque<usize>,
    /// Scratch for the slots whose deadline came.
    due: Vec<usize>,
    stats: EndpointStats,
}

impl Endpoint {
    /// A new endpoint with no address.
    pub fn new(cfg: EndpointConfig) -> Self {
        let rng = StdRng::seed_from_u64(cfg.seed);
        let tcp_cfg =
            [IP_HEADERS_V4, IP_HEADERS_V6].map(|h| Arc::new(Self::tcp_config_for(&cfg, h)));
        Endpoint {
            cfg,
            tcp_cfg,
            rng,
            addrs: Vec::new(),
            local_addrs: Vec::new(),
            next_addr_id: 1,
            pm_actions: Vec::new(),
            listeners: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            by_tuple: TupleMap::default(),
            tokens: HashMap::new(),
            live: 0,
            half_open: VecDeque::new(),
            syns_since_compaction: 0,
            cookie_secret: None,
            cookies_sent_at: None,
            cookie_synacks: VecDeque::new(),
            backlog: HashMap::new(),
            events: VecDeque::new(),
            rsts: VecDeque::new(),
            timers: BinaryHeap::new(),
            stale: Vec::new(),
            ready: VecDeque::new(),
            due: Vec::new(),
            stats: EndpointStats::default(),
        }
    }

    /// Own an address: packets to it are for this endpoint. With MPTCP, the path managers of
    /// live connections may use it at once (new subflows from it, or an ADD_ADDR).
    pub fn add_address(&mut self, addr: IpAddr) {
        self.add_address_with(addr, AddrFlags::default());
    }

    /// [`Endpoint::add_address`] with explicit flags (announce it, open subflows from it, use
    /// it as a backup). Flags of an address already owned are replaced. At most
    /// [`MAX_ADDRESSES`]; more are ignored.
    pub fn add_address_with(&mut self, addr: IpAddr, flags: AddrFlags) {
        if let Some(l) = self.local_addrs.iter_mut().find(|l| l.addr == addr) {
            l.flags = flags;
        } else if self.local_addrs.len() >= MAX_ADDRESSES {
            // RFC 8684 address ids are one byte: at most 254 addresses (ignored beyond).
            return;
        } else {
            // Address ids are not reused soon: a peer that still knows an old id must not
            // confuse it with a new address (RFC 8684 section 3.4.1).
            // Ids 1..=254 (0 is the initial subflow's address, 255 means "unknown"), skipping
            // ids still owned, so an id is reused only after 254 others.
            let mut id = self.next_addr_id;
            while self.local_addrs.iter().any(|l| l.id == id) {
                id = if id >= 254 { 1 } else { id + 1 };
            }
            self.next_addr_id = if id >= 254 { 1 } else { id + 1 };
            self.addrs.push(addr);
            self.local_addrs.push(LocalAddr { id, addr, flags });
        }
        self.mark_all_pm_dirty();
    }

    /// Give up an address (its link went down, or the application no longer wants it): every
    /// connection resets its subflows from it, hands their data to the other subflows at once,
    /// and tells the peer with REMOVE_ADDR. Packets to it are no longer ours.
    pub fn remove_address(&mut self, addr: IpAddr) {
        let Some(pos) = self.addrs.iter().position(|a| *a == addr) else {
            return;
        };
        for idx in 0..self.slots.len() {
            let id = self.addr_id(idx, addr);
            if let Some(slot) = self.slot_at(idx) {
                let uses = slot
                    .conn
                    .subflows()
                    .iter()
                    .any(|s| !s.is_retired() && s.tcp().local().ip() == addr)
                    || slot.conn.announcements().iter().any(|a| a.addr == addr);
                if uses {
                    slot.conn.withdraw(id);
                    slot.pm_dirty = true;
                }
                // A plain-TCP (or fallen-back) connection from it has no other path: it is
                // reset, rather than left waiting for answers that can no longer arrive.
                if slot.conn.mode() != crate::mptcp::Mode::Mptcp
                    && slot.conn.primary().local().ip() == addr
                    && !slot.conn.is_closed()
                {
                    slot.conn.abort();
                }
            }
        }
        self.addrs.remove(pos);
        self.local_addrs.remove(pos);
        self.mark_all_pm_dirty();
        // Connections reset here with nothing to send would otherwise never say so.
        for idx in 0..self.slots.len() {
            self.update_events(idx);
        }
    }

    /// Mark subflows from `addr` as backups, or not, in every connection (MP_PRIO to the
    /// peer), and open future ones as such.
    pub fn set_address_backup(&mut self, addr: IpAddr, backup: bool) {
        let Some(l) = self.local_addrs.iter_mut().find(|l| l.addr == addr) else {
            return;
        };
        l.flags.backup = backup;
        for idx in 0..self.slots.len() {
            let Some(slot) = self.slot_at(idx) else {
                continue;
            };
            let subs: Vec<usize> = (0..slot.conn.subflows().len())
                .filter(|&i| slot.conn.subflows()[i].tcp().local().ip() == addr)
                .collect();
            for i in subs {
                slot.conn.set_backup(i, backup);
            }
        }
    }

    /// The addresses with their ids and flags.
    pub fn local_addresses(&self) -> &[LocalAddr] {
        &self.local_addrs
    }

    fn mark_all_pm_dirty(&mut self) {
        for idx in 0..self.slots.len() {
            if let Some(slot) = self.slot_at(idx) {
                slot.pm_dirty = true;
            }
        }
    }

    /// The addresses owned.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addrs
    }

    /// Accept connections to `port` on every owned address.
    pub fn listen(&mut self, port: u16) {
        if !self.listeners.contains(&port) {
            self.listeners.push(port);
        }
    }

    /// Stop accepting new connections to `port` (connections already made are kept); a SYN to
    /// it is answered with RST from now on.
    pub fn unlisten(&mut self, port: u16) {
        self.listeners.retain(|&p| p != port);
    }

    /// Counters.
    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The initial subflow's TCP connection behind a handle, for state and statistics.
    pub fn connection(&self, h: ConnectionHandle) -> Option<&Connection> {
        self.slots.get(h.0)?.as_ref().map(|s| s.conn.primary())
    }

    /// The MPTCP connection behind a handle.
    pub fn mptcp(&self, h: ConnectionHandle) -> Option<&MptcpConnection> {
        self.slots.get(h.0)?.as_ref().map(|s| &s.conn)
    }

    /// Room in the connection's send buffer.
    pub fn send_capacity(&self, h: ConnectionHandle) -> usize {
        self.mptcp(h).map_or(0, |c| c.send_capacity())
    }

    /// Whether our direction is closed and acknowledged.
    pub fn send_finished(&self, h: ConnectionHandle) -> bool {
        self.mptcp(h).is_some_and(|c| c.send_finished())
    }

    /// `local` as given, or with an unused ephemeral port when its port is 0; an error when
    /// the 4-tuple is taken (or no free port turned up in 64 draws).
    fn bind_local(
        &mut self,
        mut local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<SocketAddr, EndpointError> {
        if local.port() != 0 {
            return if self.by_tuple.contains_key(&(local, remote)) {
                Err(EndpointError::AddressInUse)
            } else {
                Ok(local)
            };
        }
        for _ in 0..64 {
            local.set_port(self.rng.random_range(32768..=60999u16));
            if !self.by_tuple.contains_key(&(local, remote)) {
                return Ok(local);
            }
        }
        Err(EndpointError::AddressInUse)
    }

    /// Forget the 4-tuples of slot `idx`'s subflows, so they may be reused.
    fn forget_tuples(&mut self, idx: usize) {
        let Some(Some(slot)) = self.slots.get(idx) else {
            return;
        };
        for i in 0..slot.conn.subflows().len() {
            if let Some(key) = slot.conn.subflow_addrs(i)
                && self.by_tuple.get(&key).is_some_and(|(s, _)| s == idx)
            {
                self.by_tuple.remove(&key);
            }
        }
    }

    /// A fresh key whose token no live connection uses.
    fn new_key(&mut self) -> u64 {
        loop {
            let key: u64 = self.rng.random();
            if !self.tokens.contains_key(&KeyMaterial::from_key(key).token) {
                return key;
            }
        }
    }

    /// Handles of every connection slot in use.
    pub fn handles(&self) -> impl Iterator<Item = ConnectionHandle> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| ConnectionHandle(i))
    }

    /// The TCP configuration of a subflow from `family`.
    fn tcp_config(&self, family: IpAddr) -> Arc<tcp::Config> {
        Arc::clone(&self.tcp_cfg[usize::from(family.is_ipv6())])
    }

    /// The TCP configuration of subflows whose IP and TCP headers take `headers` bytes.
    fn tcp_config_for(cfg: &EndpointConfig, headers: usize) -> tcp::Config {
        let mut tcp = cfg.tcp;
        tcp.mss = u16::try_from(cfg.mtu.saturating_sub(headers).max(88)).unwrap_or(u16::MAX);
        if cfg.mptcp.enabled {
            // A checksummed mapping (up to 64 KiB) is verified whole before delivery, so a
            // subflow must be able to hold one: smaller buffers would stall forever.
            tcp.rx_buffer = tcp.rx_buffer.max(MIN_MPTCP_BUFFER);
        }
        tcp
    }

    fn insert(&mut self, slot: Slot) -> usize {
        let key = (slot.conn.primary().local(), slot.conn.primary().remote());
        let token = slot.conn.local_key().token;
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.by_tuple.insert(key, (idx, 0));
        self.tokens.insert(token, idx);
        self.live += 1;
        self.touch(idx);
        idx
    }

    /// Slot `idx` may have changed: its deadline is computed again and it is offered the next
    /// transmit opportunity. Every path that changes a connection goes through here (or
    /// [`Endpoint::slot_at`]), which is what keeps timers and transmits O(1) per packet
    /// instead of a scan of every connection.
    fn touch(&mut self, idx: usize) {
        self.mark_stale(idx);
        self.enqueue(idx);
    }

    /// Slot `idx`'s deadline is to be computed again.
    fn mark_stale(&mut self, idx: usize) {
        if let Some(Some(slot)) = self.slots.get_mut(idx)
            && !std::mem::replace(&mut slot.stale, true)
        {
            self.stale.push(idx);
        }
    }

    /// Slot `idx` is offered a transmit opportunity (at the back of the queue).
    fn enqueue(&mut self, idx: usize) {
        if let Some(Some(slot)) = self.slots.get_mut(idx)
            && !std::mem::replace(&mut slot.queued, true)
        {
            self.ready.push_back(idx);
        }
    }

    /// Slot `idx`, to be changed (so touched).
    fn slot_at(&mut self, idx: usize) -> Option<&mut Slot> {
        self.touch(idx);
        self.slots.get_mut(idx)?.as_mut()
    }

    /// Put the deadlines of the touched slots in the heap, and drop stale entries from its
    /// top so that [`Node::poll_timeout`] reads a live one.
    fn refresh_timers(&mut self) {
        let mut stale = std::mem::take(&mut self.stale);
        for idx in stale.drain(..) {
            let Some(Some(slot)) = self.slots.get_mut(idx) else {
                continue;
            };
            if !std::mem::take(&mut slot.stale) {
                continue;
            }
            let next = slot.deadline();
            if next != slot.timer {
                slot.timer = next;
                if let Some(t) = next {
                    self.timers.push(Reverse((t, idx)));
                }
            }
        }
        self.stale = stale;
        while let Some(&Reverse((t, idx))) = self.timers.peek() {
            if self.timer_is_live(t, idx) {
                break;
            }
            self.timers.pop();
        }
        // A deadline that keeps moving leaves an entry behind each time: rebuild the heap
        // from the slots once stale entries outnumber live ones (amortised O(1) per push).
        if self.timers.len() > 2 * self.live + 64 {
            self.timers = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| Some(Reverse((s.as_ref()?.timer?, i))))
                .collect();
        }
    }

    fn timer_is_live(&self, t: Instant, idx: usize) -> bool {
        self.slots
            .get(idx)
            .and_then(|s| s.as_ref())
            .is_some_and(|s| s.timer == Some(t))
    }

    /// Open a connection from `local` (port 0: an ephemeral port) to `remote`.
    pub fn connect(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<ConnectionHandle, EndpointError> {
        if !self.addrs.contains(&local.ip()) {
            return Err(EndpointError::AddressNotAvailable);
        }
        if local.is_ipv4() != remote.is_ipv4() {
            return Err(EndpointError::FamilyMismatch);
        }
        if self.live >= self.cfg.max_connections {
            return Err(EndpointError::TooManyConnections);
        }
        let local = self.bind_local(local, remote)?;
        let cfg = self.tcp_config(local.ip());
        let iss = TcpSeq(self.rng.random());
        let ts = self.rng.random();
        let tcp = Connection::connect(cfg, local, remote, iss, ts);
        let key = self.new_key();
        let conn = MptcpConnection::connect(&self.cfg.mptcp, key, tcp);
        let idx = self.insert(Slot::new(conn, self.cfg.path_manager.build(), false));
        Ok(ConnectionHandle(idx))
    }

    /// The address id of a local address in connection `idx`: 0 for the initial subflow's,
    /// otherwise its position among the endpoint's addresses plus one (RFC 8684 section 3.4.1).
    fn addr_id(&self, idx: usize, ip: IpAddr) -> u8 {
        let initial = self
            .slots
            .get(idx)
            .and_then(|s| s.as_ref())
            .map(|s| s.conn.primary().local().ip());
        if initial == Some(ip) {
            return 0;
        }
        self.local_addrs
            .iter()
            .find(|l| l.addr == ip)
            .map_or(255, |l| l.id)
    }

    /// Open one more subflow of an MPTCP connection from `local` (port 0: ephemeral) to
    /// `remote` with MP_JOIN; `backup` asks the peer to use it only when others fail.
    pub fn add_subflow(
        &mut self,
        h: ConnectionHandle,
        local: SocketAddr,
        remote: SocketAddr,
        backup: bool,
    ) -> Result<usize, EndpointError> {
        if !self.addrs.contains(&local.ip()) {
            return Err(EndpointError::AddressNotAvailable);
        }
        if local.is_ipv4() != remote.is_ipv4() {
            return Err(EndpointError::FamilyMismatch);
        }
        if !self.subflow_room(h.0)? {
            return Err(EndpointError::TooManySubflows);
        }
        let local = self.bind_local(local, remote)?;
        let cfg = self.tcp_config(local.ip());
        let iss = TcpSeq(self.rng.random());
        let ts = self.rng.random();
        let nonce = self.rng.random();
        let local_id = self.addr_id(h.0, local.ip());
        let tcp = Connection::connect(cfg, local, remote, iss, ts);
        self.forget_reused_tuple(h.0);
        let slot = self.slot_mut(h)?;
        let i = slot
            .conn
            .add_subflow(tcp, local_id, nonce, backup)
            .ok_or(EndpointError::NotJoinable)?;
        self.by_tuple.insert((local, remote), (h.0, i));
        Ok(i)
    }

    /// Whether connection `idx` may have one more subflow: fewer alive than the limit, and a
    /// free or reusable slot.
    fn subflow_room(&self, idx: usize) -> Result<bool, EndpointError> {
        let conn = &self
            .slots
            .get(idx)
            .and_then(|s| s.as_ref())
            .ok_or(EndpointError::UnknownConnection)?
            .conn;
        let limit = self.cfg.max_subflows.min(MAX_SUBFLOWS);
        let slots_left = conn.subflows().len() < MAX_SUBFLOWS || conn.reusable_slot().is_some();
        Ok(conn.live_subflows() < limit && slots_left)
    }

    /// The slot a new subflow of connection `idx` will take may hold a retired subflow: its
    /// 4-tuple no longer leads there.
    fn forget_reused_tuple(&mut self, idx: usize) {
        let Some(Some(slot)) = self.slots.get(idx) else {
            return;
        };
        if let Some(i) = slot.conn.reusable_slot()
            && let Some(key) = slot.conn.subflow_addrs(i)
            && self.by_tuple.get(&key) == Some((idx, i))
        {
            self.by_tuple.remove(&key);
        }
    }

    /// Choose the scheduler of a connection.
    pub fn set_scheduler(
        &mut self,
        h: ConnectionHandle,
        scheduler: SchedulerKind,
    ) -> Result<(), EndpointError> {
        self.set_custom_scheduler(h, scheduler.build())
    }

    /// Use the application's own scheduler for a connection.
    pub fn set_custom_scheduler(
        &mut self,
        h: ConnectionHandle,
        scheduler: Box<dyn Scheduler>,
    ) -> Result<(), EndpointError> {
        self.slot_mut(h)?.conn.set_scheduler(scheduler);
        Ok(())
    }

    /// Use the application's own path manager for a connection.
    pub fn set_path_manager(
        &mut self,
        h: ConnectionHandle,
        pm: Box<dyn PathManager>,
    ) -> Result<(), EndpointError> {
        let slot = self.slot_mut(h)?;
        slot.pm = pm;
        slot.pm_dirty = true;
        Ok(())
    }

    /// Announce one of the endpoint's addresses to the peer of a connection (ADD_ADDR).
    pub fn announce(&mut self, h: ConnectionHandle, addr: IpAddr) -> Result<(), EndpointError> {
        self.announce_with_port(h, addr, None)
    }

    /// [`Endpoint::announce`] with a port, for a peer that should join to another port than
    /// the connection's.
    pub fn announce_with_port(
        &mut self,
        h: ConnectionHandle,
        addr: IpAddr,
        port: Option<u16>,
    ) -> Result<(), EndpointError> {
        if !self.addrs.contains(&addr) {
            return Err(EndpointError::AddressNotAvailable);
        }
        let id = self.addr_id(h.0, addr);
        if self.slot_mut(h)?.conn.announce(id, addr, port) {
            Ok(())
        } else {
            Err(EndpointError::NotJoinable)
        }
    }

    /// Ask the peer to use subflow `i` of a connection only as a backup, or not (MP_PRIO).
    pub fn set_backup(
        &mut self,
        h: ConnectionHandle,
        i: usize,
        backup: bool,
    ) -> Result<(), EndpointError> {
        self.slot_mut(h)?.conn.set_backup(i, backup);
        Ok(())
    }

    /// Run the path manager of connection `idx` if it has something to look at.
    fn run_path_manager(&mut self, idx: usize, now: Instant) {
        self.touch(idx);
        let Some(Some(slot)) = self.slots.get_mut(idx) else {
            return;
        };
        let ready = slot.conn.is_fully_established();
        let changed = slot.conn.take_path_changes();
        let due = slot.pm.poll_timeout().is_some_and(|t| t <= now);
        let started = ready && !slot.pm_started;
        if !ready || slot.released || slot.conn.is_closed() {
            return;
        }
        if !(started || changed || due || slot.pm_dirty) {
            return;
        }
        slot.pm_started = true;
        slot.pm_dirty = false;
        let mut subs = [PmSubflow {
            local: slot.conn.primary().local(),
            remote: slot.conn.primary().remote(),
            alive: false,
            active: false,
        }; MAX_SUBFLOWS];
        let n = slot.conn.subflows().len().min(MAX_SUBFLOWS);
        for (k, s) in slot.conn.subflows().iter().take(n).enumerate() {
            subs[k] = PmSubflow {
                local: s.tcp().local(),
                remote: s.tcp().remote(),
                alive: s.tcp().state() != tcp::State::Closed,
                active: s.is_active(),
            };
        }
        let view = PmView {
            role: slot.conn.role(),
            local_addrs: &self.local_addrs,
            initial_local: slot.conn.primary().local(),
            initial_remote: slot.conn.primary().remote(),
            remote_addrs: slot.conn.remote_addresses(),
            subflows: &subs[..n],
            max_subflows: self.cfg.max_subflows.min(MAX_SUBFLOWS),
            join_initial: slot.conn.peer_accepts_initial_joins(),
        };
        let mut actions = std::mem::take(&mut self.pm_actions);
        actions.clear();
        slot.pm.plan(now, &view, &mut actions);
        let h = ConnectionHandle(idx);
        for a in actions.drain(..) {
            match a {
                PmAction::Connect {
                    local,
                    remote,
                    backup,
                } => {
                    if self
                        .add_subflow(h, SocketAddr::new(local, 0), remote, backup)
                        .is_err()
                    {
                        self.stats.pm_connect_failed += 1;
                    }
                }
                PmAction::Announce { addr, .. } => {
                    let _ = self.announce(h, addr);
                }
            }
        }
        self.pm_actions = actions;
    }

    fn slot_mut(&mut self, h: ConnectionHandle) -> Result<&mut Slot, EndpointError> {
        self.slot_at(h.0).ok_or(EndpointError::UnknownConnection)
    }

    /// Take an accepted connection off its listener's accept backlog: the application has it
    /// now (see `accept_backlog`). Calling `send`, `recv`, `close`, `abort` or `release` on it
    /// does the same; calling it again does nothing.
    pub fn accept(&mut self, h: ConnectionHandle) -> Result<(), EndpointError> {
        self.slot_mut(h)?;
        self.leave_backlog(h.0);
        Ok(())
    }

    /// Connections of `port` in the accept backlog.
    pub fn backlog(&self, port: u16) -> usize {
        self.backlog.get(&port).copied().unwrap_or(0)
    }

    fn backlog_full(&self, port: u16) -> bool {
        self.backlog(port) >= self.cfg.accept_backlog
    }

    fn leave_backlog(&mut self, idx: usize) {
        let Some(Some(slot)) = self.slots.get_mut(idx) else {
            return;
        };
        if !std::mem::take(&mut slot.in_backlog) {
            return;
        }
        let port = slot.conn.primary().local().port();
        if let Some(n) = self.backlog.get_mut(&port) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.backlog.remove(&port);
            }
        }
    }

    /// Queue data; returns how much was taken (0 when the buffer is full).
    pub fn send(&mut self, h: ConnectionHandle, data: &[u8]) -> Result<usize, EndpointError> {
        self.leave_backlog(h.0);
        let slot = self.slot_mut(h)?;
        if let Some(e) = slot.conn.error() {
            return Err(EndpointError::Failed(e));
        }
        if !slot.conn.can_send() {
            return Err(EndpointError::NotWritable);
        }
        let n = slot.conn.send(data);
        if n < data.len() {
            slot.writable_wanted = true;
        }
        Ok(n)
    }

    /// Read data; `Ok(0)` with a non-empty buffer means the peer finished (or nothing yet:
    /// check [`Endpoint::recv_finished`]).
    pub fn recv(&mut self, h: ConnectionHandle, buf: &mut [u8]) -> Result<usize, EndpointError> {
        self.leave_backlog(h.0);
        let slot = self.slot_mut(h)?;
        let n = slot.conn.recv(buf);
        if slot.conn.recv_available() == 0 {
            slot.readable_announced = false;
        }
        if n == 0
            && let Some(e) = slot.conn.error()
        {
            return Err(EndpointError::Failed(e));
        }
        Ok(n)
    }

    /// Whether the peer closed its direction and every byte was read.
    pub fn recv_finished(&self, h: ConnectionHandle) -> bool {
        self.mptcp(h).is_some_and(|c| c.recv_finished())
    }

    /// Close our direction (FIN after the queued data).
    pub fn close(&mut self, h: ConnectionHandle) -> Result<(), EndpointError> {
        self.leave_backlog(h.0);
        self.slot_mut(h)?.conn.close();
        // A connection closed before its handshake may be gone already: say so now.
        self.update_events(h.0);
        Ok(())
    }

    /// Reset the connection.
    pub fn abort(&mut self, h: ConnectionHandle) -> Result<(), EndpointError> {
        self.leave_backlog(h.0);
        self.slot_mut(h)?.conn.abort();
        self.update_events(h.0);
        Ok(())
    }

    /// Forget a connection. One not yet closed is aborted first; its slot goes once the RST
    /// is out.
    pub fn release(&mut self, h: ConnectionHandle) {
        self.leave_backlog(h.0);
        let Some(slot) = self.slot_at(h.0) else {
            return;
        };
        slot.released = true;
        if !slot.conn.is_closed() {
            slot.conn.abort();
        }
        self.reap(h.0);
    }

    /// Forget a half-open connection at once: no RST, no event (the application never saw it).
    fn evict(&mut self, idx: usize) {
        let Some(Some(slot)) = self.slots.get(idx) else {
            return;
        };
        let token = slot.conn.local_key().token;
        self.leave_backlog(idx);
        self.forget_tuples(idx);
        if self.tokens.get(&token) == Some(&idx) {
            self.tokens.remove(&token);
        }
        self.slots[idx] = None;
        self.free.push(idx);
        self.live -= 1;
    }

    /// Free the slot of a released connection that is closed.
    fn reap(&mut self, idx: usize) {
        let Some(Some(slot)) = self.slots.get(idx) else {
            return;
        };
        if !(slot.released && slot.conn.is_closed()) {
            return;
        }
        let token = slot.conn.local_key().token;
        self.leave_backlog(idx);
        self.forget_tuples(idx);
        if self.tokens.get(&token) == Some(&idx) {
            self.tokens.remove(&token);
        }
        self.slots[idx] = None;
        self.free.push(idx);
        self.live -= 1;
    }

    /// After any input: turn connection state changes into events.
    fn update_events(&mut self, idx: usize) {
        let Some(Some(slot)) = self.slots.get_mut(idx) else {
            return;
        };
        if slot.released {
            self.reap(idx);
            return;
        }
        let h = ConnectionHandle(idx);
        if !slot.announced_open && slot.conn.is_established() {
            slot.announced_open = true;
            if slot.listener {
                slot.in_backlog = true;
                *self
                    .backlog
                    .entry(slot.conn.primary().local().port())
                    .or_default() += 1;
                self.events.push_back(Event::Accepted(h));
            } else {
                self.events.push_back(Event::Connected(h));
            }
        }
        if !slot.readable_announced && (slot.conn.recv_available() > 0 || slot.conn.recv_finished())
        {
            slot.readable_announced = true;
            self.events.push_back(Event::Readable(h));
        }
        if slot.writable_wanted && slot.conn.send_capacity() > 0 {
            slot.writable_wanted = false;
            self.events.push_back(Event::Writable(h));
        }
        if !slot.announced_closed && slot.conn.is_closed() {
            slot.announced_closed = true;
            // A listener's connection that never completed its handshake is not the app's.
            if slot.listener && !slot.announced_open {
                slot.released = true;
                self.reap(idx);
                return;
            }
            self.events.push_back(Event::Closed(h, slot.conn.error()));
            // The 4-tuples may be reused from now on, and no join may enter the connection;
            // the slot stays until released.
            let token = slot.conn.local_key().token;
            if self.tokens.get(&token) == Some(&idx) {
                self.tokens.remove(&token);
            }
            self.forget_tuples(idx);
        }
    }

    fn queue_rst_for(&mut self, src: IpAddr, dst: IpAddr, seg: &TcpSegment<'_>) {
        // RFC 9293 section 3.10.7.1: never answer an RST.
        if seg.flags.rst() {
            return;
        }
        if self.rsts.len() >= self.cfg.max_pending_rsts {
            self.stats.rsts_dropped += 1;
            return;
        }
        let (seq, ack, flags) = if seg.flags.ack() {
            (seg.ack, TcpSeq(0), TcpFlags::RST)
        } else {
            (
                TcpSeq(0),
                seg.seq + seg.seq_len() as u32,
                TcpFlags::RST | TcpFlags::ACK,
            )
        };
        self.rsts.push_back(IpSegment {
            src: dst,
            dst: src,
            hop_limit: self.cfg.tcp.hop_limit,
            tcp: TcpSegment {
                src_port: seg.dst_port,
                dst_port: seg.src_port,
                seq,
                ack,
                flags: TcpFlags(flags),
                window: 0,
                urgent: 0,
                options: TcpOptions::default(),
                payload: &[],
            },
        });
    }
}

/// The MP_CAPABLE a v1 SYN carries, if this one does (version 1, no key, the H flag).
fn v1_capable_syn(seg: &TcpSegment<'_>) -> Option<CapableFlags> {
    seg.options.mptcp.iter().find_map(|o| match o {
        MptcpRepr::Capable(CapableRepr {
            version: 1,
            flags,
            keys: CapableKeys::None,
        }) if flags.hmac_sha256() => Some(*flags),
        _ => None,
    })
}

impl Endpoint {
    /// Answer a SYN with a SYN cookie: nothing is kept but the SYN/ACK in its (bounded) queue.
    fn queue_cookie(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpSegment<'_>,
    ) {
        if self.cookie_synacks.len() >= MAX_PENDING_COOKIES {
            self.stats.syncookies_dropped += 1;
            return;
        }
        let rng = &mut self.rng;
        let secret = self
            .cookie_secret
            .get_or_insert_with(|| CookieSecret::new(rng.random()));
        let counter = cookie::counter_at(now);
        let capable = v1_capable_syn(seg).filter(|_| self.cfg.mptcp.enabled);
        let mut params = SynParams {
            mss_index: cookie::mss_index(seg.options.mss),
            mptcp: capable.is_some(),
            checksum: capable.is_some_and(|f| f.checksum()),
        };
        let (mut isn, mut derived) = secret.make(local, remote, seg.seq, counter, params);
        if params.mptcp
            && self
                .tokens
                .contains_key(&KeyMaterial::from_key(derived.key).token)
        {
            // RFC 8684 section 3.1 wants a key whose token is unused; a cookie's key is fixed
            // by the cookie, so this SYN gets plain TCP (Linux: TokenFallbackInit).
            self.stats.token_fallback_init += 1;
            params.mptcp = false;
            params.checksum = false;
            (isn, derived) = secret.make(local, remote, seg.seq, counter, params);
        }
        // The SYN as the cookie remembers it: window scale and SACK only with timestamps,
        // which carry them (see cookie.rs).
        let ts = seg.options.timestamp.filter(|_| self.cfg.tcp.timestamps);
        let syn = cookie_syn(
            local,
            remote,
            seg.seq,
            seg.window,
            params,
            ts.map(|t| {
                (
                    t.tsval,
                    seg.options.window_scale,
                    seg.options.sack_permitted,
                )
            }),
        );
        let bits = cookie::ts_bits(syn.options.window_scale, syn.options.sack_permitted);
        let now_ms = now.total_millis() as u32;
        self.cookie_synacks.push_back(PendingCookie {
            local,
            remote,
            syn,
            isn,
            ts_offset: cookie::synack_ts_offset(derived.ts_offset, now_ms, bits),
            key: derived.key,
            at: now,
        });
        self.stats.syncookies_sent += 1;
        self.cookies_sent_at = Some(now);
    }

    /// An ACK for no connection on a listening port: if it carries a valid SYN cookie, build
    /// the connection it completes and give it the segment. Returns whether the segment was
    /// dealt with (the connection made, or refused with RST, or dropped for the backlog);
    /// `false` (not a cookie) leaves it to the caller's RST.
    fn accept_cookie(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        ip: &IpSegment<'_>,
    ) -> bool {
        let seg = &ip.tcp;
        let client_isn = seg.seq - 1u32;
        let isn = seg.ack - 1u32;
        let checked = self
            .cookie_secret
            .as_ref()
            .and_then(|s| s.check(local, remote, client_isn, isn, cookie::counter_at(now)));
        let Some((params, derived)) = checked else {
            self.stats.syncookies_failed += 1;
            return false;
        };
        self.stats.syncookies_recv += 1;
        if self.backlog_full(local.port()) {
            // As for a SYN: no answer while the application is behind; the client sends the
            // ACK (or its data) again and the cookie is still good for a while.
            self.stats.listen_overflows += 1;
            return true;
        }
        if self.live >= self.cfg.max_connections {
            self.stats.syns_refused += 1;
            self.queue_rst_for(ip.src, ip.dst, seg);
            return true;
        }
        let capable = seg.options.mptcp.iter().find_map(|o| match o {
            MptcpRepr::Capable(c) => Some(*c),
            _ => None,
        });
        if params.mptcp
            && let Some(c) = capable
        {
            // RFC 8684 section 3.1: the third ACK carries the server's key from the SYN/ACK.
            // Ours was derived from the cookie: anything else means the peer never saw our
            // SYN/ACK (a forgery built on a guessed or replayed cookie), and nothing is made.
            let echoed = match c.keys {
                CapableKeys::Both { receiver_key, .. }
                | CapableKeys::WithData { receiver_key, .. } => Some(receiver_key),
                _ => None,
            };
            if echoed != Some(derived.key) {
                self.stats.cookie_key_mismatch += 1;
                self.queue_rst_for(ip.src, ip.dst, seg);
                return true;
            }
            // The key's token must not name another live connection (section 3.1); the SYN
            // was checked, but a connection may have taken it since.
            if self
                .tokens
                .contains_key(&KeyMaterial::from_key(derived.key).token)
            {
                self.stats.cookie_token_in_use += 1;
                self.queue_rst_for(ip.src, ip.dst, seg);
                return true;
            }
        }
        // Without MP_CAPABLE on the third ACK the connection falls back to TCP as any other
        // (section 3.7): the MPTCP layer sees that when it gets the segment.
        let ts = seg.options.timestamp.filter(|_| self.cfg.tcp.timestamps);
        let syn = cookie_syn(
            local,
            remote,
            client_isn,
            seg.window,
            params,
            ts.map(|t| {
                let (ws, sack) = cookie::decode_ts_bits(t.tsecr);
                (t.tsval, ws, sack)
            }),
        );
        let cfg = self.tcp_config(local.ip());
        let tcp = Connection::accept_cookie(cfg, local, remote, isn, derived.ts_offset, &syn);
        let conn = MptcpConnection::accept(&self.cfg.mptcp, derived.key, tcp, &syn);
        self.stats.accepted += 1;
        let idx = self.insert(Slot::new(conn, self.cfg.path_manager.build(), true));
        if let Some(slot) = self.slot_at(idx) {
            slot.conn.handle_segment(0, now, seg);
        }
        self.update_events(idx);
        self.run_path_manager(idx, now);
        true
    }

    /// RFC 8684 section 3.2: a SYN with MP_JOIN joins the connection its token names, or is
    /// answered with RST and creates nothing.
    fn handle_join_syn(
        &mut self,
        token: u32,
        local: SocketAddr,
        remote: SocketAddr,
        ip: &IpSegment<'_>,
    ) {
        let Some(&idx) = self.tokens.get(&token) else {
            self.stats.join_no_token += 1;
            self.queue_rst_for(ip.src, ip.dst, &ip.tcp);
            return;
        };
        // Joins in their handshake are capped per connection: beyond `max_pending_joins`, or
        // when pending joins are what fills the subflow limit, the oldest pending one is
        // forgotten for this one, so SYNs that never complete (spoofed by someone who saw
        // the token) cannot keep a real join out for as long as their SYN/ACKs are retried.
        let cap = self.cfg.max_pending_joins.max(1);
        let room = self.subflow_room(idx).unwrap_or(false);
        if let Some(slot) = self.slot_at(idx)
            && slot.conn.can_join()
        {
            let pending = slot.conn.pending_joins();
            if (pending >= cap || (!room && pending > 0))
                && let Some(i) = slot.conn.evict_pending_join()
            {
                if let Some(key) = slot.conn.subflow_addrs(i)
                    && self.by_tuple.get(&key) == Some((idx, i))
                {
                    self.by_tuple.remove(&key);
                }
                self.stats.joins_evicted += 1;
            }
        }
        if !self.subflow_room(idx).unwrap_or(false) {
            self.stats.join_refused += 1;
            self.queue_rst_for(ip.src, ip.dst, &ip.tcp);
            return;
        }
        let cfg = self.tcp_config(local.ip());
        let iss = TcpSeq(self.rng.random());
        let ts = self.rng.random();
        let nonce = self.rng.random();
        let local_id = self.addr_id(idx, local.ip());
        let tcp = Connection::accept(cfg, local, remote, iss, ts, &ip.tcp);
        self.forget_reused_tuple(idx);
        let backup = self
            .local_addrs
            .iter()
            .any(|l| l.addr == local.ip() && l.flags.backup);
        let Some(slot) = self.slot_at(idx) else {
            return;
        };
        match slot.conn.accept_join(tcp, &ip.tcp, local_id, nonce, backup) {
            Some(i) => {
                self.by_tuple.insert((local, remote), (idx, i));
            }
            None => {
                self.stats.join_refused += 1;
                self.queue_rst_for(ip.src, ip.dst, &ip.tcp);
            }
        }
    }
}

/// The SYN a cookie stands for: from `remote` to `local` with sequence number `seq`, the
/// cookie's MSS and MP_CAPABLE, and with timestamps (`ts`: the peer's TSval, window scale and
/// SACK-permitted) when the cookie carries them.
fn cookie_syn(
    local: SocketAddr,
    remote: SocketAddr,
    seq: TcpSeq,
    window: u16,
    params: SynParams,
    ts: Option<(u32, Option<u8>, bool)>,
) -> TcpSegment<'static> {
    let mut mptcp = MptcpOptions::default();
    if params.mptcp {
        let _ = mptcp.push(MptcpRepr::Capable(CapableRepr {
            version: 1,
            flags: CapableFlags::v1(params.checksum, false),
            keys: CapableKeys::None,
        }));
    }
    TcpSegment {
        src_port: remote.port(),
        dst_port: local.port(),
        seq,
        ack: TcpSeq(0),
        flags: TcpFlags(TcpFlags::SYN),
        window,
        urgent: 0,
        options: TcpOptions {
            mss: Some(params.mss()),
            window_scale: ts.and_then(|(_, ws, _)| ws),
            sack_permitted: ts.is_some_and(|(_, _, sack)| sack),
            timestamp: ts.map(|(tsval, _, _)| Timestamp { tsval, tsecr: 0 }),
            mptcp,
            ..TcpOptions::default()
        },
        payload: &[],
    }
}

impl Endpoint {
    /// A received packet ([`Node::handle_packet`]); `trusted`: its TCP checksum is not
    /// verified ([`Node::handle_packet_trusted`]).
    fn receive(&mut self, now: Instant, packet: &[u8], trusted: bool) {
        self.stats.packets_in += 1;
        let parsed = if trusted {
            IpSegment::parse_trusted(packet)
        } else {
            IpSegment::parse(packet)
        };
        let ip = match parsed {
            Ok(ip) => ip,
            Err(crate::wire::Error::NotTcp(_)) => {
                self.stats.not_tcp += 1;
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        if !self.addrs.contains(&ip.dst) {
            self.stats.not_for_us += 1;
            return;
        }
        let seg = &ip.tcp;
        let local = SocketAddr::new(ip.dst, seg.dst_port);
        let remote = SocketAddr::new(ip.src, seg.src_port);
        if let Some((idx, sub)) = self.by_tuple.get(&(local, remote)) {
            let retired = self
                .slots
                .get(idx)
                .and_then(|s| s.as_ref())
                .and_then(|s| s.conn.subflows().get(sub))
                .is_some_and(|s| s.is_retired() && s.tcp().is_closed());
            let handshake = self
                .slots
                .get(idx)
                .and_then(|s| s.as_ref())
                .is_some_and(|s| s.listener && !s.announced_open && !s.conn.is_closed());
            if !retired && handshake && !seg.flags.rst() && self.backlog_full(seg.dst_port) {
                // The accept backlog is full: the handshake waits (our SYN/ACK is sent again on
                // its timer, the client's ACK with it), as Linux's listen-queue overflow.
                self.stats.listen_overflows += 1;
                return;
            }
            if !retired {
                if let Some(slot) = self.slot_at(idx) {
                    slot.conn.handle_segment(sub, now, seg);
                    self.update_events(idx);
                    self.run_path_manager(idx, now);
                }
                return;
            }
            // A closed subflow's 4-tuple: forget it, and treat the segment as for no
            // connection (a new join or SYN on a reused port, or an RST for a peer that missed
            // ours: RFC 9293 section 3.10.7.1).
            self.by_tuple.remove(&(local, remote));
        }
        let f = seg.flags;
        if f.syn() && !f.ack() && !f.rst() {
            let token = seg.options.mptcp.iter().find_map(|o| match o {
                crate::wire::MptcpRepr::Join(crate::wire::JoinRepr::Syn { token, .. }) => {
                    Some(*token)
                }
                _ => None,
            });
            if let Some(token) = token {
                self.handle_join_syn(token, local, remote, &ip);
                return;
            }
        }
        if f.syn() && !f.ack() && !f.rst() && self.listeners.contains(&seg.dst_port) {
            // The accept backlog is full: no answer (the client sends its SYN again later),
            // as Linux does on a listen-queue overflow; an RST would end its attempt.
            if self.backlog_full(seg.dst_port) {
                self.stats.listen_overflows += 1;
                return;
            }
            // A SYN flood fills the table of half-open connections, not the endpoint: beyond
            // `max_half_open` SYNs get a stateless cookie (RFC 4987 section 3.6) or, with
            // cookies off, the oldest half-open one is forgotten (a SYN cache with eviction,
            // as BSD's).
            // Entries that completed or closed leave from the front as they come up, and the
            // whole table is compacted at most once per quarter of its size in SYNs: O(1)
            // per SYN on average, flood or not.
            let max = self.cfg.max_half_open.max(1);
            let slots = &self.slots;
            let half_open = |i: usize| {
                slots.get(i).is_some_and(|s| {
                    s.as_ref()
                        .is_some_and(|s| s.listener && !s.announced_open && !s.conn.is_closed())
                })
            };
            while self.half_open.front().is_some_and(|&i| !half_open(i)) {
                self.half_open.pop_front();
            }
            if self.half_open.len() >= max && self.syns_since_compaction >= max / 4 {
                self.half_open.retain(|&i| half_open(i));
                self.syns_since_compaction = 0;
            }
            self.syns_since_compaction += 1;
            if self.half_open.len() >= max && self.cfg.syn_cookies {
                if self.live >= self.cfg.max_connections {
                    self.stats.syns_refused += 1;
                    self.queue_rst_for(ip.src, ip.dst, seg);
                } else {
                    self.queue_cookie(now, local, remote, seg);
                }
                return;
            }
            if self.half_open.len() >= max
                && let Some(oldest) = self.half_open.pop_front()
            {
                self.evict(oldest);
                self.stats.syns_evicted += 1;
            }
            if self.live >= self.cfg.max_connections {
                self.stats.syns_refused += 1;
                self.queue_rst_for(ip.src, ip.dst, seg);
                return;
            }
            let cfg = self.tcp_config(local.ip());
            let iss = TcpSeq(self.rng.random());
            let ts = self.rng.random();
            let tcp = Connection::accept(cfg, local, remote, iss, ts, seg);
            let key = self.new_key();
            let conn = MptcpConnection::accept(&self.cfg.mptcp, key, tcp, seg);
            self.stats.accepted += 1;
            let idx = self.insert(Slot::new(conn, self.cfg.path_manager.build(), true));
            self.half_open.push_back(idx);
            return;
        }
        // An ACK for no connection on a listening port may be the third ACK of a SYN cookie
        // (checked only within a cookie's lifetime of the last one sent, as Linux does).
        let cookie_life =
            Duration::from_millis(cookie::COOKIE_PERIOD_MS as u64) * cookie::COOKIE_PERIODS;
        if f.ack()
            && !f.syn()
            && !f.rst()
            && self.cfg.syn_cookies
            && self.listeners.contains(&seg.dst_port)
            && self.cookies_sent_at.is_some_and(|t| now - t < cookie_life)
            && self.accept_cookie(now, local, remote, &ip)
        {
            return;
        }
        self.stats.no_connection += 1;
        self.queue_rst_for(ip.src, ip.dst, seg);
    }
}

impl Node for Endpoint {
    fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.receive(now, packet, false);
    }

    fn handle_packet_trusted(&mut self, now: Instant, packet: &[u8]) {
        self.receive(now, packet, true);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.refresh_timers();
        let mut due = std::mem::take(&mut self.due);
        while let Some(&Reverse((t, idx))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if self.timer_is_live(t, idx)
                && let Some(Some(slot)) = self.slots.get_mut(idx)
            {
                slot.timer = None;
                due.push(idx);
            }
        }
        for idx in due.drain(..) {
            let Some(slot) = self.slot_at(idx) else {
                continue;
            };
            let conn_due = slot.conn.poll_timeout().is_some_and(|t| t <= now);
            let pm_due = slot.pm_wake().is_some_and(|t| t <= now);
            if conn_due {
                slot.conn.handle_timeout(now);
                self.update_events(idx);
            }
            if conn_due || pm_due {
                self.run_path_manager(idx, now);
            }
        }
        self.due = due;
        self.refresh_timers();
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.poll_transmit_segments(now, buf, 1).map(|t| t.len)
    }

    fn poll_transmit_segments(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        max_segments: usize,
    ) -> Option<Transmit> {
        if let Some(rst) = self.rsts.pop_front() {
            self.stats.rsts_sent += 1;
            self.stats.packets_out += 1;
            let limit = buf.len().min(self.cfg.mtu);
            return rst.emit(&mut buf[..limit]).ok().map(Transmit::single);
        }
        while let Some(c) = self.cookie_synacks.pop_front() {
            // The SYN/ACK of a cookie, written by a connection made for it and dropped at
            // once: the same options and layout as any SYN/ACK of ours, nothing kept.
            let cfg = self.tcp_config(c.local.ip());
            let tcp = Connection::accept(cfg, c.local, c.remote, c.isn, c.ts_offset, &c.syn);
            let mut conn = MptcpConnection::accept(&self.cfg.mptcp, c.key, tcp, &c.syn);
            let limit = buf.len().min(self.cfg.mtu);
            if let Some(n) = conn.poll_transmit(c.at, &mut buf[..limit]) {
                self.stats.packets_out += 1;
                return Some(Transmit::single(n));
            }
        }
        // A super segment is bounded by the IP length field; each of its segments by the MTU
        // through the MSS.
        let limit = if max_segments > 1 {
            buf.len().min(usize::from(u16::MAX))
        } else {
            buf.len().min(self.cfg.mtu)
        };
        while let Some(idx) = self.ready.pop_front() {
            let Some(Some(slot)) = self.slots.get_mut(idx) else {
                continue;
            };
            if !std::mem::take(&mut slot.queued) || !slot.conn.wants_to_transmit() {
                continue;
            }
            let out = slot
                .conn
                .poll_transmit_segments(now, &mut buf[..limit], max_segments);
            // Sending changes timers (retransmission, delayed ACK). A connection that sent
            // may have more: back of the queue, after the others (round-robin); one that had
            // nothing it may send (a full window) waits to be touched by an ACK or a timer.
            self.mark_stale(idx);
            if out.is_some() {
                self.enqueue(idx);
            }
            self.update_events(idx);
            if let Some(t) = out {
                self.stats.packets_out += 1;
                return Some(t);
            }
        }
        self.refresh_timers();
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        // The heap's top (live after `refresh_timers`, at worst early), and the slots touched
        // since: only those can have moved their deadline earlier.
        let top = self.timers.peek().map(|Reverse((t, _))| *t);
        self.stale
            .iter()
            .filter_map(|&i| self.slots.get(i)?.as_ref()?.deadline())
            .chain(top)
            .min()
    }
}

impl Slot {
    fn new(conn: MptcpConnection, pm: Box<dyn PathManager>, listener: bool) -> Slot {
        Slot {
            conn,
            pm,
            pm_dirty: true,
            pm_started: false,
            listener,
            announced_open: false,
            announced_closed: false,
            readable_announced: false,
            writable_wanted: false,
            released: false,
            in_backlog: false,
            timer: None,
            stale: false,
            queued: false,
        }
    }

    /// The earliest of the connection's timers and its path manager's wake-up.
    fn deadline(&self) -> Option<Instant> {
        [self.conn.poll_timeout(), self.pm_wake()]
            .into_iter()
            .flatten()
            .min()
    }

    /// When the path manager wants to run: now (the epoch) if something changed since it
    /// last ran, else its own timer.
    fn pm_wake(&self) -> Option<Instant> {
        if self.released || !self.conn.is_fully_established() {
            return None;
        }
        if self.pm_dirty || !self.pm_started {
            return Some(Instant::from_millis(0));
        }
        self.pm.poll_timeout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_seeds_come_from_the_os_and_seeded_ones_replay() {
        // RFC 8684 section 5: keys must not be guessable. Two default configurations draw
        // different seeds (a collision of 64 random bits would be a broken random source).
        assert_ne!(
            EndpointConfig::default().seed,
            EndpointConfig::default().seed
        );
        let key = |cfg: EndpointConfig| Endpoint::new(cfg).new_key();
        assert_eq!(
            key(EndpointConfig::seeded(9)),
            key(EndpointConfig::seeded(9))
        );
        assert_ne!(
            key(EndpointConfig::seeded(9)),
            key(EndpointConfig::seeded(10))
        );
    }
}
