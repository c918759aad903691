//! A connection's lifecycle on a virtual clock: every timeout and every
//! close path of a server connection, with the time handed in, no socket and no sleep. The
//! backends' conformance suite then checks the same behaviour over TCP.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastwire_proto::codec::encode_request;
use fastwire_proto::driver::Connection;
use fastwire_proto::driver::{CloseReason, Expired, Lifecycle, Phase, IDLE_RELEASE, LINGER, LINGER_MAX_BYTES};
use fastwire_proto::{Limits, Request, Responder, ResponseWriter, ServerConfig, ServerConn};

const HANDSHAKE: &[u8] = &[0, 1, 0]; // version 0, no compression, no TLS

fn config() -> ServerConfig {
    ServerConfig {
        handshake_timeout: Duration::from_millis(500),
        idle_timeout: Some(Duration::from_secs(10)),
        ..ServerConfig::default()
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

type Parked = Arc<Mutex<Vec<Responder>>>;

/// A connection, its lifecycle, and a handler that answers `now` inline
/// and parks `later` (a deferred call).
struct Harness {
    conn: ServerConn,
    life: Lifecycle,
    parked: Parked,
    t0: Instant,
}

impl Harness {
    fn new(config: ServerConfig) -> Harness {
        let t0 = Instant::now();
        Harness { conn: ServerConn::new(&config), life: Lifecycle::new(&config, t0), parked: Parked::default(), t0 }
    }

    fn at(&self, s: f64) -> Instant {
        self.t0 + secs(s)
    }

    /// Bytes arrive at `s` seconds and are served (the output is left unwritten).
    fn receive(&mut self, bytes: &[u8], s: f64) {
        if self.life.received(bytes.len(), self.at(s)) {
            self.conn.received(bytes);
            let parked = Arc::clone(&self.parked);
            let handler = move |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
                if req.name == b"later" {
                    parked.lock().unwrap().push(resp.defer());
                } else {
                    resp.extend_from_slice(b"now");
                }
            };
            self.conn.process(&handler).unwrap();
        }
    }

    /// The client's handshake and one call at `s` seconds, answered and written.
    fn call(&mut self, name: &[u8], s: f64) {
        let mut bytes = bytes::BytesMut::new();
        if !self.conn.is_handshake_done() {
            bytes.extend_from_slice(HANDSHAKE);
        }
        encode_request(&mut bytes, 1, name, b"v", &Limits::default()).unwrap();
        self.receive(&bytes, s);
        self.write_all(s);
    }

    /// Writes all the output at `s` seconds.
    fn write_all(&mut self, s: f64) {
        let n = self.conn.output().len();
        if n > 0 {
            self.conn.advance_output(n);
            self.life.wrote(self.at(s));
        }
    }

    fn deadline(&self) -> Option<Duration> {
        self.life.poll_timeout(&self.conn, false).map(|d| d - self.t0)
    }

    fn look(&mut self, s: f64) -> Expired {
        self.life.handle_timeout(&self.conn, false, self.at(s))
    }
}

#[test]
fn a_handshake_not_done_in_time_starts_the_close() {
    let mut h = Harness::new(config());
    assert_eq!(h.deadline(), Some(secs(0.5)));
    assert_eq!(h.look(0.4), Expired::Nothing);
    assert_eq!(h.look(0.5), Expired::Closing(CloseReason::HandshakeTimeout));
    assert_eq!(h.life.phase(), Phase::Draining);
    assert_eq!(h.life.reason(), Some(CloseReason::HandshakeTimeout));
    // Nothing to send: shut the write side, then linger.
    assert!(h.life.poll_shutdown(&h.conn, false, h.at(0.5)));
    assert_eq!(h.life.phase(), Phase::Lingering);
    // The client closes its side: done, for the reason the close began with.
    h.life.end_of_stream();
    assert_eq!(h.life.phase(), Phase::Closed);
    assert_eq!(h.life.reason(), Some(CloseReason::HandshakeTimeout));
}

#[test]
fn a_quiet_connection_gives_its_buffers_back_once_then_closes_when_idle() {
    let mut h = Harness::new(config());
    h.call(b"now", 0.1);
    assert_eq!(h.deadline(), Some(secs(0.1) + IDLE_RELEASE));
    assert_eq!(h.look(0.1 + IDLE_RELEASE.as_secs_f64()), Expired::ReleaseBuffers);
    // Once per quiet spell: the next deadline is the idle timeout.
    assert_eq!(h.deadline(), Some(secs(10.1)));
    assert_eq!(h.look(5.0), Expired::Nothing);
    // Traffic starts a new spell.
    h.call(b"now", 6.0);
    assert_eq!(h.deadline(), Some(secs(6.0) + IDLE_RELEASE));
    assert_eq!(h.look(7.0), Expired::ReleaseBuffers);
    assert_eq!(h.look(15.9), Expired::Nothing);
    assert_eq!(h.look(16.0), Expired::Closing(CloseReason::Idle));
    assert_eq!(h.life.phase(), Phase::Draining);
}

#[test]
fn without_an_idle_timeout_only_the_buffers_go() {
    let mut h = Harness::new(ServerConfig { idle_timeout: None, ..config() });
    h.call(b"now", 0.0);
    assert_eq!(h.look(1.0), Expired::ReleaseBuffers);
    assert_eq!(h.deadline(), None, "nothing left to look at");
    assert_eq!(h.look(3600.0), Expired::Nothing);
}

#[test]
fn waiting_for_deferred_answers_is_not_idleness() {
    let mut h = Harness::new(config());
    h.call(b"later", 0.0);
    assert_eq!(h.conn.deferred_in_flight(), 1);
    // No idle deadline while a call is out: only the buffers' release.
    assert_eq!(h.deadline(), Some(IDLE_RELEASE));
    assert_eq!(h.look(1.0), Expired::ReleaseBuffers);
    assert_eq!(h.deadline(), None);
    // A driver that sweeps on its own timer sees the same.
    for s in 2..=30 {
        assert_eq!(h.look(s as f64), Expired::Nothing, "at {s} s");
    }
    // The answer comes at 40 s: idle from then on.
    h.parked.lock().unwrap().pop().unwrap().respond(b"late").unwrap();
    h.conn.collect_deferred().unwrap();
    h.life.answered(h.at(40.0));
    h.write_all(40.0);
    assert_eq!(h.deadline(), Some(secs(41.0)));
    assert_eq!(h.look(41.0), Expired::ReleaseBuffers);
    assert_eq!(h.look(50.0), Expired::Closing(CloseReason::Idle));
}

#[test]
fn a_client_that_stops_reading_is_cut_off() {
    let mut h = Harness::new(config());
    h.call(b"now", 0.0);
    // Output waits (the socket is full) from 1 s; some goes out at 5 s.
    h.receive(&request(b"now"), 1.0);
    assert!(h.conn.has_output());
    assert_eq!(h.deadline(), Some(secs(10.0)), "idle_timeout after the last write progress");
    h.life.wrote(h.at(5.0));
    assert_eq!(h.look(14.9), Expired::Nothing);
    assert_eq!(h.look(15.0), Expired::Closed(CloseReason::StoppedReading));
    assert!(h.life.is_closed());
    // Output the driver holds counts too (a send in flight).
    let mut h = Harness::new(config());
    h.call(b"now", 0.0);
    assert_eq!(h.life.handle_timeout(&h.conn, true, h.at(10.0)), Expired::Closed(CloseReason::StoppedReading));
}

fn request(name: &[u8]) -> Vec<u8> {
    let mut bytes = bytes::BytesMut::new();
    encode_request(&mut bytes, 2, name, b"v", &Limits::default()).unwrap();
    bytes.to_vec()
}

#[test]
fn the_clients_end_of_stream_closes_without_lingering() {
    let mut h = Harness::new(config());
    h.call(b"now", 0.0);
    h.receive(&request(b"now"), 0.1);
    h.life.end_of_stream();
    assert!(h.life.is_open(), "what came before the end is served first");
    h.life.begin_close(CloseReason::ClosedByClient);
    assert!(!h.life.poll_shutdown(&h.conn, false, h.at(0.1)), "its answer is not written yet");
    h.receive(&request(b"now"), 0.1);
    h.write_all(0.1);
    assert!(!h.life.poll_shutdown(&h.conn, true, h.at(0.1)), "the driver still sends");
    assert!(h.life.poll_shutdown(&h.conn, false, h.at(0.2)));
    assert_eq!(h.life.phase(), Phase::Closed);
    assert_eq!(h.life.reason(), Some(CloseReason::ClosedByClient));
    assert_eq!(h.conn.requests(), 2, "the request after the close was not served");
}

/// The end-of-stream rule: the close begins once what came before the
/// client's end of stream is served, not while requests wait behind a
/// full output.
#[test]
fn the_end_of_stream_closes_once_what_came_before_is_served() {
    let config = ServerConfig { max_output_buffer: 64, ..config() };
    let mut h = Harness::new(config);
    h.call(b"now", 0.0);
    h.life.close_if_served(&h.conn);
    assert!(h.life.is_open(), "no end of stream yet");
    // Requests whose answers overflow the output, then the end of stream.
    let mut bytes = bytes::BytesMut::new();
    for id in 2..40 {
        encode_request(&mut bytes, id, b"now", b"v", &Limits::default()).unwrap();
    }
    h.receive(&bytes, 1.0);
    assert!(h.conn.is_output_full() && h.conn.buffered_input() > 0, "requests wait behind a full output");
    h.life.end_of_stream();
    h.life.close_if_served(&h.conn);
    assert!(h.life.is_open(), "what came before the end is still to serve");
    while h.conn.buffered_input() > 0 {
        h.write_all(2.0);
        h.conn.process(&|_: Request<'_>, resp: &mut ResponseWriter<'_>| resp.extend_from_slice(b"now")).unwrap();
    }
    h.life.close_if_served(&h.conn);
    assert_eq!((h.life.phase(), h.life.reason()), (Phase::Draining, Some(CloseReason::ClosedByClient)));
}

#[test]
fn a_close_waits_for_deferred_answers_unless_the_machine_failed() {
    let mut h = Harness::new(config());
    h.call(b"later", 0.0);
    h.life.begin_close(CloseReason::Shutdown);
    assert!(!h.life.poll_shutdown(&h.conn, false, h.at(1.0)), "a deferred call is still out");
    // Nothing moves for idle_timeout: stuck.
    assert_eq!(h.deadline(), Some(secs(10.0)));
    assert_eq!(h.look(9.0), Expired::Nothing);
    h.life.answered(h.at(9.0));
    assert_eq!(h.look(18.9), Expired::Nothing);
    assert_eq!(h.look(19.0), Expired::Closed(CloseReason::StuckClosing));
    // After a failure the answers are not awaited.
    let mut h = Harness::new(config());
    h.call(b"later", 0.0);
    h.life.fail(CloseReason::HandlerPanic);
    assert_eq!(h.life.reason(), Some(CloseReason::HandlerPanic));
    assert!(h.life.poll_shutdown(&h.conn, false, h.at(0.1)));
    assert_eq!(h.life.phase(), Phase::Lingering);
}

#[test]
fn lingering_ends_with_the_client_the_clock_or_too_many_bytes() {
    let linger = |h: &mut Harness| {
        h.call(b"now", 0.0);
        h.life.begin_close(CloseReason::Shutdown);
        assert!(h.life.poll_shutdown(&h.conn, false, h.at(1.0)));
        assert_eq!(h.life.phase(), Phase::Lingering);
    };
    // The clock.
    let mut h = Harness::new(config());
    linger(&mut h);
    assert_eq!(h.deadline(), Some(secs(1.0) + LINGER));
    assert_eq!(h.look(1.0 + LINGER.as_secs_f64()), Expired::Closed(CloseReason::LingerTimeout));
    // Bytes are discarded, not served, up to the limit.
    let mut h = Harness::new(config());
    linger(&mut h);
    assert!(!h.life.received(LINGER_MAX_BYTES, h.at(2.0)));
    assert_eq!(h.life.phase(), Phase::Lingering);
    assert!(!h.life.received(1, h.at(2.0)));
    assert_eq!((h.life.phase(), h.life.reason()), (Phase::Closed, Some(CloseReason::LingerTimeout)));
    // The client: closed for the reason the close began with.
    let mut h = Harness::new(config());
    linger(&mut h);
    h.life.end_of_stream();
    assert_eq!((h.life.phase(), h.life.reason()), (Phase::Closed, Some(CloseReason::Shutdown)));
    assert_eq!(h.deadline(), None);
}

/// A driver that flushes its own way and then shuts the write side (a task
/// per connection) lingers by the same bounds, kept by the lifecycle.
#[test]
fn a_driver_that_shuts_its_write_side_lingers_by_the_same_bounds() {
    let mut h = Harness::new(config());
    h.call(b"now", 0.0);
    assert!(h.life.shut_write(CloseReason::Idle, h.at(1.0)));
    assert_eq!((h.life.phase(), h.life.reason()), (Phase::Lingering, Some(CloseReason::Idle)));
    assert_eq!(h.life.linger_deadline(), Some(h.at(1.0) + LINGER));
    assert_eq!(h.look(0.5 + LINGER.as_secs_f64()), Expired::Nothing);
    assert_eq!(h.look(1.0 + LINGER.as_secs_f64()), Expired::Closed(CloseReason::LingerTimeout));
    assert_eq!(h.life.linger_deadline(), None);
    // Too many bytes.
    let mut h = Harness::new(config());
    h.life.shut_write(CloseReason::Shutdown, h.at(1.0));
    assert!(!h.life.received(LINGER_MAX_BYTES + 1, h.at(2.0)));
    assert_eq!(h.life.reason(), Some(CloseReason::LingerTimeout));
    // A close already under way keeps its reason; the client's end of stream ends it.
    let mut h = Harness::new(config());
    h.life.begin_close(CloseReason::ProtocolError);
    assert!(h.life.shut_write(CloseReason::Shutdown, h.at(1.0)));
    h.life.end_of_stream();
    assert_eq!((h.life.phase(), h.life.reason()), (Phase::Closed, Some(CloseReason::ProtocolError)));
    // The client closed first: nothing to linger for.
    let mut h = Harness::new(config());
    h.life.end_of_stream();
    assert!(!h.life.shut_write(CloseReason::ClosedByClient, h.at(1.0)));
    assert!(h.life.is_closed());
}

#[test]
fn an_io_error_ends_it_at_once_and_later_events_change_nothing() {
    let mut h = Harness::new(config());
    h.call(b"now", 0.0);
    h.life.close(CloseReason::ReadError);
    assert!(h.life.is_closed());
    h.life.begin_close(CloseReason::Idle);
    h.life.close(CloseReason::WriteError);
    assert!(!h.life.received(10, h.at(1.0)));
    assert_eq!(h.look(100.0), Expired::Nothing);
    assert_eq!(h.life.reason(), Some(CloseReason::ReadError));
    assert_eq!(CloseReason::ReadError.to_string(), "read error");
}
