//! A client over many servers, for the blocking backends (std, mio, uring,
//! glommio): power of two choices on calls in flight, failover that loses
//! nothing and invents nothing, and servers found by name.
//!
//! ```text
//!  call ──▶ pick two servers at random among those up; take the cheaper:
//!           latency estimate x (calls in flight + 1) ──▶ that server's own
//!           Client (the backend's, with its connection, deadline, backoff)
//!   │
//!   ├─ answered ─────────────────────────────▶ the reply
//!   ├─ not sent (refused, in backoff) ───────▶ server marked down; the same
//!   │                                           call on another server
//!   └─ sent and lost (reset, deadline) ──────▶ server marked down; the error,
//!                                               naming the server (or, for a
//!                                               call marked safe to repeat and
//!                                               within the retry budget, once
//!                                               more on another server)
//!
//!  maintenance thread: probes each server that is down (connect and
//!  handshake) at its backoff's time, and marks it up once it answers;
//!  re-resolves a host name at its interval (servers come and go).
//! ```
//!
//! **Why power of two choices.** Picking the cheaper of two random
//! servers keeps every server's load within a small constant of the
//! average without the herd behaviour of always picking the cheapest,
//! which every caller would pick at once (Mitzenmacher, *The Power of Two
//! Choices in Randomized Load Balancing*). **Why peak EWMA as the cost.**
//! Calls in flight alone see a slow server only once its calls pile up,
//! and a server that answers each call in its own time (a wait, not a
//! queue) never piles up; so the cost is the server's latency estimate
//! times its calls in flight plus one (Finagle's peak EWMA, tower's
//! `load::PeakEwma`): a late call raises the estimate at once, faster
//! ones bring it down, and it decays with time
//! ([`BalanceConfig::latency_decay`]) so that a server that was slow is
//! tried again. tower's `balance::p2c` is the same policy for tokio's
//! `Service`s, and the tokio backend uses it (`fastwire_tokio::tower`);
//! the blocking clients are not `Service`s, and tower's balancer needs an
//! executor to drive readiness, so this is the same algorithm in a few
//! lines over the backends' clients.
//!
//! **What never happens twice.** A call whose request was never written (the
//! connection could not be made, or its server is in backoff) goes to
//! another server: it cannot have been served. A call whose connection died
//! after it was written may have been served, so it fails with the server's
//! name, unless the caller marked it safe to repeat
//! ([`Balanced::call_idempotent`]) and the [`RetryBudget`] allows one more
//! try, as tower's `retry` and gRPC's retry policy bound retries so that
//! they cannot multiply load on a struggling fleet.

use std::cell::Cell;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fastwire_proto::ClientConfig;

use crate::client::{Client, Driver};
use crate::{ClientError, Reply};

/// Servers one balanced client can know over its life (addresses that
/// resolution adds; one that goes and comes back keeps its place).
pub const MAX_SERVERS: usize = 256;

/// Why a balanced call failed: the server it failed on (none when no
/// server was up to try), and the error of that server's client.
#[derive(Clone, Debug)]
pub struct BalanceError {
    /// The server the call failed on.
    pub server: Option<SocketAddr>,
    /// What went wrong there.
    pub error: ClientError,
}

impl fmt::Display for BalanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.server {
            Some(server) => write!(f, "server {server}: {}", self.error),
            None => write!(f, "no server is up: {}", self.error),
        }
    }
}

impl std::error::Error for BalanceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// How many calls marked safe to repeat may be tried again: each call
/// deposits `ratio` of a retry, a retry withdraws one, and at most
/// `max_saved` are saved up. With the default (one retry per ten calls, at
/// most ten saved), a fleet that loses a server sees at most a tenth more
/// calls than its callers make.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    /// Retries earned per call made.
    pub ratio: f64,
    /// Retries that can be saved up (also the budget at start).
    pub max_saved: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget { ratio: 0.1, max_saved: 10 }
    }
}

/// Settings of a balanced client beyond each server's [`ClientConfig`].
#[derive(Clone, Debug, PartialEq)]
pub struct BalanceConfig {
    /// How often a host name is resolved again (servers come and go).
    pub resolve_every: Duration,
    /// The retries of calls marked safe to repeat.
    pub retry_budget: RetryBudget,
    /// How fast a server's latency estimate forgets (the time constant of
    /// its decay): a server that was slow and gets no calls is tried again
    /// once its estimate has decayed below the others' cost. Short, so that
    /// one late call does not hold a server's estimate up for long.
    pub latency_decay: Duration,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            resolve_every: Duration::from_secs(30),
            retry_budget: RetryBudget::default(),
            latency_decay: Duration::from_millis(10),
        }
    }
}

/// One server, what it did, and whether it is up, as [`Balanced::servers`]
/// reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerState {
    /// Its address.
    pub addr: SocketAddr,
    /// Whether calls go to it (down: failed, waiting for its probe).
    pub up: bool,
    /// Whether the last resolution still named it.
    pub listed: bool,
    /// Calls answered by it.
    pub answered: u64,
    /// Attempts that failed on it, those then sent to another server
    /// (never written: a refused connect, a backoff) included.
    pub failed: u64,
    /// Responses it sent for no call in progress (its client's
    /// [`ClientStats::unsolicited_responses`](crate::ClientStats)).
    pub unsolicited: u64,
}

/// A client over many servers (see the [module](self)). Cheap to clone:
/// clones share the servers, their connections and the maintenance
/// thread, which stops when the last clone is dropped.
pub struct Balanced<D: Driver> {
    shared: Arc<Shared<D>>,
}

impl<D: Driver> Clone for Balanced<D> {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        Balanced { shared: Arc::clone(&self.shared) }
    }
}

impl<D: Driver> fmt::Debug for Balanced<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balanced").field("servers", &self.servers()).finish()
    }
}

/// Where the servers come from.
enum Source {
    Addrs,
    Name(String),
}

struct Shared<D: Driver> {
    config: ClientConfig,
    balance: BalanceConfig,
    source: Source,
    /// Servers in the order they were first seen; `len` of them are set.
    slots: Box<[OnceLock<Server<D>>]>,
    len: AtomicUsize,
    /// Retries saved up, in thousandths.
    budget: AtomicI64,
    /// Clones alive: the last one to go stops the maintenance thread.
    handles: AtomicUsize,
    /// Adding servers, and waking the maintenance thread (a server went
    /// down, or the client closes): the flag is whether it is to stop.
    maintenance: Mutex<bool>,
    wake: Condvar,
    /// When this client started: the zero of `down_until`.
    epoch: Instant,
}

struct Server<D: Driver> {
    addr: SocketAddr,
    client: Client<D>,
    /// Named by the last resolution (a server no longer named gets no calls).
    listed: AtomicBool,
    /// Down until this many nanoseconds after `epoch` (0: up); its probe is due then.
    down_until: AtomicU64,
    /// Failures in a row, for the probe's backoff.
    failures: AtomicU32,
    answered: AtomicU64,
    failed: AtomicU64,
    /// The peak-EWMA latency estimate, in nanoseconds (`f64` bits), and
    /// when it was last updated (nanoseconds after `epoch`).
    latency: AtomicU64,
    latency_at: AtomicU64,
}

impl<D: Driver> Balanced<D> {
    /// A client over `addrs`, each reached through a `Client` with `config`.
    /// Connects lazily, as each server's client does.
    pub fn new(addrs: &[SocketAddr], config: ClientConfig, balance: BalanceConfig) -> Balanced<D> {
        let balanced = Balanced::start(Source::Addrs, config, balance);
        balanced.shared.list(addrs);
        balanced
    }

    /// A client over every address `name` (`host:port`) resolves to,
    /// resolved again every `balance.resolve_every`: servers that appear
    /// get calls, servers no longer named get none. Fails if `name`
    /// resolves to nothing now.
    pub fn resolve(name: &str, config: ClientConfig, balance: BalanceConfig) -> std::io::Result<Balanced<D>> {
        let addrs: Vec<SocketAddr> = name.to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{name} resolves to no address")));
        }
        let balanced = Balanced::start(Source::Name(name.to_owned()), config, balance);
        balanced.shared.list(&addrs);
        Ok(balanced)
    }

    fn start(source: Source, config: ClientConfig, balance: BalanceConfig) -> Balanced<D> {
        let budget = i64::from(balance.retry_budget.max_saved) * 1000;
        let shared = Arc::new(Shared {
            config,
            balance,
            source,
            slots: (0..MAX_SERVERS).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            budget: AtomicI64::new(budget),
            handles: AtomicUsize::new(1),
            maintenance: Mutex::new(false),
            wake: Condvar::new(),
            epoch: Instant::now(),
        });
        let weak = Arc::downgrade(&shared);
        // Not joined (see `Shared::stop`): the handle is let go.
        std::thread::Builder::new()
            .name("fastwire-balance".into())
            .spawn(move || maintain(weak))
            .expect("spawning the balanced client's maintenance thread");
        Balanced { shared }
    }

    /// Calls `name` with `value` on one server, with the clients' `call_timeout`.
    pub fn call(&self, name: &[u8], value: &[u8]) -> Result<Reply, BalanceError> {
        self.call_with(name, value, self.shared.config.call_timeout, false).map(|(reply, _)| reply)
    }

    /// [`call`](Self::call) with a deadline of its own.
    pub fn call_timeout(&self, name: &[u8], value: &[u8], timeout: Duration) -> Result<Reply, BalanceError> {
        self.call_with(name, value, timeout, false).map(|(reply, _)| reply)
    }

    /// A call the caller declares safe to repeat (it changes nothing, or
    /// changes it the same way twice): if its connection dies after it was
    /// sent, it is tried once more on another server, when the retry budget
    /// allows.
    pub fn call_idempotent(&self, name: &[u8], value: &[u8]) -> Result<Reply, BalanceError> {
        self.call_with(name, value, self.shared.config.call_timeout, true).map(|(reply, _)| reply)
    }

    /// [`call`](Self::call), and which server answered it (for a load that
    /// reports per server).
    pub fn call_and_server(&self, name: &[u8], value: &[u8]) -> Result<(Reply, SocketAddr), BalanceError> {
        self.call_with(name, value, self.shared.config.call_timeout, false)
    }

    fn call_with(
        &self,
        name: &[u8],
        value: &[u8],
        timeout: Duration,
        repeatable: bool,
    ) -> Result<(Reply, SocketAddr), BalanceError> {
        let shared = &*self.shared;
        shared.earn();
        let mut tried = Tried::default();
        let mut last: Option<BalanceError> = None;
        loop {
            let Some(index) = shared.pick(&tried) else {
                return Err(last.unwrap_or(BalanceError { server: None, error: shared.no_server() }));
            };
            tried.add(index);
            let server = shared.server(index);
            let sent = shared.now();
            match server.client.call_timeout(name, value, timeout) {
                Ok(reply) => {
                    shared.observe(server, sent);
                    server.answered.fetch_add(1, Ordering::Relaxed);
                    if server.failures.load(Ordering::Relaxed) != 0 {
                        server.failures.store(0, Ordering::Relaxed);
                    }
                    return Ok((reply, server.addr));
                }
                Err(error) => {
                    server.failed.fetch_add(1, Ordering::Relaxed);
                    let never_sent = matches!(error, ClientError::Connect { .. } | ClientError::Backoff { .. });
                    let lost = matches!(error, ClientError::ConnectionLost(_) | ClientError::Timeout(_));
                    if never_sent || lost {
                        shared.mark_down(server);
                    }
                    last = Some(BalanceError { server: Some(server.addr), error });
                    // Not sent: it cannot have been served, so another server
                    // may have it. Sent and lost: only if the caller said it
                    // may run twice, and the budget allows.
                    if !(never_sent || (lost && repeatable && shared.spend())) {
                        return Err(last.expect("just set"));
                    }
                }
            }
        }
    }

    /// Every server this client knows, with its counts and whether it is up.
    pub fn servers(&self) -> Vec<ServerState> {
        let shared = &*self.shared;
        (0..shared.len.load(Ordering::Acquire))
            .map(|i| {
                let s = shared.server(i);
                ServerState {
                    addr: s.addr,
                    up: s.down_until.load(Ordering::Relaxed) == 0,
                    listed: s.listed.load(Ordering::Relaxed),
                    answered: s.answered.load(Ordering::Relaxed),
                    failed: s.failed.load(Ordering::Relaxed),
                    unsolicited: s.client.stats().unsolicited_responses,
                }
            })
            .collect()
    }

    /// Closes every server's connection (their pending calls fail) and
    /// stops the maintenance thread; later calls fail with `Closed`.
    pub fn close(&self) {
        self.shared.stop();
        for i in 0..self.shared.len.load(Ordering::Acquire) {
            self.shared.server(i).client.close();
        }
    }
}

impl<D: Driver> Drop for Balanced<D> {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.stop();
        }
    }
}

/// The servers a call has tried, so that it does not try one twice.
#[derive(Default)]
struct Tried {
    few: [usize; 4],
    n: usize,
    more: Vec<usize>,
}

impl Tried {
    fn add(&mut self, index: usize) {
        match self.few.get_mut(self.n) {
            Some(slot) => *slot = index,
            None => self.more.push(index),
        }
        self.n += 1;
    }

    fn contains(&self, index: usize) -> bool {
        self.few[..self.n.min(4)].contains(&index) || self.more.contains(&index)
    }
}

thread_local! {
    /// Each thread's random numbers for the two choices (xorshift64*).
    static RANDOM: Cell<u64> = Cell::new({
        let seed = std::collections::hash_map::RandomState::new();
        std::hash::BuildHasher::hash_one(&seed, std::thread::current().id()) | 1
    });
}

fn random() -> u64 {
    RANDOM.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

impl<D: Driver> Shared<D> {
    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.maintenance.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn server(&self, index: usize) -> &Server<D> {
        self.slots[index].get().expect("below len")
    }

    /// Makes `addrs` the listed servers: new ones join, missing ones get no
    /// more calls.
    fn list(&self, addrs: &[SocketAddr]) {
        let _adding = self.lock();
        let len = self.len.load(Ordering::Acquire);
        for i in 0..len {
            let server = self.server(i);
            server.listed.store(addrs.contains(&server.addr), Ordering::Relaxed);
        }
        let mut len = len;
        for &addr in addrs {
            if (0..len).any(|i| self.server(i).addr == addr) {
                continue;
            }
            if len == MAX_SERVERS {
                tracing::warn!(%addr, "a balanced client knows {MAX_SERVERS} servers already: not adding one more");
                break;
            }
            let server = Server {
                addr,
                client: Client::new(addr, self.config.clone()),
                listed: AtomicBool::new(true),
                down_until: AtomicU64::new(0),
                failures: AtomicU32::new(0),
                answered: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                latency: AtomicU64::new(0f64.to_bits()),
                latency_at: AtomicU64::new(0),
            };
            let _ = self.slots[len].set(server);
            len += 1;
            self.len.store(len, Ordering::Release);
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Whether a call may go to server `index`: listed, not tried by this
    /// call, and up (a server that is down waits for its probe, not for a
    /// call, to find it answering).
    fn usable(&self, index: usize, tried: &Tried) -> bool {
        let server = self.server(index);
        server.listed.load(Ordering::Relaxed)
            && !tried.contains(index)
            && server.down_until.load(Ordering::Relaxed) == 0
    }

    /// `server`'s latency estimate as last stored, and the share of it the
    /// time since then keeps at `now` (`exp(-elapsed / latency_decay)`).
    fn stored_estimate(&self, server: &Server<D>, now: u64) -> (f64, f64) {
        let estimate = f64::from_bits(server.latency.load(Ordering::Relaxed));
        let elapsed = now.saturating_sub(server.latency_at.load(Ordering::Relaxed)) as f64;
        (estimate, (-elapsed / self.balance.latency_decay.as_nanos().max(1) as f64).exp())
    }

    /// `server`'s latency estimate decayed to `now`.
    fn estimate(&self, server: &Server<D>, now: u64) -> f64 {
        let (estimate, keep) = self.stored_estimate(server, now);
        estimate * keep
    }

    /// Takes in the latency of a call `server` answered, sent at `sent`:
    /// a peak replaces the estimate at once, anything lower is averaged
    /// in with the weight of the time since the last update (Finagle's
    /// peak EWMA, tower's `PeakEwma`). Updates from several threads may
    /// overlap; the estimate is a hint, and either update is one.
    fn observe(&self, server: &Server<D>, sent: u64) {
        let now = self.now();
        let took = now.saturating_sub(sent) as f64;
        let (old, keep) = self.stored_estimate(server, now);
        let estimate = if took > old { took } else { old * keep + took * (1.0 - keep) };
        server.latency.store(estimate.to_bits(), Ordering::Relaxed);
        server.latency_at.store(now, Ordering::Relaxed);
    }

    // ANCHOR: pick
    /// Of two servers drawn at random among those a call may use, the one
    /// with the lower cost: its latency estimate times its calls in flight
    /// plus this one; any usable server if the two drawn may not be used.
    fn pick(&self, tried: &Tried) -> Option<usize> {
        let n = self.len.load(Ordering::Acquire);
        let ok = |i: usize| self.usable(i, tried);
        if n <= 1 {
            return (n == 1 && ok(0)).then_some(0);
        }
        let r = random();
        let a = (r % n as u64) as usize;
        let b = (a + 1 + ((r >> 32) % (n as u64 - 1)) as usize) % n;
        match (ok(a), ok(b)) {
            (true, true) => {
                let now = self.now();
                let cost = |i: usize| {
                    let server = self.server(i);
                    // At least a nanosecond: once every estimate has decayed
                    // away (a client that calls rarely), calls in flight decide.
                    self.estimate(server, now).max(1.0) * (server.client.pending() + 1) as f64
                };
                Some(if cost(b) < cost(a) { b } else { a })
            }
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => (0..n).map(|k| (a + k) % n).find(|&i| ok(i)),
        }
    }
    // ANCHOR_END: pick

    /// The error when no server may be tried.
    fn no_server(&self) -> ClientError {
        if *self.lock() {
            return ClientError::Closed;
        }
        ClientError::lost(std::io::ErrorKind::NotConnected, "every server is down or was tried")
    }

    /// Takes `server` out of the picks until its probe finds it answering.
    fn mark_down(&self, server: &Server<D>) {
        let failures = server.failures.fetch_add(1, Ordering::Relaxed);
        let wait = self.backoff(failures);
        let until = (self.now() + wait.as_nanos() as u64).max(1);
        if server.down_until.swap(until, Ordering::Relaxed) == 0 {
            tracing::info!(server = %server.addr, ?wait, "server down: calls go to the others until it answers a probe");
            self.wake.notify_one();
        }
    }

    /// The wait before probing a server that failed `failures` times in a
    /// row before this: the clients' reconnection backoff, doubling.
    fn backoff(&self, failures: u32) -> Duration {
        let first = self.config.reconnect_backoff;
        first.saturating_mul(1 << failures.min(16)).min(self.config.max_reconnect_backoff.max(first))
    }

    /// A call's deposit into the retry budget.
    fn earn(&self) {
        let budget = self.balance.retry_budget;
        if budget.ratio <= 0.0 {
            return;
        }
        let max = i64::from(budget.max_saved) * 1000;
        let deposit = (budget.ratio * 1000.0) as i64;
        if self.budget.load(Ordering::Relaxed) < max {
            let _ = self.budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some((b + deposit).min(max)));
        }
    }

    /// Withdraws one retry, if the budget holds one.
    fn spend(&self) -> bool {
        self.budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| (b >= 1000).then_some(b - 1000)).is_ok()
    }

    /// Tells the maintenance thread to end. It is not joined: a probe in
    /// progress (a connect to a server that does not answer) may take up to
    /// the clients' `connect_timeout`, and a drop must not wait for it; the
    /// thread ends at its next look at `stop`.
    fn stop(&self) {
        *self.lock() = true;
        self.wake.notify_all();
    }
}

/// The maintenance thread: probes servers that are down when their wait is
/// over, re-resolves a name at its interval, and sleeps until the next of
/// these (or a wake-up: a server went down, the client closes). Holds the
/// client only while it works, so that dropping the last handle ends it.
fn maintain<D: Driver>(shared: std::sync::Weak<Shared<D>>) {
    let mut next_resolve = None;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let resolve_every = matches!(s.source, Source::Name(_)).then_some(s.balance.resolve_every);
        let now = Instant::now();
        let resolve_at = *next_resolve.get_or_insert_with(|| resolve_every.map(|every| now + every));
        if let (Some(at), Source::Name(name)) = (resolve_at, &s.source) {
            if now >= at {
                match name.to_socket_addrs() {
                    Ok(addrs) => s.list(&addrs.collect::<Vec<_>>()),
                    Err(error) => tracing::warn!(%name, %error, "resolving the balanced client's servers again"),
                }
                next_resolve = Some(resolve_every.map(|every| now + every));
                continue;
            }
        }
        // Probe the servers whose wait is over; find the next wait's end.
        let mut next_probe: Option<u64> = None;
        for i in 0..s.len.load(Ordering::Acquire) {
            let server = s.server(i);
            let until = server.down_until.load(Ordering::Relaxed);
            if until == 0 {
                continue;
            }
            if s.now() < until {
                next_probe = Some(next_probe.map_or(until, |n| n.min(until)));
                continue;
            }
            match server.client.wait_connected() {
                Ok(()) => {
                    server.failures.store(0, Ordering::Relaxed);
                    server.down_until.store(0, Ordering::Relaxed);
                    tracing::info!(server = %server.addr, "server up again: it answered its probe");
                }
                Err(error) => {
                    let wait = s.backoff(server.failures.fetch_add(1, Ordering::Relaxed));
                    let until = s.now() + wait.as_nanos() as u64;
                    server.down_until.store(until, Ordering::Relaxed);
                    next_probe = Some(next_probe.map_or(until, |n| n.min(until)));
                    tracing::debug!(server = %server.addr, %error, ?wait, "probe failed");
                }
            }
        }
        let mut wait: Option<Duration> = next_probe.map(|n| Duration::from_nanos(n.saturating_sub(s.now())));
        if let Some(at) = resolve_at {
            let until_resolve = at.saturating_duration_since(Instant::now());
            wait = Some(wait.map_or(until_resolve, |w| w.min(until_resolve)));
        }
        let guard = s.lock();
        if *guard {
            return;
        }
        let guard = match wait {
            Some(w) => s.wake.wait_timeout(guard, w).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0),
            None => s.wake.wait(guard).unwrap_or_else(|p| p.into_inner()),
        };
        if *guard {
            return;
        }
    }
}
