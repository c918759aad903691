//! One plain thread that wakes glommio tasks periodically, so that no
//! connection needs a glommio timer of its own while it waits.
//!
//! Why not glommio's timers: glommio 0.9 keeps an executor's timers in a
//! `BTreeMap` and, every time the reactor polls, moves the expired ones out
//! with `split_off`, which allocates a node whenever any timer is
//! registered (`glommio::reactor::Timers::process_timers`). A connection
//! waiting in a read with a read timeout, or a client's idle ticker,
//! therefore made every park and wake-up of its executor allocate (the
//! guide's lab notes tell how it was found). The periodic checks (an idle
//! connection gives its buffers back, idle connections are closed, a
//! shutdown is noticed) need a wake-up about once a second, and a thread
//! that sends one through the task's own waker costs nothing per call.

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Something the clock wakes.
pub(crate) trait Tick: Send + Sync {
    /// Called from the clock's thread every period.
    fn tick(&self);
}

struct Entry {
    target: Weak<dyn Tick>,
    every: Duration,
    next: Instant,
}

struct Clock {
    entries: Mutex<Vec<Entry>>,
    changed: Condvar,
}

impl Clock {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fires what is due (all of it with `all`), forgets what is gone, and
    /// returns when the next entry is due.
    fn fire(entries: &mut Vec<Entry>, all: bool) -> Option<Instant> {
        let now = Instant::now();
        let mut next_due: Option<Instant> = None;
        entries.retain_mut(|entry| {
            let Some(target) = entry.target.upgrade() else { return false };
            if all || entry.next <= now {
                target.tick();
                entry.next = now + entry.every;
            }
            next_due = Some(next_due.map_or(entry.next, |n| n.min(entry.next)));
            true
        });
        next_due
    }

    fn run(&self) {
        let mut entries = self.lock();
        loop {
            entries = match Clock::fire(&mut entries, false) {
                None => self.changed.wait(entries).unwrap_or_else(|p| p.into_inner()),
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    self.changed.wait_timeout(entries, wait).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }
}

/// The process's clock, started on first use (one thread for every glommio
/// server and client of the process; it sleeps while nothing is registered).
fn clock() -> &'static Clock {
    static CLOCK: OnceLock<&'static Clock> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let clock: &'static Clock =
            Box::leak(Box::new(Clock { entries: Mutex::new(Vec::new()), changed: Condvar::new() }));
        std::thread::Builder::new()
            .name("fastwire-glommio-clock".into())
            .spawn(move || clock.run())
            .expect("spawning the glommio backend's clock thread");
        clock
    })
}

/// Wakes `target` every `every` until it is dropped.
pub(crate) fn every(target: Weak<dyn Tick>, every: Duration) {
    let clock = clock();
    clock.lock().push(Entry { target, every, next: Instant::now() + every });
    clock.changed.notify_one();
}

/// Wakes `target` when every target is woken ([`tick_all`]: a shutdown),
/// and otherwise not (once a day, harmlessly).
pub(crate) fn on_tick_all(target: Weak<dyn Tick>) {
    every(target, Duration::from_secs(86_400));
}

/// Wakes every registered target now (a shutdown began: let them see it).
pub(crate) fn tick_all() {
    let clock = clock();
    Clock::fire(&mut clock.lock(), true);
    clock.changed.notify_one();
}
