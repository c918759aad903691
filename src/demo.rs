//! The demo service on every backend, with handlers that wait or work.
//!
//! It answers with [`fastwire_proto::demo_handler`] (an
//! empty name gets fastrpc's 261-byte benchmark body, any other name `re:`
//! and the value), and can be made to
//!
//! * **wait** before answering ([`Demo::delay`], or per call with a request
//!   name `wait/<microseconds>`): the wait never blocks the connection. It
//!   goes through the path each architecture has for it: on glommio a
//!   local task per waiting call, on glommio's timer; on std, mio, uring
//!   and tokio a deferred [`Responder`] answered from a timer thread (the
//!   first three have no timers of their own for handlers, and tokio's
//!   wheel rounds a sleep up to whole milliseconds). Calls that do not
//!   wait are answered inline everywhere, so an instant call pays nothing
//!   for its neighbours' waits;
//! * **work**: burn CPU for [`Demo::work`] on the connection's own thread,
//!   task or loop, as a CPU-bound handler does.
//!
//! `fastwire serve --handler-delay/--handler-work`, the `wait`, `cpu` and
//! `mixed` workloads and the conformance suite use it.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fastwire_common::{OwnedRequest, Timer};
use fastwire_proto::{demo_handler, Handler, Request, Responder, ResponseWriter, ServerConfig};

use crate::backend::{start_server, BackendKind, RunningServer};

/// The request-name prefix that makes one call wait: `wait/1000` waits 1 ms.
pub const WAIT_PREFIX: &[u8] = b"wait/";

/// How the demo service behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Demo {
    /// Every call waits this long before it is answered (without blocking).
    pub delay: Option<Duration>,
    /// Every call burns this much CPU time before it is answered.
    pub work: Option<Duration>,
}

impl Demo {
    /// How long `request` waits: its own `wait/<µs>` name, else the service's delay.
    fn delay_of(&self, request: &Request<'_>) -> Option<Duration> {
        request
            .name
            .strip_prefix(WAIT_PREFIX)
            .and_then(|us| std::str::from_utf8(us).ok()?.parse().ok())
            .map(Duration::from_micros)
            .or(self.delay)
            .filter(|d| !d.is_zero())
    }
}

/// Burns CPU for `work` (a busy loop on the clock: the handler of a
/// CPU-bound service, as far as the server can tell).
pub fn burn(work: Duration) {
    let until = Instant::now() + work;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Answers `request` after `delay`, without blocking the caller.
type Later = Box<dyn Fn(Duration, OwnedRequest, Responder) + Send + Sync>;

/// The demo handler with a way to answer later.
struct DemoHandler {
    demo: Demo,
    later: Later,
}

impl Handler for DemoHandler {
    fn handle(&self, request: Request<'_>, response: &mut ResponseWriter<'_>) {
        if let Some(work) = self.demo.work {
            burn(work);
        }
        match self.demo.delay_of(&request) {
            None => demo_handler(request, response),
            Some(delay) => {
                let responder = response.defer();
                (self.later)(delay, OwnedRequest::new(request), responder);
            }
        }
    }
}

fn respond(request: &OwnedRequest, responder: Responder) {
    // Gone: the client left meanwhile; nothing to answer.
    let _ = responder.respond_with(|out| demo_handler(request.as_request(), out));
}

/// A timer thread that answers deferred calls when their wait is over: the
/// std and mio backends' way to wait (the timer is shared by the server's
/// connections and ends with it).
fn timer_later() -> io::Result<Later> {
    let timer = Timer::new(|(request, responder): (OwnedRequest, Responder)| respond(&request, responder))?;
    Ok(Box::new(move |delay, request, responder| timer.after(delay, (request, responder))))
}

/// Starts the demo service on `kind`.
pub fn start_demo(
    kind: BackendKind,
    addr: SocketAddr,
    config: ServerConfig,
    demo: Demo,
) -> io::Result<Box<dyn RunningServer>> {
    match kind {
        // A local task per waiting call on the connection's executor, with
        // glommio's timer; the rest inline.
        #[cfg(feature = "glommio")]
        BackendKind::Glommio | BackendKind::GlommioReuseport => {
            let later: Later = Box::new(|delay, request, responder| {
                let guard = responder.guard();
                fastwire_glommio::glommio::spawn_local(fastwire_common::work::answer_async(guard, async move {
                    fastwire_glommio::glommio::timer::sleep(delay).await;
                    respond(&request, responder);
                }))
                .detach();
            });
            start_server(kind, addr, config, DemoHandler { demo, later })
        }
        // Deferred answers from a timer thread; the rest inline.
        #[allow(unreachable_patterns)]
        _ => start_server(kind, addr, config, DemoHandler { demo, later: timer_later()? }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_call_delay_overrides_the_service_delay() {
        let demo = Demo { delay: Some(Duration::from_millis(1)), work: None };
        let req = |name: &'static [u8]| Request { id: 1, name, value: b"" };
        assert_eq!(demo.delay_of(&req(b"wait/2500")), Some(Duration::from_micros(2500)));
        assert_eq!(demo.delay_of(&req(b"echo")), Some(Duration::from_millis(1)));
        assert_eq!(Demo::default().delay_of(&req(b"wait/0")), None);
        assert_eq!(Demo::default().delay_of(&req(b"wait/x")), None);
    }
}
