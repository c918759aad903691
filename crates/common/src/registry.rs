//! The open connections of a server, so that a graceful shutdown can reach
//! them and wait for them.
//!
//! Each connection registers an entry of the backend's choosing (a socket
//! clone, an abort handle) and deregisters when it ends; shutdown signals
//! them, waits until the registry is empty or the grace period ends, and
//! then deals with whatever is left.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::stats::ServerCounters;

/// Open connections, each with an entry `T`.
#[derive(Debug)]
pub struct Registry<T> {
    inner: Mutex<Inner<T>>,
    emptied: Condvar,
}

#[derive(Debug)]
struct Inner<T> {
    next_id: u64,
    open: HashMap<u64, T>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry { inner: Mutex::new(Inner { next_id: 0, open: HashMap::new() }), emptied: Condvar::new() }
    }
}

impl<T> Registry<T> {
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a connection; returns its id.
    pub fn register(&self, entry: T) -> u64 {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.open.insert(id, entry);
        id
    }

    /// Removes a connection (and gives its slot back to `counters`).
    pub fn deregister(&self, id: u64, counters: &ServerCounters) {
        let mut inner = self.lock();
        if inner.open.remove(&id).is_some() {
            counters.close();
        }
        if inner.open.is_empty() {
            self.emptied.notify_all();
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.lock().open.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` on one connection's entry, if it is still open.
    pub fn for_id(&self, id: u64, f: impl FnOnce(&T)) {
        if let Some(entry) = self.lock().open.get(&id) {
            f(entry);
        }
    }

    /// Calls `f` on every open connection's entry.
    pub fn for_each(&self, mut f: impl FnMut(&T)) {
        self.lock().open.values().for_each(&mut f);
    }

    /// Waits until no connection is open or `deadline` passes; returns how
    /// many are still open.
    pub fn wait_empty(&self, deadline: Instant) -> usize {
        let mut inner = self.lock();
        while !inner.open.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            inner = self.emptied.wait_timeout(inner, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        inner.open.len()
    }
}
