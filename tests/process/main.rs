//! Tests that need the whole process to themselves: each counts something
//! every thread of the process changes (heap allocations, through the
//! harness's counting allocator installed here; open descriptors), so
//! they take turns ([`alone`]) and no other test shares their binary.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use fastwire::proto::{demo_handler, ServerConfig};
use fastwire_bench::backend::{start_server, RunningServer};
use fastwire_bench::harness::alloc::Counting;
use fastwire_bench::BackendKind;

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

/// Runs `check` on a demo server of each backend of `BackendKind::ALL`
/// that can run here, saying which cannot and why, and shuts each down.
fn each_demo_server(mut check: impl FnMut(BackendKind, &dyn RunningServer)) {
    for &kind in BackendKind::ALL {
        if let Some(why) = kind.unavailable() {
            eprintln!("skipped {kind}: {why}");
            continue;
        }
        let server = start_server(kind, "127.0.0.1:0".parse().unwrap(), ServerConfig::default(), demo_handler).unwrap();
        check(kind, &*server);
        server.shutdown(Duration::from_secs(5));
    }
}
