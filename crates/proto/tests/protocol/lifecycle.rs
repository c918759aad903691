//! A server connection's life on a virtual clock: every timeout and every
//! close path, with the time handed in, no socket and no sleep. The
//! backends' conformance suite then checks the same behaviour over TCP.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastwire_proto::codec::encode_request;
use fastwire_proto::driver::Connection;
use fastwire_proto::driver::{CloseReason, Expired, Phase, IDLE_RELEASE, LINGER, LINGER_MAX_BYTES};
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

/// A connection whose clock started at `t0`, and a handler that answers
/// `now` inline, parks `later` (a deferred call) and panics on `panic`.
struct Harness {
    conn: ServerConn,
    parked: Parked,
    t0: Instant,
}

impl Harness {
    fn new(config: ServerConfig) -> Harness {
        let t0 = Instant::now();
        let mut conn = ServerConn::new(&config);
        conn.start_clock(t0);
        Harness { conn, parked: Parked::default(), t0 }
    }

    fn at(&self, s: f64) -> Instant {
        self.t0 + secs(s)
    }

    /// Bytes arrive at `s` seconds and are served (the output is left
    /// unwritten), by a driver that looks at the clock when they come.
    fn receive(&mut self, bytes: &[u8], s: f64) {
        if self.conn.arrived(bytes.len()) {
            self.conn.received(bytes);
            let parked = Arc::clone(&self.parked);
            let handler = move |req: Request<'_>, resp: &mut ResponseWriter<'_>| match req.name {
                b"later" => parked.lock().unwrap().push(resp.defer()),
                b"panic" => panic!("a handler's bug"),
                _ => resp.extend_from_slice(b"now"),
            };
            let _ = self.conn.process(&handler);
        }
        self.look(s);
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

    /// Writes all the output in place at `s` seconds.
    fn write_all(&mut self, s: f64) {
        let n = self.conn.output().len();
        if n > 0 {
            self.conn.advance_output(n);
            self.look(s);
        }
    }

    fn deadline(&self) -> Option<Duration> {
        self.conn.poll_timeout().map(|d| d - self.t0)
    }

    fn look(&mut self, s: f64) -> Expired {
        self.conn.handle_timeout(self.at(s))
    }
}

#[test]
fn a_handshake_not_done_in_time_starts_the_close() {
    let mut h = Harness::new(config());
    assert_eq!(h.deadline(), Some(secs(0.5)));
    assert_eq!(h.look(0.4), Expired::Nothing);
    assert_eq!(h.look(0.5), Expired::Closing(CloseReason::HandshakeTimeout));
    assert_eq!(h.conn.phase(), Phase::Draining);
    assert_eq!(h.conn.close_reason(), Some(CloseReason::HandshakeTimeout));
    // Nothing to send: shut the write side, then linger.
    assert!(h.conn.poll_shutdown(h.at(0.5)));
    assert_eq!(h.conn.phase(), Phase::Lingering);
    // The client closes its side: done, for the reason the close began with.
    h.conn.end_of_stream();
    assert_eq!(h.conn.phase(), Phase::Closed);
    assert_eq!(h.conn.close_reason(), Some(CloseReason::HandshakeTimeout));
}

#[test]
fn without_a_clock_a_connection_driven_by_hand_never_closes_by_itself() {
    let mut conn = ServerConn::new(&config());
    assert_eq!((conn.phase(), conn.poll_timeout()), (Phase::Open, None));
    assert_eq!(conn.handle_timeout(Instant::now() + secs(3600.0)), Expired::Nothing);
    assert!(conn.arrived(10));
    assert!(conn.is_serving());
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
    assert_eq!(h.conn.phase(), Phase::Draining);
}

/// Traffic is noted without a clock read and stamped at the next look:
/// a deadline asked for before it comes early, finds nothing due, and the
/// next one runs from that look.
#[test]
fn activity_between_looks_is_stamped_at_the_next_look() {
    let mut h = Harness::new(config());
    h.call(b"now", 0.0);
    assert_eq!(h.deadline(), Some(IDLE_RELEASE));
    // A call at 0.5 s by a driver that does not look then.
    h.conn.arrived(10);
    assert_eq!(h.deadline(), Some(IDLE_RELEASE), "not stamped yet");
    assert_eq!(h.look(1.0), Expired::Nothing, "the call counts as of this look");
    assert_eq!(h.deadline(), Some(secs(1.0) + IDLE_RELEASE));
    assert_eq!(h.look(2.0), Expired::ReleaseBuffers);
    assert_eq!(h.look(11.0), Expired::Closing(CloseReason::Idle), "idle_timeout from the look that stamped it");
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
    // A driver that looks on its own timer sees the same.
    for s in 2..=30 {
        assert_eq!(h.look(s as f64), Expired::Nothing, "at {s} s");
    }
    // The answer comes at 40 s: idle from then on (the connection notes it).
    h.parked.lock().unwrap().pop().unwrap().respond(b"late").unwrap();
    h.conn.collect_deferred().unwrap();
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
    h.conn.advance_output(1);
    h.look(5.0);
    assert_eq!(h.look(14.9), Expired::Nothing);
    assert_eq!(h.look(15.0), Expired::Closed(CloseReason::StoppedReading));
    assert_eq!(h.conn.phase(), Phase::Closed);
    // Output the driver took and has not reported written counts too (a
    // send in flight), until it is.
    let mut h = Harness::new(config());
    h.call(b"now", 0.0);
    h.receive(&request(b"now"), 1.0);
    let mut out = bytes::BytesMut::new();
    h.conn.take_output(&mut out);
    assert!(!h.conn.has_output());
    assert_eq!(h.deadline(), Some(secs(10.0)));
    h.conn.written(false);
    assert_eq!(h.look(4.0), Expired::Nothing, "some went out");
    h.conn.written(true);
    assert_eq!(h.deadline(), Some(secs(1.0) + IDLE_RELEASE), "all of it: quiet since the last request");
    let mut h = Harness::new(config());
    h.call(b"now", 0.0);
    h.receive(&request(b"now"), 1.0);
    h.conn.take_output(&mut out);
    assert_eq!(h.look(10.0), Expired::Closed(CloseReason::StoppedReading));
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
    h.conn.end_of_stream();
    assert_eq!((h.conn.phase(), h.conn.close_reason()), (Phase::Draining, Some(CloseReason::ClosedByClient)));
    assert!(!h.conn.poll_shutdown(h.at(0.1)), "its answer is not written yet");
    h.receive(&request(b"now"), 0.1);
    let mut out = bytes::BytesMut::new();
    h.conn.take_output(&mut out);
    assert!(!h.conn.poll_shutdown(h.at(0.1)), "the driver still sends");
    h.conn.written(true);
    assert!(h.conn.poll_shutdown(h.at(0.2)));
    assert_eq!(h.conn.phase(), Phase::Closed);
    assert_eq!(h.conn.close_reason(), Some(CloseReason::ClosedByClient));
    assert_eq!(h.conn.requests(), 2, "the request after the close was not served");
}

/// The end-of-stream rule: the close begins once what came before the
/// client's end of stream is served, not while requests wait behind a
/// full output; the connection applies it when the end comes and after
/// each `process`.
#[test]
fn the_end_of_stream_closes_once_what_came_before_is_served() {
    let mut h = Harness::new(ServerConfig { max_output_buffer: 64, ..config() });
    h.call(b"now", 0.0);
    // Requests whose answers overflow the output, then the end of stream.
    let mut bytes = bytes::BytesMut::new();
    for id in 2..40 {
        encode_request(&mut bytes, id, b"now", b"v", &Limits::default()).unwrap();
    }
    h.receive(&bytes, 1.0);
    assert!(h.conn.is_output_full() && h.conn.buffered_input() > 0, "requests wait behind a full output");
    h.conn.end_of_stream();
    assert!(h.conn.is_serving(), "what came before the end is still to serve");
    while h.conn.buffered_input() > 0 {
        h.write_all(2.0);
        h.conn.process(&|_: Request<'_>, resp: &mut ResponseWriter<'_>| resp.extend_from_slice(b"now")).unwrap();
    }
    assert_eq!((h.conn.phase(), h.conn.close_reason()), (Phase::Draining, Some(CloseReason::ClosedByClient)));
    // Bytes received and not processed yet when the end comes (a
    // completion loop sees both in one batch): served, then the close.
    let mut h = Harness::new(config());
    h.conn.received(HANDSHAKE);
    h.conn.received(&request(b"now"));
    h.conn.end_of_stream();
    assert!(h.conn.is_serving(), "not served yet");
    h.conn.process(&|_: Request<'_>, resp: &mut ResponseWriter<'_>| resp.extend_from_slice(b"now")).unwrap();
    assert_eq!((h.conn.requests(), h.conn.phase()), (1, Phase::Draining));
}

#[test]
fn a_close_waits_for_deferred_answers_unless_the_machine_failed() {
    let mut h = Harness::new(config());
    h.call(b"later", 0.0);
    h.conn.begin_close(CloseReason::Shutdown);
    assert!(!h.conn.poll_shutdown(h.at(1.0)), "a deferred call is still out");
    // Nothing moves for idle_timeout: stuck.
    assert_eq!(h.deadline(), Some(secs(10.0)));
    assert_eq!(h.look(9.0), Expired::Nothing);
    // An answer at 9 s (a dropped responder: no output) moves it.
    h.parked.lock().unwrap().clear();
    h.conn.collect_deferred().unwrap();
    assert_eq!(h.look(9.0), Expired::Nothing);
    assert_eq!(h.look(18.9), Expired::Nothing);
    assert_eq!(h.look(19.0), Expired::Closed(CloseReason::StuckClosing));
    // After a failure (a handler's panic) the answers are not awaited.
    let mut h = Harness::new(config());
    h.call(b"later", 0.0);
    h.receive(&request(b"panic"), 0.1);
    assert!(h.conn.has_failed());
    assert_eq!((h.conn.phase(), h.conn.close_reason()), (Phase::Draining, Some(CloseReason::HandlerPanic)));
    assert!(h.conn.poll_shutdown(h.at(0.1)));
    assert_eq!(h.conn.phase(), Phase::Lingering);
}

#[test]
fn a_failure_before_the_handshake_is_a_refusal() {
    let mut h = Harness::new(config());
    h.receive(b"\x09\x09\x09", 0.1); // a handshake no server speaks
    assert_eq!(h.conn.close_reason(), Some(CloseReason::Refused));
    let mut h = Harness::new(config());
    h.call(b"now", 0.0);
    h.receive(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], 0.1); // a name longer than any limit
    assert_eq!(h.conn.close_reason(), Some(CloseReason::ProtocolError));
}

#[test]
fn lingering_ends_with_the_client_the_clock_or_too_many_bytes() {
    let linger = |h: &mut Harness| {
        h.call(b"now", 0.0);
        h.conn.begin_close(CloseReason::Shutdown);
        assert!(h.conn.poll_shutdown(h.at(1.0)));
        assert_eq!(h.conn.phase(), Phase::Lingering);
    };
    // The clock.
    let mut h = Harness::new(config());
    linger(&mut h);
    assert_eq!(h.deadline(), Some(secs(1.0) + LINGER));
    assert_eq!(h.look(1.0 + LINGER.as_secs_f64()), Expired::Closed(CloseReason::LingerTimeout));
    // Bytes are discarded, not served, up to the limit.
    let mut h = Harness::new(config());
    linger(&mut h);
    assert!(!h.conn.arrived(LINGER_MAX_BYTES));
    assert_eq!(h.conn.phase(), Phase::Lingering);
    assert!(!h.conn.arrived(1));
    assert_eq!((h.conn.phase(), h.conn.close_reason()), (Phase::Closed, Some(CloseReason::LingerTimeout)));
    // The client: closed for the reason the close began with.
    let mut h = Harness::new(config());
    linger(&mut h);
    h.conn.end_of_stream();
    assert_eq!((h.conn.phase(), h.conn.close_reason()), (Phase::Closed, Some(CloseReason::Shutdown)));
    assert_eq!(h.deadline(), None);
}

/// A driver that flushes its own way and then shuts the write side (a task
/// per connection) lingers by the same bounds, kept by the connection.
#[test]
fn a_driver_that_shuts_its_write_side_lingers_by_the_same_bounds() {
    let mut h = Harness::new(config());
    h.call(b"now", 0.0);
    assert!(h.conn.shut_write(CloseReason::Idle, h.at(1.0)));
    assert_eq!((h.conn.phase(), h.conn.close_reason()), (Phase::Lingering, Some(CloseReason::Idle)));
    assert_eq!(h.conn.linger_deadline(), Some(h.at(1.0) + LINGER));
    // Shut again (a thread that flushes after another shut it): the
    // linger still runs from the first.
    assert!(h.conn.shut_write(CloseReason::Shutdown, h.at(3.0)));
    assert_eq!(h.conn.linger_deadline(), Some(h.at(1.0) + LINGER));
    assert_eq!(h.look(0.5 + LINGER.as_secs_f64()), Expired::Nothing);
    assert_eq!(h.look(1.0 + LINGER.as_secs_f64()), Expired::Closed(CloseReason::LingerTimeout));
    assert_eq!(h.conn.linger_deadline(), None);
    // Too many bytes.
    let mut h = Harness::new(config());
    h.conn.shut_write(CloseReason::Shutdown, h.at(1.0));
    assert!(!h.conn.arrived(LINGER_MAX_BYTES + 1));
    assert_eq!(h.conn.close_reason(), Some(CloseReason::LingerTimeout));
    // A close already under way keeps its reason; the client's end of stream ends it.
    let mut h = Harness::new(config());
    h.conn.begin_close(CloseReason::ProtocolError);
    assert!(h.conn.shut_write(CloseReason::Shutdown, h.at(1.0)));
    h.conn.end_of_stream();
    assert_eq!((h.conn.phase(), h.conn.close_reason()), (Phase::Closed, Some(CloseReason::ProtocolError)));
    // The client closed first: nothing to linger for.
    let mut h = Harness::new(config());
    h.conn.end_of_stream();
    assert!(!h.conn.shut_write(CloseReason::ClosedByClient, h.at(1.0)));
    assert_eq!(h.conn.phase(), Phase::Closed);
}

#[test]
fn an_io_error_ends_it_at_once_and_later_events_change_nothing() {
    let mut h = Harness::new(config());
    h.call(b"now", 0.0);
    h.conn.close(CloseReason::ReadError);
    assert_eq!(h.conn.phase(), Phase::Closed);
    h.conn.begin_close(CloseReason::Idle);
    h.conn.close(CloseReason::WriteError);
    assert!(!h.conn.arrived(10));
    assert_eq!(h.look(100.0), Expired::Nothing);
    assert_eq!(h.conn.close_reason(), Some(CloseReason::ReadError));
    assert_eq!(CloseReason::ReadError.to_string(), "read error");
}
