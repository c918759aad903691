//! # fastwire-uring: a completion loop by hand
//!
//! The completion model, written out by hand beside the readiness reactor
//! of `fastwire-mio`, on the `io-uring` crate (the kernel interface and
//! nothing more), so that what io_uring costs can be told apart from what
//! a runtime built on it (glommio) costs.
//!
//! * **One loop per core**, each a thread with its own ring and its own
//!   `SO_REUSEPORT` listener; a connection never leaves its loop.
//! * **Requests, not readiness.** A readiness loop asks "may I read?" and
//!   then reads; a completion loop hands the kernel the operation itself,
//!   with its buffer, and later reaps the result. Submitting the next
//!   operations and waiting for results is one system call
//!   (`io_uring_enter`) per loop turn, however many connections moved.
//! * **Multishot accept**: one request accepts every connection until it
//!   is cancelled.
//! * **Multishot receive into a provided buffer ring**: one request per
//!   connection completes each time data arrives, in a buffer the kernel
//!   takes from the loop's ring of buffers when the data is there. A
//!   connection that waits holds no buffer; the loop copies the bytes into
//!   the protocol state and returns the buffer at once.
//! * **Sends from the connection's output buffer**, which stays untouched
//!   while the kernel owns it; responses made meanwhile queue behind it and
//!   go in the next send (batching by itself).
//! * **The handler runs inline** on the loop, as in `fastwire-mio`; a
//!   handler that waits defers (its answer comes back through the loop's
//!   `eventfd`), a blocking one runs on a worker pool
//!   ([`Server::serve_blocking`]), and a panic closes only its connection.
//! * [`Options`]: ring size, the provided buffers, and settings that exist
//!   to be measured: `SQPOLL` (a kernel thread that polls for submissions),
//!   registered files, pinned loops, and how connections reach the loops
//!   ([`Accept`]: by default one listener whose connections the first loop
//!   hands to the loops in turn, or a `SO_REUSEPORT` listener per loop).
//!
//! The client keeps a connection's pipelined I/O on a ring of its own (a
//! thread per connection); a call alone on a quiet connection is written
//! and read by its caller (leader/follower, as in every blocking client).
//!
//! io_uring is Linux's, and this backend needs Linux 6.1 (multishot
//! receive, buffer rings, deferred task running). [`probe`] says whether
//! this machine has what it needs, and why not.
//!
//! ## Layout (the same in every fastwire backend)
//!
//! * [`server`]: [`Server`] (`bind`, `bind_with` and its [`Options`],
//!   `from_listener`, `from_listener_with`, then serve) and [`ServerHandle`] (stats,
//!   graceful shutdown), and the completion loop.
//! * `connection`: one server connection's state and how it reacts to completions.
//! * [`client`]: [`Client`], one reconnecting connection carrying many calls,
//!   driven by a ring thread.
//! * [`pool`]: [`Pool`], up to N clients per address.
//! * `ring`: what the loops share: setting a ring up, submission, the
//!   provided buffer ring, and who owns a buffer while the kernel has it.
//!
//! ```no_run
//! use fastwire_uring::proto::{demo_handler, ClientConfig, ServerConfig};
//! use fastwire_uring::{Client, Server};
//!
//! let server = Server::bind("127.0.0.1:0", ServerConfig::default())?.serve(demo_handler)?;
//! let client = Client::connect(server.local_addr(), ClientConfig::default())?;
//! assert_eq!(&*client.call(b"echo", b"hello")?, b"re:hello");
//! server.shutdown(std::time::Duration::from_secs(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![cfg(target_os = "linux")]
// Unsafe code is allowed where the kernel is handed memory (the ring's
// submissions, the provided buffer ring, the eventfd), each block with the
// reason the memory stays valid for as long as the kernel may use it.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod client;
mod connection;
pub mod pool;
mod ring;
pub mod server;

use std::io;

pub use client::{Client, PendingCall};
pub use fastwire_common::{ClientError, Reply, ServerStats, ShutdownReport};
pub use fastwire_proto as proto;
// The service's face at the root, the same on every backend.
pub use fastwire_proto::{
    ClientConfig, Compression, Handler, Limits, OverLimit, ProtocolConfig, Request, RespondError, Responder,
    ResponseWriter, ServerConfig,
};
pub use pool::{Balanced, Pool};
pub use ring::{Accept, Options};
pub use server::{Server, ServerHandle};

/// The oldest kernel with everything this backend uses: multishot receive
/// (6.0), provided buffer rings (5.19) and deferred task running (6.1).
pub const MIN_KERNEL: (u32, u32) = (6, 1);

/// Checks that this machine can run the uring backend: a kernel recent
/// enough, io_uring not disabled, and the operations it uses supported.
/// The error says what is missing.
pub fn probe() -> io::Result<()> {
    static PROBE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    PROBE.get_or_init(check).clone().map_err(io::Error::other)
}

/// The error text when the backend cannot start on kernel `release`.
fn unavailable(why: &str, release: &str) -> String {
    format!(
        "the uring backend cannot start: {why}. It needs io_uring with multishot receive and provided buffer \
         rings (Linux {}.{} or later; this kernel: {release}); use another backend",
        MIN_KERNEL.0, MIN_KERNEL.1
    )
}

/// Whether kernel `release` (as `uname -r` prints it) is recent enough.
fn check_kernel(release: &str) -> Result<(), String> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if version < MIN_KERNEL {
        return Err(unavailable("the kernel is too old", release));
    }
    Ok(())
}

fn check() -> Result<(), String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    check_kernel(release)?;
    let unavailable = |why: &str| unavailable(why, release);
    let ring = ring::build(&Options { entries: 8, ..Options::default() }).map_err(|e| {
        unavailable(&format!("io_uring_setup failed ({e}; io_uring may be disabled: sysctl kernel.io_uring_disabled)"))
    })?;
    let mut ops = io_uring::Probe::new();
    ring.submitter().register_probe(&mut ops).map_err(|e| unavailable(&format!("cannot probe io_uring ({e})")))?;
    use io_uring::opcode;
    for (code, name) in [
        (opcode::AcceptMulti::CODE, "accept"),
        (opcode::RecvMulti::CODE, "recv"),
        (opcode::Send::CODE, "send"),
        (opcode::Read::CODE, "read"),
        (opcode::PollAdd::CODE, "poll"),
        (opcode::AsyncCancel::CODE, "cancel"),
    ] {
        if !ops.is_supported(code) {
            return Err(unavailable(&format!("io_uring has no {name} operation here")));
        }
    }
    ring::BufRing::new(&ring, 1, 512, 0).map_err(|e| unavailable(&format!("cannot register a buffer ring ({e})")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_kernel_is_refused_with_what_is_needed() {
        let e = check_kernel("5.15.0-91-generic").unwrap_err();
        assert!(e.contains("too old") && e.contains("Linux 6.1 or later") && e.contains("5.15.0-91-generic"), "{e}");
        assert!(check_kernel("6.0.9").is_err(), "multishot receive is 6.0, deferred task running 6.1");
        assert!(check_kernel("").is_err(), "an unreadable version is not taken as recent");
        assert!(check_kernel("6.1.0").is_ok() && check_kernel("6.18.44-fc-v669").is_ok());
    }
}
