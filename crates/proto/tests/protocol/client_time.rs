//! A client connection's time on a virtual clock: call deadlines, the
//! handshakes' deadline, the idle close, the queued-output bound and the
//! reconnection policy, with the time handed in, no socket and no sleep.
//! The backends' conformance suite then checks the same behaviour over TCP
//! (`conformance::settings`).

use std::time::{Duration, Instant};

use fastwire_proto::driver::{ClientExpired, Connection, Reconnect, MAX_QUEUED_OUTPUT, MIN_CONNECT_TIMEOUT};
use fastwire_proto::{ClientConfig, ClientConn};
use fastwire_testkit::frame;

const HANDSHAKE: &[u8] = &[0, 1, 0]; // version 0, no compression, no TLS

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config() -> ClientConfig {
    ClientConfig { handshake_timeout: ms(500), idle_timeout: ms(10_000), ..ClientConfig::default() }
}

/// A client whose connection was made at `t0` and whose handshakes are done.
fn connected(t0: Instant) -> ClientConn<&'static str> {
    let mut conn = ClientConn::new(&config());
    conn.start_clock(t0);
    conn.received(HANDSHAKE);
    conn.process(|_, _| {}).unwrap();
    assert!(conn.is_handshake_done());
    let n = conn.output().len();
    conn.advance_output(n);
    conn
}

/// Hands `conn` the time `now`; returns the calls it expired and what else it said.
fn look(conn: &mut ClientConn<&'static str>, now: Instant) -> (Vec<(u32, &'static str)>, ClientExpired) {
    let mut expired = Vec::new();
    let said = conn.handle_timeout(now, |id, token| expired.push((id, token)));
    (expired, said)
}

#[test]
fn a_call_past_its_deadline_is_handed_back_and_its_late_response_dropped() {
    let t0 = Instant::now();
    let mut conn = connected(t0);
    let id = conn.start_call_until(b"echo", b"a", "a", t0 + ms(100)).unwrap();
    assert_eq!(conn.poll_timeout(), Some(t0 + ms(100)), "the call's deadline is the next");
    assert_eq!(look(&mut conn, t0 + ms(99)), (vec![], ClientExpired::Nothing));
    assert_eq!(look(&mut conn, t0 + ms(100)), (vec![(id, "a")], ClientExpired::Nothing));
    assert_eq!(conn.pending_len(), 0);
    // The server answers after all: nobody waits for it any more.
    conn.received(&frame::response(id, b"late"));
    let mut got = Vec::new();
    conn.process(|r, token| got.push((r.id, token))).unwrap();
    assert!(got.is_empty());
    assert_eq!(conn.unknown_responses(), 1);
}

#[test]
fn a_response_a_nanosecond_before_the_deadline_is_the_calls() {
    let t0 = Instant::now();
    let deadline = t0 + ms(100);
    let mut conn = connected(t0);
    let id = conn.start_call_until(b"echo", b"a", "a", deadline).unwrap();
    assert_eq!(look(&mut conn, deadline - Duration::from_nanos(1)), (vec![], ClientExpired::Nothing));
    conn.received(&frame::response(id, b"in time"));
    let mut got = Vec::new();
    conn.process(|r, token| got.push((r.id, r.value.to_vec(), token))).unwrap();
    assert_eq!(got, [(id, b"in time".to_vec(), "a")]);
    // Its deadline passing now expires nothing.
    assert_eq!(look(&mut conn, deadline), (vec![], ClientExpired::Nothing));
}

#[test]
fn calls_expire_each_at_their_own_deadline_answered_or_not() {
    let t0 = Instant::now();
    let mut conn = connected(t0);
    let a = conn.start_call_until(b"echo", b"a", "a", t0 + ms(300)).unwrap();
    let b = conn.start_call_until(b"echo", b"b", "b", t0 + ms(100)).unwrap();
    let c = conn.start_call_until(b"echo", b"c", "c", t0 + ms(200)).unwrap();
    let none = conn.start_call(b"echo", b"n", "no deadline").unwrap();
    assert_eq!(conn.poll_timeout(), Some(t0 + ms(100)), "the earliest deadline, whatever the order");
    // `b` is answered: its deadline may still wake the driver, for nothing.
    conn.received(&frame::response(b, b"b"));
    conn.process(|_, _| {}).unwrap();
    assert_eq!(look(&mut conn, t0 + ms(100)), (vec![], ClientExpired::Nothing));
    assert_eq!(conn.poll_timeout(), Some(t0 + ms(200)), "then the true earliest");
    assert_eq!(look(&mut conn, t0 + ms(250)), (vec![(c, "c")], ClientExpired::Nothing));
    assert_eq!(look(&mut conn, t0 + ms(300)), (vec![(a, "a")], ClientExpired::Nothing));
    // A call with no deadline of its own waits as long as its connection.
    assert_eq!(look(&mut conn, t0 + ms(9_000)), (vec![], ClientExpired::Nothing));
    assert_eq!(conn.pending_len(), 1);
    assert_eq!(conn.cancel(none), Some("no deadline"));
}

#[test]
fn a_connection_unused_for_idle_timeout_is_closed() {
    let t0 = Instant::now();
    let mut conn = connected(t0);
    assert_eq!(conn.poll_timeout(), Some(t0 + ms(10_000)), "idle from the moment it was made");
    // A call at 4 s: used then (stamped at the next look, not by the call).
    let id = conn.start_call(b"echo", b"a", "a").unwrap();
    let n = conn.output().len();
    conn.advance_output(n);
    assert_eq!(look(&mut conn, t0 + ms(4_000)), (vec![], ClientExpired::Nothing));
    // Pending calls are not idleness, however long.
    assert_eq!(conn.poll_timeout(), None);
    assert_eq!(look(&mut conn, t0 + ms(30_000)), (vec![], ClientExpired::Nothing));
    conn.received(&frame::response(id, b"a"));
    conn.process(|_, _| {}).unwrap();
    assert_eq!(conn.poll_timeout(), Some(t0 + ms(14_000)));
    assert_eq!(look(&mut conn, t0 + ms(13_999)), (vec![], ClientExpired::Nothing));
    // A fire-and-forget send is use too; output waiting to be written is not idleness.
    conn.send_fire_and_forget(b"log", b"x").unwrap();
    assert_eq!(look(&mut conn, t0 + ms(20_000)), (vec![], ClientExpired::Nothing));
    assert_eq!(conn.poll_timeout(), None, "output waits to be written");
    let n = conn.output().len();
    conn.advance_output(n);
    assert_eq!(look(&mut conn, t0 + ms(29_999)), (vec![], ClientExpired::Nothing));
    assert_eq!(look(&mut conn, t0 + ms(30_000)), (vec![], ClientExpired::Idle));
}

#[test]
fn a_handshake_that_stalls_ends_the_connection_at_its_deadline() {
    let t0 = Instant::now();
    let mut conn: ClientConn<&'static str> = ClientConn::new(&config());
    assert_eq!(conn.poll_timeout(), None, "no clock before the connection is made");
    conn.start_clock(t0);
    // Calls queued behind the handshake do not move its deadline.
    conn.start_call_until(b"echo", b"a", "a", t0 + ms(5_000)).unwrap();
    assert_eq!(conn.handshake_deadline(), Some(t0 + ms(500)));
    assert_eq!(conn.poll_timeout(), Some(t0 + ms(500)));
    // Half the server's handshake is no handshake.
    conn.received(&HANDSHAKE[..2]);
    conn.process(|_, _| {}).unwrap();
    assert_eq!(look(&mut conn, t0 + ms(499)), (vec![], ClientExpired::Nothing));
    assert_eq!(look(&mut conn, t0 + ms(500)), (vec![], ClientExpired::Handshake));
    assert_eq!(
        conn.handshake_stage().handshake_timed_out(ms(500)),
        "no handshake from the server within 500ms (setting: handshake_timeout)"
    );
    // Done in time, the handshake has no deadline left.
    let mut conn = connected(t0);
    assert_eq!(conn.handshake_deadline(), None);
    assert_eq!(look(&mut conn, t0 + ms(600)), (vec![], ClientExpired::Nothing));
}

#[test]
fn queued_output_is_bounded() {
    let t0 = Instant::now();
    let mut conn = connected(t0);
    let value = vec![7u8; 64 * 1024];
    let mut sent = 0;
    while !conn.is_output_full() {
        conn.send_fire_and_forget(b"log", &value).unwrap();
        sent += 1;
    }
    assert_eq!(sent, MAX_QUEUED_OUTPUT.div_ceil(value.len() + 16), "full at the bound, not before");
    let n = conn.output().len();
    conn.advance_output(n);
    assert!(!conn.is_output_full(), "room again once the socket took it");
}

#[test]
fn a_reconnect_waits_out_a_backoff_that_doubles_and_resets() {
    let config = ClientConfig {
        connect_timeout: ms(3_000),
        reconnect_backoff: ms(10),
        max_reconnect_backoff: ms(25),
        ..ClientConfig::default()
    };
    let t0 = Instant::now();
    let mut policy: Reconnect<&'static str> = Reconnect::new(&config);
    assert_eq!(policy.attempt(t0, ms(60_000)), Ok(ms(3_000)), "connect_timeout bounds an attempt");
    assert_eq!(policy.attempt(t0, ms(200)), Ok(ms(200)), "and so does what the call has left");
    assert_eq!(policy.attempt(t0, Duration::ZERO), Ok(MIN_CONNECT_TIMEOUT));
    policy.failed(t0, "refused");
    assert!(policy.is_failing());
    assert_eq!(policy.attempt(t0 + ms(4), ms(60_000)), Err(("refused", ms(6))), "the last error, and the time left");
    assert_eq!(policy.backing_off(t0 + ms(4)), Some(("refused", ms(6))));
    assert_eq!(policy.backing_off(t0 + ms(10)), None);
    assert_eq!(policy.attempt(t0 + ms(10), ms(60_000)), Ok(ms(3_000)), "a reconnect after the backoff");
    policy.failed(t0 + ms(10), "refused again");
    assert_eq!(policy.attempt(t0 + ms(10), ms(1)), Err(("refused again", ms(20))), "doubled");
    policy.failed(t0 + ms(30), "still");
    assert_eq!(policy.attempt(t0 + ms(30), ms(1)), Err(("still", ms(25))), "capped at the maximum");
    policy.succeeded();
    assert!(!policy.is_failing());
    assert_eq!(policy.attempt(t0 + ms(30), ms(60_000)), Ok(ms(3_000)));
    policy.failed(t0 + ms(40), "after a success");
    assert_eq!(policy.attempt(t0 + ms(40), ms(1)), Err(("after a success", ms(10))), "back to the first wait");
}
