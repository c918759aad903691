//! One measurement's window and what it yields: the phases every load
//! thread follows (warm-up, window, stop), the per-thread tally, and the
//! [`Sample`] a run returns. Every load shape in [`drive`](super::drive),
//! the floors and the sweep share them.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::alloc;
/// How long to warm up and how long to measure.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Load before the window opens: connections warm, buffers grown, caches hot.
    pub warmup: Duration,
    /// The measured window of a timed run.
    pub measure: Duration,
    /// The window of the run that counts allocations.
    pub count: Duration,
}

impl Timing {
    /// A measured window of `duration`, a quarter of it as warm-up (at
    /// least 20 ms) and a third of it for counting allocations (at least 50 ms).
    pub fn new(duration: Duration) -> Timing {
        Timing {
            warmup: (duration / 4).max(Duration::from_millis(20)),
            measure: duration,
            count: (duration / 3).max(Duration::from_millis(50)),
        }
    }
}

/// What a run records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Timed: operations, bytes and a latency histogram.
    Timed,
    /// Counted: operations and the process's allocations; latency is not recorded.
    Counted,
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Operations completed in the window.
    pub ops: u64,
    /// Responses the server sent for no call in progress, over the run
    /// (the clients' [`ClientStats`](fastwire_common::ClientStats)): a
    /// correct server sends none.
    pub unsolicited: u64,
    /// The window's length.
    pub seconds: f64,
    /// Response value bytes received in the window.
    pub bytes: u64,
    /// Call latencies in nanoseconds (timed runs of calls that have a response).
    pub latency: Option<Histogram<u64>>,
    /// Allocations of the whole process in the window (counted runs, with
    /// the counting allocator installed).
    pub allocations: Option<u64>,
    /// What the run's counter counted over the window, if it had one (the
    /// requests a server handled, or a server process's CPU nanoseconds).
    pub counted: Option<u64>,
}

impl Sample {
    /// Wall time over operations: inverse throughput, not latency.
    pub fn ns_per_op(&self) -> f64 {
        if self.ops == 0 {
            f64::NAN
        } else {
            self.seconds * 1e9 / self.ops as f64
        }
    }

    /// Decimal megabytes of response values per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e6
    }

    /// Allocations per operation, if they were counted.
    pub fn allocs_per_op(&self) -> Option<f64> {
        self.allocations.map(|a| if self.ops == 0 { f64::NAN } else { a as f64 / self.ops as f64 })
    }
}

/// A latency histogram from 1 ns to 100 s with 3 significant digits: fixed
/// memory, so recording never allocates.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds")
}

/// Load runs, nothing is counted yet.
pub(crate) const WARMUP: u8 = 0;
/// The window is open: count and time.
pub(crate) const MEASURE: u8 = 1;
/// The window closed: finish what is in flight and return.
pub(crate) const STOP: u8 = 2;

/// The phase every load thread reads before each operation (a relaxed
/// load: a thread that sees a change one operation late costs nothing).
pub(crate) struct Control {
    phase: AtomicU8,
}

impl Default for Control {
    fn default() -> Control {
        Control { phase: AtomicU8::new(WARMUP) }
    }
}

impl Control {
    pub(crate) fn phase(&self) -> u8 {
        self.phase.load(Relaxed)
    }

    /// A load thread failed: every other one stops, and the window ends
    /// now (the run reports the failure at once, not after the window).
    pub(crate) fn abort(&self) {
        self.phase.store(STOP, Relaxed);
    }

    /// Passes a load thread's result on, aborting the run if it failed.
    pub(crate) fn abort_on_error<T>(&self, result: Result<T, String>) -> Result<T, String> {
        if result.is_err() {
            self.abort();
        }
        result
    }

    /// Sleeps `length`, or less if a load thread aborts the run meanwhile.
    fn sleep(&self, length: Duration) {
        let until = Instant::now() + length;
        while self.phase() != STOP {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(10)));
        }
    }
}

/// The measured window, as the coordinator saw it.
pub(crate) struct Window {
    seconds: f64,
    allocations: Option<u64>,
    /// The external counter's increase over the window (see [`window`]).
    counted: Option<u64>,
}

/// Warm-up, then the window, then stop: the coordinator's side of a run.
/// `counter` (the server's handled requests, for fire-and-forget) is read
/// as the window opens and closes.
pub(crate) fn window(control: &Control, timing: &Timing, mode: Mode, counter: Option<&dyn Fn() -> u64>) -> Window {
    control.sleep(timing.warmup);
    let length = if mode == Mode::Timed { timing.measure } else { timing.count };
    let counted_before = counter.map(|c| c());
    let allocations_before = alloc::count();
    // Not if a load thread has failed (and stopped the run) already.
    let _ = control.phase.compare_exchange(WARMUP, MEASURE, Relaxed, Relaxed);
    let start = Instant::now();
    control.sleep(length);
    control.phase.store(STOP, Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    let allocations = alloc::count() - allocations_before;
    let counted = counter.zip(counted_before).map(|(c, before)| c() - before);
    let allocations = (mode == Mode::Counted && alloc::installed()).then_some(allocations);
    Window { seconds, allocations, counted }
}

/// What one load thread saw in the window.
pub(crate) struct Tally {
    pub(crate) ops: u64,
    pub(crate) bytes: u64,
    pub(crate) latency: Option<Histogram<u64>>,
    /// Unsolicited responses its connections dropped (over the run).
    pub(crate) unsolicited: u64,
}

impl Tally {
    pub(crate) fn new(mode: Mode, fire_and_forget: bool) -> Tally {
        Tally { ops: 0, bytes: 0, latency: (mode == Mode::Timed && !fire_and_forget).then(histogram), unsolicited: 0 }
    }

    #[inline]
    pub(crate) fn record(&mut self, bytes: usize, latency: Duration) {
        self.ops += 1;
        self.bytes += bytes as u64;
        if let Some(h) = &mut self.latency {
            h.saturating_record(latency.as_nanos() as u64);
        }
    }

    /// Counts an operation whose latency is not part of the figures (the
    /// slow calls of `mixed`).
    #[inline]
    pub(crate) fn record_untimed(&mut self, bytes: usize) {
        self.ops += 1;
        self.bytes += bytes as u64;
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.unsolicited += other.unsolicited;
        if let (Some(mine), Some(theirs)) = (&mut self.latency, other.latency) {
            mine.add(theirs).expect("same bounds");
        }
    }

    pub(crate) fn into_sample(self, window: Window, fire_and_forget: bool) -> Sample {
        // Fire-and-forget operations are counted where they are handled
        // (the server), when the server is in this process.
        let ops = if fire_and_forget { window.counted.unwrap_or(self.ops) } else { self.ops };
        Sample {
            ops,
            unsolicited: self.unsolicited,
            seconds: window.seconds,
            bytes: self.bytes,
            latency: self.latency,
            allocations: window.allocations,
            counted: window.counted,
        }
    }
}
