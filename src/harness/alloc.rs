//! A counting global allocator, for allocs/op.
//!
//! A library cannot install a global allocator for its users, so the
//! `fastwire` binary (and any program that wants allocs/op) installs
//! [`Counting`] itself:
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOCATOR: fastwire_bench::harness::alloc::Counting = fastwire_bench::harness::alloc::Counting;
//! ```
//!
//! Without it, [`installed`] is false and reports leave allocs/op empty.
//! Every allocation and reallocation of the whole process is counted: the
//! server and the client share the process, as in Go's benchmarks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations and reallocations.
pub struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; the
// only addition is a relaxed counter increment, which cannot allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations so far in this process (0 if [`Counting`] is not installed).
pub fn count() -> u64 {
    ALLOCATIONS.load(Relaxed)
}

/// Whether [`Counting`] is the global allocator of this process.
pub fn installed() -> bool {
    let before = count();
    let probe = std::hint::black_box(Box::new(0u64));
    drop(probe);
    count() != before
}
