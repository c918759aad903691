//! # fastwire-glommio: io_uring, thread per core
//!
//! [glommio](https://docs.rs/glommio) runs one executor per core, pinned to
//! it, and does its I/O through `io_uring`: the program queues requests
//! (accept, read, write) in a ring shared with the kernel and collects their
//! completions, instead of asking "is this socket ready?" and then making a
//! system call per operation as a readiness reactor (mio, tokio) does. Each
//! executor here has its own `SO_REUSEPORT` listener, and a connection is a
//! task that never leaves its core: nothing is shared between cores but
//! counters, no lock, no work stealing.
//!
//! glommio needs Linux 5.8 or later and some locked memory (`ulimit -l`,
//! at least 512 KiB). Each executor here asks for [`IO_MEMORY`] of it, so
//! that several fit an 8 MiB limit. Where io_uring is missing or the limit is
//! too low, [`probe`] and every constructor return an error that says which
//! and what to change.
//!
//! Handlers that wait are `async` ([`Server::serve_async`]): a local task
//! per request on the connection's executor (`!Send` futures are fine).
//! Deferred answers from other threads wake the connection's task through an
//! `AtomicWaker`.
//!
//! ## Layout (the same in every fastwire backend)
//!
//! * [`server`]: [`Server`] (`bind`, `bind_with` and its [`Options`],
//!   `from_listener`, `from_listener_with`, then serve) and [`ServerHandle`] (stats,
//!   graceful shutdown); the executors and their accept loops.
//! * `connection`: one server connection's task.
//! * `clock`: one thread that wakes each waiting connection at its
//!   connection's next deadline, and all of them at a shutdown, so that none
//!   holds a glommio timer (each registered timer makes every reactor
//!   wake-up allocate).
//! * [`client`]: [`Client`], one reconnecting connection carrying many
//!   calls; its I/O lives on an executor of its own, and callers on any
//!   thread wake it.
//! * [`pool`]: [`Pool`], up to N clients per address.
//!
//! ```no_run
//! use fastwire_glommio::proto::{demo_handler, ClientConfig, ServerConfig};
//! use fastwire_glommio::{Client, Server};
//!
//! let server = Server::bind("127.0.0.1:0", ServerConfig::default())?.serve(demo_handler)?;
//! let client = Client::connect(server.local_addr(), ClientConfig::default())?;
//! assert_eq!(&*client.call(b"echo", b"hello")?, b"re:hello");
//! server.shutdown(std::time::Duration::from_secs(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod client;
mod clock;
mod connection;
pub mod pool;
pub mod server;

use std::io;

pub use client::{Client, PendingCall};
pub use fastwire_common::{ClientError, OwnedRequest, Reply, ServerStats, ShutdownReport};
pub use fastwire_proto as proto;
// The service's face at the root, the same on every backend.
pub use fastwire_proto::{
    ClientConfig, Compression, Handler, Limits, OverLimit, ProtocolConfig, Request, RespondError, Responder,
    ResponseWriter, ServerConfig,
};
/// The glommio version this backend runs on, for `async` handlers that use its timers and I/O.
pub use glommio;
pub use pool::{Balanced, Pool};
pub use server::{Accept, Options, Server, ServerHandle, SpawnedServer};

/// Locked memory each executor asks for (glommio's `io_memory`): small,
/// because fastwire does no file I/O, so that several executors fit a
/// modest `ulimit -l`.
pub const IO_MEMORY: usize = 128 * 1024;

/// The least locked memory glommio accepts.
const MIN_MEMLOCK: u64 = 512 * 1024;

/// Checks that this machine can run glommio: io_uring works and the locked
/// memory limit is high enough. The error says which and what to change.
// ANCHOR: probe
pub fn probe() -> io::Result<()> {
    static PROBE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| {
            if let Some(limit) = memlock_limit() {
                if limit < MIN_MEMLOCK {
                    return Err(unavailable(&format!(
                        "the locked-memory limit is {} KiB, glommio needs at least 512 KiB",
                        limit / 1024
                    )));
                }
            }
            let started = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .io_memory(IO_MEMORY)
                .name("fastwire-probe")
                .spawn(|| async {});
            match started.map(|handle| handle.join()) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(unavailable(&e.to_string())),
                Err(e) => Err(unavailable(&e.to_string())),
            }
        })
        .clone()
        .map_err(io::Error::other)
}
// ANCHOR_END: probe

/// The error text when glommio cannot start.
fn unavailable(why: &str) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let limit = memlock_limit().map_or_else(|| "unknown".to_owned(), |l| format!("{} KiB", l / 1024));
    format!(
        "glommio cannot start: {why}. It needs io_uring (Linux 5.8 or later; this kernel: {}) and at least \
         512 KiB of locked memory (ulimit -l; here: {limit}); raise the limit, or use another backend",
        kernel.trim()
    )
}

/// The soft locked-memory limit of this process, in bytes (`None`: unlimited or unknown).
fn memlock_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max locked memory"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
