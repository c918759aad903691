//! A pool of connections: up to N clients per server address, for any backend.
//!
//! One fastwire connection carries many calls at once, so a pool is not
//! needed for concurrency the way an HTTP/1 pool is; it spreads load over a
//! few connections (one per server core, say) and survives one of them
//! dying. A call goes to the least busy client; a new one is made only while
//! every existing one is busy and fewer than `max_per_addr` exist. Each
//! backend's client closes its connection after `idle_timeout` unused and
//! reconnects on the next call, so an idle pool holds no sockets.
//!
//! Each backend exports `Pool` as `fastwire_common::Pool<its Client>`; use
//! it as `pool.client(addr).call(name, value)`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use fastwire_proto::ClientConfig;

/// What a backend's client offers the pool.
pub trait PoolClient: Clone {
    /// A client for `addr` (connecting lazily).
    fn create(addr: SocketAddr, config: ClientConfig) -> Self;
    /// Calls awaiting a response now.
    fn pending(&self) -> usize;
    /// Closes the connection; pending calls fail.
    fn close(&self);
}

/// Clients for many addresses, at most `max_per_addr` each.
#[derive(Debug, Clone)]
pub struct Pool<C> {
    config: ClientConfig,
    max_per_addr: usize,
    clients: Arc<Mutex<HashMap<SocketAddr, Vec<C>>>>,
}

impl<C: PoolClient> Pool<C> {
    /// A pool opening at most `max_per_addr` connections to each address.
    pub fn new(config: ClientConfig, max_per_addr: usize) -> Self {
        Pool { config, max_per_addr: max_per_addr.max(1), clients: Arc::default() }
    }

    /// The client a call to `addr` should use now: an idle one, else a new
    /// one while under the limit, else the least busy.
    pub fn client(&self, addr: SocketAddr) -> C {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let list = clients.entry(addr).or_default();
        let least_busy = list.iter().map(|c| (c.pending(), c)).min_by_key(|(pending, _)| *pending);
        match least_busy {
            Some((pending, c)) if pending == 0 || list.len() >= self.max_per_addr => c.clone(),
            _ => {
                let client = C::create(addr, self.config.clone());
                list.push(client.clone());
                client
            }
        }
    }

    /// Clients made for `addr` so far.
    pub fn len(&self, addr: SocketAddr) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).get(&addr).map_or(0, Vec::len)
    }

    /// Whether no client was made yet.
    pub fn is_empty(&self) -> bool {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// Closes every connection and forgets every client.
    pub fn close(&self) {
        let clients = std::mem::take(&mut *self.clients.lock().unwrap_or_else(|p| p.into_inner()));
        clients.values().flatten().for_each(C::close);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Clone)]
    struct Fake(Arc<AtomicUsize>);
    impl PoolClient for Fake {
        fn create(_: SocketAddr, _: ClientConfig) -> Self {
            Fake(Arc::default())
        }
        fn pending(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
        fn close(&self) {}
    }

    #[test]
    fn grows_only_while_all_are_busy() {
        let pool: Pool<Fake> = Pool::new(ClientConfig::default(), 2);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = pool.client(addr);
        assert_eq!(pool.len(addr), 1);
        let _ = pool.client(addr);
        assert_eq!(pool.len(addr), 1, "the first is idle, so it is reused");
        a.0.store(5, Ordering::Relaxed);
        let b = pool.client(addr);
        assert_eq!(pool.len(addr), 2);
        b.0.store(3, Ordering::Relaxed);
        let c = pool.client(addr);
        assert_eq!(pool.len(addr), 2, "at the limit");
        assert!(Arc::ptr_eq(&c.0, &b.0), "the least busy");
    }
}
