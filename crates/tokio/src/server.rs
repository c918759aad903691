//! The server: accept loops and connection tasks on runtimes of its own.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use std::future::Future;

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::task::{Context, Poll};

use fastwire_common::{net, Blocking, OwnedRequest, Registry, ServerCounters, Serving, ShutdownReport};
use fastwire_proto::driver::CallGuard;
use fastwire_proto::{ConcurrencyLimit, Handler, Request, Responder, ResponseWriter, ServerConfig};
use futures_util::future::{join, ready, CatchUnwind, FutureExt, Join, Ready};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

use crate::connection::{self, Progress, TaskWake};

pub use fastwire_common::Accept;

// ANCHOR: flavor
/// How the server's runtime is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// tokio's multi-threaded work-stealing runtime with this many workers,
    /// and one listener.
    MultiThread {
        /// Worker threads.
        workers: usize,
    },
    /// This many current-thread runtimes, one per thread; a connection
    /// lives on the runtime it was handed to.
    PerCore {
        /// Threads (one per core is the idea).
        cores: usize,
        /// How connections reach the runtimes: by default the first
        /// runtime accepts on one listener and hands them out in turn;
        /// [`Accept::ReusePort`] gives each its own `SO_REUSEPORT` listener.
        accept: Accept,
    },
}
// ANCHOR_END: flavor

impl Flavor {
    /// Multi-thread with one worker per available core.
    pub fn multi_thread() -> Flavor {
        Flavor::MultiThread { workers: net::available_cores() }
    }

    /// One runtime per available core, connections handed out in turn.
    pub fn per_core() -> Flavor {
        Flavor::PerCore { cores: net::available_cores(), accept: Accept::RoundRobin }
    }
}

/// How the server is laid out. The default is tokio's multi-threaded
/// runtime with one worker per available core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The runtime's layout.
    pub flavor: Flavor,
}

impl Default for Options {
    fn default() -> Options {
        Options { flavor: Flavor::multi_thread() }
    }
}

/// Bound listeners, not yet serving.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<std::net::TcpListener>,
    config: ServerConfig,
    flavor: Flavor,
}

impl Server {
    /// Binds `addr` (IPv4 or IPv6; port 0 picks a free port) with the
    /// default [`Options`]: tokio's multi-threaded runtime.
    pub fn bind(addr: impl ToSocketAddrs, config: ServerConfig) -> io::Result<Server> {
        Self::bind_with(addr, config, Options::default())
    }

    /// Binds `addr` laid out as `options` say. For [`Flavor::PerCore`] with
    /// [`Accept::ReusePort`] one `SO_REUSEPORT` listener per core is bound
    /// (port 0 is resolved by the first, and the others bind the same port).
    pub fn bind_with(addr: impl ToSocketAddrs, config: ServerConfig, options: Options) -> io::Result<Server> {
        let addr = net::resolve(addr)?;
        let flavor = options.flavor;
        let listeners = match flavor {
            Flavor::MultiThread { .. } => vec![net::listener(addr, false)?],
            Flavor::PerCore { cores, accept: Accept::ReusePort } => net::reuseport_listeners(addr, cores)?,
            Flavor::PerCore { accept: Accept::RoundRobin, .. } => vec![net::listener(addr, false)?],
        };
        for listener in &listeners {
            listener.set_nonblocking(true)?;
        }
        Ok(Server { listeners, config, flavor })
    }

    /// A server on a listener the application bound itself (options it set
    /// on the socket are kept), with the default [`Options`], or on the
    /// application's runtime with [`spawn`](Server::spawn). It is put into
    /// non-blocking mode.
    pub fn from_listener(listener: std::net::TcpListener, config: ServerConfig) -> io::Result<Server> {
        Self::from_listener_with(listener, config, Options::default())
    }

    /// A server laid out as `options` say on a listener the application
    /// bound itself. One listener cannot be a listener per core:
    /// [`Flavor::PerCore`] with [`Accept::ReusePort`] is refused
    /// (`InvalidInput`); bind with [`bind_with`](Server::bind_with) for it.
    pub fn from_listener_with(
        listener: std::net::TcpListener,
        config: ServerConfig,
        options: Options,
    ) -> io::Result<Server> {
        if let Flavor::PerCore { accept, .. } = options.flavor {
            net::refuse_reuseport(accept)?;
        }
        listener.set_nonblocking(true)?;
        Ok(Server { listeners: vec![listener], config, flavor: options.flavor })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listeners[0].local_addr()
    }

    fn shared(&self) -> (Arc<Shared>, watch::Sender<bool>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            limit: ConcurrencyLimit::for_config(&self.config),
            config: self.config.clone(),
            counters: ServerCounters::default(),
            registry: Registry::default(),
            stop: stop_rx,
        });
        (shared, stop_tx)
    }

    /// Starts serving `handler` on runtime threads of the server's own.
    pub fn serve<H: Handler + 'static>(self, handler: H) -> io::Result<ServerHandle> {
        self.serve_service(Inline(Arc::new(handler)))
    }

    fn serve_service<S: Service>(self, service: S) -> io::Result<ServerHandle> {
        let local_addr = self.local_addr()?;
        let (shared, stop_tx) = self.shared();
        let handler = Arc::new(service);
        let mut threads = Vec::new();
        match self.flavor {
            Flavor::MultiThread { workers } => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers.max(1))
                    .thread_name("fastwire-tokio")
                    .enable_all()
                    .build()?;
                let listener = self.listeners.into_iter().next().expect("one listener");
                let (shared, handler) = (Arc::clone(&shared), Arc::clone(&handler));
                threads.push(thread::Builder::new().name("fastwire-tokio-main".into()).spawn(move || {
                    runtime.block_on(run(listener, shared, handler));
                })?);
            }
            Flavor::PerCore { accept: Accept::ReusePort, .. } => {
                for (core, listener) in self.listeners.into_iter().enumerate() {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    let (shared, handler) = (Arc::clone(&shared), Arc::clone(&handler));
                    threads.push(thread::Builder::new().name(format!("fastwire-tokio-core{core}")).spawn(
                        move || {
                            runtime.block_on(run(listener, shared, handler));
                        },
                    )?);
                }
            }
            Flavor::PerCore { cores, accept: Accept::RoundRobin } => {
                // Runtime 0 accepts and hands every other connection to the
                // next runtime's inbox, as a std stream (a tokio stream
                // belongs to the I/O driver that registered it).
                let listener = self.listeners.into_iter().next().expect("one listener");
                let mut inboxes = Vec::new();
                for core in 1..cores.max(1) {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    inboxes.push(tx);
                    let (shared, handler) = (Arc::clone(&shared), Arc::clone(&handler));
                    threads.push(thread::Builder::new().name(format!("fastwire-tokio-core{core}")).spawn(
                        move || {
                            runtime.block_on(run_handed(rx, shared, handler));
                        },
                    )?);
                }
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let (shared, handler) = (Arc::clone(&shared), Arc::clone(&handler));
                threads.push(thread::Builder::new().name("fastwire-tokio-core0".into()).spawn(move || {
                    runtime.block_on(run_round_robin(listener, inboxes, shared, handler));
                })?);
            }
        }
        tracing::info!(%local_addr, backend = "tokio", flavor = ?self.flavor, "serving");
        Ok(ServerHandle::new(local_addr, Running { shared, stop: stop_tx, threads }))
    }
}

impl Server {
    /// Starts serving an `async` handler: each request's future runs
    /// concurrently with the connection's others (in a set the connection
    /// task polls beside its socket), and its answer is written when it
    /// completes, out of order; the connection goes on reading meanwhile. The handler gets the request (copied out of the read
    /// buffer: [`OwnedRequest`]) and the [`Responder`] to answer with.
    /// A future that panics closes only its connection; one that finishes
    /// without answering leaves its call unanswered (counted as a dropped
    /// responder).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use fastwire_tokio::Server;
    /// use fastwire_tokio::proto::ServerConfig;
    ///
    /// let server = Server::bind("127.0.0.1:0", ServerConfig::default())?.serve_async(|req, responder| async move {
    ///     tokio::time::sleep(Duration::from_millis(5)).await; // a storage call, say
    ///     let _ = responder.respond(req.value());
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn serve_async<F, Fut>(self, handler: F) -> io::Result<ServerHandle>
    where
        F: Fn(OwnedRequest, Responder) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.serve_service(AsyncService(Arc::new(handler)))
    }

    /// Starts serving a blocking `handler` on a pool of
    /// `config.blocking_threads` threads (see [`fastwire_common::Blocking`]);
    /// tokio's own `spawn_blocking` inside an async handler is the
    /// alternative.
    pub fn serve_blocking<H: Handler + 'static>(self, handler: H) -> io::Result<ServerHandle> {
        let threads = self.config.blocking_threads;
        self.serve(Blocking::new(handler, threads)?)
    }
}

// ANCHOR: spawn
/// Serving on the application's runtime.
impl Server {
    /// Serves `handler` on the runtime this is called from, as tasks of the
    /// application's (no runtime or thread of the server's own), and returns
    /// a handle whose [`shutdown`](SpawnedServer::shutdown) is `async`. The
    /// runtime needs I/O and time enabled (`#[tokio::main]` and
    /// `Builder::enable_all` do both). The flavor is the runtime's: for
    /// [`Flavor::PerCore`] bindings, one accept loop per listener is spawned
    /// onto this runtime.
    ///
    /// Fails outside a tokio runtime.
    pub fn spawn<H: Handler + 'static>(self, handler: H) -> io::Result<SpawnedServer> {
        self.spawn_service(Inline(Arc::new(handler)))
    }

    /// [`spawn`](Server::spawn) for an `async` handler (see
    /// [`serve_async`](Server::serve_async)).
    pub fn spawn_async<F, Fut>(self, handler: F) -> io::Result<SpawnedServer>
    where
        F: Fn(OwnedRequest, Responder) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn_service(AsyncService(Arc::new(handler)))
    }

    fn spawn_service<S: Service>(self, service: S) -> io::Result<SpawnedServer> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            io::Error::other(format!("Server::spawn serves on the current tokio runtime, and there is none: {e}"))
        })?;
        let local_addr = self.local_addr()?;
        let (shared, stop) = self.shared();
        let handler = Arc::new(service);
        let loops = self
            .listeners
            .into_iter()
            .map(|listener| runtime.spawn(run(listener, Arc::clone(&shared), Arc::clone(&handler))))
            .collect();
        tracing::info!(%local_addr, backend = "tokio", "serving on the application's runtime");
        Ok(SpawnedServer { local_addr, shared, stop, loops })
    }
}

/// A server running as tasks on the application's runtime
/// ([`Server::spawn`]): its address, stats and `async` graceful shutdown.
/// Dropping it stops the server at once (its tasks are aborted).
pub struct SpawnedServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    loops: Vec<tokio::task::JoinHandle<()>>,
}

impl SpawnedServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's counters now.
    pub fn stats(&self) -> fastwire_common::ServerStats {
        self.shared.counters.snapshot()
    }

    /// Graceful shutdown, awaited: stop accepting; let every connection
    /// finish what it has received (deferred calls included) and flush its
    /// responses; whatever is still busy after `grace` is closed by force
    /// and reported. The same contract as [`ServerHandle::shutdown`], without
    /// blocking a runtime thread.
    pub async fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        let started_with = self.shared.registry.len();
        self.shared.stop_all(&self.stop);
        // Each accept loop ends once its connections have (see `run`).
        let mut loops = futures_util::future::join_all(std::mem::take(&mut self.loops));
        let report = match tokio::time::timeout(grace, &mut loops).await {
            Ok(_) => ShutdownReport { closed_gracefully: started_with, ..Default::default() },
            Err(_) => {
                let report = cut_off(&self.shared, started_with);
                loops.await;
                report
            }
        };
        tracing::info!(local_addr = %self.local_addr, %report, "shut down");
        report
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        // Aborting an accept loop drops its `JoinSet`, which aborts its connections.
        for task in &self.loops {
            task.abort();
        }
    }
}

impl std::fmt::Debug for SpawnedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnedServer").field("local_addr", &self.local_addr).field("stats", &self.stats()).finish()
    }
}
// ANCHOR_END: spawn

/// The grace period is over: report what is still open and abort it.
fn cut_off(shared: &Shared, started_with: usize) -> ShutdownReport {
    let cut_off = shared.registry.len();
    let mut report =
        ShutdownReport { cut_off, closed_gracefully: started_with.saturating_sub(cut_off), ..Default::default() };
    shared.registry.for_each(|entry| {
        report.responses_lost += entry.progress.unwritten.load(Ordering::Relaxed) as u64;
        report.deferred_cut += entry.progress.deferred.load(Ordering::Relaxed) as u64;
        if let Some(task) = entry.abort.get() {
            task.abort();
        }
    });
    report
}

// ANCHOR: async_handler
/// What a connection task runs: a handler of its own, made per connection,
/// which may own futures the task must poll (an `async` handler's requests).
pub(crate) trait Service: Send + Sync + 'static {
    /// The per-connection handler.
    type Conn: ConnHandler;
    /// A connection's handler.
    fn for_connection(&self) -> Self::Conn;
}

/// A connection's handler, and the request futures it owns.
pub(crate) trait ConnHandler: Handler + Send + 'static {
    /// Polls the connection's request futures (those that finish answer
    /// through their `Responder`s, which wake the task). Never ready: a
    /// branch of the connection task's `select!`.
    fn poll_requests(&self, cx: &mut Context<'_>) -> Poll<()>;
    /// Whether any request future is running.
    fn has_requests(&self) -> bool;
}

/// Plain handlers: shared by every connection, no futures.
struct Inline<H>(Arc<H>);

impl<H: Handler + 'static> Service for Inline<H> {
    type Conn = Inline<H>;
    fn for_connection(&self) -> Inline<H> {
        Inline(Arc::clone(&self.0))
    }
}

impl<H: Handler> Handler for Inline<H> {
    #[inline]
    fn handle(&self, request: Request<'_>, response: &mut ResponseWriter<'_>) {
        self.0.handle(request, response)
    }
}

impl<H: Handler + 'static> ConnHandler for Inline<H> {
    fn poll_requests(&self, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
    fn has_requests(&self) -> bool {
        false
    }
}

/// An `async` handler.
struct AsyncService<F>(Arc<F>);

/// One request's future, with the guard that closes its connection if it panics.
type Answer<Fut> = Join<Ready<CallGuard>, CatchUnwind<AssertUnwindSafe<Fut>>>;

/// An `async` handler on one connection: each request is deferred, copied
/// and its future pushed into the connection's own set, which the
/// connection task polls beside its socket.
///
/// Why a set per connection rather than a task per request (compared by
/// `examples/async_spawn_vs_set.rs`; the guide's chapter on handlers that
/// wait has the figures): a
/// spawned task is scheduled, run and freed by the runtime and wakes the
/// connection across tasks; a future in the set is polled where the
/// connection already is. The price: a connection's requests share its task, so on the
/// multi-thread runtime they run on one worker at a time (a handler with
/// heavy CPU work should `spawn_blocking` or `spawn` it itself).
struct AsyncConn<F, Fut: Future<Output = ()>> {
    handler: Arc<F>,
    /// Only the connection task touches it; the lock makes it `Sync`.
    requests: Mutex<FuturesUnordered<Answer<Fut>>>,
}

impl<F, Fut> Service for AsyncService<F>
where
    F: Fn(OwnedRequest, Responder) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    type Conn = AsyncConn<F, Fut>;
    fn for_connection(&self) -> AsyncConn<F, Fut> {
        AsyncConn { handler: Arc::clone(&self.0), requests: Mutex::new(FuturesUnordered::new()) }
    }
}

impl<F, Fut> Handler for AsyncConn<F, Fut>
where
    F: Fn(OwnedRequest, Responder) -> Fut + Send + Sync,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn handle(&self, request: Request<'_>, response: &mut ResponseWriter<'_>) {
        let responder = response.defer();
        let guard = responder.guard();
        let answer = (self.handler)(OwnedRequest::new(request), responder);
        let answer = join(ready(guard), AssertUnwindSafe(answer).catch_unwind());
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).push(answer);
    }
}

impl<F, Fut> ConnHandler for AsyncConn<F, Fut>
where
    F: Fn(OwnedRequest, Responder) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn poll_requests(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        while let Poll::Ready(Some((guard, finished))) = requests.poll_next_unpin(cx) {
            if finished.is_err() {
                tracing::error!("an async handler panicked");
                guard.close_connection();
            }
        }
        Poll::Pending
    }

    fn has_requests(&self) -> bool {
        !self.requests.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }
}
// ANCHOR_END: async_handler

/// State shared by the accept loops, the connections and the handle.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    /// The server-wide concurrency limit, if configured.
    pub(crate) limit: Option<Arc<ConcurrencyLimit>>,
    pub(crate) counters: ServerCounters,
    pub(crate) registry: Registry<ConnEntry>,
    /// Becomes `true` when a graceful shutdown starts.
    pub(crate) stop: watch::Receiver<bool>,
}

impl Shared {
    /// Starts a graceful shutdown: the flag first, then every connection's
    /// task woken to see it. A connection registered after the wake-ups
    /// reads the flag before its next read.
    fn stop_all(&self, stop: &watch::Sender<bool>) {
        let _ = stop.send(true);
        self.registry.for_each(|entry| entry.wake.notify());
    }

    /// Whether a graceful shutdown has started.
    pub(crate) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// What shutdown needs to know about a connection.
pub(crate) struct ConnEntry {
    /// Set right after the task is spawned (the task needs its id first).
    pub(crate) abort: OnceLock<AbortHandle>,
    /// Wakes the connection's task: deferred answers, or shutdown.
    pub(crate) wake: Arc<TaskWake>,
    /// Responses unwritten and deferred calls unanswered.
    pub(crate) progress: Arc<Progress>,
}

/// One runtime's life: accept until told to stop, then wait for this
/// runtime's connections (the handle aborts them if they overstay).
async fn run<S: Service>(listener: std::net::TcpListener, shared: Arc<Shared>, handler: Arc<S>) {
    run_round_robin(listener, Vec::new(), shared, handler).await
}

/// [`run`], handing every connection after its own share to the next of
/// `inboxes` in turn (none: it keeps every connection).
async fn run_round_robin<S: Service>(
    listener: std::net::TcpListener,
    inboxes: Vec<Inbox>,
    shared: Arc<Shared>,
    handler: Arc<S>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!(error = %e, "cannot register the listener"),
    };
    let mut stop = shared.stop.clone();
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|stopping| *stopping) => break,
            accepted = listener.accept() => accepted,
            // Reap finished tasks as we go, so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if net::is_accept_resource_error(&e) => {
                tracing::warn!(error = %e, "accept: out of resources");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => continue,
        };
        next = (next + 1) % (inboxes.len() + 1);
        match next.checked_sub(1).map(|i| &inboxes[i]) {
            None => adopt(stream, &shared, &handler, &mut tasks),
            Some(inbox) => {
                // Out of this runtime's driver, into the other's (which
                // registers it again); a closed inbox means its runtime
                // is stopping, and the connection is dropped.
                if let Ok(stream) = stream.into_std() {
                    let _ = inbox.send(stream);
                }
            }
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// A runtime that accepts nothing itself: it serves the connections handed
/// to it, until told to stop, then waits for them.
async fn run_handed<S: Service>(
    mut inbox: tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>,
    shared: Arc<Shared>,
    handler: Arc<S>,
) {
    let mut stop = shared.stop.clone();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let handed = tokio::select! {
            biased;
            _ = stop.wait_for(|stopping| *stopping) => break,
            handed = inbox.recv() => handed,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let Some(stream) = handed else { break };
        match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => adopt(stream, &shared, &handler, &mut tasks),
            Err(e) => tracing::warn!(error = %e, "cannot register a handed connection"),
        }
    }
    drop(inbox);
    while tasks.join_next().await.is_some() {}
}

/// A runtime's inbox of connections handed over by the accepting runtime.
type Inbox = tokio::sync::mpsc::UnboundedSender<std::net::TcpStream>;

/// Counts a new connection in (or drops it over `max_connections`) and
/// spawns its task on this runtime.
fn adopt<S: Service>(stream: TcpStream, shared: &Arc<Shared>, handler: &Arc<S>, tasks: &mut JoinSet<()>) {
    if !shared.counters.try_open(shared.config.max_connections) {
        return; // dropped: closed at once
    }
    if stream.set_nodelay(true).is_err() {
        shared.counters.close();
        return;
    }
    let progress = Arc::new(Progress::default());
    let wake = Arc::new(TaskWake::default());
    let entry = ConnEntry { abort: OnceLock::new(), wake: Arc::clone(&wake), progress: Arc::clone(&progress) };
    let id = shared.registry.register(entry);
    let conn = connection::Parts { id, wake, progress };
    let task = tasks.spawn(connection::serve(conn, stream, Arc::clone(shared), handler.for_connection()));
    shared.registry.for_id(id, |entry| {
        let _ = entry.abort.set(task);
    });
}

/// A running server's handle (address, stats, graceful shutdown); see
/// [`fastwire_common::ServerHandle`]. Dropping it shuts the server down at once.
pub type ServerHandle = fastwire_common::ServerHandle<Running>;

/// The tokio backend's running server: its runtime threads. Use it through [`ServerHandle`].
pub struct Running {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Serving for Running {
    fn counters(&self) -> &ServerCounters {
        &self.shared.counters
    }

    fn stop(&mut self, grace: Duration) -> ShutdownReport {
        let started_with = self.shared.registry.len();
        self.shared.stop_all(&self.stop);
        self.shared.registry.wait_empty(Instant::now() + grace);
        let report = cut_off(&self.shared, started_with);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        report
    }
}
