//! Live connections for criterion: a server and its clients started once,
//! outside the timed part, then driven for exactly `n` operations per
//! sample (`Bencher::iter_custom`).
//!
//! The windowed runs of [`drive`](super::drive) suit reports (fixed time,
//! percentiles); criterion wants the other shape (a fixed count, timed),
//! and does its own statistics over many samples.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fastwire_common::client::{Client, Driver};

use super::drive::connect;
use super::workload::Spec;
use crate::backend::{BackendKind, RunningServer};

/// The clients of one backend, connected.
enum Clients {
    #[cfg(feature = "std")]
    Std(Vec<fastwire_std::Client>),
    #[cfg(feature = "mio")]
    Mio(Vec<fastwire_mio::Client>),
    #[cfg(feature = "glommio")]
    Glommio(Vec<fastwire_glommio::Client>),
    #[cfg(feature = "uring")]
    Uring(Vec<fastwire_uring::Client>),
    /// A current-thread runtime per connection (as `drive` runs tokio):
    /// each sample drives them from a thread per connection.
    #[cfg(feature = "tokio")]
    Tokio(Vec<(tokio::runtime::Runtime, fastwire_tokio::Client)>),
}

/// A running server of one backend and its connected clients.
pub struct Live {
    server: Option<Box<dyn RunningServer>>,
    clients: Clients,
    spec: Spec,
    name: Vec<u8>,
    value: Vec<u8>,
}

impl Live {
    /// Starts `kind`'s server on a free loopback port and connects
    /// `spec.connections` of its clients.
    pub fn start(kind: BackendKind, spec: &Spec) -> Result<Live, String> {
        if let Some(why) = kind.unavailable() {
            return Err(why);
        }
        let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
        let server = super::measure::start(kind, any, spec).map_err(|e| format!("starting the {kind} server: {e}"))?;
        let addr = server.local_addr();
        let clients = match kind.client_kind() {
            #[cfg(feature = "std")]
            BackendKind::Std => Clients::Std(connect(addr, spec)?),
            #[cfg(feature = "mio")]
            BackendKind::Mio => Clients::Mio(connect(addr, spec)?),
            #[cfg(feature = "glommio")]
            BackendKind::Glommio => Clients::Glommio(connect(addr, spec)?),
            #[cfg(feature = "uring")]
            BackendKind::Uring => Clients::Uring(connect(addr, spec)?),
            #[cfg(feature = "tokio")]
            BackendKind::Tokio => {
                let mut connections = Vec::new();
                for _ in 0..spec.connections {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("starting a runtime: {e}"))?;
                    let client = runtime.block_on(async {
                        let client = fastwire_tokio::Client::new(addr, spec.client_config());
                        client.wait_connected().await.map_err(|e| format!("connecting: {e}")).map(|()| client)
                    })?;
                    connections.push((runtime, client));
                }
                Clients::Tokio(connections)
            }
            #[allow(unreachable_patterns)]
            other => return Err(format!("{other} has no client of its own")),
        };
        let (name, value) = spec.request();
        Ok(Live { server: Some(server), clients, spec: spec.clone(), name, value })
    }

    /// Runs `ops` operations spread over the connections, `spec.depth` in
    /// flight on each (fire-and-forget: until the server has handled them
    /// all), and returns the time taken.
    pub fn run(&self, ops: u64) -> Duration {
        let per_connection = ops.div_ceil(self.spec.connections as u64);
        let handled_before = self.server.as_ref().map_or(0, |s| s.stats().requests);
        let start = Instant::now();
        match &self.clients {
            #[cfg(feature = "std")]
            Clients::Std(clients) => self.threads(clients, per_connection),
            #[cfg(feature = "mio")]
            Clients::Mio(clients) => self.threads(clients, per_connection),
            #[cfg(feature = "glommio")]
            Clients::Glommio(clients) => self.threads(clients, per_connection),
            #[cfg(feature = "uring")]
            Clients::Uring(clients) => self.threads(clients, per_connection),
            #[cfg(feature = "tokio")]
            Clients::Tokio(connections) => self.tasks(connections, per_connection),
        }
        if self.spec.workload.is_fire_and_forget() {
            let target = handled_before + per_connection * self.spec.connections as u64;
            let server = self.server.as_ref().expect("running");
            while server.stats().requests < target {
                std::thread::yield_now();
            }
        }
        start.elapsed()
    }

    fn threads<D: Driver>(&self, clients: &[Client<D>], per_connection: u64) {
        let (name, value, depth) = (&self.name[..], &self.value[..], self.spec.depth.max(1) as u64);
        let fire = self.spec.workload.is_fire_and_forget();
        std::thread::scope(|s| {
            for client in clients {
                s.spawn(move || {
                    if fire {
                        for _ in 0..per_connection {
                            client.send(name, value).expect("send");
                        }
                        return;
                    }
                    let mut in_flight = VecDeque::with_capacity(depth as usize);
                    for i in 0..per_connection {
                        if i >= depth {
                            in_flight
                                .pop_front()
                                .map(|c: fastwire_common::client::PendingCall<D>| c.wait().expect("call"));
                        }
                        in_flight.push_back(client.start(name, value).expect("call"));
                    }
                    for call in in_flight {
                        call.wait().expect("call");
                    }
                });
            }
        });
    }

    #[cfg(feature = "tokio")]
    fn tasks(&self, connections: &[(tokio::runtime::Runtime, fastwire_tokio::Client)], per_connection: u64) {
        let fire = self.spec.workload.is_fire_and_forget();
        let depth = if fire { 1 } else { self.spec.depth.max(1) as u64 };
        let (name, value) = (std::sync::Arc::new(self.name.clone()), std::sync::Arc::new(self.value.clone()));
        std::thread::scope(|s| {
            for (runtime, client) in connections {
                let (name, value) = (name.clone(), value.clone());
                s.spawn(move || {
                    let local = tokio::task::LocalSet::new();
                    local.block_on(runtime, async move {
                        let tasks: Vec<_> = (0..depth)
                            .map(|task| {
                                // This task's share of the connection's calls.
                                let calls = per_connection / depth + u64::from(task < per_connection % depth);
                                let (client, name, value) = (client.clone(), name.clone(), value.clone());
                                tokio::task::spawn_local(async move {
                                    for i in 0..calls {
                                        if fire {
                                            client.send(&name, &value).await.expect("send");
                                            // `send` only waits when 4 MiB are queued: let
                                            // the writer, on this same thread, run.
                                            if i % 256 == 255 {
                                                tokio::task::yield_now().await;
                                            }
                                        } else {
                                            client.call(&name, &value).await.expect("call");
                                        }
                                    }
                                    if fire {
                                        // The runtime stops when this returns: a call
                                        // behind the sends makes sure they were written.
                                        client.call(&name, &value).await.expect("call");
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.expect("task");
                        }
                    })
                });
            }
        });
    }

    /// Bytes of response value per operation (criterion's throughput).
    pub fn response_size(&self) -> usize {
        self.spec.response_size()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        match &self.clients {
            #[cfg(feature = "std")]
            Clients::Std(clients) => clients.iter().for_each(Client::close),
            #[cfg(feature = "mio")]
            Clients::Mio(clients) => clients.iter().for_each(Client::close),
            #[cfg(feature = "glommio")]
            Clients::Glommio(clients) => clients.iter().for_each(Client::close),
            #[cfg(feature = "uring")]
            Clients::Uring(clients) => clients.iter().for_each(Client::close),
            #[cfg(feature = "tokio")]
            Clients::Tokio(connections) => connections.iter().for_each(|(_, client)| client.close()),
        }
        if let Some(server) = self.server.take() {
            server.shutdown(Duration::from_secs(2));
        }
    }
}
