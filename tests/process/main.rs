//! Tests that need the whole process to themselves: each counts something
//! every thread of the process changes (heap allocations, through the
//! harness's counting allocator installed here; open descriptors), so
//! they take turns ([`alone`]) and no other test shares their binary.

use std::sync::{Mutex, MutexGuard};

use fastwire_bench::harness::alloc::Counting;

mod allocations;
mod descriptors;

// The harness's counting allocator: the system allocator plus a counter.
#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Held by each test for its whole run, so that no other test of this
/// binary allocates or opens descriptors meanwhile (a failed test's
/// poisoned lock is taken all the same).
fn alone() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}
