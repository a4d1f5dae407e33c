//! Connection-level reassembly: bytes arrive by data sequence number, from any subflow, in any
//! order, possibly more than once; the application reads them once, in order.
//!
//! Contract: memory is bounded by the limit given at creation (the connection-level receive
//! window); bytes before the next expected DSN or beyond the window are dropped and counted by
//! the caller from the return value; overlapping copies are harmless (the first copy wins).

use crate::seq::Dsn;
use crate::tcp::ring::Ring;

/// A DSN-indexed reassembly buffer.
#[derive(Debug, Clone)]
pub struct Reassembly {
    ring: Ring,
    /// The DSN of the first byte after the in-order data (DATA_ACK to send).
    next: Dsn,
    /// Out-of-order ranges beyond `next`, sorted, disjoint, not adjacent.
    ooo: Vec<(Dsn, Dsn)>,
}

/// What [`Reassembly::insert`] did with a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inserted {
    /// Bytes stored (new, in window).
    pub stored: usize,
    /// Bytes that were already received (before `next`).
    pub duplicate: usize,
    /// Bytes beyond the window, dropped.
    pub beyond_window: usize,
}

impl Reassembly {
    /// Empty, expecting `next`, holding at most `limit` bytes.
    pub fn new(next: Dsn, limit: usize) -> Self {
        Reassembly {
            ring: Ring::new(limit),
            next,
            ooo: Vec::new(),
        }
    }

    /// The next DSN expected in order.
    pub fn next(&self) -> Dsn {
        self.next
    }

    /// Bytes readable in order.
    pub fn available(&self) -> usize {
        self.ring.len()
    }

    /// The receive window: room from `next` on.
    pub fn window(&self) -> usize {
        self.ring.free()
    }

    /// Bytes of memory allocated (the ring and the out-of-order list), not the limit.
    pub fn allocated(&self) -> usize {
        self.ring.allocated() + self.ooo.capacity() * std::mem::size_of::<(Dsn, Dsn)>()
    }

    /// Whether out-of-order data is held.
    pub fn has_gaps(&self) -> bool {
        !self.ooo.is_empty()
    }

    /// Skip the DSN space of a DATA_FIN (it carries no byte).
    pub fn advance_for_fin(&mut self) {
        self.next = self.next + 1;
    }

    /// [`insert`](Reassembly::insert) of the bytes of `first` followed by `second` at `dsn`
    /// (the two pieces of a ring buffer), with one combined result: what lies beyond the window
    /// is counted for both pieces and nothing after it is stored.
    pub fn insert_parts(&mut self, dsn: Dsn, first: &[u8], second: &[u8]) -> Inserted {
        let mut out = self.insert(dsn, first);
        if second.is_empty() {
            return out;
        }
        if out.beyond_window > 0 {
            out.beyond_window += second.len();
            return out;
        }
        let more = self.insert(dsn + first.len() as u64, second);
        out.duplicate += more.duplicate;
        out.stored += more.stored;
        out.beyond_window += more.beyond_window;
        out
    }

    /// Store `data` that starts at `dsn`.
    pub fn insert(&mut self, dsn: Dsn, data: &[u8]) -> Inserted {
        let mut out = Inserted::default();
        let mut dsn = dsn;
        let mut data = data;
        let behind = self.next.distance_from(dsn);
        if behind > 0 {
            let cut = (behind as u64).min(data.len() as u64) as usize;
            out.duplicate = cut;
            data = &data[cut..];
            dsn = dsn + cut as u64;
        }
        if data.is_empty() {
            return out;
        }
        let offset = dsn.distance_from(self.next) as u64;
        let window = self.window() as u64;
        if offset >= window {
            out.beyond_window = data.len();
            return out;
        }
        let fits = (window - offset).min(data.len() as u64) as usize;
        out.beyond_window = data.len() - fits;
        let data = &data[..fits];
        self.ring.write_at(self.ring.len() + offset as usize, data);
        out.stored = data.len();
        let (mut start, mut end) = (dsn, dsn + data.len() as u64);
        self.ooo.retain(|&(a, b)| {
            if a.distance_from(end) <= 0 && b.distance_from(start) >= 0 {
                start = start.min_seq(a);
                end = end.max_seq(b);
                false
            } else {
                true
            }
        });
        if start == self.next {
            let n = end.distance_from(self.next) as usize;
            self.ring.extend_len(n);
            self.next = end;
        } else {
            let pos = self
                .ooo
                .partition_point(|&(a, _)| a.distance_from(start) < 0);
            self.ooo.insert(pos, (start, end));
        }
        out
    }

    /// Read in-order bytes.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        self.ring.pop(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_and_duplicate_ranges_come_out_once_in_order() {
        let mut r = Reassembly::new(Dsn(1000), 100);
        assert_eq!(r.insert(Dsn(1010), b"klmno").stored, 5);
        assert_eq!(r.available(), 0);
        assert_eq!(r.insert(Dsn(1000), b"abcdefghij").stored, 10);
        assert_eq!(r.available(), 15);
        assert_eq!(r.next(), Dsn(1015));
        let dup = r.insert(Dsn(1005), b"fghijklmnopq");
        assert_eq!((dup.duplicate, dup.stored), (10, 2));
        let mut out = [0u8; 32];
        let n = r.read(&mut out);
        assert_eq!(&out[..n], b"abcdefghijklmnopq");
    }

    #[test]
    fn bytes_beyond_the_window_are_refused() {
        let mut r = Reassembly::new(Dsn(u64::MAX - 2), 8);
        let res = r.insert(Dsn(u64::MAX - 2), b"0123456789");
        assert_eq!((res.stored, res.beyond_window), (8, 2));
        assert_eq!(r.next(), Dsn(5));
        assert_eq!(r.window(), 0);
    }

    #[test]
    fn two_pieces_insert_as_one_range_and_stop_at_the_window() {
        let mut r = Reassembly::new(Dsn(0), 12);
        // Partly a duplicate of nothing, then both pieces in order.
        let res = r.insert_parts(Dsn(0), b"abc", b"defg");
        assert_eq!((res.stored, res.duplicate, res.beyond_window), (7, 0, 0));
        // The first piece a duplicate, the second overflowing the window (5 bytes left).
        let res = r.insert_parts(Dsn(5), b"fg", b"hijklmn");
        assert_eq!((res.duplicate, res.stored, res.beyond_window), (2, 5, 2));
        // A first piece already beyond the window: nothing of the second is stored.
        let res = r.insert_parts(Dsn(12), b"x", b"yz");
        assert_eq!((res.stored, res.beyond_window), (0, 3));
        let mut out = [0u8; 16];
        let n = r.read(&mut out);
        assert_eq!(&out[..n], b"abcdefghijkl");
    }
}
