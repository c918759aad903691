//! Sleeps timed by a thread of their own, for handlers that wait for less
//! than tokio's timer can tell apart.
//!
//! tokio's timer wheel counts whole milliseconds and rounds a deadline up
//! to the next tick, and its driver sleeps in whole milliseconds too: a
//! `tokio::time::sleep` may end up to a whole tick after its deadline, plus
//! the time until the driver next turns, which for a wait of about a tick
//! doubles it. A [`Timer`] keeps its deadlines in a
//! heap on one thread ([`fastwire_common::Timer`]) that sleeps until the
//! soonest with the operating system's precision, and wakes the sleeping
//! task through a one-shot channel: one thread wake-up per sleep, beside
//! the task's own.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;

/// A timer thread for precise sleeps on any tokio runtime. Clones share
/// the thread, which ends when the last clone is dropped.
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// let timer = fastwire_tokio::Timer::new()?;
/// timer.sleep(std::time::Duration::from_micros(500)).await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Timer {
    inner: Arc<fastwire_common::Timer<oneshot::Sender<()>>>,
}

impl Timer {
    /// Starts the timer's thread.
    pub fn new() -> io::Result<Timer> {
        let inner = fastwire_common::Timer::new(|done: oneshot::Sender<()>| {
            // The sleeper may have been dropped meanwhile: nothing to wake.
            let _ = done.send(());
        })?;
        Ok(Timer { inner: Arc::new(inner) })
    }

    /// A future that is ready `duration` from now, never sooner. If every
    /// clone of the timer is dropped first, it is ready at once.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        let (done, fired) = oneshot::channel();
        self.inner.after(duration, done);
        Sleep { fired }
    }
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// A sleep on a [`Timer`] ([`Timer::sleep`]).
#[derive(Debug)]
pub struct Sleep {
    fired: oneshot::Receiver<()>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Fired, or the timer is gone (its items were dropped): either way, done.
        Pin::new(&mut self.fired).poll(cx).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn a_sleep_never_ends_early() {
        let timer = Timer::new().unwrap();
        for micros in [0, 200, 1_000, 3_000] {
            let start = Instant::now();
            timer.sleep(Duration::from_micros(micros)).await;
            assert!(start.elapsed() >= Duration::from_micros(micros), "a {micros} µs sleep ended early");
        }
    }

    #[tokio::test]
    async fn sleeps_end_in_deadline_order() {
        let timer = Timer::new().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for millis in [30u64, 10, 20] {
            let (timer, tx) = (timer.clone(), tx.clone());
            tokio::spawn(async move {
                timer.sleep(Duration::from_millis(millis)).await;
                let _ = tx.send(millis);
            });
        }
        drop(tx);
        let mut order = Vec::new();
        while let Some(millis) = rx.recv().await {
            order.push(millis);
        }
        assert_eq!(order, [10, 20, 30]);
    }

    #[tokio::test]
    async fn a_dropped_timer_ends_its_sleeps() {
        let timer = Timer::new().unwrap();
        let sleep = timer.sleep(Duration::from_secs(3600));
        drop(timer);
        tokio::time::timeout(Duration::from_secs(10), sleep).await.expect("the sleep ended when its timer went");
    }
}
