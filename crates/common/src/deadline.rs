//! Call deadlines on a coarse clock.
//!
//! Every call has a deadline, so a precise clock read per call
//! (`Instant::now()`, `CLOCK_MONOTONIC`, which on a VM must scale the time
//! stamp counter through the hypervisor's page) would be a share of every
//! call, whose whole cost is a few hundred nanoseconds. Go's
//! fastrpc reads a coarse clock kept by a ticker for the same reason
//! (`coarseTime`). Linux keeps one for free: `CLOCK_MONOTONIC_COARSE`,
//! the time of the last scheduler tick (a few ms resolution), read from the
//! vDSO in a few nanoseconds. A [`Deadline`] is set on it, rounded up by one
//! resolution so that it never ends early; the precise clock is read only
//! when a caller actually has to sleep. A call may therefore time out up to
//! about two ticks late, never early.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sys;

/// A point in time on the coarse monotonic clock, never earlier than asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    nanos: u64,
}

impl Deadline {
    /// `timeout` from now (plus the clock's resolution).
    #[inline]
    pub fn after(timeout: Duration) -> Deadline {
        let timeout = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        Deadline { nanos: sys::coarse_nanos().saturating_add(sys::coarse_resolution()).saturating_add(timeout) }
    }

    /// How long until the deadline; `None` once it has passed.
    pub fn remaining(self) -> Option<Duration> {
        let now = sys::coarse_nanos();
        (now < self.nanos).then(|| Duration::from_nanos(self.nanos - now))
    }

    /// The deadline as an [`Instant`], for timers that take one (tokio's),
    /// still never earlier than asked. The coarse clock is mapped onto
    /// `Instant` through one pair of readings taken once: the coarse one
    /// first, so that it is not later than the precise one and the mapped
    /// time can only come out late (by up to a tick), never early.
    pub fn to_instant(self) -> Instant {
        static BASE: OnceLock<(u64, Instant)> = OnceLock::new();
        let &(coarse, precise) = BASE.get_or_init(|| {
            let coarse = sys::coarse_nanos();
            (coarse, Instant::now())
        });
        let after = Duration::from_nanos(self.nanos.saturating_sub(coarse));
        // A deadline beyond what `Instant` holds (an unlimited timeout):
        // a century is as good.
        precise.checked_add(after).unwrap_or_else(|| precise + Duration::from_secs(100 * 365 * 24 * 3600))
    }
}

/// The coarse clock's time now as an [`Instant`], on the same scale as
/// [`Deadline::to_instant`]: the time a client hands its connection, so
/// that a deadline that [`Deadline::remaining`] says has passed is also
/// passed for the connection.
pub fn coarse_instant() -> Instant {
    Deadline { nanos: sys::coarse_nanos() }.to_instant()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_ends_early_and_not_much_late() {
        let started = Instant::now();
        let deadline = Deadline::after(Duration::from_millis(30));
        while deadline.remaining().is_some() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(30), "ended early: {took:?}");
        // Not a timing assertion on this machine's speed: a bound that only a
        // wrong clock (or a resolution of seconds) would break.
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert!(Deadline::after(Duration::from_secs(60)).remaining().unwrap() > Duration::from_secs(59));
        assert_eq!(Deadline::after(Duration::MAX).remaining().map(|d| d > Duration::from_secs(1 << 30)), Some(true));
    }

    #[test]
    fn as_an_instant_never_early() {
        for millis in [0, 1, 5, 30] {
            let started = Instant::now();
            let at = Deadline::after(Duration::from_millis(millis)).to_instant();
            assert!(at >= started + Duration::from_millis(millis), "{millis} ms: early");
            // Not a timing assertion: only a wrong mapping is seconds late.
            assert!(at < started + Duration::from_millis(millis) + Duration::from_secs(1), "{millis} ms");
        }
        assert!(Deadline::after(Duration::MAX).to_instant() > Instant::now() + Duration::from_secs(1 << 30));
    }
}
