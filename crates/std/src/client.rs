//! The client: [`fastwire_common::client::Client`] driven by two threads
//! per connection.
//!
//! ```text
//!  caller threads                 writer thread              reader thread
//!  lock; encode call; unlock      wait for output            read(socket)
//!  wake the writer                lock; take output; unlock  lock; decode responses;
//!  wait on the call's slot        write_all(socket)          complete slots; unlock
//! ```
//!
//! That is the picture under load. A caller that finds the connection
//! quiet writes its call itself, and a caller that finds nobody reading
//! reads until its response is in (leader/follower, in
//! [`fastwire_common::client`]): a lone call then wakes neither thread. The
//! reader thread reads only when handed the role, the writer only writes
//! what callers queued behind a busy connection.
//!
//! The calls, deadlines, reconnection and fire-and-forget logic are shared
//! with the other thread-based clients (see [`fastwire_common::client`]);
//! this module is only the I/O: blocking reads and writes on two threads.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fastwire_common::client::{Driver, Link, Output, ReadTurn};
use fastwire_common::{net, ClientError};

/// Stack size of the connection threads.
const STACK_SIZE: usize = 128 * 1024;

/// A client for one server address; see [`fastwire_common::client::Client`].
pub type Client = fastwire_common::client::Client<ThreadPair>;

/// A call sent and awaiting its response (see [`Client::start`]).
pub type PendingCall = fastwire_common::client::PendingCall<ThreadPair>;

/// The std driver: a reader and a writer thread per connection.
#[derive(Debug)]
pub struct ThreadPair;

impl Driver for ThreadPair {
    /// The socket, shared by both threads (one descriptor), to shut it down.
    type Handle = Arc<TcpStream>;

    fn start(link: Link<Self>, stream: TcpStream) -> io::Result<Arc<TcpStream>> {
        let stream = Arc::new(stream);
        let (read_half, write_half) = (Arc::clone(&stream), Arc::clone(&stream));
        let link = Arc::new(link);
        let reader = Arc::clone(&link);
        thread::Builder::new()
            .name("fastwire-client-writer".into())
            .stack_size(STACK_SIZE)
            .spawn(move || write_loop(&link, &write_half))?;
        thread::Builder::new()
            .name("fastwire-client-reader".into())
            .stack_size(STACK_SIZE)
            .spawn(move || read_loop(&reader, &read_half))?;
        Ok(stream)
    }

    fn wake(_: &Arc<TcpStream>) {
        // The writer waits on the client's condition variable, already notified.
    }

    fn stop(stream: &Arc<TcpStream>) {
        let _ = stream.shutdown(Shutdown::Both);
    }

    fn caller_io(stream: &Arc<TcpStream>) -> Option<Arc<TcpStream>> {
        // Callers may read and write the socket themselves (non-blocking
        // calls; the threads keep blocking ones): see `read_loop`.
        Some(Arc::clone(stream))
    }

    // The reader thread waits for its turn on the client's condition
    // variable, never on the socket: it is woken by nothing while callers
    // read, and looks at a vacancy on the watch's timer (`wait_read_turn`).
    const KEEPS_CALLERS_READING: bool = true;
}

fn read_loop(link: &Link<ThreadPair>, socket: &TcpStream) {
    let mut stream = socket;
    let config = link.config();
    let _ = stream.set_read_timeout(Some(config.handshake_timeout));
    let mut handshake_done = false;
    let mut buf = BytesMut::new();
    loop {
        // Callers read for themselves while they wait; this thread reads only
        // when handed the role (calls pending and no caller reading them),
        // or when a quiet connection that nobody reads has bytes or ended.
        match link.wait_read_turn() {
            ReadTurn::Gone => return,
            ReadTurn::Driver => {}
            ReadTurn::Nobody => {
                // Wait for bytes or the server's end of stream without
                // consuming them (a response is a caller's to read, if one
                // comes first), then read if nobody took the role meanwhile.
                let mut byte = [0u8; 1];
                let _ = stream.peek(&mut byte);
                if !link.may_read() {
                    continue;
                }
            }
        }
        match net::read_some(&mut stream, &mut buf, config.buffer_size) {
            Ok(0) => return link.server_closed(),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if !handshake_done && matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if link.handle_timeout(Instant::now()) {
                    return;
                }
                // Woken a little early: the rest of the handshakes' time.
                let left = link.handshake_deadline().map(|d| d.saturating_duration_since(Instant::now()));
                let _ = stream.set_read_timeout(left.map(|l| l.max(Duration::from_millis(1))));
                continue;
            }
            Err(e) => return link.die(ClientError::from_io(e)),
        }
        // Gives the reading role up when no call is pending any more.
        match link.received_by_driver(&mut buf) {
            Err(()) => return,
            Ok(r) if r.handshake_done && !handshake_done => {
                handshake_done = true;
                let _ = stream.set_read_timeout(None);
            }
            Ok(_) => {}
        }
    }
}

fn write_loop(link: &Link<ThreadPair>, socket: &TcpStream) {
    let mut stream = socket;
    let mut out = BytesMut::new();
    loop {
        match link.take_output(&mut out) {
            Output::Gone => return,
            Output::Empty(wait) => {
                if !link.wait_for_output(wait) {
                    return;
                }
                continue;
            }
            Output::Taken => {}
        }
        if let Some(delay) = link.config().batch_delay {
            // batch_delay: let more calls join this batch.
            thread::sleep(delay);
            if link.take_output(&mut out) == Output::Gone {
                return;
            }
        }
        if let Err(e) = stream.write_all(&out) {
            return link.write_failed(&e);
        }
        out.clear();
    }
}
