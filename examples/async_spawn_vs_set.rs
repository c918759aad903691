//! Two ways to run a connection's `async` handlers concurrently, measured:
//! a tokio task per request (what `fastwire-tokio`'s `serve_async` does),
//! or one set of futures (`FuturesUnordered`) polled by the connection's own
//! task.
//!
//! ```sh
//! cargo run --release --example async_spawn_vs_set
//! ```
//!
//! Each "request" is a future that waits once (a wake-up from another task,
//! as a timer or a channel would give it) and then answers by appending a
//! few bytes to the connection's output, the way a `Responder` does. The
//! connection keeps `DEPTH` requests in flight and replaces each as it
//! completes, as a pipelining client makes it. The figures are per request,
//! medians of five runs, on each runtime flavor the tokio backend offers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Notify;

const REQUESTS: usize = 200_000;
const DEPTH: usize = 100;

/// The connection's output, which answers land in.
type Output = Arc<Mutex<Vec<u8>>>;

/// One request: wait for a wake-up, then answer.
async fn request(id: u32, out: Output) {
    tokio::task::yield_now().await;
    out.lock().unwrap().extend_from_slice(&id.to_le_bytes());
}

/// A task per request; completions come back through a `Notify`, as the
/// connection task is woken by its `Responder`s.
async fn spawned() -> Duration {
    let out = Output::default();
    let done = Arc::new(Notify::new());
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut issued = 0;
    let mut in_flight = 0;
    while issued < REQUESTS || in_flight > 0 {
        while in_flight < DEPTH && issued < REQUESTS {
            let (out, done, finished) = (Arc::clone(&out), Arc::clone(&done), Arc::clone(&finished));
            tokio::spawn(async move {
                request(issued as u32, out).await;
                finished.fetch_add(1, std::sync::atomic::Ordering::Release);
                done.notify_one();
            });
            issued += 1;
            in_flight += 1;
        }
        done.notified().await;
        let n = finished.swap(0, std::sync::atomic::Ordering::Acquire);
        in_flight -= n;
        out.lock().unwrap().clear();
    }
    started.elapsed()
}

/// One set of futures, polled by the connection's own task.
async fn in_a_set() -> Duration {
    let out = Output::default();
    let mut set = FuturesUnordered::new();
    let started = Instant::now();
    let mut issued = 0;
    while issued < REQUESTS || !set.is_empty() {
        while set.len() < DEPTH && issued < REQUESTS {
            set.push(request(issued as u32, Arc::clone(&out)));
            issued += 1;
        }
        set.next().await;
        out.lock().unwrap().clear();
    }
    started.elapsed()
}

fn median(
    runtime: &tokio::runtime::Runtime,
    f: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Duration>>>,
) -> f64 {
    let mut runs: Vec<f64> = (0..5).map(|_| runtime.block_on(f()).as_nanos() as f64 / REQUESTS as f64).collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

fn main() {
    let flavors = [
        ("current-thread (tokio-per-core)", tokio::runtime::Builder::new_current_thread().enable_all().build()),
        (
            "multi-thread, 2 workers (tokio)",
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build(),
        ),
    ];
    println!("{REQUESTS} requests, {DEPTH} in flight on one connection; ns per request, median of 5 runs");
    for (name, runtime) in flavors {
        let runtime = runtime.expect("a runtime");
        // The connection task itself runs on the runtime, as in the server.
        let spawn_ns = median(&runtime, || Box::pin(async { tokio::spawn(spawned()).await.unwrap() }));
        let set_ns = median(&runtime, || Box::pin(async { tokio::spawn(in_a_set()).await.unwrap() }));
        println!("{name:34} task per request: {spawn_ns:7.1}   set of futures: {set_ns:7.1}");
    }
}
