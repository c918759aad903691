//! Every backend behind one run-time interface, chosen by name.
//!
//! The backends share one public face (a `Server` that binds and serves, a
//! `ServerHandle` with stats and graceful shutdown, a `Client` with calls,
//! fire-and-forget and deadlines), but their clients differ where the
//! architecture does: the blocking client's `call` blocks a thread, the
//! tokio client's is an `async fn`. This module puts them behind two object
//! types, [`RunningServer`] and [`BlockingClient`], so that the command line
//! and the conformance suite can treat every backend alike. (A tokio client
//! used through [`BlockingClient`] runs on a small runtime of its own.)

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use fastwire_common::client::Driver;
use fastwire_common::Serving;
use fastwire_common::{ClientError, ClientStats, Reply, ServerStats, ShutdownReport};
use fastwire_proto::{ClientConfig, Handler, ServerConfig};

use crate::harness::drive;

/// The backends this build was compiled with, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// `fastwire-std`: blocking sockets, a reader and a writer thread per connection.
    #[cfg(feature = "std")]
    Std,
    /// `fastwire-tokio` on the multi-threaded work-stealing runtime.
    #[cfg(feature = "tokio")]
    Tokio,
    /// The `tokio` server, loaded by `depth` caller tasks per connection that
    /// each await one call at a time, instead of one task pipelining the
    /// connection's calls (not in the default run: it measures what a task
    /// per call costs the client).
    #[cfg(feature = "tokio")]
    TokioTasks,
    /// `fastwire-tokio` with a current-thread runtime per core, connections
    /// handed to them in turn.
    #[cfg(feature = "tokio")]
    TokioPerCore,
    /// `fastwire-tokio` per core, each runtime with its own `SO_REUSEPORT`
    /// listener (not in the default run: see [`BackendKind::VARIANTS`]).
    #[cfg(feature = "tokio")]
    TokioPerCoreReuseport,
    /// `fastwire-mio`: a hand-written edge-triggered reactor, one event loop
    /// per core, an acceptor thread handing connections to the loops in turn.
    #[cfg(feature = "mio")]
    Mio,
    /// `fastwire-mio` with a `SO_REUSEPORT` listener per loop (not in the
    /// default run).
    #[cfg(feature = "mio")]
    MioReuseport,
    /// `fastwire-glommio`: io_uring, one pinned executor per core, the
    /// first accepting and handing connections to them in turn.
    #[cfg(feature = "glommio")]
    Glommio,
    /// `fastwire-glommio` with a `SO_REUSEPORT` listener per executor (not
    /// in the default run).
    #[cfg(feature = "glommio")]
    GlommioReuseport,
    /// `fastwire-uring`: io_uring by hand, one completion loop per core.
    #[cfg(feature = "uring")]
    Uring,
    /// `fastwire-uring` with `SQPOLL`: a kernel thread per ring polls for
    /// submissions (not in the default run: see [`BackendKind::VARIANTS`]).
    #[cfg(feature = "uring")]
    UringSqpoll,
    /// `fastwire-uring` with registered files (not in the default run).
    #[cfg(feature = "uring")]
    UringFixed,
    /// `fastwire-uring` with a `SO_REUSEPORT` listener per loop (not in the
    /// default run).
    #[cfg(feature = "uring")]
    UringReuseport,
}

impl BackendKind {
    /// Every backend compiled in.
    pub const ALL: &'static [BackendKind] = &[
        #[cfg(feature = "std")]
        BackendKind::Std,
        #[cfg(feature = "tokio")]
        BackendKind::Tokio,
        #[cfg(feature = "tokio")]
        BackendKind::TokioPerCore,
        #[cfg(feature = "mio")]
        BackendKind::Mio,
        #[cfg(feature = "glommio")]
        BackendKind::Glommio,
        #[cfg(feature = "uring")]
        BackendKind::Uring,
    ];

    /// Settings of a backend that exist to be measured against its default,
    /// run only when named (`--backends uring,uring-sqpoll`): they are not
    /// in [`ALL`](BackendKind::ALL), the default of `compare` and the benches.
    pub const VARIANTS: &'static [BackendKind] = &[
        #[cfg(feature = "tokio")]
        BackendKind::TokioTasks,
        #[cfg(feature = "tokio")]
        BackendKind::TokioPerCoreReuseport,
        #[cfg(feature = "mio")]
        BackendKind::MioReuseport,
        #[cfg(feature = "glommio")]
        BackendKind::GlommioReuseport,
        #[cfg(feature = "uring")]
        BackendKind::UringReuseport,
        #[cfg(feature = "uring")]
        BackendKind::UringSqpoll,
        #[cfg(feature = "uring")]
        BackendKind::UringFixed,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "std")]
            BackendKind::Std => "std",
            #[cfg(feature = "tokio")]
            BackendKind::Tokio => "tokio",
            #[cfg(feature = "tokio")]
            BackendKind::TokioTasks => "tokio-tasks",
            #[cfg(feature = "tokio")]
            BackendKind::TokioPerCore => "tokio-per-core",
            #[cfg(feature = "tokio")]
            BackendKind::TokioPerCoreReuseport => "tokio-per-core-reuseport",
            #[cfg(feature = "mio")]
            BackendKind::Mio => "mio",
            #[cfg(feature = "mio")]
            BackendKind::MioReuseport => "mio-reuseport",
            #[cfg(feature = "glommio")]
            BackendKind::Glommio => "glommio",
            #[cfg(feature = "glommio")]
            BackendKind::GlommioReuseport => "glommio-reuseport",
            #[cfg(feature = "uring")]
            BackendKind::Uring => "uring",
            #[cfg(feature = "uring")]
            BackendKind::UringSqpoll => "uring-sqpoll",
            #[cfg(feature = "uring")]
            BackendKind::UringFixed => "uring-fixed",
            #[cfg(feature = "uring")]
            BackendKind::UringReuseport => "uring-reuseport",
        }
    }

    /// The backend whose client a server of this kind pairs with (server
    /// layouts such as tokio-per-core or mio-reuseport use their crate's client).
    pub fn client_kind(self) -> BackendKind {
        match self {
            #[cfg(feature = "tokio")]
            BackendKind::TokioTasks | BackendKind::TokioPerCore | BackendKind::TokioPerCoreReuseport => {
                BackendKind::Tokio
            }
            #[cfg(feature = "mio")]
            BackendKind::MioReuseport => BackendKind::Mio,
            #[cfg(feature = "glommio")]
            BackendKind::GlommioReuseport => BackendKind::Glommio,
            #[cfg(feature = "uring")]
            BackendKind::UringSqpoll | BackendKind::UringFixed | BackendKind::UringReuseport => BackendKind::Uring,
            other => other,
        }
    }

    /// Why this backend cannot run on this machine, if it cannot (glommio
    /// without io_uring or with too little locked memory, uring on a
    /// kernel without multishot receive or buffer rings).
    pub fn unavailable(self) -> Option<String> {
        match self {
            #[cfg(feature = "glommio")]
            BackendKind::Glommio | BackendKind::GlommioReuseport => {
                fastwire_glommio::probe().err().map(|e| e.to_string())
            }
            #[cfg(feature = "uring")]
            BackendKind::Uring | BackendKind::UringSqpoll | BackendKind::UringFixed | BackendKind::UringReuseport => {
                fastwire_uring::probe().err().map(|e| e.to_string())
            }
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Whether the closed loop loads this backend's client with `depth`
    /// caller tasks per connection (`tokio-tasks`) rather than pipelining
    /// from one caller per connection.
    pub fn caller_tasks(self) -> bool {
        #[cfg(feature = "tokio")]
        if self == BackendKind::TokioTasks {
            return true;
        }
        false
    }

    /// Whether `compare` gives this backend a row of its own as a client
    /// (`--role client`): a client crate's own, or a load shape of one.
    pub fn has_client_row(self) -> bool {
        self.client_kind() == self || self.caller_tasks()
    }

    /// Backends with a client of their own (the per-core flavor is a server layout).
    pub fn clients() -> impl Iterator<Item = BackendKind> {
        BackendKind::ALL.iter().copied().filter(|k| k.client_kind() == *k)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`BackendKind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownBackend(pub String);

impl fmt::Display for UnknownBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = BackendKind::ALL.iter().chain(BackendKind::VARIANTS).map(|k| k.name()).collect();
        write!(f, "unknown backend {:?}: this build has {}", self.0, names.join(", "))
    }
}

impl std::error::Error for UnknownBackend {}

impl FromStr for BackendKind {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut every = BackendKind::ALL.iter().chain(BackendKind::VARIANTS).copied();
        every.find(|k| k.name() == s).ok_or_else(|| UnknownBackend(s.to_owned()))
    }
}

/// A running server of any backend.
pub trait RunningServer: Send {
    /// The address it listens on.
    fn local_addr(&self) -> SocketAddr;
    /// Its counters now.
    fn stats(&self) -> ServerStats;
    /// Graceful shutdown, with `grace` to finish in-flight work.
    fn shutdown(self: Box<Self>, grace: Duration) -> ShutdownReport;
}

/// A client of any backend, called from blocking code.
pub trait BlockingClient: Send + Sync {
    /// Calls and waits, at most `timeout`.
    fn call_timeout(&self, name: &[u8], value: &[u8], timeout: Duration) -> Result<Reply, ClientError>;
    /// Fire-and-forget.
    fn send(&self, name: &[u8], value: &[u8]) -> Result<(), ClientError>;
    /// Calls awaiting a response.
    fn pending(&self) -> usize;
    /// The client's counters (unsolicited responses, buffer capacity).
    fn stats(&self) -> ClientStats;
    /// Closes the connection.
    fn close(&self);
}

/// Starts a server of `kind` on `addr` serving `handler`.
pub fn start_server<H: Handler + 'static>(
    kind: BackendKind,
    addr: SocketAddr,
    config: ServerConfig,
    handler: H,
) -> io::Result<Box<dyn RunningServer>> {
    Ok(match kind {
        #[cfg(feature = "std")]
        BackendKind::Std => Box::new(fastwire_std::Server::bind(addr, config)?.serve(handler)?),
        #[cfg(feature = "tokio")]
        BackendKind::Tokio | BackendKind::TokioTasks => {
            Box::new(fastwire_tokio::Server::bind(addr, config)?.serve(handler)?)
        }
        #[cfg(feature = "tokio")]
        BackendKind::TokioPerCore => {
            Box::new(fastwire_tokio::Server::bind_with(addr, config, tokio_per_core())?.serve(handler)?)
        }
        #[cfg(feature = "mio")]
        BackendKind::Mio => Box::new(fastwire_mio::Server::bind(addr, config)?.serve(handler)?),
        #[cfg(feature = "glommio")]
        BackendKind::Glommio => Box::new(fastwire_glommio::Server::bind(addr, config)?.serve(handler)?),
        #[cfg(feature = "glommio")]
        BackendKind::GlommioReuseport => Box::new(glommio_reuseport(addr, config)?.serve(handler)?),
        #[cfg(feature = "uring")]
        BackendKind::Uring => Box::new(fastwire_uring::Server::bind(addr, config)?.serve(handler)?),
        #[cfg(feature = "uring")]
        BackendKind::UringSqpoll | BackendKind::UringFixed | BackendKind::UringReuseport => {
            let options = match kind {
                BackendKind::UringSqpoll => fastwire_uring::Options { sqpoll_idle_ms: Some(10), ..Default::default() },
                BackendKind::UringFixed => fastwire_uring::Options { fixed_files: true, ..Default::default() },
                _ => fastwire_uring::Options { accept: fastwire_uring::Accept::ReusePort, ..Default::default() },
            };
            Box::new(fastwire_uring::Server::bind_with(addr, config, options)?.serve(handler)?)
        }
        #[cfg(feature = "mio")]
        BackendKind::MioReuseport => {
            let options = fastwire_mio::Options { accept: fastwire_mio::Accept::ReusePort, ..Default::default() };
            Box::new(fastwire_mio::Server::bind_with(addr, config, options)?.serve(handler)?)
        }
        #[cfg(feature = "tokio")]
        BackendKind::TokioPerCoreReuseport => {
            Box::new(fastwire_tokio::Server::bind_with(addr, config, per_core_reuseport())?.serve(handler)?)
        }
    })
}

/// glommio with a `SO_REUSEPORT` listener per executor.
#[cfg(feature = "glommio")]
fn glommio_reuseport(addr: SocketAddr, config: ServerConfig) -> io::Result<fastwire_glommio::Server> {
    let options = fastwire_glommio::Options { accept: fastwire_glommio::Accept::ReusePort, ..Default::default() };
    fastwire_glommio::Server::bind_with(addr, config, options)
}

/// tokio's per-core flavor, connections handed to the runtimes in turn.
#[cfg(feature = "tokio")]
fn tokio_per_core() -> fastwire_tokio::Options {
    fastwire_tokio::Options { flavor: fastwire_tokio::Flavor::per_core() }
}

/// tokio's per-core flavor with a `SO_REUSEPORT` listener per runtime.
#[cfg(feature = "tokio")]
fn per_core_reuseport() -> fastwire_tokio::Options {
    let flavor = match fastwire_tokio::Flavor::per_core() {
        fastwire_tokio::Flavor::PerCore { cores, .. } => {
            fastwire_tokio::Flavor::PerCore { cores, accept: fastwire_tokio::Accept::ReusePort }
        }
        other => other,
    };
    fastwire_tokio::Options { flavor }
}

/// Starts a server of `kind` running a blocking `handler` on its worker
/// pool (`serve_blocking`: `config.blocking_threads` threads).
pub fn start_blocking<H: Handler + 'static>(
    kind: BackendKind,
    addr: SocketAddr,
    config: ServerConfig,
    handler: H,
) -> io::Result<Box<dyn RunningServer>> {
    let threads = config.blocking_threads;
    start_server(kind, addr, config, fastwire_common::Blocking::new(handler, threads)?)
}

/// Starts a server of `kind` serving an `async` handler (`serve_async`),
/// where the architecture has futures: tokio (both flavors) and glommio.
/// Other kinds fail with `ErrorKind::Unsupported`.
pub fn start_async<F, Fut>(
    kind: BackendKind,
    addr: SocketAddr,
    config: ServerConfig,
    handler: F,
) -> io::Result<Box<dyn RunningServer>>
where
    F: Fn(fastwire_common::OwnedRequest, fastwire_proto::Responder) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let _ = (&addr, &config, &handler);
    Ok(match kind {
        #[cfg(feature = "tokio")]
        BackendKind::Tokio | BackendKind::TokioTasks => {
            Box::new(fastwire_tokio::Server::bind(addr, config)?.serve_async(handler)?)
        }
        #[cfg(feature = "tokio")]
        BackendKind::TokioPerCore => {
            Box::new(fastwire_tokio::Server::bind_with(addr, config, tokio_per_core())?.serve_async(handler)?)
        }
        #[cfg(feature = "tokio")]
        BackendKind::TokioPerCoreReuseport => {
            Box::new(fastwire_tokio::Server::bind_with(addr, config, per_core_reuseport())?.serve_async(handler)?)
        }
        #[cfg(feature = "glommio")]
        BackendKind::Glommio => Box::new(fastwire_glommio::Server::bind(addr, config)?.serve_async(handler)?),
        #[cfg(feature = "glommio")]
        BackendKind::GlommioReuseport => Box::new(glommio_reuseport(addr, config)?.serve_async(handler)?),
        #[allow(unreachable_patterns)]
        other => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{other} has no async handlers (its handlers wait by deferring, or on serve_blocking)"),
            ))
        }
    })
}

/// Whether `kind` runs `async` handlers ([`start_async`]).
pub fn has_async(kind: BackendKind) -> bool {
    matches!(kind.client_kind().name(), "tokio" | "glommio")
}

/// A client of `kind` (for a per-core server kind: its client) for `addr`.
pub fn blocking_client(
    kind: BackendKind,
    addr: SocketAddr,
    config: ClientConfig,
) -> io::Result<Box<dyn BlockingClient>> {
    Ok(match kind.client_kind() {
        #[cfg(feature = "std")]
        BackendKind::Std => Box::new(fastwire_std::Client::new(addr, config)),
        #[cfg(feature = "mio")]
        BackendKind::Mio | BackendKind::MioReuseport => Box::new(fastwire_mio::Client::new(addr, config)),
        #[cfg(feature = "glommio")]
        BackendKind::Glommio | BackendKind::GlommioReuseport => Box::new(fastwire_glommio::Client::new(addr, config)),
        #[cfg(feature = "uring")]
        BackendKind::Uring | BackendKind::UringSqpoll | BackendKind::UringFixed | BackendKind::UringReuseport => {
            Box::new(fastwire_uring::Client::new(addr, config))
        }
        #[cfg(feature = "tokio")]
        BackendKind::Tokio
        | BackendKind::TokioTasks
        | BackendKind::TokioPerCore
        | BackendKind::TokioPerCoreReuseport => {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
            Box::new(TokioBlocking { client: fastwire_tokio::Client::new(addr, config), runtime })
        }
    })
}

/// Every backend's `ServerHandle` is `fastwire_common::ServerHandle` around its own part.
impl<S: Serving> RunningServer for fastwire_common::ServerHandle<S> {
    fn local_addr(&self) -> SocketAddr {
        fastwire_common::ServerHandle::local_addr(self)
    }
    fn stats(&self) -> ServerStats {
        fastwire_common::ServerHandle::stats(self)
    }
    fn shutdown(self: Box<Self>, grace: Duration) -> ShutdownReport {
        fastwire_common::ServerHandle::shutdown(*self, grace)
    }
}

/// The thread-based clients (std, mio, glommio, uring) share one implementation.
impl<D: Driver> BlockingClient for fastwire_common::client::Client<D> {
    fn call_timeout(&self, name: &[u8], value: &[u8], timeout: Duration) -> Result<Reply, ClientError> {
        fastwire_common::client::Client::call_timeout(self, name, value, timeout)
    }
    fn send(&self, name: &[u8], value: &[u8]) -> Result<(), ClientError> {
        fastwire_common::client::Client::send(self, name, value)
    }
    fn pending(&self) -> usize {
        fastwire_common::client::Client::pending(self)
    }
    fn stats(&self) -> ClientStats {
        fastwire_common::client::Client::stats(self)
    }
    fn close(&self) {
        fastwire_common::client::Client::close(self)
    }
}

/// A tokio client with a one-worker runtime of its own, for blocking callers.
#[cfg(feature = "tokio")]
struct TokioBlocking {
    client: fastwire_tokio::Client,
    runtime: tokio::runtime::Runtime,
}

#[cfg(feature = "tokio")]
impl BlockingClient for TokioBlocking {
    fn call_timeout(&self, name: &[u8], value: &[u8], timeout: Duration) -> Result<Reply, ClientError> {
        self.runtime.block_on(self.client.call_timeout(name, value, timeout))
    }
    fn send(&self, name: &[u8], value: &[u8]) -> Result<(), ClientError> {
        self.runtime.block_on(self.client.send(name, value))
    }
    fn pending(&self) -> usize {
        self.client.pending()
    }
    fn stats(&self) -> ClientStats {
        self.client.stats()
    }
    fn close(&self) {
        self.client.close()
    }
}

/// Closed loop (or fire-and-forget, for `nowait`) through the client of
/// `client` (std, mio, glommio or uring: threads; tokio: tasks). `handled` counts
/// the requests the server handled, if it is in this process.
pub fn closed_loop(
    client: BackendKind,
    addr: SocketAddr,
    spec: &crate::harness::Spec,
    timing: &crate::harness::Timing,
    mode: crate::harness::sample::Mode,
    handled: Option<&dyn Fn() -> u64>,
) -> Result<crate::harness::Sample, String> {
    match client.client_kind() {
        #[cfg(feature = "std")]
        BackendKind::Std => {
            drive::closed_threads::<fastwire_std::client::ThreadPair>(addr, spec, timing, mode, handled)
        }
        #[cfg(feature = "mio")]
        BackendKind::Mio => {
            drive::closed_threads::<fastwire_mio::client::ReactorThread>(addr, spec, timing, mode, handled)
        }
        #[cfg(feature = "glommio")]
        BackendKind::Glommio => {
            drive::closed_threads::<fastwire_glommio::client::ExecutorThread>(addr, spec, timing, mode, handled)
        }
        #[cfg(feature = "uring")]
        BackendKind::Uring => {
            drive::closed_threads::<fastwire_uring::client::RingThread>(addr, spec, timing, mode, handled)
        }
        #[cfg(feature = "tokio")]
        BackendKind::Tokio => {
            let tasks = client.caller_tasks();
            drive::closed_async::<fastwire_tokio::Client>(&(), addr, spec, timing, mode, handled, tasks)
        }
        #[allow(unreachable_patterns)]
        other => Err(format!("{other} has no client of its own")),
    }
}

use crate::harness::balanced::Disrupt;

/// Where a balanced load's servers are: addresses, or a host name whose
/// addresses are resolved (and resolved again at an interval).
pub enum Servers<'a> {
    /// These addresses.
    Addrs(&'a [SocketAddr]),
    /// Every address of this `host:port`.
    Name(&'a str),
}

/// [`balanced::run`](crate::harness::balanced::run) with `client`'s
/// blocking backend's balanced client over `servers`; the tokio client has
/// tower's balancer instead, and says so.
pub fn balanced_load(
    client: BackendKind,
    servers: Servers<'_>,
    spec: &crate::harness::Spec,
    timing: &crate::harness::Timing,
    failover: bool,
    disrupt: Option<Disrupt<'_>>,
) -> Result<(crate::harness::Sample, Vec<crate::harness::balanced::PerServer>), String> {
    fn run<D: Driver>(
        servers: Servers<'_>,
        spec: &crate::harness::Spec,
        timing: &crate::harness::Timing,
        failover: bool,
        disrupt: Option<Disrupt<'_>>,
    ) -> Result<(crate::harness::Sample, Vec<crate::harness::balanced::PerServer>), String> {
        let (config, balance) = (spec.client_config(), fastwire_common::BalanceConfig::default());
        let client = match servers {
            Servers::Addrs(addrs) => fastwire_common::Balanced::<D>::new(addrs, config, balance),
            Servers::Name(name) => fastwire_common::Balanced::<D>::resolve(name, config, balance)
                .map_err(|e| format!("resolving {name}: {e}"))?,
        };
        crate::harness::balanced::run(&client, spec, timing, failover, disrupt)
    }
    match client.client_kind() {
        #[cfg(feature = "std")]
        BackendKind::Std => run::<fastwire_std::client::ThreadPair>(servers, spec, timing, failover, disrupt),
        #[cfg(feature = "mio")]
        BackendKind::Mio => run::<fastwire_mio::client::ReactorThread>(servers, spec, timing, failover, disrupt),
        #[cfg(feature = "glommio")]
        BackendKind::Glommio => {
            run::<fastwire_glommio::client::ExecutorThread>(servers, spec, timing, failover, disrupt)
        }
        #[cfg(feature = "uring")]
        BackendKind::Uring => run::<fastwire_uring::client::RingThread>(servers, spec, timing, failover, disrupt),
        other => Err(format!(
            "the balanced client is the blocking backends' (--client std, mio, uring or glommio); \
             for {other}, tower's balancer over the tokio client (fastwire-tokio's tower feature)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in BackendKind::ALL.iter().chain(BackendKind::VARIANTS) {
            assert_eq!(kind.name().parse::<BackendKind>(), Ok(*kind));
        }
        assert!("epoll".parse::<BackendKind>().unwrap_err().to_string().contains("this build has"));
    }
}
