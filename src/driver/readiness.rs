//! Waiting for a file descriptor to become readable, interruptible from another thread.
//!
//! Contract: [`FdReadiness::wait`] returns when the device descriptor is readable (or in error),
//! when a [`Waker`] from [`FdReadiness::waker`] was woken since the previous `wait` returned, or
//! when the timeout passes (rounded up to whole milliseconds, so it never returns before the
//! deadline and the loop does not spin on sub-millisecond remainders). Built on `poll(2)`
//! through `nix` (safe wrapper over borrowed descriptors) and a self-pipe from
//! `std::io::pipe`; a flag keeps at most one wake-up byte in the pipe, so wakers never block.

use std::io::{self, PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::Waker;

/// The write side of the self-pipe, shared by every waker.
#[derive(Debug)]
struct WakePipe {
    writer: PipeWriter,
    /// A wake-up byte is in the pipe (or about to be): later wakers need not write another.
    pending: AtomicBool,
}

impl WakePipe {
    fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            // One byte into a pipe that holds at most one byte never blocks. An error (cannot
            // happen while the reader lives) only loses a wake-up of a loop that is gone.
            let _ = (&self.writer).write(&[1]);
        }
    }
}

/// A device descriptor's readiness plus a cross-thread wake-up (see the module docs).
#[derive(Debug)]
pub(crate) struct FdReadiness {
    reader: PipeReader,
    pipe: Arc<WakePipe>,
}

impl FdReadiness {
    /// A new self-pipe.
    pub(crate) fn new() -> io::Result<Self> {
        let (reader, writer) = io::pipe()?;
        Ok(FdReadiness {
            reader,
            pipe: Arc::new(WakePipe {
                writer,
                pending: AtomicBool::new(false),
            }),
        })
    }

    /// A waker that interrupts [`FdReadiness::wait`].
    pub(crate) fn waker(&self) -> Waker {
        let pipe = self.pipe.clone();
        Waker::new(move || pipe.wake())
    }

    /// Wait until `fd` is readable, a wake-up arrives, or `timeout` passes.
    pub(crate) fn wait(&mut self, fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
        let woken = {
            let mut fds = [
                PollFd::new(fd, PollFlags::POLLIN),
                PollFd::new(self.reader.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, poll_timeout(timeout)) {
                Ok(_) => {}
                Err(Errno::EINTR) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            fds[1].any().unwrap_or(false)
        };
        if woken {
            // The pipe is readable, so this read does not block. Drain first, then clear the
            // flag: a waker that saw the flag still set woke before the clear, and the loop
            // looks at its command queue after this returns.
            let mut sink = [0u8; 16];
            let _ = self.reader.read(&mut sink)?;
            self.pipe.pending.store(false, Ordering::Release);
        }
        Ok(())
    }
}

/// `poll`'s millisecond timeout for `timeout`, rounded up.
fn poll_timeout(timeout: Option<Duration>) -> PollTimeout {
    match timeout {
        None => PollTimeout::NONE,
        Some(t) => {
            let ms = t.as_micros().div_ceil(1000);
            i32::try_from(ms)
                .ok()
                .and_then(|ms| PollTimeout::try_from(ms).ok())
                .unwrap_or(PollTimeout::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn timeout_rounds_up() {
        assert_eq!(poll_timeout(None), PollTimeout::NONE);
        assert_eq!(poll_timeout(Some(Duration::ZERO)), PollTimeout::ZERO);
        assert_eq!(i32::from(poll_timeout(Some(Duration::from_micros(1)))), 1);
        assert_eq!(
            i32::from(poll_timeout(Some(Duration::from_micros(2001)))),
            3
        );
        assert_eq!(poll_timeout(Some(Duration::MAX)), PollTimeout::MAX);
    }

    #[test]
    fn waker_interrupts_wait_and_timeout_elapses() {
        let (idle, _keep) = io::pipe().unwrap();
        let mut r = FdReadiness::new().unwrap();
        let w = r.waker();
        // Woken before waiting: returns at once, and twice is the same as once.
        w.wake();
        w.wake();
        let t0 = Instant::now();
        r.wait(idle.as_fd(), Some(Duration::from_secs(5))).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(2));
        // No wake-up pending any more: the timeout elapses.
        let t0 = Instant::now();
        r.wait(idle.as_fd(), Some(Duration::from_millis(30)))
            .unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(30));
        // Woken from another thread while waiting.
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w.wake();
        });
        let t0 = Instant::now();
        r.wait(idle.as_fd(), None).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
    }

    #[test]
    fn readable_fd_ends_wait() {
        let (rx, tx) = io::pipe().unwrap();
        let mut r = FdReadiness::new().unwrap();
        (&tx).write_all(b"x").unwrap();
        let t0 = Instant::now();
        r.wait(rx.as_fd(), Some(Duration::from_secs(5))).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(2));
    }
}
