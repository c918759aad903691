//! The server: one pinned executor per core. By default the first accepts
//! and hands connections to the executors in turn ([`Accept::RoundRobin`]:
//! glommio's `shared_accept`, a stream sent over a shared channel and bound
//! to its executor there); [`Accept::ReusePort`] gives each executor a
//! listener of its own instead.

use std::cell::Cell;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use std::future::Future;

use fastwire_common::net::Listeners;
pub use fastwire_common::Accept;
use fastwire_common::{net, work, Blocking, OwnedRequest, ServerCounters, Serving, ShutdownReport};
use fastwire_proto::{Handler, Request, Responder, ResponseWriter, ServerConfig};
use glommio::channels::shared_channel::{self, ConnectedSender, SharedReceiver, SharedSender};
use glommio::net::AcceptedTcpStream;
use glommio::{LocalExecutorBuilder, Placement, ResourceType};

use crate::{connection, IO_MEMORY};

/// Connections handed to one executor and not yet taken, at most: the
/// accepting executor waits for room beyond this.
const HAND_OFF: usize = 1024;

/// How the server is laid out: its executors and how connections reach
/// them. The default is one executor per available core, the first
/// accepting and handing connections to all of them in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Executors, each a thread pinned to a core (at least one).
    pub executors: usize,
    /// How new connections reach the executors ([`Accept::ReusePort`]:
    /// each its own `SO_REUSEPORT` listener on the same address).
    pub accept: Accept,
}

impl Default for Options {
    fn default() -> Options {
        Options { executors: net::available_cores(), accept: Accept::default() }
    }
}

/// Bound listeners, not yet serving: one, or one per executor
/// ([`Accept::ReusePort`]).
#[derive(Debug)]
pub struct Server {
    listeners: Listeners,
    config: ServerConfig,
}

impl Server {
    /// Binds `addr` (IPv4 or IPv6; port 0 picks a free port) with the
    /// default [`Options`]: one executor per available core. Fails with a
    /// clear error where glommio cannot run (see [`crate::probe`]).
    pub fn bind(addr: impl ToSocketAddrs, config: ServerConfig) -> io::Result<Server> {
        Self::bind_with(addr, config, Options::default())
    }

    /// Binds `addr` laid out as `options` say.
    pub fn bind_with(addr: impl ToSocketAddrs, config: ServerConfig, options: Options) -> io::Result<Server> {
        crate::probe()?;
        Ok(Server { listeners: Listeners::bind(addr, options.executors, options.accept)?, config })
    }

    /// A server on a listener the application bound itself (options it set
    /// on the socket are kept), with the default [`Options`] for
    /// [`serve`](Server::serve), or on the caller's executor for
    /// [`spawn_local`](Server::spawn_local).
    pub fn from_listener(listener: std::net::TcpListener, config: ServerConfig) -> io::Result<Server> {
        Self::from_listener_with(listener, config, Options::default())
    }

    /// A server with `options.executors` executors on a listener the
    /// application bound itself, the first accepting on it and handing
    /// connections to all of them in turn. One listener cannot be a
    /// listener per executor: [`Accept::ReusePort`] is refused
    /// (`InvalidInput`); bind with [`bind_with`](Server::bind_with) for it.
    pub fn from_listener_with(
        listener: std::net::TcpListener,
        config: ServerConfig,
        options: Options,
    ) -> io::Result<Server> {
        crate::probe()?;
        Ok(Server { listeners: Listeners::adopt(listener, options.executors, options.accept)?, config })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listeners.local_addr()
    }

    /// One server per bound listener (bind with [`Accept::ReusePort`] for
    /// one per executor; a round-robin server has one listener), to hand
    /// one to each executor of the application's, which then calls
    /// [`spawn_local`](Server::spawn_local) on it. They share nothing: each
    /// has its own stats and its own shutdown.
    pub fn split(self) -> Vec<Server> {
        let config = self.config;
        self.listeners.sockets.into_iter().map(|listener| Server::alone(listener, config.clone())).collect()
    }

    /// A server of one executor on `listener`.
    fn alone(listener: std::net::TcpListener, config: ServerConfig) -> Server {
        Server { listeners: Listeners { sockets: vec![listener], accept: Accept::ReusePort, loops: 1 }, config }
    }

    fn shared(&self) -> Arc<Shared> {
        Shared::new(self.config.clone())
    }

    /// Starts the executors, serving `handler`.
    pub fn serve<H: Handler + 'static>(self, handler: H) -> io::Result<ServerHandle> {
        let local_addr = self.local_addr()?;
        let shared = self.shared();
        let handler = Arc::new(handler);
        let cores = net::available_cores();
        let (done_tx, done) = mpsc::channel();
        let mut executors = Vec::new();
        let mut wakers = Vec::new();
        let mut sources = Vec::new();
        for listener in self.listeners.sockets {
            // A duplicate of the listener lets shutdown wake its `accept`.
            wakers.push(listener.try_clone()?);
            // Owned until the executor adopts it, so it is closed if the executor cannot start.
            sources.push(Source::Listener(OwnedFd::from(listener), Vec::new()));
        }
        // Round robin: the one listener on the first executor, and an inbox
        // on each of the others for the connections it hands them.
        if self.listeners.accept == Accept::RoundRobin {
            let (to, inboxes): (Vec<_>, Vec<_>) =
                (1..self.listeners.loops).map(|_| shared_channel::new_bounded(HAND_OFF)).unzip();
            if let Some(Source::Listener(_, peers)) = sources.first_mut() {
                *peers = to;
            }
            sources.extend(inboxes.into_iter().map(Source::Inbox));
        }
        for (i, source) in sources.into_iter().enumerate() {
            let (shared, handler, done_tx) = (Arc::clone(&shared), Arc::clone(&handler), done_tx.clone());
            // ANCHOR: executors
            let executor = LocalExecutorBuilder::new(Placement::Fixed(i % cores))
                .io_memory(IO_MEMORY)
                .name(&format!("fastwire-glommio{i}"))
                .spawn(move || async move {
                    let cut = match source {
                        Source::Listener(fd, peers) => run(adopt(fd), peers, shared, handler).await,
                        Source::Inbox(inbox) => run_inbox(inbox, shared, handler).await,
                    };
                    let _ = done_tx.send(());
                    cut
                })?;
            // ANCHOR_END: executors
            executors.push(executor);
        }
        tracing::info!(%local_addr, backend = "glommio", executors = executors.len(), "serving");
        Ok(ServerHandle::new(local_addr, Running { shared, executors, wakers, done }))
    }
}

impl Server {
    /// Starts serving an `async` handler: each request runs as a task of its
    /// own on the connection's executor (a local, non-`Send` future is
    /// fine: it never leaves its core), answered through its [`Responder`]
    /// when it completes, out of order. A future that panics closes only its
    /// connection.
    pub fn serve_async<F, Fut>(self, handler: F) -> io::Result<ServerHandle>
    where
        F: Fn(OwnedRequest, Responder) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.serve(AsyncHandler(handler))
    }

    /// Starts serving a blocking `handler` on a pool of
    /// `config.blocking_threads` threads (see [`fastwire_common::Blocking`]):
    /// off the executors, whose cores it would otherwise stall.
    pub fn serve_blocking<H: Handler + 'static>(self, handler: H) -> io::Result<ServerHandle> {
        let threads = self.config.blocking_threads;
        self.serve(Blocking::new(handler, threads)?)
    }
}

// ANCHOR: spawn_local
/// Serving inside executors the application already runs.
impl Server {
    /// Serves `handler` on the glommio executor this is called from, as
    /// local tasks beside the application's own (one accept loop per bound
    /// listener; for one per executor, [`split`](Server::split) a server
    /// bound by [`bind_with`](Server::bind_with) with [`Accept::ReusePort`]
    /// and call this on each executor with its part). Returns a handle
    /// whose [`shutdown`](SpawnedServer::shutdown) is `async`.
    ///
    /// Panics outside a glommio executor, as `glommio::spawn_local` does.
    pub fn spawn_local<H: Handler + 'static>(self, handler: H) -> io::Result<SpawnedServer> {
        let local_addr = self.local_addr()?;
        let shared = self.shared();
        let handler = Arc::new(handler);
        let mut wakers = Vec::new();
        let mut loops = Vec::new();
        let finished = Rc::new(Cell::new(0));
        let loop_done = Arc::new(connection::Signal::default());
        for listener in self.listeners.sockets {
            wakers.push(listener.try_clone()?);
            let listener = adopt(OwnedFd::from(listener));
            let (shared, handler, finished) = (Arc::clone(&shared), Arc::clone(&handler), Rc::clone(&finished));
            let done = Arc::clone(&loop_done);
            loops.push(
                glommio::spawn_local(async move {
                    let cut = run(listener, Vec::new(), shared, handler).await;
                    finished.set(finished.get() + 1);
                    fastwire_proto::driver::Wake::wake(&*done, 0);
                    cut
                })
                .detach(),
            );
        }
        tracing::info!(%local_addr, backend = "glommio", "serving on the application's executor");
        Ok(SpawnedServer { local_addr, shared, loops, wakers, finished, loop_done })
    }

    /// [`spawn_local`](Server::spawn_local) for an `async` handler (see
    /// [`serve_async`](Server::serve_async)).
    pub fn spawn_local_async<F, Fut>(self, handler: F) -> io::Result<SpawnedServer>
    where
        F: Fn(OwnedRequest, Responder) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.spawn_local(AsyncHandler(handler))
    }
}

/// A server running as local tasks on the application's executor
/// ([`Server::spawn_local`]): its address, stats and `async` graceful
/// shutdown. Dropping it stops the server at once: its accept loops stop,
/// and its connections are closed within a few hundred milliseconds.
pub struct SpawnedServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    loops: Vec<glommio::task::JoinHandle<Cut>>,
    wakers: Vec<std::net::TcpListener>,
    /// Accept loops that have ended.
    finished: Rc<Cell<usize>>,
    /// Signalled as each loop ends.
    loop_done: Arc<connection::Signal>,
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

    /// Graceful shutdown, awaited on the executor: stop accepting; let every
    /// connection finish what it has received (deferred calls included) and
    /// flush its responses; whatever is still busy after `grace` is closed
    /// by force and reported. The contract of [`ServerHandle::shutdown`].
    pub async fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        let started_with = self.shared.counters.snapshot().open;
        self.begin_stop();
        let loops = std::mem::take(&mut self.loops);
        let deadline = Instant::now() + grace;
        // The loops end on their own once their connections have (each
        // signals `loop_done`); past the deadline, `forced` makes them give
        // up on the rest.
        while self.finished.get() < loops.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            futures_lite::future::or(self.loop_done.wait(), glommio::timer::sleep(left)).await;
        }
        self.shared.forced.store(true, Ordering::Release);
        crate::clock::tick_all();
        let mut cuts = Vec::with_capacity(loops.len());
        for task in loops {
            cuts.extend(task.await);
        }
        let report = Cut::report(started_with, cuts);
        tracing::info!(local_addr = %self.local_addr, %report, "shut down");
        report
    }

    fn begin_stop(&mut self) {
        begin_stop(&self.shared, &mut self.wakers);
    }
}

/// Takes over a bound, listening TCP socket as glommio's listener (on the
/// executor that will accept on it).
fn adopt(fd: OwnedFd) -> glommio::net::TcpListener {
    // SAFETY: `fd` is a bound, listening TCP socket whose ownership
    // `into_raw_fd` gives up; glommio's listener takes it over.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd.into_raw_fd()) }
}

/// Stop accepting: raise the flag, then wake each accept loop (through a
/// duplicate of its listener) so that it sees it.
fn begin_stop(shared: &Shared, wakers: &mut Vec<std::net::TcpListener>) {
    shared.stopping.store(true, Ordering::Release);
    for listener in wakers.drain(..) {
        net::wake_acceptor(&listener);
    }
    // Waiting connections see the flag now rather than at their next tick.
    crate::clock::tick_all();
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        self.begin_stop();
        self.shared.forced.store(true, Ordering::Release);
        crate::clock::tick_all();
    }
}

impl std::fmt::Debug for SpawnedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnedServer").field("local_addr", &self.local_addr).field("stats", &self.stats()).finish()
    }
}
// ANCHOR_END: spawn_local

/// An `async` handler as a [`Handler`]: defer, copy the request, spawn a
/// local task (a task per request, as the tokio backend; see there why).
struct AsyncHandler<F>(F);

impl<F, Fut> Handler for AsyncHandler<F>
where
    F: Fn(OwnedRequest, Responder) -> Fut + Send + Sync,
    Fut: Future<Output = ()> + 'static,
{
    fn handle(&self, request: Request<'_>, response: &mut ResponseWriter<'_>) {
        let responder = response.defer();
        let guard = responder.guard();
        let answer = (self.0)(OwnedRequest::new(request), responder);
        glommio::spawn_local(work::answer_async(guard, answer)).detach();
    }
}

/// What every connection and loop of the server shares.
pub(crate) type Shared = fastwire_common::LoopShared;

/// What one executor had to cut off at a forced shutdown.
#[derive(Default)]
pub(crate) struct Cut {
    connections: usize,
    responses: u64,
    deferred: u64,
}

impl Cut {
    /// The shutdown report from every accept loop's cut, for a server that
    /// had `started_with` connections open when the shutdown began.
    fn report(started_with: usize, cuts: impl IntoIterator<Item = Cut>) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        for cut in cuts {
            report.cut_off += cut.connections;
            report.responses_lost += cut.responses;
            report.deferred_cut += cut.deferred;
        }
        report.closed_gracefully = started_with.saturating_sub(report.cut_off);
        report
    }
}

/// This executor's live connections, shared by its tasks (one thread: `Cell`s).
#[derive(Default)]
pub(crate) struct Local {
    pub(crate) open: Cell<usize>,
    /// Responses produced and not yet written, over all its connections.
    pub(crate) unwritten: Cell<u64>,
    /// Deferred calls not answered yet, over all its connections.
    pub(crate) deferred: Cell<u64>,
    /// Connections that ended on their own because the grace period was
    /// over (cut), with what they left unanswered and unwritten.
    pub(crate) cut: Cell<usize>,
    pub(crate) cut_deferred: Cell<u64>,
    pub(crate) cut_responses: Cell<u64>,
    /// The buffer every connection of this executor reads into (see
    /// `connection::read_some`): a waiting connection holds none of its own.
    pub(crate) scratch: std::cell::RefCell<Vec<u8>>,
    /// Signalled when its last connection closes, and when a shutdown is
    /// forced (it is on the clock's list for `tick_all`): what the
    /// executor's wind-down waits for.
    pub(crate) winding: Arc<connection::Signal>,
}

impl Local {
    /// A new executor's, its wind-down signal on the clock's list.
    fn new() -> Rc<Local> {
        let local = Rc::new(Local::default());
        crate::clock::on_tick_all(Arc::downgrade(&local.winding) as std::sync::Weak<dyn crate::clock::Tick>);
        local
    }
}

/// Where an executor's connections come from.
enum Source {
    /// A listener to accept on, and the inboxes of the executors it hands
    /// connections to in turn (none: it keeps them all).
    Listener(OwnedFd, Vec<SharedSender<AcceptedTcpStream>>),
    /// Connections another executor accepted.
    Inbox(SharedReceiver<AcceptedTcpStream>),
}

/// One executor's life: accept until told to stop (serving each connection
/// here, or handing it to the next of `peers` in turn), then wait for its
/// connections to close gracefully (or the grace period to end).
async fn run<H: Handler + 'static>(
    listener: glommio::net::TcpListener,
    peers: Vec<SharedSender<AcceptedTcpStream>>,
    shared: Arc<Shared>,
    handler: Arc<H>,
) -> Cut {
    let local = Local::new();
    let mut to: Vec<ConnectedSender<AcceptedTcpStream>> = Vec::with_capacity(peers.len());
    for peer in peers {
        to.push(peer.connect().await);
    }
    let mut turn = 0;
    loop {
        let accepted = match listener.shared_accept().await {
            Ok(accepted) => accepted,
            Err(_) if shared.stopping.load(Ordering::Acquire) => break,
            Err(e) => {
                let e = io::Error::from(e);
                if net::is_accept_resource_error(&e) {
                    tracing::warn!(error = %e, "accept: out of resources");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
                continue;
            }
        };
        turn = (turn + 1) % (to.len() + 1);
        if turn > 0 {
            if let Err(
                glommio::GlommioError::Closed(ResourceType::Channel(accepted))
                | glommio::GlommioError::WouldBlock(ResourceType::Channel(accepted)),
            ) = to[turn - 1].send(accepted).await
            {
                // Its executor is gone: bound here only to be closed.
                drop(accepted.bind_to_executor());
            }
            continue;
        }
        if !open(accepted, &shared, &handler, &local) {
            break;
        }
    }
    drop(listener);
    // Closing the inboxes ends the other executors' loops once they have
    // taken every connection handed to them.
    drop(to);
    wind_down(&local, &shared).await
}

/// The life of an executor that serves connections another one accepted:
/// until the accepting one closes the inbox, then as [`run`].
async fn run_inbox<H: Handler + 'static>(
    inbox: SharedReceiver<AcceptedTcpStream>,
    shared: Arc<Shared>,
    handler: Arc<H>,
) -> Cut {
    let local = Local::new();
    let inbox = inbox.connect().await;
    while let Some(accepted) = inbox.recv().await {
        // After a stop, what is still handed over is closed.
        let _ = open(accepted, &shared, &handler, &local);
    }
    wind_down(&local, &shared).await
}

/// Binds an accepted connection to this executor and starts serving it;
/// `false` (and the connection closed) once the server is stopping.
fn open<H: Handler + 'static>(
    accepted: AcceptedTcpStream,
    shared: &Arc<Shared>,
    handler: &Arc<H>,
    local: &Rc<Local>,
) -> bool {
    let stream = accepted.bind_to_executor();
    if shared.stopping.load(Ordering::Acquire) {
        return false;
    }
    if !shared.counters.try_open(shared.config.max_connections) {
        return true; // dropped: closed at once
    }
    if stream.set_nodelay(true).is_err() {
        shared.counters.close();
        return true;
    }
    local.open.set(local.open.get() + 1);
    let task = connection::serve(stream, Arc::clone(shared), Arc::clone(handler), Rc::clone(local));
    glommio::spawn_local(task).detach();
    true
}

/// After the accepting stops: waits for this executor's connections to
/// close gracefully, or for the grace period to end; what it cut off.
async fn wind_down(local: &Local, shared: &Shared) -> Cut {
    while local.open.get() > 0 && !shared.forced.load(Ordering::Acquire) {
        local.winding.wait().await;
    }
    let cut = Cut {
        connections: local.open.get() + local.cut.get(),
        responses: local.unwritten.get() + local.cut_responses.get(),
        deferred: local.deferred.get() + local.cut_deferred.get(),
    };
    // Connections waiting for deferred answers were signalled with the
    // flag and close themselves (see `connection::woken`); the rest are
    // dropped (closed) when the executor ends.
    let until = Instant::now() + Duration::from_millis(300);
    while local.open.get() > 0 {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        futures_lite::future::or(local.winding.wait(), glommio::timer::sleep(left)).await;
    }
    cut
}

/// A running server's handle (address, stats, graceful shutdown); see
/// [`fastwire_common::ServerHandle`]. Dropping it shuts the server down at once.
pub type ServerHandle = fastwire_common::ServerHandle<Running>;

/// The glommio backend's running server: its executors. Use it through [`ServerHandle`].
pub struct Running {
    shared: Arc<Shared>,
    executors: Vec<glommio::ExecutorJoinHandle<Cut>>,
    wakers: Vec<std::net::TcpListener>,
    done: mpsc::Receiver<()>,
}

impl Serving for Running {
    fn counters(&self) -> &ServerCounters {
        &self.shared.counters
    }

    fn stop(&mut self, grace: Duration) -> ShutdownReport {
        begin_stop(&self.shared, &mut self.wakers);
        let started_with = self.shared.counters.snapshot().open;
        let deadline = Instant::now() + grace;
        let mut finished = 0;
        while finished < self.executors.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.done.recv_timeout(left) {
                Ok(()) => finished += 1,
                Err(_) => break,
            }
        }
        self.shared.forced.store(true, Ordering::Release);
        crate::clock::tick_all();
        Cut::report(started_with, self.executors.drain(..).filter_map(|executor| executor.join().ok()))
    }
}
