//! The load: each backend's own client kept busy over a warm-up and a
//! measured window.
//!
//! Three shapes, as `measuring.md` defines the workloads:
//!
//! * **closed loop** ([`closed_loop`](crate::backend::closed_loop)): every connection keeps `depth`
//!   calls in flight; a call is replaced as soon as it completes. The
//!   thread-based clients (std, mio, glommio) are driven by one thread per
//!   connection that pipelines `depth` [`start`](fastwire_common::client::Client::start)ed
//!   calls and waits for the oldest; the tokio client by `depth` tasks per
//!   connection on a current-thread runtime of the connection's own. (Go's
//!   benchmark runs 1000 goroutines per connection; a thread per call would
//!   measure the scheduler, not the network.)
//! * **fire-and-forget** (the same function, `nowait`): one sender per
//!   connection; operations are counted by the server as it handles them.
//! * **open loop** ([`open_loop`]): calls are released at a fixed total
//!   rate by a pacing thread, whatever the server's speed, and each call's
//!   latency is counted from the moment it was *meant* to be sent. A slow
//!   server then shows up as latency instead of silently lowering the load
//!   (no coordinated omission). Its callers are tokio tasks, cheap enough
//!   for 10,000 connections in one load-generating process.
//!
//! A run is either timed (latency recorded) or counted (allocations
//! counted, nothing timed): allocs/op is never taken from a timed run.
//!
//! A run tells the truth or fails: every reply is checked against the
//! demo service's answer (unless [`Spec::check_replies`] is off), the first
//! failed call ends the whole run at once with its error, and the
//! responses the server sent for no call in progress are counted
//! ([`Sample::unsolicited`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use fastwire_common::client::{Client, Driver, PendingCall};
use fastwire_common::ClientError;

use super::sample::{window, Control, Mode, Sample, Tally, Timing, Window, MEASURE, STOP};

/// The time stamp of a call in the closed loops: read once per call, so its
/// cost is part of every thread client's figure. `quanta` reads the CPU's
/// time stamp counter and scales it (calibrated once against the OS clock;
/// it falls back to the OS clock where the counter is not invariant):
/// several times cheaper than `Instant::now()` (`clock_gettime` through the
/// vDSO and, on a VM, the hypervisor's clock page), which would be a
/// visible share of a pipelined call's cost in the harness thread.
type Stamp = quanta::Instant;
use super::workload::Spec;

fn failed(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Checks a reply against the demo service's answer, if checking.
#[inline]
fn check_reply(reply: &[u8], expected: Option<&[u8]>) -> Result<(), String> {
    match expected {
        Some(expected) if reply != expected => Err(wrong_reply(reply, expected)),
        _ => Ok(()),
    }
}

#[cold]
fn wrong_reply(reply: &[u8], expected: &[u8]) -> String {
    let start = |b: &[u8]| b[..b.len().min(24)].escape_ascii().to_string();
    format!(
        "a reply is not the demo service's answer: {} bytes \"{}\"..., expected {} bytes \"{}\"... \
         (--no-check to load a service other than fastwire's demo)",
        reply.len(),
        start(reply),
        expected.len(),
        start(expected)
    )
}

/// Joins the load threads and adds up what they saw; any error fails the run.
fn gather(
    workers: Vec<std::thread::ScopedJoinHandle<'_, Result<Tally, String>>>,
    window: Window,
    mode: Mode,
    fire: bool,
) -> Result<Sample, String> {
    let mut total = Tally::new(mode, fire);
    let mut error = None;
    for worker in workers {
        match worker.join().expect("load thread panicked") {
            Ok(tally) => total.merge(tally),
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(total.into_sample(window, fire)),
    }
}

/// `spec.connections` clients of one thread-based backend, each connected
/// and past its handshake (used by the windowed runs here and by `live`).
pub(crate) fn connect<D: Driver>(addr: SocketAddr, spec: &Spec) -> Result<Vec<Client<D>>, String> {
    let config = spec.client_config();
    (0..spec.connections)
        .map(|_| {
            let client = Client::<D>::new(addr, config.clone());
            client.wait_connected().map_err(|e| failed("connecting", e))?;
            Ok(client)
        })
        .collect()
}

/// A thread per connection: `depth` calls in flight, oldest awaited first.
pub(crate) fn closed_threads<D: Driver>(
    addr: SocketAddr,
    spec: &Spec,
    timing: &Timing,
    mode: Mode,
    handled: Option<&dyn Fn() -> u64>,
) -> Result<Sample, String> {
    let clients: Vec<Client<D>> = connect(addr, spec)?;
    let (name, value) = spec.request();
    let slow = spec.slow_request();
    let expected = Expected::of(spec);
    let fire = spec.workload.is_fire_and_forget();
    let control = Control::default();
    let result = std::thread::scope(|s| {
        let workers: Vec<_> = clients
            .iter()
            .map(|client| {
                let (name, value, control, expected) = (&name, &value, &control, &expected);
                let slow = spec.workload.slow_every().map(|every| (every, &slow.0[..], &slow.1[..]));
                s.spawn(move || {
                    let tally = if fire {
                        send_loop(client, name, value, control, mode).map_err(|e| failed("calling", e))
                    } else {
                        pipeline(client, spec.depth.max(1), (name, value), slow, expected, control, mode)
                    };
                    control.abort_on_error(tally).map(|mut tally| {
                        tally.unsolicited = client.stats().unsolicited_responses;
                        tally
                    })
                })
            })
            .collect();
        let window = window(&control, timing, mode, handled);
        gather(workers, window, mode, fire)
    });
    clients.iter().for_each(Client::close);
    result
}

/// A `mixed` connection's slow calls: one in `.0`, with this name and value.
type Slow<'a> = Option<(u64, &'a [u8], &'a [u8])>;

/// The answers every reply is checked against: the workload's call's and
/// its slow call's (`None`: not checked, see [`Spec::check_replies`]).
pub(crate) struct Expected {
    call: Option<Vec<u8>>,
    slow: Option<Vec<u8>>,
}

impl Expected {
    pub(crate) fn of(spec: &Spec) -> Expected {
        let (name, value) = spec.request();
        let (slow_name, slow_value) = spec.slow_request();
        Expected { call: spec.expected_reply(&name, &value), slow: spec.expected_reply(&slow_name, &slow_value) }
    }

    #[inline]
    fn of_call(&self, slow: bool) -> Option<&[u8]> {
        if slow {
            self.slow.as_deref()
        } else {
            self.call.as_deref()
        }
    }
}

/// Whether call number `n` of a connection is one of its slow calls.
#[inline]
fn is_slow(slow: Slow<'_>, n: u64) -> bool {
    slow.is_some_and(|(every, _, _)| n % every == every - 1)
}

/// One connection's calls: `depth` in flight; each completion is timed and
/// replaced at once. The moment a call completes is the moment its
/// replacement starts. The clock is read when a wait had to wait, and when
/// a call found already done started at the last reading: a call found
/// done that started before the last reading was most likely completed
/// before it (responses come in batches, and the caller's last wait read
/// the batch), so that reading, taken after the call began, is its
/// completion time; a call that started at the last reading needs a new
/// one (the old one would make its latency zero). With `slow` (`mixed`), every n-th
/// call is a slow one, counted but left out of the latency figures; slow
/// calls wait in a queue of their own, so that an instant call is never
/// timed late because a slow one ahead of it is still running.
// ANCHOR: pipeline
// Never inlined: whether the compiler folds this loop into its thread's
// entry changed between builds that did not touch it, and with it the
// clients' figures (layout and registers) and their profiles: kept a
// function of its own so that builds compare.
#[inline(never)]
fn pipeline<D: Driver>(
    client: &Client<D>,
    depth: usize,
    (name, value): (&[u8], &[u8]),
    slow: Slow<'_>,
    expected: &Expected,
    control: &Control,
    mode: Mode,
) -> Result<Tally, String> {
    let mut tally = Tally::new(mode, false);
    let mut in_flight = VecDeque::with_capacity(depth);
    let mut slow_in_flight = VecDeque::new();
    let mut n = 0u64;
    let mut now = Stamp::now();
    let start = |n: u64, now: Stamp, instant: &mut VecDeque<_>, slow_queue: &mut VecDeque<_>| {
        match slow {
            Some((_, slow_name, slow_value)) if is_slow(slow, n) => {
                slow_queue.push_back((client.start(slow_name, slow_value)?, now));
            }
            _ => instant.push_back((client.start(name, value)?, now)),
        }
        Ok::<(), ClientError>(())
    };
    for _ in 0..depth {
        start(n, now, &mut in_flight, &mut slow_in_flight).map_err(|e| failed("calling", e))?;
        n += 1;
    }
    let result = loop {
        let phase = control.phase();
        if phase == STOP {
            break Ok(());
        }
        let (call, started, was_slow) = next_due(&mut in_flight, &mut slow_in_flight, PendingCall::is_done);
        let waits = !call.is_done();
        let len = match checked_len(call.wait(), expected, was_slow) {
            Ok(len) => len,
            Err(e) => break Err(e),
        };
        if waits || started == now {
            now = Stamp::now();
        }
        if phase == MEASURE {
            if was_slow {
                tally.record_untimed(len);
            } else {
                tally.record(len, now - started);
            }
        }
        if let Err(e) = start(n, now, &mut in_flight, &mut slow_in_flight) {
            break Err(failed("calling", e));
        }
        n += 1;
    };
    // Let the calls still in flight finish, so that the next run starts clean.
    for (call, _) in in_flight.into_iter().chain(slow_in_flight) {
        let _ = call.wait();
    }
    result.map(|()| tally)
}
// ANCHOR_END: pipeline

/// The call a pipeline waits for next, when it started, and whether it is
/// a slow one: the oldest slow call if it is already done (or if no
/// instant call is in flight), else the oldest instant call.
#[inline]
fn next_due<T>(
    instant: &mut VecDeque<(T, Stamp)>,
    slow: &mut VecDeque<(T, Stamp)>,
    is_done: impl Fn(&T) -> bool,
) -> (T, Stamp, bool) {
    let slow_done = slow.front().is_some_and(|(call, _)| is_done(call));
    let (queue, was_slow) = if slow_done || instant.is_empty() { (slow, true) } else { (instant, false) };
    let (call, started) = queue.pop_front().expect("a call in flight");
    (call, started, was_slow)
}

/// A call's reply checked against the demo service's answer: its length.
#[inline]
fn checked_len<R: AsRef<[u8]>>(
    result: Result<R, ClientError>,
    expected: &Expected,
    was_slow: bool,
) -> Result<usize, String> {
    let reply = result.map_err(|e| failed("calling", e))?;
    check_reply(reply.as_ref(), expected.of_call(was_slow))?;
    Ok(reply.as_ref().len())
}

/// One connection's fire-and-forget requests, as fast as the client takes them.
fn send_loop<D: Driver>(
    client: &Client<D>,
    name: &[u8],
    value: &[u8],
    control: &Control,
    mode: Mode,
) -> Result<Tally, ClientError> {
    let mut tally = Tally::new(mode, true);
    loop {
        let phase = control.phase();
        if phase == STOP {
            return Ok(tally);
        }
        client.send(name, value)?;
        if phase == MEASURE {
            tally.ops += 1;
        }
    }
}

/// A client the async closed loop can drive: fastwire's tokio client, or
/// a peer's (see [`super::peers`]). Clones share one connection.
#[cfg(feature = "tokio")]
pub(crate) trait AsyncClient: Clone + Send + Sync + 'static {
    /// What a call returns.
    type Reply: AsRef<[u8]> + Send;
    /// Which stack to dial (nothing for fastwire's own client).
    type Dial: Sync;

    /// Connects to `addr` (and, for fastwire, waits for the handshake).
    fn connect(
        dial: &Self::Dial,
        addr: SocketAddr,
        spec: &Spec,
    ) -> impl std::future::Future<Output = Result<Self, String>> + Send;
    /// One call, its reply.
    fn call(&self, name: &[u8], value: &[u8]) -> impl std::future::Future<Output = Result<Self::Reply, String>> + Send;
    /// One fire-and-forget request (`nowait`), where the stack has them.
    fn send(&self, name: &[u8], value: &[u8]) -> impl std::future::Future<Output = Result<(), String>> + Send;
    /// The connection's whole load from one task, where the stack can start
    /// a call without awaiting it: `depth` calls in flight, oldest awaited
    /// first (the blocking clients' [`pipeline`]); `None` where it cannot.
    fn pipeline<'a>(
        &'a self,
        _depth: usize,
        _calls: &'a Calls,
        _expected: &'a Expected,
        _control: &'a Control,
    ) -> Option<impl std::future::Future<Output = Result<(), String>> + Send + 'a> {
        None::<std::future::Ready<Result<(), String>>>
    }
    /// Responses that matched no call, over the connection's life.
    fn unsolicited(&self) -> u64;
    /// Ends the connection.
    fn close(&self);
}

#[cfg(feature = "tokio")]
impl AsyncClient for fastwire_tokio::Client {
    type Reply = fastwire_common::Reply;
    type Dial = ();

    async fn connect(_: &(), addr: SocketAddr, spec: &Spec) -> Result<Self, String> {
        let client = fastwire_tokio::Client::new(addr, spec.client_config());
        client.wait_connected().await.map_err(|e| failed("connecting", e))?;
        Ok(client)
    }

    async fn call(&self, name: &[u8], value: &[u8]) -> Result<Self::Reply, String> {
        fastwire_tokio::Client::call(self, name, value).await.map_err(|e| failed("calling", e))
    }

    async fn send(&self, name: &[u8], value: &[u8]) -> Result<(), String> {
        fastwire_tokio::Client::send(self, name, value).await.map_err(|e| failed("calling", e))
    }

    fn pipeline<'a>(
        &'a self,
        depth: usize,
        calls: &'a Calls,
        expected: &'a Expected,
        control: &'a Control,
    ) -> Option<impl std::future::Future<Output = Result<(), String>> + Send + 'a> {
        Some(async_pipeline(self, depth, calls, expected, control))
    }

    fn unsolicited(&self) -> u64 {
        self.stats().unsolicited_responses
    }

    fn close(&self) {
        fastwire_tokio::Client::close(self);
    }
}

/// The closed loop of an [`AsyncClient`]: a thread per connection, each
/// with a current-thread tokio runtime running the connection and its
/// load (calls and responses never cross a thread). The load is one task
/// pipelining `depth` calls ([`AsyncClient::pipeline`]), as the thread of
/// a blocking client does; with `tasks`, or for a client that cannot start
/// a call without awaiting it, `depth` caller tasks that each make one
/// call at a time.
#[cfg(feature = "tokio")]
pub(crate) fn closed_async<C: AsyncClient>(
    dial: &C::Dial,
    addr: SocketAddr,
    spec: &Spec,
    timing: &Timing,
    mode: Mode,
    handled: Option<&dyn Fn() -> u64>,
    tasks: bool,
) -> Result<Sample, String> {
    let (name, value) = spec.request();
    let slow = spec.slow_request();
    let expected = Arc::new(Expected::of(spec));
    let fire = spec.workload.is_fire_and_forget();
    let control = Arc::new(Control::default());
    let ready = Barrier::new(spec.connections + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..spec.connections)
            .map(|_| {
                let (name, value, control, ready, slow, expected) =
                    (&name, &value, Arc::clone(&control), &ready, &slow, &expected);
                s.spawn(move || -> Result<Tally, String> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| failed("starting a runtime", e))?;
                    runtime.block_on(async move {
                        let connected = control.abort_on_error(C::connect(dial, addr, spec).await);
                        ready.wait();
                        let client = connected?;
                        CONNECTION.with(|c| c.start(Tally::new(mode, fire)));
                        let calls = || Calls {
                            request: (name.clone(), value.clone()),
                            slow: spec.workload.slow_every().map(|every| (every, slow.clone())),
                        };
                        if !fire && !tasks {
                            let calls = calls();
                            if let Some(run) = client.pipeline(spec.depth.max(1), &calls, expected, &control) {
                                let result = control.abort_on_error(run.await);
                                return finish(&client, result);
                            };
                        }
                        let callers: Vec<_> = (0..if fire { 1 } else { spec.depth.max(1) })
                            .map(|_| {
                                let (client, control, expected, calls) =
                                    (client.clone(), Arc::clone(&control), Arc::clone(expected), calls());
                                // On the runtime itself, beside the client's
                                // reader and writer tasks, as a tokio program
                                // spawns its tasks: not in a `LocalSet`, whose
                                // tick interleaves its tasks with the
                                // runtime's own and starves the writer of
                                // batches (see the tokio chapter).
                                tokio::spawn(async move {
                                    control
                                        .abort_on_error(async_caller(&client, &calls, &expected, &control, fire).await)
                                })
                            })
                            .collect();
                        let mut result = Ok(());
                        for caller in callers {
                            if let Err(e) = caller.await.expect("caller task panicked") {
                                result = result.and(Err(e));
                            }
                        }
                        finish(&client, result)
                    })
                })
            })
            .collect();
        ready.wait();
        let window = window(&control, timing, mode, handled);
        gather(workers, window, mode, fire)
    })
}

/// Ends a connection's run: closes the client and returns its tally.
#[cfg(feature = "tokio")]
fn finish<C: AsyncClient>(client: &C, result: Result<(), String>) -> Result<Tally, String> {
    let unsolicited = client.unsolicited();
    client.close();
    result?;
    let mut tally = CONNECTION.with(ConnectionTally::finish);
    tally.unsolicited = unsolicited;
    Ok(tally)
}

/// A request's name and value.
#[cfg(feature = "tokio")]
type NameValue = (Vec<u8>, Vec<u8>);

#[cfg(feature = "tokio")]
thread_local! {
    /// The tally and call numbering of the connection whose runtime runs
    /// on this thread. A current-thread runtime runs every task it spawns on
    /// the thread that drives it, so its callers share these without a lock
    /// or a reference count, and their futures stay `Send`.
    static CONNECTION: ConnectionTally = const {
        ConnectionTally { tally: std::cell::RefCell::new(None), tickets: std::cell::Cell::new(0) }
    };
}

/// See [`CONNECTION`].
#[cfg(feature = "tokio")]
struct ConnectionTally {
    tally: std::cell::RefCell<Option<Tally>>,
    /// `mixed`: the connection's calls are numbered, and every n-th is
    /// slow, whichever task makes it.
    tickets: std::cell::Cell<u64>,
}

#[cfg(feature = "tokio")]
impl ConnectionTally {
    fn start(&self, tally: Tally) {
        *self.tally.borrow_mut() = Some(tally);
        self.tickets.set(0);
    }

    fn record(&self, len: usize, latency: Option<Duration>) {
        if let Some(tally) = self.tally.borrow_mut().as_mut() {
            match latency {
                Some(latency) => tally.record(len, latency),
                None => tally.record_untimed(len),
            }
        }
    }

    fn finish(&self) -> Tally {
        self.tally.borrow_mut().take().expect("started")
    }
}

/// What a tokio caller sends: the workload's request, or for `mixed`
/// every n-th call of its connection the slow one.
#[cfg(feature = "tokio")]
pub(crate) struct Calls {
    request: NameValue,
    /// One call in `.0` is this slow one.
    slow: Option<(u64, NameValue)>,
}

#[cfg(feature = "tokio")]
impl Calls {
    /// The next call's name and value, and whether it is timed.
    fn next(&self) -> (&[u8], &[u8], bool) {
        let n = CONNECTION.with(|c| c.tickets.replace(c.tickets.get() + 1));
        match &self.slow {
            Some((every, (name, value))) if n % every == every - 1 => (name, value, false),
            _ => (&self.request.0, &self.request.1, true),
        }
    }
}

/// One async caller: a call at a time, timed, until the phase says stop.
#[cfg(feature = "tokio")]
async fn async_caller<C: AsyncClient>(
    client: &C,
    calls: &Calls,
    expected: &Expected,
    control: &Control,
    fire: bool,
) -> Result<(), String> {
    let mut started = Stamp::now();
    let mut sent = 0u32;
    loop {
        let phase = control.phase();
        if phase == STOP {
            return Ok(());
        }
        let (name, value, timed) = calls.next();
        let len = if fire {
            client.send(name, value).await?;
            // `send` only waits when 4 MiB are queued; yield now and then so
            // that the connection's writer, on this same thread, gets to run.
            sent = sent.wrapping_add(1);
            if sent % 256 == 0 {
                tokio::task::yield_now().await;
            }
            0
        } else {
            let reply = client.call(name, value).await?;
            let reply = reply.as_ref();
            check_reply(reply, expected.of_call(!timed))?;
            reply.len()
        };
        let now = Stamp::now();
        if phase == MEASURE {
            CONNECTION.with(|c| c.record(len, timed.then(|| now - started)));
        }
        started = now;
    }
}

/// fastwire's tokio client pipelined from one task, as [`pipeline`] does
/// with a blocking client: `depth` calls started, the oldest awaited, a new
/// one started as each ends, one clock read per wait. Slow calls (`mixed`)
/// wait in a queue of their own, so that an instant call is never timed
/// late because a slow one ahead of it is still running.
#[cfg(feature = "tokio")]
async fn async_pipeline(
    client: &fastwire_tokio::Client,
    depth: usize,
    calls: &Calls,
    expected: &Expected,
    control: &Control,
) -> Result<(), String> {
    // The next call, started, and the queue it waits in (slow or not).
    let start = || {
        let (name, value, timed) = calls.next();
        async move { client.start(name, value).await.map(|call| (call, timed)).map_err(|e| failed("calling", e)) }
    };
    let mut in_flight = VecDeque::with_capacity(depth);
    let mut slow_in_flight = VecDeque::new();
    let mut now = Stamp::now();
    for _ in 0..depth {
        let (call, timed) = start().await?;
        if timed { &mut in_flight } else { &mut slow_in_flight }.push_back((call, now));
    }
    let result = loop {
        let phase = control.phase();
        if phase == STOP {
            break Ok(());
        }
        let (call, started, was_slow) =
            next_due(&mut in_flight, &mut slow_in_flight, fastwire_tokio::PendingCall::is_done);
        let waits = !call.is_done();
        let len = match checked_len(call.await, expected, was_slow) {
            Ok(len) => len,
            Err(e) => break Err(e),
        };
        if waits || started == now {
            now = Stamp::now();
        }
        if phase == MEASURE {
            CONNECTION.with(|c| c.record(len, (!was_slow).then(|| now - started)));
        }
        match start().await {
            Ok((call, timed)) => if timed { &mut in_flight } else { &mut slow_in_flight }.push_back((call, now)),
            Err(e) => break Err(e),
        }
    };
    // Let the calls still in flight finish, so that the next run starts clean.
    for (call, _) in in_flight.into_iter().chain(slow_in_flight) {
        let _ = call.await;
    }
    result
}

/// Open loop: `spec.rate` calls per second over `spec.connections`
/// connections (`spec.depth` callers each), through tokio clients on a
/// one-worker runtime; latency from each call's intended send time.
#[cfg(feature = "tokio")]
pub fn open_loop(addr: SocketAddr, spec: &Spec, timing: &Timing, mode: Mode) -> Result<Sample, String> {
    let rate = spec.rate.filter(|r| *r > 0.0).ok_or("an open-loop run needs a rate above 0")?;
    let interval_ns = (1e9 / rate).max(1.0) as u64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| failed("starting a runtime", e))?;
    let config = spec.client_config();
    let (name, value) = spec.request();
    let (name, value) = (Arc::new(name), Arc::new(value));
    // Connect in batches, so that 10,000 connections do not overflow the
    // server's accept backlog all at once.
    let clients = runtime.block_on(async {
        let mut clients = Vec::with_capacity(spec.connections);
        for batch in (0..spec.connections).collect::<Vec<_>>().chunks(256) {
            let connecting: Vec<_> = batch
                .iter()
                .map(|_| {
                    let client = fastwire_tokio::Client::new(addr, config.clone());
                    tokio::spawn(async move { client.wait_connected().await.map(|()| client) })
                })
                .collect();
            for c in connecting {
                clients.push(c.await.expect("connect task panicked").map_err(|e| failed("connecting", e))?);
            }
        }
        Ok::<_, String>(clients)
    })?;
    let control = Arc::new(Control::default());
    let tally = Arc::new(Mutex::new(Tally::new(mode, false)));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None));
    let expected = Arc::new(spec.expected_reply(&name, &value));
    let mut queues = Vec::new();
    let mut callers = Vec::new();
    for client in &clients {
        for _ in 0..spec.depth.max(1) {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
            queues.push(tx);
            let (client, name, value) = (client.clone(), Arc::clone(&name), Arc::clone(&value));
            let (control, tally, errors) = (Arc::clone(&control), Arc::clone(&tally), Arc::clone(&errors));
            let (first_error, expected) = (Arc::clone(&first_error), Arc::clone(&expected));
            callers.push(runtime.spawn(async move {
                while let Some(intended) = rx.recv().await {
                    let phase = control.phase();
                    if phase == STOP {
                        break;
                    }
                    let checked = match client.call(&name, &value).await {
                        Ok(reply) => check_reply(&reply, expected.as_deref()).map(|()| reply),
                        Err(e) => Err(failed("calling", e)),
                    };
                    match checked {
                        Ok(reply) if phase == MEASURE => {
                            tally.lock().unwrap().record(reply.len(), intended.elapsed());
                        }
                        Ok(_) => {}
                        Err(e) => {
                            errors.fetch_add(1, Relaxed);
                            first_error.lock().unwrap().get_or_insert(e);
                            control.abort();
                        }
                    }
                }
            }));
        }
    }
    let result = std::thread::scope(|s| {
        let pacer = s.spawn(|| pace(&queues, interval_ns, &control));
        let window = window(&control, timing, mode, None);
        pacer.join().expect("pacer panicked");
        window
    });
    drop(queues);
    runtime.block_on(async {
        for caller in callers {
            let _ = caller.await;
        }
    });
    let unsolicited = clients.iter().map(|c| c.stats().unsolicited_responses).sum();
    clients.iter().for_each(fastwire_tokio::Client::close);
    let failures = errors.load(Relaxed);
    if failures > 0 {
        let first = first_error.lock().unwrap().take().unwrap_or_default();
        return Err(format!("{failures} calls failed; the first: {first}"));
    }
    let mut tally = Arc::try_unwrap(tally).ok().expect("callers finished").into_inner().unwrap();
    tally.unsolicited = unsolicited;
    Ok(tally.into_sample(result, false))
}

#[cfg(not(feature = "tokio"))]
/// Open loop needs the tokio client; this build has none.
pub fn open_loop(_: SocketAddr, _: &Spec, _: &Timing, _: Mode) -> Result<Sample, String> {
    Err("open-loop runs use the tokio client; this build has no tokio backend".into())
}

/// Releases one call every `interval`, round robin over the callers, until
/// stopped. The schedule is fixed in advance: a late release keeps its
/// intended time, so the delay counts as latency.
#[cfg(feature = "tokio")]
// ANCHOR: pace
fn pace(queues: &[tokio::sync::mpsc::UnboundedSender<Instant>], interval_ns: u64, control: &Control) {
    precise_sleeps();
    let start = Instant::now();
    let mut next = 0usize;
    while control.phase() != STOP {
        let intended = start + Duration::from_nanos(interval_ns * next as u64);
        let now = Instant::now();
        if intended > now {
            let wait = intended - now;
            // Sleep most of the wait, spin the last few microseconds.
            if wait > Duration::from_micros(30) {
                std::thread::sleep(wait - Duration::from_micros(20));
            } else {
                std::hint::spin_loop();
            }
            continue;
        }
        let _ = queues[next % queues.len()].send(intended);
        next += 1;
    }
}
// ANCHOR_END: pace

/// Linux rounds a thread's sleeps up by its timer slack (50 µs by default);
/// a pacer wants them exact.
fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and only changes this
    // thread's timer slack; no memory is passed.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// The `handshakes` workload: `spec.connections` dialer threads, each
/// opening a connection, handshaking (TLS too, if the spec says so),
/// making one call and closing, over and over. An operation is a whole
/// connection, so ops/s is handshakes per second; latency is the
/// connection's life, from `connect` to the response.
///
/// The dialers drive the protocol crate's client state machine over
/// blocking sockets themselves, so that every server meets the same load
/// and the cost measured is the server's (and the protocol's), not one
/// backend client's connection set-up.
pub fn handshakes(addr: SocketAddr, spec: &Spec, timing: &Timing, mode: Mode) -> Result<Sample, String> {
    let config = spec.client_config();
    let (name, value) = spec.request();
    let expected = spec.expected_reply(&name, &value);
    let control = Control::default();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..spec.connections.max(1))
            .map(|_| {
                let (config, name, value, control, expected) = (&config, &name, &value, &control, &expected);
                s.spawn(move || {
                    let mut tally = Tally::new(mode, false);
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let phase = control.phase();
                        if phase == STOP {
                            return Ok(tally);
                        }
                        let start = Instant::now();
                        let (len, unsolicited) = control.abort_on_error(
                            one_connection(addr, config, (name, value), expected.as_deref(), &mut buf)
                                .map_err(|e| failed("a new connection", e)),
                        )?;
                        tally.unsolicited += unsolicited;
                        if phase == MEASURE {
                            tally.record(len, start.elapsed());
                        }
                    }
                })
            })
            .collect();
        let window = window(&control, timing, mode, None);
        gather(workers, window, mode, false)
    })
}

/// One connection of the `handshakes` workload: connect, handshake, one
/// call (its reply checked against `expected`), close. Returns the reply's
/// length and the unsolicited responses that came before it.
fn one_connection(
    addr: SocketAddr,
    config: &fastwire_proto::ClientConfig,
    (name, value): (&[u8], &[u8]),
    expected: Option<&[u8]>,
    buf: &mut [u8],
) -> Result<(usize, u64), String> {
    use fastwire_proto::driver::Connection;
    use std::io::{Read, Write};
    let io = |e: std::io::Error| e.to_string();
    let stream = std::net::TcpStream::connect_timeout(&addr, config.connect_timeout).map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(io)?;
    // Close with a reset: thousands of connections a second would
    // otherwise leave as many ports in TIME_WAIT and run out of them.
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).map_err(io)?;
    let mut conn = fastwire_proto::ClientConn::<()>::new(config);
    conn.start_call(name, value, ()).map_err(|r| r.error.to_string())?;
    let mut reply = None;
    loop {
        while conn.has_output() {
            let out = conn.output();
            if out.is_empty() {
                break;
            }
            let n = (&stream).write(out).map_err(io)?;
            conn.advance_output(n);
        }
        let n = (&stream).read(buf).map_err(io)?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        conn.received(&buf[..n]);
        conn.process(|response, ()| reply = Some(check_reply(response.value, expected).map(|()| response.value.len())))
            .map_err(|e| e.to_string())?;
        if let Some(len) = reply {
            return Ok((len?, conn.unknown_responses()));
        }
    }
}
