//! [`Signal`]: how the stack thread wakes the threads and tasks waiting on one connection or
//! listener.
//!
//! Contract: the stack thread calls [`Signal::notify`] after anything that may interest a
//! waiter (data, send room, a connection made or accepted, a close); each call bumps a sequence
//! number. A waiter reads the number where it found nothing to do (on the stack thread, in the
//! same command, or before looking at a shared queue), then waits until the number moved
//! ([`Signal::wait_past`] for threads, [`Signal::register`] for tasks): a notification between
//! the look and the wait is never lost. Once [`Signal::stop`]ped (the stack is gone) every wait
//! returns at once.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Instant;

#[derive(Debug, Default)]
struct State {
    seq: u64,
    stopped: bool,
    wakers: Vec<Waker>,
}

/// A sequence number with a condition variable and task wakers (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Signal {
    state: Mutex<State>,
    cv: Condvar,
}

impl Signal {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves a consistent state (plain counters).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current sequence number.
    pub(crate) fn seq(&self) -> u64 {
        self.lock().seq
    }

    /// Something happened: wake every waiter.
    pub(crate) fn notify(&self) {
        let wakers = {
            let mut s = self.lock();
            s.seq = s.seq.wrapping_add(1);
            std::mem::take(&mut s.wakers)
        };
        self.cv.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    /// The stack is gone: wake every waiter, now and later.
    pub(crate) fn stop(&self) {
        self.lock().stopped = true;
        self.notify();
    }

    /// Whether [`Signal::stop`] was called.
    pub(crate) fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Block until the number differs from `seen` or the signal is stopped (`true`), or
    /// `deadline` passes (`false`).
    pub(crate) fn wait_past(&self, seen: u64, deadline: Option<Instant>) -> bool {
        let mut s = self.lock();
        while s.seq == seen && !s.stopped {
            match deadline {
                None => s = self.cv.wait(s).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    s = self
                        .cv
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        true
    }

    /// Wake `waker` at the next notification, unless the number already differs from `seen`
    /// or the signal is stopped: then `false`, and the caller should look again at once.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn register(&self, seen: u64, waker: &Waker) -> bool {
        let mut s = self.lock();
        if s.seq != seen || s.stopped {
            return false;
        }
        if !s.wakers.iter().any(|w| w.will_wake(waker)) {
            s.wakers.push(waker.clone());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn notify_between_look_and_wait_is_not_lost() {
        let s = Signal::default();
        let seen = s.seq();
        s.notify();
        assert!(s.wait_past(seen, Some(Instant::now() + Duration::from_secs(5))));
        let seen = s.seq();
        assert!(!s.wait_past(seen, Some(Instant::now() + Duration::from_millis(10))));
    }

    #[test]
    fn notify_wakes_a_blocked_thread_and_stop_releases_all() {
        let s = Arc::new(Signal::default());
        let seen = s.seq();
        let t = {
            let s = s.clone();
            std::thread::spawn(move || s.wait_past(seen, None))
        };
        std::thread::sleep(Duration::from_millis(20));
        s.notify();
        assert!(t.join().unwrap());
        s.stop();
        let seen = s.seq();
        assert!(s.wait_past(seen, None), "a stopped signal never blocks");
    }
}
