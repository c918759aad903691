//! The server: accept loops and connection tasks on runtimes of its own.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fastwire_common::{net, Registry, ServerCounters, Serving, ShutdownReport};
use fastwire_proto::{Handler, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::connection;

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
    /// This many current-thread runtimes, one per thread, each with its own
    /// `SO_REUSEPORT` listener on the same address.
    PerCore {
        /// Threads (one per core is the idea).
        cores: usize,
    },
}
// ANCHOR_END: flavor

impl Flavor {
    /// Multi-thread with one worker per available core.
    pub fn multi_thread() -> Flavor {
        Flavor::MultiThread { workers: available_cores() }
    }

    /// One runtime per available core.
    pub fn per_core() -> Flavor {
        Flavor::PerCore { cores: available_cores() }
    }
}

fn available_cores() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Bound listeners, not yet serving.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<std::net::TcpListener>,
    config: ServerConfig,
    flavor: Flavor,
}

impl Server {
    /// Binds `addr` for the multi-threaded flavor (IPv4 or IPv6; port 0 picks a free port).
    pub fn bind(addr: impl ToSocketAddrs, config: ServerConfig) -> io::Result<Server> {
        Self::bind_with(addr, config, Flavor::multi_thread())
    }

    /// Binds `addr` for the given flavor. For [`Flavor::PerCore`] one
    /// `SO_REUSEPORT` listener per core is bound (port 0 is resolved by the
    /// first, and the others bind the same port).
    pub fn bind_with(addr: impl ToSocketAddrs, config: ServerConfig, flavor: Flavor) -> io::Result<Server> {
        let addr = net::resolve(addr)?;
        let listeners = match flavor {
            Flavor::MultiThread { .. } => vec![net::listener(addr, false)?],
            Flavor::PerCore { cores } => net::reuseport_listeners(addr, cores)?,
        };
        for listener in &listeners {
            listener.set_nonblocking(true)?;
        }
        Ok(Server { listeners, config, flavor })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listeners[0].local_addr()
    }

    /// Starts serving `handler` on runtime threads of the server's own.
    pub fn serve<H: Handler + 'static>(self, handler: H) -> io::Result<ServerHandle> {
        let local_addr = self.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            config: self.config,
            counters: ServerCounters::default(),
            registry: Registry::default(),
            stop: stop_rx,
        });
        let handler = Arc::new(handler);
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
            Flavor::PerCore { .. } => {
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
        }
        tracing::info!(%local_addr, backend = "tokio", flavor = ?self.flavor, "serving");
        Ok(ServerHandle::new(local_addr, Running { shared, stop: stop_tx, threads }))
    }
}

/// State shared by the accept loops, the connections and the handle.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) counters: ServerCounters,
    pub(crate) registry: Registry<ConnEntry>,
    /// Becomes `true` when a graceful shutdown starts.
    pub(crate) stop: watch::Receiver<bool>,
}

/// What shutdown needs to know about a connection.
pub(crate) struct ConnEntry {
    /// Set right after the task is spawned (the task needs its id first).
    pub(crate) abort: OnceLock<AbortHandle>,
    /// Responses produced and not yet written.
    pub(crate) unwritten: Arc<AtomicUsize>,
}

/// One runtime's life: accept until told to stop, then wait for this
/// runtime's connections (the handle aborts them if they overstay).
async fn run<H: Handler + 'static>(listener: std::net::TcpListener, shared: Arc<Shared>, handler: Arc<H>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!(error = %e, "cannot register the listener"),
    };
    let mut stop = shared.stop.clone();
    let mut tasks = tokio::task::JoinSet::new();
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
        if !shared.counters.try_open(shared.config.max_connections) {
            continue; // dropped: closed at once
        }
        if stream.set_nodelay(true).is_err() {
            shared.counters.close();
            continue;
        }
        let unwritten = Arc::new(AtomicUsize::new(0));
        let id = shared.registry.register(ConnEntry { abort: OnceLock::new(), unwritten: Arc::clone(&unwritten) });
        let task = tasks.spawn(connection::serve(id, stream, Arc::clone(&shared), Arc::clone(&handler), unwritten));
        shared.registry.for_id(id, |entry| {
            let _ = entry.abort.set(task);
        });
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
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

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("stats", &self.shared.counters.snapshot()).finish()
    }
}

impl Serving for Running {
    fn counters(&self) -> &ServerCounters {
        &self.shared.counters
    }

    fn stop(&mut self, grace: Duration) -> ShutdownReport {
        let started_with = self.shared.registry.len();
        let _ = self.stop.send(true);
        let cut_off = self.shared.registry.wait_empty(Instant::now() + grace);
        let mut report =
            ShutdownReport { cut_off, closed_gracefully: started_with.saturating_sub(cut_off), ..Default::default() };
        self.shared.registry.for_each(|entry| {
            report.responses_lost += entry.unwritten.load(Ordering::Relaxed) as u64;
            if let Some(task) = entry.abort.get() {
                task.abort();
            }
        });
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        report
    }
}
