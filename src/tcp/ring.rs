//! A byte ring buffer that grows on demand up to a fixed limit.
//!
//! Contract: holds at most `limit` bytes; `push` copies in what fits and says how much; reads
//! and writes at an offset from the head never allocate once the ring has grown to what it
//! holds; memory is allocated only as data arrives (an idle connection costs no buffer).

/// A growable byte ring with a hard limit.
///
/// Positions and counts are stored as `u32` (a ring holds at most 4 GiB - 1): one ring per
/// direction per subflow, so its 32 bytes (rather than 48) matter at 10,000 connections.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    buf: Box<[u8]>,
    head: u32,
    len: u32,
    limit: u32,
}

impl Ring {
    /// An empty ring that will hold at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Ring {
            buf: Box::default(),
            head: 0,
            len: 0,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most bytes the ring will ever hold.
    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// Room left before the limit.
    pub fn free(&self) -> usize {
        (self.limit - self.len) as usize
    }

    /// Bytes of memory allocated.
    pub fn allocated(&self) -> usize {
        self.buf.len()
    }

    /// Make sure positions `[0, end)` from the head are backed by memory.
    fn ensure(&mut self, end: usize) {
        if end <= self.buf.len() {
            return;
        }
        let new_cap = end
            .max(self.buf.len() * 2)
            .max(4096)
            .min(self.limit().max(end));
        let mut next = vec![0u8; new_cap].into_boxed_slice();
        // Linearise: everything that may hold data (the whole old buffer from head) moves to 0.
        let old = self.buf.len();
        if old > 0 {
            let (a, b) = self.buf.split_at(self.head as usize);
            next[..b.len()].copy_from_slice(b);
            next[b.len()..old].copy_from_slice(a);
        }
        self.buf = next;
        self.head = 0;
    }

    /// Append as much of `data` as fits; returns the count appended.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        self.write_at(self.len(), &data[..n]);
        self.len += n as u32;
        n
    }

    /// Count up to `n` more bytes as held without storing them (their content lives elsewhere;
    /// the owner never reads them back from here); returns the count. Positions stay reserved,
    /// so stored bytes may follow.
    pub fn push_phantom(&mut self, n: usize) -> usize {
        let n = n.min(self.free());
        self.len += n as u32;
        n
    }
    /// Write `data` at `offset` from the head, where `offset + data.len() <= limit`. Bytes past
    /// `len()` are not counted as held until [`Ring::extend_len`] says so (out-of-order data).
    pub fn write_at(&mut self, offset: usize, data: &[u8]) {
        let end = offset + data.len();
        debug_assert!(end <= self.limit());
        self.ensure(end);
        let cap = self.buf.len();
        let start = (self.head as usize + offset) % cap;
        let first = data.len().min(cap - start);
        self.buf[start..start + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
    }

    /// Count `n` more bytes (already written with [`Ring::write_at`]) as held.
    pub fn extend_len(&mut self, n: usize) {
        debug_assert!(self.len() + n <= self.limit());
        self.len += n as u32;
    }

    /// Copy bytes from `offset` into `out` (which must lie within what is held).
    pub fn read_at(&self, offset: usize, out: &mut [u8]) {
        debug_assert!(offset + out.len() <= self.len());
        if out.is_empty() {
            return;
        }
        let cap = self.buf.len();
        let start = (self.head as usize + offset) % cap;
        let first = out.len().min(cap - start);
        out[..first].copy_from_slice(&self.buf[start..start + first]);
        let rest = out.len() - first;
        out[first..].copy_from_slice(&self.buf[..rest]);
    }

    /// The `len` bytes held from `offset` on, as the (at most) two contiguous pieces they
    /// occupy, in order: a view for copying them elsewhere once, without a scratch buffer.
    pub fn slices_at(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        debug_assert!(offset + len <= self.len());
        if len == 0 {
            return (&[], &[]);
        }
        let cap = self.buf.len();
        let start = (self.head as usize + offset) % cap;
        let first = len.min(cap - start);
        (&self.buf[start..start + first], &self.buf[..len - first])
    }

    /// Drop `n` bytes from the head.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len());
        if n == 0 {
            return;
        }
        // The head moves even when nothing is left: bytes written ahead of `len` (out-of-order
        // data) keep their offsets from it. Nothing allocated: only phantom bytes were held.
        if !self.buf.is_empty() {
            self.head = ((self.head as usize + n) % self.buf.len()) as u32;
        }
        self.len -= n as u32;
    }

    /// Copy out and drop up to `out.len()` bytes from the head; returns the count.
    pub fn pop(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len());
        self.read_at(0, &mut out[..n]);
        self.consume(n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_around_and_keeps_order() {
        let mut r = Ring::new(10_000);
        let data: Vec<u8> = (0..=255u8).cycle().take(9000).collect();
        assert_eq!(r.push(&data[..7000]), 7000);
        let mut out = vec![0u8; 6000];
        assert_eq!(r.pop(&mut out), 6000);
        assert_eq!(out, data[..6000]);
        assert_eq!(r.push(&data[7000..]), 2000);
        let mut out = vec![0u8; 3000];
        r.read_at(0, &mut out);
        assert_eq!(out, data[6000..]);
        assert_eq!(r.push(&[0u8; 20_000]), 7000, "stops at the limit");
    }

    #[test]
    fn out_of_order_writes_become_readable_when_counted() {
        let mut r = Ring::new(100);
        r.write_at(10, b"world");
        r.write_at(0, b"hello, ...");
        r.extend_len(15);
        let mut out = [0u8; 15];
        r.read_at(0, &mut out);
        assert_eq!(&out, b"hello, ...world");
    }

    #[test]
    fn grows_only_as_data_arrives() {
        let mut r = Ring::new(1 << 20);
        assert_eq!(r.allocated(), 0);
        r.push(&[1; 10]);
        assert!(r.allocated() >= 10 && r.allocated() <= 4096);
    }

    #[test]
    fn slices_at_are_the_held_bytes_in_order_across_the_wrap() {
        let mut r = Ring::new(4096);
        let data: Vec<u8> = (0..8000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(r.push(&data[..3500]), 3500);
        r.consume(3000);
        assert_eq!(r.push(&data[3500..5000]), 1500);
        // 2000 bytes held from position 3000 of the 4096-byte buffer: they wrap.
        for (offset, len) in [(0, 2000), (100, 1500), (1095, 2), (2000, 0)] {
            let (a, b) = r.slices_at(offset, len);
            let mut joined = a.to_vec();
            joined.extend_from_slice(b);
            assert_eq!(joined, &data[3000 + offset..3000 + offset + len]);
        }
        let (a, b) = r.slices_at(0, 2000);
        assert_eq!((a.len(), b.len()), (1096, 904), "this case must wrap");
    }
}
