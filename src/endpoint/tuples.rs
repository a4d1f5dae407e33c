//! The subflow demultiplexing table: 4-tuple to (connection slot, subflow index).
//!
//! Contract: keyed by the two addresses and ports only (an IPv6 flow label or scope id never
//! splits or merges subflows); an entry takes 48 bytes instead of the 80 of a
//! `(SocketAddr, SocketAddr)` key with `usize` values, because every subflow of every
//! connection has one and the table doubles as it grows. The hasher is std's keyed SipHash,
//! so a peer cannot aim collisions at it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// A 4-tuple, packed (38 bytes, 2-byte aligned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Tuple {
    local: IpAddr,
    remote: IpAddr,
    local_port: u16,
    remote_port: u16,
}

impl Tuple {
    fn new(&(local, remote): &(SocketAddr, SocketAddr)) -> Self {
        Tuple {
            local: local.ip(),
            remote: remote.ip(),
            local_port: local.port(),
            remote_port: remote.port(),
        }
    }
}

/// 4-tuple -> (slot, subflow).
#[derive(Debug, Default)]
pub(super) struct TupleMap {
    map: HashMap<Tuple, (u32, u32)>,
}

impl TupleMap {
    /// Whether the 4-tuple is taken.
    pub(super) fn contains_key(&self, key: &(SocketAddr, SocketAddr)) -> bool {
        self.map.contains_key(&Tuple::new(key))
    }

    /// The slot and subflow on this 4-tuple.
    pub(super) fn get(&self, key: &(SocketAddr, SocketAddr)) -> Option<(usize, usize)> {
        self.map
            .get(&Tuple::new(key))
            .map(|&(slot, sub)| (slot as usize, sub as usize))
    }

    /// Route the 4-tuple to `(slot, subflow)`. Slots and subflow indices beyond `u32` cannot
    /// be: the endpoint's memory would run out first.
    pub(super) fn insert(&mut self, key: (SocketAddr, SocketAddr), (slot, sub): (usize, usize)) {
        let narrow = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        self.map
            .insert(Tuple::new(&key), (narrow(slot), narrow(sub)));
    }

    /// Forget the 4-tuple.
    pub(super) fn remove(&mut self, key: &(SocketAddr, SocketAddr)) {
        self.map.remove(&Tuple::new(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    fn v4(a: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)), port)
    }

    #[test]
    fn an_entry_is_48_bytes() {
        assert_eq!(core::mem::size_of::<(Tuple, (u32, u32))>(), 48);
    }

    #[test]
    fn routes_by_both_addresses_and_both_ports() {
        let mut m = TupleMap::default();
        m.insert((v4(1, 1000), v4(2, 80)), (7, 1));
        assert_eq!(m.get(&(v4(1, 1000), v4(2, 80))), Some((7, 1)));
        assert_eq!(m.get(&(v4(2, 80), v4(1, 1000))), None, "reversed");
        assert_eq!(m.get(&(v4(1, 1001), v4(2, 80))), None, "other local port");
        assert_eq!(m.get(&(v4(1, 1000), v4(2, 81))), None, "other remote port");
        assert_eq!(
            m.get(&(v4(3, 1000), v4(2, 80))),
            None,
            "other local address"
        );
        m.remove(&(v4(1, 1000), v4(2, 80)));
        assert!(!m.contains_key(&(v4(1, 1000), v4(2, 80))));
    }

    #[test]
    fn an_ipv6_flow_label_or_scope_does_not_split_a_tuple() {
        let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let plain = SocketAddr::V6(SocketAddrV6::new(ip, 443, 0, 0));
        let labelled = SocketAddr::V6(SocketAddrV6::new(ip, 443, 0x12345, 3));
        let mut m = TupleMap::default();
        m.insert((plain, v4(2, 80)), (1, 0));
        assert_eq!(m.get(&(labelled, v4(2, 80))), Some((1, 0)));
    }
}
