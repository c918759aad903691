//! One server connection: a task on its core's executor that reads, serves
//! and writes in turn, like the tokio backend's, but every read and write is
//! an io_uring request that the executor submits in batches with others.
//!
//! Timeouts are the socket's own read timeout (glommio links a timeout to
//! each read request): the handshake timeout first, then a one-second wake-up
//! to give idle buffers back and to notice a shutdown.

use std::cell::Cell;
use std::io;
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fastwire_common::net;
use fastwire_proto::{Connection, Flow, Handler, ServerConn};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::server::{Local, Shared};

/// After this long without traffic a connection gives its buffers back.
const IDLE_RELEASE: Duration = Duration::from_secs(1);

/// The first read's size; it doubles while reads fill it.
const MIN_CHUNK: usize = 4096;

/// Counts the connection out of its executor and the server when it ends.
struct Guard<'a> {
    shared: &'a Shared,
    local: &'a Local,
    unwritten: &'a Cell<u64>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.local.open.set(self.local.open.get() - 1);
        self.local.unwritten.set(self.local.unwritten.get() - self.unwritten.get());
        self.shared.counters.close();
    }
}

/// Reads once, appending up to `chunk` bytes (zero-filled first: safe Rust
/// cannot read into uninitialised memory).
async fn read_some(stream: &mut TcpStream, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + chunk, 0);
    let result = stream.read(&mut buf[start..]).await;
    buf.truncate(start + *result.as_ref().unwrap_or(&0));
    result
}

pub(crate) async fn serve<H: Handler + 'static>(
    mut stream: TcpStream,
    shared: Arc<Shared>,
    handler: Arc<H>,
    local: Rc<Local>,
) {
    let unwritten = Cell::new(0);
    let _guard = Guard { shared: &shared, local: &local, unwritten: &unwritten };
    let config = &shared.config;
    let mut conn = ServerConn::new(config);
    let mut requests_seen = 0;
    let mut last_activity = Instant::now();
    let mut chunk = MIN_CHUNK;
    let _ = stream.set_read_timeout(Some(config.handshake_timeout));
    // A client that stops reading makes writes wait; after idle_timeout the connection is closed.
    let _ = stream.set_write_timeout(config.idle_timeout);
    let reason = 'conn: loop {
        // Serve everything received so far, writing as the output fills.
        let mut failed = None;
        loop {
            let flow = conn.process(&*handler);
            let requests = conn.requests();
            shared.counters.add_requests(requests - requests_seen);
            requests_seen = requests;
            if conn.has_output() {
                let n = conn.unwritten_responses() as u64;
                local.unwritten.set(local.unwritten.get() + n - unwritten.get());
                unwritten.set(n);
                let written = stream.write_all(conn.output()).await;
                let len = conn.output().len();
                conn.advance_output(len);
                local.unwritten.set(local.unwritten.get() - unwritten.get());
                unwritten.set(0);
                if written.is_err() {
                    break 'conn "write error";
                }
            }
            match flow {
                Ok(Flow::OutputFull) => continue,
                Ok(Flow::NeedInput) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            shared.counters.protocol_error();
            tracing::debug!(error = %e, "closing a connection: protocol error");
            break "protocol error";
        }
        if shared.stopping.load(Ordering::Acquire) {
            break "shutdown";
        }
        match read_some(&mut stream, conn.read_buffer(), chunk).await {
            Ok(0) => break "closed by the client",
            Ok(n) => {
                last_activity = Instant::now();
                if n == chunk {
                    chunk = (chunk * 2).min(config.buffer_size.max(MIN_CHUNK));
                }
                if conn.is_handshake_done() {
                    let wake_every = config.idle_timeout.map_or(IDLE_RELEASE, |t| t.min(IDLE_RELEASE));
                    let _ = stream.set_read_timeout(Some(wake_every));
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                if !conn.is_handshake_done() {
                    shared.counters.protocol_error();
                    break "no handshake within handshake_timeout";
                }
                if config.idle_timeout.is_some_and(|t| last_activity.elapsed() >= t) {
                    break "idle for idle_timeout";
                }
                // Quiet for a while: an idle connection keeps no large buffers.
                conn.release_buffers();
                chunk = MIN_CHUNK;
            }
            Err(_) => break "read error",
        }
    };
    tracing::trace!(reason, "connection done");
    // Everything is written: end-of-stream after the last response, then a
    // lingering close (see `fastwire_common::net::LINGER`) unless the client
    // already closed its side.
    let _ = stream.shutdown(Shutdown::Write).await;
    if reason != "closed by the client" {
        let _ = stream.set_read_timeout(Some(net::LINGER));
        let mut scratch = vec![0u8; 4096];
        let mut discarded = 0;
        while discarded < net::LINGER_MAX_BYTES {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    }
}
