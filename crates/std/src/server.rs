//! The server: an acceptor thread, two threads per connection.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fastwire_common::{net, Blocking, Registry, ServerCounters, Serving, ShutdownReport};
use fastwire_proto::{ConcurrencyLimit, Handler, ServerConfig};

use crate::connection::{self, ConnShared};

/// A bound listener, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    config: ServerConfig,
}

impl Server {
    /// Binds `addr` (IPv4 or IPv6; port 0 picks a free port).
    pub fn bind(addr: impl ToSocketAddrs, config: ServerConfig) -> io::Result<Server> {
        let listener = net::listener(net::resolve(addr)?, false)?;
        Ok(Server { listener, config })
    }

    /// A server on a listener the application bound itself (options it set
    /// on the socket are kept). It is put into blocking mode: the acceptor
    /// thread waits in `accept`.
    pub fn from_listener(listener: TcpListener, config: ServerConfig) -> io::Result<Server> {
        listener.set_nonblocking(false)?;
        Ok(Server { listener, config })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Starts serving `handler` on a background acceptor thread. The
    /// handler runs on each connection's reader thread, one request after
    /// another; one that waits stalls only its own connection, but all of
    /// it: defer (see [`fastwire_proto::deferred`]) or use
    /// [`serve_blocking`](Self::serve_blocking).
    pub fn serve<H: Handler + 'static>(self, handler: H) -> io::Result<ServerHandle> {
        let local_addr = self.listener.local_addr()?;
        let shared = Arc::new(Shared {
            limit: ConcurrencyLimit::for_config(&self.config),
            config: self.config,
            counters: ServerCounters::default(),
            stopping: AtomicBool::new(false),
            registry: Registry::default(),
        });
        let listener = self.listener.try_clone()?;
        let acceptor = {
            let shared = Arc::clone(&shared);
            let handler = Arc::new(handler);
            thread::Builder::new()
                .name(format!("fastwire-accept-{}", local_addr.port()))
                .spawn(move || accept_loop(self.listener, shared, handler))?
        };
        tracing::info!(%local_addr, backend = "std", "serving");
        Ok(ServerHandle::new(local_addr, Running { shared, listener, acceptor: Some(acceptor) }))
    }
}

impl Server {
    /// Starts serving, running `handler` on a pool of
    /// `config.blocking_threads` worker threads, so that requests of one
    /// connection are handled concurrently and answered as they finish (see
    /// [`fastwire_common::Blocking`]).
    pub fn serve_blocking<H: Handler + 'static>(self, handler: H) -> io::Result<ServerHandle> {
        let threads = self.config.blocking_threads;
        self.serve(Blocking::new(handler, threads)?)
    }
}

/// State shared by the acceptor, the connections and the handle.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    /// The server-wide concurrency limit, if configured.
    limit: Option<Arc<ConcurrencyLimit>>,
    pub(crate) counters: ServerCounters,
    /// Set when a graceful shutdown starts; readers check it on every
    /// wake-up, writers when they run out of work.
    pub(crate) stopping: AtomicBool,
    /// Open connections with a socket clone, so that shutdown can reach them.
    registry: Registry<(Arc<TcpStream>, Arc<ConnShared>)>,
}

impl Shared {
    pub(crate) fn deregister(&self, id: u64) {
        self.registry.deregister(id, &self.counters);
    }
}

fn accept_loop<H: Handler + 'static>(listener: TcpListener, shared: Arc<Shared>, handler: Arc<H>) {
    let max = shared.config.max_connections;
    while let Some(stream) = net::accept_admitted(&listener, &shared.stopping, &shared.counters, max) {
        if let Err(e) = start_connection(stream, &shared, &handler) {
            tracing::warn!(error = %e, "cannot start a connection");
        }
    }
}

fn start_connection<H: Handler + 'static>(stream: TcpStream, shared: &Arc<Shared>, handler: &Arc<H>) -> io::Result<()> {
    net::tune(&stream)?;
    let conn = ConnShared::new(&shared.config, shared.limit.clone(), stream.peer_addr().ok());
    // One descriptor per connection: the reader, the writer and the
    // registry share the socket (`&TcpStream` reads and writes).
    let stream = Arc::new(stream);
    let id = shared.registry.register((Arc::clone(&stream), Arc::clone(&conn)));
    connection::spawn(id, stream, conn, Arc::clone(shared), Arc::clone(handler)).inspect_err(|_| shared.deregister(id))
}

/// A running server's handle (address, stats, graceful shutdown); see
/// [`fastwire_common::ServerHandle`]. Dropping it shuts the server down at once.
pub type ServerHandle = fastwire_common::ServerHandle<Running>;

/// The std backend's running server: the acceptor thread and the connections' threads. Use it through [`ServerHandle`].
pub struct Running {
    shared: Arc<Shared>,
    listener: TcpListener,
    acceptor: Option<JoinHandle<()>>,
}

impl Serving for Running {
    fn counters(&self) -> &ServerCounters {
        &self.shared.counters
    }

    fn stop(&mut self, grace: Duration) -> ShutdownReport {
        self.shared.stopping.store(true, Ordering::Release);
        net::wake_acceptor(&self.listener);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }

        // A reader sees the flag when it next wakes: quiet connections send
        // their end-of-stream now, and the client's reply (its own close)
        // wakes their readers; busy ones finish what they serve first (their
        // writer looks again when it runs out of work). Each connection
        // then closes gracefully (a lingering close: see
        // `ServerConn::shut_write`). Not `shutdown(Read)` to wake them: after
        // it a reader could no longer wait for the client's end-of-stream.
        let now = Instant::now();
        self.shared.registry.for_each(|(stream, conn)| conn.close_if_quiet(stream, now));
        let started_with = self.shared.registry.len();
        let deadline = now + grace;
        let cut_off = loop {
            // The connections closed here linger in reads with no deadline:
            // this thread hands them the time when their linger ends.
            let mut next = deadline;
            self.shared.registry.for_each(|(_, conn)| {
                next = conn.stop_linger_deadline().map_or(next, |at| at.min(next));
            });
            let left = self.shared.registry.wait_empty(next);
            let now = Instant::now();
            if left == 0 || now >= deadline {
                break left;
            }
            self.shared.registry.for_each(|(stream, conn)| conn.end_linger_if_due(stream, now));
        };
        let mut report =
            ShutdownReport { cut_off, closed_gracefully: started_with.saturating_sub(cut_off), ..Default::default() };
        self.shared.registry.for_each(|(stream, conn)| {
            report.responses_lost += conn.unwritten_responses() as u64;
            report.deferred_cut += conn.deferred_in_flight() as u64;
            let _ = stream.shutdown(std::net::Shutdown::Both);
            conn.cut();
        });
        // The forced connections' threads now fail fast; wait for them briefly.
        self.shared.registry.wait_empty(Instant::now() + Duration::from_secs(1));
        report
    }
}
