//! What the server loops and the client drivers share: building a ring with
//! the chosen [`Options`], queueing submissions, the tags that say which
//! operation a completion belongs to, and the provided-buffer ring.
//!
//! ## Who owns a buffer while an operation is in flight
//!
//! With readiness (epoll) the application asks "may I read?" and then reads
//! into whatever buffer it likes. With completions the application hands
//! the kernel a buffer *with the request*, and the kernel writes into it (or
//! reads from it) at some later moment, after `io_uring_enter` has
//! returned. From submission until the completion arrives the buffer is the
//! kernel's: it must not move, be freed, be reallocated by a growing
//! `Vec`, or be read by the application. Everything unsafe in this crate is
//! about keeping that promise:
//!
//! * **Receives** use a *provided buffer ring* ([`BufRing`]): a ring of
//!   buffers the loop owns and the kernel picks from when data actually
//!   arrives. A connection waiting for a request holds no buffer at all;
//!   the completion says which buffer was filled; the loop copies the bytes
//!   into the connection's protocol state and gives the buffer back at once.
//! * **Sends** go from the connection's own `sending` buffer, filled by
//!   swapping it with the protocol state's output (no copy), and left alone
//!   until the send completes. Responses produced meanwhile queue in the
//!   protocol state's other buffer.
//! * A connection is freed only once no operation of its own is in flight:
//!   closing a descriptor does not cancel a request that already holds the
//!   file, so removal shuts the socket down, cancels its receive, and waits
//!   for the completions.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, SubmitArgs, Timespec};
use io_uring::{cqueue, squeue, IoUring};

/// How many loops, how each ring is set up and how connections reach the
/// loops. The defaults are what measured best here, or no worse (one loop
/// per available core); the other settings
/// exist to be measured (`fastwire compare --backends
/// uring,uring-sqpoll,uring-fixed,uring-reuseport`; the figures are in the
/// guide's chapter "A completion loop by hand").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Server loops, one thread and one ring each (at least one).
    pub loops: usize,
    /// Submission queue entries per ring (the completion queue has twice
    /// as many). A full queue is submitted and the push retried, so this
    /// bounds a batch, not the number of connections.
    pub entries: u32,
    /// Provided receive buffers per server loop (a power of two, at most 32,768).
    pub buffers: u16,
    /// Size of each provided receive buffer.
    pub buffer_size: u32,
    /// `IORING_SETUP_SQPOLL`: a kernel thread polls the submission queue, so
    /// submitting costs no system call; it sleeps after this many
    /// milliseconds without work. It costs a core while it spins, which on
    /// a two-core machine is one of two. `None` (the default): submissions
    /// are made by `io_uring_enter`, as the completions are waited for anyway.
    pub sqpoll_idle_ms: Option<u32>,
    /// Registered files: each server connection's socket is entered in the
    /// ring's file table and operations name it by index, which saves the
    /// kernel a descriptor look-up (and its reference count) per operation.
    pub fixed_files: bool,
    /// Pins server loop `i` to CPU `i` (modulo the CPUs this process may
    /// use), as glommio pins its executors: a loop's connections, ring and
    /// buffers then stay in one core's caches, and the scheduler never
    /// moves a loop onto the core where the other one runs. Off by
    /// default: pinning showed no gain (the guide's io_uring chapter says
    /// how it was measured), and a pinned loop cannot move away from a
    /// core that the application's own threads crowd.
    pub pin: bool,
    /// How new connections reach the loops (see [`Accept`]).
    pub accept: Accept,
}

pub use fastwire_common::Accept;

impl Default for Options {
    fn default() -> Self {
        Options {
            loops: fastwire_common::net::available_cores(),
            entries: 256,
            buffers: 128,
            buffer_size: 16 * 1024,
            sqpoll_idle_ms: None,
            fixed_files: false,
            pin: PIN_DEFAULT,
            accept: Accept::RoundRobin,
        }
    }
}

/// Whether loops are pinned by default (see [`Options::pin`]).
const PIN_DEFAULT: bool = false;

/// Pins the calling thread to the `index`-th CPU it may run on.
pub(crate) fn pin_to(index: usize) -> io::Result<()> {
    // SAFETY: `cpu_set_t` is plain data; the calls read and write only the
    // set passed to them.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return Err(io::Error::last_os_error());
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &allowed)).collect();
        if cpus.is_empty() {
            return Ok(());
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[index % cpus.len()], &mut one);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Builds a ring for the calling thread. Without SQPOLL it is marked
/// single-issuer with deferred task running (Linux 6.1): completions are
/// produced only when this thread enters the kernel to wait for them,
/// instead of interrupting it whenever the network delivers.
pub(crate) fn build(options: &Options) -> io::Result<IoUring> {
    let entries = options.entries.clamp(8, 32_768).next_power_of_two();
    let mut builder = IoUring::builder();
    builder.setup_cqsize(entries * 2);
    match options.sqpoll_idle_ms {
        Some(idle) => {
            builder.setup_sqpoll(idle);
        }
        None => {
            builder.setup_single_issuer().setup_defer_taskrun();
        }
    }
    builder.build(entries)
}

/// What a completion is for: the low byte of its `user_data`; the rest is
/// the connection's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Op {
    /// The listener's multishot accept.
    Accept = 1,
    /// A read of the loop's `eventfd`: another thread woke the loop.
    Wake = 2,
    /// A connection's receive (multishot on the server).
    Recv = 3,
    /// A connection's send.
    Send = 4,
    /// A cancellation request; its own completion carries nothing.
    Cancel = 5,
    /// A readiness poll (the client watching a quiet connection).
    Poll = 6,
}

impl Op {
    pub(crate) fn tag(self, key: usize) -> u64 {
        ((key as u64) << 8) | self as u64
    }

    /// The operation and key of a completion's `user_data`.
    pub(crate) fn untag(user_data: u64) -> Option<(Op, usize)> {
        let key = (user_data >> 8) as usize;
        let op = match user_data as u8 {
            1 => Op::Accept,
            2 => Op::Wake,
            3 => Op::Recv,
            4 => Op::Send,
            5 => Op::Cancel,
            6 => Op::Poll,
            _ => return None,
        };
        Some((op, key))
    }
}

/// One completion, copied out of the queue so that handling it may submit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Completion {
    pub(crate) op: Op,
    pub(crate) key: usize,
    pub(crate) result: i32,
    pub(crate) flags: u32,
}

impl Completion {
    /// More completions will come for this request (a multishot one goes on).
    pub(crate) fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// The provided buffer this completion filled, if any.
    pub(crate) fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

/// Queues `entry`, submitting first if the queue is full.
///
/// # Safety
/// Every buffer and descriptor `entry` names must stay valid until its
/// completion arrives (see the module docs).
pub(crate) unsafe fn push(ring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: the caller keeps what the entry points to alive.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        match ring.submit() {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                // The completion queue is full: the caller must reap first;
                // it does so on every turn, so this cannot last.
                return Err(e);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Submits what is queued and waits for at least one completion, at most
/// `timeout` (`Some(ZERO)`: do not wait). A timeout or an interruption is
/// not an error.
pub(crate) fn submit_and_wait(ring: &IoUring, timeout: Option<Duration>) -> io::Result<()> {
    let result = match timeout {
        Some(t) if t.is_zero() => ring.submit(),
        Some(t) => {
            let ts = Timespec::from(t);
            ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts))
        }
        None => ring.submit_and_wait(1),
    };
    match result {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Moves every completion out of the queue into `into` (reused: no allocation once it has grown).
pub(crate) fn reap(ring: &mut IoUring, into: &mut Vec<Completion>) {
    into.clear();
    for cqe in ring.completion() {
        if let Some((op, key)) = Op::untag(cqe.user_data()) {
            into.push(Completion { op, key, result: cqe.result(), flags: cqe.flags() });
        }
    }
}

/// The errno of a negative completion result, as an `io::Error`.
pub(crate) fn error(result: i32) -> io::Error {
    io::Error::from_raw_os_error(-result)
}

/// A provided buffer ring: buffers the kernel picks from when a multishot
/// receive has data, handed back by the application once it has copied
/// what they hold.
///
/// The ring itself is an array of `(address, length, id)` entries shared
/// with the kernel (page-aligned, so it is mapped, not allocated), whose
/// last field of entry 0 doubles as the *tail*: the application writes
/// entries at the tail and publishes them by advancing it; the kernel
/// consumes from its own head. Giving a buffer back is two stores.
pub(crate) struct BufRing {
    entries: *mut BufRingEntry,
    mapped: usize,
    count: u16,
    tail: u16,
    buffers: Box<[u8]>,
    size: usize,
    group: u16,
}

// SAFETY: the raw pointer is to memory this value owns (mapped for it and
// unmapped on drop); it is used by one thread at a time, the loop owning it.
unsafe impl Send for BufRing {}

impl BufRing {
    /// Maps `count` entries of `size`-byte buffers and registers them with
    /// `ring` as buffer group `group` (Linux 5.19).
    pub(crate) fn new(ring: &IoUring, count: u16, size: u32, group: u16) -> io::Result<BufRing> {
        let count = count.clamp(1, 32_768).next_power_of_two();
        let page = 4096;
        let mapped = (count as usize * std::mem::size_of::<BufRingEntry>()).div_ceil(page) * page;
        // SAFETY: an anonymous private mapping, checked below; it is ours
        // until `drop` unmaps it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let size = size.max(512) as usize;
        let mut ring_buf = BufRing {
            entries: addr.cast(),
            mapped,
            count,
            tail: 0,
            buffers: vec![0u8; count as usize * size].into_boxed_slice(),
            size,
            group,
        };
        // SAFETY: the entries are mapped for as long as `ring_buf` lives, and
        // it unregisters the group before unmapping them (it must outlive
        // the ring's use of them: the owner drops it after the ring's last
        // receive has completed, or with the ring).
        unsafe { ring.submitter().register_buf_ring_with_flags(addr as u64, count, group, 0) }?;
        for id in 0..count {
            ring_buf.put(id);
        }
        ring_buf.publish();
        Ok(ring_buf)
    }

    /// The buffer group id to name in receives.
    pub(crate) fn group(&self) -> u16 {
        self.group
    }

    /// The first `len` bytes of buffer `id`, filled by a receive.
    pub(crate) fn get(&self, id: u16, len: usize) -> &[u8] {
        let start = id as usize * self.size;
        &self.buffers[start..start + len.min(self.size)]
    }

    // ANCHOR: buf_ring
    /// Gives buffer `id` back to the kernel.
    pub(crate) fn recycle(&mut self, id: u16) {
        self.put(id);
        self.publish();
    }

    fn put(&mut self, id: u16) {
        let index = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `index < count`, within the mapping; the kernel reads only
        // entries between its head and the published tail, and this one is
        // past the tail until `publish`.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(self.buffers[id as usize * self.size..].as_ptr() as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lies in entry 0, within the mapping; it is
        // shared with the kernel, hence the atomic store (Release: the
        // entries written before are visible first).
        let tail = unsafe { &*(BufRingEntry::tail(self.entries).cast::<AtomicU16>()) };
        tail.store(self.tail, Ordering::Release);
    }
    // ANCHOR_END: buf_ring
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once. The kernel's
        // registration ends with its ring, which the owner drops first.
        unsafe { libc::munmap(self.entries.cast(), self.mapped) };
    }
}

/// An `eventfd` that other threads write to wake a loop blocked in its
/// ring; the loop keeps a read of it in flight, so a write completes that
/// read and ends the wait.
pub(crate) struct EventFd {
    fd: std::os::fd::OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: a plain system call; the descriptor is checked and owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(EventFd { fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) } })
    }

    pub(crate) fn raw(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    /// Wakes the loop (adds one to the counter).
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our descriptor.
        let _ = unsafe { libc::write(self.raw(), (&one as *const u64).cast(), 8) };
    }
}

impl std::fmt::Debug for EventFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventFd").field("fd", &self.raw()).finish()
    }
}
