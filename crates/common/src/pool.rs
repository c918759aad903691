//! A pool of connections: up to N clients per server address, for any backend.
//!
//! One fastwire connection carries many calls at once, so a pool is not
//! needed for concurrency the way an HTTP/1 pool is; it spreads load over a
//! few connections (one per server core, say) and survives one of them
//! dying. A call goes to the least busy client; a new one is made while
//! every existing one is at least `spread_at` busy (default 1: it has a
//! call in flight) and fewer than `max_per_addr` exist. "Busy" counts the
//! calls a client has in flight *and* the handles [`Pool::client`] has given
//! out for it and not yet dropped: callers that pick a client at the same
//! moment, before any of their calls has started, still see each other
//! (counting in-flight calls alone, 20 concurrent callers of a pool of up
//! to 8 all picked the first connection and opened 2). Each backend's
//! client closes its connection after `idle_timeout` unused and reconnects
//! on the next call, so an idle pool holds no sockets.
//!
//! Each backend exports `Pool` as `fastwire_common::Pool<its Client>`; use
//! it as `pool.client(addr).call(name, value)`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    spread_at: usize,
    clients: Arc<Mutex<HashMap<SocketAddr, Vec<Entry<C>>>>>,
}

/// A client and how many handles to it are out.
#[derive(Debug)]
struct Entry<C> {
    client: C,
    in_use: Arc<AtomicUsize>,
}

impl<C: PoolClient> Entry<C> {
    /// How busy it is: calls in flight, or handles out, whichever is more.
    fn load(&self) -> usize {
        self.client.pending().max(self.in_use.load(Ordering::Relaxed))
    }

    fn check_out(&self) -> Pooled<C> {
        self.in_use.fetch_add(1, Ordering::Relaxed);
        Pooled { client: self.client.clone(), in_use: Arc::clone(&self.in_use) }
    }
}

/// A client handed out by [`Pool::client`]: use it as the client itself
/// (it dereferences to it). Until it is dropped it counts as busy, so that
/// callers picking at the same moment spread over connections.
#[derive(Debug)]
pub struct Pooled<C> {
    client: C,
    in_use: Arc<AtomicUsize>,
}

impl<C> Deref for Pooled<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.client
    }
}

impl<C> Drop for Pooled<C> {
    fn drop(&mut self) {
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<C: PoolClient> Pool<C> {
    /// A pool opening at most `max_per_addr` connections to each address,
    /// a new one while every existing one is busy.
    pub fn new(config: ClientConfig, max_per_addr: usize) -> Self {
        Self::with_spread(config, max_per_addr, 1)
    }

    /// A pool that opens a new connection (up to `max_per_addr`) only while
    /// every existing one has at least `spread_at` calls in flight or
    /// handles out: a higher threshold keeps more calls on fewer connections
    /// (bigger batches per system call), a lower one spreads them.
    pub fn with_spread(config: ClientConfig, max_per_addr: usize, spread_at: usize) -> Self {
        Pool { config, max_per_addr: max_per_addr.max(1), spread_at: spread_at.max(1), clients: Arc::default() }
    }

    /// The client a call to `addr` should use now: the least busy one, or a
    /// new one while every one is at least `spread_at` busy and fewer than
    /// `max_per_addr` exist. Keep the handle for the length of the call.
    pub fn client(&self, addr: SocketAddr) -> Pooled<C> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let list = clients.entry(addr).or_default();
        let least_busy = list.iter().map(|e| (e.load(), e)).min_by_key(|(load, _)| *load);
        match least_busy {
            Some((load, e)) if load < self.spread_at || list.len() >= self.max_per_addr => e.check_out(),
            _ => {
                let entry = Entry { client: C::create(addr, self.config.clone()), in_use: Arc::default() };
                let handle = entry.check_out();
                list.push(entry);
                handle
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
        clients.values().flatten().for_each(|e| e.client.close());
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
        let a = pool.client(addr).clone();
        assert_eq!(pool.len(addr), 1);
        drop(pool.client(addr));
        assert_eq!(pool.len(addr), 1, "the first is idle (its handle dropped), so it is reused");
        a.0.store(5, Ordering::Relaxed);
        let b = pool.client(addr).clone();
        assert_eq!(pool.len(addr), 2);
        b.0.store(3, Ordering::Relaxed);
        let c = pool.client(addr);
        assert_eq!(pool.len(addr), 2, "at the limit");
        assert!(Arc::ptr_eq(&c.0, &b.0), "the least busy");
    }

    #[test]
    fn twenty_callers_at_once_spread_over_eight() {
        let pool: Pool<Fake> = Pool::new(ClientConfig::default(), 8);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        // Twenty callers pick a client before any of their calls has started.
        let handles: Vec<_> = (0..20).map(|_| pool.client(addr)).collect();
        assert_eq!(pool.len(addr), 8, "every connection, not the first one twenty times");
        let per_client: Vec<usize> = {
            let clients = pool.clients.lock().unwrap();
            clients[&addr].iter().map(|e| e.in_use.load(Ordering::Relaxed)).collect()
        };
        assert_eq!(per_client.iter().sum::<usize>(), 20);
        assert!(per_client.iter().all(|&n| (2..=3).contains(&n)), "spread evenly: {per_client:?}");
        drop(handles);
        // A higher threshold keeps callers on fewer connections.
        let pool: Pool<Fake> = Pool::with_spread(ClientConfig::default(), 8, 10);
        let _handles: Vec<_> = (0..20).map(|_| pool.client(addr)).collect();
        assert_eq!(pool.len(addr), 2);
    }
}
