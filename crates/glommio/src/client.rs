//! The client: [`fastwire_common::client::Client`] whose connection I/O
//! lives on a glommio executor of its own.
//!
//! Callers on any thread encode their call into the connection's output
//! (under the client's lock) and, if the output was empty, raise the
//! connection's wake flag; the executor's writer task, parked on that flag,
//! is woken from the foreign thread (glommio queues such wake-ups to the
//! executor), takes the output and writes it. A reader task reads responses
//! and completes the calls. Each call waits on its own slot.
//!
//! That is the picture under load. A call alone on a quiet connection is
//! written and read by its caller, on a duplicate of the socket's
//! descriptor (leader/follower, in [`fastwire_common::client`]): glommio's
//! executor parks and wakes at a cost (its park path allocates and arms
//! timers), and a round trip that wakes no executor avoids it twice. The
//! executor reads only while it holds the reading role; while it does not,
//! the process's clock wakes its reader every 100 ms to peek at the socket
//! (without consuming anything), so that a server's close of a quiet
//! connection is noticed and the server's lingering close is not held up.

use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use fastwire_common::client::{socket_has_news, Driver, Link, Output, ReadWatch, QUIET_WATCH, VACANT_WATCH};
use fastwire_common::ClientError;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::{LocalExecutorBuilder, Placement};

use crate::IO_MEMORY;

/// A client for one server address; see [`fastwire_common::client::Client`].
pub type Client = fastwire_common::client::Client<ExecutorThread>;

/// A call sent and awaiting its response (see [`Client::start`]).
pub type PendingCall = fastwire_common::client::PendingCall<ExecutorThread>;

/// The glommio driver: an executor per connection.
#[derive(Debug)]
pub struct ExecutorThread;

/// How callers reach a connection's executor.
#[derive(Debug)]
pub struct UringHandle {
    /// Raised for the writer: output is queued (or the connection ends).
    wake: WakeFlag,
    /// Raised for the reader: the reading role was handed to the driver
    /// (or the connection ends).
    read: WakeFlag,
    /// A duplicate of the socket: to shut it down, and for callers' own I/O.
    socket: Arc<std::net::TcpStream>,
    /// The reader watches a possible vacancy of the reading role: the
    /// clock raises `read` every `VACANT_WATCH` while this is set.
    watching_vacancy: AtomicBool,
}

/// A flag another thread raises to wake one parked task.
#[derive(Debug, Default)]
struct WakeFlag {
    raised: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl WakeFlag {
    fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        if let Some(waker) = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            waker.wake();
        }
    }

    /// Ready once raised (and lowers it again).
    async fn wait(&self) {
        poll_fn(|cx| {
            if self.raised.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
            // Raised between the check and the registration: do not miss it.
            if self.raised.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

impl crate::clock::Tick for UringHandle {
    fn tick(&self) {
        self.wake.raise();
    }
}

/// The clock's entry for the reader's watch: every
/// [`QUIET_WATCH`](fastwire_common::client::QUIET_WATCH), as the other
/// blocking clients watch a quiet connection.
struct QuietWatch(Arc<UringHandle>);

impl crate::clock::Tick for QuietWatch {
    fn tick(&self) {
        self.0.read.raise();
    }
}

/// The clock's entry for the reader's watch of a vacant role: every
/// [`VACANT_WATCH`], but it wakes the reader only while it watches one (a
/// glommio timer per look would allocate).
struct VacancyWatch(Arc<UringHandle>);

impl crate::clock::Tick for VacancyWatch {
    fn tick(&self) {
        if self.0.watching_vacancy.load(Ordering::Relaxed) {
            self.0.read.raise();
        }
    }
}

impl Driver for ExecutorThread {
    type Handle = Arc<UringHandle>;

    fn start(link: Link<Self>, stream: std::net::TcpStream) -> io::Result<Arc<UringHandle>> {
        crate::probe()?;
        let handle = Arc::new(UringHandle {
            wake: WakeFlag::default(),
            read: WakeFlag::default(),
            socket: Arc::new(stream.try_clone()?),
            watching_vacancy: AtomicBool::new(false),
        });
        let driver = Arc::clone(&handle);
        // Owned until the executor adopts it, so it is closed if the executor cannot start.
        let fd = OwnedFd::from(stream);
        LocalExecutorBuilder::new(Placement::Unbound).io_memory(IO_MEMORY).name("fastwire-glommio-client").spawn(
            move || async move {
                // SAFETY: `fd` is a connected TCP socket whose ownership
                // `into_raw_fd` gave up; this takes it over.
                let stream = unsafe { glommio::net::TcpStream::from_raw_fd(fd.into_raw_fd()) };
                run(Rc::new(link), stream, driver).await
            },
        )?;
        Ok(handle)
    }

    fn wake(handle: &Arc<UringHandle>) {
        handle.wake.raise();
    }

    fn stop(handle: &Arc<UringHandle>) {
        let _ = handle.socket.shutdown(Shutdown::Both);
        handle.wake.raise();
        handle.read.raise();
    }

    fn caller_io(handle: &Arc<UringHandle>) -> Option<Arc<std::net::TcpStream>> {
        // The executor owns the socket for its own reads and writes, but it
        // reads only while it holds the reading role and writes only what it
        // took under the client's lock, so callers can use a duplicate of
        // the descriptor meanwhile: non-blocking `send` and `recv` never
        // race glommio for the same bytes.
        Some(Arc::clone(&handle.socket))
    }

    fn read_needed(handle: &Arc<UringHandle>) {
        handle.read.raise();
    }

    // The reader reads only while it holds the role; while callers read
    // with calls pending, the clock wakes it every `VACANT_WATCH` to look
    // at the role, else every `QUIET_WATCH`.
    const KEEPS_CALLERS_READING: bool = true;

    fn watch_vacancy(handle: &Arc<UringHandle>) {
        handle.read.raise();
    }
}

async fn run(link: Rc<Link<ExecutorThread>>, stream: glommio::net::TcpStream, handle: Arc<UringHandle>) {
    let (reader, writer) = futures_lite::io::split(stream);
    // The connection's deadlines (a call's, the idle close): the process's
    // clock wakes the writer then, to hand the connection the time (a
    // glommio timer would make every wake-up of this executor allocate).
    let alarm = crate::clock::Alarm::new(Arc::downgrade(&handle) as std::sync::Weak<dyn crate::clock::Tick>);
    let writer_task = glommio::spawn_local(write_loop(Rc::clone(&link), Arc::clone(&handle), writer, alarm));
    // The reader's watches of a quiet connection, dropped (and so forgotten
    // by the clock) when the reader returns.
    let watch: Arc<dyn crate::clock::Tick> = Arc::new(QuietWatch(Arc::clone(&handle)));
    crate::clock::every(Arc::downgrade(&watch), QUIET_WATCH);
    let vacancy_watch: Arc<dyn crate::clock::Tick> = Arc::new(VacancyWatch(Arc::clone(&handle)));
    crate::clock::every(Arc::downgrade(&vacancy_watch), VACANT_WATCH);
    read_loop(&link, &handle, reader).await;
    // The connection is over: let the writer see it and finish.
    handle.wake.raise();
    writer_task.await;
}

/// The writer task: parked on the wake flag until callers queue output,
/// then writes what it took.
async fn write_loop(
    link: Rc<Link<ExecutorThread>>,
    handle: Arc<UringHandle>,
    mut writer: futures_lite::io::WriteHalf<glommio::net::TcpStream>,
    alarm: crate::clock::Alarm,
) {
    let mut out = BytesMut::new();
    loop {
        match link.take_output(&mut out) {
            Output::Gone => return,
            Output::Empty(wait) => {
                // Parked until a caller queues output, or the alarm goes off
                // at the connection's next deadline for `take_output` to
                // hand it the time (no timer per wait: each would allocate).
                if let Some(at) = Instant::now().checked_add(wait) {
                    alarm.arm(at);
                }
                handle.wake.wait().await;
                continue;
            }
            Output::Taken => {}
        }
        if let Some(delay) = link.config().batch_delay {
            // batch_delay: let more calls join this batch.
            glommio::timer::sleep(delay).await;
            if link.take_output(&mut out) == Output::Gone {
                return;
            }
        }
        if let Err(e) = writer.write_all(&out).await {
            return link.write_failed(&e);
        }
        out.clear();
    }
}

/// What the reader does next once the handshake is done.
enum Turn {
    /// Read the socket.
    Read,
    /// Look again (it was woken).
    Again,
    /// The connection is gone.
    Stop,
}

/// Leader/follower: the reader reads only while holding the reading role;
/// a caller alone on a quiet connection reads for itself (see
/// `Driver::caller_io`), and hands the role over when it leaves with calls
/// still pending (`read_needed` raises the flag).
async fn take_turn(link: &Link<ExecutorThread>, handle: &UringHandle, vacancy_seen: &mut Option<u64>) -> Turn {
    match link.try_read_role() {
        None => return Turn::Stop,
        Some(true) => return Turn::Read,
        Some(false) => {}
    }
    // Calls in progress that callers read (or will: a vacancy) are watched
    // on each of the clock's `VACANT_WATCH` wakes; otherwise a slow watch
    // is announced, and checked once more after announcing (a vacancy made
    // meanwhile wakes this reader).
    let fast = link.watch_needed() || link.announce_sleep(true);
    if fast {
        link.announce_sleep(false);
    }
    handle.watching_vacancy.store(fast, Ordering::Relaxed);
    if fast {
        // Take a vacancy that lasted.
        return match link.read_watch(vacancy_seen) {
            ReadWatch::Gone => Turn::Stop,
            ReadWatch::Driver => {
                handle.watching_vacancy.store(false, Ordering::Relaxed);
                Turn::Read
            }
            ReadWatch::Callers | ReadWatch::Quiet => {
                handle.read.wait().await;
                Turn::Again
            }
        };
    }
    // Woken by a hand-over, a stop, a vacancy, or the clock's watch (every
    // `QUIET_WATCH`): a quiet connection nobody reads must still notice the
    // server's close, so on each wake the socket is peeked at, without
    // consuming anything, and read here if it has news and nobody else
    // reads it.
    handle.read.wait().await;
    if socket_has_news(&handle.socket) && link.may_read() {
        Turn::Read
    } else {
        Turn::Again
    }
}

/// The reader, on the connection's task: completes calls until the
/// connection ends.
async fn read_loop(
    link: &Link<ExecutorThread>,
    handle: &UringHandle,
    mut reader: futures_lite::io::ReadHalf<glommio::net::TcpStream>,
) {
    let config = link.config();
    let mut handshake_done = false;
    let mut buf = BytesMut::new();
    // Reads land here, zeroed once, and are copied into `buf`: zeroing the
    // room for every read (safe Rust reads only into initialised memory)
    // would cost a memset of the whole buffer per response.
    let mut scratch = vec![0u8; config.buffer_size.clamp(4096, 64 * 1024)];
    let mut vacancy_seen = None;
    loop {
        if handshake_done {
            match take_turn(link, handle, &mut vacancy_seen).await {
                Turn::Read => {}
                Turn::Again => continue,
                Turn::Stop => break,
            }
        }
        let read = if handshake_done {
            Some(reader.read(&mut scratch).await)
        } else {
            // Until the server's handshakes are in, a read may wait only
            // until their deadline; then the connection is handed the time.
            // (No deadline: the connection is over.)
            let Some(deadline) = link.handshake_deadline() else { break };
            let left = deadline.saturating_duration_since(Instant::now());
            glommio::timer::timeout(left, async { Ok(reader.read(&mut scratch).await) }).await.ok()
        };
        match read {
            None if link.handle_timeout(Instant::now()) => break,
            None => continue,
            Some(Ok(0)) => {
                link.server_closed();
                break;
            }
            Some(Ok(n)) => buf.extend_from_slice(&scratch[..n]),
            Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Some(Err(e)) => {
                link.die(ClientError::from_io(e));
                break;
            }
        }
        match link.received_by_driver(&mut buf) {
            Err(()) => break,
            Ok(r) => handshake_done |= r.handshake_done,
        }
    }
}
